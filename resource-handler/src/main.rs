//! resource-handler: Reconciles Etcd, MultiGateway, MultiOrch and MultiPooler objects into workloads.

use std::process::ExitCode;

use clap::Parser;

mod run;

#[tokio::main]
async fn main() -> ExitCode {
    let args = run::Args::parse();
    shared::process::exit_code(args.run().await)
}
