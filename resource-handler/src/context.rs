//! State shared by the four controllers: the client, the watch caches of the workloads they
//! own, retry backoff.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use multigres_runtime::events::EventRecorder;
use multigres_runtime::metrics::Metrics;
use multigres_runtime::retry::Backoffs;
use multigres_runtime::watch::Cache;

use crate::builders::BuildContext;

/// Everything a reconcile needs besides the object.
pub struct Context {
    pub client: Client,
    /// Events on the objects reconciled (what was written, why a reconcile failed).
    pub events: EventRecorder,
    pub statefulsets: Cache<StatefulSet>,
    pub deployments: Cache<Deployment>,
    pub services: Cache<Service>,
    pub config_maps: Cache<ConfigMap>,
    pub disruption_budgets: Cache<PodDisruptionBudget>,
    pub backoffs: Backoffs,
    /// How often a healthy object is reconciled again even without events.
    pub resync: Duration,
    pub metrics: Arc<Metrics>,
    /// The builders' settings (trace export of the data plane).
    pub build: BuildContext,
}

impl Context {
    /// Waits until every workload cache has done its first list, so "not in the cache" means
    /// "does not exist".
    pub async fn caches_ready(&self) {
        // The stores only fail to become ready when their writer is dropped at shutdown.
        let _ = self.statefulsets.wait_until_ready().await;
        let _ = self.deployments.wait_until_ready().await;
        let _ = self.services.wait_until_ready().await;
        let _ = self.config_maps.wait_until_ready().await;
        let _ = self.disruption_budgets.wait_until_ready().await;
    }
}
