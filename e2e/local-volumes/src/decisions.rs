//! Decisions of the `local-volumes` provisioner (`main.rs`), kept free of I/O
//! so they are unit-tested: which claims and volumes are ours, the `local` PersistentVolume a
//! claim gets, and which directories may be removed.
//!
//! Why `local` volumes: kubelet applies a pod's `fsGroup` to them (not to `hostPath` ones), so a
//! non-root pod on the real node can write to its claim.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use serde_json::json;

/// The provisioner name of the e2e StorageClass.
pub const DEFAULT_PROVISIONER: &str = "multigres.com/e2e-local";
/// Set on a claim by the PV controller when the claim's class has an external provisioner.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The older spelling of [`ANN_STORAGE_PROVISIONER`], still set alongside it.
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Set on a claim by the scheduler (WaitForFirstConsumer): the node its first pod goes to.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// On a PV: which provisioner made it. The PV controller leaves deleting such a volume to us.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The node label kubelet registers (its hostname override): the volume's node affinity.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// One provisioner instance: its name, the node it serves and where its volumes live.
#[derive(Clone, Debug)]
pub struct Provisioner {
    pub name: String,
    pub node: String,
    /// Absolute (canonical, so paths built from it compare equal to those read back).
    pub root: PathBuf,
}

/// What to do with a claim.
#[derive(Debug, PartialEq)]
pub enum ClaimDecision {
    /// Not ours, or nothing left to do (bound, being deleted, not yet on our node).
    Skip,
    /// Ours, but asks for something a directory cannot give: left alone with a warning.
    Unsupported(String),
    /// Ours and unbound: make its directory and volume.
    Provision,
}

