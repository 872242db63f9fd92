//! `MultigresCluster`: what a user writes. The cluster-handler fans it out into an Etcd and
//! one Cell per entry of `spec.cells`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    BackupSpec, ComponentSpec, ComponentStatus, ObservabilitySpec, Phase, PoolerTemplate,
    PostgresSpec, ReadyCount, ShardStatus, VolumeRetention,
};
use super::components::EtcdSpec;

/// A Multigres cluster: global topology (etcd) plus one or more cells.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "multigres.com",
    version = "v1alpha1",
    kind = "MultigresCluster",
    plural = "multigresclusters",
    shortname = "mgc",
    namespaced,
    status = "ClusterStatus",
    derive = "PartialEq",
    derive = "Default",
    category = "multigres",
    doc = "A Multigres cluster: horizontally scalable PostgreSQL.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Primary",
        type_ = "string",
        json_path = ".status.shard.primary"
    ),
    printcolumn(
        name = "Streaming",
        type_ = "integer",
        json_path = ".status.shard.streaming"
    ),
    printcolumn(
        name = "Cells",
        type_ = "integer",
        json_path = ".status.cells.replicas"
    ),
    printcolumn(
        name = "Cells-Ready",
        type_ = "integer",
        json_path = ".status.cells.readyReplicas"
    ),
    printcolumn(
        name = "Etcd-Ready",
        type_ = "integer",
        json_path = ".status.etcd.readyReplicas",
        priority = "1"
    ),
    printcolumn(
        name = "Gateways-Ready",
        type_ = "integer",
        json_path = ".status.gateway.readyReplicas",
        priority = "1"
    ),
    printcolumn(
        name = "Orchs-Ready",
        type_ = "integer",
        json_path = ".status.orch.readyReplicas",
        priority = "1"
    ),
    printcolumn(
        name = "Poolers-Ready",
        type_ = "integer",
        json_path = ".status.pooler.readyReplicas",
        priority = "1"
    ),
    printcolumn(
        name = "Trace",
        type_ = "string",
        json_path = ".status.lastTraceId",
        priority = "1"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MultigresClusterSpec {
    /// The global topology server (etcd) of the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdSpec>,

    /// PostgreSQL settings: where the admin password is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSpec>,

    /// Observability of the data plane: whether the Multigres processes export traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<ObservabilitySpec>,

    /// Gateway settings for every cell (a cell may refine them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<ComponentSpec>,

    /// Orchestrator settings for every cell (a cell may refine them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orch: Option<ComponentSpec>,

    /// Pooler settings for every cell (a cell may refine them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooler: Option<PoolerTemplate>,

    /// How many poolers must confirm a write before it commits, recorded in the Multigres
    /// topology for the shard's bootstrap. `AT_LEAST_2` (the default) needs two poolers in
    /// the shard; `MULTI_CELL_AT_LEAST_2` needs poolers in two cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durability_policy: Option<DurabilityPolicy>,

    /// Where the shard's backups go; a filesystem repository on a `ReadWriteMany` claim the
    /// cluster-handler creates (`<cluster>-backups`, 10Gi) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,

    /// What happens to the data volumes of etcd and the poolers when the cluster is deleted:
    /// `Delete` (the default) deletes them with it; `Retain` keeps them, and a new cluster of
    /// the same name then waits (Ready=False, `VolumesFromAnotherObject`) until they are deleted
    /// or it sets `adoptVolumes`. Scaling down always keeps the volumes of the removed pods.
    /// The backup claim the cluster-handler generates (`<cluster>-backups`) belongs to the
    /// cluster and is deleted with it whatever this says; for backups that outlive the cluster,
    /// name a claim of your own in `backup.filesystem.claimName` (or use S3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // The enum's own description would replace this one in the CRD.
    #[schemars(schema_with = "super::schema::undocumented::<Option<VolumeRetention>>")]
    pub volume_retention: Option<VolumeRetention>,

    /// Start from data volumes that an earlier object of the same name left behind (see
    /// `volumeRetention`) instead of refusing them. Without it, such volumes hold the cluster
    /// until they are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt_volumes: Option<bool>,

    /// The cells of the cluster, at most 16; one cell named `default` when empty. Names are
    /// unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub cells: Vec<CellTemplate>,
}

/// The durability policies Multigres v0.1.0 accepts for a database's bootstrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DurabilityPolicy {
    /// A write is durable once two poolers of the shard have it.
    #[default]
    #[serde(rename = "AT_LEAST_2")]
    AtLeast2,
    /// A write is durable once poolers in two different cells have it.
    #[serde(rename = "MULTI_CELL_AT_LEAST_2")]
    MultiCellAtLeast2,
}

/// One cell of a cluster, with optional settings that refine the cluster-wide ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CellTemplate {
    /// Cell name: a lowercase DNS label of at most 20 characters, unique in the cluster.
    #[schemars(
        length(min = 1, max = 20),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Gateway settings of this cell, over the cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<ComponentSpec>,

    /// Orchestrator settings of this cell, over the cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orch: Option<ComponentSpec>,

    /// Pooler settings of this cell, over the cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooler: Option<PoolerTemplate>,
}

/// Status of a cluster: its own conditions plus ready counts of everything under it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    #[serde(flatten)]
    pub core: ComponentStatus,

    /// Pending, Progressing, Healthy or Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Etcd members wanted and ready.
    #[serde(default)]
    pub etcd: ReadyCount,

    /// Cells wanted and ready.
    #[serde(default)]
    pub cells: ReadyCount,

    /// Gateway pods wanted and ready, over all cells.
    #[serde(default)]
    pub gateway: ReadyCount,

    /// Orchestrator pods wanted and ready, over all cells.
    #[serde(default)]
    pub orch: ReadyCount,

    /// Pooler pods wanted and ready, over all cells.
    #[serde(default)]
    pub pooler: ReadyCount,

    /// The shard's primary and standbys, from the Multigres topology (unset when the
    /// cluster-handler does not manage the topology).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardStatus>,
}
