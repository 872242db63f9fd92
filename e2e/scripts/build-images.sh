#!/usr/bin/env bash
# Builds the container images of the e2e data plane on this machine, without a registry, a container
# engine or any image pull, as OCI archives that `ctr -n k8s.io images import` stores under these
# exact names (pods use them with imagePullPolicy: IfNotPresent):
#   gcr.io/etcd-development/etcd:v3.6.14  etcd from build-tools.sh (e2e/tools/etcd) at
#                                         /usr/local/bin/etcd, laid out like upstream's distroless image
#   ghcr.io/multigres/multigres:v0.1.0    multigateway, multiorch, multipooler, multigres, multiadmin
#                                         (e2e/tools/multigres) in /multigres/bin on Debian + pgBackRest,
#                                         as upstream's Dockerfile at v0.1.0 (user 65532, workdir /multigres)
#   ghcr.io/multigres/pgctld:v0.1.0       /usr/local/bin/pgctld + PostgreSQL 17 + pgBackRest from Debian,
#                                         as upstream's Dockerfile.pgctld at v0.1.0 on postgres:17 (user
#                                         postgres 999:999, entrypoint `tail -f /dev/null`)
#   localhost/multigres-e2e/busybox:1.35  Debian's busybox-static, every applet in /bin; cmd `sh`
#   localhost/multigres-e2e/pause:1       the same layer running `sleep infinity`: containerd's sandbox_image
# The Debian root filesystems come from mmdebstrap (suite DEBIAN_SUITE below, from the mirror this
# machine's apt sources use); both images carry the same pgBackRest, as multipooler's pgBackRest client
# and pgctld's pgBackRest TLS server must be the same version.
#
# Output: one line on stdout, a directory holding one OCI archive per image (<image>.tar) and
# images.txt ("<image reference> <tar file name>" per line), plus versions.txt (what went in), and
# the base layer of the operator's image (operator-base.tar.gz, .tar.gz.json, .packages.txt: glibc,
# libgcc_s and CA certificates from Debian, unpacked like a distroless image), which
# operator-image.sh completes with the handler binaries. E.g.:
#   dir=$(e2e/scripts/build-images.sh)
#   while read -r ref tar; do ctr -n k8s.io images import "$dir/$tar"; done <"$dir/images.txt"
# Progress and errors go to stderr; a failed step prints the last lines of its log.
#
# Cache: ${MULTIGRES_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multigres-e2e}/images/, one entry per
# piece, each keyed by a hash of its own inputs, so a change to one rebuilds only what depends on it:
#   go-<hash>/bin/          the Multigres commands: IMAGES_RECIPE_VERSION, Go version, tools go.mod/go.sum
#   rootfs-<name>-<hash>/   a Debian root filesystem as a layer: recipe, suite, package list, hooks and
#                           the suite's InRelease (so a Debian point release rebuilds; if the mirror
#                           cannot be reached, the last InRelease seen is reused)
#   layer-busybox-<hash>/   recipe, busybox-static version and binary hash
#   image-<name>-<hash>/    one image archive: its layers' keys, etcd's binary hash, its config
#   set-<hash>/             the output directory (hard links to the image archives)
# Every entry is built in a temp dir and renamed into place; one build at a time per cache root (flock).
# Entries unused for MULTIGRES_E2E_IMAGE_CACHE_DAYS days (default 14) are removed.
# A warm run only hashes its inputs (and fetches the suite's InRelease, ~140 kB): seconds.
#
# Env: MULTIGRES_E2E_CACHE (cache root), GO (go command, default: go on PATH, else /usr/local/go/bin/go),
#      MULTIGRES_E2E_FORCE_REBUILD=1 (rebuild every image entry and its pieces; etcd itself is taken
#      from build-tools.sh as it is), MULTIGRES_E2E_TOOLS_BIN (the bin dir build-tools.sh printed:
#      skips calling it), MULTIGRES_E2E_DEBIAN_MIRROR (default: the URI of the apt source that serves
#      this machine's own Debian release), MULTIGRES_E2E_LOG_TAIL (lines shown on failure).
# Needs: root (mmdebstrap --mode=root, file ownership), mmdebstrap, busybox-static, python3, flock,
#        unshare; Go >= 1.26.
set -euo pipefail

# Bump when the build commands, the layouts or the set of outputs change.
readonly IMAGES_RECIPE_VERSION=1

readonly ETCD_REF=gcr.io/etcd-development/etcd:v3.6.14
readonly MULTIGRES_REF=ghcr.io/multigres/multigres:v0.1.0
readonly PGCTLD_REF=ghcr.io/multigres/pgctld:v0.1.0
readonly BUSYBOX_REF=localhost/multigres-e2e/busybox:1.35
readonly PAUSE_REF=localhost/multigres-e2e/pause:1

# trixie: postgresql-17 17.x and pgbackrest 2.55.x (bookworm has PostgreSQL 15 only).
readonly DEBIAN_SUITE=trixie
readonly PG_MAJOR=17
# In upstream's multigres image (Dockerfile at v0.1.0; they built with `make build-release`).
readonly MULTIGRES_COMMANDS=(multigateway multiorch multipooler multigres multiadmin)
readonly MULTIGRES_MODULE=github.com/multigres/multigres

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_DIR=$(dirname "$SCRIPT_DIR")
TOOLS_DIR="$E2E_DIR/tools"
OCI_IMAGE="$SCRIPT_DIR/oci-image.py"
readonly SCRIPT_DIR E2E_DIR TOOLS_DIR OCI_IMAGE

