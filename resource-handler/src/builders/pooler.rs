//! MultiPooler P → StatefulSet P and headless Service P.
//!
//! Each pod runs two containers sharing the `data` volume at `/var/lib/pooler`:
//! - `multipooler` (HTTP 15200, gRPC 15270), the connection pooler, which drives
//! - `postgres`: pgctld (HTTP 15400, gRPC 15470 on localhost) managing PostgreSQL (5432),
//!   whose data directory is `/var/lib/pooler/pg_data`.
//!
//! `spec.resources` sizes the `postgres` container: that is where the memory and CPU of a
//! database go, and applying them to both containers would double the pod's request. The
//! pooler itself is light and runs without requests or limits.

use k8s_openapi::api::core::v1::{
    Container, EnvVar, KeyToPath, SecretVolumeSource, Volume, VolumeMount,
};
use shared::crd::{MultiPooler, MultiPoolerSpec, PoolerTemplate, SecretKeyRef};
use shared::defaults::{Component, PGCTLD_IMAGE, POOLER_STORAGE_SIZE};
use shared::meta::ComponentLabel;

use super::objects::{self, Owner, Port, ServiceKind};
use super::otel::Origin;
use super::pod::{self, PodShape, Timing};
use super::validate;
use super::{BuildContext, BuildError, PoolerObjects};

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
        shared::meta::fnv1a(statefulset) & 0xffff_ffff
    )
}

/// The objects of `pooler`.
pub fn pooler(pooler: &MultiPooler, ctx: &BuildContext) -> Result<PoolerObjects, BuildError> {
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
    } = &pooler.spec;
    let owner = Owner::new(pooler, ComponentLabel::Pooler, Some(cell))?;
    if cell.len() > MAX_CELL_LEN {
        return Err(BuildError::CellNameTooLong {
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
    let password = password_secret_ref.as_ref().map(Password::new);
    let mut env = vec![
        pod::env("PGDATA", PGDATA),
        pod::field_env(POD_INDEX_ENV, POD_INDEX_FIELD),
    ];
    env.extend(password.iter().flat_map(Password::env));
    multipooler.env = Some(env);
    multipooler.ports = Some(pod::container_ports(&[HTTP, GRPC]));
    let mut mounts = vec![pod::data_mount(POOLER_DIR)];
    mounts.extend(password.iter().map(Password::mount));
    multipooler.volume_mounts = Some(mounts);
    pod::multigres_probes(&mut multipooler, &HTTP);

    let mut postgres = postgres_container(&shape, postgres_image, password.as_ref());
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
    let mut template = shape.template(pod::POSTGRES_USER, vec![multipooler, postgres]);
    if let (Some(password), Some(spec)) = (&password, template.spec.as_mut()) {
        spec.volumes = Some(vec![password.volume()]);
    }
    let statefulset = objects::statefulset(&owner, replicas, &owner.name, template, claim)?;
    Ok(PoolerObjects {
        statefulset,
        service,
    })
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

fn postgres_container(shape: &PodShape, image: &str, password: Option<&Password>) -> Container {
    let mut postgres = shape.container("postgres", image);
    postgres.command = Some(vec![PGCTLD_BINARY.to_string()]);
    postgres.args = Some(vec![
        "server".to_string(),
        format!("--pooler-dir={POOLER_DIR}"),
        format!("--pg-port={}", POSTGRES.number),
        "--pg-listen-addresses=*".to_string(),
        format!("--http-port={}", PGCTLD_HTTP.number),
        format!("--grpc-port={}", PGCTLD_GRPC.number),
    ]);
    let mut env = vec![pod::env("PGDATA", PGDATA)];
    env.extend(password.iter().flat_map(|p| p.env()));
    postgres.env = Some(env);
    postgres.ports = Some(pod::container_ports(&[POSTGRES, PGCTLD_HTTP, PGCTLD_GRPC]));
    let mut mounts = vec![pod::data_mount(POOLER_DIR)];
    mounts.extend(password.map(Password::mount));
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
