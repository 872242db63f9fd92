#!/usr/bin/env bash
# Stops everything e2e/scripts/cluster-up.sh started and removes the cluster's data.
# The real node (node-up.sh), if one runs, is stopped first by node-down.sh.
#
# Each process is stopped by its recorded pid (SIGTERM to its process group, SIGKILL after
# MULTIGRES_E2E_STOP_TIMEOUT seconds, default 20): first kwok, kube-scheduler and
# kube-controller-manager, then kube-apiserver, then etcd and Tempo. Processes that run one of our
# binaries with arguments under this work dir but lost their pid file are stopped the same way.
# Finally it checks that no such process is left.
# Then .work/cluster/, .work/kubeconfig and .work/env are removed; .work/logs/ is kept for
# post-mortems (the next cluster-up clears it). Harmless when nothing runs.
#
# Options: --quiet (no "nothing to stop" message), --keep-logs (accepted for symmetry; logs are
# always kept). Env: MULTIGRES_E2E_WORK, MULTIGRES_E2E_STOP_TIMEOUT (20),
# MULTIGRES_E2E_TEMPO_STOP_TIMEOUT (10; the pinned Tempo often needs SIGKILL, see lib.sh grace_for).
set -euo pipefail

: "${LOG_PREFIX:=cluster-down}"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

quiet=0
for arg in "$@"; do
  case "$arg" in
    --quiet) quiet=1 ;;
    --keep-logs) ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument '$arg' (see --help)" ;;
  esac
done

grace=${MULTIGRES_E2E_STOP_TIMEOUT:-20}
[[ "$grace" =~ ^[0-9]+$ ]] || die "MULTIGRES_E2E_STOP_TIMEOUT must be a number of seconds, got '$grace'"

had_state=0
[[ -d "$CLUSTER_DIR" || -f "$WORK_DIR/kubeconfig" || -f "$WORK_DIR/env" ]] && had_state=1
[[ -n "$(leftover_processes)" ]] && had_state=1

rc=0
# The real node first: its kubelet and proxies are clients of the API server.
LOG_PREFIX=cluster-down "$LIB_DIR/node-down.sh" --quiet || rc=1
stop_all "$grace" || rc=1

# Verify: nothing of ours may be left.
mapfile -t left < <(leftover_processes)
if ((${#left[@]} > 0)); then
  log "ERROR: processes still running after stop (pid component): ${left[*]}"
  rc=1
fi
if ((rc != 0)); then
  log "keeping $CLUSTER_DIR because some processes could not be stopped"
  exit 1
fi

rm -rf "$CLUSTER_DIR"
rm -f "$WORK_DIR/kubeconfig" "$WORK_DIR/env"
if ((had_state)); then
  log "cluster stopped; data removed (logs kept in $LOG_DIR)"
elif ((quiet == 0)); then
  log "no cluster running; nothing to stop"
fi
