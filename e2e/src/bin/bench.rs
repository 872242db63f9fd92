//! `make bench`: tracing overhead and convergence at scale, against the local control plane.
//!
//! Overhead: the same workload (N MultigresClusters created, converged, scaled, converged,
//! deleted) with both handlers in five modes (tracing off, 100% sampling exported to Tempo,
//! 1% sampling, and both again without keeping failed and slow reconciles,
//! "on-plain"/"1%-plain"; `--modes` adds "down": 100% to a backend that refuses and "http": 100% over
//! OTLP HTTP/protobuf), the modes side by side
//! (each with its own handler processes and namespace, under the same load at the same time),
//! `--repeats` times; per handler CPU time, peak and steady RSS, reconciles and CPU per
//! reconcile, reported as median and spread, and each mode against the off run of its repeat.
//!
//! Convergence: `--scale-clusters` clusters applied at once; time to all Healthy, API requests
//! per cluster by verb, writes during steady-state resyncs, peak RSS; then the floor: the very
//! objects the operator made, written by a plain client loop with the same concurrency into a
//! fresh namespace with no handler running, timed until their workloads are ready.
//!
//! The handlers, and the floor's writes, run as the handlers' ServiceAccounts (installed from
//! `manifests/`), so the API server queues them as it would in a cluster.
//!
//! Prints a Markdown report and writes it to `bench/results/<date>.md`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::cluster::sample;
use e2e::identity::{Identity, install_operator_identities};
use e2e::process::{
    Handler, ProcStat, metric_sum, metric_sum_by, peak_rss_kib, proc_stat, rss_kib, start_handler,
    thread_cpu_seconds,
};
use e2e::{TestEnv, install_crds, wait_until};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use kube::{Api, Client, ResourceExt};
use multigres_api::crd::{MultigresCluster, Phase};
use serde_json::json;

const CONCURRENCY: usize = 16;
const CONVERGE: Duration = Duration::from_secs(3600);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Off,
    Full,
    OnePercent,
    /// 100% sampling, exporting to a port nothing listens on: the trace backend is down.
    BackendDown,
    /// 100% sampling exported over OTLP HTTP/protobuf instead of gRPC.
    FullHttp,
    /// 100% and 1% without keeping failed and slow reconciles
    /// (`MULTIGRES_TRACES_KEEP_FAILURES=false`): the rules before that existed.
    FullPlain,
    OnePercentPlain,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Full => "100%",
            Mode::OnePercent => "1%",
            Mode::BackendDown => "100%, backend down",
            Mode::FullHttp => "100%, HTTP",
            Mode::FullPlain => "100%, failures not kept",
            Mode::OnePercentPlain => "1%, failures not kept",
        }
    }
    /// The mode in a namespace name.
    fn slug(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Full => "full",
            Mode::OnePercent => "one-percent",
            Mode::BackendDown => "backend-down",
            Mode::FullHttp => "full-http",
            Mode::FullPlain => "full-plain",
            Mode::OnePercentPlain => "one-percent-plain",
        }
    }
    fn parse(name: &str) -> Mode {
        match name {
            "off" => Mode::Off,
            "100%" | "on" => Mode::Full,
            "1%" => Mode::OnePercent,
            "down" => Mode::BackendDown,
            "http" => Mode::FullHttp,
            "on-plain" => Mode::FullPlain,
            "1%-plain" => Mode::OnePercentPlain,
            other => panic!("unknown mode {other}: off, on, 1%, down, http, on-plain, 1%-plain"),
        }
    }
    fn env(self, env: &TestEnv) -> Vec<(String, String)> {
        // Production settings: only the endpoint (the SDK's default batching, 5 s / 512 spans).
        let mut vars: Vec<(String, String)> = match self {
            Mode::Off => vec![],
            // Port 9 (discard): refused at once on loopback.
            Mode::BackendDown => vec![(
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                "http://127.0.0.1:9".into(),
            )],
            Mode::FullHttp => vec![
                ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "http/protobuf".into()),
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                    env.otlp_http_endpoint.clone(),
                ),
            ],
            Mode::Full | Mode::OnePercent | Mode::FullPlain | Mode::OnePercentPlain => vec![(
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                env.otlp_grpc_endpoint.clone(),
            )],
        };
        if matches!(self, Mode::FullPlain | Mode::OnePercentPlain) {
            vars.push(("MULTIGRES_TRACES_KEEP_FAILURES".into(), "false".into()));
        }
        if matches!(self, Mode::OnePercent | Mode::OnePercentPlain) {
            vars.push((
                "OTEL_TRACES_SAMPLER".into(),
                "parentbased_traceidratio".into(),
            ));
            vars.push(("OTEL_TRACES_SAMPLER_ARG".into(), "0.01".into()));
        }
        vars
    }
}

