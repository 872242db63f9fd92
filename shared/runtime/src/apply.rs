//! Server-side apply with "no write without a change".
//!
//! Every object a handler writes carries the annotation [`DESIRED_HASH_ANNOTATION`], a hash of
//! the desired object as the handler built it. A write happens only when
//! - the object does not exist,
//! - the hash differs (our desired state changed, which also covers fields we stopped setting
//!   and that server-side apply must now remove), or
//! - the live object drifted: some field we set has another value there (someone edited it).
//!
//! Otherwise the apply is skipped: a steady cluster costs no requests at all. The live object
//! comes from a watch cache, so deciding costs nothing either.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use multigres_api::quantity;
use multigres_telemetry as telemetry;

use crate::recent::RecentWrites;

/// Annotation holding the hash of the desired object last applied.
pub const DESIRED_HASH_ANNOTATION: &str = "multigres.com/desired-hash";

/// Why [`decide`] wants a write, or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The object does not exist.
    Create,
    /// Our desired state changed since the last apply.
    Changed,
    /// The live object differs from our desired state (someone edited it).
    Drifted,
    /// Nothing to do.
    UpToDate,
}

impl Decision {
    pub fn needs_write(self) -> bool {
        self != Decision::UpToDate
    }

    /// Lower-case word for span attributes and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Changed => "changed",
            Self::Drifted => "drifted",
            Self::UpToDate => "up-to-date",
        }
    }
}

/// FNV-1a 64 of the canonical JSON of `value` (serde_json maps are sorted), as 16 hex digits.
pub fn hash_value(value: &Value) -> String {
    format!("{:016x}", multigres_api::meta::fnv1a(&value.to_string()))
}

/// Whether every field set in `desired` has the same value in `live`. Objects compare key by
/// key (extra keys in `live` are defaults or other managers' fields), lists element by element
/// with equal lengths, strings that are both Kubernetes quantities by value (`0.5` = `500m`).
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => want.iter().all(|(k, v)| {
            have.get(k).is_some_and(|h| is_subset(v, h)) || is_empty(v) && !have.contains_key(k)
        }),
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| is_subset(w, h))
        }
        (Value::String(want), Value::String(have)) => {
            want == have || quantity::parse(want).is_some_and(|w| quantity::parse(have) == Some(w))
        }
        (Value::Number(want), Value::Number(have)) => want.as_f64() == have.as_f64(),
        _ => desired == live,
    }
}

/// Empty maps and lists are what the API server drops when storing, so they match absence.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

/// Decides whether `desired` (already carrying its hash annotation) must be written over `live`.
pub fn decide(desired: &Value, hash: &str, live: Option<&Value>) -> Decision {
    let Some(live) = live else {
        return Decision::Create;
    };
    let live_hash = live["metadata"]["annotations"][DESIRED_HASH_ANNOTATION].as_str();
    if live_hash != Some(hash) {
        Decision::Changed
    } else if !is_subset(desired, live) {
        Decision::Drifted
    } else {
        Decision::UpToDate
    }
}

/// An object to apply. When `stamp_trace_context` is set, a write also stamps the context of
/// the `apply` span into the object's `multigres.com/traceparent` annotations, so the handler
/// that reconciles it continues the trace. Those annotations never cause a write by themselves.
#[derive(Clone, Debug)]
pub struct Desired<K> {
    pub object: K,
    pub stamp_trace_context: bool,
}

impl<K> Desired<K> {
    /// A workload or other object nobody reconciles with our trace context.
    pub fn new(object: K) -> Self {
        Desired {
            object,
            stamp_trace_context: false,
        }
    }

    /// A child object another reconcile will pick up: it carries our trace context.
    pub fn traced(object: K) -> Self {
        Desired {
            object,
            stamp_trace_context: true,
        }
    }
}

/// Outcome of [`apply`].
#[derive(Clone, Debug)]
pub struct Applied<K> {
    pub decision: Decision,
    /// The object as the API server returned it; `None` when no write happened.
    pub object: Option<K>,
}

/// Applies `desired` with server-side apply (field manager `manager`; forced on updates because
/// a handler owns the fields it sets) unless [`decide`] finds nothing to do. `live` is the object
/// as the handler's watch cache has it. A write runs in an `apply <Kind>` span that records the
/// decision and, when the write fails, the error; deciding to do nothing is pure CPU work that
/// makes no request, so it makes no span either (a steady resync is one span, not one per child).
pub async fn apply<K>(
    api: &Api<K>,
    manager: &str,
    recent: &RecentWrites,
    desired: Desired<K>,
    live: Option<&K>,
) -> Result<Applied<K>, kube::Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let plan = plan(&kind, recent, desired, live)?;
    if !plan.decision.needs_write() {
        return Ok(Applied {
            decision: plan.decision,
            object: None,
        });
    }
    let span = tracing::info_span!(
        target: "multigres::apply",
        "apply",
        otel.name = %format!("apply {kind}"),
        k8s.object.name = %plan.object.name_any(),
        multigres.apply.decision = plan.decision.as_str(),
    );
    telemetry::spans::run_in(span.clone(), write(api, manager, recent, plan, span)).await
}

