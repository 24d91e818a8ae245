//! Admin actions every node must apply: sent on the Redis channel `P:events`, applied by each
//! node's listener within milliseconds (the tests hold it to one second).
//!
//! A message is `<sender> <action> [argument]`. Key and plan changes are published by the
//! store scripts themselves (sender `store`), so a key revoked through any node's admin API
//! or with `portcullis keys` reaches every node; the admin API publishes the others. A node
//! that loses the subscription polls the store version every second as before, and refreshes
//! its keys when the subscription is back (it may have missed messages meanwhile).

use super::Cluster;
use crate::state::Gateway;
use futures_util::StreamExt;
use std::net::IpAddr;
use std::sync::Arc;

/// An action for every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Keys or plans changed in the store: rebuild the caches.
    Keys,
    /// Flush the external authorizers' decision caches (all, or one principal's).
    AuthCache(Option<String>),
    /// Let an IP in again in every IP rule.
    Unblock(IpAddr),
    /// An IP went over a blocking IP rule on the sender (`rate` requests in its window).
    Block {
        /// The rule's name.
        rule: String,
        /// The address as counted (IPv6: the rule's prefix).
        ip: IpAddr,
        /// The sender's estimate.
        rate: u64,
    },
    /// Re-read the configuration file.
    Reload,
}

impl Event {
    fn encode(&self, sender: &str) -> String {
        match self {
            Event::Keys => format!("{sender} keys"),
            Event::AuthCache(None) => format!("{sender} auth-cache"),
            Event::AuthCache(Some(p)) => format!("{sender} auth-cache {p}"),
            Event::Unblock(ip) => format!("{sender} unblock {ip}"),
            Event::Block { rule, ip, rate } => format!("{sender} block {ip} {rate} {rule}"),
            Event::Reload => format!("{sender} reload"),
        }
    }

    /// `(sender, event)` of a message; `None` for anything else.
    fn decode(msg: &str) -> Option<(&str, Event)> {
        let (sender, rest) = msg.split_once(' ')?;
        let (action, arg) = rest.split_once(' ').map_or((rest, None), |(a, b)| (a, Some(b)));
        let event = match (action, arg) {
            ("keys", None) => Event::Keys,
            ("auth-cache", p) => Event::AuthCache(p.map(str::to_string)),
            ("unblock", Some(ip)) => Event::Unblock(ip.parse().ok()?),
            ("block", Some(arg)) => {
                let mut parts = arg.splitn(3, ' ');
                let ip = parts.next()?.parse().ok()?;
                let rate = parts.next()?.parse().ok()?;
                Event::Block { ip, rate, rule: parts.next().filter(|r| !r.is_empty())?.to_string() }
            }
            ("reload", None) => Event::Reload,
            _ => return None,
        };
        Some((sender, event))
    }

    /// Applies the action on this node; returns what it touched, for the admin API's answer.
    pub async fn apply(&self, gw: &Arc<Gateway>) -> Vec<String> {
        match self {
            Event::Keys => {
                if let Some(keys) = gw.keys.clone() {
                    keys.refresh_logged(gw.runtime.load_full(), "keys not reloaded from the store").await;
                }
                Vec::new()
            }
            Event::AuthCache(principal) => {
                let rt = gw.runtime.load();
                for authorizer in rt.auth.external.values() {
                    authorizer.flush(principal.as_deref());
                }
                rt.auth.external.keys().map(ToString::to_string).collect()
            }
            Event::Unblock(ip) => {
                let rt = gw.runtime.load();
                rt.ip_rules.iter().filter(|r| r.forget(*ip)).map(|r| r.name.to_string()).collect()
            }
            Event::Block { rule, ip, rate } => {
                let rt = gw.runtime.load();
                let now = gw.clock.now();
                let hit = rt.ip_rules.iter().filter(|r| &*r.name == rule && r.impose(*ip, *rate, now));
                hit.map(|r| r.name.to_string()).collect()
            }
            Event::Reload => {
                let _ = gw.reload().await;
                Vec::new()
            }
        }
    }
}

/// Tells the other nodes (no-op without a cluster). Best effort: when Redis is down the
/// action still took effect on this node, and a warning says the others did not hear it.
pub async fn broadcast(gw: &Gateway, event: &Event) {
    let Some(cluster) = gw.cluster.get() else { return };
    let mut conn = cluster.conn();
    let msg = event.encode(&cluster.node_id);
    let sent: Option<i64> = cluster.call("publish", conn.publish(&cluster.names.events, msg)).await;
    if sent.is_none() {
        tracing::warn!(?event, "admin action applied on this node only: Redis is unreachable");
    }
}

use redis::AsyncCommands;

/// Listens for events until the task is aborted, reconnecting while Redis is away. Returns
/// once the first subscription is in place (or after a second), so a node that reports
/// ready does not miss the first actions.
pub async fn spawn_listener(gw: Arc<Gateway>, cluster: Arc<Cluster>) -> tokio::task::JoinHandle<()> {
    let (subscribed, first_subscription) = tokio::sync::oneshot::channel::<()>();
    let mut subscribed = Some(subscribed);
    let task = tokio::spawn(async move {
        let mut first = true;
        let clients = cluster.pubsub_clients();
        for client in clients.iter().cycle() {
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => {
                    if let Err(e) = pubsub.subscribe(&cluster.names.events).await {
                        tracing::warn!("cluster events: subscribe failed: {e}");
                    } else {
                        if !first {
                            // Messages sent while we were away are lost: catch up on keys.
                            Event::Keys.apply(&gw).await;
                        }
                        first = false;
                        if let Some(tx) = subscribed.take() {
                            let _ = tx.send(());
                        }
                        let mut messages = pubsub.into_on_message();
                        while let Some(msg) = messages.next().await {
                            let Ok(text) = std::str::from_utf8(msg.get_payload_bytes()) else { continue };
                            match Event::decode(text) {
                                Some((sender, _)) if sender == cluster.node_id => {}
                                Some((_, event)) => {
                                    tracing::info!(?event, "applying an admin action from another node");
                                    event.apply(&gw).await;
                                }
                                None => tracing::warn!(message = text, "cluster events: unknown message ignored"),
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!("cluster events: no connection: {e}"),
            }
            tokio::time::sleep(super::RETRY).await;
        }
    });
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), first_subscription).await;
    task
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_junk_is_refused() {
        for e in [
            Event::Keys,
            Event::AuthCache(None),
            Event::AuthCache(Some("user 1".into())),
            Event::Unblock("2001:db8::1".parse().unwrap()),
            Event::Block { rule: "per ip".into(), ip: "192.0.2.1".parse().unwrap(), rate: 12 },
            Event::Reload,
        ] {
            let msg = e.encode("n1");
            assert_eq!(Event::decode(&msg), Some(("n1", e)), "{msg}");
        }
        for junk in [
            "",
            "n1",
            "n1 unblock",
            "n1 unblock 300.1.1.1",
            "n1 block 192.0.2.1 12",
            "n1 block 192.0.2.1 x r",
            "n1 keys extra",
            "n1 format-disk",
        ] {
            assert_eq!(Event::decode(junk), None, "{junk}");
        }
    }
}
