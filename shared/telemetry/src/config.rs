//! Pure parsing of the standard OpenTelemetry environment into a [`TelemetryConfig`].
//!
//! The environment comes in through a lookup closure so every combination is testable without
//! touching the process environment. Nothing here fails: an invalid value is ignored as if it
//! were unset (the next source or the default applies) and produces exactly one warning text,
//! which the caller logs once the subscriber is up.
//!
//! Only what the SDK does not read, or reads differently, is parsed here: it reads the OTLP
//! headers, timeout and compression, the other `OTEL_BSP_*` and the span limits itself.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry_otlp::{
    OTEL_EXPORTER_OTLP_ENDPOINT as ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL as PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL as TRACES_PROTOCOL,
};

/// Spans that may wait for export before new ones are dropped (`OTEL_BSP_MAX_QUEUE_SIZE`).
pub const DEFAULT_MAX_QUEUE_SIZE: usize = opentelemetry_sdk::trace::OTEL_BSP_MAX_QUEUE_SIZE_DEFAULT;
/// A reconcile at least this long is exported at any sampling rate, like a failed one.
pub const DEFAULT_KEEP_SLOWER_THAN: Duration = Duration::from_secs(10);
/// Where the threshold for keeping slow reconciles is set, in seconds.
pub const KEEP_SLOWER_THAN_VAR: &str = "MULTIGRES_TRACES_KEEP_SLOWER_THAN";
/// `false` exports only what the sampler samples: failed and slow reconciles get no exception.
pub const KEEP_FAILURES_VAR: &str = "MULTIGRES_TRACES_KEEP_FAILURES";

/// OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

impl Protocol {
    /// The `OTEL_EXPORTER_OTLP_PROTOCOL` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

/// The variable an endpoint was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointVariable {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: a base URL, to which HTTP adds `/v1/traces`.
    Generic,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the URL used as-is.
    Traces,
}

impl EndpointVariable {
    /// The variable's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Generic => ENDPOINT,
            Self::Traces => TRACES_ENDPOINT,
        }
    }
}

/// Where and how spans are exported. Absent from [`TelemetryConfig`] when nothing is exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExporterConfig {
    pub protocol: Protocol,
    /// The final URL: for HTTP it already ends in `/v1/traces` when derived from the generic
    /// endpoint.
    pub endpoint: String,
    /// The variable the endpoint came from and its value as given, so another process can be
    /// configured the same way.
    pub source: (EndpointVariable, String),
}

/// The `OTEL_TRACES_SAMPLER` values; ratios are within `0.0..=1.0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerConfig {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

impl SamplerConfig {
    /// The `OTEL_TRACES_SAMPLER` value.
    pub fn name(self) -> &'static str {
        match self {
            Self::AlwaysOn => "always_on",
            Self::AlwaysOff => "always_off",
            Self::TraceIdRatio(_) => "traceidratio",
            Self::ParentBasedAlwaysOn => "parentbased_always_on",
            Self::ParentBasedAlwaysOff => "parentbased_always_off",
            Self::ParentBasedTraceIdRatio(_) => "parentbased_traceidratio",
        }
    }

    /// The sampler an `OTEL_TRACES_SAMPLER` value names (any case), ratios at 1.0.
    fn named(value: &str) -> Option<Self> {
        let value = value.to_ascii_lowercase();
        [
            Self::AlwaysOn,
            Self::AlwaysOff,
            Self::TraceIdRatio(1.0),
            Self::ParentBasedAlwaysOn,
            Self::ParentBasedAlwaysOff,
            Self::ParentBasedTraceIdRatio(1.0),
        ]
        .into_iter()
        .find(|s| s.name() == value)
    }

    /// The `OTEL_TRACES_SAMPLER_ARG` value: the ratio of the ratio samplers.
    pub fn arg(self) -> Option<f64> {
        match self {
            Self::TraceIdRatio(r) | Self::ParentBasedTraceIdRatio(r) => Some(r),
            _ => None,
        }
    }

    /// Whether failed and slow reconciles are exported even when not sampled: not when the
    /// user asked for no traces at all (`always_off`, `parentbased_always_off`).
    pub fn keeps_failures(self) -> bool {
        !matches!(self, Self::AlwaysOff | Self::ParentBasedAlwaysOff)
    }

    /// The same decision for new traces, but following the parent's decision when there is one.
    pub fn parent_based(self) -> Self {
        match self {
            Self::AlwaysOn => Self::ParentBasedAlwaysOn,
            Self::AlwaysOff => Self::ParentBasedAlwaysOff,
            Self::TraceIdRatio(r) => Self::ParentBasedTraceIdRatio(r),
            other => other,
        }
    }
}

