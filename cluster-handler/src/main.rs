//! cluster-handler: Reconciles MultigresCluster and Cell objects into Multigres component objects.

use std::process::ExitCode;

use clap::Parser;

mod run;

#[tokio::main]
async fn main() -> ExitCode {
    let args = run::Args::parse();
    shared::process::exit_code(args.run().await)
}
