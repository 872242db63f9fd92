//! The `multigres.com/v1alpha1` API: custom resource types, their defaults and validation,
//! names and labels of the objects made from them, quantities, status conditions and CRD
//! generation. Types and pure functions only, so tools and tests can use it without a runtime.

pub mod conditions;
pub mod crd;
pub mod defaults;
pub mod invalid;
pub mod meta;
pub mod quantity;
pub mod rbac;
pub mod samples;
pub mod status;
