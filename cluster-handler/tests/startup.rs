//! Startup without a usable cluster fails fast with a message saying what to fix.

multigres_test_support::startup_tests!(env!("CARGO_BIN_EXE_cluster-handler"));
