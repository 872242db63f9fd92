//! cluster-handler: reconciles MultigresCluster and Cell objects into Multigres component
//! objects (Etcd, Cell, MultiGateway, MultiOrch, MultiPooler), fanning each parent's children
//! out in parallel tokio tasks.

use std::process::ExitCode;

use clap::Parser;

mod aggregate;
mod backup;
mod cell;
mod cluster;
mod context;
mod error;
mod password;
mod run;
mod spec;
mod topology;

#[tokio::main]
async fn main() -> ExitCode {
    let args = run::Args::parse();
    multigres_runtime::process::exit_code(args.run().await)
}
