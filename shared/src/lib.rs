//! Shared machinery of the multigres operators: the custom resource types, their defaults,
//! and (as they land) the traced Kubernetes client, apply/status helpers and telemetry.
//!
//! Both handler binaries depend on this crate only, so `kube`, `k8s_openapi` and the CRD types
//! are decided once and re-exported here.

pub mod cli;
pub mod crd;
pub mod defaults;
pub mod kubeconnect;
pub mod logging;
pub mod meta;
pub mod process;
pub mod samples;
#[doc(hidden)]
pub mod testsupport;

pub use k8s_openapi;
pub use kube;
