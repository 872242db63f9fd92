//! MultiPooler P → StatefulSet P, headless Service P, ConfigMap `P-pg-hba` (pgctld's
//! pg_hba.conf template, see [`super::pg_hba`]) and PodDisruptionBudget P.
//!
//! Each pod runs two containers sharing the `data` volume at `/var/lib/pooler`:
//! - `multipooler` (HTTP 15200, gRPC 15270), the connection pooler, which drives
//! - `postgres`: pgctld (HTTP 15400, gRPC 15470 on localhost) managing PostgreSQL (5432),
//!   whose data directory is `/var/lib/pooler/pg_data`. It is a native sidecar (an init
//!   container with `restartPolicy: Always`): postgres is up before multipooler starts, since
//!   its startup probe gates the main container, and stops only after multipooler has exited,
//!   so multipooler never runs without its database.
//!
//! The PodDisruptionBudget lets a drain evict one pooler pod at a time. Upgrades roll the same
//! way: the StatefulSet's default RollingUpdate replaces one pod at a time, highest ordinal
//! first; when the pod replaced is the primary, Multigres' orchestrator elects another.
//!
//! `spec.resources` sizes the `postgres` container: that is where the memory and CPU of a
//! database go, and applying them to both containers would double the pod's request. The
//! pooler itself is light and runs without requests or limits.

use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, KeyToPath, PersistentVolumeClaimVolumeSource,
    SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
};
use multigres_api::crd::{
    MultiPooler, MultiPoolerSpec, PoolerBackup, PoolerTemplate, SecretKeyRef,
};
use multigres_api::defaults::{BACKUP_PATH, Component, PGCTLD_IMAGE, POOLER_STORAGE_SIZE};
use multigres_api::invalid::InvalidSpec;
use multigres_api::meta::ComponentLabel;

use super::objects::{self, Owner, Port, ServiceKind};
use super::otel::Origin;
use super::pg_hba;
use super::pod::{self, PodShape, Timing};
use super::validate;
use super::{BuildContext, PoolerObjects};

use crate::component::{Workload, WorkloadKind, Workloads};

const HTTP: Port = Port {
    name: "http",
    number: 15200,
};
const GRPC: Port = Port {
    name: "grpc",
    number: 15270,
};
const POSTGRES: Port = Port {
    name: "postgres",
    number: 5432,
};
const PGCTLD_HTTP: Port = Port {
    name: "pgctld-http",
    number: 15400,
};
const PGCTLD_GRPC: Port = Port {
    name: "pgctld-grpc",
    number: 15470,
};
/// Where both containers mount the data volume (pgctld's and multipooler's `--pooler-dir`).
const POOLER_DIR: &str = "/var/lib/pooler";
/// PostgreSQL's data directory: a subdirectory, because initdb must own (chmod) it and cannot
/// own a mount point.
const PGDATA: &str = "/var/lib/pooler/pg_data";
const PGCTLD_BINARY: &str = "/usr/local/bin/pgctld";
/// Run by `sh -c` before pgctld: postgres data from an earlier life of this pod (`PG_VERSION`)
/// gets `standby.signal`, so a restarted primary comes back read-only. Multigres v0.1.0 starts
/// postgres with a plain start, as a primary unless that file exists
/// (`go/services/multipooler/manager/manager.go`, `startPostgres`; only
/// `go/cmd/pgctld/command/restart.go` writes the file); a standby then publishes its resignation
/// and multiorch elects a primary at a new term, instead of the old primary serving at a term
/// its standbys have revoked and never streaming again.
const PGCTLD_START: &str = r#"if [ -f "$PGDATA/PG_VERSION" ] && [ ! -f "$PGDATA/standby.signal" ]; then : >"$PGDATA/standby.signal"; fi; exec "$0" "$@""#;
/// The shard a pooler serves. v0.1.0 requires each flag ("table group is required", "shard is
/// required": go/services/multipooler/init.go) and accepts only these values (MVP validation in
/// go/services/multipooler/manager/manager.go).
pub(super) const SHARD_FLAGS: [&str; 3] = [
    "--database=postgres",
    "--table-group=default",
    "--shard=0-inf",
];
/// The pod's ordinal, which the StatefulSet controller puts in this label.
const POD_INDEX_ENV: &str = "POD_INDEX";
const POD_INDEX_FIELD: &str = "metadata.labels['apps.kubernetes.io/pod-index']";