log() { printf '[build-images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source-path=SCRIPTDIR source=build-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/build-lib.sh"
hash16() { sha256sum | cut -c1-16; }
force() { [[ "${MULTIGRES_E2E_FORCE_REBUILD:-0}" == 1 ]]; }

# --- prerequisites --------------------------------------------------------------------------------
((EUID == 0)) || die "run as root: mmdebstrap builds the Debian root filesystems in root mode and the layers keep file owners"
for c in mmdebstrap python3 flock unshare sha256sum dpkg-query; do
  command -v "$c" >/dev/null 2>&1 || die "'$c' not found (apt-get install mmdebstrap python3 util-linux)"
done
[[ -x /usr/lib/apt/apt-helper ]] || die "/usr/lib/apt/apt-helper not found (package apt)"
bb_version=$(dpkg-query -W -f '${Status} ${Version}' busybox-static 2>/dev/null) || bb_version=
[[ "$bb_version" == "install ok installed "* ]] || die "busybox-static is not installed (apt-get install busybox-static)"
bb_version=${bb_version#install ok installed }
BUSYBOX_BIN=/bin/busybox
[[ -x "$BUSYBOX_BIN" ]] || die "$BUSYBOX_BIN not found although busybox-static is installed"

use_go
[[ "$go_platform" == linux/amd64 ]] || die "only linux/amd64 is supported (Go reports $go_platform)"

# --- cache, lock ----------------------------------------------------------------------------------
cache_root=${MULTIGRES_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multigres-e2e}
img_root="$cache_root/images"
mkdir -p "$img_root"
exec 9>"$img_root/.build.lock"
if ! flock -n 9; then
  log "another build-images.sh holds $img_root/.build.lock; waiting for it..."
  flock 9
fi
# rm that never leaves the cache's file system (a killed build may leave mount points behind: the
# Debian builds run in their own mount namespace, this is a second guard).
safe_rm() { rm -rf --one-file-system -- "$@"; }
# Leftovers of builds that were killed: safe to drop while holding the lock.
safe_rm "$img_root"/.tmp-* "$img_root"/.old-*

run_dir=$(mktemp -d "$img_root/.tmp-run.XXXXXX")
mkdir -p "$run_dir/logs"
cleanup() {
  stop_step
  safe_rm "$img_root"/.tmp-*
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

build_start=$SECONDS
STEP_LOG_DIR="$run_dir/logs" FAILURE_LOG_DIR="$img_root"
# new_tmp <label>: a temp dir in the cache (same file system as the entries, so mv is a rename).
new_tmp() {
  local d
  d=$(mktemp -d "$img_root/.tmp-$1.XXXXXX")
  chmod 0755 "$d"
  printf '%s\n' "$d"
}
# Entries published by this run: complete even with MULTIGRES_E2E_FORCE_REBUILD=1 (built once per run).
declare -A fresh=()
# publish <tmp> <entry>: marks tmp complete and renames it to entry, replacing an old one.
publish() {
  touch "$1/.complete"
  fresh[$2]=1
  if [[ -e "$2" ]]; then
    local old
    old=$(mktemp -u "$img_root/.old-XXXXXX")
    mv "$2" "$old" && safe_rm "$old"
  fi
  mv "$1" "$2"
}
complete() { [[ -f "$1/.complete" ]] && { [[ -n "${fresh[$1]:-}" ]] || ! force; }; }

# --- inputs ---------------------------------------------------------------------------------------
# mod_version <module dir> <module path>: the version required in that go.mod (no network).
mod_version() { awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$1/go.mod"; }

mg_dir="$TOOLS_DIR/multigres"
[[ -f "$mg_dir/go.mod" && -f "$mg_dir/go.sum" ]] || die "missing $mg_dir/go.mod or go.sum"
mg_version=$(mod_version "$mg_dir" "$MULTIGRES_MODULE")
[[ -n "$mg_version" ]] || die "$mg_dir/go.mod does not require $MULTIGRES_MODULE"
[[ "$mg_version" == "${MULTIGRES_REF##*:}" && "$mg_version" == "${PGCTLD_REF##*:}" ]] ||
  die "$mg_dir/go.mod requires $MULTIGRES_MODULE $mg_version but the images are tagged ${MULTIGRES_REF##*:}/${PGCTLD_REF##*:}"

go_key=$({
  printf 'recipe=%s\ngo=%s %s\ncommands=%s pgctld\nflags=-trimpath -ldflags=-s -w\n' \
    "$IMAGES_RECIPE_VERSION" "$go_version" "$go_platform" "${MULTIGRES_COMMANDS[*]}"
  cat "$mg_dir/go.mod" "$mg_dir/go.sum"
} | hash16)
go_entry="$img_root/go-$go_key"

# etcd: the binary build-tools.sh built (it waits for a build in progress, or builds), unless
# MULTIGRES_E2E_TOOLS_BIN names that bin dir already.
if [[ -n "${MULTIGRES_E2E_TOOLS_BIN:-}" ]]; then
  tools_bin=$MULTIGRES_E2E_TOOLS_BIN
else
  log "getting etcd from build-tools.sh..."
  tools_bin=$(MULTIGRES_E2E_FORCE_REBUILD=0 "$SCRIPT_DIR/build-tools.sh") || die "build-tools.sh failed (see above)"
fi
etcd_bin="$tools_bin/etcd"
[[ -x "$etcd_bin" ]] || die "$tools_bin has no etcd"
etcd_version=$("$etcd_bin" --version 2>/dev/null | awk '/^etcd Version:/ { print $3; exit }')
[[ "v$etcd_version" == "${ETCD_REF##*:}" ]] ||
  die "$etcd_bin is version '$etcd_version' but the image is tagged ${ETCD_REF##*:}: bump ETCD_REF or e2e/tools/etcd"
etcd_sha=$(sha256sum "$etcd_bin" | cut -d' ' -f1)

bb_sha=$(sha256sum "$BUSYBOX_BIN" | cut -d' ' -f1)

# The Debian mirror: MULTIGRES_E2E_DEBIAN_MIRROR, else the first apt source (one-line or deb822) that
# lists this machine's own release as a suite. Only read; the machine's apt sources are not changed.
debian_mirror() {
  if [[ -n "${MULTIGRES_E2E_DEBIAN_MIRROR:-}" ]]; then
    printf '%s\n' "${MULTIGRES_E2E_DEBIAN_MIRROR%/}"
    return
  fi
  local codename
  # shellcheck source=/dev/null
  codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
  [[ -n "$codename" ]] || return 1
  local f uri
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    if [[ "$f" == *.sources ]]; then
      uri=$(awk -v want="$codename" '
        function flush() {
          if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " want " ") && enabled != "no" && uri != "") { print uri; found = 1; exit }
          types = suites = uri = enabled = ""
        }
        /^[ \t]*$/ { flush(); next }
        /^#/ { next }
        tolower($1) == "types:"   { types = $0; sub(/^[^:]*:[ \t]*/, "", types) }
        tolower($1) == "suites:"  { suites = $0; sub(/^[^:]*:[ \t]*/, "", suites) }
        tolower($1) == "uris:"    { uri = $2 }
        tolower($1) == "enabled:" { enabled = tolower($2) }
        END { if (!found) flush() }' "$f")
    else
      uri=$(awk -v want="$codename" '
        $1 == "deb" {
          i = 2
          if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
          if ($(i + 1) == want) { print $i; exit }
        }' "$f")
    fi
    if [[ -n "$uri" ]]; then
      printf '%s\n' "${uri%/}"
      return 0
    fi
  done
  return 1
}
mirror=$(debian_mirror) || mirror=
[[ -n "$mirror" ]] || die "no Debian mirror found in /etc/apt/sources.list{,.d}: set MULTIGRES_E2E_DEBIAN_MIRROR"

# The suite's InRelease: its hash keys the root filesystems (a stable suite's InRelease changes at
# point releases), its Date is the SOURCE_DATE_EPOCH of the build. Kept, so an unreachable mirror
# still finds the cached entries.
suite_record="$img_root/suite-$DEBIAN_SUITE.InRelease"
if /usr/lib/apt/apt-helper -o APT::Sandbox::User=root download-file \
  "$mirror/dists/$DEBIAN_SUITE/InRelease" "$run_dir/InRelease" >"$run_dir/logs/inrelease.log" 2>&1; then
  if ! cmp -s "$run_dir/InRelease" "$suite_record" 2>/dev/null; then
    cp "$run_dir/InRelease" "$suite_record.tmp" && mv "$suite_record.tmp" "$suite_record"
  fi
elif [[ -f "$suite_record" ]]; then
  log "WARNING: could not fetch $mirror/dists/$DEBIAN_SUITE/InRelease; using the one fetched before:"
  sed 's/^/    /' "$run_dir/logs/inrelease.log" >&2
else
  sed 's/^/    /' "$run_dir/logs/inrelease.log" >&2
  die "could not fetch $mirror/dists/$DEBIAN_SUITE/InRelease (set MULTIGRES_E2E_DEBIAN_MIRROR?)"
fi
suite_hash=$(sha256sum "$suite_record" | cut -d' ' -f1)
suite_date=$(awk '/^Date:/ { sub(/^Date:[ \t]*/, ""); print; exit }' "$suite_record")
suite_epoch=$(date -u -d "$suite_date" +%s 2>/dev/null) || die "cannot read the Date of $suite_record"
suite_version=$(awk '/^Version:/ { print $2; exit }' "$suite_record")

# --- Debian root filesystems ----------------------------------------------------------------------
# dpkg filters: no documentation, man pages or translations (as Debian's slim images).
readonly DPKG_FILTERS=(
  'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright'
  'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*' 'path-exclude=/usr/share/groff/*'
  'path-exclude=/usr/share/lintian/*' 'path-exclude=/usr/share/linda/*'
  'path-exclude=/usr/share/locale/*' 'path-include=/usr/share/locale/locale.alias'
)

# Hooks (run by mmdebstrap with the root directory as $1). Their text is part of the cache key.
# essential: before the packages are configured, so postgresql-common's postinst finds the postgres
# user (999:999, as the postgres image creates it) and does not create a cluster.
hook_essential() {
  cat <<'EOF'
#!/bin/sh
set -eu
root=$1
case $root in "" | /) echo "refusing to work on root directory '$root'" >&2; exit 1 ;; esac
grep -q '^postgres:' "$root/etc/group" || echo 'postgres:x:999:' >>"$root/etc/group"
grep -q '^postgres:' "$root/etc/passwd" ||
  echo 'postgres:x:999:999:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash' >>"$root/etc/passwd"
mkdir -p "$root/etc/postgresql-common/createcluster.d"
echo 'create_main_cluster = false' >"$root/etc/postgresql-common/createcluster.d/no-main-cluster.conf"
EOF
}
# customize (pgctld): the en_US.UTF-8 locale (LANG of the postgres image, and pgctld's postgresql.conf
# template sets lc_messages/lc_monetary/... = 'en_US.UTF-8': postgres refuses to start without it),
# then the postgres image's directories (/run/postgresql in post_pgctld: mmdebstrap empties /run).
hook_customize_pgctld() {
  cat <<'EOF'
#!/bin/sh
set -eu
root=$1
case $root in "" | /) echo "refusing to work on root directory '$root'" >&2; exit 1 ;; esac
echo 'en_US.UTF-8 UTF-8' >"$root/etc/locale.gen"
chroot "$root" locale-gen
chroot "$root" locale -a | grep -qx 'en_US.utf8'
# locale-gen's sources; the compiled locale is in /usr/lib/locale/locale-archive.
rm -rf "$root/usr/share/i18n/charmaps" "$root/usr/share/i18n/locales"
mkdir -p "$root/var/lib/postgresql/data"
chown 999:999 "$root/var/lib/postgresql" "$root/var/lib/postgresql/data"
chmod 1777 "$root/var/lib/postgresql" "$root/var/lib/postgresql/data"
EOF
}
# post (pgctld): run by this script on the finished root directory (mmdebstrap empties /run).
hook_post_pgctld() {
  cat <<'EOF'
#!/bin/sh
set -eu
root=$1
case $root in "" | /) echo "refusing to work on root directory '$root'" >&2; exit 1 ;; esac
[ -d "$root/etc/postgresql-common" ] || { echo "$root is not the pgctld root filesystem" >&2; exit 1; }
mkdir -p "$root/run/postgresql"
chown 999:999 "$root/run/postgresql"
chmod 3777 "$root/run/postgresql"
EOF
}
# post (all): apt's partial dirs belong to _apt, as apt makes them when its sandbox user can reach the
# build directory (it cannot under /root/.cache): the same layer wherever the cache lives.
hook_post_apt() {
  cat <<'EOF'
#!/bin/sh
set -eu
root=$1
case $root in "" | /) echo "refusing to work on root directory '$root'" >&2; exit 1 ;; esac
apt_uid=$(awk -F: '$1 == "_apt" { print $3 }' "$root/etc/passwd")
for d in var/cache/apt/archives/partial var/lib/apt/lists/partial; do
  [ ! -d "$root/$d" ] || chown "${apt_uid:-0}:0" "$root/$d"
done
EOF
}
# customize (all, last): drop what the build leaves behind.
hook_customize_clean() {
  cat <<'EOF'
#!/bin/sh
set -eu
root=$1
case $root in "" | /) echo "refusing to work on root directory '$root'" >&2; exit 1 ;; esac
rm -f "$root/etc/hostname" "$root/etc/resolv.conf"
# ssl-cert's snakeoil pair: a private key generated at build time, shared by every container of the
# image (pgctld's postgresql.conf template sets ssl = off), and the one thing that differs between builds.
rm -f "$root/etc/ssl/certs/ssl-cert-snakeoil.pem" "$root/etc/ssl/private/ssl-cert-snakeoil.key"
rm -rf "$root"/var/log/apt/* "$root/var/log/dpkg.log" "$root/var/log/alternatives.log"
rm -f "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root/var/cache/ldconfig/aux-cache"
EOF
}

# extract (operator): the packages are only unpacked, so this hook does what a distroless base
# does instead of their scripts: the merged-/usr links (the binaries' interpreter is
# /lib64/ld-linux-x86-64.so.2), the CA bundle update-ca-certificates would write, the users root,
# nobody and nonroot (65532), /tmp, and each package's control record in /var/lib/dpkg/status.d
# (where image scanners look); then it drops the package manager's leftovers.
hook_extract_operator() {
  cat <<'EOF'
#!/bin/sh
set -eu
root=$1
case $root in "" | /) echo "refusing to work on root directory '$root'" >&2; exit 1 ;; esac
for d in bin lib lib64 sbin; do [ -e "$root/$d" ] || ln -s "usr/$d" "$root/$d"; done
mkdir -p "$root/etc/ssl/certs" "$root/var/lib/dpkg/status.d"
find "$root/usr/share/ca-certificates/mozilla" -name '*.crt' | LC_ALL=C sort | xargs cat >"$root/etc/ssl/certs/ca-certificates.crt"
[ -s "$root/etc/ssl/certs/ca-certificates.crt" ] || { echo "no CA certificates in $root/usr/share/ca-certificates" >&2; exit 1; }
for deb in "$root"/var/cache/apt/archives/*.deb; do
  dpkg-deb --field "$deb" >"$root/var/lib/dpkg/status.d/$(dpkg-deb --field "$deb" Package)"
done
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
  'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$root/etc/passwd"
printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' 'nonroot:x:65532:' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
install -d -m 1777 "$root/tmp"
install -d -m 0700 "$root/root"
install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
EOF
}
# post (operator): after mmdebstrap's own cleanup, what only apt and dpkg used (the runtime mounts /dev).
hook_post_operator() {
  cat <<'EOF'
#!/bin/sh
set -eu
root=$1
case $root in "" | /) echo "refusing to work on root directory '$root'" >&2; exit 1 ;; esac
[ -d "$root/var/lib/dpkg/status.d" ] || { echo "$root is not the operator root filesystem" >&2; exit 1; }
rm -rf "$root/etc/apt" "$root/var/lib/apt" "$root/var/cache/apt" "$root/var/log" "$root/etc/hostname" "$root/etc/resolv.conf"
rm -rf "$root"/dev/*
EOF
}
# rootfs spec: packages and hooks of each Debian root filesystem.
rootfs_packages() {
  case $1 in
    multigres) echo "pgbackrest procps ca-certificates" ;;
    pgctld) echo "postgresql-$PG_MAJOR pgbackrest procps ca-certificates locales less" ;;
    # What gcr.io/distroless/cc (the Dockerfile's base) holds: glibc, libgcc_s, CA certificates.
    operator) echo "libc6 libgcc-s1 ca-certificates" ;;
  esac
}
rootfs_hooks() {
  case $1 in
    multigres) echo "essential customize_clean post_apt" ;;
    pgctld) echo "essential customize_pgctld customize_clean post_apt post_pgctld" ;;
    operator) echo "extract_operator post_operator" ;;
  esac
}
# minbase: Debian's smallest installed system (dpkg, apt, a shell); extract: the packages' files
# only, no maintainer scripts and no shell, like a distroless image.
rootfs_variant() {
  case $1 in
    operator) echo extract ;;
    *) echo minbase ;;
  esac
}
rootfs_key() {
  local h
  {
    printf 'recipe=%s\nrootfs=%s\nsuite=%s %s\nvariant=%s\npackages=%s\n' \
      "$IMAGES_RECIPE_VERSION" "$1" "$DEBIAN_SUITE" "$suite_hash" "$(rootfs_variant "$1")" "$(rootfs_packages "$1")"
    printf '%s\n' "${DPKG_FILTERS[@]}"
    for h in $(rootfs_hooks "$1"); do "hook_$h"; done
  } | hash16
}

# The ensure_* functions set REPLY to their entry, building it if needed. They run in this shell
# (not in $(...)), so that an interrupt stops their step and the per-run memo sees what they built.
# ensure_rootfs <name>: the entry holding layer.tar.gz (+ .json) and packages.txt.
ensure_rootfs() {
  local name=$1 key entry tmp h
  key=$(rootfs_key "$name")
  entry="$img_root/rootfs-$name-$key"
  REPLY=$entry
  if complete "$entry"; then return; fi
  tmp=$(new_tmp "rootfs-$name")
  local -a args=(--mode=root "--variant=$(rootfs_variant "$name")" --format=directory
    "--aptopt=APT::Install-Recommends \"false\"" '--aptopt=Acquire::Languages "none"'
    "--include=$(rootfs_packages "$name" | tr ' ' ',')")
  for h in "${DPKG_FILTERS[@]}"; do args+=("--dpkgopt=$h"); done
  mkdir -p "$tmp/hooks"
  for h in $(rootfs_hooks "$name"); do
    "hook_$h" >"$tmp/hooks/$h"
    chmod 0755 "$tmp/hooks/$h"
    case $h in
      essential) args+=("--essential-hook=$tmp/hooks/$h") ;;
      extract_*) args+=("--extract-hook=$tmp/hooks/$h") ;;
      customize_*) args+=("--customize-hook=$tmp/hooks/$h") ;;
      post_*) ;;
    esac
  done
  # Its own mount namespace: mmdebstrap's mounts (/proc, /sys, /dev nodes) vanish with it, even if killed.
  run_step "rootfs-$name" "building the $name root filesystem (Debian $DEBIAN_SUITE $suite_version, mmdebstrap from $mirror)" "$tmp" \
    env SOURCE_DATE_EPOCH="$suite_epoch" unshare --mount --propagation private -- \
    mmdebstrap "${args[@]}" "$DEBIAN_SUITE" "$tmp/rootfs" "deb $mirror $DEBIAN_SUITE main"
  [[ -d "$tmp/rootfs/etc" ]] || die "mmdebstrap left no root filesystem in $tmp/rootfs"
  for h in $(rootfs_hooks "$name"); do
    [[ "$h" != post_* ]] || "$tmp/hooks/$h" "$tmp/rootfs" || die "hook $h failed on the $name root filesystem"
  done
  if [[ -d "$tmp/rootfs/var/lib/dpkg/status.d" ]]; then # extracted, not installed: no dpkg database
    cat "$tmp/rootfs/var/lib/dpkg/status.d"/* | awk '/^Package:/ { p = $2 } /^Version:/ { print p "=" $2 }' | sort >"$tmp/packages.txt"
  else
    dpkg-query --admindir="$tmp/rootfs/var/lib/dpkg" -W -f '${Package}=${Version}\n' >"$tmp/packages.txt"
  fi
  run_step "layer-$name" "packing the $name root filesystem ($(du -sh "$tmp/rootfs" | cut -f1))" "$tmp" \
    python3 "$OCI_IMAGE" layer --mtime "$suite_epoch" "$tmp/rootfs" "$tmp/layer.tar.gz"
  safe_rm "$tmp/rootfs" "$tmp/hooks"
  publish "$tmp" "$entry"
}

# pkg_version <rootfs entry> <package>
pkg_version() { awk -F= -v p="$2" '$1 == p { print $2; exit }' "$1/packages.txt"; }

# --- Go commands ----------------------------------------------------------------------------------
ensure_go() {
  REPLY=$go_entry
  if complete "$go_entry"; then return; fi
  local tmp c
  tmp=$(new_tmp go)
  local -a pkgs=()
  for c in "${MULTIGRES_COMMANDS[@]}" pgctld; do pkgs+=("$MULTIGRES_MODULE/go/cmd/$c"); done
  run_step fetch-multigres "fetching Go modules for $MULTIGRES_MODULE $mg_version" "$mg_dir" \
    "$GO" list -deps -f '{{.ImportPath}}' "${pkgs[@]}"
  mkdir -p "$tmp/bin"
  run_step go-multigres "building ${MULTIGRES_COMMANDS[*]} pgctld ($mg_version, $go_version)" "$mg_dir" \
    "$GO" build -trimpath -ldflags "-s -w" -o "$tmp/bin/" "${pkgs[@]}"
  for c in "${MULTIGRES_COMMANDS[@]}" pgctld; do
    [[ -x "$tmp/bin/$c" ]] || die "go build did not produce $c"
  done
  publish "$tmp" "$go_entry"
}

# --- busybox layer --------------------------------------------------------------------------------
busybox_key=$(printf 'recipe=%s\nbusybox-static=%s %s\n' "$IMAGES_RECIPE_VERSION" "$bb_version" "$bb_sha" | hash16)
ensure_busybox_layer() {
  local entry="$img_root/layer-busybox-$busybox_key" tmp a
  REPLY=$entry
  if complete "$entry"; then return; fi
  tmp=$(new_tmp busybox)
  local r="$tmp/root"
  install -d -m 0755 "$r" "$r/bin" "$r/etc" "$r/home" "$r/usr" "$r/usr/bin" "$r/var"
  install -d -m 1777 "$r/tmp"
  install -d -m 0700 "$r/root"
  install -m 0755 "$BUSYBOX_BIN" "$r/bin/busybox"
  for a in $("$BUSYBOX_BIN" --list); do
    [[ "$a" == busybox || "$a" == */* ]] || ln -s busybox "$r/bin/$a"
  done
  ln -s /bin/env "$r/usr/bin/env"
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$r/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$r/etc/group"
  chmod 0644 "$r/etc/passwd" "$r/etc/group"
  run_step layer-busybox "packing busybox-static $bb_version" "$tmp" \
    python3 "$OCI_IMAGE" layer "$r" "$tmp/layer.tar.gz"
  safe_rm "$r"
  publish "$tmp" "$entry"
}

