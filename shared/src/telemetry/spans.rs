//! The spans every controller shares: the root span of a reconcile, parented by the trace
//! context its object carries (DESIGN §4), and error recording on the spans an error crosses.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube::{Resource, ResourceExt};
use opentelemetry::trace::TraceContextExt;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::propagation::{DEFAULT_MAX_AGE, Parent, TRACEPARENT_ANNOTATION, decide};

/// Seconds since the Unix epoch.
pub fn now_unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The root span of one reconcile, whether this reconcile is the one acting on a new
/// generation, and the trace id the object's `status.lastTraceId` should carry for this
/// generation when this process knows it (the trace of the first reconcile of the generation,
/// also for later reconciles that read a cache not showing it yet).
pub struct ReconcileSpan {
    pub span: Span,
    pub new_generation: bool,
    pub last_trace_id: Option<String>,
}

/// The root span `reconcile <Kind>` of one reconcile of `obj`. The first reconcile of a new
/// generation (`generation != observed_generation`, and not yet reconciled by this process)
/// joins the trace of a well-formed, fresh `multigres.com/traceparent`; any other reconcile
/// starts a new trace, linked to the annotated context when there is one. A malformed
/// annotation is ignored with a warning event. The span is returned unentered (a parent can
/// only be set before).
pub fn reconcile_span<K>(
    obj: &K,
    controller: &str,
    observed_generation: Option<i64>,
) -> ReconcileSpan
where
    K: Resource<DynamicType = ()>,
{
    reconcile_span_at(
        obj,
        controller,
        observed_generation,
        now_unix_secs(),
        DEFAULT_MAX_AGE,
    )
}

fn reconcile_span_at<K>(
    obj: &K,
    controller: &str,
    observed_generation: Option<i64>,
    now: u64,
    max_age: Duration,
) -> ReconcileSpan
where
    K: Resource<DynamicType = ()>,
{
    let kind = K::kind(&());
    let generation = obj.meta().generation;
    let span = tracing::info_span!(
        target: "multigres::reconcile",
        "reconcile",
        otel.name = %format!("reconcile {kind}"),
        k8s.namespace.name = %obj.namespace().unwrap_or_default(),
        multigres.resource.name = %obj.name_any(),
        multigres.resource.kind = %kind,
        k8s.object.uid = %obj.uid().unwrap_or_default(),
        k8s.object.generation = generation.unwrap_or_default(),
        multigres.controller = controller,
        multigres.trace.parent = tracing::field::Empty,
    );
    // The object may come from a cache that does not show the status the previous reconcile
    // wrote yet: only the first reconcile of a generation in this process counts as acting on it.
    let uid = obj.uid().unwrap_or_default();
    let new_generation = generation != observed_generation && SEEN.first(&uid, generation);
    match decide(obj.annotations(), new_generation, now, max_age) {
        Parent::Join(remote) => {
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
            span.record("multigres.trace.parent", "joined");
        }
        Parent::Link(remote) => {
            span.add_link(remote);
            span.record("multigres.trace.parent", "linked");
        }
        Parent::Root => {}
        Parent::Malformed(reason) => {
            span.record("multigres.trace.parent", "malformed");
            span.in_scope(|| {
                tracing::warn!(
                    annotation = TRACEPARENT_ANNOTATION,
                    reason,
                    "ignoring a malformed trace context annotation"
                )
            });
        }
    }
    let last_trace_id = if new_generation {
        let context = span.context();
        let span_context = context.span().span_context().clone();
        let id = span_context
            .is_valid()
            .then(|| span_context.trace_id().to_string());
        SEEN.remember_trace(&uid, generation, id.clone());
        id
    } else {
        SEEN.trace(&uid, generation)
    };
    ReconcileSpan {
        span,
        new_generation,
        last_trace_id,
    }
}

/// The generation this process last reconciled, per object uid. Bounded: cleared when it
/// grows past a limit (a forgotten entry only lets one more reconcile count as the first).
/// Per uid: the generation last reconciled, and the trace of its first reconcile.
type SeenMap = std::collections::HashMap<String, (Option<i64>, Option<String>)>;

struct Seen(std::sync::Mutex<SeenMap>);

static SEEN: std::sync::LazyLock<Seen> = std::sync::LazyLock::new(|| Seen(Default::default()));

impl Seen {
    const LIMIT: usize = 100_000;

