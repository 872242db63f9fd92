#!/usr/bin/env bash
# Builds the binaries of the local e2e control plane from the Go tools modules under e2e/tools/.
# Usage: build-tools.sh [control-plane|node] (default control-plane).
#   control-plane:
#     k8s/     kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (k8s.io/kubernetes)
#     etcd/    etcd (go.etcd.io/etcd/server/v3)
#     kwok/    kwok (sigs.k8s.io/kwok/cmd/kwok) + its default Stage objects (share/kwok-stages.yaml)
#     tempo/   tempo (github.com/grafana/tempo/cmd/tempo)
#   node (the real node, e2e/scripts/node-up.sh):
#     k8s/     kubelet, kube-proxy
#     coredns/ coredns (github.com/coredns/coredns)
#
# Output: ${MULTIGRES_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multigres-e2e}/<hash>/bin (control
# plane) or .../node-<hash>/bin (node), where <hash> covers the target's tools go.mod/go.sum files,
# BUILD_RECIPE_VERSION and the Go version, so any version bump rebuilds. The bin dir path is the
# only line printed on stdout; progress goes to stderr.
# A build goes to a temp dir that is renamed into place at the end, so an interrupted build never
# leaves a half-filled cache entry. When the entry exists, the script returns at once.
#
# Env: MULTIGRES_E2E_CACHE (cache root), GO (go command, default: go on PATH, else /usr/local/go/bin/go),
#      MULTIGRES_E2E_FORCE_REBUILD=1 (rebuild even if the entry exists).
set -euo pipefail

# Bump when the build commands, flags or the set of outputs change.
readonly BUILD_RECIPE_VERSION=1

TARGET=${1:-control-plane}
case "$TARGET" in
  control-plane)
    readonly BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok tempo)
    readonly MODULES=(k8s etcd kwok tempo) ENTRY_PREFIX=
    ;;
  node)
    readonly BINARIES=(kubelet kube-proxy coredns)
    readonly MODULES=(k8s coredns) ENTRY_PREFIX=node-
    ;;
  *)
    printf '[build-tools] ERROR: unknown target %s (control-plane or node)\n' "$TARGET" >&2
    exit 2
    ;;
esac

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_DIR=$(dirname "$SCRIPT_DIR")
TOOLS_DIR="$E2E_DIR/tools"
readonly SCRIPT_DIR E2E_DIR TOOLS_DIR

