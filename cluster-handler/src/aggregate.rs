//! Status of an aggregating object (cluster or cell) from the statuses of its children (pure).

use multigres_api::conditions::{ConditionUpdate, DEGRADED, PROGRESSING, READY};
use multigres_api::crd::{ComponentStatus, Phase, ReadyCount};

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
            };
        };
        let status = status.cloned().unwrap_or_default();
        ChildReport {
            id,
            exists: true,
            ready: status.ready && status.observed_generation == *generation,
            replicas: status.replicas,
            ready_replicas: status.ready_replicas,
        }
    }

    /// Not ready when this reconcile just wrote the child: the cache may still show its old
    /// generation with a status for the old spec, which would pass for ready.
    pub fn unless_written(mut self, written: &std::collections::BTreeSet<String>) -> ChildReport {
        if written.contains(&self.id) {
            self.ready = false;
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

/// The phase: Healthy when every child is ready; Degraded when something that was ready is not
/// any more (the parent was Healthy or Degraded and its spec did not change); Progressing while
/// children exist and converge; Pending before any exists.
pub fn phase(children: &[ChildReport], previous: Option<Phase>, new_generation: bool) -> Phase {
    if children.is_empty() || children.iter().all(|c| !c.exists) {
        Phase::Pending
    } else if children.iter().all(|c| c.ready) {
        Phase::Healthy
    } else if !new_generation && matches!(previous, Some(Phase::Healthy | Phase::Degraded)) {
        Phase::Degraded
    } else {
        Phase::Progressing
    }
}

/// The Ready, Progressing and Degraded conditions for `phase`, unless a spec error or failed
/// writes explain the situation better.
pub fn conditions(
    phase: Phase,
    children: &[ChildReport],
    problem: Option<(&'static str, String)>,
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
    let ready = match (&problem, phase) {
        (Some((reason, message)), _) => ConditionUpdate::new(READY, false, reason, message.clone()),
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
            "ComponentsNotReady",
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
    problem: Option<(&'static str, String)>,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> (ComponentStatus, Phase) {
    let (mut core, previous_phase) = previous
        .map(|(core, phase)| (core.clone(), phase))
        .unwrap_or_default();
    let new_generation = core.observed_generation != generation;
    let phase = phase(children, previous_phase, new_generation);
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

    fn child(ready: bool) -> ChildReport {
        ChildReport {
            id: "Etcd x".into(),
            exists: true,
            ready,
            replicas: 3,
            ready_replicas: if ready { 3 } else { 1 },
        }
    }

    #[test]
    fn phases_follow_the_children() {
        let missing = ChildReport {
            exists: false,
            ..child(false)
        };
        assert_eq!(
            phase(std::slice::from_ref(&missing), None, true),
            Phase::Pending
        );
        assert_eq!(
            phase(&[child(true), missing], None, true),
            Phase::Progressing
        );
        assert_eq!(
            phase(&[child(true), child(true)], Some(Phase::Progressing), false),
            Phase::Healthy
        );
        // Something that was ready is not, without a spec change: Degraded.
        assert_eq!(
            phase(&[child(true), child(false)], Some(Phase::Healthy), false),
            Phase::Degraded
        );
        // The same after a spec change is progress, not degradation.
        assert_eq!(
            phase(&[child(true), child(false)], Some(Phase::Healthy), true),
            Phase::Progressing
        );
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
    fn a_child_written_in_this_reconcile_is_not_ready_whatever_the_cache_says() {
        let written = std::collections::BTreeSet::from(["Etcd x".to_string()]);
        assert!(!child(true).unless_written(&written).ready);
        let other = std::collections::BTreeSet::from(["Cell y".to_string()]);
        assert!(child(true).unless_written(&other).ready);
    }

    #[test]
    fn conditions_name_what_is_missing_or_wrong() {
        let [ready, progressing, degraded] = conditions(Phase::Progressing, &[child(false)], None);
        assert!(
            !ready.status && ready.message.contains("Etcd x (1/3 ready)"),
            "{ready:?}"
        );
        assert!(progressing.status);
        assert!(!degraded.status);
        let [ready, ..] = conditions(
            Phase::Pending,
            &[],
            Some(("NameTooLong", "shorten it".into())),
        );
        assert_eq!(
            (ready.reason.as_str(), ready.message.as_str()),
            ("NameTooLong", "shorten it")
        );
        let [_, _, degraded] = conditions(Phase::Degraded, &[child(false)], None);
        assert!(degraded.status);
    }
}
