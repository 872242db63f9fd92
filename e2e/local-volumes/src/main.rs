//! A dynamic provisioner of `local` PersistentVolumes for the real node of the e2e cluster,
//! run as a host process next to its kubelet:
//!
//!     local-volumes --kubeconfig <path> --node <node> --root <dir> [--provisioner <name>]
//!
//! A claim of our StorageClass (WaitForFirstConsumer) that the scheduler placed on our node gets
//! a directory `<root>/<namespace>_<claim>_<uid>` and a PV `pvc-<uid>` pre-bound to it; the PV
//! controller of kube-controller-manager binds the pair. A released PV of ours with policy Delete
//! loses its directory and is deleted. The decisions are in `decisions.rs`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Config, Resource, ResourceExt};
use multigres_runtime::process::{SHUTDOWN_GRACE, Stop, run_until_stopped, shutdown_signal};
use multigres_runtime::retry::Backoffs;

mod decisions;
use decisions::{ClaimDecision, DEFAULT_PROVISIONER, Provisioner};

/// Field manager and event reporter.
const MANAGER: &str = "multigres-e2e-local-volumes";

#[derive(Parser, Debug)]
#[command(about = "Provisions local PersistentVolumes on one node for the e2e cluster")]
struct Args {
    /// Kubeconfig of the cluster.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// The node this runs on (its `kubernetes.io/hostname` label).
    #[arg(long, env = "LOCAL_VOLUMES_NODE")]
    node: String,
    /// Directory that holds the volumes' directories; created if missing.
    #[arg(long, env = "LOCAL_VOLUMES_ROOT")]
    root: PathBuf,
    /// Provisioner name, as in the StorageClass.
    #[arg(long, env = "LOCAL_VOLUMES_PROVISIONER", default_value = DEFAULT_PROVISIONER)]
    provisioner: String,
}

struct Ctx {
    client: Client,
    provisioner: Provisioner,
    backoffs: Backoffs,
    recorder: Recorder,
}

/// A failed reconcile; the controller needs a `std::error::Error`, which `anyhow` is not.
#[derive(Debug)]
struct Failed(anyhow::Error);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Failed {}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    multigres_runtime::process::exit_code(run(args).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Canonical, so the paths of our PVs compare equal to the root when they are deleted.
    std::fs::create_dir_all(&args.root)
        .with_context(|| format!("creating {}", args.root.display()))?;
    let root = args
        .root
        .canonicalize()
        .with_context(|| format!("resolving {}", args.root.display()))?;
    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("kubeconfig {}", args.kubeconfig.display()))?;
    let client = Client::try_from(config).context("building the client")?;
    // Only informative: the watches below retry with backoff until the API server answers.
    match client.apiserver_version().await {
        Ok(v) => tracing::info!(version = %v.git_version, "connected to the API server"),
        Err(err) => tracing::warn!(error = %err, "API server not reachable yet; retrying"),
    }
    let provisioner = Provisioner {
        name: args.provisioner,
        node: args.node,
        root,
    };
    tracing::info!(
        provisioner = %provisioner.name,
        node = %provisioner.node,
        root = %provisioner.root.display(),
        "provisioning local volumes"
    );
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: Some(format!("{MANAGER}-{}", provisioner.node)),
    };
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), reporter),
        client: client.clone(),
        provisioner,
        backoffs: Backoffs::new(Duration::from_secs(1), Duration::from_secs(60)),
    });
    let stop: Stop = shutdown_signal().boxed().shared();
    let claims = Controller::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(stop.clone())
    .run(reconcile_claim, retry_claim, ctx.clone())
    .for_each(|res| log_controller_error("PersistentVolumeClaim", res));
    let volumes = Controller::new(
        Api::<PersistentVolume>::all(client),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(stop.clone())
    .run(reconcile_volume, retry_volume, ctx)
    .for_each(|res| log_controller_error("PersistentVolume", res));
    run_until_stopped(futures::future::join(claims, volumes), stop, SHUTDOWN_GRACE).await;
    tracing::info!("stopped");
    Ok(())
}

/// Reconcile failures are logged by the retry policies; this logs the watches' own errors. An
/// object deleted while queued (ObjectNotFound) is routine.
async fn log_controller_error<T, E: std::error::Error>(
    kind: &str,
    res: Result<T, kube::runtime::controller::Error<Failed, E>>,
) {
    use kube::runtime::controller::Error;
    match res {
        Ok(_) | Err(Error::ReconcilerFailed(..) | Error::ObjectNotFound(_)) => {}
        Err(err) => tracing::warn!(kind, error = %err, "controller error"),
    }
}

fn claim_key(pvc: &PersistentVolumeClaim) -> String {
    format!(
        "pvc/{}/{}",
        pvc.namespace().unwrap_or_default(),
        pvc.name_any()
    )
}

