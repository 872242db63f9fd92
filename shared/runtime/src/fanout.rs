//! The one concurrent applier of both handlers: every child of one parent is applied in its own
//! tokio task (and its own `apply` span), so the wall time of a fan-out is that of the slowest
//! child, and one failing child does not stop its siblings; every failure is reported.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::apply::{Decision, Desired, apply};
use crate::recent::RecentWrites;

/// The outcome of one child's apply.
#[derive(Debug)]
pub struct ChildWrite {
    /// `Kind name` of the child.
    pub id: String,
    /// The child, for Events about it.
    pub child: ObjectReference,
    pub result: Result<Decision, String>,
    /// The failure only says that the child's namespace is being deleted (see
    /// [`crate::gone::going_away`]).
    pub going_away: bool,
}

/// A set of child applies running concurrently.
pub struct FanOut {
    /// The field manager of the applies.
    manager: &'static str,
    recent: Arc<RecentWrites>,
    tasks: JoinSet<ChildWrite>,
}

impl FanOut {
    /// Applies made as field manager `manager`, remembered in `recent`.
    pub fn new(manager: &'static str, recent: Arc<RecentWrites>) -> Self {
        FanOut {
            manager,
            recent,
            tasks: JoinSet::new(),
        }
    }

    /// Starts applying `desired` (compared with `live`, the cached child) in a new task.
    pub fn apply<K>(&mut self, api: Api<K>, desired: Desired<K>, live: Option<Arc<K>>)
    where
        K: Resource<DynamicType = ()>
            + Clone
            + Debug
            + Serialize
            + DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        let id = format!("{} {}", K::kind(&()), desired.object.name_any());
        let child = desired.object.object_ref(&());
        let manager = self.manager;
        let recent = self.recent.clone();
        // The task runs in the reconcile's span, so each child's `apply` span is its child.
        let task = async move {
            let applied = apply(&api, manager, &recent, desired, live.as_deref()).await;
            let going_away = applied.as_ref().is_err_and(crate::gone::going_away);
            let result = applied
                .map(|applied| applied.decision)
                .map_err(|e| e.to_string());
            if let Ok(decision) = &result
                && decision.needs_write()
            {
                tracing::info!(child = id, decision = decision.as_str(), "applied");
            }
            ChildWrite {
                id,
                child,
                result,
                going_away,
            }
        };
        self.tasks.spawn(task.in_current_span());
    }

    /// Waits for every child; a task that panicked is reported as a failed child.
    pub async fn join(self) -> Vec<ChildWrite> {
        let mut done = Vec::new();
        let mut tasks = self.tasks;
        while let Some(joined) = tasks.join_next().await {
            done.push(joined.unwrap_or_else(|e| ChildWrite {
                id: "child task".to_string(),
                child: ObjectReference::default(),
                result: Err(format!("task failed: {e}")),
                going_away: false,
            }));
        }
        done.sort_by(|a, b| a.id.cmp(&b.id));
        done
    }
}

/// The ids of the children a fan-out wrote.
pub fn written(writes: &[ChildWrite]) -> std::collections::BTreeSet<String> {
    writes
        .iter()
        .filter(|w| w.result.as_ref().is_ok_and(|d| d.needs_write()))
        .map(|w| w.id.clone())
        .collect()
}

