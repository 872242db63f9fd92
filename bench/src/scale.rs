//! Convergence at scale: many clusters applied at once through the operator, then the floor, the
//! same objects written directly with no handler running.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::process::{Handler, metric_sum, metric_sum_by, peak_rss_kib};
use e2e::wait_until;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, PostParams};
use kube::core::DynamicObject;
use kube::discovery::ApiResource;
use kube::{Api, Client, ResourceExt};
use multigres_api::crd::{Cell, component_kinds};
use multigres_api::meta::{CLUSTER_HANDLER_MANAGER, LABEL_MANAGED_BY, LABEL_OWNER_UID};

use crate::handlers::Identities;
use crate::report::Report;
use crate::workload::{
    CONCURRENCY, CONVERGE, create_clusters, delete_namespace, fresh_namespace, wait_all_healthy,
};

async fn writes(h: &Handler) -> u64 {
    h.api_writes().await
}

/// Every object the operator made in `ns`, stripped to what a client would write.
async fn made_objects(client: &Client, ns: &str) -> Vec<(ApiResource, DynamicObject)> {
    // The Cells and every component kind (the one list the handlers follow), then the workloads.
    let kinds = [ApiResource::erase::<Cell>(&())]
        .into_iter()
        .chain(component_kinds())
        .chain([
            ApiResource::erase::<StatefulSet>(&()),
            ApiResource::erase::<Deployment>(&()),
            ApiResource::erase::<Service>(&()),
        ])
        .map(|ar| (ar, ListParams::default()));
    // What a cluster needs before its children: the backup claim and the password Secret. The
    // StatefulSets' own data claims are made by Kubernetes, in both runs.
    let prerequisites = [
        ApiResource::erase::<PersistentVolumeClaim>(&()),
        ApiResource::erase::<Secret>(&()),
    ]
    .map(|ar| {
        let selector = format!("{LABEL_MANAGED_BY}={CLUSTER_HANDLER_MANAGER},!{LABEL_OWNER_UID}");
        (ar, ListParams::default().labels(&selector))
    });
    let mut out = Vec::new();
    for (ar, params) in prerequisites.into_iter().chain(kinds) {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        for obj in api.list(&params).await.expect("list").items {
            out.push((ar.clone(), as_written(obj)));
        }
    }
    out
}

/// `obj` as a client writes it: name, labels and our annotations, no status, and nothing the
/// API server or a controller filled in (a Service's address, a claim's volume).
fn as_written(mut obj: DynamicObject) -> DynamicObject {
    let name = obj.name_any();
    let annotations = obj.metadata.annotations.take().map(|a| {
        a.into_iter()
            .filter(|(k, _)| !k.contains("kubernetes.io/"))
            .collect()
    });
    obj.metadata = kube::api::ObjectMeta {
        name: Some(name),
        labels: obj.metadata.labels.take(),
        annotations,
        ..Default::default()
    };
    if let Some(data) = obj.data.as_object_mut() {
        data.remove("status");
        if let Some(spec) = data.get_mut("spec").and_then(|s| s.as_object_mut()) {
            for field in ["clusterIP", "clusterIPs", "volumeName"] {
                spec.remove(field);
            }
        }
    }
    obj
}

async fn workloads_ready(client: &Client, ns: &str, sts: usize, deploys: usize) {
    wait_until(
        &format!("{sts} StatefulSets and {deploys} Deployments ready in {ns}"),
        CONVERGE,
        || async {
            let s = Api::<StatefulSet>::namespaced(client.clone(), ns)
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let d = Api::<Deployment>::namespaced(client.clone(), ns)
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let ready_s = s
                .items
                .iter()
                .filter(|x| {
                    x.status.as_ref().and_then(|st| st.ready_replicas)
                        == x.spec.as_ref().and_then(|sp| sp.replicas)
                })
                .count();
            let ready_d = d
                .items
                .iter()
                .filter(|x| {
                    x.status.as_ref().and_then(|st| st.ready_replicas)
                        == x.spec.as_ref().and_then(|sp| sp.replicas)
                })
                .count();
            (ready_s == sts && ready_d == deploys)
                .then_some(())
                .ok_or(format!(
                    "{ready_s}/{sts} StatefulSets, {ready_d}/{deploys} Deployments ready"
                ))
        },
    )
    .await;
}

