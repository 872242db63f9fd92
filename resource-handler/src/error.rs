//! Errors of a resource-handler reconcile.

use multigres_api::invalid::InvalidSpec;
use thiserror::Error;

use crate::volumes::VolumesFromAnotherObject;

#[derive(Debug, Error)]
pub enum Error {
    /// The spec cannot be turned into workloads; retrying will not help until it changes.
    #[error("{object}: {source}")]
    Build {
        object: String,
        #[source]
        source: InvalidSpec,
    },

    /// Claims made for another object are where a new StatefulSet would look for its data.
    /// Retried with backoff: deleting them, or setting `adoptVolumes`, resolves it.
    #[error("{object}: {source}")]
    ForeignVolumes {
        object: String,
        #[source]
        source: VolumesFromAnotherObject,
    },

    /// Listing the claims a new StatefulSet would use failed.
    #[error("{object}: listing PersistentVolumeClaims: {source}")]
    ListClaims {
        object: String,
        #[source]
        source: kube::Error,
    },

    /// Writing some of the workload objects failed.
    #[error("{object}: {}", multigres_runtime::fanout::describe(.failed))]
    Apply {
        object: String,
        /// `(Kind name, error)` of every object that could not be applied.
        failed: Vec<(String, String)>,
        /// Each failed only because the namespace is being deleted.
        going_away: bool,
    },

    /// Writing the status failed.
    #[error(transparent)]
    Status(#[from] multigres_runtime::status::StatusWriteFailed),

    /// The object has no namespace (it was not read from the API server).
    #[error("{object}: not a namespaced object read from the API server")]
    NotStored { object: String },
}

impl multigres_runtime::reconcile::Failure for Error {
    fn reason(&self) -> &'static str {
        match self {
            Self::Build { source, .. } => source.reason(),
            Self::ForeignVolumes { .. } => crate::volumes::FOREIGN_VOLUMES_REASON,
            Self::ListClaims { .. } => "ListClaimsFailed",
            Self::Apply { .. } => "ApplyFailed",
            Self::Status(_) => "StatusWriteFailed",
            Self::NotStored { .. } => "NotStored",
        }
    }

    fn category(&self) -> &'static str {
        match self {
            Self::Build { .. } => "invalid_spec",
            Self::ForeignVolumes { .. } => "foreign_volumes",
            Self::ListClaims { .. } => "list",
            Self::Apply { .. } => "apply",
            Self::Status(_) => "status",
            Self::NotStored { .. } => "internal",
        }
    }

    fn user_must_act(&self) -> bool {
        matches!(self, Self::Build { .. } | Self::ForeignVolumes { .. })
    }

    fn going_away(&self) -> bool {
        match self {
            Self::Apply { going_away, .. } => *going_away,
            Self::ListClaims { source, .. } => multigres_runtime::gone::going_away(source),
            Self::Status(failed) => multigres_runtime::gone::going_away(&failed.source),
            Self::Build { .. } | Self::ForeignVolumes { .. } | Self::NotStored { .. } => false,
        }
    }
}
