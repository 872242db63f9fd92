//! The spans every controller shares: the root span of a reconcile, parented by the trace
//! context its object carries, and error recording on the spans an error crosses.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube::{Resource, ResourceExt};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::propagation::{DEFAULT_MAX_AGE, Parent, Rule, TRACEPARENT_ANNOTATION, decide};

/// Seconds since the Unix epoch.
pub fn now_unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The root span of one reconcile, whether this reconcile is the one acting on a new
/// generation, and what the object's `status.lastTraceId` should say for this generation.
pub struct ReconcileSpan {
    pub span: Span,
    pub new_generation: bool,
    pub last_trace_id: TraceRecord,
}

/// What `status.lastTraceId` should say: the trace of the first reconcile of the generation
/// when this process ran it and the trace is exported (sampled), nothing when it ran it and
/// the trace is not exported (so the status never names a trace that does not exist), and
/// what it says already when this process does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceRecord {
    Set(String),
    Clear,
    Keep,
}

impl TraceRecord {
    fn of(first: &SpanContext) -> TraceRecord {
        if first.is_valid() && first.is_sampled() {
            TraceRecord::Set(first.trace_id().to_string())
        } else {
            TraceRecord::Clear
        }
    }
}

/// The root span `reconcile <Kind>` of one reconcile of `obj`. The first reconcile of a new
/// generation (`generation != observed_generation`, and not yet reconciled by this process)
/// joins the trace of a well-formed `multigres.com/traceparent` that is fresh and not used
/// before (see [`decide`]; `recorded` is the object's `status.lastTraceId`); any other
/// reconcile starts a new trace, linked to the annotated context when there is one. A
/// malformed annotation is ignored with a warning event. The span is returned unentered (a
/// parent can only be set before).
pub fn reconcile_span<K>(
    memory: &Generations,
    obj: &K,
    controller: &str,
    observed_generation: Option<i64>,
    recorded: Option<&str>,
) -> ReconcileSpan
where
    K: Resource<DynamicType = ()>,
{
    reconcile_span_at(
        memory,
        obj,
        controller,
        observed_generation,
        recorded,
        now_unix_secs(),
        DEFAULT_MAX_AGE,
    )
}

fn reconcile_span_at<K>(
    memory: &Generations,
    obj: &K,
    controller: &str,
    observed_generation: Option<i64>,
    recorded: Option<&str>,
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
    // Traces earlier generations of this object already joined: an annotation naming one of
    // them is left over and must not capture this change.
    let used: Vec<String> = recorded
        .map(str::to_string)
        .into_iter()
        .chain(memory.latest_trace(&uid))
        .collect();
    let new_generation = generation != observed_generation && memory.first(&uid, generation, now);
    let follows = if new_generation {
        None
    } else {
        memory.follow(&uid, generation, now)
    };
    match follows {
        // A follow-up while the generation works towards Ready: part of its trace.
        Some(Follow::Continue(first)) => {
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(first));
            span.record("multigres.trace.parent", "continued");
        }
        Some(Follow::Link(first)) => {
            let rule = Rule::new(false, now, max_age);
            set_parent_from_annotation(&span, obj.annotations(), rule, Some(first))
        }
        None => {
            let rule = Rule {
                acting_on_new_generation: new_generation,
                now_unix_secs: now,
                max_age,
                used_trace_ids: &used,
            };
            set_parent_from_annotation(&span, obj.annotations(), rule, None)
        }
    }
    let last_trace_id = if new_generation {
        let context = span.context();
        let span_context = context.span().span_context().clone();
        let record = TraceRecord::of(&span_context);
        memory.remember_first(&uid, generation, span_context);
        record
    } else {
        memory
            .first_of(&uid, generation)
            .map_or(TraceRecord::Keep, |first| TraceRecord::of(&first))
    };
    ReconcileSpan {
        span,
        new_generation,
        last_trace_id,
    }
}

