#!/usr/bin/env bash
# Runs the end-to-end suites: starts the local control plane and Tempo with the real node
# (building them on first use), builds the operator's image into that node, runs the suites
# (`cargo test -p e2e`, then the runtime crate's API-server tests), and stops everything again
# even when tests fail. The run fails when stopping leaves something behind.
# With E2E_USE_EXISTING=1 it runs against $KUBECONFIG (and $TEMPO_URL) and starts nothing.
# Arguments go to the test binaries (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}

# The e2e crate's suites, then the runtime crate's tests that need an API server (`cargo test`
# skips those: they are `#[ignore]`d). Every suite runs even when one fails, so a run shows all
# that failed.
suites() {
  local rc=0
  $CARGO test --locked --no-fail-fast -p e2e --tests -- "$@" || rc=$?
  $CARGO test --locked -p multigres-runtime --test api_server -- --ignored "$@" || rc=$?
  return "$rc"
}

echo "[e2e] building the handler binaries" >&2
$CARGO build --locked -p cluster-handler -p resource-handler

if [[ ${E2E_USE_EXISTING:-0} == 1 ]]; then
  echo "[e2e] using the existing cluster at KUBECONFIG=${KUBECONFIG:-?}" >&2
  suites "$@"
  exit
fi

started=0
down() {
  local rc=$?
  if ((started)); then
    echo "[e2e] stopping the local control plane" >&2
    if ! e2e/scripts/cluster-down.sh >&2; then
      echo "[e2e] cluster-down failed; see e2e/.work/logs" >&2
      rc=1
    fi
  fi
  exit "$rc"
}
trap down EXIT
if ! MULTIGRES_E2E_REAL_NODE=1 e2e/scripts/cluster-up.sh >/dev/null; then
  echo "[e2e] the local control plane did not start (logs: e2e/.work/logs)" >&2
  e2e/scripts/cluster-down.sh >&2 || true
  exit 1
fi
started=1
# The operator's own image (release build) for the suite that installs it in-cluster; built here so
# a cold build does not count against that test's deadlines.
echo "[e2e] building the operator image and importing it into the real node" >&2
e2e/scripts/operator-image.sh --import >/dev/null
suites "$@"
