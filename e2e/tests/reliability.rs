//! The operator keeps working, loses nothing and lets nothing in: a handler killed mid-job,
//! a trace backend that is down, a user fighting a handler over a field, forged trace
//! contexts, and secrets in a spec. (Outages of the API server and many clusters across
//! namespaces are in `disruption.rs`, which runs its tests one at a time.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use e2e::cluster::{TIMEOUT, sample, wait_healthy};
use e2e::process::{metric_sum, otlp_env, rss_kib, start_handler};
use e2e::tempo::shape::describe;
use e2e::tempo::{Span, Tempo};
use e2e::{TestEnv, install_crds, wait_until, with_namespace};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use multigres_api::crd::{Cell, Etcd, MultigresCluster};
use multigres_api::meta::{
    TRACEPARENT_ANNOTATION, TRACEPARENT_TS_ANNOTATION, cell_object_name, cluster_etcd_name,
};
use multigres_api::samples::{load, samples_dir};
use serde_json::json;

const RH: &str = "multigres-resource-handler";
const CH: &str = "multigres-cluster-handler";

async fn admin() -> (TestEnv, Client) {
    let env = TestEnv::load();
    let client = e2e::k8s::admin_client(&env).await;
    install_crds(&client).await;
    (env, client)
}

fn standalone_etcd(name: &str) -> Etcd {
    let sample = load(&samples_dir().join("standalone-etcd.yaml")).expect("sample");
    let mut etcd: Etcd = serde_json::from_value(sample.object).expect("an Etcd");
    etcd.metadata.name = Some(name.to_string());
    etcd
}