impl Provisioner {
    /// Whether `pvc` is a pending claim of our provisioner on our node, and whether we can
    /// serve it.
    pub fn claim_decision(&self, pvc: &PersistentVolumeClaim) -> ClaimDecision {
        let ann = pvc.annotations();
        let provisioner = ann
            .get(ANN_STORAGE_PROVISIONER)
            .or_else(|| ann.get(ANN_BETA_STORAGE_PROVISIONER));
        if provisioner != Some(&self.name) || ann.get(ANN_SELECTED_NODE) != Some(&self.node) {
            return ClaimDecision::Skip;
        }
        let spec = pvc.spec.clone().unwrap_or_default();
        // The API server sets Pending on create; treat a missing status the same.
        let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref());
        if pvc.metadata.deletion_timestamp.is_some()
            || spec.volume_name.as_deref().is_some_and(|v| !v.is_empty())
            || phase.is_some_and(|p| p != "Pending")
        {
            return ClaimDecision::Skip;
        }
        if spec
            .volume_mode
            .as_deref()
            .is_some_and(|m| m != "Filesystem")
        {
            return ClaimDecision::Unsupported(format!(
                "volumeMode {} is not supported, only Filesystem",
                spec.volume_mode.unwrap_or_default()
            ));
        }
        if spec.selector.is_some() {
            return ClaimDecision::Unsupported("a claim with a selector is not supported".into());
        }
        if spec.data_source.is_some() || spec.data_source_ref.is_some() {
            return ClaimDecision::Unsupported(
                "a claim with a data source is not supported".into(),
            );
        }
        ClaimDecision::Provision
    }

    /// The directory of `pvc`'s volume: `<root>/<namespace>_<name>_<uid>`.
    pub fn claim_dir(&self, pvc: &PersistentVolumeClaim) -> anyhow::Result<PathBuf> {
        let (ns, name, uid) = claim_identity(pvc)?;
        let dir = self.root.join(format!("{ns}_{name}_{uid}"));
        self.check_under_root(&dir)?;
        Ok(dir)
    }

    /// The PersistentVolume for `pvc` of `class`, at `dir`, pre-bound to the claim (so the PV
    /// controller binds exactly this pair).
    pub fn volume_for(
        &self,
        pvc: &PersistentVolumeClaim,
        class: &StorageClass,
        dir: &Path,
    ) -> anyhow::Result<PersistentVolume> {
        let (ns, name, uid) = claim_identity(pvc)?;
        if class.provisioner != self.name {
            bail!(
                "StorageClass {} has provisioner {}, not {}",
                class.name_any(),
                class.provisioner,
                self.name
            );
        }
        let spec = pvc.spec.clone().unwrap_or_default();
        let storage = spec
            .resources
            .and_then(|r| r.requests)
            .and_then(|mut r| r.remove("storage"))
            .with_context(|| format!("claim {ns}/{name} requests no storage"))?;
        let path = dir
            .to_str()
            .with_context(|| format!("{} is not UTF-8", dir.display()))?;
        let pv = json!({
            "metadata": {
                "name": volume_name(uid),
                "annotations": {ANN_PROVISIONED_BY: self.name},
            },
            "spec": {
                "capacity": BTreeMap::from([("storage", storage)]),
                "accessModes": spec.access_modes.unwrap_or_default(),
                "storageClassName": spec.storage_class_name.unwrap_or_else(|| class.name_any()),
                "persistentVolumeReclaimPolicy": class.reclaim_policy.as_deref().unwrap_or("Delete"),
                "volumeMode": "Filesystem",
                "local": {"path": path},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": HOSTNAME_LABEL, "operator": "In", "values": [self.node]}
                ]}]}},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": ns,
                    "name": name,
                    "uid": uid,
                },
            },
        });
        serde_json::from_value(pv).context("building the PersistentVolume")
    }

    /// Whether `pv` is a volume we made on our node whose claim is gone and whose policy says
    /// to delete it.
    pub fn should_delete(&self, pv: &PersistentVolume) -> bool {
        let spec = pv.spec.as_ref();
        pv.annotations().get(ANN_PROVISIONED_BY) == Some(&self.name)
            && pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released")
            && spec.and_then(|s| s.persistent_volume_reclaim_policy.as_deref()) == Some("Delete")
            && volume_node(pv) == Some(self.node.as_str())
    }

    /// The directory of `pv` to remove: only a direct child of the root, so a volume edited
    /// (or made by someone else under our name) cannot point us at anything else.
    pub fn deletable_dir(&self, pv: &PersistentVolume) -> anyhow::Result<PathBuf> {
        let path = pv
            .spec
            .as_ref()
            .and_then(|s| s.local.as_ref())
            .map(|l| PathBuf::from(&l.path))
            .context("not a local volume")?;
        self.check_under_root(&path)?;
        Ok(path)
    }

    /// Accepts only `<root>/<one plain name>`.
    fn check_under_root(&self, path: &Path) -> anyhow::Result<()> {
        let plain = path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !path.is_absolute() || !plain || path.parent() != Some(self.root.as_path()) {
            bail!(
                "{} is not a directory directly under {}",
                path.display(),
                self.root.display()
            );
        }
        Ok(())
    }
}

/// The PV name of the claim with `uid`, as external provisioners name them.
pub fn volume_name(uid: &str) -> String {
    format!("pvc-{uid}")
}

fn claim_identity(pvc: &PersistentVolumeClaim) -> anyhow::Result<(&str, &str, &str)> {
    let meta = &pvc.metadata;
    match (&meta.namespace, &meta.name, &meta.uid) {
        (Some(ns), Some(name), Some(uid)) => Ok((ns, name, uid)),
        _ => bail!("claim without namespace, name or uid"),
    }
}

