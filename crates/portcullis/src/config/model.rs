//! The configuration file's shape. Every struct rejects unknown keys, so a typo is an error
//! with `file:line`, never a silently ignored setting. Defaults live in `compile.rs` where a
//! value is optional here, so that `lint` can tell "unset" from "set to the default".

use super::units::{Dur, Size};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub use super::model_auth::*;
pub use super::model_waf::*;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the gateway accepts client traffic. Static: changes need a restart.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// The admin listener (health, metrics, admin API). Static.
    #[serde(default)]
    pub admin: Option<Admin>,
    /// How to identify clients behind proxies.
    #[serde(default)]
    pub clients: Clients,
    /// Request and connection limits.
    #[serde(default)]
    pub limits: Limits,
    /// The global ceiling: an outer bucket over all routes, never a route's own budget.
    #[serde(default)]
    pub global: Global,
    /// Settings every route inherits unless it sets its own.
    #[serde(default)]
    pub defaults: Defaults,
    /// Named backends.
    #[serde(default)]
    pub upstreams: BTreeMap<String, Upstream>,
    /// Routes, matched by host, then path, then method.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Access log.
    #[serde(default)]
    pub log: Log,
    /// Per-IP rate-based rules, checked before anything else about a request.
    #[serde(default)]
    pub ip_rules: Vec<IpRule>,
    /// Durable state (keys, plans, quota counts). Static.
    #[serde(default)]
    pub state: Option<State>,
    /// Where API keys are read from.
    #[serde(default)]
    pub api_keys: ApiKeys,
    /// Usage plans by name.
    #[serde(default)]
    pub plans: BTreeMap<String, Plan>,
    /// Authentication providers.
    #[serde(default)]
    pub auth: AuthProviders,
    /// Resource policy applied to every route (routes may add their own).
    #[serde(default)]
    pub policy: Option<Policy>,
    /// The web application firewall (built-in rules unless `crs` is set).
    #[serde(default)]
    pub waf: Waf,
}

/// Durable state.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// `sqlite:PATH` (relative to the config file), `memory`, or `redis://[:password@]host:port[/db]`
    /// (`rediss://` for TLS) to share keys, plans, quotas, limits and admin actions across nodes.
    pub store: String,
    /// Redis only: prefix of every Redis key name and channel (default `portcullis`), so several
    /// gateways can share one Redis.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Redis only: what shared limits do while Redis cannot be reached. `local` (default): each
    /// node enforces its share (limit / nodes seen) from memory; `open`: shared limits admit;
    /// `closed`: shared limits refuse (429 `throttle.store_unavailable`). Quotas keep counting
    /// locally in every mode and are added to Redis when it is back.
    #[serde(default)]
    pub on_failure: Option<OnFailure>,
    /// Redis only: how long one Redis call may take before the node treats Redis as down
    /// (default `50ms`).
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// `rediss://` only: trust this CA (PEM) instead of the system's, and optionally present
    /// a client certificate (Redis `tls-auth-clients`). Paths are relative to the config file.
    #[serde(default)]
    pub tls: Option<StoreTls>,
}

/// TLS to Redis.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreTls {
    /// CA certificate(s), PEM.
    pub ca: PathBuf,
    /// Client certificate chain, PEM (with `key`).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Client private key, PEM (with `cert`).
    #[serde(default)]
    pub key: Option<PathBuf>,
}

/// Behaviour of shared limits while the store is unreachable.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Each node enforces limit / nodes from memory.
    #[default]
    Local,
    /// Shared limits admit everything.
    Open,
    /// Shared limits refuse everything.
    Closed,
}

/// API key settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeys {
    /// Request header carrying the key (default `x-api-key`). It is removed before forwarding.
    #[serde(default)]
    pub header: Option<String>,
}

/// A usage plan.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Each key's limit over all routes.
    #[serde(default)]
    pub throttle: Option<Throttle>,
    /// Each key's quota.
    #[serde(default)]
    pub quota: Option<Quota>,
    /// Each key's limit on a given route (checked before the plan's `throttle`).
    #[serde(default)]
    pub routes: BTreeMap<String, Throttle>,
}

/// Requests per period per key.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Requests per period.
    pub limit: u64,
    /// `day`, `week` (from Monday) or `month`, in UTC.
    pub period: crate::keys::quota::Period,
    /// Shift of the period start after 00:00 UTC (e.g. `2h`).
    #[serde(default)]
    pub offset: Option<Dur>,
}

/// A client-facing listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Name used in logs and metrics.
    pub name: String,
    /// Address and port, e.g. `0.0.0.0:8080` or `[::]:8443`.
    pub bind: String,
    /// TLS termination; plaintext when absent.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// Accept HTTP/2 (ALPN `h2` over TLS, prior knowledge on plaintext). Default true.
    #[serde(default)]
    pub http2: Option<bool>,
}

/// Server certificate and optional client-certificate verification.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Client certificates (mTLS).
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
}

/// mTLS settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    /// PEM bundle of CAs that sign client certificates.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// `none`, `optional` (verify if presented) or `required` (refuse the handshake without one).
    #[serde(default)]
    pub mode: ClientAuthMode,
}

