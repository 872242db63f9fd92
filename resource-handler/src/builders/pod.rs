//! The pod template pieces every component shares: the pod-level settings of a
//! [`ComponentSpec`], containers, ports, probes and the Multigres command-line flags.

use multigres_api::invalid::InvalidSpec;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use multigres_api::crd::{ComponentSpec, TopoSpec};
use multigres_api::defaults::{Component, GLOBAL_TOPO_ROOT};

use super::objects::{DATA_VOLUME, Owner, Port};
use super::validate;

/// Environment variable holding the pod's name (from the Downward API).
pub(super) const POD_NAME_ENV: &str = "POD_NAME";
/// Environment variable holding the pod's IP address (from the Downward API).
pub(super) const POD_IP_ENV: &str = "POD_IP";

/// The Multigres image's own user: multigateway and multiorch write nothing to disk.
pub(super) const MULTIGRES_USER: RunAs = RunAs {
    user: 65532,
    fs_group: None,
};
/// The pgctld image's `postgres` user, for both containers of a pooler pod: multipooler and
/// pgctld both write `<pooler-dir>/pgbackrest/pgbackrest.pgpass` (mode 0600) and the data
/// directory, and a volume owned by root refuses pgctld's mkdir without the `fsGroup`.
pub(super) const POSTGRES_USER: RunAs = RunAs {
    user: 999,
    fs_group: Some(999),
};
/// etcd as a non-root user that owns its data volume through the `fsGroup`.
pub(super) const ETCD_USER: RunAs = RunAs {
    user: 65532,
    fs_group: Some(65532),
};

/// The user a data-plane process runs as, with its group (and the volume's `fsGroup`).
#[derive(Clone, Copy, Debug)]
pub(super) struct RunAs {
    pub user: i64,
    /// When set, the kubelet gives the pod's volumes to this group.
    pub fs_group: Option<i64>,
}

/// A component spec resolved against the component's defaults and checked: everything needed
/// to build its pod template.
pub(super) struct PodShape {
    pub replicas: i32,
    /// The main image (`spec.image` or the component's default), validated.
    pub image: String,
    image_pull_policy: &'static str,
    resources: Option<ResourceRequirements>,
    metadata: ObjectMeta,
    /// Pod-level settings; `containers` is filled in by [`PodShape::template`].
    spec: PodSpec,
}

impl PodShape {
    /// Resolves `spec` for `component`. Fails when the image is not a valid reference.
    pub fn new(
        component: Component,
        spec: &ComponentSpec,
        owner: &Owner,
    ) -> Result<Self, InvalidSpec> {
        // No `..`: a new ComponentSpec field does not compile until it is handled here.
        let ComponentSpec {
            image: _,
            image_pull_policy: _,
            replicas: _,
            image_pull_secrets,
            resources,
            affinity,
            tolerations,
            node_selector,
            topology_spread_constraints,
            pod_labels,
            pod_annotations,
            service_account_name,
        } = spec;
        // image, image_pull_policy and replicas go through the component's defaults.
        let image = component.image(spec);
        validate::image("spec.image", &image)?;
        Ok(Self {
            replicas: component.replicas(spec),
            image,
            image_pull_policy: component.image_pull_policy(spec).as_str(),
            resources: resources.clone(),
            metadata: ObjectMeta {
                labels: Some(owner.pod_labels(pod_labels)),
                annotations: non_empty_map(pod_annotations),
                ..ObjectMeta::default()
            },
            spec: PodSpec {
                affinity: affinity.clone(),
                tolerations: non_empty(tolerations),
                node_selector: non_empty_map(node_selector),
                topology_spread_constraints: non_empty(topology_spread_constraints),
                image_pull_secrets: non_empty(image_pull_secrets),
                service_account_name: service_account_name.clone(),
                // Service links put `<SERVICE>_PORT`-style variables of every Service in the
                // namespace into the environment, where etcd and postgres read variables as
                // settings (a Service named `etcd` would set ETCD_PORT).
                enable_service_links: Some(false),
                ..PodSpec::default()
            },
        })
    }

    /// A container named `name` running `image` with the spec's pull policy.
    pub fn container(&self, name: &str, image: &str) -> Container {
        Container {
            name: name.to_string(),
            image: Some(image.to_string()),
            image_pull_policy: Some(self.image_pull_policy.to_string()),
            ..Container::default()
        }
    }

