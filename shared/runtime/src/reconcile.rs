//! The bookkeeping every controller does around a reconcile: count and time it, and on failure
//! log one warning naming the object, count the error and pick the retry delay.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;

use crate::metrics::{Metrics, ReconcileTimer};
use crate::retry::Backoffs;

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
