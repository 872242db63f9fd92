//! Volumes an earlier object left behind. A StatefulSet's pods use the claims
//! `<template>-<StatefulSet>-<ordinal>` whoever made them, and names are deterministic: a new
//! object named like a deleted one whose volumes were kept would silently start on the old data.
//! So before the resource-handler creates a StatefulSet it looks at the claims the StatefulSet
//! would use, and refuses to create it while one of them carries another object's uid (or none),
//! unless the spec says `adoptVolumes: true`.
//!
//! Only a StatefulSet that does not exist yet is checked: an existing one already uses its
//! claims, and a running StatefulSet costs no request.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::ListParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use multigres_api::meta::{LABEL_CLUSTER, LABEL_OWNER_UID};

use crate::component::{Component, Workload, Workloads};
use crate::context::Context;
use crate::error::Error;

/// Reason of the `Ready=False` condition while claims of another object are in the way.
pub const FOREIGN_VOLUMES_REASON: &str = "VolumesFromAnotherObject";

/// What to do about the claims a StatefulSet about to be created would use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// None of them was made for another object: create it.
    Clear,
    /// Some were made for another object, and the spec says to start from their data.
    Adopt(Vec<ForeignClaim>),
    /// Some were made for another object: the StatefulSet would start on their data.
    Refuse(Vec<ForeignClaim>),
}

/// A claim made for another object than the one being reconciled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignClaim {
    pub name: String,
    /// Already being deleted (its old pods may still hold it).
    pub deleting: bool,
}

impl fmt::Display for ForeignClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.deleting {
            write!(f, "{} (being deleted)", self.name)
        } else {
            f.write_str(&self.name)
        }
    }
}

/// The verdict on `claims` (any claims of the namespace) for `statefulset`, about to be
/// created for the object with uid `owner_uid`. A claim is the StatefulSet's when it is named
/// `<template>-<StatefulSet>-<ordinal>` after one of its claim templates and carries its
/// selector labels (the StatefulSet controller puts them on every claim it makes); it is
/// foreign when its `multigres.com/owner-uid` label is not `owner_uid`.
pub fn verdict(
    statefulset: &StatefulSet,
    owner_uid: &str,
    claims: &[PersistentVolumeClaim],
    adopt: bool,
) -> Verdict {
    let mut foreign: Vec<ForeignClaim> = claims
        .iter()
        .filter(|claim| is_claim_of(statefulset, claim))
        .filter(|claim| claim.labels().get(LABEL_OWNER_UID).map(String::as_str) != Some(owner_uid))
        .map(|claim| ForeignClaim {
            name: claim.name_any(),
            deleting: claim.metadata.deletion_timestamp.is_some(),
        })
        .collect();
    foreign.sort_by(|a, b| a.name.cmp(&b.name));
    match (foreign.is_empty(), adopt) {
        (true, _) => Verdict::Clear,
        (false, true) => Verdict::Adopt(foreign),
        (false, false) => Verdict::Refuse(foreign),
    }
}

/// Whether the pods of `statefulset` would use `claim`.
fn is_claim_of(statefulset: &StatefulSet, claim: &PersistentVolumeClaim) -> bool {
    let name = claim.name_any();
    let prefix = |template: &PersistentVolumeClaim| {
        format!("{}-{}-", template.name_any(), statefulset.name_any())
    };
    let named = claim_templates(statefulset).iter().any(|template| {
        name.strip_prefix(&prefix(template)).is_some_and(|ordinal| {
            !ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit())
        })
    });
    let labels = claim.labels();
    named
        && selector(statefulset)
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
}

fn claim_templates(statefulset: &StatefulSet) -> &[PersistentVolumeClaim] {
    statefulset
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default()
}

fn selector(statefulset: &StatefulSet) -> BTreeMap<String, String> {
    statefulset
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default()
}

