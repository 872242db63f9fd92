//! Wiring of the cluster-handler process: flags, logging, client, shared watches of the
//! children, the MultigresCluster and Cell controllers, shutdown.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures::{FutureExt, StreamExt};
use kube::runtime::{Controller, watcher};
use shared::cli::CommonArgs;
use shared::crd::{Cell, Etcd, MultiGateway, MultiOrch, MultiPooler, MultigresCluster};
use shared::kubeconnect::ensure_crd;
use shared::meta::CLUSTER_HANDLER_MANAGER;
use shared::watch::SharedWatch;

use crate::context::Context;
use crate::{cell, cluster};

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
    /// cluster is unreachable or the CRDs are not installed.
    pub async fn run(self) -> anyhow::Result<()> {
        let started = shared::process::start(&self.common, "multigres-cluster-handler").await?;
        let client = started.client.clone();
        ensure_crd::<MultigresCluster>(&client).await?;
        ensure_crd::<Cell>(&client).await?;
        ensure_crd::<Etcd>(&client).await?;
        ensure_crd::<MultiGateway>(&client).await?;
        ensure_crd::<MultiOrch>(&client).await?;
        ensure_crd::<MultiPooler>(&client).await?;

        let etcds = SharedWatch::<Etcd>::new(CLUSTER_HANDLER_MANAGER);
        let cells = SharedWatch::<Cell>::new(CLUSTER_HANDLER_MANAGER);
        let gateways = SharedWatch::<MultiGateway>::new(CLUSTER_HANDLER_MANAGER);
        let orchs = SharedWatch::<MultiOrch>::new(CLUSTER_HANDLER_MANAGER);
        let poolers = SharedWatch::<MultiPooler>::new(CLUSTER_HANDLER_MANAGER);
        let (etcd_events, cell_events) = (etcds.subscribe()?, cells.subscribe()?);
        let (gateway_events, orch_events, pooler_events) = (
            gateways.subscribe()?,
            orchs.subscribe()?,
            poolers.subscribe()?,
        );
        let common = &self.common;
        let ctx = Arc::new(Context {
            client: client.clone(),
            etcds: etcds.spawn(common.watch_api(&client)),
            cells: cells.spawn(common.watch_api(&client)),
            gateways: gateways.spawn(common.watch_api(&client)),
            orchs: orchs.spawn(common.watch_api(&client)),
            poolers: poolers.spawn(common.watch_api(&client)),
            backoffs: Default::default(),
            metrics: started.metrics.clone(),
            resync: self.common.resync,
        });
        let shutdown = shared::process::shutdown_signal().shared();
        let stopping = shutdown.clone();
        let clusters = Controller::new(
            common.watch_api::<MultigresCluster>(&client),
            watcher::Config::default(),
        )
        .owns_shared_stream(etcd_events)
        .owns_shared_stream(cell_events)
        .graceful_shutdown_on(shutdown.clone())
        .run(cluster::reconcile, cluster::error_policy, ctx.clone())
        .for_each(|_| std::future::ready(()));
        let cells = Controller::new(
            common.watch_api::<Cell>(&client),
            watcher::Config::default(),
        )
        .owns_shared_stream(gateway_events)
        .owns_shared_stream(orch_events)
        .owns_shared_stream(pooler_events)
        .graceful_shutdown_on(shutdown)
        .run(cell::reconcile, cell::error_policy, ctx)
        .for_each(|_| std::future::ready(()));
        started.health.set_ready(true);
        tracing::info!("multigres-cluster-handler is running");
        let controllers = async {
            futures::join!(clusters, cells);
        };
        shared::process::run_until_stopped(controllers, stopping, shared::process::SHUTDOWN_GRACE)
            .await;
        tracing::info!("multigres-cluster-handler stopped");
        started.stop_telemetry(Duration::from_secs(5)).await;
        Ok(())
    }
}
