//! State shared by the component controllers: the skeleton's bookkeeping, the watch caches of the
//! workloads they own and their pods, the builders' settings.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use multigres_runtime::reconcile::Bookkeeping;
use multigres_runtime::watch::Cache;

use crate::builders::BuildContext;
use crate::pods::PodHealth;

/// Everything a reconcile needs besides the object.
pub struct Context {
    /// Client, Events, backoff, metrics and resync of the controller skeleton.
    pub run: Bookkeeping,
    pub statefulsets: Cache<StatefulSet>,
    pub deployments: Cache<Deployment>,
    pub services: Cache<Service>,
    pub config_maps: Cache<ConfigMap>,
    pub disruption_budgets: Cache<PodDisruptionBudget>,
    /// The handler's pods, trimmed to their status.
    pub pods: Cache<Pod>,
    /// The pods that cannot run, per component, kept by the pod triggers of the controllers.
    pub pod_health: Arc<PodHealth>,
    /// The builders' settings (trace export of the data plane).
    pub build: BuildContext,
}
