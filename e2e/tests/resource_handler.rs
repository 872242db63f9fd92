//! The resource-handler, as a real process against the local control plane, turns each
//! component kind into workloads that kwok makes Ready, follows scaling, repairs drift, costs no
//! writes when nothing changes, and leaves garbage collection to Kubernetes.

use std::fmt::Debug;
use std::time::Duration;

use e2e::process::Handler;
use e2e::{TestEnv, install_crds, wait_until, with_namespace};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::core::NamespaceResourceScope;
use kube::{Api, Client, Resource, ResourceExt};
use multigres_api::conditions::{READY, condition};
use multigres_api::crd::{ComponentStatus, Etcd, MultiGateway, MultiOrch, MultiPooler};
use multigres_api::meta::{LABEL_MANAGED_BY, RESOURCE_HANDLER_MANAGER};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(90);

/// Component kinds under test, with how to read their status.
trait Kind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    fn status_of(&self) -> Option<&ComponentStatus>;
}
macro_rules! kind {
    ($($t:ty),*) => {$(impl Kind for $t { fn status_of(&self) -> Option<&ComponentStatus> { self.status.as_ref() } })*};
}
kind!(Etcd, MultiGateway, MultiOrch, MultiPooler);

/// The workload a component becomes.
#[derive(Clone, Copy, Debug)]
enum WorkloadKind {
    StatefulSet,
    Deployment,
}

async fn start(ns: &str) -> Handler {
    e2e::process::start_in_namespace("resource-handler", ns, "2s").await
}

async fn admin() -> Client {
    let env = TestEnv::load();
    let client = e2e::k8s::admin_client(&env).await;
    install_crds(&client).await;
    client
}

