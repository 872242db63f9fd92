//! The real node: pods that run processes from locally built images, DNS through CoreDNS, Services
//! through kube-proxy, volumes that honour fsGroup, logs and exec through the API server.
//! Every check reads what a process inside a pod printed, not only the pod's phase.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::real_node::{
    self, BUSYBOX_IMAGE, NODE_NAME, POD_SUBNET_PREFIX, STORAGE_CLASS, place_on_real_node,
    wait_for_log,
};
use e2e::{TestEnv, wait_until, with_namespace};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, Service};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(180);

/// The environment, an admin client, and the real node (started when it is not Ready).
async fn setup() -> (TestEnv, Client, Node) {
    let env = TestEnv::load();
    let client = e2e::k8s::admin_client(&env).await;
    let node = real_node::ensure(&env, &client).await;
    (env, client, node)
}

/// A value no image or fixture contains: a pod can only print it if it ran with this spec.
fn token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("tok{:x}{:x}", std::process::id(), nanos)
}

/// A pod spec with one busybox container running `script`, placed on the real node.
fn busybox_pod(script: &str, env: serde_json::Value) -> PodSpec {
    let mut spec: PodSpec = serde_json::from_value(json!({
        "containers": [{
            "name": "main",
            "image": BUSYBOX_IMAGE,
            "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", script],
            "env": env,
        }],
        "terminationGracePeriodSeconds": 1,
    }))
    .expect("pod spec");
    place_on_real_node(&mut spec);
    spec
}

fn labelled_template(app: &str, spec: PodSpec) -> serde_json::Value {
    json!({"metadata": {"labels": {"app": app}}, "spec": spec})
}

/// Creates a one-replica Deployment `app` whose pods (labelled `app=<app>`) run `spec`.
async fn create_deployment(client: &Client, ns: &str, app: &str, spec: PodSpec) {
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": app},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": app}},
            "template": labelled_template(app, spec),
        }
    }))
    .expect("deployment");
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap_or_else(|e| panic!("creating Deployment {app}: {e}"));
}

/// The one pod of `app` that is Running on the real node (not being deleted).
async fn running_pod(client: &Client, ns: &str, app: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_until(
        &format!("a Running pod of {app} on {NODE_NAME}"),
        TIMEOUT,
        || async {
            let list = pods
                .list(&ListParams::default().labels(&format!("app={app}")))
                .await
                .map_err(|e| e.to_string())?;
            let seen: Vec<String> = list
                .items
                .iter()
                .map(|p| {
                    let s = p.status.clone().unwrap_or_default();
                    format!(
                        "{} phase={:?} node={:?} waiting={:?}",
                        p.metadata.name.clone().unwrap_or_default(),
                        s.phase,
                        p.spec.as_ref().and_then(|s| s.node_name.clone()),
                        s.container_statuses
                            .unwrap_or_default()
                            .iter()
                            .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.message.clone())
                            .collect::<Vec<_>>()
                    )
                })
                .collect();
            list.items
                .into_iter()
                .find(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(NODE_NAME)
                        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                })
                .ok_or(format!("pods: {seen:?}"))
        },
    )
    .await
}

