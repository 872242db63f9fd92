//! Handler binaries as real processes: started with the test cluster's kubeconfig, a free
//! admin port and a log file per process, scraped over `/metrics`, stopped on drop.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::env::{TestEnv, repo_root};
use crate::wait::wait_until;

/// Where cargo put the binaries (`make e2e` builds them before the tests run).
pub fn binary_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    // `MULTIGRES_E2E_PROFILE=release` runs optimised builds (the benchmarks do).
    let profile = std::env::var("MULTIGRES_E2E_PROFILE").unwrap_or_else(|_| "debug".into());
    let path = target.join(profile).join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p cluster-handler -p resource-handler` (make e2e does)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// A running handler process; killed when dropped.
pub struct Handler {
    child: Child,
    pid: u32,
    pub name: String,
    pub admin: SocketAddr,
    pub log_path: PathBuf,
}

/// How to start a handler.
#[derive(Clone, Debug, Default)]
pub struct HandlerOptions {
    /// `--namespace`: watch only this namespace (tests run in parallel, one namespace each).
    pub namespace: Option<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Handler {
    /// Starts binary `bin` (`cluster-handler` or `resource-handler`) against the test cluster.
    pub fn start(bin: &str, env: &TestEnv, options: HandlerOptions) -> Handler {
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let logs = repo_root().join("e2e/.work/logs");
        std::fs::create_dir_all(&logs).unwrap_or_else(|e| panic!("{}: {e}", logs.display()));
        let scope = options.namespace.clone().unwrap_or_else(|| "all".into());
        let log_path = logs.join(format!("{bin}-{scope}-{}.log", admin.port()));
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("{}: {e}", log_path.display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("{}: {e}", log_path.display()));
        let mut cmd = Command::new(binary_path(bin));
        cmd.args(["--log-format", "json", "--admin-addr", &admin.to_string()])
            .env("KUBECONFIG", &env.kubeconfig)
            .env("RUST_LOG", "info")
            .env_remove("KUBERNETES_SERVICE_HOST")
            // kwok nodes run no etcd to register cells in; a test on the real node turns
            // topology management back on (`real_node::topology_env`).
            .env("MANAGE_TOPOLOGY", "false")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true);
        if let Some(ns) = &options.namespace {
            cmd.args(["--namespace", ns]);
        }
        cmd.args(&options.args);
        cmd.envs(options.env.iter().map(|(k, v)| (k, v)));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let pid = child
            .id()
            .unwrap_or_else(|| panic!("{bin} exited before its pid was read"));
        Handler {
            child,
            pid,
            name: bin.to_string(),
            admin,
            log_path,
        }
    }

    /// Waits until `/readyz` answers 200; panics with the log tail if the process exits.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let url = format!("http://{}/readyz", self.admin);
        let name = self.name.clone();
        let http = reqwest::Client::new();
        let what = format!("{name} to be ready");
        let log = self.log_path.clone();
        let pid = self.pid;
        wait_until(&what, timeout, || {
            let exited = self.child.try_wait().ok().flatten();
            let (http, url, log, name) = (http.clone(), url.clone(), log.clone(), name.clone());
            async move {
                if let Some(status) = exited {
                    panic!(
                        "{name} (pid {pid}) exited with {status}:\n{}",
                        tail(&log, 30)
                    );
                }
                match http.get(&url).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("/readyz: {}", r.status())),
                    Err(e) => Err(format!("/readyz: {e}")),
                }
            }
        })
        .await;
    }

    /// The process's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.admin);
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => panic!("GET {url}: {e}\n{}", self.log_tail(30)),
        }
    }

    /// Kubernetes API writes (create, update, patch, delete) the process has sent so far to
    /// the objects it manages (Lease renewals of leader election are not counted).
    pub async fn api_writes(&self) -> u64 {
        api_writes(&self.metrics().await)
    }

    /// Whether the process reports itself as the active replica (`multigres_leader` 1).
    pub async fn is_leader(&self) -> bool {
        metric_sum(&self.metrics().await, "multigres_leader", |_| true) == 1
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: the process dies without releasing anything.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Reconciles the process has run so far (all controllers).
    pub async fn reconciles(&self) -> u64 {
        metric_sum(&self.metrics().await, "multigres_reconciles_total", |_| {
            true
        })
    }

    /// The last `n` lines of the process log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log_path, n)
    }

    /// Every log line, parsed as JSON where possible.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Sends SIGTERM and waits for the exit status (SIGKILL after `timeout`, then None).
    pub async fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        signal(self.pid, Signal::SIGTERM);
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = self.child.kill().await;
                None
            }
        }
    }
}

/// Sends `sig` to `pid`; a process that is already gone is not an error here.
pub fn signal(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

fn tail(path: &PathBuf, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The samples of metric `name` as (label text `{...}`, value).
fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, u64)> + 'a {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(move |l| {
            let (series, value) = l.rsplit_once(' ')?;
            let labels = series.strip_prefix(name)?;
            (labels.is_empty() || labels.starts_with('{')).then_some((labels, value))
        })
        .filter_map(|(labels, value)| Some((labels, value.parse::<f64>().ok()? as u64)))
}

/// Writes to the API server other than leader election's, from a handler's /metrics text.
pub fn api_writes(metrics: &str) -> u64 {
    metric_sum(metrics, "multigres_api_requests_total", |labels| {
        !labels.contains(r#"resource="leases""#)
            && ["create", "update", "patch", "delete", "deletecollection"]
                .iter()
                .any(|v| labels.contains(&format!("verb=\"{v}\"")))
    })
}

/// Sum of the samples of metric `name` whose label text (`{...}`) passes `filter`.
pub fn metric_sum(text: &str, name: &str, filter: impl Fn(&str) -> bool) -> u64 {
    samples(text, name)
        .filter(|(labels, _)| filter(labels))
        .map(|(_, v)| v)
        .sum()
}

/// Adds the samples of metric `name` whose label text passes `filter` to `into`, keyed by the
/// value of their label `label` (e.g. requests by `resource`).
pub fn metric_sum_by(
    text: &str,
    name: &str,
    label: &str,
    filter: impl Fn(&str) -> bool,
    into: &mut std::collections::BTreeMap<String, u64>,
) {
    let key = format!("{label}=\"");
    for (labels, value) in samples(text, name).filter(|(labels, _)| filter(labels)) {
        if let Some((_, rest)) = labels.split_once(&key)
            && let Some((found, _)) = rest.split_once('"')
        {
            *into.entry(found.to_string()).or_default() += value;
        }
    }
}

/// Starts `bin` (watching only `ns` when given) with `args` and extra `env`, and waits until it
/// is ready.
pub async fn start_handler(
    bin: &str,
    ns: Option<&str>,
    args: &[&str],
    env: Vec<(String, String)>,
) -> Handler {
    let test_env = TestEnv::load();
    let mut handler = Handler::start(
        bin,
        &test_env,
        HandlerOptions {
            namespace: ns.map(str::to_string),
            args: args.iter().map(|a| a.to_string()).collect(),
            env,
        },
    );
    handler.wait_ready(Duration::from_secs(60)).await;
    handler
}

/// The environment that makes a handler export spans over OTLP/gRPC to `endpoint`, in batches
/// sent every 500 ms (so tests see spans quickly).
pub fn otlp_env(endpoint: &str) -> Vec<(String, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "500".into()),
    ]
}

/// The environment that makes a resource-handler export spans over OTLP/HTTP to `endpoint` (as
/// [`otlp_env`], batches every 500 ms) and give the Multigres pods `data_plane_endpoint`, the same
/// receiver as the pods reach it (`TestEnv::data_plane_otlp_http_endpoint`).
pub fn data_plane_otlp_env(endpoint: &str, data_plane_endpoint: &str) -> Vec<(String, String)> {
    let mut env = otlp_env(endpoint);
    env.extend([
        ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "http/protobuf".into()),
        (
            "DATA_PLANE_OTLP_ENDPOINT".into(),
            data_plane_endpoint.to_string(),
        ),
    ]);
    env
}

/// The resident set size of the process, in KiB (from /proc).
pub fn rss_kib(handler: &Handler) -> u64 {
    proc_status_kib(handler.pid(), "VmRSS:")
}

/// The peak resident set size of the process so far, in KiB.
pub fn peak_rss_kib(handler: &Handler) -> u64 {
    proc_status_kib(handler.pid(), "VmHWM:")
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// What the kernel counts for a process or thread in /proc/<pid>/stat.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcStat {
    /// CPU time in user mode, seconds.
    pub user_s: f64,
    /// CPU time in the kernel on the process's behalf (system calls, page faults), seconds.
    pub system_s: f64,
    /// Page faults served without I/O (first touch of memory the allocator got from the kernel).
    pub minor_faults: u64,
}

impl ProcStat {
    /// User + system CPU time, seconds.
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.system_s
    }

    /// What was counted between `start` and `self`.
    pub fn since(&self, start: ProcStat) -> ProcStat {
        ProcStat {
            user_s: self.user_s - start.user_s,
            system_s: self.system_s - start.system_s,
            minor_faults: self.minor_faults.saturating_sub(start.minor_faults),
        }
    }

    /// Parses a `stat` line; zeros for whatever cannot be read.
    fn parse(stat: &str) -> ProcStat {
        // Fields after the command name (which is in parentheses and may contain spaces):
        // minflt is field 10 of the line, utime and stime 14 and 15 (8, 12, 13 after the name).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |i: usize| -> u64 {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        ProcStat {
            user_s: field(11) as f64 / 100.0,
            system_s: field(12) as f64 / 100.0,
            minor_faults: field(7),
        }
    }

    fn read(path: &Path) -> ProcStat {
        ProcStat::parse(&std::fs::read_to_string(path).unwrap_or_default())
    }
}

/// The process's CPU time and page faults so far (from /proc/<pid>/stat).
pub fn proc_stat(handler: &Handler) -> ProcStat {
    ProcStat::read(Path::new(&format!("/proc/{}/stat", handler.pid())))
}

/// CPU time of the process's threads whose name starts with `prefix` (from
/// /proc/<pid>/task/*/stat), e.g. the span exporter's own thread.
pub fn thread_cpu_seconds(handler: &Handler, prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", handler.pid())) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.starts_with(prefix))
        })
        .map(|task| ProcStat::read(&task.path().join("stat")).cpu_s())
        .sum()
}

/// Starts `bin` watching only namespace `ns` with a short resync, and waits until it is ready.
pub async fn start_in_namespace(bin: &str, ns: &str, resync: &str) -> Handler {
    let env = TestEnv::load();
    let mut handler = Handler::start(
        bin,
        &env,
        HandlerOptions {
            namespace: Some(ns.to_string()),
            args: vec!["--resync".into(), resync.into()],
            ..Default::default()
        },
    );
    handler.wait_ready(Duration::from_secs(60)).await;
    handler
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_times_and_faults_after_a_command_name_with_spaces_and_parentheses() {
        let line = "42 (tokio (worker) 1) S 1 42 42 0 -1 4194560 1234 0 5 0 250 75 0 0 20 0 9 0";
        assert_eq!(
            ProcStat::parse(line),
            ProcStat {
                user_s: 2.5,
                system_s: 0.75,
                minor_faults: 1234
            }
        );
        assert_eq!(ProcStat::parse("gone"), ProcStat::default());
        let later = ProcStat::parse(
            "42 (tokio (worker) 1) S 1 42 42 0 -1 4194560 1300 0 5 0 300 100 0 0 20 0 9 0",
        );
        assert_eq!(
            later.since(ProcStat::parse(line)),
            ProcStat {
                user_s: 0.5,
                system_s: 0.25,
                minor_faults: 66
            }
        );
    }

    #[test]
    fn the_data_plane_env_exports_over_http_and_names_the_pods_endpoint() {
        let env = data_plane_otlp_env("http://127.0.0.1:4318", "http://198.18.0.1:4318");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            Some("http://127.0.0.1:4318")
        );
        assert_eq!(get("OTEL_EXPORTER_OTLP_PROTOCOL"), Some("http/protobuf"));
        assert_eq!(
            get("DATA_PLANE_OTLP_ENDPOINT"),
            Some("http://198.18.0.1:4318")
        );
    }

    #[test]
    fn sums_matching_samples_only() {
        let text = "# HELP x\nmultigres_api_requests_total{verb=\"patch\",resource=\"a\"} 2\nmultigres_api_requests_total{verb=\"get\",resource=\"a\"} 5\nmultigres_api_requests_total{verb=\"patch\",resource=\"b\"} 1\nother 9\n";
        assert_eq!(
            metric_sum(text, "multigres_api_requests_total", |l| l
                .contains("patch")),
            3
        );
        assert_eq!(
            metric_sum(text, "multigres_api_requests_total", |_| true),
            8
        );
    }

    #[test]
    fn sums_by_label_value() {
        let text = "multigres_api_requests_total{verb=\"patch\",resource=\"etcds/status\"} 2\nmultigres_api_requests_total{verb=\"get\",resource=\"etcds/status\"} 5\nmultigres_api_requests_total{verb=\"patch\",resource=\"services\"} 1\n";
        let mut by = std::collections::BTreeMap::new();
        // Twice, as the bench does for its two handlers: counts add up.
        for _ in 0..2 {
            metric_sum_by(
                text,
                "multigres_api_requests_total",
                "resource",
                |l| l.contains("patch"),
                &mut by,
            );
        }
        assert_eq!(
            by,
            [("etcds/status".to_string(), 4), ("services".to_string(), 2)].into()
        );
    }
}
