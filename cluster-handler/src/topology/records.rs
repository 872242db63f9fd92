//! The Multigres topology records a cluster owns, in Multigres v0.1.0's own encoding: binary
//! protobuf of `clustermetadata.Cell` and `clustermetadata.Database`
//! (`proto/clustermetadata.proto`), stored as-is under `<root>/cells/<cell>/Cell` and
//! `<root>/databases/<database>/Database` (`go/common/topoclient/store.go`, `cell.go`,
//! `database.go`). Everything here is pure: what the records should be, and the writes that
//! take the topology from what was read to that.

use std::collections::BTreeMap;

use multigres_api::crd::{BackupSpec, DurabilityPolicy};
use multigres_api::defaults::BACKUP_PATH;
use prost::Message;

/// The one database of a cluster; the poolers serve it (`--database=postgres`).
pub const DATABASE: &str = "postgres";

/// `clustermetadata.Cell`: where the cell's own topology lives.
#[derive(Clone, PartialEq, Message)]
pub struct CellRecord {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, repeated, tag = "2")]
    pub server_addresses: Vec<String>,
    #[prost(string, tag = "3")]
    pub root: String,
}

/// `clustermetadata.Database`: the database, its cells, backups and bootstrap durability.
#[derive(Clone, PartialEq, Message)]
pub struct DatabaseRecord {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub backup_location: Option<BackupLocation>,
    #[prost(string, repeated, tag = "3")]
    pub cells: Vec<String>,
    #[prost(message, optional, tag = "4")]
    pub bootstrap_durability_policy: Option<DurabilityPolicyRecord>,
}

/// `clustermetadata.BackupLocation`: a oneof of filesystem and S3.
#[derive(Clone, PartialEq, Message)]
pub struct BackupLocation {
    #[prost(oneof = "Location", tags = "1, 2")]
    pub location: Option<Location>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Location {
    #[prost(message, tag = "1")]
    Filesystem(FilesystemBackup),
    #[prost(message, tag = "2")]
    S3(S3Backup),
}

/// `clustermetadata.S3Backup`.
#[derive(Clone, PartialEq, Message)]
pub struct S3Backup {
    #[prost(string, tag = "1")]
    pub bucket: String,
    #[prost(string, tag = "2")]
    pub region: String,
    #[prost(string, tag = "3")]
    pub endpoint: String,
    #[prost(string, tag = "4")]
    pub key_prefix: String,
    /// Whether pgBackRest takes the keys from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`.
    #[prost(bool, tag = "5")]
    pub use_env_credentials: bool,
}

/// Where the spec's repository is, as the Database record says it: the mount path of a
/// filesystem repository, or the S3 bucket (with the pods' credentials from the environment
/// when the spec names a Secret).
pub fn backup_location(backup: &BackupSpec) -> BackupLocation {
    let location = match &backup.s3 {
        Some(s3) => Location::S3(S3Backup {
            bucket: s3.bucket.clone(),
            region: s3.region.clone(),
            endpoint: s3.endpoint.clone().unwrap_or_default(),
            key_prefix: s3.key_prefix.clone().unwrap_or_default(),
            use_env_credentials: s3.credentials_secret_ref.is_some(),
        }),
        None => Location::Filesystem(FilesystemBackup {
            path: BACKUP_PATH.to_string(),
        }),
    };
    BackupLocation {
        location: Some(location),
    }
}

/// `clustermetadata.FilesystemBackup`.
#[derive(Clone, PartialEq, Message)]
pub struct FilesystemBackup {
    #[prost(string, tag = "1")]
    pub path: String,
}

/// `clustermetadata.DurabilityPolicy`.
#[derive(Clone, PartialEq, Message)]
pub struct DurabilityPolicyRecord {
    #[prost(string, tag = "1")]
    pub policy_name: String,
    #[prost(int64, tag = "2")]
    pub policy_version: i64,
    #[prost(int32, tag = "3")]
    pub quorum_type: i32,
    #[prost(int32, tag = "4")]
    pub required_count: i32,
    #[prost(string, tag = "5")]
    pub description: String,
}

/// `clustermetadata.QuorumType` values.
const QUORUM_TYPE_AT_LEAST_N: i32 = 3;
const QUORUM_TYPE_MULTI_CELL_AT_LEAST_N: i32 = 4;

/// The policy as Multigres' own `topoclient.AtLeastN(2)` / `MultiCellAtLeastN(2)` build it
/// (`go/common/topoclient/durability.go`); the quorum type must be set, an unknown one is
/// refused at bootstrap.
pub fn durability(policy: DurabilityPolicy) -> DurabilityPolicyRecord {
    let (name, quorum_type, description) = match policy {
        DurabilityPolicy::AtLeast2 => (
            "AT_LEAST_2",
            QUORUM_TYPE_AT_LEAST_N,
            "At least 2 nodes must acknowledge",
        ),
        DurabilityPolicy::MultiCellAtLeast2 => (
            "MULTI_CELL_AT_LEAST_2",
            QUORUM_TYPE_MULTI_CELL_AT_LEAST_N,
            "At least 2 nodes from different cells must acknowledge",
        ),
    };
    DurabilityPolicyRecord {
        policy_name: name.to_string(),
        policy_version: 0,
        quorum_type,
        required_count: 2,
        description: description.to_string(),
    }
}

/// `clustermetadata.MultiPooler`: the fields the statuses read (a pooler writes its own
/// record; prost skips the others).
#[derive(Clone, PartialEq, Message)]
pub struct PoolerRecord {
    /// `clustermetadata.PoolerType`: PRIMARY = 1, REPLICA = 2.
    #[prost(int32, tag = "6")]
    pub pooler_type: i32,
    /// `clustermetadata.PoolerServingStatus`: SERVING = 0.
    #[prost(int32, tag = "7")]
    pub serving_status: i32,
    #[prost(string, tag = "8")]
    pub hostname: String,
    /// Its ports by name (`grpc`, `http`, `postgres`, `pgbackrest`; go/services/multipooler/init.go).
    #[prost(map = "string, int32", tag = "9")]
    pub port_map: std::collections::HashMap<String, i32>,
}

const POOLER_TYPE_PRIMARY: i32 = 1;
const POOLER_TYPE_REPLICA: i32 = 2;
const SERVING: i32 = 0;

/// Prefix of the pooler records of a cell (`poolers/multipooler-<cell>-<id>/Pooler` under the
/// cell's root; go/common/topoclient/store.go).
pub fn poolers_prefix(root: &str, cell: &str) -> String {
    format!("{}/poolers/", cell_root(root, cell))
}

/// What the pooler records say about the shard: its primary (the pod, from the hostname the
/// pooler registered), how many replicas serve, and how many of those stream from the primary
/// (asked of each replica by [`Shard::count_streaming`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shard {
    pub primary: Option<String>,
    pub standbys: i32,
    pub streaming: i32,
    /// The primary's registered hostname, which a streaming standby's primary_conninfo names.
    primary_host: Option<String>,
    /// `(hostname, gRPC port)` of each serving replica.
    replicas: Vec<(String, u16)>,
}

