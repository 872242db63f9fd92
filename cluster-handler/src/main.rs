//! The cluster-handler binary: parses its flags and runs until SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;
use cluster_handler::run::Args;

#[tokio::main]
async fn main() -> ExitCode {
    multigres_runtime::process::exit_code(Args::parse().run().await)
}
