//! Body types on both sides of the proxy. Bodies stream: nothing here buffers a whole body.
//!
//! - [`ReqBody`]: what goes upstream. A client body is counted against the route's limit and
//!   given a total deadline while it streams (slow POST); going over either ends the stream
//!   with a [`BodyError`] that the proxy turns into 413 or 408.
//! - [`RespBody`]: what goes to the client. It counts bytes, enforces the upstream's idle
//!   timeout between chunks, gives the upstream connection back to the pool and frees the
//!   concurrency slot when the response ends, and runs a [`Completion`] exactly once when the
//!   response ends or is dropped (access log, metrics).

use super::h1::UpConn;
use super::h1_body::UpstreamBody;
use super::upstream::{Inflight, Upstream};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Why a client body stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyErrorKind {
    /// More bytes than the limit.
    TooLarge,
    /// Not received before the deadline.
    Timeout,
    /// The client connection failed mid-body.
    Aborted,
}

/// The error a [`ReqBody`] ends with.
#[derive(Debug)]
pub struct BodyError {
    /// What happened.
    pub kind: BodyErrorKind,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            BodyErrorKind::TooLarge => f.write_str("request body over the limit"),
            BodyErrorKind::Timeout => f.write_str("request body not received in time"),
            BodyErrorKind::Aborted => f.write_str("client aborted the request body"),
        }
    }
}

impl std::error::Error for BodyError {}

impl BodyError {
    /// Finds a `BodyError` in an error's source chain.
    pub fn find(err: &(dyn std::error::Error + 'static)) -> Option<BodyErrorKind> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(b) = e.downcast_ref::<BodyError>() {
                return Some(b.kind);
            }
            cur = e.source();
        }
        None
    }
}

/// The body sent upstream.
#[derive(Debug)]
pub enum ReqBody {
    /// No body.
    Empty,
    /// Bytes already in memory (a later phase may have read the body).
    Full(Option<Bytes>),
    /// The client's body, streamed with a size limit and a deadline.
    Stream(Box<LimitedBody>),
}

/// A client body with limits.
#[derive(Debug)]
pub struct LimitedBody {
    /// Bytes already read from `inner` (the part the WAF inspected), sent first.
    head: Option<Bytes>,
    inner: Incoming,
    limit: u64,
    seen: u64,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl ReqBody {
    /// Wraps a client body: at most `limit` bytes, all of them before `deadline`.
    pub fn limited(inner: Incoming, limit: u64, deadline: Instant) -> ReqBody {
        ReqBody::Stream(Box::new(LimitedBody { head: None, inner, limit, seen: 0, deadline, sleep: None }))
    }

    /// Reads up to `max` bytes. Returns them and the body to forward: all of it, the bytes
    /// read first and the rest streaming after them (memory stays bounded by `max`).
    pub async fn read_prefix(self, max: usize) -> Result<(Bytes, ReqBody), BodyError> {
        use http_body_util::BodyExt as _;
        let mut body = match self {
            ReqBody::Full(Some(b)) => return Ok((b.clone(), ReqBody::Full(Some(b)))),
            s @ ReqBody::Stream(_) => s,
            other => return Ok((Bytes::new(), other)),
        };
        let mut buf = bytes::BytesMut::new();
        while buf.len() < max {
            match body.frame().await {
                None => {
                    let all = buf.freeze();
                    return Ok((all.clone(), if all.is_empty() { ReqBody::Empty } else { ReqBody::Full(Some(all)) }));
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
            }
        }
        let head = buf.freeze();
        if let ReqBody::Stream(s) = &mut body {
            s.head = Some(head.clone());
        }
        Ok((head, body))
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ReqBody::Stream(s) => s.poll(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Full(b) => b.is_none(),
            ReqBody::Stream(s) => s.head.is_none() && s.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ReqBody::Stream(s) => {
                let head = s.head.as_ref().map_or(0, |h| h.len() as u64);
                let inner = s.inner.size_hint();
                match inner.exact() {
                    Some(n) => SizeHint::with_exact(n + head),
                    None => {
                        let mut h = SizeHint::new();
                        h.set_lower(inner.lower() + head);
                        h
                    }
                }
            }
        }
    }
}

impl LimitedBody {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.seen += data.len() as u64;
                    if self.seen > self.limit {
                        return Poll::Ready(Some(Err(BodyError { kind: BodyErrorKind::TooLarge })));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => Poll::Ready(Some(Err(BodyError { kind: BodyErrorKind::Aborted }))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                // Arm the deadline only when the client makes us wait.
                let deadline = self.deadline;
                let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                ready!(sleep.as_mut().poll(cx));
                Poll::Ready(Some(Err(BodyError { kind: BodyErrorKind::Timeout })))
            }
        }
    }
}

/// Work to do once when a response is finished (or abandoned).
pub trait Completion: Send + Sync {
    /// Called exactly once. `complete` is true when the whole body was sent; `bytes` is
    /// what was sent; `error` names what cut the body short, if anything.
    fn finish(self: Box<Self>, complete: bool, bytes: u64, error: Option<&'static str>);
}

/// The body sent to the client.
pub struct RespBody {
    kind: RespKind,
    bytes: u64,
    completion: Option<Box<dyn Completion>>,
}

impl std::fmt::Debug for RespBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespBody").field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

enum RespKind {
    Full(Option<Bytes>),
    /// `held`: bytes read ahead by [`RespBody::read_prefix`], sent before the rest.
    Upstream {
        held: Option<Bytes>,
        body: UpstreamBody,
        idle: Duration,
        sleep: Option<Pin<Box<Sleep>>>,
        lease: Option<Lease>,
    },
}

/// What an upstream response holds until it ends: its in-flight slot, and where its
/// connection goes back to when the exchange ended cleanly.
#[derive(Debug)]
pub struct Lease {
    /// The upstream.
    pub upstream: Arc<Upstream>,
    /// Index of the target the connection belongs to.
    pub target: usize,
    /// The in-flight slot, freed on drop.
    pub slot: Inflight,
}

impl Lease {
    fn release(self, conn: Option<UpConn>) {
        if let (Some(conn), Some(t)) = (conn, self.upstream.targets.get(self.target)) {
            t.put_idle(conn, &self.upstream.settings);
        }
    }
}
impl RespBody {
    /// A body from memory.
    pub fn full(bytes: impl Into<Bytes>) -> RespBody {
        let b: Bytes = bytes.into();
        RespBody { kind: RespKind::Full(if b.is_empty() { None } else { Some(b) }), bytes: 0, completion: None }
    }

