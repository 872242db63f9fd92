//! Both handlers as separate processes turn the sample MultigresClusters into running
//! workloads: Healthy, scaling through the cluster spec, removing a cell, deleting the cluster
//! (with its volumes, or keeping them for a later cluster that must ask to adopt them), and no
//! writes at all while nothing changes.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::process::{Handler, start_handler, start_in_namespace};
use e2e::{TestEnv, install_crds, wait_until, with_namespace};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use multigres_api::conditions::{DEGRADED, PROGRESSING, READY, condition};
use multigres_api::crd::{
    ComponentStatus, Etcd, MultiPooler, MultigresCluster, Phase, VolumeRetention,
};
use multigres_api::meta::{LABEL_OWNER_UID, cluster_etcd_name};
use serde_json::json;

use e2e::cluster::{
    TIMEOUT, cell_leftovers, cell_objects, deployment_replicas, sample, wait_healthy,
};

async fn admin() -> Client {
    let client = e2e::k8s::admin_client(&TestEnv::load()).await;
    install_crds(&client).await;
    client
}

async fn both_handlers(ns: &str) -> (Handler, Handler) {
    let cluster = start_in_namespace("cluster-handler", ns, "2s").await;
    let resource = start_in_namespace("resource-handler", ns, "2s").await;
    (cluster, resource)
}

