#!/usr/bin/env bash
# `make bench-profile`: where the handlers' CPU goes with tracing off and at 100% sampling.
# Runs one side-by-side overhead repeat of the bench (modes off and on, --clusters N, default 30)
# against the local control plane, samples the four handler processes with `perf record`
# (999 Hz), and prints for each the CPU share of the span exporter's thread, of the OTLP/gRPC
# code on the other threads, of the tracing layers and of glibc's allocator.
# Needs `perf` (Debian: linux-perf) and the perf_event_paranoid setting that lets it attach.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
export MULTIGRES_E2E_PROFILE=release
clusters=${1:-30}

command -v perf >/dev/null ||
  { echo "[profile] perf is required (Debian: apt-get install linux-perf)" >&2; exit 1; }
$CARGO build --locked --release -p cluster-handler -p resource-handler -p e2e --bin bench

out=$(mktemp -d)
started=0
down() { if ((started)); then e2e/scripts/cluster-down.sh >&2 || true; fi; }
trap down EXIT
if [[ ${E2E_USE_EXISTING:-0} != 1 ]]; then
  e2e/scripts/cluster-up.sh >/dev/null
  started=1
fi

# The bench names its namespaces bench-off-<n> and bench-full-<n>; attach to their handlers.
attach() {
  local pids pid bin ns
  for _ in $(seq 1 240); do
    pids=$(pgrep -f -- "-handler .*--namespace bench-(off|full)-" || true)
    (($(wc -w <<<"$pids") >= 4)) && break
    sleep 0.5
  done
  for pid in $pids; do
    bin=$(basename "$(tr '\0' '\n' <"/proc/$pid/cmdline" | head -1)")
    ns=$(tr '\0' ' ' <"/proc/$pid/cmdline" | grep -oE "bench-(off|full)" | head -1)
    perf record -F 999 -o "$out/$bin-${ns#bench-}.data" -p "$pid" >/dev/null 2>&1 &
  done
  wait
}
attach &
BENCH_REPORT=$out/report.md target/release/bench --clusters "$clusters" --repeats 1 --skip-scale --modes off,on >/dev/null
wait

share() { # share <file> <perf --sort keys> <extended regex>: percent of samples whose line matches
  perf report -i "$1" --no-children --sort "$2" --stdio -g none 2>/dev/null |
    grep -E "$3" | awk '{s += $1} END {printf "%.2f", s}'
}
printf '| process | tracing | samples | exporter thread %% | OTLP/gRPC on other threads %% | tracing layers %% | glibc malloc/free %% |\n|---|---|---|---|---|---|---|\n'
for f in "$out"/*.data; do
  name=$(basename "$f" .data)
  samples=$(perf report -i "$f" --stdio 2>/dev/null | grep -m1 -E "^# Samples:" | cut -d" " -f3)
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "${name%-*}" "${name##*-}" "$samples" \
    "$(share "$f" comm '^ +[0-9.]+% +OpenTelemetry')" \
    "$(share "$f" comm,symbol '^ +[0-9.]+% +tokio-rt-worker .*(tonic::|h2::|prost::|opentelemetry_proto|opentelemetry_otlp)')" \
    "$(share "$f" comm,symbol '^ +[0-9.]+% +[^O].*(tracing_opentelemetry|tracing_subscriber|tracing_core|opentelemetry_sdk|opentelemetry::)')" \
    "$(share "$f" symbol '\] (_int_malloc|malloc|malloc_consolidate|unlink_chunk[.a-z0-9]*|cfree@[A-Z_.0-9]+|_int_free|realloc|_int_realloc)\s*(-.*)?$')"
done
echo "[profile] perf data: $out" >&2
