//! Config model → validated `Runtime`. Every problem is collected with its `file:line`, so a
//! user fixes a file in one pass. State worth keeping (buckets, upstream pools and counters)
//! is carried over from the previous snapshot when its settings did not change.

use super::load::{ConfigError, ConfigErrors, Loaded};
use super::model::{self, ClientAuthMode, Throttle};
use super::runtime::*;
use crate::phases::route::{RouteEntry, Router, Template};
use crate::proxy::upstream::Upstream;
use crate::tls::{self, TlsFiles};
use http::Method;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::compile_auth;
pub use super::compile_limits::DEFAULT_ROUTE_THROTTLE;
use super::compile_limits::{checked_throttle, ip_rules, limit_rt, warn_routes_at_ceiling};
use super::compile_waf;

/// Collects errors while compiling.
pub(super) struct Ctx<'a> {
    loaded: &'a Loaded,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    /// An error at a config path.
    pub(super) fn err(&mut self, path: &str, msg: impl Into<String>) {
        let e = self.loaded.error_at(path, msg);
        self.errors.push(e);
    }

    /// An error `<field> must be <msg>` at `<path>.<field>` for each check that failed.
    pub(super) fn require(&mut self, path: &str, checks: &[(&str, bool, &str)]) {
        for (field, ok, msg) in checks {
            if !ok {
                self.err(&format!("{path}.{field}"), format!("{field} must be {msg}"));
            }
        }
    }

    /// Errors so far.
    pub(super) fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// A path from the config, relative to the config file's directory.
    pub(super) fn resolve(&self, p: &std::path::Path) -> std::path::PathBuf {
        self.loaded.resolve(p)
    }
}

/// Validates and compiles. `previous` lends state that survives a reload.
pub fn compile(loaded: Loaded, previous: Option<&Runtime>) -> Result<Runtime, ConfigErrors> {
    let mut cx = Ctx { loaded: &loaded, errors: Vec::new() };
    let cfg = &loaded.config;
    let limits = limits(&mut cx, &cfg.limits);
    let (listeners, mut watched) = listeners(&mut cx, cfg);
    let admin = admin(&mut cx, cfg.admin.as_ref());
    let upstreams = upstreams(&mut cx, cfg, previous);
    let default_throttle = match &cfg.defaults.throttle {
        Some(t) => checked_throttle(&mut cx, "defaults.throttle", t, true),
        None => DEFAULT_ROUTE_THROTTLE,
    };
    let global = cfg.global.throttle.as_ref().map(|t| {
        let t = checked_throttle(&mut cx, "global.throttle", t, false);
        limit_rt(t, "global", "global".to_string(), limits.max_rate_keys, previous.and_then(|p| p.global.as_ref()))
    });
    let route_names: HashSet<&str> = cfg.routes.iter().map(|r| r.name.as_str()).collect();
    let ip_rules = ip_rules(
        &mut cx,
        &cfg.ip_rules,
        &route_names,
        limits.max_rate_keys,
        previous.map_or(&[][..], |p| &p.ip_rules[..]),
    );
    let scoped: HashSet<&str> =
        cfg.ip_rules.iter().flat_map(|r| r.scope.iter().flat_map(|s| s.routes.iter().map(String::as_str))).collect();
    let (auth, identity) = compile_auth::auth(&mut cx, cfg, previous);
    let signers = compile_auth::signers(&mut cx, cfg);
    let policy = compile_auth::policy(&mut cx, "policy", "global", cfg.policy.as_ref());
    let defaults = RouteDefaults {
        throttle: &default_throttle,
        limits: &limits,
        ip_scoped: &scoped,
        auth: &auth,
        signers: &signers,
    };
    let waf = compile_waf::waf(&mut cx, cfg, &mut watched, previous.map(|p| &p.waf));
    let (routes, router) = routes(&mut cx, cfg, &upstreams, &defaults, previous);
    let (key_header, store_url) = keys_and_plans(&mut cx, cfg, &route_names);
    let access_log = access_target(&mut cx, cfg.log.access.as_deref());
    if let AccessTarget::File(p) = &access_log {
        watched.retain(|w| w != p);
    }
    let mut errors = cx.errors;
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Err(ConfigErrors(errors));
    }
    watched.insert(0, loaded.path.clone());
    warn_routes_at_ceiling(&routes, global.as_ref());
    Ok(Runtime {
        generation: previous.map_or(1, |p| p.generation + 1),
        listeners,
        admin,
        limits,
        trusted_proxies: cfg.clients.trusted_proxies.clone(),
        client_ip_header: cfg.clients.client_ip_header,
        router,
        routes,
        upstreams,
        global,
        ip_rules,
        auth,
        identity,
        policy,
        key_header,
        store: store_url,
        access_log,
        watched_files: watched,
        waf,
        loaded,
    })
}

