//! Wiring of the resource-handler process: flags, logging, client, controllers, shutdown.

use clap::Parser;
use shared::cli::CommonArgs;
use shared::crd::{Etcd, MultiGateway, MultiOrch, MultiPooler};
use shared::kubeconnect::{connect, ensure_crd};

/// Command-line flags of the resource-handler.
#[derive(Debug, Parser)]
#[command(
    name = "resource-handler",
    version,
    about = "Reconciles Etcd, MultiGateway, MultiOrch and MultiPooler objects into workloads."
)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
}

impl Args {
    /// Runs until SIGTERM or SIGINT. Fails fast, with a message saying what to fix, when the
    /// cluster is unreachable or the CRDs of Etcd, MultiGateway, MultiOrch, MultiPooler are not installed.
    pub async fn run(self) -> anyhow::Result<()> {
        shared::logging::init(self.common.log_format);
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            "starting multigres-resource-handler"
        );
        let client = connect(self.common.connect_timeout).await?;
        ensure_crd::<Etcd>(&client).await?;
        ensure_crd::<MultiGateway>(&client).await?;
        ensure_crd::<MultiOrch>(&client).await?;
        ensure_crd::<MultiPooler>(&client).await?;
        tracing::info!("multigres-resource-handler is running");
        shared::process::shutdown_signal().await;
        tracing::info!("multigres-resource-handler stopped");
        Ok(())
    }
}
