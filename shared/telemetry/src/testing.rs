//! Test helpers: the layers `init` installs over in-memory exporters, and a thread-scoped default
//! subscriber that works whatever other test threads do. Compiled for this crate's tests and,
//! through the `test-support` feature, for other crates' tests only.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData, SpanExporter};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use crate::LogFormat;
use crate::config::TelemetryConfig;
use crate::init::{build_layers, provider_builder};

/// In-memory exporter that also remembers the resource the provider hands it.
#[derive(Clone, Debug, Default)]
pub struct Spy {
    spans: InMemorySpanExporter,
    pub(crate) resource: Arc<Mutex<Option<Resource>>>,
}

impl SpanExporter for Spy {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.spans.export(batch).await
    }
    fn set_resource(&mut self, resource: &Resource) {
        *self.resource.lock().expect("lock") = Some(resource.clone());
    }
}

impl Spy {
    pub fn finished(&self) -> Vec<SpanData> {
        self.spans.get_finished_spans().expect("spans")
    }
}

/// A `MakeWriter` capturing the log output.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Capture {
    pub fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().expect("lock").clone();
        String::from_utf8(bytes)
            .expect("utf8")
            .lines()
            .map(str::to_string)
            .collect()
    }
}

pub(crate) fn config(env: &[(&str, &str)]) -> TelemetryConfig {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (config, warnings) =
        TelemetryConfig::from_lookup("multigres-test", 1, |k| env.get(k).cloned());
    assert!(warnings.is_empty(), "{warnings:?}");
    config
}

/// The layers `init` installs over a simple in-memory exporter and a captured writer, as a
/// subscriber for [`scoped_default`] (async tests on a current-thread runtime).
pub fn test_subscriber(
    env: &[(&str, &str)],
    format: LogFormat,
) -> (Spy, Capture, impl tracing::Subscriber + Send + Sync) {
    let spy = Spy::default();
    let capture = Capture::default();
    let provider = provider_builder(&config(env))
        .with_simple_exporter(spy.clone())
        .build();
    let writer = capture.clone();
    let layers = build_layers(
        format,
        EnvFilter::new("info"),
        move || writer.clone(),
        false,
        &provider,
    );
    (spy, capture, tracing_subscriber::registry().with(layers))
}

/// Makes `subscriber` this thread's default until the guard drops, such that this thread's spans
/// reach it whatever other test threads do meanwhile. tracing caches per call site whether anyone
/// listens, for the whole process; while only one dispatcher exists, a call site first reached on
/// a thread without a subscriber is cached as "never", and a test that checks that call site's
/// spans sees none. A dispatcher that lives as long as the process makes every later call site
/// ask all live subscribers, and the rebuild clears what was cached before this one came.
pub fn scoped_default(
    subscriber: impl tracing::Subscriber + Send + Sync + 'static,
) -> tracing::subscriber::DefaultGuard {
    static ANCHOR: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    ANCHOR.get_or_init(|| tracing::Dispatch::new(tracing_subscriber::registry()));
    let guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    guard
}

/// A subscriber that exports spans to memory, for tests in other crates. Returns a function
/// listing the finished spans, and the subscriber (install it with [`scoped_default`] on a
/// current-thread runtime).
pub fn span_capture() -> (
    impl Fn() -> Vec<opentelemetry_sdk::trace::SpanData>,
    impl tracing::Subscriber + Send + Sync,
) {
    use opentelemetry::trace::TracerProvider;
    use tracing_subscriber::prelude::*;
    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = crate::otel_layer(provider.tracer("test"));
    let finished = move || {
        let _keep = &provider;
        exporter.get_finished_spans().unwrap_or_default()
    };
    (finished, tracing_subscriber::registry().with(layer))
}
