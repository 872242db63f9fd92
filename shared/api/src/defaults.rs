//! Every default of the API in one place. Specs leave fields unset; builders resolve them here,
//! so changing a default is one edit and the CRD schema never disagrees with the code.

use crate::crd::{ComponentSpec, ImagePullPolicy};

/// Image of etcd members.
pub const ETCD_IMAGE: &str = "gcr.io/etcd-development/etcd:v3.6.14";
/// The Multigres release the operator deploys and whose flags the builders pass. Flags differ
/// between releases (and between commits of `main`), so the default images never float.
pub const MULTIGRES_VERSION: &str = "v0.1.0";
/// Image running `multigateway`, `multiorch` and `multipooler` (in `/multigres/bin`).
pub const MULTIGRES_IMAGE: &str = "ghcr.io/multigres/multigres:v0.1.0";
/// Image of the postgres side of a pooler pod: pgctld with PostgreSQL 17 and pgBackRest.
pub const PGCTLD_IMAGE: &str = "ghcr.io/multigres/pgctld:v0.1.0";
/// Pull policy when a spec sets none.
pub const IMAGE_PULL_POLICY: ImagePullPolicy = ImagePullPolicy::IfNotPresent;

/// Volume size of each etcd member.
pub const ETCD_STORAGE_SIZE: &str = "1Gi";
/// Volume size of each pooler's postgres data.
pub const POOLER_STORAGE_SIZE: &str = "10Gi";

/// Where every pooler container mounts a filesystem backup repository; the topology's Database
/// record names the same path.
pub const BACKUP_PATH: &str = "/backups";

/// Key of the postgres admin password in its Secret.
pub const PASSWORD_KEY: &str = "password";

/// The cell a cluster gets when `spec.cells` is empty.
pub const DEFAULT_CELL_NAME: &str = "default";
/// Root path of the global topology in etcd.
pub const GLOBAL_TOPO_ROOT: &str = "/multigres/global";

/// The component a spec describes, for picking its defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Etcd,
    Gateway,
    Orch,
    Pooler,
}

impl Component {
    /// Default number of pods: three etcd members for quorum, two gateways and two poolers
    /// (a primary and a replica) for availability, one orchestrator.
    pub const fn default_replicas(self) -> i32 {
        match self {
            Self::Etcd => 3,
            Self::Gateway => 2,
            Self::Orch => 1,
            Self::Pooler => 2,
        }
    }

    /// Default container image.
    pub const fn default_image(self) -> &'static str {
        match self {
            Self::Etcd => ETCD_IMAGE,
            Self::Gateway | Self::Orch | Self::Pooler => MULTIGRES_IMAGE,
        }
    }

    /// Replicas of `spec`, or this component's default.
    pub fn replicas(self, spec: &ComponentSpec) -> i32 {
        spec.replicas.unwrap_or(self.default_replicas())
    }

    /// Image of `spec`, or this component's default.
    pub fn image(self, spec: &ComponentSpec) -> String {
        spec.image
            .clone()
            .unwrap_or_else(|| self.default_image().to_string())
    }

    /// Pull policy of `spec`, or the default.
    pub fn image_pull_policy(self, spec: &ComponentSpec) -> ImagePullPolicy {
        spec.image_pull_policy.unwrap_or(IMAGE_PULL_POLICY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_fields_take_component_defaults() {
        let spec = ComponentSpec::default();
        assert_eq!(Component::Etcd.replicas(&spec), 3);
        assert_eq!(Component::Orch.replicas(&spec), 1);
        assert_eq!(Component::Etcd.image(&spec), ETCD_IMAGE);
        assert_eq!(Component::Pooler.image(&spec), MULTIGRES_IMAGE);
        assert_eq!(
            Component::Gateway.image_pull_policy(&spec),
            ImagePullPolicy::IfNotPresent
        );
    }

    #[test]
    fn default_images_are_pinned_to_the_multigres_release() {
        for image in [MULTIGRES_IMAGE, PGCTLD_IMAGE] {
            assert_eq!(
                image.rsplit_once(':').map(|(_, tag)| tag),
                Some(MULTIGRES_VERSION),
                "{image}: the builders pass the flags of {MULTIGRES_VERSION}; another tag may refuse them"
            );
        }
        for image in [ETCD_IMAGE, MULTIGRES_IMAGE, PGCTLD_IMAGE] {
            let tag = image.rsplit_once(':').map(|(_, tag)| tag).unwrap_or("");
            assert!(
                tag.starts_with('v') && tag[1..].split('.').all(|n| n.parse::<u32>().is_ok()),
                "{image}: a default image names a release (vX.Y.Z), never a moving tag like main or latest"
            );
        }
    }

    #[test]
    fn the_etcd_replicas_rule_uses_the_default() {
        let default = Component::Etcd.default_replicas();
        assert_eq!(
            crate::crd::ETCD_REPLICAS_UNCHANGED
                .matches(&format!(": {default})"))
                .count(),
            2,
            "{}",
            crate::crd::ETCD_REPLICAS_UNCHANGED
        );
    }

    #[test]
    fn set_fields_win_over_defaults() {
        let spec = ComponentSpec {
            replicas: Some(0),
            image: Some("example.com/etcd:v9".into()),
            image_pull_policy: Some(ImagePullPolicy::Always),
            ..Default::default()
        };
        assert_eq!(Component::Etcd.replicas(&spec), 0);
        assert_eq!(Component::Etcd.image(&spec), "example.com/etcd:v9");
        assert_eq!(
            Component::Etcd.image_pull_policy(&spec),
            ImagePullPolicy::Always
        );
    }
}
