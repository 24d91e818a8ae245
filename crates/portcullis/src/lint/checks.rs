//! The lint checks, one function each, over the parsed model.

use super::{Finding, Rule, Severity};
use crate::config::Loaded;
use crate::config::model::{self, Config, Partition, Route};
use std::net::IpAddr;

pub(super) const RULES: &[Rule] = &[
    Rule { id: "PC000", name: "config-invalid", description: "The config does not compile" },
    Rule {
        id: "PC001",
        name: "route-limit-at-ceiling",
        description: "A route's limit is at or above the global ceiling: one flooded route can use all capacity",
    },
    Rule { id: "PC002", name: "no-global-ceiling", description: "No global ceiling bounds the gateway's total rate" },
    Rule { id: "PC003", name: "route-default-throttle", description: "A route relies on defaults.throttle" },
    Rule {
        id: "PC004",
        name: "sensitive-route-per-ip",
        description: "A login/auth-like route has no per-IP limit, or one above 10 requests per second",
    },
    Rule { id: "PC005", name: "admin-exposed", description: "The admin listener is bound to a non-loopback address" },
    Rule { id: "PC006", name: "api-key-only", description: "An API key is the only auth on a sensitive route" },
    Rule {
        id: "PC007",
        name: "authorizer-cache-ttl",
        description: "Authorizer decisions are cached longer than 300s (60s on sensitive routes)",
    },
    Rule {
        id: "PC008",
        name: "body-limit",
        description: "A route that accepts bodies allows more than 10MiB (the default limit is 1MiB)",
    },
    Rule { id: "PC009", name: "upstream-unbounded", description: "An upstream sets no timeout or max_concurrency" },
    Rule {
        id: "PC010",
        name: "plaintext-upstream",
        description: "A plaintext upstream on a non-loopback address has no request signing or TLS",
    },
    Rule { id: "PC011", name: "trust-everyone", description: "trusted_proxies contains 0.0.0.0/0 or ::/0" },
    Rule { id: "PC012", name: "no-ip-rules", description: "A public listener has no ip_rules" },
    Rule {
        id: "PC013",
        name: "sensitive-route-logging",
        description: "Access logging is off or sampled on a sensitive route",
    },
    Rule {
        id: "PC014",
        name: "policy-locks-out-admin",
        description: "The global resource policy would refuse the admin listener's own network",
    },
    Rule {
        id: "PC015",
        name: "jwt-mixed-algorithms",
        description: "A JWT provider allows HS* together with RS*/ES*/PS*/EdDSA",
    },
    Rule { id: "PC016", name: "plan-without-quota", description: "A usage plan has no quota" },
    Rule {
        id: "PC017",
        name: "public-route-waf-weak",
        description: "A public route (no auth, or auth: none) runs with the WAF off, in detect mode, or without rules",
    },
    Rule {
        id: "PC018",
        name: "waf-allow-everyone",
        description: "waf.ip_allow contains 0.0.0.0/0 or ::/0: every client skips the WAF",
    },
    Rule {
        id: "PC019",
        name: "store-fail-open",
        description: "state.on_failure is open: while Redis is down no shared limit holds",
    },
    Rule {
        id: "PC020",
        name: "redis-plaintext",
        description: "The Redis store is on another host over plain TCP, or without a password",
    },
];

fn rule(id: &str) -> Rule {
    RULES.iter().copied().find(|r| r.id == id).unwrap_or(Rule { id: "PC000", name: "config-invalid", description: "" })
}

pub(super) struct Ctx<'a> {
    pub(super) loaded: &'a Loaded,
    pub(super) out: &'a mut Vec<Finding>,
}

impl Ctx<'_> {
    fn add(&mut self, id: &'static str, severity: Severity, path: &str, message: String, fix: &str) {
        let r = rule(id);
        self.out.push(Finding {
            id: r.id,
            rule: r.name,
            severity,
            path: path.to_string(),
            file: self.loaded.file.clone(),
            line: self.loaded.locator.line_of(path),
            message,
            fix: fix.to_string(),
        });
    }
}

pub(super) fn run(cx: &mut Ctx) {
    let cfg = &cx.loaded.config.clone();
    ceilings(cx, cfg);
    for (i, r) in cfg.routes.iter().enumerate() {
        route_checks(cx, cfg, i, r);
    }
    admin(cx, cfg);
    upstreams(cx, cfg);
    proxies_and_rules(cx, cfg);
    providers_and_plans(cx, cfg);
    waf(cx, cfg);
    store(cx, cfg);
}