impl Shard {
    /// Adds the pooler records `values` (unreadable ones are skipped).
    pub fn add<'a>(&mut self, values: impl IntoIterator<Item = &'a [u8]>) {
        for pooler in values
            .into_iter()
            .filter_map(|v| PoolerRecord::decode(v).ok())
        {
            match pooler.pooler_type {
                POOLER_TYPE_PRIMARY => {
                    let pod = pooler.hostname.split('.').next().unwrap_or_default();
                    self.primary = Some(pod.to_string());
                    self.primary_host = Some(pooler.hostname);
                }
                POOLER_TYPE_REPLICA if pooler.serving_status == SERVING => {
                    self.standbys += 1;
                    let grpc = pooler.port_map.get("grpc").copied().unwrap_or_default();
                    if let Ok(port) = u16::try_from(grpc) {
                        self.replicas.push((pooler.hostname, port));
                    }
                }
                _ => {}
            }
        }
    }

    /// Asks every serving replica whether it streams from the primary; sets `streaming`.
    pub async fn count_streaming(&mut self, dns: &super::etcd::Dns) {
        let Some(primary) = self.primary_host.clone() else {
            self.streaming = 0;
            return;
        };
        self.streaming = super::replication::count_streaming(dns, &self.replicas, &primary).await;
    }
}

/// The records a cluster should have in its global topology.
#[derive(Clone, Debug, PartialEq)]
pub struct Records {
    /// Global root without a trailing `/`.
    pub root: String,
    pub cells: BTreeMap<String, CellRecord>,
    pub database: DatabaseRecord,
}