/// The one node `pv`'s affinity names by hostname, if that is all it requires.
fn volume_node(pv: &PersistentVolume) -> Option<&str> {
    let terms = &pv
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    let [term] = terms.as_slice() else {
        return None;
    };
    let [expr] = term.match_expressions.as_deref()? else {
        return None;
    };
    match expr.values.as_deref() {
        Some([node]) if expr.key == HOSTNAME_LABEL && expr.operator == "In" => Some(node),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provisioner() -> Provisioner {
        Provisioner {
            name: DEFAULT_PROVISIONER.into(),
            node: "node-a".into(),
            root: PathBuf::from("/var/lib/e2e-volumes"),
        }
    }

    fn claim(extra_spec: serde_json::Value) -> PersistentVolumeClaim {
        let mut spec = json!({
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "e2e-local",
            "resources": {"requests": {"storage": "1Gi"}},
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
            spec.extend(extra.clone());
        }
        serde_json::from_value(json!({
            "metadata": {
                "namespace": "ns1", "name": "data-0", "uid": "1234-abcd",
                "annotations": {
                    ANN_STORAGE_PROVISIONER: DEFAULT_PROVISIONER,
                    ANN_SELECTED_NODE: "node-a",
                },
            },
            "spec": spec,
            "status": {"phase": "Pending"},
        }))
        .expect("claim")
    }

    fn class(reclaim: Option<&str>) -> StorageClass {
        serde_json::from_value(json!({
            "metadata": {"name": "e2e-local"},
            "provisioner": DEFAULT_PROVISIONER,
            "reclaimPolicy": reclaim,
            "volumeBindingMode": "WaitForFirstConsumer",
        }))
        .expect("class")
    }

    fn released(path: &str, node: &str, policy: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": "pvc-1234-abcd", "annotations": {ANN_PROVISIONED_BY: DEFAULT_PROVISIONER}},
            "spec": {
                "persistentVolumeReclaimPolicy": policy,
                "local": {"path": path},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}
                ]}]}},
            },
            "status": {"phase": "Released"},
        }))
        .expect("volume")
    }

    #[test]
    fn a_pending_claim_of_ours_on_our_node_is_provisioned() {
        let p = provisioner();
        assert_eq!(
            p.claim_decision(&claim(json!({}))),
            ClaimDecision::Provision
        );
        // The beta annotation alone is enough.
        let mut beta = claim(json!({}));
        let ann = beta.annotations_mut();
        ann.remove(ANN_STORAGE_PROVISIONER);
        ann.insert(
            ANN_BETA_STORAGE_PROVISIONER.into(),
            DEFAULT_PROVISIONER.into(),
        );
        assert_eq!(p.claim_decision(&beta), ClaimDecision::Provision);
    }

    #[test]
    fn other_claims_are_skipped() {
        let p = provisioner();
        let mut other_node = claim(json!({}));
        other_node
            .annotations_mut()
            .insert(ANN_SELECTED_NODE.into(), "node-b".into());
        let mut no_node = claim(json!({}));
        no_node.annotations_mut().remove(ANN_SELECTED_NODE);
        let mut other_provisioner = claim(json!({}));
        other_provisioner.annotations_mut().insert(
            ANN_STORAGE_PROVISIONER.into(),
            "kubernetes.io/host-path".into(),
        );
        let bound = claim(json!({"volumeName": "pvc-1234-abcd"}));
        let mut bound_phase = claim(json!({}));
        if let Some(s) = bound_phase.status.as_mut() {
            s.phase = Some("Bound".into());
        }
        for pvc in [other_node, no_node, other_provisioner, bound, bound_phase] {
            assert_eq!(p.claim_decision(&pvc), ClaimDecision::Skip, "{pvc:?}");
        }
    }

    #[test]
    fn block_selector_and_data_source_claims_are_unsupported() {
        let p = provisioner();
        for extra in [
            json!({"volumeMode": "Block"}),
            json!({"selector": {"matchLabels": {"a": "b"}}}),
            json!({"dataSource": {"kind": "PersistentVolumeClaim", "name": "src"}}),
        ] {
            let decision = p.claim_decision(&claim(extra.clone()));
            assert!(
                matches!(decision, ClaimDecision::Unsupported(_)),
                "{extra}: {decision:?}"
            );
        }
        let fs = claim(json!({"volumeMode": "Filesystem"}));
        assert_eq!(p.claim_decision(&fs), ClaimDecision::Provision);
    }

    #[test]
    fn the_volume_is_a_prebound_local_volume_on_our_node() {
        let p = provisioner();
        let pvc = claim(json!({"accessModes": ["ReadWriteOnce", "ReadOnlyMany"]}));
        let dir = p.claim_dir(&pvc).expect("dir");
        assert_eq!(dir, Path::new("/var/lib/e2e-volumes/ns1_data-0_1234-abcd"));
        let pv = p
            .volume_for(&pvc, &class(Some("Retain")), &dir)
            .expect("pv");
        let v = serde_json::to_value(&pv).expect("json");
        assert_eq!(v["metadata"]["name"], "pvc-1234-abcd");
        assert_eq!(
            v["metadata"]["annotations"][ANN_PROVISIONED_BY],
            DEFAULT_PROVISIONER
        );
        let spec = &v["spec"];
        assert_eq!(spec["capacity"]["storage"], "1Gi");
        assert_eq!(
            spec["accessModes"],
            json!(["ReadWriteOnce", "ReadOnlyMany"])
        );
        assert_eq!(spec["storageClassName"], "e2e-local");
        assert_eq!(spec["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(spec["volumeMode"], "Filesystem");
        assert_eq!(
            spec["local"]["path"],
            "/var/lib/e2e-volumes/ns1_data-0_1234-abcd"
        );
        assert_eq!(
            spec["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
            json!({"key": HOSTNAME_LABEL, "operator": "In", "values": ["node-a"]})
        );
        assert_eq!(
            spec["claimRef"],
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "namespace": "ns1", "name": "data-0", "uid": "1234-abcd"})
        );
        // A class without a policy means Delete (the API default).
        let pv = p.volume_for(&pvc, &class(None), &dir).expect("pv");
        let policy = pv.spec.and_then(|s| s.persistent_volume_reclaim_policy);
        assert_eq!(policy.as_deref(), Some("Delete"));
    }

    #[test]
    fn a_volume_needs_a_request_and_our_class() {
        let p = provisioner();
        let dir = PathBuf::from("/var/lib/e2e-volumes/x");
        let no_request = claim(json!({"resources": {}}));
        assert!(p.volume_for(&no_request, &class(None), &dir).is_err());
        let mut foreign = class(None);
        foreign.provisioner = "other".into();
        assert!(p.volume_for(&claim(json!({})), &foreign, &dir).is_err());
    }

    #[test]
    fn only_our_released_delete_volumes_on_our_node_are_deleted() {
        let p = provisioner();
        let dir = "/var/lib/e2e-volumes/ns1_data-0_1234-abcd";
        assert!(p.should_delete(&released(dir, "node-a", "Delete")));
        assert!(!p.should_delete(&released(dir, "node-a", "Retain")));
        assert!(!p.should_delete(&released(dir, "node-b", "Delete")));
        let mut bound = released(dir, "node-a", "Delete");
        if let Some(s) = bound.status.as_mut() {
            s.phase = Some("Bound".into());
        }
        assert!(!p.should_delete(&bound));
        let mut foreign = released(dir, "node-a", "Delete");
        foreign
            .annotations_mut()
            .insert(ANN_PROVISIONED_BY.into(), "kubernetes.io/host-path".into());
        assert!(!p.should_delete(&foreign));
    }

    #[test]
    fn only_direct_children_of_the_root_are_removed() {
        let p = provisioner();
        let ok = |path: &str| p.deletable_dir(&released(path, "node-a", "Delete")).is_ok();
        assert!(ok("/var/lib/e2e-volumes/ns1_data-0_1234-abcd"));
        assert!(ok("/var/lib/e2e-volumes/ns1_data-0_1234-abcd/"));
        for bad in [
            "/var/lib/e2e-volumes",
            "/var/lib/e2e-volumes/",
            "/var/lib/e2e-volumes/..",
            "/var/lib/e2e-volumes/../etc",
            "/var/lib/e2e-volumes/a/b",
            "/var/lib/e2e-volumes-other/a",
            "/etc",
            "/",
            "var/lib/e2e-volumes/a",
            "",
        ] {
            assert!(!ok(bad), "{bad} must be refused");
        }
        let mut no_local = released("/var/lib/e2e-volumes/a", "node-a", "Delete");
        if let Some(s) = no_local.spec.as_mut() {
            s.local = None;
        }
        assert!(p.deletable_dir(&no_local).is_err());
    }

    #[test]
    fn claim_names_cannot_escape_the_root() {
        let p = provisioner();
        let mut pvc = claim(json!({}));
        pvc.metadata.name = Some("../../etc".into());
        assert!(p.claim_dir(&pvc).is_err());
    }
}
