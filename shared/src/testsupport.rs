//! Helpers for the handlers' own tests (not used at run time).

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

    /// Without any kubeconfig the binary exits 1 with a JSON error line telling the user to
    /// set KUBECONFIG.
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
            "POD_NAME",
        ] {
            assert!(
                help.contains(variable),
                "{bin} --help does not name {variable}:\n{help}"
            );
        }
    }
}

/// Makes `subscriber` this thread's default until the guard drops, such that this thread's spans
/// reach it whatever other test threads do meanwhile. tracing caches per call site whether anyone
/// listens, for the whole process; while only one dispatcher exists, a call site first reached on
/// a thread without a subscriber is cached as "never", and a test that checks that call site's
/// spans sees none. A dispatcher that lives as long as the process makes every later call site
/// ask all live subscribers, and the rebuild clears what was cached before this one came.
pub fn scoped_default(
    subscriber: impl tracing::Subscriber + Send + Sync + 'static,
) -> tracing::subscriber::DefaultGuard {
    static ANCHOR: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    ANCHOR.get_or_init(|| tracing::Dispatch::new(tracing_subscriber::registry()));
    let guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    guard
}

/// A subscriber that exports spans to memory, for tests in other crates (feature
/// `test-support`). Returns a function
/// listing the finished spans, and the subscriber (install it with [`scoped_default`] on a
/// current-thread runtime).
#[cfg(feature = "test-support")]
pub fn span_capture() -> (
    impl Fn() -> Vec<opentelemetry_sdk::trace::SpanData>,
    impl tracing::Subscriber + Send + Sync,
) {
    use opentelemetry::trace::TracerProvider;
    use tracing_subscriber::prelude::*;
    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = crate::telemetry::otel_layer(provider.tracer("test"));
    let finished = move || {
        let _keep = &provider;
        exporter.get_finished_spans().unwrap_or_default()
    };
    (finished, tracing_subscriber::registry().with(layer))
}
