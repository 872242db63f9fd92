//! Pods that cannot run without someone acting: the scheduler finds no node for them, their
//! image cannot be pulled, or a container keeps failing. The handler watches its own pods
//! (trimmed to their status) and keeps, per component, the pods that have such a problem; a
//! pod's change reconciles its component only when its problem appears, changes or clears, so
//! the lifecycle of a healthy pod costs no reconcile.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use multigres_api::meta::{ComponentLabel, LABEL_COMPONENT, LABEL_INSTANCE};

use crate::component::Component;

/// The scheduler found no node for a pod.
pub const UNSCHEDULABLE: &str = "PodUnschedulable";
/// A container exits again and again; the kubelet backs off between restarts.
pub const CRASH_LOOPING: &str = "PodCrashLooping";
/// A container's image cannot be pulled (or is not present and may not be).
pub const IMAGE_PULL_FAILED: &str = "PodImagePullFailed";
/// The kubelet cannot create or start a container (a missing Secret or ConfigMap key, a
/// command that does not exist in the image).
pub const START_FAILED: &str = "PodStartFailed";

/// How long the scheduler may fail to place a pod before that counts: it also calls pods
/// unschedulable for the moments their claims take to be bound.
pub const UNSCHEDULABLE_GRACE: Duration = Duration::from_secs(60);

/// Longest quoted message of the scheduler or the kubelet kept in a condition.
const MAX_QUOTED: usize = 300;

/// Why one pod cannot run, as its component's conditions will say it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodProblem {
    pub reason: &'static str,
    pub message: String,
    /// Since when the scheduler has failed to place the pod: it counts only after
    /// [`UNSCHEDULABLE_GRACE`]. `None` for problems that count at once.
    pub unplaced_since: Option<Timestamp>,
}

/// What keeps `pod` from running, if anything that retrying alone will not fix. A pod being
/// deleted has none: it is going away.
pub fn problem(pod: &Pod) -> Option<PodProblem> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let name = pod.name_any();
    let status = pod.status.as_ref()?;
    if let Some(scheduled) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .filter(|c| c.reason.as_deref() == Some("Unschedulable"))
    {
        return Some(PodProblem {
            reason: UNSCHEDULABLE,
            message: format!(
                "pod {name} cannot be scheduled: {}",
                quoted(scheduled.message.as_deref().unwrap_or("no node fits"))
            ),
            // Without a transition time (never so from an API server) it counts at once.
            unplaced_since: Some(
                scheduled
                    .last_transition_time
                    .as_ref()
                    .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
            ),
        });
    }
    let containers = status.init_container_statuses.iter().flatten();
    containers
        .chain(status.container_statuses.iter().flatten())
        .find_map(container_problem)
        .map(|(reason, what)| PodProblem {
            reason,
            message: format!("pod {name}: {what}"),
            unplaced_since: None,
        })
}

/// A container waiting for a reason the kubelet will not get past on its own.
fn container_problem(container: &ContainerStatus) -> Option<(&'static str, String)> {
    let waiting = container.state.as_ref()?.waiting.as_ref()?;
    let kubelet_reason = waiting.reason.as_deref()?;
    let said = waiting.message.as_deref().map(quoted).unwrap_or_default();
    let name = &container.name;
    match kubelet_reason {
        "CrashLoopBackOff" => Some((CRASH_LOOPING, crash_loop(container))),
        "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" | "ErrImageNeverPull" => Some((
            IMAGE_PULL_FAILED,
            format!(
                "container {name} cannot get image {} ({kubelet_reason}): {said}",
                container.image
            ),
        )),
        "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => Some((
            START_FAILED,
            format!("container {name} cannot start ({kubelet_reason}): {said}"),
        )),
        _ => None,
    }
}

/// "keeps restarting" and how it last ended. The restart count stays out: it would change the
/// message, and so the status, on every restart.
fn crash_loop(container: &ContainerStatus) -> String {
    let name = &container.name;
    let last = container
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    match last {
        Some(t) => {
            let how = t.reason.as_deref().unwrap_or("terminated");
            let output = t
                .message
                .as_deref()
                .map(|m| format!(": {}", quoted(m.trim())))
                .unwrap_or_default();
            format!(
                "container {name} keeps restarting; it last exited with code {} ({how}){output}",
                t.exit_code
            )
        }
        None => format!("container {name} keeps restarting"),
    }
}

