//! Connections as the server accepts them. The HTTP parser answers a request whose URI is
//! past 64 KiB itself, before any layer or route runs, with a bare `414` and no body (on
//! any request of a kept-alive connection); on the way out that answer is replaced by the
//! problem+json every other answer has.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::hygiene::MAX_URI_BYTES;
use crate::problem::ApiError;

/// A TCP listener whose connections answer an over-long URI with problem+json.
pub struct Listener(pub TcpListener);

impl axum::serve::Listener for Listener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (Connection { io, replacement: None }, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// The start of the parser's own answer to a URI past its limit.
const BARE_414: &[u8] = b"HTTP/1.1 414 URI Too Long\r\n";

pub struct Connection {
    io: TcpStream,
    /// The problem+json answer being written in the bare 414's place, from this offset;
    /// and how long the bare one was, which is what the writer is told was written.
    replacement: Option<(Vec<u8>, usize, usize)>,
}

fn problem_answer() -> Vec<u8> {
    let (status, body) = ApiError::UriTooLong { limit: MAX_URI_BYTES }.problem();
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/problem+json\r\n\
         x-content-type-options: nosniff\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    [head.into_bytes(), body].concat()
}

impl Connection {
    /// Write what is left of the replacement; the bare answer's length once all of it is.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, at, bare)) = self.replacement.as_mut() {
            if *at == bytes.len() {
                let bare = *bare;
                self.replacement = None;
                return Poll::Ready(Ok(bare));
            }
            match Pin::new(&mut self.io).poll_write(cx, &bytes[*at..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *at += n,
                other => return other,
            }
        }
        Poll::Ready(Ok(0))
    }

    /// Whether `bytes`, one write, are the parser's bare 414: a head alone, with no body,
    /// closing the connection, and without the `nosniff` every answer of the server's own
    /// carries (crate::hygiene), so no answer that passed through the server (a proxied
    /// upstream's empty 414, say) is taken for it. A body chunk is never written alone
    /// starting with a status line and ending a head.
    fn is_bare_414(bytes: &[u8]) -> bool {
        if bytes.len() > 512 || !bytes.starts_with(BARE_414) || !bytes.ends_with(b"\r\n\r\n") {
            return false;
        }
        let head = bytes.to_ascii_lowercase();
        let has = |line: &[u8]| head.windows(line.len()).any(|w| w == line);
        has(b"\r\ncontent-length: 0\r\n")
            && has(b"\r\nconnection: close\r\n")
            && !has(b"\r\nx-content-type-options:")
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replacement.is_none() && Self::is_bare_414(buf) {
            self.replacement = Some((problem_answer(), 0, buf.len()));
        }
        if self.replacement.is_some() {
            return self.poll_replacement(cx);
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // The bare 414 is a head alone, in one buffer.
        if self.replacement.is_none() && bufs.len() == 1 && Self::is_bare_414(&bufs[0]) {
            self.replacement = Some((problem_answer(), 0, bufs[0].len()));
        }
        if self.replacement.is_some() {
            return self.poll_replacement(cx);
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
