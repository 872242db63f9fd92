//! Test harness for the end-to-end suites: where the local control plane is, a client for it,
//! a fresh namespace per test, the CRDs installed, waiting on conditions, and Tempo's query API.
//!
//! The control plane is started by `make cluster-up` (`e2e/scripts/cluster-up.sh`), which writes
//! `e2e/.work/env`. To run against another cluster, set `KUBECONFIG` (and `TEMPO_URL` for the
//! tracing tests) and `E2E_USE_EXISTING=1`.

pub mod cluster;
pub mod data_plane;
pub mod env;
pub mod identity;
pub mod k8s;
pub mod outage;
pub mod process;
pub mod real_node;
pub mod tempo;
pub mod wait;

pub use env::TestEnv;
pub use k8s::{TestNamespace, install_crds, with_namespace};
pub use wait::wait_until;
