//! A MultigresCluster on the real node runs for real: every Multigres process starts and stays
//! up, the cluster-handler writes the cells into the Multigres global topology (read back
//! through etcd's own API), the processes register under their cell, and Multigres' own spans
//! reach Tempo beside the operator's.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use e2e::process::{Handler, data_plane_otlp_env, otlp_env, start_handler};
use e2e::real_node::{self, STORAGE_CLASS, topology_env};
use e2e::tempo::Tempo;
use e2e::tempo::shape::{descends_from, named};
use e2e::{TestEnv, install_crds, wait_until, with_namespace};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use shared::crd::MultigresCluster;

const CLUSTER: &str = "dp";
const START_TIMEOUT: Duration = Duration::from_secs(300);
/// How long every container must run without a restart once all are ready.
const STABLE_FOR: Duration = Duration::from_secs(120);

/// Node selector and toleration of the real node, for one component of the spec.
fn on_real_node(mut component: Value) -> Value {
    component["nodeSelector"] = json!({real_node::NODE_LABEL_KEY: real_node::NODE_LABEL_VALUE});
    component["tolerations"] = json!([{
        "key": real_node::NODE_LABEL_KEY, "operator": "Equal",
        "value": real_node::NODE_LABEL_VALUE, "effect": "NoSchedule",
    }]);
    component
}

/// The minimal cluster of the issue: one cell, etcd 1, gateway 1, orch 1, pooler 2.
fn minimal_cluster() -> MultigresCluster {
    let storage = json!({"storageClassName": STORAGE_CLASS, "size": "1Gi"});
    serde_json::from_value(json!({
        "apiVersion": "multigres.com/v1alpha1",
        "kind": "MultigresCluster",
        "metadata": {"name": CLUSTER},
        "spec": {
            "etcd": on_real_node(json!({"replicas": 1, "storage": storage})),
            "gateway": on_real_node(json!({"replicas": 1})),
            "orch": on_real_node(json!({"replicas": 1})),
            "pooler": on_real_node(json!({"replicas": 2, "storage": storage})),
            "cells": [{"name": "zone-a"}],
        },
    }))
    .expect("cluster")
}

/// The line each container prints once it is up, as Multigres v0.1.0 and etcd word it.
fn started_line(container: &str) -> &'static str {
    match container {
        "etcd" => "ready to serve client requests",
        "multigateway" => "PostgreSQL listener started",
        "multiorch" | "multipooler" => "Successfully registered component with topology",
        // pgctld: initdb ran and postgres itself answered.
        "postgres" => "PostgreSQL server started successfully",
        other => panic!("no start line known for container {other}"),
    }
}

async fn cluster_pods(client: &Client, ns: &str) -> Result<Vec<Pod>, String> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("multigres.com/cluster={CLUSTER}")))
        .await
        .map(|l| l.items)
        .map_err(|e| e.to_string())
}

/// (pod, container, ready, restarts) of every container of the cluster.
fn containers(pods: &[Pod]) -> Vec<(String, String, bool, i32)> {
    pods.iter()
        .flat_map(|p| {
            let pod = p.metadata.name.clone().unwrap_or_default();
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .map(move |c| (pod.clone(), c.name.clone(), c.ready, c.restart_count))
        })
        .collect()
}