    /// No body.
    pub fn empty() -> RespBody {
        RespBody { kind: RespKind::Full(None), bytes: 0, completion: None }
    }

    /// An upstream's body; each wait for the next chunk may last at most `idle`. The lease
    /// is released when the body ends.
    pub fn upstream(body: UpstreamBody, idle: Duration, lease: Lease) -> RespBody {
        RespBody {
            kind: RespKind::Upstream { held: None, body, idle, sleep: None, lease: Some(lease) },
            bytes: 0,
            completion: None,
        }
    }

    /// Sets the work for the end of the response (the logging phase; one per response).
    pub fn on_complete(&mut self, c: Box<dyn Completion>) {
        self.completion = Some(c);
    }

    /// Reads up to `max` bytes ahead (or the whole body when shorter) and keeps them to be
    /// sent first: the response phases inspect a body before any of it leaves. Memory stays
    /// bounded by `max` plus one chunk. `Err` carries the stable code of what cut the upstream
    /// body short (`upstream.timeout`, `upstream.body_error`); the body is then finished.
    pub async fn read_prefix(&mut self, max: usize) -> Result<Bytes, &'static str> {
        let held = match &mut self.kind {
            RespKind::Full(b) => return Ok(b.clone().unwrap_or_default()),
            RespKind::Upstream { held, .. } => held.take(),
        };
        let mut buf = bytes::BytesMut::from(held.unwrap_or_default());
        while buf.len() < max {
            match std::future::poll_fn(|cx| self.poll_upstream(cx)).await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                Some(Err(code)) => return Err(code),
                None => break,
            }
        }
        let prefix = buf.freeze();
        if let RespKind::Upstream { held, body, lease, .. } = &mut self.kind {
            *held = (!prefix.is_empty()).then(|| prefix.clone());
            // The upstream's part is over: its connection goes back to the pool now.
            if body.is_end_stream()
                && let Some(l) = lease.take()
            {
                l.release(body.reusable());
            }
        }
        Ok(prefix)
    }

    /// The upstream body's next frame, its idle timeout enforced; an error finishes the
    /// response and is named by its stable code.
    fn poll_upstream(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
        let RespKind::Upstream { body, idle, sleep, .. } = &mut self.kind else { return Poll::Ready(None) };
        let code = match Pin::new(body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(s) = sleep.as_mut() {
                    s.as_mut().reset(Instant::now() + *idle);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(_))) => "upstream.body_error",
            Poll::Pending => {
                let idle = *idle;
                let s = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if s.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                "upstream.timeout"
            }
        };
        self.finish(false, Some(code));
        Poll::Ready(Some(Err(code)))
    }

    fn finish(&mut self, complete: bool, error: Option<&'static str>) {
        if let RespKind::Upstream { lease, body, .. } = &mut self.kind
            && let Some(l) = lease.take()
        {
            l.release(if complete { body.reusable() } else { None });
        }
        if let Some(c) = self.completion.take() {
            c.finish(complete, self.bytes, error);
        }
    }
}

impl Drop for RespBody {
    fn drop(&mut self) {
        // A body with nothing left (HEAD, 204, 304) may be dropped without being polled; any
        // other body dropped before its end means the client went away.
        let complete = self.is_end_stream();
        self.finish(complete, if complete { None } else { Some("client.disconnected") });
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            RespKind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RespKind::Upstream { held: held @ Some(_), .. } => Poll::Ready(held.take().map(|b| Ok(Frame::data(b)))),
            RespKind::Upstream { .. } => this.poll_upstream(cx).map_err(Into::into),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
                if this.is_end_stream() {
                    this.finish(true, None);
                }
            }
            Poll::Ready(None) => this.finish(true, None),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            RespKind::Full(b) => b.is_none(),
            RespKind::Upstream { held, body, .. } => held.is_none() && body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            RespKind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            RespKind::Upstream { held, body, .. } => {
                let (mut hint, ahead) = (body.size_hint(), held.as_ref().map_or(0, |h| h.len() as u64));
                // Upper first: set_lower refuses a lower bound above the upper one.
                if let Some(upper) = hint.upper() {
                    hint.set_upper(upper.saturating_add(ahead));
                }
                hint.set_lower(hint.lower().saturating_add(ahead));
                hint
            }
        }
    }
}
