//! Errors of a cluster-handler reconcile.

use thiserror::Error;

use multigres_api::invalid::InvalidSpec;

#[derive(Debug, Error)]
pub enum Error {
    /// The spec cannot be fanned out; retrying will not help until it changes.
    #[error("{object}: {source}")]
    Spec {
        object: String,
        #[source]
        source: InvalidSpec,
    },

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

    /// Some children could not be written; the others were.
    #[error("{object}: {}", multigres_runtime::fanout::describe(.failed))]
    Children {
        object: String,
        failed: Vec<(String, String)>,
        /// Each failed only because the namespace is being deleted.
        going_away: bool,
    },

    /// A child that is no longer wanted could not be deleted.
    #[error("{object}: deleting {target}: {source}")]
    Cleanup {
        object: String,
        target: String,
        #[source]
        source: kube::Error,
    },

    /// Writing the status failed.
    #[error(transparent)]
    Status(#[from] multigres_runtime::status::StatusWriteFailed),
}

impl multigres_runtime::reconcile::Failure for Error {
    fn reason(&self) -> &'static str {
        match self {
            Self::Spec { source, .. } => source.reason(),
            Self::Credentials { source, .. } => source.reason(),
            Self::Backup { source, .. } => source.reason(),
            Self::Topology { source, .. } => source.reason(),
            Self::Children { .. } => "ApplyFailed",
            Self::Cleanup { .. } => "CleanupFailed",
            Self::Status(_) => "StatusWriteFailed",
        }
    }

    /// Low-cardinality label for logs and metrics.
    fn category(&self) -> &'static str {
        match self {
            Self::Spec { .. } => "invalid_spec",
            Self::Credentials { .. } => "credentials",
            Self::Backup { .. } => "backup",
            Self::Topology { .. } => "topology",
            Self::Children { .. } => "apply",
            Self::Cleanup { .. } => "cleanup",
            Self::Status(_) => "status",
        }
    }

    fn user_must_act(&self) -> bool {
        matches!(
            self,
            Self::Spec { .. } | Self::Credentials { .. } | Self::Backup { .. }
        )
    }

    fn going_away(&self) -> bool {
        match self {
            Self::Children { going_away, .. } => *going_away,
            Self::Cleanup { source, .. } => multigres_runtime::gone::going_away(source),
            Self::Status(failed) => multigres_runtime::gone::going_away(&failed.source),
            Self::Spec { .. }
            | Self::Credentials { .. }
            | Self::Backup { .. }
            | Self::Topology { .. } => false,
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