#[tokio::test]
async fn minimal_cluster_becomes_healthy_and_is_garbage_collected() {
    let client = admin().await;
    with_namespace(&client, "ch-minimal", |client, ns| async move {
        let (_cluster_handler, _resource_handler) = both_handlers(&ns.name).await;
        let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &ns.name);
        let cluster = sample("minimal-cluster.yaml");
        api.create(&PostParams::default(), &cluster)
            .await
            .expect("cluster created");
        let healthy = wait_healthy(&api, "minimal").await;
        let status = healthy.status.expect("status");
        // Defaults: 3 etcd members, one cell with 2 gateways, 1 orch, 2 poolers.
        assert_eq!(
            (
                status.etcd.ready_replicas,
                status.cells.replicas,
                status.cells.ready_replicas
            ),
            (3, 1, 1)
        );
        assert_eq!(
            (
                status.gateway.ready_replicas,
                status.orch.ready_replicas,
                status.pooler.ready_replicas
            ),
            (2, 1, 2)
        );
        let etcd = cluster_etcd_name("minimal");
        assert!(
            Api::<Etcd>::namespaced(client.clone(), &ns.name)
                .get_opt(&etcd)
                .await
                .expect("get")
                .is_some()
        );
        assert!(
            Api::<StatefulSet>::namespaced(client.clone(), &ns.name)
                .get_opt(&etcd)
                .await
                .expect("get")
                .is_some()
        );
        let present = cell_leftovers(&client, &ns.name, "minimal", "default")
            .await
            .expect("listed");
        assert_eq!(
            present.len(),
            7,
            "the default cell has all its objects: {present:?}"
        );

        api.delete("minimal", &DeleteParams::foreground())
            .await
            .expect("cluster deleted");
        wait_until(
            "everything under the cluster to be garbage-collected",
            TIMEOUT,
            || async {
                let mut left = cell_leftovers(&client, &ns.name, "minimal", "default").await?;
                if Api::<Etcd>::namespaced(client.clone(), &ns.name)
                    .get_opt(&etcd)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_some()
                {
                    left.push("Etcd".into());
                }
                if Api::<StatefulSet>::namespaced(client.clone(), &ns.name)
                    .get_opt(&etcd)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_some()
                {
                    left.push("etcd StatefulSet".into());
                }
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("left: {left:?}"))
                }
            },
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn multi_cell_cluster_scales_loses_a_cell_and_stays_quiet_when_steady() {
    let client = admin().await;
    with_namespace(&client, "ch-multi", |client, ns| async move {
        let (cluster_handler, resource_handler) = both_handlers(&ns.name).await;
        let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &ns.name);
        api.create(&PostParams::default(), &sample("multi-cell-cluster.yaml"))
            .await
            .expect("cluster created");
        let status = wait_healthy(&api, "multi").await.status.expect("status");
        assert_eq!((status.cells.replicas, status.cells.ready_replicas), (3, 3));
        // zone-c overrides the gateway replicas (3) and the pooler replicas (1).
        assert_eq!(status.gateway.ready_replicas, 2 + 2 + 3);
        assert_eq!(status.pooler.ready_replicas, 2 + 2 + 1);
        let gateway = |cell: &str| cell_objects("multi", cell).1[0].clone();

        // Steady: several resyncs of both handlers and not one write.
        let before = cluster_handler.metrics().await;
        let writes = (
            e2e::process::api_writes(&before),
            resource_handler.api_writes().await,
        );
        let reconciles = (
            cluster_handler.reconciles().await,
            resource_handler.reconciles().await,
        );
        wait_until("both handlers to resync several times", TIMEOUT, || async {
            let now = (
                cluster_handler.reconciles().await,
                resource_handler.reconciles().await,
            );
            if now.0 >= reconciles.0 + 8 && now.1 >= reconciles.1 + 20 {
                Ok(())
            } else {
                Err(format!("{now:?} since {reconciles:?}"))
            }
        })
        .await;
        let after = (
            cluster_handler.api_writes().await,
            resource_handler.api_writes().await,
        );
        assert_eq!(
            after,
            writes,
            "writes while steady (cluster-handler, resource-handler):\n{}\n{}\ncluster-handler before:\n{before}\n{}",
            cluster_handler.metrics().await,
            resource_handler.metrics().await,
            cluster_handler.log_tail(30)
        );

        // Scaling the cluster-wide gateway template reaches every cell that does not override it.
        api.patch(
            "multi",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"gateway": {"replicas": 4}}})),
        )
        .await
        .expect("scaled");
        wait_until(
            "gateway Deployments to follow the template",
            TIMEOUT,
            || async {
                let seen = (
                    deployment_replicas(&client, &ns.name, &gateway("zone-a")).await?,
                    deployment_replicas(&client, &ns.name, &gateway("zone-b")).await?,
                    deployment_replicas(&client, &ns.name, &gateway("zone-c")).await?,
                );
                if seen == (4, 4, 3) {
                    Ok(())
                } else {
                    Err(format!("(zone-a, zone-b, zone-c) = {seen:?}"))
                }
            },
        )
        .await;
        let status = wait_healthy(&api, "multi").await.status.expect("status");
        assert_eq!(status.gateway.ready_replicas, 4 + 4 + 3);

        // Removing a cell from the spec removes its whole subtree.
        api.patch(
            "multi",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cells": [{"name": "zone-a"}, {"name": "zone-b"}]}})),
        )
        .await
        .expect("cell removed");
        wait_until(
            "cell zone-c and everything under it to be gone",
            TIMEOUT,
            || async {
                let left = cell_leftovers(&client, &ns.name, "multi", "zone-c").await?;
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("left: {left:?}"))
                }
            },
        )
        .await;
        let status = wait_healthy(&api, "multi").await.status.expect("status");
        assert_eq!(
            (status.cells.replicas, status.gateway.ready_replicas),
            (2, 8)
        );
        let present = cell_leftovers(&client, &ns.name, "multi", "zone-a")
            .await
            .expect("listed");
        assert_eq!(present.len(), 7, "zone-a untouched: {present:?}");
    })
    .await;
}

