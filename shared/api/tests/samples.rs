//! Samples under `manifests/samples/`: valid ones parse into the Rust types and survive a round
//! trip; invalid ones are refused by the CRD schema (structure, bounds and enums through a JSON
//! schema validator, CEL rules through kube's CEL evaluator, list-map keys by hand) at the field
//! their `# expect:` header names. The end-to-end suite checks the same files against the real
//! API server and its exact messages.

use kube::CustomResourceExt;
use multigres_api::crd::{Cell, Etcd, MultiGateway, MultiOrch, MultiPooler, MultigresCluster};
use multigres_api::samples::{Sample, load_dir, samples_dir};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn schema_of(kind: &str) -> Value {
    let crd = match kind {
        "MultigresCluster" => MultigresCluster::crd(),
        "Cell" => Cell::crd(),
        "Etcd" => Etcd::crd(),
        "MultiGateway" => MultiGateway::crd(),
        "MultiOrch" => MultiOrch::crd(),
        "MultiPooler" => MultiPooler::crd(),
        other => panic!("sample of unknown kind {other}"),
    };
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("CRD has a schema");
    serde_json::to_value(schema).expect("schema serializes")
}

/// `/spec/cells/1/name` → `spec.cells[1].name`, the API server's way of naming fields.
fn field_path(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        if part.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// Duplicate keys in `x-kubernetes-list-type: map` lists, as `(field path, message)`.
fn list_map_errors(schema: &Value, value: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if let Some(sub) = schema.get("properties").and_then(|p| p.get(key)) {
                    let p = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    list_map_errors(sub, child, &p, out);
                }
            }
        }
        Value::Array(items) => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut seen = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let id: Vec<&Value> = keys.iter().map(|k| &item[*k]).collect();
                if !keys.is_empty() && seen.contains(&id) {
                    out.push((format!("{path}[{i}]"), "Duplicate value".to_string()));
                }
                seen.push(id);
                if let Some(sub) = schema.get("items") {
                    list_map_errors(sub, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Every way the schema refuses `object`, as `(field path, message)`.
fn offline_errors(sample: &Sample) -> Vec<(String, String)> {
    let schema = schema_of(sample.kind());
    let mut errors = Vec::new();
    let validator = jsonschema::draft4::new(&schema).expect("CRD schema compiles as JSON schema");
    for err in validator.iter_errors(&sample.object) {
        let mut path = field_path(&err.instance_path().to_string());
        // A missing property is named by the API server at the property, not at its parent.
        if let jsonschema::error::ValidationErrorKind::Required { property } = err.kind() {
            let name = property.as_str().unwrap_or_default();
            path = if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}.{name}")
            };
        }
        errors.push((path, err.to_string()));
    }
    if let Err(cel) = kube::core::cel::Validator::new().validate(&schema, &sample.object, None) {
        for err in cel.into_vec() {
            errors.push((err.field_path, err.message));
        }
    }
    list_map_errors(&schema, &sample.object, "", &mut errors);
    errors
}

fn round_trip<K: Serialize + DeserializeOwned>(sample: &Sample) {
    let typed: K = serde_json::from_value(sample.object.clone())
        .unwrap_or_else(|e| panic!("{}: {e}", sample.path.display()));
    let back = serde_json::to_value(&typed).expect("serializes");
    assert_eq!(
        back,
        sample.object,
        "{} changes on a round trip",
        sample.path.display()
    );
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every `.yaml` file of `dir` is among `samples`, and there is at least one (a loader that
/// skipped files would otherwise pass every check).
fn assert_every_file_loaded(dir: &std::path::Path, samples: &[Sample]) {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("samples directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| file_name(&p))
        .collect();
    files.sort();
    let mut loaded: Vec<String> = samples.iter().map(|s| file_name(&s.path)).collect();
    loaded.sort();
    assert!(!files.is_empty(), "no samples in {}", dir.display());
    assert_eq!(loaded, files, "samples loaded from {}", dir.display());
}

#[test]
fn valid_samples_parse_round_trip_and_pass_the_schema() {
    let samples = load_dir(&samples_dir()).expect("samples load");
    assert_every_file_loaded(&samples_dir(), &samples);
    for sample in &samples {
        assert!(
            sample.expect.is_none(),
            "{} is valid yet says `expect:`",
            sample.path.display()
        );
        match sample.kind() {
            "MultigresCluster" => round_trip::<MultigresCluster>(sample),
            "Cell" => round_trip::<Cell>(sample),
            "Etcd" => round_trip::<Etcd>(sample),
            "MultiGateway" => round_trip::<MultiGateway>(sample),
            "MultiOrch" => round_trip::<MultiOrch>(sample),
            "MultiPooler" => round_trip::<MultiPooler>(sample),
            other => panic!("{}: unknown kind {other}", sample.path.display()),
        }
        let errors = offline_errors(sample);
        assert!(
            errors.is_empty(),
            "{} is refused: {errors:?}",
            sample.path.display()
        );
    }
}

#[test]
fn invalid_samples_are_refused_at_the_field_they_name() {
    let samples = load_dir(&samples_dir().join("invalid")).expect("invalid samples load");
    assert_every_file_loaded(&samples_dir().join("invalid"), &samples);
    for sample in &samples {
        let field = sample
            .expected_field()
            .unwrap_or_else(|| panic!("{} has no `# expect:` header", sample.path.display()));
        let errors = offline_errors(sample);
        assert!(
            errors.iter().any(|(path, _)| path == field),
            "{}: expected an error at {field}, got {errors:?}",
            sample.path.display()
        );
    }
}

#[test]
fn expectations_quote_our_cel_messages_word_for_word() {
    // Where a sample is refused by one of our CEL rules, its `# expect:` must quote that rule's
    // message, so rewording a message cannot silently break the end-to-end check.
    let mut checked = Vec::new();
    for sample in load_dir(&samples_dir().join("invalid")).expect("invalid samples load") {
        let schema = schema_of(sample.kind());
        let Err(cel) = kube::core::cel::Validator::new().validate(&schema, &sample.object, None)
        else {
            continue;
        };
        let expect = sample.expect.clone().unwrap_or_default();
        let quoted = expect.rsplit(": ").next().unwrap_or_default();
        let messages: Vec<String> = cel.into_vec().into_iter().map(|e| e.message).collect();
        assert!(
            messages.iter().any(|m| m.starts_with(quoted)),
            "{}: expects {quoted:?}, CEL says {messages:?}",
            sample.path.display()
        );
        checked.push(file_name(&sample.path));
    }
    // The samples that hit a CEL rule (the others are refused by the structural schema).
    assert_eq!(
        checked,
        [
            "bad-allowed-network.yaml",
            "bad-image.yaml",
            "bad-storage-size.yaml",
            "etcd-even-replicas.yaml",
            "huge-storage-size.yaml",
            "tiny-storage-size.yaml",
            "uppercase-image-path.yaml"
        ],
        "samples refused by CEL rules"
    );
}