/// Everything the telemetry pipeline needs, decided once at start.
#[derive(Clone, Debug, PartialEq)]
pub struct TelemetryConfig {
    pub service_name: String,
    /// `None`: SDK disabled, `OTEL_TRACES_EXPORTER=none` or no endpoint. Spans still exist (log
    /// correlation), nothing leaves the process.
    pub exporter: Option<ExporterConfig>,
    pub sampler: SamplerConfig,
    /// Every resource attribute, `service.name` included.
    pub resource: BTreeMap<String, String>,
    pub max_queue_size: usize,
    /// Whether failed and slow reconciles are exported whatever the sampler says (see
    /// [`SamplerConfig::keeps_failures`]; `MULTIGRES_TRACES_KEEP_FAILURES=false` turns it off).
    pub keep_failures: bool,
    /// Reconciles at least this long are exported whatever the sampler says (failed ones
    /// always are).
    pub keep_slower_than: Duration,
}

impl TelemetryConfig {
    /// Parses the environment seen through `lookup`. `pid` only feeds `service.instance.id` when
    /// no pod name is known. Returns the config and one warning per invalid value.
    pub fn from_lookup(
        default_service_name: &str,
        pid: u32,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> (Self, Vec<String>) {
        // The OTel spec treats an empty value as unset.
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut warnings = Vec::new();

        // The SDK reads neither OTEL_SDK_DISABLED nor OTEL_TRACES_EXPORTER.
        let disabled = match get("OTEL_SDK_DISABLED") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                warnings.push(format!(
                    "OTEL_SDK_DISABLED={v:?} is neither true nor false; using false"
                ));
                false
            }
        };

