//! W3C trace context carried in object annotations across the process boundary.
//!
//! Pure functions: the parent stamps [`annotations_for`] of its `apply <Kind>` span onto the
//! child; the child's reconcile calls [`decide`] to join that trace, link to it, or start fresh.
//! Annotations are user-writable input, so parsing is strict and bounded.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

pub use multigres_api::meta::{
    TRACEPARENT_ANNOTATION, TRACEPARENT_TS_ANNOTATION, TRACESTATE_ANNOTATION,
};

/// How old an annotation may be for a new generation to join its trace.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// How far in the future a timestamp may be (clocks of two pods disagree a little).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Longer values are refused before any parsing work.
const MAX_VALUE_LEN: usize = 512;
const TRACEPARENT_LEN: usize = 55;
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Why a `traceparent` value was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("empty traceparent")]
    Empty,
    #[error("traceparent is {0} bytes, more than {MAX_VALUE_LEN}")]
    TooLong(usize),
    #[error("traceparent version ff is forbidden")]
    ForbiddenVersion,
    #[error("traceparent version {0:?} is not supported (only 00)")]
    UnsupportedVersion(String),
    #[error("traceparent has extra fields after the flags")]
    ExtraFields,
    #[error("traceparent is {0} bytes, version 00 needs exactly {TRACEPARENT_LEN}")]
    Length(usize),
    #[error("traceparent fields must be separated by '-'")]
    Delimiter,
    #[error("traceparent {0} is not lowercase hex")]
    NotLowercaseHex(&'static str),
    #[error("traceparent trace id is all zeros")]
    ZeroTraceId,
    #[error("traceparent span id is all zeros")]
    ZeroSpanId,
}

/// What a reconcile should do with the annotated context.
#[derive(Clone, Debug, PartialEq)]
pub enum Parent {
    /// Make it the parent of the reconcile span (new generation, fresh annotation).
    Join(SpanContext),
    /// Start a new root trace with a span link to it.
    Link(SpanContext),
    /// No annotation: a new root trace.
    Root,
    /// Present but invalid: callers start a new root and record a warning event.
    Malformed(String),
}

/// Parses a W3C `traceparent` strictly: version 00 only, exactly 55 bytes, lowercase hex,
/// non-zero ids. The result is a remote span context without trace state.
pub fn parse_traceparent(value: &str) -> Result<SpanContext, Malformed> {
    let b = value.as_bytes();
    if b.is_empty() {
        return Err(Malformed::Empty);
    }
    if b.len() > MAX_VALUE_LEN {
        return Err(Malformed::TooLong(b.len()));
    }
    let version = b.get(..2).ok_or(Malformed::Length(b.len()))?;
    hex(version, "version")?;
    if version == b"ff" {
        return Err(Malformed::ForbiddenVersion);
    }
    if version != b"00" {
        // Only hex digits reach here, so this is valid UTF-8.
        return Err(Malformed::UnsupportedVersion(
            String::from_utf8_lossy(version).into_owned(),
        ));
    }
    if b.len() != TRACEPARENT_LEN {
        return Err(if b.len() > TRACEPARENT_LEN && b[TRACEPARENT_LEN] == b'-' {
            Malformed::ExtraFields
        } else {
            Malformed::Length(b.len())
        });
    }
    if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return Err(Malformed::Delimiter);
    }
    let trace_id = hex(&b[3..35], "trace id")?;
    let span_id = hex(&b[36..52], "span id")?;
    let flags = hex(&b[53..55], "flags")?;
    if trace_id == 0 {
        return Err(Malformed::ZeroTraceId);
    }
    if span_id == 0 {
        return Err(Malformed::ZeroSpanId);
    }
    // Field widths bound the values: 16, 8 and 1 bytes.
    Ok(SpanContext::new(
        TraceId::from(trace_id),
        SpanId::from(span_id as u64),
        TraceFlags::new(flags as u8),
        true,
        TraceState::NONE,
    ))
}