fn limits(cx: &mut Ctx, l: &model::Limits) -> Limits {
    let out = Limits {
        max_header_bytes: l.max_header_bytes.map_or(16 * 1024, |s| s.as_usize()),
        max_headers: l.max_headers.map_or(100, |n| n as usize),
        max_uri_bytes: l.max_uri_bytes.map_or(8 * 1024, |s| s.as_usize()),
        max_body_bytes: l.max_body_bytes.map_or(1 << 20, |s| s.0),
        header_timeout: l.header_timeout.map_or(Duration::from_secs(10), |d| d.0),
        body_timeout: l.body_timeout.map_or(Duration::from_secs(30), |d| d.0),
        max_conns_per_ip: l.max_conns_per_ip.unwrap_or(256),
        max_conns: l.max_conns.unwrap_or(20_000),
        h2_max_concurrent_streams: l.h2_max_concurrent_streams.unwrap_or(100),
        h2_max_pending_resets: l.h2_max_pending_resets.map_or(20, |n| n as usize),
        shutdown_timeout: l.shutdown_timeout.map_or(Duration::from_secs(30), |d| d.0),
        max_rate_keys: l.max_rate_keys.map_or(1 << 20, |n| n as usize),
    };
    let checks: [(&str, bool, &str); 9] = [
        ("limits.max_header_bytes", (1024..=1 << 20).contains(&out.max_header_bytes), "must be between 1KiB and 1MiB"),
        ("limits.max_headers", (8..=1000).contains(&out.max_headers), "must be between 8 and 1000"),
        ("limits.max_uri_bytes", (256..=64 * 1024).contains(&out.max_uri_bytes), "must be between 256 and 64KiB"),
        ("limits.header_timeout", out.header_timeout >= Duration::from_millis(100), "must be at least 100ms"),
        ("limits.body_timeout", out.body_timeout >= Duration::from_millis(100), "must be at least 100ms"),
        ("limits.max_conns_per_ip", out.max_conns_per_ip >= 1, "must be at least 1"),
        ("limits.max_conns", out.max_conns >= 1, "must be at least 1"),
        ("limits.h2_max_concurrent_streams", out.h2_max_concurrent_streams >= 1, "must be at least 1"),
        ("limits.shutdown_timeout", out.shutdown_timeout <= Duration::from_secs(3600), "must be at most 1h"),
    ];
    for (path, ok, msg) in checks {
        if !ok {
            cx.err(path, format!("{path} {msg}"));
        }
    }
    out
}

fn parse_bind(cx: &mut Ctx, path: &str, bind: &str) -> Option<SocketAddr> {
    match bind.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.err(path, format!("{path}: {bind:?} is not an address like 127.0.0.1:8080 or [::]:8443"));
            None
        }
    }
}

