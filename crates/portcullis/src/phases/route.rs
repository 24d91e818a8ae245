//! Phase `route`: host → path template → method, against the pinned config snapshot.
//!
//! Hosts: exact names first, then `*.suffix` wildcards (longest first), then routes without
//! `hosts` (any host). Within a host group, templates without a wildcard are tried before
//! templates ending in `/*`, so `/orders/{id}` wins over `/orders/*`. The first route whose
//! methods include the request's wins; if some route matched the path but none the method,
//! the answer is 405 with `Allow`.

use crate::error::{ErrorKind, GatewayError};
use crate::pipeline::{Flow, RequestCtx};
use http::Method;
use std::collections::{BTreeMap, HashMap};

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Parameter names in order of appearance.
    pub params: Vec<String>,
    /// The template in matchit syntax with positional names (`/a/{p0}`), without any wildcard.
    canonical: String,
    /// Ends in `/*`.
    pub wildcard: bool,
    /// The literal part before the first parameter or wildcard (for `strip_prefix` checks).
    pub literal_prefix: String,
}

fn valid_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_literal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()+,;=:@".contains(c)
}

impl Template {
    /// The template `/` (used in place of an invalid one while collecting config errors).
    pub fn root() -> Template {
        Template { params: Vec::new(), canonical: "/".into(), wildcard: false, literal_prefix: "/".into() }
    }

    /// Parses `/orders/{id}`, `/files/{name}.json`, `/api/*`.
    pub fn parse(path: &str) -> Result<Template, String> {
        if !path.starts_with('/') {
            return Err(format!("path {path:?} must start with '/'"));
        }
        let (body, wildcard) = match path.strip_suffix("/*") {
            Some(b) => (b, true),
            None => (path, false),
        };
        let mut canonical = String::with_capacity(path.len() + 8);
        let mut params = Vec::new();
        let mut literal_prefix: Option<String> = None;
        let segments: Vec<&str> = body.split('/').skip(1).collect();
        let last = segments.len().saturating_sub(1);
        for (i, seg) in segments.iter().enumerate() {
            if body.is_empty() {
                break;
            }
            canonical.push('/');
            if seg.is_empty() {
                if i == last && !wildcard && i > 0 {
                    continue; // a trailing slash: `/a/` is the same resource as `/a`
                }
                if i == last && body == "/" {
                    continue;
                }
                return Err(format!("path {path:?} has an empty segment ('//')"));
            }
            if *seg == "." || *seg == ".." {
                return Err(format!("path {path:?} has a dot segment"));
            }
            match (seg.find('{'), seg.find('}')) {
                (None, None) => {
                    if let Some(bad) = seg.chars().find(|c| !valid_literal_char(*c)) {
                        let hint = if bad == '*' { " ('*' is only allowed as a final '/*' segment)" } else { "" };
                        return Err(format!("path {path:?} contains {bad:?}{hint}"));
                    }
                    canonical.push_str(seg);
                }
                (Some(open), Some(close)) if open < close => {
                    let (before, rest) = seg.split_at(open);
                    let name = &rest[1..close - open];
                    let after = &rest[close - open + 1..];
                    if !valid_param_name(name) {
                        return Err(format!("path {path:?}: parameter name {name:?} must be letters, digits or '_'"));
                    }
                    if params.iter().any(|p| p == name) {
                        return Err(format!("path {path:?}: parameter {{{name}}} appears twice"));
                    }
                    if before.chars().chain(after.chars()).any(|c| !valid_literal_char(c)) {
                        return Err(format!(
                            "path {path:?}: segment {seg:?} has one {{param}} at most, with plain text around it"
                        ));
                    }
                    if literal_prefix.is_none() {
                        literal_prefix = Some(format!("{}{before}", &canonical[..canonical.len()]));
                    }
                    canonical.push_str(before);
                    canonical.push_str(&format!("{{p{}}}", params.len()));
                    canonical.push_str(after);
                    params.push(name.to_string());
                }
                _ => {
                    return Err(format!("path {path:?}: unbalanced '{{' or '}}' in segment {seg:?}"));
                }
            }
        }
        if canonical.is_empty() {
            canonical.push('/');
        }
        let literal_prefix = literal_prefix.unwrap_or_else(|| canonical.clone());
        Ok(Template { params, canonical, wildcard, literal_prefix })
    }

