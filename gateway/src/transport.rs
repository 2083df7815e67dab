//! Connections before HTTP/2 sees them: accepted off the listener, each
//! given a deadline to finish its handshake (TLS where configured, then the
//! HTTP/2 client preface), and watched for stream resets while it lives.
//!
//! hyper and tonic set no deadline on the client preface, so a client that
//! trickles it a byte at a time (slowloris) would hold a connection and its
//! task forever; here the preface is read before hyper gets the connection,
//! under the same deadline as the TLS handshake.
//!
//! h2 sends GOAWAY when a peer resets more than a few streams *before* the
//! server accepted them, but streams the server was quick enough to accept
//! and the client then reset cost a task each and count against nothing
//! (the rapid-reset attack, CVE-2023-44487, paced just below h2's limit).
//! Each connection therefore has a budget of RST_STREAM frames, refilled
//! over time; a client that spends it has its connection closed. The frame
//! headers are read as the bytes pass (nine bytes a frame, the payloads are
//! skipped), so the watch costs no buffering.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long a client has to complete the TLS handshake (if any) and send
/// the HTTP/2 client preface.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; more wait in the kernel's backlog.
const MAX_PENDING_HANDSHAKES: usize = 256;
/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// RST_STREAM frames a connection may send at once. A gRPC client resets a
/// stream when a call is cancelled or its deadline passes, which legitimate
/// clients do now and then, not by the hundred.
const RESET_BURST: f64 = 100.0;
/// RST_STREAM frames per second a connection earns back.
const RESETS_PER_SECOND: f64 = 20.0;
const RST_STREAM: u8 = 0x3;

/// Accepts connections on `listener` and runs `handshake` on each in its
/// own task under [`HANDSHAKE_TIMEOUT`], so a slow client cannot hold up the
/// accept loop; only completed handshakes are yielded.
pub(crate) fn accept<C, F, Fut>(
    listener: TcpListener,
    handshake: F,
) -> ReceiverStream<Result<C, io::Error>>
where
    C: Send + 'static,
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<C>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = pending.clone().acquire_owned().await else {
                return;
            };
            let (tcp, remote) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            // Without it each answer's trailers wait for the client's
            // delayed ACK: tens of milliseconds per call.
            let _ = tcp.set_nodelay(true);
            let tx = tx.clone();
            let handshake = handshake(tcp, remote);
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(conn)) => {
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => tracing::info!(%remote, error = %e, "handshake refused"),
                    Err(_) => tracing::info!(%remote, "handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Reads the HTTP/2 client preface from `io`; the caller wraps `io` in a
/// [`Guarded`], which hands the preface on to hyper.
pub(crate) async fn read_preface<S: AsyncRead + Unpin>(io: &mut S) -> io::Result<()> {
    let mut preface = [0u8; 24];
    io.read_exact(&mut preface).await?;
    if &preface == PREFACE {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an HTTP/2 client preface",
        ))
    }
}

/// A connection whose preface has been read, watched for stream resets.
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    /// Preface bytes already handed on to hyper.
    replayed: usize,
    watch: FrameWatch,
}

impl<S> Guarded<S> {
    /// Wraps a connection whose preface [`read_preface`] has consumed.
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            replayed: 0,
            watch: FrameWatch::new(),
        }
    }

    /// The connection inside.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl Connected for Guarded<TcpStream> {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(rest) = PREFACE.get(self.replayed..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(rest.get(..n).unwrap_or_default());
            self.replayed += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = buf.filled().get(before..).unwrap_or_default();
                match this.watch.feed(fresh, Instant::now()) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(e) => Poll::Ready(Err(e)),
                }
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Follows frame boundaries in the bytes a client sends and spends the
/// reset budget on each RST_STREAM.
#[derive(Debug)]
struct FrameWatch {
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    skip: usize,
    tokens: f64,
    refilled: Instant,
}

impl FrameWatch {
    fn new() -> Self {
        Self {
            header: [0; 9],
            have: 0,
            skip: 0,
            tokens: RESET_BURST,
            refilled: Instant::now(),
        }
    }

    fn feed(&mut self, mut bytes: &[u8], now: Instant) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = bytes.get(n..).unwrap_or_default();
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            let (head, rest) = bytes.split_at(n);
            if let Some(slot) = self.header.get_mut(self.have..self.have + n) {
                slot.copy_from_slice(head);
            }
            self.have += n;
            bytes = rest;
            if self.have == 9 {
                let [l0, l1, l2, kind, ..] = self.header;
                self.skip = u32::from_be_bytes([0, l0, l1, l2]) as usize;
                self.have = 0;
                if kind == RST_STREAM {
                    self.spend(now)?;
                }
            }
        }
        Ok(())
    }

    fn spend(&mut self, now: Instant) -> io::Result<()> {
        let earned = now.duration_since(self.refilled).as_secs_f64() * RESETS_PER_SECOND;
        self.tokens = (self.tokens + earned).min(RESET_BURST);
        self.refilled = now;
        if self.tokens < 1.0 {
            tracing::warn!("connection closed: stream resets over budget");
            return Err(io::Error::other("too many stream resets"));
        }
        self.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: usize) -> Vec<u8> {
        let len = u32::try_from(payload).unwrap().to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, 0, 0, 0, 0, 1];
        out.resize(9 + payload, 0xff);
        out
    }

    #[test]
    fn resets_are_counted_across_arbitrary_read_boundaries() {
        let mut bytes = Vec::new();
        for _ in 0..100 {
            // Payload bytes that look like RST_STREAM headers must not count.
            bytes.extend(frame(0x0, 20));
            bytes.extend(frame(RST_STREAM, 4));
        }
        let now = Instant::now();
        let mut watch = FrameWatch::new();
        for chunk in bytes.chunks(7) {
            watch.feed(chunk, now).unwrap();
        }
        assert!(watch.tokens < 1.0, "{}", watch.tokens);
        assert!(watch.feed(&frame(RST_STREAM, 4), now).is_err());
        // Other frames still pass; the budget comes back with time.
        let mut watch = FrameWatch::new();
        watch.tokens = 0.0;
        watch.refilled = now;
        watch.feed(&frame(0x1, 30), now).unwrap();
        let later = now + Duration::from_secs(1);
        for _ in 0..20 {
            watch.feed(&frame(RST_STREAM, 4), later).unwrap();
        }
        assert!(watch.feed(&frame(RST_STREAM, 4), later).is_err());
    }

    #[tokio::test]
    async fn the_preface_is_checked_and_handed_on() {
        let (mut client, server) = tokio::io::duplex(1024);
        tokio::io::AsyncWriteExt::write_all(&mut client, PREFACE)
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut client, &frame(0x4, 0))
            .await
            .unwrap();
        let mut server = server;
        read_preface(&mut server).await.unwrap();
        let mut guarded = Guarded::new(server);
        let mut seen = vec![0u8; 33];
        guarded.read_exact(&mut seen).await.unwrap();
        assert_eq!(seen.get(..24).unwrap(), PREFACE);
        assert_eq!(seen.get(24..).unwrap(), frame(0x4, 0));

        let (mut client, mut server) = tokio::io::duplex(1024);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(read_preface(&mut server).await.is_err());
    }
}
