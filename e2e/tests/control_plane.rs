//! The local control plane is real and complete: CRDs install, the API server validates our
//! samples, controller-manager + scheduler + kwok run pods, and Tempo stores traces, including
//! the API server's own spans.

use std::time::Duration;

use e2e::tempo::{self, Tempo};
use e2e::{TestEnv, install_crds, wait_until, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::{Api, Client};
use multigres_api::samples::{Sample, load_dir, samples_dir};

const TIMEOUT: Duration = Duration::from_secs(60);

async fn client() -> (TestEnv, Client) {
    let env = TestEnv::load();
    let client = e2e::k8s::admin_client(&env).await;
    install_crds(&client).await;
    (env, client)
}

/// An API for the kind of `sample` in `ns`.
fn api_for(client: &Client, ns: &str, sample: &Sample) -> Api<DynamicObject> {
    let crd = multigres_api::crd::all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == sample.kind())
        .unwrap_or_else(|| panic!("{}: unknown kind {}", sample.path.display(), sample.kind()));
    let gvk = GroupVersionKind::gvk(
        multigres_api::crd::GROUP,
        multigres_api::crd::VERSION,
        sample.kind(),
    );
    let resource = ApiResource::from_gvk_with_plural(&gvk, &crd.spec.names.plural);
    Api::namespaced_with(client.clone(), ns, &resource)
}

fn as_dynamic(sample: &Sample) -> DynamicObject {
    serde_json::from_value(sample.object.clone())
        .unwrap_or_else(|e| panic!("{}: {e}", sample.path.display()))
}

/// The file names of `samples`, in load order (sorted).
fn file_names(samples: &[multigres_api::samples::Sample]) -> Vec<String> {
    samples
        .iter()
        .filter_map(|s| s.path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect()
}

#[tokio::test]
async fn crds_install_and_are_established() {
    let (_, client) = client().await;
    let names = install_crds(&client).await;
    assert_eq!(
        names,
        [
            "cells.multigres.com",
            "etcds.multigres.com",
            "multigateways.multigres.com",
            "multigresclusters.multigres.com",
            "multiorchs.multigres.com",
            "multipoolers.multigres.com",
        ]
    );
}

#[tokio::test]
async fn valid_samples_are_accepted() {
    let (_, client) = client().await;
    with_namespace(&client, "valid", |client, ns| async move {
        let samples = load_dir(&samples_dir()).expect("samples load");
        assert_eq!(
            file_names(&samples),
            [
                "minimal-cluster.yaml",
                "multi-cell-cluster.yaml",
                "standalone-etcd.yaml"
            ]
        );
        for sample in &samples {
            let created = api_for(&client, &ns.name, sample)
                .create(&PostParams::default(), &as_dynamic(sample))
                .await
                .unwrap_or_else(|e| panic!("{} refused: {e}", sample.path.display()));
            assert_eq!(created.metadata.name.as_deref(), Some(sample.name()));
        }
    })
    .await;
}

#[tokio::test]
async fn invalid_samples_are_refused_with_their_message() {
    let (_, client) = client().await;
    with_namespace(&client, "invalid", |client, ns| async move {
        let samples = load_dir(&samples_dir().join("invalid")).expect("samples load");
        assert_eq!(
            file_names(&samples),
            [
                "bad-allowed-network.yaml",
                "bad-cell-name.yaml",
                "bad-image.yaml",
                "bad-pull-policy.yaml",
                "bad-storage-size.yaml",
                "bad-tracing-mode.yaml",
                "duplicate-cell-names.yaml",
                "etcd-even-replicas.yaml",
                "huge-storage-size.yaml",
                "missing-topo.yaml",
                "negative-replicas.yaml",
                "tiny-storage-size.yaml",
                "uppercase-image-path.yaml",
            ]
        );
        let mut wrong = Vec::new();
        for sample in &samples {
            let expect = sample
                .expect
                .clone()
                .expect("invalid sample has `# expect:`");
            match api_for(&client, &ns.name, sample)
                .create(&PostParams::default(), &as_dynamic(sample))
                .await
            {
                Ok(_) => wrong.push(format!("{}: accepted", sample.path.display())),
                Err(kube::Error::Api(status))
                    if status.code == 422 && status.message.contains(&expect) => {}
                Err(e) => wrong.push(format!(
                    "{}: expected 422 containing {expect:?}, got {e}",
                    sample.path.display()
                )),
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    })
    .await;
}

#[tokio::test]
async fn deployment_gets_ready_pods_on_kwok_nodes() {
    let (_, client) = client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let ready_nodes = wait_until("three Ready nodes", TIMEOUT, || {
        let nodes = nodes.clone();
        async move {
            let list = nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let ready: Vec<String> = list
                .iter()
                .filter(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .filter_map(|n| n.metadata.name.clone())
                .collect();
            if ready.len() >= 3 {
                Ok(ready)
            } else {
                Err(format!("ready nodes: {ready:?}"))
            }
        }
    })
    .await;
    with_namespace(&client, "deploy", |client, ns| async move {
        let deploy: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}
                }
            }
        }))
        .expect("deployment object");
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
        deployments
            .create(&PostParams::default(), &deploy)
            .await
            .expect("deployment created");
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
        let ready_pods = wait_until("2 Running+Ready pods of the Deployment", TIMEOUT, || {
            let pods = pods.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels("app=web"))
                    .await
                    .map_err(|e| e.to_string())?;
                let seen: Vec<(String, String, bool)> = list
                    .iter()
                    .map(|p| {
                        let st = p.status.clone().unwrap_or_default();
                        let ready = st
                            .conditions
                            .unwrap_or_default()
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True");
                        (
                            p.spec
                                .as_ref()
                                .and_then(|s| s.node_name.clone())
                                .unwrap_or_default(),
                            st.phase.unwrap_or_default(),
                            ready,
                        )
                    })
                    .collect();
                let ok = seen
                    .iter()
                    .filter(|(node, phase, ready)| !node.is_empty() && phase == "Running" && *ready)
                    .count();
                if ok == 2 {
                    Ok(seen)
                } else {
                    Err(format!("(node, phase, ready): {seen:?}"))
                }
            }
        })
        .await;
        for (node, _, _) in &ready_pods {
            assert!(ready_nodes.contains(node), "pod on unknown node {node}");
        }
        // The Deployment controller counts the ready pods after the kubelet reports them.
        wait_until(
            "the Deployment to count 2 ready replicas",
            TIMEOUT,
            || async {
                let status = deployments
                    .get_status("web")
                    .await
                    .map_err(|e| e.to_string())?
                    .status
                    .unwrap_or_default();
                (status.ready_replicas == Some(2))
                    .then_some(())
                    .ok_or(format!("deployment status: {status:?}"))
            },
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_span_sent_over_otlp_http_can_be_read_back_from_tempo() {
    let env = TestEnv::load();
    let tempo = Tempo::new(&env.tempo_url);
    let (trace_id, span_id) = tempo::new_ids();
    tempo::push_test_span(
        &env.otlp_http_endpoint,
        "multigres-e2e",
        "e2e probe",
        &trace_id,
        &span_id,
    )
    .await
    .expect("OTLP/HTTP push accepted");
    let spans = wait_until("the pushed span in Tempo", TIMEOUT, || {
        let tempo = tempo.clone();
        let trace_id = trace_id.clone();
        async move {
            match tempo.trace(&trace_id).await? {
                Some(spans) if !spans.is_empty() => Ok(spans),
                _ => Err(format!("trace {trace_id} not found yet")),
            }
        }
    })
    .await;
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0].span_id, span_id);
    assert_eq!(spans[0].name, "e2e probe");
    assert_eq!(spans[0].service, "multigres-e2e");
    assert_eq!(spans[0].attributes["e2e.check"], "otlp-http");
}

