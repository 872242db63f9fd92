//! Names, labels and owner references of the objects the handlers create. Both handlers use
//! these, so the cluster-handler's idea of a child's name (e.g. the etcd client Service it points
//! components at) always matches what the resource-handler builds.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

// Defined beside the list of component kinds, so a new kind adds its label there.
pub use crate::crd::ComponentLabel;

/// Field manager of the cluster-handler's server-side applies.
pub const CLUSTER_HANDLER_MANAGER: &str = "multigres-cluster-handler";
/// Field manager of the resource-handler's server-side applies.
pub const RESOURCE_HANDLER_MANAGER: &str = "multigres-resource-handler";

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The Multigres cluster an object belongs to.
pub const LABEL_CLUSTER: &str = "multigres.com/cluster";
/// The Multigres cell an object belongs to.
pub const LABEL_CELL: &str = "multigres.com/cell";
/// On a StatefulSet's volume claim template, and so on every claim made from it: the uid of
/// the component object the StatefulSet was built for. Names are reused after a delete, uids
/// never, so this tells a claim left behind by an earlier object from one of our own.
pub const LABEL_OWNER_UID: &str = "multigres.com/owner-uid";

/// The W3C `traceparent` of the span that last wrote a child, so the child's reconcile joins that
/// trace. Part of the objects' contract: users may set it too.
pub const TRACEPARENT_ANNOTATION: &str = "multigres.com/traceparent";
/// The W3C `tracestate` that goes with [`TRACEPARENT_ANNOTATION`].
pub const TRACESTATE_ANNOTATION: &str = "multigres.com/tracestate";
/// When [`TRACEPARENT_ANNOTATION`] was written (Unix seconds); older contexts are linked, not joined.
pub const TRACEPARENT_TS_ANNOTATION: &str = "multigres.com/traceparent-ts";

/// Longest name of a StatefulSet whose pods still get valid `controller-revision-hash` labels
/// (name + '-' + 10-character hash ≤ 63).
pub const MAX_STATEFULSET_NAME: usize = 52;
/// Longest DNS label (Service, Deployment and most object names).
pub const MAX_DNS_LABEL: usize = 63;
/// Longest DNS subdomain name (most object names, Secrets among them).
pub const MAX_DNS_SUBDOMAIN: usize = 253;

/// Labels that select the pods of one component instance; they are part of immutable
/// selectors, so they never change for an existing object.
pub fn selector_labels(component: ComponentLabel, instance: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), "multigres".to_string()),
        (LABEL_INSTANCE.to_string(), instance.to_string()),
        (LABEL_COMPONENT.to_string(), component.as_str().to_string()),
    ])
}

/// The standard labels of an object made by `manager` for one component instance.
pub fn standard_labels(
    component: ComponentLabel,
    instance: &str,
    manager: &str,
) -> BTreeMap<String, String> {
    let mut labels = selector_labels(component, instance);
    labels.insert(LABEL_PART_OF.to_string(), "multigres".to_string());
    labels.insert(LABEL_MANAGED_BY.to_string(), manager.to_string());
    labels
}

/// `ours` plus the user's labels or annotations that do not collide with ours.
pub fn merge_user_map(
    ours: &BTreeMap<String, String>,
    user: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut merged = user.clone();
    merged.extend(ours.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged
}

/// A controller owner reference to `owner`, so garbage collection deletes the child with it.
/// `None` when the owner has no uid yet (it was never stored).
pub fn controller_owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    let mut reference = owner.controller_owner_ref(&())?;
    reference.block_owner_deletion = Some(true);
    Some(reference)
}

/// Metadata of a child object of `parent`: same namespace, `labels`, and a controller owner
/// reference. `None` when the parent was never stored (no uid or namespace).
pub fn child_meta<P: Resource<DynamicType = ()>>(
    parent: &P,
    name: String,
    labels: BTreeMap<String, String>,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta> {
    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name),
        namespace: Some(parent.meta().namespace.clone()?),
        labels: Some(labels),
        owner_references: Some(vec![controller_owner_ref(parent)?]),
        ..Default::default()
    })
}

