//! The objects around the pods: metadata and ownership, Services, StatefulSets, Deployments,
//! volume claim templates, ConfigMaps and PodDisruptionBudgets.

use multigres_api::invalid::{InvalidSpec, name_length};
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodTemplateSpec, Service,
    ServicePort, ServiceSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use multigres_api::crd::{StorageSpec, VolumeRetention};
use multigres_api::meta::{
    ComponentLabel, LABEL_CELL, LABEL_CLUSTER, LABEL_OWNER_UID, MAX_DNS_LABEL,
    MAX_STATEFULSET_NAME, RESOURCE_HANDLER_MANAGER, controller_owner_ref, merge_user_map,
    selector_labels, standard_labels,
};

use super::validate;

/// Name of the volume claim template (and pod volume) holding a stateful component's data.
pub(super) const DATA_VOLUME: &str = "data";

/// A named TCP port of a container and of the Service in front of it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Port {
    /// IANA-style port name (at most 15 characters), used by probes and Service `targetPort`.
    pub name: &'static str,
    pub number: i32,
}

/// The component object the children are built for: where they live, who owns them and how
/// they are labelled.
pub(super) struct Owner {
    /// Kind of the component object, for error messages.
    pub kind: String,
    pub name: String,
    pub namespace: String,
    reference: OwnerReference,
    /// Labels of every child object and pod.
    labels: BTreeMap<String, String>,
    /// The immutable selector: standard selector labels only, never user labels.
    selector: BTreeMap<String, String>,
}

impl Owner {
    /// Reads and checks the identity of `object`. `cell` is the Multigres cell of cell
    /// components, added as the `multigres.com/cell` label. The `multigres.com/cluster` label
    /// of the object, set by the cluster-handler, is carried over to the children.
    pub fn new<K: Resource<DynamicType = ()>>(
        object: &K,
        component: ComponentLabel,
        cell: Option<&str>,
    ) -> Result<Self, InvalidSpec> {
        let meta = object.meta();
        let (Some(name), Some(namespace), Some(reference)) = (
            meta.name.clone(),
            meta.namespace.clone(),
            controller_owner_ref(object),
        ) else {
            return Err(InvalidSpec::NotStored);
        };
        let kind = K::kind(&()).into_owned();
        validate::component_name(&kind, &name)?;
        let mut labels = standard_labels(component, &name, RESOURCE_HANDLER_MANAGER);
        if let Some(cluster) = meta.labels.as_ref().and_then(|l| l.get(LABEL_CLUSTER)) {
            labels.insert(LABEL_CLUSTER.to_string(), cluster.clone());
        }
        if let Some(cell) = cell {
            labels.insert(LABEL_CELL.to_string(), cell.to_string());
        }
        Ok(Self {
            selector: selector_labels(component, &name),
            kind,
            name,
            namespace,
            reference,
            labels,
        })
    }

    /// The cluster the object belongs to: its `multigres.com/cluster` label.
    pub fn cluster(&self) -> Option<&str> {
        self.labels.get(LABEL_CLUSTER).map(String::as_str)
    }

    /// Checks that a StatefulSet named like the owner leaves room for its pods' revision labels.
    pub fn check_statefulset_name(&self) -> Result<(), InvalidSpec> {
        name_length("StatefulSet", &self.name, MAX_STATEFULSET_NAME, &self.kind)
    }

    /// Metadata of a child object of kind `object_kind` named `name`, which must be a DNS label.
    pub fn child_meta(&self, object_kind: &str, name: &str) -> Result<ObjectMeta, InvalidSpec> {
        name_length(object_kind, name, MAX_DNS_LABEL, &self.kind)?;
        Ok(ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels.clone()),
            owner_references: Some(vec![self.reference.clone()]),
            ..ObjectMeta::default()
        })
    }

    /// Labels of the pods: ours, plus the user's that do not collide with ours.
    pub fn pod_labels(&self, user: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        merge_user_map(&self.labels, user)
    }

    /// The label selector of the workload (immutable once created).
    pub fn label_selector(&self) -> LabelSelector {
        LabelSelector {
            match_labels: Some(self.selector.clone()),
            ..LabelSelector::default()
        }
    }

    /// The selector labels, for Services.
    pub fn selector(&self) -> BTreeMap<String, String> {
        self.selector.clone()
    }

    /// Labels of the volume claim templates: the selector labels and the owner's uid, neither
    /// of which ever changes for an object (claim templates are immutable). The uid tells the
    /// claims of this object from those an earlier object of the same name left behind.
    pub fn claim_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector.clone();
        labels.insert(LABEL_OWNER_UID.to_string(), self.reference.uid.clone());
        labels
    }
}

/// How a Service addresses its pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ServiceKind {
    /// A virtual IP balancing over the ready pods.
    ClusterIp,
    /// No virtual IP: one DNS record per pod, published before the pod is ready so that
    /// members can find each other while they start (etcd peers, poolers).
    Headless,
}

