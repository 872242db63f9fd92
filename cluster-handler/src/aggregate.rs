//! Status of an aggregating object (cluster or cell) from the statuses of its children (pure).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use multigres_api::conditions::{ConditionUpdate, DEGRADED, PROGRESSING, READY, condition};
use multigres_api::crd::{ComponentStatus, Phase, ReadyCount};

/// The Degraded reason of an object some of whose children were ready and are not any more;
/// every other Degraded reason is a failure that names its root cause.
pub const LOST_READINESS: &str = "ComponentsNotReady";

/// Why an object cannot reach its spec, as it would show in its conditions.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub reason: String,
    pub message: String,
    /// Retrying alone will not help (a bad spec, missing credentials, a topology the cluster
    /// cannot use): the object is Degraded until someone acts. Otherwise the problem only
    /// explains `Ready=False` while things converge.
    pub blocking: bool,
}

impl Problem {
    pub fn blocking(reason: &str, message: impl Into<String>) -> Problem {
        Problem {
            reason: reason.to_string(),
            message: message.into(),
            blocking: true,
        }
    }

    pub fn transient(reason: &str, message: impl Into<String>) -> Problem {
        Problem {
            reason: reason.to_string(),
            message: message.into(),
            blocking: false,
        }
    }
}

/// What a parent knows about one child.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildReport {
    /// `Kind name`, for messages.
    pub id: String,
    pub exists: bool,
    /// Ready, and its status describes the spec we last gave it.
    pub ready: bool,
    pub replicas: i32,
    pub ready_replicas: i32,
    /// The child's own blocking failure for its current spec, as `(reason, message)`.
    pub failure: Option<(String, String)>,
}

/// A blocking failure an object reports for its current spec: its Degraded condition, unless
/// that only says children lost readiness.
fn reported_failure(conditions: &[Condition]) -> Option<(String, String)> {
    condition(conditions, DEGRADED)
        .filter(|c| c.status == "True" && c.reason != LOST_READINESS)
        .map(|c| (c.reason.clone(), c.message.clone()))
}

impl ChildReport {
    /// A report from a child's status (`None` when the child is not in the cache).
    pub fn new(id: String, child: Option<(&Option<i64>, Option<&ComponentStatus>)>) -> ChildReport {
        let Some((generation, status)) = child else {
            return ChildReport {
                id,
                exists: false,
                ready: false,
                replicas: 0,
                ready_replicas: 0,
                failure: None,
            };
        };
        let status = status.cloned().unwrap_or_default();
        let current = status.observed_generation == *generation;
        ChildReport {
            id,
            exists: true,
            ready: status.ready && current,
            replicas: status.replicas,
            ready_replicas: status.ready_replicas,
            // A failure reported for an older spec may be fixed by the current one.
            failure: reported_failure(&status.conditions).filter(|_| current),
        }
    }

    /// Not ready (nor failed) when this reconcile just wrote the child: the cache may still
    /// show its old generation with a status for the old spec, which would pass for current.
    pub fn unless_written(mut self, written: &std::collections::BTreeSet<String>) -> ChildReport {
        if written.contains(&self.id) {
            self.ready = false;
            self.failure = None;
        }
        self
    }

    pub fn count(&self) -> ReadyCount {
        ReadyCount {
            replicas: self.replicas,
            ready_replicas: self.ready_replicas,
        }
    }
}

/// Sums ready counts.
pub fn sum<'a>(counts: impl IntoIterator<Item = &'a ReadyCount>) -> ReadyCount {
    counts
        .into_iter()
        .fold(ReadyCount::default(), |acc, c| ReadyCount {
            replicas: acc.replicas + c.replicas,
            ready_replicas: acc.ready_replicas + c.ready_replicas,
        })
}

/// The phase: Degraded when the object or a child is blocked by a failure, or when something
/// that was ready is not any more (`was_ready`: the parent reached Healthy and its spec did not
/// change since); Healthy when every child is ready; Progressing while children exist and
/// converge; Pending before any exists.
pub fn phase(children: &[ChildReport], was_ready: bool, blocked: bool) -> Phase {
    if blocked || children.iter().any(|c| c.failure.is_some()) {
        Phase::Degraded
    } else if children.is_empty() || children.iter().all(|c| !c.exists) {
        Phase::Pending
    } else if children.iter().all(|c| c.ready) {
        Phase::Healthy
    } else if was_ready {
        Phase::Degraded
    } else {
        Phase::Progressing
    }
}