# --- images ---------------------------------------------------------------------------------------
# Image configs (oci-image.py flags); part of each image's key.
readonly ETCD_CONFIG=(--workdir /var/lib/etcd/ --cmd '["/usr/local/bin/etcd"]' --expose 2379/tcp --expose 2380/tcp)
readonly MULTIGRES_CONFIG=(
  --env "PATH=/multigres/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  --workdir /multigres --user 65532:65532 --cmd '["bash"]'
  --label "org.opencontainers.image.source=https://github.com/multigres/multigres"
  --label "org.opencontainers.image.description=A single container image containing all Multigres components."
  --label "org.opencontainers.image.licenses=Apache-2.0"
)
# PG_VERSION (the Debian package's) is added at build time.
readonly PGCTLD_CONFIG=(
  --env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/$PG_MAJOR/bin"
  --env LANG=en_US.utf8 --env "PG_MAJOR=$PG_MAJOR" --env PGDATA=/var/lib/postgresql/data
  --user postgres --entrypoint '["tail"]' --cmd '["-f","/dev/null"]' --stop-signal SIGINT
  --expose 5432/tcp --volume /var/lib/postgresql/data
)
readonly BUSYBOX_CONFIG=(--cmd '["sh"]')
# As the Kubernetes pause image: a non-root user, a command that never returns.
readonly PAUSE_CONFIG=(--user 65535:65535 --entrypoint '["/bin/sleep","infinity"]')

