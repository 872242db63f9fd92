# shellcheck shell=bash
# Helpers of the cached builds (build-tools.sh, build-images.sh). Source it after defining
# `log` and `die`; it defines functions only. Each build sets STEP_LOG_DIR (where step logs go),
# FAILURE_LOG_DIR (where a failed step's log is kept) and build_start=$SECONDS.

# use_go: finds the Go toolchain ($GO, else go on PATH, else /usr/local/go/bin/go), checks it is
# >= 1.26, sets go_version and go_platform, and exports the settings of every build.
use_go() {
  if [[ -z "${GO:-}" ]]; then
    if command -v go >/dev/null 2>&1; then GO=go
    elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
    else die "no Go toolchain found: install Go >= 1.26 or set GO=/path/to/go"
    fi
  fi
  export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0
  # -mod=readonly: the committed go.mod/go.sum are the whole truth; a build never edits them.
  export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"
  go_version=$("$GO" env GOVERSION 2>/dev/null) || die "'$GO env GOVERSION' failed: is $GO a Go toolchain?"
  go_platform=$("$GO" env GOOS)/$("$GO" env GOARCH)
  case "$go_version" in
    go1.2[6-9]* | go1.[3-9][0-9]* | go[2-9]*) ;;
    *) die "$GO is $go_version; the tools modules need Go >= 1.26 (set GO=/path/to/go)" ;;
  esac
}

step_pid=

fmt_duration() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# stop_step: stops a running step with all its children (for an EXIT trap).
stop_step() {
  if [[ -n "$step_pid" ]]; then
    kill -TERM -- "-$step_pid" 2>/dev/null || kill -TERM "$step_pid" 2>/dev/null || true
    wait "$step_pid" 2>/dev/null || true
  fi
}

# run_step <name> <description> <dir> <command...>: runs the command (an executable, not a shell
# function) in dir with its output in $STEP_LOG_DIR/<name>.log; on failure prints the tail of that
# log, keeps a copy as $FAILURE_LOG_DIR/build-failure-<name>.log and exits.
run_step() {
  local name=$1 desc=$2 dir=$3
  shift 3
  local step_log="$STEP_LOG_DIR/$name.log" start=$SECONDS
  log "$desc..."
  # In its own session (so stop_step can stop it with all its children) and in the background +
  # wait, so that SIGTERM/SIGINT are handled at once, not after the step.
  (cd "$dir" && exec setsid "$@") >"$step_log" 2>&1 </dev/null &
  step_pid=$!
  if ! wait "$step_pid"; then
    step_pid=
    local kept="$FAILURE_LOG_DIR/build-failure-$name.log"
    cp "$step_log" "$kept" 2>/dev/null || kept=$step_log
    log "FAILED: $desc (after $(fmt_duration $((SECONDS - start)))); last lines of $kept:"
    tail -n "${MULTIGRES_E2E_LOG_TAIL:-40}" "$step_log" | sed 's/^/    /' >&2
    die "step '$name' failed; the cache keeps only complete entries"
  fi
  step_pid=
  log "  $name: done in $(fmt_duration $((SECONDS - start))) (total $(fmt_duration $((SECONDS - build_start))))"
}
