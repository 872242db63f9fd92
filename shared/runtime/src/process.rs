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

/// Logs a fatal error with its cause chain on one line and turns it into exit code 1.
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %causes(&err), "fatal");
            ExitCode::FAILURE
        }
    }
}

/// `err` and its causes joined by `: `, each said once: many errors (kube's config errors
/// among them) already repeat their source in their own message.
fn causes(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// What every handler has once started: its client, metrics, readiness flag and telemetry.
pub struct Started {
    pub client: kube::Client,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    pub health: std::sync::Arc<crate::admin::Health>,
    /// Flush it on the way out: [`Started::stop_telemetry`].
    pub telemetry: multigres_telemetry::TelemetryGuard,
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
    let telemetry = multigres_telemetry::init(common.log_format, name);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "starting {name}");
    let controller = name.strip_prefix("multigres-").unwrap_or(name);
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new(controller));
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

/// How long releasing the lease and flushing spans may take on the way out (each).
const EXIT_STEP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// The signal controllers stop on (pass it to `Controller::graceful_shutdown_on`): SIGTERM or
/// SIGINT, or this replica losing the lease.
pub type Stop = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;

impl Started {
    /// Runs the handler until SIGTERM or SIGINT, then exits cleanly: release the lease, flush
    /// spans.
    ///
    /// Without leader election `controllers` runs at once. With it, the replica stands by
    /// (ready, `multigres_leader` 0) until it holds the Lease named `lease`, runs `controllers`
    /// while it leads, and stops them and stands by again if it loses the lease. `controllers`
    /// builds fresh watches on each call and must stop soon after its [`Stop`] resolves; it
    /// gets [`SHUTDOWN_GRACE`], then the reconciles still running are abandoned.
    pub async fn serve<F, Fut>(
        self,
        args: &crate::cli::LeaderElectionArgs,
        lease: &str,
        mut controllers: F,
    ) -> anyhow::Result<()>
    where
        F: FnMut(Stop) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        use futures::FutureExt;
        let shutdown: Stop = shutdown_signal().boxed().shared();
        let mut election = if args.leader_elect {
            let who = crate::leader::LeaseIdentity::resolve(args, lease)?;
            Some(crate::leader::Election::start(self.client.clone(), who).await?)
        } else {
            None
        };
        // Connected, CRDs present: ready, whether leading or standing by.
        self.health.set_ready(true);
        let result = loop {
            if let Some(election) = election.as_mut() {
                self.metrics.set_leader(false);
                let who = election.who();
                tracing::info!(lease = %who.lease, namespace = %who.namespace, identity = %who.identity, "standing by until this replica holds the lease");
                tokio::select! {
                    () = election.acquired() => {}
                    () = shutdown.clone() => break Ok(()),
                }
            }
            self.metrics.set_leader(true);
            let stop: Stop = match election.as_ref().map(|e| e.lost()) {
                None => shutdown.clone(),
                Some(lost) => {
                    let shutdown = shutdown.clone();
                    async move {
                        tokio::select! {
                            () = shutdown => {}
                            () = lost => {}
                        }
                    }
                    .boxed()
                    .shared()
                }
            };
            tracing::info!("controllers starting");
            let ran = run_until_stopped(controllers(stop.clone()), stop, SHUTDOWN_GRACE).await;
            if let Some(Err(err)) = ran {
                break Err(err);
            }
            if shutdown.peek().is_some() {
                break Ok(());
            }
            if election.as_ref().is_some_and(|e| !e.is_leading()) {
                tracing::warn!("leadership lost: controllers stopped");
                continue;
            }
            break Err(anyhow::anyhow!("the controllers stopped unexpectedly"));
        };
        self.metrics.set_leader(false);
        if let Some(election) = election {
            election.release(EXIT_STEP_DEADLINE).await;
        }
        tracing::info!("stopped");
        self.stop_telemetry(EXIT_STEP_DEADLINE).await;
        result
    }
}

/// Runs `controllers` (which stop by themselves after `shutdown`, finishing the reconciles in
/// flight) and gives them at most `grace` after `shutdown` resolves; in-flight work still
/// running then is abandoned (`None`) so the process always exits in bounded time.
pub async fn run_until_stopped<T>(
    controllers: impl std::future::Future<Output = T>,
    shutdown: impl std::future::Future<Output = ()>,
    grace: std::time::Duration,
) -> Option<T> {
    let deadline = async {
        shutdown.await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        out = controllers => Some(out),
        () = deadline => {
            tracing::warn!(grace_secs = grace.as_secs(), "controllers did not stop in time; abandoning the reconciles in flight");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_repeated_in_its_parent_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file (os error 2)");
        let err = anyhow::Error::new(io)
            .context("failed to read kubeconfig '/x': No such file (os error 2)")
            .context("no Kubernetes configuration found");
        assert_eq!(
            causes(&err),
            "no Kubernetes configuration found: failed to read kubeconfig '/x': No such file \
             (os error 2)"
        );
        let plain = anyhow::anyhow!("a").context("b");
        assert_eq!(causes(&plain), "b: a");
    }
}
