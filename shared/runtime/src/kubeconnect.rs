//! Connecting to the Kubernetes API at startup, with errors that tell the user what to fix.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, Client, Config};
use thiserror::Error;

use crate::metrics::Metrics;

/// Why a handler could not start talking to its cluster.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error(
        "no Kubernetes configuration found; set KUBECONFIG to a kubeconfig file or run inside a pod with a service account"
    )]
    NoConfig(#[source] kube::config::InferConfigError),

    #[error("cannot build a Kubernetes client")]
    Client(#[source] kube::Error),

    #[error("cannot reach the Kubernetes API server at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: kube::Error,
    },

    #[error("the Kubernetes API server at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },

    #[error(
        "the custom resource {crd} is not installed; install the CRDs first: kubectl apply --server-side -k manifests/crds"
    )]
    MissingCrd { crd: String },

    #[error("cannot list {crd} to check that its CRD is installed")]
    CrdCheck {
        crd: String,
        #[source]
        source: kube::Error,
    },
}

/// Infers the client configuration (KUBECONFIG, ~/.kube/config or in-cluster), builds the
/// process's instrumented client and checks the API server answers within `timeout`.
pub async fn connect(timeout: Duration, metrics: Arc<Metrics>) -> Result<Client, ConnectError> {
    let config = Config::infer().await.map_err(ConnectError::NoConfig)?;
    let url = config.cluster_url.to_string();
    let client = crate::client::build(config, metrics).map_err(ConnectError::Client)?;
    match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Ok(Ok(version)) => {
            tracing::info!(%url, version = %version.git_version, "connected to the Kubernetes API server");
            Ok(client)
        }
        Ok(Err(source)) => Err(ConnectError::Unreachable { url, source }),
        Err(_) => Err(ConnectError::Timeout { url, timeout }),
    }
}

/// Fails with an install hint unless the CRD of each of `kinds` is served. Uses a one-item
/// list, which the handler's own RBAC allows, instead of reading CustomResourceDefinitions.
pub async fn ensure_crds(client: &Client, kinds: &[ApiResource]) -> Result<(), ConnectError> {
    for kind in kinds {
        let crd = format!("{}.{}", kind.plural, kind.group);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), kind);
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Err(ConnectError::MissingCrd { crd });
            }
            Err(source) => return Err(ConnectError::CrdCheck { crd, source }),
        }
    }
    Ok(())
}
