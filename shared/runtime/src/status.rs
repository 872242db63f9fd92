//! Status writes, shared by every controller: a status is written only when it changed.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::recent::RecentWrites;

/// A status write the API server refused or never answered.
#[derive(Debug, thiserror::Error)]
#[error("{object}: writing status: {source}")]
pub struct StatusWriteFailed {
    /// `namespace/name` of the object.
    pub object: String,
    #[source]
    pub source: kube::Error,
}

/// Writes `status` to `obj` with server-side apply on the status subresource, in an
/// `update status` span, unless it equals `current`. Returns whether a write happened.
pub async fn write_status<K, S>(
    api: &Api<K>,
    manager: &str,
    recent: &RecentWrites,
    obj: &K,
    current: Option<&S>,
    status: &S,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(false);
    }
    // The cache may not show our own last status write yet: the same write again is no change.
    let key = format!(
        "{}/status {}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    );
    let cached_version = obj.meta().resource_version.as_deref();
    let hash =
        crate::apply::hash_value(&serde_json::to_value(status).map_err(kube::Error::SerdeError)?);
    if recent.already_written(&key, cached_version, &hash) {
        return Ok(false);
    }
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let span = tracing::info_span!(target: "multigres::status", "update status", otel.name = "update status");
    multigres_telemetry::spans::run_in(span, async {
        api.patch_status(
            &obj.name_any(),
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&patch),
        )
        .await
    })
    .await?;
    recent.record(key, cached_version, &hash);
    Ok(true)
}