async fn wait_etcd_ready(api: &Api<Etcd>, name: &str) -> Etcd {
    wait_until(&format!("Etcd {name} Ready"), TIMEOUT, || async {
        let e = api.get(name).await.map_err(|e| e.to_string())?;
        let s = e.status.clone().unwrap_or_default();
        if s.ready && s.observed_generation == e.metadata.generation {
            Ok(e)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await
}

/// Every span of every trace in Tempo that touched namespace `ns` (searched by the namespace
/// attribute of the reconcile spans).
async fn traces_of_namespace(tempo: &Tempo, ns: &str) -> Vec<Span> {
    let query = format!("{{ span.k8s.namespace.name = \"{ns}\" }}");
    let ids = tempo
        .search(&query, Duration::from_secs(900))
        .await
        .unwrap_or_else(|e| panic!("search {query}: {e}"));
    let mut spans = Vec::new();
    for id in ids {
        spans.extend(tempo.trace(&id).await.ok().flatten().unwrap_or_default());
    }
    spans
}

#[tokio::test]
async fn a_cluster_handler_killed_mid_job_is_finished_by_its_restart_without_duplicates() {
    let (env, client) = admin().await;
    with_namespace(&client, "crash", |client, ns| async move {
        let ns = ns.name.clone();
        let traced = otlp_env(&env.otlp_grpc_endpoint);
        let args = ["--resync", "30s"];
        // Only the cluster-handler at first: it writes the Etcd and the Cells, each Cell writes
        // its components, and the cluster cannot become Healthy (no workloads yet).
        let mut first = start_handler("cluster-handler", Some(&ns), &args, traced.clone()).await;
        let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &ns);
        let mut cluster = sample("multi-cell-cluster.yaml");
        cluster.metadata.name = Some("crash".into());
        api.create(&PostParams::default(), &cluster).await.expect("created");
        let cells: Api<Cell> = Api::namespaced(client.clone(), &ns);
        let cell = cell_object_name("crash", "zone-a");
        wait_until("a Cell written and reconciled by the first process", TIMEOUT, || async {
            let c = cells.get_opt(&cell).await.map_err(|e| e.to_string())?.ok_or("no Cell yet")?;
            let observed = c.status.as_ref().and_then(|s| s.core.observed_generation);
            (observed == c.metadata.generation).then_some(c).ok_or("Cell status not written yet".to_string())
        })
        .await;
        first.kill().await;
        // The context the dead process left on the Cell (it may have rewritten it since).
        let stamped = cells.get(&cell).await.expect("Cell");
        let old_context = stamped
            .annotations()
            .get(TRACEPARENT_ANNOTATION)
            .cloned()
            .expect("a stamped Cell");
        let (old_trace, old_span) = e2e::tempo::traceparent_ids(&old_context).expect("a valid context");

        // The restart, then the resource-handler: the job is finished.
        let second = start_handler("cluster-handler", Some(&ns), &args, traced.clone()).await;
        let _resource = start_handler("resource-handler", Some(&ns), &args, traced).await;
        wait_healthy(&api, "crash").await;

        // Nothing twice: exactly the children the spec asks for.
        let etcds: BTreeSet<String> = Api::<Etcd>::namespaced(client.clone(), &ns)
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .iter()
            .map(|e| e.name_any())
            .collect();
        assert_eq!(etcds, BTreeSet::from([cluster_etcd_name("crash")]));
        let cell_names: BTreeSet<String> = cells.list(&Default::default()).await.expect("list").items.iter().map(|c| c.name_any()).collect();
        let expected: BTreeSet<String> = ["zone-a", "zone-b", "zone-c"].iter().map(|c| cell_object_name("crash", c)).collect();
        assert_eq!(cell_names, expected);
        let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), &ns).list(&Default::default()).await.expect("list").items.len();
        assert_eq!(statefulsets, 1 + 3, "one etcd and one pooler per cell");
        assert!(second.reconciles().await > 0);

        // The restarted process acted on a generation the first one had already handled: its
        // reconcile of the Cell is a new root trace linking to the context the first process
        // stamped. Its trace ids come from its own log lines (it wrote the Cell's status at least
        // once: the cluster only became Healthy after it started), each fetched from Tempo by id.
        let tempo = Tempo::new(&env.tempo_url);
        let root = wait_until("the restarted reconcile Cell, linked to the old context", TIMEOUT, || async {
            let ids: BTreeSet<String> = second
                .log_lines()
                .into_iter()
                .filter(|l| l["span"]["otel.name"] == "reconcile Cell" && l["span"]["multigres.resource.name"] == cell.as_str())
                .filter_map(|l| l["trace_id"].as_str().map(str::to_string))
                .collect();
            let mut seen = Vec::new();
            for id in &ids {
                let spans = tempo.trace(id).await?.unwrap_or_default();
                match spans.into_iter().find(|s| s.is_root() && s.name == "reconcile Cell" && s.service == CH) {
                    Some(root) if root.links.iter().any(|(trace, _)| trace == &old_trace) => return Ok(root),
                    Some(root) => seen.push(format!("{id}: links {:?}", root.links)),
                    None => seen.push(format!("{id}: no root reconcile Cell in Tempo yet")),
                }
            }
            Err(format!(
                "{} traces of the restarted reconcile Cell in its log: {seen:?}; spans exported {}, dropped {}",
                ids.len(),
                metric_sum(&second.metrics().await, "multigres_spans_exported_total", |_| true),
                metric_sum(&second.metrics().await, "multigres_spans_dropped_total", |_| true),
            ))
        })
        .await;
        assert!(
            root.links.contains(&(old_trace.clone(), old_span.clone())),
            "links {:?}, want the old apply span {}",
            root.links,
            old_context
        );
        assert_eq!(root.attributes.get("multigres.trace.parent").map(String::as_str), Some("linked"));
    })
    .await;
}