#[tokio::test]
async fn a_name_too_long_for_its_children_is_reported_on_the_cluster() {
    let client = admin().await;
    with_namespace(&client, "ch-invalid", |client, ns| async move {
        let (cluster_handler, _resource_handler) = both_handlers(&ns.name).await;
        let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &ns.name);
        let name = "a-cluster-name-that-is-long-enough-to-overflow";
        let cluster: MultigresCluster = serde_json::from_value(json!({
            "apiVersion": "multigres.com/v1alpha1", "kind": "MultigresCluster",
            "metadata": {"name": name}, "spec": {"cells": [{"name": "zone-a"}]}
        }))
        .expect("object");
        api.create(&PostParams::default(), &cluster)
            .await
            .expect("accepted by the API server");
        let cond = wait_until("Ready=False with NameTooLong", TIMEOUT, || async {
            let c = api.get(name).await.map_err(|e| e.to_string())?;
            let s = c.status.unwrap_or_default();
            match condition(&s.core.conditions, READY) {
                Some(c) if c.status == "False" && c.reason == "NameTooLong" => Ok(c.clone()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert!(
            cond.message.contains("shorten the name"),
            "{}",
            cond.message
        );
        // A spec that cannot be fanned out blocks the cluster: Degraded with the same reason,
        // and not Progressing, since nothing converges.
        let status = api
            .get(name)
            .await
            .expect("cluster")
            .status
            .unwrap_or_default();
        assert_eq!(status.phase, Some(Phase::Degraded), "{status:?}");
        let degraded = condition(&status.core.conditions, DEGRADED).expect("Degraded");
        assert_eq!(
            (
                degraded.status.as_str(),
                degraded.reason.as_str(),
                degraded.message.as_str()
            ),
            ("True", "NameTooLong", cond.message.as_str())
        );
        let progressing = condition(&status.core.conditions, PROGRESSING).expect("Progressing");
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_str()),
            ("False", "NameTooLong")
        );
        assert!(
            Api::<Etcd>::namespaced(client.clone(), &ns.name)
                .get_opt(&cluster_etcd_name(name))
                .await
                .expect("get")
                .is_none(),
            "nothing is created from a refused spec"
        );
        // error_policy logs after the reconcile returns, a moment after the status is visible.
        let object = format!("{}/{name}", ns.name);
        wait_until(
            "a warning naming the cluster in the handler log",
            TIMEOUT,
            || async {
                let logged = cluster_handler
                    .log_lines()
                    .into_iter()
                    .any(|l| l["level"] == "WARN" && l["object"].as_str() == Some(object.as_str()));
                if logged {
                    Ok(())
                } else {
                    Err(cluster_handler.log_tail(5))
                }
            },
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_missing_password_secret_holds_the_cluster_until_it_exists() {
    let client = admin().await;
    with_namespace(&client, "ch-password", |client, ns| async move {
        let (_cluster_handler, _resource_handler) = both_handlers(&ns.name).await;
        let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &ns.name);
        let mut cluster = sample("minimal-cluster.yaml");
        cluster.spec.postgres = Some(multigres_api::crd::PostgresSpec {
            password_secret_ref: Some(multigres_api::crd::SecretKeyRef {
                name: "team-db-password".into(),
                key: Some("pw".into()),
            }),
            ..Default::default()
        });
        api.create(&PostParams::default(), &cluster)
            .await
            .expect("cluster created");
        let cond = wait_until(
            "Ready=False with CredentialsUnavailable",
            TIMEOUT,
            || async {
                let c = api.get("minimal").await.map_err(|e| e.to_string())?;
                let s = c.status.unwrap_or_default();
                match condition(&s.core.conditions, READY) {
                    Some(c) if c.status == "False" && c.reason == "CredentialsUnavailable" => {
                        Ok(c.clone())
                    }
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
        assert_eq!(
            cond.message,
            "Secret team-db-password named by spec.postgres.passwordSecretRef does not exist; \
             create it with the key pw"
        );
        assert!(
            Api::<Etcd>::namespaced(client.clone(), &ns.name)
                .get_opt(&cluster_etcd_name("minimal"))
                .await
                .expect("get")
                .is_none(),
            "nothing is created before the password exists"
        );
        let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
            "metadata": {"name": "team-db-password"},
            "stringData": {"pw": "chosen-by-the-team"}
        }))
        .expect("secret");
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns.name)
            .create(&PostParams::default(), &secret)
            .await
            .expect("secret created");
        wait_healthy(&api, "minimal").await;
        // The poolers mount the team's Secret, and nothing was generated.
        let (_, [_, _, pooler]) = cell_objects("minimal", "default");
        let sts = Api::<StatefulSet>::namespaced(client.clone(), &ns.name)
            .get(&pooler)
            .await
            .expect("pooler StatefulSet");
        let volumes = sts
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|s| s.volumes)
            .unwrap_or_default();
        let secret_volume = volumes
            .iter()
            .find_map(|v| v.secret.as_ref())
            .expect("a Secret volume");
        assert_eq!(
            secret_volume.secret_name.as_deref(),
            Some("team-db-password")
        );
        assert_eq!(
            secret_volume.items.as_ref().map(|i| i[0].key.as_str()),
            Some("pw")
        );
        assert!(
            Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns.name)
                .get_opt(&multigres_api::meta::generated_password_secret("minimal"))
                .await
                .expect("get")
                .is_none(),
            "no password is generated when the cluster names one"
        );
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_topology_holds_new_cells_with_a_reason_and_backs_off() {
    let client = admin().await;
    with_namespace(&client, "ch-topology", |client, ns| async move {
        // kwok's etcd pods run no process: registration on, every attempt fails.
        let cluster_handler = start_handler(
            "cluster-handler",
            Some(&ns.name),
            &["--resync", "2s"],
            vec![("MANAGE_TOPOLOGY".into(), "true".into())],
        )
        .await;
        let _resource_handler = start_in_namespace("resource-handler", &ns.name, "2s").await;
        let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &ns.name);
        api.create(&PostParams::default(), &sample("minimal-cluster.yaml"))
            .await
            .expect("cluster created");
        let cond = wait_for_ready_reason(&api, "minimal", "TopologyUnavailable", |c| {
            c.status.as_ref().map(|s| &s.core)
        })
        .await;
        let address = format!("minimal-etcd-client.{}.svc:2379", ns.name);
        assert!(
            cond.message
                .starts_with("registering the cells in the Multigres topology: etcd at ")
                && cond.message.contains(&address),
            "the message names the etcd that failed: {}",
            cond.message
        );
        let (cell, _) = cell_objects("minimal", "default");
        assert!(
            Api::<multigres_api::crd::Cell>::namespaced(client.clone(), &ns.name)
                .get_opt(&cell)
                .await
                .expect("get")
                .is_none(),
            "no cell is created before its topology record exists"
        );
        assert!(
            Api::<Etcd>::namespaced(client.clone(), &ns.name)
                .get_opt(&cluster_etcd_name("minimal"))
                .await
                .expect("get")
                .is_some(),
            "the etcd the records go into is created"
        );
        // Retries back off instead of looping (the backoff doubles from 5 s).
        let before = cluster_handler.reconciles().await;
        tokio::time::sleep(Duration::from_secs(10)).await; // an observation window
        let during = cluster_handler.reconciles().await - before;
        assert!(during <= 12, "{during} reconciles in 10 s: a loop");
    })
    .await;
}

/// The cluster every volume test creates, deletes and creates again.
const VOLUMES_CLUSTER: &str = "minimal";

/// The StatefulSets of the minimal cluster that have data claims: etcd and the pooler.
fn stateful_sets() -> [String; 2] {
    let (_, [_, _, pooler]) = cell_objects(VOLUMES_CLUSTER, "default");
    [cluster_etcd_name(VOLUMES_CLUSTER), pooler]
}

/// The data claims of the minimal cluster's StatefulSets (`data-<StatefulSet>-<n>`), by name,
/// with their uid and their owner-uid label.
async fn data_claims(
    client: &Client,
    ns: &str,
) -> Result<BTreeMap<String, (String, Option<String>)>, String> {
    let prefixes = stateful_sets().map(|sts| format!("data-{sts}-"));
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(claims
        .items
        .into_iter()
        .filter(|c| prefixes.iter().any(|p| c.name_any().starts_with(p)))
        .map(|c| {
            let owner = c.labels().get(LABEL_OWNER_UID).cloned();
            (c.name_any(), (c.uid().unwrap_or_default(), owner))
        })
        .collect())
}

/// Creates `cluster`, waits until it is Healthy and returns its data claims: three etcd
/// members and two poolers, each labelled with the uid of its Etcd or MultiPooler.
async fn healthy_with_claims(
    client: &Client,
    api: &Api<MultigresCluster>,
    ns: &str,
    cluster: &MultigresCluster,
) -> BTreeMap<String, (String, Option<String>)> {
    api.create(&PostParams::default(), cluster)
        .await
        .expect("cluster created");
    wait_healthy(api, VOLUMES_CLUSTER).await;
    let [etcd, pooler] = stateful_sets();
    let etcd_uid = Api::<Etcd>::namespaced(client.clone(), ns)
        .get(&etcd)
        .await
        .expect("Etcd")
        .uid();
    let pooler_uid = Api::<MultiPooler>::namespaced(client.clone(), ns)
        .get(&pooler)
        .await
        .expect("MultiPooler")
        .uid();
    let claims = data_claims(client, ns).await.expect("claims listed");
    let expected: BTreeMap<String, Option<String>> = (0..3)
        .map(|i| (format!("data-{etcd}-{i}"), etcd_uid.clone()))
        .chain((0..2).map(|i| (format!("data-{pooler}-{i}"), pooler_uid.clone())))
        .collect();
    let seen: BTreeMap<String, Option<String>> = claims
        .iter()
        .map(|(name, (_, owner))| (name.clone(), owner.clone()))
        .collect();
    assert_eq!(
        seen, expected,
        "one claim per pod, labelled with its object's uid"
    );
    claims
}

/// Deletes the cluster in the foreground and waits until it is gone, with everything it owns.
async fn delete_and_wait(api: &Api<MultigresCluster>) {
    api.delete(VOLUMES_CLUSTER, &DeleteParams::foreground())
        .await
        .expect("cluster deleted");
    wait_until("the cluster to be gone", TIMEOUT, || async {
        match api
            .get_opt(VOLUMES_CLUSTER)
            .await
            .map_err(|e| e.to_string())?
        {
            None => Ok(()),
            Some(c) => Err(format!(
                "still there, finalizers {:?}",
                c.metadata.finalizers
            )),
        }
    })
    .await;
}

#[tokio::test]
async fn a_pod_no_node_fits_degrades_the_cluster_until_the_spec_lets_it_run() {
    let client = admin().await;
    with_namespace(&client, "ch-unplaced", |client, ns| async move {
        let (_cluster_handler, _resource_handler) = both_handlers(&ns.name).await;
        let env = TestEnv::load();
        let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &ns.name);
        let name = "unplaced";
        // The gateway's pods ask for a node label no node has: the scheduler leaves them Pending.
        let cluster: MultigresCluster = serde_json::from_value(json!({
            "apiVersion": "multigres.com/v1alpha1", "kind": "MultigresCluster",
            "metadata": {"name": name},
            "spec": {
                "cells": [{"name": "zone-a"}],
                "gateway": {"nodeSelector": {"multigres.com/e2e-no-such-node": "true"}},
            }
        }))
        .expect("object");
        api.create(&PostParams::default(), &cluster)
            .await
            .expect("accepted by the API server");
        let cell = multigres_api::meta::cell_object_name(name, "zone-a");
        let gateway = multigres_api::meta::cell_component_name(
            &cell,
            multigres_api::meta::ComponentLabel::Gateway,
        );
        // After the scheduler's grace time its words reach the top, with the path down to the
        // pod, counting the other gateway pod (two by default).
        let degraded = wait_until(
            "the cluster Degraded with PodUnschedulable for both gateway pods",
            TIMEOUT,
            || async {
                let s = api
                    .get(name)
                    .await
                    .map_err(|e| e.to_string())?
                    .status
                    .unwrap_or_default();
                match condition(&s.core.conditions, DEGRADED) {
                    Some(d)
                        if s.phase == Some(Phase::Degraded)
                            && d.status == "True"
                            && d.reason == "PodUnschedulable"
                            && d.message.ends_with(" (and 1 more pods)") =>
                    {
                        Ok(d.clone())
                    }
                    other => Err(format!("phase {:?}, Degraded {other:?}", s.phase)),
                }
            },
        )
        .await;
        let path = format!("Cell {cell}: MultiGateway {gateway}: pod {gateway}-");
        assert!(
            degraded.message.starts_with(&path)
                && degraded.message.contains("cannot be scheduled: 0/")
                && degraded
                    .message
                    .contains("didn't match Pod's node affinity/selector"),
            "{}",
            degraded.message
        );
        let out = env
            .kubectl()
            .args(["get", "mgc", name, "-n", &ns.name])
            .output()
            .expect("kubectl runs");
        let listed = String::from_utf8_lossy(&out.stdout).into_owned();
        let row = listed
            .lines()
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>();
        assert_eq!(
            row.get(..4),
            Some(&[name, "Degraded", "false", "PodUnschedulable"][..]),
            "{listed}"
        );
        let status = api
            .get(name)
            .await
            .expect("cluster")
            .status
            .unwrap_or_default();
        let progressing = condition(&status.core.conditions, PROGRESSING).expect("Progressing");
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_str()),
            ("False", "PodUnschedulable")
        );
        // Without the selector the new pods run, the Pending ones go, and nothing is left
        // degraded.
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"gateway": {"nodeSelector": null}}})),
        )
        .await
        .expect("selector removed");
        let healthy = wait_healthy(&api, name).await.status.unwrap_or_default();
        let degraded = condition(&healthy.core.conditions, DEGRADED).expect("Degraded");
        assert_eq!(degraded.status, "False", "{degraded:?}");
        assert_eq!(healthy.gateway.ready_replicas, 2);
    })
    .await;
}