/// Parents `span` by the object's trace context annotation ([`decide`]); a root without one
/// links to `fallback` (the first reconcile of its generation) when given.
fn set_parent_from_annotation(
    span: &Span,
    annotations: &std::collections::BTreeMap<String, String>,
    rule: Rule<'_>,
    fallback: Option<SpanContext>,
) {
    match decide(annotations, &rule) {
        Parent::Join(remote) => {
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
            span.record("multigres.trace.parent", "joined");
        }
        Parent::Link(remote) => {
            span.add_link(remote);
            span.record("multigres.trace.parent", "linked");
        }
        Parent::Root => {
            if let Some(first) = fallback {
                span.add_link(first);
                span.record("multigres.trace.parent", "linked");
            }
        }
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
}

/// Marks the generation of `obj` Ready when `ready`: the first reconcile that sees it adds a
/// `generation ready` event (with the seconds since the generation's first reconcile) to the
/// current span, and later reconciles of the generation start traces of their own, linked to
/// its first reconcile.
pub fn mark_ready<K>(memory: &Generations, obj: &K, ready: bool)
where
    K: Resource<DynamicType = ()>,
{
    if !ready {
        return;
    }
    let uid = obj.uid().unwrap_or_default();
    if let Some(seconds) = memory.ready(&uid, obj.meta().generation, now_unix_secs()) {
        event(
            "generation ready",
            vec![opentelemetry::KeyValue::new(
                "multigres.generation.seconds_to_ready",
                seconds as i64,
            )],
        );
    }
}

/// How long the reconciles of one generation keep joining its trace, by default, when it never
/// gets Ready (a spec that cannot converge): afterwards they are roots linked to it, so one
/// trace stays readable.
pub const DEFAULT_FOLLOW_WINDOW: Duration = Duration::from_secs(30 * 60);

/// What this process remembers of the generation it last reconciled, per object uid.
struct Generation {
    generation: Option<i64>,
    /// The span of its first reconcile here (valid when tracing is on).
    first: Option<SpanContext>,
    started: u64,
    ready: bool,
}

/// How a later reconcile of a remembered generation relates to its first.
enum Follow {
    Continue(SpanContext),
    Link(SpanContext),
}

/// Per uid, the generation a controller last reconciled, and its first span: what lets the
/// reconciles of one generation share its trace. One per controller context; a restarted
/// process starts empty (its first reconciles link instead of joining). Bounded: cleared when
/// it grows past a limit (a forgotten entry only lets one more reconcile count as the first,
/// and its follow-ups link instead of joining).
pub struct Generations {
    map: std::sync::Mutex<std::collections::HashMap<String, Generation>>,
    /// How long a generation that is not Ready keeps its follow-ups in its trace.
    follow_window: Duration,
}

impl Default for Generations {
    fn default() -> Self {
        Generations::with_follow_window(DEFAULT_FOLLOW_WINDOW)
    }
}

impl Generations {
    const LIMIT: usize = 100_000;

    /// A memory whose generations keep their follow-ups for `follow_window` at most.
    pub fn with_follow_window(follow_window: Duration) -> Self {
        Generations {
            map: std::sync::Mutex::default(),
            follow_window,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Generation>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remembered<'a>(
        map: &'a mut std::collections::HashMap<String, Generation>,
        uid: &str,
        generation: Option<i64>,
    ) -> Option<&'a mut Generation> {
        map.get_mut(uid).filter(|g| g.generation == generation)
    }

    /// Whether `generation` of `uid` is seen here for the first time (and remembers it).
    fn first(&self, uid: &str, generation: Option<i64>, now: u64) -> bool {
        let mut map = self.map();
        if Self::remembered(&mut map, uid, generation).is_some() {
            return false;
        }
        if map.len() >= Self::LIMIT {
            map.clear();
        }
        map.insert(
            uid.to_string(),
            Generation {
                generation,
                first: None,
                started: now,
                ready: false,
            },
        );
        true
    }

    /// Remembers the span of the first reconcile of `generation`.
    fn remember_first(&self, uid: &str, generation: Option<i64>, first: SpanContext) {
        if let Some(g) = Self::remembered(&mut self.map(), uid, generation) {
            g.first = first.is_valid().then_some(first);
        }
    }

    /// Whether a later reconcile of `generation` continues its trace (not Ready yet, within
    /// the window) or links to it; `None` when this process did not run its first reconcile.
    fn follow(&self, uid: &str, generation: Option<i64>, now: u64) -> Option<Follow> {
        let mut map = self.map();
        let g = Self::remembered(&mut map, uid, generation)?;
        let first = g.first.clone()?;
        let open = !g.ready && now.saturating_sub(g.started) <= self.follow_window.as_secs();
        Some(if open {
            Follow::Continue(first)
        } else {
            Follow::Link(first)
        })
    }

    /// Marks `generation` Ready; the seconds since its first reconcile the first time.
    fn ready(&self, uid: &str, generation: Option<i64>, now: u64) -> Option<u64> {
        let mut map = self.map();
        let g = Self::remembered(&mut map, uid, generation)?;
        if g.ready {
            return None;
        }
        g.ready = true;
        Some(now.saturating_sub(g.started))
    }

    /// The span of the first reconcile of `generation`, if this process ran it with tracing on.
    fn first_of(&self, uid: &str, generation: Option<i64>) -> Option<SpanContext> {
        let mut map = self.map();
        Self::remembered(&mut map, uid, generation).and_then(|g| g.first.clone())
    }

    /// The trace of the first reconcile of the last generation of `uid` reconciled here.
    fn latest_trace(&self, uid: &str) -> Option<String> {
        let map = self.map();
        map.get(uid)
            .and_then(|g| g.first.as_ref())
            .map(|first| first.trace_id().to_string())
    }
}

/// Runs `future` inside `span`; when it fails, records the error on the span (an `exception`
/// event and status ERROR; see [`record_error`]).
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

/// The trace id of the current span when its trace will be exported should this reconcile
/// fail: sampled, or recorded (failed reconciles are exported at any sampling rate).
pub fn failure_trace_id() -> Option<String> {
    let context = Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    (span_context.is_valid() && (span_context.is_sampled() || span.is_recording()))
        .then(|| span_context.trace_id().to_string())
}

/// Adds a span event (not a log line) to the current span: for steps that do no I/O, such as
/// building the desired objects.
pub fn event(name: &'static str, attributes: Vec<opentelemetry::KeyValue>) {
    Span::current().add_event(name, attributes);
}

/// The target of the events that mark a span failed. They are for the trace only: the log
/// gets one line per failed reconcile from the controller skeleton instead of one per span the
/// error passed through.
pub const SPAN_ERROR_TARGET: &str = "multigres::span_error";

/// Records `err` on the current span: an error-level event with only an `error` field becomes
/// an `exception` event and sets the span's status to ERROR (tracing-opentelemetry's mapping).
pub fn record_error(err: &dyn Display) {
    tracing::error!(target: SPAN_ERROR_TARGET, error = %err);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use shared_types::*;

    use std::ops::Deref;

    use super::*;
    use crate::LogFormat;
    use crate::propagation::annotations_for;
    use crate::testing::test_subscriber;

    mod shared_types {
        pub use multigres_api::crd::{Etcd, EtcdSpec};
    }

    /// One memory for the tests of this module (each object has a uid of its own).
    static MEMORY: std::sync::LazyLock<Generations> =
        std::sync::LazyLock::new(Generations::default);

    const TRACE: u128 = 0x4bf92f3577b34da6a3ce929d0e0e4736;
    const PARENT: u64 = 0x00f067aa0ba902b7;

    fn etcd(generation: i64, annotations: BTreeMap<String, String>) -> Etcd {
        let mut e = Etcd::new("topo", EtcdSpec::default());
        e.metadata.namespace = Some("prod".into());
        // A uid of its own: what a process remembers is per uid, and tests run in parallel.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        e.metadata.uid = Some(format!("uid-{n}"));
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
        reconcile_in(MEMORY.deref(), obj, observed, None, now, fail).await
    }

    /// [`reconcile_once`] in a process that remembers `memory`, of an object whose status
    /// names trace `recorded`.
    async fn reconcile_in(
        memory: &Generations,
        obj: &Etcd,
        observed: Option<i64>,
        recorded: Option<&str>,
        now: u64,
        fail: bool,
    ) -> (opentelemetry_sdk::trace::SpanData, Vec<String>) {
        let (spy, logs, subscriber) = test_subscriber(&[], LogFormat::Json);
        let _default = crate::testing::scoped_default(subscriber);
        let span = reconcile_span_at(
            memory,
            obj,
            "etcd",
            observed,
            recorded,
            now,
            Duration::from_secs(600),
        )
        .span;
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
                MEMORY.deref(),
                &etcd(9, BTreeMap::new()),
                "etcd",
                Some(8),
                None,
                now,
                Duration::from_secs(600)
            )
            .new_generation
        );
        let (first, _) = reconcile_once(&obj, Some(6), now, false).await;
        assert_eq!(first.parent_span_id, SpanId::from(PARENT));
        // Same generation, status not seen yet (a stale cache): not a second join of the
        // annotation but a follow-up, under the first reconcile.
        let (second, _) = reconcile_once(&obj, Some(6), now, false).await;
        assert_eq!(second.parent_span_id, first.span_context.span_id());
        assert!(second.links.is_empty());
        // Both report the first reconcile's trace for status.lastTraceId.
        let third = reconcile_span_at(
            MEMORY.deref(),
            &obj,
            "etcd",
            Some(6),
            None,
            now,
            Duration::from_secs(600),
        );
        assert!(!third.new_generation);
        assert_eq!(
            third.last_trace_id,
            TraceRecord::Set(first.span_context.trace_id().to_string())
        );
    }

    #[test]
    fn a_failure_names_its_trace_at_any_sampling_rate_unless_tracing_is_off() {
        let ids = |env: &[(&str, &str)]| {
            let (_spy, _logs, subscriber) = test_subscriber(env, LogFormat::Json);
            let _default = crate::testing::scoped_default(subscriber);
            tracing::info_span!(target: "multigres::reconcile", "reconcile")
                .in_scope(|| (current_trace_id().is_some(), failure_trace_id().is_some()))
        };
        let ratio = |r: &'static str| {
            [
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", r),
            ]
        };
        // Unsampled: no exemplar or success note points at it, a failure's note does.
        assert_eq!(ids(&ratio("0")), (false, true));
        assert_eq!(ids(&ratio("1")), (true, true));
        assert_eq!(
            ids(&[("OTEL_TRACES_SAMPLER", "always_off")]),
            (false, false)
        );
    }

    #[tokio::test]
    async fn an_unsampled_annotation_exports_nothing_and_records_no_trace_id() {
        let now = 1_800_000_000;
        let unsampled = SpanContext::new(
            TraceId::from(TRACE),
            SpanId::from(PARENT),
            TraceFlags::default(),
            true,
            TraceState::NONE,
        );
        let obj = etcd(2, annotations_for(&unsampled, now - 5));
        let (spy, _logs, subscriber) = test_subscriber(&[], LogFormat::Json);
        let _default = crate::testing::scoped_default(subscriber);
        let max_age = Duration::from_secs(600);
        let root = reconcile_span_at(MEMORY.deref(), &obj, "etcd", Some(1), None, now, max_age);
        assert!(root.new_generation);
        // The flags may decide the export; the status then names no trace rather than one
        // that never exists.
        assert_eq!(root.last_trace_id, TraceRecord::Clear);
        root.span.in_scope(|| tracing::info!("work"));
        drop(root.span);
        let follow = reconcile_span_at(MEMORY.deref(), &obj, "etcd", Some(1), None, now, max_age);
        assert_eq!(follow.last_trace_id, TraceRecord::Clear);
        drop(follow.span);
        assert_eq!(spy.finished().len(), 0, "flags 00: nothing exported");
        // The same object with a sampled annotation records its trace.
        let sampled = etcd(2, stamped(now - 5));
        let root = reconcile_span_at(
            MEMORY.deref(),
            &sampled,
            "etcd",
            Some(1),
            None,
            now,
            max_age,
        );
        assert_eq!(
            root.last_trace_id,
            TraceRecord::Set(TraceId::from(TRACE).to_string())
        );
    }

    #[tokio::test]
    async fn a_user_value_joins_the_change_it_arrives_with_and_never_again() {
        let now = 1_800_000_000;
        let user = SpanContext::new(
            TraceId::from(TRACE),
            SpanId::from(PARENT),
            TraceFlags::SAMPLED,
            true,
            TraceState::NONE,
        );
        // What a user writes: the traceparent alone, no stamp.
        let annotations = BTreeMap::from([(
            TRACEPARENT_ANNOTATION.to_string(),
            crate::propagation::format_traceparent(&user),
        )]);
        let memory = Generations::default();
        let mut obj = etcd(2, annotations);
        let (joined, _) = reconcile_in(&memory, &obj, Some(1), None, now, false).await;
        assert_eq!(
            (joined.span_context.trace_id(), joined.parent_span_id),
            (TraceId::from(TRACE), SpanId::from(PARENT))
        );
        // The next change, the value left in place: a new trace linked to it, in this process
        // (which remembers the join) ...
        obj.metadata.generation = Some(3);
        let (later, _) = reconcile_in(&memory, &obj, Some(2), None, now, false).await;
        let recorded = TraceId::from(TRACE).to_string();
        // ... and in a restarted one, which reads the trace from status.lastTraceId.
        let (restarted, _) = reconcile_in(
            &Generations::default(),
            &obj,
            Some(2),
            Some(&recorded),
            now,
            false,
        )
        .await;
        for span in [later, restarted] {
            assert_ne!(span.span_context.trace_id(), TraceId::from(TRACE));
            assert_eq!(span.parent_span_id, SpanId::INVALID);
            let links: Vec<_> = span
                .links
                .iter()
                .map(|l| l.span_context.span_id())
                .collect();
            assert_eq!(links, [SpanId::from(PARENT)]);
        }
    }

    #[tokio::test]
    async fn a_forged_tracestate_travels_only_with_a_joined_context_and_only_as_w3c_asks() {
        use crate::propagation::{TRACEPARENT_TS_ANNOTATION, TRACESTATE_ANNOTATION};
        let now = 1_800_000_000;
        let max_age = Duration::from_secs(600);
        let mut annotations = stamped(now - 5);
        // Valid members, a key W3C forbids, and a duplicate key.
        annotations.insert(
            TRACESTATE_ANNOTATION.to_string(),
            "vendor=ok,Bad Key=x,other=fine,vendor=again".to_string(),
        );
        let (_spy, _logs, subscriber) = test_subscriber(&[], LogFormat::Json);
        let _default = crate::testing::scoped_default(subscriber);
        // The context of the first reconcile of generation 2 of an Etcd annotated so.
        let context_of = |annotations: BTreeMap<String, String>| {
            let obj = etcd(2, annotations);
            let root = reconcile_span_at(MEMORY.deref(), &obj, "etcd", Some(1), None, now, max_age);
            root.span.context().span().span_context().clone()
        };
        let cx = context_of(annotations.clone());
        assert_eq!(cx.trace_state().header(), "vendor=ok,other=fine");
        let to_children = annotations_for(&cx, now);
        assert_eq!(
            to_children.get(TRACESTATE_ANNOTATION).map(String::as_str),
            Some("vendor=ok,other=fine")
        );
        // A stale stamp: the reconcile is a new root that links, and carries no state at all.
        annotations.insert(
            TRACEPARENT_TS_ANNOTATION.to_string(),
            (now - 3_600).to_string(),
        );
        let cx = context_of(annotations);
        assert_ne!(cx.trace_id(), TraceId::from(TRACE));
        assert!(!annotations_for(&cx, now).contains_key(TRACESTATE_ANNOTATION));
    }

    /// Runs a reconcile span of `obj` in which the object is seen Ready when `ready`.
    async fn reconcile_seeing(
        obj: &Etcd,
        observed: Option<i64>,
        now: u64,
        ready: bool,
    ) -> opentelemetry_sdk::trace::SpanData {
        let (spy, _logs, subscriber) = test_subscriber(&[], LogFormat::Json);
        let _default = crate::testing::scoped_default(subscriber);
        let span = reconcile_span_at(
            MEMORY.deref(),
            obj,
            "etcd",
            observed,
            None,
            now,
            Duration::from_secs(600),
        )
        .span;
        span.in_scope(|| mark_ready(&MEMORY, obj, ready));
        drop(span);
        spy.finished().pop().expect("one span")
    }

    #[tokio::test]
    async fn the_reconciles_of_a_generation_are_one_trace_until_it_is_ready() {
        let now = now_unix_secs();
        let mut obj = etcd(3, BTreeMap::new());
        obj.metadata.uid = Some("uid-until-ready".into());
        let first = reconcile_seeing(&obj, Some(2), now, false).await;
        assert_eq!(
            first.parent_span_id,
            SpanId::INVALID,
            "the generation's root"
        );
        let trace = first.span_context.trace_id();
        let ready = reconcile_seeing(&obj, Some(3), now, true).await;
        assert_eq!(ready.span_context.trace_id(), trace);
        assert_eq!(ready.parent_span_id, first.span_context.span_id());
        let event = ready
            .events
            .iter()
            .find(|e| e.name == "generation ready")
            .expect("the reconcile that sees Ready says so");
        assert!(
            event
                .attributes
                .iter()
                .any(|a| a.key.as_str() == "multigres.generation.seconds_to_ready"),
            "{event:?}"
        );
        // Once Ready: resyncs are traces of their own, linked to the generation's first span,
        // and say Ready no more.
        let resync = reconcile_seeing(&obj, Some(3), now, true).await;
        assert_ne!(resync.span_context.trace_id(), trace);
        assert_eq!(resync.parent_span_id, SpanId::INVALID);
        let links: Vec<_> = resync
            .links
            .iter()
            .map(|l| (l.span_context.trace_id(), l.span_context.span_id()))
            .collect();
        assert_eq!(links, [(trace, first.span_context.span_id())]);
        assert!(resync.events.iter().all(|e| e.name != "generation ready"));
    }

    #[tokio::test]
    async fn a_generation_that_never_gets_ready_stops_growing_its_trace_after_the_window() {
        let now = 1_800_000_000;
        let mut obj = etcd(4, BTreeMap::new());
        obj.metadata.uid = Some("uid-never-ready".into());
        let first = reconcile_seeing(&obj, Some(3), now, false).await;
        let within =
            reconcile_seeing(&obj, Some(4), now + DEFAULT_FOLLOW_WINDOW.as_secs(), false).await;
        assert_eq!(within.parent_span_id, first.span_context.span_id());
        let after = reconcile_seeing(
            &obj,
            Some(4),
            now + DEFAULT_FOLLOW_WINDOW.as_secs() + 1,
            false,
        )
        .await;
        assert_eq!(after.parent_span_id, SpanId::INVALID);
        assert_eq!(after.links.len(), 1);
    }

    #[test]
    fn the_follow_window_is_the_memory_s_own() {
        let memory = Generations::with_follow_window(Duration::from_secs(60));
        let now = 1_800_000_000;
        let first = SpanContext::new(
            TraceId::from(TRACE),
            SpanId::from(PARENT),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        );
        assert!(memory.first("uid-window", Some(2), now));
        memory.remember_first("uid-window", Some(2), first);
        let follows = |at: u64| match memory.follow("uid-window", Some(2), at) {
            Some(Follow::Continue(_)) => "continue",
            Some(Follow::Link(_)) => "link",
            None => "none",
        };
        assert_eq!(follows(now + 60), "continue");
        assert_eq!(follows(now + 61), "link");
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
    async fn a_failure_marks_the_span_and_stays_out_of_the_log() {
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
        // The skeleton logs the failed reconcile once; the span's own marker is not a line
        // (the log itself works: the reconcile's info line is there).
        assert!(logs.iter().any(|l| l.contains("building")), "{logs:?}");
        assert!(
            logs.iter()
                .all(|l| !l.contains("not a valid image reference")),
            "{logs:?}"
        );
    }
}
