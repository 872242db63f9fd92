//! Wiring of the cluster-handler process: flags, logging, client, shared watches of the
//! children, the MultigresCluster and Cell controllers, leader election, shutdown.

use std::sync::Arc;

use clap::Parser;
use futures::StreamExt;
use kube::runtime::{Controller, watcher};
use multigres_api::crd::{
    Cell, Etcd, MultiGateway, MultiOrch, MultiPooler, MultigresCluster, aggregate_kinds,
    component_kinds,
};
use multigres_api::meta::CLUSTER_HANDLER_MANAGER;
use multigres_runtime::cli::CommonArgs;
use multigres_runtime::kubeconnect::ensure_crds;
use multigres_runtime::metrics::Metrics;
use multigres_runtime::process::Stop;
use multigres_runtime::reconcile::{error_policy, reconcile};
use multigres_runtime::watch::{SharedWatch, WatchStarter};

use crate::context::Context;

/// Reconciles MultigresCluster and Cell objects into Multigres component objects.
#[derive(Debug, Parser)]
#[command(version, after_help = multigres_runtime::cli::ENVIRONMENT_HELP)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Write each cluster's Cell and Database records into its etcd (the Multigres global
    /// topology) before creating its cells. Off only where no etcd runs, such as simulated
    /// nodes; the cells are then created without records.
    #[arg(long, env = "MANAGE_TOPOLOGY", default_value_t = true, action = clap::ArgAction::Set)]
    pub manage_topology: bool,

    /// DNS server (an IP) that resolves cluster names such as `demo-etcd-client.prod.svc`,
    /// for a handler running outside the cluster; inside, the pod's resolver does.
    #[arg(long, env = "CLUSTER_DNS")]
    pub cluster_dns: Option<std::net::IpAddr>,
}

impl Args {
    /// Runs until SIGTERM or SIGINT. Fails fast, with a message saying what to fix, when the
    /// cluster is unreachable or the CRDs are not installed.
    pub async fn run(self) -> anyhow::Result<()> {
        let started =
            multigres_runtime::process::start(&self.common, CLUSTER_HANDLER_MANAGER).await?;
        let client = started.client.clone();
        ensure_crds(&client, &[aggregate_kinds(), component_kinds()].concat()).await?;
        let metrics = started.metrics.clone();
        let common = self.common.clone();
        let topology = self
            .manage_topology
            .then(|| crate::topology::etcd::Topology::new(self.cluster_dns))
            .transpose()?;
        started
            .serve(&self.common.leader, CLUSTER_HANDLER_MANAGER, |stop| {
                controllers(
                    common.clone(),
                    client.clone(),
                    metrics.clone(),
                    topology.clone(),
                    stop,
                )
            })
            .await
    }
}

/// The MultigresCluster and Cell controllers over fresh watches, until `stop` resolves.
async fn controllers(
    common: CommonArgs,
    client: kube::Client,
    metrics: Arc<Metrics>,
    topology: Option<crate::topology::etcd::Topology>,
    stop: Stop,
) -> anyhow::Result<()> {
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
    // Fields are evaluated in order: every watch starts before the bookkeeping takes their
    // readiness.
    let mut started = WatchStarter::new(&common, &client, stop.clone());
    let ctx = Arc::new(Context {
        etcds: started.start(etcds),
        cells: started.start(cells),
        gateways: started.start(gateways),
        orchs: started.start(orchs),
        poolers: started.start(poolers),
        ensured: Default::default(),
        topology,
        run: started.bookkeeping(CLUSTER_HANDLER_MANAGER, metrics),
    });
    let clusters = Controller::new(
        common.watch_api::<MultigresCluster>(&client),
        watcher::Config::default(),
    )
    .with_config(common.controller_config())
    .owns_shared_stream(etcd_events)
    .owns_shared_stream(cell_events)
    .graceful_shutdown_on(stop.clone())
    .run(
        reconcile::<MultigresCluster, Context>,
        error_policy::<MultigresCluster, Context>,
        ctx.clone(),
    )
    .for_each(|_| std::future::ready(()));
    let cells = Controller::new(
        common.watch_api::<Cell>(&client),
        watcher::Config::default(),
    )
    .with_config(common.controller_config())
    .owns_shared_stream(gateway_events)
    .owns_shared_stream(orch_events)
    .owns_shared_stream(pooler_events)
    .graceful_shutdown_on(stop)
    .run(
        reconcile::<Cell, Context>,
        error_policy::<Cell, Context>,
        ctx,
    )
    .for_each(|_| std::future::ready(()));
    tracing::info!("multigres-cluster-handler is running");
    futures::join!(clusters, cells);
    Ok(())
}
