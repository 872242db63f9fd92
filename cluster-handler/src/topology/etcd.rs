//! A small etcd v3 client over etcd's JSON gateway (`/v3/kv/*` on the client port, on by
//! default): range, guarded put and delete in one transaction each, prefix delete. Every call
//! is a client span (`etcd Range`, `etcd Txn`, ...) under the current span.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::Name;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument;

use super::records::Stored;

/// A connection to one cluster's etcd fails fast: a reconcile must not hang on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a topology request failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd at {address} unreachable: {source}")]
    Request {
        address: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("etcd at {address} answered {status} to {op}: {body}")]
    Status {
        address: String,
        op: &'static str,
        status: u16,
        body: String,
    },
    #[error("etcd at {address} sent an answer to {op} that is not etcd's: {detail}")]
    Decode {
        address: String,
        op: &'static str,
        detail: String,
    },
}

/// Clients of a cluster's topology: HTTP for etcd, and the resolver that also finds the
/// poolers' addresses (`cluster_dns`, an IP, resolves cluster names such as
/// `demo-etcd-client.prod.svc` when the handler runs outside the cluster).
#[derive(Clone)]
pub struct Topology {
    pub http: reqwest::Client,
    pub dns: Arc<Dns>,
}

impl Topology {
    pub fn new(cluster_dns: Option<IpAddr>) -> anyhow::Result<Self> {
        let dns = Arc::new(match cluster_dns {
            Some(ip) => Dns::cluster(ip)?,
            None => Dns::System,
        });
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        if matches!(*dns, Dns::Cluster(_)) {
            builder = builder.dns_resolver(dns.clone());
        }
        Ok(Self {
            http: builder.build()?,
            dns,
        })
    }
}

/// How cluster names are resolved: the system's resolver (in a pod, the cluster's DNS), or one
/// DNS server with the search path of a pod (`cluster.local`).
#[derive(Clone)]
pub enum Dns {
    System,
    Cluster(Box<TokioResolver>),
}

impl Dns {
    fn cluster(ip: IpAddr) -> anyhow::Result<Self> {
        let config = ResolverConfig::from_parts(
            None,
            vec![Name::from_ascii("cluster.local.")?],
            vec![NameServerConfig::udp_and_tcp(ip)],
        );
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        builder.options_mut().ndots = 5;
        Ok(Self::Cluster(Box::new(builder.build()?)))
    }

    /// The first address of `host`.
    pub async fn lookup(&self, host: &str) -> Result<IpAddr, String> {
        self.addresses(host)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .ok_or_else(|| format!("{host} has no address"))
    }

    /// Every address of `host`; the one resolution path of etcd's client and the pooler dialer.
    async fn addresses(
        &self,
        host: &str,
    ) -> Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(match self {
            Dns::System => tokio::net::lookup_host((host, 0))
                .await?
                .map(|a| a.ip())
                .collect(),
            Dns::Cluster(resolver) => resolver.lookup_ip(host).await?.iter().collect(),
        })
    }
}

impl reqwest::dns::Resolve for Dns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = dns
                .addresses(&host)
                .await?
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// One etcd endpoint (`host:port`).
pub struct Etcd {
    http: reqwest::Client,
    address: String,
}

#[derive(Deserialize)]
struct RangeResponse {
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    mod_revision: Option<String>,
}

#[derive(Deserialize)]
struct TxnResponse {
    #[serde(default)]
    succeeded: bool,
}

#[derive(Deserialize)]
struct DeleteResponse {
    #[serde(default)]
    deleted: Option<String>,
}