#[tokio::test]
async fn the_node_is_ready_with_this_machines_capacity() {
    let (_env, _client, node) = setup().await;
    let status = node.status.expect("node status");
    let capacity = status.capacity.expect("node capacity");
    let cores = std::thread::available_parallelism()
        .expect("core count")
        .get();
    assert_eq!(
        capacity.get("cpu").map(|q| q.0.clone()),
        Some(cores.to_string()),
        "the kubelet reports this machine's cores; capacity {capacity:?}"
    );
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let mem_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("MemTotal in /proc/meminfo");
    assert_eq!(
        capacity.get("memory").map(|q| q.0.clone()),
        Some(format!("{mem_kib}Ki")),
        "the kubelet reports this machine's memory (MemTotal); capacity {capacity:?}"
    );
    let info = status.node_info.expect("node info");
    assert_eq!(info.kubelet_version, "v1.36.4");
    assert!(
        info.container_runtime_version.starts_with("containerd://"),
        "runtime {}",
        info.container_runtime_version
    );
    let addresses: Vec<String> = status
        .addresses
        .unwrap_or_default()
        .into_iter()
        .map(|a| format!("{}={}", a.type_, a.address))
        .collect();
    assert!(
        addresses.contains(&format!("InternalIP={POD_SUBNET_PREFIX}1")),
        "the node's address is its bridge's: {addresses:?}"
    );
    let taints: Vec<String> = node
        .spec
        .and_then(|s| s.taints)
        .unwrap_or_default()
        .into_iter()
        .map(|t| format!("{}={}:{}", t.key, t.value.unwrap_or_default(), t.effect))
        .collect();
    assert_eq!(taints, vec!["multigres.com/e2e-node=real:NoSchedule"]);
}

#[tokio::test]
async fn a_deployment_runs_a_process_from_a_local_image_and_its_log_is_served() {
    let (_env, client, _node) = setup().await;
    with_namespace(&client, "realdeploy", |client, ns| async move {
        let token = token();
        let spec = busybox_pod(
            r#"echo "started in $(hostname) as uid $(id -u) with $TOKEN"; exec sleep 3600"#,
            json!([{"name": "TOKEN", "value": token}]),
        );
        create_deployment(&client, &ns.name, "hello", spec).await;
        let pod = running_pod(&client, &ns.name, "hello").await;
        let name = pod.metadata.name.expect("pod name");
        let ip = pod.status.and_then(|s| s.pod_ip).unwrap_or_default();
        assert!(
            ip.starts_with(POD_SUBNET_PREFIX),
            "pod {name} has an address on the node's bridge, got {ip:?}"
        );
        let log = wait_for_log(&client, &ns.name, &name, &token).await;
        assert_eq!(
            log.trim(),
            format!("started in {name} as uid 0 with {token}"),
            "the container's process printed its own hostname and the token of this spec"
        );
    })
    .await;
}