/// The pooler's id in the topology, stable across restarts (a random one per start leaves a
/// stale record behind each time) and unique in the cell across StatefulSets: `p<hash of the
/// StatefulSet's name>-<ordinal>`. Short, and without `_`: the replication application name is
/// `<cell>_<id>`, at most 63 characters (go/services/multipooler/manager/pg_replication.go).
/// The longest cell whose `<cell>_<service id>` fits 63 characters: the id is `p`, 8 hex digits,
/// `-` and an ordinal of at most 2 digits (64 replicas at most).
const MAX_CELL_LEN: usize = 63 - 1 - 12;

fn service_id(statefulset: &str) -> String {
    format!(
        "p{:08x}-$({POD_INDEX_ENV})",
        multigres_api::meta::fnv1a(statefulset) & 0xffff_ffff
    )
}

/// The objects of `pooler`.
pub fn pooler(pooler: &MultiPooler, ctx: &BuildContext) -> Result<PoolerObjects, InvalidSpec> {
    let MultiPoolerSpec {
        pooler:
            PoolerTemplate {
                component,
                postgres_image,
                storage,
            },
        cell,
        topo,
        password_secret_ref,
        observability,
        backup,
        allowed_networks,
        volume_retention,
        // Used by the reconcile before it creates the StatefulSet, not by the objects.
        adopt_volumes: _,
    } = &pooler.spec;
    let owner = Owner::new(pooler, ComponentLabel::Pooler, Some(cell))?;
    if cell.len() > MAX_CELL_LEN {
        return Err(InvalidSpec::CellNameTooLong {
            cell: cell.clone(),
            len: cell.len(),
            max: MAX_CELL_LEN,
        });
    }
    let service = objects::service(
        &owner,
        &owner.name,
        ServiceKind::Headless,
        &[HTTP, GRPC, POSTGRES],
    )?;
    owner.check_statefulset_name()?;
    let shape = PodShape::new(Component::Pooler, component, &owner)?;
    let postgres_image = postgres_image.as_deref().unwrap_or(PGCTLD_IMAGE);
    validate::image("spec.postgresImage", postgres_image)?;
    let claim = objects::data_claim(&owner, storage.as_ref(), POOLER_STORAGE_SIZE)?;
    let config_map = pg_hba::config_map(&owner, allowed_networks)?;
    let disruption_budget = objects::disruption_budget(&owner)?;

    let mut multipooler = shape.container("multipooler", &shape.image);
    multipooler.command = Some(vec!["multipooler".to_string()]);
    let mut args = pod::multigres_args(cell, topo, &[("http-port", HTTP), ("grpc-port", GRPC)]);
    args.extend([
        format!("--pooler-dir={POOLER_DIR}"),
        // Its own default is localhost:15200, the usual pooler HTTP port.
        format!("--pgctld-addr=localhost:{}", PGCTLD_GRPC.number),
        format!("--pg-port={}", POSTGRES.number),
        format!(
            "--socket-file={POOLER_DIR}/pg_sockets/.s.PGSQL.{}",
            POSTGRES.number
        ),
        // pgctld's postgres allows 60 connections; leave room for replication and admin.
        "--connpool-global-capacity=40".to_string(),
        format!("--service-id={}", service_id(&owner.name)),
    ]);
    args.extend(SHARD_FLAGS.iter().map(|f| f.to_string()));
    multipooler.args = Some(args);
    let shared = Shared::new(password_secret_ref.as_ref(), backup.as_ref());
    let mut env = vec![
        pod::env("PGDATA", PGDATA),
        pod::field_env(POD_INDEX_ENV, POD_INDEX_FIELD),
    ];
    env.extend(shared.env.iter().cloned());
    multipooler.env = Some(env);
    multipooler.ports = Some(pod::container_ports(&[HTTP, GRPC]));
    let mut mounts = vec![pod::data_mount(POOLER_DIR)];
    mounts.extend(shared.mounts.iter().cloned());
    multipooler.volume_mounts = Some(mounts);
    pod::multigres_probes(&mut multipooler, &HTTP);

    let mut postgres = postgres_container(&shape, postgres_image, &shared);
    if let Some(tracing) = ctx.tracing(observability.as_ref()) {
        let origin = Origin {
            namespace: &owner.namespace,
            cluster: owner.cluster(),
            cell,
        };
        tracing.add_env(&mut multipooler, "multipooler", &origin);
        tracing.add_env(&mut postgres, "pgctld", &origin);
    }
    let replicas = shape.replicas;
    let mut template =
        shape.template_with_sidecars(pod::POSTGRES_USER, vec![postgres], vec![multipooler]);
    if let Some(spec) = template.spec.as_mut() {
        let mut volumes = shared.volumes;
        volumes.push(pg_hba::volume(&pg_hba::name(&owner.name)));
        spec.volumes = Some(volumes);
    }
    let statefulset = objects::statefulset(
        &owner,
        replicas,
        &owner.name,
        template,
        claim,
        *volume_retention,
    )?;
    Ok(PoolerObjects {
        statefulset,
        service,
        config_map,
        disruption_budget,
    })
}