/// `text` cut to [`MAX_QUOTED`] characters.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Only what [`problem`] reads stays in the cache: no spec, no annotations, the scheduling
/// condition and the container states.
pub fn trim(pod: &mut Pod) {
    pod.spec = None;
    pod.metadata.annotations = None;
    if let Some(status) = pod.status.take() {
        pod.status = Some(PodStatus {
            conditions: status.conditions.map(|conditions| {
                conditions
                    .into_iter()
                    .filter(|c| c.type_ == "PodScheduled")
                    .collect()
            }),
            container_statuses: status.container_statuses,
            init_container_statuses: status.init_container_statuses,
            ..PodStatus::default()
        });
    }
}

/// The component object (of kind `C`) whose pods carry `pod`'s labels.
pub fn owner_of<C: Component>(pod: &Pod) -> Option<ObjectRef<C>> {
    let (_, namespace, instance) = key(C::LABEL, pod)?;
    Some(ObjectRef::new(&instance).within(&namespace))
}

/// (component label, namespace, component object name).
type Key = (&'static str, String, String);

/// `pod`'s component, if it belongs to one of kind `label`.
fn key(label: ComponentLabel, pod: &Pod) -> Option<Key> {
    let labels = pod.metadata.labels.as_ref()?;
    if labels.get(LABEL_COMPONENT).map(String::as_str) != Some(label.as_str()) {
        return None;
    }
    Some((
        label.as_str(),
        pod.metadata.namespace.clone()?,
        labels.get(LABEL_INSTANCE)?.clone(),
    ))
}

/// What a component's pods show: the problem to report, and when to look again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodsSeen {
    pub problem: Option<PodProblem>,
    /// A pod the scheduler could not place yet will count after this long.
    pub recheck: Option<Duration>,
}

/// How long `problem` must still last before it counts at `now`; `None` once it counts.
fn wait_left(problem: &PodProblem, now: Timestamp) -> Option<Duration> {
    let since = problem.unplaced_since?;
    let age = u64::try_from(now.as_second().saturating_sub(since.as_second())).unwrap_or(0);
    let grace = UNSCHEDULABLE_GRACE.as_secs();
    (age < grace).then(|| Duration::from_secs(grace - age))
}

/// The pods with a problem, per component, as the pod watch last saw them. Pods without a
/// problem are not kept, so its size follows the pods that cannot run.
#[derive(Debug, Default)]
pub struct PodHealth {
    problems: Mutex<HashMap<Key, BTreeMap<String, PodProblem>>>,
}

impl PodHealth {
    /// Records what keeps `pod` from running at `now`, if it belongs to a component of kind
    /// `label`; whether its component must be reconciled. A pod the scheduler placed within
    /// its grace time was never reported, so its recovery needs no reconcile (the most common
    /// case: a pod waiting for its claims to be bound).
    pub fn observe(&self, label: ComponentLabel, pod: &Pod, now: Timestamp) -> bool {
        let Some(key) = key(label, pod) else {
            return false;
        };
        let name = pod.name_any();
        let mut problems = self.lock();
        match problem(pod) {
            Some(found) => {
                let pods = problems.entry(key).or_default();
                pods.insert(name, found.clone()) != Some(found)
            }
            None => {
                let Some(pods) = problems.get_mut(&key) else {
                    return false;
                };
                let removed = pods.remove(&name);
                if pods.is_empty() {
                    problems.remove(&key);
                }
                removed.is_some_and(|gone| wait_left(&gone, now).is_none())
            }
        }
    }

    /// What keeps the pods of component `instance` of kind `label` in `namespace` from
    /// running at `now`: the problem of the first (by name) pod whose problem counts, saying
    /// how many more have one, and when to look again for a pod still in its grace time. Pods
    /// `exists` no longer finds (deleted without notice) are forgotten.
    pub fn of(
        &self,
        label: ComponentLabel,
        namespace: &str,
        instance: &str,
        now: Timestamp,
        exists: impl Fn(&str) -> bool,
    ) -> PodsSeen {
        let key = (label.as_str(), namespace.to_string(), instance.to_string());
        let mut problems = self.lock();
        let Some(pods) = problems.get_mut(&key) else {
            return PodsSeen::default();
        };
        pods.retain(|name, _| exists(name));
        let mut seen = PodsSeen::default();
        let mut counted = pods.values().filter(|p| match wait_left(p, now) {
            None => true,
            Some(left) => {
                seen.recheck = Some(seen.recheck.map_or(left, |r: Duration| r.min(left)));
                false
            }
        });
        seen.problem = counted.next().cloned();
        let more = counted.count();
        if let Some(first) = seen.problem.as_mut().filter(|_| more > 0) {
            first.message.push_str(&format!(" (and {more} more pods)"));
        }
        if pods.is_empty() {
            problems.remove(&key);
        }
        seen
    }

