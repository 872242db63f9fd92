# shellcheck shell=bash
# Shared helpers for cluster-up.sh / cluster-down.sh. Source it; it defines functions and paths only.
#
# State layout (everything under $WORK_DIR, default <repo>/e2e/.work, env MULTIGRES_E2E_WORK):
#   kubeconfig, env          outputs of cluster-up (removed by cluster-down)
#   cluster/                 live cluster state, removed by cluster-down:
#     pids/<component>.pid   pid of the component; it is a session and process group leader (setsid)
#     bin/<component>        the binary path the component was started from (for pid checks)
#     pki/ config/ data/     certificates, config files, etcd and Tempo data
#     state                  ports and bin dir of the running cluster (sourceable)
#   logs/<component>.log     process logs; kept after cluster-down, cleared by the next cluster-up

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_DIR=$(dirname "$LIB_DIR")
WORK_DIR=${MULTIGRES_E2E_WORK:-$E2E_DIR/.work}
CLUSTER_DIR="$WORK_DIR/cluster"
PID_DIR="$CLUSTER_DIR/pids"
LOG_DIR="$WORK_DIR/logs"

# Components in start order.
COMPONENTS=(tempo etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
# Stop order, one group at a time (a group is stopped in parallel):
#  - the API server's clients first: kube-apiserver waits up to ~60 s for open watches to end;
#  - then kube-apiserver: its shutdown flushes its trace exporter (hangs if Tempo is gone) and
#    needs etcd;
#  - then etcd and Tempo.
STOP_GROUPS=("kwok kube-scheduler kube-controller-manager" "kube-apiserver" "etcd tempo")

: "${LOG_PREFIX:=e2e}"
log() { printf '[%s] %s\n' "$LOG_PREFIX" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# alive <pid>: the process exists and is not a zombie waiting to be reaped.
alive() {
  local stat
  kill -0 "$1" 2>/dev/null || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  [[ "${stat:0:1}" != Z ]]
}

# pid_of <component>: prints the recorded pid if that process is alive and still runs the binary
# it was started from (guards against pid reuse); returns 1 otherwise.
pid_of() {
  local c=$1 pid exe want
  [[ -f "$PID_DIR/$c.pid" ]] || return 1
  pid=$(<"$PID_DIR/$c.pid")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  if [[ -f "$CLUSTER_DIR/bin/$c" ]]; then
    want=$(<"$CLUSTER_DIR/bin/$c")
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || exe=
    exe=${exe% (deleted)}
    # /proc may be unreadable (other user, no procfs): then trust the pid file.
    if [[ -n "$exe" && "$(basename "$exe")" != "$(basename "$want")" ]]; then
      return 1
    fi
  fi
  printf '%s\n' "$pid"
}

# leftover_processes [component...]: prints "pid component" for every live process that runs one of
# our binaries (default: any component) with an argument under $CLUSTER_DIR (each component gets its
# config or data path there), whether or not a pid file names it. Another checkout's cluster has
# another $CLUSTER_DIR and is not listed.
leftover_processes() {
  local d pid exe name cmdline
  local want=" ${*:-${COMPONENTS[*]}} "
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    exe=$(readlink "$d/exe" 2>/dev/null) || continue
    name=$(basename "${exe% (deleted)}")
    [[ "$want" == *" $name "* ]] || continue
    cmdline=$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null) || continue
    [[ "$cmdline" == *"$CLUSTER_DIR/"* ]] || continue
    alive "$pid" && printf '%s %s\n' "$pid" "$name"
  done
  return 0
}

# log_tail <component> [lines]: prints the end of a component's log, indented, to stderr.
log_tail() {
  local f="$LOG_DIR/$1.log"
  if [[ -s "$f" ]]; then
    log "last lines of $f:"
    tail -n "${2:-${MULTIGRES_E2E_LOG_TAIL:-40}}" "$f" | sed 's/^/    /' >&2
  else
    log "($f is empty or missing)"
  fi
}

# grace_for <component> <grace seconds>: the SIGTERM grace period of that component. Tempo gets at
# most MULTIGRES_E2E_TEMPO_STOP_TIMEOUT (default 10 s): its metrics-generator always sleeps 5 s in
# shutdown, and once a search ran, its query-frontend never finishes stopping (seen with the pinned
# Tempo); its data is discarded anyway.
grace_for() {
  local t=${MULTIGRES_E2E_TEMPO_STOP_TIMEOUT:-10}
  if [[ "$1" == tempo ]] && (($2 > t)); then echo "$t"; else echo "$2"; fi
}

# stop_group <grace seconds> <component>...: SIGTERM to each component (its recorded pid, plus any
# process of that component running with our paths but without a pid file), all at once so they shut
# down in parallel; SIGKILL to those still running after the grace period. A component started by
# cluster-up is a process group leader (setsid), so the signal goes to its group: any child it forked
# goes with it. Returns 1 if a process survived SIGKILL.
stop_group() {
  local grace=$1 c pid i deadline t0=$SECONDS rc=0 entry
  shift
  local -a names=() pids=()
  for c in "$@"; do
    if pid=$(pid_of "$c"); then
      log "stopping $c (pid $pid)"
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      names+=("$c")
      pids+=("$pid")
    fi
    rm -f "$PID_DIR/$c.pid"
  done
  while read -r entry; do
    [[ -n "$entry" ]] || continue
    pid=${entry%% *}
    [[ " ${pids[*]} " == *" $pid "* ]] && continue
    log "stopping leftover ${entry#* } process (pid $pid, not in a pid file)"
    kill -TERM "$pid" 2>/dev/null || true
    names+=("${entry#* }")
    pids+=("$pid")
  done < <(leftover_processes "$@")
  ((${#pids[@]} > 0)) || return 0

  local g start=$SECONDS
  for i in "${!pids[@]}"; do
    g=$(grace_for "${names[i]}" "$grace")
    while alive "${pids[i]}" && ((SECONDS < start + g)); do sleep 0.1; done
    if alive "${pids[i]}"; then
      if [[ "${names[i]}" == tempo ]]; then
        log "tempo (pid ${pids[i]}) still running after ${g}s (expected: its shutdown hangs, see grace_for); sending SIGKILL"
      else
        log "${names[i]} (pid ${pids[i]}) still running after ${g}s; sending SIGKILL"
      fi
      kill -KILL -- "-${pids[i]}" 2>/dev/null || kill -KILL "${pids[i]}" 2>/dev/null || true
    fi
  done
  for i in "${!pids[@]}"; do
    deadline=$((SECONDS + 10))
    while alive "${pids[i]}" && ((SECONDS < deadline)); do sleep 0.1; done
    if alive "${pids[i]}"; then
      log "ERROR: ${names[i]} (pid ${pids[i]}) survived SIGKILL"
      rc=1
    fi
    # Leftover members of its process group (none expected) get SIGKILL too.
    kill -KILL -- "-${pids[i]}" 2>/dev/null || true
  done
  ((rc != 0)) || log "stopped ${names[*]} in $((SECONDS - t0))s"
  return "$rc"
}

# stop_all [grace seconds]: stops every component, group by group (STOP_GROUPS). Returns 1 if a
# process survived.
stop_all() {
  local grace=${1:-${MULTIGRES_E2E_STOP_TIMEOUT:-20}} group rc=0
  for group in "${STOP_GROUPS[@]}"; do
    # shellcheck disable=SC2086 # a group is a space-separated list of component names
    stop_group "$grace" $group || rc=1
  done
  return "$rc"
}
