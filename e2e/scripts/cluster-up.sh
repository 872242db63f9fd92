#!/usr/bin/env bash
# Starts the local e2e control plane and trace backend on 127.0.0.1:
#   Tempo (OTLP gRPC + HTTP receivers, also on the real node's bridge address for its pods; query
#   API), etcd, kube-apiserver (client-cert admin, RBAC,
#   ServiceAccount tokens, tracing to Tempo), kube-controller-manager (with its hostPath volume
#   provisioner and a default StorageClass, so StatefulSet claims bind), kube-scheduler and kwok with
#   fake Ready nodes, so Deployments and StatefulSets get Running/Ready pods without containers.
#
# Binaries come from e2e/scripts/build-tools.sh (built on first use). State lives under
# $MULTIGRES_E2E_WORK (default <repo>/e2e/.work): the admin kubeconfig (.work/kubeconfig), a sourceable
# env file (.work/env), logs (.work/logs/) and the cluster's data (.work/cluster/, removed by
# cluster-down.sh). Returns once the API server is ready, the nodes are Ready, the default
# ServiceAccount exists and Tempo is ready. Running it again while the cluster is up reports it and
# changes nothing; a partly dead cluster is stopped and started afresh.
#
# stdout: `export KUBECONFIG=...` and `export TEMPO_URL=...` (so `eval "$(cluster-up.sh)"` works);
# progress and errors go to stderr.
#
# Ports (env, default): MULTIGRES_E2E_TEMPO_HTTP_PORT (3200), MULTIGRES_E2E_OTLP_GRPC_PORT (4317),
#   MULTIGRES_E2E_OTLP_HTTP_PORT (4318), MULTIGRES_E2E_TEMPO_GRPC_PORT (9095; Tempo's internal gRPC),
#   MULTIGRES_E2E_APISERVER_PORT, MULTIGRES_E2E_ETCD_PORT, MULTIGRES_E2E_ETCD_PEER_PORT,
#   MULTIGRES_E2E_KCM_PORT, MULTIGRES_E2E_SCHEDULER_PORT, MULTIGRES_E2E_KWOK_PORT
#   (these six: a free port in 20000-29999 when unset or 0).
# Other env: MULTIGRES_E2E_NODES (3, in zones zone-a, zone-b, zone-c, ...; at most 100),
#   MULTIGRES_E2E_NODE_PODS (110, the kubelet default: pods each node holds; `make bench` raises it),
#   MULTIGRES_E2E_CONTROLLER_QPS (unset: the components' defaults; the API request rate of
#   kube-controller-manager and kube-scheduler, burst twice that),
#   MULTIGRES_E2E_APISERVER_SAMPLING (1000000: the API server's sampling rate per million for
#   requests that carry no sampled traceparent; requests from a traced operator are always traced,
#   as the API server samples parent-based; `make bench` sets 0), MULTIGRES_E2E_STARTUP_TIMEOUT (180 s per wait),
#   MULTIGRES_E2E_REAL_NODE=1 (also start the real node of node-up.sh, where pods run for real;
#   needs root), MULTIGRES_E2E_KEEP_ON_FAILURE=1 (leave processes running after a failed start),
#   MULTIGRES_E2E_WORK, MULTIGRES_E2E_CACHE (see build-tools.sh).
set -euo pipefail

LOG_PREFIX=cluster-up
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

STARTUP_TIMEOUT=${MULTIGRES_E2E_STARTUP_TIMEOUT:-180}
NODE_COUNT=${MULTIGRES_E2E_NODES:-3}
[[ "$NODE_COUNT" =~ ^[1-9][0-9]*$ ]] && ((NODE_COUNT <= 100)) ||
  die "MULTIGRES_E2E_NODES must be an integer from 1 to 100, got '$NODE_COUNT'"
NODE_PODS=${MULTIGRES_E2E_NODE_PODS:-110}
[[ "$NODE_PODS" =~ ^[1-9][0-9]*$ ]] && ((NODE_PODS <= 60000)) ||
  die "MULTIGRES_E2E_NODE_PODS must be an integer from 1 to 60000 (a node's /16 of pod IPs), got '$NODE_PODS'"
