//! Process-level plumbing both binaries share: shutdown signals and the exit path.

use std::process::ExitCode;

/// Resolves on SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Logs a fatal error with its whole cause chain on one line and turns it into exit code 1.
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "fatal");
            ExitCode::FAILURE
        }
    }
}

/// What every handler has once started: its client, metrics, readiness flag and telemetry.
pub struct Started {
    pub client: kube::Client,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    pub health: std::sync::Arc<crate::admin::Health>,
    /// Flush it on the way out: [`Started::stop_telemetry`].
    pub telemetry: crate::telemetry::TelemetryGuard,
}

impl Started {
    /// Flushes pending spans (bounded by `deadline`, so an unreachable collector cannot hold up
    /// the exit).
    pub async fn stop_telemetry(self, deadline: std::time::Duration) {
        if let Err(err) = self.telemetry.shutdown(deadline).await {
            tracing::warn!(error = %err, "flushing spans did not finish");
        }
    }
}

/// The common start of a handler: logging and tracing (`name` is the default `service.name`),
/// the admin endpoint (so `/healthz` answers while connecting), then the instrumented client.
/// `/readyz` turns ready when the caller says so.
pub async fn start(common: &crate::cli::CommonArgs, name: &'static str) -> anyhow::Result<Started> {
    let telemetry = crate::telemetry::init(common.log_format, name);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "starting {name}");
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
    let health = std::sync::Arc::new(crate::admin::Health::default());
    crate::admin::serve(common.admin_addr, metrics.clone(), health.clone())
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot serve the admin endpoint on {}: {e}",
                common.admin_addr
            )
        })?;
    let client = crate::kubeconnect::connect(common.connect_timeout, metrics.clone()).await?;
    Ok(Started {
        client,
        metrics,
        health,
        telemetry,
    })
}

/// How long controllers get after SIGTERM to finish the reconciles in flight.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `controllers` (which stop by themselves after `shutdown`, finishing the reconciles in
/// flight) and gives them at most `grace` after `shutdown` resolves; in-flight work still
/// running then is abandoned so the process always exits in bounded time.
pub async fn run_until_stopped(
    controllers: impl std::future::Future<Output = ()>,
    shutdown: impl std::future::Future<Output = ()>,
    grace: std::time::Duration,
) {
    let deadline = async {
        shutdown.await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = controllers => {}
        () = deadline => tracing::warn!(grace_secs = grace.as_secs(), "controllers did not stop in time; abandoning the reconciles in flight"),
    }
}
