#!/usr/bin/env bash
# Dependency policy (deny.toml) with cargo-deny: licenses, bans and sources always; advisories
# when the RustSec database can be fetched (it lives outside the package registries, so on a
# machine that reaches only those, the script says they were not checked).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
DENY_VERSION=0.20.2

if ! "$CARGO" deny --version 2>/dev/null | grep -q "$DENY_VERSION"; then
  echo "[audit] installing cargo-deny $DENY_VERSION (once; ~2 min)" >&2
  "$CARGO" install --locked --quiet cargo-deny --version "$DENY_VERSION"
fi

"$CARGO" deny --log-level error check licenses bans sources

out=$(timeout 120 "$CARGO" deny --log-level error check advisories 2>&1) && { echo "$out" | tail -1; exit 0; }
if grep -qiE "failed to fetch advisory database|could not resolve host|unable to access" <<<"$out"; then
  echo "[audit] advisories NOT checked: the RustSec database cannot be fetched from this machine" >&2
  exit 0
fi
echo "$out" >&2
exit 1
