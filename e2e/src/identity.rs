//! Running as a ServiceAccount instead of the admin: a TokenRequest token, a kubeconfig that
//! carries it (for handler processes) and a client with it (for the test's own requests).

use std::path::PathBuf;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::config::{AuthInfo, Kubeconfig};
use kube::{Api, Client};

use crate::TestEnv;
use crate::env::repo_root;

/// A short-lived token for ServiceAccount `ns/name`, issued through the TokenRequest API.
pub async fn service_account_token(admin: &Client, ns: &str, name: &str) -> String {
    let request: TokenRequest =
        serde_json::from_value(serde_json::json!({"spec": {"expirationSeconds": 3600}}))
            .expect("token request");
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("token for ServiceAccount {ns}/{name}: {e}"))
        .status
        .and_then(|s| s.token)
        .unwrap_or_else(|| panic!("no token in the TokenRequest status of {ns}/{name}"))
}

/// Writes a kubeconfig for the test cluster that authenticates with `token` (the admin
/// kubeconfig's server and CA, no client certificate) and returns its path.
pub fn kubeconfig_with_token(env: &TestEnv, file_name: &str, token: &str) -> PathBuf {
    let mut config = Kubeconfig::read_from(&env.kubeconfig)
        .unwrap_or_else(|e| panic!("reading {}: {e}", env.kubeconfig.display()));
    assert!(
        !config.auth_infos.is_empty(),
        "{} has no user",
        env.kubeconfig.display()
    );
    for user in &mut config.auth_infos {
        user.auth_info = Some(AuthInfo {
            token: Some(token.to_string().into()),
            ..Default::default()
        });
    }
    let dir = repo_root().join("e2e/.work");
    let path = dir.join(file_name);
    let yaml = serde_yaml::to_string(&config).expect("kubeconfig serializes");
    std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// A client of the test cluster that authenticates with `token`.
pub async fn client_with_token(env: &TestEnv, token: &str) -> Client {
    let mut config = crate::k8s::admin_config(env).await;
    config.auth_info = AuthInfo {
        token: Some(token.to_string().into()),
        ..Default::default()
    };
    Client::try_from(config).expect("client with the token")
}
