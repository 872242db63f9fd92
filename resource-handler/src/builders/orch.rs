//! MultiOrch O → Deployment O and Service O (HTTP 15300, gRPC 15370).

use multigres_api::crd::{MultiOrch, MultiOrchSpec};
use multigres_api::defaults::Component;
use multigres_api::invalid::InvalidSpec;
use multigres_api::meta::ComponentLabel;

use super::objects::Port;
use super::stateless::{self, Stateless};
use super::{BuildContext, DeploymentObjects};

use crate::component::{Workload, WorkloadKind, Workloads};

const HTTP: Port = Port {
    name: "http",
    number: 15300,
};
const GRPC: Port = Port {
    name: "grpc",
    number: 15370,
};

/// The shard multiorch manages. v0.1.0 exits without it ("watch-targets is required",
/// go/services/multiorch/init.go), and serves only database `postgres`, table group `default`,
/// shard `0-inf`.
pub(super) const WATCH_TARGETS: &str = "--watch-targets=postgres/default/0-inf";

/// The objects of `orch`.
pub fn orch(orch: &MultiOrch, ctx: &BuildContext) -> Result<DeploymentObjects, InvalidSpec> {
    let MultiOrchSpec {
        component,
        cell,
        topo,
        observability,
    } = &orch.spec;
    stateless::deployment_objects(
        orch,
        Stateless {
            component: Component::Orch,
            label: ComponentLabel::Orch,
            binary: "multiorch",
            spec: component,
            cell,
            topo,
            http: HTTP,
            ports: &[("http-port", HTTP), ("grpc-port", GRPC)],
            flags: &[WATCH_TARGETS],
            tracing: ctx.tracing(observability.as_ref()),
        },
    )
}

impl crate::component::Component for MultiOrch {
    const WORKLOAD: WorkloadKind = WorkloadKind::Deployment;
    const LABEL: ComponentLabel = ComponentLabel::Orch;

    fn build(&self, ctx: &BuildContext) -> Result<Workloads, InvalidSpec> {
        let DeploymentObjects {
            deployment,
            service,
        } = orch(self, ctx)?;
        Ok(Workloads {
            workload: Workload::Deployment(deployment),
            services: vec![service],
            config_maps: Vec::new(),
            disruption_budgets: Vec::new(),
        })
    }
}