/// Replicas the workload asks for, and its owner reference's uid.
async fn workload_shape(
    client: &Client,
    ns: &str,
    kind: WorkloadKind,
    name: &str,
) -> Result<(i32, String, String), String> {
    let (replicas, meta) = match kind {
        WorkloadKind::StatefulSet => {
            let s = Api::<StatefulSet>::namespaced(client.clone(), ns)
                .get_opt(name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("no StatefulSet yet")?;
            (
                s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                s.metadata,
            )
        }
        WorkloadKind::Deployment => {
            let d = Api::<Deployment>::namespaced(client.clone(), ns)
                .get_opt(name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("no Deployment yet")?;
            (
                d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                d.metadata,
            )
        }
    };
    let owner = meta
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid)
        .unwrap_or_default();
    let managed_by = meta
        .labels
        .unwrap_or_default()
        .get(LABEL_MANAGED_BY)
        .cloned()
        .unwrap_or_default();
    Ok((replicas, owner, managed_by))
}

async fn wait_status<K: Kind>(api: &Api<K>, name: &str, ready_replicas: i32) -> K {
    wait_until(&format!("{name} Ready with {ready_replicas} ready replicas"), TIMEOUT, || async {
        let obj = api.get(name).await.map_err(|e| e.to_string())?;
        let status = obj.status_of().cloned().unwrap_or_default();
        let ready = condition(&status.conditions, READY).map(|c| (c.status.clone(), c.reason.clone()));
        if status.ready && status.ready_replicas == ready_replicas && status.replicas == ready_replicas && status.observed_generation == obj.meta().generation {
            Ok(obj)
        } else {
            Err(format!("status: ready={} {}/{} observedGeneration={:?} generation={:?} Ready={ready:?}", status.ready, status.ready_replicas, status.replicas, status.observed_generation, obj.meta().generation))
        }
    })
    .await
}

/// The whole life of one component object.
async fn lifecycle<K: Kind>(
    prefix: &str,
    object: Value,
    workload: WorkloadKind,
    services: &[&str],
    replicas: i32,
    scaled: i32,
) {
    let client = admin().await;
    let services: Vec<String> = services.iter().map(|s| s.to_string()).collect();
    with_namespace(&client, prefix, |client, ns| async move {
        let handler = start(&ns.name).await;
        let api: Api<K> = Api::namespaced(client.clone(), &ns.name);
        let obj: K = serde_json::from_value(object).expect("component object");
        let name = obj.name_any();
        let created = api
            .create(&PostParams::default(), &obj)
            .await
            .expect("component created");
        let uid = created.uid().expect("uid");

        // Workloads appear with our labels, owned by the component.
        let (want, owner, managed_by) = wait_until("the workload", TIMEOUT, || {
            workload_shape(&client, &ns.name, workload, &name)
        })
        .await;
        assert_eq!(
            (want, owner.as_str(), managed_by.as_str()),
            (replicas, uid.as_str(), RESOURCE_HANDLER_MANAGER)
        );
        let svc_api: Api<Service> = Api::namespaced(client.clone(), &ns.name);
        for svc in &services {
            let s = wait_until(&format!("Service {svc}"), TIMEOUT, || async {
                svc_api
                    .get_opt(svc)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| "absent".to_string())
            })
            .await;
            assert!(
                s.owner_references()
                    .iter()
                    .any(|o| o.uid == uid && o.controller == Some(true)),
                "{svc} owned by the component"
            );
        }

        // kwok makes the pods Ready; the status follows.
        let ready = wait_status(&api, &name, replicas).await;
        let cond = condition(&ready.status_of().expect("status").conditions, READY)
            .cloned()
            .expect("Ready condition");
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("True", "AllReplicasReady")
        );

        // Scaling the component scales the workload and the status.
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": scaled}})),
        )
        .await
        .expect("scaled");
        wait_until("the workload to follow the scale", TIMEOUT, || async {
            let (r, _, _) = workload_shape(&client, &ns.name, workload, &name).await?;
            if r == scaled {
                Ok(())
            } else {
                Err(format!("replicas {r}"))
            }
        })
        .await;
        wait_status(&api, &name, scaled).await;

        // Steady state: several resyncs (every 2 s) and not a single write.
        let writes = handler.api_writes().await;
        let reconciles = handler.reconciles().await;
        wait_until("three more reconciles", TIMEOUT, || async {
            let now = handler.reconciles().await;
            if now >= reconciles + 3 {
                Ok(())
            } else {
                Err(format!("{} reconciles since", now - reconciles))
            }
        })
        .await;
        assert_eq!(
            handler.api_writes().await,
            writes,
            "writes during steady resyncs:\n{}\n{}",
            handler.metrics().await,
            handler.log_tail(30)
        );

        // Drift: a deleted Service comes back, a hand-edited replica count is put back.
        let first = services.first().expect("a Service").clone();
        let old_uid = svc_api.get(&first).await.expect("service").uid();
        svc_api
            .delete(&first, &DeleteParams::default())
            .await
            .expect("service deleted");
        wait_until(
            &format!("Service {first} to be recreated"),
            TIMEOUT,
            || async {
                match svc_api.get_opt(&first).await.map_err(|e| e.to_string())? {
                    Some(s) if s.uid() != old_uid => Ok(()),
                    other => Err(format!("uid {:?}", other.and_then(|s| s.uid()))),
                }
            },
        )
        .await;
        let intruder = PatchParams::apply("e2e-intruder").force();
        let edit = json!({"spec": {"replicas": scaled + 4}});
        match workload {
            WorkloadKind::StatefulSet => {
                let edit =
                    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": edit["spec"]});
                Api::<StatefulSet>::namespaced(client.clone(), &ns.name)
                    .patch(&name, &intruder, &Patch::Apply(&edit))
                    .await
                    .expect("edited");
            }
            WorkloadKind::Deployment => {
                let edit =
                    json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": edit["spec"]});
                Api::<Deployment>::namespaced(client.clone(), &ns.name)
                    .patch(&name, &intruder, &Patch::Apply(&edit))
                    .await
                    .expect("edited");
            }
        }
        wait_until(
            "the hand-edited replicas to be restored",
            TIMEOUT,
            || async {
                let (r, _, _) = workload_shape(&client, &ns.name, workload, &name).await?;
                if r == scaled {
                    Ok(())
                } else {
                    Err(format!("replicas {r}"))
                }
            },
        )
        .await;

        // Deleting the component garbage-collects its workloads.
        api.delete(&name, &DeleteParams::foreground())
            .await
            .expect("component deleted");
        wait_until(
            "the workload and Services to be garbage-collected",
            TIMEOUT,
            || async {
                let workload_left = workload_shape(&client, &ns.name, workload, &name)
                    .await
                    .is_ok();
                let mut left = Vec::new();
                for svc in &services {
                    if svc_api
                        .get_opt(svc)
                        .await
                        .map_err(|e| e.to_string())?
                        .is_some()
                    {
                        left.push(svc.clone());
                    }
                }
                if !workload_left && left.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "workload left: {workload_left}, services left: {left:?}"
                    ))
                }
            },
        )
        .await;
        drop(handler);
    })
    .await;
}

