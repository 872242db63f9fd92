//! The data volumes of the stateful components: what happens to them when the StatefulSet goes
//! or shrinks, and the owner uid that tells them from those of an earlier object.

use k8s_openapi::api::apps::v1::StatefulSet;
use multigres_api::crd::{Etcd, MultiPooler, VolumeRetention};
use multigres_api::meta::LABEL_OWNER_UID;

use super::UNTRACED;
use super::data_plane_tests::input;

fn etcd(retention: Option<VolumeRetention>) -> StatefulSet {
    let mut etcd: Etcd = input("etcd-defaults");
    etcd.spec.volume_retention = retention;
    super::etcd(&etcd).expect("etcd builds").statefulset
}

fn pooler(retention: Option<VolumeRetention>) -> StatefulSet {
    let mut pooler: MultiPooler = input("pooler");
    pooler.spec.volume_retention = retention;
    super::pooler(&pooler, &UNTRACED)
        .expect("pooler builds")
        .statefulset
}

/// `(whenDeleted, whenScaled)` of the StatefulSet's claim retention policy.
fn retention(sts: &StatefulSet) -> (Option<String>, Option<String>) {
    let policy = sts
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.clone())
        .expect("a retention policy");
    (policy.when_deleted, policy.when_scaled)
}

fn owner_uid_of_claims(sts: &StatefulSet) -> Vec<Option<String>> {
    sts.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default()
        .iter()
        .map(|t| {
            t.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_OWNER_UID).cloned())
        })
        .collect()
}

fn policy(when_deleted: &str) -> (Option<String>, Option<String>) {
    (Some(when_deleted.to_string()), Some("Retain".to_string()))
}

#[test]
fn volumes_are_deleted_with_the_statefulset_by_default_but_never_on_scale_down() {
    assert_eq!(retention(&etcd(None)), policy("Delete"));
    assert_eq!(retention(&pooler(None)), policy("Delete"));
    assert_eq!(
        retention(&etcd(Some(VolumeRetention::Delete))),
        policy("Delete")
    );
}

#[test]
fn retained_volumes_outlive_the_statefulset() {
    assert_eq!(
        retention(&etcd(Some(VolumeRetention::Retain))),
        policy("Retain")
    );
    assert_eq!(
        retention(&pooler(Some(VolumeRetention::Retain))),
        policy("Retain")
    );
}

#[test]
fn every_claim_template_carries_the_uid_of_its_object() {
    let etcd_uid = input::<Etcd>("etcd-defaults").metadata.uid;
    assert_eq!(owner_uid_of_claims(&etcd(None)), vec![etcd_uid]);
    let pooler_uid = input::<MultiPooler>("pooler").metadata.uid;
    assert_eq!(owner_uid_of_claims(&pooler(None)), vec![pooler_uid]);
}

#[test]
fn the_retention_setting_leaves_the_immutable_claim_templates_alone() {
    let templates = |sts: StatefulSet| sts.spec.and_then(|s| s.volume_claim_templates);
    assert_eq!(
        templates(etcd(None)),
        templates(etcd(Some(VolumeRetention::Retain))),
        "switching retention on a live StatefulSet must stay a legal update"
    );
}