log() { printf '[build-tools] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck source-path=SCRIPTDIR source=build-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/build-lib.sh"

# --- Go toolchain ---------------------------------------------------------------------------------
use_go

# --- cache key ------------------------------------------------------------------------------------
cache_root=${MULTIGRES_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multigres-e2e}
key_input() {
  printf 'recipe=%s\ngo=%s %s\nbinaries=%s\n' "$BUILD_RECIPE_VERSION" "$go_version" "$go_platform" "${BINARIES[*]}"
  local mod f
  for mod in "${MODULES[@]}"; do
    for f in go.mod go.sum; do
      [[ -f "$TOOLS_DIR/$mod/$f" ]] || die "missing $TOOLS_DIR/$mod/$f"
      printf '== %s/%s\n' "$mod" "$f"
      cat "$TOOLS_DIR/$mod/$f"
    done
  done
}
hash=$(key_input | sha256sum | cut -c1-16)
entry="$cache_root/$ENTRY_PREFIX$hash"
bin_dir="$entry/bin"

entry_complete() {
  [[ -f "$1/.complete" ]] || return 1
  [[ "$TARGET" != control-plane || -f "$1/share/kwok-stages.yaml" ]] || return 1
  local b
  for b in "${BINARIES[@]}"; do [[ -x "$1/bin/$b" ]] || return 1; done
}

if [[ "${MULTIGRES_E2E_FORCE_REBUILD:-0}" != 1 ]] && entry_complete "$entry"; then
  log "binaries up to date in $bin_dir"
  printf '%s\n' "$bin_dir"
  exit 0
fi

mkdir -p "$cache_root"
# One build at a time per cache root; a second caller waits and then finds the entry complete.
exec 9>"$cache_root/.build.lock"
if ! flock -n 9; then
  log "another build-tools.sh holds $cache_root/.build.lock; waiting for it..."
  flock 9
fi
if [[ "${MULTIGRES_E2E_FORCE_REBUILD:-0}" != 1 ]] && entry_complete "$entry"; then
  log "binaries up to date in $bin_dir (built by a concurrent run)"
  printf '%s\n' "$bin_dir"
  exit 0
fi

# Leftovers of builds that were killed (SIGKILL, power loss): safe to drop while holding the lock.
rm -rf "$cache_root"/.tmp-* "$cache_root"/.old-*
tmp=$(mktemp -d "$cache_root/.tmp-$ENTRY_PREFIX$hash.XXXXXX")
cleanup() {
  stop_step
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'log "interrupted; nothing was written to $entry"; exit 130' INT TERM
mkdir -p "$tmp/bin" "$tmp/share" "$tmp/logs"

# --- steps ----------------------------------------------------------------------------------------
build_start=$SECONDS
STEP_LOG_DIR="$tmp/logs" FAILURE_LOG_DIR="$cache_root"
# mod_version <module dir> <module path>: the version required in that go.mod (no network).
mod_version() {
  awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$1/go.mod"
}

k8s_dir="$TOOLS_DIR/k8s"
k8s_version=$(mod_version "$k8s_dir" k8s.io/kubernetes)
[[ -n "$k8s_version" ]] || die "could not read the pinned k8s.io/kubernetes version from $k8s_dir/go.mod"
log "building $TARGET into $entry (Go $go_version, $go_platform; module cache $("$GO" env GOMODCACHE))"

# Version stamp as kubernetes' hack/lib/version.sh does; without it /version reports v0.0.0-master.
k8s_minor=${k8s_version#v1.}
k8s_minor=${k8s_minor%%.*}
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean"
done
# build_k8s <command>...: fetches the modules first (so slow network and compile time show apart),
# then builds each command of k8s.io/kubernetes/cmd.
build_k8s() {
  local c pkgs=()
  for c in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  run_step "fetch-k8s-$TARGET" "fetching Go modules for k8s $k8s_version" "$k8s_dir" \
    "$GO" list -deps -f '' "${pkgs[@]}"
  for c in "$@"; do
    run_step "$c" "building $c (k8s $k8s_version)" "$k8s_dir" \
      "$GO" build -trimpath -ldflags "$k8s_ldflags" -o "$tmp/bin/$c" "k8s.io/kubernetes/cmd/$c"
  done
}

build_control_plane() {
  local etcd_dir="$TOOLS_DIR/etcd" kwok_dir="$TOOLS_DIR/kwok" tempo_dir="$TOOLS_DIR/tempo"
  local etcd_version kwok_version tempo_version kwok_src
  etcd_version=$(mod_version "$etcd_dir" go.etcd.io/etcd/server/v3)
  kwok_version=$(mod_version "$kwok_dir" sigs.k8s.io/kwok)
  tempo_version=$(mod_version "$tempo_dir" github.com/grafana/tempo)
  [[ -n "$etcd_version" && -n "$kwok_version" && -n "$tempo_version" ]] ||
    die "could not read the pinned versions from $TOOLS_DIR/*/go.mod"

  build_k8s kube-apiserver kube-controller-manager kube-scheduler kubectl
  run_step fetch-etcd "fetching Go modules for etcd $etcd_version" "$etcd_dir" \
    "$GO" list -deps -f '' go.etcd.io/etcd/server/v3
  run_step etcd "building etcd $etcd_version" "$etcd_dir" \
    "$GO" build -trimpath -ldflags "-s -w" -o "$tmp/bin/etcd" go.etcd.io/etcd/server/v3

  run_step fetch-kwok "fetching Go modules for kwok $kwok_version" "$kwok_dir" \
    "$GO" list -deps -f '' sigs.k8s.io/kwok/cmd/kwok
  run_step kwok "building kwok $kwok_version" "$kwok_dir" \
    "$GO" build -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${kwok_version#v}" \
    -o "$tmp/bin/kwok" sigs.k8s.io/kwok/cmd/kwok

  # kwok only simulates what its Stage objects describe; these are the defaults kwokctl installs
  # (pkg/kwokctl/runtime/cluster.go): node init + heartbeat with lease, pod ready/complete/delete.
  log "extracting kwok default stages..."
  kwok_src=$(cd "$kwok_dir" && "$GO" list -m -f '{{.Dir}}' sigs.k8s.io/kwok) || die "'go list -m sigs.k8s.io/kwok' failed"
  [[ -n "$kwok_src" && -d "$kwok_src/kustomize/stage" ]] || die "kwok stages not found in the module dir '$kwok_src'"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    [[ -f "$kwok_src/kustomize/stage/$f" ]] || die "missing kwok stage $kwok_src/kustomize/stage/$f"
    printf -- '---\n# from sigs.k8s.io/kwok@%s kustomize/stage/%s\n' "$kwok_version" "$f"
    cat "$kwok_src/kustomize/stage/$f"
  done >"$tmp/share/kwok-stages.yaml"

  run_step fetch-tempo "fetching Go modules for tempo $tempo_version" "$tempo_dir" \
    "$GO" list -deps -f '' github.com/grafana/tempo/cmd/tempo
  run_step tempo "building tempo $tempo_version" "$tempo_dir" \
    "$GO" build -trimpath -ldflags "-s -w -X main.Version=$tempo_version -X main.Revision=${tempo_version##*-}" -o "$tmp/bin/tempo" github.com/grafana/tempo/cmd/tempo
  printf 'k8s=%s\netcd=%s\nkwok=%s\ntempo=%s\n' "$k8s_version" "$etcd_version" "$kwok_version" "$tempo_version" \
    >"$tmp/versions.txt"
}

build_node() {
  local coredns_dir="$TOOLS_DIR/coredns" coredns_version
  coredns_version=$(mod_version "$coredns_dir" github.com/coredns/coredns)
  [[ -n "$coredns_version" ]] || die "could not read the pinned CoreDNS version from $coredns_dir/go.mod"

  build_k8s kubelet kube-proxy
  run_step fetch-coredns "fetching Go modules for coredns $coredns_version" "$coredns_dir" \
    "$GO" list -deps -f '' github.com/coredns/coredns
  run_step coredns "building coredns $coredns_version" "$coredns_dir" \
    "$GO" build -trimpath -ldflags "-s -w" -o "$tmp/bin/coredns" github.com/coredns/coredns
  printf 'k8s=%s\ncoredns=%s\n' "$k8s_version" "$coredns_version" >"$tmp/versions.txt"
}

if [[ "$TARGET" == control-plane ]]; then build_control_plane; else build_node; fi

# --- publish atomically ---------------------------------------------------------------------------
printf 'target=%s\ngo=%s %s\nrecipe=%s\n' "$TARGET" "$go_version" "$go_platform" "$BUILD_RECIPE_VERSION" >>"$tmp/versions.txt"
touch "$tmp/.complete"
entry_complete "$tmp" || die "internal error: build finished but outputs are missing in $tmp"
if [[ -e "$entry" ]]; then
  # Only reachable with MULTIGRES_E2E_FORCE_REBUILD=1 or an incomplete leftover: move it aside first.
  old="$cache_root/.old-$hash.$$"
  mv "$entry" "$old" && rm -rf "$old"
fi
mv "$tmp" "$entry"
trap - EXIT
log "all binaries built in $(fmt_duration $((SECONDS - build_start))): $bin_dir"
printf '%s\n' "$bin_dir"