    /// Whether `generation` of `uid` is seen here for the first time (and remembers it).
    fn first(&self, uid: &str, generation: Option<i64>) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(uid).is_some_and(|(seen, _)| *seen == generation) {
            return false;
        }
        if map.len() >= Self::LIMIT {
            map.clear();
        }
        map.insert(uid.to_string(), (generation, None));
        true
    }

    /// Remembers the trace of the first reconcile of `generation`.
    fn remember_trace(&self, uid: &str, generation: Option<i64>, trace: Option<String>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(uid.to_string(), (generation, trace));
    }

    /// The trace of the first reconcile of `generation`, if this process ran it.
    fn trace(&self, uid: &str, generation: Option<i64>) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(uid)
            .filter(|(seen, _)| *seen == generation)
            .and_then(|(_, trace)| trace.clone())
    }
}

/// Runs `future` inside `span`; when it fails, records the error on the span (an `exception`
/// event and status ERROR) with a log line that carries the span's trace id.
pub async fn run_in<T, E, F>(span: Span, future: F) -> Result<T, E>
where
    E: Display,
    F: Future<Output = Result<T, E>>,
{
    let result = future.instrument(span.clone()).await;
    if let Err(err) = &result {
        span.in_scope(|| record_error(err));
    }
    result
}

/// The trace id of the current span when it is sampled (what an exemplar or a log can point
/// at), `None` when tracing is off or the span is not recorded.
pub fn current_trace_id() -> Option<String> {
    let context = Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    (span_context.is_valid() && span_context.is_sampled())
        .then(|| span_context.trace_id().to_string())
}

/// Adds a span event (not a log line) to the current span: for steps that do no I/O, such as
/// building the desired objects.
pub fn event(name: &'static str, attributes: Vec<opentelemetry::KeyValue>) {
    Span::current().add_event(name, attributes);
}