/// The hosts of a Redis URL (several for a cluster URL).
fn redis_hosts(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let hosts = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hosts = hosts.split('/').next().unwrap_or_default();
    hosts
        .split(',')
        .map(|h| match h.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default().to_string(),
            None => h.rsplit_once(':').map_or(h, |(host, _)| host).to_string(),
        })
        .collect()
}

fn store(cx: &mut Ctx, cfg: &Config) {
    let Some(state) = &cfg.state else { return };
    if !crate::store::is_redis_url(&state.store) {
        return;
    }
    if state.on_failure == Some(model::OnFailure::Open) {
        cx.add(
            "PC019",
            Severity::Warning,
            "state.on_failure",
            "while Redis is unreachable every route, plan and global limit admits everything: a flood then reaches \
             the backends (and the bill) unchecked"
                .to_string(),
            "use on_failure: local (each node enforces its share) or closed",
        );
    }
    let remote: Vec<String> = redis_hosts(&state.store)
        .into_iter()
        .filter(|h| h != "localhost" && !h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()))
        .collect();
    let tls = state.store.starts_with("rediss");
    let password = state.store.split_once("://").is_some_and(|(_, r)| r.contains('@'));
    if !remote.is_empty() && (!tls || !password) {
        let missing = match (tls, password) {
            (false, false) => "without TLS or a password",
            (false, true) => "over plain TCP",
            _ => "without a password",
        };
        cx.add(
            "PC020",
            Severity::Warning,
            "state.store",
            format!(
                "Redis at {} is reached {missing}: it holds key hashes and quota counts and takes admin actions",
                remote.join(", ")
            ),
            "use rediss:// with a password (redis://:PASSWORD@ or an ACL user), or keep Redis on loopback",
        );
    }
}

fn waf(cx: &mut Ctx, cfg: &Config) {
    let w = &cfg.waf;
    let has_rules = w.has_rules();
    let default_mode = model::default_waf_mode(cfg.defaults.waf.as_ref());
    for (i, r) in cfg.routes.iter().enumerate() {
        let public = matches!(r.auth, None | Some(model::RouteAuthSpec::None(_)));
        let mode = r.waf.as_ref().and_then(|x| x.mode).unwrap_or(default_mode);
        if public && (mode != model::WafMode::Block || !has_rules) {
            let (path, what) = match (has_rules, r.waf.as_ref().and_then(|x| x.mode)) {
                (false, _) => ("waf".to_string(), "the WAF has no rules (builtin: false and no crs)".to_string()),
                (true, Some(_)) => (format!("routes[{i}].waf.mode"), format!("its WAF mode is {mode:?}")),
                (true, None) => ("defaults.waf.mode".to_string(), format!("the default WAF mode is {mode:?}")),
            };
            cx.add(
                "PC017",
                Severity::Warning,
                &path,
                format!("route {:?} is public and {what}: attacks reach the backend", r.name),
                "use waf mode block on public routes (fix false positives with waf.exclude_rules / exclude_targets)",
            );
        }
    }
    for (i, entry) in w.ip_allow.iter().enumerate() {
        if let Ok(net) = entry.trim().parse::<ipnet::IpNet>()
            && net.prefix_len() == 0
        {
            cx.add(
                "PC018",
                Severity::Error,
                &format!("waf.ip_allow[{i}]"),
                format!("{entry} lets every client skip ip_deny and the WAF rules"),
                "list only the addresses of trusted scanners or monitors",
            );
        }
    }
}

/// Login, token, password and OTP endpoints by name or path, unless `sensitive` says.
fn sensitive(r: &Route) -> bool {
    if let Some(marked) = r.sensitive {
        return marked;
    }
    let text = format!("{} {}", r.name, r.matcher.path).to_ascii_lowercase();
    ["auth", "login", "signin", "token", "password", "passwd", "otp", "mfa"].iter().any(|w| text.contains(w))
}

fn throttle_of<'a>(cfg: &'a Config, r: &'a Route) -> Option<&'a model::Throttle> {
    r.throttle.as_ref().or(cfg.defaults.throttle.as_ref())
}