/// Sends `GET <path>` through `client` with a sampled W3C `traceparent` of `(trace_id, span_id)`.
async fn traced_get(client: &Client, path: &str, trace_id: &str, span_id: &str) {
    let request = http::Request::get(path)
        .header("traceparent", format!("00-{trace_id}-{span_id}-01"))
        .body(Vec::new())
        .expect("request");
    client
        .request_text(request)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
}

#[tokio::test]
async fn the_api_server_joins_the_trace_of_an_admin_caller() {
    let (env, client) = client().await;
    let tempo = Tempo::new(&env.tempo_url);
    let (trace_id, span_id) = tempo::new_ids();
    traced_get(&client, "/api/v1/namespaces/default", &trace_id, &span_id).await;
    // The admin kubeconfig is in system:masters: the API server adopts our context as parent.
    let server = wait_until("an apiserver SERVER span in our trace", TIMEOUT, || {
        let (tempo, trace_id) = (tempo.clone(), trace_id.clone());
        async move {
            let spans = tempo.trace(&trace_id).await?.unwrap_or_default();
            spans
                .into_iter()
                .find(|s| s.service == "apiserver" && s.kind == "SPAN_KIND_SERVER")
                .ok_or_else(|| format!("trace {trace_id}: no apiserver server span yet"))
        }
    })
    .await;
    assert_eq!(server.trace_id, trace_id);
    assert_eq!(server.parent_span_id, span_id, "{server:?}");
    assert_eq!(
        server
            .attributes
            .get("http.request.method")
            .map(String::as_str),
        Some("GET")
    );
}

