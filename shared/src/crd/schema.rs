//! Schema helpers for embedded Kubernetes types.
//!
//! A `MultigresCluster` embeds the pod settings of several components, each with Affinity,
//! tolerations and so on. With their upstream documentation inlined the CRD passes 500 KB,
//! beyond what client-side `kubectl apply` can store in its annotation (256 KB). These helpers
//! keep the full structure (so the API server still validates it) and drop the nested
//! descriptions; the field's own doc comment remains.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::Value;

/// The schema of `T` without nested `description`s.
pub(crate) fn undocumented<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    let mut value = generator.subschema_for::<T>().to_value();
    strip_descriptions(&mut value);
    Schema::try_from(value).unwrap_or_else(|_| Schema::default())
}

/// Removes every `description` keyword, leaving properties that happen to be called
/// "description" alone.
fn strip_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("description").is_some_and(Value::is_string) {
                map.remove("description");
            }
            for (key, child) in map.iter_mut() {
                if key == "properties" {
                    if let Value::Object(props) = child {
                        props.values_mut().for_each(strip_descriptions);
                    }
                } else {
                    strip_descriptions(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strips_keywords_but_keeps_properties_named_description() {
        let mut v = json!({
            "description": "top",
            "properties": {
                "description": {"type": "string", "description": "a field called description"},
                "nested": {"items": {"description": "x", "type": "object"}}
            }
        });
        strip_descriptions(&mut v);
        assert_eq!(
            v,
            json!({
                "properties": {
                    "description": {"type": "string"},
                    "nested": {"items": {"type": "object"}}
                }
            })
        );
    }
}