/// Deleting a namespace while its cluster is being created is a normal moment, not an error:
/// what the handlers could not write there (refused by the terminating namespace, or gone) is
/// logged as information, never at ERROR, and they do not crash.
#[tokio::test]
async fn deleting_the_namespace_during_creation_logs_no_error() {
    let client = admin().await;
    with_namespace(&client, "ch-ns-gone", |client, ns| async move {
        let (mut cluster_handler, mut resource_handler) = both_handlers(&ns.name).await;
        let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &ns.name);
        api.create(&PostParams::default(), &sample("multi-cell-cluster.yaml"))
            .await
            .expect("cluster created");
        let pools: Api<MultiPooler> = Api::namespaced(client.clone(), &ns.name);
        wait_until("a MultiPooler to exist", TIMEOUT, || async {
            let n = pools
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            if n > 0 {
                Ok(())
            } else {
                Err("none yet".to_string())
            }
        })
        .await;
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        namespaces
            .delete(&ns.name, &DeleteParams::background())
            .await
            .expect("namespace deleted");
        wait_until("the namespace to be gone", TIMEOUT, || async {
            match namespaces
                .get_opt(&ns.name)
                .await
                .map_err(|e| e.to_string())?
            {
                None => Ok(()),
                Some(n) => Err(format!("{:?}", n.status.and_then(|s| s.phase))),
            }
        })
        .await;
        for handler in [&mut cluster_handler, &mut resource_handler] {
            assert!(handler.is_running(), "{}", handler.log_tail(20));
            let errors: Vec<_> = handler
                .log_lines()
                .into_iter()
                .filter(|l| l["level"] == "ERROR")
                .collect();
            let going_away = handler
                .log_lines()
                .into_iter()
                .filter(|l| {
                    l["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("going away"))
                })
                .count();
            eprintln!("{going_away} reconciles stopped as going away");
            assert!(errors.is_empty(), "{errors:#?}");
        }
    })
    .await;
}

