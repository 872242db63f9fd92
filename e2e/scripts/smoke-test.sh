#!/usr/bin/env bash
# Checks a running e2e cluster (started by cluster-up.sh) end to end, with curl, jq and kubectl:
#   1. a Deployment gets Ready pods on kwok nodes;
#   2. a span POSTed as OTLP/HTTP JSON to Tempo is readable via GET /api/traces/<id>;
#   3. an admin (system:masters client cert) request with a sampled `traceparent` yields an apiserver
#      SERVER span in the caller's trace, whose parent is the caller's span;
#   4. a ServiceAccount token (TokenRequest) request with a sampled `traceparent` yields an apiserver
#      SERVER span in a NEW trace that links to the caller's span, found via TraceQL
#      `{ link:traceID = "<caller trace id>" }`.
# It cleans up what it creates. Exit 0 when all pass; prints "N passed, N failed".
# Env: MULTIGRES_E2E_WORK (default <repo>/e2e/.work), MULTIGRES_E2E_SMOKE_TIMEOUT (60 s per wait).
set -euo pipefail

LOG_PREFIX=smoke-test
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

for tool in curl jq openssl base64; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required but not installed"
done
[[ -f "$WORK_DIR/env" ]] || die "$WORK_DIR/env not found: run e2e/scripts/cluster-up.sh first"
# shellcheck source=/dev/null
source "$WORK_DIR/env"
TIMEOUT=${MULTIGRES_E2E_SMOKE_TIMEOUT:-60}
PKI="$CLUSTER_DIR/pki"
NS=smoke-test-$(openssl rand -hex 3)

kubectl_() { "$MULTIGRES_E2E_BIN/kubectl" --request-timeout=10s "$@"; }
curl_() { curl --noproxy '*' -sS --max-time 10 "$@"; }
admin_curl() { curl_ --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$@"; }
# hex_to_b64 <hex>: Tempo's JSON carries trace/span ids as base64 of the raw bytes.
# shellcheck disable=SC2059,SC2001 # the format is the \xNN-escaped id itself
hex_to_b64() { printf "$(sed 's/../\\x&/g' <<<"$1")" | base64; }
# poll <command...>: retries every 0.5 s until success or TIMEOUT.
poll() {
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

passed=0 failed=0
check() {
  local name=$1 t0=$SECONDS
  shift
  if "$@"; then
    log "PASS $name ($((SECONDS - t0))s)"
    passed=$((passed + 1))
  else
    log "FAIL $name ($((SECONDS - t0))s)"
    failed=$((failed + 1))
  fi
}

cleanup() { kubectl_ delete namespace "$NS" --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT

# --- 1 ----------------------------------------------------------------------------------------------
deployment_ready_on_kwok() {
  kubectl_ create namespace "$NS" >/dev/null &&
    kubectl_ -n "$NS" create deployment web --image=registry.invalid/web:1 --replicas=3 >/dev/null &&
    kubectl_ -n "$NS" rollout status deployment/web --timeout="${TIMEOUT}s" >/dev/null || return 1
  local pods
  pods=$(kubectl_ -n "$NS" get pods -l app=web -o \
    'jsonpath={range .items[*]}{.spec.nodeName} {.status.phase} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')
  log "  pods (node phase ready): $(tr '\n' ';' <<<"$pods")"
  [[ "$(grep -c '^kwok-node-[0-9]* Running True$' <<<"$pods")" == 3 ]]
}

# --- 2 ----------------------------------------------------------------------------------------------
trace_has_span() { [[ "$(curl_ "$TEMPO_URL/api/traces/$1" | jq --arg s "$2" '[.batches[].scopeSpans[].spans[] | select(.spanId == $s)] | length')" -ge 1 ]]; }
otlp_roundtrip() {
  local tid sid now
  tid=$(openssl rand -hex 16) sid=$(openssl rand -hex 8) now=$(date +%s%N)
  curl_ -f -o /dev/null -H 'Content-Type: application/json' "$OTLP_HTTP_ENDPOINT/v1/traces" -d @- <<EOF || return 1
{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"smoke-test"}}]},
 "scopeSpans":[{"scope":{"name":"smoke"},"spans":[{"traceId":"$tid","spanId":"$sid","name":"smoke-span",
 "kind":2,"startTimeUnixNano":"$now","endTimeUnixNano":"$((now + 1000000))"}]}]}]}
