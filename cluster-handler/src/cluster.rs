//! MultigresCluster → one Etcd (global topology) and one Cell per entry of `spec.cells`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::DeleteParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use multigres_api::crd::{
    Cell, CellSpec, CellTemplate, ClusterStatus, ComponentSpec, Etcd, EtcdSpec, MultigresCluster,
    Phase, PoolerTemplate, ReadyCount, SecretKeyRef, ShardStatus, TopoSpec,
};
use multigres_api::defaults::DEFAULT_CELL_NAME;
use multigres_api::meta::{
    CLUSTER_HANDLER_MANAGER, ComponentLabel, LABEL_CELL, LABEL_CLUSTER, MAX_DNS_LABEL,
    MAX_DNS_SUBDOMAIN, MAX_STATEFULSET_NAME, cell_component_name, cell_object_name, child_meta,
    cluster_etcd_name, etcd_client_address, etcd_client_service, etcd_peer_service,
    generated_password_secret, is_controlled_by, object_ref, standard_labels,
};
use multigres_runtime::apply::Desired;
use multigres_runtime::failure::CommonFailure;
use multigres_runtime::fanout::written;
use multigres_runtime::reconcile::{Bookkeeping, Failure, Outcome, Reconciler};
use multigres_telemetry::spans;

use crate::aggregate::{ChildReport, Problem, core_status, sum};
use crate::backup::ClaimState;
use crate::context::Context;
use crate::error::Error;
use crate::topology::State as TopologyState;
use multigres_api::invalid::{InvalidSpec, name_length};

/// How soon a cluster whose shard has no primary is looked at again.
const NO_PRIMARY_RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

/// The children a cluster should have.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterChildren {
    pub etcd: Etcd,
    pub cells: Vec<Cell>,
}

/// Labels of a child of cluster `cluster`.
fn child_labels(
    component: ComponentLabel,
    cluster: &str,
    cell: Option<&str>,
) -> BTreeMap<String, String> {
    let mut labels = standard_labels(component, cluster, CLUSTER_HANDLER_MANAGER);
    labels.insert(LABEL_CLUSTER.to_string(), cluster.to_string());
    if let Some(cell) = cell {
        labels.insert(LABEL_CELL.to_string(), cell.to_string());
    }
    labels
}

/// `own` refined over `base`, or `None` when nothing is set at all.
fn merged<T: Clone + Default + PartialEq>(
    own: Option<&T>,
    base: Option<&T>,
    overlay: impl Fn(&T, &T) -> T,
) -> Option<T> {
    let base = base.cloned().unwrap_or_default();
    let merged = own.map_or_else(|| base.clone(), |own| overlay(own, &base));
    (merged != T::default()).then_some(merged)
}

/// Where the cluster's postgres admin password is: the Secret the user names, or the one the
/// cluster-handler generates (`<cluster>-postgres-password`, key `password`).
pub fn password_secret_ref(cluster: &MultigresCluster) -> SecretKeyRef {
    let user = cluster
        .spec
        .postgres
        .as_ref()
        .and_then(|p| p.password_secret_ref.clone());
    user.unwrap_or_else(|| SecretKeyRef {
        name: generated_password_secret(&cluster.name_any()),
        key: None,
    })
}

/// Runs `ensure` (which finds or creates `kind` `name` for `cluster` and says whether it
/// created it) once per cluster and object in this process, in its own span (`ensure <kind>`)
/// that names the object and the decision, never its content. An object deleted later is not
/// recreated by this process: a new password would not match the one postgres was initialised
/// with, and a new backup claim would be empty.
async fn ensure_once<E: std::fmt::Display>(
    ctx: &Context,
    cluster: &MultigresCluster,
    kind: &'static str,
    name: &str,
    ensure: impl Future<Output = Result<bool, E>>,
) -> Result<(), E> {
    let key = (cluster.uid().unwrap_or_default(), format!("{kind}/{name}"));
    let done = |ensured: &std::sync::Mutex<std::collections::HashSet<(String, String)>>| {
        ensured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
    };
    if done(&ctx.ensured) {
        return Ok(());
    }
    let span = tracing::info_span!(
        target: "multigres::apply",
        "ensure object",
        otel.name = %format!("ensure {kind}"),
        k8s.object.name = %name,
        multigres.apply.decision = tracing::field::Empty,
    );
    let created = spans::run_in(span.clone(), ensure).await?;
    span.record(
        "multigres.apply.decision",
        if created { "create" } else { "unchanged" },
    );
    ctx.ensured
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key);
    Ok(())
}