/// Seconds from `since` to the newest StatefulSet or Deployment in `ns` (creation times have
/// whole seconds): how long the writes took to reach the workloads, before pods could start.
async fn last_workload_created(client: &Client, ns: &str, since: Timestamp) -> f64 {
    let sts = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("statefulsets");
    let deploys = Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("deployments");
    sts.items
        .iter()
        .map(|o| o.metadata.creation_timestamp.clone())
        .chain(
            deploys
                .items
                .iter()
                .map(|o| o.metadata.creation_timestamp.clone()),
        )
        .flatten()
        .map(|t| t.0.duration_since(since).as_secs_f64())
        .fold(0.0, f64::max)
}

/// Pods of one minimal cluster: 3 etcd, 2 gateways, 1 orch, 2 poolers.
const PODS_PER_CLUSTER: u64 = 8;

/// Pods the cluster's nodes can hold (kwok nodes report a kubelet-like `pods` allocatable).
async fn node_pod_capacity(client: &Client) -> u64 {
    Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("nodes")
        .items
        .iter()
        .filter_map(|n| n.status.as_ref()?.allocatable.as_ref()?.get("pods"))
        .filter_map(|q| multigres_api::quantity::parse(&q.0)?.whole())
        .filter_map(|pods| u64::try_from(pods).ok())
        .sum()
}

