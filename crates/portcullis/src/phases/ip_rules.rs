//! Per-IP rate-based rules (phase `pre_route_guard`, and the first layer of `throttle` for
//! rules scoped to routes).
//!
//! Each rule counts the requests of every client IP (IPv6 per /64 by default) over a sliding
//! window. An IP whose count goes over the limit is refused — `block`, 403 or 429
//! `throttle.ip_blocked` — or only logged and counted — `count` — for as long as its count
//! stays over. Refused requests count too, so an IP that keeps flooding stays blocked, and
//! one that stops is let in again once the window has slid past its burst. Nothing else is
//! needed to unblock it; an operator can do it at once with `DELETE /api/v1/blocked-ips/{ip}`.

use crate::cluster::events::{Event, broadcast};
use crate::config::model::{IpRule, IpRuleAction};
use crate::error::{ErrorKind, GatewayError};
use crate::pipeline::{Flow, RequestCtx};
use http::StatusCode;
use portcullis_limit::{WindowCounter, hash_key};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// Which requests a rule counts.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleScope {
    /// Every request.
    All,
    /// Requests whose normalized path starts with this, at a segment boundary.
    PathPrefix(String),
    /// Requests to these routes.
    Routes(Vec<Arc<str>>),
}

/// A compiled IP rule; its counters survive a reload when the rule's numbers do not change.
#[derive(Debug)]
pub struct IpRuleRt {
    /// Rule name.
    pub name: Arc<str>,
    spec: IpRule,
    /// Per-IP sliding-window counts.
    pub counter: Arc<WindowCounter>,
    /// The address behind each key that went over (for the admin listing), bounded by the
    /// counter's capacity.
    blocked: Arc<Mutex<HashMap<u64, IpAddr>>>,
    /// Block or count.
    pub action: IpRuleAction,
    /// Status of a refusal.
    pub status: StatusCode,
    /// Which requests it counts.
    pub scope: RuleScope,
    /// IPv6 aggregation prefix.
    pub ipv6_prefix: u8,
}

/// `ip` with an IPv6 address cut to `prefix` bits (IPv4 and IPv4-mapped stay whole).
pub fn aggregate(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = if prefix >= 128 { u128::MAX } else { !(u128::MAX >> prefix) };
            IpAddr::V6(Ipv6Addr::from(bits & mask))
        }
        v4 => v4,
    }
}

impl IpRuleRt {
    /// Compiles a rule, keeping `previous`'s counters when the numbers are the same.
    pub fn build(spec: &IpRule, scope: RuleScope, max_keys: usize, previous: Option<&Arc<IpRuleRt>>) -> IpRuleRt {
        let same = |p: &&Arc<IpRuleRt>| {
            p.spec.limit == spec.limit && p.spec.window == spec.window && p.spec.ipv6_prefix == spec.ipv6_prefix
        };
        let (counter, blocked) = match previous.filter(same) {
            Some(p) => (p.counter.clone(), p.blocked.clone()),
            None => {
                let window = u64::try_from(spec.window.0.as_nanos()).unwrap_or(u64::MAX);
                (Arc::new(WindowCounter::new(spec.limit, window, max_keys)), Arc::new(Mutex::new(HashMap::new())))
            }
        };
        IpRuleRt {
            name: Arc::from(spec.name.as_str()),
            counter,
            blocked,
            action: spec.action,
            status: match spec.status {
                Some(429) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::FORBIDDEN,
            },
            scope,
            ipv6_prefix: spec.ipv6_prefix.unwrap_or(64),
            spec: spec.clone(),
        }
    }

    /// The counter key of a client address, and the address as counted.
    pub fn key(&self, ip: IpAddr) -> (u64, IpAddr) {
        let counted = aggregate(ip, self.ipv6_prefix);
        (hash_key(&counted), counted)
    }

    /// The limit per window.
    pub fn limit(&self) -> u64 {
        self.spec.limit
    }

    /// The window length.
    pub fn window(&self) -> std::time::Duration {
        self.spec.window.0
    }

