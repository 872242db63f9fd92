//! Prometheus metrics of a handler process, served on `/metrics` by [`crate::admin`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::client::ApiRequest;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: String,
    category: String,
}

/// The metrics registry and the handles the process updates.
pub struct Metrics {
    registry: Registry,
    api_requests: Family<RequestLabels, Counter>,
    reconciles: Family<ControllerLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    spans_exported: Counter,
    spans_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("multigres");
        let api_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Kubernetes API requests sent, by verb and resource",
            api_requests.clone(),
        );
        let reconciles = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles run, by controller",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by controller and error category",
            reconcile_errors.clone(),
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
            registry,
            api_requests,
            reconciles,
            reconcile_errors,
            spans_exported,
            spans_dropped,
        }
    }
}

impl Metrics {
    pub fn count_request(&self, request: &ApiRequest) {
        self.api_requests
            .get_or_create(&RequestLabels {
                verb: request.verb.to_string(),
                resource: request.resource.clone(),
            })
            .inc();
    }

    pub fn count_reconcile(&self, controller: &str) {
        self.reconciles
            .get_or_create(&ControllerLabels {
                controller: controller.to_string(),
            })
            .inc();
    }

    pub fn count_error(&self, controller: &str, category: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                controller: controller.to_string(),
                category: category.to_string(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn render(&self) -> String {
        // The span counters live in the telemetry pipeline; bring them up to date.
        let catch_up =
            |counter: &Counter, now: u64| counter.inc_by(now.saturating_sub(counter.get()));
        catch_up(&self.spans_exported, crate::telemetry::spans_exported());
        catch_up(&self.spans_dropped, crate::telemetry::spans_dropped());
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::classify;
    use http::Method;

    #[test]
    fn requests_are_counted_by_verb_and_resource() {
        let m = Metrics::default();
        let patch = classify(
            &Method::PATCH,
            "/apis/apps/v1/namespaces/a/statefulsets/s",
            None,
        );
        m.count_request(&patch);
        m.count_request(&patch);
        m.count_reconcile("etcd");
        let text = m.render();
        assert!(
            text.contains(
                r#"multigres_api_requests_total{verb="patch",resource="statefulsets"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"multigres_reconciles_total{controller="etcd"} 1"#),
            "{text}"
        );
    }
}