/// Convergence at scale. The operator's figures are saved to the report before the floor
/// starts, so a floor that cannot finish does not take them with it.
pub async fn scale(client: &Client, ids: &Identities, n: usize, out: &mut Report) {
    // More pods than the nodes hold would leave the clusters Progressing until the timeout.
    let capacity = node_pod_capacity(client).await;
    let needed = n as u64 * PODS_PER_CLUSTER;
    if needed > capacity {
        eprintln!(
            "[bench] convergence skipped: {n} clusters need {needed} pods, the nodes hold {capacity}"
        );
        out.push_str(&format!(
            "## Convergence at scale

Not run: {n} clusters need {needed} pods and the nodes hold {capacity} (raise the nodes' `pods` allocatable: `MULTIGRES_E2E_NODE_PODS` for `e2e/scripts/cluster-up.sh`, or use `--scale-clusters {}`).

",
            capacity / PODS_PER_CLUSTER
        ));
        return;
    }
    eprintln!("[bench] convergence: {n} clusters through the operator");
    let ns = fresh_namespace(client, "scale").await;
    let args = ["--resync", "30s"];
    let (ch, rh) = ids.start(&ns, &args, vec![]).await;
    let started = Instant::now();
    let started_at = Timestamp::now();
    create_clusters(client, &ns, n).await;
    wait_all_healthy(client, &ns, n).await;
    let operator = started.elapsed().as_secs_f64();
    let mut by_verb: BTreeMap<String, u64> = BTreeMap::new();
    let mut patches: BTreeMap<String, u64> = BTreeMap::new();
    for h in [&ch, &rh] {
        let text = h.metrics().await;
        metric_sum_by(
            &text,
            "multigres_api_requests_total",
            "resource",
            |l| l.contains("verb=\"patch\"") && !l.contains("resource=\"leases\""),
            &mut patches,
        );
        for verb in [
            "get", "list", "watch", "create", "patch", "update", "delete",
        ] {
            *by_verb.entry(verb.to_string()).or_default() +=
                metric_sum(&text, "multigres_api_requests_total", |l| {
                    l.contains(&format!("verb=\"{verb}\"")) && !l.contains("resource=\"leases\"")
                });
        }
    }
    // Steady state: two resyncs of every object, counting writes.
    let before = (writes(&ch).await, writes(&rh).await);
    let reconciles_before = ch.reconciles().await + rh.reconciles().await;
    tokio::time::sleep(Duration::from_secs(65)).await; // two 30 s resync periods: the measurement window
    let steady_writes = writes(&ch).await + writes(&rh).await - before.0 - before.1;
    let steady_reconciles = ch.reconciles().await + rh.reconciles().await - reconciles_before;
    let peaks = (
        peak_rss_kib(&ch) as f64 / 1024.0,
        peak_rss_kib(&rh) as f64 / 1024.0,
    );
    let objects = made_objects(client, &ns).await;
    let operator_workloads = last_workload_created(client, &ns, started_at).await;
    drop((ch, rh));
    let per = |v: u64| v as f64 / n as f64;
    out.push_str(&format!(
        "## Convergence at scale\n\n{n} minimal clusters applied at once ({CONCURRENCY} concurrent creates), tracing off; the handlers and the floor's writes as the handlers' ServiceAccounts.\n\n\
         | figure | value |\n|---|---|\n\
         | first apply → all Healthy (operator) | {operator:.1} s |\n\
         | API requests per cluster | {} |\n\
         | patches per cluster by resource | {} |\n\
         | writes during 2 steady-state resyncs ({steady_reconciles} reconciles; target 0) | {steady_writes} |\n\
         | peak RSS cluster-handler / resource-handler | {:.1} / {:.1} MiB |\n\
         | last StatefulSet or Deployment created (operator), after the first apply | {operator_workloads:.0} s |\n",
        by_verb.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("{k} {:.1}", per(*v))).collect::<Vec<_>>().join(", "),
        patches.iter().map(|(k, v)| format!("{k} {:.1}", per(*v))).collect::<Vec<_>>().join(", "),
        peaks.0,
        peaks.1,
    ));
    out.save();
    // The floor's pods need the room the operator's pods take.
    delete_namespace(client, &ns).await;

    eprintln!(
        "[bench] convergence: the floor, {} objects written directly",
        objects.len()
    );
    let floor_ns = fresh_namespace(client, "floor").await;
    let sts = objects
        .iter()
        .filter(|(ar, _)| ar.kind == "StatefulSet")
        .count();
    let deploys = objects
        .iter()
        .filter(|(ar, _)| ar.kind == "Deployment")
        .count();
    let started = Instant::now();
    let started_at = Timestamp::now();
    futures::stream::iter(objects.iter())
        .for_each_concurrent(CONCURRENCY, |(ar, obj)| {
            let api: Api<DynamicObject> =
                Api::namespaced_with(ids.writer_of(obj).clone(), &floor_ns, ar);
            let mut obj = obj.clone();
            obj.metadata.namespace = Some(floor_ns.clone());
            async move {
                api.create(&PostParams::default(), &obj)
                    .await
                    .unwrap_or_else(|e| panic!("creating {} {}: {e}", ar.kind, obj.name_any()));
            }
        })
        .await;
    workloads_ready(client, &floor_ns, sts, deploys).await;
    let floor = started.elapsed().as_secs_f64();
    let floor_workloads = last_workload_created(client, &floor_ns, started_at).await;
    delete_namespace(client, &floor_ns).await;
    out.push_str(&format!(
        "| the same {} objects written directly, until their workloads are ready (floor) | {floor:.1} s |\n\
         | last StatefulSet or Deployment created (floor), after its first write | {floor_workloads:.0} s |\n\
         | operator ÷ floor (target ≤ 1.5) | {:.2} |\n\n",
        objects.len(),
        operator / floor,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: serde_json::Value) -> DynamicObject {
        serde_json::from_value(value).expect("an object")
    }

    #[test]
    fn a_bound_claim_is_written_again_unbound_with_only_our_annotations() {
        let claim = object(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": "shop-backups", "namespace": "prod", "uid": "u", "resourceVersion": "7",
                "labels": {LABEL_MANAGED_BY: CLUSTER_HANDLER_MANAGER},
                "annotations": {"pv.kubernetes.io/bind-completed": "yes", "multigres.com/traceparent": "x"},
                "ownerReferences": [{"apiVersion": "multigres.com/v1alpha1", "kind": "MultigresCluster", "name": "shop", "uid": "c"}]
            },
            "spec": {"accessModes": ["ReadWriteMany"], "volumeName": "pv-1"},
            "status": {"phase": "Bound"}
        }));
        let written = as_written(claim);
        assert_eq!(
            serde_json::to_value(&written).expect("json"),
            json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {
                    "name": "shop-backups",
                    "labels": {LABEL_MANAGED_BY: CLUSTER_HANDLER_MANAGER},
                    "annotations": {"multigres.com/traceparent": "x"}
                },
                "spec": {"accessModes": ["ReadWriteMany"]}
            })
        );
    }

    #[test]
    fn a_service_is_written_again_without_its_address() {
        let service = object(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "gw"},
            "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ports": [{"port": 5432}]}
        }));
        assert_eq!(
            serde_json::to_value(as_written(service)).expect("json")["spec"],
            json!({"ports": [{"port": 5432}]})
        );
    }
}
