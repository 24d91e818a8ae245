//! Phase `throttle`: route-scoped IP rules, the route's own bucket, then the global ceiling.
//!
//! Every route has its own bucket (from `defaults.throttle` unless it sets one), optionally
//! partitioned per client IP or per header value, so a flood on one route — or from one
//! client, with `per` — cannot drain another's budget. The global ceiling is an outer limit
//! checked after the route bucket.
//!
//! What a refused request takes: a request refused by an IP rule takes no token anywhere (it
//! was counted by the rule, which is how a flooding IP stays blocked). A request the route
//! refuses takes nothing from the global bucket. A request the global ceiling refuses has
//! already taken its route token: the route budget measures what reached the route, and a
//! refund would let a client retry in a tight loop against a saturated gateway for free.

use super::ip_rules;
use crate::config::runtime::{Buckets, LimitRt};
use crate::error::{ErrorKind, GatewayError};
use crate::pipeline::{Flow, RateReport, RequestCtx};
use portcullis_limit::{Decision, hash_key};
use std::sync::Arc;

fn decide(ctx: &RequestCtx, limit: &LimitRt, now: u64) -> Decision {
    match &limit.buckets {
        Buckets::One(b) => b.check(now),
        Buckets::PerIp(k) => k.check(hash_key(&ip_rules::aggregate(ctx.client_ip, 64)), now),
        Buckets::PerHeader(name, k) => {
            let value = ctx.parts.headers.get(name).map_or(&[][..], |v| v.as_bytes());
            k.check(hash_key(value), now)
        }
    }
}

fn check(ctx: &mut RequestCtx, limit: &Arc<LimitRt>, kind: ErrorKind, now: u64) -> Result<(), GatewayError> {
    match decide(ctx, limit, now) {
        Decision::Allowed { remaining } => {
            if ctx.rate.as_ref().is_none_or(|r| remaining < r.remaining) {
                ctx.rate = Some(RateReport { limit: limit.clone(), remaining, reset_secs: 0 });
            }
            Ok(())
        }
        Decision::Denied { retry_after } => {
            let secs = crate::error::retry_after_secs(retry_after);
            ctx.rate = Some(RateReport { limit: limit.clone(), remaining: 0, reset_secs: secs });
            Err(GatewayError::new(kind).with_retry_after(retry_after))
        }
    }
}

/// The phase.
pub fn throttle(ctx: &mut RequestCtx) -> Result<Flow, GatewayError> {
    let Some(route) = ctx.route.clone() else { return Ok(Flow::Continue) };
    ip_rules::on_route(ctx)?;
    let now = ctx.gw.clock.now();
    check(ctx, &route.limit, ErrorKind::RouteLimit, now)?;
    if let Some(global) = ctx.rt.global.clone() {
        check(ctx, &global, ErrorKind::GlobalLimit, now)?;
    }
    Ok(Flow::Continue)
}
