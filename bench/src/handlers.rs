//! Both handlers started as their own ServiceAccounts (installed from `manifests/`), so the API
//! server queues their requests, and the floor's writes, as it would in a cluster.

use e2e::TestEnv;
use e2e::identity::{Identity, install_operator_identities};
use e2e::process::{Handler, start_handler};
use kube::core::DynamicObject;
use kube::{Client, ResourceExt};
use multigres_api::meta::{CLUSTER_HANDLER_MANAGER, LABEL_MANAGED_BY};

/// The handlers' own ServiceAccounts, as deployed. As the admin they would be exempt from the API
/// server's priority and fairness while the controller-manager, which the pods' progress waits
/// on, is queued and refused with 429.
pub struct Identities {
    ch: Identity,
    rh: Identity,
}

impl Identities {
    pub async fn install(env: &TestEnv, admin: &Client) -> Identities {
        install_operator_identities(env);
        Identities {
            ch: Identity::of_handler(env, admin, "cluster-handler").await,
            rh: Identity::of_handler(env, admin, "resource-handler").await,
        }
    }

    /// Both handlers watching `ns`, each as its ServiceAccount, with `env` added.
    pub async fn start(
        &self,
        ns: &str,
        args: &[&str],
        env: Vec<(String, String)>,
    ) -> (Handler, Handler) {
        let with = |id: &Identity| env.iter().cloned().chain([id.env()]).collect::<Vec<_>>();
        (
            start_handler("cluster-handler", Some(ns), args, with(&self.ch)).await,
            start_handler("resource-handler", Some(ns), args, with(&self.rh)).await,
        )
    }

    /// The identity that wrote `obj` in the operator, by its managed-by label: the
    /// cluster-handler its children and the claim and Secret a cluster needs first, the
    /// resource-handler the workloads and Services.
    pub fn writer_of(&self, obj: &DynamicObject) -> &Client {
        if obj.labels().get(LABEL_MANAGED_BY).map(String::as_str) == Some(CLUSTER_HANDLER_MANAGER) {
            &self.ch.client
        } else {
            &self.rh.client
        }
    }
}
