//! MultiPooler → StatefulSet (pooler + postgres), headless Service.

use shared::crd::{ComponentStatus, MultiPooler};

use crate::builders::{self, BuildContext, BuildError, PoolerObjects};
use crate::component::{Component, Workload, WorkloadKind, Workloads};

impl Component for MultiPooler {
    const WORKLOAD: WorkloadKind = WorkloadKind::StatefulSet;

    fn build(&self, ctx: &BuildContext) -> Result<Workloads, BuildError> {
        let PoolerObjects {
            statefulset,
            service,
        } = builders::pooler(self, ctx)?;
        Ok(Workloads {
            workload: Workload::StatefulSet(statefulset),
            services: vec![service],
        })
    }

    fn current_status(&self) -> Option<&ComponentStatus> {
        self.status.as_ref()
    }
}
