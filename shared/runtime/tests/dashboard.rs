//! The Grafana dashboard and the observability configs query only metrics the handlers serve.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use multigres_runtime::metrics::Metrics;

/// Every series name a handler's `/metrics` can contain.
fn served_names() -> BTreeSet<String> {
    let metrics = Arc::new(Metrics::new("resource-handler"));
    drop(metrics.start_reconcile("Etcd", Some("0af7651916cd43dd8448eb211c80319c".into())));
    metrics.count_error("Etcd", "api");
    metrics.set_leader(true);
    metrics.count_request(&multigres_runtime::client::classify(
        &http::Method::GET,
        "/api/v1/namespaces/a/services/s",
        None,
    ));
    let text = metrics.render();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let family = rest.split_whitespace().next().unwrap_or_default();
            names.insert(family.to_string());
            for suffix in ["_total", "_bucket", "_sum", "_count"] {
                names.insert(format!("{family}{suffix}"));
            }
        }
    }
    names
}

/// `multigres_…` identifiers in `text`.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("multigres_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn dashboard_and_configs_query_served_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/observability");
    let dashboard = root.join("grafana/dashboards/multigres-operator.json");
    let text = std::fs::read_to_string(&dashboard).expect("dashboard readable");
    let json: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert_eq!(json["uid"], "multigres-operator");
    let served = served_names();
    let used = referenced(&text);
    assert!(
        used.len() >= 6,
        "the dashboard queries too few metrics: {used:?}"
    );
    let unknown: Vec<&String> = used.difference(&served).collect();
    assert!(
        unknown.is_empty(),
        "{} queries metrics no handler serves: {unknown:?} (served: {served:?})",
        dashboard.display()
    );
    let collector = root.join("otel-collector/base/configmap.yaml");
    let config = std::fs::read_to_string(&collector).expect("collector config readable");
    let unknown: Vec<String> = referenced(&config).difference(&served).cloned().collect();
    assert!(unknown.is_empty(), "{}: {unknown:?}", collector.display());
}
