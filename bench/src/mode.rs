//! The tracing modes the handlers run in, side by side: their names in the report and on the
//! command line, and the environment that sets each up.

use e2e::TestEnv;

/// A tracing mode; `--modes` takes the `value` names, and `--help` lists them in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Tracing off: the baseline every other mode is compared with.
    #[value(name = "off")]
    Off,
    /// 100% sampling, exported to Tempo over OTLP gRPC (also accepted as "100%").
    #[value(name = "on", alias = "100%")]
    Full,
    /// 1% sampling (parent-based ratio), exported to Tempo.
    #[value(name = "1%")]
    OnePercent,
    /// 100% sampling, exporting to a port nothing listens on: the trace backend is down.
    #[value(name = "down")]
    BackendDown,
    /// 100% sampling exported over OTLP HTTP/protobuf instead of gRPC.
    #[value(name = "http")]
    FullHttp,
    /// 100% without keeping failed and slow reconciles (MULTIGRES_TRACES_KEEP_FAILURES=false):
    /// the rules before that existed.
    #[value(name = "on-plain")]
    FullPlain,
    /// 1% without keeping failed and slow reconciles.
    #[value(name = "1%-plain")]
    OnePercentPlain,
}

impl Mode {
    pub fn name(self) -> &'static str {
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
    pub fn slug(self) -> &'static str {
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

    pub fn env(self, env: &TestEnv) -> Vec<(String, String)> {
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