        let exporter_none = match get("OTEL_TRACES_EXPORTER") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("otlp") => false,
            Some(v) if v.eq_ignore_ascii_case("none") => true,
            Some(v) => {
                warnings.push(format!(
                    "OTEL_TRACES_EXPORTER={v:?} is neither otlp nor none; using otlp"
                ));
                false
            }
        };

        // Ours: the transport is picked before its builder; the SDK defaults to http/protobuf here.
        let protocol = [TRACES_PROTOCOL, PROTOCOL]
            .into_iter()
            .find_map(|name| {
                let value = get(name)?;
                match value.as_str() {
                    "grpc" => Some(Protocol::Grpc),
                    "http/protobuf" => Some(Protocol::HttpProtobuf),
                    other => {
                        let why = if other == "http/json" {
                            "is not supported"
                        } else {
                            "is not grpc or http/protobuf"
                        };
                        warnings.push(format!("{name}={other:?} {why}; ignoring it"));
                        None
                    }
                }
            })
            .unwrap_or(Protocol::Grpc);

        // Ours: the SDK exports to localhost when unset, fails on a bad per-signal one, won't trim.
        let endpoint = [EndpointVariable::Traces, EndpointVariable::Generic]
            .into_iter()
            .find_map(|variable| {
                let name = variable.name();
                let value = get(name)?;
                let generic = variable == EndpointVariable::Generic;
                match endpoint_url(&value, protocol, generic) {
                    Ok(url) => Some((url, (variable, value))),
                    Err(why) => {
                        warnings.push(format!("{name}={value:?} {why}; ignoring it"));
                        None
                    }
                }
            });
        let exporter = match endpoint {
            Some((endpoint, source)) if !disabled && !exporter_none => Some(ExporterConfig {
                protocol,
                endpoint,
                source,
            }),
            _ => None,
        };

        // Ours: keep.rs needs it (`keeps_failures`); the SDK has no aliases and no range check.
        let sampler = parse_sampler(&get, &mut warnings);

        // Ours: the counting bound needs the number, and the SDK takes 0 (no queue) silently.
        let max_queue_size = match get("OTEL_BSP_MAX_QUEUE_SIZE") {
            None => DEFAULT_MAX_QUEUE_SIZE,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    warnings.push(format!(
                        "OTEL_BSP_MAX_QUEUE_SIZE={v:?} is not a positive integer; using {DEFAULT_MAX_QUEUE_SIZE}"
                    ));
                    DEFAULT_MAX_QUEUE_SIZE
                }
            },
        };

        let keep_slower_than = match get(KEEP_SLOWER_THAN_VAR) {
            None => DEFAULT_KEEP_SLOWER_THAN,
            Some(v) => match v.trim_end_matches('s').parse::<u64>() {
                Ok(secs) => Duration::from_secs(secs),
                Err(_) => {
                    warnings.push(format!(
                        "{KEEP_SLOWER_THAN_VAR}={v:?} is not a number of seconds; using {}",
                        DEFAULT_KEEP_SLOWER_THAN.as_secs()
                    ));
                    DEFAULT_KEEP_SLOWER_THAN
                }
            },
        };

        let keep_failures = match get(KEEP_FAILURES_VAR).map(|v| v.to_ascii_lowercase()) {
            None => true,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(v) => {
                warnings.push(format!(
                    "{KEEP_FAILURES_VAR}={v:?} is neither true nor false; using true"
                ));
                true
            }
        };

        // Detected attributes first; OTEL_RESOURCE_ATTRIBUTES may override them (explicit
        // configuration wins over detection), and OTEL_SERVICE_NAME wins over both.
        // Ours: the SDK's detectors neither percent-decode nor warn about a bad pair.
        let mut resource = BTreeMap::new();
        resource.insert(
            "service.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        );
        let pod = get("POD_NAME");
        let instance = match &pod {
            Some(pod) => pod.clone(),
            None => format!(
                "{}-{pid}",
                get("HOSTNAME").unwrap_or_else(|| "unknown-host".to_string())
            ),
        };
        resource.insert("service.instance.id".to_string(), instance);
        if let Some(pod) = pod {
            resource.insert("k8s.pod.name".to_string(), pod);
        }
        if let Some(ns) = get("POD_NAMESPACE") {
            resource.insert("k8s.namespace.name".to_string(), ns);
        }
        if let Some(attrs) = get("OTEL_RESOURCE_ATTRIBUTES") {
            resource.extend(parse_resource_attributes(&attrs, &mut warnings));
        }
        let service_name = get("OTEL_SERVICE_NAME")
            .or_else(|| resource.get("service.name").cloned())
            .unwrap_or_else(|| default_service_name.to_string());
        resource.insert("service.name".to_string(), service_name.clone());

        let config = TelemetryConfig {
            service_name,
            exporter,
            sampler,
            resource,
            max_queue_size,
            keep_failures: keep_failures && sampler.keeps_failures(),
            keep_slower_than,
        };
        (config, warnings)
    }
}

/// Validates an endpoint and, for HTTP from the generic variable, appends the signal path as
/// the OTLP spec requires (the per-signal variable is used as-is).
fn endpoint_url(value: &str, protocol: Protocol, generic: bool) -> Result<String, &'static str> {
    let uri: http::Uri = value.parse().map_err(|_| "is not a URL")?;
    match uri.scheme_str() {
        Some("http") => {}
        // Neither tonic nor reqwest is built with TLS here; failing at export time would only
        // show up as dropped spans, so refuse it up front.
        Some("https") => return Err("uses https, but TLS to the collector is not built in"),
        _ => return Err("must start with http://"),
    }
    if uri.authority().is_none() {
        return Err("has no host");
    }
    if protocol == Protocol::HttpProtobuf && generic {
        Ok(format!("{}/v1/traces", value.trim_end_matches('/')))
    } else {
        Ok(value.to_string())
    }
}

