//! MultigresClusters whose processes run for real on the real node: placement, both handlers
//! set up to manage the topology and pass tracing to the pods, commands run inside pods, the
//! cluster's containers and its etcd read through etcd's own API.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use multigres_api::conditions::{READY, condition};
use multigres_api::crd::{ClusterStatus, MultigresCluster, Phase};
use multigres_api::defaults::PGCTLD_IMAGE;
use multigres_api::meta::generated_password_secret;
use serde_json::{Value, json};

use crate::process::{Handler, data_plane_otlp_env, otlp_env, start_handler};
use crate::real_node::{
    NODE_LABEL_KEY, NODE_LABEL_VALUE, POD_SUBNET_PREFIX, STORAGE_CLASS, topology_env,
};
use crate::{TestEnv, wait_until};

/// `component` (a spec fragment) with the node selector and toleration of the real node.
pub fn on_real_node(mut component: Value) -> Value {
    component["nodeSelector"] = json!({NODE_LABEL_KEY: NODE_LABEL_VALUE});
    component["tolerations"] = json!([{
        "key": NODE_LABEL_KEY, "operator": "Equal",
        "value": NODE_LABEL_VALUE, "effect": "NoSchedule",
    }]);
    component
}

/// Both handlers watching `ns`, resyncing every 10 s: the cluster-handler manages the
/// topology (resolving cluster names through the node's CoreDNS) and both export to Tempo;
/// the resource-handler gives the pods Tempo's address as they reach it.
pub async fn handlers(env: &TestEnv, ns: &str) -> (Handler, Handler) {
    let mut cluster_env = topology_env();
    cluster_env.extend(otlp_env(&env.otlp_grpc_endpoint));
    let cluster = start_handler(
        "cluster-handler",
        Some(ns),
        &["--resync", "10s"],
        cluster_env,
    )
    .await;
    let resource_env =
        data_plane_otlp_env(&env.otlp_http_endpoint, &env.data_plane_otlp_http_endpoint);
    let resource = start_handler(
        "resource-handler",
        Some(ns),
        &["--resync", "10s"],
        resource_env,
    )
    .await;
    (cluster, resource)
}

/// Creates pod `name` on the real node running `image` with `command`, and `env`.
pub async fn create_pod(
    client: &Client,
    ns: &str,
    name: &str,
    image: &str,
    command: &[&str],
    env: Value,
) {
    let spec = on_real_node(json!({
        "containers": [{"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
            "command": command, "env": env}],
        "terminationGracePeriodSeconds": 1,
    }));
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))
        .unwrap_or_else(|e| panic!("pod {name}: {e}"));
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("creating pod {name}: {e}"));
}

/// Runs `script` with `sh -c` in `pod` and returns its stdout; on failure, what it printed.
pub fn exec(env: &TestEnv, ns: &str, pod: &str, script: &str) -> Result<String, String> {
    let out = env
        .kubectl()
        .args(["exec", "-n", ns, pod, "--", "sh", "-c", script])
        .output()
        .map_err(|e| format!("kubectl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{script}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The pods of cluster `cluster`.
pub async fn cluster_pods(client: &Client, ns: &str, cluster: &str) -> Result<Vec<Pod>, String> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("multigres.com/cluster={cluster}")))
        .await
        .map(|l| l.items)
        .map_err(|e| e.to_string())
}

/// (pod, container, ready, restarts) of every container of `pods`, sidecars (the poolers'
/// `postgres`, an init container that keeps running) included.
pub fn containers(pods: &[Pod]) -> Vec<(String, String, bool, i32)> {
    pods.iter()
        .flat_map(|p| {
            let pod = p.metadata.name.clone().unwrap_or_default();
            p.status
                .iter()
                .flat_map(|s| {
                    let sidecars = s.init_container_statuses.iter().flatten();
                    sidecars.chain(s.container_statuses.iter().flatten())
                })
                .map(move |c| (pod.clone(), c.name.clone(), c.ready, c.restart_count))
        })
        .collect()
}

