//! Where Redis is and how to talk to it: one server (`redis://`, `rediss://`) or a Redis
//! Cluster (`redis+cluster://host1:port,host2:port`, `rediss+cluster://…`), behind one
//! connection type each for the synchronous and the asynchronous side.
//!
//! On a Redis Cluster every script touches one key, or two keys that share a hash tag (the
//! `{prefix}:…` names), so it runs on the node that owns the slot; pipelines that would span
//! slots are sent key by key instead ([`Target::is_cluster`]). Pub/sub is cluster-wide in
//! Redis Cluster, so the event listener subscribes on one seed node.

use super::StoreTlsPem;
use redis::aio::ConnectionLike as AsyncConnectionLike;
use redis::{Cmd, ConnectionLike, Pipeline, RedisFuture, RedisResult, Value};
use std::time::Duration;

/// A parsed `state.store` Redis URL.
#[derive(Clone)]
pub enum Target {
    /// One server.
    One(Box<redis::Client>),
    /// A Redis Cluster, from its seed nodes; also a client per seed (pub/sub).
    Cluster(Box<redis::cluster::ClusterClient>, Vec<redis::Client>),
}

/// The seed URLs of a cluster URL, each as a single-server URL (`None`: not a cluster URL).
fn cluster_seeds(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = url.split_once("://")?;
    let single = match scheme {
        "redis+cluster" => "redis",
        "rediss+cluster" => "rediss",
        _ => return None,
    };
    // Credentials, if any, come before the host list and apply to every seed.
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    let hosts = hosts.trim_end_matches('/');
    Some(hosts.split(',').filter(|h| !h.is_empty()).map(|h| format!("{single}://{auth}{h}")).collect())
}

impl Target {
    /// Parses a `redis://`, `rediss://`, `redis+cluster://` or `rediss+cluster://` URL; `tls`
    /// replaces the system's trusted CAs (and adds a client certificate).
    pub fn parse(url: &str, timeout: Duration, tls: Option<&StoreTlsPem>) -> RedisResult<Target> {
        let certs = || {
            tls.map(|t| redis::TlsCertificates {
                client_tls: t
                    .client
                    .as_ref()
                    .map(|(cert, key)| redis::ClientTlsConfig { client_cert: cert.clone(), client_key: key.clone() }),
                root_cert: Some(t.ca.clone()),
            })
        };
        let single = |u: &str| match certs() {
            Some(c) => redis::Client::build_with_tls(u, c),
            None => redis::Client::open(u),
        };
        match cluster_seeds(url) {
            Some(seeds) if seeds.is_empty() => {
                Err(redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no cluster seed nodes")))
            }
            Some(seeds) => {
                let mut builder = redis::cluster::ClusterClient::builder(seeds.clone())
                    .connection_timeout(timeout.max(Duration::from_millis(500)))
                    .response_timeout(timeout);
                if let Some(c) = certs() {
                    builder = builder.certs(c);
                }
                let cluster = builder.build()?;
                let singles = seeds.iter().map(|s| single(s)).collect::<RedisResult<_>>()?;
                Ok(Target::Cluster(Box::new(cluster), singles))
            }
            None => Ok(Target::One(Box::new(single(url)?))),
        }
    }

    /// True for a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(..))
    }

    /// Where it points, without credentials (for logs).
    pub fn describe(&self) -> String {
        match self {
            Target::One(c) => c.get_connection_info().addr().to_string(),
            Target::Cluster(_, seeds) => {
                let addrs: Vec<String> = seeds.iter().map(|c| c.get_connection_info().addr().to_string()).collect();
                format!("cluster {}", addrs.join(","))
            }
        }
    }

    /// A synchronous connection with `timeout` on connect, reads and writes.
    pub fn connect(&self, timeout: Duration) -> RedisResult<SyncConn> {
        match self {
            Target::One(c) => {
                let conn = c.get_connection_with_timeout(timeout)?;
                conn.set_read_timeout(Some(timeout))?;
                conn.set_write_timeout(Some(timeout))?;
                Ok(SyncConn::One(conn))
            }
            Target::Cluster(c, _) => {
                let conn = c.get_connection()?;
                conn.set_read_timeout(Some(timeout))?;
                conn.set_write_timeout(Some(timeout))?;
                Ok(SyncConn::Cluster(Box::new(conn)))
            }
        }
    }

    /// An asynchronous connection that reconnects by itself.
    pub async fn connect_async(&self, timeout: Duration, retry: Duration) -> RedisResult<AsyncConn> {
        match self {
            Target::One(c) => {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout.max(Duration::from_millis(500))))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(retry);
                Ok(AsyncConn::One(c.get_connection_manager_with_config(config).await?))
            }
            Target::Cluster(c, _) => Ok(AsyncConn::Cluster(c.get_async_connection().await?)),
        }
    }

    /// The clients to try, in order, for a pub/sub subscription.
    pub fn pubsub_clients(&self) -> Vec<redis::Client> {
        match self {
            Target::One(c) => vec![(**c).clone()],
            Target::Cluster(_, seeds) => seeds.clone(),
        }
    }
}

/// A synchronous connection to one server or a cluster.
pub enum SyncConn {
    /// One server.
    One(redis::Connection),
    /// A cluster (boxed: much larger than a single connection).
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl ConnectionLike for SyncConn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            SyncConn::One(c) => c.req_packed_command(cmd),
            SyncConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(&mut self, cmd: &[u8], offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        match self {
            SyncConn::One(c) => c.req_packed_commands(cmd, offset, count),
            SyncConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            SyncConn::One(c) => c.req_command(cmd),
            SyncConn::Cluster(c) => c.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            SyncConn::One(c) => c.get_db(),
            SyncConn::Cluster(c) => c.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            SyncConn::One(c) => c.check_connection(),
            SyncConn::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            SyncConn::One(c) => c.is_open(),
            SyncConn::Cluster(c) => c.is_open(),
        }
    }
}

/// An asynchronous, cheaply cloned connection to one server or a cluster.
#[derive(Clone)]
pub enum AsyncConn {
    /// One server (multiplexed, reconnecting).
    One(redis::aio::ConnectionManager),
    /// A cluster (multiplexed per node, follows slot moves).
    Cluster(redis::cluster_async::ClusterConnection),
}

impl AsyncConnectionLike for AsyncConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            AsyncConn::One(c) => c.req_packed_command(cmd),
            AsyncConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            AsyncConn::One(c) => c.req_packed_commands(cmd, offset, count),
            AsyncConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            AsyncConn::One(c) => c.get_db(),
            AsyncConn::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_their_seeds_with_shared_credentials() {
        assert_eq!(
            cluster_seeds("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001/").unwrap(),
            vec!["redis://:pw@10.0.0.1:7000", "redis://:pw@10.0.0.2:7001"]
        );
        assert_eq!(cluster_seeds("rediss+cluster://h:1").unwrap(), vec!["rediss://h:1"]);
        assert!(cluster_seeds("redis://h:1").is_none());
        let t = Duration::from_millis(50);
        assert!(Target::parse("redis+cluster://", t, None).is_err());
        assert!(Target::parse("redis+cluster://127.0.0.1:7000", t, None).unwrap().is_cluster());
        assert!(!Target::parse("redis://127.0.0.1:6379/2", t, None).unwrap().is_cluster());
    }
}
