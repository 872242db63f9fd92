//! Tracing for both handlers: `tracing` spans exported over OTLP through
//! `tracing-opentelemetry` and the OpenTelemetry SDK, log lines correlated with the current
//! span, and W3C trace context carried in annotations across the process boundary.
//!
//! Configuration is the standard OTel environment ([`config`]); an invalid value is logged once
//! and replaced, never fatal. Without an endpoint spans still exist (their ids go into the log
//! lines) and nothing touches the network.

pub mod config;
mod correlation;
mod counting;
mod init;
mod keep;
pub mod propagation;
pub mod spans;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
#[cfg(test)]
mod tests;

use std::sync::atomic::Ordering;

pub use config::TelemetryConfig;
pub use init::{ShutdownError, TelemetryGuard, exporting_provider, otel_layer};

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log pipelines.
    Json,
    /// Human-readable lines, for a terminal.
    Text,
}

/// Installs the global subscriber (log lines on stderr as `format`, filtered by `RUST_LOG`) and
/// the OTLP pipeline configured by the `OTEL_*` environment. `service_name` is the default
/// `service.name`, overridden by `OTEL_SERVICE_NAME`. The gRPC exporter needs to be built inside
/// the Tokio runtime. Keep the guard and call [`TelemetryGuard::shutdown`] on the way out.
pub fn init(format: LogFormat, service_name: &'static str) -> TelemetryGuard {
    init::install(format, service_name)
}

/// Spans that will never reach the collector: dropped because the export queue was full
/// (`OTEL_BSP_MAX_QUEUE_SIZE`), lost in a failed export, or ended after shutdown.
pub fn spans_dropped() -> u64 {
    init::COUNTERS.dropped.load(Ordering::Relaxed)
}

/// Spans the collector accepted.
pub fn spans_exported() -> u64 {
    init::COUNTERS.exported.load(Ordering::Relaxed)
}
