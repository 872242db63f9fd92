# The verbs of the project. `make test` and `make demo` are the two commands a fresh machine
# needs; everything they use is built or installed by them.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo

.PHONY: help build test audit unit lint fmt manifests e2e demo demo-db demo-down bench cluster-up cluster-down cluster-smoke deps

help: ## List the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

deps: ## Install the Debian packages the scripts use (when missing)
	@./scripts/ensure-deps.sh

build: ## Build every crate
	$(CARGO) build --workspace --all-targets

fmt: ## Format the code
	$(CARGO) fmt --all

lint: ## Check formatting and clippy (warnings are errors)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

manifests: ## Regenerate manifests/crds and manifests/rbac/components.yaml from the Rust types
	$(CARGO) run -q -p multigres-api --bin crdgen -- manifests

audit: ## Dependency policy with cargo-deny (licenses, bans, sources, advisories when reachable)
	./scripts/audit.sh

unit: ## Unit and process tests (no cluster needed)
	$(CARGO) test --workspace --locked --exclude e2e
	$(CARGO) test --locked -p e2e --lib

test: deps lint audit unit e2e ## Everything CI runs: lint, dependency audit, unit tests, end-to-end tests

e2e: ## End-to-end tests: local control plane up, both handlers as processes, down again
	./scripts/run-e2e.sh

cluster-up: ## Start the local control plane and Tempo (builds them on first use)
	@e2e/scripts/cluster-up.sh

cluster-down: ## Stop the local control plane and Tempo
	@e2e/scripts/cluster-down.sh

cluster-smoke: ## Check a running local control plane with curl/kubectl only
	@e2e/scripts/smoke-test.sh

demo: ## Local cluster + both handlers + a sample cluster + the waterfall of its trace
	./scripts/demo.sh

demo-db: ## Like demo, with a database on the real node: Healthy with a primary, then SQL through the gateway
	DEMO_DATABASE=1 ./scripts/demo.sh

demo-down: ## Stop what `make demo` started
	./scripts/demo-down.sh

bench: ## Span work, tracing overhead (off, 100%, 1% and both without keeping failures, side by side) and convergence at scale; BENCH_ARGS="--clusters 20"
	./scripts/bench.sh $(BENCH_ARGS)