/// The password Secret and the backup claim of `cluster`, each checked once.
async fn ensure_prerequisites(ctx: &Context, cluster: &MultigresCluster) -> Result<(), Error> {
    let object = object_ref(cluster);
    let secret = password_secret_ref(cluster).name;
    let password = async {
        crate::password::ensure(&ctx.run.client, cluster)
            .await
            .map(|(_, created)| created)
    };
    ensure_once(ctx, cluster, "Secret", &secret, password)
        .await
        .map_err(|source| Error::Credentials {
            object: object.clone(),
            source,
        })?;
    if let Some(claim) = crate::backup::for_poolers(cluster).claim_name {
        let backup = async {
            crate::backup::ensure(&ctx.run.client, cluster)
                .await
                .map(|c| c.is_some_and(|(_, created)| created))
        };
        ensure_once(ctx, cluster, "PersistentVolumeClaim", &claim, backup)
            .await
            .map_err(|source| Error::Backup { object, source })?;
    }
    Ok(())
}

/// The spec of the cluster's Etcd: `spec.etcd`, with the cluster's volume settings where it
/// sets none of its own (a setting left unset stays unset, so the Etcd takes the default).
fn etcd_spec(cluster: &MultigresCluster) -> EtcdSpec {
    let mut spec = cluster.spec.etcd.clone().unwrap_or_default();
    spec.volume_retention = spec.volume_retention.or(cluster.spec.volume_retention);
    spec.adopt_volumes = spec.adopt_volumes.or(cluster.spec.adopt_volumes);
    spec
}

/// Builds the children of `cluster` (pure). Checks every generated name fits its limit, so a
/// too-long name is reported on the cluster instead of failing deep in a workload.
pub fn build(cluster: &MultigresCluster) -> Result<ClusterChildren, InvalidSpec> {
    let name = cluster.name_any();
    let ns = cluster.namespace().ok_or(InvalidSpec::NotStored)?;
    let etcd_name = cluster_etcd_name(&name);
    name_length(
        "etcd StatefulSet",
        &etcd_name,
        MAX_STATEFULSET_NAME,
        "MultigresCluster",
    )?;
    name_length(
        "etcd peer Service",
        &etcd_peer_service(&etcd_name),
        MAX_DNS_LABEL,
        "MultigresCluster",
    )?;
    name_length(
        "etcd client Service",
        &etcd_client_service(&etcd_name),
        MAX_DNS_LABEL,
        "MultigresCluster",
    )?;
    let etcd = Etcd {
        metadata: child_meta(
            cluster,
            etcd_name.clone(),
            child_labels(ComponentLabel::Etcd, &name, None),
        )
        .ok_or(InvalidSpec::NotStored)?,
        spec: etcd_spec(cluster),
        status: None,
    };
    let topo = TopoSpec {
        global_server_addresses: etcd_client_address(&etcd_name, &ns),
        global_root: None,
    };
    let password_ref = password_secret_ref(cluster);
    let backup = crate::backup::for_poolers(cluster);
    name_length(
        "password Secret",
        &password_ref.name,
        MAX_DNS_SUBDOMAIN,
        "MultigresCluster",
    )?;
    let default_cell = [CellTemplate {
        name: DEFAULT_CELL_NAME.to_string(),
        ..Default::default()
    }];
    let templates = if cluster.spec.cells.is_empty() {
        &default_cell[..]
    } else {
        &cluster.spec.cells[..]
    };
    let mut seen = BTreeSet::new();
    let mut cells = Vec::with_capacity(templates.len());
    for template in templates {
        if !seen.insert(template.name.as_str()) {
            return Err(InvalidSpec::DuplicateCell(template.name.clone()));
        }
        let cell_name = cell_object_name(&name, &template.name);
        let owner = "MultigresCluster or the cell";
        name_length("Cell", &cell_name, MAX_DNS_LABEL, owner)?;
        let pooler = cell_component_name(&cell_name, ComponentLabel::Pooler);
        name_length("pooler StatefulSet", &pooler, MAX_STATEFULSET_NAME, owner)?;
        for component in [ComponentLabel::Gateway, ComponentLabel::Orch] {
            let child = cell_component_name(&cell_name, component);
            name_length(
                &format!("{} Service", component.as_str()),
                &child,
                MAX_DNS_LABEL,
                owner,
            )?;
        }
        cells.push(Cell {
            metadata: child_meta(
                cluster,
                cell_name,
                child_labels(ComponentLabel::Cell, &name, Some(&template.name)),
            )
            .ok_or(InvalidSpec::NotStored)?,
            spec: CellSpec {
                name: template.name.clone(),
                topo: topo.clone(),
                gateway: merged(
                    template.gateway.as_ref(),
                    cluster.spec.gateway.as_ref(),
                    ComponentSpec::overlay,
                ),
                orch: merged(
                    template.orch.as_ref(),
                    cluster.spec.orch.as_ref(),
                    ComponentSpec::overlay,
                ),
                pooler: merged(
                    template.pooler.as_ref(),
                    cluster.spec.pooler.as_ref(),
                    PoolerTemplate::overlay,
                ),
                password_secret_ref: Some(password_ref.clone()),
                backup: Some(backup.clone()),
                observability: cluster.spec.observability.clone(),
                allowed_networks: cluster
                    .spec
                    .postgres
                    .as_ref()
                    .map(|p| p.allowed_networks.clone())
                    .unwrap_or_default(),
                volume_retention: cluster.spec.volume_retention,
                adopt_volumes: cluster.spec.adopt_volumes,
            },
            status: None,
        });
    }
    Ok(ClusterChildren { etcd, cells })
}