/// Waits until the `Ready` condition of `name` is False with `reason`, and returns it.
async fn wait_for_ready_reason<K>(
    api: &Api<K>,
    name: &str,
    reason: &str,
    status: impl Fn(&K) -> Option<&ComponentStatus>,
) -> Condition
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    wait_until(
        &format!("{name} to be Ready=False with {reason}"),
        TIMEOUT,
        || async {
            let object = api.get(name).await.map_err(|e| e.to_string())?;
            let conditions = status(&object)
                .map(|s| s.conditions.clone())
                .unwrap_or_default();
            match condition(&conditions, READY) {
                Some(c) if c.status == "False" && c.reason == reason => Ok(c.clone()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

#[tokio::test]
async fn volumes_go_with_the_cluster_unless_retained_and_are_adopted_only_when_asked() {
    let client = admin().await;
    with_namespace(&client, "ch-volumes", |client, ns| async move {
        let (_cluster_handler, resource_handler) = both_handlers(&ns.name).await;
        let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &ns.name);

        // Delete (the default): the claims go with the cluster.
        healthy_with_claims(&client, &api, &ns.name, &sample("minimal-cluster.yaml")).await;
        delete_and_wait(&api).await;
        wait_until(
            "the data claims to be deleted with the cluster",
            TIMEOUT,
            || async {
                let left = data_claims(&client, &ns.name).await?;
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("left: {:?}", left.keys().collect::<Vec<_>>()))
                }
            },
        )
        .await;

        // Retain: the claims outlive the cluster.
        let mut retained = sample("minimal-cluster.yaml");
        retained.spec.volume_retention = Some(VolumeRetention::Retain);
        let old = healthy_with_claims(&client, &api, &ns.name, &retained).await;
        delete_and_wait(&api).await;
        let kept = data_claims(&client, &ns.name).await.expect("claims listed");
        assert_eq!(kept, old, "every retained claim is still there, unchanged");

        // A new cluster of the same name refuses them: nothing starts on the old data.
        api.create(&PostParams::default(), &retained)
            .await
            .expect("cluster created again");
        let [etcd, pooler] = stateful_sets();
        let etcds: Api<Etcd> = Api::namespaced(client.clone(), &ns.name);
        let cond = wait_for_ready_reason(&etcds, &etcd, "VolumesFromAnotherObject", |e: &Etcd| {
            e.status.as_ref()
        })
        .await;
        println!("Etcd {etcd} Ready: {}", cond.message);
        for i in 0..3 {
            let claim = format!("data-{etcd}-{i}");
            assert!(
                cond.message.contains(&claim),
                "names {claim}: {}",
                cond.message
            );
        }
        assert!(
            cond.message
                .contains("spec.adoptVolumes: true on MultigresCluster minimal"),
            "says where to adopt them: {}",
            cond.message
        );
        let poolers: Api<MultiPooler> = Api::namespaced(client.clone(), &ns.name);
        let cond = wait_for_ready_reason(
            &poolers,
            &pooler,
            "VolumesFromAnotherObject",
            |p: &MultiPooler| p.status.as_ref(),
        )
        .await;
        println!("MultiPooler {pooler} Ready: {}", cond.message);
        let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
        for sts in [&etcd, &pooler] {
            assert!(
                statefulsets.get_opt(sts).await.expect("get").is_none(),
                "StatefulSet {sts} is not created over another object's claims"
            );
        }
        // Retried with a growing backoff, not in a loop.
        let object = format!("{}/{etcd}", ns.name);
        let delays = wait_until(
            "two retries of the refused Etcd in the handler log",
            TIMEOUT,
            || async {
                let delays: Vec<u64> = resource_handler
                    .log_lines()
                    .into_iter()
                    .filter(|l| {
                        l["level"] == "WARN"
                            && l["object"].as_str() == Some(object.as_str())
                            && l["category"] == "foreign_volumes"
                    })
                    .filter_map(|l| l["retry_in_secs"].as_u64())
                    .collect();
                if delays.len() >= 2 {
                    Ok(delays)
                } else {
                    Err(format!(
                        "delays so far {delays:?}: {}",
                        resource_handler.log_tail(5)
                    ))
                }
            },
        )
        .await;
        // The delay doubles up to its 5-minute cap.
        assert!(
            delays.windows(2).all(|w| w[0] < w[1] || w[1] == 300),
            "each retry waits longer: {delays:?}"
        );

        // Asked to, it adopts them and runs on the old claims rather than new ones.
        api.patch(
            VOLUMES_CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"adoptVolumes": true}})),
        )
        .await
        .expect("adoptVolumes set");
        wait_healthy(&api, VOLUMES_CLUSTER).await;
        let adopted = data_claims(&client, &ns.name).await.expect("claims listed");
        assert_eq!(
            adopted, old,
            "the same claims, still labelled with the first objects' uids"
        );
    })
    .await;
}

