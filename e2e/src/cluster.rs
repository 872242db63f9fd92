//! MultigresCluster lifecycle helpers shared by the suites: load a sample, wait for Healthy,
//! and list what a cell leaves behind.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::{Api, Client};
use multigres_api::conditions::{READY, condition};
use multigres_api::crd::{Cell, MultiGateway, MultiOrch, MultiPooler, MultigresCluster, Phase};
use multigres_api::meta::{ComponentLabel, cell_component_name, cell_object_name};
use multigres_api::samples::{load, samples_dir};

use crate::wait_until;

/// How long a cluster gets to converge in the tests.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// Loads a sample MultigresCluster from `manifests/samples`.
pub fn sample(file: &str) -> MultigresCluster {
    let sample = load(&samples_dir().join(file)).expect("sample loads");
    serde_json::from_value(sample.object).expect("sample is a MultigresCluster")
}

/// Waits until the cluster is Healthy for its current generation and returns it.
pub async fn wait_healthy(api: &Api<MultigresCluster>, name: &str) -> MultigresCluster {
    wait_until(
        &format!("MultigresCluster {name} to be Healthy"),
        TIMEOUT,
        || async {
            let c = api.get(name).await.map_err(|e| e.to_string())?;
            let s = c.status.clone().unwrap_or_default();
            let ready = condition(&s.core.conditions, READY)
                .map(|c| format!("{}: {}", c.reason, c.message));
            if s.phase == Some(Phase::Healthy)
                && s.core.ready
                && s.core.observed_generation == c.metadata.generation
            {
                Ok(c)
            } else {
                Err(format!("phase {:?}, Ready {ready:?}", s.phase))
            }
        },
    )
    .await
}

/// Names of the component objects and workloads of one cell.
pub fn cell_objects(cluster: &str, cell: &str) -> (String, [String; 3]) {
    let cell_obj = cell_object_name(cluster, cell);
    let parts = [
        ComponentLabel::Gateway,
        ComponentLabel::Orch,
        ComponentLabel::Pooler,
    ]
    .map(|c| cell_component_name(&cell_obj, c));
    (cell_obj, parts)
}

pub async fn deployment_replicas(client: &Client, ns: &str, name: &str) -> Result<i32, String> {
    let d = Api::<Deployment>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or(format!("no Deployment {name}"))?;
    Ok(d.spec.and_then(|s| s.replicas).unwrap_or(1))
}

/// Everything a cell leaves behind: its Cell, components and workloads, by name.
pub async fn cell_leftovers(
    client: &Client,
    ns: &str,
    cluster: &str,
    cell: &str,
) -> Result<Vec<String>, String> {
    let (cell_obj, [gateway, orch, pooler]) = cell_objects(cluster, cell);
    let mut left = Vec::new();
    let e = |e: kube::Error| e.to_string();
    if Api::<Cell>::namespaced(client.clone(), ns)
        .get_opt(&cell_obj)
        .await
        .map_err(e)?
        .is_some()
    {
        left.push(format!("Cell {cell_obj}"));
    }
    if Api::<MultiGateway>::namespaced(client.clone(), ns)
        .get_opt(&gateway)
        .await
        .map_err(e)?
        .is_some()
    {
        left.push(format!("MultiGateway {gateway}"));
    }
    if Api::<MultiOrch>::namespaced(client.clone(), ns)
        .get_opt(&orch)
        .await
        .map_err(e)?
        .is_some()
    {
        left.push(format!("MultiOrch {orch}"));
    }
    if Api::<MultiPooler>::namespaced(client.clone(), ns)
        .get_opt(&pooler)
        .await
        .map_err(e)?
        .is_some()
    {
        left.push(format!("MultiPooler {pooler}"));
    }
    for d in [&gateway, &orch] {
        if Api::<Deployment>::namespaced(client.clone(), ns)
            .get_opt(d)
            .await
            .map_err(e)?
            .is_some()
        {
            left.push(format!("Deployment {d}"));
        }
    }
    if Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get_opt(&pooler)
        .await
        .map_err(e)?
        .is_some()
    {
        left.push(format!("StatefulSet {pooler}"));
    }
    Ok(left)
}
