//! Logging phase: when a response ends, the request metrics and (unless sampled out or
//! disabled) one access-log line.

pub mod access_log;
pub mod metrics;
pub mod waf_log;

use crate::error::{GatewayError, Side};
use crate::pipeline::RequestCtx;
use crate::proxy::body::{Completion, RespBody};
use access_log::Record;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

/// Gateway-side errors (upstream down, timeouts) are logged at most once per second, with
/// the number of lines suppressed since: a failing upstream under load must not turn every
/// request into a stderr write. Metrics and the access log still count every one.
struct LogLimiter {
    second: AtomicU64,
    suppressed: AtomicU64,
}

static ERROR_LOG: LogLimiter = LogLimiter { second: AtomicU64::new(0), suppressed: AtomicU64::new(0) };

impl LogLimiter {
    /// `Some(suppressed)` when a line may be written in this second.
    fn admit(&self, now_secs: u64) -> Option<u64> {
        if self.second.swap(now_secs, Ordering::Relaxed) != now_secs {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Milliseconds with microsecond precision (keeps log lines short and readable).
fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

struct LogOnFinish {
    gw: Arc<crate::state::Gateway>,
    record: Option<Record>,
    route_label: Arc<str>,
    route: Option<Arc<crate::config::runtime::RouteRt>>,
    status: u16,
    reason: Option<&'static str>,
    started: Instant,
    sample: f64,
}

impl Completion for LogOnFinish {
    fn finish(self: Box<Self>, _complete: bool, bytes: u64, error: Option<&'static str>) {
        let took = self.started.elapsed();
        let metrics = &self.gw.metrics;
        let cached = self.route.as_ref().map(|r| r.metrics.get_or_init(|| metrics.route_handles(&r.name)));
        metrics.request(&self.route_label, cached, self.status, took, self.reason);
        let Some(mut record) = self.record else { return };
        record.bytes_out = bytes;
        record.duration_ms = millis(took);
        record.reason = record.reason.or(error);
        let sampled_out =
            record.status < 400 && record.reason.is_none() && self.sample < 1.0 && rand::random::<f64>() >= self.sample;
        if !sampled_out {
            self.gw.access_log.log(record);
        }
    }
}

/// Attaches the logging phase to the response: it runs when the body ends or is dropped.
/// Takes the request id and path out of the context (the request is over).
pub fn attach(ctx: &mut RequestCtx, resp: &mut http::Response<RespBody>, error: Option<&GatewayError>) {
    if let Some(e) = error.filter(|e| e.kind.side() != Side::Downstream)
        && let Some(suppressed) = ERROR_LOG.admit(ctx.gw.clock.now() / 1_000_000_000)
    {
        let route = ctx.route.as_ref().map(|r| &*r.name);
        tracing::warn!(request_id = ?ctx.request_id, route, suppressed, "{e}");
    }
    let route = ctx.route.as_ref();
    let status = resp.status().as_u16();
    let reason = error.map(|e| e.kind.code());
    let record = ctx.gw.access_log.enabled().then(|| Record {
        ts: SystemTime::now() - ctx.started.elapsed(),
        request_id: ctx.request_id.clone(),
        client_ip: ctx.client_ip,
        method: ctx.parts.method.clone(),
        path: if ctx.path.is_empty() {
            ctx.parts.uri.path().chars().take(256).collect()
        } else {
            std::mem::take(&mut ctx.path)
        },
        route: route.map(|r| r.name.clone()),
        status,
        bytes_out: 0,
        duration_ms: 0.0,
        upstream_ms: ctx.upstream_time.map(millis),
        decision: match error.map(|e| e.kind.side()) {
            None => "allow",
            Some(Side::Downstream) => "reject",
            Some(_) => "error",
        },
        reason,
        principal: ctx.principal.as_ref().and_then(|p| p.id.subject.clone()),
        key_id: ctx.key.as_ref().map(|k| k.id.clone()),
        listener: ctx.conn.listener.clone(),
        upstream: route.map(|r| r.upstream.name.clone()),
        waf_rules: std::mem::take(&mut ctx.waf_rules),
    });
    resp.body_mut().on_complete(Box::new(LogOnFinish {
        gw: ctx.gw.clone(),
        record,
        route_label: route.map_or_else(|| ctx.gw.metrics.no_route.clone(), |r| r.name.clone()),
        route: ctx.route.clone(),
        status,
        reason,
        started: ctx.started,
        sample: route.map_or(1.0, |r| r.log_sample),
    }));
}
