//! The failures every reconcile can have, whatever its kind: a spec that cannot be built,
//! children that could not be written, a status that could not be written. Each handler's
//! error wraps them, so their reasons, categories and log levels are the same everywhere.

use multigres_api::invalid::InvalidSpec;
use thiserror::Error;

use crate::fanout::{self, ChildWrite};
use crate::gone;
use crate::reconcile::Failure;
use crate::status::StatusWriteFailed;

#[derive(Debug, Error)]
pub enum CommonFailure {
    /// The spec cannot be turned into children; retrying will not help until it changes.
    #[error("{object}: {source}")]
    InvalidSpec {
        object: String,
        #[source]
        source: InvalidSpec,
    },

    /// Some children could not be written; the others were.
    #[error("{object}: {}", fanout::describe(.failed))]
    ChildrenFailed {
        object: String,
        /// `(Kind name, error)` of every child that could not be written.
        failed: Vec<(String, String)>,
        /// Each failed only because the namespace is being deleted.
        going_away: bool,
    },

    /// Writing the status failed.
    #[error(transparent)]
    Status(#[from] StatusWriteFailed),
}

impl CommonFailure {
    /// The failure of a fan-out of `object`'s children, or `None` when every write succeeded.
    pub fn from_writes(object: &str, writes: &[ChildWrite]) -> Option<Self> {
        let failed = fanout::failures(writes);
        if failed.is_empty() {
            return None;
        }
        Some(Self::ChildrenFailed {
            object: object.to_string(),
            failed,
            going_away: fanout::only_going_away(writes),
        })
    }

    /// The message without the object's name in front, for a condition on the object itself.
    pub fn detail(&self) -> String {
        match self {
            Self::InvalidSpec { source, .. } => source.to_string(),
            Self::ChildrenFailed { failed, .. } => fanout::describe(failed),
            Self::Status(failed) => format!("writing status: {}", failed.source),
        }
    }
}

impl Failure for CommonFailure {
    fn reason(&self) -> &'static str {
        match self {
            Self::InvalidSpec { source, .. } => source.reason(),
            Self::ChildrenFailed { .. } => "ApplyFailed",
            Self::Status(_) => "StatusWriteFailed",
        }
    }

    fn category(&self) -> &'static str {
        match self {
            Self::InvalidSpec { .. } => "invalid_spec",
            Self::ChildrenFailed { .. } => "apply",
            Self::Status(_) => "status",
        }
    }

    fn user_must_act(&self) -> bool {
        matches!(self, Self::InvalidSpec { .. })
    }

    fn going_away(&self) -> bool {
        match self {
            Self::InvalidSpec { .. } => false,
            Self::ChildrenFailed { going_away, .. } => *going_away,
            Self::Status(failed) => gone::going_away(&failed.source),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ObjectReference;
    use serde_json::json;

    use super::*;
    use crate::apply::Decision;

    const OBJECT: &str = "default/demo";

    fn write(id: &str, result: Result<Decision, &str>, going_away: bool) -> ChildWrite {
        ChildWrite {
            id: id.to_string(),
            child: ObjectReference::default(),
            result: result.map_err(str::to_string),
            going_away,
        }
    }

    fn status_failed(body: serde_json::Value) -> CommonFailure {
        let status = serde_json::from_value(body).expect("a Status");
        CommonFailure::Status(StatusWriteFailed {
            object: OBJECT.to_string(),
            source: kube::Error::Api(Box::new(status)),
        })
    }

    /// The answers for reason, category, user_must_act and going_away.
    fn answers(failure: &CommonFailure) -> (&'static str, &'static str, bool, bool) {
        (
            failure.reason(),
            failure.category(),
            failure.user_must_act(),
            failure.going_away(),
        )
    }

    /// The message is the object, then the detail; a condition on the object shows only the
    /// detail.
    fn assert_message(failure: &CommonFailure, detail: &str) {
        assert_eq!(failure.detail(), detail);
        assert_eq!(failure.to_string(), format!("{OBJECT}: {detail}"));
    }

    #[test]
    fn an_invalid_spec_waits_for_the_user() {
        let failure = CommonFailure::InvalidSpec {
            object: OBJECT.to_string(),
            source: InvalidSpec::DuplicateCell("a".to_string()),
        };
        assert_eq!(
            answers(&failure),
            ("DuplicateCell", "invalid_spec", true, false)
        );
        assert_message(
            &failure,
            "cell \"a\" is listed more than once in spec.cells",
        );
    }

    #[test]
    fn children_that_failed_are_an_apply_failure_going_away_only_when_each_one_is() {
        let failed = |going_away| CommonFailure::ChildrenFailed {
            object: OBJECT.to_string(),
            failed: vec![
                ("Cell a".to_string(), "refused".to_string()),
                ("Etcd e".to_string(), "timed out".to_string()),
            ],
            going_away,
        };
        assert_eq!(
            answers(&failed(false)),
            ("ApplyFailed", "apply", false, false)
        );
        assert_eq!(
            answers(&failed(true)),
            ("ApplyFailed", "apply", false, true)
        );
        assert_message(&failed(false), "Cell a: refused; Etcd e: timed out");
    }

    #[test]
    fn a_status_write_is_going_away_when_the_object_is_gone() {
        let refused = status_failed(json!({
            "status": "Failure", "reason": "Forbidden", "code": 403, "message": "no",
            "details": {"kind": "cells"},
        }));
        assert_eq!(
            answers(&refused),
            ("StatusWriteFailed", "status", false, false)
        );
        let gone = status_failed(json!({
            "status": "Failure", "reason": "NotFound", "code": 404,
            "message": "cells \"demo\" not found", "details": {"name": "demo", "kind": "cells"},
        }));
        assert_eq!(answers(&gone), ("StatusWriteFailed", "status", false, true));
        let CommonFailure::Status(inner) = &gone else {
            panic!("a status failure: {gone:?}");
        };
        assert_message(&gone, &format!("writing status: {}", inner.source));
    }

    #[test]
    fn a_fan_out_fails_only_when_a_child_did() {
        let ok = [
            write("Cell a", Ok(Decision::Create), false),
            write("Cell b", Ok(Decision::UpToDate), false),
        ];
        assert!(CommonFailure::from_writes(OBJECT, &ok).is_none());
        assert!(CommonFailure::from_writes(OBJECT, &[]).is_none());

        let some_failed = [
            write("Cell a", Ok(Decision::Create), false),
            write("Cell b", Err("refused"), false),
            write("Cell c", Err("namespace terminating"), true),
        ];
        let failure = CommonFailure::from_writes(OBJECT, &some_failed).expect("a failure");
        assert_eq!(answers(&failure), ("ApplyFailed", "apply", false, false));
        assert_message(&failure, "Cell b: refused; Cell c: namespace terminating");

        let all_going_away = [
            write("Cell a", Ok(Decision::Changed), false),
            write("Cell b", Err("namespace terminating"), true),
        ];
        let failure = CommonFailure::from_writes(OBJECT, &all_going_away).expect("a failure");
        assert!(failure.going_away(), "{failure:?}");
        assert_message(&failure, "Cell b: namespace terminating");
    }
}
