//! Wiring: the OTLP exporter, the tracer provider and the subscriber layers.
//!
//! Every piece is a function of the config so tests assemble the very same layers over an
//! injected exporter and writer; only [`install`] touches process-global state.

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanExporter,
    TracerProviderBuilder,
};
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{FilterExt, LevelFilter, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use super::config::{ExporterConfig, Protocol, SamplerConfig, TelemetryConfig};
use super::correlation::Correlated;
use super::counting::{Counters, CountingExporter, CountingProcessor};
use super::keep::{KeepFailures, RecordUnsampled};
use crate::LogFormat;

/// Counters of the installed pipeline, read by `spans_dropped`/`spans_exported`.
pub(crate) static COUNTERS: Counters = Counters::new();

pub(crate) type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Flushes and stops span export; see [`TelemetryGuard::shutdown`].
#[must_use = "dropping the guard does not flush pending spans; call shutdown()"]
#[derive(Debug)]
pub struct TelemetryGuard {
    pub(crate) provider: Option<SdkTracerProvider>,
    /// What the pipeline does; `exporter` is `None` when nothing is exported.
    pub(crate) config: TelemetryConfig,
}

/// Why [`TelemetryGuard::shutdown`] did not flush everything.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    #[error("span export did not finish within {0:?}")]
    Timeout(Duration),
    #[error("span export shutdown failed: {0}")]
    Failed(String),
}

impl TelemetryGuard {
    /// The configuration in effect, so a handler can pass its export settings on.
    pub fn config(&self) -> &TelemetryConfig {
        &self.config
    }

    /// Flushes pending spans and stops the exporter, returning within `deadline` even when the
    /// collector is unreachable. Call it from the Tokio runtime after the controllers stopped.
    ///
    /// The SDK's shutdown blocks (and can deadlock a current-thread runtime), so it runs on a
    /// plain thread rather than `spawn_blocking`: a runtime being dropped waits for its blocking
    /// tasks without limit, a detached thread cannot hold the exit past the deadline.
    pub async fn shutdown(self, deadline: Duration) -> Result<(), ShutdownError> {
        let Some(provider) = self.provider else {
            return Ok(());
        };
        // The SDK gets most of the deadline so it usually answers itself; the outer timeout is
        // the hard bound. It wraps its processors' timeouts in a generic error, hence the clock.
        let inner = deadline.mul_f64(0.9);
        let started = std::time::Instant::now();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("otel-shutdown".into())
            .spawn(move || {
                let _ = tx.send(provider.shutdown_with_timeout(inner));
            })
            .map_err(|e| ShutdownError::Failed(format!("cannot start the shutdown thread: {e}")))?;
        match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(_))) | Err(_) if started.elapsed() >= inner => {
                Err(ShutdownError::Timeout(deadline))
            }
            Ok(Ok(Err(e))) => Err(ShutdownError::Failed(e.to_string())),
            Ok(Err(_)) | Err(_) => Err(ShutdownError::Failed("shutdown thread ended early".into())),
        }
    }
}

/// Installs the global subscriber and, when the environment names an endpoint, the exporter.
pub(crate) fn install(format: LogFormat, service_name: &'static str) -> TelemetryGuard {
    let (mut config, mut warnings) =
        TelemetryConfig::from_lookup(service_name, std::process::id(), env_lookup);
    if tracing::dispatcher::has_been_set() {
        // Building a second pipeline would start an exporter thread nobody uses.
        tracing::warn!("a global subscriber is already installed; telemetry init skipped");
        config.exporter = None;
        return TelemetryGuard {
            provider: None,
            config,
        };
    }
    let log_filter = log_filter(&mut warnings);

    let exporter = config.exporter.as_ref().map(build_exporter);
    let provider = match exporter {
        Some(Ok(exporter)) => exporting_provider(&config, exporter),
        Some(Err(why)) => {
            warnings.push(why);
            config.exporter = None;
            provider_builder(&config).build()
        }
        None => provider_builder(&config).build(),
    };

    let ansi = format == LogFormat::Text && std::io::stderr().is_terminal();
    let layers = build_layers(format, log_filter, std::io::stderr, ansi, &provider);
    // Nobody reads OTEL_PROPAGATORS; without this the global propagator is a no-op. Set before
    // the subscriber so the SDK's "global provider set" chatter goes nowhere.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    if let Err(err) = tracing_subscriber::registry().with(layers).try_init() {
        eprintln!("cannot install the tracing subscriber: {err}");
    }

    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    match &config.exporter {
        Some(e) => tracing::info!(
            service.name = %config.service_name,
            endpoint = %e.endpoint,
            protocol = ?e.protocol,
            sampler = ?config.sampler,
            "exporting spans"
        ),
        None => tracing::info!(
            service.name = %config.service_name,
            "span export off (no OTLP endpoint, OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER=none); spans feed log correlation only"
        ),
    }
    TelemetryGuard {
        provider: Some(provider),
        config,
    }
}

