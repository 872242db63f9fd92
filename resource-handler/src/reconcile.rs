//! The one reconcile every component kind goes through:
//! build (pure) → check the claims of a StatefulSet about to be created → apply each object
//! that changed → derive status → write it if it changed.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use multigres_api::meta::{RESOURCE_HANDLER_MANAGER, object_ref};
use multigres_runtime::apply::Desired;
use multigres_runtime::fanout::{FanOut, failures};
use multigres_telemetry::spans;
use opentelemetry::KeyValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::component::{Component, Workload, WorkloadKind, Workloads};
use crate::context::Context;
use crate::error::Error;
use crate::status::{
    Outcome, WorkloadState, component_status, deployment_state, statefulset_state,
};
use crate::volumes::{self, FOREIGN_VOLUMES_REASON};

/// Reconciles one component object, in its `reconcile <Kind>` span.
pub async fn reconcile<C: Component>(obj: Arc<C>, ctx: Arc<Context>) -> Result<Action, Error> {
    let observed = obj.current_status().and_then(|s| s.observed_generation);
    let controller = C::kind(&()).to_lowercase();
    let events = ctx.events.clone();
    multigres_runtime::reconcile::in_root_span(
        obj.clone().as_ref(),
        &controller,
        observed,
        &events,
        |last| reconcile_in_span(obj, ctx, last),
    )
    .await
}

async fn reconcile_in_span<C: Component>(
    obj: Arc<C>,
    ctx: Arc<Context>,
    last_trace_id: Option<String>,
) -> Result<Action, Error> {
    ctx.caches_ready().await;
    let object = object_ref(obj.as_ref());
    let (_timer, done) =
        multigres_runtime::reconcile::begin(&C::kind(&()), &object, obj.as_ref(), &ctx.metrics);
    if let Some(done) = done {
        return Ok(done);
    }
    let Some(ns) = obj.namespace() else {
        return Err(Error::NotStored { object });
    };
    let name = obj.name_any();
    let built = obj.build(&ctx.build);
    spans::event(
        "desired objects built",
        vec![KeyValue::new("multigres.build.ok", built.is_ok())],
    );
    let (outcome, result) = match built {
        Err(source) => (
            Outcome::Invalid(source.reason(), source.to_string()),
            Err(Error::Build {
                object: object.clone(),
                source,
            }),
        ),
        Ok(workloads) => check_and_apply(&ctx, obj.as_ref(), &ns, &object, workloads).await,
    };
    let workload = live_workload(&ctx, C::WORKLOAD, &ns, &name);
    let now = Time(Timestamp::now());
    let mut status = component_status(
        obj.current_status(),
        obj.meta().generation,
        &outcome,
        workload,
        C::WORKLOAD.as_str(),
        &now,
    );
    if last_trace_id.is_some() {
        status.last_trace_id = last_trace_id;
    }
    spans::mark_ready(obj.as_ref(), status.ready);
    let api: Api<C> = Api::namespaced(ctx.client.clone(), &ns);
    let written = multigres_runtime::status::write_status(
        &api,
        RESOURCE_HANDLER_MANAGER,
        obj.as_ref(),
        obj.current_status(),
        &status,
    )
    .await
    .map_err(|source| Error::Status {
        object: object.clone(),
        source,
    })?;
    if written {
        tracing::info!(
            object,
            ready = status.ready,
            replicas = status.replicas,
            ready_replicas = status.ready_replicas,
            "status updated"
        );
    }
    result?;
    Ok(multigres_runtime::reconcile::succeeded(
        &C::kind(&()),
        &object,
        &ctx.backoffs,
        ctx.resync,
    ))
}

/// Applies `workloads` unless the claims of a StatefulSet about to be created hold them back;
/// what happened, and the error.
async fn check_and_apply<C: Component>(
    ctx: &Context,
    obj: &C,
    ns: &str,
    object: &str,
    workloads: Workloads,
) -> (Outcome, Result<(), Error>) {
    if let Err(err) = volumes::check_before_create(ctx, obj, ns, object, &workloads).await {
        return (held(&err), Err(err));
    }
    match apply_all(ctx, obj, ns, object, workloads).await {
        Ok(()) => (Outcome::Applied, Ok(())),
        Err(err) => (Outcome::ApplyFailed(err.to_string()), Err(err)),
    }
}

/// What the status says when the claim check stopped the reconcile before anything was applied.
fn held(err: &Error) -> Outcome {
    match err {
        Error::ForeignVolumes { source, .. } => {
            Outcome::Held(FOREIGN_VOLUMES_REASON, source.to_string())
        }
        other => Outcome::ApplyFailed(other.to_string()),
    }
}

/// Retry policy: per-object exponential backoff, so neither bad input nor an unavailable API
/// server causes a hot loop.
pub fn error_policy<C: Component>(obj: Arc<C>, err: &Error, ctx: Arc<Context>) -> Action {
    let object = object_ref(obj.as_ref());
    multigres_runtime::reconcile::failed(
        &C::kind(&()),
        &object,
        err,
        err.category(),
        &ctx.backoffs,
        &ctx.metrics,
    )
}

/// Applies the workload and the objects around it concurrently, each compared with its cached
/// live object; an Event on `obj` for each one written. A pod that mounts a ConfigMap not there
/// yet waits for it, so no order is needed.
async fn apply_all<C: Component>(
    ctx: &Context,
    obj: &C,
    ns: &str,
    object: &str,
    workloads: Workloads,
) -> Result<(), Error> {
    let Workloads {
        workload,
        services,
        config_maps,
        disruption_budgets,
    } = workloads;
    let mut fan = FanOut::new(RESOURCE_HANDLER_MANAGER);
    match workload {
        Workload::StatefulSet(sts) => start(&mut fan, ctx, &ctx.statefulsets, ns, sts),
        Workload::Deployment(deploy) => start(&mut fan, ctx, &ctx.deployments, ns, deploy),
    }
    for service in services {
        start(&mut fan, ctx, &ctx.services, ns, service);
    }
    for config_map in config_maps {
        start(&mut fan, ctx, &ctx.config_maps, ns, config_map);
    }
    for budget in disruption_budgets {
        start(&mut fan, ctx, &ctx.disruption_budgets, ns, budget);
    }
    let writes = fan.join().await;
    ctx.events.children_written(obj, &writes).await;
    let failed = failures(&writes);
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::Apply {
        object: object.to_string(),
        failed,
    })
}

/// Starts applying `desired`, compared with the cached live object of its name.
fn start<K>(fan: &mut FanOut, ctx: &Context, cache: &Store<K>, ns: &str, desired: K)
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let live = cache.get(&ObjectRef::new(&desired.name_any()).within(ns));
    fan.apply(
        Api::namespaced(ctx.client.clone(), ns),
        Desired::new(desired),
        live,
    );
}

/// The live main workload of a component, from the watch cache.
fn live_workload(ctx: &Context, kind: WorkloadKind, ns: &str, name: &str) -> Option<WorkloadState> {
    match kind {
        WorkloadKind::StatefulSet => ctx
            .statefulsets
            .get(&ObjectRef::<StatefulSet>::new(name).within(ns))
            .map(|s| statefulset_state(&s)),
        WorkloadKind::Deployment => ctx
            .deployments
            .get(&ObjectRef::<Deployment>::new(name).within(ns))
            .map(|d| deployment_state(&d)),
    }
}