impl Reconciler<MultigresCluster> for Context {
    type Error = Error;

    fn bookkeeping(&self) -> &Bookkeeping {
        &self.run
    }

    async fn reconcile(
        &self,
        obj: &MultigresCluster,
    ) -> Result<Outcome<ClusterStatus, Error>, Error> {
        observe(self, obj).await
    }
}

/// Reconciles one MultigresCluster: fan out its children in parallel, delete the Cells it no
/// longer lists, and summarise the children in its status.
async fn observe(
    ctx: &Context,
    obj: &MultigresCluster,
) -> Result<Outcome<ClusterStatus, Error>, Error> {
    let object = object_ref(obj);
    let ns = obj.namespace().unwrap_or_default();
    let uid = obj.uid().unwrap_or_default();
    let built = build(obj);
    spans::event(
        "children built",
        vec![opentelemetry::KeyValue::new(
            "multigres.build.ok",
            built.is_ok(),
        )],
    );
    let mut just_written = BTreeSet::new();
    let mut shard = None;
    let (wanted, problem, result) = match built {
        Err(source) => (
            None,
            Some(Problem::blocking(source.reason(), source.to_string())),
            Err(CommonFailure::InvalidSpec {
                object: object.clone(),
                source,
            }
            .into()),
        ),
        Ok(children) => {
            if let Err(e) = ensure_prerequisites(ctx, obj).await {
                (None, e.problem(), Err(e))
            } else {
                let topology = crate::topology::ensure(ctx, obj, &children).await;
                if let Ok(TopologyState::Registered {
                    shard: registered, ..
                }) = &topology
                {
                    shard = Some(ShardStatus {
                        primary: registered.primary.clone(),
                        standbys: registered.standbys,
                        streaming: registered.streaming,
                    });
                }
                // A cell is created only once its records are in the topology; cells that
                // exist are kept up to date whatever the topology's state.
                let may_create = matches!(
                    topology,
                    Ok(TopologyState::Registered { .. } | TopologyState::NotManaged)
                );
                let mut fan = ctx.run.fan_out();
                let etcd = children.etcd.clone();
                let live = ctx.etcds.get(&ObjectRef::from(&etcd));
                fan.apply(
                    Api::<Etcd>::namespaced(ctx.run.client.clone(), &ns),
                    Desired::traced(etcd),
                    live,
                );
                for cell in &children.cells {
                    let live = ctx.cells.get(&ObjectRef::from(cell));
                    if live.is_none() && !may_create {
                        continue;
                    }
                    fan.apply(
                        Api::<Cell>::namespaced(ctx.run.client.clone(), &ns),
                        Desired::traced(cell.clone()),
                        live,
                    );
                }
                let writes = fan.join().await;
                ctx.run.events.children_written(obj, &writes).await;
                let failed = CommonFailure::from_writes(&object, &writes);
                just_written = written(&writes);
                let keep: BTreeSet<String> = children.cells.iter().map(|c| c.name_any()).collect();
                let cleanup_span = tracing::info_span!(target: "multigres::cleanup", "cleanup", otel.name = "cleanup");
                let cleanup = spans::run_in(
                    cleanup_span,
                    delete_stale_cells(ctx, &ns, &uid, &keep, &object),
                )
                .await;
                let (problem, result) = if let Some(failed) = failed {
                    (
                        Some(Problem::transient(failed.reason(), failed.detail())),
                        Err(failed.into()),
                    )
                } else {
                    match (topology, cleanup) {
                        // Transient: etcd may still be starting or briefly unreachable.
                        (Err(source), _) => (
                            Some(Problem::transient(source.reason(), source.to_string())),
                            Err(Error::Topology {
                                object: object.clone(),
                                source,
                            }),
                        ),
                        (_, Err(e)) => (None, Err(e)),
                        (Ok(TopologyState::WaitingForEtcd(why)), Ok(())) => {
                            (Some(Problem::transient("TopologyPending", why)), Ok(()))
                        }
                        (Ok(_), Ok(())) => (None, Ok(())),
                    }
                };
                (Some(children), problem, result)
            }
        }
    };

    // Report on the children we want, or (when the spec is broken) on the ones that exist.
    let (etcd_names, cell_names): (Vec<String>, Vec<String>) = match &wanted {
        Some(children) => (
            vec![children.etcd.name_any()],
            children.cells.iter().map(|c| c.name_any()).collect(),
        ),
        None => (
            ctx.etcds
                .state()
                .iter()
                .filter(|e| {
                    e.namespace().as_deref() == Some(&ns) && is_controlled_by(e.as_ref(), &uid)
                })
                .map(|e| e.name_any())
                .collect(),
            ctx.cells
                .state()
                .iter()
                .filter(|c| {
                    c.namespace().as_deref() == Some(&ns) && is_controlled_by(c.as_ref(), &uid)
                })
                .map(|c| c.name_any())
                .collect(),
        ),
    };
    let etcd_reports: Vec<ChildReport> = etcd_names
        .iter()
        .map(|n| {
            let live = ctx.etcds.get(&ObjectRef::new(n).within(&ns));
            ChildReport::new(
                format!("Etcd {n}"),
                live.as_deref()
                    .map(|e| (&e.metadata.generation, e.status.as_ref())),
            )
            .unless_written(&just_written)
        })
        .collect();
    let mut cell_reports = Vec::new();
    let mut per_component = [Vec::new(), Vec::new(), Vec::new()];
    for n in &cell_names {
        let live = ctx.cells.get(&ObjectRef::new(n).within(&ns));
        if let Some(status) = live.as_ref().and_then(|c| c.status.as_ref()) {
            per_component[0].push(status.gateway);
            per_component[1].push(status.orch);
            per_component[2].push(status.pooler);
        }
        cell_reports.push(
            ChildReport::new(
                format!("Cell {n}"),
                live.as_deref()
                    .map(|c| (&c.metadata.generation, c.status.as_ref().map(|s| &s.core))),
            )
            .unless_written(&just_written),
        );
    }
    let [gateway, orch, pooler] = per_component.map(|counts| sum(&counts));
    let etcd_count = sum(&etcd_reports
        .iter()
        .map(ChildReport::count)
        .collect::<Vec<_>>());
    let cells = ReadyCount {
        replicas: cell_reports.len() as i32,
        ready_replicas: cell_reports.iter().filter(|c| c.ready).count() as i32,
    };
    let reports: Vec<ChildReport> = etcd_reports.into_iter().chain(cell_reports).collect();
    let pods = sum(&[etcd_count, gateway, orch, pooler]);
    // Pooler pods held by a backup claim that cannot be provisioned: say so rather than only
    // "not ready". Read only while poolers are missing, so a healthy cluster costs nothing.
    let claim = if problem.is_none() && pooler.ready_replicas < pooler.replicas {
        crate::backup::state(&ctx.run.client, obj).await
    } else {
        ClaimState::Fine
    };
    let problem = match &claim {
        ClaimState::Stuck(message) => {
            Some(Problem::blocking("BackupVolumePending", message.clone()))
        }
        _ => problem,
    };
    let previous = obj.status.as_ref();
    let now = Time(Timestamp::now());
    let (mut core, mut phase) = core_status(
        previous.map(|s| (&s.core, s.phase)),
        obj.meta().generation,
        &reports,
        pods,
        problem.as_ref(),
        &now,
    );
    // With the topology managed, a cluster is Healthy only once its shard has a primary.
    let no_primary = shard.as_ref().is_some_and(|s| s.primary.is_none());
    if no_primary && phase == Phase::Healthy {
        let problem = Problem::transient(
            "NoPrimary",
            "every component is ready but the shard has no primary yet; multiorch elects one \
             once the poolers have bootstrapped from the first backup",
        );
        (core, _) = core_status(
            previous.map(|s| (&s.core, s.phase)),
            obj.meta().generation,
            &reports,
            pods,
            Some(&problem),
            &now,
        );
        // A primary that was there and is gone is a degradation, not progress, until a new
        // one is elected.
        let had_primary = previous.is_some_and(|s| {
            s.phase == Some(Phase::Degraded)
                || s.shard.as_ref().is_some_and(|s| s.primary.is_some())
        });
        phase = if had_primary {
            Phase::Degraded
        } else {
            Phase::Progressing
        };
    }
    let status = ClusterStatus {
        core,
        phase: Some(phase),
        etcd: etcd_count,
        cells,
        gateway,
        orch,
        pooler,
        shard,
    };
    Ok(Outcome {
        status,
        result,
        // Neither the topology nor a claim's age sends events: look again soon while the
        // shard has no primary or the backup claim is not bound.
        recheck: (no_primary || claim != ClaimState::Fine).then_some(NO_PRIMARY_RECHECK),
    })
}

