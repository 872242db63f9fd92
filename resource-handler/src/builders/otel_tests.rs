//! The trace export environment of the Multigres containers: exact values when the handler
//! exports, nothing when it does not or the cluster turned tracing off, never on etcd.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use multigres_api::crd::{
    Etcd, MultiGateway, MultiOrch, MultiPooler, ObservabilitySpec, TracingMode,
};
use multigres_telemetry::TelemetryConfig;

use super::data_plane_tests::{all_containers, input};
use super::{BuildContext, DataPlaneTracing};
use crate::component::{Component, Workload};

/// The context of a handler started with environment `env`, giving its pods `data_plane`.
fn handler(env: &[(&str, &str)], data_plane: Option<&str>) -> BuildContext {
    let env: BTreeMap<&str, &str> = env.iter().copied().collect();
    let (config, warnings) = TelemetryConfig::from_lookup("multigres-resource-handler", 1, |k| {
        env.get(k).map(|v| v.to_string())
    });
    assert!(warnings.is_empty(), "{warnings:?}");
    BuildContext {
        tracing: DataPlaneTracing::from_handler(&config, data_plane),
    }
}

/// A handler exporting over gRPC at 10%, whose pods reach the collector elsewhere.
fn exporting() -> BuildContext {
    handler(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
        ],
        Some("http://10.0.0.5:4317"),
    )
}

/// The pod specs of every component kind, built with `ctx`, by component name.
fn pods(
    ctx: &BuildContext,
    observability: Option<ObservabilitySpec>,
) -> Vec<(&'static str, PodSpec)> {
    let mut gateway: MultiGateway = input("gateway");
    let mut orch: MultiOrch = input("orch");
    let mut pooler: MultiPooler = input("pooler");
    gateway.spec.observability = observability.clone();
    orch.spec.observability = observability.clone();
    pooler.spec.observability = observability;
    let etcd: Etcd = input("etcd-defaults");
    [
        ("gateway", gateway.build(ctx)),
        ("orch", orch.build(ctx)),
        ("pooler", pooler.build(ctx)),
        ("etcd", etcd.build(ctx)),
    ]
    .into_iter()
    .map(|(name, built)| {
        let template = match built.expect("builds").workload {
            Workload::Deployment(d) => d.spec.map(|s| s.template),
            Workload::StatefulSet(s) => s.spec.map(|s| s.template),
        };
        (name, template.and_then(|t| t.spec).expect("pod spec"))
    })
    .collect()
}

fn container<'a>(pods: &'a [(&str, PodSpec)], pod: &str, name: &str) -> &'a Container {
    pods.iter()
        .find(|(p, _)| *p == pod)
        .and_then(|(_, spec)| all_containers(spec).find(|c| c.name == name))
        .unwrap_or_else(|| panic!("no container {pod}/{name}"))
}

/// The container's env as `NAME=value`, or `NAME<-field.path` for the Downward API.
fn env(c: &Container) -> Vec<String> {
    c.env
        .iter()
        .flatten()
        .map(|e| {
            match (
                &e.value,
                e.value_from.as_ref().and_then(|v| v.field_ref.as_ref()),
            ) {
                (Some(value), _) => format!("{}={value}", e.name),
                (None, Some(field)) => format!("{}<-{}", e.name, field.field_path),
                (None, None) => format!("{}?", e.name),
            }
        })
        .collect()
}

fn otel_env(c: &Container) -> Vec<String> {
    env(c)
        .into_iter()
        .filter(|e| e.starts_with("OTEL_"))
        .collect()
}

/// What every traced container gets from [`exporting`], besides its name and attributes.
const EXPORT: [&str; 7] = [
    "OTEL_TRACES_EXPORTER=otlp",
    "OTEL_METRICS_EXPORTER=none",
    "OTEL_LOGS_EXPORTER=none",
    "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
    "OTEL_EXPORTER_OTLP_ENDPOINT=http://10.0.0.5:4317",
    "OTEL_TRACES_SAMPLER=parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG=0.1",
];

/// The env a container ends with: `before` (its own), the Downward API variables, the service
/// name and resource attributes, then [`EXPORT`].
fn expected(before: &[&str], service: &str, attributes: &str) -> Vec<String> {
    let mut out: Vec<String> = before.iter().map(|s| s.to_string()).collect();
    out.extend([
        "POD_NAME<-metadata.name".to_string(),
        "NODE_NAME<-spec.nodeName".to_string(),
        format!("OTEL_SERVICE_NAME={service}"),
        format!("OTEL_RESOURCE_ATTRIBUTES={attributes}"),
    ]);
    out.extend(EXPORT.iter().map(|s| s.to_string()));
    out
}