    /// The keys inserted into matchit: the path with and without a trailing slash, and for a
    /// wildcard the bare prefix as well as everything below it.
    fn keys(&self) -> Vec<String> {
        let base = self.canonical.trim_end_matches('/');
        if self.wildcard {
            if base.is_empty() {
                return vec!["/".into(), "/{*rest}".into()];
            }
            return vec![base.to_string(), format!("{base}/"), format!("{base}/{{*rest}}")];
        }
        if base.is_empty() {
            return vec!["/".into()];
        }
        vec![base.to_string(), format!("{base}/")]
    }
}

/// What a route contributes to the table.
#[derive(Debug, Clone)]
pub struct RouteEntry<'a> {
    /// Route name (for conflict messages).
    pub name: &'a str,
    /// Lowercased hosts; empty = any.
    pub hosts: &'a [String],
    /// Methods; empty = any.
    pub methods: &'a [Method],
    /// Parsed path.
    pub template: &'a Template,
}

#[derive(Debug, Default)]
struct Table {
    exact: matchit::Router<Vec<usize>>,
    wildcard: matchit::Router<Vec<usize>>,
}

/// Routing table for one config snapshot.
#[derive(Debug, Default)]
pub struct Router {
    by_host: HashMap<String, Table>,
    /// `(".example.com", table)`, longest suffix first.
    wildcard_hosts: Vec<(String, Table)>,
    any_host: Table,
    /// Methods of each route (empty = any), indexed like the config's routes.
    methods: Vec<Vec<Method>>,
    /// Parameter names of each route.
    params: Vec<Vec<String>>,
}

/// The outcome of a lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Route index and its parameters in template order.
    Found(usize, Vec<(String, String)>),
    /// The path exists, but not for this method.
    MethodNotAllowed(Vec<Method>),
    /// Nothing matches.
    NotFound,
}

type Pending = BTreeMap<String, Vec<usize>>;

impl Router {
    /// Builds the table. An error names a route and says what conflicts with what.
    pub fn build(routes: &[RouteEntry<'_>]) -> Result<Router, (usize, String)> {
        // group → (exact keys, wildcard keys) → route indices
        let mut groups: BTreeMap<Option<String>, (Pending, Pending)> = BTreeMap::new();
        for (i, r) in routes.iter().enumerate() {
            let hosts: Vec<Option<String>> =
                if r.hosts.is_empty() { vec![None] } else { r.hosts.iter().cloned().map(Some).collect() };
            for host in hosts {
                let (exact, wild) = groups.entry(host).or_default();
                let bucket = if r.template.wildcard { wild } else { exact };
                for key in r.template.keys() {
                    let ids = bucket.entry(key.clone()).or_default();
                    for o in ids.iter().filter_map(|other| routes.get(*other)) {
                        if methods_overlap(r.methods, o.methods) {
                            return Err((
                                i,
                                format!(
                                    "route {:?} matches the same requests as route {:?} (same host, path and method)",
                                    r.name, o.name
                                ),
                            ));
                        }
                    }
                    ids.push(i);
                }
            }
        }
        let mut router = Router {
            methods: routes.iter().map(|r| r.methods.to_vec()).collect(),
            params: routes.iter().map(|r| r.template.params.clone()).collect(),
            ..Router::default()
        };
        for (host, (exact, wild)) in groups {
            let table = build_table(exact, wild)?;
            match host {
                None => router.any_host = table,
                Some(h) => match h.strip_prefix('*') {
                    Some(suffix) => router.wildcard_hosts.push((suffix.to_string(), table)),
                    None => {
                        router.by_host.insert(h, table);
                    }
                },
            }
        }
        router.wildcard_hosts.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        Ok(router)
    }

    /// Finds the route for a normalized host (lowercase, no port) and normalized path.
    pub fn find(&self, host: Option<&str>, path: &str, method: &Method) -> Lookup {
        let mut allow: Vec<Method> = Vec::new();
        let mut path_matched = false;
        let host_tables = host.into_iter().flat_map(|h| {
            self.by_host.get(h).into_iter().chain(
                self.wildcard_hosts
                    .iter()
                    .filter(move |(suffix, _)| h.len() > suffix.len() && h.ends_with(suffix.as_str()))
                    .map(|(_, t)| t),
            )
        });
        for table in host_tables.chain(std::iter::once(&self.any_host)) {
            for router in [&table.exact, &table.wildcard] {
                let Ok(m) = router.at(path) else { continue };
                path_matched = true;
                for id in m.value {
                    let methods = self.methods.get(*id).map(Vec::as_slice).unwrap_or_default();
                    if methods.is_empty() || methods.contains(method) {
                        let names = self.params.get(*id).map(Vec::as_slice).unwrap_or_default();
                        // matchit yields parameters in template order (p0, p1, …); a
                        // wildcard's `rest` comes last and has no name in `names`.
                        let params = names
                            .iter()
                            .zip(m.params.iter())
                            .map(|(name, (_, v))| (name.clone(), v.to_string()))
                            .collect();
                        return Lookup::Found(*id, params);
                    }
                    for meth in methods {
                        if !allow.contains(meth) {
                            allow.push(meth.clone());
                        }
                    }
                }
            }
        }
        if path_matched { Lookup::MethodNotAllowed(allow) } else { Lookup::NotFound }
    }
}

fn methods_overlap(a: &[Method], b: &[Method]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|m| b.contains(m))
}

