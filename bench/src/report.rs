//! The Markdown report: its header, where it goes (`BENCH_REPORT`, or bench/results/<date>.md)
//! and saving it after each part.

use std::path::PathBuf;

pub struct Report {
    path: PathBuf,
    text: String,
}

impl Report {
    /// The header (date, machine, command line), and the report's directory created.
    pub fn start() -> Report {
        let date = std::process::Command::new("date")
            .arg("+%Y-%m-%d")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let machine = format!(
            "{} cores, {}",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|m| m.lines().next().map(|l| l
                    .split_whitespace()
                    .nth(1)
                    .map(|kb| format!(
                        "{:.0} GiB RAM",
                        kb.parse::<f64>().unwrap_or(0.0) / 1048576.0
                    ))
                    .unwrap_or_default()))
                .unwrap_or_default()
        );
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        let text = format!(
            "# Benchmarks {date}\n\nMachine: {machine}; local control plane (kube-apiserver, etcd, controller-manager, scheduler, kwok, Tempo). Command: `{command}` (via `make bench`), release builds.\n\n"
        );
        // `make bench` names the file (one per run); run by hand, it is bench/results/<date>.md.
        let path = match std::env::var_os("BENCH_REPORT") {
            Some(p) => PathBuf::from(p),
            None => e2e::env::repo_root().join(format!("bench/results/{date}.md")),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the report's directory");
        }
        Report { path, text }
    }

    pub fn push_str(&mut self, s: &str) {
        self.text.push_str(s);
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Writes the report so far. Called after each part, so a part that fails keeps the figures
    /// of the ones before.
    pub fn save(&self) {
        std::fs::write(&self.path, &self.text).expect("results file");
        eprintln!("[bench] wrote {}", self.path.display());
    }
}
