//! The workload the handlers reconcile: namespaces of minimal clusters created, scaled and
//! deleted `CONCURRENCY` at a time, and the waits for them to converge.

use std::time::Duration;

use e2e::cluster::sample;
use e2e::wait_until;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use multigres_api::crd::{MultigresCluster, Phase};
use serde_json::json;

pub const CONCURRENCY: usize = 16;
pub const CONVERGE: Duration = Duration::from_secs(3600);

pub async fn fresh_namespace(client: &Client, prefix: &str) -> String {
    let name = format!(
        "bench-{prefix}-{}",
        std::process::id() as u64 * 1000 + rand_suffix()
    );
    let ns: Namespace = serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"multigres.com/bench": "true"}}}),
    )
    .expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    name
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_micros() as u64 % 1000)
        .unwrap_or(0)
}

/// Deletes `ns` and waits until it is gone, so the garbage collection of one run does not load
/// the control plane during the next.
pub async fn delete_namespace(client: &Client, ns: &str) {
    let api = Api::<Namespace>::all(client.clone());
    let _ = api.delete(ns, &DeleteParams::default()).await;
    wait_until(&format!("namespace {ns} deleted"), CONVERGE, || async {
        match api.get_opt(ns).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(n) => Err(format!(
                "phase {:?}",
                n.status.and_then(|s| s.phase).unwrap_or_default()
            )),
        }
    })
    .await;
}

/// Creates one minimal cluster named `name`.
pub async fn create_cluster(api: Api<MultigresCluster>, name: String) {
    let mut cluster = sample("minimal-cluster.yaml");
    cluster.metadata.name = Some(name);
    api.create(&PostParams::default(), &cluster)
        .await
        .expect("cluster created");
}

/// Scales the gateways of cluster `name` to 3 replicas.
pub async fn scale_cluster(api: Api<MultigresCluster>, name: String) {
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"gateway": {"replicas": 3}}})),
    )
    .await
    .expect("scaled");
}

/// Deletes cluster `name` in the foreground, its children first.
pub async fn delete_cluster(api: Api<MultigresCluster>, name: String) {
    api.delete(&name, &DeleteParams::foreground())
        .await
        .expect("deleted");
}

/// Creates `n` minimal clusters, `CONCURRENCY` at a time.
pub async fn create_clusters(client: &Client, ns: &str, n: usize) -> Vec<String> {
    let api: Api<MultigresCluster> = Api::namespaced(client.clone(), ns);
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    futures::stream::iter(names.clone())
        .for_each_concurrent(CONCURRENCY, |name| create_cluster(api.clone(), name))
        .await;
    names
}

/// Runs `each` on every (namespace, cluster name), all namespaces interleaved so every mode sees
/// the same load at the same moment.
pub async fn for_every_cluster<F, Fut>(
    client: &Client,
    namespaces: &[String],
    names: &[String],
    each: F,
) where
    F: Fn(Api<MultigresCluster>, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let jobs: Vec<(Api<MultigresCluster>, String)> = names
        .iter()
        .flat_map(|name| {
            namespaces
                .iter()
                .map(|ns| (Api::namespaced(client.clone(), ns), name.clone()))
        })
        .collect();
    futures::stream::iter(jobs)
        .for_each_concurrent(CONCURRENCY * namespaces.len(), |(api, name)| {
            each(api, name)
        })
        .await;
}

/// Waits until every cluster in `ns` is Healthy for its current generation.
pub async fn wait_all_healthy(client: &Client, ns: &str, n: usize) {
    let api: Api<MultigresCluster> = Api::namespaced(client.clone(), ns);
    wait_until(
        &format!("{n} clusters Healthy in {ns}"),
        CONVERGE,
        || async {
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let healthy = list
                .items
                .iter()
                .filter(|c| {
                    let s = c.status.clone().unwrap_or_default();
                    s.phase == Some(Phase::Healthy)
                        && s.core.observed_generation == c.metadata.generation
                })
                .count();
            (healthy == n)
                .then_some(())
                .ok_or(format!("{healthy}/{n} Healthy"))
        },
    )
    .await;
}

/// Waits until no cluster is left in `ns`.
pub async fn wait_all_gone(client: &Client, ns: &str) {
    let api: Api<MultigresCluster> = Api::namespaced(client.clone(), ns);
    wait_until(&format!("every cluster gone in {ns}"), CONVERGE, || async {
        let left = api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        (left == 0).then_some(()).ok_or(format!("{left} left"))
    })
    .await;
}
