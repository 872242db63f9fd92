//! Leader election through one `coordination.k8s.io` Lease per handler, so each Deployment can
//! run several replicas with one active. Built on `kube-lease-manager` (server-side-applied
//! Lease, conflict-checked takeover); this module adds what a controller needs around it:
//! a leadership flag to wait on, stepping down when the lease cannot be renewed, and releasing
//! the lease on the way out so a standby takes over at once.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::LeaderElectionArgs;

/// How long to wait before retrying after the API server refused or failed a lease request.
const RETRY: Duration = Duration::from_secs(1);

/// Where and as whom this replica competes for the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseIdentity {
    pub lease: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
    pub grace: Duration,
}

impl LeaseIdentity {
    /// Resolves the flags: the namespace falls back to `POD_NAMESPACE` then `multigres-system`,
    /// the identity to `POD_NAME` then `<hostname>-<pid>`.
    pub fn resolve(args: &LeaderElectionArgs, lease: &str) -> anyhow::Result<Self> {
        Self::resolve_with(args, lease, |name| std::env::var(name).ok())
    }

    /// [`LeaseIdentity::resolve`] with the environment read through `env`.
    fn resolve_with(
        args: &LeaderElectionArgs,
        lease: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let namespace = args
            .leader_election_namespace
            .clone()
            .or_else(|| env("POD_NAMESPACE"))
            .unwrap_or_else(|| "multigres-system".to_string());
        let identity = args
            .leader_election_identity
            .clone()
            .or_else(|| env("POD_NAME"))
            .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
        let (duration, grace) = (args.lease_duration, args.lease_renew_grace);
        if duration.as_secs() < 2 || grace.as_secs() < 1 || grace >= duration {
            anyhow::bail!(
                "invalid lease timing: --lease-duration {duration:?} must be at least 2s and longer than --lease-renew-grace {grace:?} (at least 1s)"
            );
        }
        Ok(LeaseIdentity {
            lease: lease.to_string(),
            namespace,
            identity,
            duration,
            grace,
        })
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// This replica's part in the election: a background task that acquires and renews the lease
/// and publishes whether this replica leads.
pub struct Election {
    who: LeaseIdentity,
    manager: Arc<LeaseManager>,
    leading: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Election {
    /// Creates the Lease if missing and starts competing for it.
    pub async fn start(client: kube::Client, who: LeaseIdentity) -> anyhow::Result<Election> {
        let manager = LeaseManagerBuilder::new(client.clone(), &who.lease)
            .with_namespace(&who.namespace)
            .with_identity(&who.identity)
            .with_duration(who.duration.as_secs())
            .with_grace(who.grace.as_secs())
            .build()
            .await
            .with_context(|| {
                format!(
                    "cannot use Lease {}/{} for leader election (does the namespace exist, and may this identity get, create and patch leases there?)",
                    who.namespace, who.lease
                )
            })?;
        let manager = Arc::new(manager);
        let (tx, leading) = watch::channel(false);
        // Step down when renewals have failed for this long: by then another replica may
        // legitimately have taken the lease.
        let step_down_after = who.duration - who.grace;
        let leases = Api::namespaced(client, &who.namespace);
        let task = tokio::spawn(keep_competing(
            manager.clone(),
            leases,
            who.lease.clone(),
            tx,
            step_down_after,
        ));
        Ok(Election {
            who,
            manager,
            leading,
            task,
        })
    }

    pub fn who(&self) -> &LeaseIdentity {
        &self.who
    }

    /// Whether this replica leads now.
    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// Resolves once this replica holds the lease.
    pub async fn acquired(&mut self) {
        if self.leading.wait_for(|leading| *leading).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// A future that resolves when this replica stops leading.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut leading = self.leading.clone();
        async move {
            let _ = leading.wait_for(|leading| !*leading).await;
        }
    }

    /// Stops competing and frees the lease (when held) so a standby takes over without
    /// waiting for it to expire. Bounded by `deadline`.
    pub async fn release(self, deadline: Duration) {
        self.task.abort();
        let _ = self.task.await;
        match tokio::time::timeout(deadline, self.manager.release()).await {
            Ok(Ok(())) => {
                tracing::info!(lease = %self.who.lease, namespace = %self.who.namespace, "lease released")
            }
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "cannot release the lease; standbys take over once it expires")
            }
            Err(_) => {
                tracing::warn!("releasing the lease timed out; standbys take over once it expires")
            }
        }
    }
}

/// Acquires and renews the lease for as long as the process runs, publishing leadership.
async fn keep_competing(
    manager: Arc<LeaseManager>,
    leases: Api<Lease>,
    lease: String,
    leading: watch::Sender<bool>,
    step_down_after: Duration,
) {
    let mut failing_since: Option<Instant> = None;
    let mut must_release = false;
    loop {
        if must_release {
            // The lease manager still believes it holds the lease; freeing it resets that
            // belief, so a later acquisition is reported as one.
            match manager.release().await {
                Ok(()) => must_release = false,
                Err(_) => {
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            }
        }
        // A standby sleeps until the holder's lease would expire; a released lease ends
        // that wait early, so a rolling update hands over at once.
        let changed = if *leading.borrow() {
            manager.changed().await
        } else {
            tokio::select! {
                changed = manager.changed() => changed,
                () = released(&leases, &lease) => {
                    // The lease manager caches the holder until its expiry; `release` (a no-op
                    // for a lease another replica holds) makes it read the Lease again.
                    let _ = manager.release().await;
                    continue;
                }
            }
        };
        match changed {
            Ok(now) => {
                failing_since = None;
                if now {
                    tracing::info!("this replica is now the leader");
                } else if *leading.borrow() {
                    tracing::warn!("another replica holds the lease now; standing by");
                }
                leading.send_replace(now);
            }
            Err(err) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() < RETRY {
                    tracing::warn!(error = %err, "lease request failed; retrying");
                }
                if *leading.borrow() && since.elapsed() >= step_down_after {
                    tracing::warn!(
                        failing_secs = since.elapsed().as_secs(),
                        "the lease could not be renewed; stepping down"
                    );
                    leading.send_replace(false);
                    must_release = true;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Resolves once the lease has no holder (its holder released it). Polls: a standby costs
/// one small GET per second.
async fn released(leases: &Api<Lease>, lease: &str) {
    loop {
        tokio::time::sleep(RETRY).await;
        if let Ok(current) = leases.get(lease).await {
            let holder = current.spec.and_then(|spec| spec.holder_identity);
            if holder.is_none_or(|h| h.is_empty()) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> LeaderElectionArgs {
        LeaderElectionArgs {
            leader_elect: true,
            leader_election_namespace: Some("ops".into()),
            leader_election_identity: Some("pod-a".into()),
            lease_duration: Duration::from_secs(15),
            lease_renew_grace: Duration::from_secs(5),
        }
    }

    #[test]
    fn flags_name_the_lease_namespace_and_identity() {
        let who = LeaseIdentity::resolve(&args(), "multigres-cluster-handler").expect("valid");
        assert_eq!(who.lease, "multigres-cluster-handler");
        assert_eq!(who.namespace, "ops");
        assert_eq!(who.identity, "pod-a");
    }

    #[test]
    fn the_identity_defaults_to_the_pod_then_host_and_pid() {
        let mut a = args();
        a.leader_election_identity = None;
        let in_pod = |name: &str| (name == "POD_NAME").then(|| "rh-7f9c".to_string());
        let who = LeaseIdentity::resolve_with(&a, "l", in_pod).expect("valid");
        assert_eq!(who.identity, "rh-7f9c");
        let outside = LeaseIdentity::resolve_with(&a, "l", |_| None).expect("valid");
        assert_eq!(
            outside.identity,
            format!("{}-{}", hostname(), std::process::id())
        );
    }

    #[test]
    fn bad_timings_are_refused_with_a_message() {
        for (duration, grace) in [(15, 15), (15, 20), (1, 0), (10, 0)] {
            let mut a = args();
            a.lease_duration = Duration::from_secs(duration);
            a.lease_renew_grace = Duration::from_secs(grace);
            let err = LeaseIdentity::resolve(&a, "l").expect_err("refused");
            assert!(err.to_string().contains("--lease-duration"), "{err}");
        }
    }
}