/// What one handler used during one run.
#[derive(Clone, Debug, Default)]
struct Usage {
    /// CPU time and page faults during the run.
    stat: ProcStat,
    /// CPU of the batch span processor's own thread (span batches turned into OTLP requests;
    /// the transport's share is not in it: gRPC's runs on the Tokio workers, the HTTP client's
    /// on its own runtime thread).
    export_thread_cpu_s: f64,
    peak_rss_mib: f64,
    steady_rss_mib: f64,
    reconciles: u64,
    spans_exported: u64,
}

impl Usage {
    fn cpu_ms_per_reconcile(&self) -> f64 {
        self.stat.cpu_s() * 1000.0 / self.reconciles.max(1) as f64
    }
    /// The export thread's share of the process's CPU, in percent.
    fn export_thread_share(&self) -> f64 {
        self.export_thread_cpu_s * 100.0 / self.stat.cpu_s().max(f64::EPSILON)
    }
    /// The kernel's share of the process's CPU, in percent.
    fn system_share(&self) -> f64 {
        self.stat.system_s * 100.0 / self.stat.cpu_s().max(f64::EPSILON)
    }
    fn minor_faults_per_reconcile(&self) -> f64 {
        self.stat.minor_faults as f64 / self.reconciles.max(1) as f64
    }
    fn spans_per_reconcile(&self) -> f64 {
        self.spans_exported as f64 / self.reconciles.max(1) as f64
    }
}

/// The name (as /proc shows it, 15 characters) of the SDK's batch span processor thread.
const EXPORT_THREAD: &str = "OpenTelemetry";

/// What a handler had used when the workload started (its start-up is not counted).
#[derive(Clone, Copy, Default)]
struct Start {
    stat: ProcStat,
    export_thread_cpu_s: f64,
}

impl Start {
    fn of(h: &Handler) -> Start {
        Start {
            stat: proc_stat(h),
            export_thread_cpu_s: thread_cpu_seconds(h, EXPORT_THREAD),
        }
    }
}

struct Args {
    clusters: usize,
    repeats: usize,
    scale_clusters: usize,
    skip_overhead: bool,
    skip_scale: bool,
    modes: Vec<Mode>,
}

fn args() -> Args {
    let mut a = Args {
        clusters: 100,
        repeats: 3,
        scale_clusters: 1000,
        skip_overhead: false,
        skip_scale: false,
        modes: vec![
            Mode::Off,
            Mode::Full,
            Mode::OnePercent,
            Mode::FullPlain,
            Mode::OnePercentPlain,
        ],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut number = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match flag.as_str() {
            "--clusters" => a.clusters = number("--clusters"),
            "--repeats" => a.repeats = number("--repeats"),
            "--scale-clusters" => a.scale_clusters = number("--scale-clusters"),
            "--skip-overhead" => a.skip_overhead = true,
            "--skip-scale" => a.skip_scale = true,
            "--modes" => {
                let list = it
                    .next()
                    .expect("--modes needs e.g. off,on,1%,down,http,on-plain,1%-plain");
                a.modes = list.split(',').map(Mode::parse).collect();
                assert!(
                    a.modes.first() == Some(&Mode::Off),
                    "--modes must start with off (the baseline)"
                );
            }
            other => panic!(
                "unknown flag {other}; flags: --clusters N --repeats R --scale-clusters N --skip-overhead --skip-scale --modes off,on,1%,down,http,on-plain,1%-plain"
            ),
        }
    }
    a
}

