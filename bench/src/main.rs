//! `make bench`: tracing overhead and convergence at scale, against the local control plane.
//!
//! Overhead: the same workload (N MultigresClusters created, converged, scaled, converged,
//! deleted) with both handlers in five modes (tracing off, 100% sampling exported to Tempo,
//! 1% sampling, and both again without keeping failed and slow reconciles,
//! "on-plain"/"1%-plain"; `--modes` adds "down": 100% to a backend that refuses and "http": 100% over
//! OTLP HTTP/protobuf), the modes side by side
//! (each with its own handler processes and namespace, under the same load at the same time),
//! `--repeats` times; per handler CPU time, peak and steady RSS, reconciles and CPU per
//! reconcile, reported as median and spread, and each mode against the off run of its repeat.
//!
//! Convergence: `--scale-clusters` clusters applied at once; time to all Healthy, API requests
//! per cluster by verb, writes during steady-state resyncs, peak RSS; then the floor: the very
//! objects the operator made, written by a plain client loop with the same concurrency into a
//! fresh namespace with no handler running, timed until their workloads are ready.
//!
//! The handlers, and the floor's writes, run as the handlers' ServiceAccounts (installed from
//! `manifests/`), so the API server queues them as it would in a cluster.
//!
//! Prints a Markdown report and writes it to `bench/results/<date>.md`.

mod args;
mod handlers;
mod mode;
mod overhead;
mod report;
mod scale;
mod stats;
mod usage;
mod workload;

use e2e::{TestEnv, install_crds};

use crate::args::Args;
use crate::handlers::Identities;
use crate::report::Report;

#[tokio::main]
async fn main() {
    let a = Args::from_argv(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let env = TestEnv::load();
    let client = e2e::k8s::admin_client(&env).await;
    install_crds(&client).await;
    let ids = Identities::install(&env, &client).await;
    let mut out = Report::start();
    if !a.skip_overhead {
        overhead::overhead(
            &env, &client, &ids, a.clusters, a.repeats, &a.modes, &mut out,
        )
        .await;
        out.save();
    }
    if !a.skip_scale {
        scale::scale(&client, &ids, a.scale_clusters, &mut out).await;
        out.save();
    }
    println!("{}", out.text());
}
