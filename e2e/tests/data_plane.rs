//! A MultigresCluster on the real node runs for real: every Multigres process starts and stays
//! up, the cluster-handler writes the cells into the Multigres global topology (read back
//! through etcd's own API), the processes register under their cell, and Multigres' own spans
//! reach Tempo beside the operator's.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::data_plane::{
    cluster_pods, containers, create_pod, etcd_range, exec, handlers, holds, on_real_node,
};
use e2e::real_node::{self, STORAGE_CLASS};
use e2e::tempo::Tempo;
use e2e::tempo::shape::{descends_from, named};
use e2e::{TestEnv, install_crds, wait_until, with_namespace};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use multigres_api::conditions::{DEGRADED, READY, condition};
use multigres_api::crd::{MultiGateway, MultigresCluster};
use serde_json::{Value, json};

const CLUSTER: &str = "dp";
const START_TIMEOUT: Duration = Duration::from_secs(300);
/// How long every container must run without a restart once all are ready.
const STABLE_FOR: Duration = Duration::from_secs(120);

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
            "backup": {"filesystem": {"storage": storage}},
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

/// The cell records under the global root, by key.
fn cell_keys(records: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    records
        .keys()
        .filter(|k| k.starts_with("/multigres/global/cells/"))
        .cloned()
        .collect()
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
        create_pod(&client, &ns, "probe", real_node::BUSYBOX_IMAGE, &["sleep", "3600"], json!([])).await;

        // Every container of etcd, gateway, orch and both poolers (multipooler + pgctld) ready.
        let expected = [
            ("etcd", 1),
            ("multigateway", 1),
            ("multiorch", 1),
            ("multipooler", 2),
            ("postgres", 2),
        ];
        let pods = wait_until("every container of the cluster to be ready", START_TIMEOUT, || async {
            let pods = cluster_pods(&client, &ns, CLUSTER).await?;
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
            for container in pod.spec.iter().flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers)) {
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
                exec(&env, &ns, "probe", &format!("timeout 5 wget -S -q -O- {url} 2>&1"))
                    .and_then(|out| if out.contains("200 OK") { Ok(()) } else { Err(out) })
            })
            .await;
        }

        // The global topology holds the Cell and the Database; the processes registered under
        // the cell's root (`<global root>/<cell>`).
        let records = wait_until("the topology to hold the cell, the database and the processes", START_TIMEOUT, || async {
            let records = etcd_range(&env, &ns, "probe", CLUSTER, "/multigres/")?;
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
            let restarted: Vec<_> = containers(&cluster_pods(&client, &ns, CLUSTER).await.expect("pods"))
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
            let records = etcd_range(&env, &ns, "probe", CLUSTER, "/multigres/global/")?;
            let database = records.get("/multigres/global/databases/postgres/Database").cloned().unwrap_or_default();
            if cell_keys(&records).len() == 2 && holds(&database, "zone-b") { Ok(()) } else { Err(format!("{:?}", cell_keys(&records))) }
        })
        .await;
        api.patch(CLUSTER, &PatchParams::default(), &Patch::Merge(cells(&["zone-a"])))
            .await
            .expect("zone-b removed");
        wait_until("zone-b's Cell record to be removed", START_TIMEOUT, || async {
            let records = etcd_range(&env, &ns, "probe", CLUSTER, "/multigres/global/")?;
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
            .get(&multigres_api::meta::generated_password_secret(CLUSTER))
            .await
            .expect("the generated password Secret");
        let password = secret
            .data
            .as_ref()
            .and_then(|d| d.get("password"))
            .map(|p| String::from_utf8_lossy(&p.0).into_owned())
            .expect("a password");
        assert!(password.len() >= 32, "a generated password");
        for pod in cluster_pods(&client, &ns, CLUSTER).await.expect("pods") {
            let name = pod.metadata.name.clone().unwrap_or_default();
            for container in pod.spec.iter().flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers)) {
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

/// A gateway whose image holds no Multigres: on the real node the kubelet fails to start its
/// container again and again, and the MultiGateway says so, quoting how the container ended
/// (the kubelet's `CrashLoopBackOff` and last termination, not a simulation of them).
#[tokio::test]
async fn a_gateway_whose_container_keeps_failing_is_degraded_with_its_last_exit() {
    let env = TestEnv::load();
    let client = e2e::k8s::admin_client(&env).await;
    install_crds(&client).await;
    real_node::ensure(&env, &client).await;
    with_namespace(&client, "crashloop", |client, ns| async move {
        let (_cluster_handler, _resource_handler) = handlers(&env, &ns.name).await;
        let api: Api<MultiGateway> = Api::namespaced(client.clone(), &ns.name);
        let spec = on_real_node(json!({
            "cell": "zone-a", "replicas": 1, "image": real_node::BUSYBOX_IMAGE,
            "topo": {"globalServerAddresses": "nowhere.invalid:2379"},
        }));
        let gateway: MultiGateway = serde_json::from_value(json!({
            "apiVersion": "multigres.com/v1alpha1", "kind": "MultiGateway",
            "metadata": {"name": "crashing"}, "spec": spec,
        }))
        .expect("gateway");
        api.create(&PostParams::default(), &gateway)
            .await
            .expect("created");
        let degraded = wait_until(
            "the MultiGateway Degraded with PodCrashLooping",
            START_TIMEOUT,
            || async {
                let s = api
                    .get("crashing")
                    .await
                    .map_err(|e| e.to_string())?
                    .status
                    .unwrap_or_default();
                match condition(&s.conditions, DEGRADED) {
                    Some(d) if d.status == "True" && d.reason == "PodCrashLooping" => Ok(d.clone()),
                    other => Err(format!(
                        "Degraded {other:?}, Ready {:?}",
                        condition(&s.conditions, READY)
                    )),
                }
            },
        )
        .await;
        // The binary the builder runs is not in the image: the runtime's own words.
        let said = &degraded.message;
        eprintln!("MultiGateway crashing: Degraded {said}");
        assert!(
            said.starts_with("pod crashing-")
                && said.contains(
                    ": container multigateway keeps restarting; it last exited with code "
                )
                && said.contains("multigateway"),
            "{said}"
        );
        let ready = api
            .get("crashing")
            .await
            .expect("gateway")
            .status
            .unwrap_or_default();
        let ready = condition(&ready.conditions, READY).expect("Ready").clone();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "PodCrashLooping"),
            "{ready:?}"
        );
        assert_eq!(ready.message, format!("0/1 pods ready; {said}"));
    })
    .await;
}