/// Lowercase hex of at most 32 digits into a number.
fn hex(digits: &[u8], field: &'static str) -> Result<u128, Malformed> {
    digits.iter().try_fold(0u128, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return Err(Malformed::NotLowercaseHex(field)),
        };
        Ok((acc << 4) | u128::from(v))
    })
}

/// Parses a W3C `tracestate` tolerantly: invalid members are dropped, never an error. Bounded:
/// a value over 512 bytes or with more than 32 members is dropped whole (W3C says to discard it).
pub fn parse_tracestate(value: &str) -> TraceState {
    if value.len() > MAX_VALUE_LEN {
        return TraceState::NONE;
    }
    let members: Vec<&str> = value
        .split(',')
        .map(|m| m.trim_matches([' ', '\t']))
        .filter(|m| !m.is_empty())
        .collect();
    if members.len() > MAX_TRACESTATE_MEMBERS {
        return TraceState::NONE;
    }
    let mut kept: Vec<(&str, &str)> = Vec::new();
    for member in members {
        let Some((key, val)) = member.split_once('=') else {
            continue;
        };
        // W3C value: printable ASCII except ',' and '=', not ending in a space.
        let val_ok = !val.is_empty()
            && !val.ends_with(' ')
            && val
                .bytes()
                .all(|c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=');
        // The SDK validates keys; a duplicate key keeps its first (most recent) entry.
        if val_ok
            && TraceState::from_key_value([(key, val)]).is_ok()
            && !kept.iter().any(|(k, _)| *k == key)
        {
            kept.push((key, val));
        }
    }
    TraceState::from_key_value(kept).unwrap_or(TraceState::NONE)
}

/// The `traceparent` of a span context (version 00).
pub fn format_traceparent(cx: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        cx.trace_id(),
        cx.span_id(),
        cx.trace_flags().to_u8()
    )
}

/// The annotations a parent stamps on a child it applies. Empty for an invalid context (no
/// tracing layer), so no receiver ever sees a malformed annotation we wrote.
pub fn annotations_for(cx: &SpanContext, now_unix_secs: u64) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if !cx.is_valid() {
        return out;
    }
    out.insert(TRACEPARENT_ANNOTATION.to_string(), format_traceparent(cx));
    out.insert(
        TRACEPARENT_TS_ANNOTATION.to_string(),
        now_unix_secs.to_string(),
    );
    let state = cx.trace_state().header();
    if !state.is_empty() {
        out.insert(TRACESTATE_ANNOTATION.to_string(), state);
    }
    out
}

/// What the receiving rule weighs besides the annotations.
#[derive(Clone, Copy, Debug)]
pub struct Rule<'a> {
    /// This reconcile is the first of a new generation of the object.
    pub acting_on_new_generation: bool,
    pub now_unix_secs: u64,
    /// How old a stamped annotation may be and still be joined.
    pub max_age: Duration,
    /// Traces the object's earlier generations joined (its `status.lastTraceId`, and what
    /// this process remembers): an annotation naming one of them was used already.
    pub used_trace_ids: &'a [String],
}

impl Rule<'static> {
    /// The rule for a reconcile with no trace used before.
    pub fn new(acting_on_new_generation: bool, now_unix_secs: u64, max_age: Duration) -> Self {
        Rule {
            acting_on_new_generation,
            now_unix_secs,
            max_age,
            used_trace_ids: &[],
        }
    }
}