#[tokio::test]
async fn the_api_server_links_the_trace_of_an_ordinary_caller() {
    let (env, admin) = client().await;
    with_namespace(&admin, "sa-trace", |admin, ns| async move {
        // A ServiceAccount with read access, and a short-lived token for it (TokenRequest).
        let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(admin.clone(), &ns.name);
        let sa = serde_json::from_value(serde_json::json!({"metadata": {"name": "reader"}})).expect("sa");
        sas.create(&PostParams::default(), &sa).await.expect("service account");
        let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "reader-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns.name}]
        }))
        .expect("binding");
        Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(admin.clone(), &ns.name)
            .create(&PostParams::default(), &binding)
            .await
            .expect("role binding");
        let request: k8s_openapi::api::authentication::v1::TokenRequest =
            serde_json::from_value(serde_json::json!({"spec": {"expirationSeconds": 600}})).expect("token request");
        let token = sas
            .create_token_request("reader", &PostParams::default(), &request)
            .await
            .expect("token issued")
            .status
            .and_then(|s| s.token)
            .expect("token in status");
        let mut config = e2e::k8s::admin_config(&env).await;
        config.auth_info = kube::config::AuthInfo { token: Some(token.into()), ..Default::default() };
        let reader = Client::try_from(config).expect("client with the token");

        let tempo = Tempo::new(&env.tempo_url);
        let (trace_id, span_id) = tempo::new_ids();
        let path = format!("/api/v1/namespaces/{}/pods", ns.name);
        traced_get(&reader, &path, &trace_id, &span_id).await;
        // Not a privileged caller: the API server starts its own trace, linked to our span. Tempo's
        // `link:traceID` search misses some linked spans (about 1 run in 25 here), so the
        // candidates are found by the request's path (this test's namespace is unique) and the
        // link is read from each whole trace.
        let query = format!("{{ resource.service.name = \"apiserver\" && span.url.path = \"{path}\" }}");
        let (linked, server) = wait_until("an apiserver trace linking to our span", TIMEOUT, || {
            let (tempo, query, trace_id) = (tempo.clone(), query.clone(), trace_id.clone());
            async move {
                let mut seen = Vec::new();
                for id in tempo.search(&query, Duration::from_secs(600)).await? {
                    let spans = tempo.trace(&id).await?.unwrap_or_default();
                    let linking = spans.into_iter().find(|s| {
                        s.service == "apiserver" && s.kind == "SPAN_KIND_SERVER" && s.links.iter().any(|(t, _)| *t == trace_id)
                    });
                    match linking {
                        Some(server) => return Ok((id, server)),
                        None => seen.push(id),
                    }
                }
                Err(format!("no trace matching {query} links to {trace_id} yet (traces seen: {seen:?})"))
            }
        })
        .await;
        assert_ne!(linked, trace_id, "a new trace, not ours");
        assert!(server.is_root(), "the apiserver span starts the new trace: {server:?}");
        assert_eq!(server.links, vec![(trace_id.clone(), span_id.clone())]);
        // And our own trace id holds no apiserver span.
        assert!(tempo.trace(&trace_id).await.expect("query").unwrap_or_default().iter().all(|s| s.service != "apiserver"));
    })
    .await;
}

#[tokio::test]
async fn etcd_replicas_cannot_change_after_creation() {
    let (_env, client) = client().await;
    with_namespace(&client, "etcdsize", |client, ns| async move {
        let message = "etcd replicas cannot change after creation";
        let patch = |replicas: serde_json::Value| {
            kube::api::Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}}))
        };
        let etcds: Api<multigres_api::crd::Etcd> = Api::namespaced(client.clone(), &ns.name);
        let etcd: multigres_api::crd::Etcd = serde_json::from_value(serde_json::json!({
            "apiVersion": "multigres.com/v1alpha1", "kind": "Etcd",
            "metadata": {"name": "topo"}, "spec": {}
        }))
        .expect("etcd");
        etcds
            .create(&PostParams::default(), &etcd)
            .await
            .expect("create etcd");
        let params = kube::api::PatchParams::default();
        // Unset means 3: saying so is no change, anything else is refused.
        etcds
            .patch("topo", &params, &patch(serde_json::json!(3)))
            .await
            .expect("spelling out the default is no change");
        let err = etcds
            .patch("topo", &params, &patch(serde_json::json!(5)))
            .await
            .expect_err("a resize is refused");
        assert!(err.to_string().contains(message), "error: {err}");
        etcds
            .patch(
                "topo",
                &params,
                &kube::api::Patch::Merge(serde_json::json!({"spec": {"podLabels": {"a": "b"}}})),
            )
            .await
            .expect("other fields still change");

        let clusters: Api<multigres_api::crd::MultigresCluster> =
            Api::namespaced(client.clone(), &ns.name);
        let cluster: multigres_api::crd::MultigresCluster =
            serde_json::from_value(serde_json::json!({
                "apiVersion": "multigres.com/v1alpha1", "kind": "MultigresCluster",
                "metadata": {"name": "small"}, "spec": {"etcd": {"replicas": 1}}
            }))
            .expect("cluster");
        clusters
            .create(&PostParams::default(), &cluster)
            .await
            .expect("create cluster");
        let err = clusters
            .patch(
                "small",
                &params,
                &kube::api::Patch::Merge(serde_json::json!({"spec": {"etcd": {"replicas": 3}}})),
            )
            .await
            .expect_err("a cluster's etcd resize is refused");
        assert!(err.to_string().contains(message), "error: {err}");
    })
    .await;
}