impl Records {
    /// Every cell's record, and the database listing the cells. A cell's own topology is kept
    /// under `<root>/<cell>` in the same etcd, as `multigres createclustermetadata` does.
    pub fn new(
        address: &str,
        root: &str,
        cells: &[String],
        policy: DurabilityPolicy,
        backup: BackupLocation,
    ) -> Self {
        let root = root.trim_end_matches('/').to_string();
        let cells: BTreeMap<String, CellRecord> = cells
            .iter()
            .map(|cell| {
                let record = CellRecord {
                    name: cell.clone(),
                    server_addresses: vec![address.to_string()],
                    root: cell_root(&root, cell),
                };
                (cell.clone(), record)
            })
            .collect();
        let database = DatabaseRecord {
            name: DATABASE.to_string(),
            backup_location: Some(backup),
            cells: cells.keys().cloned().collect(),
            bootstrap_durability_policy: Some(durability(policy)),
        };
        Records {
            root,
            cells,
            database,
        }
    }
}

/// Key of a cell's record.
pub fn cell_key(root: &str, cell: &str) -> String {
    format!("{}{cell}/Cell", cells_prefix(root))
}

/// Prefix under which every cell record is: `<root>/cells/`.
pub fn cells_prefix(root: &str) -> String {
    format!("{}/cells/", root.trim_end_matches('/'))
}

/// Key of a database's record.
pub fn database_key(root: &str, database: &str) -> String {
    format!(
        "{}/databases/{database}/Database",
        root.trim_end_matches('/')
    )
}

/// Root of a cell's own topology (its gateways, orchestrators and poolers register there).
pub fn cell_root(root: &str, cell: &str) -> String {
    format!("{}/{cell}", root.trim_end_matches('/'))
}

/// The name of the cell whose record `key` is, when `key` is `<prefix><cell>/Cell`.
pub fn cell_of_key<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    let cell = key.strip_prefix(prefix)?.strip_suffix("/Cell")?;
    (!cell.is_empty() && !cell.contains('/')).then_some(cell)
}

/// A value read from etcd: its bytes and `mod_revision` (the guard of the next write).
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// What the topology holds now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Cell records by cell name.
    pub cells: BTreeMap<String, Stored>,
    pub database: Option<Stored>,
}

/// One write, guarded by the `mod_revision` that was read (0: the key must not exist), so a
/// concurrent change is never overwritten blindly.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    Put {
        what: String,
        key: String,
        value: Vec<u8>,
        expected: i64,
    },
    /// Removes a cell: its record, then whatever its components left under its root.
    DeleteCell {
        cell: String,
        key: String,
        expected: i64,
        root_prefix: String,
    },
}

impl Write {
    /// `put Cell zone-a`, `delete Cell zone-b`: for spans and logs.
    pub fn describe(&self) -> String {
        match self {
            Write::Put { what, .. } => format!("put {what}"),
            Write::DeleteCell { cell, .. } => format!("delete Cell {cell}"),
        }
    }
}

