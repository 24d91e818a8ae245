//! The `api_key` method: the caller's key, and with it the plan whose limits and quota apply.
//!
//! No key: 401 `auth.missing`. A key that is malformed, unknown, revoked or disabled, sent
//! twice, or on a plan that no longer exists: 403 `auth.invalid_key` — one code, so a caller
//! learns nothing about which. The key header is removed before forwarding: the backend gets
//! the request, never the key. Keys identify a client for its plan; they are not proof of
//! who is calling (that is what JWT, mTLS and authorizers are for).

use super::Principal;
use crate::error::{ErrorKind, GatewayError};
use crate::pipeline::RequestCtx;
use crate::store::KeyStatus;

/// Verifies the key and sets `ctx.key` and `ctx.plan`.
pub fn check(ctx: &mut RequestCtx) -> Result<Principal, GatewayError> {
    let Some(keys) = ctx.gw.keys.clone() else {
        return Err(GatewayError::internal("a route requires API keys but no store is open"));
    };
    // One pass over the header map: take every value of the key header out, keep the first.
    let http::header::Entry::Occupied(found) = ctx.parts.headers.entry(&ctx.rt.key_header) else {
        return Err(GatewayError::new(ErrorKind::AuthMissing));
    };
    let (_, mut values) = found.remove_entry_mult();
    let invalid = |why: &str| GatewayError::new(ErrorKind::InvalidKey).with_detail(why.to_string());
    let Some(value) = values.next() else { return Err(GatewayError::new(ErrorKind::AuthMissing)) };
    if values.next().is_some() {
        return Err(invalid("key header sent more than once"));
    }
    drop(values);
    let presented = value.to_str().map_err(|_| invalid("malformed key"))?.trim();
    let entry = keys.index.load().verify(presented).ok_or_else(|| invalid("unknown key"))?;
    if entry.status != KeyStatus::Active {
        return Err(invalid(&format!("key {} is {}", entry.id, entry.status.as_str())));
    }
    let plan = entry
        .plan_rt
        .clone()
        .ok_or_else(|| invalid(&format!("plan {} of key {} does not exist", entry.plan, entry.id)))?;
    let principal = Principal::of("api_key", Some(entry.id.to_string()));
    ctx.key = Some(entry);
    ctx.plan = Some(plan);
    Ok(principal)
}
