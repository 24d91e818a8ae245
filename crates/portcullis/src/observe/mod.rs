//! Logging phase: when a response ends, one access-log line and the request metrics.

pub mod access_log;
pub mod metrics;

use crate::error::{GatewayError, Side};
use crate::pipeline::RequestCtx;
use crate::proxy::body::{Completion, RespBody};
use access_log::Record;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Milliseconds with microsecond precision (keeps log lines short and readable).
fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

struct LogOnFinish {
    gw: Arc<crate::state::Gateway>,
    record: Record,
    route_label: Arc<str>,
    started: Instant,
    sample: f64,
}

impl Completion for LogOnFinish {
    fn finish(self: Box<Self>, _complete: bool, bytes: u64, error: Option<&'static str>) {
        let mut this = *self;
        let took = this.started.elapsed();
        let gateway_reason = this.record.reason;
        this.record.bytes_out = bytes;
        this.record.duration_ms = millis(took);
        if this.record.reason.is_none() {
            this.record.reason = error;
        }
        this.gw
            .metrics
            .request(&this.route_label, this.record.status, took, gateway_reason);
        let sampled_out = this.record.status < 400
            && this.record.reason.is_none()
            && this.sample < 1.0
            && rand::random::<f64>() >= this.sample;
        if !sampled_out {
            this.gw.access_log.log(this.record);
        }
    }
}

/// Attaches the logging phase to the response: it runs when the body ends or is dropped.
pub fn attach(ctx: &RequestCtx, resp: &mut http::Response<RespBody>, error: Option<&GatewayError>) {
    let route = ctx.route.as_ref();
    let decision = match error.map(|e| e.kind.side()) {
        None => "allow",
        Some(Side::Downstream) => "reject",
        Some(_) => "error",
    };
    if let Some(e) = error.filter(|e| e.kind.side() != Side::Downstream) {
        tracing::warn!(request_id = %ctx.request_id, route = route.map(|r| &*r.name), "{e}");
    }
    let path = if ctx.path.is_empty() {
        ctx.parts.uri.path().chars().take(256).collect()
    } else {
        ctx.path.clone()
    };
    let record = Record {
        ts: access_log::rfc3339(SystemTime::now()),
        request_id: ctx.request_id.clone(),
        client_ip: ctx.client_ip,
        method: ctx.parts.method.to_string(),
        path,
        route: route.map(|r| r.name.clone()),
        status: resp.status().as_u16(),
        bytes_out: 0,
        duration_ms: 0.0,
        upstream_ms: ctx.upstream_time.map(millis),
        principal: None,
        key_id: None,
        decision,
        reason: error.map(|e| e.kind.code()),
        waf_rules: Vec::new(),
        listener: ctx.conn.listener.clone(),
        upstream: route.map(|r| r.upstream.name.clone()),
    };
    resp.body_mut().on_complete(Box::new(LogOnFinish {
        gw: ctx.gw.clone(),
        record,
        route_label: route.map_or_else(|| Arc::from(metrics::NO_ROUTE), |r| r.name.clone()),
        started: ctx.started,
        sample: route.map_or(1.0, |r| r.log_sample),
    }));
}
