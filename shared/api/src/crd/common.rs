//! Types shared by several kinds: the common pod shape of a component, storage, topology,
//! and the status blocks.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;

use super::schema::undocumented;
use serde::{Deserialize, Serialize};

/// The pod-level settings every Multigres component shares. Unset fields take the defaults of
/// [`crate::defaults`]; in a `MultigresCluster` a cell's own settings win field by field over
/// the cluster-wide template (see [`ComponentSpec::overlay`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    /// Container image, e.g. `ghcr.io/multigres/multigres:v0.1.0`, with a lowercase repository
    /// path. Defaults per component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::image")]
    pub image: Option<String>,

    /// When the kubelet pulls the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Secrets used to pull the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(schema_with = "undocumented::<Vec<LocalObjectReference>>")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// Number of pods. Defaults per component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 64))]
    pub replicas: Option<i32>,

    /// CPU and memory requests and limits of the main container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "undocumented::<Option<ResourceRequirements>>")]
    pub resources: Option<ResourceRequirements>,

    /// Pod affinity rules, passed through to the pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "undocumented::<Option<Affinity>>")]
    pub affinity: Option<Affinity>,

    /// Pod tolerations, passed through to the pod template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(schema_with = "undocumented::<Vec<Toleration>>")]
    pub tolerations: Vec<Toleration>,

    /// Node selector, passed through to the pod template.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Topology spread constraints, passed through to the pod template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[schemars(schema_with = "undocumented::<Vec<TopologySpreadConstraint>>")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,

    /// Extra pod labels. They never override the labels the operator sets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,

    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,

    /// Service account the pods run as. Defaults to the namespace's `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[schemars(regex(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    ))]
    pub service_account_name: Option<String>,
}

impl ComponentSpec {
    /// This spec with every unset field taken from `base`: how a cell's settings refine the
    /// cluster-wide template. Collections count as set when non-empty.
    pub fn overlay(&self, base: &ComponentSpec) -> ComponentSpec {
        let Self {
            image,
            image_pull_policy,
            image_pull_secrets,
            replicas,
            resources,
            affinity,
            tolerations,
            node_selector,
            topology_spread_constraints,
            pod_labels,
            pod_annotations,
            service_account_name,
        } = self;
        ComponentSpec {
            image: image.clone().or_else(|| base.image.clone()),
            image_pull_policy: image_pull_policy.or(base.image_pull_policy),
            image_pull_secrets: non_empty_or(image_pull_secrets, &base.image_pull_secrets),
            replicas: replicas.or(base.replicas),
            resources: resources.clone().or_else(|| base.resources.clone()),
            affinity: affinity.clone().or_else(|| base.affinity.clone()),
            tolerations: non_empty_or(tolerations, &base.tolerations),
            node_selector: non_empty_map_or(node_selector, &base.node_selector),
            topology_spread_constraints: non_empty_or(
                topology_spread_constraints,
                &base.topology_spread_constraints,
            ),
            pod_labels: non_empty_map_or(pod_labels, &base.pod_labels),
            pod_annotations: non_empty_map_or(pod_annotations, &base.pod_annotations),
            service_account_name: service_account_name
                .clone()
                .or_else(|| base.service_account_name.clone()),
        }
    }
}

fn non_empty_or<T: Clone>(own: &[T], base: &[T]) -> Vec<T> {
    if own.is_empty() { base } else { own }.to_vec()
}

fn non_empty_map_or(
    own: &BTreeMap<String, String>,
    base: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    if own.is_empty() { base } else { own }.clone()
}

/// Image pull policy of the component's containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    /// The value Kubernetes expects in `imagePullPolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// Persistent storage of a stateful component (one PVC per pod). Immutable once set, because
/// a StatefulSet's volume claim templates cannot change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self == oldSelf",
    "message": "storage cannot be changed after creation (volume claim templates are immutable)"
}]))]
pub struct StorageSpec {
    /// Size of each pod's volume, as a Kubernetes quantity of whole bytes from 1Mi to 1Pi
    /// (e.g. `10Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::storage_size")]
    pub size: Option<String>,

    /// Storage class of the volumes; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[schemars(regex(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    ))]
    pub storage_class_name: Option<String>,
}