    /// `spec.resources`, for the component's main container.
    pub fn resources(&self) -> Option<ResourceRequirements> {
        self.resources.clone()
    }

    /// The pod template with `containers`, whose processes run as `run_as` under the restricted
    /// Pod Security Standard: never root, no privilege escalation, no capabilities, the
    /// runtime's seccomp profile.
    pub fn template(self, run_as: RunAs, containers: Vec<Container>) -> PodTemplateSpec {
        self.template_with_sidecars(run_as, Vec::new(), containers)
    }

    /// [`PodShape::template`] with `sidecars` as native sidecars: init containers that keep
    /// running (`restartPolicy: Always`). The kubelet starts them first, in order, starts the
    /// main containers only once each sidecar passed its startup probe, and stops the sidecars
    /// only after the main containers have exited.
    pub fn template_with_sidecars(
        self,
        run_as: RunAs,
        mut sidecars: Vec<Container>,
        mut containers: Vec<Container>,
    ) -> PodTemplateSpec {
        for sidecar in &mut sidecars {
            sidecar.restart_policy = Some("Always".to_string());
        }
        for container in sidecars.iter_mut().chain(&mut containers) {
            container.security_context = Some(restricted());
        }
        PodTemplateSpec {
            metadata: Some(self.metadata),
            spec: Some(PodSpec {
                init_containers: (!sidecars.is_empty()).then_some(sidecars),
                containers,
                security_context: Some(PodSecurityContext {
                    run_as_user: Some(run_as.user),
                    run_as_group: Some(run_as.user),
                    run_as_non_root: Some(true),
                    fs_group: run_as.fs_group,
                    seccomp_profile: Some(runtime_default_seccomp()),
                    ..PodSecurityContext::default()
                }),
                ..self.spec
            }),
        }
    }
}

/// A container's part of the restricted Pod Security Standard.
fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            ..Capabilities::default()
        }),
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_string(),
        ..SeccompProfile::default()
    }
}

fn non_empty<T: Clone>(items: &[T]) -> Option<Vec<T>> {
    (!items.is_empty()).then(|| items.to_vec())
}

fn non_empty_map(map: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then(|| map.clone())
}

/// Container ports for `ports`.
pub(super) fn container_ports(ports: &[Port]) -> Vec<ContainerPort> {
    ports
        .iter()
        .map(|port| ContainerPort {
            name: Some(port.name.to_string()),
            container_port: port.number,
            // Part of the list's merge key: server-side apply needs it spelled out.
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        })
        .collect()
}

/// `POD_NAME` from the Downward API, so flags can say `$(POD_NAME)`.
pub(super) fn pod_name_env() -> EnvVar {
    field_env(POD_NAME_ENV, "metadata.name")
}

/// `POD_IP` from the Downward API, so flags can say `$(POD_IP)`.
pub(super) fn pod_ip_env() -> EnvVar {
    field_env(POD_IP_ENV, "status.podIP")
}

/// An environment variable from the Downward API field `path`.
pub(super) fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// A plain environment variable.
pub(super) fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..EnvVar::default()
    }
}

/// The `data` volume mounted at `path`.
pub(super) fn data_mount(path: &str) -> VolumeMount {
    VolumeMount {
        name: DATA_VOLUME.to_string(),
        mount_path: path.to_string(),
        ..VolumeMount::default()
    }
}

/// Timing of one probe; unset fields keep the Kubernetes defaults (timeout 1 s, 3 failures).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Timing {
    pub period_seconds: i32,
    pub timeout_seconds: Option<i32>,
    pub failure_threshold: Option<i32>,
}

/// An HTTP GET probe of `path` on the container port named `port`.
pub(super) fn http_probe(path: &str, port: &Port, timing: Timing) -> Probe {
    let Timing {
        period_seconds,
        timeout_seconds,
        failure_threshold,
    } = timing;
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(port.name.to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        timeout_seconds,
        failure_threshold,
        ..Probe::default()
    }
}

/// Probes of a Multigres binary (multigateway, multiorch, multipooler) on its HTTP port:
/// `/live` answers while the process works, `/ready` once it can serve. A startup probe
/// holds the liveness probe off for up to 150 s while the binary connects to the topology.
pub(super) fn multigres_probes(container: &mut Container, http: &Port) {
    container.startup_probe = Some(http_probe(
        "/live",
        http,
        Timing {
            period_seconds: 5,
            failure_threshold: Some(30),
            ..Timing::default()
        },
    ));
    container.liveness_probe = Some(http_probe(
        "/live",
        http,
        Timing {
            period_seconds: 10,
            ..Timing::default()
        },
    ));
    container.readiness_probe = Some(http_probe(
        "/ready",
        http,
        Timing {
            period_seconds: 5,
            ..Timing::default()
        },
    ));
}

