//! The `OTEL_*` environment of the Multigres containers, so their spans reach the backend the
//! resource-handler exports to.
//!
//! Multigres exports through the OpenTelemetry autoexport package: every exporter defaults to
//! `none`, so traces are turned on explicitly and metrics and logs stay off (a trace backend such
//! as Tempo accepts neither). The settings are the handler's own, decided once at start and
//! handed to the builders; nothing here reads the environment.

use k8s_openapi::api::core::v1::{Container, EnvVar};
use multigres_telemetry::TelemetryConfig;
use multigres_telemetry::config::{EndpointVariable, Protocol, SamplerConfig};

use super::pod::{self, POD_NAME_ENV};

/// Environment variable holding the pod's node name (from the Downward API).
pub(super) const NODE_NAME_ENV: &str = "NODE_NAME";

/// How the data-plane processes export traces.
#[derive(Clone, Debug, PartialEq)]
pub struct DataPlaneTracing {
    pub protocol: Protocol,
    /// The variable the endpoint goes into: the kind the handler itself was configured with.
    pub endpoint_variable: EndpointVariable,
    /// The endpoint as the pods reach it.
    pub endpoint: String,
    /// Always parent-based, so a process continues a sampled incoming trace.
    pub sampler: SamplerConfig,
}

impl DataPlaneTracing {
    /// The handler's export settings with the endpoint the pods use (`data_plane_endpoint`, or
    /// the handler's own). `None` when the handler exports no traces: then neither do the pods.
    pub fn from_handler(
        config: &TelemetryConfig,
        data_plane_endpoint: Option<&str>,
    ) -> Option<Self> {
        let exporter = config.exporter.as_ref()?;
        let (endpoint_variable, own_endpoint) = &exporter.source;
        Some(Self {
            protocol: exporter.protocol,
            endpoint_variable: *endpoint_variable,
            endpoint: data_plane_endpoint.unwrap_or(own_endpoint).to_string(),
            sampler: config.sampler.parent_based(),
        })
    }

    /// Appends the tracing environment of process `service` to `container`. `POD_NAME` and
    /// `NODE_NAME` come first because `OTEL_RESOURCE_ATTRIBUTES` refers to them.
    pub(super) fn add_env(&self, container: &mut Container, service: &str, origin: &Origin<'_>) {
        let env = container.env.get_or_insert_with(Vec::new);
        let defined = |env: &[EnvVar], name: &str| env.iter().any(|e| e.name == name);
        if !defined(env, POD_NAME_ENV) {
            env.push(pod::pod_name_env());
        }
        if !defined(env, NODE_NAME_ENV) {
            env.push(pod::field_env(NODE_NAME_ENV, "spec.nodeName"));
        }
        env.extend(self.otel_env(service, &origin.resource_attributes(&container.name)));
    }

    /// The `OTEL_*` variables of process `service` with resource attributes `attributes`.
    fn otel_env(&self, service: &str, attributes: &str) -> Vec<EnvVar> {
        let mut env = vec![
            pod::env("OTEL_SERVICE_NAME", service),
            pod::env("OTEL_RESOURCE_ATTRIBUTES", attributes),
            pod::env("OTEL_TRACES_EXPORTER", "otlp"),
            pod::env("OTEL_METRICS_EXPORTER", "none"),
            pod::env("OTEL_LOGS_EXPORTER", "none"),
            pod::env("OTEL_EXPORTER_OTLP_PROTOCOL", self.protocol.as_str()),
            pod::env(self.endpoint_variable.name(), &self.endpoint),
            pod::env("OTEL_TRACES_SAMPLER", self.sampler.name()),
        ];
        if let Some(ratio) = self.sampler.arg() {
            env.push(pod::env("OTEL_TRACES_SAMPLER_ARG", &ratio.to_string()));
        }
        env
    }
}

/// Where a container runs, as its spans' resource attributes say.
pub(super) struct Origin<'a> {
    pub namespace: &'a str,
    /// The `multigres.com/cluster` label of the component, when it belongs to a cluster.
    pub cluster: Option<&'a str>,
    pub cell: &'a str,
}

impl Origin<'_> {
    /// `OTEL_RESOURCE_ATTRIBUTES` of container `container`; the kubelet expands `$(POD_NAME)`
    /// and `$(NODE_NAME)`.
    fn resource_attributes(&self, container: &str) -> String {
        let mut pairs = vec![
            ("k8s.namespace.name", encode(self.namespace)),
            ("k8s.pod.name", format!("$({POD_NAME_ENV})")),
            ("k8s.node.name", format!("$({NODE_NAME_ENV})")),
            ("k8s.container.name", encode(container)),
        ];
        if let Some(cluster) = self.cluster {
            pairs.push(("multigres.cluster", encode(cluster)));
        }
        pairs.push(("multigres.cell", encode(self.cell)));
        pairs
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Percent-encodes what the `OTEL_RESOURCE_ATTRIBUTES` syntax (`k=v,k=v`) or the kubelet's
/// `$(VAR)` expansion would misread; names and labels rarely have any of it.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'/' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_and_dollars_are_encoded() {
        assert_eq!(encode("zone-a.b_c"), "zone-a.b_c");
        assert_eq!(encode("a,b=c d$(X)%"), "a%2Cb%3Dc%20d%24%28X%29%25");
    }
}