/// What [`apply`] decided, and what it needs to write.
struct Plan<K> {
    /// The desired object carrying its hash annotation.
    object: K,
    stamp_trace_context: bool,
    decision: Decision,
    hash: String,
    /// Identity and cached version of the object, for [`recent`].
    written_key: String,
    cached_version: Option<String>,
}

fn plan<K>(
    kind: &str,
    recent: &RecentWrites,
    desired: Desired<K>,
    live: Option<&K>,
) -> Result<Plan<K>, kube::Error>
where
    K: Resource + Serialize,
{
    let Desired {
        mut object,
        stamp_trace_context,
    } = desired;
    // The hash covers the object without the hash itself and without the trace annotations.
    let value = serde_json::to_value(&object).map_err(kube::Error::SerdeError)?;
    let hash = hash_value(&value);
    object
        .annotations_mut()
        .insert(DESIRED_HASH_ANNOTATION.to_string(), hash.clone());
    let with_hash = serde_json::to_value(&object).map_err(kube::Error::SerdeError)?;
    let live = live
        .map(serde_json::to_value)
        .transpose()
        .map_err(kube::Error::SerdeError)?;
    let mut decision = decide(&with_hash, &hash, live.as_ref());
    // The cache may not show our own last write yet: the same write again is no change.
    let meta = live.as_ref().map(|l| &l["metadata"]);
    let cached_version = meta
        .and_then(|m| m["resourceVersion"].as_str())
        .map(str::to_string);
    let written_key = format!(
        "{kind} {}/{}",
        meta.and_then(|m| m["namespace"].as_str())
            .unwrap_or_default(),
        object.name_any()
    );
    if decision.needs_write()
        && recent.already_written(&written_key, cached_version.as_deref(), &hash)
    {
        decision = Decision::UpToDate;
    }
    Ok(Plan {
        object,
        stamp_trace_context,
        decision,
        hash,
        written_key,
        cached_version,
    })
}

