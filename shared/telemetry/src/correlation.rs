//! Log lines that carry the `trace_id` and `span_id` of the current OpenTelemetry span.
//!
//! tracing-opentelemetry 0.34 keeps its per-span data private, but with context activation
//! (its default) entering a span attaches that span's OTel context to the thread, so
//! `opentelemetry::Context::current()` is the innermost entered span the OTel layer sees. That
//! also skips spans filtered out of the OTel layer (e.g. kube-runtime's), which is what a log
//! reader wants: the ids of a span that exists in the trace backend.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Wraps an event formatter: JSON lines get top-level `trace_id`/`span_id` keys, text lines
/// get ` trace_id=… span_id=…` appended.
pub(crate) struct Correlated<F> {
    pub(crate) inner: F,
    pub(crate) json: bool,
}

impl<S, N, F> FormatEvent<S, N> for Correlated<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let cx = opentelemetry::Context::current();
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return self.inner.format_event(ctx, writer, event);
        }
        // The formatters write whole lines; splicing needs the line in hand. Colors survive
        // because the text formatter is built with an explicit `with_ansi`.
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let ids = if self.json {
            format!(
                r#""trace_id":"{}","span_id":"{}""#,
                sc.trace_id(),
                sc.span_id()
            )
        } else {
            format!(" trace_id={} span_id={}", sc.trace_id(), sc.span_id())
        };
        splice(&mut line, &ids, self.json);
        writer.write_str(&line)
    }
}

fn splice(line: &mut String, ids: &str, json: bool) {
    if json {
        if line.starts_with('{') {
            let sep = if line[1..].trim_start().starts_with('}') {
                ""
            } else {
                ","
            };
            line.insert_str(1, &format!("{ids}{sep}"));
        }
    } else {
        let end = line.trim_end_matches(['\n', '\r']).len();
        line.insert_str(end, ids);
    }
}

#[cfg(test)]
mod tests {
    use super::splice;

    #[test]
    fn splices_json_and_text() {
        let mut j = String::from("{\"level\":\"INFO\"}\n");
        splice(&mut j, r#""trace_id":"t""#, true);
        assert_eq!(j, "{\"trace_id\":\"t\",\"level\":\"INFO\"}\n");
        let mut e = String::from("{}\n");
        splice(&mut e, r#""a":1"#, true);
        assert_eq!(e, "{\"a\":1}\n");
        let mut t = String::from("INFO x: hello\n");
        splice(&mut t, " trace_id=t", false);
        assert_eq!(t, "INFO x: hello trace_id=t\n");
    }
}
