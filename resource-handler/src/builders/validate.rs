//! Checks the CRD schema cannot express: image references, storage quantities, names.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use multigres_api::invalid::InvalidSpec;
use multigres_api::quantity;

/// Longest image name (registry and path, without tag or digest) registries accept.
const MAX_IMAGE_NAME: usize = 255;
/// Longest image tag.
const MAX_TAG: usize = 128;

/// Checks `image` (the value of spec field `field`) is a valid image reference.
pub(super) fn image(field: &'static str, image: &str) -> Result<(), InvalidSpec> {
    check_image_reference(image).map_err(|reason| InvalidSpec::InvalidImage {
        field,
        image: image.to_string(),
        reason,
    })
}

/// Checks `network` (an entry of `spec.allowedNetworks`) is an address with a prefix length,
/// such as `10.0.0.0/8`. The CRD checks the same with CEL; this guards what goes into
/// pg_hba.conf when an object got past an older schema, since anything else on that line would
/// be read as more pg_hba.conf.
pub(super) fn network(network: &str) -> Result<(), InvalidSpec> {
    let valid = network.split_once('/').is_some_and(|(address, prefix)| {
        let max = match address.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(_)) => 32,
            Ok(std::net::IpAddr::V6(_)) => 128,
            Err(_) => return false,
        };
        prefix.len() <= 3
            && prefix.bytes().all(|b| b.is_ascii_digit())
            && prefix.parse::<u8>().is_ok_and(|p| p <= max)
    });
    if valid {
        Ok(())
    } else {
        Err(InvalidSpec::InvalidNetwork {
            network: network.to_string(),
        })
    }
}

/// Checks `size` is a whole number of bytes from 1Mi to 1Pi and returns it as a quantity. The
/// CRD refuses anything else at apply; this guards objects that got past an older schema.
pub(super) fn storage_size(size: &str) -> Result<Quantity, InvalidSpec> {
    if quantity::is_storage_size(size) {
        Ok(Quantity(size.to_string()))
    } else {
        Err(InvalidSpec::InvalidStorageSize {
            size: size.to_string(),
        })
    }
}

/// Checks the name of a component object (of kind `kind`) can prefix the names of its Services:
/// a DNS-1035 label, apart from length, which `name_length` checks per derived object.
pub(super) fn component_name(kind: &str, name: &str) -> Result<(), InvalidSpec> {
    let starts_with_letter = name.starts_with(|c: char| c.is_ascii_lowercase());
    let ends_alphanumeric = name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    let allowed = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if starts_with_letter && ends_alphanumeric && allowed {
        Ok(())
    } else {
        Err(InvalidSpec::InvalidName {
            kind: kind.to_string(),
            name: name.to_string(),
        })
    }
}

/// Checks `reference` against the grammar of image references (as in
/// `github.com/distribution/reference`), restricted to sha256 digests:
///
/// ```text
/// reference      := name [ ":" tag ] [ "@" digest ]
/// name           := [ host [ ":" port ] "/" ] path-component ( "/" path-component )*
/// path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
/// tag            := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
/// digest         := "sha256:" [a-f0-9]{64}
/// ```
///
/// The first `/`-separated component is the registry host when it contains `.` or `:`, is
/// `localhost`, or has uppercase letters (the rule Docker uses). Returns why it is invalid.
/// Written here rather than taken from `oci-spec`: its parser (0.8) answers "invalid reference
/// format" for every malformed reference but an empty one, which does not say what to fix.
fn check_image_reference(reference: &str) -> Result<(), String> {
    if reference.is_empty() {
        return Err("it is empty".to_string());
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        check_digest(digest)?;
    }
    // A tag follows the last ':' after the last '/'; an earlier ':' belongs to a registry port.
    let last_component = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_component..].rfind(':') {
        Some(i) => (
            &rest[..last_component + i],
            Some(&rest[last_component + i + 1..]),
        ),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    if name.is_empty() {
        return Err("the repository name is empty".to_string());
    }
    if name.len() > MAX_IMAGE_NAME {
        return Err(format!(
            "the name before the tag is {} characters long, more than {MAX_IMAGE_NAME}",
            name.len()
        ));
    }
    let (host, path) = split_host(name);
    if let Some(host) = host {
        check_host(host)?;
    }
    if path.is_empty() {
        return Err("the repository path after the registry host is empty".to_string());
    }
    path.split('/').try_for_each(check_path_component)
}

/// Splits `name` into its registry host, if it has one, and its repository path.
fn split_host(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, path))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), path)
        }
        _ => (None, name),
    }
}