fn parse_sampler(
    get: &impl Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> SamplerConfig {
    // Standard names win over the design's aliases; an invalid value counts as unset.
    let sampler = ["OTEL_TRACES_SAMPLER", "OTEL_TRACE_SAMPLER"]
        .into_iter()
        .find_map(|name| {
            let value = get(name)?;
            let sampler = SamplerConfig::named(&value);
            if sampler.is_none() {
                warnings.push(format!(
                    "{name}={value:?} is not a known sampler; ignoring it"
                ));
            }
            sampler
        })
        // OTEL_TRACE_SAMPLING_RATE alone implies this, which is also the default.
        .unwrap_or(SamplerConfig::ParentBasedTraceIdRatio(1.0));
    // The ratio is read (and warned about) only for the samplers that take one.
    let mut ratio = || {
        ["OTEL_TRACES_SAMPLER_ARG", "OTEL_TRACE_SAMPLING_RATE"]
            .into_iter()
            .find_map(|name| {
                let value = get(name)?;
                match value.parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => Some(r),
                    _ => {
                        warnings.push(format!(
                            "{name}={value:?} is not a ratio between 0 and 1; ignoring it"
                        ));
                        None
                    }
                }
            })
            .unwrap_or(1.0)
    };
    match sampler {
        SamplerConfig::TraceIdRatio(_) => SamplerConfig::TraceIdRatio(ratio()),
        SamplerConfig::ParentBasedTraceIdRatio(_) => {
            SamplerConfig::ParentBasedTraceIdRatio(ratio())
        }
        other => other,
    }
}

/// `k=v,k=v` with percent-encoded keys and values; a bad pair is skipped with a warning.
fn parse_resource_attributes(value: &str, warnings: &mut Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parsed = pair.split_once('=').and_then(|(k, v)| {
            let key = percent_decode(k.trim())?;
            let value = percent_decode(v.trim())?;
            (!key.is_empty()).then_some((key, value))
        });
        match parsed {
            Some(kv) => out.push(kv),
            None => warnings.push(format!(
                "OTEL_RESOURCE_ATTRIBUTES entry {pair:?} is not key=value (percent-encoded); ignoring it"
            )),
        }
    }
    out
}

