//! One trace across both operators, in Tempo: both handlers run as processes exporting OTLP
//! (the cluster-handler over gRPC, the resource-handler over HTTP/protobuf), given only the
//! endpoint; a multi-cell cluster's `status.lastTraceId` leads to one trace spanning both
//! services and the API server.
//!
//! The handlers run with the admin kubeconfig (group `system:masters`), so the API server makes
//! its spans children of our client spans. (Running as ServiceAccounts, it starts its own traces
//! linked to ours instead; `control_plane.rs` proves both behaviours of the API server.)

use std::time::Duration;

use e2e::process::{Handler, HandlerOptions};
use e2e::tempo::shape::{descends_from, describe, named, orphans, overlap, parent};
use e2e::tempo::{Span, Tempo};
use e2e::{TestEnv, install_crds, wait_until, with_namespace};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use multigres_api::conditions::{DEGRADED, PROGRESSING, condition};
use multigres_api::crd::{Cell, ClusterStatus, MultiGateway, MultigresCluster, Phase};
use multigres_api::meta::{cell_object_name, cluster_etcd_name};
use multigres_api::samples::{load, samples_dir};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(120);
const CH: &str = "multigres-cluster-handler";
const RH: &str = "multigres-resource-handler";

async fn start(bin: &str, ns: &str, env: &TestEnv, otel: Vec<(&str, String)>) -> Handler {
    let mut otel: Vec<(String, String)> =
        otel.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    otel.push(("OTEL_BSP_SCHEDULE_DELAY".into(), "500".into()));
    let mut handler = Handler::start(
        bin,
        env,
        HandlerOptions {
            namespace: Some(ns.to_string()),
            args: vec!["--resync".into(), "30s".into()],
            env: otel,
        },
    );
    handler.wait_ready(Duration::from_secs(60)).await;
    handler
}

/// Both handlers, exporting to the test Tempo: gRPC for one, HTTP/protobuf for the other.
async fn traced_handlers(ns: &str, env: &TestEnv) -> (Handler, Handler) {
    let cluster = start(
        "cluster-handler",
        ns,
        env,
        vec![(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            env.otlp_grpc_endpoint.clone(),
        )],
    )
    .await;
    let resource = start(
        "resource-handler",
        ns,
        env,
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                env.otlp_http_endpoint.clone(),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
        ],
    )
    .await;
    (cluster, resource)
}

async fn wait_healthy(api: &Api<MultigresCluster>, name: &str) -> MultigresCluster {
    wait_until(&format!("{name} Healthy"), TIMEOUT, || async {
        let c = api.get(name).await.map_err(|e| e.to_string())?;
        let s = c.status.clone().unwrap_or_default();
        if s.phase == Some(Phase::Healthy) && s.core.observed_generation == c.metadata.generation {
            Ok(c)
        } else {
            Err(format!("{:?}", s.phase))
        }
    })
    .await
}

/// `kubectl describe <kind> <name>` as the admin.
fn describe_with_kubectl(env: &TestEnv, ns: &str, kind: &str, name: &str) -> String {
    kubectl(env, &["describe", "-n", ns, kind, name])
}

