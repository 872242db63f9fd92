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

# --- starting processes (cluster-up.sh, node-up.sh) ----------------------------------------------
# Ports: each script records the ones it took in used_ports, so two components never share one.
used_ports=" "
# shellcheck disable=SC2016 # $0 expands in the inner bash
port_in_use() { timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$1" 2>/dev/null; }
# fixed_port <var> <env name> <default>: the port from the env or the default; must be free.
fixed_port() {
  local var=$1 env=$2 p=${!2:-$3}
  if ! [[ "$p" =~ ^[0-9]+$ ]] || ((p < 1 || p > 65535)); then die "$env must be a port number, got '$p'"; fi
  port_in_use "$p" && die "port $p ($env) is already in use on 127.0.0.1; stop that process or set $env to a free port"
  [[ "$used_ports" == *" $p "* ]] && die "port $p ($env) is also used by another component; set $env to another port"
  used_ports+="$p "
  printf -v "$var" '%s' "$p"
}
# free_port <var> <env name>: the port from the env if set and non-zero, else a free one in 20000-29999.
free_port() {
  local var=$1 env=$2 p i
  if [[ -n "${!env:-}" && "${!env}" != 0 ]]; then fixed_port "$var" "$env" ""; return; fi
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 10000))
    [[ "$used_ports" == *" $p "* ]] && continue
    port_in_use "$p" && continue
    used_ports+="$p "
    printf -v "$var" '%s' "$p"
    return 0
  done
  die "found no free port in 20000-29999 for $env"
}

# start <component> <binary> [args...]: runs the binary in its own session (setsid: own process group,
# detached from this shell's terminal), output in logs/<component>.log, pid in cluster/pids/.
# Env assignments for the process can be passed in the START_ENV array.
START_ENV=()
start() {
  local c=$1 bin=$2 deadline
  shift 2
  [[ -x "$bin" ]] || die "missing binary $bin"
  printf '%s\n' "$bin" >"$CLUSTER_DIR/bin/$c"
  rm -f "$PID_DIR/$c.pid"
  (
    cd "$CLUSTER_DIR"
    # The daemon must not inherit the callers' lock files (fd 8: node-up's, fd 9: the builds'):
    # it would hold the lock for its whole life and the next node-up would wait forever.
    exec 8>&- 9>&-
    # shellcheck disable=SC2016 # $$, $0 and $@ expand in the inner bash
    exec setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec env "$@"' \
      "$PID_DIR/$c.pid" "${START_ENV[@]}" "$bin" "$@" </dev/null >>"$LOG_DIR/$c.log" 2>&1
  ) &
  deadline=$((SECONDS + 10))
  while [[ ! -s "$PID_DIR/$c.pid" ]] && ((SECONDS < deadline)); do sleep 0.05; done
  [[ -s "$PID_DIR/$c.pid" ]] || { log_tail "$c"; die "$c did not start"; }
  started+=("$c")
  START_ENV=()
  log "started $c (pid $(<"$PID_DIR/$c.pid"), log $LOG_DIR/$c.log)"
}

# wait_until <description> <command...>: polls every 0.5 s until the command succeeds, failing with
# the log tail of any started process (the `started` array) that died meanwhile, or of all of them
# at the deadline (STARTUP_TIMEOUT seconds).
wait_until() {
  local desc=$1 t0=$SECONDS c
  shift
  local deadline=$((SECONDS + STARTUP_TIMEOUT))
  while ! "$@" >/dev/null 2>&1; do
    for c in "${started[@]}"; do
      if ! pid_of "$c" >/dev/null; then
        log "ERROR: $c exited while waiting for $desc"
        log_tail "$c"
        return 1
      fi
    done
    if ((SECONDS >= deadline)); then
      log "ERROR: timed out after ${STARTUP_TIMEOUT}s waiting for $desc"
      for c in "${started[@]}"; do log_tail "$c" 15; done
      return 1
    fi
    sleep 0.5
  done
  log "$desc ($((SECONDS - t0))s)"
}

