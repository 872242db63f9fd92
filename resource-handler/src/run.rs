//! Wiring of the resource-handler process: flags, logging, client, one shared watch per
//! owned type and one of pods, four controllers, leader election, shutdown.

use std::sync::Arc;

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::ReflectHandle;
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource};
use multigres_api::crd::{Etcd, MultiGateway, MultiOrch, MultiPooler, component_kinds};
use multigres_api::meta::RESOURCE_HANDLER_MANAGER;
use multigres_runtime::cli::{CommonArgs, parse_url};
use multigres_runtime::kubeconnect::ensure_crds;
use multigres_runtime::metrics::Metrics;
use multigres_runtime::process::Stop;
use multigres_runtime::watch::CachesReady;
use multigres_runtime::watch::SharedWatch;

use crate::builders::{BuildContext, DataPlaneTracing};
use crate::component::Component;
use crate::context::Context;
use crate::pods::{self, PodHealth};
use multigres_runtime::reconcile::{Bookkeeping, error_policy, reconcile};

/// Command-line flags of the resource-handler.
#[derive(Debug, Parser)]
#[command(
    name = "resource-handler",
    version,
    after_help = multigres_runtime::cli::ENVIRONMENT_HELP,
    about = "Reconciles Etcd, MultiGateway, MultiOrch and MultiPooler objects into workloads."
)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    /// OTLP endpoint the Multigres pods export traces to, written into the same variable the
    /// handler's own endpoint came from (OTEL_EXPORTER_OTLP_ENDPOINT or
    /// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) [default: the handler's own endpoint]. Only used while
    /// the handler exports traces.
    #[arg(long, env = "DATA_PLANE_OTLP_ENDPOINT", value_parser = parse_url)]
    pub data_plane_otlp_endpoint: Option<String>,
}

impl Args {
    /// Runs until SIGTERM or SIGINT.
    pub async fn run(self) -> anyhow::Result<()> {
        let started =
            multigres_runtime::process::start(&self.common, RESOURCE_HANDLER_MANAGER).await?;
        let client = started.client.clone();
        ensure_crds(&client, &component_kinds()).await?;
        let metrics = started.metrics.clone();
        let common = self.common.clone();
        let build = self.build_context(started.telemetry.config());
        started
            .serve(&self.common.leader, RESOURCE_HANDLER_MANAGER, |stop| {
                controllers(
                    common.clone(),
                    build.clone(),
                    client.clone(),
                    metrics.clone(),
                    stop,
                )
            })
            .await
    }

    /// The builders' settings: the data plane exports traces like this handler, to the
    /// data-plane endpoint.
    fn build_context(&self, telemetry: &multigres_telemetry::TelemetryConfig) -> BuildContext {
        let data_plane =
            DataPlaneTracing::from_handler(telemetry, self.data_plane_otlp_endpoint.as_deref());
        match &data_plane {
            Some(t) => tracing::info!(
                endpoint = %t.endpoint,
                variable = t.endpoint_variable.name(),
                protocol = t.protocol.as_str(),
                sampler = t.sampler.name(),
                "Multigres pods export traces"
            ),
            None => tracing::info!("Multigres pods export no traces (this handler exports none)"),
        }
        BuildContext {
            tracing: data_plane,
        }
    }
}

