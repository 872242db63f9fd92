//! Wiring of the cluster-handler process: flags, logging, client, controllers, shutdown.

use clap::Parser;
use shared::cli::CommonArgs;
use shared::crd::{Cell, MultigresCluster};
use shared::kubeconnect::{connect, ensure_crd};

/// Command-line flags of the cluster-handler.
#[derive(Debug, Parser)]
#[command(
    name = "cluster-handler",
    version,
    about = "Reconciles MultigresCluster and Cell objects into Multigres component objects."
)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
}

impl Args {
    /// Runs until SIGTERM or SIGINT. Fails fast, with a message saying what to fix, when the
    /// cluster is unreachable or the CRDs of MultigresCluster, Cell are not installed.
    pub async fn run(self) -> anyhow::Result<()> {
        shared::logging::init(self.common.log_format);
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            "starting multigres-cluster-handler"
        );
        let client = connect(self.common.connect_timeout).await?;
        ensure_crd::<MultigresCluster>(&client).await?;
        ensure_crd::<Cell>(&client).await?;
        tracing::info!("multigres-cluster-handler is running");
        shared::process::shutdown_signal().await;
        tracing::info!("multigres-cluster-handler stopped");
        Ok(())
    }
}
