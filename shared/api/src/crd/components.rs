//! The component kinds the resource-handler turns into workloads, and the one list of them.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    ComponentSpec, ComponentStatus, ObservabilitySpec, PoolerBackup, PoolerTemplate, SecretKeyRef,
    StorageSpec, TopoSpec, VolumeRetention,
};

/// The one list of component kinds: calls `$callback!` with every kind's type, in the order
/// `crdgen` writes their CRDs. The CRDs, their RBAC rules, the status accessors and the
/// resource-handler's controllers all follow this list, so a new kind is registered here only.
#[macro_export]
macro_rules! for_each_component_kind {
    ($callback:ident) => {
        $callback! {
            $crate::crd::Etcd,
            $crate::crd::MultiGateway,
            $crate::crd::MultiOrch,
            $crate::crd::MultiPooler
        }
    };
}

/// The `app.kubernetes.io/component` value of each workload kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentLabel {
    Cell,
    Etcd,
    Gateway,
    Orch,
    Pooler,
}

impl ComponentLabel {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cell => "cell",
            Self::Etcd => "etcd",
            Self::Gateway => "multigateway",
            Self::Orch => "multiorch",
            Self::Pooler => "multipooler",
        }
    }

    /// The suffix of a cell's object of this component (`<cell object>-gateway` and so on).
    pub const fn name_suffix(self) -> &'static str {
        match self {
            Self::Cell => "cell",
            Self::Etcd => "etcd",
            Self::Gateway => "gateway",
            Self::Orch => "orch",
            Self::Pooler => "pooler",
        }
    }
}

/// CEL transition rule: the effective replica count (unset means the default, 3) never changes.
pub const ETCD_REPLICAS_UNCHANGED: &str =
    "(has(self.replicas) ? self.replicas : 3) == (has(oldSelf.replicas) ? oldSelf.replicas : 3)";

/// Etcd: the global topology server of a cluster, run as a StatefulSet with a headless peer
/// Service and a client Service.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "multigres.com",
    version = "v1alpha1",
    kind = "Etcd",
    plural = "etcds",
    namespaced,
    status = "ComponentStatus",
    derive = "PartialEq",
    derive = "Default",
    category = "multigres",
    doc = "An etcd cluster serving Multigres topology.",
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(
        name = "Ready-Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas"
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
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.replicas) || (self.replicas % 2 == 1 && self.replicas <= 9)",
    "message": "etcd replicas must be an odd number from 1 to 9 so that the members keep quorum"
}, {
    "rule": ETCD_REPLICAS_UNCHANGED,
    "message": "etcd replicas cannot change after creation: the members start with a fixed \
                --initial-cluster and are never added or removed; create a new cluster to resize"
}]))]
pub struct EtcdSpec {
    #[serde(flatten)]
    pub component: ComponentSpec,

    /// The data volume of each member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,

    /// Whether the members' volumes are deleted with the StatefulSet (`Delete`, the default)
    /// or kept (`Retain`). In a MultigresCluster's `spec.etcd` it refines the cluster's
    /// `spec.volumeRetention`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // The enum's own description would replace this one in the CRD.
    #[schemars(schema_with = "super::schema::undocumented::<Option<VolumeRetention>>")]
    pub volume_retention: Option<VolumeRetention>,

    /// Start from volumes an earlier object of the same name left behind instead of refusing
    /// them (Ready=False, `VolumesFromAnotherObject`). In a MultigresCluster's `spec.etcd` it
    /// refines the cluster's `spec.adoptVolumes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt_volumes: Option<bool>,
}

/// MultiGateway: the PostgreSQL-protocol entry point of a cell, run as a Deployment and Service.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "multigres.com",
    version = "v1alpha1",
    kind = "MultiGateway",
    plural = "multigateways",
    namespaced,
    status = "ComponentStatus",
    derive = "PartialEq",
    derive = "Default",
    category = "multigres",
    doc = "The query gateway of one Multigres cell.",
    printcolumn(name = "Cell", type_ = "string", json_path = ".spec.cell"),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(
        name = "Ready-Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas"
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
pub struct MultiGatewaySpec {
    #[serde(flatten)]
    pub component: ComponentSpec,

    /// Name of the Multigres cell this gateway serves.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub cell: String,

    /// The global topology server.
    pub topo: TopoSpec,

    /// Observability settings: `tracing: Disabled` keeps the `OTEL_*` environment out of the
    /// pods. Set by the Cell from its cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<ObservabilitySpec>,
}

/// MultiOrch: the failover orchestrator of a cell, run as a Deployment and Service.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "multigres.com",
    version = "v1alpha1",
    kind = "MultiOrch",
    plural = "multiorchs",
    namespaced,
    status = "ComponentStatus",
    derive = "PartialEq",
    derive = "Default",
    category = "multigres",
    doc = "The orchestrator of one Multigres cell.",
    printcolumn(name = "Cell", type_ = "string", json_path = ".spec.cell"),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(
        name = "Ready-Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas"
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
pub struct MultiOrchSpec {
    #[serde(flatten)]
    pub component: ComponentSpec,

    /// Name of the Multigres cell this orchestrator watches.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub cell: String,

    /// The global topology server.
    pub topo: TopoSpec,

    /// Observability settings: `tracing: Disabled` keeps the `OTEL_*` environment out of the
    /// pods. Set by the Cell from its cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<ObservabilitySpec>,
}

/// MultiPooler: connection pooler and PostgreSQL of a cell, run as a StatefulSet with a
/// headless Service and one data volume per pod.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "multigres.com",
    version = "v1alpha1",
    kind = "MultiPooler",
    plural = "multipoolers",
    namespaced,
    status = "ComponentStatus",
    derive = "PartialEq",
    derive = "Default",
    category = "multigres",
    doc = "The pooler and PostgreSQL instances of one Multigres cell.",
    printcolumn(name = "Cell", type_ = "string", json_path = ".spec.cell"),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(
        name = "Ready-Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas"
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
pub struct MultiPoolerSpec {
    #[serde(flatten)]
    pub pooler: PoolerTemplate,

    /// Name of the Multigres cell this pooler belongs to.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub cell: String,

    /// The global topology server.
    pub topo: TopoSpec,

    /// The Secret key holding the postgres admin password, mounted into both containers as
    /// the file `POSTGRES_PASSWORD_FILE` names. Without it multipooler and pgctld refuse to
    /// start. Set by the Cell for the poolers of a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,

    /// Observability settings: `tracing: Disabled` keeps the `OTEL_*` environment out of the
    /// pods. Set by the Cell from its cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<ObservabilitySpec>,

    /// The backup repository: a claim both containers mount at `/backups`, or the Secret with
    /// S3 credentials. Set by the Cell from its cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<PoolerBackup>,

    /// Networks (CIDRs) postgres accepts the admin user's TCP connections from (replication
    /// between poolers); `0.0.0.0/0` and `::/0` when empty. Applied when a pod initialises its
    /// database, so a change later does not reach an initialised one. Set by the Cell from its
    /// cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::cidr_list")]
    pub allowed_networks: Vec<String>,

    /// Whether the pods' volumes are deleted with the StatefulSet (`Delete`, the default) or
    /// kept (`Retain`). Set by the Cell from its cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // The enum's own description would replace this one in the CRD.
    #[schemars(schema_with = "super::schema::undocumented::<Option<VolumeRetention>>")]
    pub volume_retention: Option<VolumeRetention>,

    /// Start from volumes an earlier object of the same name left behind instead of refusing
    /// them (Ready=False, `VolumesFromAnotherObject`). Set by the Cell from its cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt_volumes: Option<bool>,
}