/// What happens to the data volumes (the claims `data-<StatefulSet>-<n>`) of a stateful
/// component when its StatefulSet is deleted, which garbage collection does when the component
/// (or its cluster) is deleted. Scaling down always keeps the volumes of the removed pods, so
/// scaling back up finds their data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VolumeRetention {
    /// The volumes are deleted with the StatefulSet: a new object of the same name starts
    /// empty.
    #[default]
    Delete,
    /// The volumes stay. A new object of the same name refuses them until they are deleted
    /// or it sets `adoptVolumes: true`.
    Retain,
}

impl VolumeRetention {
    /// The value of a StatefulSet's `persistentVolumeClaimRetentionPolicy.whenDeleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "Delete",
            Self::Retain => "Retain",
        }
    }
}

/// Where a component finds the global topology server (the cluster's etcd).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopoSpec {
    /// Comma-separated `host:port` list of the global etcd client endpoints,
    /// e.g. `demo-etcd-client.default.svc:2379`.
    #[schemars(length(min = 1, max = 1024))]
    pub global_server_addresses: String,

    /// Root path of the global topology in etcd. Defaults to `/multigres/global`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^/"))]
    pub global_root: Option<String>,
}

/// A key of a Secret in the object's namespace: where the postgres admin password is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,

    /// Key in the Secret's data. Defaults to `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: Option<String>,
}

impl SecretKeyRef {
    /// The key, or the default `password`.
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or(crate::defaults::PASSWORD_KEY)
    }
}

/// PostgreSQL settings of a cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// The Secret key holding the password of the postgres admin user. When unset, the
    /// cluster-handler creates a Secret `<cluster>-postgres-password` with a random password,
    /// owned by the cluster. Every pooler of the cluster uses this password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,

    /// Networks (CIDRs, at most 16) the poolers' PostgreSQL accepts TCP connections from: the
    /// other poolers' streaming replication and rewind, as the admin user with
    /// `scram-sha-256`; every other user connects only through the local socket. Empty means
    /// `0.0.0.0/0` and `::/0` (still the admin user only). Written into `pg_hba.conf` when a
    /// pooler initialises its database: changing the list later does not change a database
    /// that is already initialised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::cidr_list")]
    pub allowed_networks: Vec<String>,
}

/// Where a cluster keeps its backups. Every pooler of the shard writes to and restores from the
/// same repository: a new pooler starts from the first pooler's backup. Exactly one of
/// `filesystem` and `s3`; a filesystem repository on a claim the cluster-handler creates when
/// unset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.filesystem) != has(self.s3)",
    "message": "backup needs exactly one of filesystem or s3"
}]))]
pub struct BackupSpec {
    /// A volume every pooler pod mounts at `/backups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FilesystemBackupSpec>,

    /// An S3 bucket (or an S3-compatible endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3BackupSpec>,
}

/// A filesystem backup repository on a PersistentVolumeClaim shared by every pooler pod, so it
/// must be `ReadWriteMany` wherever poolers run on more than one node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.claimName) && has(self.storage))",
    "message": "storage describes the claim the operator creates; it cannot be set with claimName"
}]))]
pub struct FilesystemBackupSpec {
    /// An existing claim in the cluster's namespace. When unset, the cluster-handler creates
    /// `<cluster>-backups` (`ReadWriteMany`, owned by the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub claim_name: Option<String>,

    /// Size (default `10Gi`) and storage class of the claim the cluster-handler creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
}

/// An S3 backup repository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3BackupSpec {
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,

    #[schemars(length(min = 1, max = 64))]
    pub region: String,

    /// A custom endpoint (S3-compatible storage), e.g. `https://minio.example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub endpoint: Option<String>,

    /// Prefix of every key the cluster writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub key_prefix: Option<String>,

    /// A Secret with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, given to both pooler
    /// containers. When unset, the pods' own identity (web identity or instance role) is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalSecretRef>,
}

/// A Secret in the object's namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalSecretRef {
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

/// What a pooler pod needs of the backup repository, resolved by the cluster-handler: the claim
/// to mount at `/backups`, or the Secret with S3 credentials. The rest (bucket, path) is in the
/// topology's Database record, where Multigres reads it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolerBackup {
    /// The claim holding the filesystem repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub claim_name: Option<String>,

    /// The Secret with S3 credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_credentials_secret_ref: Option<LocalSecretRef>,
}

/// Observability of a cluster's data plane.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservabilitySpec {
    /// Whether the Multigres processes export traces; `Enabled` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingMode>,
}