#[tokio::test]
async fn a_backup_claim_no_storage_can_provision_is_reported_on_the_cluster() {
    let client = admin().await;
    with_namespace(&client, "ch-backup-pending", |client, ns| async move {
        let (_c, _r) = both_handlers(&ns.name).await;
        let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &ns.name);
        let mut cluster = sample("minimal-cluster.yaml");
        // A class no provisioner serves: the generated claim stays Pending, and so do the
        // pooler pods that mount it.
        cluster.spec.backup = Some(multigres_api::crd::BackupSpec {
            filesystem: Some(multigres_api::crd::FilesystemBackupSpec {
                claim_name: None,
                storage: Some(multigres_api::crd::StorageSpec {
                    size: None,
                    storage_class_name: Some("no-such-class".into()),
                }),
            }),
            s3: None,
        });
        api.create(&PostParams::default(), &cluster)
            .await
            .expect("cluster created");
        // Reported once the claim has been Pending for a minute.
        let cond = wait_for_ready_reason(&api, "minimal", "BackupVolumePending", |c| {
            c.status.as_ref().map(|s| &s.core)
        })
        .await;
        assert!(
            cond.message.starts_with(
                "PersistentVolumeClaim minimal-backups for the backups has been Pending for "
            ),
            "the message names the claim: {}",
            cond.message
        );
    })
    .await;
}
