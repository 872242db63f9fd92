//! Wiring of the resource-handler process: flags, logging, client, one shared watch per
//! workload type, four controllers, shutdown.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use kube::runtime::reflector::ReflectHandle;
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource};
use shared::cli::CommonArgs;
use shared::crd::{Etcd, MultiGateway, MultiOrch, MultiPooler};
use shared::kubeconnect::ensure_crd;
use shared::meta::RESOURCE_HANDLER_MANAGER;
use shared::watch::SharedWatch;

use crate::component::Component;
use crate::context::Context;
use crate::reconcile::{error_policy, reconcile};

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
    /// Runs until SIGTERM or SIGINT.
    pub async fn run(self) -> anyhow::Result<()> {
        let started = shared::process::start(&self.common, "multigres-resource-handler").await?;
        let client = started.client.clone();
        ensure_crd::<Etcd>(&client).await?;
        ensure_crd::<MultiGateway>(&client).await?;
        ensure_crd::<MultiOrch>(&client).await?;
        ensure_crd::<MultiPooler>(&client).await?;

        let statefulsets = SharedWatch::<StatefulSet>::new(RESOURCE_HANDLER_MANAGER);
        let deployments = SharedWatch::<Deployment>::new(RESOURCE_HANDLER_MANAGER);
        let services = SharedWatch::<Service>::new(RESOURCE_HANDLER_MANAGER);
        let etcd_owns = (statefulsets.subscribe()?, services.subscribe()?);
        let pooler_owns = (statefulsets.subscribe()?, services.subscribe()?);
        let gateway_owns = (deployments.subscribe()?, services.subscribe()?);
        let orch_owns = (deployments.subscribe()?, services.subscribe()?);

        let ctx = Arc::new(Context {
            client: client.clone(),
            statefulsets: statefulsets.spawn(self.common.watch_api(&client)),
            deployments: deployments.spawn(self.common.watch_api(&client)),
            services: services.spawn(self.common.watch_api(&client)),
            backoffs: Default::default(),
            resync: self.common.resync,
            metrics: started.metrics.clone(),
        });
        let shutdown = shared::process::shutdown_signal().shared();
        started.health.set_ready(true);
        tracing::info!("multigres-resource-handler is running");
        let stopping = shutdown.clone();
        let controllers = async {
            futures::join!(
                run_controller(
                    self.common.watch_api::<Etcd>(&client),
                    etcd_owns,
                    ctx.clone(),
                    shutdown.clone()
                ),
                run_controller(
                    self.common.watch_api::<MultiPooler>(&client),
                    pooler_owns,
                    ctx.clone(),
                    shutdown.clone()
                ),
                run_controller(
                    self.common.watch_api::<MultiGateway>(&client),
                    gateway_owns,
                    ctx.clone(),
                    shutdown.clone()
                ),
                run_controller(
                    self.common.watch_api::<MultiOrch>(&client),
                    orch_owns,
                    ctx.clone(),
                    shutdown.clone()
                ),
            );
        };
        shared::process::run_until_stopped(controllers, stopping, shared::process::SHUTDOWN_GRACE)
            .await;
        tracing::info!("multigres-resource-handler stopped");
        started.stop_telemetry(Duration::from_secs(5)).await;
        Ok(())
    }
}

/// Runs the controller of component kind `C` until `shutdown` resolves.
async fn run_controller<C, W>(
    api: Api<C>,
    (workloads, services): (ReflectHandle<W>, ReflectHandle<Service>),
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) where
    C: Component + kube::Resource<DynamicType = ()>,
    W: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    Controller::new(api, watcher::Config::default())
        .owns_shared_stream(workloads)
        .owns_shared_stream(services)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::<C>, error_policy::<C>, ctx)
        .for_each(|_| std::future::ready(()))
        .await;
}
