//! Stopping the real node leaves nothing on this machine, and it comes back.
//! Its own test binary: it takes the node down, which no other test may see.

use std::time::Duration;

use e2e::real_node::{
    self, BUSYBOX_IMAGE, NODE_NAME, leftovers_on_host, place_on_real_node, run_script,
};
use e2e::{TestEnv, wait_until, with_namespace};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

#[tokio::test]
async fn node_down_leaves_nothing_running_and_node_up_brings_the_node_back() {
    let env = TestEnv::load();
    let client = e2e::k8s::admin_client(&env).await;
    real_node::ensure(&env, &client).await;
    with_namespace(&client, "reallife", |client, ns| async move {
        // A running pod with a volume, so there are containers, mounts and a network namespace.
        let mut spec: PodSpec = serde_json::from_value(json!({
            "containers": [{
                "name": "main", "image": BUSYBOX_IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
            }],
            "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory"}}],
            "terminationGracePeriodSeconds": 1,
        }))
        .expect("pod spec");
        place_on_real_node(&mut spec);
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "busy"}, "spec": spec}))
            .expect("pod");
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
        wait_until("pod busy to run", Duration::from_secs(180), || async {
            let p = pods.get("busy").await.map_err(|e| e.to_string())?;
            match p.status.and_then(|s| s.phase).as_deref() {
                Some("Running") => Ok(()),
                other => Err(format!("phase {other:?}")),
            }
        })
        .await;
        let before = leftovers_on_host();
        assert!(
            before.iter().any(|l| l.contains("sleep 3600")),
            "the check sees the pod's process while the node runs: {before:#?}"
        );
        assert!(
            before.iter().any(|l| l.starts_with("mount ")),
            "the check sees the node's mounts while it runs: {before:#?}"
        );

        run_script(&env, "node-down.sh");
        let left = leftovers_on_host();
        assert!(left.is_empty(), "node-down.sh left behind: {left:#?}");

        run_script(&env, "node-up.sh");
        let node = real_node::ensure(&env, &client).await;
        // Again while it runs: nothing to do, at once (its daemons must not hold node-up's lock).
        let again = std::time::Instant::now();
        run_script(&env, "node-up.sh");
        assert!(
            again.elapsed() < Duration::from_secs(60),
            "a second node-up took {:?}",
            again.elapsed()
        );
        assert_eq!(node.metadata.name.as_deref(), Some(NODE_NAME));
        // The pod that was there runs again: the kubelet restarts what the API server still binds.
        wait_until(
            "the pod's process to run again",
            Duration::from_secs(180),
            || async {
                let now = leftovers_on_host();
                if now.iter().any(|l| l.contains("sleep 3600")) {
                    Ok(())
                } else {
                    Err(format!("node processes: {now:#?}"))
                }
            },
        )
        .await;
    })
    .await;
}
