//! Etcd X → StatefulSet X, headless peer Service `X-peer`, client Service `X-client`.
//!
//! Members are `X-0` … `X-(n-1)`, reachable as `X-i.X-peer.<namespace>.svc` through the peer
//! Service, which publishes their addresses before they are ready so that they can form the
//! cluster (readiness needs quorum). Each member bootstraps from the full `--initial-cluster`
//! list; etcd reads the bootstrap flags only when its data directory is empty.

use k8s_openapi::api::core::v1::Container;
use multigres_api::crd::{Etcd, EtcdSpec};
use multigres_api::defaults::{Component, ETCD_STORAGE_SIZE};
use multigres_api::invalid::InvalidSpec;
use multigres_api::meta::{ComponentLabel, etcd_client_service, etcd_peer_service};

use super::EtcdObjects;
use super::objects::{self, Owner, Port, ServiceKind};
use super::pod::{self, POD_NAME_ENV, PodShape, Timing};

use super::BuildContext;
use crate::component::{Workload, WorkloadKind, Workloads};

const CLIENT: Port = Port {
    name: "client",
    number: 2379,
};
const PEER: Port = Port {
    name: "peer",
    number: 2380,
};
const DATA_DIR: &str = "/var/lib/etcd";
const ETCD_BINARY: &str = "/usr/local/bin/etcd";

/// The objects of `etcd`.
pub fn etcd(etcd: &Etcd) -> Result<EtcdObjects, InvalidSpec> {
    let owner = Owner::new(etcd, ComponentLabel::Etcd, None)?;
    let EtcdSpec {
        component,
        storage,
        volume_retention,
        // Used by the reconcile before it creates the StatefulSet, not by the objects.
        adopt_volumes: _,
    } = &etcd.spec;
    let peer_name = etcd_peer_service(&owner.name);
    let peer_service =
        objects::service(&owner, &peer_name, ServiceKind::Headless, &[CLIENT, PEER])?;
    let client_service = objects::service(
        &owner,
        &etcd_client_service(&owner.name),
        ServiceKind::ClusterIp,
        &[CLIENT],
    )?;
    owner.check_statefulset_name()?;
    let shape = PodShape::new(Component::Etcd, component, &owner)?;
    let claim = objects::data_claim(&owner, storage.as_ref(), ETCD_STORAGE_SIZE)?;
    let container = etcd_container(&shape, &owner, &peer_name);
    let replicas = shape.replicas;
    let template = shape.template(pod::ETCD_USER, vec![container]);
    let statefulset = objects::statefulset(
        &owner,
        replicas,
        &peer_name,
        template,
        claim,
        *volume_retention,
    )?;
    Ok(EtcdObjects {
        statefulset,
        peer_service,
        client_service,
    })
}

fn etcd_container(shape: &PodShape, owner: &Owner, peer_service: &str) -> Container {
    let Owner {
        name, namespace, ..
    } = owner;
    // `$(POD_NAME)` is expanded by the kubelet from the container's environment.
    let own_host = format!("$({POD_NAME_ENV}).{peer_service}.{namespace}.svc");
    let cluster = initial_cluster(name, peer_service, namespace, shape.replicas);
    let mut container = shape.container("etcd", &shape.image);
    container.command = Some(vec![ETCD_BINARY.to_string()]);
    container.args = Some(vec![
        format!("--name=$({POD_NAME_ENV})"),
        format!("--data-dir={DATA_DIR}"),
        format!("--listen-client-urls=http://0.0.0.0:{}", CLIENT.number),
        format!(
            "--advertise-client-urls=http://{own_host}:{}",
            CLIENT.number
        ),
        format!("--listen-peer-urls=http://0.0.0.0:{}", PEER.number),
        format!(
            "--initial-advertise-peer-urls=http://{own_host}:{}",
            PEER.number
        ),
        format!("--initial-cluster={cluster}"),
        "--initial-cluster-state=new".to_string(),
        format!("--initial-cluster-token={name}"),
    ]);
    container.env = Some(vec![pod::pod_name_env()]);
    container.ports = Some(pod::container_ports(&[CLIENT, PEER]));
    container.volume_mounts = Some(vec![pod::data_mount(DATA_DIR)]);
    container.resources = shape.resources();
    // etcd 3.6 serves Kubernetes-style probes on the client port: /livez checks the local
    // member (a serializable read, no quorum needed), so losing quorum never restarts members;
    // /readyz also needs a linearizable read, i.e. quorum. A member serves HTTP only after it
    // joined the cluster, which at bootstrap waits for its peers: the startup probe allows
    // five minutes for that.
    container.startup_probe = Some(pod::http_probe(
        "/livez",
        &CLIENT,
        Timing {
            period_seconds: 5,
            timeout_seconds: Some(5),
            failure_threshold: Some(60),
        },
    ));
    container.liveness_probe = Some(pod::http_probe(
        "/livez",
        &CLIENT,
        Timing {
            period_seconds: 10,
            timeout_seconds: Some(5),
            failure_threshold: Some(6),
        },
    ));
    container.readiness_probe = Some(pod::http_probe(
        "/readyz",
        &CLIENT,
        Timing {
            period_seconds: 5,
            timeout_seconds: Some(5),
            ..Timing::default()
        },
    ));
    container
}

/// `--initial-cluster` of `replicas` members of StatefulSet `name` behind `peer_service`.
fn initial_cluster(name: &str, peer_service: &str, namespace: &str, replicas: i32) -> String {
    (0..replicas)
        .map(|i| {
            format!(
                "{name}-{i}=http://{name}-{i}.{peer_service}.{namespace}.svc:{}",
                PEER.number
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl crate::component::Component for Etcd {
    const WORKLOAD: WorkloadKind = WorkloadKind::StatefulSet;
    const LABEL: ComponentLabel = ComponentLabel::Etcd;

    /// etcd is not a Multigres process: the context (trace export) does not apply.
    fn build(&self, _ctx: &BuildContext) -> Result<Workloads, InvalidSpec> {
        let EtcdObjects {
            statefulset,
            peer_service,
            client_service,
        } = etcd(self)?;
        Ok(Workloads {
            workload: Workload::StatefulSet(statefulset),
            services: vec![peer_service, client_service],
            config_maps: Vec::new(),
            disruption_budgets: Vec::new(),
        })
    }

    fn adopt_volumes(&self) -> bool {
        self.spec.adopt_volumes.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_lists_every_member() {
        assert_eq!(
            initial_cluster("topo", "topo-peer", "prod", 1),
            "topo-0=http://topo-0.topo-peer.prod.svc:2380"
        );
        assert_eq!(
            initial_cluster("topo", "topo-peer", "prod", 3),
            "topo-0=http://topo-0.topo-peer.prod.svc:2380,\
             topo-1=http://topo-1.topo-peer.prod.svc:2380,\
             topo-2=http://topo-2.topo-peer.prod.svc:2380"
        );
        assert_eq!(initial_cluster("topo", "topo-peer", "prod", 0), "");
    }
}
