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
#[derive(Debug, Default)]
pub(crate) struct Counters {
    in_flight: AtomicUsize,
    pub(crate) exported: AtomicU64,
    pub(crate) dropped: AtomicU64,
    shut_down: AtomicBool,
}

impl Counters {
    pub(crate) const fn new() -> Self {
        Counters {
            in_flight: AtomicUsize::new(0),
            exported: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            shut_down: AtomicBool::new(false),
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
        let counter = match result {
            Ok(()) => &self.counters.exported,
            Err(_) => &self.counters.dropped,
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