/// The claims of another object that hold a StatefulSet back, and how to go on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct VolumesFromAnotherObject {
    /// Kind of the object reconciled, e.g. `Etcd`.
    pub kind: String,
    pub statefulset: String,
    pub claims: Vec<ForeignClaim>,
    /// The MultigresCluster the object belongs to, where `adoptVolumes` must be set (the
    /// cluster-handler writes the object's spec from it).
    pub cluster: Option<String>,
}

impl fmt::Display for VolumesFromAnotherObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let claims: Vec<String> = self.claims.iter().map(ToString::to_string).collect();
        let setting = match &self.cluster {
            Some(cluster) => format!("spec.adoptVolumes: true on MultigresCluster {cluster}"),
            None => format!("spec.adoptVolumes: true on this {}", self.kind),
        };
        write!(
            f,
            "PersistentVolumeClaims {} were made for another {kind} named like this one (their \
             {LABEL_OWNER_UID} label is not this {kind}'s uid); StatefulSet {} is not created \
             because its pods would start on their data. Delete the claims to start empty, or \
             set {setting} to start from their data",
            claims.join(", "),
            self.statefulset,
            kind = self.kind,
        )
    }
}

/// Before the StatefulSet of `component` is created, checks the claims it would use (see
/// [`verdict`]). Makes no request when the workload is not a StatefulSet or already exists.
pub async fn check_before_create<C: Component>(
    ctx: &Context,
    component: &C,
    ns: &str,
    object: &str,
    workloads: &Workloads,
) -> Result<(), Error> {
    let Workload::StatefulSet(statefulset) = &workloads.workload else {
        return Ok(());
    };
    let name = statefulset.name_any();
    if ctx
        .statefulsets
        .get(&ObjectRef::new(&name).within(ns))
        .is_some()
    {
        return Ok(());
    }
    let Some(uid) = component.uid() else {
        return Err(Error::NotStored {
            object: object.to_string(),
        });
    };
    let claims = list_claims(ctx, ns, object, statefulset).await?;
    match verdict(statefulset, &uid, &claims, component.adopt_volumes()) {
        Verdict::Clear => Ok(()),
        Verdict::Adopt(adopted) => {
            let adopted: Vec<String> = adopted.iter().map(ToString::to_string).collect();
            tracing::info!(
                object,
                claims = adopted.join(", "),
                "adopting claims made for another object (spec.adoptVolumes)"
            );
            Ok(())
        }
        Verdict::Refuse(claims) => Err(Error::ForeignVolumes {
            object: object.to_string(),
            source: VolumesFromAnotherObject {
                kind: C::kind(&()).into_owned(),
                statefulset: name,
                claims,
                cluster: component.labels().get(LABEL_CLUSTER).cloned(),
            },
        }),
    }
}

