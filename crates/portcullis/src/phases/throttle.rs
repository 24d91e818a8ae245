//! Phase `throttle`, in AWS API Gateway's order: route-scoped IP rules, the route's own
//! bucket, the key's limit on this route (`plans.<p>.routes`), the key's plan limit, the
//! global ceiling, then the key's quota.
//!
//! Every route has its own bucket (from `defaults.throttle` unless it sets one), optionally
//! partitioned per client IP, API key or header value, so a flood on one route — or from one
//! client — cannot drain another's budget. The global ceiling is an outer limit only.
//!
//! What a refused request takes: a layer that refuses a request stops the check, so the
//! layers after it take nothing. The layers before it have taken their token: each bucket
//! measures what reached its layer, and refunding would let a client retry in a tight loop
//! against a saturated layer for free. The quota is last so that it counts only requests
//! that every limit admitted; a request it refuses is not counted. A request refused by an IP
//! rule takes no token anywhere (the rule counted it: that is how a flooding IP stays blocked).

use super::ip_rules;
use crate::cluster::lease::Shared;
use crate::config::runtime::{Buckets, LimitRt};
use crate::error::{ErrorKind, GatewayError};
use crate::keys::quota;
use crate::pipeline::{Flow, RateReport, RequestCtx};
use portcullis_limit::{Decision, hash_key};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// The partition a request falls in, as bytes: the same bytes key the local bucket and name
/// the shared (Redis) one on every node. Built without allocating.
enum Partition<'a> {
    /// An address (IPv4: 4 bytes, IPv6 cut to its /64: 16 bytes).
    Ip([u8; 16], usize),
    /// A key id or a header value (empty for an unpartitioned limit).
    Bytes(&'a [u8]),
}

impl AsRef<[u8]> for Partition<'_> {
    fn as_ref(&self) -> &[u8] {
        match self {
            Partition::Ip(b, n) => b.get(..*n).unwrap_or_default(),
            Partition::Bytes(b) => b,
        }
    }
}

fn partition<'a>(ctx: &'a RequestCtx, limit: &'a LimitRt) -> Partition<'a> {
    let ip = || {
        let mut buf = [0u8; 16];
        match ip_rules::aggregate(ctx.client_ip, 64) {
            std::net::IpAddr::V4(a) => {
                buf[..4].copy_from_slice(&a.octets());
                Partition::Ip(buf, 4)
            }
            std::net::IpAddr::V6(a) => Partition::Ip(a.octets(), 16),
        }
    };
    match &limit.buckets {
        Buckets::One(_) => Partition::Bytes(&[]),
        Buckets::PerIp(_) => ip(),
        Buckets::PerKey(_) => match &ctx.key {
            Some(key) => Partition::Bytes(key.id.as_bytes()),
            // Only routes that take keys can be partitioned per key (checked at load); with
            // `require: any` a caller may pass on another method and is then bucketed per /64.
            None => ip(),
        },
        Buckets::PerHeader(name, _) => Partition::Bytes(ctx.parts.headers.get(name).map_or(&[], |v| v.as_bytes())),
    }
}

/// In cluster mode every limit is shared through Redis (see `cluster::lease`); otherwise
/// the buckets live in this process.
async fn decide(ctx: &RequestCtx, limit: &LimitRt, now: u64) -> Shared {
    let part = partition(ctx, limit);
    if let Some(cluster) = ctx.gw.cluster.get() {
        return cluster.leases.check(cluster, limit, part.as_ref(), now).await;
    }
    Shared::Decided(match &limit.buckets {
        Buckets::One(b) => b.check(now),
        Buckets::PerIp(k) | Buckets::PerKey(k) | Buckets::PerHeader(_, k) => k.check(hash_key(part.as_ref()), now),
    })
}

fn report(ctx: &mut RequestCtx, policy: &http::HeaderValue, name: &'static str, remaining: u64, reset_secs: u64) {
    let remaining = u32::try_from(remaining).unwrap_or(u32::MAX);
    if reset_secs > 0 || ctx.rate.as_ref().is_none_or(|r| remaining < r.remaining) {
        ctx.rate = Some(RateReport { policy: policy.clone(), name, remaining, reset_secs });
    }
}

async fn check(ctx: &mut RequestCtx, limit: &Arc<LimitRt>, kind: ErrorKind, now: u64) -> Result<(), GatewayError> {
    match decide(ctx, limit, now).await {
        Shared::Unavailable => {
            let wait = Duration::from_secs(1);
            report(ctx, &limit.policy, limit.policy_name, 0, 1);
            Err(GatewayError::new(ErrorKind::StoreUnavailable).with_retry_after(wait))
        }
        Shared::Decided(Decision::Allowed { remaining }) => {
            report(ctx, &limit.policy, limit.policy_name, u64::from(remaining), 0);
            Ok(())
        }
        Shared::Decided(Decision::Denied { retry_after }) => {
            report(ctx, &limit.policy, limit.policy_name, 0, crate::error::retry_after_secs(retry_after));
            Err(GatewayError::new(kind).with_retry_after(retry_after))
        }
    }
}

fn take_quota(ctx: &mut RequestCtx, now: u64) -> Result<(), GatewayError> {
    let (Some(key), Some(plan)) = (ctx.key.clone(), ctx.plan.clone()) else { return Ok(()) };
    let Some(q) = &plan.quota else { return Ok(()) };
    let unix = ctx.gw.wall_time(now).duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let (start, end) = quota::bounds(unix, q.period, q.offset);
    match key.quota.try_take(start, q.limit) {
        Some(left) => {
            report(ctx, &q.policy, "quota", left, 0);
            Ok(())
        }
        None => {
            let wait = Duration::from_secs(u64::try_from(end - unix).unwrap_or(1));
            report(ctx, &q.policy, "quota", 0, crate::error::retry_after_secs(wait));
            Err(GatewayError::new(ErrorKind::QuotaExceeded).with_retry_after(wait))
        }
    }
}

/// The phase.
pub async fn throttle(ctx: &mut RequestCtx) -> Result<Flow, GatewayError> {
    let Some(route) = ctx.route.clone() else { return Ok(Flow::Continue) };
    ip_rules::on_route(ctx)?;
    let now = ctx.gw.clock.now();
    check(ctx, &route.limit, ErrorKind::RouteLimit, now).await?;
    if let Some(plan) = ctx.plan.clone() {
        if let Some(limit) = plan.routes.get(&*route.name) {
            check(ctx, limit, ErrorKind::PlanLimit, now).await?;
        }
        if let Some(limit) = &plan.throttle {
            check(ctx, limit, ErrorKind::PlanLimit, now).await?;
        }
    }
    if let Some(global) = ctx.rt.global.clone() {
        check(ctx, &global, ErrorKind::GlobalLimit, now).await?;
    }
    take_quota(ctx, now)?;
    Ok(Flow::Continue)
}
