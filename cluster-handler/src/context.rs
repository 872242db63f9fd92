//! State shared by the cluster and cell controllers.

use std::collections::HashSet;
use std::sync::Mutex;

use multigres_api::crd::{Cell, Etcd, MultiGateway, MultiOrch, MultiPooler};
use multigres_runtime::reconcile::Bookkeeping;
use multigres_runtime::watch::Cache;

/// Everything a reconcile needs besides the object: the skeleton's bookkeeping and the caches
/// of the children this handler writes.
pub struct Context {
    /// Client, Events, backoff, metrics and resync of the controller skeleton.
    pub run: Bookkeeping,
    pub etcds: Cache<Etcd>,
    pub cells: Cache<Cell>,
    pub gateways: Cache<MultiGateway>,
    pub orchs: Cache<MultiOrch>,
    pub poolers: Cache<MultiPooler>,
    /// (cluster uid, `<kind>/<name>`) of the objects a cluster needs before its children (the
    /// password Secret, the backup claim) found or created by this process.
    pub ensured: Mutex<HashSet<(String, String)>>,
    /// HTTP client for the clusters' etcd, `None` when this handler does not manage the
    /// Multigres topology.
    pub topology: Option<crate::topology::etcd::Topology>,
}
