//! A minimal MultigresCluster on the real node is a database: Healthy with a primary, psql
//! through multigateway on 5432 creates a table and reads back what it wrote, the second pooler
//! streams from the primary, a second gateway serves too, the creation is one trace across both
//! handlers and the API server, and deleting the cluster leaves nothing behind.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::cluster::cell_objects;
use e2e::data_plane::{
    cluster_pods, create_psql_client, database_cluster, handlers, on_real_node, psql, sql_until,
    wait_primary,
};
use e2e::real_node;
use e2e::tempo::Tempo;
use e2e::{TestEnv, install_crds, wait_until, with_namespace};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use multigres_api::crd::MultigresCluster;
use serde_json::json;

const CLUSTER: &str = "db";
const TIMEOUT: Duration = Duration::from_secs(600);

#[tokio::test]
async fn a_minimal_cluster_serves_sql_through_the_gateway_and_replicates() {
    let env = TestEnv::load();
    let client = e2e::k8s::admin_client(&env).await;
    install_crds(&client).await;
    real_node::ensure(&env, &client).await;
    with_namespace(&client, "database", |client, ns| async move {
        let ns = ns.name;
        let _handlers = handlers(&env, &ns).await;
        let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &ns);
        let started = Instant::now();
        api.create(&PostParams::default(), &database_cluster(CLUSTER, 2))
            .await
            .expect("cluster created");
        let (_, [gateway, _, _]) = cell_objects(CLUSTER, "zone-a");
        create_psql_client(&client, &ns, CLUSTER).await;
        let healthy = wait_primary(&api, CLUSTER).await;
        eprintln!("Healthy with {:?} after {:?}", healthy.shard, started.elapsed());

        // The creation's trace spans both handlers and the API server; the Multigres processes'
        // own spans are in Tempo for the same time window.
        let tempo = Tempo::new(&env.tempo_url);
        let creation = healthy.core.last_trace_id.clone().expect("lastTraceId");
        // The whole creation: the etcd, the topology registration once it answers, the cells
        // and their components, up to the reconcile that saw the cluster Healthy.
        let (services, spans) = wait_until("the whole creation in one trace across both handlers and the API server", TIMEOUT, || async {
            let spans = tempo.trace(&creation).await?.unwrap_or_default();
            let services: BTreeSet<String> = spans.iter().map(|s| s.service.clone()).collect();
            let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
            let wanted = ["multigres-cluster-handler", "multigres-resource-handler", "apiserver"];
            let steps = ["reconcile Etcd", "register topology", "reconcile Cell", "reconcile MultiPooler", "reconcile MultiGateway", "reconcile MultiOrch"];
            let ready = spans.iter().any(|s| s.name == "reconcile MultigresCluster" && s.events.iter().any(|(e, _)| e == "generation ready"));
            if wanted.iter().all(|w| services.contains(*w)) && steps.iter().all(|n| names.contains(n)) && ready {
                Ok((services, spans))
            } else {
                Err(format!("services {services:?}, steps {names:?}, generation ready event: {ready}"))
            }
        })
        .await;
        let start = spans.iter().map(|s| s.start_ns).min().unwrap_or_default();
        let end = spans.iter().map(|s| s.end_ns).max().unwrap_or_default();
        eprintln!("creation trace {creation}: {} spans over {:.1}s, {services:?}", spans.len(), (end - start) as f64 / 1e9);
        let window = started.elapsed() + Duration::from_secs(60);
        let query = format!(r#"{{ resource.k8s.namespace.name = "{ns}" && resource.service.name =~ "multigateway|multiorch|multipooler|pgctld" }}"#);
        wait_until("spans of the Multigres processes in the same time window", TIMEOUT, || async {
            let ids = tempo.search(&query, window).await?;
            if ids.is_empty() { Err("none yet".to_string()) } else { Ok(ids) }
        })
        .await;

        // SQL through multigateway on 5432.
        let sql = |q: &'static str| sql_until(&env, &ns, &gateway, q);
        sql("CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, note text)").await;
        sql("INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 1000) g ON CONFLICT DO NOTHING").await;
        assert_eq!(sql("SELECT count(*) FROM items").await, "1000");

        // The second pooler streams from the primary, and the status says so.
        wait_until("a streaming standby, in postgres and in the status", TIMEOUT, || async {
            let n = psql(&env, &ns, &gateway, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")?;
            let s = api.get(CLUSTER).await.map_err(|e| e.to_string())?.status.unwrap_or_default();
            match s.shard {
                Some(shard) if n == "1" && shard.standbys == 1 && shard.streaming == 1 => Ok(shard),
                other => Err(format!("{n} streaming, status {other:?}")),
            }
        })
        .await;

        // Two gateways, each answering.
        api.patch(CLUSTER, &PatchParams::default(), &Patch::Merge(json!({"spec": {"gateway": on_real_node(json!({"replicas": 2}))}})))
            .await
            .expect("gateway scaled");
        let ips = wait_until("two ready gateway pods", TIMEOUT, || async {
            let pods = cluster_pods(&client, &ns, CLUSTER).await?;
            let ips: Vec<String> = pods
                .iter()
                .filter(|p| p.metadata.labels.as_ref().and_then(|l| l.get("app.kubernetes.io/component")).map(String::as_str) == Some("multigateway"))
                .filter(|p| p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True")))
                .filter_map(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()))
                .collect();
            if ips.len() == 2 { Ok(ips) } else { Err(format!("{ips:?}")) }
        })
        .await;
        for ip in ips {
            let count = sql_until(&env, &ns, &ip, "SELECT count(*) FROM items").await;
            assert_eq!(count, "1000", "gateway {ip}");
        }

        // Deleting the cluster takes everything with it: pods, Services, the generated Secret,
        // and the claims (the etcd's with the topology records, the poolers', the backups').
        api.delete(CLUSTER, &DeleteParams::foreground())
            .await
            .expect("cluster deleted");
        let selector = ListParams::default().labels(&format!("multigres.com/cluster={CLUSTER}"));
        wait_until("nothing of the cluster left", TIMEOUT, || async {
            let mut left = Vec::new();
            let names = |items: Vec<String>, kind: &'static str| items.into_iter().map(move |n| format!("{kind} {n}"));
            let pods = Api::<Pod>::namespaced(client.clone(), &ns).list(&selector).await.map_err(|e| e.to_string())?;
            left.extend(names(pods.items.iter().filter_map(|p| p.metadata.name.clone()).collect(), "Pod"));
            let services = Api::<Service>::namespaced(client.clone(), &ns).list(&selector).await.map_err(|e| e.to_string())?;
            left.extend(names(services.items.iter().filter_map(|s| s.metadata.name.clone()).collect(), "Service"));
            let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.map_err(|e| e.to_string())?;
            left.extend(names(claims.items.iter().filter_map(|c| c.metadata.name.clone()).collect(), "PersistentVolumeClaim"));
            if Api::<Secret>::namespaced(client.clone(), &ns).get_opt(&multigres_api::meta::generated_password_secret(CLUSTER)).await.map_err(|e| e.to_string())?.is_some() {
                left.push("the generated password Secret".into());
            }
            if left.is_empty() { Ok(()) } else { Err(format!("left: {left:?}")) }
        })
        .await;
    })
    .await;
}
