//! MultiGateway G → Deployment G and Service G (HTTP 15100, gRPC 15170, PostgreSQL 5432).

use multigres_api::crd::{MultiGateway, MultiGatewaySpec};
use multigres_api::defaults::Component;
use multigres_api::invalid::InvalidSpec;
use multigres_api::meta::ComponentLabel;

use super::objects::Port;
use super::stateless::{self, Stateless};
use super::{BuildContext, DeploymentObjects};

use crate::component::{Workload, WorkloadKind, Workloads};

const HTTP: Port = Port {
    name: "http",
    number: 15100,
};
const GRPC: Port = Port {
    name: "grpc",
    number: 15170,
};
const POSTGRES: Port = Port {
    name: "postgres",
    number: 5432,
};

/// The objects of `gateway`.
pub fn gateway(
    gateway: &MultiGateway,
    ctx: &BuildContext,
) -> Result<DeploymentObjects, InvalidSpec> {
    let MultiGatewaySpec {
        component,
        cell,
        topo,
        observability,
    } = &gateway.spec;
    stateless::deployment_objects(
        gateway,
        Stateless {
            component: Component::Gateway,
            label: ComponentLabel::Gateway,
            binary: "multigateway",
            spec: component,
            cell,
            topo,
            http: HTTP,
            ports: &[
                ("http-port", HTTP),
                ("grpc-port", GRPC),
                ("pg-port", POSTGRES),
            ],
            flags: &[],
            tracing: ctx.tracing(observability.as_ref()),
        },
    )
}

impl crate::component::Component for MultiGateway {
    const WORKLOAD: WorkloadKind = WorkloadKind::Deployment;
    const LABEL: ComponentLabel = ComponentLabel::Gateway;

    fn build(&self, ctx: &BuildContext) -> Result<Workloads, InvalidSpec> {
        let DeploymentObjects {
            deployment,
            service,
        } = gateway(self, ctx)?;
        Ok(Workloads {
            workload: Workload::Deployment(deployment),
            services: vec![service],
            config_maps: Vec::new(),
            disruption_budgets: Vec::new(),
        })
    }
}
