//! Command-line flags both handlers share. Each flag has an environment fallback so the
//! Deployments configure the binaries through `env:` alone.

use std::time::Duration;

use clap::Args;
use multigres_telemetry::LogFormat;

/// The environment both handlers read besides their flags' own variables, printed after
/// `--help`'s flags.
pub const ENVIRONMENT_HELP: &str = "\
Environment:
  KUBECONFIG                    kubeconfig file; in a pod, its ServiceAccount is used
  RUST_LOG                      log filter (default info; an invalid value falls back to info)
  OTEL_EXPORTER_OTLP_ENDPOINT   where spans go (also OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
                                without it nothing is exported, logs still carry trace_id
  OTEL_EXPORTER_OTLP_PROTOCOL   grpc (default) or http/protobuf
  OTEL_TRACES_SAMPLER           always_on, always_off, traceidratio, parentbased_* (default
                                parentbased_traceidratio at 1.0), with OTEL_TRACES_SAMPLER_ARG
  MULTIGRES_TRACES_KEEP_SLOWER_THAN
                                seconds (default 10): a reconcile that fails or takes this
                                long is exported at any sampling rate (not with *always_off)
  MULTIGRES_TRACES_KEEP_FAILURES
                                false: export only what the sampler samples (default true)
  OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER,
  OTEL_BSP_*                    as the OpenTelemetry specification defines them
  POD_NAME, POD_NAMESPACE       the pod (Downward API): the leader identity, k8s.* attributes";

/// Flags common to both handler binaries.
#[derive(Clone, Debug, Args)]
pub struct CommonArgs {
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,

    /// How long to wait for the Kubernetes API server at startup before giving up.
    #[arg(long, env = "CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Watch only this namespace instead of the whole cluster.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// How often a healthy object is reconciled again without any event.
    #[arg(long, env = "RESYNC_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub resync: Duration,

    /// How long the reconciles of a generation that does not get Ready keep joining its trace;
    /// later ones start traces of their own, linked to it.
    #[arg(long, env = "TRACE_FOLLOW_WINDOW", default_value = "30m", value_parser = parse_duration)]
    pub trace_follow_window: Duration,

    /// Reconciles each controller runs at once (0: no limit). A burst of new objects then
    /// reaches the API server as a steady stream: unbounded, a thousand Service creates at once
    /// queue behind the API server's cluster-IP allocator past its 34 s write timeout, and every
    /// retry adds to the queue.
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = 16)]
    pub max_concurrent_reconciles: u16,

    /// Address of the admin endpoint (/healthz, /readyz, /metrics).
    #[arg(long, env = "ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: std::net::SocketAddr,

    #[command(flatten)]
    pub leader: LeaderElectionArgs,
}

/// Leader election: with several replicas of a handler, one reconciles and the others stand by.
#[derive(Clone, Debug, Args)]
pub struct LeaderElectionArgs {
    /// Compete for a Lease and reconcile only while holding it (the Deployments turn it on).
    #[arg(long, env = "LEADER_ELECT", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,

    /// Namespace of the Lease [default: $POD_NAMESPACE, else multigres-system].
    #[arg(long, env = "LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// This replica's name in the Lease [default: $POD_NAME, else <hostname>-<pid>].
    #[arg(long, env = "LEADER_ELECTION_IDENTITY")]
    pub leader_election_identity: Option<String>,

    /// How long a Lease stays valid without renewal; a standby takes over after it expires.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// How long before expiry the leader renews (also the clock skew tolerated between nodes).
    #[arg(long, env = "LEASE_RENEW_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub lease_renew_grace: Duration,
}

impl CommonArgs {
    /// Controller settings from the flags: the concurrency bound.
    pub fn controller_config(&self) -> kube::runtime::controller::Config {
        kube::runtime::controller::Config::default().concurrency(self.max_concurrent_reconciles)
    }

    /// An API for `K` in the watched scope: one namespace, or all of them.
    pub fn watch_api<K>(&self, client: &kube::Client) -> kube::Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    {
        match &self.namespace {
            Some(ns) => kube::Api::namespaced(client.clone(), ns),
            None => kube::Api::all(client.clone()),
        }
    }
}

/// Parses durations written as `<n>ms`, `<n>s`, `<n>m` or `<n>h` (a bare number is seconds).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    // A bare number is seconds, as the flags have always accepted.
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value
            .parse()
            .map(Duration::from_secs)
            .map_err(|e| format!("invalid duration {value:?}: {e}"));
    }
    let parsed: jiff::SignedDuration = value
        .parse()
        .map_err(|e| format!("invalid duration {value:?}: {e} (e.g. 500ms, 10s, 5m, 1h30m)"))?;
    Duration::try_from(parsed).map_err(|_| format!("invalid duration {value:?}: it is negative"))
}

/// Parses an `http://` or `https://` URL with a host, e.g. an OTLP endpoint handed to other
/// processes (which may speak TLS even when this one does not).
pub fn parse_url(value: &str) -> Result<String, String> {
    let value = value.trim();
    let uri: http::Uri = value
        .parse()
        .map_err(|_| format!("{value:?} is not a URL; expected e.g. http://collector:4317"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return Err(format!(
            "{value:?} must be an http:// or https:// URL with a host, e.g. http://collector:4317"
        ));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    fn parse(args: &[&str]) -> Result<CommonArgs, clap::Error> {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("handler").chain(args.iter().copied()))
            .map(|c| c.common)
    }

    #[test]
    fn reconciles_are_bounded_unless_asked_otherwise() {
        assert_eq!(parse(&[]).expect("defaults").max_concurrent_reconciles, 16);
        let unbounded = parse(&["--max-concurrent-reconciles", "0"]).expect("0");
        assert_eq!(unbounded.max_concurrent_reconciles, 0);
        let err = parse(&["--max-concurrent-reconciles=-1"]).expect_err("negative");
        assert!(
            err.to_string().contains("max-concurrent-reconciles"),
            "{err}"
        );
    }

    #[test]
    fn urls_need_a_scheme_and_a_host() {
        assert_eq!(
            parse_url(" http://198.18.0.1:4318 "),
            Ok("http://198.18.0.1:4318".to_string())
        );
        assert!(parse_url("https://otel.example.com/otlp").is_ok());
        for bad in ["", "otel:4317", "ftp://otel", "http://", "not a url"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_durations_are_refused_with_a_hint() {
        for bad in ["", "s", "10x", "-1s", "99999999999999999999h", "5 parsecs"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains("invalid duration"), "{bad}: {err}");
        }
    }
}