/// `host[:port]`, where host is a DNS name or a bracketed IPv6 address.
fn check_host(host_port: &str) -> Result<(), String> {
    let invalid = || {
        format!(
            "the registry \"{host_port}\" is not a valid host[:port] (a DNS name such as \
             registry.example.com, or an IP address, and an optional port number)"
        )
    };
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (ipv6, after) = bracketed.split_once(']').ok_or_else(invalid)?;
        let valid_ipv6 =
            !ipv6.is_empty() && ipv6.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
        if !valid_ipv6 {
            return Err(invalid());
        }
        match after {
            "" => (None, None),
            _ => (None, Some(after.strip_prefix(':').ok_or_else(invalid)?)),
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(host_port), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return Err(invalid());
        }
    }
    if let Some(port) = port
        && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(invalid());
    }
    Ok(())
}

/// One `/`-separated component of the repository path.
fn check_path_component(component: &str) -> Result<(), String> {
    if component.is_empty() {
        return Err(
            "the repository path has an empty component (a doubled or trailing '/')".to_string(),
        );
    }
    if is_path_component(component) {
        return Ok(());
    }
    let problem = if component.chars().any(|c| c.is_ascii_uppercase()) {
        "has uppercase letters, which only the registry host may have"
    } else {
        "must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
    };
    Err(format!(
        "the repository path component \"{component}\" {problem}"
    ))
}

/// `[a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*`
fn is_path_component(component: &str) -> bool {
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut rest = component.as_bytes();
    loop {
        let run = rest.iter().take_while(|b| alphanumeric(b)).count();
        if run == 0 {
            return false;
        }
        rest = &rest[run..];
        let separator = match rest {
            [] => return true,
            [b'_', b'_', ..] => 2,
            [b'.' | b'_', ..] => 1,
            [b'-', ..] => rest.iter().take_while(|b| **b == b'-').count(),
            _ => return false,
        };
        rest = &rest[separator..];
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let valid = tag.starts_with(word)
        && tag.len() <= MAX_TAG
        && tag.chars().all(|c| word(c) || c == '.' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "the tag \"{tag}\" must be 1 to {MAX_TAG} letters, digits, '_', '.' or '-', not \
             starting with '.' or '-'"
        ))
    }
}

