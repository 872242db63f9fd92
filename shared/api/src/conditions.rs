//! Status conditions of every multigres kind: a condition's `lastTransitionTime` moves only
//! when its status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// A condition as a controller computes it; [`set_condition`] adds the bookkeeping fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate {
    pub type_: &'static str,
    pub status: bool,
    /// CamelCase reason, e.g. `AllReplicasReady`.
    pub reason: String,
    pub message: String,
}

impl ConditionUpdate {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        ConditionUpdate {
            type_,
            status,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// Sets `update` in `conditions` (replacing the condition of the same type). The transition
/// time is `now` only when the status changed (or the condition is new).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate,
    observed_generation: Option<i64>,
    now: &Time,
) {
    let status = if update.status { "True" } else { "False" }.to_string();
    let previous = conditions.iter().position(|c| c.type_ == update.type_);
    let last_transition_time = match previous {
        Some(i) if conditions[i].status == status => conditions[i].last_transition_time.clone(),
        _ => now.clone(),
    };
    let condition = Condition {
        type_: update.type_.to_string(),
        status,
        reason: update.reason,
        message: update.message,
        observed_generation,
        last_transition_time,
    };
    match previous {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// The condition of type `type_`, if present.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap_or_default())
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ConditionUpdate::new(READY, false, "Pending", "waiting"),
            Some(1),
            &at(100),
        );
        set_condition(
            &mut conditions,
            ConditionUpdate::new(READY, false, "ReplicasNotReady", "1/3"),
            Some(1),
            &at(200),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, at(100));
        assert_eq!(conditions[0].reason, "ReplicasNotReady");
        set_condition(
            &mut conditions,
            ConditionUpdate::new(READY, true, "AllReplicasReady", "3/3"),
            Some(2),
            &at(300),
        );
        assert_eq!(conditions[0].last_transition_time, at(300));
        assert_eq!(conditions[0].status, "True");
        assert_eq!(conditions[0].observed_generation, Some(2));
        set_condition(
            &mut conditions,
            ConditionUpdate::new(PROGRESSING, false, "Stable", ""),
            Some(2),
            &at(300),
        );
        assert_eq!(conditions.len(), 2);
        assert!(condition(&conditions, PROGRESSING).is_some());
    }
}