fn ceilings(cx: &mut Ctx, cfg: &Config) {
    let Some(g) = &cfg.global.throttle else {
        cx.add(
            "PC002",
            Severity::Warning,
            "global",
            "no global ceiling: total load is bounded only by route limits".into(),
            "set global.throttle (e.g. { rate: 10000, burst: 5000 }) as an outer limit",
        );
        return;
    };
    for (i, r) in cfg.routes.iter().enumerate() {
        let Some(t) = throttle_of(cfg, r) else { continue };
        let per_route = t.per.as_ref().is_none_or(|p| *p == Partition::Route);
        if per_route && (t.rate >= g.rate || t.burst >= g.burst) {
            let path = if r.throttle.is_some() { format!("routes[{i}].throttle") } else { format!("routes[{i}]") };
            cx.add(
                "PC001",
                Severity::Error,
                &path,
                format!(
                    "route {:?} allows rate {} burst {}, not below the global ceiling (rate {} burst {})",
                    r.name, t.rate, t.burst, g.rate, g.burst
                ),
                "give the route its own limit well below global.throttle",
            );
        }
    }
}

fn route_checks(cx: &mut Ctx, cfg: &Config, i: usize, r: &Route) {
    let p = format!("routes[{i}]");
    if r.throttle.is_none() {
        cx.add(
            "PC003",
            Severity::Info,
            &p,
            format!("route {:?} has no throttle of its own and uses defaults.throttle", r.name),
            "set routes[].throttle sized for this route",
        );
    }
    let auth = r.auth.as_ref().and_then(model::RouteAuthSpec::required);
    if sensitive(r) {
        let per_ip = throttle_of(cfg, r).filter(|t| t.per == Some(Partition::Ip));
        let ip_rule = cfg.ip_rules.iter().any(|rule| {
            rule.scope.as_ref().is_some_and(|s| s.routes.contains(&r.name))
                && (rule.limit as f64) / rule.window.0.as_secs_f64().max(1.0) <= 10.0
        });
        match per_ip {
            Some(t) if t.rate > 10.0 => cx.add(
                "PC004",
                Severity::Warning,
                &format!("{p}.throttle"),
                format!("sensitive route {:?} allows {} requests/s per IP", r.name, t.rate),
                "limit login-like routes to 10 requests/s per IP or less (throttle: { rate: 5, burst: 10, per: ip })",
            ),
            None if !ip_rule => cx.add(
                "PC004",
                Severity::Warning,
                &p,
                format!("sensitive route {:?} has no per-IP limit", r.name),
                "add throttle: { rate: 5, burst: 10, per: ip } or an ip_rule scoped to this route",
            ),
            _ => {}
        }
        if let Some(a) = auth
            && a.api_key == Some(true)
            && a.jwt.is_none()
            && a.mtls != Some(true)
            && a.external.is_none()
        {
            cx.add(
                "PC006",
                Severity::Warning,
                &format!("{p}.auth"),
                format!("API keys identify callers but do not authenticate them; route {:?} relies on one", r.name),
                "add jwt, mtls or an external authorizer to this route",
            );
        }
        let logged = cfg.log.access.as_deref() != Some("off") && r.log.as_ref().is_none_or(|l| l.sample >= 1.0);
        if !logged {
            cx.add(
                "PC013",
                Severity::Warning,
                &p,
                format!("requests to sensitive route {:?} are not all logged", r.name),
                "keep log.access on and do not sample this route",
            );
        }
    }
    if let Some(name) = auth.and_then(|a| a.external.as_ref())
        && let Some(ttl) = cfg.auth.external.get(name).map(|x| x.cache_ttl.map_or(60, |d| d.0.as_secs()))
    {
        let max = if sensitive(r) { 60 } else { 300 };
        if ttl > max {
            cx.add(
                "PC007",
                Severity::Warning,
                &format!("auth.external.{name}.cache_ttl"),
                format!(
                    "decisions for route {:?} are reused for {ttl}s: a revoked user keeps access that long",
                    r.name
                ),
                "lower cache_ttl (flush with DELETE /api/v1/auth-cache when revoking)",
            );
        }
    }
    let bodies = r.matcher.methods.is_empty()
        || r.matcher.methods.iter().any(|m| ["POST", "PUT", "PATCH"].contains(&m.to_ascii_uppercase().as_str()));
    let limit = r.limits.as_ref().and_then(|l| l.max_body_bytes).or(cfg.limits.max_body_bytes);
    if bodies && limit.is_some_and(|l| l.0 > 10 << 20) {
        cx.add(
            "PC008",
            Severity::Warning,
            &format!("{p}.limits"),
            format!("route {:?} accepts bodies over 10MiB", r.name),
            "lower max_body_bytes, or split large uploads onto a dedicated route",
        );
    }
}

