# syntax=docker/dockerfile:1
#
# One image for both operators of multigres-operator:
#
#   /usr/local/bin/cluster-handler    MultigresCluster and Cell -> child resources
#   /usr/local/bin/resource-handler   Etcd, MultiGateway, MultiOrch, MultiPooler -> workloads
#
# The Deployments pick the binary with `command:`, for example
#   command: ["/usr/local/bin/resource-handler"]
# ENTRYPOINT is cluster-handler only so that a bare `docker run IMAGE --help` prints something.
#
# The runtime image is distroless (no shell, no package manager) and runs as the unprivileged
# user 65532 ("nonroot"). Both binaries serve /healthz, /readyz and /metrics on ADMIN_ADDR
# (default 0.0.0.0:8080).
#
# Build (BuildKit is required for the cache mounts; it is the default builder of Docker 23+):
#   docker build -t multigres-operator:dev .
#
# Without a container engine, e2e/scripts/operator-image.sh builds the same layout (Debian's glibc,
# libgcc_s and CA certificates unpacked, the binaries and user below) for the local control plane;
# e2e/tests/in_cluster.rs holds both to the same USER, ENTRYPOINT, EXPOSE, LABELs and paths.

ARG RUST_VERSION=1.89

# --- build -----------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder

WORKDIR /src

# Only what cargo needs. Every workspace member has to be present for the workspace to load, even
# the ones not built here (e2e). Editing the README or the manifests does not invalidate this layer.
COPY Cargo.toml Cargo.lock ./
COPY shared/ shared/
COPY cluster-handler/ cluster-handler/
COPY resource-handler/ resource-handler/
COPY e2e/ e2e/

# The registry, git checkouts and target dir live in cache mounts, so a rebuild recompiles only
# what changed. A cache mount is not part of the image: the binaries are copied out of it.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p cluster-handler -p resource-handler \
    && mkdir -p /out \
    && cp target/release/cluster-handler target/release/resource-handler /out/

# --- runtime ---------------------------------------------------------------------------------------
# cc: glibc and libgcc_s, which the Rust binaries link against dynamically; plus CA certificates.
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="multigres-operator" \
      org.opencontainers.image.description="Kubernetes operator for Multigres: cluster-handler and resource-handler" \
      org.opencontainers.image.source="https://github.com/multigres/multigres-operator" \
      org.opencontainers.image.url="https://github.com/multigres/multigres-operator" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /out/cluster-handler /out/resource-handler /usr/local/bin/

USER 65532:65532

# The admin endpoint (health and metrics); documentation only.
EXPOSE 8080

ENTRYPOINT ["/usr/local/bin/cluster-handler"]