impl<'a> Rule<'a> {
    /// The same rule, with traces the object's earlier generations joined.
    pub fn used(self, used_trace_ids: &'a [String]) -> Rule<'a> {
        Rule {
            used_trace_ids,
            ..self
        }
    }
}

/// The receiving rule: join the annotated context when acting on a new generation, the
/// context was not used by an earlier generation, and it is fresh: stamped by a handler
/// (`traceparent-ts`) within `max_age`, or put there by a user (no stamp), who sets it with the
/// change it is about. Link to it otherwise (resync, drift repair, a stale or unreadable
/// stamp, a value used before); root when absent.
pub fn decide(annotations: &BTreeMap<String, String>, rule: &Rule<'_>) -> Parent {
    let Some(value) = annotations.get(TRACEPARENT_ANNOTATION) else {
        return Parent::Root;
    };
    let cx = match parse_traceparent(value) {
        Ok(cx) => cx,
        Err(err) => return Parent::Malformed(err.to_string()),
    };
    let state = annotations
        .get(TRACESTATE_ANNOTATION)
        .map(|s| parse_tracestate(s))
        .unwrap_or_default();
    let cx = SpanContext::new(cx.trace_id(), cx.span_id(), cx.trace_flags(), true, state);
    let now = rule.now_unix_secs;
    let fresh = match annotations.get(TRACEPARENT_TS_ANNOTATION) {
        None => true,
        // Strictly digits: no sign, no spaces, at most u64.
        Some(ts) => Some(ts)
            .filter(|ts| !ts.is_empty() && ts.len() <= 20 && ts.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|ts| ts.parse::<u64>().ok())
            .is_some_and(|ts| {
                ts <= now.saturating_add(MAX_CLOCK_SKEW.as_secs())
                    && now.saturating_sub(ts) <= rule.max_age.as_secs()
            }),
    };
    let trace_id = cx.trace_id().to_string();
    let used = rule.used_trace_ids.contains(&trace_id);
    if rule.acting_on_new_generation && fresh && !used {
        Parent::Join(cx)
    } else {
        Parent::Link(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const NOW: u64 = 1_700_000_000;

    #[test]
    fn parses_a_valid_traceparent() {
        let cx = parse_traceparent(GOOD).expect("valid");
        assert_eq!(
            cx.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(cx.span_id().to_string(), "00f067aa0ba902b7");
        assert!(cx.is_sampled() && cx.is_remote() && cx.is_valid());
        let unsampled = parse_traceparent(&GOOD.replace("-01", "-00")).expect("valid");
        assert!(!unsampled.is_sampled());
    }

    #[test]
    fn every_malformed_variant() {
        use Malformed::*;
        let long = format!("{GOOD}{}", "a".repeat(10 * 1024));
        let cases: Vec<(String, Malformed)> = vec![
            (String::new(), Empty),
            (long.clone(), TooLong(long.len())),
            (
                GOOD.replacen("00", "01", 1),
                UnsupportedVersion("01".into()),
            ),
            (GOOD.replacen("00", "ff", 1), ForbiddenVersion),
            (GOOD.replacen("00", "0g", 1), NotLowercaseHex("version")),
            (GOOD.replacen("00", "AA", 1), NotLowercaseHex("version")),
            ("0".into(), Length(1)),
            (GOOD[..54].into(), Length(54)),
            (format!("{GOOD}0"), Length(56)),
            (format!("{GOOD}-extra"), ExtraFields),
            (GOOD.replace("-", "_"), Delimiter),
            (GOOD.to_uppercase(), NotLowercaseHex("trace id")),
            (
                GOOD.replace("4bf92f", "4BF92F"),
                NotLowercaseHex("trace id"),
            ),
            (
                GOOD.replace("00f067aa", "00F067AA"),
                NotLowercaseHex("span id"),
            ),
            (
                GOOD.replace("4bf92f", "4bf92x"),
                NotLowercaseHex("trace id"),
            ),
            (GOOD.replace("-01", "-0z"), NotLowercaseHex("flags")),
            (
                format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
                ZeroTraceId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01".into(),
                ZeroSpanId,
            ),
            (format!(" {}", &GOOD[..54]), NotLowercaseHex("version")),
            (format!("{} ", &GOOD[..54]), NotLowercaseHex("flags")),
            (format!("{GOOD} "), Length(56)),
            (GOOD.replace("4bf9", "4bé"), NotLowercaseHex("trace id")),
            ("é".into(), NotLowercaseHex("version")),
            ("00-ü".into(), Length(5)),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_traceparent(&value), Err(expected), "{value:?}");
        }
    }

    #[test]
    fn round_trip() {
        for (t, s, f) in [
            (1u128, 1u64, 0u8),
            (u128::MAX, u64::MAX, 1),
            (0x0af7651916cd43dd8448eb211c80319c, 0x00000000000000b7, 3),
        ] {
            let cx = SpanContext::new(
                TraceId::from(t),
                SpanId::from(s),
                TraceFlags::new(f),
                false,
                TraceState::NONE,
            );
            let text = format_traceparent(&cx);
            assert_eq!(text.len(), TRACEPARENT_LEN);
            let back = parse_traceparent(&text).expect("round trip");
            assert_eq!(
                (back.trace_id(), back.span_id(), back.trace_flags()),
                (cx.trace_id(), cx.span_id(), cx.trace_flags())
            );
        }
    }

    #[test]
    fn tracestate_is_tolerant_and_bounded() {
        assert_eq!(parse_tracestate("a=1, b=2").header(), "a=1,b=2");
        assert_eq!(parse_tracestate("").header(), "");
        // Invalid members are dropped, valid ones kept.
        assert_eq!(
            parse_tracestate("Bad=1,ok=2,novalue,x=,y=a\u{1}b,z=has=eq,vendor@sys=3,ok=dup")
                .header(),
            "ok=2,vendor@sys=3"
        );
        let members = |n: usize| {
            (0..n)
                .map(|i| format!("k{i}=v"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(parse_tracestate(&members(32)).header(), members(32));
        assert_eq!(parse_tracestate(&members(33)).header(), "");
        let long = format!("a={}", "v".repeat(600));
        assert_eq!(parse_tracestate(&long).header(), "");
    }

    #[test]
    fn annotations_round_trip_through_decide() {
        let state = parse_tracestate("vendor=abc");
        let cx = SpanContext::new(
            TraceId::from(7u128),
            SpanId::from(9u64),
            TraceFlags::SAMPLED,
            false,
            state,
        );
        let ann = annotations_for(&cx, NOW);
        assert_eq!(ann.len(), 3);
        assert_eq!(ann[TRACEPARENT_TS_ANNOTATION], NOW.to_string());
        assert_eq!(ann[TRACESTATE_ANNOTATION], "vendor=abc");
        let Parent::Join(got) = decide(&ann, &Rule::new(true, NOW + 5, DEFAULT_MAX_AGE)) else {
            panic!("expected join");
        };
        assert_eq!(
            (got.trace_id(), got.span_id()),
            (cx.trace_id(), cx.span_id())
        );
        assert!(got.is_remote() && got.is_sampled());
        assert_eq!(got.trace_state().header(), "vendor=abc");

        let plain = SpanContext::new(
            cx.trace_id(),
            cx.span_id(),
            cx.trace_flags(),
            false,
            TraceState::NONE,
        );
        assert!(!annotations_for(&plain, NOW).contains_key(TRACESTATE_ANNOTATION));
        assert!(annotations_for(&SpanContext::empty_context(), NOW).is_empty());
    }

    #[test]
    fn decision_table() {
        let ann = |tp: Option<&str>, ts: Option<&str>| {
            let mut m = BTreeMap::new();
            if let Some(tp) = tp {
                m.insert(TRACEPARENT_ANNOTATION.to_string(), tp.to_string());
            }
            if let Some(ts) = ts {
                m.insert(TRACEPARENT_TS_ANNOTATION.to_string(), ts.to_string());
            }
            m
        };
        let kind = |p: Parent| match p {
            Parent::Join(_) => "join",
            Parent::Link(_) => "link",
            Parent::Root => "root",
            Parent::Malformed(_) => "malformed",
        };
        let now = NOW.to_string();
        let age = |secs: i64| (NOW as i64 - secs).to_string();
        let max = DEFAULT_MAX_AGE;
        let cases: Vec<(Option<&str>, Option<String>, bool, &str)> = vec![
            (None, None, true, "root"),
            (None, Some(now.clone()), true, "root"),
            (Some("garbage"), Some(now.clone()), true, "malformed"),
            (Some(""), Some(now.clone()), false, "malformed"),
            (Some(GOOD), Some(now.clone()), true, "join"),
            (Some(GOOD), Some(now.clone()), false, "link"),
            (Some(GOOD), Some(age(600)), true, "join"),
            (Some(GOOD), Some(age(601)), true, "link"),
            (Some(GOOD), Some(age(-60)), true, "join"),
            (Some(GOOD), Some(age(-61)), true, "link"),
            // A user's own value (no stamp) joins the change it arrives with.
            (Some(GOOD), None, true, "join"),
            (Some(GOOD), None, false, "link"),
            (Some(GOOD), Some("soon".into()), true, "link"),
            (Some(GOOD), Some("-5".into()), true, "link"),
            (Some(GOOD), Some(" 1".into()), true, "link"),
            (
                Some(GOOD),
                Some("99999999999999999999999".into()),
                true,
                "link",
            ),
            (Some(GOOD), Some("0".into()), true, "link"),
        ];
        for (tp, ts, new_gen, expected) in cases {
            let got = decide(&ann(tp, ts.as_deref()), &Rule::new(new_gen, NOW, max));
            assert_eq!(kind(got), expected, "{tp:?} {ts:?} {new_gen}");
        }
        // A custom max age applies.
        let fresh = ann(Some(GOOD), Some(&age(30)));
        assert_eq!(
            kind(decide(
                &fresh,
                &Rule::new(true, NOW, Duration::from_secs(10))
            )),
            "link"
        );
        // A value whose trace an earlier generation joined (its status names it, or this
        // process remembers it) is left over: linked, never joined again, stamped or not.
        let used = [parse_traceparent(GOOD)
            .expect("valid")
            .trace_id()
            .to_string()];
        for ts in [None, Some(now.as_str())] {
            let rule = Rule::new(true, NOW, max).used(&used);
            assert_eq!(kind(decide(&ann(Some(GOOD), ts), &rule)), "link", "{ts:?}");
        }
        let other = ["0af7651916cd43dd8448eb211c80319c".to_string()];
        let rule = Rule::new(true, NOW, max).used(&other);
        assert_eq!(kind(decide(&ann(Some(GOOD), None), &rule)), "join");
        // Malformed carries the reason.
        let m = decide(
            &ann(Some(&GOOD.replacen("00", "ff", 1)), None),
            &Rule::new(true, NOW, max),
        );
        assert_eq!(
            m,
            Parent::Malformed(Malformed::ForbiddenVersion.to_string())
        );
    }

    /// Deterministic fuzzing without extra dependencies: mutations of a valid value plus random
    /// strings over an alphabet that hits every branch. Nothing may panic.
    #[test]
    fn never_panics() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet: Vec<char> = "0123456789abcdefABCDEF-_ ,=\t\u{e9}\u{1f600}\0xz@*/"
            .chars()
            .collect();
        for i in 0..5000 {
            let s: String = if i % 2 == 0 {
                let mut chars: Vec<char> = GOOD.chars().collect();
                for _ in 0..(next() % 4) {
                    let at = (next() as usize) % (chars.len() + 1);
                    let c = alphabet[(next() as usize) % alphabet.len()];
                    match next() % 3 {
                        0 if at < chars.len() => chars[at] = c,
                        1 if at < chars.len() => {
                            chars.remove(at);
                        }
                        _ => chars.insert(at, c),
                    }
                }
                chars.into_iter().collect()
            } else {
                let len = (next() % 80) as usize;
                (0..len)
                    .map(|_| alphabet[(next() as usize) % alphabet.len()])
                    .collect()
            };
            let _ = parse_traceparent(&s);
            let _ = parse_tracestate(&s);
            let mut ann = BTreeMap::new();
            ann.insert(TRACEPARENT_ANNOTATION.to_string(), s.clone());
            ann.insert(TRACESTATE_ANNOTATION.to_string(), s.clone());
            ann.insert(TRACEPARENT_TS_ANNOTATION.to_string(), s);
            let rule = Rule::new(
                next() % 2 == 0,
                next(),
                Duration::from_secs(next() % 10_000),
            );
            let _ = decide(&ann, &rule);
        }
    }
}
