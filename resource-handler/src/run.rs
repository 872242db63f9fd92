//! Wiring of the resource-handler process: flags, logging, client, one shared watch per
//! owned type and one of pods, a controller per component kind, leader election, shutdown.

use std::sync::Arc;

use clap::Parser;
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::runtime::reflector::ReflectHandle;
use kube::runtime::{Controller, watcher};
use multigres_api::crd::component_kinds;
use multigres_api::meta::RESOURCE_HANDLER_MANAGER;
use multigres_runtime::cli::{CommonArgs, parse_url};
use multigres_runtime::kubeconnect::ensure_crds;
use multigres_runtime::metrics::Metrics;
use multigres_runtime::process::Stop;
use multigres_runtime::watch::{SharedWatch, WatchStarter};

use crate::builders::{BuildContext, DataPlaneTracing};
use crate::component::Component;
use crate::context::Context;
use crate::pods::{self, PodHealth};
use multigres_runtime::reconcile::{error_policy, reconcile};

/// Reconciles the multigres.com component objects (the kinds the cluster-handler fans a cluster out into) into workloads.
#[derive(Debug, Parser)]
#[command(version, after_help = multigres_runtime::cli::ENVIRONMENT_HELP)]
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

/// One controller per component kind over fresh shared watches, until `stop` resolves.
async fn controllers(
    common: CommonArgs,
    build: BuildContext,
    client: kube::Client,
    metrics: Arc<Metrics>,
    stop: Stop,
) -> anyhow::Result<()> {
    let watches = Watches::new();
    let config = common.controller_config();
    // Every controller subscribes to the shared watches before they start, and runs once the
    // context holding their caches exists.
    macro_rules! controllers {
        ($($kind:ty),*) => {
            vec![$(controller::<$kind>(
                common.watch_api(&client),
                watches.subscribe()?,
                config.clone(),
                stop.clone(),
            )),*]
        };
    }
    let starts: Vec<Start> = multigres_api::for_each_component_kind!(controllers);
    // Fields are evaluated in order: every watch starts before the bookkeeping takes their
    // readiness.
    let mut started = WatchStarter::new(&common, &client, stop.clone());
    let ctx = Arc::new(Context {
        statefulsets: started.start(watches.statefulsets),
        deployments: started.start(watches.deployments),
        services: started.start(watches.services),
        config_maps: started.start(watches.config_maps),
        disruption_budgets: started.start(watches.disruption_budgets),
        pods: started.start(watches.pods),
        pod_health: Arc::new(PodHealth::default()),
        build,
        run: started.bookkeeping(RESOURCE_HANDLER_MANAGER, metrics),
    });
    tracing::info!("multigres-resource-handler is running");
    futures::future::join_all(starts.into_iter().map(|start| start(ctx.clone()))).await;
    Ok(())
}

/// One watch per type a component may own, and one of pods, shared by every controller.
struct Watches {
    statefulsets: SharedWatch<StatefulSet>,
    deployments: SharedWatch<Deployment>,
    services: SharedWatch<Service>,
    config_maps: SharedWatch<ConfigMap>,
    disruption_budgets: SharedWatch<PodDisruptionBudget>,
    pods: SharedWatch<Pod>,
}

impl Watches {
    fn new() -> Self {
        Watches {
            statefulsets: SharedWatch::new(RESOURCE_HANDLER_MANAGER),
            deployments: SharedWatch::new(RESOURCE_HANDLER_MANAGER),
            services: SharedWatch::new(RESOURCE_HANDLER_MANAGER),
            config_maps: SharedWatch::new(RESOURCE_HANDLER_MANAGER),
            disruption_budgets: SharedWatch::new(RESOURCE_HANDLER_MANAGER),
            pods: SharedWatch::new(RESOURCE_HANDLER_MANAGER).trimmed(pods::trim),
        }
    }

    /// The change streams of one controller.
    fn subscribe(&self) -> anyhow::Result<Owned> {
        Ok(Owned {
            statefulsets: self.statefulsets.subscribe()?,
            deployments: self.deployments.subscribe()?,
            services: self.services.subscribe()?,
            config_maps: self.config_maps.subscribe()?,
            disruption_budgets: self.disruption_budgets.subscribe()?,
            pods: self.pods.subscribe()?,
        })
    }
}

/// The change streams of the objects one controller owns: a change to any of them, a hand edit
/// or a deletion, reconciles the owner its owner reference names (so a kind never hears of
/// another kind's objects), which puts it back. Its pods' changes reconcile it when a pod's
/// problem appears, changes or clears.
struct Owned {
    statefulsets: ReflectHandle<StatefulSet>,
    deployments: ReflectHandle<Deployment>,
    services: ReflectHandle<Service>,
    config_maps: ReflectHandle<ConfigMap>,
    disruption_budgets: ReflectHandle<PodDisruptionBudget>,
    pods: ReflectHandle<Pod>,
}

/// A controller, subscribed and waiting for its context.
type Start = Box<dyn FnOnce(Arc<Context>) -> BoxFuture<'static, ()> + Send>;

/// The controller of component kind `C`, to run with the context once the caches exist.
fn controller<C>(
    api: Api<C>,
    owned: Owned,
    config: kube::runtime::controller::Config,
    stop: Stop,
) -> Start
where
    C: Component + kube::Resource<DynamicType = ()>,
{
    Box::new(move |ctx: Arc<Context>| {
        let health = ctx.pod_health.clone();
        let pod_changes = owned.pods.filter(move |pod| {
            std::future::ready(health.observe(C::LABEL, pod, k8s_openapi::jiff::Timestamp::now()))
        });
        Controller::new(api, watcher::Config::default())
            .with_config(config)
            .owns_shared_stream(owned.statefulsets)
            .owns_shared_stream(owned.deployments)
            .owns_shared_stream(owned.services)
            .owns_shared_stream(owned.config_maps)
            .owns_shared_stream(owned.disruption_budgets)
            .watches_shared_stream(pod_changes, |pod| pods::owner_of::<C>(&pod))
            .graceful_shutdown_on(stop)
            .run(reconcile::<C, Context>, error_policy::<C, Context>, ctx)
            .for_each(|_| std::future::ready(()))
            .boxed()
    })
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