fn listeners(cx: &mut Ctx, cfg: &model::Config) -> (Vec<ListenerRt>, Vec<std::path::PathBuf>) {
    let mut out = Vec::new();
    let mut watched = Vec::new();
    let mut names = HashSet::new();
    let mut binds = HashSet::new();
    if cfg.listeners.is_empty() {
        cx.err(
            "listeners",
            "at least one listener is required, e.g. listeners: [{ name: public, bind: \"127.0.0.1:8080\" }]",
        );
    }
    for (i, l) in cfg.listeners.iter().enumerate() {
        let p = format!("listeners[{i}]");
        if !valid_name(&l.name) {
            cx.err(
                &format!("{p}.name"),
                format!("listener name {:?} must be letters, digits, '-', '_' or '.'", l.name),
            );
        }
        if !names.insert(l.name.clone()) {
            cx.err(&format!("{p}.name"), format!("listener name {:?} is used twice", l.name));
        }
        let Some(bind) = parse_bind(cx, &format!("{p}.bind"), &l.bind) else {
            continue;
        };
        if bind.port() != 0 && !binds.insert(bind) {
            cx.err(&format!("{p}.bind"), format!("address {bind} is used by two listeners"));
        }
        let http2 = l.http2.unwrap_or(true);
        let tls = l.tls.as_ref().and_then(|t| {
            let cert = cx.loaded.resolve(&t.cert);
            let key = cx.loaded.resolve(&t.key);
            let ca = t.client_auth.as_ref().and_then(|c| c.ca.as_ref()).map(|c| cx.loaded.resolve(c));
            let mode = t.client_auth.as_ref().map_or(ClientAuthMode::None, |c| c.mode);
            if mode == ClientAuthMode::None && ca.is_some() {
                cx.err(
                    &format!("{p}.tls.client_auth.mode"),
                    "client_auth.ca is set but mode is none: set mode to optional or required",
                );
            }
            watched.extend([cert.clone(), key.clone()]);
            watched.extend(ca.clone());
            let files = TlsFiles { cert: &cert, key: &key, client_ca: ca.as_deref(), mode, http2 };
            match tls::server_config(&files) {
                Ok(c) => Some(c),
                Err(e) => {
                    cx.err(&format!("{p}.tls"), e);
                    None
                }
            }
        });
        out.push(ListenerRt { name: Arc::from(l.name.as_str()), bind, tls, http2 });
    }
    (out, watched)
}

fn admin(cx: &mut Ctx, a: Option<&model::Admin>) -> Option<AdminRt> {
    let a = a?;
    let bind = parse_bind(cx, "admin.bind", &a.bind)?;
    let token_sha256 = a.token_sha256.as_ref().and_then(|t| {
        let mut out = [0u8; 32];
        match hex::decode_to_slice(t.trim(), &mut out) {
            Ok(()) => Some(out),
            Err(_) => {
                cx.err("admin.token_sha256", "admin.token_sha256 must be 64 hex characters (sha256sum of the token)");
                None
            }
        }
    });
    Some(AdminRt { bind, token_sha256 })
}

