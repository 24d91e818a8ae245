//! Phase `policy`: resource policies on the trusted client IP — the global one, then the
//! route's. `deny_ips` is checked first; a non-empty `allow_ips` refuses every address it
//! does not contain. Refusal is 403 `policy.denied`.
//!
//! `dry_run: true` refuses nothing: it logs a WARN line and counts
//! `portcullis_policy_matches_total{action="dry_run"}`, so a new allow list can be watched
//! before it can lock anyone (the admins included) out.

use crate::error::{ErrorKind, GatewayError};
use crate::pipeline::{Flow, RequestCtx};
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct PolicyRt {
    /// `global` or the route's name, for logs and metrics.
    pub name: Arc<str>,
    /// Only these may call, when not empty.
    pub allow: Vec<IpNet>,
    /// These may never call.
    pub deny: Vec<IpNet>,
    /// Log and count only.
    pub dry_run: bool,
}

impl PolicyRt {
    /// Why `ip` is refused, if it is.
    pub fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        if self.deny.iter().any(|n| n.contains(&ip)) {
            Some("in deny_ips")
        } else if !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&ip)) {
            Some("not in allow_ips")
        } else {
            None
        }
    }
}

/// The phase.
pub fn policy(ctx: &mut RequestCtx) -> Result<Flow, GatewayError> {
    let route_policy = ctx.route.as_ref().and_then(|r| r.policy.as_ref());
    for p in [ctx.rt.policy.as_ref(), route_policy].into_iter().flatten() {
        let Some(why) = p.refuses(ctx.client_ip) else { continue };
        if p.dry_run {
            ctx.gw.metrics.policy_match(&p.name, "dry_run");
            tracing::warn!(policy = %p.name, client_ip = %ctx.client_ip, path = %ctx.path,
                "dry run: resource policy would refuse this request ({why})");
            continue;
        }
        ctx.gw.metrics.policy_match(&p.name, "deny");
        return Err(GatewayError::new(ErrorKind::PolicyDenied).with_detail(format!("policy {}: {why}", p.name)));
    }
    Ok(Flow::Continue)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(allow: &[&str], deny: &[&str]) -> PolicyRt {
        PolicyRt {
            name: Arc::from("t"),
            allow: allow.iter().map(|s| s.parse().unwrap()).collect(),
            deny: deny.iter().map(|s| s.parse().unwrap()).collect(),
            dry_run: false,
        }
    }

    #[test]
    fn deny_wins_over_allow_and_allow_lists_close_the_rest() {
        let pol = p(&["10.0.0.0/8"], &["10.1.0.0/16"]);
        assert_eq!(pol.refuses("10.2.3.4".parse().unwrap()), None);
        assert_eq!(pol.refuses("10.1.3.4".parse().unwrap()), Some("in deny_ips"));
        assert_eq!(pol.refuses("192.0.2.1".parse().unwrap()), Some("not in allow_ips"));
        assert_eq!(p(&[], &["2001:db8::/32"]).refuses("2001:db8::1".parse().unwrap()), Some("in deny_ips"));
        assert_eq!(p(&[], &[]).refuses("192.0.2.1".parse().unwrap()), None);
    }
}
