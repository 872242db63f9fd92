//! What a Kubernetes API request does, from its method and URL: the verb (`get`, `list`,
//! `watch`, `create`, `update`, `patch`, `delete`) and the resource (`statefulsets`,
//! `etcds/status`). Used for request metrics and client span names.

use http::Method;

/// A request classified by Kubernetes verb and resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiRequest {
    pub verb: &'static str,
    /// Resource plural, with `/subresource` when there is one; `""` for non-resource URLs.
    pub resource: String,
}

/// Classifies a request to the Kubernetes API by method, path and query.
pub fn classify(method: &Method, path: &str, query: Option<&str>) -> ApiRequest {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // /api/v1/... or /apis/<group>/<version>/...
    let rest: &[&str] = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => &[],
    };
    // Skip `namespaces/<ns>` unless the resource is the namespace itself.
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let (resource, has_name) = match rest {
        [] => (String::new(), false),
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub, ..] => (format!("{resource}/{sub}"), true),
    };
    let watch = query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let verb = match *method {
        Method::GET if watch => "watch",
        Method::GET if has_name || resource.is_empty() => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if has_name => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    };
    ApiRequest { verb, resource }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(method: Method, uri: &str) -> (&'static str, String) {
        let (path, query) = uri
            .split_once('?')
            .map_or((uri, None), |(p, q)| (p, Some(q)));
        let r = classify(&method, path, query);
        (r.verb, r.resource)
    }

    #[test]
    fn classifies_core_group_and_subresource_requests() {
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/a/pods/p"),
            ("get", "pods".into())
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/a/pods?labelSelector=x"),
            ("list", "pods".into())
        );
        assert_eq!(
            c(Method::GET, "/api/v1/pods?watch=true&resourceVersion=1"),
            ("watch", "pods".into())
        );
        assert_eq!(
            c(
                Method::PATCH,
                "/apis/apps/v1/namespaces/a/statefulsets/s?fieldManager=m&force=true"
            ),
            ("patch", "statefulsets".into())
        );
        assert_eq!(
            c(
                Method::PATCH,
                "/apis/multigres.com/v1alpha1/namespaces/a/etcds/e/status"
            ),
            ("patch", "etcds/status".into())
        );
        assert_eq!(
            c(Method::POST, "/api/v1/namespaces"),
            ("create", "namespaces".into())
        );
        assert_eq!(
            c(Method::DELETE, "/api/v1/namespaces/a"),
            ("delete", "namespaces".into())
        );
        assert_eq!(
            c(Method::DELETE, "/api/v1/namespaces/a/pods"),
            ("deletecollection", "pods".into())
        );
        assert_eq!(c(Method::GET, "/version"), ("get", String::new()));
    }
}
