//! Counting spans that reach the collector and spans that never will.
//!
//! The SDK's `BatchSpanProcessor` (0.33) counts queue-full drops in a private field and only
//! reports them in a log line at shutdown (its self-diagnostics metric is behind the
//! `experimental_metrics_bound_instruments` feature and needs a global meter provider). So the
//! bound is enforced one step earlier, here: [`CountingProcessor`] admits a span only while
//! fewer than `max_queue_size` spans are in flight (queued or being exported), and
//! [`CountingExporter`] releases them when their batch's export finishes. The inner batch
//! processor gets the same queue size, so its own channel can never be the one that overflows
//! and every drop is counted here.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

/// Counters shared by one processor and its exporter.
/// The least time between two warnings about failing exports.
pub(crate) const WARNING_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub(crate) struct Counters {
    in_flight: AtomicUsize,
    pub(crate) exported: AtomicU64,
    pub(crate) dropped: AtomicU64,
    shut_down: AtomicBool,
    /// When the last export-failure warning was logged (Unix seconds; 0: exports are working).
    last_warning: AtomicU64,
    /// Spans lost to failed exports since that warning.
    dropped_since_warning: AtomicU64,
}

impl Counters {
    pub(crate) const fn new() -> Self {
        Counters {
            in_flight: AtomicUsize::new(0),
            exported: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            shut_down: AtomicBool::new(false),
            last_warning: AtomicU64::new(0),
            dropped_since_warning: AtomicU64::new(0),
        }
    }

    /// A failed export: one warning now, then at most one per [`WARNING_INTERVAL`] with the
    /// number of spans lost meanwhile (a collector that is down must not flood the logs).
    fn export_failed(&self, spans: u64, error: &dyn std::fmt::Display, now_secs: u64) -> bool {
        self.dropped_since_warning
            .fetch_add(spans, Ordering::Relaxed);
        let last = self.last_warning.load(Ordering::Acquire);
        if last != 0 && now_secs < last + WARNING_INTERVAL.as_secs() {
            return false;
        }
        if self
            .last_warning
            .compare_exchange(last, now_secs.max(1), Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        let dropped = self.dropped_since_warning.swap(0, Ordering::Relaxed);
        tracing::warn!(
            error = %error,
            dropped_spans = dropped,
            "span export is failing; spans are dropped and counted in multigres_spans_dropped_total (next warning in {}s at most)",
            WARNING_INTERVAL.as_secs()
        );
        true
    }

    /// A successful export: say once that exports work again.
    fn export_succeeded(&self) {
        if self.last_warning.swap(0, Ordering::AcqRel) != 0 {
            self.dropped_since_warning.store(0, Ordering::Relaxed);
            tracing::info!("span export is working again");
        }
    }

    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// Bounds and counts what enters the inner (batch) processor.
#[derive(Debug)]
pub(crate) struct CountingProcessor<P> {
    pub(crate) inner: P,
    pub(crate) counters: &'static Counters,
    pub(crate) max_queue_size: usize,
}

impl<P: SpanProcessor> SpanProcessor for CountingProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.counters.shut_down.load(Ordering::Acquire) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Reserve first, then check: concurrent callers can never both take the last slot.
        let before = self.counters.in_flight.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_queue_size {
            self.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.counters.shut_down.store(true, Ordering::Release);
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Counts each finished export and frees its spans' slots.
#[derive(Debug)]
pub(crate) struct CountingExporter<E> {
    pub(crate) inner: E,
    pub(crate) counters: &'static Counters,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        // A failed batch (collector down after the exporter's retries) is lost: a drop.
        let counter = match &result {
            Ok(()) => {
                self.counters.export_succeeded();
                &self.counters.exported
            }
            Err(err) => {
                let now = super::spans::now_unix_secs();
                self.counters.export_failed(n as u64, err, now);
                &self.counters.dropped
            }
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
        self.counters.in_flight.fetch_sub(n, Ordering::AcqRel);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod warning_tests {
    use super::*;

    #[test]
    fn export_failures_warn_once_per_interval_with_the_count_lost_meanwhile() {
        let c = Counters::new();
        let t0 = 1_800_000_000;
        assert!(
            c.export_failed(10, &"refused", t0),
            "the first failure warns"
        );
        for i in 1..100 {
            assert!(
                !c.export_failed(10, &"refused", t0 + i % 59),
                "failure {i} within the interval"
            );
        }
        assert_eq!(c.dropped_since_warning.load(Ordering::Relaxed), 990);
        assert!(
            c.export_failed(10, &"refused", t0 + 60),
            "warns again after the interval"
        );
        assert_eq!(c.dropped_since_warning.load(Ordering::Relaxed), 0);
        c.export_succeeded();
        assert!(
            c.export_failed(1, &"refused", t0 + 61),
            "a new outage warns at once"
        );
    }
}
