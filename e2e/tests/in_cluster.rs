//! The operator as users run it: its image built here (`e2e/scripts/operator-image.sh`) and
//! imported into the real node, `manifests/default` applied with kustomize (through
//! `e2e/manifests/in-cluster`, which adds the real node's selector and the collector address),
//! both Deployments' pods running the binaries with their ServiceAccounts, holding their Leases,
//! answering `/readyz` and exporting spans. A database created afterwards is Healthy and its
//! creation is one trace with spans from both leader pods; deleting the leader pods hands the
//! Leases to the standbys within the lease duration, and the next change is again one trace.
//! Beside it, the image is held to what the `Dockerfile` declares.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::data_plane::{database_cluster, wait_primary};
use e2e::env::repo_root;
use e2e::identity::OPERATOR_NS;
use e2e::k8s::lease_holder;
use e2e::process::{api_writes, metric_sum};
use e2e::real_node::{self, NODE_NAME};
use e2e::tempo::Tempo;
use e2e::{TestEnv, install_crds, wait_until, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use multigres_api::crd::MultigresCluster;
use serde_json::{Value, json};

/// The kustomization the test applies: `manifests/default` plus the local control plane's needs.
const OVERLAY: &str = "e2e/manifests/in-cluster";
/// (Deployment and Lease name, container and binary name, service.name of its spans).
const HANDLERS: [(&str, &str, &str); 2] = [
    (
        "multigres-cluster-handler",
        "cluster-handler",
        "multigres-cluster-handler",
    ),
    (
        "multigres-resource-handler",
        "resource-handler",
        "multigres-resource-handler",
    ),
];
/// The Leases' duration (the handlers' default, which the Deployments keep).
const LEASE_DURATION: Duration = Duration::from_secs(15);
/// The admin port of both Deployments (`ADMIN_ADDR`).
const ADMIN_PORT: u16 = 8080;
const TIMEOUT: Duration = Duration::from_secs(600);
const CLUSTER: &str = "db";

/// Runs `e2e/scripts/operator-image.sh` (with `--import`: into the real node too) and returns
/// the OCI archive it wrote.
fn operator_image(import: bool) -> PathBuf {
    let mut cmd = Command::new(repo_root().join("e2e/scripts/operator-image.sh"));
    // Without what cargo sets for this test (CARGO_MANIFEST_DIR, ...): build scripts track some of
    // it, and a different value would rebuild the whole release tree.
    for (key, _) in std::env::vars() {
        if (key.starts_with("CARGO_") && key != "CARGO_HOME") || key == "OUT_DIR" {
            cmd.env_remove(key);
        }
    }
    if import {
        cmd.arg("--import");
    }
    let out = cmd.output().expect("operator-image.sh runs");
    assert!(
        out.status.success(),
        "operator-image.sh failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// One file of an OCI image archive.
fn archive_file(archive: &Path, name: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(name)
        .output()
        .expect("tar runs");
    assert!(
        out.status.success(),
        "{name} not in {}: {}",
        archive.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn archive_json(archive: &Path, name: &str) -> Value {
    serde_json::from_slice(&archive_file(archive, name))
        .unwrap_or_else(|e| panic!("{name} in {}: {e}", archive.display()))
}

fn blob(digest: &Value) -> String {
    format!(
        "blobs/sha256/{}",
        digest
            .as_str()
            .and_then(|d| d.strip_prefix("sha256:"))
            .expect("a sha256 digest")
    )
}

/// The image's config (`config` of the OCI image config) and the regular files of its layers
/// with their permission bits (`tar -tv` lines of each layer).
fn image_contents(archive: &Path) -> (Value, BTreeMap<String, String>) {
    let index = archive_json(archive, "index.json");
    let manifest = archive_json(archive, &blob(&index["manifests"][0]["digest"]));
    let config = archive_json(archive, &blob(&manifest["config"]["digest"]));
    let mut files = BTreeMap::new();
    for layer in manifest["layers"].as_array().expect("layers") {
        let listing = Command::new("sh")
            .arg("-c")
            .arg(r#"tar -xOf "$0" "$1" | tar -tvz"#)
            .arg(archive)
            .arg(blob(&layer["digest"]))
            .output()
            .expect("tar runs");
        assert!(listing.status.success(), "listing a layer failed");
        for line in String::from_utf8_lossy(&listing.stdout).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let (Some(mode), Some(path)) = (fields.first(), fields.get(5))
                && mode.starts_with('-')
            {
                files.insert(format!("/{path}"), mode.to_string());
            }
        }
    }
    (config["config"].clone(), files)
}

/// What the last stage of the `Dockerfile` declares: USER, ENTRYPOINT, EXPOSE, LABELs and the
/// paths the binaries are copied to.
#[derive(Debug, Default)]
struct Declared {
    user: String,
    entrypoint: Vec<String>,
    exposed: BTreeSet<String>,
    labels: BTreeMap<String, String>,
    binaries: BTreeSet<String>,
}

fn dockerfile_runtime_stage() -> Declared {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile");
    // Continuation lines joined, comments dropped; only the last stage (after the last FROM).
    let joined = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let stage = joined
        .rsplit_once("\nFROM ")
        .map(|(_, s)| s)
        .expect("a FROM");
    let mut d = Declared::default();
    for line in stage.lines().map(str::trim) {
        let (instruction, rest) = line.split_once(' ').unwrap_or((line, ""));
        match instruction {
            "USER" => d.user = rest.trim().to_string(),
            "ENTRYPOINT" => {
                d.entrypoint = serde_json::from_str(rest).expect("ENTRYPOINT in exec form")
            }
            "EXPOSE" => d.exposed.extend(rest.split_whitespace().map(|p| {
                if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                }
            })),
            "LABEL" => {
                let mut rest = rest.trim();
                while let Some((key, after)) = rest.split_once("=\"") {
                    let (value, tail) = after.split_once('"').expect("a quoted LABEL value");
                    d.labels.insert(key.trim().to_string(), value.to_string());
                    rest = tail.trim();
                }
            }
            "COPY" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let (dest, sources) = words.split_last().expect("COPY sources and destination");
                for source in sources.iter().filter(|w| !w.starts_with("--")) {
                    let file = source.rsplit('/').next().unwrap_or(source);
                    d.binaries.insert(format!("{dest}{file}"));
                }
            }
            _ => {}
        }
    }
    d
}

#[test]
fn the_image_built_here_declares_what_the_dockerfile_declares() {
    let declared = dockerfile_runtime_stage();
    assert!(
        !declared.user.is_empty()
            && !declared.entrypoint.is_empty()
            && declared.binaries.len() == 2,
        "the Dockerfile's runtime stage was not understood: {declared:?}"
    );
    let archive = operator_image(false);
    let (config, files) = image_contents(&archive);

    assert_eq!(
        config["User"].as_str(),
        Some(declared.user.as_str()),
        "USER"
    );
    let entrypoint: Vec<String> =
        serde_json::from_value(config["Entrypoint"].clone()).unwrap_or_default();
    assert_eq!(entrypoint, declared.entrypoint, "ENTRYPOINT");
    let exposed: BTreeSet<String> = config["ExposedPorts"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(exposed, declared.exposed, "EXPOSE");
    let labels: BTreeMap<String, String> =
        serde_json::from_value(config["Labels"].clone()).unwrap_or_default();
    assert_eq!(labels, declared.labels, "LABELs");
    for binary in &declared.binaries {
        let mode = files.get(binary).map(String::as_str);
        assert_eq!(
            mode,
            Some("-rwxr-xr-x"),
            "{binary}, which the Dockerfile copies, in the image built here"
        );
    }

    // The Deployments run those binaries as that user.
    let user_id: i64 = declared
        .user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .expect("a numeric USER");
    for (file, _, binary) in HANDLERS.map(|(d, b, _)| (d, b, b)) {
        let path = repo_root().join(format!(
            "manifests/deploy/{}.yaml",
            file.trim_start_matches("multigres-")
        ));
        let text = std::fs::read_to_string(&path).expect("deployment manifest");
        let deployment: Deployment = serde_saphyr::from_str(
            text.split("\n---")
                .next()
                .expect("the Deployment comes first"),
        )
        .expect("a Deployment");
        let pod = deployment
            .spec
            .and_then(|s| s.template.spec)
            .expect("a pod template");
        assert_eq!(
            pod.security_context.and_then(|s| s.run_as_user),
            Some(user_id),
            "{}: runAsUser",
            path.display()
        );
        let command = pod.containers[0].command.clone().unwrap_or_default();
        assert_eq!(
            command,
            vec![format!("/usr/local/bin/{binary}")],
            "{}: command",
            path.display()
        );
        assert!(
            declared.binaries.contains(&command[0]),
            "{} runs {}, which the image does not hold",
            path.display(),
            command[0]
        );
    }
}

/// The Deployments applied from [`OVERLAY`]; deleted (with their pods) when dropped, so no later
/// suite meets handlers it did not start.
struct Installed<'a> {
    env: &'a TestEnv,
}

impl<'a> Installed<'a> {
    fn apply(env: &'a TestEnv) -> Installed<'a> {
        env.kubectl_apply("-k", &repo_root().join(OVERLAY));
        Installed { env }
    }
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        let names = HANDLERS.map(|(d, _, _)| d);
        let out = self
            .env
            .kubectl()
            .args(["-n", OPERATOR_NS, "delete", "deployment"])
            .args(names)
            .args([
                "--ignore-not-found",
                "--cascade=foreground",
                "--timeout=120s",
            ])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            other => eprintln!("warning: deleting the handler Deployments: {other:?}"),
        }
    }
}

/// The running, not terminating pods of Deployment `name`.
async fn live_pods(client: &Client, name: &str) -> Result<Vec<Pod>, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NS);
    let list = pods
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/name={name}")))
        .await
        .map_err(|e| e.to_string())?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// Waits until Deployment `name` has rolled out `replicas` Ready pods on the real node (and no
/// other pod) and returns them.
async fn wait_rolled_out(client: &Client, name: &str, replicas: i32) -> Vec<Pod> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NS);
    wait_until(
        &format!("{name}: {replicas} Ready pods on {NODE_NAME}"),
        TIMEOUT,
        || async {
            let d = deployments.get(name).await.map_err(|e| e.to_string())?;
            let s = d.status.clone().unwrap_or_default();
            let pods = live_pods(client, name).await?;
            let seen: Vec<String> = pods
                .iter()
                .map(|p| {
                    format!(
                        "{} on {:?} ready={} {:?}",
                        pod_name(p),
                        p.spec.as_ref().and_then(|s| s.node_name.clone()),
                        pod_ready(p),
                        p.status.as_ref().and_then(|s| s.container_statuses.clone())
                    )
                })
                .collect();
            let done = s.observed_generation == d.metadata.generation
                && s.updated_replicas == Some(replicas)
                && s.ready_replicas == Some(replicas)
                && s.replicas == Some(replicas)
                && pods.len() == replicas as usize
                && pods.iter().all(|p| {
                    pod_ready(p)
                        && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(NODE_NAME)
                });
            if done {
                Ok(pods)
            } else {
                Err(format!("status {s:?}, pods {seen:#?}"))
            }
        },
    )
    .await
}

