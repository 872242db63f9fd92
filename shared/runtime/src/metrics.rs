//! Prometheus metrics of a handler process, served on `/metrics` by [`crate::admin`].
//!
//! Reconcile metrics carry `controller` (the handler: `cluster-handler` or `resource-handler`)
//! and `kind` (the reconciled object's kind). The duration histogram keeps, per bucket, an
//! OpenMetrics exemplar with the reconcile's `trace_id`, so a slow bucket opens its trace.

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::Registry;

use crate::client::ApiRequest;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    controller: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: String,
    kind: String,
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

/// The exemplar label set of a reconcile duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    pub trace_id: String,
}

type DurationHistogram = HistogramWithExemplars<TraceExemplar>;

fn duration_histogram() -> DurationHistogram {
    // 5 ms .. ~41 s: a steady-state reconcile is milliseconds, a fan-out under load seconds.
    HistogramWithExemplars::new(exponential_buckets(0.005, 2.0, 14))
}

/// The metrics registry and the handles the process updates.
pub struct Metrics {
    controller: String,
    registry: Registry,
    api_requests: Family<RequestLabels, Counter>,
    reconciles: Family<KindLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    durations: Family<KindLabels, DurationHistogram>,
    in_flight: Family<KindLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    leader: Family<ControllerLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    spans_exported: Counter<u64, AtomicU64>,
    spans_dropped: Counter<u64, AtomicU64>,
}

impl Metrics {
    /// The metrics of handler `controller` (`cluster-handler` or `resource-handler`).
    pub fn new(controller: &str) -> Self {
        let mut registry = Registry::with_prefix("multigres");
        let api_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Kubernetes API requests sent, by verb and resource",
            api_requests.clone(),
        );
        let reconciles = Family::<KindLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles run, by controller and kind",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by controller, kind and error category",
            reconcile_errors.clone(),
        );
        let durations =
            Family::<KindLabels, DurationHistogram>::new_with_constructor(duration_histogram as _);
        registry.register_with_unit(
            "reconcile_duration",
            "Time from the start to the end of a reconcile, with the trace id as exemplar",
            prometheus_client::registry::Unit::Seconds,
            durations.clone(),
        );
        let in_flight = Family::default();
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now (the work being done; kube-runtime does not expose its queue)",
            Family::clone(&in_flight),
        );
        let leader = Family::default();
        registry.register(
            "leader",
            "1 when this replica is the active one (or leader election is off), 0 on standby",
            Family::clone(&leader),
        );
        let spans_exported = Counter::default();
        registry.register(
            "spans_exported",
            "Spans the trace collector accepted",
            spans_exported.clone(),
        );
        let spans_dropped = Counter::default();
        registry.register(
            "spans_dropped",
            "Spans that will never reach the collector (queue full, failed export)",
            spans_dropped.clone(),
        );
        Metrics {
            controller: controller.to_string(),
            registry,
            api_requests,
            reconciles,
            reconcile_errors,
            durations,
            in_flight,
            leader,
            spans_exported,
            spans_dropped,
        }
    }

    fn kind_labels(&self, kind: &str) -> KindLabels {
        KindLabels {
            controller: self.controller.clone(),
            kind: kind.to_string(),
        }
    }

    pub fn count_request(&self, request: &ApiRequest) {
        self.api_requests
            .get_or_create(&RequestLabels {
                verb: request.verb.to_string(),
                resource: request.resource.clone(),
            })
            .inc();
    }

    /// Counts a reconcile of `kind` starting now; the returned timer records its duration (and
    /// the in-flight gauge) when dropped.
    pub fn start_reconcile(
        self: &std::sync::Arc<Self>,
        kind: &str,
        trace_id: Option<String>,
    ) -> ReconcileTimer {
        let labels = self.kind_labels(kind);
        self.reconciles.get_or_create(&labels).inc();
        self.in_flight.get_or_create(&labels).inc();
        ReconcileTimer {
            metrics: self.clone(),
            labels,
            trace_id,
            started: Instant::now(),
        }
    }

    pub fn count_error(&self, kind: &str, category: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                controller: self.controller.clone(),
                kind: kind.to_string(),
                category: category.to_string(),
            })
            .inc();
    }

    /// Whether this replica is the active one.
    pub fn set_leader(&self, leading: bool) {
        self.leader
            .get_or_create(&ControllerLabels {
                controller: self.controller.clone(),
            })
            .set(i64::from(leading));
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn render(&self) -> String {
        // The span counters live in the telemetry pipeline; bring them up to date.
        let catch_up =
            |counter: &Counter, now: u64| counter.inc_by(now.saturating_sub(counter.get()));
        catch_up(&self.spans_exported, multigres_telemetry::spans_exported());
        catch_up(&self.spans_dropped, multigres_telemetry::spans_dropped());
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// A reconcile being timed; see [`Metrics::start_reconcile`].
pub struct ReconcileTimer {
    metrics: std::sync::Arc<Metrics>,
    labels: KindLabels,
    trace_id: Option<String>,
    started: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        let seconds = self.started.elapsed().as_secs_f64();
        let exemplar = self
            .trace_id
            .take()
            .map(|trace_id| TraceExemplar { trace_id });
        self.metrics
            .durations
            .get_or_create(&self.labels)
            .observe(seconds, exemplar, None);
        self.metrics.in_flight.get_or_create(&self.labels).dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::classify;
    use http::Method;
    use std::sync::Arc;

    #[test]
    fn requests_are_counted_by_verb_and_resource() {
        let m = Metrics::new("resource-handler");
        let patch = classify(
            &Method::PATCH,
            "/apis/apps/v1/namespaces/a/statefulsets/s",
            None,
        );
        m.count_request(&patch);
        m.count_request(&patch);
        let text = m.render();
        assert!(
            text.contains(
                r#"multigres_api_requests_total{verb="patch",resource="statefulsets"} 2"#
            ),
            "{text}"
        );
    }

    #[test]
    fn reconciles_are_timed_with_the_trace_id_as_exemplar() {
        let m = Arc::new(Metrics::new("resource-handler"));
        let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736".to_string();
        let timer = m.start_reconcile("Etcd", Some(trace_id.clone()));
        let during = m.render();
        assert!(
            during.contains(
                r#"multigres_reconciles_in_flight{controller="resource-handler",kind="Etcd"} 1"#
            ),
            "{during}"
        );
        drop(timer);
        m.count_error("Etcd", "api");
        m.set_leader(true);
        let text = m.render();
        for expected in [
            r#"multigres_reconciles_total{controller="resource-handler",kind="Etcd"} 1"#,
            r#"multigres_reconciles_in_flight{controller="resource-handler",kind="Etcd"} 0"#,
            r#"multigres_reconcile_duration_seconds_count{controller="resource-handler",kind="Etcd"} 1"#,
            r#"multigres_reconcile_errors_total{controller="resource-handler",kind="Etcd",category="api"} 1"#,
            r#"multigres_leader{controller="resource-handler"} 1"#,
            &format!(r#"# {{trace_id="{trace_id}"}}"#),
        ] {
            assert!(text.contains(expected), "missing {expected} in:\n{text}");
        }
    }
}