async fn write<K>(
    api: &Api<K>,
    manager: &str,
    recent: &RecentWrites,
    plan: Plan<K>,
    span: tracing::Span,
) -> Result<Applied<K>, kube::Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let Plan {
        mut object,
        stamp_trace_context,
        decision,
        hash,
        written_key,
        cached_version,
    } = plan;
    if stamp_trace_context {
        let context = span.context();
        let annotations = telemetry::propagation::annotations_for(
            context.span().span_context(),
            telemetry::spans::now_unix_secs(),
        );
        object.annotations_mut().extend(annotations);
    }
    // A create is not forced: if an object of that name exists outside our cache (made by
    // someone else), the API server answers 409 Conflict instead of handing us its fields.
    let params = match decision {
        Decision::Create => PatchParams::apply(manager),
        _ => PatchParams::apply(manager).force(),
    };
    let written = api
        .patch(&object.name_any(), &params, &Patch::Apply(&object))
        .await?;
    recent.record(written_key, cached_version.as_deref(), &hash);
    Ok(Applied {
        decision,
        object: Some(written),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    #[test]
    fn subset_ignores_server_defaults_and_other_fields() {
        let desired = json!({"spec": {"replicas": 3, "ports": [{"port": 2379}]}});
        let live = json!({"spec": {"replicas": 3, "ports": [{"port": 2379, "protocol": "TCP"}], "clusterIP": "10.0.0.1"}, "status": {}});
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn subset_catches_edits_removed_list_items_and_missing_fields() {
        let desired = json!({"spec": {"replicas": 3, "ports": [{"port": 2379}, {"port": 2380}]}});
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 5, "ports": [{"port": 2379}, {"port": 2380}]}})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 3, "ports": [{"port": 2379}]}})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"ports": [{"port": 2379}, {"port": 2380}]}})
        ));
    }

    #[test]
    fn subset_compares_quantities_by_value_and_empty_as_absent() {
        assert!(is_subset(
            &json!({"cpu": "0.5", "memory": "1Gi"}),
            &json!({"cpu": "500m", "memory": "1Gi"})
        ));
        assert!(!is_subset(&json!({"cpu": "0.5"}), &json!({"cpu": "600m"})));
        assert!(is_subset(&json!({"labels": {}, "x": 1}), &json!({"x": 1})));
        assert!(is_subset(&json!({"n": 1}), &json!({"n": 1.0})));
    }

    #[test]
    fn decide_covers_every_case() {
        let desired = json!({"metadata": {"annotations": {DESIRED_HASH_ANNOTATION: "h1"}}, "spec": {"replicas": 3}});
        let same = json!({"metadata": {"annotations": {DESIRED_HASH_ANNOTATION: "h1"}, "uid": "u"}, "spec": {"replicas": 3, "x": 1}});
        let edited = json!({"metadata": {"annotations": {DESIRED_HASH_ANNOTATION: "h1"}}, "spec": {"replicas": 1}});
        let older = json!({"metadata": {"annotations": {DESIRED_HASH_ANNOTATION: "h0"}}, "spec": {"replicas": 3}});
        assert_eq!(decide(&desired, "h1", None), Decision::Create);
        assert_eq!(decide(&desired, "h1", Some(&same)), Decision::UpToDate);
        assert_eq!(decide(&desired, "h1", Some(&edited)), Decision::Drifted);
        assert_eq!(decide(&desired, "h1", Some(&older)), Decision::Changed);
    }

    /// An API server that answers every PATCH with its body and counts them.
    fn echo_client() -> (kube::Client, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let patches = std::sync::Arc::new(AtomicUsize::new(0));
        let count = patches.clone();
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            if request.method() == http::Method::PATCH {
                count.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                let body = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .unwrap_or_default();
                Ok::<_, std::convert::Infallible>(http::Response::new(kube::client::Body::from(
                    body.to_vec(),
                )))
            }
        });
        (kube::Client::new(service, "default"), patches)
    }

    fn config_map(value: &str, resource_version: &str, hash: Option<&str>) -> ConfigMap {
        let mut cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "stale-cache", "namespace": "default", "resourceVersion": resource_version},
            "data": {"k": value}
        }))
        .unwrap_or_default();
        if let Some(hash) = hash {
            cm.annotations_mut()
                .insert(DESIRED_HASH_ANNOTATION.into(), hash.into());
        }
        cm
    }

    #[tokio::test]
    async fn a_cache_that_has_not_seen_our_write_yet_causes_no_second_write() {
        use std::sync::atomic::Ordering;
        let (client, patches) = echo_client();
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        let recent = RecentWrites::default();
        let desired = || {
            let mut cm = config_map("new", "", None);
            cm.metadata.resource_version = None;
            Desired::new(cm)
        };
        let before = config_map("old", "7", Some("h-old"));
        let first = apply(&api, "test", &recent, desired(), Some(&before)).await;
        assert_eq!(first.map(|a| a.decision).ok(), Some(Decision::Changed));
        // A reconcile queued meanwhile still sees version 7 in its cache.
        let again = apply(&api, "test", &recent, desired(), Some(&before)).await;
        assert_eq!(again.map(|a| a.decision).ok(), Some(Decision::UpToDate));
        assert_eq!(
            patches.load(Ordering::SeqCst),
            1,
            "one write for one change"
        );
        // The cache moves on to a version someone else edited: the ordinary comparison decides.
        let hash = hash_value(&serde_json::to_value(desired().object).unwrap_or_default());
        let edited = config_map("edited", "9", Some(&hash));
        let repaired = apply(&api, "test", &recent, desired(), Some(&edited)).await;
        assert_eq!(repaired.map(|a| a.decision).ok(), Some(Decision::Drifted));
        assert_eq!(patches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn only_a_write_makes_an_apply_span() {
        let (spy, _, subscriber) =
            multigres_test_support::test_subscriber(&[], multigres_telemetry::LogFormat::Json);
        let _default = multigres_test_support::scoped_default(subscriber);
        let (client, _) = echo_client();
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        let recent = RecentWrites::default();
        let mut object = config_map("v", "", None);
        object.metadata.resource_version = None;
        object.metadata.name = Some("span-test".into());
        let hash = hash_value(&serde_json::to_value(&object).unwrap_or_default());
        let mut live = config_map("v", "3", Some(&hash));
        live.metadata.name = Some("span-test".into());
        let skipped = apply(
            &api,
            "test",
            &recent,
            Desired::new(object.clone()),
            Some(&live),
        )
        .await;
        assert_eq!(skipped.map(|a| a.decision).ok(), Some(Decision::UpToDate));
        assert!(spy.finished().is_empty(), "{:?}", spy.finished());
        let created = apply(&api, "test", &recent, Desired::new(object), None).await;
        assert_eq!(created.map(|a| a.decision).ok(), Some(Decision::Create));
        let spans = spy.finished();
        let apply_span = spans
            .iter()
            .find(|s| s.name == "apply ConfigMap")
            .unwrap_or_else(|| panic!("no apply span in {spans:?}"));
        assert!(
            apply_span
                .attributes
                .iter()
                .any(|kv| kv.key.as_str() == "multigres.apply.decision"
                    && kv.value.as_str() == "create"),
            "{:?}",
            apply_span.attributes
        );
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        let a = hash_value(&json!({"b": 1, "a": [1, 2]}));
        assert_eq!(a, hash_value(&json!({"a": [1, 2], "b": 1})));
        assert_ne!(a, hash_value(&json!({"a": [2, 1], "b": 1})));
        assert_eq!(a.len(), 16);
    }
}