/// Deletes the Cells this cluster controls that it no longer lists; garbage collection takes
/// everything under them.
async fn delete_stale_cells(
    ctx: &Context,
    ns: &str,
    uid: &str,
    keep: &BTreeSet<String>,
    object: &str,
) -> Result<(), Error> {
    let api: Api<Cell> = Api::namespaced(ctx.run.client.clone(), ns);
    for cell in ctx.cells.state() {
        let stale = cell.namespace().as_deref() == Some(ns)
            && is_controlled_by(cell.as_ref(), uid)
            && !keep.contains(&cell.name_any())
            && cell.meta().deletion_timestamp.is_none();
        if !stale {
            continue;
        }
        let name = cell.name_any();
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => tracing::info!(
                object,
                cell = name,
                "deleted a cell no longer in spec.cells"
            ),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(Error::Cleanup {
                    object: object.to_string(),
                    target: format!("Cell {name}"),
                    source,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use multigres_api::crd::MultigresClusterSpec;

    fn cluster(name: &str, spec: serde_json::Value) -> MultigresCluster {
        let spec: MultigresClusterSpec = serde_json::from_value(spec).expect("spec");
        let mut c = MultigresCluster::new(name, spec);
        c.metadata.namespace = Some("prod".into());
        c.metadata.uid = Some("uid-1".into());
        c
    }

    #[test]
    fn every_cell_gets_the_password_secret_generated_or_named() {
        let generated = build(&cluster(
            "shop",
            serde_json::json!({"cells": [{"name": "a"}, {"name": "b"}]}),
        ))
        .expect("children");
        for cell in &generated.cells {
            assert_eq!(
                cell.spec.password_secret_ref,
                Some(SecretKeyRef {
                    name: "shop-postgres-password".into(),
                    key: None
                })
            );
        }
        let named = build(&cluster(
            "shop",
            serde_json::json!({"postgres": {"passwordSecretRef": {"name": "team", "key": "pw"}}}),
        ))
        .expect("children");
        assert_eq!(
            named.cells[0].spec.password_secret_ref,
            Some(SecretKeyRef {
                name: "team".into(),
                key: Some("pw".into())
            })
        );
    }

    #[test]
    fn no_cells_means_one_default_cell_pointing_at_the_cluster_etcd() {
        let children = build(&cluster("demo", serde_json::json!({}))).expect("builds");
        assert_eq!(children.etcd.name_any(), "demo-etcd");
        assert_eq!(children.cells.len(), 1);
        let cell = &children.cells[0];
        assert_eq!(cell.spec.name, "default");
        assert_eq!(
            cell.spec.topo.global_server_addresses,
            "demo-etcd-client.prod.svc:2379"
        );
        assert_eq!(
            cell.metadata
                .owner_references
                .as_ref()
                .map(|o| o[0].uid.as_str()),
            Some("uid-1")
        );
        assert_eq!(
            cell.labels().get(LABEL_CLUSTER).map(String::as_str),
            Some("demo")
        );
        assert_eq!(cell.spec.gateway, None, "nothing set, nothing written");
    }

    #[test]
    fn cell_settings_refine_the_cluster_templates() {
        let children = build(&cluster(
            "demo",
            serde_json::json!({
                "gateway": {"replicas": 2, "image": "example.com/mg:1"},
                "pooler": {"replicas": 2, "storage": {"size": "20Gi"}},
                "cells": [{"name": "a"}, {"name": "b", "gateway": {"replicas": 5}, "pooler": {"replicas": 1}}]
            }),
        ))
        .expect("builds");
        let [a, b] = &children.cells[..] else {
            panic!("two cells")
        };
        assert_eq!(a.spec.gateway.as_ref().and_then(|g| g.replicas), Some(2));
        let gb = b.spec.gateway.as_ref().expect("gateway");
        assert_eq!(
            (gb.replicas, gb.image.as_deref()),
            (Some(5), Some("example.com/mg:1"))
        );
        let pb = b.spec.pooler.as_ref().expect("pooler");
        assert_eq!(pb.component.replicas, Some(1));
        assert_eq!(
            pb.storage.as_ref().and_then(|s| s.size.as_deref()),
            Some("20Gi")
        );
    }

    #[test]
    fn names_that_would_be_too_long_are_refused_with_the_culprit() {
        let long = "a".repeat(40);
        let err = build(&cluster(
            &long,
            serde_json::json!({"cells": [{"name": "zone-a"}]}),
        ))
        .expect_err("too long");
        let InvalidSpec::NameTooLong { object, max, .. } = &err else {
            panic!("{err:?}")
        };
        let pooler =
            cell_component_name(&cell_object_name(&long, "zone-a"), ComponentLabel::Pooler);
        assert_eq!(
            (object.as_str(), *max),
            (
                format!("pooler StatefulSet \"{pooler}\"").as_str(),
                MAX_STATEFULSET_NAME
            )
        );
        assert_eq!(err.reason(), "NameTooLong");
        assert!(err.to_string().contains("shorten the name"), "{err}");
    }

    #[test]
    fn the_volume_settings_reach_etcd_and_every_pooler() {
        use multigres_api::crd::VolumeRetention;
        let children = build(&cluster(
            "demo",
            serde_json::json!({
                "volumeRetention": "Retain",
                "adoptVolumes": true,
                "cells": [{"name": "a"}, {"name": "b"}]
            }),
        ))
        .expect("builds");
        let etcd = &children.etcd.spec;
        assert_eq!(
            (etcd.volume_retention, etcd.adopt_volumes),
            (Some(VolumeRetention::Retain), Some(true))
        );
        for mut cell in children.cells {
            assert_eq!(
                (cell.spec.volume_retention, cell.spec.adopt_volumes),
                (Some(VolumeRetention::Retain), Some(true)),
                "{}",
                cell.name_any()
            );
            cell.metadata.uid = Some("cell-uid".into());
            let pooler = crate::cell::build(&cell).expect("components").pooler.spec;
            assert_eq!(
                (pooler.volume_retention, pooler.adopt_volumes),
                (Some(VolumeRetention::Retain), Some(true))
            );
        }

        // Unset stays unset all the way (no write to existing children); spec.etcd's own
        // setting refines the cluster's.
        let children = build(&cluster(
            "demo",
            serde_json::json!({"volumeRetention": "Retain", "etcd": {"volumeRetention": "Delete"}}),
        ))
        .expect("builds");
        assert_eq!(
            children.etcd.spec.volume_retention,
            Some(VolumeRetention::Delete)
        );
        assert_eq!(children.etcd.spec.adopt_volumes, None);
        assert_eq!(children.cells[0].spec.adopt_volumes, None);
    }

    #[test]
    fn duplicate_cells_are_refused() {
        let err = build(&cluster(
            "demo",
            serde_json::json!({"cells": [{"name": "a"}, {"name": "a"}]}),
        ))
        .expect_err("dup");
        assert_eq!(err, InvalidSpec::DuplicateCell("a".into()));
    }

    #[test]
    fn children_of_two_clusters_in_one_namespace_never_share_a_name() {
        let one = build(&cluster(
            "a",
            serde_json::json!({"cells": [{"name": "b-c"}]}),
        ))
        .expect("builds");
        let two = build(&cluster(
            "a-b",
            serde_json::json!({"cells": [{"name": "c"}]}),
        ))
        .expect("builds");
        assert_ne!(one.cells[0].name_any(), two.cells[0].name_any());
        assert_ne!(one.etcd.name_any(), two.etcd.name_any());
    }
}
