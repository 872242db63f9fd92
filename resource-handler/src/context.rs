//! State shared by the four controllers: the skeleton's bookkeeping, the watch caches of the
//! workloads they own, the builders' settings.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use multigres_runtime::reconcile::Bookkeeping;
use multigres_runtime::watch::Cache;

use crate::builders::BuildContext;

/// Everything a reconcile needs besides the object.
pub struct Context {
    /// Client, Events, backoff, metrics and resync of the controller skeleton.
    pub run: Bookkeeping,
    pub statefulsets: Cache<StatefulSet>,
    pub deployments: Cache<Deployment>,
    pub services: Cache<Service>,
    pub config_maps: Cache<ConfigMap>,
    pub disruption_budgets: Cache<PodDisruptionBudget>,
    /// The builders' settings (trace export of the data plane).
    pub build: BuildContext,
}