/// What both containers get besides the data volume: the password file and the backup
/// repository. multipooler takes backups and restores with pgBackRest itself, and postgres
/// (under pgctld) archives WAL to the same repository, so both see it at the same path.
struct Shared {
    env: Vec<EnvVar>,
    mounts: Vec<VolumeMount>,
    volumes: Vec<Volume>,
}

const BACKUP_VOLUME: &str = "backups";

impl Shared {
    fn new(password: Option<&SecretKeyRef>, backup: Option<&PoolerBackup>) -> Self {
        let mut shared = Shared {
            env: Vec::new(),
            mounts: Vec::new(),
            volumes: Vec::new(),
        };
        if let Some(password) = password.map(Password::new) {
            shared.env.extend(password.env());
            shared.mounts.push(password.mount());
            shared.volumes.push(password.volume());
        }
        let backup = backup.cloned().unwrap_or_default();
        if let Some(claim) = backup.claim_name {
            shared.mounts.push(VolumeMount {
                name: BACKUP_VOLUME.to_string(),
                mount_path: BACKUP_PATH.to_string(),
                ..VolumeMount::default()
            });
            shared.volumes.push(Volume {
                name: BACKUP_VOLUME.to_string(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim,
                    read_only: None,
                }),
                ..Volume::default()
            });
        }
        // pgBackRest reads S3 keys from these when the Database record says
        // use_env_credentials (go/common/backup/config.go).
        if let Some(secret) = backup.s3_credentials_secret_ref {
            for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
                shared.env.push(EnvVar {
                    name: key.to_string(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: secret.name.clone(),
                            key: key.to_string(),
                            optional: None,
                        }),
                        ..EnvVarSource::default()
                    }),
                    ..EnvVar::default()
                });
            }
        }
        shared
    }
}

/// The postgres admin password, a Secret key mounted as a file in both containers: multipooler
/// and pgctld read the file `POSTGRES_PASSWORD_FILE` names (go/common/pgsecret, go/cmd/pgctld/
/// command/root.go), so the value is never in the pod spec or the environment.
struct Password<'a> {
    secret: &'a SecretKeyRef,
}