/// A Service named `name` in front of the owner's pods.
pub(super) fn service(
    owner: &Owner,
    name: &str,
    kind: ServiceKind,
    ports: &[Port],
) -> Result<Service, InvalidSpec> {
    let metadata = owner.child_meta("Service", name)?;
    let (type_, cluster_ip, publish_not_ready_addresses) = match kind {
        ServiceKind::ClusterIp => (Some("ClusterIP".to_string()), None, None),
        ServiceKind::Headless => (None, Some("None".to_string()), Some(true)),
    };
    Ok(Service {
        metadata,
        spec: Some(ServiceSpec {
            type_,
            cluster_ip,
            publish_not_ready_addresses,
            selector: Some(owner.selector()),
            ports: Some(ports.iter().map(service_port).collect()),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

fn service_port(port: &Port) -> ServicePort {
    ServicePort {
        name: Some(port.name.to_string()),
        port: port.number,
        target_port: Some(IntOrString::String(port.name.to_string())),
        // Part of the list's merge key: server-side apply needs it spelled out.
        protocol: Some("TCP".to_string()),
        ..ServicePort::default()
    }
}

/// The volume claim template `data`: one ReadWriteOnce volume per pod, sized from
/// `spec.storage.size` or `default_size`.
pub(super) fn data_claim(
    owner: &Owner,
    storage: Option<&StorageSpec>,
    default_size: &str,
) -> Result<PersistentVolumeClaim, InvalidSpec> {
    let (size, storage_class_name) = match storage {
        Some(StorageSpec {
            size,
            storage_class_name,
        }) => (size.as_deref(), storage_class_name.clone()),
        None => (None, None),
    };
    let size = validate::storage_size(size.unwrap_or(default_size))?;
    Ok(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_string()),
            labels: Some(owner.claim_labels()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), size)])),
                ..VolumeResourceRequirements::default()
            }),
            storage_class_name,
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    })
}

/// A StatefulSet named like the owner, governed by Service `service_name`, with one `data`
/// claim per pod, deleted with the StatefulSet or not as `retention` says. Pods start and stop
/// in parallel: members find each other through the headless Service, not through start order.
pub(super) fn statefulset(
    owner: &Owner,
    replicas: i32,
    service_name: &str,
    template: PodTemplateSpec,
    claim: PersistentVolumeClaim,
    retention: Option<VolumeRetention>,
) -> Result<StatefulSet, InvalidSpec> {
    owner.check_statefulset_name()?;
    Ok(StatefulSet {
        metadata: owner.child_meta("StatefulSet", &owner.name)?,
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            selector: owner.label_selector(),
            service_name: Some(service_name.to_string()),
            pod_management_policy: Some("Parallel".to_string()),
            template,
            volume_claim_templates: Some(vec![claim]),
            persistent_volume_claim_retention_policy: Some(retention_policy(retention)),
            ..StatefulSetSpec::default()
        }),
        status: None,
    })
}

/// The claims go with the StatefulSet as `retention` says (`Delete` when unset), but never
/// on scale-down: scaling back up then finds the data of the pods it removed.
fn retention_policy(
    retention: Option<VolumeRetention>,
) -> StatefulSetPersistentVolumeClaimRetentionPolicy {
    StatefulSetPersistentVolumeClaimRetentionPolicy {
        when_deleted: Some(retention.unwrap_or_default().as_str().to_string()),
        when_scaled: Some(VolumeRetention::Retain.as_str().to_string()),
    }
}

/// A Deployment named like the owner.
pub(super) fn deployment(
    owner: &Owner,
    replicas: i32,
    template: PodTemplateSpec,
) -> Result<Deployment, InvalidSpec> {
    Ok(Deployment {
        metadata: owner.child_meta("Deployment", &owner.name)?,
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: owner.label_selector(),
            template,
            ..DeploymentSpec::default()
        }),
        status: None,
    })
}

/// A ConfigMap named `name` holding `data`, owned and labelled like the owner's other objects.
pub(super) fn config_map(
    owner: &Owner,
    name: &str,
    data: BTreeMap<String, String>,
) -> Result<ConfigMap, InvalidSpec> {
    Ok(ConfigMap {
        metadata: owner.child_meta("ConfigMap", name)?,
        data: Some(data),
        ..ConfigMap::default()
    })
}

/// A PodDisruptionBudget named like the owner over its workload's pods: a voluntary disruption
/// (a node drain) evicts one pod at a time, so the other replicas keep serving meanwhile.
pub(super) fn disruption_budget(owner: &Owner) -> Result<PodDisruptionBudget, InvalidSpec> {
    Ok(PodDisruptionBudget {
        metadata: owner.child_meta("PodDisruptionBudget", &owner.name)?,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(owner.label_selector()),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}