/// The key after every key starting with `prefix` (etcd's `range_end` for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Etcd {
    pub fn new(http: reqwest::Client, address: &str) -> Self {
        Self {
            http,
            address: address.to_string(),
        }
    }

    /// Posts `body` to `/v3/kv/<path>` in a client span named `etcd <op>`.
    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        op: &'static str,
        path: &str,
        key: &str,
        body: Value,
    ) -> Result<T, EtcdError> {
        let span = tracing::info_span!(
            target: "multigres::topology",
            "etcd request",
            otel.name = %format!("etcd {op}"),
            otel.kind = "client",
            db.system.name = "etcd",
            db.operation.name = op,
            db.query.text = key,
            server.address = %self.address,
            otel.status_code = tracing::field::Empty,
        );
        let result = self.send(op, path, body).instrument(span.clone()).await;
        if result.is_err() {
            span.record("otel.status_code", "error");
        }
        result
    }

    async fn send<T: for<'de> Deserialize<'de>>(
        &self,
        op: &'static str,
        path: &str,
        body: Value,
    ) -> Result<T, EtcdError> {
        let url = format!("http://{}/v3/kv/{path}", self.address);
        let request_err = |source| EtcdError::Request {
            address: self.address.clone(),
            source,
        };
        let response = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(request_err)?;
        let status = response.status();
        let text = response.text().await.map_err(request_err)?;
        if !status.is_success() {
            return Err(EtcdError::Status {
                address: self.address.clone(),
                op,
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
            });
        }
        serde_json::from_str(&text).map_err(|e| EtcdError::Decode {
            address: self.address.clone(),
            op,
            detail: e.to_string(),
        })
    }

    fn decode_kv(&self, kv: KeyValue) -> Result<(String, Stored), EtcdError> {
        let bad = |detail: String| EtcdError::Decode {
            address: self.address.clone(),
            op: "Range",
            detail,
        };
        let key = B64.decode(&kv.key).map_err(|e| bad(e.to_string()))?;
        let value = B64.decode(&kv.value).map_err(|e| bad(e.to_string()))?;
        let mod_revision = kv
            .mod_revision
            .as_deref()
            .unwrap_or("0")
            .parse()
            .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?;
        let key = String::from_utf8(key).map_err(|e| bad(e.to_string()))?;
        Ok((
            key,
            Stored {
                value,
                mod_revision,
            },
        ))
    }

    /// The value of `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Stored>, EtcdError> {
        let body = json!({ "key": B64.encode(key) });
        let response: RangeResponse = self.call("Range", "range", key, body).await?;
        match response.kvs.into_iter().next() {
            Some(kv) => Ok(Some(self.decode_kv(kv)?.1)),
            None => Ok(None),
        }
    }

    /// Every key under `prefix` with its value.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, Stored)>, EtcdError> {
        let body = json!({
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix.as_bytes())),
        });
        let response: RangeResponse = self.call("Range", "range", prefix, body).await?;
        response
            .kvs
            .into_iter()
            .map(|kv| self.decode_kv(kv))
            .collect()
    }

    /// Runs `request` only if `key` is still at `expected` (`mod_revision`; 0: absent).
    /// Returns whether it ran.
    async fn guarded(
        &self,
        op: &'static str,
        key: &str,
        expected: i64,
        request: Value,
    ) -> Result<bool, EtcdError> {
        let body = json!({
            "compare": [{
                "key": B64.encode(key),
                "target": "MOD",
                "result": "EQUAL",
                "mod_revision": expected.to_string(),
            }],
            "success": [request],
        });
        let response: TxnResponse = self.call(op, "txn", key, body).await?;
        Ok(response.succeeded)
    }

    /// Writes `value` at `key` if the key is still at `expected`.
    pub async fn put_if(&self, key: &str, value: &[u8], expected: i64) -> Result<bool, EtcdError> {
        let put = json!({"request_put": {"key": B64.encode(key), "value": B64.encode(value)}});
        self.guarded("Txn Put", key, expected, put).await
    }

    /// Deletes `key` if it is still at `expected`.
    pub async fn delete_if(&self, key: &str, expected: i64) -> Result<bool, EtcdError> {
        let delete = json!({"request_delete_range": {"key": B64.encode(key)}});
        self.guarded("Txn Delete", key, expected, delete).await
    }

    /// Deletes every key under `prefix`; returns how many there were.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, EtcdError> {
        let body = json!({
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix.as_bytes())),
        });
        let response: DeleteResponse = self
            .call("DeleteRange", "deleterange", prefix, body)
            .await?;
        Ok(response
            .deleted
            .and_then(|d| d.parse().ok())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_at_its_last_byte_plus_one() {
        assert_eq!(prefix_end(b"/r/cells/"), b"/r/cells0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), [0]);
    }
}
