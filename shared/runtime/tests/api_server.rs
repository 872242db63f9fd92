//! The runtime's readings of the API server, checked against the real one: what counts as
//! "going away", and what the shared watch caches keep. They need the local control plane, so
//! `cargo test` skips them and `make e2e` runs them (`--ignored`).

use std::time::Duration;

use e2e::{TestEnv, install_crds, wait_until, with_namespace};
use futures::FutureExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use multigres_api::meta::{LABEL_MANAGED_BY, RESOURCE_HANDLER_MANAGER};
use multigres_runtime::gone::going_away;
use multigres_runtime::watch::SharedWatch;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

async fn client() -> Client {
    e2e::k8s::admin_client(&TestEnv::load()).await
}

/// The answers the handlers take for "going away" (logged as information, no Warning Event),
/// read from the real API server: a namespace being deleted refuses new objects with the cause
/// `NamespaceTerminating`, and a write to an object that is gone is a 404 naming it. A type the
/// API server does not serve stays a failure.
#[tokio::test]
#[ignore = "needs the local control plane: run by `make e2e`"]
async fn a_terminating_namespace_and_a_deleted_object_read_as_going_away() {
    let client = client().await;
    install_crds(&client).await;
    with_namespace(&client, "going-away", |client, ns| async move {
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
        let config_map = |name: &str, finalizers: Vec<&str>| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "finalizers": finalizers}})
        };
        let apply = PatchParams::apply("multigres-e2e");
        // Its finalizer keeps the namespace terminating while the test writes into it.
        config_maps
            .patch("held", &apply, &Patch::Apply(config_map("held", vec!["multigres.com/e2e-hold"])))
            .await
            .expect("held created");
        let clusters: Api<multigres_api::crd::MultigresCluster> = Api::namespaced(client.clone(), &ns.name);
        let status = json!({"apiVersion": "multigres.com/v1alpha1", "kind": "MultigresCluster", "status": {}});
        let gone = clusters
            .patch_status("never-was", &apply, &Patch::Apply(status))
            .await
            .expect_err("no such cluster");
        assert!(going_away(&gone), "{gone:?}");
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("multigres.com", "v1alpha1", "NoSuchKind"));
        let unserved = Api::<DynamicObject>::namespaced_with(client.clone(), &ns.name, &resource)
            .get("x")
            .await
            .expect_err("not served");
        assert!(!going_away(&unserved), "{unserved:?}");

        Api::<Namespace>::all(client.clone())
            .delete(&ns.name, &DeleteParams::background())
            .await
            .expect("namespace deleted");
        let refused = config_maps
            .patch("new", &apply, &Patch::Apply(config_map("new", vec![])))
            .await
            .expect_err("a terminating namespace takes no new objects");
        assert!(going_away(&refused), "{refused:?}");
        config_maps
            .patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
            .await
            .expect("finalizer removed");
    })
    .await;
}

/// The handlers' shared watch caches hold objects without `managedFields` (the largest part of
/// a cached workload, read by nothing), while the API server keeps them.
#[tokio::test]
#[ignore = "needs the local control plane: run by `make e2e`"]
async fn shared_watch_caches_hold_no_managed_fields() {
    let client = client().await;
    with_namespace(&client, "cache-fields", |client, ns| async move {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "cached", "labels": {LABEL_MANAGED_BY: RESOURCE_HANDLER_MANAGER}},
            "data": {"a": "1"}
        }))
        .expect("config map");
        let stored = api
            .patch(
                "cached",
                &PatchParams::apply("e2e-cache"),
                &Patch::Apply(&cm),
            )
            .await
            .expect("apply config map");
        assert!(
            stored.metadata.managed_fields.is_some(),
            "the API server returned no managedFields: {:?}",
            stored.metadata
        );

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let stop = async move {
            let _ = stop_rx.await;
        }
        .boxed()
        .shared();
        let cache = SharedWatch::<ConfigMap>::new(RESOURCE_HANDLER_MANAGER).spawn(api, stop);
        let cached = wait_until("the config map in the cache", TIMEOUT, || {
            let cache = cache.clone();
            async move {
                cache
                    .state()
                    .into_iter()
                    .find(|c| c.name_any() == "cached")
                    .ok_or_else(|| format!("cache holds {} objects", cache.state().len()))
            }
        })
        .await;
        let _ = stop_tx.send(());
        assert_eq!(
            cached.metadata.managed_fields, None,
            "cached object: {:?}",
            cached.metadata
        );
        assert_eq!(cached.data, cm.data, "the rest of the object is kept");
    })
    .await;
}