/// The flags every Multigres binary of a cell takes: its cell, the global topology, and one
/// `--<flag>=<port>` per `(flag, port)`.
pub(super) fn multigres_args(cell: &str, topo: &TopoSpec, ports: &[(&str, Port)]) -> Vec<String> {
    let TopoSpec {
        global_server_addresses,
        global_root,
    } = topo;
    let root = global_root.as_deref().unwrap_or(GLOBAL_TOPO_ROOT);
    let mut args = vec![
        format!("--cell={cell}"),
        format!("--topo-global-server-addresses={global_server_addresses}"),
        format!("--topo-global-root={root}"),
    ];
    args.extend(
        ports
            .iter()
            .map(|(flag, port)| format!("--{flag}={}", port.number)),
    );
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use multigres_api::crd::{Etcd, EtcdSpec};
    use multigres_api::meta::{ComponentLabel, LABEL_COMPONENT, LABEL_INSTANCE, LABEL_NAME};

    const ROOTLESS: RunAs = RunAs {
        user: 1000,
        fs_group: None,
    };

    fn stored_etcd(spec: ComponentSpec) -> Etcd {
        let mut etcd = Etcd::new(
            "topo",
            EtcdSpec {
                component: spec,
                ..EtcdSpec::default()
            },
        );
        etcd.metadata.namespace = Some("demo".to_string());
        etcd.metadata.uid = Some("uid-1".to_string());
        etcd
    }

    #[test]
    fn user_labels_do_not_override_ours_and_stay_out_of_the_selector() {
        let spec = ComponentSpec {
            pod_labels: BTreeMap::from([
                (LABEL_NAME.to_string(), "hijack".to_string()),
                (LABEL_INSTANCE.to_string(), "other".to_string()),
                ("team".to_string(), "data".to_string()),
            ]),
            ..ComponentSpec::default()
        };
        let etcd = stored_etcd(spec);
        let owner = Owner::new(&etcd, ComponentLabel::Etcd, None).expect("owner");
        let template = PodShape::new(Component::Etcd, &etcd.spec.component, &owner)
            .expect("shape")
            .template(ROOTLESS, vec![]);
        let labels = template
            .metadata
            .and_then(|m| m.labels)
            .expect("pod labels");
        assert_eq!(labels[LABEL_NAME], "multigres");
        assert_eq!(labels[LABEL_INSTANCE], "topo");
        assert_eq!(labels[LABEL_COMPONENT], "etcd");
        assert_eq!(labels["team"], "data");

        let selector = owner.label_selector().match_labels.expect("match labels");
        assert_eq!(
            selector,
            multigres_api::meta::selector_labels(ComponentLabel::Etcd, "topo")
        );
        assert!(!selector.contains_key("team"));
        assert_eq!(owner.selector(), selector);
    }

    #[test]
    fn empty_collections_stay_unset() {
        let etcd = stored_etcd(ComponentSpec::default());
        let owner = Owner::new(&etcd, ComponentLabel::Etcd, None).expect("owner");
        let template = PodShape::new(Component::Etcd, &etcd.spec.component, &owner)
            .expect("shape")
            .template(ROOTLESS, vec![]);
        let spec = template.spec.expect("pod spec");
        assert_eq!(spec.tolerations, None);
        assert_eq!(spec.node_selector, None);
        assert_eq!(spec.topology_spread_constraints, None);
        assert_eq!(spec.image_pull_secrets, None);
        assert_eq!(spec.affinity, None);
        assert_eq!(spec.service_account_name, None);
        assert_eq!(template.metadata.and_then(|m| m.annotations), None);
    }

    #[test]
    fn topology_flags_default_the_root() {
        let topo = TopoSpec {
            global_server_addresses: "a:2379,b:2379".to_string(),
            global_root: None,
        };
        let http = Port {
            name: "http",
            number: 15100,
        };
        assert_eq!(
            multigres_args("zone-a", &topo, &[("http-port", http)]),
            [
                "--cell=zone-a",
                "--topo-global-server-addresses=a:2379,b:2379",
                "--topo-global-root=/multigres/global",
                "--http-port=15100",
            ]
        );
    }
}
