//! What every kind's status has in common, for the controller skeleton: the generation it was
//! computed for, whether the object reached its spec, and the trace of the generation.

use serde::Serialize;

use crate::crd::{Cell, CellStatus, ClusterStatus, ComponentStatus, MultigresCluster, Phase};

/// The status of a multigres kind.
pub trait ObjectStatus: Serialize + PartialEq + Send + Sync {
    /// The generation this status was computed for.
    fn observed_generation(&self) -> Option<i64>;
    /// Whether the object reached what its spec asks (Healthy for the aggregating kinds).
    fn ready(&self) -> bool;
    /// Records the trace of the first reconcile of a generation (`status.lastTraceId`), or
    /// clears it when that reconcile's trace is not exported.
    fn record_trace(&mut self, trace_id: Option<String>);
    /// The trace `status.lastTraceId` names.
    fn last_trace_id(&self) -> Option<&str>;
}

/// A multigres kind and its status.
pub trait WithStatus {
    type Status: ObjectStatus;
    /// The status the object carries now.
    fn current_status(&self) -> Option<&Self::Status>;
}

impl ObjectStatus for ComponentStatus {
    fn observed_generation(&self) -> Option<i64> {
        self.observed_generation
    }
    fn ready(&self) -> bool {
        self.ready
    }
    fn record_trace(&mut self, trace_id: Option<String>) {
        self.last_trace_id = trace_id;
    }
    fn last_trace_id(&self) -> Option<&str> {
        self.last_trace_id.as_deref()
    }
}

/// The aggregating kinds: the shared part is in `core`, readiness is the phase.
macro_rules! aggregate_status {
    ($($status:ty),*) => {$(
        impl ObjectStatus for $status {
            fn observed_generation(&self) -> Option<i64> {
                self.core.observed_generation
            }
            fn ready(&self) -> bool {
                self.phase == Some(Phase::Healthy)
            }
            fn record_trace(&mut self, trace_id: Option<String>) {
                self.core.last_trace_id = trace_id;
            }
            fn last_trace_id(&self) -> Option<&str> {
                self.core.last_trace_id.as_deref()
            }
        }
    )*};
}
aggregate_status!(ClusterStatus, CellStatus);

macro_rules! with_status {
    ($($kind:ty => $status:ty),*) => {$(
        impl WithStatus for $kind {
            type Status = $status;
            fn current_status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
        }
    )*};
}
with_status!(MultigresCluster => ClusterStatus, Cell => CellStatus);
macro_rules! component_status {
    ($($kind:ty),*) => { with_status!($($kind => ComponentStatus),*); };
}
crate::for_each_component_kind!(component_status);
