//! Cell → MultiGateway, MultiOrch and MultiPooler of that cell.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use multigres_api::crd::{
    Cell, CellStatus, MultiGateway, MultiGatewaySpec, MultiOrch, MultiOrchSpec, MultiPooler,
    MultiPoolerSpec, ShardStatus,
};
use multigres_api::meta::{
    CLUSTER_HANDLER_MANAGER, ComponentLabel, LABEL_CELL, LABEL_CLUSTER, MAX_DNS_LABEL,
    MAX_STATEFULSET_NAME, cell_component_name, child_meta, object_ref, standard_labels,
};
use multigres_runtime::apply::Desired;
use multigres_runtime::failure::CommonFailure;
use multigres_runtime::fanout::written;
use multigres_runtime::reconcile::{Bookkeeping, Failure, Outcome, Reconciler};
use multigres_telemetry::spans;

use crate::aggregate::{ChildReport, Problem, core_status, sum};
use crate::context::Context;
use crate::error::Error;
use multigres_api::invalid::{InvalidSpec, name_length};

/// The components a cell should have.
#[derive(Clone, Debug, PartialEq)]
pub struct CellChildren {
    pub gateway: MultiGateway,
    pub orch: MultiOrch,
    pub pooler: MultiPooler,
}

fn labels(cell: &Cell, component: ComponentLabel) -> BTreeMap<String, String> {
    let mut labels = standard_labels(component, &cell.name_any(), CLUSTER_HANDLER_MANAGER);
    labels.insert(LABEL_CELL.to_string(), cell.spec.name.clone());
    if let Some(cluster) = cell.labels().get(LABEL_CLUSTER) {
        labels.insert(LABEL_CLUSTER.to_string(), cluster.clone());
    }
    labels
}

/// Builds the three components of `cell` (pure).
pub fn build(cell: &Cell) -> Result<CellChildren, InvalidSpec> {
    let name = cell.name_any();
    let named = |component: ComponentLabel, max: usize, what: &str| {
        let child = cell_component_name(&name, component);
        name_length(what, &child, max, "Cell").map(|()| child)
    };
    let gateway_name = named(ComponentLabel::Gateway, MAX_DNS_LABEL, "gateway Service")?;
    let orch_name = named(ComponentLabel::Orch, MAX_DNS_LABEL, "orch Service")?;
    let pooler_name = named(
        ComponentLabel::Pooler,
        MAX_STATEFULSET_NAME,
        "pooler StatefulSet",
    )?;
    let meta = |child: String, component| {
        child_meta(cell, child, labels(cell, component)).ok_or(InvalidSpec::NotStored)
    };
    Ok(CellChildren {
        gateway: MultiGateway {
            metadata: meta(gateway_name, ComponentLabel::Gateway)?,
            spec: MultiGatewaySpec {
                component: cell.spec.gateway.clone().unwrap_or_default(),
                cell: cell.spec.name.clone(),
                topo: cell.spec.topo.clone(),
                observability: cell.spec.observability.clone(),
            },
            status: None,
        },
        orch: MultiOrch {
            metadata: meta(orch_name, ComponentLabel::Orch)?,
            spec: MultiOrchSpec {
                component: cell.spec.orch.clone().unwrap_or_default(),
                cell: cell.spec.name.clone(),
                topo: cell.spec.topo.clone(),
                observability: cell.spec.observability.clone(),
            },
            status: None,
        },
        pooler: MultiPooler {
            metadata: meta(pooler_name, ComponentLabel::Pooler)?,
            spec: MultiPoolerSpec {
                pooler: cell.spec.pooler.clone().unwrap_or_default(),
                cell: cell.spec.name.clone(),
                topo: cell.spec.topo.clone(),
                password_secret_ref: cell.spec.password_secret_ref.clone(),
                observability: cell.spec.observability.clone(),
                backup: cell.spec.backup.clone(),
                allowed_networks: cell.spec.allowed_networks.clone(),
                volume_retention: cell.spec.volume_retention,
                adopt_volumes: cell.spec.adopt_volumes,
            },
            status: None,
        },
    })
}

impl Reconciler<Cell> for Context {
    type Error = Error;

    fn bookkeeping(&self) -> &Bookkeeping {
        &self.run
    }

    async fn reconcile(&self, obj: &Cell) -> Result<Outcome<CellStatus, Error>, Error> {
        observe(self, obj).await
    }
}

