//! What backends learn about the caller, and what clients cannot forge.
//!
//! Every request header in the identity namespace (default `x-portcullis-`) and every header
//! the route lists in `auth.strip_headers` is removed, in every spelling: names arrive
//! lowercased, and `_` counts as `-` (some servers and CGI-style frameworks treat
//! `X_Portcullis_Principal` as the same header). Then the gateway sets, from what the
//! `authenticate` phase verified: `<prefix>principal`, `<prefix>key-id`, `<prefix>scopes`
//! (space-separated) and `<prefix>tenant`.

use crate::pipeline::RequestCtx;
use http::{HeaderMap, HeaderName, HeaderValue};

/// The identity header names, made once per config.
#[derive(Debug, Clone)]
pub struct IdentityNames {
    /// Lowercase prefix, e.g. `x-portcullis-`.
    pub prefix: String,
    /// `<prefix>principal`.
    pub principal: HeaderName,
    /// `<prefix>key-id`.
    pub key_id: HeaderName,
    /// `<prefix>scopes`.
    pub scopes: HeaderName,
    /// `<prefix>tenant`.
    pub tenant: HeaderName,
}

impl Default for IdentityNames {
    fn default() -> IdentityNames {
        IdentityNames {
            prefix: "x-portcullis-".to_string(),
            principal: HeaderName::from_static("x-portcullis-principal"),
            key_id: HeaderName::from_static("x-portcullis-key-id"),
            scopes: HeaderName::from_static("x-portcullis-scopes"),
            tenant: HeaderName::from_static("x-portcullis-tenant"),
        }
    }
}

impl IdentityNames {
    /// Names under `prefix` (already validated as a lowercase header-name prefix).
    pub fn new(prefix: &str) -> Result<IdentityNames, String> {
        let name = |suffix: &str| {
            HeaderName::from_bytes(format!("{prefix}{suffix}").as_bytes())
                .map_err(|_| format!("{prefix:?} does not make valid header names"))
        };
        Ok(IdentityNames {
            prefix: prefix.to_string(),
            principal: name("principal")?,
            key_id: name("key-id")?,
            scopes: name("scopes")?,
            tenant: name("tenant")?,
        })
    }
}

/// `name` (lowercase) starts with `prefix`, counting `_` as `-`.
fn has_prefix(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len() && name.bytes().zip(prefix.bytes()).all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

/// `name` (lowercase) is `other` (lowercase, with `-`), counting `_` as `-`.
fn same_name(name: &str, other: &str) -> bool {
    name.len() == other.len() && has_prefix(name, other)
}

/// Removes every header a client could use to pose as someone.
pub fn strip_spoofable(headers: &mut HeaderMap, names: &IdentityNames, extra: &[String]) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| has_prefix(n.as_str(), &names.prefix) || extra.iter().any(|e| same_name(n.as_str(), e)))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(&name);
    }
}

/// Strips spoofable headers and sets the verified identity.
pub fn apply(ctx: &mut RequestCtx) {
    let names = &ctx.rt.identity;
    let extra = ctx.route.as_ref().map_or(&[][..], |r| &r.strip_headers[..]);
    strip_spoofable(&mut ctx.parts.headers, names, extra);
    let headers = &mut ctx.parts.headers;
    if let Some(key) = &ctx.key
        && let Ok(v) = HeaderValue::from_str(&key.id)
    {
        headers.insert(names.key_id.clone(), v);
    }
    let Some(p) = &ctx.principal else { return };
    // Made once with the identity (a remembered token's are reused, not rebuilt).
    let [subject, scopes, tenant] = &p.id.values;
    for (name, value) in [(&names.principal, subject), (&names.scopes, scopes), (&names.tenant, tenant)] {
        if let Some(v) = value {
            headers.insert(name.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_the_namespace_goes() {
        let names = IdentityNames::new("x-portcullis-").unwrap();
        let mut h = HeaderMap::new();
        for n in ["x-portcullis-principal", "x_portcullis_principal", "x-portcullis_tenant", "x_portcullis-anything"] {
            h.insert(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_static("admin"));
        }
        h.insert("x-user-id", HeaderValue::from_static("1"));
        h.insert("x_user_id", HeaderValue::from_static("1"));
        h.insert("x-portcullisx", HeaderValue::from_static("kept"));
        h.insert("accept", HeaderValue::from_static("kept"));
        strip_spoofable(&mut h, &names, &["x-user-id".to_string()]);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(h.contains_key("x-portcullisx") && h.contains_key("accept"));
    }
}
