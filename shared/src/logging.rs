//! Log output of the handlers: JSON or text on stderr, filtered by `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use crate::cli::LogFormat;

/// Installs the global subscriber. An invalid `RUST_LOG` falls back to `info` with a warning
/// instead of failing the process.
pub fn init(format: LogFormat) {
    let (filter, bad_filter) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, None),
        Err(err) if std::env::var_os(EnvFilter::DEFAULT_ENV).is_some() => {
            (EnvFilter::new("info"), Some(err.to_string()))
        }
        Err(_) => (EnvFilter::new("info"), None),
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .try_init();
    if let Some(err) = bad_filter {
        tracing::warn!(error = %err, "invalid RUST_LOG, using \"info\"");
    }
}
