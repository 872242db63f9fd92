//! Running as a ServiceAccount instead of the admin: a TokenRequest token, a kubeconfig that
//! carries it (for handler processes) and a client with it (for the test's own requests).
//!
//! The admin is in `system:masters`, which the API server's priority and fairness exempts from
//! all queuing; a handler run as the admin would be favoured over the controller-manager it
//! shares the API server with. Handlers that are measured run as their own ServiceAccounts.

use std::path::PathBuf;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::config::{AuthInfo, Kubeconfig};
use kube::{Api, Client};

use crate::TestEnv;
use crate::env::repo_root;

/// The namespace of the operator's ServiceAccounts (`manifests/deploy/namespace.yaml`).
pub const OPERATOR_NS: &str = "multigres-system";

/// A token for ServiceAccount `ns/name`, issued through the TokenRequest API. It lasts 4 hours,
/// longer than a whole `make bench` (about 80 minutes), which issues each handler one token.
async fn service_account_token(admin: &Client, ns: &str, name: &str) -> String {
    let request: TokenRequest =
        serde_json::from_value(serde_json::json!({"spec": {"expirationSeconds": 4 * 3600}}))
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
fn kubeconfig_with_token(env: &TestEnv, file_name: &str, token: &str) -> PathBuf {
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
    let yaml = serde_saphyr::to_string(&config).expect("kubeconfig serializes");
    std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// A client of the test cluster that authenticates with `token`.
async fn client_with_token(env: &TestEnv, token: &str) -> Client {
    let mut config = crate::k8s::admin_config(env).await;
    config.auth_info = AuthInfo {
        token: Some(token.to_string().into()),
        ..Default::default()
    };
    Client::try_from(config).expect("client with the token")
}

/// Installs the operator's namespace, ServiceAccounts and roles from `manifests/`, as a user
/// does, without the Deployments.
pub fn install_operator_identities(env: &TestEnv) {
    let manifests = repo_root().join("manifests");
    for (how, path) in [
        ("-f", manifests.join("deploy/namespace.yaml")),
        ("-k", manifests.join("rbac")),
    ] {
        env.kubectl_apply(how, &path);
    }
}

/// A handler's identity: its ServiceAccount's kubeconfig (for the process) and client.
pub struct Identity {
    pub kubeconfig: PathBuf,
    pub client: Client,
}

impl Identity {
    /// Of handler `bin` (`cluster-handler` or `resource-handler`), whose ServiceAccount
    /// `install_operator_identities` made.
    pub async fn of_handler(env: &TestEnv, admin: &Client, bin: &str) -> Identity {
        let token = service_account_token(admin, OPERATOR_NS, &format!("multigres-{bin}")).await;
        Identity {
            kubeconfig: kubeconfig_with_token(env, &format!("kubeconfig-{bin}"), &token),
            client: client_with_token(env, &token).await,
        }
    }

    /// The environment entry that makes a handler process use this identity.
    pub fn env(&self) -> (String, String) {
        ("KUBECONFIG".into(), self.kubeconfig.display().to_string())
    }
}