/// Whether an object with `previous` status had reached its spec and the spec is unchanged
/// since: Healthy before, or Degraded only because children lost readiness.
fn was_ready(previous: Option<(&ComponentStatus, Option<Phase>)>, new_generation: bool) -> bool {
    match previous {
        _ if new_generation => false,
        Some((_, Some(Phase::Healthy))) => true,
        Some((core, Some(Phase::Degraded))) => reported_failure(&core.conditions).is_none(),
        _ => false,
    }
}

/// The failure that blocks an object: its own, else its first failing child's, naming that
/// child and quoting its message (which names the grandchild when the failure is deeper).
pub fn root_cause(children: &[ChildReport], own: Option<&Problem>) -> Option<Problem> {
    if let Some(own) = own.filter(|p| p.blocking) {
        return Some(own.clone());
    }
    let failing: Vec<&ChildReport> = children.iter().filter(|c| c.failure.is_some()).collect();
    let (first, (reason, message)) = failing
        .first()
        .and_then(|c| c.failure.as_ref().map(|f| (c, f)))?;
    let more = match failing.len() {
        1 => String::new(),
        n => format!(" (and {} more failing)", n - 1),
    };
    Some(Problem::blocking(
        reason,
        format!("{}: {message}{more}", first.id),
    ))
}

/// The Ready, Progressing and Degraded conditions for `phase`. A blocking problem (the
/// object's own or a child's, see [`root_cause`]) is the reason of all three; a transient one
/// explains `Ready=False`.
pub fn conditions(
    phase: Phase,
    children: &[ChildReport],
    problem: Option<&Problem>,
) -> [ConditionUpdate; 3] {
    let waiting: Vec<String> = children
        .iter()
        .filter(|c| !c.ready)
        .map(|c| {
            if c.exists {
                format!("{} ({}/{} ready)", c.id, c.ready_replicas, c.replicas)
            } else {
                format!("{} (not created yet)", c.id)
            }
        })
        .collect();
    if let Some(blocked) = root_cause(children, problem) {
        return [
            ConditionUpdate::new(READY, false, &blocked.reason, blocked.message.clone()),
            ConditionUpdate::new(
                PROGRESSING,
                false,
                &blocked.reason,
                "blocked until the failure is fixed; retrying with backoff",
            ),
            ConditionUpdate::new(DEGRADED, true, &blocked.reason, blocked.message),
        ];
    }
    let ready = match (problem, phase) {
        (Some(problem), _) => {
            ConditionUpdate::new(READY, false, &problem.reason, problem.message.clone())
        }
        (None, Phase::Healthy) => ConditionUpdate::new(
            READY,
            true,
            "AllComponentsReady",
            format!("{} components ready", children.len()),
        ),
        (None, _) => ConditionUpdate::new(
            READY,
            false,
            "ComponentsNotReady",
            format!("waiting for {}", waiting.join(", ")),
        ),
    };
    let progressing = match phase {
        Phase::Pending | Phase::Progressing => ConditionUpdate::new(
            PROGRESSING,
            true,
            "Converging",
            "children are being created or updated",
        ),
        Phase::Healthy | Phase::Degraded => {
            ConditionUpdate::new(PROGRESSING, false, "Stable", "no change in progress")
        }
    };
    let degraded = match phase {
        Phase::Degraded => ConditionUpdate::new(
            DEGRADED,
            true,
            LOST_READINESS,
            format!("no longer ready: {}", waiting.join(", ")),
        ),
        _ => ConditionUpdate::new(
            DEGRADED,
            false,
            "AsExpected",
            "nothing that was ready has failed",
        ),
    };
    [ready, progressing, degraded]
}

