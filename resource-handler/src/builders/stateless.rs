//! The shape MultiGateway and MultiOrch share: a Deployment running one Multigres binary of a
//! cell, and a ClusterIP Service in front of it.

use kube::Resource;
use shared::crd::{ComponentSpec, TopoSpec};
use shared::defaults::Component;
use shared::meta::ComponentLabel;

use super::objects::{self, Owner, Port, ServiceKind};
use super::pod::{self, PodShape};
use super::{BuildError, DeploymentObjects};

/// One Multigres binary of a cell, run as a Deployment.
pub(super) struct Stateless<'a> {
    pub component: Component,
    pub label: ComponentLabel,
    /// Container name and binary, e.g. `multigateway`.
    pub binary: &'static str,
    pub spec: &'a ComponentSpec,
    pub cell: &'a str,
    pub topo: &'a TopoSpec,
    /// The HTTP port, which the probes use.
    pub http: Port,
    /// Every port with the flag that sets it, HTTP included; all are exposed by the Service.
    pub ports: &'a [(&'static str, Port)],
}

/// The Deployment and Service of `object`.
pub(super) fn deployment_objects<K: Resource<DynamicType = ()>>(
    object: &K,
    stateless: Stateless<'_>,
) -> Result<DeploymentObjects, BuildError> {
    let Stateless {
        component,
        label,
        binary,
        spec,
        cell,
        topo,
        http,
        ports,
    } = stateless;
    let owner = Owner::new(object, label, Some(cell))?;
    let service_ports: Vec<Port> = ports.iter().map(|(_, port)| *port).collect();
    let service = objects::service(&owner, &owner.name, ServiceKind::ClusterIp, &service_ports)?;
    let shape = PodShape::new(component, spec, &owner)?;
    let mut container = shape.container(binary, &shape.image);
    container.command = Some(vec![binary.to_string()]);
    container.args = Some(pod::multigres_args(cell, topo, ports));
    container.ports = Some(pod::container_ports(&service_ports));
    container.resources = shape.resources();
    pod::multigres_probes(&mut container, &http);
    let replicas = shape.replicas;
    let deployment = objects::deployment(&owner, replicas, shape.template(vec![container]))?;
    Ok(DeploymentObjects {
        deployment,
        service,
    })
}