async fn reconcile_claim(pvc: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> Result<Action, Failed> {
    let key = claim_key(&pvc);
    match ctx.provisioner.claim_decision(&pvc) {
        ClaimDecision::Skip => {}
        ClaimDecision::Unsupported(why) => {
            tracing::warn!(claim = %key, "not provisioning: {why}");
            publish(&ctx, &pvc, EventType::Warning, "ProvisioningFailed", why).await;
        }
        ClaimDecision::Provision => match provision(&pvc, &ctx).await {
            Ok(Some(pv)) => {
                let note = format!("Successfully provisioned volume {pv}");
                publish(&ctx, &pvc, EventType::Normal, "ProvisioningSucceeded", note).await;
            }
            Ok(None) => {}
            Err(err) => {
                let note = format!("{err:#}");
                publish(&ctx, &pvc, EventType::Warning, "ProvisioningFailed", note).await;
                return Err(Failed(err));
            }
        },
    }
    ctx.backoffs.reset(&key);
    Ok(Action::await_change())
}

/// Makes the claim's directory and PV; the PV's name if this call created it.
async fn provision(pvc: &PersistentVolumeClaim, ctx: &Ctx) -> anyhow::Result<Option<String>> {
    let p = &ctx.provisioner;
    let class_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .context("the claim names no StorageClass")?;
    let class = Api::<StorageClass>::all(ctx.client.clone())
        .get(&class_name)
        .await
        .with_context(|| format!("reading StorageClass {class_name}"))?;
    let dir = p.claim_dir(pvc)?;
    // Built before the directory is made, so an unusable claim leaves nothing behind.
    let pv = p.volume_for(pvc, &class, &dir)?;
    let pv_name = pv.name_any();
    make_dir(&dir)?;
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    match Api::<PersistentVolume>::all(ctx.client.clone())
        .create(&params, &pv)
        .await
    {
        Ok(_) => {
            tracing::info!(claim = %claim_key(pvc), volume = %pv_name, dir = %dir.display(), "provisioned");
            Ok(Some(pv_name))
        }
        // Made by an earlier attempt (or before a restart): the PV controller binds it.
        Err(kube::Error::Api(s)) if s.is_already_exists() => {
            tracing::debug!(claim = %claim_key(pvc), volume = %pv_name, "volume exists already");
            Ok(None)
        }
        Err(err) => Err(err).with_context(|| format!("creating PersistentVolume {pv_name}")),
    }
}

/// Root-owned 0755: kubelet gives a `local` volume's root to the pod's fsGroup on mount.
fn make_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 0755 {}", dir.display()))
}

fn retry_claim(pvc: Arc<PersistentVolumeClaim>, err: &Failed, ctx: Arc<Ctx>) -> Action {
    let key = claim_key(&pvc);
    let delay = ctx.backoffs.next(&key);
    tracing::warn!(claim = %key, error = %err, retry_in = ?delay, "provisioning failed");
    Action::requeue(delay)
}

async fn reconcile_volume(pv: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> Result<Action, Failed> {
    let key = format!("pv/{}", pv.name_any());
    if ctx.provisioner.should_delete(&pv) {
        delete(&pv, &ctx).await.map_err(Failed)?;
    }
    ctx.backoffs.reset(&key);
    Ok(Action::await_change())
}

/// Removes a released volume's directory, then the PV.
async fn delete(pv: &PersistentVolume, ctx: &Ctx) -> anyhow::Result<()> {
    let name = pv.name_any();
    let dir = match ctx.provisioner.deletable_dir(pv) {
        Ok(dir) => dir,
        Err(err) => {
            // Retrying cannot help: wait for someone to fix or delete the PV.
            tracing::error!(volume = %name, error = %format!("{err:#}"), "refusing to delete the volume's directory");
            return Ok(());
        }
    };
    let removed = match std::fs::remove_dir_all(&dir) {
        Ok(()) => true,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
        Err(err) => return Err(err).with_context(|| format!("removing {}", dir.display())),
    };
    // Already being deleted (we asked, and a finalizer holds it; or someone else asked).
    if pv.metadata.deletion_timestamp.is_some() {
        if removed {
            tracing::info!(volume = %name, dir = %dir.display(), "removed the directory of a volume being deleted");
        }
        return Ok(());
    }
    // The uid precondition keeps a PV recreated under the same name from being deleted.
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pv.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match Api::<PersistentVolume>::all(ctx.client.clone())
        .delete(&name, &params)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("deleting PersistentVolume {name}")),
    }
    // A second pass may run before the watch shows our deletion: `dir_removed` tells them apart.
    tracing::info!(volume = %name, dir = %dir.display(), dir_removed = removed, "deleted");
    Ok(())
}

fn retry_volume(pv: Arc<PersistentVolume>, err: &Failed, ctx: Arc<Ctx>) -> Action {
    let key = format!("pv/{}", pv.name_any());
    let delay = ctx.backoffs.next(&key);
    tracing::warn!(volume = %pv.name_any(), error = %err, retry_in = ?delay, "deleting failed");
    Action::requeue(delay)
}

/// Events make a claim's fate visible in `kubectl describe`; failing to post one is only logged.
async fn publish(
    ctx: &Ctx,
    pvc: &PersistentVolumeClaim,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Provision".into(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &pvc.object_ref(&())).await {
        tracing::warn!(claim = %claim_key(pvc), error = %err, "cannot post an event");
    }
}