fn build_table(exact: Pending, wild: Pending) -> Result<Table, (usize, String)> {
    let mut table = Table::default();
    for (pending, router) in [(exact, &mut table.exact), (wild, &mut table.wildcard)] {
        for (key, ids) in pending {
            let first = ids.first().copied().unwrap_or(0);
            router.insert(key.clone(), ids).map_err(|e| (first, format!("path conflicts with another route: {e}")))?;
        }
    }
    Ok(table)
}

/// On TLS, the name the client asked for in SNI must lead to the same route as `Host`;
/// otherwise a certificate (and a client certificate) presented for one host would carry
/// requests to another. Clients that coalesce connections retry a 421 on a new connection
/// (RFC 9110 §15.5.20).
fn misdirected(ctx: &RequestCtx, id: usize) -> Result<(), GatewayError> {
    let Some(sni) = ctx.conn.tls.as_ref().and_then(|t| t.sni.as_deref()) else { return Ok(()) };
    if ctx.host.as_deref() == Some(sni.trim_end_matches('.')) {
        return Ok(());
    }
    match ctx.rt.router.find(Some(sni.trim_end_matches('.')), &ctx.path, &ctx.parts.method) {
        Lookup::Found(other, _) if other == id => Ok(()),
        _ => Err(GatewayError::new(ErrorKind::Misdirected)
            .with_detail(format!("SNI {sni:?} and Host {:?} lead to different routes", ctx.host))),
    }
}

