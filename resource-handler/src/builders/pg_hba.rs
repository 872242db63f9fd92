//! The pg_hba.conf template of a pooler's postgres: a ConfigMap `<pooler>-pg-hba` that pgctld
//! reads through `--pg-hba-template`.
//!
//! pgctld executes the file as a Go text/template over its server settings (`.User` is the admin
//! user, `postgres`) and writes the result into `PGDATA/pg_hba.conf` when it initialises the
//! database, and only then: a change of the networks reaches databases initialised afterwards,
//! never one that exists.
//!
//! pgctld's built-in template accepts replication only from the pod itself, so a standby in
//! another pod could never stream from the primary. Nothing else needs TCP: applications reach
//! postgres through multigateway, then multipooler over gRPC, then the unix socket. So TCP is
//! open to the admin user alone (replication and rewind between poolers), from the allowed
//! networks, with scram-sha-256 like every other line.

use multigres_api::invalid::InvalidSpec;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapVolumeSource, Volume, VolumeMount};

use super::objects::{self, Owner};
use super::validate;

/// The networks of an empty `spec.allowedNetworks`: every address, since pod IPs are not known
/// in advance; the password and the admin-only lines still apply.
pub(super) const DEFAULT_NETWORKS: [&str; 2] = ["0.0.0.0/0", "::/0"];

/// Where pgctld sees the ConfigMap, and the key (file) of the template in it.
const DIR: &str = "/etc/pgctld";
const KEY: &str = "pg_hba_template.conf";
const VOLUME: &str = "pg-hba";

/// Lines that never depend on the networks: the socket (multipooler's connections and local
/// replication) and the pod's own loopback, as pgctld's built-in template has them.
const LOCAL_LINES: &str = "\
local   all          all                     scram-sha-256
local   replication  all                     scram-sha-256
host    all          all          127.0.0.1/32  scram-sha-256
host    all          all          ::1/128       scram-sha-256
";

/// Name of the ConfigMap of pooler `pooler`.
pub(super) fn name(pooler: &str) -> String {
    format!("{pooler}-pg-hba")
}

/// pgctld's flag naming the template.
pub(super) fn flag() -> String {
    format!("--pg-hba-template={DIR}/{KEY}")
}

/// The ConfigMap holding the template for `networks` (`spec.allowedNetworks`), checked first.
pub(super) fn config_map(owner: &Owner, networks: &[String]) -> Result<ConfigMap, InvalidSpec> {
    for network in networks {
        validate::network(network)?;
    }
    let data = BTreeMap::from([(KEY.to_string(), template(&owner.name, networks))]);
    objects::config_map(owner, &name(&owner.name), data)
}

/// The template for pooler `pooler`: [`LOCAL_LINES`], then replication and every database for
/// the admin user from each network ([`DEFAULT_NETWORKS`] when `networks` is empty).
pub(super) fn template(pooler: &str, networks: &[String]) -> String {
    let networks: Vec<&str> = if networks.is_empty() {
        DEFAULT_NETWORKS.to_vec()
    } else {
        networks.iter().map(String::as_str).collect()
    };
    // The header has no braces: pgctld runs the whole file through text/template.
    let mut text = format!(
        "# pg_hba.conf template of MultiPooler {pooler}, kept by the multigres-resource-handler.\n\
         # pgctld renders it (.User is the admin user) into PGDATA/pg_hba.conf at initdb only.\n\
         # TCP: the admin user from spec.allowedNetworks (replication, rewind between poolers).\n\
         # Applications reach postgres through multipooler, on the local socket.\n"
    );
    text.push_str(LOCAL_LINES);
    for database in ["replication", "all"] {
        for network in &networks {
            text.push_str(&format!(
                "host    {database:<11}  {{{{.User}}}}    {network:<13} scram-sha-256\n"
            ));
        }
    }
    text
}

/// The ConfigMap `config_map` as a pod volume.
pub(super) fn volume(config_map: &str) -> Volume {
    Volume {
        name: VOLUME.to_string(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_string(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// pgctld's read-only mount of [`volume`].
pub(super) fn mount() -> VolumeMount {
    VolumeMount {
        name: VOLUME.to_string(),
        mount_path: DIR.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}
