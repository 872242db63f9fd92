//! resource-handler: reconciles Etcd, MultiGateway, MultiOrch and MultiPooler objects into
//! StatefulSets, Deployments and Services.

mod builders;
mod component;
mod context;
mod error;
mod pods;
mod reconcile;
pub mod run;
mod status;
mod volumes;
