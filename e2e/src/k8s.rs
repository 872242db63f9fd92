//! Kubernetes side of the harness: clients, per-test namespaces, CRD installation.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Config};

use crate::env::{TestEnv, repo_root};

/// Field manager of everything the harness itself writes.
pub const FIELD_MANAGER: &str = "multigres-e2e";
/// Label on every namespace the harness creates, for finding leftovers.
pub const NAMESPACE_LABEL: &str = "multigres.com/e2e";

/// Client configuration for the admin kubeconfig of `env`.
pub async fn admin_config(env: &TestEnv) -> Config {
    let kubeconfig = Kubeconfig::read_from(&env.kubeconfig)
        .unwrap_or_else(|e| panic!("reading {}: {e}", env.kubeconfig.display()));
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig {}: {e}", env.kubeconfig.display()))
}

/// A client with the admin credentials of `env`.
pub async fn admin_client(env: &TestEnv) -> Client {
    Client::try_from(admin_config(env).await).expect("client from kubeconfig")
}

/// A namespace that exists for one test.
#[derive(Clone, Debug)]
pub struct TestNamespace {
    pub name: String,
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{:x}{n}", std::process::id() & 0xfff, nanos & 0xfffff)
}

/// Runs `test` with a fresh namespace named `e2e-<prefix>-<unique>`. When the test panics, the
/// namespace's pods and events are printed; the namespace is deleted afterwards unless
/// `E2E_KEEP_NAMESPACES=1`. The test's panic is passed on.
pub async fn with_namespace<F, Fut>(client: &Client, prefix: &str, test: F)
where
    F: FnOnce(Client, TestNamespace) -> Fut,
    Fut: Future<Output = ()>,
{
    let name = format!("e2e-{prefix}-{}", unique_suffix());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {NAMESPACE_LABEL: "true"}}
    }))
    .expect("namespace object");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    let outcome = AssertUnwindSafe(test(client.clone(), TestNamespace { name: name.clone() }))
        .catch_unwind()
        .await;
    if outcome.is_err() {
        dump_namespace(client, &name).await;
    }
    if std::env::var("E2E_KEEP_NAMESPACES").is_ok_and(|v| v == "1") {
        eprintln!("keeping namespace {name} (E2E_KEEP_NAMESPACES=1)");
    } else if let Err(e) = namespaces.delete(&name, &DeleteParams::background()).await {
        eprintln!("warning: deleting namespace {name}: {e}");
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Prints what a failed test left in its namespace: pods and events.
pub async fn dump_namespace(client: &Client, ns: &str) {
    eprintln!("---- state of namespace {ns} ----");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    match pods.list(&ListParams::default()).await {
        Ok(list) => {
            for pod in list {
                let status = pod.status.unwrap_or_default();
                eprintln!(
                    "pod {} phase={} node={}",
                    pod.metadata.name.unwrap_or_default(),
                    status.phase.unwrap_or_default(),
                    pod.spec.and_then(|s| s.node_name).unwrap_or_default()
                );
            }
        }
        Err(e) => eprintln!("listing pods: {e}"),
    }
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    match events.list(&ListParams::default()).await {
        Ok(list) => {
            for ev in list {
                eprintln!(
                    "event {} {}/{}: {} {}",
                    ev.type_.unwrap_or_default(),
                    ev.involved_object.kind.unwrap_or_default(),
                    ev.involved_object.name.unwrap_or_default(),
                    ev.reason.unwrap_or_default(),
                    ev.message.unwrap_or_default()
                );
            }
        }
        Err(e) => eprintln!("listing events: {e}"),
    }
    eprintln!("---- end of namespace {ns} ----");
}

/// Applies the checked-in CRDs from `manifests/crds/` (server-side apply, idempotent) and waits
/// until each is Established. Returns their names.
pub async fn install_crds(client: &Client) -> Vec<String> {
    let dir = repo_root().join("manifests/crds");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with(multigres_api::crd::CRD_KUSTOMIZATION_FILE))
        .collect();
    files.sort();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut names = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("CRD file readable");
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = crd.metadata.name.clone().expect("CRD has a name");
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("applying {}: {e}", file.display()));
        names.push(name);
    }
    for name in &names {
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api.clone(), name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} not Established within 30s"))
        .unwrap_or_else(|e| panic!("watching CRD {name}: {e}"));
    }
    names
}

/// The holder of Lease `ns/name`, if any.
pub async fn lease_holder(client: &Client, ns: &str, name: &str) -> Option<String> {
    Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

/// The events.k8s.io Events in `ns` about the `kind` object `name`, oldest first.
pub async fn events_about(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
) -> Result<Vec<k8s_openapi::api::events::v1::Event>, String> {
    let mut events: Vec<_> =
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("listing Events in {ns}: {e}"))?
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name)
                })
            })
            .collect();
    events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    Ok(events)
}

/// The trace id a handler's Event note ends with (`… (trace_id=<32 hex digits>)`).
pub fn note_trace_id(note: &str) -> Option<&str> {
    let id = note.strip_suffix(')')?.rsplit_once("(trace_id=")?.1;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}
