//! The assembled pipeline: the same layers `init` installs, over an in-memory exporter and a
//! captured writer, under a thread-local subscriber (spans are created on the test's thread
//! only, so `set_default`'s thread-locality is not a trap here).

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use super::config::{EndpointVariable, ExporterConfig, Protocol};
use super::counting::Counters;
use super::init::{
    ShutdownError, TelemetryGuard, batch_processor, build_exporter, build_layers, provider_builder,
};
use crate::LogFormat;
use crate::testing::{Capture, Spy, config, scoped_default, test_subscriber};

/// Runs `f` under the same layers `init` installs, with a simple in-memory exporter.
fn with_pipeline(env: &[(&str, &str)], format: LogFormat, f: impl FnOnce()) -> (Spy, Capture) {
    let (spy, capture, subscriber) = test_subscriber(env, format);
    let _default = scoped_default(subscriber);
    f();
    (spy, capture)
}

fn remote(sampled: bool) -> SpanContext {
    SpanContext::new(
        TraceId::from(0x0af7651916cd43dd8448eb211c80319c_u128),
        SpanId::from(0xb7ad6b7169203331_u64),
        if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::NOT_SAMPLED
        },
        true,
        TraceState::NONE,
    )
}

#[test]
fn span_is_exported_with_the_service_resource() {
    let (spy, _) = with_pipeline(&[("POD_NAME", "rh-0")], LogFormat::Json, || {
        let span = tracing::info_span!("reconcile Etcd", multigres.resource.kind = "Etcd");
        let _enter = span.enter();
        let child = tracing::info_span!("apply StatefulSet");
        child.in_scope(|| tracing::info!("applied"));
    });
    let spans = spy.finished();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(names, ["apply StatefulSet", "reconcile Etcd"]);
    assert_eq!(spans[0].parent_span_id, spans[1].span_context.span_id());
    assert_eq!(
        spans[0].span_context.trace_id(),
        spans[1].span_context.trace_id()
    );
    let resource = spy
        .resource
        .lock()
        .expect("lock")
        .clone()
        .expect("resource set");
    let get = |k: &'static str| resource.get(&k.into()).map(|v| v.to_string());
    assert_eq!(get("service.name").as_deref(), Some("multigres-test"));
    assert_eq!(get("service.instance.id").as_deref(), Some("rh-0"));
    assert_eq!(get("k8s.pod.name").as_deref(), Some("rh-0"));
    assert_eq!(
        get("service.version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn always_off_exports_nothing_but_logs_still_correlate() {
    let (spy, capture) = with_pipeline(
        &[("OTEL_TRACES_SAMPLER", "always_off")],
        LogFormat::Json,
        || {
            tracing::info_span!("reconcile Cell").in_scope(|| tracing::info!("hello"));
        },
    );
    assert!(spy.finished().is_empty());
    let line: serde_json::Value = serde_json::from_str(&capture.lines()[0]).expect("json");
    assert!(line["trace_id"].is_string(), "{line}");
}

#[test]
fn filtered_targets_stay_out_of_the_trace() {
    let (spy, _) = with_pipeline(&[], LogFormat::Json, || {
        let outer = tracing::info_span!(target: "kube_runtime::controller", "reconciling object");
        outer.in_scope(|| {
            tracing::debug_span!(target: "kube_client::client::builder", "HTTP").in_scope(|| {});
            tracing::info_span!(target: "h2::proto", "poll").in_scope(|| {});
            tracing::info_span!("reconcile Etcd").in_scope(|| {});
        });
    });
    let spans = spy.finished();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "reconcile Etcd");
    // kube-runtime's span is invisible, so ours is a root rather than an orphaned child.
    assert_eq!(spans[0].parent_span_id, SpanId::INVALID);
}

#[test]
fn parent_based_sampler_honours_a_remote_parent() {
    // Roots are never sampled here, so an exported span proves the parent decided.
    let env = [
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0"),
    ];
    let (spy, _) = with_pipeline(&env, LogFormat::Json, || {
        let span = tracing::info_span!("reconcile MultiOrch");
        // Before entering: a parent can only be set on a span not yet entered.
        span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote(true)))
            .expect("set_parent before enter");
        span.in_scope(|| {});
        tracing::info_span!("unparented root").in_scope(|| {});
        let late = tracing::info_span!("late");
        let _enter = late.enter();
        assert!(
            late.set_parent(opentelemetry::Context::new().with_remote_span_context(remote(true)))
                .is_err()
        );
    });
    let spans = spy.finished();
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0].span_context.trace_id(), remote(true).trace_id());
    assert_eq!(spans[0].parent_span_id, remote(true).span_id());
    assert!(spans[0].parent_span_is_remote);

    // And an unsampled remote parent is honoured the other way round.
    let (spy, _) = with_pipeline(
        &[("OTEL_TRACES_SAMPLER", "parentbased_always_on")],
        LogFormat::Json,
        || {
            let span = tracing::info_span!("reconcile Cell");
            span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote(false)))
                .expect("set_parent");
            span.in_scope(|| {});
        },
    );
    assert!(spy.finished().is_empty());
}

