#!/usr/bin/env bash
# `make demo`: the local control plane and Tempo, both handlers exporting traces, a multi-cell
# MultigresCluster from the samples, its progress until Healthy, and the waterfall of its trace.
# `make demo-db` (DEMO_DATABASE=1): the same with a database on the real node, whose processes
# run for real, ending with a SQL query through the gateway and the psql line to run your own.
# Stop everything with `make demo-down` (or Ctrl-C when run from a terminal).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$ROOT/e2e/.work
NS=${DEMO_NAMESPACE:-demo}
DATABASE=${DEMO_DATABASE:-0}
if [[ $DATABASE == 1 ]]; then
  SAMPLE=${DEMO_SAMPLE:-e2e/samples/real-node-database.yaml}
  export MULTIGRES_E2E_REAL_NODE=1
else
  SAMPLE=${DEMO_SAMPLE:-manifests/samples/multi-cell-cluster.yaml}
fi
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "checking tools"
./scripts/ensure-deps.sh

say "building the handlers and the trace viewer"
cargo build --locked -q -p cluster-handler -p resource-handler
cargo build --locked -q -p e2e --bin trace-view

say "starting the local control plane and Tempo (first run builds them: several minutes)"
e2e/scripts/cluster-up.sh >/dev/null
# shellcheck source=/dev/null
source "$WORK/env"
K() { "$MULTIGRES_E2E_BIN/kubectl" "$@"; }

say "installing the CRDs"
K apply --server-side -k manifests/crds >/dev/null
K wait --for condition=Established --timeout=60s crd/multigresclusters.multigres.com crd/cells.multigres.com \
  crd/etcds.multigres.com crd/multigateways.multigres.com crd/multiorchs.multigres.com crd/multipoolers.multigres.com >/dev/null

say "starting both handlers (cluster-handler exports over OTLP/gRPC, resource-handler over OTLP/HTTP)"
mkdir -p "$WORK/logs"
start() { # start <binary> <admin port> <env...>
  local bin=$1 port=$2
  shift 2
  env "$@" RUST_LOG=info OTEL_BSP_SCHEDULE_DELAY=500 "target/debug/$bin" --log-format json \
    --admin-addr "127.0.0.1:$port" --namespace "$NS" >"$WORK/logs/demo-$bin.log" 2>&1 &
  echo $! >"$WORK/demo-$bin.pid"
}
K create namespace "$NS" >/dev/null 2>&1 || true
if [[ $DATABASE == 1 ]]; then
  # The handlers run on this machine: cluster names resolve through the real node's CoreDNS, and
  # the pods send their spans to Tempo at the node's bridge address.
  start cluster-handler "${DEMO_CH_PORT:-18081}" OTEL_EXPORTER_OTLP_ENDPOINT="$OTLP_GRPC_ENDPOINT" \
    CLUSTER_DNS=198.18.0.1
  start resource-handler "${DEMO_RH_PORT:-18082}" OTEL_EXPORTER_OTLP_ENDPOINT="$OTLP_HTTP_ENDPOINT" \
    OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf DATA_PLANE_OTLP_ENDPOINT="$DATA_PLANE_OTLP_HTTP_ENDPOINT"
else
  # The sample lands on kwok nodes, where no etcd runs to hold the Multigres topology records.
  start cluster-handler "${DEMO_CH_PORT:-18081}" OTEL_EXPORTER_OTLP_ENDPOINT="$OTLP_GRPC_ENDPOINT" \
    MANAGE_TOPOLOGY=false
  start resource-handler "${DEMO_RH_PORT:-18082}" OTEL_EXPORTER_OTLP_ENDPOINT="$OTLP_HTTP_ENDPOINT" \
    OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
fi
for port in "${DEMO_CH_PORT:-18081}" "${DEMO_RH_PORT:-18082}"; do
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { echo "a handler did not start; see $WORK/logs/demo-*.log"; exit 1; }
done

