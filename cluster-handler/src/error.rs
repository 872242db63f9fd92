//! Errors of a cluster-handler reconcile.

use multigres_runtime::failure::CommonFailure;
use multigres_runtime::reconcile::Failure;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// An invalid spec, children not written or a status not written, as in every handler.
    #[error(transparent)]
    Common(#[from] CommonFailure),

    /// The postgres password Secret is missing or wrong; the children wait for it.
    #[error("{object}: {source}")]
    Credentials {
        object: String,
        #[source]
        source: crate::password::CredentialsError,
    },

    /// The backup repository's claim is missing or not the cluster's; the children wait.
    #[error("{object}: {source}")]
    Backup {
        object: String,
        #[source]
        source: crate::backup::BackupError,
    },

    /// The cluster's records in the Multigres topology could not be read or written.
    #[error("{object}: {source}")]
    Topology {
        object: String,
        #[source]
        source: crate::topology::TopologyError,
    },

    /// A child that is no longer wanted could not be deleted.
    #[error("{object}: deleting {target}: {source}")]
    Cleanup {
        object: String,
        target: String,
        #[source]
        source: kube::Error,
    },
}

impl Failure for Error {
    fn reason(&self) -> &'static str {
        match self {
            Self::Common(e) => e.reason(),
            Self::Credentials { source, .. } => source.reason(),
            Self::Backup { source, .. } => source.reason(),
            Self::Topology { source, .. } => source.reason(),
            Self::Cleanup { .. } => "CleanupFailed",
        }
    }

    /// Low-cardinality label for logs and metrics.
    fn category(&self) -> &'static str {
        match self {
            Self::Common(e) => e.category(),
            Self::Credentials { .. } => "credentials",
            Self::Backup { .. } => "backup",
            Self::Topology { .. } => "topology",
            Self::Cleanup { .. } => "cleanup",
        }
    }

    fn user_must_act(&self) -> bool {
        match self {
            Self::Common(e) => e.user_must_act(),
            Self::Credentials { .. } | Self::Backup { .. } => true,
            Self::Topology { .. } | Self::Cleanup { .. } => false,
        }
    }

    fn going_away(&self) -> bool {
        match self {
            Self::Common(e) => e.going_away(),
            Self::Cleanup { source, .. } => multigres_runtime::gone::going_away(source),
            Self::Credentials { .. } | Self::Backup { .. } | Self::Topology { .. } => false,
        }
    }
}

impl Error {
    /// The problem of a prerequisite that is missing: the cluster is blocked until a user
    /// provides it.
    pub fn problem(&self) -> Option<crate::aggregate::Problem> {
        let blocking = crate::aggregate::Problem::blocking;
        match self {
            Self::Credentials { source, .. } => Some(blocking(source.reason(), source.to_string())),
            Self::Backup { source, .. } => Some(blocking(source.reason(), source.to_string())),
            _ => None,
        }
    }
}