EOF
  poll trace_has_span "$tid" "$(hex_to_b64 "$sid")"
}

# --- 3 ----------------------------------------------------------------------------------------------
# server_span_json <trace id hex>: the apiserver SERVER span(s) of that trace (compact JSON lines).
server_span_json() {
  curl_ -f "$TEMPO_URL/api/traces/$1" | jq -c '.batches[]
    | select(any(.resource.attributes[]; .key == "service.name" and .value.stringValue == "apiserver"))
    | .scopeSpans[].spans[] | select(.kind == "SPAN_KIND_SERVER")'
}
has_server_span() { [[ -n "$(server_span_json "$1")" ]]; }
admin_traceparent_joins_trace() {
  local tid sid span
  tid=$(openssl rand -hex 16) sid=$(openssl rand -hex 8)
  admin_curl -f -o /dev/null -H "traceparent: 00-$tid-$sid-01" \
    "$MULTIGRES_E2E_APISERVER_URL/api/v1/namespaces/$NS/configmaps" || return 1
  poll has_server_span "$tid" || { log "  no apiserver SERVER span in trace $tid"; return 1; }
  span=$(server_span_json "$tid")
  log "  server span: $(jq -c '{name, traceId, spanId, parentSpanId}' <<<"$span")"
  [[ "$(jq -r .parentSpanId <<<"$span")" == "$(hex_to_b64 "$sid")" ]]
}

# --- 4 ----------------------------------------------------------------------------------------------
linked_trace_ids() {
  curl_ -f -G "$TEMPO_URL/api/search" --data-urlencode "q={ link:traceID = \"$1\" }" | jq -r '.traces[].traceID'
}
has_linked_trace() { [[ -n "$(linked_trace_ids "$1")" ]]; }
sa_traceparent_links_new_trace() {
  local token tid sid new_tid span
  kubectl_ -n "$NS" create serviceaccount prober >/dev/null &&
    kubectl_ -n "$NS" create rolebinding prober-view --clusterrole=view --serviceaccount="$NS:prober" >/dev/null ||
    return 1
  token=$(admin_curl -f -X POST -H 'Content-Type: application/json' \
    "$MULTIGRES_E2E_APISERVER_URL/api/v1/namespaces/$NS/serviceaccounts/prober/token" \
    -d '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":600}}' |
    jq -r .status.token) || return 1
  [[ -n "$token" && "$token" != null ]] || { log "  TokenRequest returned no token"; return 1; }
  tid=$(openssl rand -hex 16) sid=$(openssl rand -hex 8)
  curl_ -f -o /dev/null --cacert "$PKI/ca.crt" -H "Authorization: Bearer $token" -H "traceparent: 00-$tid-$sid-01" \
    "$MULTIGRES_E2E_APISERVER_URL/api/v1/namespaces/$NS/configmaps" || return 1
  poll has_linked_trace "$tid" || { log "  TraceQL found no trace linking to $tid"; return 1; }
  new_tid=$(linked_trace_ids "$tid" | head -n1)
  # Search results trim leading zeros of trace ids; trace-by-id accepts either form.
  poll has_server_span "$new_tid" || return 1
  span=$(server_span_json "$new_tid")
  log "  caller trace $tid -> new trace $new_tid; server span: $(jq -c '{name, parentSpanId, links}' <<<"$span")"
  [[ "$(jq -r '.parentSpanId // "none"' <<<"$span")" == none ]] &&
    [[ "$(jq -r '.links[0].traceId' <<<"$span")" == "$(hex_to_b64 "$tid")" ]] &&
    [[ "$(jq -r '.links[0].spanId' <<<"$span")" == "$(hex_to_b64 "$sid")" ]]
}

check "Deployment gets Ready pods on kwok nodes" deployment_ready_on_kwok
check "OTLP/HTTP span readable via Tempo /api/traces/<id>" otlp_roundtrip
check "admin request with traceparent: apiserver span joins the caller's trace" admin_traceparent_joins_trace
check "ServiceAccount request with traceparent: new trace linked to the caller" sa_traceparent_links_new_trace

printf '%d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