/// GET `http://<pod IP>:8080<path>` (this machine reaches the real node's pods on its bridge).
async fn admin_get(pod: &Pod, path: &str) -> Result<(u16, String), String> {
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .ok_or("no pod IP")?;
    let resp = reqwest::get(format!("http://{ip}:{ADMIN_PORT}{path}"))
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.map_err(|e| e.to_string())?))
}

/// The leader among `pods` of the handler whose Lease is `lease`: the Lease names it, its
/// /metrics says `multigres_leader 1`, and every other pod is Ready, says 0 and has written
/// nothing. Returns (leader, standbys).
async fn leader_and_standbys(client: &Client, lease: &str, pods: &[Pod]) -> (Pod, Vec<Pod>) {
    wait_until(
        &format!("one pod to lead {lease}, the others idle"),
        TIMEOUT,
        || async {
            let holder = lease_holder(client, OPERATOR_NS, lease)
                .await
                .ok_or("no holder")?;
            let leader = pods
                .iter()
                .find(|p| pod_name(p) == holder)
                .ok_or(format!("the holder {holder} is none of the pods"))?;
            let mut seen = Vec::new();
            for pod in pods {
                let (_, metrics) = admin_get(pod, "/metrics").await?;
                let leading = metric_sum(&metrics, "multigres_leader", |_| true);
                let writes = api_writes(&metrics);
                seen.push(format!(
                    "{}: leader={leading} writes={writes}",
                    pod_name(pod)
                ));
                let is_holder = pod_name(pod) == holder;
                if (is_holder && leading != 1) || (!is_holder && (leading != 0 || writes != 0)) {
                    return Err(format!("holder {holder}; {seen:?}"));
                }
            }
            let standbys = pods
                .iter()
                .filter(|p| pod_name(p) != holder)
                .cloned()
                .collect();
            Ok((leader.clone(), standbys))
        },
    )
    .await
}

