//! The controller skeleton: what every reconcile does whatever its kind. A controller
//! implements [`Reconciler`] (build and apply its children, observe the status); [`reconcile`]
//! and [`error_policy`] do the rest, in this order:
//!
//! 1. the `reconcile <Kind>` root span, joined to or linked with the annotated trace context
//!    (the first reconcile of a generation records its trace id in `status.lastTraceId`);
//! 2. wait for the caches, count and time the reconcile;
//! 3. stop at an object being deleted (its children are left to garbage collection);
//! 4. the controller's own work, then the status write when the status changed, with a log
//!    line;
//! 5. on failure, from inside the span: one log line (carrying the trace id), an error metric,
//!    the object's next backoff delay and a Warning Event (its note names the trace); then a
//!    retry after that delay (never a hot loop). On success the backoff is forgotten and the
//!    next look is after the resync.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use multigres_api::meta::object_ref;
use multigres_api::status::{ObjectStatus, WithStatus};
use multigres_telemetry::spans;
use serde::de::DeserializeOwned;
use tracing::Level;

use crate::events::EventRecorder;
use crate::failure::CommonFailure;
use crate::fanout::FanOut;
use crate::metrics::Metrics;
use crate::recent::RecentWrites;
use crate::retry::Backoffs;
use crate::status::{StatusWriteFailed, write_status};
use crate::watch::CachesReady;

/// A reconcile's error, as Events, logs and metrics name it.
pub trait Failure: std::error::Error + Send + Sync + 'static {
    /// CamelCase reason of the Warning Event, e.g. `InvalidImage`.
    fn reason(&self) -> &'static str;
    /// Low-cardinality label of the error metric and log line, e.g. `invalid_spec`.
    fn category(&self) -> &'static str;
    /// Whether the user must change something (the spec, a Secret, volumes in the way) before
    /// a retry can succeed: the log line is then a warning, not an error.
    fn user_must_act(&self) -> bool;
    /// Whether the failure only says that the object or its namespace is going away (deleted
    /// during the reconcile, a namespace being deleted; see [`crate::gone`]): a normal moment of
    /// an object's life, logged as information, with no Warning Event.
    fn going_away(&self) -> bool {
        false
    }
}

/// What one reconcile found: the status to write and how the reconcile went.
pub struct Outcome<S, E> {
    pub status: S,
    /// The reconcile's own failure, reported after the status is written (the status says
    /// what went wrong; the error drives the retry).
    pub result: Result<(), E>,
    /// On success, look again after this long instead of the resync interval (for what sends
    /// no watch events, such as the Multigres topology).
    pub recheck: Option<Duration>,
}

impl<S, E> Outcome<S, E> {
    pub fn new(status: S, result: Result<(), E>) -> Self {
        Outcome {
            status,
            result,
            recheck: None,
        }
    }
}

/// The parts of a controller's context the skeleton uses.
pub struct Bookkeeping {
    pub client: kube::Client,
    /// Field manager of the status writes.
    pub manager: &'static str,
    pub events: EventRecorder,
    /// The caches the reconciles read, waited for before each one.
    pub caches: CachesReady,
    pub backoffs: Backoffs,
    pub metrics: Arc<Metrics>,
    /// How often a healthy object is reconciled again without any event.
    pub resync: Duration,
    /// Writes the caches have not shown yet (see [`crate::recent`]).
    pub recent: Arc<RecentWrites>,
    /// The generations reconciled here and their traces (see [`spans::Generations`]).
    pub generations: spans::Generations,
}

impl Bookkeeping {
    /// The bookkeeping of a controller writing as field manager `manager`, whose reconciles
    /// wait for `caches`.
    pub fn new(
        client: kube::Client,
        manager: &'static str,
        caches: CachesReady,
        metrics: Arc<Metrics>,
        resync: Duration,
    ) -> Self {
        Bookkeeping {
            events: EventRecorder::new(client.clone(), manager),
            client,
            manager,
            caches,
            backoffs: Backoffs::default(),
            metrics,
            resync,
            recent: Arc::default(),
            generations: spans::Generations::default(),
        }
    }

    /// The same, its generations keeping their follow-ups in one trace for `window` at most
    /// when they do not get Ready.
    pub fn following_generations_for(mut self, window: Duration) -> Self {
        self.generations = spans::Generations::with_follow_window(window);
        self
    }

    /// A fan-out of child applies as this controller's field manager.
    pub fn fan_out(&self) -> FanOut {
        FanOut::new(self.manager, self.recent.clone())
    }
}

/// What differs between controllers of kind `K`: how to build, apply and observe.
pub trait Reconciler<K: WithStatus>: Send + Sync + 'static {
    /// Wraps the [`CommonFailure`]s, so the skeleton can report a failed status write.
    type Error: Failure + From<CommonFailure>;

    fn bookkeeping(&self) -> &Bookkeeping;

    /// Builds and applies the children of `obj` and observes them. An error here leaves the
    /// status as it is.
    fn reconcile(
        &self,
        obj: &K,
    ) -> impl Future<Output = Result<Outcome<K::Status, Self::Error>, Self::Error>> + Send;
}