/// The process environment, with a hostname even when the shell did not export `HOSTNAME`.
fn env_lookup(name: &str) -> Option<String> {
    let value = std::env::var(name).ok();
    if name == "HOSTNAME" && value.is_none() {
        return std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string());
    }
    value
}

/// `RUST_LOG`, default `info`; an invalid value falls back to `info` with a warning.
fn log_filter(warnings: &mut Vec<String>) -> EnvFilter {
    match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(&v).unwrap_or_else(|e| {
            warnings.push(format!("RUST_LOG={v:?} is invalid ({e}); using \"info\""));
            EnvFilter::new("info")
        }),
        _ => EnvFilter::new("info"),
    }
}

pub(crate) fn sampler(config: SamplerConfig) -> Sampler {
    let pb = |root: Sampler| Sampler::ParentBased(Box::new(root));
    match config {
        SamplerConfig::AlwaysOn => Sampler::AlwaysOn,
        SamplerConfig::AlwaysOff => Sampler::AlwaysOff,
        SamplerConfig::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
        SamplerConfig::ParentBasedAlwaysOn => pb(Sampler::AlwaysOn),
        SamplerConfig::ParentBasedAlwaysOff => pb(Sampler::AlwaysOff),
        SamplerConfig::ParentBasedTraceIdRatio(r) => pb(Sampler::TraceIdRatioBased(r)),
    }
}

/// Sampler and resource; the caller adds the span processor.
pub(crate) fn provider_builder(config: &TelemetryConfig) -> TracerProviderBuilder {
    // Built from empty: the SDK's default detectors would read OTEL_SERVICE_NAME and
    // OTEL_RESOURCE_ATTRIBUTES again, behind the config's back.
    let resource = Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(
            config
                .resource
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    if config.keep_failures {
        // Unsampled spans are recorded so a failed or slow reconcile can still be exported.
        builder.with_sampler(RecordUnsampled(sampler(config.sampler)))
    } else {
        builder.with_sampler(sampler(config.sampler))
    }
}

/// The handlers' tracer provider over `exporter`: the configured sampler (recording what it
/// does not sample), failed and slow reconciles kept whatever the sampler said, the counted
/// batch processor. Public for the benchmark, which measures this very pipeline.
pub fn exporting_provider<E: SpanExporter + 'static>(
    config: &TelemetryConfig,
    exporter: E,
) -> SdkTracerProvider {
    let batch = batch_processor(exporter, &COUNTERS, config.max_queue_size);
    let builder = provider_builder(config);
    if config.keep_failures {
        builder.with_span_processor(KeepFailures::new(batch, config.keep_slower_than))
    } else {
        builder.with_span_processor(batch)
    }
    .build()
}

/// The batch processor behind the counting bound (see `counting`).
pub(crate) fn batch_processor<E: SpanExporter + 'static>(
    exporter: E,
    counters: &'static Counters,
    max_queue_size: usize,
) -> CountingProcessor<BatchSpanProcessor> {
    // `default()` reads the other OTEL_BSP_*; the queue size is the one the counting bound uses.
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(max_queue_size)
        .build();
    let inner = BatchSpanProcessor::builder(CountingExporter {
        inner: exporter,
        counters,
    })
    .with_batch_config(batch)
    .build();
    CountingProcessor {
        inner,
        counters,
        max_queue_size,
    }
}

