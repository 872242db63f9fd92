//! Why an object's spec cannot be turned into its children or workloads: the one error type of
//! both handlers for what the schema cannot catch. Retrying does not help until the object
//! changes; each message names what to fix, and each variant has a condition reason.

/// A spec that passed the API server's validation but cannot be built.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidSpec {
    /// An image reference that container runtimes would refuse.
    #[error("{field} \"{image}\" is not a valid image reference: {reason}")]
    InvalidImage {
        /// The spec field holding the image, e.g. `spec.image`.
        field: &'static str,
        image: String,
        reason: String,
    },

    /// A storage size that is not a whole number of bytes from 1Mi to 1Pi.
    #[error(
        "spec.storage.size \"{size}\" is not a whole number of bytes from 1Mi to 1Pi: use a \
         number with an optional suffix, such as 10Gi, 500Mi or 1T"
    )]
    InvalidStorageSize { size: String },

    /// The object's name cannot name the objects derived from it.
    #[error(
        "the name \"{name}\" cannot be used for a {kind}: the Services made from it need a name \
         that starts with a lowercase letter and has only lowercase letters, digits and '-'; \
         rename the {kind}"
    )]
    InvalidName { kind: String, name: String },

    /// An entry of `spec.allowedNetworks` that is not a CIDR.
    #[error(
        "spec.allowedNetworks entry \"{network}\" is not a network in CIDR notation, such as \
         10.0.0.0/8 or fd00::/8"
    )]
    InvalidNetwork { network: String },

    /// A derived name is longer than Kubernetes allows.
    #[error(
        "{object} would have a name of {len} characters, more than the {max} allowed; shorten \
         the name of the {kind}"
    )]
    NameTooLong {
        /// The derived object, e.g. `Service "demo-client"`.
        object: String,
        len: usize,
        max: usize,
        /// Kind of the object whose name is too long.
        kind: String,
    },

    /// A pooler's cell name leaves no room for its id in PostgreSQL's replication name.
    #[error(
        "spec.cell \"{cell}\" has {len} characters, more than the {max} a pooler allows: its \
         replication name `<cell>_<pooler id>` must fit PostgreSQL's 63 characters; use a \
         shorter cell name"
    )]
    CellNameTooLong {
        cell: String,
        len: usize,
        max: usize,
    },

    /// Two entries of a cluster's `spec.cells` share a name.
    #[error("cell \"{0}\" is listed more than once in spec.cells")]
    DuplicateCell(String),

    /// The object was not read from the API server: it has no uid or namespace to own children.
    #[error(
        "the object has no name, uid or namespace yet; build from an object read from the API server"
    )]
    NotStored,
}

impl InvalidSpec {
    /// CamelCase reason for the `Ready=False` condition and the Event.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidImage { .. } => "InvalidImage",
            Self::InvalidStorageSize { .. } => "InvalidStorageSize",
            Self::InvalidNetwork { .. } => "InvalidNetwork",
            Self::InvalidName { .. } => "InvalidName",
            Self::NameTooLong { .. } => "NameTooLong",
            Self::CellNameTooLong { .. } => "CellNameTooLong",
            Self::DuplicateCell(_) => "DuplicateCell",
            Self::NotStored => "NotStored",
        }
    }
}

/// Checks the derived object `object_kind` named `name` fits in `max` characters; `owner_kind`
/// is the kind whose name the user shortens.
pub fn name_length(
    object_kind: &str,
    name: &str,
    max: usize,
    owner_kind: &str,
) -> Result<(), InvalidSpec> {
    if name.len() <= max {
        return Ok(());
    }
    Err(InvalidSpec::NameTooLong {
        object: format!("{object_kind} \"{name}\""),
        len: name.len(),
        max,
        kind: owner_kind.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_too_long_names_the_object_its_length_and_whom_to_rename() {
        assert_eq!(name_length("Service", "abc", 3, "Etcd"), Ok(()));
        let err = name_length("pooler StatefulSet", "abcd", 3, "Cell").expect_err("too long");
        assert_eq!(err.reason(), "NameTooLong");
        assert_eq!(
            err.to_string(),
            "pooler StatefulSet \"abcd\" would have a name of 4 characters, more than the 3 \
             allowed; shorten the name of the Cell"
        );
    }
}
