//! The immutable snapshot a request runs against. Built by `compile`, swapped atomically on
//! reload; a request pins one `Arc<Runtime>` for its whole life.

use super::load::Loaded;
use super::model::{ClientIpHeader, Throttle};
use crate::phases::route::Router;
use crate::proxy::upstream::Upstream;
use http::HeaderValue;
use ipnet::IpNet;
use portcullis_limit::{Bucket, KeyedLimiter};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A compiled configuration.
#[derive(Debug)]
pub struct Runtime {
    /// Increases by one per successful reload.
    pub generation: u64,
    /// The parsed file (model, locations, source).
    pub loaded: Loaded,
    /// Client listeners (static: a reload cannot change them, only their certificates).
    pub listeners: Vec<ListenerRt>,
    /// Admin listener (static).
    pub admin: Option<AdminRt>,
    /// Effective limits.
    pub limits: Limits,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Which forwarding header to read.
    pub client_ip_header: ClientIpHeader,
    /// Routing table.
    pub router: Router,
    /// Routes in config order.
    pub routes: Vec<Arc<RouteRt>>,
    /// Upstreams by name.
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    /// The global ceiling, if configured.
    pub global: Option<Arc<LimitRt>>,
    /// Per-IP rate-based rules, in config order.
    pub ip_rules: Vec<Arc<crate::phases::ip_rules::IpRuleRt>>,
    /// JWT providers.
    pub auth: super::compile_auth::AuthRt,
    /// Identity header names sent to backends (and stripped from clients).
    pub identity: crate::phases::identity::IdentityNames,
    /// The global resource policy.
    pub policy: Option<crate::phases::policy::PolicyRt>,
    /// Header carrying API keys.
    pub key_header: http::HeaderName,
    /// `state` (static).
    pub store: Option<crate::store::StoreSettings>,
    /// Where access-log lines go.
    pub access_log: AccessTarget,
    /// Files whose change triggers a reload (the config and the TLS files it names).
    pub watched_files: Vec<PathBuf>,
    /// The WAF: rules, body limit, log, IP lists.
    pub waf: super::compile_waf::WafRt,
}

impl Runtime {
    /// True when `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        !self.trusted_proxies.is_empty() && self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }
}

/// A client listener.
#[derive(Debug, Clone)]
pub struct ListenerRt {
    /// Name for logs and metrics.
    pub name: Arc<str>,
    /// Socket address.
    pub bind: SocketAddr,
    /// TLS settings (certificates are re-read on every reload).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// HTTP/2 enabled.
    pub http2: bool,
}

/// The admin listener.
#[derive(Debug, Clone)]
pub struct AdminRt {
    /// Socket address.
    pub bind: SocketAddr,
    /// SHA-256 of the bearer token; `None` disables `/api/v1/*`.
    pub token_sha256: Option<[u8; 32]>,
}

/// Limits with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Bytes of all request header lines.
    pub max_header_bytes: usize,
    /// Request header lines.
    pub max_headers: usize,
    /// Request target length.
    pub max_uri_bytes: usize,
    /// Request body bytes (routes may override).
    pub max_body_bytes: u64,
    /// Header read timeout (and TLS handshake, and HTTP/1 keep-alive idle).
    pub header_timeout: Duration,
    /// Whole-body receive deadline.
    pub body_timeout: Duration,
    /// Open connections per client IP.
    pub max_conns_per_ip: u32,
    /// Open connections in all.
    pub max_conns: u32,
    /// HTTP/2 concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 pending stream resets before the connection is closed.
    pub h2_max_pending_resets: usize,
    /// Grace period for in-flight requests on shutdown.
    pub shutdown_timeout: Duration,
    /// Keys each partitioned bucket and IP rule tracks at most.
    pub max_rate_keys: usize,
}

/// The bucket or buckets behind a limit.
#[derive(Debug, Clone)]
pub enum Buckets {
    /// One bucket.
    One(Arc<Bucket>),
    /// One bucket per client IP (IPv6 per /64).
    PerIp(Arc<KeyedLimiter>),
    /// One bucket per value of a header.
    PerHeader(http::HeaderName, Arc<KeyedLimiter>),
    /// One bucket per API key.
    PerKey(Arc<KeyedLimiter>),
}

/// A token bucket (or a partitioned set of them) with the numbers it was made from and its
/// `RateLimit-Policy` value.
#[derive(Debug)]
pub struct LimitRt {
    /// The numbers.
    pub throttle: Throttle,
    /// The state (shared across reloads while the numbers stay the same).
    pub buckets: Buckets,
    /// `"route";q=100;w=1` style policy for response headers.
    pub policy: HeaderValue,
    /// The policy name in headers (`route` or `global`).
    pub policy_name: &'static str,
    /// Which limit this is across cluster nodes (names its Redis buckets).
    pub shared_id: String,
    /// Cluster mode, unpartitioned limit: its lease, kept here so the hot path skips the
    /// lease table.
    pub lease: std::sync::OnceLock<Arc<crate::cluster::lease::Lease>>,
}

/// A compiled route.
#[derive(Debug)]
pub struct RouteRt {
    /// Config name.
    pub name: Arc<str>,
    /// The upstream that serves it.
    pub upstream: Arc<Upstream>,
    /// Prefix removed before forwarding.
    pub strip_prefix: Option<String>,
    /// The route's own bucket.
    pub limit: Arc<LimitRt>,
    /// Body limit for this route.
    pub max_body_bytes: u64,
    /// Share of successful requests logged.
    pub log_sample: f64,
    /// No `RateLimit` fields in responses.
    pub hide_headers: bool,
    /// Some IP rule is scoped to this route.
    pub has_ip_rules: bool,
    /// What callers must present; `None` for open routes.
    pub auth: Option<crate::phases::auth::RouteAuthRt>,
    /// CORS policy.
    pub cors: Option<crate::phases::cors::CorsRt>,
    /// Signs requests to the upstream, when it says so.
    pub sign: Option<Arc<crate::phases::sign::SignRt>>,
    /// More headers stripped from requests (lowercase, `-` spelling).
    pub strip_headers: Vec<String>,
    /// The route's resource policy.
    pub policy: Option<crate::phases::policy::PolicyRt>,
    /// WAF mode and exclusions.
    pub waf: super::compile_waf::RouteWafRt,
    /// Metric handles, made on the route's first request.
    pub metrics: std::sync::OnceLock<crate::observe::metrics::RouteHandles>,
}

/// Access-log destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessTarget {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// No access log.
    Off,
    /// Appended to a file (reopened on reload, for log rotation).
    File(PathBuf),
}
