//! What one handler process used during one overhead run: CPU, page faults, RSS, reconciles and
//! spans, counted from the first create so start-up is left out.

use e2e::process::{Handler, ProcStat, metric_sum, peak_rss_kib, proc_stat, thread_cpu_seconds};

/// What one handler used during one run.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    /// CPU time and page faults during the run.
    pub stat: ProcStat,
    /// CPU of the batch span processor's own thread (span batches turned into OTLP requests;
    /// the transport's share is not in it: gRPC's runs on the Tokio workers, the HTTP client's
    /// on its own runtime thread).
    pub export_thread_cpu_s: f64,
    pub peak_rss_mib: f64,
    pub steady_rss_mib: f64,
    pub reconciles: u64,
    pub spans_exported: u64,
}

impl Usage {
    pub fn cpu_ms_per_reconcile(&self) -> f64 {
        self.stat.cpu_s() * 1000.0 / self.reconciles.max(1) as f64
    }
    /// The export thread's share of the process's CPU, in percent.
    pub fn export_thread_share(&self) -> f64 {
        self.export_thread_cpu_s * 100.0 / self.stat.cpu_s().max(f64::EPSILON)
    }
    /// The kernel's share of the process's CPU, in percent.
    pub fn system_share(&self) -> f64 {
        self.stat.system_s * 100.0 / self.stat.cpu_s().max(f64::EPSILON)
    }
    pub fn minor_faults_per_reconcile(&self) -> f64 {
        self.stat.minor_faults as f64 / self.reconciles.max(1) as f64
    }
    pub fn spans_per_reconcile(&self) -> f64 {
        self.spans_exported as f64 / self.reconciles.max(1) as f64
    }
}

/// The name (as /proc shows it, 15 characters) of the SDK's batch span processor thread.
const EXPORT_THREAD: &str = "OpenTelemetry";

/// What a handler had used when the workload started (its start-up is not counted).
#[derive(Clone, Copy, Default)]
pub struct Start {
    stat: ProcStat,
    export_thread_cpu_s: f64,
}

impl Start {
    pub fn of(h: &Handler) -> Start {
        Start {
            stat: proc_stat(h),
            export_thread_cpu_s: thread_cpu_seconds(h, EXPORT_THREAD),
        }
    }
}

pub async fn usage(h: &Handler, at_start: Start, steady_rss_mib: f64) -> Usage {
    Usage {
        stat: proc_stat(h).since(at_start.stat),
        export_thread_cpu_s: thread_cpu_seconds(h, EXPORT_THREAD) - at_start.export_thread_cpu_s,
        peak_rss_mib: peak_rss_kib(h) as f64 / 1024.0,
        steady_rss_mib,
        reconciles: h.reconciles().await,
        spans_exported: metric_sum(&h.metrics().await, "multigres_spans_exported_total", |_| {
            true
        }),
    }
}