#[tokio::test]
async fn a_pod_resolves_a_service_through_coredns_and_reaches_its_cluster_ip() {
    let (_env, client, _node) = setup().await;
    with_namespace(&client, "realdns", |client, ns| async move {
        let token = token();
        // A web server answering with the token on 8080.
        let server = busybox_pod(
            r#"mkdir -p /www && echo "$TOKEN" > /www/token && exec httpd -f -v -p 8080 -h /www"#,
            json!([{"name": "TOKEN", "value": token}]),
        );
        create_deployment(&client, &ns.name, "web", server).await;
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
        }))
        .expect("service");
        let service = Api::<Service>::namespaced(client.clone(), &ns.name)
            .create(&PostParams::default(), &service)
            .await
            .expect("create service");
        let cluster_ip = service
            .spec
            .and_then(|s| s.cluster_ip)
            .expect("service has a cluster IP");
        running_pod(&client, &ns.name, "web").await;

        // The client retries until kube-proxy and CoreDNS have seen the Service, then prints
        // the address the full name resolved to and what the server answered on the short name
        // (through the search domains the kubelet wrote into the pod's resolv.conf).
        let host = format!("web.{}.svc", ns.name);
        let script = format!(
            r#"for i in $(seq 1 120); do
                 addr=$(nslookup {host}.cluster.local 2>/dev/null | awk '/^Name:/ {{ n = 1 }} n && /^Address/ {{ a = $NF }} END {{ print a }}')
                 body=$(timeout 3 wget -q -O - http://{host}/token 2>/dev/null) && break
                 sleep 1
               done
               echo "resolved=$addr"; echo "body=$body"; exec sleep 3600"#
        );
        let client_spec = busybox_pod(&script, json!([]));
        create_deployment(&client, &ns.name, "client", client_spec).await;
        let pod = running_pod(&client, &ns.name, "client").await;
        let name = pod.metadata.name.expect("pod name");
        let log = wait_for_log(&client, &ns.name, &name, "body=").await;
        assert!(
            log.contains(&format!("resolved={cluster_ip}\n")),
            "{host} resolves to the Service's cluster IP {cluster_ip} through CoreDNS; log:\n{log}"
        );
        assert!(
            log.contains(&format!("body={token}\n")),
            "the server's answer came back through the cluster IP; log:\n{log}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_statefulset_pod_writes_its_volume_as_uid_999_and_the_data_survives_the_pod() {
    let (_env, client, _node) = setup().await;
    with_namespace(&client, "realpvc", |client, ns| async move {
        let token = token();
        let script = r#"if [ -f /data/token ]; then echo "found $(cat /data/token)";
               else echo "$TOKEN" > /data/token && echo "wrote $TOKEN"; fi
               echo "volume $(stat -c '%u:%g %A' /data) file $(stat -c '%u:%g' /data/token) as $(id -u):$(id -g)"
               exec sleep 3600"#;
        let mut spec = busybox_pod(script, json!([{"name": "TOKEN", "value": token}]));
        spec.security_context = Some(
            serde_json::from_value(json!({"runAsUser": 999, "runAsGroup": 999, "fsGroup": 999}))
                .expect("security context"),
        );
        spec.containers[0].volume_mounts = Some(vec![
            serde_json::from_value(json!({"name": "data", "mountPath": "/data"})).expect("mount"),
        ]);
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "store"},
            "spec": {
                "replicas": 1,
                "serviceName": "store",
                "selector": {"matchLabels": {"app": "store"}},
                "template": labelled_template("store", spec),
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": STORAGE_CLASS,
                        "resources": {"requests": {"storage": "64Mi"}}
                    }
                }]
            }
        }))
        .expect("statefulset");
        Api::<StatefulSet>::namespaced(client.clone(), &ns.name)
            .create(&PostParams::default(), &set)
            .await
            .expect("create statefulset");

        let first = running_pod(&client, &ns.name, "store").await;
        let first_uid = first.metadata.uid.clone().expect("pod uid");
        let log = wait_for_log(&client, &ns.name, "store-0", "volume ").await;
        assert!(
            log.contains(&format!("wrote {token}")),
            "the first pod wrote the token; log:\n{log}"
        );
        assert!(
            log.contains("file 999:999 as 999:999"),
            "the file is owned by the pod's non-root user; log:\n{log}"
        );
        assert!(
            log.contains("volume 0:999 drwxrwsr-x"),
            "the kubelet gave the volume to fsGroup 999 (group-writable, setgid); log:\n{log}"
        );

        Api::<Pod>::namespaced(client.clone(), &ns.name)
            .delete("store-0", &DeleteParams::default())
            .await
            .expect("delete pod");
        let second = wait_until("store-0 to be recreated", TIMEOUT, || async {
            let pod = running_pod(&client, &ns.name, "store").await;
            if pod.metadata.uid.as_deref() == Some(first_uid.as_str()) {
                Err("still the first pod".to_string())
            } else {
                Ok(pod)
            }
        })
        .await;
        let name = second.metadata.name.expect("pod name");
        let log = wait_for_log(&client, &ns.name, &name, "volume ").await;
        assert!(
            log.contains(&format!("found {token}")),
            "the recreated pod found the first pod's data on its claim; log:\n{log}"
        );
    })
    .await;
}