image_key() { # <name> <ref> <input lines...>
  printf 'recipe=%s\nimage=%s\nref=%s\n' "$IMAGES_RECIPE_VERSION" "$1" "$2"
  shift 2
  printf '%s\n' "$@"
}

# make_image <name> <ref> <entry> <info> <oci-image.py image args...>: writes <entry>/image.tar,
# <entry>/ref and <entry>/info (one line: what went in).
make_image() {
  local name=$1 ref=$2 entry=$3 info=$4 tmp
  shift 4
  tmp=$(new_tmp "image-$name")
  run_step "image-$name" "writing $ref" "$tmp" python3 "$OCI_IMAGE" image --ref "$ref" --out "$tmp/image.tar" "$@"
  printf '%s\n' "$ref" >"$tmp/ref"
  printf '%s\n' "$info" >"$tmp/info"
  publish "$tmp" "$entry"
}

declare -A image_entry=()

# etcd: one layer, as gcr.io/distroless/static (root, nobody, nonroot 65532; /tmp) + etcd's Dockerfile.
k=$(image_key etcd "$ETCD_REF" "etcd=$etcd_sha" "${ETCD_CONFIG[@]}" | hash16)
e="$img_root/image-etcd-$k"
if ! complete "$e"; then
  t=$(new_tmp etcd-layer)
  r="$t/root"
  install -d -m 0755 "$r" "$r/etc" "$r/home" "$r/usr" "$r/usr/local" "$r/usr/local/bin" "$r/var" "$r/var/etcd" "$r/var/lib" "$r/var/lib/etcd"
  install -d -m 1777 "$r/tmp"
  install -d -m 0700 "$r/root"
  install -d -m 0700 -o 65532 -g 65532 "$r/home/nonroot"
  install -m 0755 "$etcd_bin" "$r/usr/local/bin/etcd"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$r/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' 'nonroot:x:65532:' >"$r/etc/group"
  printf 'hosts: files dns\n' >"$r/etc/nsswitch.conf"
  chmod 0644 "$r/etc/passwd" "$r/etc/group" "$r/etc/nsswitch.conf"
  run_step layer-etcd "packing etcd $etcd_version" "$t" python3 "$OCI_IMAGE" layer "$r" "$t/layer.tar.gz"
  make_image etcd "$ETCD_REF" "$e" "etcd=v$etcd_version (e2e/tools/etcd, sha256 ${etcd_sha:0:16})" --layer "$t/layer.tar.gz" --history "etcd $etcd_version (e2e/tools/etcd) and a distroless-like base" "${ETCD_CONFIG[@]}"
