//! Tests that disturb the whole control plane or watch every namespace, so they run one at a
//! time (a lock serialises them; cargo runs this binary after or before the others, never
//! alongside): an API server outage in the middle of converging, and many clusters created at
//! once in several namespaces.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::cluster::{sample, wait_healthy};
use e2e::process::{Handler, start_handler};
use e2e::{TestEnv, install_crds, with_namespace};
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::PostParams;
use kube::{Api, Client, Resource, ResourceExt};
use multigres_api::crd::{Cell, Etcd, MultiGateway, MultiOrch, MultiPooler, MultigresCluster};
use multigres_api::meta::{
    ComponentLabel, cell_component_name, cell_object_name, cluster_etcd_name,
};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn admin() -> Client {
    let client = e2e::k8s::admin_client(&TestEnv::load()).await;
    install_crds(&client).await;
    client
}

/// Both handlers watching every namespace.
async fn cluster_wide_handlers() -> [Handler; 2] {
    let args = ["--resync", "5s"];
    [
        start_handler("cluster-handler", None, &args, vec![]).await,
        start_handler("resource-handler", None, &args, vec![]).await,
    ]
}

fn names<K: Resource + Clone>(items: &[K]) -> BTreeSet<String> {
    items.iter().map(|o| o.name_any()).collect()
}

async fn list<K>(client: &Client, ns: &str) -> Vec<K>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .expect("list")
        .items
}

/// Exactly the objects minimal clusters `clusters` in `ns` need, each owned by a live object:
/// nothing duplicated, nothing orphaned.
async fn assert_exact_children(client: &Client, ns: &str, clusters: &[String]) {
    let cell = |c: &String| cell_object_name(c, "default");
    let part = |c: &String, p| cell_component_name(&cell(c), p);
    let want = |f: &dyn Fn(&String) -> String| clusters.iter().map(f).collect::<BTreeSet<_>>();
    let etcds: Vec<Etcd> = list(client, ns).await;
    let cells: Vec<Cell> = list(client, ns).await;
    let gateways: Vec<MultiGateway> = list(client, ns).await;
    let orchs: Vec<MultiOrch> = list(client, ns).await;
    let poolers: Vec<MultiPooler> = list(client, ns).await;
    let deployments: Vec<Deployment> = list(client, ns).await;
    let statefulsets: Vec<StatefulSet> = list(client, ns).await;
    assert_eq!(
        names(&etcds),
        want(&|c| cluster_etcd_name(c)),
        "Etcds in {ns}"
    );
    assert_eq!(names(&cells), want(&cell), "Cells in {ns}");
    assert_eq!(
        names(&gateways),
        want(&|c| part(c, ComponentLabel::Gateway)),
        "MultiGateways in {ns}"
    );
    assert_eq!(
        names(&orchs),
        want(&|c| part(c, ComponentLabel::Orch)),
        "MultiOrchs in {ns}"
    );
    assert_eq!(
        names(&poolers),
        want(&|c| part(c, ComponentLabel::Pooler)),
        "MultiPoolers in {ns}"
    );
    let mut workloads = want(&|c| part(c, ComponentLabel::Gateway));
    workloads.extend(want(&|c| part(c, ComponentLabel::Orch)));
    assert_eq!(names(&deployments), workloads, "Deployments in {ns}");
    let mut sets = want(&|c| cluster_etcd_name(c));
    sets.extend(want(&|c| part(c, ComponentLabel::Pooler)));
    assert_eq!(names(&statefulsets), sets, "StatefulSets in {ns}");
    let live: BTreeSet<String> = etcds
        .iter()
        .map(|o| o.uid())
        .chain(cells.iter().map(|o| o.uid()))
        .chain(gateways.iter().map(|o| o.uid()))
        .chain(orchs.iter().map(|o| o.uid()))
        .chain(poolers.iter().map(|o| o.uid()))
        .chain(
            list::<MultigresCluster>(client, ns)
                .await
                .iter()
                .map(|o| o.uid()),
        )
        .flatten()
        .collect();
    let owners = |refs: Vec<&[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]>| {
        refs.iter()
            .all(|r| r.len() == 1 && live.contains(&r[0].uid))
    };
    assert!(
        owners(etcds.iter().map(|o| o.owner_references()).collect())
            && owners(cells.iter().map(|o| o.owner_references()).collect())
            && owners(deployments.iter().map(|o| o.owner_references()).collect())
            && owners(statefulsets.iter().map(|o| o.owner_references()).collect()),
        "an object in {ns} without exactly one live owner"
    );
}

