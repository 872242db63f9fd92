//! The bookkeeping every controller does around a reconcile: count it, and on failure log one
//! warning naming the object, count the error and pick the retry delay.

use std::fmt::Display;
use std::time::Duration;

use kube::runtime::controller::Action;

use crate::metrics::Metrics;
use crate::retry::Backoffs;

/// After a successful reconcile: forget past failures, come back after `resync`.
pub fn succeeded(controller: &str, object: &str, backoffs: &Backoffs, resync: Duration) -> Action {
    backoffs.reset(&format!("{controller}/{object}"));
    Action::requeue(resync)
}

/// After a failed reconcile: one warning with the object and error, a metric, and a retry
/// after the object's backoff delay (never a hot loop).
pub fn failed(
    controller: &str,
    object: &str,
    error: &dyn Display,
    category: &str,
    backoffs: &Backoffs,
    metrics: &Metrics,
) -> Action {
    let delay = backoffs.next(&format!("{controller}/{object}"));
    metrics.count_error(controller, category);
    tracing::warn!(object, controller, error = %error, category, retry_in_secs = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

/// Whether `obj` is being deleted. A reconcile then writes nothing: recreating children that
/// garbage collection is removing would fight it forever (foreground deletion never ends).
pub fn is_being_deleted<K: kube::Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some()
}

/// The opening of every reconcile: count it, and when `obj` is being deleted return the action
/// that ends the reconcile there (its children are left to garbage collection).
pub fn begin<K: kube::Resource>(
    controller: &str,
    object: &str,
    obj: &K,
    metrics: &Metrics,
) -> Option<Action> {
    metrics.count_reconcile(controller);
    if is_being_deleted(obj) {
        tracing::debug!(
            object,
            "being deleted; leaving its children to garbage collection"
        );
        return Some(Action::await_change());
    }
    None
}