/// What `kubectl ARGS` prints; fails the test when kubectl does.
fn kubectl(env: &TestEnv, args: &[&str]) -> String {
    let out = env.kubectl().args(args).output().expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates cluster `name` with a gateway image the schema lets through but the builder refuses
/// (a repository name longer than registries accept); returns the image.
async fn create_with_unbuildable_gateway(api: &Api<MultigresCluster>, name: &str) -> String {
    let image = format!("registry.example.com/{}:v1", "g".repeat(250));
    let cluster: MultigresCluster = serde_json::from_value(json!({
        "apiVersion": "multigres.com/v1alpha1", "kind": "MultigresCluster", "metadata": {"name": name},
        "spec": {"gateway": {"image": image}}
    }))
    .expect("cluster");
    api.create(&PostParams::default(), &cluster)
        .await
        .expect("created");
    image
}

/// The status of cluster `name` now.
async fn cluster_status(api: &Api<MultigresCluster>, name: &str) -> ClusterStatus {
    api.get(name)
        .await
        .expect("cluster")
        .status
        .unwrap_or_default()
}

/// Polls Tempo until trace `id` satisfies `check` (spans arrive in batches from three processes).
async fn wait_for_trace(
    tempo: &Tempo,
    id: &str,
    what: &str,
    check: impl Fn(&[Span]) -> Result<(), String>,
) -> Vec<Span> {
    wait_until(what, TIMEOUT, || async {
        let spans = tempo.trace(id).await?.unwrap_or_default();
        match check(&spans) {
            Ok(()) => Ok(spans),
            Err(missing) => Err(format!(
                "{missing}\n-- trace {id} so far:\n{}",
                describe(&spans)
            )),
        }
    })
    .await
}

/// The cross-process structure of the creation trace of a cluster with `cells` cells.
fn creation_shape(spans: &[Span], cells: usize) -> Result<(), String> {
    let roots: Vec<&Span> = spans.iter().filter(|s| s.is_root()).collect();
    let [root] = roots[..] else {
        return Err(format!("expected one root, got {}", roots.len()));
    };
    if (root.service.as_str(), root.name.as_str()) != (CH, "reconcile MultigresCluster") {
        return Err(format!("root is {} {}", root.service, root.name));
    }
    let apply_cells = named(spans, CH, "apply Cell");
    let apply_etcd = named(spans, CH, "apply Etcd");
    if apply_cells.len() != cells || apply_etcd.len() != 1 {
        return Err(format!(
            "apply Cell x{}, apply Etcd x{}",
            apply_cells.len(),
            apply_etcd.len()
        ));
    }
    // The Cell hop: cluster-handler -> annotation -> cluster-handler. Each Cell's first
    // reconcile joins under its apply span; its follow-ups until Ready continue under that.
    let cell_reconciles = named(spans, CH, "reconcile Cell");
    let joined = cell_reconciles
        .iter()
        .filter(|r| parent(spans, r).is_some_and(|p| p.name == "apply Cell" && p.service == CH))
        .count();
    let continued = cell_reconciles
        .iter()
        .filter(|r| parent(spans, r).is_some_and(|p| p.name == "reconcile Cell"))
        .count();
    if joined != cells || joined + continued != cell_reconciles.len() {
        return Err(format!(
            "{joined}/{cells} reconcile Cell joined under apply Cell, {continued} continued, {} in all",
            cell_reconciles.len()
        ));
    }
    // The reconcile that saw the cluster Healthy ends the generation's trace.
    if !named(spans, CH, "reconcile MultigresCluster")
        .iter()
        .any(|r| r.events.iter().any(|(name, _)| name == "generation ready"))
    {
        return Err("no reconcile MultigresCluster with the generation ready event".into());
    }
    // The process hop: the resource-handler's reconciles under the cluster-handler's applies.
    for (kind, count) in [
        ("Etcd", 1),
        ("MultiGateway", cells),
        ("MultiOrch", cells),
        ("MultiPooler", cells),
    ] {
        let reconciles = named(spans, RH, &format!("reconcile {kind}"));
        let joined = reconciles
            .iter()
            .filter(|r| {
                parent(spans, r)
                    .is_some_and(|p| p.service == CH && p.name == format!("apply {kind}"))
            })
            .count();
        if joined != count {
            return Err(format!(
                "{joined}/{count} reconcile {kind} joined under apply {kind}"
            ));
        }
    }
    // Kubernetes API client spans under the reconciles of both handlers, and the API server's
    // spans as their children.
    for service in [CH, RH] {
        let clients: Vec<&Span> = spans
            .iter()
            .filter(|s| s.service == service && s.kind == "SPAN_KIND_CLIENT")
            .collect();
        if clients.is_empty()
            || !clients.iter().all(|c| {
                spans
                    .iter()
                    .any(|r| r.name.starts_with("reconcile ") && descends_from(spans, c, r))
            })
        {
            return Err(format!(
                "{service}: {} client spans, not all under a reconcile",
                clients.len()
            ));
        }
        let server_children = spans
            .iter()
            .filter(|s| {
                s.service == "apiserver"
                    && parent(spans, s)
                        .is_some_and(|p| p.service == service && p.kind == "SPAN_KIND_CLIENT")
            })
            .count();
        if server_children == 0 {
            return Err(format!("no apiserver span under a {service} client span"));
        }
    }
    for service in [CH, RH] {
        if !spans
            .iter()
            .any(|s| s.service == service && s.name == "update status")
        {
            return Err(format!("no update status span from {service}"));
        }
    }
    let orphans = orphans(spans);
    if !orphans.is_empty() {
        return Err(format!("{} orphan spans", orphans.len()));
    }
    Ok(())
}

#[tokio::test]
async fn one_trace_spans_both_handlers_and_the_api_server() {
    let env = TestEnv::load();
    let client: Client = e2e::k8s::admin_client(&env).await;
    install_crds(&client).await;
    with_namespace(&client, "trace", |client, ns| async move {
        let env = TestEnv::load();
        let (_cluster_handler, resource_handler) = traced_handlers(&ns.name, &env).await;
        let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &ns.name);
        let sample = load(&samples_dir().join("multi-cell-cluster.yaml")).expect("sample");
        let cluster: MultigresCluster = serde_json::from_value(sample.object).expect("cluster");
        let started = std::time::Instant::now();
        api.create(&PostParams::default(), &cluster).await.expect("created");
        let healthy = wait_healthy(&api, "multi").await;
        let to_healthy = started.elapsed();
        let trace_id = healthy.status.and_then(|s| s.core.last_trace_id).expect("status.lastTraceId");
        assert_eq!(trace_id.len(), 32);
        let tempo = Tempo::new(&env.tempo_url);
        let spans = wait_for_trace(&tempo, &trace_id, "the creation trace across both handlers", |s| creation_shape(s, 3)).await;

        // The trace runs from the first reconcile to the one that saw Healthy: its length is the
        // time to Healthy the test measured (which includes up to one 250 ms poll).
        let root = spans.iter().find(|s| s.is_root()).expect("root");
        let ready = spans
            .iter()
            .find(|s| s.name == "reconcile MultigresCluster" && s.events.iter().any(|(e, _)| e == "generation ready"))
            .expect("the reconcile that saw Healthy");
        let traced = Duration::from_nanos(ready.end_ns.saturating_sub(root.start_ns));
        eprintln!("time to Healthy: measured {to_healthy:?}, traced {traced:?}");
        assert!(
            to_healthy.abs_diff(traced) < Duration::from_secs(1),
            "the trace says {traced:?} from first reconcile to Healthy, the test measured {to_healthy:?}"
        );
        // `kubectl describe mgc multi` tells what was created, each Event leading to this trace.
        let created = wait_until("Created Events for the Etcd and the three Cells", TIMEOUT, || async {
            let events = e2e::k8s::events_about(&client, &ns.name, "MultigresCluster", "multi").await?;
            let created: Vec<String> = events
                .iter()
                .filter(|e| e.type_.as_deref() == Some("Normal") && e.reason.as_deref() == Some("Created"))
                .filter_map(|e| e.note.clone())
                .collect();
            if created.len() == 4 { Ok(created) } else { Err(format!("{created:?}")) }
        })
        .await;
        let children = std::iter::once(format!("Etcd {} created", cluster_etcd_name("multi")))
            .chain(["zone-a", "zone-b", "zone-c"].map(|cell| format!("Cell {} created", cell_object_name("multi", cell))));
        for child in children {
            let note = created.iter().find(|n| n.starts_with(&child)).unwrap_or_else(|| panic!("no Event '{child}' in {created:?}"));
            assert_eq!(e2e::k8s::note_trace_id(note), Some(trace_id.as_str()), "{note}");
        }
        // Tempo finds it by the cluster's name.
        let by_name = format!(
            r#"{{ name = "reconcile MultigresCluster" && span.multigres.resource.name = "multi" && span.k8s.namespace.name = "{}" }}"#,
            ns.name
        );
        wait_until("Tempo search by the cluster's name to find the creation trace", TIMEOUT, || async {
            let ids = tempo.search(&by_name, Duration::from_secs(900)).await?;
            if ids.contains(&trace_id) { Ok(()) } else { Err(format!("{by_name} found {ids:?}")) }
        })
        .await;
        eprintln!(
            "creation trace {trace_id}: {} spans ({} cluster-handler, {} resource-handler, {} apiserver)",
            spans.len(),
            spans.iter().filter(|s| s.service == CH).count(),
            spans.iter().filter(|s| s.service == RH).count(),
            spans.iter().filter(|s| s.service == "apiserver").count()
        );

        // /metrics: the reconcile duration buckets carry exemplars whose trace ids open in Tempo.
        let metrics = resource_handler.metrics().await;
        let exemplars: Vec<String> = metrics
            .lines()
            .filter(|l| l.starts_with("multigres_reconcile_duration_seconds_bucket"))
            .filter_map(|l| l.split_once("# {trace_id=\"")?.1.split_once('"').map(|(id, _)| id.to_string()))
            .collect();
        let exemplar = exemplars.first().unwrap_or_else(|| panic!("no trace_id exemplar in:\n{metrics}"));
        wait_for_trace(&tempo, exemplar, "the trace of a reconcile duration exemplar", |s| {
            if s.iter().any(|span| span.service == RH && span.name.starts_with("reconcile ")) { Ok(()) } else { Err("no resource-handler reconcile span".into()) }
        })
        .await;

        // The fan-out is parallel: the cluster's sibling apply spans overlap in time.
        let root = spans.iter().find(|s| s.is_root()).expect("root");
        let siblings: Vec<&Span> = spans.iter().filter(|s| s.parent_span_id == root.span_id && s.name.starts_with("apply ")).collect();
        assert_eq!(siblings.len(), 4, "apply Etcd + 3 x apply Cell:\n{}", describe(&spans));
        assert!(overlap(&siblings), "sibling applies run one after another:\n{}", describe(&spans));

        // A reconcile of the same generation after the Etcd was Ready (a resync) is a new root
        // trace that links to the apply span that wrote the Etcd, not a child of the creation
        // trace. Found by a Tempo search on its namespace.
        let apply_etcd = named(&spans, CH, "apply Etcd")[0].clone();
        let query = format!(
            r#"{{ resource.service.name = "{RH}" && name = "reconcile Etcd" && span.k8s.namespace.name = "{}" && span.multigres.trace.parent = "linked" }}"#,
            ns.name
        );
        let root_reconcile = wait_until("a later reconcile Etcd in a trace of its own, linked", TIMEOUT, || async {
            let mut seen = Vec::new();
            for id in tempo.search(&query, Duration::from_secs(900)).await? {
                let later = tempo.trace(&id).await?.unwrap_or_default();
                match named(&later, RH, "reconcile Etcd").into_iter().find(|r| r.is_root()) {
                    Some(root) if !root.links.is_empty() => return Ok(root.clone()),
                    Some(root) => seen.push(format!("{id}: root without links {:?}", root.attributes)),
                    None => seen.push(format!("{id}: no root reconcile Etcd in Tempo yet")),
                }
            }
            Err(format!("traces matching {query}: {seen:?}"))
        })
        .await;
        assert_eq!(root_reconcile.links, vec![(trace_id.clone(), apply_etcd.span_id.clone())]);
        assert_eq!(root_reconcile.attributes.get("multigres.trace.parent").map(String::as_str), Some("linked"));

        // Scaling through the cluster spec: a new trace, joined across both processes again.
        api.patch("multi", &PatchParams::default(), &Patch::Merge(json!({"spec": {"gateway": {"replicas": 3}}}))).await.expect("scaled");
        let scaled = wait_until("a new lastTraceId after scaling", TIMEOUT, || async {
            let c = wait_healthy(&api, "multi").await;
            match c.status.and_then(|s| s.core.last_trace_id) {
                Some(id) if id != trace_id => Ok(id),
                other => Err(format!("lastTraceId {other:?}")),
            }
        })
        .await;
        wait_for_trace(&tempo, &scaled, "the scaling trace across both handlers", |s| {
            let gateways = named(s, RH, "reconcile MultiGateway");
            let joined = gateways.iter().filter(|r| parent(s, r).is_some_and(|p| p.service == CH && p.name == "apply MultiGateway")).count();
            // zone-a and zone-b take the new template; zone-c keeps its own replicas.
            if joined == 2 && orphans(s).is_empty() { Ok(()) } else { Err(format!("{joined}/2 reconcile MultiGateway joined")) }
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn at_one_percent_sampling_a_failing_child_is_exported_under_the_id_its_log_and_event_carry()
{
    let env = TestEnv::load();
    let client: Client = e2e::k8s::admin_client(&env).await;
    install_crds(&client).await;
    with_namespace(&client, "trace-rare", |client, ns| async move {
        let env = TestEnv::load();
        let one_percent = |endpoint: &str| {
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_string()),
                (
                    "OTEL_TRACES_SAMPLER",
                    "parentbased_traceidratio".to_string(),
                ),
                ("OTEL_TRACES_SAMPLER_ARG", "0.01".to_string()),
            ]
        };
        let _cluster_handler = start(
            "cluster-handler",
            &ns.name,
            &env,
            one_percent(&env.otlp_grpc_endpoint),
        )
        .await;
        let resource_handler = start(
            "resource-handler",
            &ns.name,
            &env,
            one_percent(&env.otlp_grpc_endpoint),
        )
        .await;
        let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &ns.name);
        create_with_unbuildable_gateway(&api, "rare").await;
        let gateway = cell_object_name("rare", "default") + "-gateway";
        // The Warning Event names the trace of the failed reconcile (the first one: the
        // recorder keeps the first note of a series).
        let event = wait_until(
            "an InvalidImage Event with a trace id on the MultiGateway",
            TIMEOUT,
            || async {
                let events =
                    e2e::k8s::events_about(&client, &ns.name, "MultiGateway", &gateway).await?;
                events
                    .into_iter()
                    .find(|e| e.reason.as_deref() == Some("InvalidImage"))
                    .ok_or_else(|| "none yet".to_string())
            },
        )
        .await;
        let note = event.note.clone().unwrap_or_default();
        let trace_id = e2e::k8s::note_trace_id(&note)
            .unwrap_or_else(|| panic!("no trace id in {note}"))
            .to_string();
        // Its log line carries the same id.
        let logged = resource_handler.log_lines().into_iter().any(|l| {
            l["message"] == "reconcile failed" && l["trace_id"].as_str() == Some(trace_id.as_str())
        });
        assert!(
            logged,
            "no 'reconcile failed' line with trace_id {trace_id}:\n{}",
            resource_handler.log_tail(20)
        );
        // Tempo has that reconcile under that id, whole: failed, with the status write under it.
        let tempo = Tempo::new(&env.tempo_url);
        let spans = wait_for_trace(
            &tempo,
            &trace_id,
            "the failed reconcile MultiGateway with its status write",
            |s| {
                let failed = named(s, RH, "reconcile MultiGateway")
                    .into_iter()
                    .find(|r| r.status_code == "STATUS_CODE_ERROR");
                let whole = failed.is_some_and(|f| {
                    named(s, RH, "update status")
                        .iter()
                        .any(|u| u.parent_span_id == f.span_id)
                });
                if whole {
                    Ok(())
                } else {
                    Err("no failed reconcile MultiGateway with its update status yet".into())
                }
            },
        )
        .await;
        let failed = named(&spans, RH, "reconcile MultiGateway")
            .into_iter()
            .find(|r| r.status_code == "STATUS_CODE_ERROR")
            .expect("failed");
        assert!(
            failed
                .status_message
                .contains("not a valid image reference"),
            "{}",
            failed.status_message
        );
    })
    .await;
}

#[tokio::test]
async fn a_failing_component_shows_error_spans_and_a_log_line_with_the_trace_id() {
    let env = TestEnv::load();
    let client: Client = e2e::k8s::admin_client(&env).await;
    install_crds(&client).await;
    with_namespace(&client, "trace-fail", |client, ns| async move {
        let env = TestEnv::load();
        let (_cluster_handler, resource_handler) = traced_handlers(&ns.name, &env).await;
        let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &ns.name);
        let image = create_with_unbuildable_gateway(&api, "broken").await;
        let trace_id = wait_until("lastTraceId on the cluster", TIMEOUT, || async {
            let c = api.get("broken").await.map_err(|e| e.to_string())?;
            c.status.and_then(|s| s.core.last_trace_id).ok_or_else(|| "none yet".to_string())
        })
        .await;
        let tempo = Tempo::new(&env.tempo_url);
        // The failing span is the root of the resource-handler's part: its parent is the
        // cluster-handler's apply span (exported by the other process, maybe in a later batch).
        let spans = wait_for_trace(&tempo, &trace_id, "an ERROR reconcile MultiGateway under apply MultiGateway", |s| {
            let failed = named(s, RH, "reconcile MultiGateway")
                .into_iter()
                .any(|r| r.status_code == "STATUS_CODE_ERROR" && parent(s, r).is_some_and(|p| p.service == CH && p.name == "apply MultiGateway"));
            if failed { Ok(()) } else { Err("no failed reconcile MultiGateway under apply MultiGateway yet".into()) }
        })
        .await;
        let failed = named(&spans, RH, "reconcile MultiGateway").into_iter().find(|r| r.status_code == "STATUS_CODE_ERROR").expect("failed");
        let message = failed.events.iter().find(|(name, _)| name == "exception").and_then(|(_, a)| a.get("exception.message").cloned()).unwrap_or_default();
        assert!(message.contains(&image) && message.contains("not a valid image reference"), "{message}");
        assert!(failed.status_message.contains("not a valid image reference"), "{}", failed.status_message);
        // The siblings did not fail.
        for kind in ["MultiOrch", "MultiPooler"] {
            assert!(named(&spans, RH, &format!("reconcile {kind}")).iter().all(|r| r.status_code != "STATUS_CODE_ERROR"), "{kind}");
        }
        // Each failed reconcile is one log line, a warning (the spec must be fixed), carrying
        // the trace id; no other line repeats the error.
        let mentions: Vec<serde_json::Value> = resource_handler
            .log_lines()
            .into_iter()
            .filter(|l| l.to_string().contains("not a valid image reference"))
            .collect();
        let shape = |l: &serde_json::Value| (l["level"].clone(), l["message"].clone(), l["category"].clone());
        assert!(
            !mentions.is_empty() && mentions.iter().all(|l| shape(l) == (json!("WARN"), json!("reconcile failed"), json!("invalid_spec"))),
            "{mentions:#?}"
        );
        assert!(mentions.iter().any(|l| l["trace_id"].as_str() == Some(trace_id.as_str())), "no line with trace_id {trace_id}: {mentions:#?}");

        // The failing MultiGateway has one Warning Event, counted again at each retry, whose
        // note quotes the error and names a trace holding the failed reconcile.
        let gateway = Api::<MultiGateway>::namespaced(client.clone(), &ns.name).list(&Default::default()).await.expect("gateways").items.remove(0);
        let gateway = kube::ResourceExt::name_any(&gateway);
        let event = wait_until("one InvalidImage Event on the MultiGateway, seen twice", TIMEOUT, || async {
            let events = e2e::k8s::events_about(&client, &ns.name, "MultiGateway", &gateway).await?;
            let warnings: Vec<_> = events.iter().filter(|e| e.reason.as_deref() == Some("InvalidImage")).collect();
            match warnings[..] {
                [e] if e.series.as_ref().is_some_and(|s| s.count >= 2) => Ok(e.clone()),
                _ => Err(format!("{warnings:?}")),
            }
        })
        .await;
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.reporting_controller.as_deref(), Some(RH));
        let note = event.note.clone().unwrap_or_default();
        assert!(note.contains("not a valid image reference"), "{note}");
        let event_trace = e2e::k8s::note_trace_id(&note).unwrap_or_else(|| panic!("no trace id in {note}")).to_string();
        wait_for_trace(&tempo, &event_trace, "the Event's trace to hold the failed reconcile", |s| {
            if named(s, RH, "reconcile MultiGateway").iter().any(|r| r.status_code == "STATUS_CODE_ERROR") { Ok(()) } else { Err("no failed reconcile MultiGateway".into()) }
        })
        .await;
        let described = describe_with_kubectl(&env, &ns.name, "multigateway", &gateway);
        assert!(described.contains("InvalidImage") && described.contains(&event_trace), "kubectl describe multigateway {gateway}:\n{described}");

        // The failure shows at the top: the Cell and the cluster are Degraded with the
        // gateway's reason, their message naming the path down to it and quoting its error.
        let cell = cell_object_name("broken", "default");
        let degraded = wait_until("the cluster Degraded with InvalidImage", TIMEOUT, || async {
            let c = api.get("broken").await.map_err(|e| e.to_string())?;
            let s = c.status.unwrap_or_default();
            match condition(&s.core.conditions, DEGRADED) {
                Some(d) if s.phase == Some(Phase::Degraded) && d.status == "True" && d.reason == "InvalidImage" => Ok(d.clone()),
                other => Err(format!("phase {:?}, Degraded {other:?}", s.phase)),
            }
        })
        .await;
        let path = format!("Cell {cell}: MultiGateway {gateway}: spec.image");
        assert!(degraded.message.starts_with(&path) && degraded.message.contains("not a valid image reference"), "{}", degraded.message);
        let cells: Api<Cell> = Api::namespaced(client.clone(), &ns.name);
        let cell_status = cells.get(&cell).await.expect("cell").status.unwrap_or_default();
        assert_eq!(cell_status.phase, Some(Phase::Degraded));
        let progressing = condition(&cluster_status(&api, "broken").await.core.conditions, PROGRESSING).cloned().expect("Progressing");
        assert_eq!((progressing.status.as_str(), progressing.reason.as_str()), ("False", "InvalidImage"));
        // `kubectl get` says so without describe; `-o wide` adds the message and the counts.
        let listed = kubectl(&env, &["get", "mgc", "broken", "-n", &ns.name]);
        let row = listed.lines().nth(1).unwrap_or_default().split_whitespace().collect::<Vec<_>>();
        assert_eq!(row.get(..4), Some(&["broken", "Degraded", "false", "InvalidImage"][..]), "{listed}");
        let wide = kubectl(&env, &["get", "mgc", "broken", "-n", &ns.name, "-o", "wide"]);
        for column in ["ETCD-READY", "GATEWAYS-READY", "ORCHS-READY", "POOLERS-READY", "MESSAGE"] {
            assert!(wide.lines().next().unwrap_or_default().contains(column), "{column}:\n{wide}");
        }
        assert!(wide.contains(&path), "{wide}");
        let cell_row = kubectl(&env, &["get", "cells", &cell, "-n", &ns.name]);
        eprintln!("$ kubectl get mgc broken\n{listed}$ kubectl get mgc broken -o wide\n{wide}$ kubectl get cells\n{cell_row}");
        let row = cell_row.lines().nth(1).unwrap_or_default().split_whitespace().collect::<Vec<_>>();
        assert_eq!(row.get(..6), Some(&[cell.as_str(), "broken", "default", "Degraded", "false", "InvalidImage"][..]), "{cell_row}");

        // A cluster whose name leaves no room for its children's names: the Warning is on the
        // MultigresCluster itself, and `kubectl describe mgc` shows it with its trace.
        let long = "a-cluster-name-that-is-long-enough-to-overflow";
        let cluster: MultigresCluster = serde_json::from_value(json!({
            "apiVersion": "multigres.com/v1alpha1", "kind": "MultigresCluster", "metadata": {"name": long}, "spec": {}
        }))
        .expect("cluster");
        api.create(&PostParams::default(), &cluster).await.expect("created");
        let event = wait_until("a NameTooLong Event on the cluster", TIMEOUT, || async {
            let events = e2e::k8s::events_about(&client, &ns.name, "MultigresCluster", long).await?;
            events.into_iter().find(|e| e.reason.as_deref() == Some("NameTooLong")).ok_or_else(|| "none yet".to_string())
        })
        .await;
        assert_eq!(event.reporting_controller.as_deref(), Some(CH));
        let note = event.note.clone().unwrap_or_default();
        assert!(note.contains("shorten the name"), "{note}");
        let event_trace = e2e::k8s::note_trace_id(&note).unwrap_or_else(|| panic!("no trace id in {note}")).to_string();
        wait_for_trace(&tempo, &event_trace, "the Event's trace to hold the failed cluster reconcile", |s| {
            if named(s, CH, "reconcile MultigresCluster").iter().any(|r| r.status_code == "STATUS_CODE_ERROR") { Ok(()) } else { Err("no failed reconcile MultigresCluster".into()) }
        })
        .await;
        let described = describe_with_kubectl(&env, &ns.name, "mgc", long);
        assert!(described.contains("NameTooLong") && described.contains(&event_trace), "kubectl describe mgc {long}:\n{described}");
        wait_until("kubectl get mgc to show Degraded NameTooLong", TIMEOUT, || async {
            let listed = kubectl(&env, &["get", "mgc", long, "-n", &ns.name]);
            let row = listed.lines().nth(1).unwrap_or_default().split_whitespace().collect::<Vec<_>>();
            if row.get(..4) == Some(&[long, "Degraded", "false", "NameTooLong"][..]) { Ok(()) } else { Err(listed) }
        })
        .await;
    })
    .await;
}
