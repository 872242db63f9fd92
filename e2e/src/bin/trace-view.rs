//! Prints one trace from Tempo as an indented waterfall: service, span, key attributes, start
//! offset, duration, status.
//!
//!     cargo run -p e2e --bin trace-view -- <trace-id> [--tempo URL (default $TEMPO_URL)] [--all]
//!
//! The API server's internal spans (below its request span) are folded into a count unless
//! `--all` is given.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use e2e::tempo::{Span, Tempo};

const KEY_ATTRIBUTES: [&str; 5] = [
    "multigres.resource.name",
    "k8s.object.name",
    "multigres.apply.decision",
    "multigres.trace.parent",
    "http.response.status_code",
];

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "trace-view",
    about = "Prints one trace from Tempo as an indented waterfall: service, span, key attributes, \
             start offset, duration, status. Waits until the trace stops growing (its spans \
             arrive from several processes).",
    after_help = "Example:\n  trace-view $(kubectl get mgc NAME -o jsonpath='{.status.lastTraceId}')"
)]
struct Args {
    /// The trace id: 32 hex digits, e.g. a MultigresCluster's status.lastTraceId.
    #[arg(value_parser = parse_trace_id)]
    trace_id: String,
    /// Tempo's query API.
    #[arg(long, env = "TEMPO_URL", default_value = "http://127.0.0.1:3200")]
    tempo: String,
    /// Show the API server's internal spans too (otherwise folded into a count below its
    /// request span).
    #[arg(long)]
    all: bool,
}

fn parse_trace_id(id: &str) -> Result<String, String> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err("not a trace id (32 hex digits)".to_string())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Args {
        trace_id,
        tempo: tempo_url,
        all,
    } = Args::parse();
    let tempo = Tempo::new(&tempo_url);
    // Spans of three processes arrive in batches; wait until the count stops growing.
    let mut spans = Vec::new();
    for _ in 0..20 {
        match tempo.trace(&trace_id).await {
            Ok(Some(found)) if !found.is_empty() && found.len() == spans.len() => break,
            Ok(Some(found)) => spans = found,
            Ok(None) => {}
            Err(err) => {
                eprintln!("cannot query Tempo at {tempo_url}: {err}");
                return ExitCode::FAILURE;
            }
        }
        tokio::time::sleep(Duration::from_millis(750)).await;
    }
    if spans.is_empty() {
        eprintln!("trace {trace_id} not found in Tempo at {tempo_url}");
        return ExitCode::FAILURE;
    }
    print!("{}", render(&trace_id, &spans, all));
    ExitCode::SUCCESS
}

fn render(trace_id: &str, spans: &[Span], all: bool) -> String {
    let start = spans.iter().map(|s| s.start_ns).min().unwrap_or_default();
    let end = spans.iter().map(|s| s.end_ns).max().unwrap_or_default();
    let services: std::collections::BTreeSet<&str> =
        spans.iter().map(|s| s.service.as_str()).collect();
    let mut children: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut roots = Vec::new();
    for span in spans {
        if span.parent_span_id.is_empty() || !ids.contains(span.parent_span_id.as_str()) {
            roots.push(span);
        } else {
            children
                .entry(span.parent_span_id.as_str())
                .or_default()
                .push(span);
        }
    }
    let mut out = format!(
        "trace {trace_id}: {} spans from {} ({:.0} ms)\n{:>9} {:>9}  {:<27} span\n",
        spans.len(),
        services.into_iter().collect::<Vec<_>>().join(", "),
        (end - start) as f64 / 1e6,
        "offset",
        "duration",
        "service"
    );
    for root in roots {
        walk(root, 0, start, &children, all, &mut out);
    }
    out
}

fn walk(
    span: &Span,
    depth: usize,
    start: u64,
    children: &BTreeMap<&str, Vec<&Span>>,
    all: bool,
    out: &mut String,
) {
    let attrs: Vec<String> = KEY_ATTRIBUTES
        .iter()
        .filter_map(|k| {
            span.attributes
                .get(*k)
                .map(|v| format!("{}={v}", k.rsplit('.').next().unwrap_or(k)))
        })
        .collect();
    let status = if span.status_code == "STATUS_CODE_ERROR" {
        format!("  ERROR {}", span.status_message)
    } else {
        String::new()
    };
    let links = if span.links.is_empty() {
        String::new()
    } else {
        format!("  (links {})", span.links.len())
    };
    out.push_str(&format!(
        "{:>7.1}ms {:>7.1}ms  {:<27} {}{}  {}{}{}\n",
        (span.start_ns.saturating_sub(start)) as f64 / 1e6,
        span.duration_ns() as f64 / 1e6,
        span.service,
        "  ".repeat(depth),
        span.name,
        attrs.join(" "),
        status,
        links
    ));
    let mut kids = children
        .get(span.span_id.as_str())
        .cloned()
        .unwrap_or_default();
    kids.sort_by_key(|s| s.start_ns);
    // Below the API server's request span, only its count unless asked for everything.
    if !all && span.service == "apiserver" && span.kind == "SPAN_KIND_SERVER" {
        let hidden = count(span, children) - 1;
        if hidden > 0 {
            out.push_str(&format!(
                "{:>21}  {:<27} {}  (+{hidden} apiserver spans; --all shows them)\n",
                "",
                "",
                "  ".repeat(depth + 1)
            ));
        }
        return;
    }
    for kid in kids {
        walk(kid, depth + 1, start, children, all, out);
    }
}

fn count(span: &Span, children: &BTreeMap<&str, Vec<&Span>>) -> usize {
    1 + children
        .get(span.span_id.as_str())
        .map_or(0, |kids| kids.iter().map(|k| count(k, children)).sum())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Args;

    #[test]
    fn the_arguments_are_a_trace_id_and_a_tempo_that_defaults_to_tempo_url() {
        let args = Args::try_parse_from([
            "trace-view",
            "0123456789ABCDEF0123456789abcdef",
            "--tempo",
            "http://tempo:3200",
            "--all",
        ])
        .expect("valid arguments");
        assert_eq!(args.trace_id, "0123456789abcdef0123456789abcdef");
        assert_eq!(args.tempo, "http://tempo:3200");
        assert!(args.all);
        let refused = Args::try_parse_from(["trace-view", "not-a-trace"]).expect_err("refused");
        assert!(
            refused
                .to_string()
                .contains("not a trace id (32 hex digits)"),
            "{refused}"
        );
        let help = Args::command().render_long_help().to_string();
        assert!(help.contains("TEMPO_URL"), "{help}");
    }
}