async fn fresh_namespace(client: &Client, prefix: &str) -> String {
    let name = format!(
        "bench-{prefix}-{}",
        std::process::id() as u64 * 1000 + rand_suffix()
    );
    let ns: Namespace = serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"multigres.com/bench": "true"}}}),
    )
    .expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    name
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_micros() as u64 % 1000)
        .unwrap_or(0)
}

/// Deletes `ns` and waits until it is gone, so the garbage collection of one run does not load
/// the control plane during the next.
async fn delete_namespace(client: &Client, ns: &str) {
    let api = Api::<Namespace>::all(client.clone());
    let _ = api.delete(ns, &DeleteParams::default()).await;
    wait_until(&format!("namespace {ns} deleted"), CONVERGE, || async {
        match api.get_opt(ns).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(n) => Err(format!(
                "phase {:?}",
                n.status.and_then(|s| s.phase).unwrap_or_default()
            )),
        }
    })
    .await;
}

/// Creates `n` minimal clusters, `CONCURRENCY` at a time.
async fn create_clusters(client: &Client, ns: &str, n: usize) -> Vec<String> {
    let api: Api<MultigresCluster> = Api::namespaced(client.clone(), ns);
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    futures::stream::iter(names.clone())
        .for_each_concurrent(CONCURRENCY, |name| {
            let api = api.clone();
            async move {
                let mut cluster = sample("minimal-cluster.yaml");
                cluster.metadata.name = Some(name);
                api.create(&PostParams::default(), &cluster)
                    .await
                    .expect("cluster created");
            }
        })
        .await;
    names
}

/// Waits until every cluster in `ns` is Healthy for its current generation.
async fn wait_all_healthy(client: &Client, ns: &str, n: usize) {
    let api: Api<MultigresCluster> = Api::namespaced(client.clone(), ns);
    wait_until(
        &format!("{n} clusters Healthy in {ns}"),
        CONVERGE,
        || async {
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let healthy = list
                .items
                .iter()
                .filter(|c| {
                    let s = c.status.clone().unwrap_or_default();
                    s.phase == Some(Phase::Healthy)
                        && s.core.observed_generation == c.metadata.generation
                })
                .count();
            (healthy == n)
                .then_some(())
                .ok_or(format!("{healthy}/{n} Healthy"))
        },
    )
    .await;
}

async fn writes(h: &Handler) -> u64 {
    h.api_writes().await
}

/// The handlers' own ServiceAccounts, as deployed. As the admin they would be exempt from the API
/// server's priority and fairness while the controller-manager, which the pods' progress waits
/// on, is queued and refused with 429.
struct Identities {
    ch: Identity,
    rh: Identity,
}

impl Identities {
    async fn install(env: &TestEnv, admin: &Client) -> Identities {
        install_operator_identities(env);
        Identities {
            ch: Identity::of_handler(env, admin, "cluster-handler").await,
            rh: Identity::of_handler(env, admin, "resource-handler").await,
        }
    }

    /// Both handlers watching `ns`, each as its ServiceAccount, with `env` added.
    async fn start(
        &self,
        ns: &str,
        args: &[&str],
        env: Vec<(String, String)>,
    ) -> (Handler, Handler) {
        let with = |id: &Identity| env.iter().cloned().chain([id.env()]).collect::<Vec<_>>();
        (
            start_handler("cluster-handler", Some(ns), args, with(&self.ch)).await,
            start_handler("resource-handler", Some(ns), args, with(&self.rh)).await,
        )
    }

    /// The identity that writes `ar` in the operator: the cluster-handler the multigres.com
    /// resources, the resource-handler the workloads and Services.
    fn writer_of(&self, ar: &ApiResource) -> &Client {
        if ar.group == "multigres.com" {
            &self.ch.client
        } else {
            &self.rh.client
        }
    }
}

/// The handlers of one mode in one repeat, each in its own namespace.
struct Pair {
    mode: Mode,
    ns: String,
    ch: Handler,
    rh: Handler,
    at_start: (Start, Start),
    steady_rss_mib: (f64, f64),
}