/// The writes that take `observed` to `desired`, in a safe order: the database first (it lists
/// the cells, and Multigres refuses to delete a cell a database still lists), then new or
/// changed cells, then the cells no longer wanted. No writes when everything already matches;
/// records are compared decoded, so an equivalent encoding is not rewritten.
pub fn plan(desired: &Records, observed: &Observed) -> Vec<Write> {
    let mut writes = Vec::new();
    let database_ok = observed.database.as_ref().is_some_and(|s| {
        DatabaseRecord::decode(s.value.as_slice()).is_ok_and(|d| d == desired.database)
    });
    if !database_ok {
        writes.push(Write::Put {
            what: format!("Database {}", desired.database.name),
            key: database_key(&desired.root, &desired.database.name),
            value: desired.database.encode_to_vec(),
            expected: observed.database.as_ref().map_or(0, |s| s.mod_revision),
        });
    }
    for (cell, record) in &desired.cells {
        let stored = observed.cells.get(cell);
        let same = stored
            .is_some_and(|s| CellRecord::decode(s.value.as_slice()).is_ok_and(|c| &c == record));
        if !same {
            writes.push(Write::Put {
                what: format!("Cell {cell}"),
                key: cell_key(&desired.root, cell),
                value: record.encode_to_vec(),
                expected: stored.map_or(0, |s| s.mod_revision),
            });
        }
    }
    for (cell, stored) in &observed.cells {
        if !desired.cells.contains_key(cell) {
            writes.push(Write::DeleteCell {
                cell: cell.clone(),
                key: cell_key(&desired.root, cell),
                expected: stored.mod_revision,
                root_prefix: format!("{}/", cell_root(&desired.root, cell)),
            });
        }
    }
    writes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(cells: &[&str]) -> Records {
        let cells: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
        Records::new(
            "demo-etcd-client.prod.svc:2379",
            "/multigres/global",
            &cells,
            DurabilityPolicy::AtLeast2,
            backup_location(&filesystem()),
        )
    }

    fn filesystem() -> BackupSpec {
        BackupSpec {
            filesystem: Some(Default::default()),
            s3: None,
        }
    }

    fn stored(value: Vec<u8>, mod_revision: i64) -> Stored {
        Stored {
            value,
            mod_revision,
        }
    }

    /// What is in the topology once `records` were written.
    fn observed(records: &Records) -> Observed {
        Observed {
            cells: records
                .cells
                .iter()
                .map(|(n, c)| (n.clone(), stored(c.encode_to_vec(), 7)))
                .collect(),
            database: Some(stored(records.database.encode_to_vec(), 5)),
        }
    }

    #[test]
    fn keys_are_where_multigres_reads_them() {
        // go/common/topoclient/cell.go: path.Join(CellsPath, cell, CellFile) under the root;
        // database.go likewise with DatabasesPath and DatabaseFile.
        assert_eq!(
            cell_key("/multigres/global", "zone-a"),
            "/multigres/global/cells/zone-a/Cell"
        );
        assert_eq!(
            database_key("/multigres/global/", "postgres"),
            "/multigres/global/databases/postgres/Database"
        );
        assert_eq!(
            cell_of_key("/r/cells/", "/r/cells/zone-a/Cell"),
            Some("zone-a")
        );
        assert_eq!(cell_of_key("/r/cells/", "/r/cells/zone-a/Other"), None);
        assert_eq!(cell_of_key("/r/cells/", "/r/cells/a/b/Cell"), None);
    }

    #[test]
    fn records_match_what_createclustermetadata_writes() {
        // go/cmd/multigres/command/topo/createclustermetadata.go: Cell{name, [address],
        // root: <global root>/<cell>}; Database{"postgres", filesystem backup, policy, cells}.
        let r = records(&["zone-b", "zone-a"]);
        let a = &r.cells["zone-a"];
        assert_eq!(a.name, "zone-a");
        assert_eq!(a.server_addresses, ["demo-etcd-client.prod.svc:2379"]);
        assert_eq!(a.root, "/multigres/global/zone-a");
        assert_eq!(r.database.name, "postgres");
        assert_eq!(r.database.cells, ["zone-a", "zone-b"]);
        let policy = r
            .database
            .bootstrap_durability_policy
            .as_ref()
            .expect("policy");
        assert_eq!(
            (
                policy.policy_name.as_str(),
                policy.quorum_type,
                policy.required_count
            ),
            ("AT_LEAST_2", 3, 2),
            "topoclient.AtLeastN(2): an unknown quorum type is refused at bootstrap"
        );
        let multi = durability(DurabilityPolicy::MultiCellAtLeast2);
        assert_eq!((multi.quorum_type, multi.required_count), (4, 2));
    }

    #[test]
    fn an_s3_repository_is_recorded_with_env_credentials_when_a_secret_is_named() {
        // go/common/backup/config.go: use_env_credentials makes pgBackRest read
        // AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, which the pods get from the Secret.
        let spec = BackupSpec {
            filesystem: None,
            s3: Some(multigres_api::crd::S3BackupSpec {
                bucket: "bkt".into(),
                region: "eu-west-1".into(),
                endpoint: Some("https://minio:9000".into()),
                key_prefix: None,
                credentials_secret_ref: Some(multigres_api::crd::LocalSecretRef {
                    name: "aws".into(),
                }),
            }),
        };
        let Some(Location::S3(s3)) = backup_location(&spec).location else {
            panic!("an S3 location")
        };
        assert_eq!(
            (
                s3.bucket.as_str(),
                s3.endpoint.as_str(),
                s3.use_env_credentials
            ),
            ("bkt", "https://minio:9000", true)
        );
        let Some(Location::Filesystem(fs)) = backup_location(&filesystem()).location else {
            panic!("a filesystem location")
        };
        assert_eq!(
            fs.path, "/backups",
            "where the pooler containers mount the claim"
        );
    }

    #[test]
    fn the_encoding_is_protobufs_wire_format() {
        // Field 1 (name, length-delimited) = "a", field 3 (root) = "/r/a", field 2 = "x:1".
        let cell = CellRecord {
            name: "a".into(),
            server_addresses: vec!["x:1".into()],
            root: "/r/a".into(),
        };
        assert_eq!(
            cell.encode_to_vec(),
            b"\x0a\x01a\x12\x03x:1\x1a\x04/r/a".to_vec()
        );
    }

    #[test]
    fn the_shard_is_read_from_the_pooler_records() {
        let pooler = |pooler_type, serving_status, hostname: &str| {
            PoolerRecord {
                pooler_type,
                serving_status,
                hostname: hostname.into(),
                port_map: [("grpc".to_string(), 15270), ("http".to_string(), 15200)].into(),
            }
            .encode_to_vec()
        };
        let records = [
            pooler(1, 0, "p-0.p.ns.svc.cluster.local"),
            pooler(2, 0, "p-1.p.ns.svc.cluster.local"),
            pooler(2, 1, "p-2.p.ns.svc.cluster.local"),
            pooler(0, 0, "p-3.p.ns.svc.cluster.local"),
            b"\xff".to_vec(),
        ];
        let mut shard = Shard::default();
        shard.add(records.iter().map(Vec::as_slice));
        assert_eq!(
            (shard.primary.as_deref(), shard.standbys),
            (Some("p-0"), 1),
            "a REPLICA that is NOT_SERVING is no standby; UNKNOWN and garbage count for nothing"
        );
        assert_eq!(
            (shard.primary_host.as_deref(), shard.replicas.as_slice()),
            (
                Some("p-0.p.ns.svc.cluster.local"),
                &[("p-1.p.ns.svc.cluster.local".to_string(), 15270)][..]
            ),
            "the standby is asked on the gRPC port it registered whether it streams from the \
             primary's registered host"
        );
        assert_eq!(
            poolers_prefix("/multigres/global", "zone-a"),
            "/multigres/global/zone-a/poolers/"
        );
    }

    #[test]
    fn an_empty_topology_gets_the_database_then_every_cell() {
        let writes = plan(&records(&["a", "b"]), &Observed::default());
        let described: Vec<String> = writes.iter().map(Write::describe).collect();
        assert_eq!(
            described,
            ["put Database postgres", "put Cell a", "put Cell b"]
        );
        assert!(
            writes
                .iter()
                .all(|w| matches!(w, Write::Put { expected: 0, .. })),
            "creates are guarded by 'does not exist yet': {writes:?}"
        );
    }

    #[test]
    fn records_already_right_cost_no_write() {
        let desired = records(&["a", "b"]);
        assert_eq!(plan(&desired, &observed(&desired)), []);
    }

    #[test]
    fn a_removed_cell_leaves_the_database_first_then_is_deleted_with_its_subtree() {
        let before = records(&["a", "b"]);
        let after = records(&["a"]);
        let writes = plan(&after, &observed(&before));
        assert_eq!(
            writes,
            [
                Write::Put {
                    what: "Database postgres".into(),
                    key: "/multigres/global/databases/postgres/Database".into(),
                    value: after.database.encode_to_vec(),
                    expected: 5,
                },
                Write::DeleteCell {
                    cell: "b".into(),
                    key: "/multigres/global/cells/b/Cell".into(),
                    expected: 7,
                    root_prefix: "/multigres/global/b/".into(),
                },
            ]
        );
    }

    #[test]
    fn a_changed_or_unreadable_record_is_rewritten_guarded_by_its_revision() {
        let desired = records(&["a"]);
        let mut seen = observed(&records(&["a"]));
        seen.cells
            .insert("a".into(), stored(b"\xff garbage".to_vec(), 9));
        seen.database = Some(stored(
            Records::new(
                "old:2379",
                "/multigres/global",
                &["a".into()],
                DurabilityPolicy::MultiCellAtLeast2,
                backup_location(&filesystem()),
            )
            .database
            .encode_to_vec(),
            4,
        ));
        let writes = plan(&desired, &seen);
        let guards: Vec<(String, i64)> = writes
            .iter()
            .map(|w| match w {
                Write::Put { what, expected, .. } => (what.clone(), *expected),
                Write::DeleteCell { cell, .. } => (cell.clone(), -1),
            })
            .collect();
        assert_eq!(
            guards,
            [("Database postgres".into(), 4), ("Cell a".into(), 9)]
        );
    }
}
