//! Failures are never sampled away: a reconcile that ends in error, or takes longer than a
//! threshold, is exported whole from this process at any sampling rate, under the trace id it
//! would have had.
//!
//! [`RecordUnsampled`] turns the sampler's "drop" into "record only", so every span keeps its
//! data while it runs; [`KeepFailures`] passes sampled spans straight on and holds the others
//! per local root (the `reconcile` span, whose parent is remote or absent) until that root
//! ends: a root with status ERROR or a long duration releases its whole tree, marked sampled,
//! to the exporting processor; any other root's tree is dropped there, so an unsampled
//! successful reconcile costs recording, never export.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use opentelemetry::trace::{Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    Sampler, SamplingDecision, SamplingResult, ShouldSample, Span, SpanData, SpanProcessor,
};

/// A sampler whose "drop" becomes "record only": the span is not sampled (children and
/// propagated contexts say so) but its data exists until [`KeepFailures`] decides.
#[derive(Clone, Debug)]
pub(crate) struct RecordUnsampled(pub(crate) Sampler);

impl ShouldSample for RecordUnsampled {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let mut result =
            self.0
                .should_sample(parent_context, trace_id, name, span_kind, attributes, links);
        if result.decision == SamplingDecision::Drop {
            result.decision = SamplingDecision::RecordOnly;
        }
        result
    }
}

/// Spans held at most, over all open roots: beyond it new unsampled spans are not kept (a
/// failure then loses part of its tree, never the process its memory).
const MAX_HELD: usize = 50_000;

/// Passes sampled spans on to `inner`; holds unsampled ones until their local root ends.
#[derive(Debug)]
pub(crate) struct KeepFailures<P> {
    inner: P,
    /// Roots at least this long are kept too.
    slower_than: Duration,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    /// The local root of every unsampled span started and not ended yet.
    roots: HashMap<SpanId, SpanId>,
    /// Ended spans per open root, waiting for its verdict.
    ended: HashMap<SpanId, Vec<SpanData>>,
    count: usize,
}

impl<P: SpanProcessor> KeepFailures<P> {
    pub(crate) fn new(inner: P, slower_than: Duration) -> Self {
        KeepFailures {
            inner,
            slower_than,
            held: Mutex::new(Held::default()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn keeps(&self, root: &SpanData) -> bool {
        let took = root
            .end_time
            .duration_since(root.start_time)
            .unwrap_or_default();
        matches!(root.status, Status::Error { .. }) || took >= self.slower_than
    }
}

/// `span` as sampled, for the exporting processor and the trace backend.
fn sampled(mut span: SpanData) -> SpanData {
    let sc = &span.span_context;
    span.span_context = SpanContext::new(
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().with_sampled(true),
        sc.is_remote(),
        sc.trace_state().clone(),
    );
    span
}

impl<P: SpanProcessor> SpanProcessor for KeepFailures<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        use opentelemetry::trace::Span as _;
        let sc = span.span_context().clone();
        if !sc.is_sampled() {
            let parent = cx.span().span_context().clone();
            let mut held = self.held();
            let local_parent = parent.is_valid() && !parent.is_remote();
            let root = local_parent
                .then(|| held.roots.get(&parent.span_id()).copied())
                .flatten()
                .unwrap_or(sc.span_id());
            if held.roots.len() < MAX_HELD {
                held.roots.insert(sc.span_id(), root);
            }
        }
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            return self.inner.on_end(span);
        }
        let id = span.span_context.span_id();
        let mut held = self.held();
        let Some(root) = held.roots.remove(&id) else {
            return;
        };
        if root != id {
            // Kept only while its root is open: a span ending after its root has no verdict.
            if held.roots.contains_key(&root) && held.count < MAX_HELD {
                held.ended.entry(root).or_default().push(span);
                held.count += 1;
            }
            return;
        }
        let tree = held.ended.remove(&id).unwrap_or_default();
        held.count -= tree.len();
        drop(held);
        if self.keeps(&span) {
            for span in tree.into_iter().chain([span]) {
                self.inner.on_end(sampled(span));
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer, TracerProvider as _};
    use opentelemetry_sdk::trace::{SdkTracerProvider, SimpleSpanProcessor};

    use super::*;
    use crate::testing::Spy;

    /// A provider sampling `ratio` of the roots, failures kept, exporting into a spy.
    fn pipeline(ratio: f64, slower_than: Duration) -> (SdkTracerProvider, Spy) {
        let spy = Spy::default();
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)));
        let provider = SdkTracerProvider::builder()
            .with_sampler(RecordUnsampled(sampler))
            .with_span_processor(KeepFailures::new(
                SimpleSpanProcessor::new(spy.clone()),
                slower_than,
            ))
            .build();
        (provider, spy)
    }

    /// A reconcile: a root with an apply span (holding a request span) and a status span; the
    /// root fails when `fail`.
    fn reconcile(provider: &SdkTracerProvider, fail: bool) -> TraceId {
        let tracer = provider.tracer("test");
        let root = tracer.start("reconcile Etcd");
        let trace_id = root.span_context().trace_id();
        let cx = Context::current_with_span(root);
        let apply_cx = cx.with_span(tracer.start_with_context("apply StatefulSet", &cx));
        tracer
            .start_with_context("PATCH statefulsets", &apply_cx)
            .end();
        apply_cx.span().end();
        tracer.start_with_context("update status", &cx).end();
        if fail {
            cx.span()
                .set_status(Status::error("not a valid image reference"));
        }
        cx.span().end();
        trace_id
    }

    #[test]
    fn at_zero_sampling_a_failed_reconcile_is_exported_whole_and_a_good_one_not_at_all() {
        let (provider, spy) = pipeline(0.0, Duration::from_secs(3600));
        let good = reconcile(&provider, false);
        assert_eq!(
            spy.finished().len(),
            0,
            "an unsampled success exports nothing"
        );
        let bad = reconcile(&provider, true);
        let spans = spy.finished();
        let mut names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "PATCH statefulsets",
                "apply StatefulSet",
                "reconcile Etcd",
                "update status"
            ]
        );
        assert!(spans.iter().all(|s| s.span_context.trace_id() == bad));
        assert!(spans.iter().all(|s| s.span_context.is_sampled()));
        assert_ne!(good, bad);
    }

    #[test]
    fn a_slow_reconcile_is_kept_like_a_failure() {
        let (provider, spy) = pipeline(0.0, Duration::ZERO);
        reconcile(&provider, false);
        assert_eq!(spy.finished().len(), 4);
    }

    #[test]
    fn sampled_reconciles_pass_straight_through() {
        let (provider, spy) = pipeline(1.0, Duration::from_secs(3600));
        reconcile(&provider, false);
        assert_eq!(spy.finished().len(), 4);
    }

    #[test]
    fn a_span_ending_after_its_root_and_an_unknown_span_are_not_held() {
        let (provider, spy) = pipeline(0.0, Duration::from_secs(3600));
        let tracer = provider.tracer("test");
        let root = tracer.start("reconcile Etcd");
        let cx = Context::current_with_span(root);
        let mut late = tracer.start_with_context("late", &cx);
        cx.span().set_status(Status::error("failed"));
        cx.span().end();
        late.end();
        let names: Vec<String> = spy.finished().iter().map(|s| s.name.to_string()).collect();
        assert_eq!(names, ["reconcile Etcd"]);
    }
}
