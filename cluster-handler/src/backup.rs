//! The backup repository of a cluster. Every pooler of a shard backs up to and restores from
//! the same repository (a new pooler starts from the first one's backup), so a filesystem
//! repository is one claim all pooler pods mount; unless the spec names one, the
//! cluster-handler creates `<cluster>-backups` once (`ReadWriteMany`, owned by the cluster).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use multigres_api::crd::{
    BackupSpec, FilesystemBackupSpec, MultigresCluster, PoolerBackup, S3BackupSpec,
};
use multigres_api::meta::{
    CLUSTER_HANDLER_MANAGER, ComponentLabel, LABEL_CLUSTER, LABEL_COMPONENT, child_meta,
    is_controlled_by, standard_labels,
};

/// Size of the claim the cluster-handler creates when the spec gives none.
pub const DEFAULT_SIZE: &str = "10Gi";

/// Name of the claim the cluster-handler creates for `cluster`.
pub fn generated_claim(cluster: &str) -> String {
    format!("{cluster}-backups")
}

/// The cluster's repository, the default (a generated filesystem claim) when unset.
pub fn spec(cluster: &MultigresCluster) -> BackupSpec {
    cluster.spec.backup.clone().unwrap_or_else(|| BackupSpec {
        filesystem: Some(FilesystemBackupSpec::default()),
        s3: None,
    })
}

/// What the pooler pods of `cluster` need: the claim to mount, or the S3 credentials Secret.
pub fn for_poolers(cluster: &MultigresCluster) -> PoolerBackup {
    let backup = spec(cluster);
    match (&backup.filesystem, &backup.s3) {
        (
            _,
            Some(S3BackupSpec {
                credentials_secret_ref,
                ..
            }),
        ) => PoolerBackup {
            claim_name: None,
            s3_credentials_secret_ref: credentials_secret_ref.clone(),
        },
        (filesystem, None) => PoolerBackup {
            claim_name: Some(
                filesystem
                    .as_ref()
                    .and_then(|f| f.claim_name.clone())
                    .unwrap_or_else(|| generated_claim(&cluster.name_any())),
            ),
            s3_credentials_secret_ref: None,
        },
    }
}

/// How long a backup claim may stay Pending before the cluster says so: provisioning takes
/// seconds, while a claim no storage class can provision (no `ReadWriteMany`) stays Pending
/// and holds every pooler pod with it.
const PENDING_AFTER_SECS: i64 = 60;

/// Where the backup claim stands, as far as the pooler pods are concerned.
#[derive(Debug, PartialEq)]
pub enum ClaimState {
    /// Bound, or no claim (S3), or unreadable (its absence is reported by [`ensure`]).
    Fine,
    /// Pending for less than a minute.
    Provisioning,
    /// Pending too long: what to tell the user.
    Stuck(String),
}

/// The state of `claim` at `now_secs` (pure).
pub fn claim_state(claim: &PersistentVolumeClaim, now_secs: i64) -> ClaimState {
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    let created = claim
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(now_secs, |t| t.0.as_second());
    let age = now_secs - created;
    match phase {
        Some("Pending") if age > PENDING_AFTER_SECS => ClaimState::Stuck(format!(
            "PersistentVolumeClaim {name} for the backups has been Pending for {age}s, so the \
             pooler pods cannot start: its storage class must provision ReadWriteMany volumes \
             when poolers run on several nodes (kubectl describe pvc {name} says why)",
            name = claim.name_any(),
        )),
        Some("Pending") => ClaimState::Provisioning,
        _ => ClaimState::Fine,
    }
}

/// Reads the cluster's backup claim, when it has one.
pub async fn state(client: &kube::Client, cluster: &MultigresCluster) -> ClaimState {
    let (Some(name), Some(ns)) = (for_poolers(cluster).claim_name, cluster.namespace()) else {
        return ClaimState::Fine;
    };
    match Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .get_opt(&name)
        .await
    {
        Ok(Some(claim)) => claim_state(&claim, k8s_openapi::jiff::Timestamp::now().as_second()),
        _ => ClaimState::Fine,
    }
}

/// Why the repository's claim is not there; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "PersistentVolumeClaim {name} exists but was not created for this cluster; the \
         cluster-handler never takes over a claim it does not own: delete it, or name it in \
         spec.backup.filesystem.claimName"
    )]
    NotOwned { name: String },

    #[error(
        "PersistentVolumeClaim {name} named by spec.backup.filesystem.claimName does not exist"
    )]
    Missing { name: String },

    #[error("reading or creating PersistentVolumeClaim {name}: {source}")]
    Api {
        name: String,
        #[source]
        source: kube::Error,
    },

    #[error("the cluster has no uid or namespace yet")]
    NotStored,
}

impl BackupError {
    /// CamelCase reason for the `Ready=False` condition.
    pub fn reason(&self) -> &'static str {
        "BackupUnavailable"
    }
}

