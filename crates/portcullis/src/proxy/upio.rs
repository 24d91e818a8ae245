//! The byte stream under an upstream connection: plain TCP, or TLS over TCP for `https://`
//! targets (optionally presenting a client certificate). Plain TCP keeps its zero-copy
//! `try_read_buf` fast path; TLS reads through rustls.

use bytes::BytesMut;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// An upstream socket.
#[derive(Debug)]
pub enum UpIo {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl From<TcpStream> for UpIo {
    fn from(s: TcpStream) -> UpIo {
        UpIo::Plain(s)
    }
}

impl UpIo {
    /// Appends what can be read now to `buf`; `Ok(0)` at EOF.
    pub fn poll_read_into(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        match self {
            UpIo::Plain(s) => loop {
                match s.try_read_buf(buf) {
                    Ok(n) => return Poll::Ready(Ok(n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(s.poll_read_ready(cx))?,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            },
            UpIo::Tls(s) => {
                let mut tmp = [0u8; 16 * 1024];
                let mut rb = ReadBuf::new(&mut tmp);
                ready!(Pin::new(&mut **s).poll_read(cx, &mut rb))?;
                buf.extend_from_slice(rb.filled());
                Poll::Ready(Ok(rb.filled().len()))
            }
        }
    }

    /// True when nothing is waiting to be read and the peer has not closed: an idle
    /// connection that is safe to send on. Never blocks.
    pub fn idle_and_open(&mut self) -> bool {
        match self {
            UpIo::Plain(s) => {
                let mut one = [0u8; 1];
                matches!(s.try_read(&mut one), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            UpIo::Tls(s) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut one = [0u8; 1];
                let mut rb = ReadBuf::new(&mut one);
                Pin::new(&mut **s).poll_read(&mut cx, &mut rb).is_pending()
            }
        }
    }
}

impl AsyncRead for UpIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpIo::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpIo::Plain(s) => Pin::new(s).poll_write(cx, data),
            UpIo::Tls(s) => Pin::new(&mut **s).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpIo::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpIo::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpIo::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpIo::Plain(s) => s.is_write_vectored(),
            UpIo::Tls(s) => s.is_write_vectored(),
        }
    }
}
