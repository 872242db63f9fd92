#!/usr/bin/env python3
"""Writes OCI image layers and OCI image archives, without a container engine or a registry.

Used by build-images.sh (python3 standard library only):

  oci-image.py layer ROOT_DIR OUT.tar.gz [--mtime EPOCH]
      Packs ROOT_DIR (its contents, not the directory itself) as a gzip-compressed layer and writes
      OUT.tar.gz.json: {"digest", "diff_id", "size"}. Entries are sorted, owners numeric (names
      dropped), every mtime set to EPOCH (default 0), gzip header without name or time, so the same
      tree gives the same digest. Hard links stay hard links; device nodes and sockets are skipped
      (the runtime mounts /dev); a file capability (security.capability) is refused, as this
      writer does not carry extended attributes.

  oci-image.py image --ref NAME:TAG --out OUT.tar --layer L1.tar.gz [--layer L2.tar.gz ...]
                     [--user U] [--workdir D] [--env K=V ...] [--entrypoint JSON] [--cmd JSON]
                     [--label K=V ...] [--stop-signal SIG] [--expose 5432/tcp ...] [--volume DIR ...]
                     [--history TEXT ...] [--created RFC3339]
      Writes an OCI image layout as a tar (oci-layout, index.json, blobs/sha256/...) whose index
      names the image (annotation io.containerd.image.name) so that
      `ctr -n k8s.io images import OUT.tar` stores it under NAME:TAG. linux/amd64 (the host's).
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import stat
import sys
import tarfile

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"


class HashingWriter:
    """A write-only file object that hashes and counts what goes through it."""

    def __init__(self, out):
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.sha.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self):
        self.out.flush()

    def close(self):
        pass


def die(msg):
    print(f"oci-image.py: error: {msg}", file=sys.stderr)
    sys.exit(1)


def go_arch():
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def iter_tree(root):
    """Every entry under root, depth first, names sorted byte-wise, arcnames relative to root."""
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        yield path, name
        if stat.S_ISDIR(os.lstat(path).st_mode):
            yield from walk_dir(path, name)


def walk_dir(path, rel):
    """Every entry under path, arcnames prefixed with rel."""
    for name in sorted(os.listdir(path)):
        child = os.path.join(path, name)
        child_rel = f"{rel}/{name}"
        yield child, child_rel
        if stat.S_ISDIR(os.lstat(child).st_mode):
            yield from walk_dir(child, child_rel)


def cmd_layer(args):
    root = args.root
    if not os.path.isdir(root):
        die(f"{root} is not a directory")
    out = args.out
    tmp = out + ".tmp"
    with open(tmp, "wb") as raw:
        gz_hash = HashingWriter(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=gz_hash, compresslevel=args.level, mtime=0) as gz:
            tar_hash = HashingWriter(gz)
            with tarfile.open(fileobj=tar_hash, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                for path, arcname in iter_tree(root):
                    st = os.lstat(path)
                    mode = st.st_mode
                    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
                        continue
                    if (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) and has_capability(path):
                        die(f"{path} carries a file capability (security.capability), which this writer drops")
                    info = tf.gettarinfo(path, arcname)
                    info.mtime = args.mtime
                    info.uname = ""
                    info.gname = ""
                    if info.isreg():
                        with open(path, "rb") as f:
                            tf.addfile(info, f)
                    else:
                        tf.addfile(info)
        raw.flush()
        os.fsync(raw.fileno())
    meta = {
        "digest": "sha256:" + gz_hash.sha.hexdigest(),
        "diff_id": "sha256:" + tar_hash.sha.hexdigest(),
        "size": gz_hash.size,
    }
    os.replace(tmp, out)
    with open(out + ".json", "w") as f:
        json.dump(meta, f, sort_keys=True)
        f.write("\n")
    print(json.dumps(meta, sort_keys=True))


def has_capability(path):
    try:
        return "security.capability" in os.listxattr(path, follow_symlinks=False)
    except OSError:
        return False


def json_bytes(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def parse_kv(items, what):
    out = {}
    for item in items or []:
        if "=" not in item:
            die(f"{what} '{item}' is not KEY=VALUE")
        k, v = item.split("=", 1)
        out[k] = v
    return out


def parse_json_list(text, what):
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        die(f"{what} is not JSON: {e}")
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        die(f"{what} must be a JSON list of strings")
    return value


def cmd_image(args):
    if ":" not in args.ref.rsplit("/", 1)[-1]:
        die(f"--ref {args.ref} has no tag")
    layers = []
    for path in args.layer:
        try:
            with open(path + ".json") as f:
                meta = json.load(f)
        except OSError as e:
            die(f"layer metadata {path}.json: {e}")
        if os.path.getsize(path) != meta["size"]:
            die(f"{path} is {os.path.getsize(path)} bytes, its metadata says {meta['size']}")
        layers.append((path, meta))
    history = args.history or []
    if history and len(history) != len(layers):
        die("--history must be given once per --layer, or not at all")

    config = {}
    if args.user:
        config["User"] = args.user
    env = args.env or []
    if not any(e.startswith("PATH=") for e in env):
        env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + env
    config["Env"] = env
    entrypoint = parse_json_list(args.entrypoint, "--entrypoint")
    if entrypoint is not None:
        config["Entrypoint"] = entrypoint
    cmd = parse_json_list(args.cmd, "--cmd")
    if cmd is not None:
        config["Cmd"] = cmd
    if args.workdir:
        config["WorkingDir"] = args.workdir
    labels = parse_kv(args.label, "--label")
    if labels:
        config["Labels"] = labels
    if args.stop_signal:
        config["StopSignal"] = args.stop_signal
    if args.expose:
        config["ExposedPorts"] = {p if "/" in p else p + "/tcp": {} for p in args.expose}
    if args.volume:
        config["Volumes"] = {v: {} for v in args.volume}

    image_config = {
        "created": args.created,
        "architecture": go_arch(),
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [m["diff_id"] for _, m in layers]},
        "history": [
            {"created": args.created, "created_by": history[i] if history else f"layer {i + 1}"}
            for i in range(len(layers))
        ],
    }
    config_blob = json_bytes(image_config)
    config_digest = "sha256:" + hashlib.sha256(config_blob).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": len(config_blob)},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": m["digest"], "size": m["size"]} for _, m in layers],
    }
    manifest_blob = json_bytes(manifest)
    manifest_digest = "sha256:" + hashlib.sha256(manifest_blob).hexdigest()
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [
            {
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": manifest_digest,
                "size": len(manifest_blob),
                "platform": {"architecture": go_arch(), "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": args.ref,
                    "org.opencontainers.image.ref.name": args.ref.rsplit(":", 1)[1],
                },
            }
        ],
    }

    tmp = args.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:

        def add_dir(name):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tf.addfile(info)

        def add_bytes(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))

        add_dir("blobs")
        add_dir("blobs/sha256")
        blobs = {config_digest: ("bytes", config_blob), manifest_digest: ("bytes", manifest_blob)}
        for path, meta in layers:
            blobs.setdefault(meta["digest"], ("file", path))
        for digest in sorted(blobs):
            kind, value = blobs[digest]
            name = "blobs/sha256/" + digest.split(":", 1)[1]
            if kind == "bytes":
                add_bytes(name, value)
            else:
                info = tarfile.TarInfo(name)
                info.size = os.path.getsize(value)
                info.mode = 0o644
                with open(value, "rb") as f:
                    tf.addfile(info, f)
        add_bytes("index.json", json_bytes(index))
        add_bytes("oci-layout", json_bytes({"imageLayoutVersion": "1.0.0"}))
    os.replace(tmp, args.out)
    print(json.dumps({"ref": args.ref, "manifest": manifest_digest, "config": config_digest}, sort_keys=True))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    pl = sub.add_parser("layer", help="pack a directory as a gzip layer")
    pl.add_argument("root")
    pl.add_argument("out")
    pl.add_argument("--mtime", type=int, default=0)
    pl.add_argument("--level", type=int, default=6, help="gzip level (default 6)")
    pl.set_defaults(func=cmd_layer)

    pi = sub.add_parser("image", help="write an OCI archive from layers")
    pi.add_argument("--ref", required=True)
    pi.add_argument("--out", required=True)
    pi.add_argument("--layer", action="append", required=True)
    pi.add_argument("--history", action="append")
    pi.add_argument("--user")
    pi.add_argument("--workdir")
    pi.add_argument("--env", action="append")
    pi.add_argument("--entrypoint")
    pi.add_argument("--cmd")
    pi.add_argument("--label", action="append")
    pi.add_argument("--stop-signal")
    pi.add_argument("--expose", action="append")
    pi.add_argument("--volume", action="append")
    pi.add_argument("--created", default="1970-01-01T00:00:00Z")
    pi.set_defaults(func=cmd_image)

    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
