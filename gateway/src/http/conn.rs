//! Connections: at most `max_connections` are served at once, each by hyper's HTTP/1.1 server
//! with a header-read timeout, under a watchdog that closes it when it went idle or its client
//! stopped reading the response.
//!
//! HTTP/1.1 only: S3 clients speak it, and h2c (prior knowledge, which the old auto builder
//! accepted) multiplexes many requests over one connection, around these per-connection limits.
//!
//! With TLS the handshake runs under the header timeout, on top of the watched TCP stream (so
//! the idle and stalled-reader clocks see the raw bytes), and every request carries a
//! [`Transport`] extension saying whether it came over TLS (`aws:SecureTransport`, SSE-C).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::Front;
use super::tls::TlsSource;
use crate::metrics::EdgeEvent;

/// How a request reached us; a request extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transport {
    /// Over TLS.
    pub secure: bool,
}

/// What the watchdog knows about a connection. Times are milliseconds since `epoch`.
struct Activity {
    epoch: Instant,
    last_io: AtomicU64,
    /// When a write first returned Pending (the client is not reading), plus one; 0 = not blocked.
    write_blocked_since: AtomicU64,
    /// Requests whose handler is running (their body has its own stall timeout).
    in_flight: AtomicUsize,
    /// Wakes the watchdog when a handler finishes, so its clocks start on time.
    handler_done: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            last_io: AtomicU64::new(0),
            write_blocked_since: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            handler_done: tokio::sync::Notify::new(),
        }
    }
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
    fn touch(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }
}

/// The TCP stream, noting every byte moved and writes that block.
struct WatchedIo {
    inner: TcpStream,
    act: Arc<Activity>,
}

impl WatchedIo {
    fn on_write(&self, r: &Poll<std::io::Result<usize>>) {
        match r {
            Poll::Pending => {
                let _ = self.act.write_blocked_since.compare_exchange(
                    0,
                    self.act.now() + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.act.write_blocked_since.store(0, Ordering::Relaxed);
                self.act.touch();
            }
            _ => {}
        }
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.act.touch();
        }
        r
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.on_write(&r);
        r
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.on_write(&r);
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Counts a running handler for as long as it lives.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(act: &Arc<Activity>) -> Self {
        act.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(act.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
        self.0.handler_done.notify_one();
    }
}

/// The answer to a connection beyond the cap, written once without waiting, then closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 126\r\n\r\n<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";

/// Accepts connections until the listener fails; every connection is served on its own task,
/// over TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    front: Arc<Front>,
    tls: Option<Arc<TlsSource>>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(front.edge.max_connections));
    let mut last_warned: Option<Instant> = None;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            let _ = stream.try_write(REFUSED);
            drop(stream);
            front.metrics.edge(EdgeEvent::ConnectionRefused);
            if last_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                last_warned = Some(Instant::now());
                tracing::warn!(target: "strata::security", %peer, max_connections = front.edge.max_connections,
                    "connection limit reached: new connections are refused (logged at most every 10 s)");
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let front = front.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let act = Arc::new(Activity::new());
            let io = WatchedIo {
                inner: stream,
                act: act.clone(),
            };
            match tls {
                None => serve_connection(io, act, peer, front, false).await,
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                    let hs = tokio::time::timeout(front.edge.header_timeout, acceptor.accept(io));
                    match hs.await {
                        Ok(Ok(io)) => serve_connection(io, act, peer, front, true).await,
                        Ok(Err(e)) => {
                            let e: String = e.to_string().chars().take(200).collect();
                            tracing::info!(target: "strata::security", %peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            front.metrics.edge(EdgeEvent::HeaderTimeout);
                            tracing::info!(target: "strata::security", %peer, "connection closed: TLS handshake not completed in time");
                        }
                    }
                }
            }
            drop(permit);
        });
    }
}

async fn serve_connection<S>(
    stream: S,
    act: Arc<Activity>,
    peer: std::net::SocketAddr,
    front: Arc<Front>,
    secure: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let idle = front.edge.idle_timeout.max(Duration::from_millis(10));
    let idle_ms = idle.as_millis() as u64;
    let svc = {
        let front = front.clone();
        let act = act.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(Transport { secure });
            let guard = InFlight::enter(&act);
            let front = front.clone();
            async move {
                let r = front.handle(req, peer).await;
                drop(guard);
                r
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(front.edge.header_timeout);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let wait = next_check(&act, idle_ms, draining);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    if e.is_timeout() {
                        front.metrics.edge(EdgeEvent::HeaderTimeout);
                        tracing::info!(target: "strata::security", %peer, "connection closed: request headers not received in time");
                    } else {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                }
                return;
            }
            _ = tokio::time::sleep(wait) => {}
            _ = act.handler_done.notified() => continue,
        }
        if act.in_flight.load(Ordering::Relaxed) > 0 {
            continue;
        }
        let now = act.now();
        let blocked = act.write_blocked_since.load(Ordering::Relaxed);
        if blocked != 0 && now + 1 - blocked >= idle_ms {
            front.metrics.edge(EdgeEvent::StalledReaderClosed);
            tracing::info!(target: "strata::security", %peer, "connection closed: the client stopped reading the response");
            return;
        }
        let idle_for = now.saturating_sub(act.last_io.load(Ordering::Relaxed));
        if idle_for >= idle_ms {
            if !draining {
                // hyper closes an idle connection at once, or after the response in progress.
                draining = true;
                front.metrics.edge(EdgeEvent::IdleClosed);
                conn.as_mut().graceful_shutdown();
            } else if idle_for >= 2 * idle_ms {
                return;
            }
        }
    }
}

/// How long the watchdog can sleep before something may have expired.
fn next_check(act: &Activity, idle_ms: u64, draining: bool) -> Duration {
    if act.in_flight.load(Ordering::Relaxed) > 0 {
        return Duration::from_millis(idle_ms);
    }
    let now = act.now();
    let idle_deadline =
        act.last_io.load(Ordering::Relaxed) + if draining { 2 * idle_ms } else { idle_ms };
    let mut deadline = idle_deadline;
    let blocked = act.write_blocked_since.load(Ordering::Relaxed);
    if blocked != 0 {
        deadline = deadline.min(blocked - 1 + idle_ms);
    }
    Duration::from_millis(deadline.saturating_sub(now).clamp(10, idle_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_a_complete_response() {
        let text = std::str::from_utf8(REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
    }
}
