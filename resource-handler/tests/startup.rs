//! Startup without a usable cluster fails fast with a message saying what to fix.

use multigres_test_support::startup;

const BIN: &str = env!("CARGO_BIN_EXE_resource-handler");

#[test]
fn unreachable_cluster_exits_nonzero_with_a_clear_message() {
    startup::unreachable_cluster_fails_fast(BIN);
}

#[test]
fn missing_kubeconfig_exits_nonzero_with_a_hint() {
    startup::missing_kubeconfig_gives_a_hint(BIN);
}

#[test]
fn invalid_flag_is_refused_by_the_parser() {
    startup::invalid_flag_is_refused(BIN);
}

#[test]
fn help_names_the_environment() {
    startup::help_names_the_environment(BIN);
}