/// The claims in `ns` with the selector labels of `statefulset` (one `list`, filtered by the
/// API server).
async fn list_claims(
    ctx: &Context,
    ns: &str,
    object: &str,
    statefulset: &StatefulSet,
) -> Result<Vec<PersistentVolumeClaim>, Error> {
    let labels: Vec<String> = selector(statefulset)
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.run.client.clone(), ns);
    let list = api
        .list(&ListParams::default().labels(&labels.join(",")))
        .await
        .map_err(|source| Error::ListClaims {
            object: object.to_string(),
            source,
        })?;
    Ok(list.items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use multigres_api::crd::{Etcd, EtcdSpec};

    const OURS: &str = "uid-new";

    /// The StatefulSet the builders make for Etcd `topo` with uid `OURS`.
    fn topo_statefulset() -> StatefulSet {
        let mut etcd = Etcd::new("topo", EtcdSpec::default());
        etcd.metadata.namespace = Some("demo".to_string());
        etcd.metadata.uid = Some(OURS.to_string());
        crate::builders::etcd(&etcd)
            .expect("etcd builds")
            .statefulset
    }

    /// A claim as the StatefulSet controller makes it: the template's labels, which include
    /// the selector labels; `owner` is the owner-uid label, if any.
    fn claim(name: &str, owner: Option<&str>) -> PersistentVolumeClaim {
        let sts = topo_statefulset();
        let mut labels = selector(&sts);
        if let Some(owner) = owner {
            labels.insert(LABEL_OWNER_UID.to_string(), owner.to_string());
        }
        let mut claim = PersistentVolumeClaim::default();
        claim.metadata.name = Some(name.to_string());
        claim.metadata.labels = Some(labels);
        claim
    }

    fn named(names: &[&str]) -> Vec<ForeignClaim> {
        names
            .iter()
            .map(|n| ForeignClaim {
                name: n.to_string(),
                deleting: false,
            })
            .collect()
    }

    #[test]
    fn no_claims_are_clear() {
        assert_eq!(
            verdict(&topo_statefulset(), OURS, &[], false),
            Verdict::Clear
        );
    }

    #[test]
    fn our_own_claims_are_clear() {
        let claims = [
            claim("data-topo-0", Some(OURS)),
            claim("data-topo-1", Some(OURS)),
        ];
        assert_eq!(
            verdict(&topo_statefulset(), OURS, &claims, false),
            Verdict::Clear
        );
    }

    #[test]
    fn claims_of_another_object_are_refused() {
        let claims = [
            claim("data-topo-1", Some("uid-old")),
            claim("data-topo-0", None),
            claim("data-topo-2", Some(OURS)),
        ];
        assert_eq!(
            verdict(&topo_statefulset(), OURS, &claims, false),
            Verdict::Refuse(named(&["data-topo-0", "data-topo-1"])),
            "a different or a missing owner uid is foreign, sorted by name"
        );
    }

    #[test]
    fn claims_of_another_object_are_adopted_when_asked() {
        let claims = [claim("data-topo-0", Some("uid-old"))];
        assert_eq!(
            verdict(&topo_statefulset(), OURS, &claims, true),
            Verdict::Adopt(named(&["data-topo-0"]))
        );
    }

    #[test]
    fn claims_another_statefulset_would_use_are_not_ours_to_judge() {
        let mut other_instance = claim("data-topo-0", Some("uid-old"));
        if let Some(labels) = other_instance.metadata.labels.as_mut() {
            labels.insert(
                multigres_api::meta::LABEL_INSTANCE.to_string(),
                "elsewhere".to_string(),
            );
        }
        let claims = [
            // StatefulSet `topo-x`'s claims share the `data-topo-` prefix.
            claim("data-topo-x-0", Some("uid-old")),
            claim("data-topo-", Some("uid-old")),
            claim("backups-topo-0", Some("uid-old")),
            other_instance,
        ];
        assert_eq!(
            verdict(&topo_statefulset(), OURS, &claims, false),
            Verdict::Clear
        );
    }

    #[test]
    fn a_claim_being_deleted_is_still_in_the_way_and_says_so() {
        let mut old = claim("data-topo-0", Some("uid-old"));
        old.metadata.deletion_timestamp =
            Some(Time(Timestamp::from_second(1_000).unwrap_or_default()));
        let Verdict::Refuse(claims) = verdict(&topo_statefulset(), OURS, &[old], false) else {
            panic!("refused")
        };
        assert_eq!(claims[0].to_string(), "data-topo-0 (being deleted)");
    }

    #[test]
    fn the_message_names_the_claims_and_both_ways_out() {
        let mut err = VolumesFromAnotherObject {
            kind: "Etcd".to_string(),
            statefulset: "demo-etcd".to_string(),
            claims: named(&["data-demo-etcd-0", "data-demo-etcd-1"]),
            cluster: Some("demo".to_string()),
        };
        let message = err.to_string();
        for part in [
            "PersistentVolumeClaims data-demo-etcd-0, data-demo-etcd-1 were made for another Etcd",
            "StatefulSet demo-etcd is not created",
            "Delete the claims to start empty",
            "set spec.adoptVolumes: true on MultigresCluster demo to start from their data",
        ] {
            assert!(message.contains(part), "{part:?} in {message}");
        }
        err.cluster = None;
        assert!(
            err.to_string()
                .contains("set spec.adoptVolumes: true on this Etcd"),
            "{err}"
        );
    }
}
