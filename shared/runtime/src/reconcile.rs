//! The bookkeeping every controller does around a reconcile: run it in its root span, count and
//! time it, publish a Warning Event when it fails, and on failure log one warning naming the
//! object, count the error and pick the retry delay.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use kube::runtime::controller::Action;
use multigres_telemetry::spans;

use crate::events::EventRecorder;
use crate::metrics::{Metrics, ReconcileTimer};
use crate::retry::Backoffs;

/// A reconcile's error, as Events and metrics name it.
pub trait Failure: Display {
    /// CamelCase reason of the Warning Event, e.g. `InvalidImage`.
    fn reason(&self) -> &'static str;
}

/// Runs `body` as the reconcile of `obj`, in its `reconcile <Kind>` root span (joined to or
/// linked with the annotated trace context); `body` gets the trace id to record in status. A
/// failure is published as a Warning Event on `obj` from inside the span, so its note names
/// the failing trace.
pub async fn in_root_span<K, E, F, Fut>(
    obj: &K,
    controller: &str,
    observed_generation: Option<i64>,
    events: &EventRecorder,
    body: F,
) -> Result<Action, E>
where
    K: Resource<DynamicType = ()>,
    E: Failure,
    F: FnOnce(Option<String>) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
{
    let root = spans::reconcile_span(obj, controller, observed_generation);
    spans::run_in(root.span, async {
        let result = body(root.last_trace_id).await;
        if let Err(err) = &result {
            events.failed(obj, err.reason(), &err.to_string()).await;
        }
        result
    })
    .await
}

/// After a successful reconcile: forget past failures, come back after `resync`.
pub fn succeeded(kind: &str, object: &str, backoffs: &Backoffs, resync: Duration) -> Action {
    backoffs.reset(&format!("{kind}/{object}"));
    Action::requeue(resync)
}

/// After a failed reconcile: one warning with the object and error, a metric, and a retry
/// after the object's backoff delay (never a hot loop).
pub fn failed(
    kind: &str,
    object: &str,
    error: &dyn Display,
    category: &str,
    backoffs: &Backoffs,
    metrics: &Metrics,
) -> Action {
    let delay = backoffs.next(&format!("{kind}/{object}"));
    metrics.count_error(kind, category);
    tracing::warn!(object, kind, error = %error, category, retry_in_secs = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

/// Whether `obj` is being deleted. A reconcile then writes nothing: recreating children that
/// garbage collection is removing would fight it forever (foreground deletion never ends).
pub fn is_being_deleted<K: kube::Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some()
}

/// The opening of every reconcile, called inside its root span: count it and start its timer
/// (keep the timer until the reconcile ends; its exemplar is the span's trace id). When `obj`
/// is being deleted, also returns the action that ends the reconcile there (its children are
/// left to garbage collection).
pub fn begin<K: kube::Resource>(
    kind: &str,
    object: &str,
    obj: &K,
    metrics: &Arc<Metrics>,
) -> (ReconcileTimer, Option<Action>) {
    let timer = metrics.start_reconcile(kind, multigres_telemetry::spans::current_trace_id());
    if is_being_deleted(obj) {
        tracing::debug!(
            object,
            "being deleted; leaving its children to garbage collection"
        );
        return (timer, Some(Action::await_change()));
    }
    (timer, None)
}
