//! The one reconcile every component kind goes through, in the controller skeleton of
//! `multigres_runtime::reconcile`.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use multigres_api::crd::ComponentStatus;
use multigres_api::meta::object_ref;
use multigres_runtime::apply::Desired;
use multigres_runtime::failure::CommonFailure;
use multigres_runtime::fanout::FanOut;
use multigres_runtime::reconcile::{Bookkeeping, Outcome, Reconciler};
use multigres_telemetry::spans;
use opentelemetry::KeyValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::component::{Component, Workload, WorkloadKind, Workloads};
use crate::context::Context;
use crate::error::Error;
use crate::status::{
    Attempt, WorkloadState, component_status, deployment_state, statefulset_state,
};
use crate::volumes::{self, FOREIGN_VOLUMES_REASON};

impl<C: Component> Reconciler<C> for Context {
    type Error = Error;

    fn bookkeeping(&self) -> &Bookkeeping {
        &self.run
    }

    /// Build (pure) → check the claims of a StatefulSet about to be created → apply each
    /// object that changed → derive the status from the live workload and its pods.
    async fn reconcile(&self, obj: &C) -> Result<Outcome<ComponentStatus, Error>, Error> {
        let object = object_ref(obj);
        let Some(ns) = obj.namespace() else {
            return Err(Error::NotStored { object });
        };
        let built = obj.build(&self.build);
        spans::event(
            "desired objects built",
            vec![KeyValue::new("multigres.build.ok", built.is_ok())],
        );
        let (attempt, result) = match built {
            Err(source) => (
                Attempt::Invalid(source.reason(), source.to_string()),
                Err(CommonFailure::InvalidSpec {
                    object: object.clone(),
                    source,
                }
                .into()),
            ),
            Ok(workloads) => check_and_apply(self, obj, &ns, &object, workloads).await,
        };
        let name = obj.name_any();
        let workload = live_workload(self, C::WORKLOAD, &ns, &name);
        let pods = self
            .pod_health
            .of(C::LABEL, &ns, &name, Timestamp::now(), |pod| {
                self.pods
                    .get(&ObjectRef::<Pod>::new(pod).within(&ns))
                    .is_some()
            });
        let status = component_status(
            obj.current_status(),
            obj.meta().generation,
            &attempt,
            workload,
            pods.problem.as_ref(),
            C::WORKLOAD.as_str(),
            &Time(Timestamp::now()),
        );
        Ok(Outcome {
            recheck: pods.recheck,
            ..Outcome::new(status, result)
        })
    }
}

/// Applies `workloads` unless the claims of a StatefulSet about to be created hold them back;
/// what happened, and the error.
async fn check_and_apply<C: Component>(
    ctx: &Context,
    obj: &C,
    ns: &str,
    object: &str,
    workloads: Workloads,
) -> (Attempt, Result<(), Error>) {
    if let Err(err) = volumes::check_before_create(ctx, obj, ns, object, &workloads).await {
        return (held(&err), Err(err));
    }
    match apply_all(ctx, obj, ns, object, workloads).await {
        Ok(()) => (Attempt::Applied, Ok(())),
        Err(err) => (Attempt::ApplyFailed(err.to_string()), Err(err)),
    }
}

/// What the status says when the claim check stopped the reconcile before anything was applied.
fn held(err: &Error) -> Attempt {
    match err {
        Error::ForeignVolumes { source, .. } => {
            Attempt::Held(FOREIGN_VOLUMES_REASON, source.to_string())
        }
        other => Attempt::ApplyFailed(other.to_string()),
    }
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
    let mut fan = ctx.run.fan_out();
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
    ctx.run.events.children_written(obj, &writes).await;
    match CommonFailure::from_writes(object, &writes) {
        None => Ok(()),
        Some(failed) => Err(failed.into()),
    }
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
        Api::namespaced(ctx.run.client.clone(), ns),
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