# --- the real node (node-up.sh / node-down.sh) ----------------------------------------------------
# One kubelet with containerd, CNI, kube-proxy and CoreDNS on this machine, beside the kwok nodes.
# Its state lives under $NODE_DIR (removed by node-down); pid files are in $PID_DIR like the
# control plane's.
NODE_DIR="$CLUSTER_DIR/node"
NODE_NAME=multigres-real-node
# The label and taint that keep everything but pods that ask for it off the real node.
NODE_LABEL_KEY=multigres.com/e2e-node
NODE_LABEL_VALUE=real
# Pod network: a bridge with no route off the machine, in 198.18.0.0/15 (reserved for benchmarks,
# RFC 2544), so pod addresses are plainly local. Its gateway address is also the node's address,
# where kubelet serves the API server and CoreDNS serves the pods.
NODE_BRIDGE=mge2e0
NODE_POD_SUBNET=198.18.0.0/24
NODE_IP=198.18.0.1
SERVICE_CIDR=10.96.0.0/16
# The iptables chain that keeps node traffic on the machine (see node-up.sh).
NODE_GUARD_CHAIN=MULTIGRES-E2E-GUARD
# Start order; stopped in reverse.
NODE_COMPONENTS=(containerd local-volumes coredns api-relay kube-proxy kubelet)
# Binaries whose processes belong to the node when their command line names $NODE_DIR.
NODE_PROCESS_NAMES=(containerd containerd-shim-runc-v2 kubelet kube-proxy coredns local-volumes socat)

# node_leftovers: prints "pid name" for every process of the real node: its daemons and shims
# (by their paths under $CLUSTER_DIR) and every process in a pod's cgroup (kubepods, which only
# this kubelet creates here).
node_leftovers() {
  leftover_processes "${NODE_PROCESS_NAMES[@]}"
  local d pid
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    grep -q ':/kubepods' "$d/cgroup" 2>/dev/null || continue
    alive "$pid" && printf '%s %s\n' "$pid" "$(cat "$d/comm" 2>/dev/null || echo '?')"
  done
  return 0
}

# kill_node_leftovers: SIGKILL to whatever node_leftovers lists, then waits (10 s at most).
kill_node_leftovers() {
  local entry pid deadline=$((SECONDS + 10))
  while read -r entry; do
    [[ -n "$entry" ]] || continue
    pid=${entry%% *}
    log "killing leftover ${entry#* } (pid $pid)"
    kill -KILL "$pid" 2>/dev/null || true
  done < <(node_leftovers)
  while [[ -n "$(node_leftovers)" ]] && ((SECONDS < deadline)); do sleep 0.2; done
}

# node_netns: the network namespaces (names under /var/run/netns) holding a pod address of ours.
node_netns() {
  local f
  for f in /var/run/netns/*; do
    [[ -e "$f" ]] || continue
    grep -q " inet ${NODE_IP%.*}\." <<<"$(ip -n "${f##*/}" -4 -o addr show 2>/dev/null)" && printf '%s\n' "${f##*/}"
  done
  return 0
}

# node_mounts: mount points under $NODE_DIR.
node_mounts() {
  awk -v d="$NODE_DIR/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo
}

# remove_kubepods_cgroups: removes the (empty) cgroups the kubelet made for pods, in every hierarchy.
remove_kubepods_cgroups() {
  local root
  for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d "$root" ]] || continue
    find "$root" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

# remove_kube_chains: deletes every KUBE-* chain (IPv4 and IPv6, every table) with the rules that
# jump to it. Only this node's kubelet and kube-proxy create them on this machine.
remove_kube_chains() {
  local cmd table chain rule
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null 2>&1 || continue
    for table in filter nat mangle raw; do
      mapfile -t chains < <("$cmd" -w -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }')
      ((${#chains[@]} > 0)) || continue
      for chain in "${chains[@]}"; do
        while read -r rule; do
          # eval: iptables -S quotes comments with spaces, as a shell would.
          [[ -n "$rule" ]] && eval "$cmd -w -t $table -D ${rule#-A }" 2>/dev/null
        done < <("$cmd" -w -t "$table" -S 2>/dev/null | grep -E -- "^-A [A-Z]+ .*-j $chain( |\$)" | grep -v -- "^-A KUBE-")
      done
      for chain in "${chains[@]}"; do "$cmd" -w -t "$table" -F "$chain" 2>/dev/null || true; done
      for chain in "${chains[@]}"; do "$cmd" -w -t "$table" -X "$chain" 2>/dev/null || true; done
    done
  done
}
