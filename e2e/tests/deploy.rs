//! The operator as users install it: `kubectl apply -k manifests/default` on the local control
//! plane, the two Deployments getting Ready pods, each handler running with nothing but its own
//! ServiceAccount's token through a whole cluster lifecycle, requests outside a role refused,
//! and leader election handing over when the leader is killed or stops.

use std::time::{Duration, Instant};

use e2e::cluster::{
    TIMEOUT, cell_leftovers, cell_objects, deployment_replicas, sample, wait_healthy,
};
use e2e::identity::{Identity, OPERATOR_NS};
use e2e::k8s::lease_holder;
use e2e::process::{Handler, HandlerOptions, metric_sum};
use e2e::{TestEnv, install_crds, wait_until, with_namespace};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use multigres_api::crd::{Cell, Etcd, MultigresCluster};
use multigres_api::meta::cluster_etcd_name;
use serde_json::json;

async fn admin(env: &TestEnv) -> Client {
    let client = e2e::k8s::admin_client(env).await;
    install_crds(&client).await;
    client
}

/// `kubectl apply -k manifests/default`, exactly as the README says.
fn apply_default_manifests(env: &TestEnv) {
    env.kubectl_apply("-k", &e2e::env::repo_root().join("manifests/default"));
}

/// Whether a request failed with 403 Forbidden.
fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> Result<(), String> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(()),
        other => Err(format!("expected 403 Forbidden, got {other:?}")),
    }
}

/// Waits until `handler` reports itself the active replica.
async fn wait_leader(handler: &Handler, timeout: Duration) {
    wait_until(&format!("{} to lead", handler.name), timeout, || async {
        if handler.is_leader().await {
            Ok(())
        } else {
            Err(format!(
                "multigres_leader is 0; log tail:\n{}",
                handler.log_tail(5)
            ))
        }
    })
    .await;
}

/// Scales the cluster's gateways to `replicas` and waits until the default cell's gateway
/// Deployment has them and the cluster is Healthy again.
async fn scale_gateways(client: &Client, ns: &str, cluster: &str, replicas: i32) {
    let api: Api<MultigresCluster> = Api::namespaced(client.clone(), ns);
    api.patch(
        cluster,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"gateway": {"replicas": replicas}}})),
    )
    .await
    .expect("cluster scaled");
    let (_, [gateway, _, _]) = cell_objects(cluster, "default");
    wait_until(
        &format!("gateway Deployment {gateway} to have {replicas} replicas"),
        TIMEOUT,
        || async {
            let have = deployment_replicas(client, ns, &gateway).await?;
            (have == replicas)
                .then_some(())
                .ok_or(format!("{have} replicas"))
        },
    )
    .await;
    wait_healthy(&api, cluster).await;
}

/// Deletes the cluster and waits until nothing it made is left.
async fn delete_and_wait_gone(client: &Client, ns: &str, cluster: &str) {
    Api::<MultigresCluster>::namespaced(client.clone(), ns)
        .delete(cluster, &DeleteParams::foreground())
        .await
        .expect("cluster deleted");
    let etcd = cluster_etcd_name(cluster);
    wait_until(
        "everything under the cluster to be garbage-collected",
        TIMEOUT,
        || async {
            let mut left = cell_leftovers(client, ns, cluster, "default").await?;
            let e = |e: kube::Error| e.to_string();
            if Api::<Etcd>::namespaced(client.clone(), ns)
                .get_opt(&etcd)
                .await
                .map_err(e)?
                .is_some()
            {
                left.push("Etcd".into());
            }
            if Api::<StatefulSet>::namespaced(client.clone(), ns)
                .get_opt(&etcd)
                .await
                .map_err(e)?
                .is_some()
            {
                left.push("etcd StatefulSet".into());
            }
            left.is_empty()
                .then_some(())
                .ok_or(format!("left: {left:?}"))
        },
    )
    .await;
}

/// Log lines of `handler` that report a refused request.
fn refusals(handler: &Handler) -> Vec<String> {
    handler
        .log_lines()
        .into_iter()
        .map(|l| l.to_string())
        .filter(|l| l.contains("forbidden") || l.contains("Forbidden"))
        .collect()
}

