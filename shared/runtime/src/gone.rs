//! API errors that say an object's world is going away, not that something is wrong: the
//! object was deleted while it was being reconciled, or its namespace is being deleted.

/// The cause the API server's namespace lifecycle admission adds when it refuses new objects in
/// a namespace being deleted (k8s.io/api core/v1/types.go `NamespaceTerminatingCause`, added in
/// k8s.io/apiserver pkg/admission/plugin/namespace/lifecycle/admission.go).
const NAMESPACE_TERMINATING: &str = "NamespaceTerminating";

/// Whether `err` says that the named object or its namespace is gone (404 naming the object;
/// a 404 without a name, such as a resource type the API server does not serve, is a real
/// failure) or that the namespace is being deleted and takes no new objects.
pub fn going_away(err: &kube::Error) -> bool {
    let kube::Error::Api(status) = err else {
        return false;
    };
    let Some(details) = status.details.as_ref() else {
        return false;
    };
    (status.code == 404 && !details.name.is_empty())
        || details
            .causes
            .iter()
            .any(|cause| cause.reason == NAMESPACE_TERMINATING)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn api_error(body: serde_json::Value) -> kube::Error {
        kube::Error::Api(Box::new(serde_json::from_value(body).expect("status")))
    }

    /// The bodies the API server sends; `e2e/tests/control_plane.rs` reads the same from the
    /// real one.
    #[test]
    fn a_deleted_object_or_a_terminating_namespace_is_going_away() {
        let gone = api_error(json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "multigresclusters.multigres.com \"a\" not found", "reason": "NotFound",
            "details": {"name": "a", "group": "multigres.com", "kind": "multigresclusters"},
            "code": 404,
        }));
        assert!(going_away(&gone));
        let terminating = api_error(json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "configmaps \"c\" is forbidden: unable to create new content in namespace n because it is being terminated",
            "reason": "Forbidden",
            "details": {"name": "c", "kind": "configmaps", "causes": [{
                "reason": "NamespaceTerminating", "message": "namespace n is being terminated",
                "field": "metadata.namespace"}]},
            "code": 403,
        }));
        assert!(going_away(&terminating));
    }

    #[test]
    fn other_refusals_are_failures() {
        let forbidden = api_error(json!({
            "status": "Failure", "reason": "Forbidden", "code": 403,
            "message": "configmaps is forbidden: User \"x\" cannot create resource",
            "details": {"kind": "configmaps"},
        }));
        assert!(!going_away(&forbidden));
        let unserved = api_error(json!({
            "status": "Failure", "reason": "NotFound", "code": 404,
            "message": "the server could not find the requested resource", "details": {},
        }));
        assert!(!going_away(&unserved));
        let bare =
            api_error(json!({"status": "Failure", "code": 404, "message": "404 page not found"}));
        assert!(!going_away(&bare));
    }
}