/// Whether `child` has a controller owner reference to the object with `uid`.
pub fn is_controlled_by<K: Resource>(child: &K, uid: &str) -> bool {
    child
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

/// Name of the etcd cluster of a MultigresCluster.
pub fn cluster_etcd_name(cluster: &str) -> String {
    format!("{cluster}-etcd")
}

/// Name of the Secret holding the postgres admin password the cluster-handler generates for a
/// cluster that names none.
pub fn generated_password_secret(cluster: &str) -> String {
    format!("{cluster}-postgres-password")
}

/// Name of the Cell object for cell `cell` of a MultigresCluster: `<cluster>-<cell>-<hash>`.
/// The hash of the pair keeps names distinct across clusters of one namespace, where
/// `<cluster>-<cell>` alone would not (`a` + `b-c` and `a-b` + `c`).
pub fn cell_object_name(cluster: &str, cell: &str) -> String {
    format!(
        "{cluster}-{cell}-{}",
        short_hash(&format!("{cluster}/{cell}"))
    )
}

/// Five lowercase hex digits of the FNV-1a hash of `text`.
pub fn short_hash(text: &str) -> String {
    format!("{:05x}", fnv1a(text) & 0xf_ffff)
}

/// FNV-1a, 64 bits: stable across processes and releases, unlike `std`'s hasher, so names and
/// annotations derived from it never change under a running cluster.
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Names of a cell's component objects (`<cell object>-gateway` and so on).
pub fn cell_component_name(cell_object: &str, component: ComponentLabel) -> String {
    format!("{cell_object}-{}", component.name_suffix())
}

/// Headless Service of the etcd members (peer traffic and stable pod DNS names).
pub fn etcd_peer_service(etcd: &str) -> String {
    format!("{etcd}-peer")
}

/// Client Service of an etcd cluster.
pub fn etcd_client_service(etcd: &str) -> String {
    format!("{etcd}-client")
}

/// `host:port` of an etcd cluster's client Service, as components pass it to
/// `--topo-global-server-addresses`.
pub fn etcd_client_address(etcd: &str, namespace: &str) -> String {
    format!("{}.{namespace}.svc:2379", etcd_client_service(etcd))
}

/// Name and namespace for log lines and errors: `namespace/name`.
pub fn object_ref<K: ResourceExt>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_labels_never_override_ours() {
        let ours = standard_labels(ComponentLabel::Etcd, "demo-etcd", RESOURCE_HANDLER_MANAGER);
        let user = BTreeMap::from([
            (LABEL_COMPONENT.to_string(), "hijack".to_string()),
            ("team".to_string(), "data".to_string()),
        ]);
        let merged = merge_user_map(&ours, &user);
        assert_eq!(merged[LABEL_COMPONENT], "etcd");
        assert_eq!(merged["team"], "data");
        assert_eq!(merged[LABEL_MANAGED_BY], RESOURCE_HANDLER_MANAGER);
    }

    #[test]
    fn cell_names_are_stable_across_releases() {
        // Renaming would orphan every existing Cell: the hash must never change.
        assert_eq!(cell_object_name("multi", "zone-a"), "multi-zone-a-b117b");
        assert_eq!(cell_object_name("multi", "zone-c"), "multi-zone-c-b14e1");
    }

    #[test]
    fn cell_names_do_not_collide_across_clusters() {
        assert_ne!(cell_object_name("a", "b-c"), cell_object_name("a-b", "c"));
    }

    #[test]
    fn names_are_derived_consistently() {
        assert_eq!(cluster_etcd_name("demo"), "demo-etcd");
        let cell = cell_object_name("demo", "zone-a");
        assert!(
            cell.starts_with("demo-zone-a-") && cell.len() == "demo-zone-a-".len() + 5,
            "{cell}"
        );
        assert_eq!(cell, cell_object_name("demo", "zone-a"), "deterministic");
        assert_eq!(
            cell_component_name(&cell, ComponentLabel::Pooler),
            format!("{cell}-pooler")
        );
        assert_eq!(
            etcd_client_address("demo-etcd", "prod"),
            "demo-etcd-client.prod.svc:2379"
        );
    }
}
