#!/usr/bin/env bash
# Adds one real node to the running local control plane (e2e/scripts/cluster-up.sh), beside the
# kwok nodes: containerd + runc (Debian's packages) with a CNI bridge, kubelet and kube-proxy
# (iptables mode) built from the k8s tools module, CoreDNS serving cluster.local to its pods, the
# API server at the `kubernetes` Service (so pods use their ServiceAccounts in-cluster), a
# provisioner of `local` PersistentVolumes (StorageClass real-node-local, fsGroup-aware), and the
# images of e2e/scripts/build-images.sh imported into containerd, so pods run real processes.
#
# The node is named multigres-real-node, labelled and tainted multigres.com/e2e-node=real
# (NoSchedule): only pods with the matching toleration (and nodeSelector) land there. Pod addresses
# come from 198.18.0.0/24 on the bridge mge2e0, whose address 198.18.0.1 is also the node's
# address (kubelet, CoreDNS). Pods have routes to that subnet and the Service range only; an
# iptables guard chain drops anything from or to the bridge that would leave it, and any Service
# traffic of this machine that kube-proxy would send to an address off the bridge (the kwok nodes'
# pods only exist on paper).
#
# Needs root, and the Debian packages `make deps` installs (containerd, runc, socat,
# containernetworking-plugins, iptables, conntrack). Returns when the node is Ready and its
# images are imported; running it again while the node is up changes nothing. Stopped by
# node-down.sh, and by cluster-down.sh with the rest. Env: MULTIGRES_E2E_WORK,
# MULTIGRES_E2E_CACHE, MULTIGRES_E2E_STARTUP_TIMEOUT (180 s per wait).
set -euo pipefail

LOG_PREFIX=node-up
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

STARTUP_TIMEOUT=${MULTIGRES_E2E_STARTUP_TIMEOUT:-180}

# --- prerequisites ----------------------------------------------------------------------------------
((EUID == 0)) || die "the real node needs root (containerd, kubelet, network devices, iptables)"
missing=()
for cmd in containerd containerd-shim-runc-v2 runc ctr iptables ip conntrack mount umount nsenter socat; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
CNI_BIN_DIR=/usr/lib/cni
for plugin in bridge host-local loopback portmap; do
  [[ -x "$CNI_BIN_DIR/$plugin" ]] || missing+=("CNI plugin $CNI_BIN_DIR/$plugin")
