//! The one way a handler builds its Kubernetes client: kube's default stack wrapped in our
//! layer, which counts every request by verb and resource and traces the ones a reconcile makes.

mod request;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use kube::client::{Body, ClientBuilder};
use kube::{Client, Config};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_http::HeaderInjector;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::Metrics;
pub use request::{ApiRequest, classify};

/// Builds the process's client from `config`, instrumented with `metrics` and client spans.
pub fn build(config: Config, metrics: Arc<Metrics>) -> Result<Client, kube::Error> {
    let server_address = config.cluster_url.host().unwrap_or_default().to_string();
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&ApiLayer {
            metrics,
            server_address: server_address.into(),
        })
        .build())
}

/// Tower layer around kube's HTTP stack: counts every request and, inside a reconcile, wraps it
/// in a CLIENT span whose context travels to the API server as the W3C `traceparent` header.
#[derive(Clone)]
pub struct ApiLayer {
    metrics: Arc<Metrics>,
    server_address: Arc<str>,
}

impl ApiLayer {
    /// The layer [`build`] puts around kube's stack (public for benchmarks and tests that wrap
    /// their own fake API server).
    pub fn new(metrics: Arc<Metrics>, server_address: &str) -> Self {
        ApiLayer {
            metrics,
            server_address: server_address.into(),
        }
    }
}

impl<S> Layer<S> for ApiLayer {
    type Service = ApiService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ApiService {
            inner,
            metrics: self.metrics.clone(),
            server_address: self.server_address.clone(),
        }
    }
}

/// See [`ApiLayer`].
#[derive(Clone)]
pub struct ApiService<S> {
    inner: S,
    metrics: Arc<Metrics>,
    server_address: Arc<str>,
}

impl<S, B> Service<Request<Body>> for ApiService<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    B: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let api = classify(
            request.method(),
            request.uri().path(),
            request.uri().query(),
        );
        self.metrics.count_request(&api);
        // Only requests a reconcile makes are spanned: watches and the caches' lists run outside
        // any reconcile and would each start a trace of their own.
        if api.verb == "watch" || tracing::Span::current().is_none() {
            return Box::pin(self.inner.call(request));
        }
        let method = request.method().clone();
        let target = if api.resource.is_empty() {
            request.uri().path().to_string()
        } else {
            api.resource.clone()
        };
        let span = tracing::info_span!(
            target: "multigres::k8s",
            "k8s request",
            otel.name = %format!("{method} {target}"),
            otel.kind = "client",
            http.request.method = %method,
            url.path = %request.uri().path(),
            server.address = %self.server_address,
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        // W3C trace context, always: the API server reads nothing else.
        TraceContextPropagator::new()
            .inject_context(&span.context(), &mut HeaderInjector(request.headers_mut()));
        let response = self.inner.call(request);
        let record = span.clone();
        Box::pin(
            async move {
                let result = response.await;
                match &result {
                    Ok(response) => {
                        let code = response.status().as_u16();
                        record.record("http.response.status_code", code);
                        if is_error(&method, code) {
                            record.record("otel.status_code", "error");
                        }
                    }
                    Err(_) => {
                        record.record("otel.status_code", "error");
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}

/// Whether a response status is an error of the request: 5xx, and 4xx except a 404 on a read
/// (looking something up that is not there is an answer, not a failure).
fn is_error(method: &http::Method, code: u16) -> bool {
    code >= 500 || (code >= 400 && !(code == 404 && method == http::Method::GET))
}

#[cfg(test)]
mod tests;