/// Every key under `prefix` in cluster `cluster`'s etcd with its value, through etcd's JSON
/// API, from pod `from` (which has busybox `wget`).
pub fn etcd_range(
    env: &TestEnv,
    ns: &str,
    from: &str,
    cluster: &str,
    prefix: &str,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let body = json!({"key": B64.encode(prefix), "range_end": B64.encode(&end)}).to_string();
    let out = exec(
        env,
        ns,
        from,
        &format!(
            "timeout 5 wget -q -O- --header 'Content-Type: application/json' --post-data '{body}' \
             http://{cluster}-etcd-client:2379/v3/kv/range"
        ),
    )?;
    let answer: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    let decode = |v: &Value| {
        B64.decode(v.as_str().unwrap_or_default())
            .unwrap_or_default()
    };
    Ok(answer["kvs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            (
                String::from_utf8_lossy(&decode(&kv["key"])).into_owned(),
                decode(&kv["value"]),
            )
        })
        .collect())
}

/// Whether `bytes` (a binary protobuf record) holds the string `s` as one of its fields.
pub fn holds(bytes: &[u8], s: &str) -> bool {
    bytes.windows(s.len()).any(|w| w == s.as_bytes())
}

/// A database cluster `name` on the real node: one cell `zone-a`, etcd 1, gateway 1, orch 1,
/// `poolers` poolers, backups and data on the node's local volumes, postgres admitting the
/// admin user only from the node's pod network.
pub fn database_cluster(name: &str, poolers: i32) -> MultigresCluster {
    let storage = json!({"storageClassName": STORAGE_CLASS, "size": "1Gi"});
    serde_json::from_value(json!({
        "apiVersion": "multigres.com/v1alpha1",
        "kind": "MultigresCluster",
        "metadata": {"name": name},
        "spec": {
            "etcd": on_real_node(json!({"replicas": 1, "storage": storage})),
            "gateway": on_real_node(json!({"replicas": 1})),
            "orch": on_real_node(json!({"replicas": 1})),
            "pooler": on_real_node(json!({"replicas": poolers, "storage": storage})),
            "backup": {"filesystem": {"storage": storage}},
            "postgres": {"allowedNetworks": [format!("{POD_SUBNET_PREFIX}0/24")]},
            "cells": [{"name": "zone-a"}],
        },
    }))
    .unwrap_or_else(|e| panic!("cluster {name}: {e}"))
}

/// Pod `client` running psql (from the pgctld image) as the admin user of cluster `cluster`,
/// with its generated password.
pub async fn create_psql_client(client: &Client, ns: &str, cluster: &str) {
    create_pod(
        client,
        ns,
        "client",
        PGCTLD_IMAGE,
        &["sleep", "3600"],
        json!([
            {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {
                "name": generated_password_secret(cluster), "key": "password"}}},
            {"name": "PGUSER", "value": "postgres"},
            {"name": "PGDATABASE", "value": "postgres"},
            {"name": "PGPORT", "value": "5432"},
            {"name": "PGCONNECT_TIMEOUT", "value": "5"},
        ]),
    )
    .await;
}

/// Runs `sql` with psql in the `client` pod against `host` (a gateway's Service or pod IP).
pub fn psql(env: &TestEnv, ns: &str, host: &str, sql: &str) -> Result<String, String> {
    exec(
        env,
        ns,
        "client",
        // A statement waits for a standby to confirm its commit: bounded, so a retry can come.
        &format!(
            "psql -h {host} -v ON_ERROR_STOP=1 -qAt -c 'SET statement_timeout = 10000' -c \"{sql}\""
        ),
    )
    .map(|out| out.trim().to_string())
}

/// Runs `sql` through `host` until it succeeds (the gateway may not route yet, a standby may not
/// confirm yet); returns its output.
pub async fn sql_until(env: &TestEnv, ns: &str, host: &str, sql: &str) -> String {
    wait_until(
        &format!("psql through {host}: {sql}"),
        Duration::from_secs(600),
        || async { psql(env, ns, host, sql) },
    )
    .await
}

/// Waits until cluster `name` is Healthy with a primary; returns its status.
pub async fn wait_primary(api: &Api<MultigresCluster>, name: &str) -> ClusterStatus {
    wait_until(
        &format!("cluster {name} Healthy with a primary"),
        Duration::from_secs(600),
        || async {
            let s = api
                .get(name)
                .await
                .map_err(|e| e.to_string())?
                .status
                .unwrap_or_default();
            let ready = condition(&s.core.conditions, READY).cloned();
            match (&s.phase, &s.shard) {
                (Some(Phase::Healthy), Some(shard)) if shard.primary.is_some() => Ok(s.clone()),
                _ => Err(format!(
                    "phase {:?}, shard {:?}, Ready {ready:?}",
                    s.phase, s.shard
                )),
            }
        },
    )
    .await
}
