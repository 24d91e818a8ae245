//! The throttling part of compilation: route and global buckets (partitioned or not) and
//! per-IP rules. Bucket and counter state is carried over from the previous snapshot when a
//! limit's numbers did not change, so a reload never refills anyone's budget.

use super::compile::Ctx;
use super::model::{self, Partition, Throttle};
use super::runtime::{Buckets, LimitRt, RouteRt};
use crate::phases::ip_rules::{IpRuleRt, RuleScope};
use http::HeaderValue;
use portcullis_limit::{Bucket, KeyedLimiter, Rate};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Route bucket when neither the route nor `defaults.throttle` sets one.
pub const DEFAULT_ROUTE_THROTTLE: Throttle = Throttle { rate: 1000.0, burst: 2000, per: None, strict: false };

/// Checks the numbers; `per` is refused where a limit cannot be partitioned.
pub(super) fn checked_throttle(cx: &mut Ctx, path: &str, t: &Throttle, allow_per: bool) -> Throttle {
    if let Err(e) = Rate::new(t.rate, t.burst) {
        cx.err(path, format!("{path}: {e}"));
    }
    if !allow_per && t.per.as_ref().is_some_and(|p| *p != Partition::Route) {
        cx.err(&format!("{path}.per"), format!("{path} is one bucket for everything: per is not allowed here"));
    }
    t.clone()
}

/// `q` tokens per `w` seconds with whole numbers, for the RateLimit-Policy header.
fn policy_value(name: &str, t: &Throttle) -> HeaderValue {
    let w = (1..=3600u32).find(|w| (t.rate * f64::from(*w)).fract().abs() < 1e-9).unwrap_or(1);
    let q = (t.rate * f64::from(w)).floor().max(1.0) as u64;
    HeaderValue::from_str(&format!("\"{name}\";q={q};w={w}")).unwrap_or(HeaderValue::from_static("\"route\""))
}

/// A limit; its state comes from `previous` when the numbers (and partition) are the same.
pub(crate) fn limit_rt(
    t: Throttle,
    name: &'static str,
    id: String,
    max_keys: usize,
    previous: Option<&Arc<LimitRt>>,
) -> Arc<LimitRt> {
    let rate = Rate { per_second: t.rate, burst: t.burst.max(1) };
    let buckets = match previous {
        Some(p) if p.throttle == t => p.buckets.clone(),
        _ => match &t.per {
            None | Some(Partition::Route) => Buckets::One(Arc::new(Bucket::new(rate))),
            Some(Partition::Ip) => Buckets::PerIp(Arc::new(KeyedLimiter::new(rate, max_keys))),
            Some(Partition::Key) => Buckets::PerKey(Arc::new(KeyedLimiter::new(rate, max_keys))),
            Some(Partition::Header(h)) => match http::HeaderName::from_bytes(h.as_bytes()) {
                Ok(name) => Buckets::PerHeader(name, Arc::new(KeyedLimiter::new(rate, max_keys))),
                Err(_) => Buckets::One(Arc::new(Bucket::new(rate))),
            },
        },
    };
    // The shared (Redis) bucket's identity: which limit, and its numbers, so that nodes on
    // different configs during a rolling change never share a bucket with different rates.
    let shared_id = format!("{id}|{}|{}|{:?}", t.rate, t.burst, t.per);
    Arc::new(LimitRt {
        policy: policy_value(name, &t),
        throttle: t,
        buckets,
        policy_name: name,
        shared_id,
        lease: Default::default(),
    })
}

/// Logs a warning for every route whose own limit is not below the global ceiling: the
/// ceiling can then never stop that route from using all of it (AWS's account-wide flaw).
pub(super) fn warn_routes_at_ceiling(routes: &[Arc<RouteRt>], global: Option<&Arc<LimitRt>>) {
    let Some(g) = global else { return };
    for r in routes {
        let t = &r.limit.throttle;
        if t.rate >= g.throttle.rate || t.burst >= g.throttle.burst {
            tracing::warn!(
                route = %r.name,
                "route limit (rate {}, burst {}) is not below the global ceiling (rate {}, burst {}): \
                 a flood on this route can use the whole ceiling",
                t.rate,
                t.burst,
                g.throttle.rate,
                g.throttle.burst
            );
        }
    }
}

/// Compiles `ip_rules`. `route_names` are the routes the config defines.
pub(super) fn ip_rules(
    cx: &mut Ctx,
    rules: &[model::IpRule],
    route_names: &HashSet<&str>,
    max_keys: usize,
    previous: &[Arc<IpRuleRt>],
) -> Vec<Arc<IpRuleRt>> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let p = format!("ip_rules[{i}]");
        if r.name.is_empty() || !names.insert(r.name.as_str()) {
            cx.err(&format!("{p}.name"), format!("ip rule name {:?} is empty or used twice", r.name));
        }
        if r.limit == 0 {
            cx.err(&format!("{p}.limit"), "limit must be at least 1");
        }
        let windows = [1, 2, 5, 10].map(|m| Duration::from_secs(60 * m));
        if !windows.contains(&r.window.0) {
            cx.err(&format!("{p}.window"), "window must be 1m, 2m, 5m or 10m");
        }
        if r.status.is_some_and(|s| s != 403 && s != 429) {
            cx.err(&format!("{p}.status"), "status must be 403 or 429");
        }
        if r.ipv6_prefix.is_some_and(|b| !(16..=128).contains(&b)) {
            cx.err(&format!("{p}.ipv6_prefix"), "ipv6_prefix must be between 16 and 128");
        }
        let scope = match &r.scope {
            None => RuleScope::All,
            Some(s) if !s.routes.is_empty() && s.path_prefix.is_some() => {
                cx.err(&format!("{p}.scope"), "scope takes routes or path_prefix, not both");
                RuleScope::All
            }
            Some(s) if !s.routes.is_empty() => {
                for (j, name) in s.routes.iter().enumerate() {
                    if !route_names.contains(name.as_str()) {
                        cx.err(&format!("{p}.scope.routes[{j}]"), format!("route {name:?} is not defined"));
                    }
                }
                RuleScope::Routes(s.routes.iter().map(|n| Arc::from(n.as_str())).collect())
            }
            Some(s) => match &s.path_prefix {
                Some(prefix) if prefix.starts_with('/') => RuleScope::PathPrefix(prefix.clone()),
                Some(_) => {
                    cx.err(&format!("{p}.scope.path_prefix"), "path_prefix must start with '/'");
                    RuleScope::All
                }
                None => RuleScope::All,
            },
        };
        let prev = previous.iter().find(|x| *x.name == *r.name);
        out.push(Arc::new(IpRuleRt::build(r, scope, max_keys, prev)));
    }
    out
}
