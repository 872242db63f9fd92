//! State shared by the cluster and cell controllers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use multigres_api::crd::{Cell, Etcd, MultiGateway, MultiOrch, MultiPooler};
use multigres_runtime::events::EventRecorder;
use multigres_runtime::metrics::Metrics;
use multigres_runtime::retry::Backoffs;
use multigres_runtime::watch::Cache;

/// Everything a reconcile needs besides the object: the client and the caches of the children
/// this handler writes.
pub struct Context {
    pub client: Client,
    /// Events on the objects reconciled (what was written, why a reconcile failed).
    pub events: EventRecorder,
    pub etcds: Cache<Etcd>,
    pub cells: Cache<Cell>,
    pub gateways: Cache<MultiGateway>,
    pub orchs: Cache<MultiOrch>,
    pub poolers: Cache<MultiPooler>,
    pub backoffs: Backoffs,
    pub metrics: Arc<Metrics>,
    /// How often a healthy object is reconciled again even without events.
    pub resync: Duration,
    /// (cluster uid, `<kind>/<name>`) of the objects a cluster needs before its children (the
    /// password Secret, the backup claim) found or created by this process.
    pub ensured: Mutex<HashSet<(String, String)>>,
    /// HTTP client for the clusters' etcd, `None` when this handler does not manage the
    /// Multigres topology.
    pub topology: Option<crate::topology::etcd::Topology>,
}

impl Context {
    /// Waits until every child cache has done its first list.
    pub async fn caches_ready(&self) {
        // The stores only fail to become ready when their writer is dropped at shutdown.
        let _ = self.etcds.wait_until_ready().await;
        let _ = self.cells.wait_until_ready().await;
        let _ = self.gateways.wait_until_ready().await;
        let _ = self.orchs.wait_until_ready().await;
        let _ = self.poolers.wait_until_ready().await;
    }
}
