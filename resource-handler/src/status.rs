//! A component's status, derived from its workload (pure, so it is unit-tested).

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use multigres_api::conditions::{ConditionUpdate, DEGRADED, PROGRESSING, READY, set_condition};
use multigres_api::crd::ComponentStatus;

use crate::pods::PodProblem;

/// Pod counts of a StatefulSet or Deployment as its controller reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadState {
    pub replicas: i32,
    pub ready_replicas: i32,
    /// The workload's controller has seen its latest spec and updated every pod to it.
    pub rolled_out: bool,
}

pub fn statefulset_state(sts: &StatefulSet) -> WorkloadState {
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = sts.status.clone().unwrap_or_default();
    let observed = status.observed_generation >= sts.metadata.generation;
    WorkloadState {
        replicas,
        ready_replicas: status.ready_replicas.unwrap_or(0),
        rolled_out: observed && status.updated_replicas.unwrap_or(0) >= replicas,
    }
}

pub fn deployment_state(deploy: &Deployment) -> WorkloadState {
    let replicas = deploy.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = deploy.status.clone().unwrap_or_default();
    let observed = status.observed_generation >= deploy.metadata.generation;
    WorkloadState {
        replicas,
        ready_replicas: status.ready_replicas.unwrap_or(0),
        rolled_out: observed && status.updated_replicas.unwrap_or(0) >= replicas,
    }
}

