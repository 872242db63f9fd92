//! Etcd → StatefulSet, headless peer Service, client Service.

use multigres_api::crd::{ComponentStatus, Etcd};

use crate::builders::{self, BuildContext, BuildError, EtcdObjects};
use crate::component::{Component, Workload, WorkloadKind, Workloads};

impl Component for Etcd {
    const WORKLOAD: WorkloadKind = WorkloadKind::StatefulSet;

    /// etcd is not a Multigres process: the context (trace export) does not apply.
    fn build(&self, _ctx: &BuildContext) -> Result<Workloads, BuildError> {
        let EtcdObjects {
            statefulset,
            peer_service,
            client_service,
        } = builders::etcd(self)?;
        Ok(Workloads {
            workload: Workload::StatefulSet(statefulset),
            services: vec![peer_service, client_service],
            config_maps: Vec::new(),
            disruption_budgets: Vec::new(),
        })
    }

    fn current_status(&self) -> Option<&ComponentStatus> {
        self.status.as_ref()
    }

    fn adopt_volumes(&self) -> bool {
        self.spec.adopt_volumes.unwrap_or(false)
    }
}
