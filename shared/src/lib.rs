//! Shared machinery of the multigres operators: the custom resource types, their defaults,
//! and (as they land) the traced Kubernetes client, apply/status helpers and telemetry.
//!
//! Both handler binaries depend on this crate only, so `kube`, `k8s_openapi` and the CRD types
//! are decided once and re-exported here.

pub mod admin;
pub mod apply;
pub mod cli;
pub mod client;
pub mod crd;
pub mod defaults;
pub mod kubeconnect;
pub mod leader;
pub mod meta;
pub mod metrics;
pub mod process;
pub mod quantity;
pub mod recent;
pub mod reconcile;
pub mod retry;
pub mod samples;
pub mod status;
pub mod telemetry;
#[doc(hidden)]
pub mod testsupport;
pub mod watch;

pub use k8s_openapi;
pub use kube;
