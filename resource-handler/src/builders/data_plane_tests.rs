//! What Multigres v0.1.0 needs of each pod, one test per requirement. Each assertion message
//! names the upstream file that enforces it (paths of github.com/multigres/multigres at v0.1.0).

use k8s_openapi::api::core::v1::{Container, PodSpec};
use multigres_api::crd::{Etcd, MultiGateway, MultiOrch, MultiPooler};
use multigres_api::invalid::InvalidSpec;

use super::UNTRACED;

/// The object of `tests/golden/<case>.input.yaml`.
pub(super) fn input<K: serde::de::DeserializeOwned>(case: &str) -> K {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{case}.input.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
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

/// Every container of `pod`: the sidecars (init containers), then the main containers.
pub(super) fn all_containers(pod: &PodSpec) -> impl Iterator<Item = &Container> {
    pod.init_containers.iter().flatten().chain(&pod.containers)
}

fn container<'a>(pod: &'a PodSpec, name: &str) -> &'a Container {
    all_containers(pod)
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
        Err(InvalidSpec::CellNameTooLong {
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
    for c in all_containers(&pod) {
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
        for c in all_containers(pod) {
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

/// The `(type, database, user, address)` of each rule of the pg_hba.conf template of `pooler`
/// (`address` empty for `local`), and every rule's method.
fn pg_hba_rules(pooler: &MultiPooler) -> (Vec<[String; 4]>, Vec<String>) {
    let objects = super::pooler(pooler, &UNTRACED).expect("pooler builds");
    let text = objects
        .config_map
        .data
        .as_ref()
        .and_then(|d| d.get("pg_hba_template.conf"))
        .cloned()
        .expect("the template key");
    let mut rules = Vec::new();
    let mut methods = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let fields: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let (rule, method) = match fields.as_slice() {
            [kind, db, user, method] if kind == "local" => {
                ([kind, db, user, &String::new()], method)
            }
            [kind, db, user, address, method] if kind == "host" => {
                ([kind, db, user, address], method)
            }
            other => panic!("not a local or host rule: {other:?}"),
        };
        rules.push(rule.map(String::clone));
        methods.push(method.clone());
    }
    (rules, methods)
}

/// The addresses `user` may reach `database` from over TCP, loopback left out.
fn remote_addresses(rules: &[[String; 4]], database: &str, user: &str) -> Vec<String> {
    rules
        .iter()
        .filter(|[kind, db, u, address]| {
            kind == "host"
                && db == database
                && u == user
                && !["127.0.0.1/32", "::1/128"].contains(&address.as_str())
        })
        .map(|[.., address]| address.clone())
        .collect()
}

#[test]
fn the_pg_hba_template_lets_poolers_replicate_as_the_admin_user_only() {
    let admin = "{{.User}}";
    let mut pooler: MultiPooler = input("pooler");
    for (networks, expected) in [
        (vec![], vec!["0.0.0.0/0", "::/0"]),
        (
            vec!["10.0.0.0/8".to_string(), "fd00::/8".to_string()],
            vec!["10.0.0.0/8", "fd00::/8"],
        ),
    ] {
        pooler.spec.allowed_networks = networks;
        let (rules, methods) = pg_hba_rules(&pooler);
        for database in ["replication", "all"] {
            assert_eq!(
                remote_addresses(&rules, database, admin),
                expected,
                "pgctld's own template allows replication only from 127.0.0.1 and ::1 \
                 (config/postgres/pg_hba_template.conf), so a standby in another pod could not \
                 stream or rewind from the primary; pgctld writes the template it is given into \
                 pg_hba.conf at initdb (go/cmd/pgctld/command/init.go), so the admin user must \
                 reach {database} from the allowed networks there; rules {rules:?}"
            );
        }
        let others: Vec<&[String; 4]> = rules
            .iter()
            .filter(|[kind, _, user, address]| {
                kind == "host"
                    && user != admin
                    && !["127.0.0.1/32", "::1/128"].contains(&address.as_str())
            })
            .collect();
        assert!(
            others.is_empty(),
            "only the admin user connects over TCP from outside the pod (applications come \
             through multipooler on the socket): {others:?}"
        );
        assert!(
            methods.iter().all(|m| m == "scram-sha-256"),
            "pgctld sets the admin password at initdb (go/cmd/pgctld/command/init.go), so \
             every rule can ask for it: {methods:?}"
        );
    }
}

#[test]
fn pgctld_is_a_native_sidecar_reading_the_template() {
    let pooler: MultiPooler = input("pooler");
    let objects = super::pooler(&pooler, &UNTRACED).expect("pooler builds");
    let pod = pooler_pod(&pooler);
    let sidecars: Vec<&str> = pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    let main: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        (sidecars, main),
        (vec!["postgres"], vec!["multipooler"]),
        "postgres starts before multipooler and stops after it"
    );
    let pgctld = container(&pod, "postgres");
    assert_eq!(
        pgctld.restart_policy.as_deref(),
        Some("Always"),
        "a sidecar, not a one-shot init container"
    );
    assert!(
        pgctld.startup_probe.is_some() && pgctld.liveness_probe.is_some(),
        "its startup probe holds multipooler back until pgctld is up"
    );
    assert!(
        args(pgctld).contains(&"--pg-hba-template=/etc/pgctld/pg_hba_template.conf".to_string()),
        "pgctld reads the template it writes at initdb from --pg-hba-template \
         (go/cmd/pgctld/command/root.go, init.go); args {:?}",
        args(pgctld)
    );
    let mount = pgctld
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/etc/pgctld")
        .expect("the template mount");
    assert_eq!(mount.read_only, Some(true));
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .expect("the template volume");
    let config_map = &objects.config_map;
    assert_eq!(
        volume.config_map.as_ref().map(|c| c.name.as_str()),
        config_map.metadata.name.as_deref()
    );
    assert_eq!(
        config_map.metadata.name.as_deref(),
        Some("shop-zone-a-1b2c3-pooler-pg-hba")
    );
    assert!(
        config_map
            .data
            .as_ref()
            .is_some_and(|d| d.contains_key("pg_hba_template.conf")),
        "the file the flag names"
    );
    assert!(
        !container(&pod, "multipooler")
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == mount.name),
        "only pgctld reads the template"
    );
}

#[test]
fn the_disruption_budget_covers_the_pooler_pods_one_at_a_time() {
    let objects = super::pooler(&input("pooler"), &UNTRACED).expect("pooler builds");
    let sts = objects.statefulset.spec.as_ref().expect("statefulset spec");
    let budget = &objects.disruption_budget;
    let spec = budget.spec.as_ref().expect("budget spec");
    assert_eq!(
        spec.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    assert_eq!(spec.selector.as_ref(), Some(&sts.selector));
    let pod_labels = sts
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .expect("pod labels");
    let selector = spec
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.as_ref())
        .expect("match labels");
    assert!(
        selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "the budget selects the StatefulSet's pods: {selector:?} vs {pod_labels:?}"
    );
    assert_eq!(budget.metadata.name, objects.statefulset.metadata.name);
    assert_eq!(
        budget.metadata.owner_references,
        objects.statefulset.metadata.owner_references
    );
}

/// Runs the postgres container's command as the pod would, with `PGDATA` at a fresh directory
/// (holding `PG_VERSION` when `earlier_data`) and `true` in place of pgctld; returns whether
/// `standby.signal` is there afterwards.
fn standby_signal_after_start(earlier_data: bool) -> bool {
    let pooler: MultiPooler = input("pooler");
    let pod = pooler_pod(&pooler);
    let command = container(&pod, "postgres")
        .command
        .clone()
        .expect("a command");
    let pgdata = std::env::temp_dir().join(format!(
        "pgctld-start-{}-{earlier_data}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&pgdata);
    std::fs::create_dir_all(&pgdata).expect("temp PGDATA");
    if earlier_data {
        std::fs::write(pgdata.join("PG_VERSION"), "17\n").expect("PG_VERSION");
    }
    let (program, rest) = command.split_first().expect("a program");
    let (last, script) = rest.split_last().expect("sh -c SCRIPT pgctld");
    assert!(
        last.ends_with("/pgctld"),
        "the script execs pgctld: {command:?}"
    );
    let status = std::process::Command::new(program)
        .args(script)
        .arg("true")
        .arg("server")
        .env("PGDATA", &pgdata)
        .status()
        .expect("sh runs");
    assert!(status.success(), "{command:?} exited with {status}");
    let signal = pgdata.join("standby.signal").exists();
    let _ = std::fs::remove_dir_all(&pgdata);
    signal
}

#[test]
fn a_restarted_pooler_starts_postgres_as_a_standby() {
    assert!(
        standby_signal_after_start(true),
        "data from an earlier life of the pod gets standby.signal: Multigres v0.1.0 starts \
         postgres with a plain start (go/services/multipooler/manager/manager.go, startPostgres), \
         as a primary unless the file exists (only go/cmd/pgctld/command/restart.go writes it), \
         and a returning primary must resign so multiorch elects at a new term"
    );
    assert!(
        !standby_signal_after_start(false),
        "an empty data directory is left to initdb or a restore"
    );
}
