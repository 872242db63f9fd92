//! Pure builders: a component object and the handler's [`BuildContext`] in, the Kubernetes
//! objects it should have out.
//!
//! Nothing here does I/O. Each builder validates what the CRD schema cannot express (image
//! references, quantities, the lengths of derived names), then returns objects that contain
//! only the fields the resource-handler means to own: they are sent as server-side apply
//! patches, so an unset `Option` stays `None` and no field is set to an empty value.
//!
//! | Kind | Objects |
//! |---|---|
//! | `Etcd` X | StatefulSet X, headless Service `X-peer`, Service `X-client` |
//! | `MultiGateway` G | Deployment G, Service G |
//! | `MultiOrch` O | Deployment O, Service O |
//! | `MultiPooler` P | StatefulSet P (multipooler + postgres sidecar), headless Service P, ConfigMap `P-pg-hba`, PodDisruptionBudget P |
//!
//! Fields Kubernetes will not let us change on an existing object: a StatefulSet's `selector`,
//! `serviceName`, `podManagementPolicy` and `volumeClaimTemplates`, and a Deployment's
//! `selector`. The builders derive them only from the object's name, its uid and `spec.storage`
//! (which the CRD makes immutable), so they never change for an existing object.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use multigres_api::crd::{ObservabilitySpec, TracingMode};

mod etcd;
mod gateway;
mod objects;
mod orch;
mod otel;
mod pg_hba;
mod pod;
mod pooler;
mod stateless;
mod validate;

#[cfg(test)]
mod data_plane_tests;
#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod otel_tests;
#[cfg(test)]
mod volume_tests;

// The builders are reached through each kind's `Component` impl; the tests call them directly.
pub use otel::DataPlaneTracing;
#[cfg(test)]
pub(crate) use {etcd::etcd, gateway::gateway, orch::orch, pooler::pooler};

/// What the builders take besides the object: this handler's settings, decided at start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BuildContext {
    /// The trace export of the Multigres containers; `None` when the handler exports no traces.
    pub tracing: Option<DataPlaneTracing>,
}

/// The context of a handler that exports no traces, for tests.
#[cfg(test)]
const UNTRACED: BuildContext = BuildContext { tracing: None };

impl BuildContext {
    /// The trace export of a component whose spec says `observability`: none when the handler
    /// exports nothing or the cluster turned tracing off.
    fn tracing(&self, observability: Option<&ObservabilitySpec>) -> Option<&DataPlaneTracing> {
        match ObservabilitySpec::tracing_mode(observability) {
            TracingMode::Enabled => self.tracing.as_ref(),
            TracingMode::Disabled => None,
        }
    }
}

/// What an `Etcd` turns into.
#[derive(Clone, Debug, PartialEq)]
pub struct EtcdObjects {
    pub statefulset: StatefulSet,
    /// Headless; gives members stable DNS names and carries peer traffic.
    pub peer_service: Service,
    /// What clients (the Multigres components) connect to.
    pub client_service: Service,
}

/// What a `MultiGateway` or a `MultiOrch` turns into.
#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentObjects {
    pub deployment: Deployment,
    pub service: Service,
}

/// What a `MultiPooler` turns into.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolerObjects {
    pub statefulset: StatefulSet,
    /// Headless; the StatefulSet's governing Service.
    pub service: Service,
    /// pgctld's pg_hba.conf template.
    pub config_map: ConfigMap,
    /// One pod of the StatefulSet down at a time.
    pub disruption_budget: PodDisruptionBudget,
}