fn upstreams(cx: &mut Ctx, cfg: &model::Config, previous: Option<&Runtime>) -> BTreeMap<String, Arc<Upstream>> {
    let mut out = BTreeMap::new();
    for (name, u) in &cfg.upstreams {
        let p = format!("upstreams.{name}");
        if !valid_name(name) {
            cx.err(&p, format!("upstream name {name:?} must be letters, digits, '-', '_' or '.'"));
        }
        if u.targets.is_empty() {
            cx.err(&format!("{p}.targets"), "an upstream needs at least one target");
        }
        let positive = [
            ("timeout", u.timeout.is_none_or(|d| !d.0.is_zero())),
            ("connect_timeout", u.connect_timeout.is_none_or(|d| !d.0.is_zero())),
            ("max_concurrency", u.max_concurrency != Some(0)),
            ("eject.consecutive_failures", u.eject.as_ref().is_none_or(|e| e.consecutive_failures > 0)),
            ("pool.idle_timeout", u.pool.as_ref().and_then(|p| p.idle_timeout).is_none_or(|d| !d.0.is_zero())),
        ];
        for (field, ok) in positive {
            if !ok {
                cx.err(&format!("{p}.{field}"), format!("{p}.{field} must be above zero"));
            }
        }
        let tls = compile_auth::upstream_tls(cx, &p, u);
        match Upstream::build(name, u, previous.and_then(|r| r.upstreams.get(name)), tls.as_ref()) {
            Ok(up) => {
                out.insert(name.clone(), up);
            }
            Err(e) => {
                let bad = u.targets.iter().position(|t| crate::proxy::upstream::parse_target(t).is_err()).unwrap_or(0);
                cx.err(&format!("{p}.targets[{bad}]"), e);
            }
        }
    }
    out
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn valid_host(h: &str) -> bool {
    let name = h.strip_prefix("*.").unwrap_or(h);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

/// What a route inherits when it does not say otherwise.
struct RouteDefaults<'a> {
    throttle: &'a Throttle,
    limits: &'a Limits,
    /// Routes some IP rule is scoped to.
    ip_scoped: &'a HashSet<&'a str>,
    /// Compiled providers routes refer to.
    auth: &'a compile_auth::AuthRt,
    /// Request signers by upstream name.
    signers: &'a BTreeMap<String, Arc<crate::phases::sign::SignRt>>,
}

fn routes(
    cx: &mut Ctx,
    cfg: &model::Config,
    upstreams: &BTreeMap<String, Arc<Upstream>>,
    defaults: &RouteDefaults<'_>,
    previous: Option<&Runtime>,
) -> (Vec<Arc<RouteRt>>, Router) {
    let mut names = HashSet::new();
    let mut parsed: Vec<(Template, Vec<String>, Vec<Method>)> = Vec::new();
    let mut out = Vec::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        if !valid_name(&r.name) {
            cx.err(&format!("{p}.name"), format!("route name {:?} must be letters, digits, '-', '_' or '.'", r.name));
        }
        if !names.insert(r.name.as_str()) {
            cx.err(&format!("{p}.name"), format!("route name {:?} is used twice", r.name));
        }
        let template = Template::parse(&r.matcher.path).unwrap_or_else(|e| {
            cx.err(&format!("{p}.match.path"), e);
            Template::root()
        });
        let mut methods = Vec::new();
        for (j, m) in r.matcher.methods.iter().enumerate() {
            match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(m) if !methods.contains(&m) => methods.push(m),
                Ok(_) => cx.err(&format!("{p}.match.methods[{j}]"), format!("method {m:?} is listed twice")),
                Err(_) => cx.err(&format!("{p}.match.methods[{j}]"), format!("{m:?} is not an HTTP method")),
            }
        }
        let mut hosts = Vec::new();
        for (j, h) in r.matcher.hosts.iter().enumerate() {
            let h = h.to_ascii_lowercase();
            if valid_host(&h) {
                hosts.push(h.trim_end_matches('.').to_string());
            } else {
                cx.err(
                    &format!("{p}.match.hosts[{j}]"),
                    format!("{h:?} is not a host name (a leading '*.' wildcard is allowed; no port)"),
                );
            }
        }
        if let Some(sp) = &r.strip_prefix {
            let ok = sp.starts_with('/')
                && !sp.ends_with('/')
                && template.literal_prefix.starts_with(sp.as_str())
                && matches!(template.literal_prefix[sp.len()..].chars().next(), None | Some('/'));
            if !ok {
                cx.err(
                    &format!("{p}.strip_prefix"),
                    format!("strip_prefix {sp:?} must start with '/', not end with '/', and be whole leading segments of the path {:?}", r.matcher.path),
                );
            }
        }
        let upstream = match upstreams.get(&r.upstream) {
            Some(u) => Some(u.clone()),
            None => {
                if !cfg.upstreams.contains_key(&r.upstream) {
                    cx.err(
                        &format!("{p}.upstream"),
                        format!("upstream {:?} is not defined under upstreams", r.upstream),
                    );
                }
                None
            }
        };
        let throttle = match &r.throttle {
            Some(t) => checked_throttle(cx, &format!("{p}.throttle"), t, true),
            None => defaults.throttle.clone(),
        };
        let max_body_bytes =
            r.limits.as_ref().and_then(|l| l.max_body_bytes).map_or(defaults.limits.max_body_bytes, |s| s.0);
        let log_sample = r.log.as_ref().map_or(1.0, |l| l.sample);
        if !(0.0..=1.0).contains(&log_sample) {
            cx.err(&format!("{p}.log.sample"), "log.sample must be between 0.0 and 1.0");
        }
        let (route_auth, strip_headers) = compile_auth::route_auth(cx, &p, r.auth.as_ref(), defaults.auth, &cfg.auth);
        let policy = compile_auth::policy(cx, &format!("{p}.policy"), &r.name, r.policy.as_ref());
        let cors = compile_auth::cors(cx, &format!("{p}.cors"), r.cors.as_ref(), &r.matcher.methods);
        let waf = compile_waf::route_waf(cx, &p, r.waf.as_ref(), cfg);
        let prev_limit = previous.and_then(|pr| pr.routes.iter().find(|x| *x.name == *r.name)).map(|x| &x.limit);
        if let Some(upstream) = upstream {
            out.push(Arc::new(RouteRt {
                name: Arc::from(r.name.as_str()),
                upstream,
                strip_prefix: r.strip_prefix.clone(),
                limit: limit_rt(
                    throttle,
                    "route",
                    format!("route/{}", r.name),
                    defaults.limits.max_rate_keys,
                    prev_limit,
                ),
                max_body_bytes,
                log_sample,
                hide_headers: r.hide_headers.unwrap_or(false),
                auth: route_auth,
                sign: defaults.signers.get(&r.upstream).cloned(),
                cors,
                strip_headers,
                policy,
                has_ip_rules: defaults.ip_scoped.contains(r.name.as_str()),
                waf,
                metrics: std::sync::OnceLock::new(),
            }));
        }
        parsed.push((template, hosts, methods));
    }
    let entries: Vec<RouteEntry> = cfg
        .routes
        .iter()
        .zip(&parsed)
        .map(|(r, (template, hosts, methods))| RouteEntry { name: &r.name, hosts, methods, template })
        .collect();
    let router = match Router::build(&entries) {
        Ok(r) => r,
        Err((i, msg)) => {
            cx.err(&format!("routes[{i}].match"), msg);
            Router::default()
        }
    };
    (out, router)
}