const PASSWORD_VOLUME: &str = "postgres-password";
const PASSWORD_DIR: &str = "/etc/multigres/postgres-password";
const PASSWORD_FILE: &str = "password";
/// The admin user both processes authenticate as.
const POSTGRES_USER: &str = "postgres";

impl<'a> Password<'a> {
    fn new(secret: &'a SecretKeyRef) -> Self {
        Self { secret }
    }

    fn env(&self) -> [EnvVar; 2] {
        [
            pod::env(
                "POSTGRES_PASSWORD_FILE",
                &format!("{PASSWORD_DIR}/{PASSWORD_FILE}"),
            ),
            pod::env("POSTGRES_USER", POSTGRES_USER),
        ]
    }

    fn mount(&self) -> VolumeMount {
        VolumeMount {
            name: PASSWORD_VOLUME.to_string(),
            mount_path: PASSWORD_DIR.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        }
    }

    fn volume(&self) -> Volume {
        Volume {
            name: PASSWORD_VOLUME.to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(self.secret.name.clone()),
                items: Some(vec![KeyToPath {
                    key: self.secret.key().to_string(),
                    path: PASSWORD_FILE.to_string(),
                    ..KeyToPath::default()
                }]),
                // Readable by the pod's group (the fsGroup, 999), which both containers run in.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        }
    }
}

fn postgres_container(shape: &PodShape, image: &str, shared: &Shared) -> Container {
    let mut postgres = shape.container("postgres", image);
    postgres.command = Some(vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        PGCTLD_START.to_string(),
        PGCTLD_BINARY.to_string(),
    ]);
    postgres.args = Some(vec![
        "server".to_string(),
        format!("--pooler-dir={POOLER_DIR}"),
        format!("--pg-port={}", POSTGRES.number),
        "--pg-listen-addresses=*".to_string(),
        format!("--http-port={}", PGCTLD_HTTP.number),
        format!("--grpc-port={}", PGCTLD_GRPC.number),
        pg_hba::flag(),
    ]);
    let mut env = vec![pod::env("PGDATA", PGDATA)];
    env.extend(shared.env.iter().cloned());
    postgres.env = Some(env);
    postgres.ports = Some(pod::container_ports(&[POSTGRES, PGCTLD_HTTP, PGCTLD_GRPC]));
    let mut mounts = vec![pod::data_mount(POOLER_DIR)];
    mounts.extend(shared.mounts.iter().cloned());
    mounts.push(pg_hba::mount());
    postgres.volume_mounts = Some(mounts);
    postgres.resources = shape.resources();
    // pgctld's /live answers while it runs. The first start runs initdb, hence five minutes
    // of startup allowance. No readiness probe: whether the pod can serve is multipooler's
    // /ready, and a container without one counts as ready once started.
    postgres.startup_probe = Some(pod::http_probe(
        "/live",
        &PGCTLD_HTTP,
        Timing {
            period_seconds: 5,
            failure_threshold: Some(60),
            ..Timing::default()
        },
    ));
    postgres.liveness_probe = Some(pod::http_probe(
        "/live",
        &PGCTLD_HTTP,
        Timing {
            period_seconds: 10,
            ..Timing::default()
        },
    ));
    postgres
}

impl crate::component::Component for MultiPooler {
    const WORKLOAD: WorkloadKind = WorkloadKind::StatefulSet;
    const LABEL: ComponentLabel = ComponentLabel::Pooler;

    fn build(&self, ctx: &BuildContext) -> Result<Workloads, InvalidSpec> {
        let PoolerObjects {
            statefulset,
            service,
            config_map,
            disruption_budget,
        } = pooler(self, ctx)?;
        Ok(Workloads {
            workload: Workload::StatefulSet(statefulset),
            services: vec![service],
            config_maps: vec![config_map],
            disruption_budgets: vec![disruption_budget],
        })
    }

    fn adopt_volumes(&self) -> bool {
        self.spec.adopt_volumes.unwrap_or(false)
    }
}