/// Decodes `%XX` escapes; `None` for a broken escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(env: &[(&str, &str)]) -> (TelemetryConfig, Vec<String>) {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TelemetryConfig::from_lookup("svc", 42, |k| env.get(k).cloned())
    }

    fn sampler(env: &[(&str, &str)]) -> (SamplerConfig, usize) {
        let (c, w) = parse(env);
        (c.sampler, w.len())
    }

    #[test]
    fn empty_env_is_quiet_and_exports_nothing() {
        let (c, w) = parse(&[]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.exporter, None);
        assert_eq!(c.sampler, SamplerConfig::ParentBasedTraceIdRatio(1.0));
        assert_eq!(c.service_name, "svc");
        assert_eq!(c.max_queue_size, DEFAULT_MAX_QUEUE_SIZE);
        assert_eq!(c.resource["service.name"], "svc");
        assert_eq!(c.resource["service.version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(c.resource["service.instance.id"], "unknown-host-42");
        assert!(!c.resource.contains_key("k8s.pod.name"));
    }

    #[test]
    fn every_sampler_name() {
        use SamplerConfig::*;
        let cases = [
            ("always_on", AlwaysOn),
            ("always_off", AlwaysOff),
            ("traceidratio", TraceIdRatio(1.0)),
            ("parentbased_always_on", ParentBasedAlwaysOn),
            ("parentbased_always_off", ParentBasedAlwaysOff),
            ("parentbased_traceidratio", ParentBasedTraceIdRatio(1.0)),
        ];
        for (name, expected) in cases {
            assert_eq!(
                sampler(&[("OTEL_TRACES_SAMPLER", name)]),
                (expected, 0),
                "{name}"
            );
            assert_eq!(
                sampler(&[("OTEL_TRACE_SAMPLER", name)]),
                (expected, 0),
                "alias {name}"
            );
        }
        assert_eq!(
            sampler(&[("OTEL_TRACES_SAMPLER", "jaeger_remote")]),
            (ParentBasedTraceIdRatio(1.0), 1)
        );
        assert_eq!(
            sampler(&[("OTEL_TRACES_SAMPLER", "")]),
            (ParentBasedTraceIdRatio(1.0), 0)
        );
    }

    #[test]
    fn ratio_bounds_and_garbage() {
        use SamplerConfig::*;
        let ratio = |arg: &str| {
            sampler(&[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", arg),
            ])
        };
        assert_eq!(ratio("0"), (TraceIdRatio(0.0), 0));
        assert_eq!(ratio("1"), (TraceIdRatio(1.0), 0));
        assert_eq!(ratio("0.25"), (TraceIdRatio(0.25), 0));
        assert_eq!(ratio(" 0.5 "), (TraceIdRatio(0.5), 0));
        for bad in [
            "-0.1", "1.01", "2", "NaN", "inf", "-inf", "half", "0,5", "1e999",
        ] {
            assert_eq!(ratio(bad), (TraceIdRatio(1.0), 1), "{bad}");
        }
        // An argument means nothing to the non-ratio samplers.
        assert_eq!(
            sampler(&[
                ("OTEL_TRACES_SAMPLER", "always_on"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.1")
            ]),
            (AlwaysOn, 0)
        );
    }

    #[test]
    fn aliases_and_precedence() {
        use SamplerConfig::*;
        // The rate alone implies parentbased_traceidratio.
        assert_eq!(
            sampler(&[("OTEL_TRACE_SAMPLING_RATE", "0.3")]),
            (ParentBasedTraceIdRatio(0.3), 0)
        );
        assert_eq!(
            sampler(&[
                ("OTEL_TRACE_SAMPLER", "traceidratio"),
                ("OTEL_TRACE_SAMPLING_RATE", "0.2")
            ]),
            (TraceIdRatio(0.2), 0)
        );
        // Standard names win.
        assert_eq!(
            sampler(&[
                ("OTEL_TRACES_SAMPLER", "always_off"),
                ("OTEL_TRACE_SAMPLER", "always_on")
            ]),
            (AlwaysOff, 0)
        );
        assert_eq!(
            sampler(&[
                ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
                ("OTEL_TRACE_SAMPLING_RATE", "0.9")
            ]),
            (ParentBasedTraceIdRatio(0.1), 0)
        );
        // An invalid standard value counts as unset: the alias applies, with one warning.
        assert_eq!(
            sampler(&[
                ("OTEL_TRACES_SAMPLER", "sometimes"),
                ("OTEL_TRACE_SAMPLER", "always_on")
            ]),
            (AlwaysOn, 1)
        );
        assert_eq!(
            sampler(&[
                ("OTEL_TRACES_SAMPLER_ARG", "x"),
                ("OTEL_TRACE_SAMPLING_RATE", "0.4")
            ]),
            (ParentBasedTraceIdRatio(0.4), 1)
        );
        assert_eq!(
            sampler(&[
                ("OTEL_TRACES_SAMPLER_ARG", "x"),
                ("OTEL_TRACE_SAMPLING_RATE", "y")
            ]),
            (ParentBasedTraceIdRatio(1.0), 2)
        );
    }

    #[test]
    fn disabled_wins_over_endpoint() {
        let ep = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4317");
        assert!(parse(&[ep]).0.exporter.is_some());
        for v in ["true", "TRUE", "True"] {
            let (c, w) = parse(&[ep, ("OTEL_SDK_DISABLED", v)]);
            assert_eq!((c.exporter, w.len()), (None, 0));
        }
        let (c, w) = parse(&[ep, ("OTEL_SDK_DISABLED", "false")]);
        assert!(c.exporter.is_some() && w.is_empty());
        let (c, w) = parse(&[ep, ("OTEL_SDK_DISABLED", "yes")]);
        assert!(c.exporter.is_some());
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn traces_exporter_none_turns_export_off() {
        let ep = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4317");
        for v in ["none", "NONE"] {
            let (c, w) = parse(&[ep, ("OTEL_TRACES_EXPORTER", v)]);
            assert_eq!((c.exporter, w.len()), (None, 0), "{v}");
        }
        let (c, w) = parse(&[ep, ("OTEL_TRACES_EXPORTER", "otlp")]);
        assert!(c.exporter.is_some() && w.is_empty());
        let (c, w) = parse(&[ep, ("OTEL_TRACES_EXPORTER", "zipkin")]);
        assert!(c.exporter.is_some());
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn the_endpoint_source_is_kept_as_given() {
        let source = |env: &[(&str, &str)]| parse(env).0.exporter.map(|e| e.source);
        let http = (PROTOCOL, "http/protobuf");
        assert_eq!(
            source(&[http, (ENDPOINT, " http://c:4318/ ")]),
            Some((EndpointVariable::Generic, "http://c:4318/".to_string()))
        );
        assert_eq!(
            source(&[
                (ENDPOINT, "http://a:4317"),
                (TRACES_ENDPOINT, "http://b:4317")
            ]),
            Some((EndpointVariable::Traces, "http://b:4317".to_string()))
        );
    }

    #[test]
    fn samplers_spell_back_as_they_parse() {
        use SamplerConfig::*;
        for sampler in [
            AlwaysOn,
            AlwaysOff,
            TraceIdRatio(0.25),
            ParentBasedAlwaysOn,
            ParentBasedAlwaysOff,
            ParentBasedTraceIdRatio(0.1),
        ] {
            let arg = sampler.arg().map(|r| r.to_string()).unwrap_or_default();
            let parsed = parse(&[
                ("OTEL_TRACES_SAMPLER", sampler.name()),
                ("OTEL_TRACES_SAMPLER_ARG", &arg),
            ])
            .0
            .sampler;
            assert_eq!(parsed, sampler);
        }
        assert_eq!(AlwaysOn.parent_based(), ParentBasedAlwaysOn);
        assert_eq!(AlwaysOff.parent_based(), ParentBasedAlwaysOff);
        assert_eq!(
            TraceIdRatio(0.5).parent_based(),
            ParentBasedTraceIdRatio(0.5)
        );
        assert_eq!(
            ParentBasedTraceIdRatio(0.5).parent_based(),
            ParentBasedTraceIdRatio(0.5)
        );
        assert_eq!(Protocol::Grpc.as_str(), "grpc");
        assert_eq!(Protocol::HttpProtobuf.as_str(), "http/protobuf");
    }

    #[test]
    fn protocols() {
        let proto = |env: &[(&str, &str)]| {
            let mut env = env.to_vec();
            env.push(("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:1"));
            let (c, w) = parse(&env);
            (c.exporter.map(|e| e.protocol), w.len())
        };
        assert_eq!(proto(&[]), (Some(Protocol::Grpc), 0));
        assert_eq!(proto(&[(PROTOCOL, "grpc")]), (Some(Protocol::Grpc), 0));
        assert_eq!(
            proto(&[(PROTOCOL, "http/protobuf")]),
            (Some(Protocol::HttpProtobuf), 0)
        );
        assert_eq!(
            proto(&[(PROTOCOL, "grpc"), (TRACES_PROTOCOL, "http/protobuf")]),
            (Some(Protocol::HttpProtobuf), 0)
        );
        assert_eq!(proto(&[(PROTOCOL, "http/json")]), (Some(Protocol::Grpc), 1));
        assert_eq!(proto(&[(PROTOCOL, "HTTP")]), (Some(Protocol::Grpc), 1));
        assert_eq!(
            proto(&[(TRACES_PROTOCOL, "http/json"), (PROTOCOL, "http/protobuf")]),
            (Some(Protocol::HttpProtobuf), 1)
        );
    }

    #[test]
    fn endpoint_composition() {
        let ep = |env: &[(&str, &str)]| {
            let (c, w) = parse(env);
            (c.exporter.map(|e| e.endpoint), w.len())
        };
        let http = (PROTOCOL, "http/protobuf");
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            ep(&[(ENDPOINT, "http://c:4317")]),
            (some("http://c:4317"), 0)
        );
        assert_eq!(
            ep(&[http, (ENDPOINT, "http://c:4318")]),
            (some("http://c:4318/v1/traces"), 0)
        );
        assert_eq!(
            ep(&[http, (ENDPOINT, "http://c:4318/")]),
            (some("http://c:4318/v1/traces"), 0)
        );
        assert_eq!(
            ep(&[http, (ENDPOINT, "http://c/otlp")]),
            (some("http://c/otlp/v1/traces"), 0)
        );
        // The per-signal endpoint is used as-is and wins.
        assert_eq!(
            ep(&[
                http,
                (ENDPOINT, "http://a:4318"),
                (TRACES_ENDPOINT, "http://b:4318/custom")
            ]),
            (some("http://b:4318/custom"), 0)
        );
        assert_eq!(
            ep(&[
                (ENDPOINT, "http://a:4317"),
                (TRACES_ENDPOINT, "http://b:4317")
            ]),
            (some("http://b:4317"), 0)
        );
        // Invalid per-signal endpoint: warning, the generic one applies.
        assert_eq!(
            ep(&[(ENDPOINT, "http://a:4317"), (TRACES_ENDPOINT, "not a url")]),
            (some("http://a:4317"), 1)
        );
        for bad in ["otel:4317", "https://otel:4317", "ftp://x", "http://", "::"] {
            assert_eq!(ep(&[(ENDPOINT, bad)]), (None, 1), "{bad}");
        }
        assert_eq!(ep(&[(ENDPOINT, "  ")]), (None, 0));
    }

    #[test]
    fn resource_attributes() {
        let (c, w) = parse(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=prod, team=db%20core ,k%3D=v%2C1",
            ),
            ("POD_NAME", "ch-0"),
            ("POD_NAMESPACE", "multigres"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.resource["deployment.environment.name"], "prod");
        assert_eq!(c.resource["team"], "db core");
        assert_eq!(c.resource["k="], "v,1");
        assert_eq!(c.resource["k8s.pod.name"], "ch-0");
        assert_eq!(c.resource["k8s.namespace.name"], "multigres");
        assert_eq!(c.resource["service.instance.id"], "ch-0");

        let (c, w) = parse(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "a=1,novalue,=x,b=%zz,c=%e2%82%ac,d=%ff,e=",
        )]);
        assert_eq!(w.len(), 4, "{w:?}");
        assert_eq!(c.resource["a"], "1");
        assert_eq!(c.resource["c"], "€");
        assert_eq!(c.resource["e"], "");
        assert!(!c.resource.contains_key("b") && !c.resource.contains_key("d"));
    }

    #[test]
    fn service_name_and_instance() {
        let (c, _) = parse(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs")]);
        assert_eq!(c.service_name, "from-attrs");
        let (c, _) = parse(&[
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
            ("OTEL_SERVICE_NAME", "explicit"),
        ]);
        assert_eq!(
            (c.service_name.as_str(), c.resource["service.name"].as_str()),
            ("explicit", "explicit")
        );
        let (c, _) = parse(&[("HOSTNAME", "node1")]);
        assert_eq!(c.resource["service.instance.id"], "node1-42");
        // Explicit configuration overrides detection.
        let (c, _) = parse(&[
            ("POD_NAME", "p"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=i"),
        ]);
        assert_eq!(c.resource["service.instance.id"], "i");
    }

    #[test]
    fn queue_size() {
        assert_eq!(
            parse(&[("OTEL_BSP_MAX_QUEUE_SIZE", "100")])
                .0
                .max_queue_size,
            100
        );
        for bad in ["0", "-1", "lots"] {
            let (c, w) = parse(&[("OTEL_BSP_MAX_QUEUE_SIZE", bad)]);
            assert_eq!((c.max_queue_size, w.len()), (DEFAULT_MAX_QUEUE_SIZE, 1));
        }
    }

    /// Whether failures are kept, the slow-reconcile threshold in seconds, and the warnings.
    fn keeping(env: &[(&str, &str)]) -> (bool, u64, Vec<String>) {
        let (c, w) = parse(env);
        (c.keep_failures, c.keep_slower_than.as_secs(), w)
    }

    #[test]
    fn the_slow_reconcile_threshold_is_seconds() {
        assert_eq!(keeping(&[]), (true, 10, vec![]));
        assert_eq!(keeping(&[(KEEP_SLOWER_THAN_VAR, "30")]), (true, 30, vec![]));
        assert_eq!(keeping(&[(KEEP_SLOWER_THAN_VAR, "5s")]), (true, 5, vec![]));
        assert_eq!(
            keeping(&[(KEEP_SLOWER_THAN_VAR, "soon")]),
            (
                true,
                10,
                vec![format!(
                    "{KEEP_SLOWER_THAN_VAR}=\"soon\" is not a number of seconds; using 10"
                )]
            )
        );
    }

    #[test]
    fn keeping_failures_can_be_turned_off() {
        assert_eq!(keeping(&[]), (true, 10, vec![]));
        assert_eq!(
            keeping(&[(KEEP_FAILURES_VAR, "False")]),
            (false, 10, vec![])
        );
        assert_eq!(keeping(&[(KEEP_FAILURES_VAR, "true")]), (true, 10, vec![]));
        assert_eq!(
            keeping(&[(KEEP_FAILURES_VAR, "no")]),
            (
                true,
                10,
                vec![format!(
                    "{KEEP_FAILURES_VAR}=\"no\" is neither true nor false; using true"
                )]
            )
        );
        // Not with a sampler that asks for no traces at all.
        assert_eq!(
            keeping(&[("OTEL_TRACES_SAMPLER", "always_off")]),
            (false, 10, vec![])
        );
    }
}