/// Reconciles one Cell: its three components in parallel, then its status.
async fn observe(ctx: &Context, obj: &Cell) -> Result<Outcome<CellStatus, Error>, Error> {
    let object = object_ref(obj);
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let built = build(obj);
    spans::event(
        "children built",
        vec![opentelemetry::KeyValue::new(
            "multigres.build.ok",
            built.is_ok(),
        )],
    );
    let mut just_written = BTreeSet::new();
    let (problem, result) = match built {
        Err(source) => (
            Some(Problem::blocking(source.reason(), source.to_string())),
            Err(CommonFailure::InvalidSpec {
                object: object.clone(),
                source,
            }
            .into()),
        ),
        Ok(CellChildren {
            gateway,
            orch,
            pooler,
        }) => {
            let mut fan = ctx.run.fan_out();
            let live = ctx.gateways.get(&ObjectRef::from(&gateway));
            fan.apply(
                Api::<MultiGateway>::namespaced(ctx.run.client.clone(), &ns),
                Desired::traced(gateway),
                live,
            );
            let live = ctx.orchs.get(&ObjectRef::from(&orch));
            fan.apply(
                Api::<MultiOrch>::namespaced(ctx.run.client.clone(), &ns),
                Desired::traced(orch),
                live,
            );
            let live = ctx.poolers.get(&ObjectRef::from(&pooler));
            fan.apply(
                Api::<MultiPooler>::namespaced(ctx.run.client.clone(), &ns),
                Desired::traced(pooler),
                live,
            );
            let writes = fan.join().await;
            ctx.run.events.children_written(obj, &writes).await;
            just_written = written(&writes);
            match CommonFailure::from_writes(&object, &writes) {
                None => (None, Ok(())),
                Some(failed) => (
                    Some(Problem::transient(failed.reason(), failed.detail())),
                    Err(failed.into()),
                ),
            }
        }
    };

    let child = |component| cell_component_name(&name, component);
    let gateway = ctx
        .gateways
        .get(&ObjectRef::new(&child(ComponentLabel::Gateway)).within(&ns));
    let orch = ctx
        .orchs
        .get(&ObjectRef::new(&child(ComponentLabel::Orch)).within(&ns));
    let pooler = ctx
        .poolers
        .get(&ObjectRef::new(&child(ComponentLabel::Pooler)).within(&ns));
    let reports = [
        ChildReport::new(
            format!("MultiGateway {}", child(ComponentLabel::Gateway)),
            gateway
                .as_deref()
                .map(|c| (&c.metadata.generation, c.status.as_ref())),
        )
        .unless_written(&just_written),
        ChildReport::new(
            format!("MultiOrch {}", child(ComponentLabel::Orch)),
            orch.as_deref()
                .map(|c| (&c.metadata.generation, c.status.as_ref())),
        )
        .unless_written(&just_written),
        ChildReport::new(
            format!("MultiPooler {}", child(ComponentLabel::Pooler)),
            pooler
                .as_deref()
                .map(|c| (&c.metadata.generation, c.status.as_ref())),
        )
        .unless_written(&just_written),
    ];
    let [gateway, orch, pooler] = [&reports[0], &reports[1], &reports[2]].map(ChildReport::count);
    let previous = obj.status.as_ref();
    let (core, phase) = core_status(
        previous.map(|s| (&s.core, s.phase)),
        obj.meta().generation,
        &reports,
        sum(&[gateway, orch, pooler]),
        problem.as_ref(),
        &Time(Timestamp::now()),
    );
    let shard = match crate::topology::cell_shard(ctx, obj).await {
        Ok(shard) => shard.map(|s| ShardStatus {
            primary: s.primary,
            standbys: s.standbys,
            streaming: s.streaming,
        }),
        // The reconcile goes on: the status keeps what it last knew.
        Err(e) => {
            tracing::warn!(object = %object, error = %e, "shard not read from the topology; keeping the last known");
            previous.and_then(|s| s.shard.clone())
        }
    };
    let status = CellStatus {
        core,
        phase: Some(phase),
        gateway,
        orch,
        pooler,
        shard,
    };
    Ok(Outcome::new(status, result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use multigres_api::crd::{CellSpec, ComponentSpec, SecretKeyRef, TopoSpec};

    fn cell(name: &str) -> Cell {
        let mut c = Cell::new(
            name,
            CellSpec {
                name: "zone-a".into(),
                topo: TopoSpec {
                    global_server_addresses: "demo-etcd-client.prod.svc:2379".into(),
                    global_root: None,
                },
                gateway: Some(ComponentSpec {
                    replicas: Some(3),
                    ..Default::default()
                }),
                orch: None,
                pooler: None,
                password_secret_ref: Some(SecretKeyRef {
                    name: "demo-postgres-password".into(),
                    key: None,
                }),
                observability: None,
                backup: None,
                allowed_networks: Vec::new(),
                volume_retention: None,
                adopt_volumes: None,
            },
        );
        c.metadata.namespace = Some("prod".into());
        c.metadata.uid = Some("cell-uid".into());
        c.metadata.labels = Some(BTreeMap::from([(
            LABEL_CLUSTER.to_string(),
            "demo".to_string(),
        )]));
        c
    }

    #[test]
    fn a_cell_becomes_its_three_components() {
        let CellChildren {
            gateway,
            orch,
            pooler,
        } = build(&cell("demo-zone-a-12345")).expect("builds");
        assert_eq!(gateway.name_any(), "demo-zone-a-12345-gateway");
        assert_eq!(gateway.spec.component.replicas, Some(3));
        assert_eq!(orch.spec.cell, "zone-a");
        assert_eq!(
            pooler.spec.topo.global_server_addresses,
            "demo-etcd-client.prod.svc:2379"
        );
        assert_eq!(
            pooler.labels().get(LABEL_CLUSTER).map(String::as_str),
            Some("demo")
        );
        assert_eq!(
            pooler.labels().get(LABEL_CELL).map(String::as_str),
            Some("zone-a")
        );
        assert_eq!(
            orch.metadata
                .owner_references
                .as_ref()
                .map(|o| o[0].uid.as_str()),
            Some("cell-uid")
        );
    }

    #[test]
    fn the_cluster_observability_reaches_every_component() {
        use multigres_api::crd::{MultigresCluster, ObservabilitySpec, TracingMode};
        let cluster_with = |spec: serde_json::Value| {
            let mut c =
                MultigresCluster::new("demo", serde_json::from_value(spec).expect("cluster spec"));
            c.metadata.namespace = Some("prod".into());
            c.metadata.uid = Some("uid-1".into());
            c
        };
        let disabled = Some(ObservabilitySpec {
            tracing: Some(TracingMode::Disabled),
        });
        let off = cluster_with(serde_json::json!({
            "observability": {"tracing": "Disabled"},
            "cells": [{"name": "a"}, {"name": "b"}]
        }));
        let unset = cluster_with(serde_json::json!({"cells": [{"name": "a"}]}));
        for (cluster, expected) in [(off, disabled), (unset, None)] {
            let cells = crate::cluster::build(&cluster).expect("cells").cells;
            for mut cell in cells {
                assert_eq!(cell.spec.observability, expected, "{}", cell.name_any());
                cell.metadata.uid = Some("cell-uid".into());
                let CellChildren {
                    gateway,
                    orch,
                    pooler,
                } = build(&cell).expect("components");
                assert_eq!(gateway.spec.observability, expected);
                assert_eq!(orch.spec.observability, expected);
                assert_eq!(pooler.spec.observability, expected);
            }
        }
    }

    #[test]
    fn the_cluster_allowed_networks_reach_the_pooler() {
        use multigres_api::crd::MultigresCluster;
        let mut cluster = MultigresCluster::new(
            "demo",
            serde_json::from_value(serde_json::json!({
                "postgres": {"allowedNetworks": ["10.0.0.0/8", "fd00::/8"]},
                "cells": [{"name": "a"}, {"name": "b"}]
            }))
            .expect("cluster spec"),
        );
        cluster.metadata.namespace = Some("prod".into());
        cluster.metadata.uid = Some("uid-1".into());
        let networks = vec!["10.0.0.0/8".to_string(), "fd00::/8".to_string()];
        for mut cell in crate::cluster::build(&cluster).expect("cells").cells {
            assert_eq!(cell.spec.allowed_networks, networks, "{}", cell.name_any());
            cell.metadata.uid = Some("cell-uid".into());
            let pooler = build(&cell).expect("components").pooler;
            assert_eq!(pooler.spec.allowed_networks, networks);
        }
        // Unset stays empty all the way: the pooler's builder applies the default.
        let pooler = build(&cell("demo-zone-a-12345")).expect("builds").pooler;
        assert!(pooler.spec.allowed_networks.is_empty());
    }

    #[test]
    fn a_user_made_cell_with_a_long_name_gets_a_clear_error() {
        let err = build(&cell(&"c".repeat(50))).expect_err("too long");
        assert_eq!(err.reason(), "NameTooLong");
        assert!(err.to_string().contains("pooler StatefulSet"), "{err}");
    }
}
