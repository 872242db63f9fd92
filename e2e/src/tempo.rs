//! Grafana Tempo's query API, and a minimal OTLP/HTTP sender for tests.
//!
//! `GET /api/traces/<id>` answers `{"batches":[<OTLP ResourceSpans>]}` in gogo-jsonpb form:
//! ids are base64, enums are names, int64s are strings; 404 when the trace is unknown.
//! Search (`/api/search?q=<TraceQL>`) returns trace ids with leading zeros trimmed.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

/// One span of a trace, flattened from Tempo's answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// `SPAN_KIND_SERVER`, `SPAN_KIND_CLIENT`, `SPAN_KIND_INTERNAL`, ...
    pub kind: String,
    /// `service.name` of the resource that emitted the span.
    pub service: String,
    /// The attributes of that resource (`k8s.pod.name`, ...).
    pub resource: BTreeMap<String, String>,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: BTreeMap<String, String>,
    /// `STATUS_CODE_ERROR`, `STATUS_CODE_OK`, or empty (unset).
    pub status_code: String,
    pub status_message: String,
    /// `(trace id, span id)` of each link.
    pub links: Vec<(String, String)>,
    /// `(name, attributes)` of each event.
    pub events: Vec<(String, BTreeMap<String, String>)>,
}

impl Span {
    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_empty()
    }
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// A client for one Tempo instance.
#[derive(Clone, Debug)]
pub struct Tempo {
    base: String,
    http: reqwest::Client,
}

impl Tempo {
    pub fn new(base_url: &str) -> Tempo {
        Tempo {
            base: base_url.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    /// The spans of trace `trace_id` (32 hex digits), or `None` while Tempo does not know it.
    pub async fn trace(&self, trace_id: &str) -> Result<Option<Vec<Span>>, String> {
        let url = format!("{}/api/traces/{}", self.base, trace_id);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status()));
        }
        let body: Value = resp.json().await.map_err(|e| format!("GET {url}: {e}"))?;
        Ok(Some(parse_trace(&body)))
    }

    /// Trace ids (32 hex digits) matching a TraceQL query, searched over the last `lookback`.
    pub async fn search(&self, traceql: &str, lookback: Duration) -> Result<Vec<String>, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let url = format!("{}/api/search", self.base);
        let resp = self
            .http
            .get(&url)
            .query(&[
                ("q", traceql.to_string()),
                ("limit", "100".to_string()),
                ("start", now.saturating_sub(lookback.as_secs()).to_string()),
                ("end", (now + 60).to_string()),
            ])
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            return Err(format!("search {traceql}: HTTP {status}: {text}"));
        }
        let body: Value = resp.json().await.map_err(|e| format!("search: {e}"))?;
        Ok(body["traces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["traceID"].as_str())
            .map(|id| format!("{id:0>32}"))
            .collect())
    }
}

/// Flattens a V1 trace body (`{"batches":[...]}`; `resourceSpans` is accepted too).
pub fn parse_trace(body: &Value) -> Vec<Span> {
    let batches = body
        .get("batches")
        .or_else(|| body.get("resourceSpans"))
        .and_then(Value::as_array);
    let mut spans = Vec::new();
    for batch in batches.into_iter().flatten() {
        let resource = attributes(&batch["resource"]["attributes"]);
        let service = resource.get("service.name").cloned().unwrap_or_default();
        let scopes = batch
            .get("scopeSpans")
            .or_else(|| batch.get("instrumentationLibrarySpans"))
            .and_then(Value::as_array);
        for scope in scopes.into_iter().flatten() {
            for s in scope["spans"].as_array().into_iter().flatten() {
                spans.push(Span {
                    trace_id: id_hex(&s["traceId"]),
                    span_id: id_hex(&s["spanId"]),
                    parent_span_id: id_hex(&s["parentSpanId"]),
                    name: s["name"].as_str().unwrap_or_default().to_string(),
                    kind: s["kind"].as_str().unwrap_or_default().to_string(),
                    service: service.clone(),
                    resource: resource.clone(),
                    start_ns: int(&s["startTimeUnixNano"]),
                    end_ns: int(&s["endTimeUnixNano"]),
                    attributes: attributes(&s["attributes"]),
                    status_code: s["status"]["code"].as_str().unwrap_or_default().to_string(),
                    status_message: s["status"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    links: s["links"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|l| (id_hex(&l["traceId"]), id_hex(&l["spanId"])))
                        .collect(),
                    events: s["events"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| {
                            (
                                e["name"].as_str().unwrap_or_default().to_string(),
                                attributes(&e["attributes"]),
                            )
                        })
                        .collect(),
                });
            }
        }
    }
    spans.sort_by_key(|s| s.start_ns);
    spans
}

/// Ids arrive base64-encoded (gogo jsonpb); some encoders send hex. Returns lowercase hex.
fn id_hex(value: &Value) -> String {
    let Some(text) = value.as_str().filter(|t| !t.is_empty()) else {
        return String::new();
    };
    let is_hex =
        (text.len() == 32 || text.len() == 16) && text.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex {
        return text.to_ascii_lowercase();
    }
    match base64::engine::general_purpose::STANDARD.decode(text) {
        Ok(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Err(_) => text.to_string(),
    }
}

fn int(value: &Value) -> u64 {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_default()
}

/// OTLP key/value list → map of display strings.
fn attributes(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv["key"].as_str()?.to_string(), any_value(&kv["value"]))))
        .collect()
}

