#!/usr/bin/env bash
# Builds the operator's container image on this machine, without a container engine or a registry:
# the release binaries of both handlers (cargo build --release) in /usr/local/bin, over the
# operator base of build-images.sh (glibc, libgcc_s and CA certificates from Debian, unpacked like
# the Dockerfile's gcr.io/distroless/cc base), user 65532:65532, entrypoint cluster-handler, port
# 8080: what the Dockerfile declares (e2e/tests/in_cluster.rs compares the two). The image is named
# as manifests/default names it (its `images:` entry), so the Deployments run it as they are.
#
# Output: one line on stdout, the OCI archive ($MULTIGRES_E2E_WORK/operator-image/image.tar); the
# same binaries and base give the same archive, byte for byte.
# Options: --import  also import it into the real node's containerd (node-up.sh must have run),
#                    unless the node already holds this exact image under that name.
# Env: CARGO, MULTIGRES_E2E_WORK, MULTIGRES_E2E_CACHE, MULTIGRES_E2E_OPERATOR_TARGET_DIR (cargo's
#      target directory for the release build, default <cache>/operator-target), MULTIGRES_E2E_IMAGES
#      (the directory build-images.sh printed: skips calling it). Needs root (build-images.sh,
#      containerd) and python3.
set -euo pipefail

LOG_PREFIX=operator-image
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

# Bump when the layout or the config below change.
readonly RECIPE_VERSION=1
readonly BINARIES=(cluster-handler resource-handler)

import=0
for arg in "$@"; do
  case "$arg" in
    --import) import=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument '$arg' (see --help)" ;;
  esac
done

REPO_DIR=$(dirname "$E2E_DIR")
# The name users' Deployments pull: manifests/default's `images:` entry (name + newTag).
ref=$(awk '/^images:/ { f = 1 } f && $1 == "-" && $2 == "name:" { n = $3 } f && $1 == "newTag:" { print n ":" $2; exit }' \
  "$REPO_DIR/manifests/default/kustomization.yaml")
[[ "$ref" == */*:* ]] || die "no image name and newTag in manifests/default/kustomization.yaml's images: entry"

# The image config: the Dockerfile's USER, ENTRYPOINT, EXPOSE and LABELs, and what its base
# (distroless/cc, nonroot) sets: PATH, SSL_CERT_FILE and the working directory.
readonly CONFIG=(
  --user 65532:65532 --workdir /home/nonroot
  --env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  --env "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"
  --entrypoint '["/usr/local/bin/cluster-handler"]' --expose 8080/tcp
  --label "org.opencontainers.image.title=multigres-operator"
  --label "org.opencontainers.image.description=Kubernetes operator for Multigres: cluster-handler and resource-handler"
  --label "org.opencontainers.image.source=https://github.com/multigres/multigres-operator"
  --label "org.opencontainers.image.url=https://github.com/multigres/multigres-operator"
  --label "org.opencontainers.image.licenses=Apache-2.0"
)

# The release build has its own target directory outside the repository, like the other built
# tools: a fresh clone then recompiles only the workspace's crates (about 3 minutes, not 10).
cache_root=${MULTIGRES_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multigres-e2e}
target_dir=${MULTIGRES_E2E_OPERATOR_TARGET_DIR:-$cache_root/operator-target}
log "building the release binaries (cargo build --release, target dir $target_dir)"
t0=$SECONDS
(cd "$REPO_DIR" && "${CARGO:-cargo}" build -q --release --locked --target-dir "$target_dir" \
  $(printf -- '-p %s ' "${BINARIES[@]}")) || die "cargo build --release failed"
log "release binaries ready in $((SECONDS - t0))s"
if [[ -n "${MULTIGRES_E2E_IMAGES:-}" ]]; then
  images=$MULTIGRES_E2E_IMAGES
else
  images=$("$LIB_DIR/build-images.sh") || die "build-images.sh failed (see above)"
fi
base="$images/operator-base.tar.gz"
[[ -f "$base" && -f "$base.json" ]] || die "$images has no operator-base.tar.gz (and .json): build-images.sh is older than this script?"

out_dir="$WORK_DIR/operator-image"
mkdir -p "$out_dir"
key=$({
  printf 'recipe=%s\nref=%s\nbase=%s\n' "$RECIPE_VERSION" "$ref" "$(<"$base.json")"
  printf '%s\n' "${CONFIG[@]}"
  for b in "${BINARIES[@]}"; do sha256sum "$target_dir/release/$b" | cut -d' ' -f1; done
} | sha256sum | cut -d' ' -f1)
if [[ -f "$out_dir/image.tar" && "$(cat "$out_dir/key" 2>/dev/null)" == "$key" ]]; then
  log "$ref is up to date ($out_dir/image.tar)"
else
  tmp=$(mktemp -d "$out_dir/.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  install -d -m 0755 "$tmp/root" "$tmp/root/usr" "$tmp/root/usr/local" "$tmp/root/usr/local/bin"
  for b in "${BINARIES[@]}"; do install -m 0755 "$target_dir/release/$b" "$tmp/root/usr/local/bin/$b"; done
  python3 "$LIB_DIR/oci-image.py" layer "$tmp/root" "$tmp/bin.tar.gz" >/dev/null
  python3 "$LIB_DIR/oci-image.py" image --ref "$ref" --out "$tmp/image.tar" \
    --layer "$base" --history "Debian: $(cut -d= -f1 "$images/operator-base.packages.txt" | paste -sd ' ') (extracted)" \
    --layer "$tmp/bin.tar.gz" --history "${BINARIES[*]} (cargo build --release)" \
    "${CONFIG[@]}" >&2
  mv "$tmp/image.tar" "$out_dir/image.tar"
  printf '%s\n' "$key" >"$out_dir/key"
  log "wrote $ref ($(du -h "$out_dir/image.tar" | cut -f1)): $out_dir/image.tar"
fi

if ((import)); then
  ((EUID == 0)) || die "importing into the real node's containerd needs root"
  sock="$NODE_DIR/containerd/containerd.sock"
  [[ -S "$sock" ]] || die "no real node is running (no $sock): run MULTIGRES_E2E_REAL_NODE=1 make cluster-up"
  ctr_() { ctr --address "$sock" -n k8s.io "$@"; }
  want=$(tar -xOf "$out_dir/image.tar" index.json | python3 -c 'import json, sys; print(json.load(sys.stdin)["manifests"][0]["digest"])')
  have=$(ctr_ images ls "name==$ref" | awk 'NR > 1 { print $3 }')
  if [[ "$have" == "$want" ]]; then
    log "the real node already holds $ref ($want)"
  else
    ctr_ images import --no-unpack "$out_dir/image.tar" >&2 || die "importing $out_dir/image.tar into the real node's containerd failed"
    have=$(ctr_ images ls "name==$ref" | awk 'NR > 1 { print $3 }')
    [[ "$have" == "$want" ]] || die "after the import the real node holds $ref as '$have', not $want"
    log "imported $ref ($want) into the real node"
  fi
fi
printf '%s\n' "$out_dir/image.tar"
