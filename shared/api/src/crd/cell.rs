//! `Cell`: one Multigres cell (failure domain) of a cluster, reconciled into its gateway,
//! orchestrator and pooler.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    ComponentSpec, ComponentStatus, ObservabilitySpec, Phase, PoolerBackup, PoolerTemplate,
    ReadyCount, SecretKeyRef, ShardStatus, TopoSpec, VolumeRetention,
};

/// A Multigres cell: the cluster-handler creates one per entry of a cluster's `spec.cells`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "multigres.com",
    version = "v1alpha1",
    kind = "Cell",
    plural = "cells",
    namespaced,
    status = "CellStatus",
    derive = "PartialEq",
    derive = "Default",
    category = "multigres",
    doc = "One cell of a Multigres cluster: a gateway, an orchestrator and a pooler.",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".metadata.ownerReferences[0].name"
    ),
    printcolumn(name = "Cell", type_ = "string", json_path = ".spec.name"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Trace",
        type_ = "string",
        json_path = ".status.lastTraceId",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct CellSpec {
    /// Logical name of the cell inside its cluster (used in Multigres topology).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// The global topology server of the cluster.
    pub topo: TopoSpec,

    /// Settings of the cell's MultiGateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<ComponentSpec>,

    /// Settings of the cell's MultiOrch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orch: Option<ComponentSpec>,

    /// Settings of the cell's MultiPooler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooler: Option<PoolerTemplate>,

    /// The Secret key holding the cluster's postgres admin password, for the cell's poolers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,

    /// The cluster's observability settings, for the cell's components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<ObservabilitySpec>,

    /// The cluster's backup repository as the cell's poolers mount it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<PoolerBackup>,

    /// The cluster's `spec.postgres.allowedNetworks`, for the cell's poolers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::cidr_list")]
    pub allowed_networks: Vec<String>,

    /// The cluster's `spec.volumeRetention`, for the cell's poolers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // The enum's own description would replace this one in the CRD.
    #[schemars(schema_with = "super::schema::undocumented::<Option<VolumeRetention>>")]
    pub volume_retention: Option<VolumeRetention>,

    /// The cluster's `spec.adoptVolumes`, for the cell's poolers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt_volumes: Option<bool>,
}

/// Status of a cell: its own conditions plus ready counts of its three components.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CellStatus {
    #[serde(flatten)]
    pub core: ComponentStatus,

    /// Pending, Progressing, Healthy or Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Gateway pods wanted and ready.
    #[serde(default)]
    pub gateway: ReadyCount,

    /// Orchestrator pods wanted and ready.
    #[serde(default)]
    pub orch: ReadyCount,

    /// Pooler pods wanted and ready.
    #[serde(default)]
    pub pooler: ReadyCount,

    /// The primary and standbys among this cell's poolers, from the Multigres topology.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardStatus>,
}