fn any_value(v: &Value) -> String {
    if let Some(s) = v.get("stringValue").and_then(Value::as_str) {
        return s.to_string();
    }
    for key in ["intValue", "boolValue", "doubleValue"] {
        if let Some(x) = v.get(key) {
            return x
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| x.to_string());
        }
    }
    v.to_string()
}

/// Sends one span over OTLP/HTTP (JSON encoding) to `endpoint` (e.g. `http://127.0.0.1:4318`).
/// Ids are hex, as OTLP/JSON wants.
pub async fn push_test_span(
    endpoint: &str,
    service: &str,
    name: &str,
    trace_id: &str,
    span_id: &str,
) -> Result<(), String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let body = json!({
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
            "scopeSpans": [{
                "scope": {"name": "multigres-e2e"},
                "spans": [{
                    "traceId": trace_id,
                    "spanId": span_id,
                    "name": name,
                    "kind": 1,
                    "startTimeUnixNano": (now - 5_000_000).to_string(),
                    "endTimeUnixNano": now.to_string(),
                    "attributes": [{"key": "e2e.check", "value": {"stringValue": "otlp-http"}}]
                }]
            }]
        }]
    });
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("POST {url}: HTTP {}", resp.status()))
    }
}

/// A random-enough W3C trace id (32 hex) and span id (16 hex) for tests.
pub fn new_ids() -> (String, String) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(1);
    let mix = |x: u128| {
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834);
        z = (z ^ (z >> 61)).wrapping_mul(0xbf58_476d_1ce4_e5b9_94d0_49bb_1331_11eb);
        z ^ (z >> 59)
    };
    let a = mix(seed ^ u128::from(std::process::id()));
    let b = mix(a);
    (format!("{a:032x}"), format!("{:016x}", (b as u64) | 1))
}