/// The reconcile function of a kube-runtime `Controller` of kind `K`.
pub async fn reconcile<K, R>(obj: Arc<K>, ctx: Arc<R>) -> Result<Action, R::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + WithStatus
        + Send
        + Sync
        + 'static,
    R: Reconciler<K>,
{
    let kind = K::kind(&());
    let controller = kind.to_lowercase();
    let status = obj.current_status();
    let observed = status.and_then(ObjectStatus::observed_generation);
    let recorded = status.and_then(ObjectStatus::last_trace_id);
    let run = ctx.bookkeeping();
    let root = spans::reconcile_span(
        &run.generations,
        obj.as_ref(),
        &controller,
        observed,
        recorded,
    );
    spans::run_in(root.span, async {
        let result = reconcile_in_span(obj.as_ref(), ctx.as_ref(), root.last_trace_id).await;
        if let Err(err) = &result {
            report_failure(obj.as_ref(), run, err).await;
        }
        result
    })
    .await
}

/// The one log line of a failed reconcile (inside its root span, so it carries the trace id),
/// its error metric, its next backoff delay and its Warning Event (none for an object going
/// away: see [`log_level`]).
async fn report_failure<K, E>(obj: &K, run: &Bookkeeping, err: &E)
where
    K: Resource<DynamicType = ()>,
    E: Failure,
{
    let kind = K::kind(&());
    let object = object_ref(obj);
    let category = err.category();
    let delay = run.backoffs.next(&backoff_key(obj));
    run.metrics.count_error(&kind, category);
    let retry_in_secs = delay.as_secs();
    match log_level(err) {
        Level::INFO => {
            tracing::info!(object, kind = %kind, error = %err, category, retry_in_secs, "reconcile stopped: the object or its namespace is going away");
            return;
        }
        Level::WARN => {
            tracing::warn!(object, kind = %kind, error = %err, category, retry_in_secs, "reconcile failed");
        }
        _ => {
            tracing::error!(object, kind = %kind, error = %err, category, retry_in_secs, "reconcile failed");
        }
    }
    run.events.failed(obj, err.reason(), &err.to_string()).await;
}

/// How a failed reconcile is logged: information when the object is going away, a warning when
/// the user must act, an error otherwise.
fn log_level(err: &impl Failure) -> Level {
    if err.going_away() {
        Level::INFO
    } else if err.user_must_act() {
        Level::WARN
    } else {
        Level::ERROR
    }
}

/// The key of `obj`'s failures in the per-object backoff.
fn backoff_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!("{}/{}", K::kind(&()), object_ref(obj))
}

async fn reconcile_in_span<K, R>(
    obj: &K,
    ctx: &R,
    last_trace_id: spans::TraceRecord,
) -> Result<Action, R::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + WithStatus,
    R: Reconciler<K>,
{
    let run = ctx.bookkeeping();
    run.caches.wait().await;
    let kind = K::kind(&());
    let object = object_ref(obj);
    let _timer = run
        .metrics
        .start_reconcile(&kind, spans::current_trace_id());
    if obj.meta().deletion_timestamp.is_some() {
        // Recreating children that garbage collection is removing would fight it forever
        // (foreground deletion never ends).
        tracing::debug!(
            object,
            "being deleted; leaving its children to garbage collection"
        );
        return Ok(Action::await_change());
    }
    let Outcome {
        mut status,
        result,
        recheck,
    } = ctx.reconcile(obj).await?;
    match last_trace_id {
        spans::TraceRecord::Set(trace_id) => status.record_trace(Some(trace_id)),
        spans::TraceRecord::Clear => status.record_trace(None),
        spans::TraceRecord::Keep => {}
    }
    let ready = status.ready();
    spans::mark_ready(&run.generations, obj, ready);
    let api: Api<K> = Api::namespaced(run.client.clone(), &obj.namespace().unwrap_or_default());
    let written = write_status(
        &api,
        run.manager,
        &run.recent,
        obj,
        obj.current_status(),
        &status,
    )
    .await
    .map_err(|source| {
        CommonFailure::Status(StatusWriteFailed {
            object: object.clone(),
            source,
        })
    })?;
    if written {
        tracing::info!(object, ready, "status updated");
    }
    result?;
    run.backoffs.reset(&backoff_key(obj));
    Ok(Action::requeue(recheck.unwrap_or(run.resync)))
}

/// The error policy of a kube-runtime `Controller` of kind `K`: a retry after the delay the
/// failed reconcile drew from the object's backoff (it already logged and counted the failure).
pub fn error_policy<K, R>(obj: Arc<K>, _err: &R::Error, ctx: Arc<R>) -> Action
where
    K: Resource<DynamicType = ()> + WithStatus,
    R: Reconciler<K>,
{
    Action::requeue(ctx.bookkeeping().backoffs.last(&backoff_key(obj.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed")]
    struct Failed {
        user_must_act: bool,
        going_away: bool,
    }

    impl Failure for Failed {
        fn reason(&self) -> &'static str {
            "Failed"
        }
        fn category(&self) -> &'static str {
            "test"
        }
        fn user_must_act(&self) -> bool {
            self.user_must_act
        }
        fn going_away(&self) -> bool {
            self.going_away
        }
    }

    #[test]
    fn only_what_nobody_expects_is_logged_as_an_error() {
        let level = |user_must_act, going_away| {
            log_level(&Failed {
                user_must_act,
                going_away,
            })
        };
        assert_eq!(level(false, false), Level::ERROR);
        assert_eq!(level(true, false), Level::WARN);
        assert_eq!(level(false, true), Level::INFO);
        assert_eq!(level(true, true), Level::INFO);
    }
}
