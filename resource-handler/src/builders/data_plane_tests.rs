//! What Multigres v0.1.0 needs of each pod, one test per requirement. Each assertion message
//! names the upstream file that enforces it (paths of github.com/multigres/multigres at v0.1.0).

use k8s_openapi::api::core::v1::{Container, PodSpec};
use shared::crd::{Etcd, MultiGateway, MultiOrch, MultiPooler};

use super::{BuildError, UNTRACED};

/// The object of `tests/golden/<case>.input.yaml`.
pub(super) fn input<K: serde::de::DeserializeOwned>(case: &str) -> K {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{case}.input.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn pooler_pod(pooler: &MultiPooler) -> PodSpec {
    super::pooler(pooler, &UNTRACED)
        .expect("pooler builds")
        .statefulset
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod spec")
}

fn deployment_pod(objects: super::DeploymentObjects) -> PodSpec {
    objects
        .deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod spec")
}

fn container<'a>(pod: &'a PodSpec, name: &str) -> &'a Container {
    pod.containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn args(c: &Container) -> Vec<String> {
    c.args.clone().unwrap_or_default()
}

fn env_field(c: &Container, name: &str) -> Option<String> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
        .map(|f| f.field_path.clone())
}

#[test]
fn the_pooler_names_its_shard() {
    let pod = pooler_pod(&input("pooler"));
    let args = args(container(&pod, "multipooler"));
    for flag in [
        "--database=postgres",
        "--table-group=default",
        "--shard=0-inf",
    ] {
        assert!(
            args.contains(&flag.to_string()),
            "multipooler exits with \"table group is required\" / \"shard is required\" without \
             {flag}, and accepts only the default shard (go/services/multipooler/init.go, \
             manager/manager.go); args {args:?}"
        );
    }
}

#[test]
fn the_pooler_dials_pgctld_on_its_grpc_port() {
    let pod = pooler_pod(&input("pooler"));
    let pooler_args = args(container(&pod, "multipooler"));
    let pgctld_args = args(container(&pod, "postgres"));
    assert!(
        pooler_args.contains(&"--pgctld-addr=localhost:15470".to_string())
            && pgctld_args.contains(&"--grpc-port=15470".to_string()),
        "multipooler's own default --pgctld-addr is localhost:15200 \
         (go/services/multipooler/init.go); pooler {pooler_args:?}, pgctld {pgctld_args:?}"
    );
}

#[test]
fn the_pooler_service_id_is_stable_unique_and_fits_the_replication_name() {
    let pooler: MultiPooler = input("pooler");
    let id_of = |p: &MultiPooler| {
        args(container(&pooler_pod(p), "multipooler"))
            .into_iter()
            .find_map(|a| a.strip_prefix("--service-id=").map(str::to_string))
            .expect("--service-id")
    };
    let id = id_of(&pooler);
    assert_eq!(
        id,
        id_of(&pooler),
        "the same pod gets the same id after a restart (a random id per start leaves stale \
         records: go/services/multipooler/init.go, multigres issue #719)"
    );
    let mut other = pooler.clone();
    other.metadata.name = Some("other-pooler".into());
    assert_ne!(
        id,
        id_of(&other),
        "two poolers of a cell get different ids (the record key is \
         poolers/multipooler-<cell>-<id>: go/common/topoclient/multipooler.go)"
    );
    assert!(
        id.ends_with("-$(POD_INDEX)"),
        "the ordinal tells the pods apart: {id}"
    );
    let pod = pooler_pod(&pooler);
    assert_eq!(
        env_field(container(&pod, "multipooler"), "POD_INDEX").as_deref(),
        Some("metadata.labels['apps.kubernetes.io/pod-index']")
    );
    // The largest ordinal: 64 replicas at most.
    let expanded = id.replace("$(POD_INDEX)", "63");
    let application_name = format!("{}_{expanded}", pooler.spec.cell);
    assert!(
        !expanded.contains('_') && application_name.len() <= 63,
        "the replication application name <cell>_<id> has one '_' and fits 63 characters \
         (go/services/multipooler/manager/pg_replication.go): {application_name}"
    );
}

#[test]
fn a_cell_too_long_for_the_replication_name_is_refused() {
    let mut pooler: MultiPooler = input("pooler");
    pooler.spec.cell = "c".repeat(51);
    assert_eq!(
        super::pooler(&pooler, &UNTRACED).map(|_| ()),
        Err(BuildError::CellNameTooLong {
            cell: "c".repeat(51),
            len: 51,
            max: 50
        })
    );
    pooler.spec.cell = "c".repeat(50);
    assert!(
        super::pooler(&pooler, &UNTRACED).is_ok(),
        "50 characters fit"
    );
}