NAME=$(awk '/^  name:/{print $2; exit}' "$SAMPLE")
say "kubectl apply -n $NS -f $SAMPLE"
K delete -n "$NS" mgc "$NAME" --ignore-not-found --wait=true >/dev/null
K apply -n "$NS" -f "$SAMPLE"
phase=""
for _ in $(seq 1 300); do
  line=$(K get -n "$NS" mgc "$NAME" -o jsonpath='{.status.phase} {.status.cells.readyReplicas}/{.status.cells.replicas} cells, etcd {.status.etcd.readyReplicas}/{.status.etcd.replicas}, gateways {.status.gateway.readyReplicas}/{.status.gateway.replicas}, poolers {.status.pooler.readyReplicas}/{.status.pooler.replicas}, primary {.status.shard.primary}' 2>/dev/null || true)
  [[ "$line" != "$phase" ]] && { printf '  %s\n' "$line"; phase=$line; }
  [[ "$line" == Healthy* ]] && break
  sleep 1
done
[[ "$phase" == Healthy* ]] || { echo "the cluster did not become Healthy in 5 minutes; see $WORK/logs/demo-*.log"; exit 1; }
K get -n "$NS" mgc,cells,etcds,multigateways,multiorchs,multipoolers

if [[ $DATABASE == 1 ]]; then
  GATEWAY=$(K get -n "$NS" svc -l "multigres.com/cluster=$NAME,app.kubernetes.io/component=multigateway" \
    -o jsonpath='{.items[0].metadata.name}')
  say "psql through the gateway ($GATEWAY:5432), from a pod on the real node"
  K delete -n "$NS" pod psql --ignore-not-found --wait=true >/dev/null
  K apply -n "$NS" -f - >/dev/null <<POD
apiVersion: v1
kind: Pod
metadata: {name: psql}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {multigres.com/e2e-node: real}
  tolerations: [{key: multigres.com/e2e-node, operator: Equal, value: real, effect: NoSchedule}]
  containers:
    - name: psql
      image: ghcr.io/multigres/pgctld:v0.1.0
      imagePullPolicy: IfNotPresent
      command: [sleep, infinity]
      env:
        - {name: PGHOST, value: $GATEWAY}
        - {name: PGUSER, value: postgres}
        - {name: PGDATABASE, value: postgres}
        - name: PGPASSWORD
          valueFrom: {secretKeyRef: {name: $NAME-postgres-password, key: password}}
POD
  K wait -n "$NS" --for condition=Ready pod/psql --timeout=120s >/dev/null
  for _ in $(seq 1 30); do
    K exec -n "$NS" psql -- psql -v ON_ERROR_STOP=1 \
      -c "CREATE TABLE IF NOT EXISTS hello (id int PRIMARY KEY, greeting text)" \
      -c "INSERT INTO hello VALUES (1, 'hello from multigres') ON CONFLICT DO NOTHING" \
      -c "SELECT greeting, version() FROM hello" && break
    sleep 2
  done
fi

TRACE=$(K get -n "$NS" mgc "$NAME" -o jsonpath='{.status.lastTraceId}')
say "the trace of this change: status.lastTraceId = $TRACE"
target/debug/trace-view "$TRACE" --tempo "$TEMPO_URL"

cat <<MSG

Query Tempo yourself:
  curl -s $TEMPO_URL/api/traces/$TRACE | jq '.batches | length'
  curl -sG $TEMPO_URL/api/search --data-urlencode 'q={ name = "reconcile MultigresCluster" && span.multigres.resource.name = "$NAME" && span.k8s.namespace.name = "$NS" }' \\
    --data-urlencode "start=\$(( \$(date +%s) - 3600 ))" --data-urlencode "end=\$(date +%s)" --data-urlencode limit=100
  target/debug/trace-view $TRACE --all          # every API server span too
Try a change and look at its new trace:
  export KUBECONFIG=$KUBECONFIG
  $MULTIGRES_E2E_BIN/kubectl -n $NS patch mgc $NAME --type merge -p '{"spec":{"gateway":{"replicas":3}}}'
  target/debug/trace-view \$($MULTIGRES_E2E_BIN/kubectl -n $NS get mgc $NAME -o jsonpath='{.status.lastTraceId}')
Logs: $WORK/logs/demo-cluster-handler.log, $WORK/logs/demo-resource-handler.log
Stop everything: make demo-down
MSG

if [[ $DATABASE == 1 ]]; then
  cat <<MSG
Your own psql session, through the gateway:
  $MULTIGRES_E2E_BIN/kubectl --kubeconfig $KUBECONFIG -n $NS exec -it psql -- psql
MSG
fi

if [[ -t 0 ]]; then
  trap 'echo; ./scripts/demo-down.sh; exit 0' INT
  echo "(Ctrl-C stops everything)"
  while sleep 3600; do :; done
fi
