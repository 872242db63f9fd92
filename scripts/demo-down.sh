#!/usr/bin/env bash
# Stops what `make demo` started: both handlers, then the local control plane and Tempo.
set -uo pipefail
cd "$(dirname "$0")/.."
for bin in cluster-handler resource-handler; do
  pidfile=e2e/.work/demo-$bin.pid
  [[ -f $pidfile ]] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
done
e2e/scripts/cluster-down.sh
