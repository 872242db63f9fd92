//! resource-handler: reconciles Etcd, MultiGateway, MultiOrch and MultiPooler objects into
//! StatefulSets, Deployments and Services.

use std::process::ExitCode;

use clap::Parser;

mod builders;
mod component;
mod context;
mod error;
mod reconcile;
mod run;
mod status;
mod volumes;

#[tokio::main]
async fn main() -> ExitCode {
    let args = run::Args::parse();
    multigres_runtime::process::exit_code(args.run().await)
}