/// Waits until trace `trace_id` holds spans of every `(service, pod)` pair and every span name
/// in `steps`; returns its spans.
async fn wait_trace(
    tempo: &Tempo,
    trace_id: &str,
    pods: &[(&str, String)],
    steps: &[&str],
) -> Vec<e2e::tempo::Span> {
    wait_until(
        &format!("trace {trace_id} with spans of {pods:?} and {steps:?}"),
        Duration::from_secs(120),
        || async {
            let spans = tempo.trace(trace_id).await?.unwrap_or_default();
            let seen: BTreeSet<(String, String)> = spans
                .iter()
                .map(|s| {
                    let pod = s.resource.get("k8s.pod.name").cloned().unwrap_or_default();
                    (s.service.clone(), pod)
                })
                .collect();
            let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
            let missing_pods: Vec<_> = pods
                .iter()
                .filter(|(svc, pod)| !seen.contains(&(svc.to_string(), pod.clone())))
                .collect();
            let missing_steps: Vec<_> = steps.iter().filter(|s| !names.contains(*s)).collect();
            if missing_pods.is_empty() && missing_steps.is_empty() {
                Ok(spans)
            } else {
                Err(format!(
                    "missing {missing_pods:?} and {missing_steps:?}; (service, pod) seen: {seen:?}"
                ))
            }
        },
    )
    .await
}

