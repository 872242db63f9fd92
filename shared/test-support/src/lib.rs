//! Helpers for the operator crates' tests, used only as a dev-dependency: the telemetry test
//! subscribers, throwaway kubeconfigs and the start-up checks every handler binary must pass.

pub use multigres_telemetry::testing::{
    Capture, Spy, scoped_default, span_capture, test_subscriber,
};

use std::path::PathBuf;

/// Writes a kubeconfig whose server is `server` (e.g. a closed port) and returns its path.
/// The file name is unique per process and label, so parallel tests do not collide.
pub fn kubeconfig_for(server: &str, label: &str) -> std::io::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!(
        "multigres-test-kubeconfig-{label}-{}.yaml",
        std::process::id()
    ));
    let yaml = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {server}
    insecure-skip-tls-verify: true
users:
- name: test
  user:
    token: not-a-real-token
contexts:
- name: test
  context: {{cluster: test, user: test}}
current-context: test
"
    );
    std::fs::write(&path, yaml)?;
    Ok(path)
}

/// Startup checks every handler binary must pass; each handler's tests call these with the
/// path of its own executable.
pub mod startup {
    use std::process::{Command, Output};
    use std::time::{Duration, Instant};

    fn run(bin: &str, args: &[&str], kubeconfig: &std::path::Path) -> Output {
        Command::new(bin)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("ADMIN_ADDR", "127.0.0.1:0")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"))
    }

    /// With the API server's port closed, the binary exits 1 within seconds and names the
    /// server it could not reach.
    pub fn unreachable_cluster_fails_fast(bin: &str) {
        // Port 1 on loopback is closed: the connection is refused at once.
        let kubeconfig = super::kubeconfig_for("https://127.0.0.1:1", "unreachable")
            .expect("kubeconfig written");
        let started = Instant::now();
        let out = run(
            bin,
            &["--log-format", "text", "--connect-timeout", "5s"],
            &kubeconfig,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
        assert!(
            stderr.contains("cannot reach the Kubernetes API server at https://127.0.0.1:1"),
            "stderr: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "stderr: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "took {:?}",
            started.elapsed()
        );
    }

    /// Without any kubeconfig the binary exits 1 with one JSON error line telling the user to
    /// set KUBECONFIG, naming the missing file once.
    pub fn missing_kubeconfig_gives_a_hint(bin: &str) {
        let out = run(
            bin,
            &["--log-format", "json"],
            std::path::Path::new("/nonexistent/kubeconfig"),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
        let fatal = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["level"] == "ERROR")
            .unwrap_or_else(|| panic!("no JSON error line in: {stderr}"));
        assert!(
            fatal["error"]
                .as_str()
                .unwrap_or_default()
                .contains("set KUBECONFIG"),
            "{fatal}"
        );
        let named = stderr.matches("/nonexistent/kubeconfig").count();
        assert_eq!(named, 1, "the missing file is named once: {stderr}");
    }

    /// A bad flag value is refused by the parser with exit code 2.
    pub fn invalid_flag_is_refused(bin: &str) {
        let out = Command::new(bin)
            .args(["--log-format", "yaml"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'yaml'"));
    }

    /// `--help` names the environment a user configures besides the flags.
    pub fn help_names_the_environment(bin: &str) {
        let out = Command::new(bin)
            .arg("--help")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
        assert!(
            out.status.success(),
            "{bin} --help exited with {}",
            out.status
        );
        let help = String::from_utf8_lossy(&out.stdout);
        for variable in [
            "KUBECONFIG",
            "RUST_LOG",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_TRACES_SAMPLER",
            "MULTIGRES_TRACES_KEEP_SLOWER_THAN",
            "POD_NAME",
        ] {
            assert!(
                help.contains(variable),
                "{bin} --help does not name {variable}:\n{help}"
            );
        }
    }
}

/// The start-up tests every handler binary must pass, as `#[test]` functions of the calling
/// test crate: `startup_tests!(env!("CARGO_BIN_EXE_<name>"));`.
#[macro_export]
macro_rules! startup_tests {
    ($bin:expr) => {
        #[test]
        fn unreachable_cluster_exits_nonzero_with_a_clear_message() {
            $crate::startup::unreachable_cluster_fails_fast($bin);
        }

        #[test]
        fn missing_kubeconfig_exits_nonzero_with_a_hint() {
            $crate::startup::missing_kubeconfig_gives_a_hint($bin);
        }

        #[test]
        fn invalid_flag_is_refused_by_the_parser() {
            $crate::startup::invalid_flag_is_refused($bin);
        }

        #[test]
        fn help_names_the_environment() {
            $crate::startup::help_names_the_environment($bin);
        }
    };
}