async fn create_clusters(client: &Client, ns: &str, prefix: &str, n: usize) -> Vec<String> {
    let api: Api<MultigresCluster> = Api::namespaced(client.clone(), ns);
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    join_all(names.iter().map(|name| {
        let api = api.clone();
        async move {
            let mut cluster = sample("minimal-cluster.yaml");
            cluster.metadata.name = Some(name.clone());
            api.create(&PostParams::default(), &cluster)
                .await
                .expect("created");
        }
    }))
    .await;
    names
}

async fn wait_all_healthy(client: &Client, ns: &str, clusters: &[String]) {
    let api: Api<MultigresCluster> = Api::namespaced(client.clone(), ns);
    for name in clusters {
        wait_healthy(&api, name).await;
    }
}

fn assert_alive(handlers: &mut [Handler]) {
    for h in handlers {
        assert!(h.is_running(), "{} exited:\n{}", h.name, h.log_tail(30));
        let panics: Vec<String> = h
            .log_lines()
            .into_iter()
            .map(|l| l.to_string())
            .filter(|l| l.contains("panicked"))
            .collect();
        assert!(panics.is_empty(), "{} panicked: {panics:#?}", h.name);
    }
}

#[tokio::test]
async fn both_handlers_survive_an_api_server_outage_mid_convergence() {
    let _serial = SERIAL.lock().await;
    let client = admin().await;
    with_namespace(&client, "outage-a", |client, a| async move {
        with_namespace(&client.clone(), "outage-b", |client, b| async move {
            let mut handlers = cluster_wide_handlers().await;
            let in_a = create_clusters(&client, &a.name, "a", 2).await;
            let in_b = create_clusters(&client, &b.name, "b", 2).await;
            // Mid-convergence: the first children exist, nothing is Healthy yet.
            e2e::wait_until("the first Etcd", Duration::from_secs(60), || async {
                let etcds: Vec<Etcd> = list(&client, &a.name).await;
                (!etcds.is_empty())
                    .then_some(())
                    .ok_or("none yet".to_string())
            })
            .await;
            let down = Duration::from_secs(15);
            let started = Instant::now();
            e2e::outage::restart_apiserver(&client, down).await;
            println!(
                "API server down {down:?}, ready again after {:.1}s",
                started.elapsed().as_secs_f64()
            );
            assert_alive(&mut handlers);
            let converging = Instant::now();
            wait_all_healthy(&client, &a.name, &in_a).await;
            wait_all_healthy(&client, &b.name, &in_b).await;
            println!(
                "all 4 clusters Healthy {:.1}s after the API server returned",
                converging.elapsed().as_secs_f64()
            );
            assert_alive(&mut handlers);
            assert_exact_children(&client, &a.name, &in_a).await;
            assert_exact_children(&client, &b.name, &in_b).await;
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn many_clusters_created_at_once_in_several_namespaces_converge() {
    let _serial = SERIAL.lock().await;
    let client = admin().await;
    with_namespace(&client, "many-a", |client, a| async move {
        with_namespace(&client.clone(), "many-b", |client, b| async move {
            let mut handlers = cluster_wide_handlers().await;
            let started = Instant::now();
            let (in_a, in_b) = futures::join!(
                create_clusters(&client, &a.name, "m", 8),
                create_clusters(&client, &b.name, "m", 8)
            );
            wait_all_healthy(&client, &a.name, &in_a).await;
            wait_all_healthy(&client, &b.name, &in_b).await;
            println!(
                "16 clusters in 2 namespaces Healthy in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            assert_alive(&mut handlers);
            assert_exact_children(&client, &a.name, &in_a).await;
            assert_exact_children(&client, &b.name, &in_b).await;
        })
        .await;
    })
    .await;
}