/// The four component controllers over fresh watches, until `stop` resolves.
async fn controllers(
    common: CommonArgs,
    build: BuildContext,
    client: kube::Client,
    metrics: Arc<Metrics>,
    stop: Stop,
) -> anyhow::Result<()> {
    let statefulsets = SharedWatch::<StatefulSet>::new(RESOURCE_HANDLER_MANAGER);
    let deployments = SharedWatch::<Deployment>::new(RESOURCE_HANDLER_MANAGER);
    let services = SharedWatch::<Service>::new(RESOURCE_HANDLER_MANAGER);
    let config_maps = SharedWatch::<ConfigMap>::new(RESOURCE_HANDLER_MANAGER);
    let disruption_budgets = SharedWatch::<PodDisruptionBudget>::new(RESOURCE_HANDLER_MANAGER);
    let pods = SharedWatch::<Pod>::new(RESOURCE_HANDLER_MANAGER).trimmed(pods::trim);
    let etcd_owns = Owned::new(
        statefulsets.subscribe()?,
        services.subscribe()?,
        pods.subscribe()?,
    );
    // Only poolers have ConfigMaps and PodDisruptionBudgets.
    let pooler_owns = Owned {
        config_maps: Some(config_maps.subscribe()?),
        disruption_budgets: Some(disruption_budgets.subscribe()?),
        ..Owned::new(
            statefulsets.subscribe()?,
            services.subscribe()?,
            pods.subscribe()?,
        )
    };
    let gateway_owns = Owned::new(
        deployments.subscribe()?,
        services.subscribe()?,
        pods.subscribe()?,
    );
    let orch_owns = Owned::new(
        deployments.subscribe()?,
        services.subscribe()?,
        pods.subscribe()?,
    );
    let statefulsets = statefulsets.spawn(common.watch_api(&client), stop.clone());
    let deployments = deployments.spawn(common.watch_api(&client), stop.clone());
    let services = services.spawn(common.watch_api(&client), stop.clone());
    let config_maps = config_maps.spawn(common.watch_api(&client), stop.clone());
    let disruption_budgets = disruption_budgets.spawn(common.watch_api(&client), stop.clone());
    let pods = pods.spawn(common.watch_api(&client), stop.clone());
    let caches = CachesReady::new([
        statefulsets.readiness(),
        deployments.readiness(),
        services.readiness(),
        config_maps.readiness(),
        disruption_budgets.readiness(),
        pods.readiness(),
    ]);
    let ctx = Arc::new(Context {
        run: Bookkeeping::new(
            client.clone(),
            RESOURCE_HANDLER_MANAGER,
            caches,
            metrics,
            common.resync,
        )
        .following_generations_for(common.trace_follow_window),
        statefulsets,
        deployments,
        services,
        config_maps,
        disruption_budgets,
        pods,
        pod_health: Arc::new(PodHealth::default()),
        build,
    });
    tracing::info!("multigres-resource-handler is running");
    let config = common.controller_config();
    futures::join!(
        run_controller(
            common.watch_api::<Etcd>(&client),
            etcd_owns,
            ctx.clone(),
            config.clone(),
            stop.clone()
        ),
        run_controller(
            common.watch_api::<MultiPooler>(&client),
            pooler_owns,
            ctx.clone(),
            config.clone(),
            stop.clone()
        ),
        run_controller(
            common.watch_api::<MultiGateway>(&client),
            gateway_owns,
            ctx.clone(),
            config.clone(),
            stop.clone()
        ),
        run_controller(
            common.watch_api::<MultiOrch>(&client),
            orch_owns,
            ctx,
            config,
            stop
        ),
    );
    Ok(())
}

/// The change streams of the objects one controller owns (workload type `W`): a change to any
/// of them, a hand edit or a deletion, reconciles the owner, which puts it back. Its pods'
/// changes reconcile it when a pod's problem appears, changes or clears.
struct Owned<W: Resource<DynamicType = ()> + Clone + 'static> {
    workloads: ReflectHandle<W>,
    services: ReflectHandle<Service>,
    config_maps: Option<ReflectHandle<ConfigMap>>,
    disruption_budgets: Option<ReflectHandle<PodDisruptionBudget>>,
    pods: ReflectHandle<Pod>,
}

impl<W: Resource<DynamicType = ()> + Clone + 'static> Owned<W> {
    /// A workload, its Services and its pods, nothing else.
    fn new(
        workloads: ReflectHandle<W>,
        services: ReflectHandle<Service>,
        pods: ReflectHandle<Pod>,
    ) -> Self {
        Owned {
            workloads,
            services,
            config_maps: None,
            disruption_budgets: None,
            pods,
        }
    }
}

/// Runs the controller of component kind `C` until `stop` resolves.
async fn run_controller<C, W>(
    api: Api<C>,
    owned: Owned<W>,
    ctx: Arc<Context>,
    config: kube::runtime::controller::Config,
    stop: Stop,
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
    let Owned {
        workloads,
        services,
        config_maps,
        disruption_budgets,
        pods,
    } = owned;
    let health = ctx.pod_health.clone();
    let pod_changes = pods.filter(move |pod| {
        std::future::ready(health.observe(C::LABEL, pod, k8s_openapi::jiff::Timestamp::now()))
    });
    let mut controller = Controller::new(api, watcher::Config::default())
        .with_config(config)
        .owns_shared_stream(workloads)
        .owns_shared_stream(services)
        .watches_shared_stream(pod_changes, |pod| pods::owner_of::<C>(&pod));
    if let Some(config_maps) = config_maps {
        controller = controller.owns_shared_stream(config_maps);
    }
    if let Some(disruption_budgets) = disruption_budgets {
        controller = controller.owns_shared_stream(disruption_budgets);
    }
    controller
        .graceful_shutdown_on(stop)
        .run(reconcile::<C, Context>, error_policy::<C, Context>, ctx)
        .for_each(|_| std::future::ready(()))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("resource-handler").chain(args.iter().copied()))
    }

    #[test]
    fn the_data_plane_endpoint_flag_must_be_a_url() {
        let flag = "--data-plane-otlp-endpoint";
        let args = parse(&[flag, "http://198.18.0.1:4318"]).expect("a URL");
        assert_eq!(
            args.data_plane_otlp_endpoint.as_deref(),
            Some("http://198.18.0.1:4318")
        );
        let err = parse(&[flag, "198.18.0.1:4318"]).expect_err("no scheme");
        assert!(
            err.to_string().contains("data-plane-otlp-endpoint"),
            "{err}"
        );
    }
}
