//! MultiPooler → StatefulSet (pooler + postgres sidecar), headless Service, pg_hba ConfigMap,
//! PodDisruptionBudget.

use multigres_api::crd::{ComponentStatus, MultiPooler};

use crate::builders::{self, BuildContext, BuildError, PoolerObjects};
use crate::component::{Component, Workload, WorkloadKind, Workloads};

impl Component for MultiPooler {
    const WORKLOAD: WorkloadKind = WorkloadKind::StatefulSet;

    fn build(&self, ctx: &BuildContext) -> Result<Workloads, BuildError> {
        let PoolerObjects {
            statefulset,
            service,
            config_map,
            disruption_budget,
        } = builders::pooler(self, ctx)?;
        Ok(Workloads {
            workload: Workload::StatefulSet(statefulset),
            services: vec![service],
            config_maps: vec![config_map],
            disruption_budgets: vec![disruption_budget],
        })
    }

    fn current_status(&self) -> Option<&ComponentStatus> {
        self.status.as_ref()
    }

    fn adopt_volumes(&self) -> bool {
        self.spec.adopt_volumes.unwrap_or(false)
    }
}