#[test]
fn json_log_lines_carry_the_exported_ids() {
    let (spy, capture) = with_pipeline(&[], LogFormat::Json, || {
        tracing::info!("before any span");
        let span = tracing::info_span!("reconcile Etcd");
        span.in_scope(|| {
            tracing::info!(replicas = 3, "inside");
            tracing::info_span!(target: "kube_runtime", "reconciling object")
                .in_scope(|| tracing::info!("inside a filtered span"));
        });
    });
    let spans = spy.finished();
    let exported = &spans[0].span_context;
    let lines: Vec<serde_json::Value> = capture
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
    for line in &lines[1..] {
        assert_eq!(line["trace_id"], exported.trace_id().to_string(), "{line}");
        assert_eq!(line["span_id"], exported.span_id().to_string(), "{line}");
    }
    assert_eq!(lines[1]["replicas"], 3);
    assert_eq!(lines[1]["message"], "inside");
}

#[test]
fn text_log_lines_carry_the_exported_ids() {
    let (spy, capture) = with_pipeline(&[], LogFormat::Text, || {
        tracing::info_span!("reconcile Etcd").in_scope(|| tracing::info!("inside"));
    });
    let spans = spy.finished();
    let line = &capture.lines()[0];
    let expected = format!(
        " trace_id={} span_id={}",
        spans[0].span_context.trace_id(),
        spans[0].span_context.span_id()
    );
    assert!(line.ends_with(&expected), "{line}");
    assert!(line.contains("inside"), "{line}");
}

/// How the collector is unreachable.
#[derive(Clone, Copy, Debug)]
enum Dead {
    /// Nothing listens: connections are refused at once.
    Closed,
    /// A socket that accepts connections and never answers: every export hangs until the
    /// exporter's own timeout (10 s), longer than the shutdown deadline.
    BlackHole,
}

/// The real OTLP exporter towards a dead collector, behind the production batch processor.
async fn unreachable_collector(protocol: Protocol, dead: Dead) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _keep = match dead {
        Dead::Closed => {
            drop(listener);
            None
        }
        Dead::BlackHole => Some(listener),
    };
    let counters: &'static Counters = Box::leak(Box::new(Counters::new()));
    let endpoint = match protocol {
        Protocol::Grpc => format!("http://127.0.0.1:{port}"),
        Protocol::HttpProtobuf => format!("http://127.0.0.1:{port}/v1/traces"),
    };
    let source = (EndpointVariable::Traces, endpoint.clone());
    let exporter = build_exporter(&ExporterConfig {
        protocol,
        endpoint,
        source,
    })
    .expect("exporter");
    let max_queue = 64;
    let provider: SdkTracerProvider = provider_builder(&config(&[]))
        .with_span_processor(batch_processor(exporter, counters, max_queue))
        .build();
    let layers = build_layers(
        LogFormat::Json,
        EnvFilter::new("off"),
        io::sink,
        false,
        &provider,
    );

    let started = Instant::now();
    let mut peak = 0;
    {
        let _default = scoped_default(tracing_subscriber::registry().with(layers));
        for i in 0..1000 {
            tracing::info_span!("reconcile Etcd", i).in_scope(|| {});
            peak = peak.max(counters.in_flight());
        }
    }
    let elapsed = started.elapsed();
    // Generous for debug builds on a busy machine; a network wait would be seconds.
    assert!(
        elapsed < Duration::from_millis(1500),
        "1000 spans took {elapsed:?}"
    );
    assert!(peak <= max_queue, "in flight peaked at {peak}");
    let dropped = || counters.dropped.load(Ordering::Relaxed);
    assert!(
        dropped() >= 1000 - 2 * max_queue as u64,
        "dropped {}",
        dropped()
    );

    // Refused connections fail within a second even with the exporter's retries; a silent
    // collector would hold the export for its 10 s timeout.
    let deadline = match dead {
        Dead::Closed => Duration::from_secs(5),
        Dead::BlackHole => Duration::from_secs(2),
    };
    let started = Instant::now();
    let result = TelemetryGuard {
        provider: Some(provider),
        config: config(&[]),
    }
    .shutdown(deadline)
    .await;
    let took = started.elapsed();
    assert!(
        took < deadline + Duration::from_millis(500),
        "shutdown took {took:?}: {result:?}"
    );
    assert_eq!(counters.exported.load(Ordering::Relaxed), 0);
    match dead {
        // The last batch failed inside the deadline: every span is accounted for as dropped.
        Dead::Closed => {
            assert!(result.is_ok(), "{result:?}");
            assert_eq!(dropped(), 1000);
        }
        Dead::BlackHole => assert!(
            matches!(result, Err(ShutdownError::Timeout(_))),
            "{result:?}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_grpc_collector_neither_blocks_nor_grows() {
    unreachable_collector(Protocol::Grpc, Dead::Closed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_http_collector_neither_blocks_nor_grows() {
    unreachable_collector(Protocol::HttpProtobuf, Dead::Closed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_grpc_collector_cannot_hold_shutdown() {
    unreachable_collector(Protocol::Grpc, Dead::BlackHole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_http_collector_cannot_hold_shutdown() {
    unreachable_collector(Protocol::HttpProtobuf, Dead::BlackHole).await;
}

#[tokio::test]
async fn shutdown_without_exporter_is_immediate() {
    let provider = provider_builder(&config(&[])).build();
    let guard = TelemetryGuard {
        provider: Some(provider),
        config: config(&[]),
    };
    guard
        .shutdown(Duration::from_secs(1))
        .await
        .expect("clean shutdown");
}
