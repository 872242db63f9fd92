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

/// Most networks a pooler's pg_hba.conf template lists.
pub(crate) const MAX_ALLOWED_NETWORKS: usize = 16;

/// The schema of a list of CIDRs (`allowedNetworks`): at most [`MAX_ALLOWED_NETWORKS`], each
/// checked by the API server's CEL `isCIDR`, which no JSON-schema pattern matches exactly. The
/// length bound keeps the rule's estimated cost within the API server's budget (the longest
/// CIDR, IPv6 with an embedded IPv4 address and a prefix, has 49 characters).
pub(crate) fn cidr_list(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": MAX_ALLOWED_NETWORKS,
        "items": {
            "type": "string",
            "maxLength": 64,
            "x-kubernetes-validations": [{
                "rule": "isCIDR(self)",
                "message": "must be a network in CIDR notation, such as 10.0.0.0/8 or fd00::/8"
            }]
        }
    })
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
