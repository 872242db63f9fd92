//! Where the control plane and trace backend of a test run are.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Endpoints of the running test environment.
#[derive(Clone, Debug)]
pub struct TestEnv {
    /// Admin kubeconfig (client certificate in `system:masters`).
    pub kubeconfig: PathBuf,
    /// Tempo's HTTP API, e.g. `http://127.0.0.1:3200`.
    pub tempo_url: String,
    /// OTLP/gRPC receiver, e.g. `http://127.0.0.1:4317`.
    pub otlp_grpc_endpoint: String,
    /// OTLP/HTTP receiver, e.g. `http://127.0.0.1:4318`.
    pub otlp_http_endpoint: String,
    /// The same OTLP/HTTP receiver as the real node's pods reach it, e.g.
    /// `http://198.18.0.1:4318`: what a resource-handler passes to the data plane.
    pub data_plane_otlp_http_endpoint: String,
    /// Where the control-plane binaries (and `kubectl`) are, when `cluster-up` built them.
    pub bin_dir: Option<PathBuf>,
}

/// The repository root (the directory above `e2e/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The file `cluster-up.sh` writes: `KEY=value` lines.
pub fn env_file() -> PathBuf {
    repo_root().join("e2e/.work/env")
}

impl TestEnv {
    /// Reads `e2e/.work/env`, with process environment variables taking precedence. Panics with
    /// what to do when neither names a cluster: tests cannot run without one.
    pub fn load() -> TestEnv {
        let file = std::fs::read_to_string(env_file())
            .map(|text| parse_env_file(&text))
            .unwrap_or_default();
        let get = |key: &str| std::env::var(key).ok().or_else(|| file.get(key).cloned());
        let use_existing = std::env::var("E2E_USE_EXISTING").is_ok_and(|v| v == "1");
        let kubeconfig = if use_existing {
            get("KUBECONFIG")
        } else {
            file.get("KUBECONFIG").cloned()
        };
        let Some(kubeconfig) = kubeconfig else {
            panic!(
                "no test cluster: run `make cluster-up` (writes {}), or set E2E_USE_EXISTING=1 and KUBECONFIG",
                env_file().display()
            )
        };
        TestEnv {
            kubeconfig: PathBuf::from(kubeconfig),
            tempo_url: get("TEMPO_URL").unwrap_or_else(|| "http://127.0.0.1:3200".into()),
            otlp_grpc_endpoint: get("OTLP_GRPC_ENDPOINT")
                .unwrap_or_else(|| "http://127.0.0.1:4317".into()),
            otlp_http_endpoint: get("OTLP_HTTP_ENDPOINT")
                .unwrap_or_else(|| "http://127.0.0.1:4318".into()),
            data_plane_otlp_http_endpoint: get("DATA_PLANE_OTLP_HTTP_ENDPOINT")
                .unwrap_or_else(|| "http://198.18.0.1:4318".into()),
            bin_dir: get("MULTIGRES_E2E_BIN").map(PathBuf::from),
        }
    }
}

impl TestEnv {
    /// `kubectl` with the admin kubeconfig: the one `cluster-up` built, else the one on PATH.
    pub fn kubectl(&self) -> std::process::Command {
        let program = self
            .bin_dir
            .as_ref()
            .map(|d| d.join("kubectl"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("kubectl"));
        let mut cmd = std::process::Command::new(program);
        cmd.env("KUBECONFIG", &self.kubeconfig);
        cmd
    }

    /// `kubectl apply <how> <path>` (`-f` a file, `-k` a kustomization) as the admin; panics
    /// with kubectl's output if it fails.
    pub fn kubectl_apply(&self, how: &str, path: &std::path::Path) {
        let out = self
            .kubectl()
            .args(["apply", how])
            .arg(path)
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl apply {how} {} failed:\n{}\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.trim().trim_matches(['"', '\'']).to_string(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_lines_parse_with_or_without_export_and_quotes() {
        let map =
            parse_env_file("# comment\nexport KUBECONFIG=\"/a b/kc\"\nTEMPO_URL=http://x:1\n\n");
        assert_eq!(map["KUBECONFIG"], "/a b/kc");
        assert_eq!(map["TEMPO_URL"], "http://x:1");
        assert_eq!(map.len(), 2);
    }
}