fi
image_entry[etcd]=$e

# multigres: Debian + pgBackRest, the commands in /multigres/bin.
mg_rootfs_key=$(rootfs_key multigres)
k=$(image_key multigres "$MULTIGRES_REF" "rootfs=$mg_rootfs_key" "go=$go_key" "${MULTIGRES_CONFIG[@]}" | hash16)
e="$img_root/image-multigres-$k"
if ! complete "$e"; then
  ensure_rootfs multigres
  rootfs=$REPLY
  ensure_go
  gobin=$REPLY/bin
  t=$(new_tmp multigres-layer)
  r="$t/root"
  install -d -m 0755 "$r" "$r/multigres" "$r/multigres/bin"
  for c in "${MULTIGRES_COMMANDS[@]}"; do install -m 0755 "$gobin/$c" "$r/multigres/bin/$c"; done
  run_step layer-multigres-bin "packing ${MULTIGRES_COMMANDS[*]}" "$t" python3 "$OCI_IMAGE" layer "$r" "$t/layer.tar.gz"
  make_image multigres "$MULTIGRES_REF" "$e" \
    "multigres=$mg_version ($go_version) $(grep -E '^(pgbackrest|libc6)=' "$rootfs/packages.txt" | paste -sd ' ')" \
    --layer "$rootfs/layer.tar.gz" --history "Debian $DEBIAN_SUITE minbase + $(rootfs_packages multigres) (mmdebstrap)" \
    --layer "$t/layer.tar.gz" --history "${MULTIGRES_COMMANDS[*]} $mg_version (e2e/tools/multigres, $go_version)" \
    "${MULTIGRES_CONFIG[@]}"