/// Runs `each` on every (pair, cluster name), all pairs interleaved so every mode sees the same
/// load at the same moment.
async fn for_every_cluster<F, Fut>(client: &Client, pairs: &[Pair], names: &[String], each: F)
where
    F: Fn(Api<MultigresCluster>, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let jobs: Vec<(Api<MultigresCluster>, String)> = names
        .iter()
        .flat_map(|name| {
            pairs
                .iter()
                .map(|p| (Api::namespaced(client.clone(), &p.ns), name.clone()))
        })
        .collect();
    futures::stream::iter(jobs)
        .for_each_concurrent(CONCURRENCY * pairs.len(), |(api, name)| each(api, name))
        .await;
}

/// One overhead repeat: every mode at once, each with its own two handler processes and
/// namespace, and the same lifecycle of `n` clusters driven in all namespaces together. Running
/// the modes side by side puts them under the same load from the shared control plane, which
/// drifts by up to 30% between runs made one after another.
async fn overhead_repeat(
    env: &TestEnv,
    client: &Client,
    ids: &Identities,
    modes: &[Mode],
    n: usize,
) -> Vec<(Mode, Usage, Usage)> {
    let args = ["--resync", "5m"];
    let mut pairs = Vec::new();
    for &mode in modes {
        let ns = fresh_namespace(client, mode.slug()).await;
        let (ch, rh) = ids.start(&ns, &args, mode.env(env)).await;
        pairs.push(Pair {
            mode,
            ns,
            ch,
            rh,
            at_start: Default::default(),
            steady_rss_mib: (0.0, 0.0),
        });
    }
    // Read once every pair is up, so no mode's count includes another mode's start-up load.
    for p in &mut pairs {
        p.at_start = (Start::of(&p.ch), Start::of(&p.rh));
    }
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let namespaces: Vec<String> = pairs.iter().map(|p| p.ns.clone()).collect();
    let all_healthy =
        || futures::future::join_all(namespaces.iter().map(|ns| wait_all_healthy(client, ns, n)));
    for_every_cluster(client, &pairs, &names, |api, name| async move {
        let mut cluster = sample("minimal-cluster.yaml");
        cluster.metadata.name = Some(name);
        api.create(&PostParams::default(), &cluster)
            .await
            .expect("cluster created");
    })
    .await;
    all_healthy().await;
    for p in &mut pairs {
        p.steady_rss_mib = (
            rss_kib(&p.ch) as f64 / 1024.0,
            rss_kib(&p.rh) as f64 / 1024.0,
        );
    }
    for_every_cluster(client, &pairs, &names, |api, name| async move {
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"gateway": {"replicas": 3}}})),
        )
        .await
        .expect("scaled");
    })
    .await;
    all_healthy().await;
    for_every_cluster(client, &pairs, &names, |api, name| async move {
        api.delete(&name, &DeleteParams::foreground())
            .await
            .expect("deleted");
    })
    .await;
    for p in &pairs {
        let api: Api<MultigresCluster> = Api::namespaced(client.clone(), &p.ns);
        wait_until(
            &format!("every cluster gone in {}", p.ns),
            CONVERGE,
            || async {
                let left = api
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?
                    .items
                    .len();
                (left == 0).then_some(()).ok_or(format!("{left} left"))
            },
        )
        .await;
    }
    // The batch processor sends every 5 s: after 6 s the exporting handlers have sent (and paid
    // for) the spans of the run.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut result = Vec::new();
    for p in &pairs {
        let ch = usage(&p.ch, p.at_start.0, p.steady_rss_mib.0).await;
        let rh = usage(&p.rh, p.at_start.1, p.steady_rss_mib.1).await;
        result.push((p.mode, ch, rh));
    }
    drop(pairs);
    futures::future::join_all(namespaces.iter().map(|ns| delete_namespace(client, ns))).await;
    result
}

