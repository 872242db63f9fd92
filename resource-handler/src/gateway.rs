//! MultiGateway → Deployment, Service.

use multigres_api::crd::{ComponentStatus, MultiGateway};

use crate::builders::{self, BuildContext, BuildError, DeploymentObjects};
use crate::component::{Component, Workload, WorkloadKind, Workloads};

impl Component for MultiGateway {
    const WORKLOAD: WorkloadKind = WorkloadKind::Deployment;

    fn build(&self, ctx: &BuildContext) -> Result<Workloads, BuildError> {
        let DeploymentObjects {
            deployment,
            service,
        } = builders::gateway(self, ctx)?;
        Ok(Workloads {
            workload: Workload::Deployment(deployment),
            services: vec![service],
            config_maps: Vec::new(),
            disruption_budgets: Vec::new(),
        })
    }

    fn current_status(&self) -> Option<&ComponentStatus> {
        self.status.as_ref()
    }
}
