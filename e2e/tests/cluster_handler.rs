//! Both handlers as separate processes turn the sample MultigresClusters into running
//! workloads: Healthy, scaling through the cluster spec, removing a cell, deleting the cluster,
//! and no writes at all while nothing changes.

use std::time::Duration;

use e2e::process::{Handler, start_handler, start_in_namespace};
use e2e::{TestEnv, install_crds, wait_until, with_namespace};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use shared::crd::{Etcd, MultigresCluster};
use shared::meta::cluster_etcd_name;
use shared::status::{READY, condition};

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
        let writes = (
            cluster_handler.api_writes().await,
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
            "writes while steady (cluster-handler, resource-handler):\n{}\n{}",
            cluster_handler.metrics().await,
            resource_handler.metrics().await
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
        cluster.spec.postgres = Some(shared::crd::PostgresSpec {
            password_secret_ref: Some(shared::crd::SecretKeyRef {
                name: "team-db-password".into(),
                key: Some("pw".into()),
            }),
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
                .get_opt(&shared::meta::generated_password_secret("minimal"))
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
        let cond = wait_until("Ready=False with TopologyUnavailable", TIMEOUT, || async {
            let c = api.get("minimal").await.map_err(|e| e.to_string())?;
            let s = c.status.unwrap_or_default();
            match condition(&s.core.conditions, READY) {
                Some(c) if c.status == "False" && c.reason == "TopologyUnavailable" => {
                    Ok(c.clone())
                }
                other => Err(format!("{other:?}")),
            }
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
            Api::<shared::crd::Cell>::namespaced(client.clone(), &ns.name)
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