    /// Addresses over the limit now: `(address as counted, since, estimated rate)`.
    pub fn over(&self, now: u64) -> Vec<(IpAddr, u64, u64)> {
        let over = self.counter.over(now);
        let Ok(mut blocked) = self.blocked.lock() else { return Vec::new() };
        let keep: std::collections::HashSet<u64> = over.iter().map(|(k, _)| *k).collect();
        blocked.retain(|k, _| keep.contains(k));
        over.into_iter()
            .filter_map(|(k, st)| Some((*blocked.get(&k)?, st.over_since.unwrap_or(now), st.rate)))
            .collect()
    }

    /// Lets `ip` in again at once. True when it was tracked.
    pub fn forget(&self, ip: IpAddr) -> bool {
        let (key, _) = self.key(ip);
        if let Ok(mut b) = self.blocked.lock() {
            b.remove(&key);
        }
        self.counter.forget(key)
    }

    /// Blocks `ip` because another cluster node saw it go over (`rate` requests in the
    /// window there): the count here is raised to that. True when it is over here now.
    pub fn impose(&self, ip: IpAddr, rate: u64, now: u64) -> bool {
        let (key, counted) = self.key(ip);
        let state = self.counter.raise_to(key, rate, now);
        if state.over_since.is_some()
            && let Ok(mut b) = self.blocked.lock()
        {
            b.insert(key, counted);
        }
        state.over_since.is_some()
    }

    fn applies_before_routing(&self, path: &str) -> bool {
        match &self.scope {
            RuleScope::All => true,
            RuleScope::PathPrefix(p) => path
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || p.ends_with('/')),
            RuleScope::Routes(_) => false,
        }
    }
}

fn apply<'a>(ctx: &mut RequestCtx, rules: impl Iterator<Item = &'a Arc<IpRuleRt>>) -> Result<(), GatewayError> {
    let now = ctx.gw.clock.now();
    for rule in rules {
        let (key, counted) = rule.key(ctx.client_ip);
        let state = rule.counter.hit(key, now);
        let Some(since) = state.over_since else { continue };
        if since == now
            && let Ok(mut b) = rule.blocked.lock()
        {
            b.insert(key, counted);
            tracing::warn!(rule = %rule.name, ip = %counted, rate = state.rate, "IP went over its rate limit");
            if rule.action == IpRuleAction::Block && ctx.gw.cluster.get().is_some() {
                // The other nodes block it too (they may not have seen its requests).
                let gw = ctx.gw.clone();
                let event = Event::Block { rule: rule.name.to_string(), ip: counted, rate: state.rate };
                tokio::spawn(async move { broadcast(&gw, &event).await });
            }
        }
        match rule.action {
            IpRuleAction::Count => ctx.gw.metrics.ip_rule_match(&rule.name, "count"),
            IpRuleAction::Block => {
                ctx.gw.metrics.ip_rule_match(&rule.name, "block");
                return Err(GatewayError::new(ErrorKind::IpBlocked)
                    .with_status(rule.status)
                    .with_detail(format!("rule {}", rule.name)));
            }
        }
    }
    Ok(())
}

/// Phase `pre_route_guard`: the rules not scoped to routes, before routing, so that a
/// flood is shed before any route work.
pub fn pre_route(ctx: &mut RequestCtx) -> Result<Flow, GatewayError> {
    if ctx.rt.ip_rules.is_empty() {
        return Ok(Flow::Continue);
    }
    let rt = ctx.rt.clone();
    let path = std::mem::take(&mut ctx.path);
    let result = apply(ctx, rt.ip_rules.iter().filter(|r| r.applies_before_routing(&path)));
    ctx.path = path;
    result.map(|()| Flow::Continue)
}

/// The rules scoped to the matched route (first layer of `throttle`).
pub fn on_route(ctx: &mut RequestCtx) -> Result<(), GatewayError> {
    let Some(route) = ctx.route.clone() else { return Ok(()) };
    if !route.has_ip_rules {
        return Ok(());
    }
    let rt = ctx.rt.clone();
    apply(
        ctx,
        rt.ip_rules.iter().filter(|r| matches!(&r.scope, RuleScope::Routes(names) if names.contains(&route.name))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_aggregated_by_prefix() {
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(aggregate(a, 64), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_eq!(aggregate(a, 48), "2001:db8:1::".parse::<IpAddr>().unwrap());
        assert_eq!(aggregate(a, 128), a);
        let v4: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(aggregate(v4, 64), v4);
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(aggregate(mapped, 64), v4);
    }
}