/// Runs `script` in the probe pod (busybox on the real node) and returns its stdout.
fn in_probe(env: &TestEnv, ns: &str, script: &str) -> Result<String, String> {
    let out = env
        .kubectl()
        .args(["exec", "-n", ns, "probe", "--", "sh", "-c", script])
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

/// Every key under `prefix` in the cluster's etcd with its value, through etcd's JSON API from
/// inside the cluster.
fn etcd_range(env: &TestEnv, ns: &str, prefix: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let body = json!({"key": B64.encode(prefix), "range_end": B64.encode(&end)}).to_string();
    let out = in_probe(
        env,
        ns,
        &format!(
            "timeout 5 wget -q -O- --header 'Content-Type: application/json' --post-data '{body}' \
             http://{CLUSTER}-etcd-client:2379/v3/kv/range"
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
fn holds(bytes: &[u8], s: &str) -> bool {
    bytes.windows(s.len()).any(|w| w == s.as_bytes())
}

/// The cell records under the global root, by key.
fn cell_keys(records: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    records
        .keys()
        .filter(|k| k.starts_with("/multigres/global/cells/"))
        .cloned()
        .collect()
}

async fn handlers(env: &TestEnv, ns: &str) -> (Handler, Handler) {
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

#[tokio::test]
async fn a_cluster_on_the_real_node_runs_every_process_and_joins_the_topology() {
    let env = TestEnv::load();
    let client = e2e::k8s::admin_client(&env).await;
    install_crds(&client).await;
    real_node::ensure(&env, &client).await;
    with_namespace(&client, "dataplane", |client, ns| async move {
        let ns = ns.name;
        let (cluster_handler, resource_handler) = handlers(&env, &ns).await;
        let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &ns);
        api.create(&PostParams::default(), &minimal_cluster())
            .await
            .expect("cluster created");
        let probe: Pod = serde_json::from_value(json!({
            "metadata": {"name": "probe"},
            "spec": {
                "containers": [{"name": "probe", "image": real_node::BUSYBOX_IMAGE,
                    "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}],
                "terminationGracePeriodSeconds": 1,
                "nodeSelector": {real_node::NODE_LABEL_KEY: real_node::NODE_LABEL_VALUE},
                "tolerations": [{"key": real_node::NODE_LABEL_KEY, "operator": "Equal",
                    "value": real_node::NODE_LABEL_VALUE, "effect": "NoSchedule"}],
            },
        }))
        .expect("probe pod");
        Api::<Pod>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &probe)
            .await
            .expect("probe created");

        // Every container of etcd, gateway, orch and both poolers (multipooler + pgctld) ready.
        let expected = [
            ("etcd", 1),
            ("multigateway", 1),
            ("multiorch", 1),
            ("multipooler", 2),
            ("postgres", 2),
        ];
        let pods = wait_until("every container of the cluster to be ready", START_TIMEOUT, || async {
            let pods = cluster_pods(&client, &ns).await?;
            let seen = containers(&pods);
            let mut count: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, container, ready, _) in &seen {
                if *ready {
                    *count.entry(container.as_str()).or_default() += 1;
                }
            }
            let all = expected.iter().all(|(c, n)| count.get(c) == Some(n));
            if all && seen.len() == 7 { Ok(pods) } else { Err(format!("{seen:?}")) }
        })
        .await;

        // Each container's log says it started.
        for pod in &pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                let line = started_line(&container.name);
                wait_until(&format!("{name}/{} to log {line:?}", container.name), START_TIMEOUT, || async {
                    let log = Api::<Pod>::namespaced(client.clone(), &ns)
                        .logs(&name, &kube::api::LogParams { container: Some(container.name.clone()), ..Default::default() })
                        .await
                        .map_err(|e| e.to_string())?;
                    if log.contains(line) { Ok(()) } else { Err(log.lines().rev().take(5).collect::<Vec<_>>().join("\n")) }
                })
                .await;
            }
        }

        // /ready answers 200 from inside the cluster: the gateway (it has discovered the
        // poolers), the orchestrator and both poolers.
        let pod_ip = |component: &str| -> Vec<String> {
            pods.iter()
                .filter(|p| p.metadata.labels.as_ref().and_then(|l| l.get("app.kubernetes.io/component")).map(String::as_str) == Some(component))
                .filter_map(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()))
                .collect()
        };
        let mut targets = Vec::new();
        for (component, port) in [("multigateway", 15100), ("multiorch", 15300), ("multipooler", 15200)] {
            for ip in pod_ip(component) {
                targets.push((component, format!("http://{ip}:{port}/ready")));
            }
        }
        assert_eq!(targets.len(), 4, "one gateway, one orch, two poolers: {targets:?}");
        for (component, url) in &targets {
            wait_until(&format!("{component} {url} to answer 200"), START_TIMEOUT, || async {
                // busybox wget fails on any status but 2xx; -S prints the status line.
                in_probe(&env, &ns, &format!("timeout 5 wget -S -q -O- {url} 2>&1"))
                    .and_then(|out| if out.contains("200 OK") { Ok(()) } else { Err(out) })
            })
            .await;
        }

        // The global topology holds the Cell and the Database; the processes registered under
        // the cell's root (`<global root>/<cell>`).
        let records = wait_until("the topology to hold the cell, the database and the processes", START_TIMEOUT, || async {
            let records = etcd_range(&env, &ns, "/multigres/")?;
            let under = |p: &str| records.keys().filter(|k| k.starts_with(p)).count();
            let found = (
                records.contains_key("/multigres/global/cells/zone-a/Cell"),
                records.contains_key("/multigres/global/databases/postgres/Database"),
                under("/multigres/global/zone-a/poolers/"),
                under("/multigres/global/zone-a/gateways/"),
                under("/multigres/global/zone-a/orchs/"),
            );
            if found == (true, true, 2, 1, 1) { Ok(records) } else { Err(format!("{found:?} in {:?}", records.keys().collect::<Vec<_>>())) }
        })
        .await;
        let cell = &records["/multigres/global/cells/zone-a/Cell"];
        assert!(
            holds(cell, &format!("{CLUSTER}-etcd-client.{ns}.svc:2379")) && holds(cell, "/multigres/global/zone-a"),
            "the Cell record names the cluster's etcd and the cell's root: {cell:?}"
        );
        let database = &records["/multigres/global/databases/postgres/Database"];
        assert!(
            holds(database, "zone-a") && holds(database, "AT_LEAST_2") && holds(database, "/backups"),
            "the Database record lists the cell, the durability policy and the backups: {database:?}"
        );

        // Nothing restarts for two minutes once everything is ready.
        let since = Instant::now();
        while since.elapsed() < STABLE_FOR {
            let restarted: Vec<_> = containers(&cluster_pods(&client, &ns).await.expect("pods"))
                .into_iter()
                .filter(|(_, _, _, restarts)| *restarts > 0)
                .collect();
            assert!(restarted.is_empty(), "restarted after {:?}: {restarted:?}", since.elapsed());
            tokio::time::sleep(Duration::from_secs(5)).await;
        }

        // A second cell gets its record; removed again, the record and the database's
        // mention of it go.
        let cells = |names: &[&str]| {
            let cells: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
            json!({"spec": {"cells": cells}})
        };
        let zone_b_off = json!({"name": "zone-b", "gateway": {"replicas": 0}, "orch": {"replicas": 0}, "pooler": {"replicas": 0}});
        api.patch(CLUSTER, &PatchParams::default(), &Patch::Merge(json!({"spec": {"cells": [{"name": "zone-a"}, zone_b_off]}})))
            .await
            .expect("zone-b added");
        wait_until("zone-b's Cell record and the database listing it", START_TIMEOUT, || async {
            let records = etcd_range(&env, &ns, "/multigres/global/")?;
            let database = records.get("/multigres/global/databases/postgres/Database").cloned().unwrap_or_default();
            if cell_keys(&records).len() == 2 && holds(&database, "zone-b") { Ok(()) } else { Err(format!("{:?}", cell_keys(&records))) }
        })
        .await;
        api.patch(CLUSTER, &PatchParams::default(), &Patch::Merge(cells(&["zone-a"])))
            .await
            .expect("zone-b removed");
        wait_until("zone-b's Cell record to be removed", START_TIMEOUT, || async {
            let records = etcd_range(&env, &ns, "/multigres/global/")?;
            let database = records.get("/multigres/global/databases/postgres/Database").cloned().unwrap_or_default();
            let keys = cell_keys(&records);
            if keys == ["/multigres/global/cells/zone-a/Cell"] && !holds(&database, "zone-b") { Ok(()) } else { Err(format!("{keys:?}")) }
        })
        .await;

        // Tempo: `register topology` under `reconcile MultigresCluster`, and spans exported by
        // the Multigres processes of this namespace.
        let tempo = Tempo::new(&env.tempo_url);
        wait_until("a reconcile MultigresCluster trace with register topology", START_TIMEOUT, || async {
            let query = r#"{ name = "register topology" && resource.service.name = "multigres-cluster-handler" }"#;
            for id in tempo.search(query, Duration::from_secs(3600)).await? {
                let spans = tempo.trace(&id).await?.unwrap_or_default();
                let roots = named(&spans, "multigres-cluster-handler", "reconcile MultigresCluster");
                let ours = roots.iter().any(|r| r.attributes.get("k8s.namespace.name") == Some(&ns));
                let registered = named(&spans, "multigres-cluster-handler", "register topology");
                if ours && registered.iter().any(|s| roots.iter().any(|r| descends_from(&spans, s, r))) {
                    return Ok(());
                }
            }
            Err("no such trace yet".to_string())
        })
        .await;
        wait_until("spans exported by a Multigres process of this cluster", START_TIMEOUT, || async {
            let query = format!(r#"{{ resource.k8s.namespace.name = "{ns}" && resource.service.name =~ "multigateway|multiorch|multipooler|pgctld" }}"#);
            let ids = tempo.search(&query, Duration::from_secs(3600)).await?;
            if ids.is_empty() { Err("none yet".to_string()) } else { Ok(()) }
        })
        .await;

        // The generated password is in its Secret and nowhere else: not in a container's log,
        // not in the handlers' logs.
        let secret = Api::<Secret>::namespaced(client.clone(), &ns)
            .get(&shared::meta::generated_password_secret(CLUSTER))
            .await
            .expect("the generated password Secret");
        let password = secret
            .data
            .as_ref()
            .and_then(|d| d.get("password"))
            .map(|p| String::from_utf8_lossy(&p.0).into_owned())
            .expect("a password");
        assert!(password.len() >= 32, "a generated password");
        for pod in cluster_pods(&client, &ns).await.expect("pods") {
            let name = pod.metadata.name.clone().unwrap_or_default();
            for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                let log = Api::<Pod>::namespaced(client.clone(), &ns)
                    .logs(&name, &kube::api::LogParams { container: Some(container.name.clone()), ..Default::default() })
                    .await
                    .expect("log");
                assert!(!log.contains(&password), "{name}/{} logged the password", container.name);
            }
        }
        for handler in [&cluster_handler, &resource_handler] {
            assert!(
                !handler.log_tail(usize::MAX).contains(&password),
                "{} logged the password",
                handler.name
            );
        }
    })
    .await;
}