impl ObservabilitySpec {
    /// The tracing mode of `observability`: `Enabled` unless it says otherwise.
    pub fn tracing_mode(observability: Option<&ObservabilitySpec>) -> TracingMode {
        observability.and_then(|o| o.tracing).unwrap_or_default()
    }
}

/// Whether the Multigres processes export traces: `Enabled` (the default) gives them the
/// resource-handler's trace export settings whenever it exports traces itself; `Disabled` never.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TracingMode {
    /// Export when the resource-handler exports its own traces.
    #[default]
    Enabled,
    /// Never export.
    Disabled,
}

/// The pooler's settings: the shared pod shape plus its postgres side and storage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolerTemplate {
    #[serde(flatten)]
    pub component: ComponentSpec,

    /// Image of the postgres sidecar (pgctld), e.g. `ghcr.io/multigres/pgctld:v0.1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::postgres_image")]
    pub postgres_image: Option<String>,

    /// The postgres data volume of each pooler pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
}

impl PoolerTemplate {
    /// This template with unset fields taken from `base` (see [`ComponentSpec::overlay`]).
    pub fn overlay(&self, base: &PoolerTemplate) -> PoolerTemplate {
        PoolerTemplate {
            component: self.component.overlay(&base.component),
            postgres_image: self
                .postgres_image
                .clone()
                .or_else(|| base.postgres_image.clone()),
            storage: self.storage.clone().or_else(|| base.storage.clone()),
        }
    }
}

/// The shard as its poolers registered it in the Multigres topology.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// The pod of the pooler that is primary; unset while there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,

    /// Replicas registered in the topology as serving.
    #[serde(default)]
    pub standbys: i32,

    /// Standbys whose WAL receiver streams from the primary, as each one's multipooler reports
    /// it; a standby that does not answer is not counted.
    #[serde(default)]
    pub streaming: i32,
}

/// Status of one component: what its workload reports, and which trace last acted on it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Pods the workload wants.
    #[serde(default)]
    pub replicas: i32,

    /// Pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,

    /// True when every wanted pod is ready and the spec was acted on.
    #[serde(default)]
    pub ready: bool,

    /// Standard conditions: `Ready`, plus `Progressing` and `Degraded` where they apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// Trace id (32 hex digits) of the reconcile that last acted on a new generation;
    /// look it up in the trace backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trace_id: Option<String>,
}

/// Where an aggregating resource (a cluster or a cell) stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Nothing has been created yet.
    Pending,
    /// Children exist and are converging.
    Progressing,
    /// Every child is ready.
    Healthy,
    /// Something that was ready is not any more, or a failure retrying cannot fix (a bad spec,
    /// missing credentials, a child's such failure) blocks it; the Degraded condition says which.
    Degraded,
}

/// Ready and wanted counts of one kind of child.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadyCount {
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_takes_own_fields_and_fills_the_rest_from_base() {
        let base = ComponentSpec {
            image: Some("base/img:1".into()),
            replicas: Some(2),
            node_selector: BTreeMap::from([("disk".into(), "ssd".into())]),
            pod_labels: BTreeMap::from([("team".into(), "data".into())]),
            ..Default::default()
        };
        let own = ComponentSpec {
            replicas: Some(5),
            node_selector: BTreeMap::from([("zone".into(), "c".into())]),
            ..Default::default()
        };
        let merged = own.overlay(&base);
        assert_eq!(merged.replicas, Some(5));
        assert_eq!(merged.image.as_deref(), Some("base/img:1"));
        // Maps are replaced as a whole, not merged key by key.
        assert_eq!(merged.node_selector, own.node_selector);
        assert_eq!(merged.pod_labels, base.pod_labels);
        assert_eq!(ComponentSpec::default().overlay(&base), base);
    }

    #[test]
    fn pooler_overlay_covers_storage_and_postgres_image() {
        let base = PoolerTemplate {
            postgres_image: Some("pg:1".into()),
            storage: Some(StorageSpec {
                size: Some("20Gi".into()),
                storage_class_name: None,
            }),
            ..Default::default()
        };
        let own = PoolerTemplate {
            component: ComponentSpec {
                replicas: Some(1),
                ..Default::default()
            },
            ..Default::default()
        };
        let merged = own.overlay(&base);
        assert_eq!(merged.component.replicas, Some(1));
        assert_eq!(merged.postgres_image.as_deref(), Some("pg:1"));
        assert_eq!(merged.storage, base.storage);
    }
}