#[test]
fn both_pooler_containers_run_as_postgres_with_the_volume_in_its_group() {
    let pod = pooler_pod(&input("pooler"));
    let ctx = pod.security_context.clone().expect("pod security context");
    assert_eq!(
        (ctx.run_as_user, ctx.run_as_group, ctx.fs_group),
        (Some(999), Some(999), Some(999)),
        "multipooler and pgctld both write <pooler-dir>/pgbackrest/pgbackrest.pgpass (0600) \
         (go/cmd/pgctld/command/server.go, go/services/multipooler/manager/manager.go), and \
         pgctld cannot mkdir on a root-owned volume without the fsGroup"
    );
    for c in &pod.containers {
        assert_eq!(
            c.security_context.as_ref().and_then(|s| s.run_as_user),
            None,
            "container {} inherits the pod's user",
            c.name
        );
    }
}

#[test]
fn gateway_and_orch_register_their_pod_ip() {
    let pods = [
        (
            "multigateway",
            deployment_pod(
                super::gateway(&input::<MultiGateway>("gateway"), &UNTRACED).expect("gateway"),
            ),
        ),
        (
            "multiorch",
            deployment_pod(super::orch(&input::<MultiOrch>("orch"), &UNTRACED).expect("orch")),
        ),
    ];
    for (name, pod) in &pods {
        let c = container(pod, name);
        assert!(
            args(c).contains(&"--hostname=$(POD_IP)".to_string()),
            "{name} registers --hostname in the topology and others dial it; a Deployment \
             pod's name does not resolve (go/services/multigateway/init.go); args {:?}",
            args(c)
        );
        assert_eq!(env_field(c, "POD_IP").as_deref(), Some("status.podIP"));
    }
}

#[test]
fn the_orchestrator_watches_the_shard() {
    let pod = deployment_pod(super::orch(&input::<MultiOrch>("orch"), &UNTRACED).expect("orch"));
    assert!(
        args(container(&pod, "multiorch"))
            .contains(&"--watch-targets=postgres/default/0-inf".to_string()),
        "multiorch exits with \"watch-targets is required\" (go/services/multiorch/init.go)"
    );
}

#[test]
fn every_data_plane_pod_is_restricted() {
    let pods = [
        (
            "etcd",
            super::etcd(&input::<Etcd>("etcd-defaults"))
                .expect("etcd")
                .statefulset
                .spec
                .and_then(|s| s.template.spec)
                .expect("pod spec"),
        ),
        (
            "gateway",
            deployment_pod(
                super::gateway(&input::<MultiGateway>("gateway"), &UNTRACED).expect("gateway"),
            ),
        ),
        (
            "orch",
            deployment_pod(super::orch(&input::<MultiOrch>("orch"), &UNTRACED).expect("orch")),
        ),
        ("pooler", pooler_pod(&input("pooler"))),
    ];
    for (name, pod) in &pods {
        let ctx = pod.security_context.clone().expect("pod security context");
        assert_eq!(ctx.run_as_non_root, Some(true), "{name}");
        assert!(
            ctx.run_as_user.is_some_and(|u| u > 0),
            "{name}: a numeric non-root user"
        );
        for c in &pod.containers {
            let s = c
                .security_context
                .clone()
                .expect("container security context");
            assert_eq!(
                s.allow_privilege_escalation,
                Some(false),
                "{name}/{}",
                c.name
            );
            assert_eq!(
                s.capabilities.and_then(|c| c.drop),
                Some(vec!["ALL".to_string()]),
                "{name}/{}",
                c.name
            );
            assert_eq!(
                s.seccomp_profile.map(|p| p.type_).as_deref(),
                Some("RuntimeDefault"),
                "{name}/{}",
                c.name
            );
        }
    }
}

#[test]
fn both_pooler_containers_read_the_password_from_the_mounted_secret() {
    let pooler: MultiPooler = input("pooler");
    let reference = pooler
        .spec
        .password_secret_ref
        .clone()
        .expect("fixture names a Secret");
    let pod = pooler_pod(&pooler);
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.secret.as_ref().map(|s| (v.name.clone(), s.clone())))
        .expect("a Secret volume");
    assert_eq!(
        volume.1.secret_name.as_deref(),
        Some(reference.name.as_str())
    );
    for name in ["multipooler", "postgres"] {
        let c = container(&pod, name);
        let env: Vec<(String, Option<String>)> = c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        let file = env
            .iter()
            .find(|(n, _)| n == "POSTGRES_PASSWORD_FILE")
            .and_then(|(_, v)| v.clone())
            .unwrap_or_else(|| {
                panic!(
                    "{name} exits without a password (\"admin password not configured\": \
                     go/services/multipooler/connpoolmanager/config.go; \"postgres password must \
                     be set\": go/cmd/pgctld/command/root.go); env {env:?}"
                )
            });
        assert!(
            !env.iter().any(|(n, _)| n == "POSTGRES_PASSWORD"),
            "{name}: the password is a mounted file, never a plain env value"
        );
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == volume.0)
            .unwrap_or_else(|| panic!("{name} mounts the Secret"));
        assert!(
            file.starts_with(&format!("{}/", mount.mount_path)),
            "{name}: {file}"
        );
        assert_eq!(mount.read_only, Some(true), "{name}");
    }
}
