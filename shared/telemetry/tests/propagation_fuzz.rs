//! Property tests of the trace-context annotations, which any user who can edit a child object
//! controls: arbitrary strings, huge values and unicode never panic, only a valid W3C context
//! is ever accepted, and what is accepted is exactly what was written.

use std::collections::BTreeMap;
use std::time::Duration;

use multigres_telemetry::propagation::{
    DEFAULT_MAX_AGE, Parent, Rule, TRACEPARENT_ANNOTATION, TRACEPARENT_TS_ANNOTATION,
    TRACESTATE_ANNOTATION, decide, format_traceparent, parse_traceparent, parse_tracestate,
};
use proptest::prelude::*;

const NOW: u64 = 1_800_000_000;

/// Strings shaped like a traceparent, with every byte free to go wrong.
fn near_traceparent() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-fA-F-]{50,60}",
        "00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}",
        "[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?",
        "00-[0-9a-f\u{e9}\u{1F600}]{30,34}-[0-9a-f]{16}-0[01]",
        any::<String>(),
        ".{0,64}",
    ]
}

fn huge() -> impl Strategy<Value = String> {
    (1usize..4, any::<char>())
        .prop_map(|(mb, c)| c.to_string().repeat(mb * 1024 * 1024 / c.len_utf8()))
}

fn valid_traceparent() -> impl Strategy<Value = String> {
    ("[0-9a-f]{32}", "[0-9a-f]{16}", "0[01]")
        .prop_filter("ids must not be all zero", |(t, s, _)| {
            t.bytes().any(|b| b != b'0') && s.bytes().any(|b| b != b'0')
        })
        .prop_map(|(t, s, f)| format!("00-{t}-{s}-{f}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn traceparent_parsing_never_panics_and_accepts_only_what_it_can_write_back(value in near_traceparent()) {
        if let Ok(cx) = parse_traceparent(&value) {
            prop_assert!(cx.is_valid());
            prop_assert!(cx.is_remote());
            prop_assert_eq!(format_traceparent(&cx), value);
        }
    }

    #[test]
    fn every_valid_traceparent_round_trips(value in valid_traceparent()) {
        let cx = parse_traceparent(&value).expect("valid W3C traceparent");
        prop_assert_eq!(format_traceparent(&cx), value);
    }

    #[test]
    fn tracestate_parsing_never_panics_and_stays_bounded(value in prop_oneof![any::<String>(), "([a-z0-9@_*/-]{1,20}=[ -~]{0,20},?){0,40}"]) {
        let state = parse_tracestate(&value);
        let header = state.header();
        prop_assert!(header.len() <= 512, "{} bytes kept", header.len());
        prop_assert!(header.split(',').filter(|m| !m.is_empty()).count() <= 32);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    #[test]
    fn the_annotation_rule_joins_only_a_valid_fresh_context_of_a_new_generation(
        traceparent in prop_oneof![valid_traceparent(), near_traceparent()],
        tracestate in proptest::option::of(any::<String>()),
        ts in proptest::option::of(prop_oneof![any::<String>(), (0u64..2 * NOW).prop_map(|n| n.to_string())]),
        new_generation in any::<bool>(),
    ) {
        let mut annotations = BTreeMap::from([(TRACEPARENT_ANNOTATION.to_string(), traceparent.clone())]);
        if let Some(state) = tracestate {
            annotations.insert(TRACESTATE_ANNOTATION.to_string(), state);
        }
        if let Some(ts) = &ts {
            annotations.insert(TRACEPARENT_TS_ANNOTATION.to_string(), ts.clone());
        }
        let valid = parse_traceparent(&traceparent).is_ok();
        match decide(&annotations, &Rule::new(new_generation, NOW, DEFAULT_MAX_AGE)) {
            Parent::Join(cx) => {
                prop_assert!(valid && new_generation);
                // A stamp, when there is one, must be fresh; none is a user's own value.
                let fresh = |t: &str| t.parse::<u64>().is_ok_and(|t| NOW.saturating_sub(t) <= DEFAULT_MAX_AGE.as_secs());
                prop_assert!(ts.as_deref().is_none_or(fresh), "joined with stamp {ts:?}");
                prop_assert_eq!(format_traceparent(&cx), traceparent);
            }
            Parent::Link(cx) => {
                prop_assert!(valid);
                prop_assert_eq!(format_traceparent(&cx), traceparent);
            }
            Parent::Malformed(reason) => {
                prop_assert!(!valid);
                prop_assert!(reason.len() < 200, "the warning stays short: {reason}");
            }
            Parent::Root => prop_assert!(false, "an annotation was present"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Megabytes of one character: refused before any parsing work, in any case quickly.
    #[test]
    fn huge_values_are_refused_without_panicking(value in huge()) {
        prop_assert!(parse_traceparent(&value).is_err());
        prop_assert_eq!(parse_tracestate(&value).header(), "");
        let annotations = BTreeMap::from([
            (TRACEPARENT_ANNOTATION.to_string(), value.clone()),
            (TRACESTATE_ANNOTATION.to_string(), value.clone()),
            (TRACEPARENT_TS_ANNOTATION.to_string(), value),
        ]);
        prop_assert!(matches!(decide(&annotations, &Rule::new(true, NOW, Duration::from_secs(600))), Parent::Malformed(_)));
    }
}
