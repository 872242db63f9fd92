//! The shape MultiGateway and MultiOrch share: a Deployment running one Multigres binary of a
//! cell, and a ClusterIP Service in front of it.

use kube::Resource;
use multigres_api::crd::{ComponentSpec, TopoSpec};
use multigres_api::defaults::Component;
use multigres_api::invalid::InvalidSpec;
use multigres_api::meta::ComponentLabel;

use super::objects::{self, Owner, Port, ServiceKind};
use super::otel::Origin;
use super::pod::{self, PodShape};
use super::{DataPlaneTracing, DeploymentObjects};

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
    /// Flags of this binary alone.
    pub flags: &'a [&'static str],
    /// Trace export of the binary, when on.
    pub tracing: Option<&'a DataPlaneTracing>,
}

/// The Deployment and Service of `object`.
pub(super) fn deployment_objects<K: Resource<DynamicType = ()>>(
    object: &K,
    stateless: Stateless<'_>,
) -> Result<DeploymentObjects, InvalidSpec> {
    let Stateless {
        component,
        label,
        binary,
        spec,
        cell,
        topo,
        http,
        ports,
        flags,
        tracing,
    } = stateless;
    let owner = Owner::new(object, label, Some(cell))?;
    let service_ports: Vec<Port> = ports.iter().map(|(_, port)| *port).collect();
    let service = objects::service(&owner, &owner.name, ServiceKind::ClusterIp, &service_ports)?;
    let shape = PodShape::new(component, spec, &owner)?;
    let mut container = shape.container(binary, &shape.image);
    container.command = Some(vec![binary.to_string()]);
    let mut args = pod::multigres_args(cell, topo, ports);
    // The address others dial, as registered in the topology: a Deployment pod's name does not
    // resolve in DNS, its IP does.
    args.push(format!("--hostname=$({})", pod::POD_IP_ENV));
    args.extend(flags.iter().map(|f| f.to_string()));
    container.args = Some(args);
    container.env = Some(vec![pod::pod_ip_env()]);
    if let Some(tracing) = tracing {
        let origin = Origin {
            namespace: &owner.namespace,
            cluster: owner.cluster(),
            cell,
        };
        tracing.add_env(&mut container, binary, &origin);
    }
    container.ports = Some(pod::container_ports(&service_ports));
    container.resources = shape.resources();
    pod::multigres_probes(&mut container, &http);
    let replicas = shape.replicas;
    let template = shape.template(pod::MULTIGRES_USER, vec![container]);
    let deployment = objects::deployment(&owner, replicas, template)?;
    Ok(DeploymentObjects {
        deployment,
        service,
    })
}
