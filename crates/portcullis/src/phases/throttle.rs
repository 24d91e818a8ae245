//! Phase `throttle`: the route's own bucket, then the global ceiling.
//!
//! Every route has its own bucket (from `defaults.throttle` unless it sets one), so a flood
//! on one route cannot drain another's budget. The global ceiling is an outer limit checked
//! after the route bucket: a request the route refuses takes nothing from the global bucket;
//! a request the global ceiling refuses has already taken its route token (the route budget
//! measures what reached the route, and refunding would let a client retry in a tight loop
//! against a saturated gateway for free).

use crate::config::runtime::LimitRt;
use crate::error::{ErrorKind, GatewayError};
use crate::pipeline::{Flow, RateReport, RequestCtx};
use portcullis_limit::Decision;
use std::sync::Arc;

fn check(ctx: &mut RequestCtx, limit: &Arc<LimitRt>, kind: ErrorKind, now: u64) -> Result<(), GatewayError> {
    match limit.bucket.check(now) {
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
    let Some(route) = ctx.route.clone() else {
        return Ok(Flow::Continue);
    };
    let now = ctx.gw.clock.now();
    check(ctx, &route.limit, ErrorKind::RouteLimit, now)?;
    if let Some(global) = ctx.rt.global.clone() {
        check(ctx, &global, ErrorKind::GlobalLimit, now)?;
    }
    Ok(Flow::Continue)
}