#[tokio::test]
async fn kubectl_exec_runs_a_command_in_a_pod() {
    let (env, client, _node) = setup().await;
    with_namespace(&client, "realexec", |client, ns| async move {
        let token = token();
        let spec = busybox_pod(
            "exec sleep 3600",
            json!([{"name": "TOKEN", "value": token}]),
        );
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "target", "labels": {"app": "target"}},
            "spec": spec,
        }))
        .expect("pod");
        Api::<Pod>::namespaced(client.clone(), &ns.name)
            .create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
        running_pod(&client, &ns.name, "target").await;
        let out = env
            .kubectl()
            .args(["exec", "-n", &ns.name, "target", "--", "sh", "-c"])
            .arg("echo \"$TOKEN from $(hostname)\"; cat /proc/1/cmdline | tr '\\0' ' '")
            .output()
            .expect("kubectl runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "kubectl exec failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout.trim(),
            format!("{token} from target\nsleep 3600"),
            "the command ran inside the pod, beside its process"
        );
    })
    .await;
}

#[tokio::test]
async fn the_data_plane_images_run_under_the_names_the_pods_use() {
    let (_env, client, _node) = setup().await;
    with_namespace(&client, "realimages", |client, ns| async move {
        // One container per image, each printing what only that image holds.
        let mut spec: PodSpec = serde_json::from_value(json!({
            "restartPolicy": "Never",
            "containers": [
                {"name": "etcd", "image": "gcr.io/etcd-development/etcd:v3.6.14",
                 "imagePullPolicy": "IfNotPresent", "command": ["/usr/local/bin/etcd", "--version"]},
                {"name": "multigres", "image": "ghcr.io/multigres/multigres:v0.1.0",
                 "imagePullPolicy": "IfNotPresent",
                 "command": ["sh", "-c", "id -u; for c in multigateway multiorch multipooler multigres; do command -v $c; done"]},
                {"name": "pgctld", "image": "ghcr.io/multigres/pgctld:v0.1.0",
                 "imagePullPolicy": "IfNotPresent",
                 "command": ["sh", "-c", "id; postgres --version; pgbackrest version; command -v pgctld"]},
            ],
        }))
        .expect("pod spec");
        place_on_real_node(&mut spec);
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "images"}, "spec": spec}))
            .expect("pod");
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
        wait_until("pod images to succeed", TIMEOUT, || async {
            let p = pods.get("images").await.map_err(|e| e.to_string())?;
            let status = p.status.unwrap_or_default();
            match status.phase.as_deref() {
                Some("Succeeded") => Ok(()),
                Some("Failed") => panic!("pod images failed: {status:?}"),
                other => Err(format!("phase {other:?}, containers {:?}", status.container_statuses)),
            }
        })
        .await;
        let log = |container: &'static str| {
            let pods = pods.clone();
            async move {
                let params = kube::api::LogParams {
                    container: Some(container.into()),
                    ..Default::default()
                };
                pods.logs("images", &params)
                    .await
                    .unwrap_or_else(|e| panic!("log of container {container}: {e}"))
            }
        };
        let etcd = log("etcd").await;
        assert!(etcd.contains("etcd Version: 3.6.14"), "etcd log: {etcd}");
        let multigres = log("multigres").await;
        assert_eq!(
            multigres.trim(),
            "65532\n/multigres/bin/multigateway\n/multigres/bin/multiorch\n/multigres/bin/multipooler\n/multigres/bin/multigres",
            "upstream's layout: user 65532, the commands in /multigres/bin"
        );
        let pgctld = log("pgctld").await;
        let lines: Vec<&str> = pgctld.lines().collect();
        assert_eq!(lines.len(), 4, "pgctld log: {pgctld}");
        assert!(lines[0].starts_with("uid=999(postgres) gid=999(postgres)"), "pgctld log: {pgctld}");
        assert!(lines[1].starts_with("postgres (PostgreSQL) 17."), "pgctld log: {pgctld}");
        assert!(lines[2].starts_with("pgBackRest 2."), "pgctld log: {pgctld}");
        assert_eq!(lines[3], "/usr/local/bin/pgctld", "pgctld log: {pgctld}");
    })
    .await;
}