CONTROLLER_QPS=${MULTIGRES_E2E_CONTROLLER_QPS:-}
[[ -z "$CONTROLLER_QPS" || "$CONTROLLER_QPS" =~ ^[1-9][0-9]*$ ]] ||
  die "MULTIGRES_E2E_CONTROLLER_QPS must be a positive integer, got '$CONTROLLER_QPS'"
# Client rate flags for the controller manager and the scheduler (none: their own defaults).
RATE_FLAGS=()
[[ -z "$CONTROLLER_QPS" ]] || RATE_FLAGS=(--kube-api-qps="$CONTROLLER_QPS" --kube-api-burst="$((2 * CONTROLLER_QPS))")
APISERVER_SAMPLING=${MULTIGRES_E2E_APISERVER_SAMPLING:-1000000}
[[ "$APISERVER_SAMPLING" =~ ^(0|[1-9][0-9]*)$ ]] && ((APISERVER_SAMPLING <= 1000000)) ||
  die "MULTIGRES_E2E_APISERVER_SAMPLING must be an integer from 0 to 1000000 (per million), got '$APISERVER_SAMPLING'"

for tool in curl openssl setsid base64 sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required but not installed"
done

# --- binaries -------------------------------------------------------------------------------------
BIN=$("$LIB_DIR/build-tools.sh") || die "build-tools.sh failed (see above)"
[[ -d "$BIN" ]] || die "build-tools.sh printed '$BIN', which is not a directory"
SHARE="$(dirname "$BIN")/share"

PKI="$CLUSTER_DIR/pki"
CFG="$CLUSTER_DIR/config"
DATA="$CLUSTER_DIR/data"
KUBECONFIG_OUT="$WORK_DIR/kubeconfig"
ENV_OUT="$WORK_DIR/env"

# --- http helpers ---------------------------------------------------------------------------------
# Never send loopback traffic through a proxy from the environment.
curl_() { curl --noproxy '*' -sS --max-time 5 "$@"; }
# api_get <path>: GET against the API server as the admin user; body on stdout, fails on non-2xx.
api_get() {
  curl_ -f --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT$1"
}
kubectl_() { "$BIN/kubectl" --kubeconfig="$CFG/admin.kubeconfig" --request-timeout=10s "$@"; }

# --- already running? -----------------------------------------------------------------------------
print_exports() {
  printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_OUT"
  printf 'export TEMPO_URL=http://127.0.0.1:%s\n' "$TEMPO_HTTP_PORT"
}

# The real node, when MULTIGRES_E2E_REAL_NODE=1 (node-up.sh returns at once when it runs).
real_node_if_asked() {
  [[ "${MULTIGRES_E2E_REAL_NODE:-0}" == 1 ]] || return 0
  "$LIB_DIR/node-up.sh" || die "the real node did not start (see above; logs in $LOG_DIR)"
}