/// What the reconcile managed to do this time.
#[derive(Clone, Debug)]
pub enum Attempt {
    /// Every object is applied (or already up to date).
    Applied,
    /// The spec cannot be built: `(reason, message)`.
    Invalid(&'static str, String),
    /// Some object could not be written: the message names it.
    ApplyFailed(String),
    /// Nothing was written because something outside the spec is in the way (claims made for
    /// another object): `(reason, message)`, the message saying how to resolve it.
    Held(&'static str, String),
}

/// The status to record for an object at `generation`, given what happened, the live
/// workload (`None` while it does not exist yet) and what keeps one of its pods from running.
/// Conditions keep their transition times from `previous` when they did not flip, so an
/// unchanged situation yields an equal status.
pub fn component_status(
    previous: Option<&ComponentStatus>,
    generation: Option<i64>,
    attempt: &Attempt,
    workload: Option<WorkloadState>,
    pods: Option<&PodProblem>,
    workload_kind: &str,
    now: &Time,
) -> ComponentStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    status.replicas = workload.map_or(0, |w| w.replicas);
    status.ready_replicas = workload.map_or(0, |w| w.ready_replicas);
    let counts = workload.map_or_else(String::new, |w| {
        format!("{}/{} pods ready", w.ready_replicas, w.replicas)
    });
    // A pod that cannot run matters while the workload is short of ready pods of its spec.
    let stuck = match (attempt, workload) {
        (Attempt::Applied, Some(w)) if !(w.rolled_out && w.ready_replicas >= w.replicas) => pods,
        _ => None,
    };
    let (ready, progressing) = match (attempt, workload, stuck) {
        (_, _, Some(pod)) => (
            ConditionUpdate::new(
                READY,
                false,
                pod.reason,
                format!("{counts}; {}", pod.message),
            ),
            ConditionUpdate::new(
                PROGRESSING,
                false,
                pod.reason,
                "waiting until the pod can run",
            ),
        ),
        (Attempt::Invalid(reason, message), _, _) => (
            ConditionUpdate::new(READY, false, reason, message.clone()),
            ConditionUpdate::new(PROGRESSING, false, reason, "the spec must be fixed first"),
        ),
        (Attempt::Held(reason, message), _, _) => (
            ConditionUpdate::new(READY, false, reason, message.clone()),
            ConditionUpdate::new(
                PROGRESSING,
                false,
                reason,
                "nothing is created until this is resolved; retrying with backoff",
            ),
        ),
        (Attempt::ApplyFailed(message), _, _) => (
            ConditionUpdate::new(READY, false, "ApplyFailed", message.clone()),
            ConditionUpdate::new(PROGRESSING, false, "ApplyFailed", "retrying with backoff"),
        ),
        (Attempt::Applied, None, _) => (
            ConditionUpdate::new(
                READY,
                false,
                "WorkloadPending",
                format!("waiting for the {workload_kind} to appear"),
            ),
            ConditionUpdate::new(
                PROGRESSING,
                true,
                "Creating",
                format!("the {workload_kind} was created"),
            ),
        ),
        (Attempt::Applied, Some(w), _) if w.rolled_out && w.ready_replicas >= w.replicas => (
            ConditionUpdate::new(READY, true, "AllReplicasReady", counts),
            ConditionUpdate::new(
                PROGRESSING,
                false,
                "Stable",
                "every pod runs the current spec",
            ),
        ),
        (Attempt::Applied, Some(w), _) => (
            ConditionUpdate::new(READY, false, "ReplicasNotReady", counts),
            if w.rolled_out {
                ConditionUpdate::new(
                    PROGRESSING,
                    false,
                    "Stable",
                    "every pod runs the current spec",
                )
            } else {
                ConditionUpdate::new(
                    PROGRESSING,
                    true,
                    "RollingOut",
                    format!("the {workload_kind} is rolling out"),
                )
            },
        ),
    };
    // Degraded names a failure retrying cannot fix, for the parents to report at the top.
    let degraded = match (attempt, stuck) {
        (_, Some(pod)) => ConditionUpdate::new(DEGRADED, true, pod.reason, pod.message.clone()),
        (Attempt::Invalid(reason, message) | Attempt::Held(reason, message), None) => {
            ConditionUpdate::new(DEGRADED, true, reason, message.clone())
        }
        (Attempt::ApplyFailed(_) | Attempt::Applied, None) => {
            ConditionUpdate::new(DEGRADED, false, "AsExpected", "nothing blocks this object")
        }
    };
    status.ready = ready.status;
    set_condition(&mut status.conditions, ready, generation, now);
    set_condition(&mut status.conditions, progressing, generation, now);
    set_condition(&mut status.conditions, degraded, generation, now);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use multigres_api::conditions::condition;

    fn now() -> Time {
        Time(Timestamp::from_second(1_000).unwrap_or_default())
    }

    fn sts(generation: i64, replicas: i32, observed: i64, updated: i32, ready: i32) -> StatefulSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "x", "generation": generation},
            "spec": {"replicas": replicas, "selector": {}, "serviceName": "x", "template": {}},
            "status": {"replicas": replicas, "observedGeneration": observed, "updatedReplicas": updated, "readyReplicas": ready}
        }))
        .expect("statefulset")
    }

    #[test]
    fn workload_state_requires_the_latest_generation_and_updated_pods() {
        assert!(statefulset_state(&sts(2, 3, 2, 3, 3)).rolled_out);
        assert!(
            !statefulset_state(&sts(2, 3, 1, 3, 3)).rolled_out,
            "old generation"
        );
        assert!(
            !statefulset_state(&sts(2, 3, 2, 1, 3)).rolled_out,
            "pods not updated"
        );
    }

    #[test]
    fn ready_only_when_every_pod_is_ready_on_the_current_spec() {
        let w = statefulset_state(&sts(1, 3, 1, 3, 3));
        let s = component_status(
            None,
            Some(1),
            &Attempt::Applied,
            Some(w),
            None,
            "StatefulSet",
            &now(),
        );
        assert!(s.ready);
        assert_eq!(
            (s.replicas, s.ready_replicas, s.observed_generation),
            (3, 3, Some(1))
        );
        let ready = condition(&s.conditions, READY).expect("Ready condition");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "AllReplicasReady")
        );

        let w = statefulset_state(&sts(1, 3, 1, 3, 1));
        let s = component_status(
            Some(&s),
            Some(1),
            &Attempt::Applied,
            Some(w),
            None,
            "StatefulSet",
            &now(),
        );
        assert!(!s.ready);
        let ready = condition(&s.conditions, READY).expect("Ready condition");
        assert_eq!(
            (ready.reason.as_str(), ready.message.as_str()),
            ("ReplicasNotReady", "1/3 pods ready")
        );
    }

    #[test]
    fn invalid_spec_and_failed_apply_are_not_ready_with_their_reason() {
        let s = component_status(
            None,
            Some(4),
            &Attempt::Invalid("InvalidImage", "bad image".into()),
            None,
            None,
            "Deployment",
            &now(),
        );
        let ready = condition(&s.conditions, READY).expect("Ready condition");
        assert_eq!(
            (
                ready.status.as_str(),
                ready.reason.as_str(),
                ready.message.as_str()
            ),
            ("False", "InvalidImage", "bad image")
        );
        assert_eq!(ready.observed_generation, Some(4));
        let s = component_status(
            None,
            Some(4),
            &Attempt::ApplyFailed("Service x: forbidden".into()),
            None,
            None,
            "Deployment",
            &now(),
        );
        assert_eq!(
            condition(&s.conditions, READY).map(|c| c.reason.as_str()),
            Some("ApplyFailed")
        );
    }

    #[test]
    fn held_is_not_ready_and_not_progressing_with_its_reason() {
        let s = component_status(
            None,
            Some(2),
            &Attempt::Held("VolumesFromAnotherObject", "delete the claims".into()),
            None,
            None,
            "StatefulSet",
            &now(),
        );
        assert!(!s.ready);
        for kind in [READY, PROGRESSING] {
            let c = condition(&s.conditions, kind).expect("condition");
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                ("False", "VolumesFromAnotherObject"),
                "{kind}"
            );
        }
        let ready = condition(&s.conditions, READY).expect("Ready condition");
        assert_eq!(ready.message, "delete the claims");
    }

    #[test]
    fn degraded_names_only_what_retrying_cannot_fix() {
        let degraded = |attempt: &Attempt| {
            let s = component_status(None, Some(3), attempt, None, None, "StatefulSet", &now());
            let c = condition(&s.conditions, DEGRADED).expect("Degraded condition");
            (c.status.clone(), c.reason.clone(), c.message.clone())
        };
        let expect = |status: &str, reason: &str, message: &str| {
            (status.to_string(), reason.to_string(), message.to_string())
        };
        assert_eq!(
            degraded(&Attempt::Invalid("InvalidImage", "bad image".into())),
            expect("True", "InvalidImage", "bad image")
        );
        assert_eq!(
            degraded(&Attempt::Held(
                "VolumesFromAnotherObject",
                "delete the claims".into()
            )),
            expect("True", "VolumesFromAnotherObject", "delete the claims")
        );
        let fine = expect("False", "AsExpected", "nothing blocks this object");
        assert_eq!(
            degraded(&Attempt::ApplyFailed("Service x: conflict".into())),
            fine
        );
        assert_eq!(degraded(&Attempt::Applied), fine);
    }

    #[test]
    fn an_unchanged_situation_gives_an_equal_status() {
        let w = statefulset_state(&sts(1, 3, 1, 3, 2));
        let first = component_status(
            None,
            Some(1),
            &Attempt::Applied,
            Some(w),
            None,
            "StatefulSet",
            &now(),
        );
        let later = Time(Timestamp::from_second(9_999).unwrap_or_default());
        let again = component_status(
            Some(&first),
            Some(1),
            &Attempt::Applied,
            Some(w),
            None,
            "StatefulSet",
            &later,
        );
        assert_eq!(first, again, "no status write when nothing changed");
    }

    #[test]
    fn a_pod_that_cannot_run_degrades_the_component_until_the_workload_is_ready() {
        let pod = PodProblem {
            reason: "PodUnschedulable",
            message: "pod x-0 cannot be scheduled: 0/4 nodes are available".into(),
            unplaced_since: None,
        };
        let short = statefulset_state(&sts(1, 3, 1, 3, 2));
        let s = component_status(
            None,
            Some(1),
            &Attempt::Applied,
            Some(short),
            Some(&pod),
            "StatefulSet",
            &now(),
        );
        let said = |kind| {
            let c = condition(&s.conditions, kind).expect("condition");
            (c.status.clone(), c.reason.clone(), c.message.clone())
        };
        let expect = |status: &str, message: &str| {
            (
                status.to_string(),
                "PodUnschedulable".to_string(),
                message.to_string(),
            )
        };
        assert_eq!(
            said(READY),
            expect(
                "False",
                "2/3 pods ready; pod x-0 cannot be scheduled: 0/4 nodes are available"
            )
        );
        assert_eq!(
            said(PROGRESSING),
            expect("False", "waiting until the pod can run")
        );
        assert_eq!(said(DEGRADED), expect("True", &pod.message));
        // Every pod ready on the current spec: a leftover pod's problem does not matter.
        let all = statefulset_state(&sts(1, 3, 1, 3, 3));
        let s = component_status(
            Some(&s),
            Some(1),
            &Attempt::Applied,
            Some(all),
            Some(&pod),
            "StatefulSet",
            &now(),
        );
        assert!(s.ready);
        let degraded = condition(&s.conditions, DEGRADED).expect("Degraded");
        assert_eq!(degraded.status, "False");
        // A spec that cannot be built says so, whatever the pods do.
        let s = component_status(
            None,
            Some(1),
            &Attempt::Invalid("InvalidImage", "bad image".into()),
            Some(short),
            Some(&pod),
            "StatefulSet",
            &now(),
        );
        let degraded = condition(&s.conditions, DEGRADED).expect("Degraded");
        assert_eq!(degraded.reason, "InvalidImage");
    }
}