/// When a client certificate is needed.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    /// Never ask for one.
    #[default]
    None,
    /// Ask; verify it against `ca` when presented; allow clients without one.
    Optional,
    /// Refuse the TLS handshake without a certificate signed by `ca`.
    Required,
}

/// The admin listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Address and port; loopback by default practice, e.g. `127.0.0.1:9901`.
    pub bind: String,
    /// Hex SHA-256 of the bearer token for `/api/v1/*`. Without it those endpoints are off.
    #[serde(default)]
    pub token_sha256: Option<String>,
}

/// Client identification.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Clients {
    /// Peers whose forwarding headers are believed (CIDRs). Empty: the socket address is
    /// the client.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub trusted_proxies: Vec<IpNet>,
    /// Which header trusted proxies use to pass the client address.
    #[serde(default)]
    pub client_ip_header: ClientIpHeader,
}

/// The forwarding header read from trusted proxies. Only one is read, so a client cannot add
/// the other kind to spoof its address.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ClientIpHeader {
    /// `X-Forwarded-For`, walked right to left.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=...`, walked right to left.
    Forwarded,
}

/// Request and connection limits. All optional; see docs/config.md for the defaults.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Total bytes of all request header lines (431 beyond).
    pub max_header_bytes: Option<Size>,
    /// Number of request headers (431 beyond).
    pub max_headers: Option<u32>,
    /// Length of the request target (414 beyond).
    pub max_uri_bytes: Option<Size>,
    /// Request body size (413 beyond), also for chunked bodies.
    pub max_body_bytes: Option<Size>,
    /// Time to receive a request's headers (slowloris). Also bounds the TLS handshake and how
    /// long an HTTP/1.1 keep-alive connection may wait for its next request.
    pub header_timeout: Option<Dur>,
    /// Time to receive a whole request body (slow POST).
    pub body_timeout: Option<Dur>,
    /// Open connections per client IP.
    pub max_conns_per_ip: Option<u32>,
    /// Open client connections in all.
    pub max_conns: Option<u32>,
    /// HTTP/2 concurrent streams per connection.
    pub h2_max_concurrent_streams: Option<u32>,
    /// HTTP/2 streams a client may reset before the connection is closed (rapid reset).
    pub h2_max_pending_resets: Option<u32>,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_timeout: Option<Dur>,
    /// Keys (client IPs, header values) each partitioned bucket and each IP rule tracks at
    /// most; idle ones are evicted first.
    pub max_rate_keys: Option<u32>,
}

/// The outer ceiling.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Global {
    /// Bucket shared by all routes, checked after the route's own bucket.
    #[serde(default)]
    pub throttle: Option<Throttle>,
}

/// What every route inherits.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Each route gets its own bucket with these numbers unless it sets `throttle`.
    #[serde(default)]
    pub throttle: Option<Throttle>,
    /// The WAF mode of routes that do not set one.
    #[serde(default)]
    pub waf: Option<WafDefaults>,
}

/// A token bucket: `rate` tokens per second, `burst` tokens at most.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    /// Tokens per second (fractional allowed).
    pub rate: f64,
    /// Bucket size.
    pub burst: u32,
    /// How a route's bucket is partitioned: `route` (one bucket, the default), `ip` (one per
    /// client IP, IPv6 per /64), or `header:<name>` (one per value of that header). Not
    /// allowed on `global`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per: Option<Partition>,
    /// Cluster mode (Redis store) only: check every request against Redis in one atomic
    /// round trip instead of spending tokens leased to this node. Exact, at the cost of a
    /// Redis call per request: for low limits such as a login endpoint.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,
}

/// What a partitioned bucket is keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partition {
    /// One bucket for the route.
    Route,
    /// One bucket per client IP (IPv6 per /64).
    Ip,
    /// One bucket per API key (the route must require one).
    Key,
    /// One bucket per value of a request header (requests without it share one).
    Header(String),
}

impl std::str::FromStr for Partition {
    type Err = String;
    fn from_str(s: &str) -> Result<Partition, String> {
        match s {
            "route" => Ok(Partition::Route),
            "ip" => Ok(Partition::Ip),
            "key" => Ok(Partition::Key),
            _ => match s.strip_prefix("header:") {
                Some(name) if http::HeaderName::from_bytes(name.as_bytes()).is_ok() => {
                    Ok(Partition::Header(name.to_ascii_lowercase()))
                }
                _ => Err(format!("per must be route, ip, key or header:<name>, not {s:?}")),
            },
        }
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Partition::Route => f.write_str("route"),
            Partition::Ip => f.write_str("ip"),
            Partition::Key => f.write_str("key"),
            Partition::Header(h) => write!(f, "header:{h}"),
        }
    }
}

impl schemars::JsonSchema for Partition {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Partition".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "route (one bucket), ip (per client IP, IPv6 per /64), key (per API key) or header:<name>",
            "type": "string",
            "pattern": "^(route|ip|key|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$"
        })
    }
}