/// Makes sure the filesystem repository's claim exists (creates the generated one). Returns
/// the claim's name and whether it was created; `None` for an S3 repository.
pub async fn ensure(
    client: &kube::Client,
    cluster: &MultigresCluster,
) -> Result<Option<(String, bool)>, BackupError> {
    let backup = spec(cluster);
    let Some(filesystem) = backup.filesystem.as_ref().filter(|_| backup.s3.is_none()) else {
        return Ok(None);
    };
    let ns = cluster.namespace().ok_or(BackupError::NotStored)?;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    if let Some(name) = &filesystem.claim_name {
        return match api.get_opt(name).await {
            Ok(Some(_)) => Ok(Some((name.clone(), false))),
            Ok(None) => Err(BackupError::Missing { name: name.clone() }),
            Err(source) => Err(BackupError::Api {
                name: name.clone(),
                source,
            }),
        };
    }
    let name = generated_claim(&cluster.name_any());
    let api_err = |source| BackupError::Api {
        name: name.clone(),
        source,
    };
    match api.get_opt(&name).await.map_err(api_err)? {
        Some(claim) if is_controlled_by(&claim, &cluster.uid().unwrap_or_default()) => {
            Ok(Some((name, false)))
        }
        Some(_) => Err(BackupError::NotOwned { name }),
        None => {
            let claim = generated(cluster, filesystem)?;
            match api.create(&PostParams::default(), &claim).await {
                Ok(_) => Ok(Some((name, true))),
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    Box::pin(ensure(client, cluster)).await
                }
                Err(e) => Err(api_err(e)),
            }
        }
    }
}

/// The generated claim (pure): `ReadWriteMany`, owned by the cluster and labelled like its
/// other children. Never updated: a claim's request can only grow, and its class never changes.
fn generated(
    cluster: &MultigresCluster,
    filesystem: &FilesystemBackupSpec,
) -> Result<PersistentVolumeClaim, BackupError> {
    let name = cluster.name_any();
    let mut labels = standard_labels(ComponentLabel::Pooler, &name, CLUSTER_HANDLER_MANAGER);
    labels.insert(LABEL_CLUSTER.to_string(), name.clone());
    labels.insert(LABEL_COMPONENT.to_string(), "backups".to_string());
    let metadata =
        child_meta(cluster, generated_claim(&name), labels).ok_or(BackupError::NotStored)?;
    let storage = filesystem.storage.as_ref();
    let size = storage
        .and_then(|s| s.size.clone())
        .unwrap_or_else(|| DEFAULT_SIZE.to_string());
    Ok(PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteMany".to_string()]),
            storage_class_name: storage.and_then(|s| s.storage_class_name.clone()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(size))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use multigres_api::crd::{LocalSecretRef, StorageSpec};

    fn cluster(backup: Option<BackupSpec>) -> MultigresCluster {
        let mut c = MultigresCluster::new("shop", Default::default());
        c.metadata.namespace = Some("prod".into());
        c.metadata.uid = Some("cluster-uid".into());
        c.spec.backup = backup;
        c
    }

    #[test]
    fn by_default_the_poolers_share_a_generated_claim() {
        assert_eq!(
            for_poolers(&cluster(None)),
            PoolerBackup {
                claim_name: Some("shop-backups".into()),
                s3_credentials_secret_ref: None
            }
        );
        let claim = generated(&cluster(None), &FilesystemBackupSpec::default()).expect("claim");
        assert!(is_controlled_by(&claim, "cluster-uid"));
        let spec = claim.spec.expect("spec");
        assert_eq!(
            spec.access_modes,
            Some(vec!["ReadWriteMany".to_string()]),
            "every pooler pod mounts it, on any node"
        );
        assert_eq!(
            spec.resources.and_then(|r| r.requests).expect("requests")["storage"],
            Quantity("10Gi".into())
        );
    }

    #[test]
    fn a_named_claim_or_s3_credentials_reach_the_poolers() {
        let named = cluster(Some(BackupSpec {
            filesystem: Some(FilesystemBackupSpec {
                claim_name: Some("nfs".into()),
                storage: None,
            }),
            s3: None,
        }));
        assert_eq!(for_poolers(&named).claim_name.as_deref(), Some("nfs"));
        let s3 = cluster(Some(BackupSpec {
            filesystem: None,
            s3: Some(S3BackupSpec {
                bucket: "b".into(),
                region: "r".into(),
                credentials_secret_ref: Some(LocalSecretRef { name: "aws".into() }),
                ..Default::default()
            }),
        }));
        assert_eq!(
            for_poolers(&s3),
            PoolerBackup {
                claim_name: None,
                s3_credentials_secret_ref: Some(LocalSecretRef { name: "aws".into() })
            }
        );
    }

    #[test]
    fn a_claim_pending_for_more_than_a_minute_is_reported_by_name() {
        let claim = |phase: &str, created: i64| {
            let mut claim =
                generated(&cluster(None), &FilesystemBackupSpec::default()).expect("claim");
            claim.metadata.creation_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::from_second(created).expect("time"),
                ));
            claim.status = Some(k8s_openapi::api::core::v1::PersistentVolumeClaimStatus {
                phase: Some(phase.to_string()),
                ..Default::default()
            });
            claim
        };
        assert_eq!(
            claim_state(&claim("Pending", 1_000), 1_030),
            ClaimState::Provisioning
        );
        assert_eq!(claim_state(&claim("Bound", 1_000), 5_000), ClaimState::Fine);
        let ClaimState::Stuck(message) = claim_state(&claim("Pending", 1_000), 1_090) else {
            panic!("a claim Pending for 90s is not reported");
        };
        assert!(
            message.starts_with(
                "PersistentVolumeClaim shop-backups for the backups has been Pending for 90s"
            ),
            "{message}"
        );
    }

    #[test]
    fn the_generated_claim_takes_the_size_and_class_given() {
        let filesystem = FilesystemBackupSpec {
            claim_name: None,
            storage: Some(StorageSpec {
                size: Some("50Gi".into()),
                storage_class_name: Some("nfs".into()),
            }),
        };
        let spec = generated(&cluster(None), &filesystem)
            .expect("claim")
            .spec
            .expect("spec");
        assert_eq!(spec.storage_class_name.as_deref(), Some("nfs"));
        assert_eq!(
            spec.resources.and_then(|r| r.requests).expect("requests")["storage"],
            Quantity("50Gi".into())
        );
    }
}