fi
image_entry[multigres]=$e

# pgctld: Debian + PostgreSQL 17 + pgBackRest, pgctld in /usr/local/bin.
pg_rootfs_key=$(rootfs_key pgctld)
k=$(image_key pgctld "$PGCTLD_REF" "rootfs=$pg_rootfs_key" "go=$go_key" "${PGCTLD_CONFIG[@]}" | hash16)
e="$img_root/image-pgctld-$k"
if ! complete "$e"; then
  ensure_rootfs pgctld
  rootfs=$REPLY
  ensure_go
  gobin=$REPLY/bin
  pg_version=$(pkg_version "$rootfs" "postgresql-$PG_MAJOR")
  [[ -n "$pg_version" ]] || die "postgresql-$PG_MAJOR is not in $rootfs/packages.txt"
  t=$(new_tmp pgctld-layer)
  r="$t/root"
  install -d -m 0755 "$r" "$r/usr" "$r/usr/local" "$r/usr/local/bin"
  install -m 0755 "$gobin/pgctld" "$r/usr/local/bin/pgctld"
  run_step layer-pgctld-bin "packing pgctld" "$t" python3 "$OCI_IMAGE" layer "$r" "$t/layer.tar.gz"
  make_image pgctld "$PGCTLD_REF" "$e" \
    "pgctld=$mg_version ($go_version) $(grep -E "^(postgresql-$PG_MAJOR|pgbackrest|libc6)=" "$rootfs/packages.txt" | paste -sd ' ')" \
    --layer "$rootfs/layer.tar.gz" --history "Debian $DEBIAN_SUITE minbase + $(rootfs_packages pgctld) (mmdebstrap)" \
    --layer "$t/layer.tar.gz" --history "pgctld $mg_version (e2e/tools/multigres, $go_version)" \
    "${PGCTLD_CONFIG[@]}" --env "PG_VERSION=$pg_version"