/// The OTLP exporter. gRPC uses tonic, whose lazy channel spawns its worker on the current Tokio
/// runtime; HTTP uses the blocking reqwest client, because the batch processor exports from its
/// own thread where the async client panics with "no reactor running".
pub(crate) fn build_exporter(
    config: &ExporterConfig,
) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::WithExportConfig as _;
    // The builders read the headers, timeout and compression variables themselves; the endpoint
    // is always given, or they would fall back to localhost.
    let built = match config.protocol {
        Protocol::Grpc => {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(format!(
                    "the gRPC exporter for {} needs a Tokio runtime; spans are not exported",
                    config.endpoint
                ));
            }
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(&config.endpoint)
                .build()
        }
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(&config.endpoint)
            .build(),
    };
    built.map_err(|e| {
        format!(
            "cannot build the OTLP exporter for {}: {e}; spans are not exported",
            config.endpoint
        )
    })
}

/// The fmt layer (filtered by `RUST_LOG`, log lines correlated with the current span) and the
/// OpenTelemetry layer (its own filter, independent of log verbosity).
pub(crate) fn build_layers<W>(
    format: LogFormat,
    log_filter: EnvFilter,
    writer: W,
    ansi: bool,
    provider: &SdkTracerProvider,
) -> Vec<BoxedLayer>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let fmt = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .event_format(Correlated {
                inner: tracing_subscriber::fmt::format().json().flatten_event(true),
                json: true,
            })
            .with_writer(writer)
            .with_filter(log_filter.and(filter_fn(logged)))
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .event_format(Correlated {
                inner: tracing_subscriber::fmt::format().with_ansi(ansi),
                json: false,
            })
            .with_ansi(ansi)
            .with_writer(writer)
            .with_filter(log_filter.and(filter_fn(logged)))
            .boxed(),
    };
    let otel = otel_layer(provider.tracer(env!("CARGO_PKG_NAME")))
        .with_filter(filter_fn(otel_enabled).with_max_level_hint(LevelFilter::DEBUG))
        .boxed();
    vec![otel, fmt]
}

/// The tracing-to-OpenTelemetry bridge as the handlers run it (unfiltered; the benchmark
/// measures this very layer). Off: the source-location, thread and target attributes and the
/// busy/idle timers the bridge adds to every span by default. They cost a clock read on every
/// poll of a traced future and five attributes per span, and say nothing the span name and the
/// `multigres.*` attributes do not.
pub fn otel_layer<S, T>(tracer: T) -> tracing_opentelemetry::OpenTelemetryLayer<S, T>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    T: opentelemetry::trace::Tracer + 'static,
    T::Span: Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
}

/// What the log shows. Out: the events that mark a span failed (one line per failed reconcile
/// comes from the controller skeleton), and the SDK's error for every batch it fails to export
/// (one line every second or so while a collector is down; the counting exporter reports the
/// same failures rate-limited instead).
fn logged(meta: &Metadata<'_>) -> bool {
    let sdk_export_error =
        meta.target().starts_with("opentelemetry") && meta.name().ends_with("ExportError");
    !sdk_export_error && meta.target() != crate::spans::SPAN_ERROR_TARGET
}

/// What the OpenTelemetry layer sees. Out: kube-runtime's `reconciling object` span (it would
/// orphan our reconcile span when that one takes a remote parent), kube-client's own `HTTP`
/// span (our traced client makes the client span), and the exporter's transport stack and the
/// SDK itself (their events during export would feed back into spans). Spans down to DEBUG,
/// events from INFO (span events are for what matters, not chatter).
fn otel_enabled(meta: &Metadata<'_>) -> bool {
    const EXCLUDED: [&str; 8] = [
        "kube_runtime",
        "h2",
        "hyper",
        "hyper_util",
        "tonic",
        "tower",
        "reqwest",
        "opentelemetry",
    ];
    let target = meta.target();
    let krate = target.split("::").next().unwrap_or(target);
    if EXCLUDED.contains(&krate) || krate.starts_with("opentelemetry") {
        return false;
    }
    if meta.is_span() {
        !(krate == "kube_client" && meta.name() == "HTTP") && *meta.level() <= Level::DEBUG
    } else {
        *meta.level() <= Level::INFO
    }
}