/// The phase: looks the request up and pins the route on the context.
pub fn route(ctx: &mut RequestCtx) -> Result<Flow, GatewayError> {
    if let Some(answered) = super::cors::preflight(ctx) {
        return answered;
    }
    match ctx.rt.router.find(ctx.host.as_deref(), &ctx.path, &ctx.parts.method) {
        Lookup::Found(id, params) => {
            misdirected(ctx, id)?;
            ctx.route = ctx.rt.routes.get(id).cloned();
            ctx.params = params;
            match ctx.route {
                Some(_) => Ok(Flow::Continue),
                None => Err(GatewayError::internal("route index out of range")),
            }
        }
        Lookup::MethodNotAllowed(allow) => Err(GatewayError::new(ErrorKind::MethodNotAllowed).with_allow(allow)),
        Lookup::NotFound => Err(GatewayError::new(ErrorKind::RouteNotFound)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Spec(&'static str, Vec<&'static str>, Vec<Method>, &'static str);

    fn router(specs: &[Spec]) -> Router {
        let templates: Vec<Template> = specs.iter().map(|s| Template::parse(s.3).unwrap()).collect();
        let hosts: Vec<Vec<String>> = specs.iter().map(|s| s.1.iter().map(|h| h.to_string()).collect()).collect();
        let entries: Vec<RouteEntry> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| RouteEntry { name: s.0, hosts: &hosts[i], methods: &s.2, template: &templates[i] })
            .collect();
        Router::build(&entries).unwrap()
    }

    #[test]
    fn templates_parse_and_reject() {
        let t = Template::parse("/orders/{id}/items/{item}").unwrap();
        assert_eq!(t.params, vec!["id", "item"]);
        assert_eq!(t.literal_prefix, "/orders/");
        assert!(Template::parse("/api/*").unwrap().wildcard);
        assert!(Template::parse("/").is_ok());
        assert!(Template::parse("/*").is_ok());
        assert!(Template::parse("/files/{name}.json").is_ok());
        for bad in
            ["api", "/a//b", "/a/../b", "/a/{}", "/a/{1x}", "/a/{x}{y}", "/a/*/b", "/a/{x", "/a/%2f", "/a/{x}/{x}"]
        {
            assert!(Template::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn host_method_path_params_and_wildcards() {
        let r = router(&[
            Spec("get-order", vec![], vec![Method::GET], "/orders/{id}"),
            Spec("del-order", vec![], vec![Method::DELETE], "/orders/{order_id}"),
            Spec("orders-any", vec![], vec![], "/orders/*"),
            Spec("admin-host", vec!["admin.example.com"], vec![], "/orders/{id}"),
            Spec("wild-host", vec!["*.example.com"], vec![Method::GET], "/x"),
            Spec("only-post", vec![], vec![Method::POST], "/login"),
        ]);
        assert_eq!(r.find(None, "/orders/7", &Method::GET), Lookup::Found(0, vec![("id".into(), "7".into())]));
        assert_eq!(r.find(None, "/orders/7/", &Method::GET), Lookup::Found(0, vec![("id".into(), "7".into())]));
        assert_eq!(r.find(None, "/orders/7", &Method::DELETE), Lookup::Found(1, vec![("order_id".into(), "7".into())]));
        assert_eq!(r.find(None, "/orders/7", &Method::PUT), Lookup::Found(2, vec![]));
        assert_eq!(r.find(None, "/orders/7/lines", &Method::GET), Lookup::Found(2, vec![]));
        assert_eq!(r.find(None, "/orders", &Method::GET), Lookup::Found(2, vec![]));
        assert_eq!(r.find(Some("admin.example.com"), "/orders/7", &Method::GET).route(), Some(3));
        assert_eq!(r.find(Some("a.example.com"), "/x", &Method::GET).route(), Some(4));
        assert_eq!(r.find(Some("example.com"), "/x", &Method::GET), Lookup::NotFound);
        assert_eq!(r.find(None, "/login", &Method::GET), Lookup::MethodNotAllowed(vec![Method::POST]));
        assert_eq!(r.find(None, "/nope", &Method::GET), Lookup::NotFound);
    }

    #[test]
    fn conflicting_routes_are_refused() {
        let templates = [Template::parse("/a").unwrap(), Template::parse("/a/").unwrap()];
        let none: Vec<String> = vec![];
        let get = [Method::GET];
        let entries = [
            RouteEntry { name: "one", hosts: &none, methods: &get, template: &templates[0] },
            RouteEntry { name: "two", hosts: &none, methods: &[], template: &templates[1] },
        ];
        let err = Router::build(&entries).unwrap_err();
        assert_eq!(err.0, 1);
        assert!(err.1.contains("\"one\""), "{}", err.1);
    }

    impl Lookup {
        fn route(&self) -> Option<usize> {
            match self {
                Lookup::Found(i, _) => Some(*i),
                _ => None,
            }
        }
    }
}
