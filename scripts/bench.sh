#!/usr/bin/env bash
# `make bench`: the in-process span-work microbenchmark (criterion), then tracing overhead and
# convergence at scale against the local control plane (release builds). Arguments go to the
# `bench` crate's binary (`target/release/bench --help`): --clusters N (100) --repeats R (3)
# --scale-clusters N (1000) --skip-overhead --skip-scale
# --modes off,on,1%,on-plain,1%-plain,down,http (default the first five).
# Report: stdout and bench/results/<date>.md (<date>-2.md, ... for later runs that day).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
export MULTIGRES_E2E_PROFILE=release

echo "[bench] building (release)" >&2
$CARGO build --locked --release -p cluster-handler -p resource-handler
$CARGO build --locked --release -p bench

echo "[bench] in-process span work (criterion)" >&2
micro=$($CARGO bench --locked -q -p multigres-runtime --bench span_work -- --noplot 2>/dev/null |
  grep -E "^reconcile span work/|time:" | paste - - | sed -E 's/ +/ /g')

started=0
down() { if ((started)); then e2e/scripts/cluster-down.sh >&2 || true; fi; }
trap down EXIT
if [[ ${E2E_USE_EXISTING:-0} != 1 ]]; then
  # Room for 1000 minimal clusters (8 pods each) on the three kwok nodes, and the controller
  # manager and scheduler unthrottled (their default 20 and 50 requests/s would be the floor
  # of both the operator's and the direct writer's time). The API server traces only requests
  # that carry a sampled traceparent (the traced operator's), not every controller's and kwok's:
  # exporting those took 60% of a core in Tempo and slowed every mode alike.
  MULTIGRES_E2E_NODE_PODS=${MULTIGRES_E2E_NODE_PODS:-3000} \
    MULTIGRES_E2E_CONTROLLER_QPS=${MULTIGRES_E2E_CONTROLLER_QPS:-1000} \
    MULTIGRES_E2E_APISERVER_SAMPLING=${MULTIGRES_E2E_APISERVER_SAMPLING:-0} \
    e2e/scripts/cluster-up.sh >/dev/null
  started=1
fi

# One report per run: a second run on the same day gets <date>-2.md, and so on.
report="bench/results/$(date +%Y-%m-%d).md"
for ((i = 2; ; i++)); do
  [[ -e $report ]] || break
  report="bench/results/$(date +%Y-%m-%d)-$i.md"
done
target=${CARGO_TARGET_DIR:-target}
BENCH_REPORT=$report "$target/release/bench" "$@"

{
  echo "## In-process span work (criterion)"
  echo
  echo "One reconcile's tracing path (extract the annotated parent, reconcile + apply spans with"
  echo "attributes, stamp the child's annotations, one request through the client layer with"
  echo "header injection) against a fake API server; \`shared/runtime/benches/span_work.rs\`."
  echo
  echo '```'
  echo "$micro"
  echo '```'
} >>"$report"
echo "$micro"
echo "[bench] report: $report" >&2
