//! Schema helpers for embedded Kubernetes types.
//!
//! A `MultigresCluster` embeds the pod settings of several components, each with Affinity,
//! tolerations and so on. With their upstream documentation inlined the CRD passes 500 KB,
//! beyond what client-side `kubectl apply` can store in its annotation (256 KB). These helpers
//! keep the full structure (so the API server still validates it) and drop the nested
//! descriptions; the field's own doc comment remains.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::Value;

use crate::quantity::{MAX_STORAGE, MIN_STORAGE};

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

/// One `/`-separated component of an image's repository path: lowercase, as registries require.
const PATH_COMPONENT: &str = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
/// A registry host (DNS labels of any case) with an optional port, before the first `/`.
const REGISTRY: &str = "[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:[.][a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?";

/// The image reference grammar the resource-handler's builder enforces (apart from its
/// 255-character bound on the name), as an RE2 pattern without backslashes, which CEL string
/// literals would treat as escapes: `[registry[:port]/]path[:tag][@sha256:digest]`.
pub fn image_reference_pattern() -> String {
    format!(
        "^(?:{REGISTRY}/)?{PATH_COMPONENT}(?:/{PATH_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?(?:@sha256:[a-f0-9]{{64}})?$"
    )
}

/// The schema of an image field named `field`: the characters first (the clearer message for
/// spaces and the like), then the grammar, so a value breaks at most one rule.
fn image_field(field: &str) -> Schema {
    let characters = "self.matches('^[A-Za-z0-9][A-Za-z0-9._/:@-]*$')";
    schemars::json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": 512,
        "x-kubernetes-validations": [
            {
                "rule": characters,
                "message": format!("{field} must be an image reference such as registry.example.com/team/app:v1.2 (letters, digits and . _ / : @ - only, no spaces)")
            },
            {
                "rule": format!("!{characters} || self.matches('{}')", image_reference_pattern()),
                "message": format!("{field} must be [registry[:port]/]path[:tag][@sha256:digest] with a lowercase path, such as registry.example.com/team/app:v1.2")
            }
        ]
    })
}

/// `image` of a component.
pub(crate) fn image(_: &mut SchemaGenerator) -> Schema {
    image_field("image")
}

/// `postgresImage` of a pooler.
pub(crate) fn postgres_image(_: &mut SchemaGenerator) -> Schema {
    image_field("postgresImage")
}

/// The schema of a storage size: a quantity of whole bytes from 1Mi to 1Pi (see
/// [`crate::quantity::is_storage_size`]). Smaller volumes
/// cannot hold a PostgreSQL data directory, fractions of a byte mean a typo (`100m`), and
/// sizes beyond any real disk (`1000000Ei`) would only surface as a claim that never binds.
pub(crate) fn storage_size(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": 32,
        "x-kubernetes-validations": [{
            "rule": format!("isQuantity(self) && quantity(self).isInteger() && quantity(self).compareTo(quantity('{MIN_STORAGE}')) >= 0 && quantity(self).compareTo(quantity('{MAX_STORAGE}')) <= 0"),
            "message": format!("storage size must be a whole number of bytes from {MIN_STORAGE} to {MAX_STORAGE}, such as 10Gi")
        }]
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
