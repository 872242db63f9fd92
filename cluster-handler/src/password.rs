//! The postgres admin password of a cluster: the Secret the user names must hold it; otherwise
//! the cluster-handler creates `<cluster>-postgres-password` once, with a random password, owned
//! by the cluster (garbage-collected with it). The value is never logged, traced or copied into
//! any status: only the Secret's name and whether it was created are.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use multigres_api::crd::{MultigresCluster, SecretKeyRef};
use multigres_api::meta::{
    CLUSTER_HANDLER_MANAGER, ComponentLabel, LABEL_CLUSTER, LABEL_COMPONENT, child_meta,
    is_controlled_by, standard_labels,
};

use crate::cluster::password_secret_ref;

/// Why the password is not available; retried with backoff until the Secret is right.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "Secret {name} named by spec.postgres.passwordSecretRef does not exist; create it with the key {key}"
    )]
    Missing { name: String, key: String },

    #[error("Secret {name} has no key {key} (the postgres admin password)")]
    MissingKey { name: String, key: String },

    #[error(
        "Secret {name} exists but was not created for this cluster; the cluster-handler never \
         takes over a Secret it does not own: delete it, or name it in \
         spec.postgres.passwordSecretRef"
    )]
    NotOwned { name: String },

    #[error("reading or creating Secret {name}: {source}")]
    Api {
        name: String,
        #[source]
        source: kube::Error,
    },

    #[error("no random numbers for a password: {0}")]
    Random(String),

    #[error("the cluster has no uid or namespace yet")]
    NotStored,
}

impl CredentialsError {
    /// CamelCase reason for the `Ready=False` condition.
    pub fn reason(&self) -> &'static str {
        "CredentialsUnavailable"
    }
}

/// Length of a generated password: 32 bytes of randomness, hex-encoded.
const RANDOM_BYTES: usize = 32;

/// Makes sure the cluster's password Secret exists and holds its key; creates the generated one
/// when missing. Returns the Secret's name and whether it was created.
pub async fn ensure(
    client: &kube::Client,
    cluster: &MultigresCluster,
) -> Result<(String, bool), CredentialsError> {
    let reference = password_secret_ref(cluster);
    let user_named = cluster
        .spec
        .postgres
        .as_ref()
        .is_some_and(|p| p.password_secret_ref.is_some());
    let ns = cluster.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let api_err = |source| CredentialsError::Api {
        name: reference.name.clone(),
        source,
    };
    let existing = api.get_opt(&reference.name).await.map_err(api_err)?;
    match existing {
        Some(secret) => {
            let uid = cluster.uid().unwrap_or_default();
            if !user_named && !is_controlled_by(&secret, &uid) {
                return Err(CredentialsError::NotOwned {
                    name: reference.name.clone(),
                });
            }
            check_key(&secret, &reference)?;
            Ok((reference.name.clone(), false))
        }
        None if user_named => Err(CredentialsError::Missing {
            name: reference.name.clone(),
            key: reference.key().to_string(),
        }),
        None => {
            let secret = generated(cluster, &reference, &random_password()?)?;
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => Ok((reference.name.clone(), true)),
                // Created meanwhile by another reconcile of this cluster: check it as above.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    Box::pin(ensure(client, cluster)).await
                }
                Err(e) => Err(api_err(e)),
            }
        }
    }
}

fn check_key(secret: &Secret, reference: &SecretKeyRef) -> Result<(), CredentialsError> {
    let key = reference.key();
    let in_data = secret
        .data
        .as_ref()
        .is_some_and(|d| d.get(key).is_some_and(|v| !v.0.is_empty()));
    let in_string_data = secret
        .string_data
        .as_ref()
        .is_some_and(|d| d.get(key).is_some_and(|v| !v.is_empty()));
    if in_data || in_string_data {
        Ok(())
    } else {
        Err(CredentialsError::MissingKey {
            name: reference.name.clone(),
            key: key.to_string(),
        })
    }
}

/// The generated Secret (pure): owned by the cluster, labelled like its other children.
fn generated(
    cluster: &MultigresCluster,
    reference: &SecretKeyRef,
    password: &str,
) -> Result<Secret, CredentialsError> {
    let name = cluster.name_any();
    let mut labels = standard_labels(ComponentLabel::Cell, &name, CLUSTER_HANDLER_MANAGER);
    labels.insert(LABEL_CLUSTER.to_string(), name.clone());
    labels.insert(LABEL_COMPONENT.to_string(), "postgres-password".to_string());
    let metadata =
        child_meta(cluster, reference.name.clone(), labels).ok_or(CredentialsError::NotStored)?;
    Ok(Secret {
        metadata,
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(
            reference.key().to_string(),
            ByteString(password.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    })
}

fn random_password() -> Result<String, CredentialsError> {
    let mut bytes = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| CredentialsError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> MultigresCluster {
        let mut c = MultigresCluster::new("shop", Default::default());
        c.metadata.namespace = Some("prod".into());
        c.metadata.uid = Some("cluster-uid".into());
        c
    }

    #[test]
    fn the_generated_secret_is_owned_by_the_cluster_and_holds_the_password() {
        let c = cluster();
        let reference = password_secret_ref(&c);
        let secret = generated(&c, &reference, "s3cret").expect("secret");
        assert_eq!(secret.name_any(), "shop-postgres-password");
        assert_eq!(secret.namespace().as_deref(), Some("prod"));
        assert!(is_controlled_by(&secret, "cluster-uid"));
        assert_eq!(secret.labels()[LABEL_CLUSTER], "shop");
        assert_eq!(
            secret.data.expect("data")["password"],
            ByteString(b"s3cret".to_vec())
        );
    }

    #[test]
    fn random_passwords_are_long_and_differ() {
        let a = random_password().expect("random");
        let b = random_password().expect("random");
        assert_eq!(a.len(), 2 * RANDOM_BYTES);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn a_secret_without_the_key_is_refused_by_name() {
        let reference = SecretKeyRef {
            name: "mine".into(),
            key: Some("pw".into()),
        };
        let secret = Secret {
            data: Some(BTreeMap::from([(
                "other".into(),
                ByteString(b"x".to_vec()),
            )])),
            ..Secret::default()
        };
        let err = check_key(&secret, &reference).expect_err("no key pw");
        assert_eq!(
            err.to_string(),
            "Secret mine has no key pw (the postgres admin password)"
        );
    }
}