#[test]
fn every_multigres_container_gets_the_trace_export_env() {
    let pods = pods(&exporting(), None);
    let pod_node = "k8s.pod.name=$(POD_NAME),k8s.node.name=$(NODE_NAME)";
    assert_eq!(
        env(container(&pods, "gateway", "multigateway")),
        expected(
            &["POD_IP<-status.podIP"],
            "multigateway",
            &format!(
                "k8s.namespace.name=prod,{pod_node},k8s.container.name=multigateway,\
                 multigres.cluster=shop,multigres.cell=zone-a"
            ),
        )
    );
    // A MultiOrch of no cluster: no multigres.cluster attribute.
    assert_eq!(
        env(container(&pods, "orch", "multiorch")),
        expected(
            &["POD_IP<-status.podIP"],
            "multiorch",
            &format!(
                "k8s.namespace.name=demo,{pod_node},k8s.container.name=multiorch,multigres.cell=zone-b"
            ),
        )
    );
    let password = [
        "POSTGRES_PASSWORD_FILE=/etc/multigres/postgres-password/password",
        "POSTGRES_USER=postgres",
    ];
    let pooler_attributes = |container: &str| {
        format!(
            "k8s.namespace.name=prod,{pod_node},k8s.container.name={container},\
             multigres.cluster=shop,multigres.cell=zone-a"
        )
    };
    let mut own = vec![
        "PGDATA=/var/lib/pooler/pg_data",
        "POD_INDEX<-metadata.labels['apps.kubernetes.io/pod-index']",
    ];
    own.extend(password);
    assert_eq!(
        env(container(&pods, "pooler", "multipooler")),
        expected(&own, "multipooler", &pooler_attributes("multipooler"))
    );
    let mut own = vec!["PGDATA=/var/lib/pooler/pg_data"];
    own.extend(password);
    assert_eq!(
        env(container(&pods, "pooler", "postgres")),
        expected(&own, "pgctld", &pooler_attributes("postgres"))
    );
}

#[test]
fn no_otel_env_when_the_handler_exports_no_traces() {
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317");
    let quiet = [
        handler(&[], Some("http://10.0.0.5:4317")),
        handler(&[endpoint, ("OTEL_SDK_DISABLED", "true")], None),
        handler(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")], None),
    ];
    for ctx in quiet {
        assert_eq!(ctx.tracing, None);
        for (pod, spec) in pods(&ctx, None) {
            for c in all_containers(&spec) {
                let env = env(c);
                assert!(
                    !env.iter()
                        .any(|e| e.starts_with("OTEL_") || e.starts_with("NODE_NAME")),
                    "{pod}/{}: {env:?}",
                    c.name
                );
            }
        }
    }
}

#[test]
fn no_otel_env_when_the_cluster_disables_tracing() {
    let disabled = ObservabilitySpec {
        tracing: Some(TracingMode::Disabled),
    };
    for (pod, spec) in pods(&exporting(), Some(disabled)) {
        for c in all_containers(&spec) {
            assert_eq!(otel_env(c), Vec::<String>::new(), "{pod}/{}", c.name);
        }
    }
    // Enabled is what unset means.
    let enabled = ObservabilitySpec {
        tracing: Some(TracingMode::Enabled),
    };
    let on = pods(&exporting(), Some(enabled));
    assert_eq!(
        otel_env(container(&on, "pooler", "postgres")),
        otel_env(container(&pods(&exporting(), None), "pooler", "postgres"))
    );
    assert!(!otel_env(container(&on, "pooler", "postgres")).is_empty());
}

/// Sampler variables of the handler, and the sampler name and argument its pods get.
type SamplerCase = (
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

#[test]
fn the_handlers_sampler_becomes_its_parent_based_form() {
    let cases: [SamplerCase; 6] = [
        (&[], &["parentbased_traceidratio", "1"]),
        (
            &[("OTEL_TRACES_SAMPLER", "always_on")],
            &["parentbased_always_on"],
        ),
        (
            &[("OTEL_TRACES_SAMPLER", "always_off")],
            &["parentbased_always_off"],
        ),
        (
            &[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ],
            &["parentbased_traceidratio", "0.25"],
        ),
        (
            &[("OTEL_TRACES_SAMPLER", "parentbased_always_off")],
            &["parentbased_always_off"],
        ),
        (
            &[("OTEL_TRACE_SAMPLING_RATE", "0.1")],
            &["parentbased_traceidratio", "0.1"],
        ),
    ];
    for (sampler_env, want) in cases {
        let mut env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")];
        env.extend_from_slice(sampler_env);
        let pods = pods(&handler(&env, None), None);
        let got: Vec<String> = otel_env(container(&pods, "gateway", "multigateway"))
            .into_iter()
            .filter_map(|e| {
                e.strip_prefix("OTEL_TRACES_SAMPLER=")
                    .or_else(|| e.strip_prefix("OTEL_TRACES_SAMPLER_ARG="))
                    .map(str::to_string)
            })
            .collect();
        assert_eq!(got, want, "{sampler_env:?}");
    }
}

#[test]
fn the_endpoint_goes_into_the_variable_the_handler_used() {
    let traces = (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "http://127.0.0.1:4318/v1/traces",
    );
    let http = ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
    let endpoint_env = |ctx: BuildContext| {
        let pods = pods(&ctx, None);
        otel_env(container(&pods, "orch", "multiorch"))
            .into_iter()
            .filter(|e| e.starts_with("OTEL_EXPORTER_OTLP_"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        endpoint_env(handler(&[http, traces], None)),
        [
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:4318/v1/traces"
        ]
    );
    assert_eq!(
        endpoint_env(handler(
            &[http, traces],
            Some("http://198.18.0.1:4318/v1/traces")
        )),
        [
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://198.18.0.1:4318/v1/traces"
        ]
    );
    // The base endpoint as given, not the handler's composed `/v1/traces` URL.
    assert_eq!(
        endpoint_env(handler(
            &[
                http,
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
            ],
            None
        )),
        [
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318"
        ]
    );
}

#[test]
fn etcd_gets_no_otel_env() {
    let pods = pods(&exporting(), None);
    let etcd = container(&pods, "etcd", "etcd");
    assert_eq!(otel_env(etcd), Vec::<String>::new());
    assert_eq!(env(etcd), ["POD_NAME<-metadata.name"]);
}
