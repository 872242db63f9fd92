//! cluster-handler: reconciles MultigresCluster and Cell objects into Multigres component
//! objects (Etcd, Cell, MultiGateway, MultiOrch, MultiPooler), fanning each parent's children
//! out in parallel tokio tasks.

mod aggregate;
mod backup;
mod cell;
mod cluster;
mod context;
mod error;
mod password;
pub mod run;
mod topology;
