//! A cluster's records in the Multigres global topology: a Cell record per cell and the
//! Database record, written by the cluster-handler straight into the cluster's etcd before the
//! cells' components are created (a gateway exits while its Cell record is missing, and a
//! pooler that starts before the Database record exists stays broken until restarted).
//! Idempotent: records are read, compared decoded, and written only when they differ; a
//! removed cell's record is deleted.

pub mod etcd;
pub mod records;
pub mod replication;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use multigres_api::crd::{Cell, MultigresCluster};
use multigres_api::defaults::GLOBAL_TOPO_ROOT;

use crate::cluster::ClusterChildren;
use crate::context::Context;
use etcd::{Etcd, EtcdError};
use records::{
    DATABASE, Observed, Records, Shard, Write, cell_of_key, cells_prefix, database_key,
    poolers_prefix,
};

/// Why the topology could not be brought up to date; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("registering the cells in the Multigres topology: {0}")]
    Etcd(#[from] EtcdError),

    #[error("{what} changed in the topology while it was being written; retrying")]
    Conflict { what: String },

    #[error("the cluster has no cells to register")]
    NoCells,
}

impl TopologyError {
    /// CamelCase reason for the `Ready=False` condition.
    pub fn reason(&self) -> &'static str {
        "TopologyUnavailable"
    }
}

/// Where the topology stands for one reconcile.
#[derive(Debug, PartialEq)]
pub enum State {
    /// Every record is right (after `writes` writes); `shard` is what the poolers registered.
    Registered { writes: usize, shard: Shard },
    /// The cluster's etcd has no ready member yet; its next status change brings the cluster
    /// back. Only cells that already exist are applied meanwhile.
    WaitingForEtcd(String),
    /// This handler does not manage the topology (`--manage-topology=false`).
    NotManaged,
}

/// The records `children` should have in the global topology.
pub fn desired(cluster: &MultigresCluster, children: &ClusterChildren) -> Option<Records> {
    let topo = &children.cells.first()?.spec.topo;
    let address = topo.global_server_addresses.split(',').next()?.trim();
    let root = topo.global_root.as_deref().unwrap_or(GLOBAL_TOPO_ROOT);
    let cells: Vec<String> = children.cells.iter().map(|c| c.spec.name.clone()).collect();
    let policy = cluster.spec.durability_policy.unwrap_or_default();
    let backup = records::backup_location(&crate::backup::spec(cluster));
    Some(Records::new(address, root, &cells, policy, backup))
}

/// Brings the cluster's topology records up to date, in a `register topology` span.
pub async fn ensure(
    ctx: &Context,
    cluster: &MultigresCluster,
    children: &ClusterChildren,
) -> Result<State, TopologyError> {
    let Some(topology) = &ctx.topology else {
        return Ok(State::NotManaged);
    };
    let live = ctx.etcds.get(&ObjectRef::from(&children.etcd));
    let ready = live
        .as_ref()
        .and_then(|e| e.status.as_ref())
        .is_some_and(|s| s.ready_replicas > 0);
    if !ready {
        return Ok(State::WaitingForEtcd(format!(
            "waiting for a ready member of Etcd {} before registering the cells in the topology",
            children.etcd.name_any()
        )));
    }
    let desired = desired(cluster, children).ok_or(TopologyError::NoCells)?;
    let address = desired.cells.values().next().map_or_else(String::new, |c| {
        c.server_addresses.first().cloned().unwrap_or_default()
    });
    let span = tracing::info_span!(
        target: "multigres::topology",
        "register topology",
        otel.name = "register topology",
        multigres.topology.address = %address,
        multigres.topology.root = %desired.root,
        multigres.topology.cells = desired.cells.len(),
        multigres.topology.writes = tracing::field::Empty,
    );
    let etcd = Etcd::new(topology.http.clone(), &address);
    let (writes, mut shard) =
        multigres_telemetry::spans::run_in(span.clone(), sync(&etcd, &desired)).await?;
    shard.count_streaming(&topology.dns).await;
    span.record("multigres.topology.writes", writes.len());
    for write in &writes {
        tracing::info!(
            object = %multigres_api::meta::object_ref(cluster),
            write = %write.describe(),
            "topology record written"
        );
    }
    Ok(State::Registered {
        writes: writes.len(),
        shard,
    })
}

/// Reads the records, writes what differs; returns the writes made and the shard as the
/// cells' poolers registered it.
async fn sync(etcd: &Etcd, desired: &Records) -> Result<(Vec<Write>, Shard), TopologyError> {
    let prefix = cells_prefix(&desired.root);
    let mut observed = Observed::default();
    for (key, stored) in etcd.list(&prefix).await? {
        if let Some(cell) = cell_of_key(&prefix, &key) {
            observed.cells.insert(cell.to_string(), stored);
        }
    }
    observed.database = etcd.get(&database_key(&desired.root, DATABASE)).await?;
    let writes = records::plan(desired, &observed);
    for write in &writes {
        let done = match write {
            Write::Put {
                key,
                value,
                expected,
                ..
            } => etcd.put_if(key, value, *expected).await?,
            Write::DeleteCell {
                key,
                expected,
                root_prefix,
                ..
            } => {
                let deleted = etcd.delete_if(key, *expected).await?;
                if deleted {
                    etcd.delete_prefix(root_prefix).await?;
                }
                deleted
            }
        };
        if !done {
            return Err(TopologyError::Conflict {
                what: write.describe(),
            });
        }
    }
    let mut shard = Shard::default();
    for cell in desired.cells.keys() {
        read_poolers(etcd, &desired.root, cell, &mut shard).await?;
    }
    Ok((writes, shard))
}

/// Adds the pooler records of `cell` to `shard`.
async fn read_poolers(
    etcd: &Etcd,
    root: &str,
    cell: &str,
    shard: &mut Shard,
) -> Result<(), TopologyError> {
    let poolers = etcd.list(&poolers_prefix(root, cell)).await?;
    shard.add(poolers.iter().map(|(_, stored)| stored.value.as_slice()));
    Ok(())
}

/// The shard as the poolers of one cell registered it, in a `read topology` span; `None` when
/// this handler does not manage the topology.
pub async fn cell_shard(ctx: &Context, cell: &Cell) -> Result<Option<Shard>, TopologyError> {
    let Some(topology) = &ctx.topology else {
        return Ok(None);
    };
    let topo = &cell.spec.topo;
    let address = topo
        .global_server_addresses
        .split(',')
        .next()
        .unwrap_or_default()
        .trim();
    let root = topo.global_root.as_deref().unwrap_or(GLOBAL_TOPO_ROOT);
    let span = tracing::info_span!(
        target: "multigres::topology",
        "read topology",
        otel.name = "read topology",
        multigres.topology.address = %address,
        multigres.cell = %cell.spec.name,
    );
    let etcd = Etcd::new(topology.http.clone(), address);
    let mut shard = Shard::default();
    multigres_telemetry::spans::run_in(
        span,
        read_poolers(
            &etcd,
            root.trim_end_matches('/'),
            &cell.spec.name,
            &mut shard,
        ),
    )
    .await?;
    shard.count_streaming(&topology.dns).await;
    Ok(Some(shard))
}