/// The common part of an aggregating status, from the previous status, the object's
/// generation, its children and any problem; `counts` sums every pod under the object.
pub fn core_status(
    previous: Option<(&ComponentStatus, Option<Phase>)>,
    generation: Option<i64>,
    children: &[ChildReport],
    counts: ReadyCount,
    problem: Option<&Problem>,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> (ComponentStatus, Phase) {
    let new_generation = previous.is_none_or(|(core, _)| core.observed_generation != generation);
    let was_ready = was_ready(previous, new_generation);
    let mut core = previous.map(|(core, _)| core.clone()).unwrap_or_default();
    let blocked = problem.is_some_and(|p| p.blocking);
    let phase = phase(children, was_ready, blocked);
    let healthy = phase == Phase::Healthy && problem.is_none();
    for update in conditions(phase, children, problem) {
        multigres_api::conditions::set_condition(&mut core.conditions, update, generation, now);
    }
    core.observed_generation = generation;
    core.replicas = counts.replicas;
    core.ready_replicas = counts.ready_replicas;
    core.ready = healthy;
    (core, phase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn child(ready: bool) -> ChildReport {
        ChildReport {
            id: "Etcd x".into(),
            exists: true,
            ready,
            replicas: 3,
            ready_replicas: if ready { 3 } else { 1 },
            failure: None,
        }
    }

    fn failing(id: &str, reason: &str, message: &str) -> ChildReport {
        ChildReport {
            id: id.into(),
            failure: Some((reason.into(), message.into())),
            ..child(false)
        }
    }

    fn now() -> Time {
        Time(Timestamp::from_second(1_000).unwrap_or_default())
    }

    #[test]
    fn phases_follow_the_children() {
        let missing = ChildReport {
            exists: false,
            ..child(false)
        };
        assert_eq!(
            phase(std::slice::from_ref(&missing), false, false),
            Phase::Pending
        );
        assert_eq!(
            phase(&[child(true), missing], false, false),
            Phase::Progressing
        );
        assert_eq!(
            phase(&[child(true), child(true)], false, false),
            Phase::Healthy
        );
        // Something that was ready is not: Degraded.
        assert_eq!(
            phase(&[child(true), child(false)], true, false),
            Phase::Degraded
        );
        // A failing child or a blocking problem of its own: Degraded from the start.
        assert_eq!(
            phase(
                &[child(true), failing("Cell c", "InvalidImage", "x")],
                false,
                false
            ),
            Phase::Degraded
        );
        assert_eq!(phase(&[], false, true), Phase::Degraded);
    }

    #[test]
    fn readiness_was_reached_only_at_the_same_generation() {
        let core = |degraded: Option<(&str, &str)>| {
            let mut core = ComponentStatus::default();
            if let Some((status, reason)) = degraded {
                let update = ConditionUpdate {
                    type_: DEGRADED,
                    status: status == "True",
                    reason: reason.into(),
                    message: String::new(),
                };
                multigres_api::conditions::set_condition(
                    &mut core.conditions,
                    update,
                    None,
                    &now(),
                );
            }
            core
        };
        let healthy = core(None);
        assert!(was_ready(Some((&healthy, Some(Phase::Healthy))), false));
        // After a spec change, missing children are progress, not degradation.
        assert!(!was_ready(Some((&healthy, Some(Phase::Healthy))), true));
        assert!(!was_ready(
            Some((&healthy, Some(Phase::Progressing))),
            false
        ));
        let lost = core(Some(("True", LOST_READINESS)));
        assert!(was_ready(Some((&lost, Some(Phase::Degraded))), false));
        // Degraded by a failure that was then fixed: never ready, so now Progressing.
        let failed = core(Some(("True", "InvalidImage")));
        assert!(!was_ready(Some((&failed, Some(Phase::Degraded))), false));
        assert!(!was_ready(None, true));
    }

    #[test]
    fn a_child_is_ready_only_once_it_saw_our_latest_spec() {
        let status = ComponentStatus {
            ready: true,
            observed_generation: Some(1),
            replicas: 2,
            ready_replicas: 2,
            ..Default::default()
        };
        assert!(ChildReport::new("x".into(), Some((&Some(1), Some(&status)))).ready);
        assert!(!ChildReport::new("x".into(), Some((&Some(2), Some(&status)))).ready);
        assert!(!ChildReport::new("x".into(), None).exists);
    }

    #[test]
    fn a_child_failure_counts_only_for_its_current_spec() {
        let mut status = ComponentStatus {
            observed_generation: Some(1),
            ..Default::default()
        };
        let degraded = |reason: &str| ConditionUpdate::new(DEGRADED, true, reason, "bad image");
        multigres_api::conditions::set_condition(
            &mut status.conditions,
            degraded("InvalidImage"),
            Some(1),
            &now(),
        );
        let report = ChildReport::new("MultiGateway g".into(), Some((&Some(1), Some(&status))));
        assert_eq!(
            report.failure,
            Some(("InvalidImage".to_string(), "bad image".to_string()))
        );
        // The user changed the spec since: the failure may be fixed.
        let newer = ChildReport::new("MultiGateway g".into(), Some((&Some(2), Some(&status))));
        assert_eq!(newer.failure, None);
        // Just written by this reconcile: the same.
        let written = std::collections::BTreeSet::from(["MultiGateway g".to_string()]);
        assert_eq!(report.unless_written(&written).failure, None);
        // Lost readiness is not a failure to pass up; the parent sees its own.
        multigres_api::conditions::set_condition(
            &mut status.conditions,
            degraded(LOST_READINESS),
            Some(1),
            &now(),
        );
        let lost = ChildReport::new("Cell c".into(), Some((&Some(1), Some(&status))));
        assert_eq!(lost.failure, None);
    }

    #[test]
    fn a_child_written_in_this_reconcile_is_not_ready_whatever_the_cache_says() {
        let written = std::collections::BTreeSet::from(["Etcd x".to_string()]);
        assert!(!child(true).unless_written(&written).ready);
        let other = std::collections::BTreeSet::from(["Cell y".to_string()]);
        assert!(child(true).unless_written(&other).ready);
    }

    #[test]
    fn conditions_name_what_is_missing_or_wrong() {
        let [ready, progressing, degraded] = conditions(Phase::Progressing, &[child(false)], None);
        assert_eq!(
            (ready.status, ready.reason.as_str(), ready.message.as_str()),
            (
                false,
                "ComponentsNotReady",
                "waiting for Etcd x (1/3 ready)"
            )
        );
        assert_eq!(
            (progressing.status, progressing.reason.as_str()),
            (true, "Converging")
        );
        assert_eq!(
            (degraded.status, degraded.reason.as_str()),
            (false, "AsExpected")
        );
        // A transient problem explains Ready only.
        let pending = Problem::transient("TopologyPending", "etcd is starting");
        let [ready, progressing, degraded] =
            conditions(Phase::Progressing, &[child(false)], Some(&pending));
        assert_eq!(
            (ready.reason.as_str(), ready.message.as_str()),
            ("TopologyPending", "etcd is starting")
        );
        assert!(progressing.status && !degraded.status);
        let [_, progressing, degraded] = conditions(Phase::Degraded, &[child(false)], None);
        assert_eq!(
            (
                degraded.status,
                degraded.reason.as_str(),
                degraded.message.as_str()
            ),
            (true, LOST_READINESS, "no longer ready: Etcd x (1/3 ready)")
        );
        assert!(!progressing.status);
    }

    #[test]
    fn a_blocking_failure_is_the_reason_of_every_condition() {
        let own = Problem::blocking("NameTooLong", "shorten it");
        for condition in conditions(Phase::Degraded, &[], Some(&own)) {
            assert_eq!(
                (
                    condition.reason.as_str(),
                    condition.message.as_str() == "shorten it"
                ),
                ("NameTooLong", condition.type_ != PROGRESSING),
                "{condition:?}"
            );
        }
        let children = [
            child(true),
            failing(
                "Cell demo-a",
                "InvalidImage",
                "MultiGateway demo-a-gateway: spec.image bad",
            ),
            failing(
                "Cell demo-b",
                "InvalidImage",
                "MultiGateway demo-b-gateway: spec.image bad",
            ),
        ];
        let [ready, progressing, degraded] = conditions(Phase::Degraded, &children, None);
        let expected =
            "Cell demo-a: MultiGateway demo-a-gateway: spec.image bad (and 1 more failing)";
        assert_eq!(
            (ready.status, ready.reason.as_str(), ready.message.as_str()),
            (false, "InvalidImage", expected)
        );
        assert_eq!(
            (progressing.status, progressing.reason.as_str()),
            (false, "InvalidImage")
        );
        assert_eq!(
            (
                degraded.status,
                degraded.reason.as_str(),
                degraded.message.as_str()
            ),
            (true, "InvalidImage", expected)
        );
    }

    #[test]
    fn a_failure_two_levels_down_reaches_the_top_with_its_path() {
        // The gateway's failure makes its Cell Degraded; the cluster reads the Cell's status.
        let gateway = failing(
            "MultiGateway demo-a-gateway",
            "InvalidImage",
            "spec.image bad",
        );
        let (cell, cell_phase) = core_status(
            None,
            Some(1),
            &[gateway],
            ReadyCount::default(),
            None,
            &now(),
        );
        assert_eq!(cell_phase, Phase::Degraded);
        let cell = ChildReport::new("Cell demo-a".into(), Some((&Some(1), Some(&cell))));
        let (cluster, cluster_phase) = core_status(
            None,
            Some(1),
            &[child(true), cell],
            ReadyCount::default(),
            None,
            &now(),
        );
        assert_eq!(cluster_phase, Phase::Degraded);
        assert!(!cluster.ready);
        let degraded = condition(&cluster.conditions, DEGRADED).expect("Degraded");
        assert_eq!(
            (
                degraded.status.as_str(),
                degraded.reason.as_str(),
                degraded.message.as_str()
            ),
            (
                "True",
                "InvalidImage",
                "Cell demo-a: MultiGateway demo-a-gateway: spec.image bad"
            )
        );
    }
}