/// `sha256:` and 64 lowercase hex digits.
fn check_digest(digest: &str) -> Result<(), String> {
    let valid = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "the digest \"{digest}\" must be sha256: followed by 64 lowercase hexadecimal digits"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// References both the builder and the schema accept.
    const GOOD: &[&str] = &[
        "etcd",
        "etcd:v3.6.14",
        "library/postgres:17",
        "gcr.io/etcd-development/etcd:v3.6.14",
        "ghcr.io/multigres/multigres:main",
        "ghcr.io/multigres/pgctld:sha-1a2b3c",
        "registry.example.com:5000/team/app:v1.2",
        "localhost/app",
        "localhost:5000/app:latest",
        "Registry.Example.com/team/app:v1",
        "10.0.0.1:5000/a/b/c",
        "a/b__c/d-e/f.g/h---i",
        "app:V1_RC.2-beta",
        "app:_x",
        "my-registry/app",
    ];

    /// References the builder refuses, with words of its reason.
    const BAD: &[(&str, &str)] = &[
        ("", "empty"),
        ("Registry.io/Team/App:v1", "\"Team\" has uppercase"),
        ("registry.example.com/Team/App:v1", "\"Team\" has uppercase"),
        ("App", "\"App\" has uppercase"),
        ("app:", "the tag \"\""),
        ("app:-v1", "the tag \"-v1\""),
        ("app:v1:v2", "\"app:v1\" must be"),
        ("app:v/1", "not a valid host"),
        ("a//b", "empty component"),
        ("a/b/", "empty component"),
        ("/app", "empty component"),
        ("-app", "\"-app\" must be"),
        ("app-", "\"app-\" must be"),
        ("a..b", "\"a..b\" must be"),
        ("a___b", "\"a___b\" must be"),
        ("app@sha256:abc", "digest"),
        ("app@md5:0123", "digest"),
        (":v1", "repository name is empty"),
        (
            "registry.example.com/",
            "path after the registry host is empty",
        ),
        ("registry.example.com:port/app", "not a valid host"),
        ("-bad.example.com/app", "not a valid host"),
        ("[::1/app", "not a valid host"),
        ("[zz]:5000/app", "not a valid host"),
        ("app name", "\"app name\" must be"),
    ];

    #[test]
    fn image_references() {
        let good = GOOD.iter().copied().chain(["[::1]:5000/app:dev"]);
        for reference in good {
            assert_eq!(check_image_reference(reference), Ok(()), "{reference}");
        }
        assert_eq!(check_image_reference(&format!("app@{SHA}")), Ok(()));
        assert_eq!(
            check_image_reference(&format!("ghcr.io/a/b:v1@{SHA}")),
            Ok(())
        );
        assert_eq!(
            check_image_reference(&format!("app:{}", "t".repeat(128))),
            Ok(())
        );

        for &(reference, why) in BAD {
            let err = check_image_reference(reference).expect_err(reference);
            assert!(err.contains(why), "{reference}: {err}");
        }
        let long_tag = format!("app:{}", "t".repeat(129));
        assert!(check_image_reference(&long_tag).is_err());
        let long_name = format!("{}/app", "a".repeat(255));
        let err = check_image_reference(&long_name).expect_err("long name");
        assert!(err.contains("more than 255"), "{err}");
        let upper_digest = format!("app@{}", SHA.to_uppercase().replace("SHA256", "sha256"));
        assert!(check_image_reference(&upper_digest).is_err());
    }

    #[test]
    fn the_schema_refuses_what_the_builder_refuses() {
        // The CRD's CEL rules (characters, then the grammar of `image_reference_pattern`) must
        // refuse at apply time what the builder would refuse later. Two known differences: the
        // schema refuses bracketed IPv6 registries (no `[` in its characters), and only the
        // builder bounds the name at 255 characters.
        let characters = regex::Regex::new("^[A-Za-z0-9][A-Za-z0-9._/:@-]*$").expect("characters");
        let grammar = regex::Regex::new(&multigres_api::crd::image_reference_pattern())
            .expect("the pattern compiles");
        let schema_accepts = |r: &str| characters.is_match(r) && grammar.is_match(r);
        for reference in GOOD {
            assert!(schema_accepts(reference), "schema refuses {reference}");
        }
        for &(reference, _) in BAD {
            assert!(!schema_accepts(reference), "schema accepts {reference}");
        }
        assert!(!schema_accepts("[::1]:5000/app:dev"));
        assert!(!schema_accepts(&format!("app:{}", "t".repeat(129))));
        assert!(schema_accepts(&format!("{}/app", "a".repeat(255))));
    }

    #[test]
    fn invalid_image_names_the_field() {
        let err = image("spec.postgresImage", "Registry.io/Team/App:v1").expect_err("invalid");
        assert_eq!(err.reason(), "InvalidImage");
        assert_eq!(
            err.to_string(),
            "spec.postgresImage \"Registry.io/Team/App:v1\" is not a valid image reference: the \
             repository path component \"Team\" has uppercase letters, which only the registry \
             host may have"
        );
    }

    #[test]
    fn storage_sizes() {
        let good = [
            "10Gi", "1.5Gi", "500Mi", "1Mi", "2Ti", "1Pi", "1G", "1T", "1P", "1e9", "2e+6", "+5Gi",
            "1.0Gi",
        ];
        for size in good {
            assert_eq!(storage_size(size), Ok(Quantity(size.to_string())), "{size}");
        }
        let bad = [
            "",
            "0",
            "0Gi",
            "0.0",
            "-1Gi",
            "-0.5",
            "Gi",
            "ten",
            "10 Gi",
            "10GB",
            "10gi",
            "1.2.3",
            "1e",
            "1e1000000",
            "--1",
            "1Kii",
            ".",
            " 1Gi",
            "1Gi ",
            "0e5",
            "1",
            "1Ki",
            "1M",
            "0.5",
            "100m",
            "1Ei",
            "1E",
            "1000000Ei",
        ];
        for size in bad {
            assert_eq!(
                storage_size(size),
                Err(InvalidSpec::InvalidStorageSize {
                    size: size.to_string()
                }),
                "{size}"
            );
        }
    }

    #[test]
    fn component_names() {
        for name in ["a", "demo", "demo-etcd-1", "a1"] {
            assert_eq!(component_name("Etcd", name), Ok(()), "{name}");
        }
        for name in [
            "",
            "1demo",
            "demo.etcd",
            "demo-",
            "-demo",
            "Demo",
            "demo_etcd",
        ] {
            assert_eq!(
                component_name("Etcd", name),
                Err(InvalidSpec::InvalidName {
                    kind: "Etcd".to_string(),
                    name: name.to_string()
                }),
                "{name}"
            );
        }
    }
}