#[tokio::test]
async fn installed_from_manifests_each_handler_runs_a_lifecycle_with_only_its_own_role() {
    let env = TestEnv::load();
    let admin = admin(&env).await;
    apply_default_manifests(&env);

    // kwok runs the Deployments' pods: both handlers get their two Ready replicas.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), OPERATOR_NS);
    for name in ["multigres-cluster-handler", "multigres-resource-handler"] {
        wait_until(
            &format!("Deployment {name} to have 2 ready pods"),
            TIMEOUT,
            || async {
                let d = deployments.get(name).await.map_err(|e| e.to_string())?;
                let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
                (ready == 2).then_some(()).ok_or(format!("{ready} ready"))
            },
        )
        .await;
    }

    with_namespace(&admin, "rbac", |admin, ns| async move {
        let ns = ns.name.clone();
        let cluster_id = Identity::of_handler(&env, &admin, "cluster-handler").await;
        let resource_id = Identity::of_handler(&env, &admin, "resource-handler").await;

        // Outside their roles, each identity is refused.
        let as_cluster = cluster_id.client.clone();
        let as_resource = resource_id.client.clone();
        let sts: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "not-mine"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "serviceName": "x",
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
        }))
        .expect("statefulset");
        let refused = [
            (
                "cluster-handler creates a StatefulSet",
                forbidden(
                    Api::<StatefulSet>::namespaced(as_cluster.clone(), &ns)
                        .create(&PostParams::default(), &sts)
                        .await,
                ),
            ),
            (
                "cluster-handler lists Secrets",
                forbidden(
                    Api::<Secret>::namespaced(as_cluster.clone(), &ns)
                        .list(&ListParams::default())
                        .await,
                ),
            ),
            (
                "cluster-handler deletes a Secret",
                forbidden(
                    Api::<Secret>::namespaced(as_cluster.clone(), &ns)
                        .delete("any", &Default::default())
                        .await,
                ),
            ),
            (
                "cluster-handler creates a MultigresCluster",
                forbidden(
                    Api::<MultigresCluster>::namespaced(as_cluster.clone(), &ns)
                        .create(&PostParams::default(), &sample("minimal-cluster.yaml"))
                        .await,
                ),
            ),
            (
                "resource-handler lists Cells",
                forbidden(
                    Api::<Cell>::namespaced(as_resource.clone(), &ns)
                        .list(&ListParams::default())
                        .await,
                ),
            ),
            (
                "resource-handler reads Secrets",
                forbidden(
                    Api::<Secret>::namespaced(as_resource.clone(), &ns)
                        .list(&ListParams::default())
                        .await,
                ),
            ),
            (
                "resource-handler takes the cluster-handler's Lease",
                forbidden(
                    Api::<Lease>::namespaced(as_resource.clone(), OPERATOR_NS)
                        .get("multigres-cluster-handler")
                        .await,
                ),
            ),
        ];
        let wrong: Vec<String> = refused
            .iter()
            .filter_map(|(what, r)| r.as_ref().err().map(|e| format!("{what}: {e}")))
            .collect();
        assert!(wrong.is_empty(), "requests outside the roles: {wrong:?}");

        // Each handler as a process with only its ServiceAccount's token, leader election on
        // (the Lease lives in multigres-system, as in the Deployments).
        let start = |bin: &str, id: &Identity| {
            Handler::start(
                bin,
                &env,
                HandlerOptions {
                    namespace: Some(ns.clone()),
                    args: [
                        "--resync",
                        "2s",
                        "--leader-elect",
                        "--leader-election-namespace",
                        OPERATOR_NS,
                    ]
                    .map(String::from)
                    .to_vec(),
                    env: vec![id.env()],
                },
            )
        };
        let mut cluster_handler = start("cluster-handler", &cluster_id);
        let mut resource_handler = start("resource-handler", &resource_id);
        for h in [&mut cluster_handler, &mut resource_handler] {
            h.wait_ready(Duration::from_secs(60)).await;
        }
        // A Lease left by an earlier run expires within its 15 s duration.
        wait_leader(&cluster_handler, Duration::from_secs(40)).await;
        wait_leader(&resource_handler, Duration::from_secs(40)).await;

        // The whole lifecycle under those identities.
        let api: Api<MultigresCluster> = Api::namespaced(admin.clone(), &ns);
        api.create(&PostParams::default(), &sample("minimal-cluster.yaml"))
            .await
            .expect("cluster created");
        wait_healthy(&api, "minimal").await;
        scale_gateways(&admin, &ns, "minimal", 3).await;
        delete_and_wait_gone(&admin, &ns, "minimal").await;
        for h in [&cluster_handler, &resource_handler] {
            let refused = refusals(h);
            assert!(refused.is_empty(), "{} was refused: {refused:#?}", h.name);
        }

        // The endpoints a Deployment's probes and Prometheus use.
        for h in [&cluster_handler, &resource_handler] {
            let healthz = reqwest::get(format!("http://{}/healthz", h.admin))
                .await
                .expect("GET /healthz");
            assert!(
                healthz.status().is_success(),
                "{}: /healthz {}",
                h.name,
                healthz.status()
            );
            let metrics = h.metrics().await;
            let controller = h.name.as_str();
            for (metric, filter) in [
                (
                    "multigres_reconcile_duration_seconds_count",
                    format!("controller=\"{controller}\""),
                ),
                (
                    "multigres_reconciles_total",
                    format!("controller=\"{controller}\""),
                ),
                (
                    "multigres_api_requests_total",
                    "resource=\"leases\"".to_string(),
                ),
            ] {
                let n = metric_sum(&metrics, metric, |l| l.contains(&filter));
                assert!(n > 0, "{}: no {metric}{{{filter}}} in:\n{metrics}", h.name);
            }
            assert!(
                metrics.contains(&format!(
                    "multigres_leader{{controller=\"{controller}\"}} 1"
                )),
                "{}: not the leader per /metrics:\n{metrics}",
                h.name
            );
        }

        // SIGTERM: exit 0 and the Lease is free for the next replica.
        for (h, lease) in [
            (&mut cluster_handler, "multigres-cluster-handler"),
            (&mut resource_handler, "multigres-resource-handler"),
        ] {
            let status = h.terminate(Duration::from_secs(30)).await;
            assert!(
                status.is_some_and(|s| s.success()),
                "{} exited with {status:?}:\n{}",
                h.name,
                h.log_tail(20)
            );
            let holder = lease_holder(&admin, OPERATOR_NS, lease).await;
            assert_eq!(holder, None, "{lease} still held after {} stopped", h.name);
        }
    })
    .await;
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leader_is_killed_mid_lifecycle() {
    let env = TestEnv::load();
    let admin = admin(&env).await;
    with_namespace(&admin, "leader", |admin, ns| async move {
        let ns = ns.name.clone();
        const LEASE_SECS: u64 = 6;
        let start = |bin: &str, identity: &str| {
            let args = [
                "--resync",
                "2s",
                "--leader-elect",
                "--leader-election-namespace",
                &ns,
                "--leader-election-identity",
                identity,
                "--lease-duration",
                "6s",
                "--lease-renew-grace",
                "2s",
            ];
            Handler::start(
                bin,
                &env,
                HandlerOptions {
                    namespace: Some(ns.clone()),
                    args: args.map(String::from).to_vec(),
                    env: vec![],
                },
            )
        };
        // Two replicas of each handler; the first of each leads.
        let mut first = [
            start("cluster-handler", "ch-1"),
            start("resource-handler", "rh-1"),
        ];
        for h in &mut first {
            h.wait_ready(Duration::from_secs(60)).await;
            wait_leader(h, Duration::from_secs(30)).await;
        }
        let mut second = [
            start("cluster-handler", "ch-2"),
            start("resource-handler", "rh-2"),
        ];
        for h in &mut second {
            h.wait_ready(Duration::from_secs(60)).await;
            assert!(
                !h.is_leader().await,
                "{} leads while another replica holds the lease",
                h.name
            );
        }

        // Mid-lifecycle: the cluster's first children exist, then both leaders die.
        let api: Api<MultigresCluster> = Api::namespaced(admin.clone(), &ns);
        api.create(&PostParams::default(), &sample("minimal-cluster.yaml"))
            .await
            .expect("cluster created");
        let etcd = cluster_etcd_name("minimal");
        wait_until("the Etcd child to exist", TIMEOUT, || async {
            Api::<Etcd>::namespaced(admin.clone(), &ns)
                .get_opt(&etcd)
                .await
                .map_err(|e| e.to_string())?
                .map(|_| ())
                .ok_or("not yet".to_string())
        })
        .await;
        for h in &second {
            assert_eq!(
                h.api_writes().await,
                0,
                "standby {} wrote while another replica led",
                h.name
            );
        }
        for h in &mut first {
            h.kill().await;
        }
        let killed = Instant::now();
        for h in &second {
            // The lease expires at most LEASE_SECS after the last renewal.
            wait_leader(h, Duration::from_secs(LEASE_SECS * 2)).await;
        }
        let takeover = killed.elapsed();
        wait_healthy(&api, "minimal").await;
        for h in &second {
            assert!(
                h.api_writes().await > 0,
                "{} took over but wrote nothing",
                h.name
            );
        }
        println!(
            "standbys took over {:.1}s after the leaders were killed (lease {LEASE_SECS}s)",
            takeover.as_secs_f64()
        );

        // The new leaders stop on SIGTERM and free the lease; a third replica then leads at once.
        let [cluster_handler, _] = &mut second;
        assert!(
            cluster_handler
                .terminate(Duration::from_secs(30))
                .await
                .is_some_and(|s| s.success())
        );
        assert_eq!(
            lease_holder(&admin, &ns, "multigres-cluster-handler").await,
            None
        );
        let mut third = start("cluster-handler", "ch-3");
        third.wait_ready(Duration::from_secs(60)).await;
        let started = Instant::now();
        wait_leader(&third, Duration::from_secs(LEASE_SECS)).await;
        println!(
            "a new replica led {:.1}s after the old leader released the lease",
            started.elapsed().as_secs_f64()
        );
        scale_gateways(&admin, &ns, "minimal", 3).await;
    })
    .await;
}

#[tokio::test]
async fn the_observability_samples_install_and_run() {
    let env = TestEnv::load();
    let admin = admin(&env).await;
    let root = e2e::env::repo_root().join("manifests/observability");
    for dir in [root.clone(), root.join("jaeger")] {
        env.kubectl_apply("-k", &dir);
    }
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "multigres-observability");
    for name in ["tempo", "otel-collector", "prometheus", "grafana", "jaeger"] {
        wait_until(
            &format!("Deployment {name} to have a ready pod"),
            TIMEOUT,
            || async {
                let d = deployments.get(name).await.map_err(|e| e.to_string())?;
                let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
                (ready >= 1).then_some(()).ok_or(format!("{ready} ready"))
            },
        )
        .await;
    }
}