fn admin(cx: &mut Ctx, cfg: &Config) {
    let Some(a) = &cfg.admin else { return };
    let ip = a.bind.parse::<std::net::SocketAddr>().ok().map(|s| s.ip());
    if ip.is_some_and(|ip| !ip.is_loopback()) {
        cx.add(
            "PC005",
            Severity::Error,
            "admin.bind",
            format!("the admin listener {} is reachable from the network", a.bind),
            "bind admin to 127.0.0.1 (reach it through SSH or a management proxy)",
        );
    }
    if let (Some(admin_ip), Some(policy)) = (ip, &cfg.policy)
        && policy.dry_run != Some(true)
    {
        let probe = if admin_ip.is_unspecified() { None } else { Some(admin_ip) };
        let refused = probe.is_some_and(|ip: IpAddr| {
            policy.deny_ips.iter().any(|n| n.contains(&ip))
                || (!policy.allow_ips.is_empty() && !policy.allow_ips.iter().any(|n| n.contains(&ip)))
        });
        if refused {
            cx.add(
                "PC014",
                Severity::Warning,
                "policy",
                format!("the global policy would refuse {admin_ip}, the admin listener's own network"),
                "add the admin network to allow_ips, or try the policy with dry_run: true first",
            );
        }
    }
}

fn upstreams(cx: &mut Ctx, cfg: &Config) {
    for (name, u) in &cfg.upstreams {
        let p = format!("upstreams.{name}");
        if u.timeout.is_none() || u.max_concurrency.is_none() {
            cx.add(
                "PC009",
                Severity::Warning,
                &p,
                format!("upstream {name:?} relies on default timeout or max_concurrency"),
                "set timeout and max_concurrency for what this backend can take",
            );
        }
        let remote_plain = u.targets.iter().any(|t| {
            crate::proxy::upstream::parse_target(t).is_ok_and(|t| {
                !t.https
                    && !t.host.eq_ignore_ascii_case("localhost")
                    && !t.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
            })
        });
        if remote_plain && u.sign.is_none() {
            cx.add(
                "PC010",
                Severity::Warning,
                &format!("{p}.targets"),
                format!("upstream {name:?} is reached in plaintext over the network and cannot tell gateway traffic from direct calls"),
                "use https:// targets with tls (client certificate) or add sign: { secret_file: … }",
            );
        }
    }
}

fn proxies_and_rules(cx: &mut Ctx, cfg: &Config) {
    for (i, n) in cfg.clients.trusted_proxies.iter().enumerate() {
        if n.prefix_len() == 0 {
            cx.add(
                "PC011",
                Severity::Error,
                &format!("clients.trusted_proxies[{i}]"),
                format!("{n} trusts every peer's X-Forwarded-For: any client can pick its IP"),
                "list only your load balancers' addresses",
            );
        }
    }
    let public = cfg
        .listeners
        .iter()
        .enumerate()
        .find(|(_, l)| l.bind.parse::<std::net::SocketAddr>().is_ok_and(|s| !s.ip().is_loopback()));
    if let Some((i, l)) = public
        && cfg.ip_rules.is_empty()
    {
        cx.add(
            "PC012",
            Severity::Warning,
            &format!("listeners[{i}]"),
            format!("listener {:?} is public and no ip_rules limit single addresses", l.name),
            "add ip_rules: [{ name: per-ip, limit: 2000, window: 5m }]",
        );
    }
}

fn providers_and_plans(cx: &mut Ctx, cfg: &Config) {
    for (name, p) in &cfg.auth.jwt {
        let hmac = p.algorithms.iter().any(|a| a.starts_with("HS"));
        let asym = p.algorithms.iter().any(|a| !a.starts_with("HS"));
        if hmac && asym {
            cx.add(
                "PC015",
                Severity::Error,
                &format!("auth.jwt.{name}.algorithms"),
                format!("provider {name:?} allows HMAC and public-key algorithms: a public key could be used as an HMAC secret"),
                "use one provider per key type",
            );
        }
    }
    for (name, plan) in &cfg.plans {
        if plan.quota.is_none() {
            cx.add(
                "PC016",
                Severity::Warning,
                &format!("plans.{name}"),
                format!("plan {name:?} has no quota: a key on it can call without bound over time"),
                "add quota: { limit: …, period: day|week|month }",
            );
        }
    }
}