/// The API key header, the store URL (defaulting to `sqlite:portcullis.db` next to the
/// config when keys or plans are used), and every problem in `plans` and key-related route
/// settings.
fn keys_and_plans(
    cx: &mut Ctx,
    cfg: &model::Config,
    route_names: &HashSet<&str>,
) -> (http::HeaderName, Option<crate::store::StoreSettings>) {
    let header = cfg.api_keys.header.as_deref().unwrap_or("x-api-key");
    let key_header = http::HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes()).unwrap_or_else(|_| {
        cx.err("api_keys.header", format!("{header:?} is not a header name"));
        http::HeaderName::from_static("x-api-key")
    });
    let keyed = |r: &model::Route| r.auth.as_ref().and_then(|a| a.required()).and_then(|a| a.api_key).unwrap_or(false);
    let uses_keys = cfg.routes.iter().any(keyed);
    for (i, r) in cfg.routes.iter().enumerate() {
        let keyed = keyed(r);
        let per_key = |t: &Option<Throttle>| t.as_ref().and_then(|t| t.per.as_ref()) == Some(&model::Partition::Key);
        if !keyed && (per_key(&r.throttle) || (r.throttle.is_none() && per_key(&cfg.defaults.throttle))) {
            cx.err(
                &format!("routes[{i}].throttle.per"),
                "per: key needs the route to require a key (auth: { api_key: true })",
            );
        }
    }
    for (name, plan) in &cfg.plans {
        if !valid_name(name) {
            cx.err(&format!("plans.{name}"), format!("plan name {name:?} must be letters, digits, '-', '_' or '.'"));
        }
        for (path, msg) in crate::keys::plans::plan_problems(plan, route_names) {
            cx.err(&format!("plans.{name}.{path}"), format!("plans.{name}.{path}: {msg}"));
        }
    }
    let store_url = match &cfg.state {
        Some(s) => Some(store_settings(cx, s)),
        None if uses_keys || !cfg.plans.is_empty() => Some(crate::store::StoreSettings {
            url: "sqlite:portcullis.db".to_string(),
            prefix: DEFAULT_PREFIX.to_string(),
            on_failure: model::OnFailure::Local,
            timeout: DEFAULT_STORE_TIMEOUT,
            tls: None,
        }),
        None => None,
    };
    (key_header, store_url)
}