#[tokio::test]
async fn with_the_trace_backend_down_handlers_work_drop_spans_quietly_and_export_again_later() {
    let (env, client) = admin().await;
    with_namespace(&client, "blackhole", |client, ns| async move {
        let ns = ns.name.clone();
        // A port nothing listens on yet; later a proxy to Tempo's OTLP/gRPC receiver opens it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let args = ["--resync", "2s"];
        let cluster_handler =
            start_handler("cluster-handler", Some(&ns), &args, otlp_env(&endpoint)).await;
        let resource_handler =
            start_handler("resource-handler", Some(&ns), &args, otlp_env(&endpoint)).await;
        let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &ns);
        api.create(&PostParams::default(), &sample("minimal-cluster.yaml"))
            .await
            .expect("created");
        wait_healthy(&api, "minimal").await;
        let rss_start: Vec<u64> = [&cluster_handler, &resource_handler]
            .iter()
            .map(|h| rss_kib(h))
            .collect();
        // Keep the handlers busy (2 s resyncs, scaling) for a while with nowhere to send spans.
        for replicas in [3, 4, 3, 2] {
            api.patch(
                "minimal",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"gateway": {"replicas": replicas}}})),
            )
            .await
            .expect("scaled");
            wait_healthy(&api, "minimal").await;
        }
        for h in [&cluster_handler, &resource_handler] {
            let dropped = wait_until(
                &format!("{} to count dropped spans", h.name),
                TIMEOUT,
                || async {
                    let n = metric_sum(&h.metrics().await, "multigres_spans_dropped_total", |_| {
                        true
                    });
                    (n > 0).then_some(n).ok_or("none dropped yet".to_string())
                },
            )
            .await;
            let exported = metric_sum(&h.metrics().await, "multigres_spans_exported_total", |_| {
                true
            });
            assert_eq!(exported, 0, "{}: spans exported with no backend", h.name);
            // Warnings about the export are rate-limited, not one per span or per batch.
            let warnings = h
                .log_lines()
                .into_iter()
                .filter(|l| l["level"] == "WARN" || l["level"] == "ERROR")
                .filter(|l| l.to_string().to_lowercase().contains("export"))
                .count();
            println!(
                "{}: {dropped} spans dropped, {warnings} export warnings",
                h.name
            );
            assert!(
                warnings <= 2,
                "{}: {warnings} export warnings for {dropped} dropped spans:\n{}",
                h.name,
                h.log_tail(20)
            );
        }
        let rss_end: Vec<u64> = [&cluster_handler, &resource_handler]
            .iter()
            .map(|h| rss_kib(h))
            .collect();
        println!("RSS with the backend down (KiB): start {rss_start:?}, end {rss_end:?}");
        for (start, end) in rss_start.iter().zip(&rss_end) {
            assert!(
                *end < start + 32 * 1024,
                "RSS grew from {start} KiB to {end} KiB: is the span queue bounded?"
            );
        }

        // The backend comes back: spans flow again without a restart.
        let tempo_addr = env
            .otlp_grpc_endpoint
            .trim_start_matches("http://")
            .to_string();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("proxy port");
        let proxy = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let target = tempo_addr.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        api.patch(
            "minimal",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"gateway": {"replicas": 5}}})),
        )
        .await
        .expect("scaled");
        let healthy = wait_healthy(&api, "minimal").await;
        for h in [&cluster_handler, &resource_handler] {
            wait_until(&format!("{} to export again", h.name), TIMEOUT, || async {
                let n = metric_sum(&h.metrics().await, "multigres_spans_exported_total", |_| {
                    true
                });
                (n > 0)
                    .then_some(())
                    .ok_or("nothing exported yet".to_string())
            })
            .await;
        }
        for h in [&cluster_handler, &resource_handler] {
            let recovered = h
                .log_lines()
                .iter()
                .any(|l| l["message"] == "span export is working again");
            assert!(
                recovered,
                "{} did not log that export recovered:\n{}",
                h.name,
                h.log_tail(10)
            );
        }
        let trace_id = healthy
            .status
            .and_then(|s| s.core.last_trace_id)
            .expect("lastTraceId");
        let tempo = Tempo::new(&env.tempo_url);
        wait_until("the scaling trace in Tempo", TIMEOUT, || async {
            let spans = tempo.trace(&trace_id).await?.unwrap_or_default();
            let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
            (services.contains(CH) && services.contains(RH))
                .then_some(())
                .ok_or(format!("services so far: {services:?}"))
        })
        .await;
        proxy.abort();
    })
    .await;
}

#[tokio::test]
async fn a_user_fighting_the_handler_over_a_managed_field_loses_without_a_hot_loop() {
    let (_env, client) = admin().await;
    with_namespace(&client, "conflict", |client, ns| async move {
        let ns = ns.name.clone();
        let handler = start_handler("resource-handler", Some(&ns), &["--resync", "2s"], vec![]).await;
        let etcds: Api<Etcd> = Api::namespaced(client.clone(), &ns);
        etcds.create(&PostParams::default(), &standalone_etcd("fought")).await.expect("created");
        wait_etcd_ready(&etcds, "fought").await;
        let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        let statefulset_writes = || async {
            let text = handler.metrics().await;
            metric_sum(&text, "multigres_api_requests_total", |l| {
                l.contains(r#"resource="statefulsets""#) && l.contains(r#"verb="patch""#)
            })
        };
        let writes_before = statefulset_writes().await;
        // Another writer sets replicas again and again while the handler reconciles, both as
        // an update (kubectl scale/edit) and as a forced server-side apply that takes the field.
        let edits = 10;
        for i in 0..edits {
            let patch = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"replicas": 5}});
            let (params, patch) = if i % 2 == 0 {
                (PatchParams::default(), Patch::Merge(json!({"spec": {"replicas": 5}})))
            } else {
                (PatchParams::apply("someone-else").force(), Patch::Apply(patch))
            };
            statefulsets.patch("fought", &params, &patch).await.expect("edited");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // The handler's desired state wins.
        wait_until("replicas back to 1", TIMEOUT, || async {
            let s = statefulsets.get("fought").await.map_err(|e| e.to_string())?;
            let replicas = s.spec.and_then(|s| s.replicas);
            (replicas == Some(1)).then_some(()).ok_or(format!("replicas {replicas:?}"))
        })
        .await;
        // Settled: the extra pods are gone and the status says so (its last write).
        wait_until("Etcd status back to 1/1", TIMEOUT, || async {
            let s = etcds.get("fought").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
            (s.ready && s.replicas == 1 && s.ready_replicas == 1).then_some(()).ok_or(format!("{s:?}"))
        })
        .await;
        let writes_fight = statefulset_writes().await - writes_before;
        // No hot loop: at most one or two corrections per edit, and no write once they stop.
        assert!(writes_fight <= 2 * edits, "{writes_fight} StatefulSet writes for {edits} edits");
        let settled = handler.api_writes().await;
        let reconciles = handler.reconciles().await;
        wait_until("three quiet resyncs", Duration::from_secs(30), || async {
            ((handler.reconciles().await - reconciles) >= 3).then_some(()).ok_or("fewer than 3 reconciles".to_string())
        })
        .await;
        assert_eq!(handler.api_writes().await, settled, "the handler kept writing after the edits stopped");
        println!("{edits} edits by another writer, {writes_fight} corrective StatefulSet writes by the handler");
    })
    .await;
}

