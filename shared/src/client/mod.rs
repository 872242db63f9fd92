//! The one way a handler builds its Kubernetes client: kube's default stack wrapped in our
//! layer, which counts every request by verb and resource.

mod request;

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use kube::client::{Body, ClientBuilder};
use kube::{Client, Config};
use tower::{Layer, Service};

use crate::metrics::Metrics;
pub use request::{ApiRequest, classify};

/// Builds the process's client from `config`, instrumented with `metrics`.
pub fn build(config: Config, metrics: Arc<Metrics>) -> Result<Client, kube::Error> {
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&ApiLayer { metrics })
        .build())
}

/// Tower layer around kube's HTTP stack.
#[derive(Clone)]
pub struct ApiLayer {
    metrics: Arc<Metrics>,
}

impl<S> Layer<S> for ApiLayer {
    type Service = ApiService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ApiService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`ApiLayer`].
#[derive(Clone)]
pub struct ApiService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request<Body>> for ApiService<S>
where
    S: Service<Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let api = classify(
            request.method(),
            request.uri().path(),
            request.uri().query(),
        );
        self.metrics.count_request(&api);
        self.inner.call(request)
    }
}