#[tokio::test]
async fn installed_from_manifests_the_handlers_run_in_pods_trace_and_hand_over() {
    let env = TestEnv::load();
    let client = e2e::k8s::admin_client(&env).await;
    install_crds(&client).await;
    real_node::ensure(&env, &client).await;
    let t0 = Instant::now();
    operator_image(true);
    eprintln!("image built and imported in {:?}", t0.elapsed());

    let _installed = Installed::apply(&env);
    let mut leaders = Vec::new();
    for (deployment, container, _) in HANDLERS {
        let pods = wait_rolled_out(&client, deployment, 2).await;
        let (leader, standbys) = leader_and_standbys(&client, deployment, &pods).await;
        for pod in &pods {
            let name = pod_name(pod);
            // The binary runs: its log, read back through the API server.
            let logs = Api::<Pod>::namespaced(client.clone(), OPERATOR_NS)
                .logs(
                    &name,
                    &LogParams {
                        container: Some(container.to_string()),
                        ..LogParams::default()
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("logs of {name}: {e}"));
            // In-cluster configuration: the `kubernetes` Service's address, its ServiceAccount.
            for line in [
                format!("starting {deployment}"),
                "connected to the Kubernetes API server".to_string(),
                "https://10.96.0.1/".to_string(),
            ] {
                assert!(
                    logs.contains(&line),
                    "{name}: no '{line}' in its log:\n{logs}"
                );
            }
            for refused in ["forbidden", "Forbidden", "Unauthorized"] {
                assert!(!logs.contains(refused), "{name} was refused:\n{logs}");
            }
            // With its own ServiceAccount's projected token.
            let spec = pod.spec.clone().unwrap_or_default();
            assert_eq!(spec.service_account_name.as_deref(), Some(deployment));
            assert!(
                spec.volumes.unwrap_or_default().iter().any(|v| v
                    .projected
                    .as_ref()
                    .and_then(|p| p.sources.as_ref())
                    .is_some_and(|s| s.iter().any(|s| s.service_account_token.is_some()))),
                "{name} has no projected ServiceAccount token"
            );
            let (status, body) = admin_get(pod, "/readyz").await.expect("GET /readyz");
            assert_eq!(status, 200, "{name}: /readyz answered {body}");
        }
        eprintln!(
            "{deployment}: {} leads, {:?} stand by",
            pod_name(&leader),
            standbys.iter().map(pod_name).collect::<Vec<_>>()
        );
        leaders.push((leader, standbys));
    }

    let tempo = Tempo::new(&env.tempo_url);
    with_namespace(&client, "in-cluster", |client, ns| {
        let leaders = &leaders;
        let tempo = &tempo;
        async move {
            let ns = ns.name;
            let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &ns);
            api.create(&PostParams::default(), &database_cluster(CLUSTER, 2))
                .await
                .expect("cluster created");
            let healthy = wait_primary(&api, CLUSTER).await;
            let creation = healthy.core.last_trace_id.clone().expect("lastTraceId");
            let pods: Vec<(&str, String)> = HANDLERS
                .iter()
                .zip(leaders)
                .map(|((_, _, service), (leader, _))| (*service, pod_name(leader)))
                .collect();
            let spans = wait_trace(
                tempo,
                &creation,
                &pods,
                &["reconcile MultigresCluster", "reconcile Cell", "reconcile MultiPooler"],
            )
            .await;
            eprintln!("creation trace {creation}: {} spans from {pods:?}", spans.len());

            // The leader pods go: another replica holds each Lease within the lease duration. A
            // leader releases its Lease on SIGTERM, so the pod the ReplicaSet starts in its place
            // may win the race against the standbys; either way the deleted pod no longer leads.
            let deleted = Instant::now();
            for (leader, _) in leaders {
                Api::<Pod>::namespaced(client.clone(), OPERATOR_NS)
                    .delete(&pod_name(leader), &DeleteParams::default())
                    .await
                    .expect("leader pod deleted");
            }
            let mut next = Vec::new();
            for ((lease, _, service), (leader, standbys)) in HANDLERS.iter().zip(leaders) {
                let deleted_leader = pod_name(leader);
                let holder = wait_until(
                    &format!("another replica of {lease} to hold it"),
                    LEASE_DURATION * 2,
                    || async {
                        match lease_holder(&client, OPERATOR_NS, lease).await {
                            Some(h) if h != deleted_leader => Ok(h),
                            other => Err(format!("holder {other:?} (deleted {deleted_leader})")),
                        }
                    },
                )
                .await;
                let from = if standbys.iter().any(|s| pod_name(s) == holder) { "a standby" } else { "the replacement pod" };
                eprintln!("{lease}: held by {from}");
                let took = deleted.elapsed();
                eprintln!("{lease}: {holder} took over {:.1}s after the leader pod was deleted", took.as_secs_f64());
                assert!(
                    took <= LEASE_DURATION,
                    "{lease}: the hand-over took {took:?}, more than the lease duration {LEASE_DURATION:?}"
                );
                next.push((*service, holder));
            }

            // The next change is one trace again, from the new leaders.
            api.patch(
                CLUSTER,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"gateway": {"replicas": 2}}})),
            )
            .await
            .expect("gateways scaled");
            let changed = wait_until("the cluster Healthy for its new generation", TIMEOUT, || async {
                let c = api.get(CLUSTER).await.map_err(|e| e.to_string())?;
                let s = c.status.clone().unwrap_or_default();
                let id = s.core.last_trace_id.clone().unwrap_or_default();
                if s.core.observed_generation == c.metadata.generation
                    && s.phase == Some(multigres_api::crd::Phase::Healthy)
                    && id != creation
                {
                    Ok(id)
                } else {
                    Err(format!("phase {:?}, observed {:?}, lastTraceId {id}", s.phase, s.core.observed_generation))
                }
            })
            .await;
            let spans = wait_trace(
                tempo,
                &changed,
                &next,
                &["reconcile MultigresCluster", "reconcile MultiGateway"],
            )
            .await;
            eprintln!("change trace {changed}: {} spans from {next:?}", spans.len());

            api.delete(CLUSTER, &DeleteParams::foreground())
                .await
                .expect("cluster deleted");
            wait_until("the cluster to be gone", TIMEOUT, || async {
                match api.get_opt(CLUSTER).await.map_err(|e| e.to_string())? {
                    None => Ok(()),
                    Some(_) => Err("still there".to_string()),
                }
            })
            .await;
        }
    })
    .await;
}