fi
image_entry[pgctld]=$e

# busybox and pause: the same layer.
k=$(image_key busybox "$BUSYBOX_REF" "layer=$busybox_key" "${BUSYBOX_CONFIG[@]}" | hash16)
e="$img_root/image-busybox-$k"
if ! complete "$e"; then
  ensure_busybox_layer
  bl=$REPLY
  make_image busybox "$BUSYBOX_REF" "$e" "busybox-static=$bb_version" --layer "$bl/layer.tar.gz" --history "busybox-static $bb_version (Debian)" "${BUSYBOX_CONFIG[@]}"
fi
image_entry[busybox]=$e

k=$(image_key pause "$PAUSE_REF" "layer=$busybox_key" "${PAUSE_CONFIG[@]}" | hash16)
e="$img_root/image-pause-$k"
if ! complete "$e"; then
  ensure_busybox_layer
  bl=$REPLY
  make_image pause "$PAUSE_REF" "$e" "busybox-static=$bb_version, sleep infinity" --layer "$bl/layer.tar.gz" --history "busybox-static $bb_version (Debian)" "${PAUSE_CONFIG[@]}"
fi
image_entry[pause]=$e

# The operator's base: a layer, not an image (operator-image.sh adds the handler binaries).
ensure_rootfs operator
op_rootfs=$REPLY