if [[ -f "$CLUSTER_DIR/state" ]]; then
  # shellcheck source=/dev/null
  source "$CLUSTER_DIR/state"
  dead=()
  for c in "${COMPONENTS[@]}"; do pid_of "$c" >/dev/null || dead+=("$c"); done
  if ((${#dead[@]} == 0)) && [[ -f "$KUBECONFIG_OUT" && -f "$ENV_OUT" ]] &&
    [[ "$(api_get /readyz 2>/dev/null)" == ok ]] &&
    curl_ -f "http://127.0.0.1:$TEMPO_HTTP_PORT/ready" >/dev/null 2>&1; then
    log "cluster already running (API server https://127.0.0.1:$APISERVER_PORT, Tempo http://127.0.0.1:$TEMPO_HTTP_PORT); nothing to do"
    [[ "$STATE_BIN" == "$BIN" ]] || log "note: it runs binaries from $STATE_BIN; run cluster-down.sh and cluster-up.sh to switch to $BIN"
    log "env file: $ENV_OUT"
    real_node_if_asked
    print_exports
    exit 0
  fi
  if ((${#dead[@]} > 0)); then
    log "found a partly running cluster in $CLUSTER_DIR (not running: ${dead[*]}); restarting it"
  else
    log "found a cluster in $CLUSTER_DIR that is not ready (API server or Tempo); restarting it"
  fi
fi
# Stops whatever a previous run left (pid files or processes with our paths) and removes its data.
LOG_PREFIX=cluster-up "$LIB_DIR/cluster-down.sh" --quiet || die "could not clean up the previous cluster"

# --- ports ----------------------------------------------------------------------------------------
fixed_port TEMPO_HTTP_PORT MULTIGRES_E2E_TEMPO_HTTP_PORT 3200
fixed_port OTLP_GRPC_PORT MULTIGRES_E2E_OTLP_GRPC_PORT 4317
fixed_port OTLP_HTTP_PORT MULTIGRES_E2E_OTLP_HTTP_PORT 4318
fixed_port TEMPO_GRPC_PORT MULTIGRES_E2E_TEMPO_GRPC_PORT 9095
free_port APISERVER_PORT MULTIGRES_E2E_APISERVER_PORT
free_port ETCD_PORT MULTIGRES_E2E_ETCD_PORT
free_port ETCD_PEER_PORT MULTIGRES_E2E_ETCD_PEER_PORT
free_port KCM_PORT MULTIGRES_E2E_KCM_PORT
free_port SCHEDULER_PORT MULTIGRES_E2E_SCHEDULER_PORT
free_port KWOK_PORT MULTIGRES_E2E_KWOK_PORT

mkdir -p "$PID_DIR" "$CLUSTER_DIR/bin" "$PKI" "$CFG" "$DATA/etcd" "$DATA/tempo" "$LOG_DIR"
chmod 700 "$PKI" "$DATA/etcd"
rm -f "$LOG_DIR"/*.log
{
  printf '# written by cluster-up.sh; read by cluster-up.sh and cluster-down.sh\n'
  for v in APISERVER_PORT ETCD_PORT ETCD_PEER_PORT KCM_PORT SCHEDULER_PORT KWOK_PORT \
    TEMPO_HTTP_PORT TEMPO_GRPC_PORT OTLP_GRPC_PORT OTLP_HTTP_PORT; do
    printf '%s=%q\n' "$v" "${!v}"
  done
  printf 'STATE_BIN=%q\n' "$BIN"
} >"$CLUSTER_DIR/state"

# From here on, a failure stops what was started (unless MULTIGRES_E2E_KEEP_ON_FAILURE=1).
started=()
on_exit() {
  local rc=$?
  ((rc == 0)) && return 0
  log "cluster start FAILED; logs are in $LOG_DIR"
  if [[ "${MULTIGRES_E2E_KEEP_ON_FAILURE:-0}" == 1 ]]; then
    log "MULTIGRES_E2E_KEEP_ON_FAILURE=1: leaving the processes running; stop them with cluster-down.sh"
  else
    LOG_PREFIX=cluster-up "$LIB_DIR/cluster-down.sh" --quiet --keep-logs || true
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'log "interrupted"; exit 130' INT TERM

# --- PKI (fresh for every cluster) ----------------------------------------------------------------
log "generating certificates and keys in $PKI"
ssl() { openssl "$@" 2>>"$LOG_DIR/openssl.log" >/dev/null || die "openssl $1 failed, see $LOG_DIR/openssl.log"; }
ssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout "$PKI/ca.key" -out "$PKI/ca.crt" \
  -subj "/CN=multigres-e2e-ca" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
# issue <name> <subject> <extendedKeyUsage> [subjectAltName]
issue() {
  local name=$1 subj=$2 eku=$3 san=${4:-}
  ssl req -new -newkey rsa:2048 -nodes -sha256 -keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "$subj"
  {
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n'
    printf 'extendedKeyUsage=%s\n' "$eku"
    [[ -z "$san" ]] || printf 'subjectAltName=%s\n' "$san"
  } >"$PKI/$name.ext"
  ssl x509 -req -sha256 -days 3650 -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$PKI/$name.ext" -out "$PKI/$name.crt"
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}
issue apiserver "/CN=kube-apiserver" serverAuth \
  "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
issue admin "/O=system:masters/CN=multigres-e2e-admin" clientAuth
# The API server's identity towards kubelets (logs, exec, port-forward on the real node).
issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
issue kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
issue kube-scheduler "/CN=system:kube-scheduler" clientAuth
issue kwok "/O=system:masters/CN=kwok-controller" clientAuth
issue kwok-serving "/CN=kwok-controller" serverAuth "IP:127.0.0.1,DNS:localhost"
ssl genrsa -out "$PKI/sa.key" 2048
ssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
chmod 600 "$PKI"/*.key

# --- config files ---------------------------------------------------------------------------------
b64() { base64 -w0 <"$1"; }
# kubeconfig <file> <user> <cert/key name>: self-contained (certificates embedded).
kubeconfig() {
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: multigres-e2e
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$PKI/$3.crt")
    client-key-data: $(b64 "$PKI/$3.key")
contexts:
- name: multigres-e2e
  context:
    cluster: multigres-e2e
    user: $2
    namespace: default
current-context: multigres-e2e
EOF
  chmod 600 "$1"
}
kubeconfig "$CFG/admin.kubeconfig" multigres-e2e-admin admin
kubeconfig "$CFG/kube-controller-manager.kubeconfig" system:kube-controller-manager kube-controller-manager
kubeconfig "$CFG/kube-scheduler.kubeconfig" system:kube-scheduler kube-scheduler
kubeconfig "$CFG/kwok.kubeconfig" kwok-controller kwok

# API server tracing, exported to Tempo's OTLP gRPC receiver: a request with a sampled traceparent
# is always traced (parent-based); others at APISERVER_SAMPLING per million (default: all).
cat >"$CFG/apiserver-tracing.yaml" <<EOF
apiVersion: apiserver.config.k8s.io/v1
kind: TracingConfiguration
endpoint: 127.0.0.1:$OTLP_GRPC_PORT
samplingRatePerMillion: $APISERVER_SAMPLING
EOF

# Tempo 2.x single binary (target all), local storage, everything on loopback except the OTLP
# receivers: they listen on every address so the real node's pods reach them at the bridge address
# ($NODE_IP, which exists only once node-up.sh ran). Short idle/flush periods make a trace
# searchable ~1-2 s after its last span; trace-by-id reads live traces at once.
cat >"$CFG/tempo.yaml" <<EOF
target: all
stream_over_http_enabled: true
server:
  http_listen_address: 127.0.0.1
  http_listen_port: $TEMPO_HTTP_PORT
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: $TEMPO_GRPC_PORT
  log_level: warn
querier:
  frontend_worker:
    frontend_address: 127.0.0.1:$TEMPO_GRPC_PORT
distributor:
  ring:
    kvstore: {store: inmemory}
    instance_addr: 127.0.0.1
  receivers:
    otlp:
      protocols:
        grpc: {endpoint: "0.0.0.0:$OTLP_GRPC_PORT"}
        http: {endpoint: "0.0.0.0:$OTLP_HTTP_PORT"}
ingester:
  lifecycler:
    address: 127.0.0.1
    ring:
      kvstore: {store: inmemory}
      replication_factor: 1
    final_sleep: 0s
    min_ready_duration: 0s
  trace_idle_period: 1s
  flush_check_period: 1s
  max_block_duration: 10s
compactor:
  ring:
    kvstore: {store: inmemory}
    instance_addr: 127.0.0.1
    wait_stability_min_duration: 0s
metrics_generator:
  ring:
    kvstore: {store: inmemory}
    instance_addr: 127.0.0.1
  storage: {path: "$DATA/tempo/generator/wal"}
  traces_storage: {path: "$DATA/tempo/generator/traces"}
storage:
  trace:
    backend: local
    wal: {path: "$DATA/tempo/wal"}
    local: {path: "$DATA/tempo/blocks"}
    blocklist_poll: 5s
usage_report: {reporting_enabled: false}
EOF

# kwok simulates nodes and pods through Stage objects: the defaults kwokctl installs.
[[ -f "$SHARE/kwok-stages.yaml" ]] || die "missing $SHARE/kwok-stages.yaml (rebuild: MULTIGRES_E2E_FORCE_REBUILD=1 build-tools.sh)"
cp "$SHARE/kwok-stages.yaml" "$CFG/kwok.yaml"

# --- processes ------------------------------------------------------------------------------------
etcd_healthy() { curl_ -f "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
apiserver_ready() { [[ "$(api_get /readyz)" == ok ]]; }
tempo_ready() { curl_ -f "http://127.0.0.1:$TEMPO_HTTP_PORT/ready"; }
healthz_ok() { [[ "$(curl_ -f -k "https://127.0.0.1:$1/healthz")" == ok ]]; }
nodes_ready() {
  local n
  n=$(kubectl_ get nodes -l type=kwok \
    -o 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$')
  ((n >= NODE_COUNT))
}
default_sa_exists() { kubectl_ -n default get serviceaccount default; }

t_start=$SECONDS

start tempo "$BIN/tempo" -config.file="$CFG/tempo.yaml"

start etcd "$BIN/etcd" --name=e2e --data-dir="$DATA/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="e2e=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync=true \
  --auto-compaction-retention=1 --quota-backend-bytes=8589934592 --log-level=warn
wait_until "etcd is healthy" etcd_healthy

# The exporter's batch delay (OTel SDK default 5 s) is shortened so spans reach Tempo quickly.
START_ENV=(OTEL_BSP_SCHEDULE_DELAY=500)
start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
  --endpoint-reconciler-type=none \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range=10.96.0.0/16 \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types=InternalIP \
  --authorization-mode=Node,RBAC \
  --allow-privileged=true \
  --tracing-config-file="$CFG/apiserver-tracing.yaml"
wait_until "kube-apiserver is ready (/readyz)" apiserver_ready

start kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig="$CFG/kube-controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
  --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics \
  --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --cluster-name=multigres-e2e --service-cluster-ip-range=10.96.0.0/16 \
  --node-monitor-period=25s --node-monitor-grace-period=3m20s \
  --enable-hostpath-provisioner=true "${RATE_FLAGS[@]}"

start kube-scheduler "$BIN/kube-scheduler" \
  --kubeconfig="$CFG/kube-scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" \
  --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics \
  --leader-elect=false "${RATE_FLAGS[@]}"

start kwok "$BIN/kwok" \
  --kubeconfig="$CFG/kwok.kubeconfig" --config="$CFG/kwok.yaml" \
  --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --server-address="127.0.0.1:$KWOK_PORT" --node-port="$KWOK_PORT" --node-name=localhost \
  --tls-cert-file="$PKI/kwok-serving.crt" --tls-private-key-file="$PKI/kwok-serving.key" \
  --node-lease-duration-seconds=200

# Fake nodes (shape of kwokctl's node template); kwok's node-initialize stage makes them Ready.
# zone_letter <i>: a, b, c, ... (nodes are spread over zones zone-a, zone-b, ...)
zone_letter() { printf "\\$(printf '%03o' $((97 + $1 % 26)))"; }
nodes_yaml() {
  local i
  for ((i = 0; i < NODE_COUNT; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    beta.kubernetes.io/arch: amd64
    beta.kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    topology.kubernetes.io/zone: zone-$(zone_letter "$i")
    node-role.kubernetes.io/agent: ""
    type: kwok
spec:
  podCIDR: 10.$((128 + i)).0.0/16
  podCIDRs: [10.$((128 + i)).0.0/16]
status:
  addresses:
  - {type: InternalIP, address: 192.0.2.$((i + 1))}
  allocatable: {cpu: "32", memory: 256Gi, pods: "$NODE_PODS"}
  capacity: {cpu: "32", memory: 256Gi, pods: "$NODE_PODS"}
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kubeletVersion: fake
    kubeProxyVersion: fake
EOF
  done
}
nodes_yaml >"$CFG/nodes.yaml"
kubectl_ create -f "$CFG/nodes.yaml" >"$LOG_DIR/create-nodes.log" 2>&1 ||
  { sed 's/^/    /' "$LOG_DIR/create-nodes.log" >&2; die "creating the kwok nodes failed"; }

# Volumes: StatefulSets' claims need PersistentVolumes. The controller manager's in-tree hostPath
# provisioner (--enable-hostpath-provisioner, as local-up-cluster.sh uses) binds every claim of
# this default StorageClass to a small directory under /tmp; no data is ever written there.
cat >"$CFG/storageclass.yaml" <<'EOF_SC'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF_SC
kubectl_ apply -f "$CFG/storageclass.yaml" >"$LOG_DIR/create-storageclass.log" 2>&1 ||
  { sed 's/^/    /' "$LOG_DIR/create-storageclass.log" >&2; die "creating the default StorageClass failed"; }

wait_until "tempo is ready (/ready)" tempo_ready
wait_until "kube-controller-manager is healthy" healthz_ok "$KCM_PORT"
wait_until "kube-scheduler is healthy" healthz_ok "$SCHEDULER_PORT"
wait_until "kwok is healthy" healthz_ok "$KWOK_PORT"
wait_until "$NODE_COUNT kwok node(s) are Ready" nodes_ready
wait_until "ServiceAccount default/default exists" default_sa_exists

# --- outputs --------------------------------------------------------------------------------------
cp "$CFG/admin.kubeconfig" "$KUBECONFIG_OUT.tmp" && mv "$KUBECONFIG_OUT.tmp" "$KUBECONFIG_OUT"
# `export KEY=value` lines: `source` works, and so do dotenv-style parsers. A value is single-quoted
# only if it has characters other than [A-Za-z0-9_./:@+-] (e.g. a work dir with spaces).
env_line() {
  local v=$2
  if [[ "$v" =~ ^[A-Za-z0-9_./:@+-]*$ ]]; then
    printf 'export %s=%s\n' "$1" "$v"
  else
    printf "export %s='%s'\n" "$1" "${v//\'/\'\\\'\'}"
  fi
}
{
  printf '# written by e2e/scripts/cluster-up.sh; removed by cluster-down.sh\n'
  env_line KUBECONFIG "$KUBECONFIG_OUT"
  env_line TEMPO_URL "http://127.0.0.1:$TEMPO_HTTP_PORT"
  env_line OTLP_GRPC_ENDPOINT "http://127.0.0.1:$OTLP_GRPC_PORT"
  env_line OTLP_HTTP_ENDPOINT "http://127.0.0.1:$OTLP_HTTP_PORT"
  # Where the real node's pods reach Tempo's OTLP/HTTP receiver (a resource-handler's
  # --data-plane-otlp-endpoint); named apart from DATA_PLANE_OTLP_ENDPOINT so that sourcing this
  # file does not configure handlers.
  env_line DATA_PLANE_OTLP_HTTP_ENDPOINT "http://$NODE_IP:$OTLP_HTTP_PORT"
  env_line MULTIGRES_E2E_BIN "$BIN"
  env_line MULTIGRES_E2E_APISERVER_URL "https://127.0.0.1:$APISERVER_PORT"
  env_line MULTIGRES_E2E_WORK "$WORK_DIR"
} >"$ENV_OUT.tmp" && mv "$ENV_OUT.tmp" "$ENV_OUT"

real_node_if_asked
trap - EXIT INT TERM
log "cluster up in $((SECONDS - t_start))s: API server https://127.0.0.1:$APISERVER_PORT, $NODE_COUNT node(s)," \
  "Tempo query API http://127.0.0.1:$TEMPO_HTTP_PORT (OTLP gRPC :$OTLP_GRPC_PORT, HTTP :$OTLP_HTTP_PORT)"
log "env file: $ENV_OUT (source it); kubectl: $BIN/kubectl; stop with e2e/scripts/cluster-down.sh"
print_exports
