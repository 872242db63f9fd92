//! What the generic reconcile needs to know about each component kind.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Resource;
use kube::core::NamespaceResourceScope;
use multigres_api::crd::ComponentStatus;
use multigres_api::invalid::InvalidSpec;
use multigres_api::meta::ComponentLabel;
use multigres_api::status::WithStatus;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::builders::BuildContext;

/// The main workload of a component.
#[derive(Clone, Debug)]
pub enum Workload {
    StatefulSet(StatefulSet),
    Deployment(Deployment),
}

/// Which kind of main workload a component has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    StatefulSet,
    Deployment,
}

impl WorkloadKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::StatefulSet => "StatefulSet",
            Self::Deployment => "Deployment",
        }
    }
}

/// Everything a component object turns into.
#[derive(Clone, Debug)]
pub struct Workloads {
    pub workload: Workload,
    pub services: Vec<Service>,
    /// Configuration files the pods mount.
    pub config_maps: Vec<ConfigMap>,
    pub disruption_budgets: Vec<PodDisruptionBudget>,
}

/// A component kind the resource-handler reconciles (Etcd, MultiGateway, MultiOrch,
/// MultiPooler). Implemented once per kind in its own module.
pub trait Component:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + Serialize
    + DeserializeOwned
    + WithStatus<Status = ComponentStatus>
    + Send
    + Sync
    + 'static
{
    /// The kind of the main workload (named like the component object).
    const WORKLOAD: WorkloadKind;

    /// The `app.kubernetes.io/component` label of its objects and pods.
    const LABEL: ComponentLabel;

    /// The objects this component should have with this handler's settings `ctx`, or why they
    /// cannot be built.
    fn build(&self, ctx: &BuildContext) -> Result<Workloads, InvalidSpec>;

    /// Whether a new StatefulSet may start from claims made for another object (see
    /// [`crate::volumes`]). Only stateful kinds have the setting.
    fn adopt_volumes(&self) -> bool {
        false
    }
}
