//! The real node of the local control plane (`e2e/scripts/node-up.sh`): where it is, how a pod asks
//! for it, and what it leaves on this machine.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, Toleration};
use kube::{Api, Client};

use crate::env::{TestEnv, repo_root};
use crate::wait_until;

/// The node's name (its kubelet's `--hostname-override`).
pub const NODE_NAME: &str = "multigres-real-node";
/// Label and taint key (value [`NODE_LABEL_VALUE`]) that keep other pods off the node.
pub const NODE_LABEL_KEY: &str = "multigres.com/e2e-node";
pub const NODE_LABEL_VALUE: &str = "real";
/// The pods' subnet on the node's bridge, and the bridge itself.
pub const POD_SUBNET_PREFIX: &str = "198.18.0.";
pub const BRIDGE: &str = "mge2e0";
/// The StorageClass whose claims become `local` volumes on the node.
pub const STORAGE_CLASS: &str = "real-node-local";
/// A small image built locally from Debian's busybox-static: `sh`, `wget`, `nslookup`, `httpd`.
/// The node's address on its bridge, where CoreDNS answers cluster names.
pub const NODE_IP: &str = "198.18.0.1";

/// Environment of a cluster-handler that registers cells in the etcd of clusters on the real
/// node, resolving their Services through the node's CoreDNS (it runs outside the cluster).
pub fn topology_env() -> Vec<(String, String)> {
    vec![
        ("MANAGE_TOPOLOGY".into(), "true".into()),
        ("CLUSTER_DNS".into(), NODE_IP.into()),
    ]
}

pub const BUSYBOX_IMAGE: &str = "localhost/multigres-e2e/busybox:1.35";

/// How long the node may take to start (a cold start builds kubelet and the images).
const START_TIMEOUT: Duration = Duration::from_secs(1800);

/// Makes sure the real node runs: when it is not Ready, runs `node-up.sh` (which builds what it
/// needs, and needs root), then waits for it to be Ready. Returns the Node.
pub async fn ensure(env: &TestEnv, client: &Client) -> Node {
    let nodes: Api<Node> = Api::all(client.clone());
    if !is_ready(&nodes).await {
        run_script(env, "node-up.sh");
    }
    wait_until(
        &format!("node {NODE_NAME} to be Ready"),
        START_TIMEOUT,
        || async {
            let node = nodes.get(NODE_NAME).await.map_err(|e| e.to_string())?;
            if ready_condition(&node) {
                Ok(node)
            } else {
                Err(format!(
                    "conditions {:?}",
                    node.status.and_then(|s| s.conditions)
                ))
            }
        },
    )
    .await
}

/// Runs `e2e/scripts/<name>` (node-up.sh, node-down.sh) against `env`; panics when it fails or
/// takes longer than [`START_TIMEOUT`] (a cold node-up builds kubelet and the images).
pub fn run_script(env: &TestEnv, name: &str) {
    let script = repo_root().join("e2e/scripts").join(name);
    let status = Command::new("timeout")
        .arg(START_TIMEOUT.as_secs().to_string())
        .arg(&script)
        .env("KUBECONFIG", &env.kubeconfig)
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        status.success(),
        "{name} failed ({status}); its messages are above"
    );
}

async fn is_ready(nodes: &Api<Node>) -> bool {
    matches!(nodes.get_opt(NODE_NAME).await, Ok(Some(node)) if ready_condition(&node))
}

fn ready_condition(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Places a pod spec on the real node: its node selector and the toleration of its taint.
pub fn place_on_real_node(spec: &mut PodSpec) {
    spec.node_selector
        .get_or_insert_default()
        .insert(NODE_LABEL_KEY.into(), NODE_LABEL_VALUE.into());
    spec.tolerations.get_or_insert_default().push(Toleration {
        key: Some(NODE_LABEL_KEY.into()),
        operator: Some("Equal".into()),
        value: Some(NODE_LABEL_VALUE.into()),
        effect: Some("NoSchedule".into()),
        ..Toleration::default()
    });
}

/// The node's state directory (`<work>/cluster/node`): volumes, the kubelet's root, pod logs.
pub fn node_dir() -> PathBuf {
    let work = std::env::var("MULTIGRES_E2E_WORK")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("e2e/.work"));
    work.join("cluster/node")
}

/// A pod's log as the API server serves it (`kubectl logs`), from its kubelet.
pub async fn pod_log(client: &Client, ns: &str, pod: &str) -> Result<String, String> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .logs(pod, &Default::default())
        .await
        .map_err(|e| format!("logs of pod {pod}: {e}"))
}

/// Waits until a pod's log contains `needle`; returns the whole log.
pub async fn wait_for_log(client: &Client, ns: &str, pod: &str, needle: &str) -> String {
    wait_until(
        &format!("pod {ns}/{pod} to log {needle:?}"),
        Duration::from_secs(120),
        || async {
            let log = pod_log(client, ns, pod).await?;
            if log.contains(needle) {
                Ok(log)
            } else {
                Err(format!("log so far: {log:?}"))
            }
        },
    )
    .await
}

/// What the node left on this machine: processes in pods' cgroups or running from its directory,
/// mounts under its directory, its bridge, network namespaces holding a pod address, and the
/// iptables chains of kube-proxy and the guard. Each entry names one thing; empty when clean.
pub fn leftovers_on_host() -> Vec<String> {
    let dir = node_dir();
    let dir = dir.to_string_lossy();
    let mut left = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let read = |f: &str| std::fs::read_to_string(entry.path().join(f)).unwrap_or_default();
        let stat = read("stat");
        if stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
        {
            continue;
        }
        let cmdline = read("cmdline").replace('\0', " ");
        if read("cgroup").contains(":/kubepods") || cmdline.contains(&format!("{dir}/")) {
            left.push(format!("process {pid}: {}", cmdline.trim()));
        }
    }
    for line in std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
    {
        if let Some(point) = line.split(' ').nth(4)
            && point.starts_with(&format!("{dir}/"))
        {
            left.push(format!("mount {point}"));
        }
    }
    if std::path::Path::new("/sys/class/net").join(BRIDGE).exists() {
        left.push(format!("network device {BRIDGE}"));
    }
    for ns in std::fs::read_dir("/var/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = ns.file_name().to_string_lossy().into_owned();
        let out = Command::new("ip")
            .args(["-n", &name, "-4", "-o", "addr", "show"])
            .output();
        if let Ok(out) = out
            && String::from_utf8_lossy(&out.stdout).contains(&format!("inet {POD_SUBNET_PREFIX}"))
        {
            left.push(format!("network namespace {name}"));
        }
    }
    if let Ok(out) = Command::new("iptables-save").output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.starts_with(":KUBE-") || line.starts_with(":MULTIGRES-E2E") {
                left.push(format!("iptables chain {line}"));
            }
        }
    }
    left
}