#[tokio::test]
async fn a_forged_or_garbage_trace_context_neither_breaks_nor_steers_the_handler() {
    let (env, client) = admin().await;
    with_namespace(&client, "forged", |client, ns| async move {
        let ns = ns.name.clone();
        let handler = start_handler("resource-handler", Some(&ns), &["--resync", "2s"], otlp_env(&env.otlp_grpc_endpoint)).await;
        let etcds: Api<Etcd> = Api::namespaced(client.clone(), &ns);
        let tempo = Tempo::new(&env.tempo_url);

        // Garbage: huge, unicode, almost-valid. The handler reconciles as if it were absent.
        let garbage = format!("00-{}-{}-01", "é".repeat(16), "z".repeat(16)) + &"\u{1F600}".repeat(2000);
        let mut etcd = standalone_etcd("garbage");
        etcd.metadata.annotations = Some(BTreeMap::from([
            (TRACEPARENT_ANNOTATION.to_string(), garbage),
            (TRACEPARENT_TS_ANNOTATION.to_string(), "-1".to_string()),
        ]));
        etcds.create(&PostParams::default(), &etcd).await.expect("created");
        wait_etcd_ready(&etcds, "garbage").await;
        let before = handler.reconciles().await;
        tokio::time::sleep(Duration::from_secs(6)).await; // an observation window: 3 resyncs
        let during = handler.reconciles().await - before;
        assert!(during <= 10, "{during} reconciles in 6 s with a 2 s resync: a loop");
        let query = format!("{{ resource.service.name = \"{RH}\" && span.multigres.resource.name = \"garbage\" && span.multigres.trace.parent = \"malformed\" }}");
        let id = wait_until("a reconcile of the garbage Etcd marked malformed", TIMEOUT, || async {
            tempo.search(&query, Duration::from_secs(900)).await?.into_iter().next().ok_or(format!("nothing matches {query} yet"))
        })
        .await;
        let spans = tempo.trace(&id).await.expect("trace").unwrap_or_default();
        // The first reconcile of the trace (follow-ups until Ready continue under it).
        let root = spans.iter().filter(|s| s.name == "reconcile Etcd").min_by_key(|s| s.start_ns).expect("reconcile span");
        assert!(root.is_root() && root.links.is_empty(), "a malformed context is neither joined nor linked:\n{}", describe(&spans));
        assert!(root.events.iter().any(|(name, attrs)| name.contains("malformed") || attrs.values().any(|v| v.contains("malformed"))), "no warning event:\n{root:?}");

        // A valid context written by someone else on a new generation is followed: that is
        // what the annotation is for (see the trust model in the README).
        let (forged_trace, forged_span) = e2e::tempo::new_ids();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        etcds
            .patch(
                "garbage",
                &PatchParams::default(),
                &Patch::Merge(json!({
                    "metadata": {"annotations": {
                        TRACEPARENT_ANNOTATION: format!("00-{forged_trace}-{forged_span}-01"),
                        TRACEPARENT_TS_ANNOTATION: now.to_string(),
                    }},
                    "spec": {"podLabels": {"example.com/forged": "yes"}},
                })),
            )
            .await
            .expect("patched");
        let joined = wait_until("the forged trace to get the reconcile", TIMEOUT, || async {
            let spans = tempo.trace(&forged_trace).await?.unwrap_or_default();
            spans.into_iter().filter(|s| s.name == "reconcile Etcd").min_by_key(|s| s.start_ns).ok_or("not yet".to_string())
        })
        .await;
        assert_eq!(joined.parent_span_id, forged_span);
        assert_eq!(joined.attributes.get("multigres.trace.parent").map(String::as_str), Some("joined"));
        wait_etcd_ready(&etcds, "garbage").await;

        // A user's own value (no stamp) arriving with a spec change joins that change, once.
        let change = |traceparent: String, label: &str| {
            Patch::Merge(json!({
                "metadata": {"annotations": {TRACEPARENT_ANNOTATION: traceparent, TRACEPARENT_TS_ANNOTATION: null}},
                "spec": {"podLabels": {"example.com/forged": label}},
            }))
        };
        let (user_trace, user_span) = e2e::tempo::new_ids();
        etcds.patch("garbage", &PatchParams::default(), &change(format!("00-{user_trace}-{user_span}-01"), "user")).await.expect("patched");
        let recorded = wait_trace_recorded(&etcds, "garbage").await;
        assert_eq!(recorded.as_deref(), Some(user_trace.as_str()), "the user's trace is the generation's");
        // The next change with the value left in place: a trace of its own, linked to it.
        etcds.patch("garbage", &PatchParams::default(), &change(format!("00-{user_trace}-{user_span}-01"), "later")).await.expect("patched");
        let later = wait_trace_recorded(&etcds, "garbage").await.expect("a sampled generation records its trace");
        assert_ne!(later, user_trace, "a value used once never joins again");
        let (root, spans) = wait_until("the later change's reconcile in Tempo", TIMEOUT, || async {
            let spans = tempo.trace(&later).await?.unwrap_or_default();
            let root = spans.iter().filter(|s| s.name == "reconcile Etcd").min_by_key(|s| s.start_ns).cloned();
            root.map(|r| (r, spans)).ok_or("no reconcile Etcd yet".to_string())
        })
        .await;
        assert!(root.is_root() && root.links.iter().any(|(_, span)| *span == user_span), "linked to the used value:\n{}", describe(&spans));
        // Flags 00: the change is not exported, and the status names no trace rather than one
        // that does not exist.
        let (unsampled_trace, unsampled_span) = e2e::tempo::new_ids();
        etcds.patch("garbage", &PatchParams::default(), &change(format!("00-{unsampled_trace}-{unsampled_span}-00"), "unsampled")).await.expect("patched");
        assert_eq!(wait_trace_recorded(&etcds, "garbage").await, None);
        // A sampled change after it reaches Tempo; by then the unsampled one would have too.
        let (after_trace, after_span) = e2e::tempo::new_ids();
        etcds.patch("garbage", &PatchParams::default(), &change(format!("00-{after_trace}-{after_span}-01"), "after")).await.expect("patched");
        assert_eq!(wait_trace_recorded(&etcds, "garbage").await.as_deref(), Some(after_trace.as_str()));
        wait_until("the sampled change's reconcile in Tempo", TIMEOUT, || async {
            let spans = tempo.trace(&after_trace).await?.unwrap_or_default();
            spans.iter().any(|s| s.name == "reconcile Etcd").then_some(()).ok_or("no reconcile Etcd yet".to_string())
        })
        .await;
        let unsampled = tempo.trace(&unsampled_trace).await.expect("tempo answers").unwrap_or_default();
        assert!(unsampled.is_empty(), "an unsampled change was exported:\n{}", describe(&unsampled));
    })
    .await;
}