done
((${#missing[@]} == 0)) || die "missing: ${missing[*]} (run \`make deps\`: it installs containerd, runc," \
  "containernetworking-plugins, iptables, conntrack and socat)"
[[ -f /proc/sys/net/bridge/bridge-nf-call-iptables ]] ||
  modprobe br_netfilter 2>/dev/null || [[ -f /proc/sys/net/bridge/bridge-nf-call-iptables ]] ||
  die "the kernel has no bridge netfilter (br_netfilter): Service addresses would not work between pods"

[[ -f "$CLUSTER_DIR/state" ]] || die "no control plane is running in $CLUSTER_DIR: run cluster-up.sh first"
# shellcheck source=/dev/null
source "$CLUSTER_DIR/state"
PKI="$CLUSTER_DIR/pki"
CFG="$CLUSTER_DIR/config"
kubectl_() { "$STATE_BIN/kubectl" --kubeconfig="$CFG/admin.kubeconfig" --request-timeout=10s "$@"; }
kubectl_ get --raw /readyz >/dev/null 2>&1 || die "the control plane's API server is not ready; run cluster-up.sh"

# One node-up at a time per work dir.
mkdir -p "$WORK_DIR"
exec 8>"$WORK_DIR/.node.lock"
flock 8

node_ready() {
  [[ "$(kubectl_ get node "$NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}
if [[ -f "$NODE_DIR/state" ]]; then
  dead=()
  for c in "${NODE_COMPONENTS[@]}"; do pid_of "$c" >/dev/null || dead+=("$c"); done
  if ((${#dead[@]} == 0)) && node_ready; then
    log "real node $NODE_NAME already running; nothing to do"
    exit 0
  fi
  log "found a real node that is not healthy (not running: ${dead[*]:-none}); restarting it"
fi
LOG_PREFIX=node-up "$LIB_DIR/node-down.sh" --quiet || die "could not clean up the previous real node"

# --- binaries and images ----------------------------------------------------------------------------
NODE_BIN=$("$LIB_DIR/build-tools.sh" node) || die "build-tools.sh node failed (see above)"
IMAGES=$("$LIB_DIR/build-images.sh") || die "build-images.sh failed (see above)"
[[ -f "$IMAGES/images.txt" ]] || die "build-images.sh printed '$IMAGES', which has no images.txt"
log "building the local-volumes provisioner (cargo)"
(cd "$E2E_DIR/.." && "${CARGO:-cargo}" build -q --locked -p local-volumes) ||
  die "building the local-volumes provisioner (cargo build -p local-volumes) failed"
LOCAL_VOLUMES="$E2E_DIR/../target/debug/local-volumes"

# --- ports (env: a fixed port, else a free one in 20000-29999) -----------------------------------
free_port KUBELET_PORT MULTIGRES_E2E_KUBELET_PORT
free_port KUBELET_HEALTHZ_PORT MULTIGRES_E2E_KUBELET_HEALTHZ_PORT
free_port PROXY_HEALTHZ_PORT MULTIGRES_E2E_PROXY_HEALTHZ_PORT
free_port PROXY_METRICS_PORT MULTIGRES_E2E_PROXY_METRICS_PORT
free_port COREDNS_HEALTH_PORT MULTIGRES_E2E_COREDNS_HEALTH_PORT
free_port COREDNS_READY_PORT MULTIGRES_E2E_COREDNS_READY_PORT

mkdir -p "$NODE_DIR"/{containerd/root,containerd/state,containerd/certs.d,cni/net.d,cni/ipam,kubelet,pod-logs,volumes,config,pki}
chmod 700 "$NODE_DIR/pki"
{
  printf '# written by node-up.sh; read by node-up.sh, node-down.sh and the e2e harness\n'
  for v in KUBELET_PORT KUBELET_HEALTHZ_PORT PROXY_HEALTHZ_PORT PROXY_METRICS_PORT COREDNS_HEALTH_PORT \
    COREDNS_READY_PORT; do
    printf '%s=%q\n' "$v" "${!v}"
  done
  printf 'NODE_BIN=%q\nIP_FORWARD_BEFORE=%q\nBRIDGE_NF_BEFORE=%q\n' "$NODE_BIN" \
    "$(cat /proc/sys/net/ipv4/ip_forward)" "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables)"
} >"$NODE_DIR/state"

started=()
on_exit() {
  local rc=$?
  ((rc == 0)) && return 0
  log "real node start FAILED; logs are in $LOG_DIR"
  if [[ "${MULTIGRES_E2E_KEEP_ON_FAILURE:-0}" == 1 ]]; then
    log "MULTIGRES_E2E_KEEP_ON_FAILURE=1: leaving the node running; stop it with node-down.sh"
  else
    LOG_PREFIX=node-up "$LIB_DIR/node-down.sh" --quiet || true
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'log "interrupted"; exit 130' INT TERM

# --- certificates -----------------------------------------------------------------------------------
# Signed by the control plane's CA: the kubelet as system:node:<name> (the Node authorizer's
# identity), kube-proxy as system:kube-proxy (bound to system:node-proxier by default), CoreDNS as
# its own user with the read-only role below.
ssl() { openssl "$@" 2>>"$LOG_DIR/openssl.log" >/dev/null || die "openssl $1 failed, see $LOG_DIR/openssl.log"; }
client_cert() {
  local name=$1 subj=$2
  ssl req -new -newkey rsa:2048 -nodes -sha256 -keyout "$NODE_DIR/pki/$name.key" \
    -out "$NODE_DIR/pki/$name.csr" -subj "$subj"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
    >"$NODE_DIR/pki/$name.ext"
  ssl x509 -req -sha256 -days 3650 -in "$NODE_DIR/pki/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$NODE_DIR/pki/$name.ext" -out "$NODE_DIR/pki/$name.crt"
  rm -f "$NODE_DIR/pki/$name.csr" "$NODE_DIR/pki/$name.ext"
  chmod 600 "$NODE_DIR/pki/$name.key"
  cat >"$NODE_DIR/config/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: multigres-e2e
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $name
  user:
    client-certificate: $NODE_DIR/pki/$name.crt
    client-key: $NODE_DIR/pki/$name.key
contexts:
- name: multigres-e2e
  context: {cluster: multigres-e2e, user: $name}
current-context: multigres-e2e
EOF
  chmod 600 "$NODE_DIR/config/$name.kubeconfig"
}
client_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
client_cert kube-proxy "/CN=system:kube-proxy"
client_cert coredns "/CN=multigres-e2e:coredns"
client_cert local-volumes "/CN=multigres-e2e:local-volumes"

# --- network ----------------------------------------------------------------------------------------
# The bridge exists before the kubelet starts, so the node's address does too (the CNI bridge plugin
# adopts an existing bridge and its gateway address).
ip link add "$NODE_BRIDGE" type bridge 2>/dev/null || true
ip addr replace "$NODE_IP/${NODE_POD_SUBNET#*/}" dev "$NODE_BRIDGE"
ip link set "$NODE_BRIDGE" up
# Service traffic between pods on one bridge passes iptables (kube-proxy's DNAT), and replies to a
# pod's own Service come back through the bridge: both need these two switches.
echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
echo 1 >/proc/sys/net/ipv4/ip_forward

# The guard chain, first in FORWARD and OUTPUT: forwarded traffic may only go from the bridge to
# the bridge; this machine's own Service traffic (DNATed by kube-proxy) only to the bridge.
iptables -w -N "$NODE_GUARD_CHAIN" 2>/dev/null || iptables -w -F "$NODE_GUARD_CHAIN"
iptables -w -A "$NODE_GUARD_CHAIN" -i "$NODE_BRIDGE" -o "$NODE_BRIDGE" -j ACCEPT
iptables -w -A "$NODE_GUARD_CHAIN" -i "$NODE_BRIDGE" -j DROP
iptables -w -A "$NODE_GUARD_CHAIN" -o "$NODE_BRIDGE" ! -s "$NODE_POD_SUBNET" -m conntrack ! --ctstate DNAT -j DROP
iptables -w -A "$NODE_GUARD_CHAIN" -m conntrack --ctstate DNAT ! -d "$NODE_POD_SUBNET" -j REJECT
# A Service address kube-proxy has not (yet) translated must fail here, not reach whatever
# answers for it beyond this machine.
iptables -w -A "$NODE_GUARD_CHAIN" -d "$SERVICE_CIDR" -m conntrack ! --ctstate DNAT -j REJECT
iptables -w -C FORWARD -j "$NODE_GUARD_CHAIN" 2>/dev/null || iptables -w -I FORWARD 1 -j "$NODE_GUARD_CHAIN"
iptables -w -C OUTPUT -j "$NODE_GUARD_CHAIN" 2>/dev/null || iptables -w -I OUTPUT 1 -j "$NODE_GUARD_CHAIN"

# CNI: bridge + host-local (addresses, and routes to the subnet and the Service range only: no
# default route) + portmap; containerd adds loopback itself.
cat >"$NODE_DIR/cni/net.d/10-multigres-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "multigres-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$NODE_POD_SUBNET", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "$SERVICE_CIDR"}],
        "dataDir": "$NODE_DIR/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

# --- containerd ---------------------------------------------------------------------------------------
# Every registry the pods name resolves to a closed port on loopback: an image that was not
# imported fails at once with "connection refused", and nothing is ever fetched from elsewhere.
for registry in docker.io ghcr.io gcr.io registry.k8s.io quay.io localhost; do
  mkdir -p "$NODE_DIR/containerd/certs.d/$registry"
  printf 'server = "http://127.0.0.1:9"\n' >"$NODE_DIR/containerd/certs.d/$registry/hosts.toml"
done
SANDBOX_IMAGE=localhost/multigres-e2e/pause:1
CONTAINERD_SOCK="$NODE_DIR/containerd/containerd.sock"
cat >"$NODE_DIR/config/containerd.toml" <<EOF
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$SANDBOX_IMAGE"
  # This VM's root lacks CAP_SYS_RESOURCE: without it runc fails to lower oom_score_adj and every
  # pod sandbox fails ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$NODE_DIR/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$NODE_DIR/containerd/certs.d"
EOF
ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }
start containerd "$(command -v containerd)" --config "$NODE_DIR/config/containerd.toml"
wait_until "containerd answers on $CONTAINERD_SOCK" ctr_ version

# Images: imported under the names the pods use; the pause image is the sandbox image.
t0=$SECONDS
while read -r ref file; do
  [[ -n "$ref" && "$ref" != \#* ]] || continue
  ctr_ images import --no-unpack "$IMAGES/$file" >>"$LOG_DIR/image-import.log" 2>&1 ||
    { log_tail image-import; die "importing $IMAGES/$file ($ref) into containerd failed"; }
  # Not a pipe into grep -q: with pipefail, grep's early exit would fail ctr with SIGPIPE.
  grep -qxF "$ref" <<<"$(ctr_ images ls -q)" || die "$IMAGES/$file did not import as $ref (see $LOG_DIR/image-import.log)"
done <"$IMAGES/images.txt"
grep -qxF "$SANDBOX_IMAGE" <<<"$(ctr_ images ls -q)" || die "the sandbox image $SANDBOX_IMAGE is not among the built images"
log "imported $(grep -c '^[^#]' "$IMAGES/images.txt") images in $((SECONDS - t0))s"

# --- API objects the node's services need -------------------------------------------------------
cat >"$NODE_DIR/config/node-objects.yaml" <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "multigres-e2e:coredns"}
rules:
- apiGroups: [""]
  resources: [services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "multigres-e2e:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "multigres-e2e:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "multigres-e2e:coredns"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "multigres-e2e:local-volumes"}
rules:
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [persistentvolumes]
  verbs: [get, list, watch, create, delete]
- apiGroups: [storage.k8s.io]
  resources: [storageclasses]
  verbs: [get, list, watch]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "multigres-e2e:local-volumes"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "multigres-e2e:local-volumes"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "multigres-e2e:local-volumes"}]
---
# Volumes on the real node: a directory per claim under the node's volumes dir, as a 'local'
# PersistentVolume, so the kubelet applies a pod's fsGroup to it. Bound once a pod is scheduled.
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: real-node-local}
provisioner: multigres.com/e2e-local
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
EOF
kubectl_ apply -f "$NODE_DIR/config/node-objects.yaml" >>"$LOG_DIR/node-objects.log" 2>&1 ||
  { log_tail node-objects; die "creating the real node's RBAC and StorageClass failed"; }

# --- CoreDNS --------------------------------------------------------------------------------------
# Serves cluster.local (and reverse lookups) from the API server, on the bridge address. No
# forwarding: other names are refused, so no query leaves the machine.
cat >"$NODE_DIR/config/Corefile" <<EOF
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $NODE_IP
    errors
    health 127.0.0.1:$COREDNS_HEALTH_PORT
    ready 127.0.0.1:$COREDNS_READY_PORT
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $NODE_DIR/config/coredns.kubeconfig multigres-e2e
        pods insecure
    }
}
EOF
start coredns "$NODE_BIN/coredns" -conf "$NODE_DIR/config/Corefile"

# --- the API server for pods ----------------------------------------------------------------------
# The API server listens on loopback only, which a pod cannot reach (and an EndpointSlice may not
# name). socat relays the node's address to it, and the `kubernetes` Service's EndpointSlice names
# that address, so in-cluster clients (KUBERNETES_SERVICE_HOST=10.96.0.1) work as on any cluster.
# The API server's own endpoint reconciler is off (cluster-up.sh), so nothing overwrites the slice.
# The lock file puts $NODE_DIR on socat's command line, which is how node-down finds its children.
start api-relay "$(command -v socat)" -L "$NODE_DIR/api-relay.lock" \
  "TCP-LISTEN:$APISERVER_PORT,bind=$NODE_IP,fork,reuseaddr" "TCP:127.0.0.1:$APISERVER_PORT"
# Through the relay, as a pod would: TLS checked against the name the pods use (`kubernetes`).
wait_until "the API server answers at $NODE_IP:$APISERVER_PORT" \
  curl --noproxy '*' -s -o /dev/null --cacert "$PKI/ca.crt" \
  --connect-to "kubernetes:$APISERVER_PORT:$NODE_IP:$APISERVER_PORT" "https://kubernetes:$APISERVER_PORT/readyz"
kubectl_ apply -f - >>"$LOG_DIR/node-objects.log" 2>&1 <<EOF ||
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes
  namespace: default
  labels:
    kubernetes.io/service-name: kubernetes
    endpointslice.kubernetes.io/managed-by: multigres-e2e
addressType: IPv4
endpoints:
- addresses: ["$NODE_IP"]
  conditions: {ready: true}
ports:
- {name: https, port: $APISERVER_PORT, protocol: TCP}
EOF
  { log_tail node-objects; die "creating the kubernetes Service's EndpointSlice failed"; }

start local-volumes "$LOCAL_VOLUMES" --kubeconfig "$NODE_DIR/config/local-volumes.kubeconfig" \
  --node "$NODE_NAME" --root "$NODE_DIR/volumes" --provisioner multigres.com/e2e-local

# --- kube-proxy -----------------------------------------------------------------------------------
cat >"$NODE_DIR/config/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: $NODE_DIR/config/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
clusterCIDR: $NODE_POD_SUBNET
# NodePorts only on the node's bridge address, never on the machine's other interfaces.
nodePortAddresses: ["$NODE_IP/32"]
iptables:
  localhostNodePorts: false
# Zero leaves the machine's conntrack settings as they are.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
start kube-proxy "$NODE_BIN/kube-proxy" --config="$NODE_DIR/config/kube-proxy.yaml"

# --- kubelet --------------------------------------------------------------------------------------
# Pods get only the cluster's DNS: an empty host resolv.conf keeps this machine's resolvers out.
: >"$NODE_DIR/config/resolv.conf"
cat >"$NODE_DIR/config/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
# The API server reaches logs and exec with its kubelet client certificate (in system:masters).
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
imageServiceEndpoint: unix://$CONTAINERD_SOCK
# This machine has cgroups v1 and swap settings the kubelet refuses by default.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: $NODE_DIR/config/resolv.conf
podLogsDir: $NODE_DIR/pod-logs
volumePluginDir: $NODE_DIR/kubelet/volume-plugins
registerWithTaints:
- {key: $NODE_LABEL_KEY, value: $NODE_LABEL_VALUE, effect: NoSchedule}
# Imported images cannot be pulled again: never collect them, never evict for a busy disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
maxPods: 110
EOF
start kubelet "$NODE_BIN/kubelet" --config="$NODE_DIR/config/kubelet.yaml" \
  --kubeconfig="$NODE_DIR/config/kubelet.kubeconfig" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
  --node-labels="$NODE_LABEL_KEY=$NODE_LABEL_VALUE,topology.kubernetes.io/zone=zone-real" \
  --root-dir="$NODE_DIR/kubelet" --cert-dir="$NODE_DIR/pki"

wait_until "node $NODE_NAME is Ready" node_ready
wait_until "kube-proxy is healthy" curl --noproxy '*' -sf "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"
wait_until "CoreDNS is healthy" curl --noproxy '*' -sf "http://127.0.0.1:$COREDNS_HEALTH_PORT/health"

trap - EXIT INT TERM
log "real node $NODE_NAME is Ready at $NODE_IP (pods in $NODE_POD_SUBNET; logs $LOG_DIR/{containerd,kubelet,kube-proxy,coredns,local-volumes}.log)"
