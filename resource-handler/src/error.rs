//! Errors of a resource-handler reconcile.

use multigres_runtime::failure::CommonFailure;
use multigres_runtime::reconcile::Failure;
use thiserror::Error;

use crate::volumes::VolumesFromAnotherObject;

#[derive(Debug, Error)]
pub enum Error {
    /// An invalid spec, workload objects not written or a status not written, as in every
    /// handler.
    #[error(transparent)]
    Common(#[from] CommonFailure),

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

    /// The object has no namespace (it was not read from the API server).
    #[error("{object}: not a namespaced object read from the API server")]
    NotStored { object: String },
}

impl Failure for Error {
    fn reason(&self) -> &'static str {
        match self {
            Self::Common(e) => e.reason(),
            Self::ForeignVolumes { .. } => crate::volumes::FOREIGN_VOLUMES_REASON,
            Self::ListClaims { .. } => "ListClaimsFailed",
            Self::NotStored { .. } => "NotStored",
        }
    }

    fn category(&self) -> &'static str {
        match self {
            Self::Common(e) => e.category(),
            Self::ForeignVolumes { .. } => "foreign_volumes",
            Self::ListClaims { .. } => "list",
            Self::NotStored { .. } => "internal",
        }
    }

    fn user_must_act(&self) -> bool {
        match self {
            Self::Common(e) => e.user_must_act(),
            Self::ForeignVolumes { .. } => true,
            Self::ListClaims { .. } | Self::NotStored { .. } => false,
        }
    }

    fn going_away(&self) -> bool {
        match self {
            Self::Common(e) => e.going_away(),
            Self::ListClaims { source, .. } => multigres_runtime::gone::going_away(source),
            Self::ForeignVolumes { .. } | Self::NotStored { .. } => false,
        }
    }
}