/// The `(trace id, span id)` of a version-00 W3C `traceparent` value, as Tempo shows them; `None`
/// for anything else. Read independently of the handlers' own parser, which is under test.
pub fn traceparent_ids(value: &str) -> Option<(String, String)> {
    let fields: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match fields[..] {
        ["00", trace, span, flags] if hex(trace, 32) && hex(span, 16) && hex(flags, 2) => {
            Some((trace.to_string(), span.to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_ids_of_a_traceparent() {
        let (trace, span) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
        assert_eq!(
            traceparent_ids(&format!("00-{trace}-{span}-01")),
            Some((trace.to_string(), span.to_string()))
        );
        for bad in [
            format!("01-{trace}-{span}-01"),
            format!("00-{trace}-{span}"),
            format!("00-{trace}-{span}-01-x"),
            format!("00-{}-{span}-01", trace.to_uppercase()),
            format!("00-{trace}-{}-01", &span[1..]),
        ] {
            assert_eq!(traceparent_ids(&bad), None, "{bad}");
        }
    }

    #[test]
    fn counts_the_most_spans_running_at_once() {
        let at = |start_ns, end_ns| Span {
            start_ns,
            end_ns,
            ..Default::default()
        };
        assert_eq!(shape::most_at_once(&[]), 0);
        // In a row, touching at 20: one at a time.
        assert_eq!(
            shape::most_at_once(&[at(20, 30), at(10, 20), at(30, 40)]),
            1
        );
        // 15..25 overlaps each neighbour, but not both at once.
        assert_eq!(
            shape::most_at_once(&[at(10, 20), at(15, 25), at(22, 30)]),
            2
        );
        // All three run during 15..18.
        assert_eq!(
            shape::most_at_once(&[at(10, 20), at(15, 25), at(12, 18)]),
            3
        );
    }

    #[test]
    fn parses_a_tempo_v1_body_with_base64_ids_and_links() {
        let body = json!({"batches": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "apiserver"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": "AAECAwQFBgcICQoLDA0ODw==",
                "spanId": "AAECAwQFBgc=",
                "name": "GET /api",
                "kind": "SPAN_KIND_SERVER",
                "startTimeUnixNano": "100",
                "endTimeUnixNano": "250",
                "attributes": [{"key": "http.status_code", "value": {"intValue": "200"}}],
                "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
                "links": [{"traceId": "AAECAwQFBgcICQoLDA0ODw==", "spanId": "CAkKCwwNDg8="}]
            }]}]
        }]});
        let spans = parse_trace(&body);
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(s.trace_id, "000102030405060708090a0b0c0d0e0f");
        assert_eq!(s.span_id, "0001020304050607");
        assert!(s.is_root());
        assert_eq!(s.service, "apiserver");
        assert_eq!(s.duration_ns(), 150);
        assert_eq!(s.attributes["http.status_code"], "200");
        assert_eq!(s.status_code, "STATUS_CODE_ERROR");
        assert_eq!(
            s.links,
            vec![(
                "000102030405060708090a0b0c0d0e0f".into(),
                "08090a0b0c0d0e0f".into()
            )]
        );
    }

    #[test]
    fn new_ids_are_valid_w3c_ids() {
        let (t, s) = new_ids();
        assert_eq!(t.len(), 32);
        assert_eq!(s.len(), 16);
        assert!(t.bytes().chain(s.bytes()).all(|b| b.is_ascii_hexdigit()));
        assert_ne!(t, "0".repeat(32));
    }
}

/// Questions about the shape of one trace.
pub mod shape {
    use super::Span;

    /// The span named `name` emitted by `service`.
    pub fn named<'a>(spans: &'a [Span], service: &str, name: &str) -> Vec<&'a Span> {
        spans
            .iter()
            .filter(|s| s.service == service && s.name == name)
            .collect()
    }

    /// The parent of `span` in `spans`, if present.
    pub fn parent<'a>(spans: &'a [Span], span: &Span) -> Option<&'a Span> {
        spans
            .iter()
            .find(|p| !span.parent_span_id.is_empty() && p.span_id == span.parent_span_id)
    }

    /// Whether `ancestor` is above `span`.
    pub fn descends_from(spans: &[Span], span: &Span, ancestor: &Span) -> bool {
        let mut current = parent(spans, span);
        let mut hops = 0;
        while let Some(p) = current {
            if p.span_id == ancestor.span_id {
                return true;
            }
            hops += 1;
            if hops > 64 {
                return false;
            }
            current = parent(spans, p);
        }
        false
    }

    /// Spans whose parent id is not in the trace (the root is not an orphan).
    pub fn orphans(spans: &[Span]) -> Vec<&Span> {
        spans
            .iter()
            .filter(|s| {
                !s.parent_span_id.is_empty() && !spans.iter().any(|p| p.span_id == s.parent_span_id)
            })
            .collect()
    }

    /// Whether all of `spans` overlap in time (each starts before the first one ends).
    pub fn overlap(spans: &[&Span]) -> bool {
        let latest_start = spans.iter().map(|s| s.start_ns).max();
        let earliest_end = spans.iter().map(|s| s.end_ns).min();
        matches!((latest_start, earliest_end), (Some(s), Some(e)) if s < e)
    }

    /// The largest number of `spans` running at the same instant (spans that only touch, one
    /// ending as the next starts, do not overlap).
    pub fn most_at_once(spans: &[Span]) -> usize {
        let mut edges: Vec<(u64, i32)> = spans
            .iter()
            .flat_map(|s| [(s.start_ns, 1), (s.end_ns, -1)])
            .collect();
        // At equal times -1 sorts before +1: an end is counted before a start.
        edges.sort_unstable();
        let (mut now, mut most) = (0i32, 0i32);
        for (_, step) in edges {
            now += step;
            most = most.max(now);
        }
        usize::try_from(most).unwrap_or_default()
    }

    /// One line per span, for failure messages.
    pub fn describe(spans: &[Span]) -> String {
        spans
            .iter()
            .map(|s| {
                format!(
                    "{} {} {} parent={} status={}",
                    s.service, s.name, s.span_id, s.parent_span_id, s.status_code
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