async fn usage(h: &Handler, at_start: Start, steady_rss_mib: f64) -> Usage {
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// `median (min–max)` of `v`.
fn summary(v: &[f64], digits: usize) -> String {
    let (min, max) = min_max(v);
    format!(
        "{:.digits$} ({min:.digits$}–{max:.digits$})",
        median(v.to_vec())
    )
}

/// `+median unit (+min … +max)` of differences `v`.
fn difference(v: &[f64], unit: &str) -> String {
    let (min, max) = min_max(v);
    format!("{:+.1}{unit} ({min:+.1} … {max:+.1})", median(v.to_vec()))
}

fn min_max(v: &[f64]) -> (f64, f64) {
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

async fn overhead(
    env: &TestEnv,
    client: &Client,
    ids: &Identities,
    n: usize,
    repeats: usize,
    modes: &[Mode],
    out: &mut String,
) {
    // (repeat, mode) → usage of (cluster-handler, resource-handler).
    let mut runs: Vec<Vec<(Mode, Usage, Usage)>> = Vec::new();
    let mut per_run = String::new();
    for r in 0..repeats {
        eprintln!(
            "[bench] overhead: repeat {}/{repeats}, modes {} side by side, {n} clusters each",
            r + 1,
            modes
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let started = Instant::now();
        let repeat = overhead_repeat(env, client, ids, modes, n).await;
        let wall = started.elapsed().as_secs_f64();
        for (mode, ch, rh) in &repeat {
            let line = format!(
                "| {} | {} | {wall:.0} | {:.2} / {} = {:.3} | {:.2} / {} = {:.3} | {:.1} / {:.1} |\n",
                r + 1,
                mode.name(),
                ch.stat.cpu_s(),
                ch.reconciles,
                ch.cpu_ms_per_reconcile(),
                rh.stat.cpu_s(),
                rh.reconciles,
                rh.cpu_ms_per_reconcile(),
                ch.peak_rss_mib,
                rh.peak_rss_mib,
            );
            eprint!("[bench]   {line}");
            per_run.push_str(&line);
        }
        runs.push(repeat);
    }
    let of = |mode: Mode, handler: usize| -> Vec<Usage> {
        runs.iter()
            .map(|repeat| {
                let (_, ch, rh) = repeat
                    .iter()
                    .find(|(m, _, _)| *m == mode)
                    .expect("every mode runs in every repeat");
                if handler == 0 { ch.clone() } else { rh.clone() }
            })
            .collect()
    };
    out.push_str(&format!(
        "## Tracing overhead\n\n{n} clusters created, converged, scaled, converged and deleted per mode; the modes run side by side (each with its own two handler processes and namespace, the same operations sent to every namespace together), {repeats} repeats; median (min–max) over the repeats. CPU counts from the first create to the end of the run, start-up excluded.\n\n\
         | handler | tracing | CPU s | CPU ms / reconcile | reconciles | spans exported / reconcile | export thread % of CPU | kernel % of CPU | minor faults / reconcile | peak RSS MiB | steady RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    ));
    let handlers = ["cluster-handler", "resource-handler"];
    let mut ratios = String::new();
    for (i, handler) in handlers.iter().enumerate() {
        let base = of(Mode::Off, i);
        for &mode in modes {
            let us = of(mode, i);
            let col = |f: fn(&Usage) -> f64, digits| {
                summary(&us.iter().map(f).collect::<Vec<_>>(), digits)
            };
            out.push_str(&format!(
                "| {handler} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                mode.name(),
                col(|u| u.stat.cpu_s(), 2),
                col(Usage::cpu_ms_per_reconcile, 3),
                col(|u| u.reconciles as f64, 0),
                col(Usage::spans_per_reconcile, 2),
                col(Usage::export_thread_share, 2),
                col(Usage::system_share, 1),
                col(Usage::minor_faults_per_reconcile, 2),
                col(|u| u.peak_rss_mib, 1),
                col(|u| u.steady_rss_mib, 1),
            ));
            if mode != Mode::Off {
                // Paired: each repeat's mode against the off run beside it.
                let paired = |f: fn(&Usage) -> f64| -> Vec<f64> {
                    us.iter().zip(&base).map(|(u, b)| f(u) - f(b)).collect()
                };
                let cpu: Vec<f64> = us
                    .iter()
                    .zip(&base)
                    .map(|(u, b)| {
                        (u.cpu_ms_per_reconcile() / b.cpu_ms_per_reconcile() - 1.0) * 100.0
                    })
                    .collect();
                ratios.push_str(&format!(
                    "| {handler} | {} | {} | {} | {} |\n",
                    mode.name(),
                    difference(&cpu, "%"),
                    difference(&paired(|u| u.peak_rss_mib), " MiB"),
                    difference(&paired(|u| u.steady_rss_mib), " MiB"),
                ));
            }
        }
    }
    out.push_str("\nAgainst tracing off in the same repeat (targets: CPU < 5% (seed), < 2% (goal); < 5 MiB extra RSS); median (min–max) of the per-repeat differences:\n\n| handler | tracing | CPU per reconcile | peak RSS | steady RSS |\n|---|---|---|---|---|\n");
    out.push_str(&ratios);
    out.push_str("\nPer run (CPU s / reconciles = ms per reconcile):\n\n| repeat | tracing | wall s | cluster-handler | resource-handler | peak RSS MiB (ch / rh) |\n|---|---|---|---|---|---|\n");
    out.push_str(&per_run);
    out.push('\n');
}

/// Every object the operator made in `ns`, stripped to what a client would write.
async fn made_objects(client: &Client, ns: &str) -> Vec<(ApiResource, DynamicObject)> {
    let kinds: Vec<(GroupVersionKind, &str)> = vec![
        (
            GroupVersionKind::gvk("multigres.com", "v1alpha1", "Etcd"),
            "etcds",
        ),
        (
            GroupVersionKind::gvk("multigres.com", "v1alpha1", "Cell"),
            "cells",
        ),
        (
            GroupVersionKind::gvk("multigres.com", "v1alpha1", "MultiGateway"),
            "multigateways",
        ),
        (
            GroupVersionKind::gvk("multigres.com", "v1alpha1", "MultiOrch"),
            "multiorchs",
        ),
        (
            GroupVersionKind::gvk("multigres.com", "v1alpha1", "MultiPooler"),
            "multipoolers",
        ),
        (
            GroupVersionKind::gvk("apps", "v1", "StatefulSet"),
            "statefulsets",
        ),
        (
            GroupVersionKind::gvk("apps", "v1", "Deployment"),
            "deployments",
        ),
        (GroupVersionKind::gvk("", "v1", "Service"), "services"),
    ];
    let mut out = Vec::new();
    for (gvk, plural) in kinds {
        let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        for mut obj in api.list(&ListParams::default()).await.expect("list").items {
            let name = obj.name_any();
            obj.metadata = kube::api::ObjectMeta {
                name: Some(name),
                labels: obj.metadata.labels.take(),
                annotations: obj.metadata.annotations.take(),
                ..Default::default()
            };
            if let Some(data) = obj.data.as_object_mut() {
                data.remove("status");
                if plural == "services"
                    && let Some(spec) = data.get_mut("spec").and_then(|s| s.as_object_mut())
                {
                    for field in ["clusterIP", "clusterIPs"] {
                        spec.remove(field);
                    }
                }
            }
            out.push((ar.clone(), obj));
        }
    }
    out
}

async fn workloads_ready(client: &Client, ns: &str, sts: usize, deploys: usize) {
    wait_until(
        &format!("{sts} StatefulSets and {deploys} Deployments ready in {ns}"),
        CONVERGE,
        || async {
            let s = Api::<StatefulSet>::namespaced(client.clone(), ns)
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let d = Api::<Deployment>::namespaced(client.clone(), ns)
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let ready_s = s
                .items
                .iter()
                .filter(|x| {
                    x.status.as_ref().and_then(|st| st.ready_replicas)
                        == x.spec.as_ref().and_then(|sp| sp.replicas)
                })
                .count();
            let ready_d = d
                .items
                .iter()
                .filter(|x| {
                    x.status.as_ref().and_then(|st| st.ready_replicas)
                        == x.spec.as_ref().and_then(|sp| sp.replicas)
                })
                .count();
            (ready_s == sts && ready_d == deploys)
                .then_some(())
                .ok_or(format!(
                    "{ready_s}/{sts} StatefulSets, {ready_d}/{deploys} Deployments ready"
                ))
        },
    )
    .await;
}

/// Seconds from `since` to the newest StatefulSet or Deployment in `ns` (creation times have
/// whole seconds): how long the writes took to reach the workloads, before pods could start.
async fn last_workload_created(client: &Client, ns: &str, since: Timestamp) -> f64 {
    let sts = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("statefulsets");
    let deploys = Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("deployments");
    sts.items
        .iter()
        .map(|o| o.metadata.creation_timestamp.clone())
        .chain(
            deploys
                .items
                .iter()
                .map(|o| o.metadata.creation_timestamp.clone()),
        )
        .flatten()
        .map(|t| t.0.duration_since(since).as_secs_f64())
        .fold(0.0, f64::max)
}

/// Pods of one minimal cluster: 3 etcd, 2 gateways, 1 orch, 2 poolers.
const PODS_PER_CLUSTER: u64 = 8;

/// Pods the cluster's nodes can hold (kwok nodes report a kubelet-like `pods` allocatable).
async fn node_pod_capacity(client: &Client) -> u64 {
    Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("nodes")
        .items
        .iter()
        .filter_map(|n| n.status.as_ref()?.allocatable.as_ref()?.get("pods"))
        .filter_map(|q| multigres_api::quantity::parse(&q.0)?.whole())
        .filter_map(|pods| u64::try_from(pods).ok())
        .sum()
}

/// Convergence at scale. The operator's figures are saved (`save`) before the floor starts, so a
/// floor that cannot finish does not take them with it.
async fn scale(client: &Client, ids: &Identities, n: usize, out: &mut String, save: &dyn Fn(&str)) {
    // More pods than the nodes hold would leave the clusters Progressing until the timeout.
    let capacity = node_pod_capacity(client).await;
    let needed = n as u64 * PODS_PER_CLUSTER;
    if needed > capacity {
        eprintln!(
            "[bench] convergence skipped: {n} clusters need {needed} pods, the nodes hold {capacity}"
        );
        out.push_str(&format!(
            "## Convergence at scale

Not run: {n} clusters need {needed} pods and the nodes hold {capacity} (raise the nodes' `pods` allocatable: `MULTIGRES_E2E_NODE_PODS` for `e2e/scripts/cluster-up.sh`, or use `--scale-clusters {}`).

",
            capacity / PODS_PER_CLUSTER
        ));
        return;
    }
    eprintln!("[bench] convergence: {n} clusters through the operator");
    let ns = fresh_namespace(client, "scale").await;
    let args = ["--resync", "30s"];
    let (ch, rh) = ids.start(&ns, &args, vec![]).await;
    let started = Instant::now();
    let started_at = Timestamp::now();
    create_clusters(client, &ns, n).await;
    wait_all_healthy(client, &ns, n).await;
    let operator = started.elapsed().as_secs_f64();
    let mut by_verb: BTreeMap<String, u64> = BTreeMap::new();
    let mut patches: BTreeMap<String, u64> = BTreeMap::new();
    for h in [&ch, &rh] {
        let text = h.metrics().await;
        metric_sum_by(
            &text,
            "multigres_api_requests_total",
            "resource",
            |l| l.contains("verb=\"patch\"") && !l.contains("resource=\"leases\""),
            &mut patches,
        );
        for verb in [
            "get", "list", "watch", "create", "patch", "update", "delete",
        ] {
            *by_verb.entry(verb.to_string()).or_default() +=
                metric_sum(&text, "multigres_api_requests_total", |l| {
                    l.contains(&format!("verb=\"{verb}\"")) && !l.contains("resource=\"leases\"")
                });
        }
    }
    // Steady state: two resyncs of every object, counting writes.
    let before = (writes(&ch).await, writes(&rh).await);
    let reconciles_before = ch.reconciles().await + rh.reconciles().await;
    tokio::time::sleep(Duration::from_secs(65)).await; // two 30 s resync periods: the measurement window
    let steady_writes = writes(&ch).await + writes(&rh).await - before.0 - before.1;
    let steady_reconciles = ch.reconciles().await + rh.reconciles().await - reconciles_before;
    let peaks = (
        peak_rss_kib(&ch) as f64 / 1024.0,
        peak_rss_kib(&rh) as f64 / 1024.0,
    );
    let objects = made_objects(client, &ns).await;
    let operator_workloads = last_workload_created(client, &ns, started_at).await;
    drop((ch, rh));
    let per = |v: u64| v as f64 / n as f64;
    out.push_str(&format!(
        "## Convergence at scale\n\n{n} minimal clusters applied at once ({CONCURRENCY} concurrent creates), tracing off; the handlers and the floor's writes as the handlers' ServiceAccounts.\n\n\
         | figure | value |\n|---|---|\n\
         | first apply → all Healthy (operator) | {operator:.1} s |\n\
         | API requests per cluster | {} |\n\
         | patches per cluster by resource | {} |\n\
         | writes during 2 steady-state resyncs ({steady_reconciles} reconciles; target 0) | {steady_writes} |\n\
         | peak RSS cluster-handler / resource-handler | {:.1} / {:.1} MiB |\n\
         | last StatefulSet or Deployment created (operator), after the first apply | {operator_workloads:.0} s |\n",
        by_verb.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("{k} {:.1}", per(*v))).collect::<Vec<_>>().join(", "),
        patches.iter().map(|(k, v)| format!("{k} {:.1}", per(*v))).collect::<Vec<_>>().join(", "),
        peaks.0,
        peaks.1,
    ));
    save(out);
    // The floor's pods need the room the operator's pods take.
    delete_namespace(client, &ns).await;

    eprintln!(
        "[bench] convergence: the floor, {} objects written directly",
        objects.len()
    );
    let floor_ns = fresh_namespace(client, "floor").await;
    let sts = objects
        .iter()
        .filter(|(ar, _)| ar.kind == "StatefulSet")
        .count();
    let deploys = objects
        .iter()
        .filter(|(ar, _)| ar.kind == "Deployment")
        .count();
    let started = Instant::now();
    let started_at = Timestamp::now();
    futures::stream::iter(objects.iter())
        .for_each_concurrent(CONCURRENCY, |(ar, obj)| {
            let api: Api<DynamicObject> =
                Api::namespaced_with(ids.writer_of(ar).clone(), &floor_ns, ar);
            let mut obj = obj.clone();
            obj.metadata.namespace = Some(floor_ns.clone());
            async move {
                api.create(&PostParams::default(), &obj)
                    .await
                    .unwrap_or_else(|e| panic!("creating {} {}: {e}", ar.kind, obj.name_any()));
            }
        })
        .await;
    workloads_ready(client, &floor_ns, sts, deploys).await;
    let floor = started.elapsed().as_secs_f64();
    let floor_workloads = last_workload_created(client, &floor_ns, started_at).await;
    delete_namespace(client, &floor_ns).await;
    out.push_str(&format!(
        "| the same {} objects written directly, until their workloads are ready (floor) | {floor:.1} s |\n\
         | last StatefulSet or Deployment created (floor), after its first write | {floor_workloads:.0} s |\n\
         | operator ÷ floor (target ≤ 1.5) | {:.2} |\n\n",
        objects.len(),
        operator / floor,
    ));
}

#[tokio::main]
async fn main() {
    let a = args();
    let env = TestEnv::load();
    let client = e2e::k8s::admin_client(&env).await;
    install_crds(&client).await;
    let ids = Identities::install(&env, &client).await;
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
    let mut out = format!(
        "# Benchmarks {date}\n\nMachine: {machine}; local control plane (kube-apiserver, etcd, controller-manager, scheduler, kwok, Tempo). Command: `{command}` (via `make bench`), release builds.\n\n"
    );
    // `make bench` names the file (one per run); run by hand, it is bench/results/<date>.md.
    let path = match std::env::var_os("BENCH_REPORT") {
        Some(p) => std::path::PathBuf::from(p),
        None => e2e::env::repo_root().join(format!("bench/results/{date}.md")),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("the report's directory");
    }
    // Written after each part, so a part that fails keeps the figures of the ones before.
    let save = |out: &str| {
        std::fs::write(&path, out).expect("results file");
        eprintln!("[bench] wrote {}", path.display());
    };
    if !a.skip_overhead {
        overhead(
            &env, &client, &ids, a.clusters, a.repeats, &a.modes, &mut out,
        )
        .await;
        save(&out);
    }
    if !a.skip_scale {
        scale(&client, &ids, a.scale_clusters, &mut out, &save).await;
        save(&out);
    }
    println!("{out}");
}
