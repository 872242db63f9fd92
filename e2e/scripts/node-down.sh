#!/usr/bin/env bash
# Stops the real node that node-up.sh started and removes what it left on this machine: the kubelet
# first (so it restarts nothing), then every container (killed through containerd), kube-proxy
# (and its iptables rules, with `kube-proxy --cleanup`), the API server relay, CoreDNS, the volume provisioner and
# containerd with its shims; then the pods' network namespaces, the guard chain, the bridge, the
# mounts under the node's directory and the directory itself; the two sysctls it switched on get
# their previous values back. Finally it checks that nothing is left (processes, mounts, network
# devices, namespaces, iptables chains) and fails naming what is.
#
# The control plane keeps running (cluster-down.sh calls this first). Harmless when no node runs.
# Options: --quiet (no "nothing to stop" message). Env: MULTIGRES_E2E_WORK, MULTIGRES_E2E_STOP_TIMEOUT.
set -euo pipefail

: "${LOG_PREFIX:=node-down}"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

quiet=0
for arg in "$@"; do
  case "$arg" in
    --quiet) quiet=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument '$arg' (see --help)" ;;
  esac
done
grace=${MULTIGRES_E2E_STOP_TIMEOUT:-20}

if [[ ! -d "$NODE_DIR" && -z "$(node_leftovers)" ]]; then
  ((quiet)) || log "no real node running; nothing to stop"
  exit 0
fi
((EUID == 0)) || die "stopping the real node needs root"

IP_FORWARD_BEFORE= BRIDGE_NF_BEFORE= NODE_BIN=
# shellcheck source=/dev/null
[[ -f "$NODE_DIR/state" ]] && source "$NODE_DIR/state"
CONTAINERD_SOCK="$NODE_DIR/containerd/containerd.sock"
ctr_() { timeout 20 ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

rc=0
stop_group "$grace" kubelet || rc=1

# Containers: killed and removed through containerd while it still runs.
if [[ -S "$CONTAINERD_SOCK" ]] && ctr_ version >/dev/null 2>&1; then
  mapfile -t tasks < <(ctr_ tasks ls -q 2>/dev/null)
  for t in "${tasks[@]}"; do ctr_ tasks kill -a -s SIGKILL "$t" >/dev/null 2>&1 || true; done
  for t in "${tasks[@]}"; do ctr_ tasks delete -f "$t" >/dev/null 2>&1 || true; done
  ((${#tasks[@]} == 0)) || log "killed ${#tasks[@]} container task(s)"
fi
stop_group "$grace" kube-proxy api-relay coredns local-volumes || rc=1
stop_group "$grace" containerd || rc=1
kill_node_leftovers

# kube-proxy's rules (all its modes), then the guard chain.
if [[ -n "$NODE_BIN" && -x "$NODE_BIN/kube-proxy" ]]; then
  "$NODE_BIN/kube-proxy" --cleanup >>"$LOG_DIR/kube-proxy-cleanup.log" 2>&1 ||
    log "kube-proxy --cleanup failed (see $LOG_DIR/kube-proxy-cleanup.log)"
fi
# The kubelet's canary chains (KUBE-KUBELET-CANARY and the like) are not kube-proxy's to clean.
remove_kube_chains
for hook in FORWARD OUTPUT; do
  while iptables -w -D "$hook" -j "$NODE_GUARD_CHAIN" 2>/dev/null; do :; done
done
iptables -w -F "$NODE_GUARD_CHAIN" 2>/dev/null && iptables -w -X "$NODE_GUARD_CHAIN" 2>/dev/null || true

for ns in $(node_netns); do
  ip netns delete "$ns" 2>/dev/null || { umount "/var/run/netns/$ns" 2>/dev/null; rm -f "/var/run/netns/$ns"; }
done
ip link delete "$NODE_BRIDGE" 2>/dev/null || true
[[ -z "$IP_FORWARD_BEFORE" ]] || echo "$IP_FORWARD_BEFORE" >/proc/sys/net/ipv4/ip_forward
[[ -z "$BRIDGE_NF_BEFORE" ]] || echo "$BRIDGE_NF_BEFORE" >/proc/sys/net/bridge/bridge-nf-call-iptables

# Mounts under the node's directory (volumes, secrets, container root filesystems), deepest first.
if [[ -d "$NODE_DIR" ]]; then
  for m in $(node_mounts | sort -r); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
fi
remove_kubepods_cgroups

# What is left is an error, named.
left=()
mapfile -t procs < <(node_leftovers)
((${#procs[@]} == 0)) || left+=("processes (pid name): ${procs[*]}")
mapfile -t mounts < <(node_mounts)
((${#mounts[@]} == 0)) || left+=("mounts: ${mounts[*]}")
mapfile -t netns < <(node_netns)
((${#netns[@]} == 0)) || left+=("network namespaces: ${netns[*]}")
ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && left+=("network device $NODE_BRIDGE")
iptables -w -S "$NODE_GUARD_CHAIN" >/dev/null 2>&1 && left+=("iptables chain $NODE_GUARD_CHAIN")
grep -q '^:KUBE-' <<<"$(iptables-save 2>/dev/null)" && left+=("KUBE-* iptables chains")
if ((${#left[@]} > 0)); then
  for l in "${left[@]}"; do log "ERROR: left behind: $l"; done
  log "keeping $NODE_DIR"
  exit 1
fi
((rc == 0)) || exit 1
[[ ! -d "$NODE_DIR" ]] || rm -rf --one-file-system "$NODE_DIR"
for c in "${NODE_COMPONENTS[@]}"; do rm -f "$PID_DIR/$c.pid" "$CLUSTER_DIR/bin/$c"; done
log "real node stopped; nothing of it is left running (logs kept in $LOG_DIR)"
