//! Log output of the handlers: JSON or text on stderr, filtered by `RUST_LOG` (default `info`).
//! The subscriber lives in [`crate::telemetry`]; this is its no-export entry point.

use crate::cli::LogFormat;

/// Installs the global subscriber without span export (log lines still carry the ids of the
/// current span). An invalid `RUST_LOG` falls back to `info` with a warning. Handlers that
/// export spans call [`crate::telemetry::init`] instead.
pub fn init(format: LogFormat) {
    crate::telemetry::init_without_export(format);
}
