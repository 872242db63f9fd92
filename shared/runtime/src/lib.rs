//! What every multigres controller process runs on: start-up and shutdown, the admin server,
//! the traced Kubernetes client, server-side apply and status writes, metrics, leader election
//! and shared watches.

pub mod admin;
pub mod apply;
pub mod cli;
pub mod client;
pub mod events;
pub mod failure;
pub mod fanout;
pub mod gone;
pub mod kubeconnect;
pub mod leader;
pub mod metrics;
pub mod process;
pub mod recent;
pub mod reconcile;
pub mod retry;
pub mod status;
pub mod watch;