fn topo() -> Value {
    json!({"globalServerAddresses": "demo-etcd-client.default.svc:2379"})
}

#[tokio::test]
async fn etcd_lifecycle() {
    let obj = json!({"apiVersion": "multigres.com/v1alpha1", "kind": "Etcd", "metadata": {"name": "topo"}, "spec": {"replicas": 3, "storage": {"size": "1Gi"}}});
    lifecycle::<Etcd>(
        "rh-etcd",
        obj,
        WorkloadKind::StatefulSet,
        &["topo-peer", "topo-client"],
        3,
        // Etcd replicas cannot change after creation (control_plane.rs tests the refusal): the
        // scale step re-applies the same count.
        3,
    )
    .await;
}

#[tokio::test]
async fn gateway_lifecycle() {
    let obj = json!({"apiVersion": "multigres.com/v1alpha1", "kind": "MultiGateway", "metadata": {"name": "gw"}, "spec": {"cell": "zone-a", "replicas": 2, "topo": topo()}});
    lifecycle::<MultiGateway>("rh-gateway", obj, WorkloadKind::Deployment, &["gw"], 2, 3).await;
}

#[tokio::test]
async fn orch_lifecycle() {
    let obj = json!({"apiVersion": "multigres.com/v1alpha1", "kind": "MultiOrch", "metadata": {"name": "orch"}, "spec": {"cell": "zone-a", "replicas": 1, "topo": topo()}});
    lifecycle::<MultiOrch>("rh-orch", obj, WorkloadKind::Deployment, &["orch"], 1, 2).await;
}

#[tokio::test]
async fn pooler_lifecycle() {
    let obj = json!({"apiVersion": "multigres.com/v1alpha1", "kind": "MultiPooler", "metadata": {"name": "pool"}, "spec": {"cell": "zone-a", "replicas": 2, "topo": topo(), "storage": {"size": "5Gi"}}});
    lifecycle::<MultiPooler>("rh-pooler", obj, WorkloadKind::StatefulSet, &["pool"], 2, 1).await;
}