# --- the output directory -------------------------------------------------------------------------
readonly IMAGE_NAMES=(etcd multigres pgctld busybox pause)
set_key=$({
  for n in "${IMAGE_NAMES[@]}"; do printf '%s %s\n' "$n" "$(basename "${image_entry[$n]}")"; done
  printf 'operator-base %s\n' "$(basename "$op_rootfs")"
} | hash16)
set_dir="$img_root/set-$set_key"
if ! complete "$set_dir"; then
  t=$(new_tmp set)
  for n in "${IMAGE_NAMES[@]}"; do
    ln "${image_entry[$n]}/image.tar" "$t/$n.tar" 2>/dev/null || cp "${image_entry[$n]}/image.tar" "$t/$n.tar"
    printf '%s %s\n' "$(<"${image_entry[$n]}/ref")" "$n.tar" >>"$t/images.txt"
    printf '%s: %s\n' "$n" "$(<"${image_entry[$n]}/info")" >>"$t/versions.txt"
  done
  for f in layer.tar.gz layer.tar.gz.json packages.txt; do
    ln "$op_rootfs/$f" "$t/operator-base.${f#layer.}" 2>/dev/null || cp "$op_rootfs/$f" "$t/operator-base.${f#layer.}"
  done
  printf 'operator-base: %s\n' "$(grep -E '^(libc6|libgcc-s1|ca-certificates)=' "$op_rootfs/packages.txt" | paste -sd ' ')" >>"$t/versions.txt"
  publish "$t" "$set_dir"
fi

for n in "${IMAGE_NAMES[@]}"; do
  log "  $(printf '%-38s %5s  %s' "$(<"${image_entry[$n]}/ref")" "$(du -h "$set_dir/$n.tar" | cut -f1)" "$(<"${image_entry[$n]}/info")")"
done
# --- cache upkeep --------------------------------------------------------------------------------
# Entries this run used (or could rebuild from) are marked; entries unused for
# MULTIGRES_E2E_IMAGE_CACHE_DAYS days (default 14) are removed.
used=("$set_dir" "$go_entry" "$img_root/layer-busybox-$busybox_key"
  "$img_root/rootfs-multigres-$mg_rootfs_key" "$img_root/rootfs-pgctld-$pg_rootfs_key" "$op_rootfs")
for n in "${IMAGE_NAMES[@]}"; do used+=("${image_entry[$n]}"); done
for d in "${used[@]}"; do [[ ! -d "$d" ]] || touch "$d/.used"; done
prune_days=${MULTIGRES_E2E_IMAGE_CACHE_DAYS:-14}
[[ "$prune_days" =~ ^[0-9]+$ ]] || die "MULTIGRES_E2E_IMAGE_CACHE_DAYS must be a number of days"
for d in "$img_root"/go-* "$img_root"/rootfs-* "$img_root"/layer-* "$img_root"/image-* "$img_root"/set-*; do
  [[ -d "$d" ]] || continue
  stamp="$d/.used"
  [[ -e "$stamp" ]] || stamp=$d
  if [[ -n "$(find "$stamp" -maxdepth 0 -mtime +"$prune_days")" ]]; then
    log "removing $(basename "$d") from the cache (unused for more than $prune_days days)"
    safe_rm "$d"
  fi
done

log "images ready in $(fmt_duration $((SECONDS - build_start))): $set_dir"
printf '%s\n' "$set_dir"
