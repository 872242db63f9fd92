//! The client layer: one CLIENT span per request a reconcile makes, its context in the
//! `traceparent` header the API server receives, error status only where the request failed.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::*;
use multigres_telemetry::LogFormat;
use multigres_test_support::test_subscriber;

/// A client over a fake API server answering `status` with `{}`; returns the `traceparent`
/// header of every request it saw.
fn fake_client(status: StatusCode) -> (Client, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let service = tower::service_fn(move |request: Request<Body>| {
        let header = request
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(header);
        let mut response = Response::new(Body::from(
            b"{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"code\":0}".to_vec(),
        ));
        *response.status_mut() = status;
        async move { Ok::<_, Infallible>(response) }
    });
    let layer = ApiLayer {
        metrics: Arc::new(Metrics::new("test")),
        server_address: "10.0.0.1".into(),
    };
    (kube::Client::new(layer.layer(service), "default"), seen)
}

async fn patch(client: &Client) {
    let request =
        Request::patch("/apis/apps/v1/namespaces/prod/statefulsets/demo-etcd?fieldManager=x")
            .body(b"{}".to_vec())
            .unwrap_or_default();
    let _ = client.request_text(request).await;
}

#[tokio::test]
async fn a_request_inside_a_reconcile_gets_a_client_span_and_carries_its_context() {
    let (spy, _, subscriber) = test_subscriber(&[], LogFormat::Json);
    let _default = multigres_test_support::scoped_default(subscriber);
    let (client, seen) = fake_client(StatusCode::OK);
    let reconcile = tracing::info_span!("reconcile Etcd");
    let trace_id = reconcile.context().span().span_context().trace_id();
    patch(&client).instrument(reconcile).await;

    let spans = spy.finished();
    let span = spans
        .iter()
        .find(|s| s.name == "PATCH statefulsets")
        .unwrap_or_else(|| panic!("{spans:?}"));
    let parent = spans
        .iter()
        .find(|s| s.name == "reconcile Etcd")
        .expect("reconcile span");
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(span.parent_span_id, parent.span_context.span_id());
    assert_eq!(span.span_context.trace_id(), trace_id);
    let attr = |k: &str| {
        span.attributes
            .iter()
            .find(|a| a.key.as_str() == k)
            .map(|a| a.value.to_string())
    };
    assert_eq!(attr("http.request.method").as_deref(), Some("PATCH"));
    assert_eq!(
        attr("url.path").as_deref(),
        Some("/apis/apps/v1/namespaces/prod/statefulsets/demo-etcd")
    );
    assert_eq!(attr("server.address").as_deref(), Some("10.0.0.1"));
    assert_eq!(attr("http.response.status_code").as_deref(), Some("200"));
    assert_eq!(span.status, Status::Unset);
    // The API server receives the client span as the parent of whatever it does.
    let header = seen.lock().unwrap_or_else(|p| p.into_inner())[0]
        .clone()
        .expect("traceparent sent");
    assert_eq!(
        header,
        format!(
            "00-{}-{}-01",
            span.span_context.trace_id(),
            span.span_context.span_id()
        )
    );
}

#[tokio::test]
async fn server_errors_mark_the_span_but_a_missing_object_on_a_read_does_not() {
    let (spy, _, subscriber) = test_subscriber(&[], LogFormat::Json);
    let _default = multigres_test_support::scoped_default(subscriber);
    let (failing, _) = fake_client(StatusCode::INTERNAL_SERVER_ERROR);
    patch(&failing)
        .instrument(tracing::info_span!("reconcile A"))
        .await;
    let (missing, _) = fake_client(StatusCode::NOT_FOUND);
    let get = Request::get("/api/v1/namespaces/prod/services/x")
        .body(Vec::new())
        .unwrap_or_default();
    let _ = missing
        .request_text(get)
        .instrument(tracing::info_span!("reconcile B"))
        .await;
    let spans = spy.finished();
    let status_of = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.status.clone())
    };
    assert!(
        matches!(status_of("PATCH statefulsets"), Some(Status::Error { .. })),
        "{spans:?}"
    );
    assert_eq!(status_of("GET services"), Some(Status::Unset));
}

#[tokio::test]
async fn requests_outside_a_reconcile_and_watches_are_not_spanned() {
    let (spy, _, subscriber) = test_subscriber(&[], LogFormat::Json);
    let _default = multigres_test_support::scoped_default(subscriber);
    let (client, seen) = fake_client(StatusCode::OK);
    patch(&client).await;
    let watch = Request::get("/api/v1/pods?watch=true")
        .body(Vec::new())
        .unwrap_or_default();
    let _ = client
        .request_text(watch)
        .instrument(tracing::info_span!("reconcile C"))
        .await;
    let spans = spy.finished();
    assert!(
        spans.iter().all(|s| s.name.starts_with("reconcile")),
        "{spans:?}"
    );
    assert_eq!(
        seen.lock().unwrap_or_else(|p| p.into_inner()).as_slice(),
        [None, None]
    );
}