/// The failures of a fan-out in one line: `Kind name: error; ...`.
pub fn describe(failed: &[(String, String)]) -> String {
    failed
        .iter()
        .map(|(id, e)| format!("{id}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether some children failed, each only because its namespace is being deleted.
pub fn only_going_away(writes: &[ChildWrite]) -> bool {
    let mut failed = writes.iter().filter(|w| w.result.is_err()).peekable();
    failed.peek().is_some() && failed.all(|w| w.going_away)
}

/// The failed children of a fan-out as `(id, error)`.
pub fn failures(writes: &[ChildWrite]) -> Vec<(String, String)> {
    writes
        .iter()
        .filter_map(|w| w.result.as_ref().err().map(|e| (w.id.clone(), e.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use http::{Request, Response};
    use kube::client::Body;
    use multigres_api::crd::{MultiGateway, MultiGatewaySpec, TopoSpec};

    use super::*;

    /// A client whose every request takes `delay`, answering with the object it was sent;
    /// `peak` records the most requests in flight at once.
    fn slow_client(delay: Duration, peak: Arc<AtomicUsize>) -> kube::Client {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let service = tower::service_fn(move |request: Request<Body>| {
            let (in_flight, peak) = (in_flight.clone(), peak.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                let body = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .unwrap_or_default();
                Ok::<_, Infallible>(Response::new(Body::from(body.to_vec())))
            }
        });
        kube::Client::new(service, "default")
    }

    /// Every test here runs under a span-capturing subscriber (see `scoped_default`).
    fn capture_spans() -> (
        impl Fn() -> Vec<opentelemetry_sdk::trace::SpanData>,
        tracing::subscriber::DefaultGuard,
    ) {
        let (spans, subscriber) = multigres_test_support::span_capture();
        (spans, multigres_test_support::scoped_default(subscriber))
    }

    fn gateway(name: &str) -> MultiGateway {
        let mut g = MultiGateway::new(
            name,
            MultiGatewaySpec {
                cell: "a".into(),
                topo: TopoSpec {
                    global_server_addresses: "x:2379".into(),
                    global_root: None,
                },
                ..Default::default()
            },
        );
        g.metadata.namespace = Some("default".into());
        g
    }

    #[tokio::test]
    async fn children_are_applied_concurrently_so_wall_time_is_that_of_the_slowest() {
        let (_spans, _default) = capture_spans();
        let delay = Duration::from_millis(300);
        let peak = Arc::new(AtomicUsize::new(0));
        let api: Api<MultiGateway> = Api::namespaced(slow_client(delay, peak.clone()), "default");
        let children = 6;
        let started = Instant::now();
        let mut fan = FanOut::new("multigres-test", Default::default());
        for i in 0..children {
            fan.apply(api.clone(), Desired::new(gateway(&format!("g{i}"))), None);
        }
        let writes = fan.join().await;
        let wall = started.elapsed();
        assert_eq!(writes.len(), children);
        assert!(
            writes.iter().all(|w| w.result == Ok(Decision::Create)),
            "{writes:?}"
        );
        assert_eq!(
            peak.load(Ordering::SeqCst),
            children,
            "every child in flight at once"
        );
        let sum = delay * children as u32;
        assert!(
            wall < sum / 2,
            "fan-out took {wall:?}; one child takes {delay:?}, all in a row {sum:?}"
        );
    }

    #[tokio::test]
    async fn one_failing_child_does_not_stop_its_siblings() {
        let (spans, _default) = capture_spans();
        let service = tower::service_fn(|request: Request<Body>| async move {
            let failing = request.uri().path().ends_with("/bad");
            let body = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            let mut response = if failing {
                let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "admission webhook said no", "reason": "Forbidden", "code": 403});
                Response::new(Body::from(status.to_string().into_bytes()))
            } else {
                Response::new(Body::from(body.to_vec()))
            };
            if failing {
                *response.status_mut() = http::StatusCode::FORBIDDEN;
            }
            Ok::<_, Infallible>(response)
        });
        let api: Api<MultiGateway> =
            Api::namespaced(kube::Client::new(service, "default"), "default");
        let mut fan = FanOut::new("multigres-test", Default::default());
        for name in ["a", "bad", "c"] {
            fan.apply(api.clone(), Desired::new(gateway(name)), None);
        }
        let writes = fan.join().await;
        let failed = failures(&writes);
        assert_eq!(failed.len(), 1, "{writes:?}");
        assert_eq!(failed[0].0, "MultiGateway bad");
        assert!(
            failed[0].1.contains("admission webhook said no"),
            "{failed:?}"
        );
        assert_eq!(writes.iter().filter(|w| w.result.is_ok()).count(), 2);
        // The failing child's apply span carries the error; its siblings' do not.
        let spans = spans();
        let errors: Vec<_> = spans
            .iter()
            .filter(|s| {
                s.name == "apply MultiGateway"
                    && matches!(s.status, opentelemetry::trace::Status::Error { .. })
            })
            .collect();
        assert_eq!(errors.len(), 1, "{spans:?}");
        assert!(errors[0].events.iter().any(|e| e.name == "exception"));
    }

    /// Tracing of a fan-out: one `apply` span per child, siblings under the reconcile span and
    /// concurrent in time, each written child stamped with its own apply span's context, which
    /// the child's reconcile then joins.
    #[tokio::test]
    async fn each_child_carries_the_context_of_its_own_concurrent_apply_span() {
        use multigres_telemetry::propagation::TRACEPARENT_ANNOTATION;
        use multigres_telemetry::spans::reconcile_span;
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;

        let (spy, _default) = capture_spans();
        let written: Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Arc::default();
        let record = written.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let record = record.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let body = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .unwrap_or_default();
                if let Ok(value) = serde_json::from_slice(&body) {
                    record.lock().unwrap_or_else(|p| p.into_inner()).push(value);
                }
                Ok::<_, Infallible>(Response::new(Body::from(body.to_vec())))
            }
        });
        let api: Api<MultiGateway> =
            Api::namespaced(kube::Client::new(service, "default"), "default");
        let reconcile = tracing::info_span!("reconcile Cell");
        let trace_id = reconcile.context().span().span_context().trace_id();
        async {
            let mut fan = FanOut::new("multigres-test", Default::default());
            for name in ["g0", "g1", "g2"] {
                fan.apply(api.clone(), Desired::traced(gateway(name)), None);
            }
            fan.join().await
        }
        .instrument(reconcile)
        .await;

        let spans = spy();
        let root = spans
            .iter()
            .find(|s| s.name == "reconcile Cell")
            .expect("reconcile span");
        let applies: Vec<_> = spans
            .iter()
            .filter(|s| s.name == "apply MultiGateway")
            .collect();
        assert_eq!(applies.len(), 3, "{spans:?}");
        for apply in &applies {
            assert_eq!(
                apply.parent_span_id,
                root.span_context.span_id(),
                "siblings under the reconcile"
            );
            assert_eq!(apply.span_context.trace_id(), trace_id);
        }
        let latest_start = applies.iter().map(|s| s.start_time).max().expect("starts");
        let earliest_end = applies.iter().map(|s| s.end_time).min().expect("ends");
        assert!(
            latest_start < earliest_end,
            "the three apply spans overlap in time"
        );

        // Each written child names its own apply span as parent, and a reconcile of that child
        // on a new generation joins the trace right there.
        let written = written.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(written.len(), 3);
        for object in written {
            let child: MultiGateway = serde_json::from_value(object).expect("a MultiGateway");
            let stamped = child.metadata.annotations.clone().unwrap_or_default();
            let traceparent = stamped
                .get(TRACEPARENT_ANNOTATION)
                .expect("traceparent stamped");
            let apply = applies
                .iter()
                .find(|s| traceparent.contains(&s.span_context.span_id().to_string()))
                .unwrap_or_else(|| panic!("{traceparent} names no apply span"));
            let mut child = child;
            child.metadata.generation = Some(1);
            child.metadata.uid = Some(format!(
                "uid-{}",
                child.metadata.name.clone().unwrap_or_default()
            ));
            let joined =
                reconcile_span(&Default::default(), &child, "multigateway", None, None).span;
            let cx = joined.context();
            assert_eq!(
                cx.span().span_context().trace_id(),
                trace_id,
                "the child's reconcile joins"
            );
            drop(joined);
            assert_eq!(apply.span_context.trace_id(), trace_id);
        }
        let spans = spy();
        let children: Vec<_> = spans
            .iter()
            .filter(|s| s.name == "reconcile MultiGateway")
            .collect();
        assert_eq!(children.len(), 3);
        for child in children {
            assert!(
                applies
                    .iter()
                    .any(|a| a.span_context.span_id() == child.parent_span_id),
                "parent is an apply span"
            );
            assert!(child.parent_span_is_remote);
        }
    }

    #[tokio::test]
    async fn children_refused_by_a_terminating_namespace_only_say_it_is_going_away() {
        let (_spans, _default) = capture_spans();
        // The namespace lifecycle admission's answer, and a webhook's refusal for `bad`.
        let service = tower::service_fn(|request: Request<Body>| async move {
            let cause = if request.uri().path().ends_with("/bad") {
                "FieldValueForbidden"
            } else {
                "NamespaceTerminating"
            };
            let body = serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
                "reason": "Forbidden", "message": "refused",
                "details": {"name": "x", "causes": [{"reason": cause}]},
            });
            let mut response = Response::new(Body::from(body.to_string().into_bytes()));
            *response.status_mut() = http::StatusCode::FORBIDDEN;
            Ok::<_, Infallible>(response)
        });
        let api: Api<MultiGateway> =
            Api::namespaced(kube::Client::new(service, "default"), "default");
        let fan_out = |names: &'static [&'static str]| {
            let api = api.clone();
            async move {
                let mut fan = FanOut::new("multigres-test", Default::default());
                for name in names {
                    fan.apply(api.clone(), Desired::new(gateway(name)), None);
                }
                fan.join().await
            }
        };
        assert!(only_going_away(&fan_out(&["a", "c"]).await));
        assert!(!only_going_away(&fan_out(&["a", "bad"]).await));
        assert!(!only_going_away(&[]), "nothing failed");
    }
}
