//! Tracing overhead: every mode's handlers under the same workload at the same time, and the
//! report's tables of their usage against tracing off.

use std::time::{Duration, Instant};

use e2e::TestEnv;
use e2e::process::{Handler, rss_kib};
use kube::Client;

use crate::handlers::Identities;
use crate::mode::Mode;
use crate::report::Report;
use crate::stats::{difference, summary};
use crate::usage::{Start, Usage, usage};
use crate::workload::{
    create_cluster, delete_cluster, delete_namespace, for_every_cluster, fresh_namespace,
    scale_cluster, wait_all_gone, wait_all_healthy,
};

/// The handlers of one mode in one repeat, each in its own namespace.
struct Pair {
    mode: Mode,
    ns: String,
    ch: Handler,
    rh: Handler,
    at_start: (Start, Start),
    steady_rss_mib: (f64, f64),
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
    for_every_cluster(client, &namespaces, &names, create_cluster).await;
    all_healthy().await;
    for p in &mut pairs {
        p.steady_rss_mib = (
            rss_kib(&p.ch) as f64 / 1024.0,
            rss_kib(&p.rh) as f64 / 1024.0,
        );
    }
    for_every_cluster(client, &namespaces, &names, scale_cluster).await;
    all_healthy().await;
    for_every_cluster(client, &namespaces, &names, delete_cluster).await;
    for ns in &namespaces {
        wait_all_gone(client, ns).await;
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

/// `repeats` overhead repeats of `n` clusters per mode; adds the section to `out`.
pub async fn overhead(
    env: &TestEnv,
    client: &Client,
    ids: &Identities,
    n: usize,
    repeats: usize,
    modes: &[Mode],
    out: &mut Report,
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
    out.push_str("\n");
}