/// `status.lastTraceId` of Etcd `name` once its status describes its current generation.
async fn wait_trace_recorded(etcds: &Api<Etcd>, name: &str) -> Option<String> {
    wait_until("the status of the current generation", TIMEOUT, || async {
        let etcd = etcds.get(name).await.map_err(|e| e.to_string())?;
        let status = etcd.status.clone().unwrap_or_default();
        if status.observed_generation == etcd.metadata.generation {
            Ok(status.last_trace_id)
        } else {
            Err(format!(
                "observed {:?} of {:?}",
                status.observed_generation, etcd.metadata.generation
            ))
        }
    })
    .await
}

#[tokio::test]
async fn a_secret_in_a_spec_never_reaches_spans_or_logs() {
    let (env, client) = admin().await;
    with_namespace(&client, "secret", |client, ns| async move {
        let ns = ns.name.clone();
        let traced = otlp_env(&env.otlp_grpc_endpoint);
        let args = ["--resync", "2s"];
        let cluster_handler =
            start_handler("cluster-handler", Some(&ns), &args, traced.clone()).await;
        let resource_handler = start_handler("resource-handler", Some(&ns), &args, traced).await;
        let secret = "postgres://admin:Sup3r-S3cret-Passw0rd@db:5432";
        let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &ns);
        let mut cluster = sample("minimal-cluster.yaml");
        cluster.metadata.name = Some("secretive".into());
        let mut spec = serde_json::to_value(&cluster.spec).expect("spec");
        spec["gateway"] = json!({"podAnnotations": {"example.com/dsn": secret}});
        spec["etcd"] = json!({"podAnnotations": {"example.com/dsn": secret}});
        cluster.spec = serde_json::from_value(spec).expect("spec with annotations");
        api.create(&PostParams::default(), &cluster)
            .await
            .expect("created");
        let healthy = wait_healthy(&api, "secretive").await;
        // The value did reach the workloads (so the test is not vacuous)...
        let etcd_sts = Api::<StatefulSet>::namespaced(client.clone(), &ns)
            .get(&cluster_etcd_name("secretive"))
            .await
            .expect("etcd sts");
        let pod_annotations = etcd_sts
            .spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations)
            .unwrap_or_default();
        assert_eq!(
            pod_annotations.get("example.com/dsn").map(String::as_str),
            Some(secret)
        );
        // ...and never a span attribute, event, status message or log line.
        let trace_id = healthy
            .status
            .and_then(|s| s.core.last_trace_id)
            .expect("lastTraceId");
        let tempo = Tempo::new(&env.tempo_url);
        wait_until("the creation trace in Tempo", TIMEOUT, || async {
            tempo
                .trace(&trace_id)
                .await?
                .filter(|s| s.len() > 20)
                .map(|_| ())
                .ok_or("not yet".to_string())
        })
        .await;
        let mut spans = traces_of_namespace(&tempo, &ns).await;
        spans.extend(
            tempo
                .trace(&trace_id)
                .await
                .expect("trace")
                .unwrap_or_default(),
        );
        // The postgres password the cluster-handler generated: in a Secret owned by the cluster,
        // mounted by the poolers, and in no span, log or status either.
        let generated = Api::<Secret>::namespaced(client.clone(), &ns)
            .get(&multigres_api::meta::generated_password_secret("secretive"))
            .await
            .expect("the generated password Secret");
        let cluster_uid = api
            .get("secretive")
            .await
            .expect("cluster")
            .uid()
            .unwrap_or_default();
        assert!(
            multigres_api::meta::is_controlled_by(&generated, &cluster_uid),
            "the Secret is owned by its cluster: {:?}",
            generated.metadata.owner_references
        );
        let password = generated
            .data
            .as_ref()
            .and_then(|d| d.get("password"))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .expect("a password");
        assert_eq!(password.len(), 64, "32 random bytes, hex-encoded");
        let status = serde_json::to_string(&api.get("secretive").await.expect("cluster").status)
            .expect("status json");
        assert!(
            !status.contains(&password),
            "the cluster's status carries the password"
        );
        let fragment = "S3cret";
        let leaks: Vec<String> = spans
            .iter()
            .filter(|s| {
                let events = s
                    .events
                    .iter()
                    .flat_map(|(n, a)| std::iter::once(n).chain(a.values()));
                s.attributes
                    .values()
                    .chain(events)
                    .chain([&s.status_message, &s.name])
                    .any(|v| v.contains(fragment) || v.contains(&password))
            })
            .map(|s| format!("{} {} {:?}", s.service, s.name, s.attributes))
            .collect();
        assert!(leaks.is_empty(), "spans carry the secret: {leaks:#?}");
        assert!(
            spans.len() > 20,
            "too few spans to prove anything: {}",
            spans.len()
        );
        for h in [&cluster_handler, &resource_handler] {
            let lines = std::fs::read_to_string(&h.log_path).unwrap_or_default();
            assert!(!lines.contains(fragment), "{} logged the secret", h.name);
            assert!(
                !lines.contains(&password),
                "{} logged the postgres password",
                h.name
            );
        }
        println!("{} spans and two logs checked for the secret", spans.len());
    })
    .await;
}
