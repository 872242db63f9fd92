//! The tracing work of one reconcile, measured in-process: extracting the parent context from
//! the object's annotations, the reconcile and apply spans with their attributes, stamping the
//! child's annotations, and one API request through the client layer (client span + W3C header
//! injection), against a fake API server that answers at once.
//!
//! Four subscribers run the same code: OpenTelemetry with the real SDK at 100% sampling (spans
//! handed to a batch processor whose exporter discards them) through the handlers' own layer
//! (`multigres_telemetry::otel_layer`), the same through the bridge's default settings, the no-op
//! tracer, and no tracing layer at all.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use kube::client::Body;
use multigres_api::crd::Etcd;
use multigres_runtime::client::ApiLayer;
use multigres_runtime::metrics::Metrics;
use multigres_telemetry::propagation::{
    TRACEPARENT_ANNOTATION, TRACEPARENT_TS_ANNOTATION, annotations_for,
};
use multigres_telemetry::spans::{now_unix_secs, reconcile_span};
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tower::Layer;
use tracing::{Dispatch, Instrument};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}

fn fake_client() -> kube::Client {
    let service = tower::service_fn(|_request: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from(b"{}".to_vec())))
    });
    let layer = ApiLayer::new(Arc::new(Metrics::new("bench")), "10.0.0.1");
    kube::Client::new(layer.layer(service), "default")
}

fn etcd() -> Etcd {
    let mut etcd: Etcd = serde_json::from_value(serde_json::json!({
        "apiVersion": "multigres.com/v1alpha1", "kind": "Etcd",
        "metadata": {"name": "demo-etcd", "namespace": "prod", "uid": "3f1c", "generation": 2},
        "spec": {"replicas": 3}
    }))
    .expect("etcd");
    etcd.metadata.annotations = Some(BTreeMap::from([
        (
            TRACEPARENT_ANNOTATION.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
        ),
        (
            TRACEPARENT_TS_ANNOTATION.to_string(),
            now_unix_secs().to_string(),
        ),
    ]));
    etcd
}

/// One reconcile's span work.
async fn reconcile_once(client: &kube::Client, obj: &Etcd, generation: i64) -> usize {
    let mut obj = obj.clone();
    obj.metadata.generation = Some(generation);
    let root = reconcile_span(
        &Default::default(),
        &obj,
        "etcd",
        Some(generation - 1),
        None,
    );
    async {
        let apply = tracing::info_span!(
            target: "multigres::apply",
            "apply",
            otel.name = "apply StatefulSet",
            multigres.apply.decision = "changed",
            k8s.statefulset.name = "demo-etcd",
        );
        let stamped = apply.in_scope(|| {
            annotations_for(
                &apply.context().span().span_context().clone(),
                now_unix_secs(),
            )
        });
        let request =
            Request::patch("/apis/apps/v1/namespaces/prod/statefulsets/demo-etcd?fieldManager=x")
                .body(b"{}".to_vec())
                .unwrap_or_default();
        let _ = client.request_text(request).instrument(apply).await;
        stamped.len()
    }
    .instrument(root.span)
    .await
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = rt.block_on(async { fake_client() });
    let obj = etcd();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(Discard)
        .build();
    // The handlers' own pipeline at 100% and 1%, with failed and slow reconciles kept (as the
    // handlers run) and without (as they ran before), side by side.
    let handlers = |ratio: &str, keep_failures: bool| {
        let env = [
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", ratio),
        ];
        let (mut config, _) = multigres_telemetry::TelemetryConfig::from_lookup("bench", 0, |k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        });
        config.keep_failures = keep_failures;
        multigres_telemetry::exporting_provider(&config, Discard)
    };
    let pipelines = [
        ("handlers-100%", handlers("1.0", true)),
        ("handlers-1%", handlers("0.01", true)),
        ("handlers-100%-failures-not-kept", handlers("1.0", false)),
        ("handlers-1%-failures-not-kept", handlers("0.01", false)),
    ];
    let traced = |provider: &SdkTracerProvider| {
        Dispatch::new(
            tracing_subscriber::registry()
                .with(multigres_telemetry::otel_layer(provider.tracer("bench"))),
        )
    };
    let mut modes: Vec<(&str, Dispatch)> = vec![("otel-sdk-100%", traced(&provider))];
    modes.extend(pipelines.iter().map(|(name, p)| (*name, traced(p))));
    modes.extend([
        (
            // The bridge's defaults (location, thread, target attributes and busy/idle timers on
            // every span): what `otel_layer` turns off, measured side by side.
            "otel-sdk-100%-bridge-defaults",
            Dispatch::new(
                tracing_subscriber::registry()
                    .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"))),
            ),
        ),
        (
            "noop-tracer",
            Dispatch::new(
                tracing_subscriber::registry().with(multigres_telemetry::otel_layer(
                    opentelemetry::trace::noop::NoopTracer::new(),
                )),
            ),
        ),
        (
            "no-tracing-layer",
            Dispatch::new(tracing_subscriber::registry()),
        ),
    ]);
    let mut group = c.benchmark_group("reconcile span work");
    for (name, dispatch) in &modes {
        let _guard = tracing::dispatcher::set_default(dispatch);
        tracing::callsite::rebuild_interest_cache();
        let mut generation = 1;
        group.bench_function(*name, |b| {
            b.to_async(&rt).iter(|| {
                generation += 1;
                reconcile_once(&client, &obj, generation)
            })
        });
    }
    group.finish();
    let _ = provider.shutdown();
    for (_, provider) in pipelines {
        let _ = provider.shutdown();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