impl<'de> Deserialize<'de> for Partition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Partition, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Partition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A rate-based rule on client IPs (like AWS WAF's): more than `limit` requests from one IP
/// within `window` and the IP is refused until its rate falls back under the limit.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpRule {
    /// Unique name, in logs, metrics and the admin API.
    pub name: String,
    /// Requests allowed per window per IP.
    pub limit: u64,
    /// `1m`, `2m`, `5m` or `10m`.
    pub window: Dur,
    /// `block` (refuse) or `count` (log and count only).
    #[serde(default)]
    pub action: IpRuleAction,
    /// Status of a refusal: 403 (default) or 429.
    #[serde(default)]
    pub status: Option<u16>,
    /// Which requests the rule counts; all when absent.
    #[serde(default)]
    pub scope: Option<IpRuleScope>,
    /// IPv6 clients are counted per this prefix length (default 64).
    #[serde(default)]
    pub ipv6_prefix: Option<u8>,
}

/// What an IP rule does to an IP over its limit.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IpRuleAction {
    /// Refuse its requests.
    #[default]
    Block,
    /// Log and count only (to try a rule before enforcing it).
    Count,
}

/// The requests an IP rule counts.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpRuleScope {
    /// Only requests to these routes.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Only requests whose normalized path starts with this (whole segments).
    #[serde(default)]
    pub path_prefix: Option<String>,
}

/// A named backend.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// `http://host:port[/base]` URLs, used round-robin.
    pub targets: Vec<String>,
    /// Time for the response head once the request was sent (from the last byte of a streamed
    /// body), the longest a body write may stall, and the longest pause while the response
    /// streams.
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Time to open a TCP connection.
    #[serde(default)]
    pub connect_timeout: Option<Dur>,
    /// Requests in flight at once; more get 503 `upstream.saturated` (never a queue).
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Extra attempts on another target when connecting fails (idempotent methods only).
    #[serde(default)]
    pub retries: Option<u32>,
    /// Passive health: eject a target after consecutive failures.
    #[serde(default)]
    pub eject: Option<Eject>,
    /// Idle keep-alive connections kept per target.
    #[serde(default)]
    pub pool: Option<Pool>,
    /// Sign every request to this upstream so it can prove the gateway sent it.
    #[serde(default)]
    pub sign: Option<Sign>,
    /// TLS to `https://` targets: trusted CA, client certificate.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
}

/// Passive ejection of failing targets.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Eject {
    /// Consecutive connect failures, timeouts or 502/503/504 answers that eject a target.
    pub consecutive_failures: u32,
    /// How long an ejected target is skipped.
    pub duration: Dur,
}

/// Upstream connection pool.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Idle connections kept per target.
    #[serde(default)]
    pub max_idle: Option<u32>,
    /// Idle connections older than this are closed.
    #[serde(default)]
    pub idle_timeout: Option<Dur>,
}

/// A route.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique name, used in logs, metrics and limits.
    pub name: String,
    /// What requests the route takes.
    #[serde(rename = "match")]
    pub matcher: Match,
    /// Name of the upstream that serves it.
    pub upstream: String,
    /// A literal path prefix removed before forwarding (`/api` turns `/api/x` into `/x`).
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// This route's own bucket; `defaults.throttle` when absent.
    #[serde(default)]
    pub throttle: Option<Throttle>,
    /// Per-route overrides of request limits.
    #[serde(default)]
    pub limits: Option<RouteLimits>,
    /// Access-log sampling.
    #[serde(default)]
    pub log: Option<RouteLog>,
    /// Leave the `RateLimit` and `RateLimit-Policy` fields out of this route's responses.
    #[serde(default)]
    pub hide_headers: Option<bool>,
    /// What callers must present (`none`, or methods and requirements).
    #[serde(default)]
    pub auth: Option<RouteAuthSpec>,
    /// This route's resource policy, checked after the global one.
    #[serde(default)]
    pub policy: Option<Policy>,
    /// Cross-origin requests from browsers, answered and decorated by the gateway.
    #[serde(default)]
    pub cors: Option<Cors>,
    /// Marks the route as sensitive (login, tokens, passwords) for `portcullis lint`, or with
    /// `false` as not, whatever its name and path suggest.
    #[serde(default)]
    pub sensitive: Option<bool>,
    /// WAF mode and exclusions for this route.
    #[serde(default)]
    pub waf: Option<RouteWaf>,
}

/// Request matching.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Host names (`api.example.com`, `*.example.com`); any host when empty.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Methods; any method when empty.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Path template: literal segments, `{param}` segments, optional trailing `/*`.
    pub path: String,
}

/// Per-route limits.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteLimits {
    /// Request body size for this route.
    #[serde(default)]
    pub max_body_bytes: Option<Size>,
}

/// Per-route access-log settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteLog {
    /// Fraction of successful requests logged (0.0–1.0); responses >= 400 are always logged.
    pub sample: f64,
}

/// Logging.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// `stdout` (default), `stderr`, `off`, or a file path.
    #[serde(default)]
    pub access: Option<String>,
}