const DEFAULT_PREFIX: &str = "portcullis";
const DEFAULT_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(50);

fn store_settings(cx: &mut Ctx, s: &model::State) -> crate::store::StoreSettings {
    let redis = crate::store::is_redis_url(&s.store);
    let ok = redis || s.store == "memory" || s.store.strip_prefix("sqlite:").is_some_and(|p| !p.is_empty());
    if !ok {
        cx.err("state.store", format!("state.store {:?}: use sqlite:PATH, memory or redis://host:port", s.store));
    }
    let tls = s.tls.as_ref().and_then(|t| store_tls(cx, t));
    if s.tls.is_some() && !s.store.starts_with("rediss") {
        cx.err("state.tls", "state.tls needs a rediss:// (or rediss+cluster://) store");
    }
    if redis && let Err(e) = crate::store::redis_conn::Target::parse(&s.store, DEFAULT_STORE_TIMEOUT, tls.as_ref()) {
        cx.err("state.store", format!("state.store: {}: {e}", crate::store::redis::redact(&s.store)));
    }
    if !redis && (s.prefix.is_some() || s.on_failure.is_some() || s.timeout.is_some()) {
        cx.err("state", "state.prefix, state.on_failure and state.timeout apply to a Redis store only");
    }
    let prefix = s.prefix.clone().unwrap_or_else(|| DEFAULT_PREFIX.to_string());
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        cx.err("state.prefix", format!("state.prefix {prefix:?} must be letters, digits, '-', '_' or '.'"));
    }
    let timeout = s.timeout.map_or(DEFAULT_STORE_TIMEOUT, |d| d.0);
    if timeout.is_zero() || timeout > std::time::Duration::from_secs(5) {
        cx.err("state.timeout", "state.timeout must be above 0 and at most 5s");
    }
    crate::store::StoreSettings {
        url: s.store.clone(),
        prefix,
        on_failure: s.on_failure.unwrap_or_default(),
        timeout,
        tls,
    }
}

fn store_tls(cx: &mut Ctx, t: &model::StoreTls) -> Option<crate::store::StoreTlsPem> {
    let mut read = |field: &str, p: &std::path::Path| {
        let path = cx.resolve(p);
        std::fs::read(&path)
            .map_err(|e| cx.err(&format!("state.tls.{field}"), format!("state.tls.{field}: {}: {e}", path.display())))
            .ok()
    };
    let ca = read("ca", &t.ca)?;
    let client = match (&t.cert, &t.key) {
        (Some(c), Some(k)) => Some((read("cert", c)?, read("key", k)?)),
        (None, None) => None,
        _ => {
            cx.err("state.tls", "state.tls.cert and state.tls.key go together");
            None
        }
    };
    Some(crate::store::StoreTlsPem { ca, client })
}

fn access_target(cx: &mut Ctx, v: Option<&str>) -> AccessTarget {
    match v.map(str::trim) {
        None | Some("stdout") => AccessTarget::Stdout,
        Some("stderr") => AccessTarget::Stderr,
        Some("off") => AccessTarget::Off,
        Some("") => {
            cx.err("log.access", "log.access must be stdout, stderr, off or a file path");
            AccessTarget::Off
        }
        Some(path) => AccessTarget::File(cx.loaded.resolve(std::path::Path::new(path))),
    }
}