#[tokio::test]
async fn a_spec_the_builder_rejects_is_not_ready_with_a_reason_and_backs_off() {
    let client = admin().await;
    with_namespace(&client, "rh-invalid", |client, ns| async move {
        let handler = start(&ns.name).await;
        let api: Api<MultiGateway> = Api::namespaced(client.clone(), &ns.name);
        // A repository name longer than registries accept: the schema bounds the whole reference
        // only, the builder refuses the name.
        let image = format!("registry.example.com/{}:v1", "a".repeat(250));
        let obj: MultiGateway = serde_json::from_value(json!({
            "apiVersion": "multigres.com/v1alpha1", "kind": "MultiGateway", "metadata": {"name": "bad"},
            "spec": {"cell": "zone-a", "image": image, "topo": topo()}
        }))
        .expect("object");
        api.create(&PostParams::default(), &obj).await.expect("accepted by the API server");
        let cond = wait_until("Ready=False with the builder's reason", TIMEOUT, || async {
            let obj = api.get("bad").await.map_err(|e| e.to_string())?;
            let status = obj.status.unwrap_or_default();
            match condition(&status.conditions, READY) {
                Some(c) if c.status == "False" && c.reason == "InvalidImage" => Ok(c.clone()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert!(cond.message.contains(&image) && cond.message.contains("271 characters long"), "{}", cond.message);
        assert!(Api::<Deployment>::namespaced(client.clone(), &ns.name).get_opt("bad").await.expect("get").is_none());
        // Not a hot loop: over a 12 s observation window the backoff (5 s, 10 s, ...) allows only
        // a few tries. (The sleep is the measurement window, not a wait for a condition.)
        let before = handler.reconciles().await;
        tokio::time::sleep(Duration::from_secs(12)).await;
        let tries = handler.reconciles().await - before;
        assert!(tries <= 4, "{tries} reconciles in 12 s: a hot loop\n{}", handler.log_tail(20));
        let logged = handler.log_lines().into_iter().any(|l| l["level"] == "WARN" && l["object"].as_str() == Some(&format!("{}/bad", ns.name)) && l["error"].as_str().is_some_and(|e| e.contains("not a valid image reference")));
        assert!(logged, "no warning naming the object:\n{}", handler.log_tail(20));
    })
    .await;
}

/// `--max-concurrent-reconciles 1`: the MultiGateway controller's reconcile spans, read back
/// from Tempo, never overlap, though six gateways arrive at once; and all six still converge.
#[tokio::test]
async fn a_controller_runs_no_more_reconciles_at_once_than_its_bound() {
    const GATEWAYS: usize = 6;
    let env = TestEnv::load();
    let client = admin().await;
    with_namespace(&client, "rh-bound", |client, ns| async move {
        let _handler = e2e::process::start_handler(
            "resource-handler",
            Some(&ns.name),
            &["--resync", "1h", "--max-concurrent-reconciles", "1"],
            e2e::process::otlp_env(&env.otlp_grpc_endpoint),
        )
        .await;
        let api: Api<MultiGateway> = Api::namespaced(client.clone(), &ns.name);
        let creates = (0..GATEWAYS).map(|i| {
            let obj: MultiGateway = serde_json::from_value(json!({
                "apiVersion": "multigres.com/v1alpha1", "kind": "MultiGateway", "metadata": {"name": format!("gw{i}")},
                "spec": {"cell": "zone-a", "replicas": 1, "topo": topo()}
            }))
            .expect("object");
            let api = api.clone();
            async move { api.create(&PostParams::default(), &obj).await.expect("created") }
        });
        futures::future::join_all(creates).await;
        for i in 0..GATEWAYS {
            wait_status(&api, &format!("gw{i}"), 1).await;
        }

        let tempo = e2e::tempo::Tempo::new(&env.tempo_url);
        let query = format!("{{ span.k8s.namespace.name = \"{}\" && name = \"reconcile MultiGateway\" }}", ns.name);
        let spans = wait_until("a reconcile span of every gateway in Tempo", TIMEOUT, || {
            let (tempo, query) = (tempo.clone(), query.clone());
            async move {
                let mut spans = std::collections::BTreeMap::new();
                for id in tempo.search(&query, Duration::from_secs(900)).await? {
                    for s in tempo.trace(&id).await?.unwrap_or_default() {
                        if s.name == "reconcile MultiGateway" {
                            spans.insert(s.span_id.clone(), s);
                        }
                    }
                }
                let objects: std::collections::BTreeSet<_> =
                    spans.values().filter_map(|s| s.attributes.get("multigres.resource.name").cloned()).collect();
                if objects.len() == GATEWAYS {
                    Ok(spans.into_values().collect::<Vec<_>>())
                } else {
                    Err(format!("reconciled gateways in Tempo so far: {objects:?}"))
                }
            }
        })
        .await;
        let most = e2e::tempo::shape::most_at_once(&spans);
        let timeline: Vec<_> = spans.iter().map(|s| (s.start_ns, s.end_ns, s.attributes.get("multigres.resource.name"))).collect();
        assert_eq!(most, 1, "{most} reconciles overlapped with a bound of 1: {timeline:?}");
    })
    .await;
}