    /// The map, also after a panic elsewhere while it was held (every update leaves it whole).
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, BTreeMap<String, PodProblem>>> {
        self.problems.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A pod of MultiGateway `gw` in `ns` with `status` as the kubelet or scheduler wrote it.
    fn gateway_pod(name: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": name, "namespace": "ns",
                "labels": {LABEL_COMPONENT: "multigateway", LABEL_INSTANCE: "gw"},
            },
            "spec": {"containers": [{"name": "multigateway", "image": "x"}]},
            "status": status,
        }))
        .expect("pod")
    }

    /// The scheduler's condition: `Unschedulable` is `v1.PodReasonUnschedulable`
    /// (k8s.io/api core/v1/types.go), written by the scheduler's failure handler
    /// (pkg/scheduler/schedule_one.go).
    fn unschedulable(name: &str) -> Pod {
        gateway_pod(
            name,
            json!({"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "message": "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector.",
            }]}),
        )
    }

    /// A container the kubelet backs off from restarting: `CrashLoopBackOff` is
    /// `ErrCrashLoopBackOff` in pkg/kubelet/container/sync_result.go.
    fn crash_looping(name: &str) -> Pod {
        gateway_pod(
            name,
            json!({"phase": "Running", "containerStatuses": [{
                "name": "multigateway", "image": "x", "imageID": "", "ready": false,
                "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                    "message": "back-off 40s restarting failed container=multigateway"}},
                "lastState": {"terminated": {"exitCode": 2, "reason": "Error",
                    "message": "unknown flag: --bogus\n"}},
            }]}),
        )
    }

    fn healthy(name: &str) -> Pod {
        gateway_pod(
            name,
            json!({"phase": "Running", "conditions": [
                {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]}),
        )
    }

    #[test]
    fn a_pod_no_node_fits_quotes_the_scheduler() {
        let found = problem(&unschedulable("gw-a")).expect("a problem");
        assert_eq!(found.reason, UNSCHEDULABLE);
        assert_eq!(
            found.message,
            "pod gw-a cannot be scheduled: 0/4 nodes are available: 4 node(s) didn't match \
             Pod's node affinity/selector."
        );
    }

    #[test]
    fn a_crash_looping_container_says_how_it_last_exited() {
        let found = problem(&crash_looping("gw-a")).expect("a problem");
        assert_eq!(found.reason, CRASH_LOOPING);
        assert_eq!(
            found.message,
            "pod gw-a: container multigateway keeps restarting; it last exited with code 2 \
             (Error): unknown flag: --bogus"
        );
    }

    /// The kubelet's image and container-start reasons: pkg/kubelet/images/types.go
    /// (`ImagePullBackOff`, `ErrImagePull`, `InvalidImageName`, `ErrImageNeverPull`) and
    /// pkg/kubelet/container/sync_result.go (`CreateContainerConfigError`,
    /// `CreateContainerError`, `RunContainerError`).
    #[test]
    fn image_and_start_failures_are_named_and_quoted() {
        let waiting = |reason: &str, message: &str| {
            gateway_pod(
                "gw-a",
                json!({"containerStatuses": [{
                    "name": "multigateway", "image": "example.com/gw:1", "imageID": "",
                    "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": reason, "message": message}},
                }]}),
            )
        };
        let pull = problem(&waiting("ErrImageNeverPull", "image not present")).expect("pull");
        assert_eq!(pull.reason, IMAGE_PULL_FAILED);
        assert_eq!(
            pull.message,
            "pod gw-a: container multigateway cannot get image example.com/gw:1 \
             (ErrImageNeverPull): image not present"
        );
        let config = problem(&waiting(
            "CreateContainerConfigError",
            "secret \"pw\" not found",
        ))
        .expect("config");
        assert_eq!(config.reason, START_FAILED);
        assert_eq!(
            config.message,
            "pod gw-a: container multigateway cannot start (CreateContainerConfigError): \
             secret \"pw\" not found"
        );
        // Waiting while a container is created or an image pulled is normal.
        assert_eq!(problem(&waiting("ContainerCreating", "")), None);
        assert_eq!(problem(&healthy("gw-a")), None);
    }

    #[test]
    fn a_pod_being_deleted_has_no_problem() {
        let mut pod = unschedulable("gw-a");
        pod.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert_eq!(problem(&pod), None);
    }

    #[test]
    fn long_messages_are_cut() {
        let long = "x".repeat(1000);
        let mut pod = unschedulable("gw-a");
        if let Some(c) = pod
            .status
            .as_mut()
            .and_then(|s| s.conditions.as_mut())
            .and_then(|c| c.first_mut())
        {
            c.message = Some(long);
        }
        let message = problem(&pod).expect("a problem").message;
        assert_eq!(
            message,
            format!("pod gw-a cannot be scheduled: {}…", "x".repeat(MAX_QUOTED))
        );
    }

    #[test]
    fn trimming_keeps_what_the_problem_is_read_from() {
        for pod in [
            unschedulable("gw-a"),
            crash_looping("gw-b"),
            healthy("gw-c"),
        ] {
            let mut trimmed = pod.clone();
            trim(&mut trimmed);
            assert_eq!(trimmed.spec, None);
            assert_eq!(problem(&trimmed), problem(&pod), "{}", pod.name_any());
        }
    }

    /// When the pods of `unschedulable` were first refused, and some seconds later.
    fn refused_at(secs: i64) -> Timestamp {
        let first: Timestamp = "2026-01-01T00:00:00Z".parse().expect("timestamp");
        first + k8s_openapi::jiff::SignedDuration::from_secs(secs)
    }

    #[test]
    fn a_pod_counts_as_unschedulable_only_after_the_grace_time() {
        let health = PodHealth::default();
        let gw = ComponentLabel::Gateway;
        assert!(health.observe(gw, &unschedulable("gw-a"), refused_at(1)));
        let all = |_: &str| true;
        let early = health.of(gw, "ns", "gw", refused_at(15), all);
        assert_eq!(early.problem, None);
        assert_eq!(
            early.recheck,
            Some(UNSCHEDULABLE_GRACE - Duration::from_secs(15))
        );
        // A crash loop counts at once, beside the pod still in its grace time.
        assert!(health.observe(gw, &crash_looping("gw-b"), refused_at(15)));
        let seen = health.of(gw, "ns", "gw", refused_at(15), all);
        assert_eq!(seen.problem.map(|p| p.reason), Some(CRASH_LOOPING));
        assert_eq!(seen.recheck, early.recheck);
        // Placed within the grace time: never reported, so nothing to reconcile.
        assert!(!health.observe(gw, &healthy("gw-a"), refused_at(20)));
        assert!(health.observe(gw, &unschedulable("gw-a"), refused_at(21)));
        let late = health.of(gw, "ns", "gw", refused_at(60), all);
        let problem = late.problem.expect("a problem");
        assert_eq!(problem.reason, UNSCHEDULABLE);
        assert!(
            problem.message.ends_with(" (and 1 more pods)"),
            "{}",
            problem.message
        );
        assert_eq!(late.recheck, None);
        // Reported, then placed: its component must say so.
        assert!(health.observe(gw, &healthy("gw-a"), refused_at(61)));
    }

    #[test]
    fn only_a_change_of_problem_reconciles_and_the_component_sees_the_first() {
        let health = PodHealth::default();
        let gw = ComponentLabel::Gateway;
        let all = |_: &str| true;
        let now = refused_at(3600);
        // A healthy pod's changes never reconcile; other kinds' pods are not ours.
        assert!(!health.observe(gw, &healthy("gw-a"), now));
        assert!(!health.observe(ComponentLabel::Orch, &unschedulable("gw-a"), now));
        assert!(health.observe(gw, &unschedulable("gw-b"), now));
        assert!(
            !health.observe(gw, &unschedulable("gw-b"), now),
            "unchanged"
        );
        assert!(health.observe(gw, &crash_looping("gw-a"), now));
        let seen = health
            .of(gw, "ns", "gw", now, all)
            .problem
            .expect("problems");
        assert_eq!(seen.reason, CRASH_LOOPING);
        assert!(
            seen.message.ends_with(" (and 1 more pods)"),
            "{}",
            seen.message
        );
        // gw-a recovers; gw-b goes away without an event.
        assert!(health.observe(gw, &healthy("gw-a"), now));
        let gone = |name: &str| name != "gw-b";
        assert_eq!(health.of(gw, "ns", "gw", now, gone), PodsSeen::default());
        assert!(health.lock().is_empty(), "nothing kept for healthy pods");
        assert_eq!(health.of(gw, "other", "gw", now, all), PodsSeen::default());
    }

    #[test]
    fn a_pod_maps_to_its_component_object() {
        let owner = owner_of::<multigres_api::crd::MultiGateway>(&healthy("gw-a"));
        assert_eq!(owner, Some(ObjectRef::new("gw").within("ns")));
        assert_eq!(
            owner_of::<multigres_api::crd::MultiOrch>(&healthy("gw-a")),
            None
        );
    }
}
