//! Prometheus metrics (names are part of the public contract, DESIGN §4).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: Arc<str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteReason {
    route: Arc<str>,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabel {
    upstream: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabel {
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleAction {
    rule: Arc<str>,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyAction {
    policy: Arc<str>,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderResult {
    provider: Arc<str>,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthorizerDecision {
    authorizer: Arc<str>,
    source: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WafRule {
    rule: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~26 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// A route's `requests_total{status="200"}` and duration histogram.
#[derive(Debug, Clone)]
pub struct RouteHandles {
    ok: Counter,
    duration: Histogram,
}

/// All metrics of one gateway process.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    rejections: Family<RouteReason, Counter>,
    request_duration: Family<RouteLabel, Histogram, fn() -> Histogram>,
    upstream_duration: Family<UpstreamLabel, Histogram, fn() -> Histogram>,
    connections: Family<ListenerLabel, Gauge>,
    connections_refused: Family<ReasonLabel, Counter>,
    reloads: Family<ResultLabel, Counter>,
    ip_rule_matches: Family<RuleAction, Counter>,
    policy_matches: Family<PolicyAction, Counter>,
    jwks_fetches: Family<ProviderResult, Counter>,
    authorizer_decisions: Family<AuthorizerDecision, Counter>,
    waf_matches: Family<WafRule, Counter>,
    store_degraded: Family<ModeLabel, Counter>,
    /// 1 while the shared store (Redis) answers, 0 while it does not; 1 for the embedded store.
    pub store_up: Gauge,
    /// Config generation now serving.
    pub config_generation: Gauge,
    /// Access-log lines dropped because the writer fell behind.
    pub access_log_dropped: Counter,
    /// The route label for requests no route took.
    pub no_route: Arc<str>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Route label for requests no route took.
pub const NO_ROUTE: &str = "_none";

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("portcullis");
        let m = Metrics {
            requests: Family::default(),
            rejections: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            upstream_duration: Family::new_with_constructor(latency_histogram),
            connections: Family::default(),
            connections_refused: Family::default(),
            reloads: Family::default(),
            ip_rule_matches: Family::default(),
            policy_matches: Family::default(),
            jwks_fetches: Family::default(),
            authorizer_decisions: Family::default(),
            waf_matches: Family::default(),
            store_degraded: Family::default(),
            store_up: Gauge::default(),
            config_generation: Gauge::default(),
            access_log_dropped: Counter::default(),
            no_route: Arc::from(NO_ROUTE),
            registry: Registry::default(),
        };
        registry.register("requests", "Requests answered, by route and status", m.requests.clone());
        registry.register(
            "rejections",
            "Requests the gateway ended itself, by route and stable code",
            m.rejections.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request head to last response byte",
            m.request_duration.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time from sending upstream to its response head",
            m.upstream_duration.clone(),
        );
        registry.register("connections_active", "Open client connections", m.connections.clone());
        registry.register(
            "connections_refused",
            "Client connections closed at accept, by reason",
            m.connections_refused.clone(),
        );
        registry.register("config_reloads", "Configuration reloads, by result", m.reloads.clone());
        registry.register(
            "ip_rule_matches",
            "Requests from an IP over an IP rule's limit, by rule and action",
            m.ip_rule_matches.clone(),
        );
        registry.register(
            "policy_matches",
            "Requests a resource policy refused (action deny) or would have refused (dry_run)",
            m.policy_matches.clone(),
        );
        registry.register("jwks_fetches", "JWKS fetches, by provider and result", m.jwks_fetches.clone());
        registry.register(
            "authorizer_decisions",
            "External authorizer decisions, by authorizer, source (call or cache) and result",
            m.authorizer_decisions.clone(),
        );
        registry.register(
            "waf_matches",
            "WAF rules that matched and log, by rule id (in block and detect mode)",
            m.waf_matches.clone(),
        );
        m.store_up.set(1);
        registry.register("store_up", "1 while the state store answers, 0 while it does not", m.store_up.clone());
        registry.register(
            "store_degraded_decisions",
            "Shared-limit decisions made without the store (Redis down), by state.on_failure mode",
            m.store_degraded.clone(),
        );
        registry.register(
            "config_generation",
            "Generation of the configuration now serving",
            m.config_generation.clone(),
        );
        registry.register(
            "access_log_dropped",
            "Access-log lines dropped because the writer fell behind",
            m.access_log_dropped.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// One finished request.
    pub fn request(
        &self,
        route: &Arc<str>,
        cached: Option<&RouteHandles>,
        status: u16,
        took: Duration,
        reason: Option<&'static str>,
    ) {
        match cached {
            Some(h) => {
                if status == 200 {
                    h.ok.inc();
                } else {
                    self.requests.get_or_create(&RouteStatus { route: route.clone(), status }).inc();
                }
                h.duration.observe(took.as_secs_f64());
            }
            None => {
                self.requests.get_or_create(&RouteStatus { route: route.clone(), status }).inc();
                self.request_duration.get_or_create(&RouteLabel { route: route.clone() }).observe(took.as_secs_f64());
            }
        }
        if let Some(reason) = reason {
            self.rejections.get_or_create(&RouteReason { route: route.clone(), reason }).inc();
        }
    }

    /// Handles for a route's most frequent series, so most requests skip the label lookups.
    pub fn route_handles(&self, route: &Arc<str>) -> RouteHandles {
        RouteHandles {
            ok: self.requests.get_or_create_owned(&RouteStatus { route: route.clone(), status: 200 }),
            duration: self.request_duration.get_or_create_owned(&RouteLabel { route: route.clone() }),
        }
    }

    /// Upstream response-head latency.
    pub fn observe_upstream(&self, upstream: &Arc<str>, took: Duration) {
        self.upstream_duration.get_or_create(&UpstreamLabel { upstream: upstream.clone() }).observe(took.as_secs_f64());
    }

    /// The open-connections gauge of a listener.
    pub fn connections(&self, listener: &Arc<str>) -> Gauge {
        self.connections.get_or_create_owned(&ListenerLabel { listener: listener.clone() })
    }

    /// A connection closed at accept (`per_ip_limit`, `total_limit`, `tls_handshake`).
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// A request from an IP over an IP rule (`block` or `count`).
    pub fn ip_rule_match(&self, rule: &Arc<str>, action: &'static str) {
        self.ip_rule_matches.get_or_create(&RuleAction { rule: rule.clone(), action }).inc();
    }

    /// A request a resource policy refused (`deny`) or would have refused (`dry_run`).
    pub fn policy_match(&self, policy: &Arc<str>, action: &'static str) {
        self.policy_matches.get_or_create(&PolicyAction { policy: policy.clone(), action }).inc();
    }

    /// A WAF rule matched (and logs).
    pub fn waf_match(&self, rule: u32) {
        self.waf_matches.get_or_create(&WafRule { rule }).inc();
    }

    /// A JWKS fetch (`ok`, `error`).
    pub fn jwks_fetch(&self, provider: &Arc<str>, result: &'static str) {
        self.jwks_fetches.get_or_create(&ProviderResult { provider: provider.clone(), result }).inc();
    }

    /// An external authorizer decision (`source`: `call` or `cache`; `result`: `allow`,
    /// `deny` or `error`).
    pub fn authorizer_decision(&self, authorizer: &Arc<str>, source: &'static str, result: &'static str) {
        self.authorizer_decisions
            .get_or_create(&AuthorizerDecision { authorizer: authorizer.clone(), source, result })
            .inc();
    }

    /// The counter of shared-limit decisions taken without the store in `mode`.
    pub fn store_degraded_counter(&self, mode: &'static str) -> Counter {
        self.store_degraded.get_or_create(&ModeLabel { mode }).clone()
    }

    /// A reload attempt (`ok`, `invalid`).
    pub fn reload(&self, result: &'static str) {
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }
}
