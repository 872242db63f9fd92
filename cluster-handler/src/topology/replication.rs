//! Which standbys stream from the primary. The topology says only which poolers registered as
//! replicas; each replica's multipooler knows whether its WAL receiver streams, and from where:
//! `multipoolermanager.MultiPoolerManager/Status` on its gRPC port
//! (proto/multipoolermanagerservice.proto and proto/multipoolermanagerdata.proto of Multigres
//! v0.1.0). A standby streams when its WAL receiver's status is `streaming` and its
//! primary_conninfo names the primary's registered host, as multiorch itself judges
//! (go/services/multiorch/recovery/analysis/generator.go).

use std::time::Duration;

use futures::future::join_all;
use prost::Message;
use tonic::codegen::http::uri::PathAndQuery;
use tracing::Instrument;

use super::etcd::Dns;

/// A standby that does not answer within this is not counted.
const TIMEOUT: Duration = Duration::from_secs(2);
const STATUS_PATH: &str = "/multipoolermanager.MultiPoolerManager/Status";
const STREAMING: &str = "streaming";

/// `multipoolermanagerdata.StatusRequest`: empty.
#[derive(Clone, PartialEq, Message)]
pub struct StatusRequest {}

/// `multipoolermanagerdata.StatusResponse`: the fields read here (prost skips the others).
#[derive(Clone, PartialEq, Message)]
pub struct StatusResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
}

/// `multipoolermanagerdata.Status`; `replication_status` is set while postgres is in recovery.
#[derive(Clone, PartialEq, Message)]
pub struct Status {
    #[prost(message, optional, tag = "3")]
    pub replication_status: Option<StandbyReplicationStatus>,
}

/// `multipoolermanagerdata.StandbyReplicationStatus`.
#[derive(Clone, PartialEq, Message)]
pub struct StandbyReplicationStatus {
    #[prost(message, optional, tag = "7")]
    pub primary_conn_info: Option<PrimaryConnInfo>,
    /// `pg_stat_wal_receiver.status`: `streaming`, `starting`, ..., empty without a receiver.
    #[prost(string, tag = "8")]
    pub wal_receiver_status: String,
}

/// `multipoolermanagerdata.PrimaryConnInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct PrimaryConnInfo {
    #[prost(string, tag = "1")]
    pub host: String,
}

/// Whether a replica's Status says it streams from `primary_host`.
pub fn streams_from(response: &StatusResponse, primary_host: &str) -> bool {
    response
        .status
        .as_ref()
        .and_then(|s| s.replication_status.as_ref())
        .is_some_and(|r| {
            r.wal_receiver_status == STREAMING
                && r.primary_conn_info
                    .as_ref()
                    .is_some_and(|c| c.host == primary_host)
        })
}

/// How many of `replicas` (`(hostname, gRPC port)`) stream from `primary_host`, asked at once
/// in a `read replication` span; a replica that cannot be asked counts as not streaming.
pub async fn count_streaming(dns: &Dns, replicas: &[(String, u16)], primary_host: &str) -> i32 {
    let span = tracing::info_span!(
        target: "multigres::topology",
        "read replication",
        otel.name = "read replication",
        multigres.shard.standbys = replicas.len(),
        multigres.shard.streaming = tracing::field::Empty,
    );
    let asked = join_all(replicas.iter().map(|(host, port)| async move {
        match status(dns, host, *port).await {
            Ok(response) => streams_from(&response, primary_host),
            Err(error) => {
                tracing::debug!(pooler = %host, %error, "cannot ask the pooler whether it streams");
                false
            }
        }
    }))
    .instrument(span.clone())
    .await;
    let streaming = asked.into_iter().filter(|s| *s).count();
    span.record("multigres.shard.streaming", streaming);
    i32::try_from(streaming).unwrap_or(i32::MAX)
}

/// One Status call to the multipooler at `host:port`.
async fn status(dns: &Dns, host: &str, port: u16) -> Result<StatusResponse, String> {
    let ip = dns.lookup(host).await?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{ip}:{port}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| e.to_string())?;
    let response = grpc
        .unary(
            tonic::Request::new(StatusRequest {}),
            PathAndQuery::from_static(STATUS_PATH),
            tonic_prost::ProstCodec::<StatusRequest, StatusResponse>::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standby(receiver: &str, host: &str) -> StatusResponse {
        StatusResponse {
            status: Some(Status {
                replication_status: Some(StandbyReplicationStatus {
                    primary_conn_info: Some(PrimaryConnInfo { host: host.into() }),
                    wal_receiver_status: receiver.into(),
                }),
            }),
        }
    }

    #[test]
    fn a_standby_streams_when_its_receiver_streams_from_the_primary() {
        let primary = "p-0.p.ns.svc.cluster.local";
        assert!(streams_from(&standby("streaming", primary), primary));
        assert!(
            !streams_from(&standby("streaming", "p-2.p.ns.svc.cluster.local"), primary),
            "streaming from another host (an old primary) does not count"
        );
        for receiver in ["", "starting", "waiting", "stopping"] {
            assert!(
                !streams_from(&standby(receiver, primary), primary),
                "receiver {receiver:?}"
            );
        }
        assert!(
            !streams_from(&StatusResponse::default(), primary),
            "no replication status: postgres is not in recovery"
        );
    }

    #[test]
    fn the_fields_read_have_the_tags_of_multipoolermanagerdata_proto() {
        // StatusResponse.status = 1, Status.replication_status = 3,
        // StandbyReplicationStatus.primary_conn_info = 7, wal_receiver_status = 8,
        // PrimaryConnInfo.host = 1: "streaming" from host "h".
        let wire = b"\x0a\x12\x1a\x10\x3a\x03\x0a\x01h\x42\x09streaming";
        let decoded = StatusResponse::decode(&wire[..]).expect("decodes");
        assert_eq!(decoded, standby("streaming", "h"));
        assert_eq!(decoded.encode_to_vec(), wire.to_vec());
    }
}