/// Records `err` on the current span: an error-level event with only an `error` field becomes
/// an `exception` event and sets the span's status to ERROR (tracing-opentelemetry's mapping).
pub fn record_error(err: &dyn Display) {
    tracing::error!(error = %err);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use shared_types::*;

    use super::*;
    use crate::cli::LogFormat;
    use crate::telemetry::propagation::annotations_for;
    use crate::telemetry::tests::test_subscriber;

    mod shared_types {
        pub use crate::crd::{Etcd, EtcdSpec};
    }

    const TRACE: u128 = 0x4bf92f3577b34da6a3ce929d0e0e4736;
    const PARENT: u64 = 0x00f067aa0ba902b7;

    fn etcd(generation: i64, annotations: BTreeMap<String, String>) -> Etcd {
        let mut e = Etcd::new("topo", EtcdSpec::default());
        e.metadata.namespace = Some("prod".into());
        e.metadata.uid = Some("uid-1".into());
        e.metadata.generation = Some(generation);
        e.metadata.annotations = Some(annotations);
        e
    }

    fn stamped(now: u64) -> BTreeMap<String, String> {
        let remote = SpanContext::new(
            TraceId::from(TRACE),
            SpanId::from(PARENT),
            TraceFlags::SAMPLED,
            true,
            TraceState::NONE,
        );
        annotations_for(&remote, now)
    }

    /// Runs one reconcile span of `obj` under the test pipeline and returns the exported span.
    async fn reconcile_once(
        obj: &Etcd,
        observed: Option<i64>,
        now: u64,
        fail: bool,
    ) -> (opentelemetry_sdk::trace::SpanData, Vec<String>) {
        let (spy, logs, subscriber) = test_subscriber(&[], LogFormat::Json);
        let _default = crate::testsupport::scoped_default(subscriber);
        let span = reconcile_span_at(obj, "etcd", observed, now, Duration::from_secs(600)).span;
        let result: Result<(), String> = run_in(span, async move {
            tracing::info!("building");
            if fail {
                Err("spec.image \"x y\" is not a valid image reference".to_string())
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!(result.is_err(), fail);
        let spans = spy.finished();
        assert_eq!(spans.len(), 1, "{spans:?}");
        (spans[0].clone(), logs.lines())
    }

    #[tokio::test]
    async fn a_new_generation_with_a_fresh_annotation_joins_the_parent_trace() {
        let now = 1_800_000_000;
        let (span, _) = reconcile_once(&etcd(2, stamped(now - 5)), Some(1), now, false).await;
        assert_eq!(span.name, "reconcile Etcd");
        assert_eq!(span.span_context.trace_id(), TraceId::from(TRACE));
        assert_eq!(span.parent_span_id, SpanId::from(PARENT));
        assert!(span.parent_span_is_remote);
        assert!(span.links.is_empty());
        let attr = |k: &str| {
            span.attributes
                .iter()
                .find(|a| a.key.as_str() == k)
                .map(|a| a.value.to_string())
        };
        assert_eq!(attr("multigres.resource.kind").as_deref(), Some("Etcd"));
        assert_eq!(attr("k8s.namespace.name").as_deref(), Some("prod"));
        assert_eq!(attr("k8s.object.generation").as_deref(), Some("2"));
        assert_eq!(attr("multigres.trace.parent").as_deref(), Some("joined"));
    }

    #[tokio::test]
    async fn a_resync_or_a_stale_annotation_starts_a_new_trace_with_a_link() {
        let now = 1_800_000_000;
        for (generation, observed, age) in [(2, Some(2), 5), (3, Some(2), 3600)] {
            let (span, _) =
                reconcile_once(&etcd(generation, stamped(now - age)), observed, now, false).await;
            assert_ne!(span.span_context.trace_id(), TraceId::from(TRACE));
            assert_eq!(span.parent_span_id, SpanId::INVALID, "a root");
            let links: Vec<_> = span
                .links
                .iter()
                .map(|l| (l.span_context.trace_id(), l.span_context.span_id()))
                .collect();
            assert_eq!(links, [(TraceId::from(TRACE), SpanId::from(PARENT))]);
        }
    }

    #[tokio::test]
    async fn only_the_first_reconcile_of_a_generation_joins() {
        let now = 1_800_000_000;
        let mut obj = etcd(7, stamped(now - 5));
        obj.metadata.uid = Some("uid-joined-once".into());
        assert!(
            reconcile_span_at(
                &etcd(9, BTreeMap::new()),
                "etcd",
                Some(8),
                now,
                Duration::from_secs(600)
            )
            .new_generation
        );
        let (first, _) = reconcile_once(&obj, Some(6), now, false).await;
        assert_eq!(first.parent_span_id, SpanId::from(PARENT));
        // Same generation, status not seen yet (a stale cache): a link, not a second join.
        let (second, _) = reconcile_once(&obj, Some(6), now, false).await;
        assert_eq!(second.parent_span_id, SpanId::INVALID);
        assert_eq!(second.links.len(), 1);
        // Both report the first reconcile's trace for status.lastTraceId.
        let third = reconcile_span_at(&obj, "etcd", Some(6), now, Duration::from_secs(600));
        assert!(!third.new_generation);
        assert_eq!(
            third.last_trace_id,
            Some(first.span_context.trace_id().to_string())
        );
    }

    #[tokio::test]
    async fn a_malformed_annotation_is_a_new_root_with_a_warning_event() {
        let bad = BTreeMap::from([(
            TRACEPARENT_ANNOTATION.to_string(),
            "00-not-a-trace-01".to_string(),
        )]);
        let (span, logs) = reconcile_once(&etcd(1, bad), None, 1_800_000_000, false).await;
        assert_eq!(span.parent_span_id, SpanId::INVALID);
        assert!(span.links.is_empty());
        assert!(
            span.events.iter().any(|e| e.name.contains("malformed")),
            "{:?}",
            span.events
        );
        assert!(
            logs.iter()
                .any(|l| l.contains("WARN") && l.contains("malformed")),
            "{logs:?}"
        );
    }

    #[tokio::test]
    async fn a_failure_marks_the_span_and_logs_with_its_trace_id() {
        let (span, logs) =
            reconcile_once(&etcd(1, BTreeMap::new()), None, 1_800_000_000, true).await;
        assert!(
            matches!(span.status, opentelemetry::trace::Status::Error { .. }),
            "{:?}",
            span.status
        );
        let exception = span
            .events
            .iter()
            .find(|e| e.name == "exception")
            .expect("exception event");
        assert!(
            exception
                .attributes
                .iter()
                .any(|a| a.value.to_string().contains("not a valid image reference"))
        );
        let trace_id = span.span_context.trace_id().to_string();
        let line = logs
            .iter()
            .find(|l| l.contains("ERROR"))
            .expect("error log line");
        assert!(line.contains(&trace_id), "{line}");
    }
}
