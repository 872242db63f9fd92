#!/usr/bin/env bash
# Installs the Debian packages the project's scripts call, when they are missing, and checks
# the toolchains that cannot be installed from here (Rust with rustfmt/clippy, Go >= 1.26).
set -euo pipefail

need_pkgs=()
# command:package. The second group runs the real node of the local control plane
# (e2e/scripts/node-up.sh) and builds its images (e2e/scripts/build-images.sh).
for cmd_pkg in curl:curl openssl:openssl jq:jq \
  containerd:containerd runc:runc /usr/lib/cni/bridge:containernetworking-plugins \
  iptables:iptables conntrack:conntrack socat:socat mmdebstrap:mmdebstrap /bin/busybox:busybox-static; do
  cmd=${cmd_pkg%%:*}; pkg=${cmd_pkg#*:}
  if [[ "$cmd" == /* ]]; then [[ -x "$cmd" ]] && continue; else command -v "$cmd" >/dev/null 2>&1 && continue; fi
  need_pkgs+=("$pkg")
done
if ((${#need_pkgs[@]})); then
  echo "[deps] installing ${need_pkgs[*]} with apt-get" >&2
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

fail() { echo "[deps] $*" >&2; exit 1; }
command -v cargo >/dev/null || fail "cargo not found: install Rust (https://rustup.rs)"
cargo fmt --version >/dev/null 2>&1 || fail "rustfmt missing: rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 || fail "clippy missing: rustup component add clippy"
command -v go >/dev/null || fail "go not found: the local control plane is built with Go >= 1.26"
go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
[[ $go_minor -ge 26 ]] || fail "Go $(go env GOVERSION) is too old: the local control plane needs Go >= 1.26"
