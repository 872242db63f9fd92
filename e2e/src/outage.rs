//! Taking the local control plane's API server away and bringing it back, for outage tests.
//! Works on the processes `cluster-up.sh` started (pid files under `e2e/.work/cluster/pids`).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::env::repo_root;
use crate::process::signal;
use crate::wait_until;

fn work() -> PathBuf {
    repo_root().join("e2e/.work")
}

fn pid_file() -> PathBuf {
    work().join("cluster/pids/kube-apiserver.pid")
}

/// The command line, environment and directory of a running process, read from /proc.
struct Launch {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
}

fn nul_separated(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn launch_of(pid: u32) -> Launch {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let argv =
        nul_separated(&std::fs::read(proc.join("cmdline")).expect("cmdline of the API server"));
    let env =
        nul_separated(&std::fs::read(proc.join("environ")).expect("environ of the API server"))
            .into_iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
    let cwd = std::fs::read_link(proc.join("cwd")).expect("cwd of the API server");
    Launch { argv, env, cwd }
}

fn running_pid() -> u32 {
    let text = std::fs::read_to_string(pid_file()).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (is the local control plane up?)",
            pid_file().display()
        )
    });
    text.trim().parse().expect("a pid")
}

/// Stops kube-apiserver (SIGTERM, then SIGKILL after 10 s), keeps it down for `down`, and starts
/// it again with the same command line and environment; returns once `/readyz` answers through
/// `client`. Everything else in the control plane keeps running.
pub async fn restart_apiserver(client: &kube::Client, down: Duration) {
    let pid = running_pid();
    let launch = launch_of(pid);
    signal(pid, Signal::SIGTERM);
    let gone = wait_until(
        "kube-apiserver to exit",
        Duration::from_secs(15),
        || async move {
            if PathBuf::from(format!("/proc/{pid}")).exists() {
                Err("still running".to_string())
            } else {
                Ok(())
            }
        },
    );
    if tokio::time::timeout(Duration::from_secs(12), gone)
        .await
        .is_err()
    {
        signal(pid, Signal::SIGKILL);
    }
    // The outage itself: a fixed span of time is the point here, not a wait for a condition.
    tokio::time::sleep(down).await;
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(work().join("logs/kube-apiserver.log"))
        .expect("apiserver log");
    let mut cmd = Command::new(&launch.argv[0]);
    cmd.args(&launch.argv[1..])
        .env_clear()
        .envs(launch.env)
        .current_dir(&launch.cwd)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        // Its own session, like cluster-up.sh's setsid, so it outlives the test process.
        .process_group(0);
    let child = cmd.spawn().expect("restarting kube-apiserver");
    std::fs::write(pid_file(), format!("{}\n", child.id())).expect("pid file");
    std::mem::forget(child);
    wait_until(
        "kube-apiserver to be ready again",
        Duration::from_secs(90),
        || async {
            match client
                .request_text(
                    http::Request::get("/readyz")
                        .body(Vec::new())
                        .expect("request"),
                )
                .await
            {
                Ok(body) if body.trim() == "ok" => Ok(()),
                Ok(body) => Err(body),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
}
