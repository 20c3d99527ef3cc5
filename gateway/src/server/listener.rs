//! The serve loop: accepts TCP connections, does the TLS handshake when the listener has TLS, and
//! serves each connection with hyper (HTTP/1.1, HTTP/2 by ALPN or, in cleartext, by prior
//! knowledge) under the limits of [`ConnectionLimits`]. On shutdown it stops accepting, lets
//! in-flight requests finish within the drain deadline, and returns.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::tls::ALPN_H2;

/// How connections are bounded. The defaults suit an identity provider's provisioning traffic:
/// small requests, a handful of connections, no reason to hold anything open for long.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Longest a client may take to send a complete HTTP/1.1 request head, counted from when the
    /// connection starts waiting for it (after accept, and between keep-alive requests).
    pub header_read_timeout: Duration,
    /// Largest request head: HTTP/1.1 read buffer, HTTP/2 header list. At least 8192.
    pub max_header_bytes: u32,
    /// A connection with no request in flight for this long is closed gracefully; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// HTTP/2 keep-alive ping interval; `None`: no pings.
    pub h2_keepalive_interval: Option<Duration>,
    /// How long an HTTP/2 ping may go unanswered before the connection is closed.
    pub h2_keepalive_timeout: Duration,
    /// Longest a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// Most connections open at once; further clients wait in the listen backlog. `None`: no limit.
    pub max_connections: Option<usize>,
    /// How long shutdown waits for in-flight requests before closing what is left.
    pub drain_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 32 * 1024,
            idle_timeout: Some(Duration::from_secs(60)),
            h2_keepalive_interval: Some(Duration::from_secs(30)),
            h2_keepalive_timeout: Duration::from_secs(20),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: None,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// The smallest `max_header_bytes` (hyper's smallest HTTP/1 read buffer).
pub const MIN_HEADER_BYTES: u32 = 8192;

/// The hyper connection builders: one per way a connection can start.
struct Builders {
    /// Cleartext: HTTP/1.1, or HTTP/2 when the client opens with the HTTP/2 preface.
    auto: auto::Builder<TokioExecutor>,
    /// TLS that negotiated `http/1.1` or no ALPN.
    http1: auto::Builder<TokioExecutor>,
    /// TLS that negotiated `h2`.
    http2: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: &ConnectionLimits) -> Self {
        let mut b = auto::Builder::new(TokioExecutor::new());
        // The timer makes hyper's header-read timeout and HTTP/2 pings work at all.
        b.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES) as usize);
        b.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes.max(MIN_HEADER_BYTES))
            .keep_alive_interval(limits.h2_keepalive_interval)
            .keep_alive_timeout(limits.h2_keepalive_timeout);
        Self { http1: b.clone().http1_only(), http2: b.clone().http2_only(), auto: b }
    }
}

/// When the last request of a connection started or ended, and how many are in flight: what the
/// idle timeout looks at. HTTP/2 pings and TCP keep-alives are not activity.
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self { opened: Instant::now(), last_ms: AtomicU64::new(0), in_flight: AtomicUsize::new(0) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(self.clone())
    }

    /// Resolves once no request has been in flight for `timeout`.
    async fn idle(&self, timeout: Option<Duration>) {
        let Some(timeout) = timeout else { return std::future::pending().await };
        loop {
            let deadline = self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + timeout;
            if self.in_flight.load(Ordering::Acquire) > 0 {
                // A request is running: look again later; its end moves the deadline.
                tokio::time::sleep(timeout).await;
            } else if Instant::now() >= deadline {
                return;
            } else {
                tokio::time::sleep_until(deadline.into()).await;
            }
        }
    }
}

/// One request in flight; ending it (its response is ready, or it was dropped) counts as activity.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What every connection task shares.
struct Shared {
    router: Router,
    tls: Option<TlsAcceptor>,
    builders: Builders,
    limits: ConnectionLimits,
}

/// Serves `router` on `listener` (through TLS when `tls` is given) until `shutdown` resolves, then
/// stops accepting, asks every connection to finish (HTTP/1.1: after its current response;
/// HTTP/2: GOAWAY) and waits for them up to the drain deadline.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let permits = limits.max_connections.map(|n| Arc::new(Semaphore::new(n)));
    let shared = Arc::new(Shared { router, tls, builders: Builders::new(&limits), limits });
    // Every connection task holds a receiver: `closed()` on the sender is "all connections gone".
    let (stop, _) = watch::channel(false);
    let mut last_full_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let permit = match &permits {
            Some(sem) => {
                if sem.available_permits() == 0
                    && last_full_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60))
                {
                    last_full_warning = Some(Instant::now());
                    tracing::warn!(
                        max = shared.limits.max_connections,
                        "connection limit reached; new connections wait in the backlog"
                    );
                }
                tokio::select! {
                    p = sem.clone().acquire_owned() => match p {
                        Ok(p) => Some(p),
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
            None => None,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    if !is_per_connection(&e) {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (shared, stop) = (shared.clone(), stop.subscribe());
        tokio::spawn(async move {
            connection(stream, peer, &shared, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    let open = stop.receiver_count();
    tracing::info!(
        open_connections = open,
        drain_timeout_s = shared.limits.drain_timeout.as_secs_f64(),
        "stopped accepting; draining"
    );
    stop.send_replace(true);
    match tokio::time::timeout(shared.limits.drain_timeout, stop.closed()).await {
        Ok(()) => tracing::info!("all connections finished"),
        Err(_) => tracing::warn!(
            open_connections = stop.receiver_count(),
            "drain deadline passed; closing the remaining connections"
        ),
    }
}

/// Accept errors that concern one connection only (it went away before we took it).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// One connection from accept to close.
async fn connection(stream: TcpStream, peer: std::net::SocketAddr, shared: &Shared, mut stop: watch::Receiver<bool>) {
    let Some(acceptor) = &shared.tls else {
        serve_io(TokioIo::new(stream), &shared.builders.auto, shared, stop).await;
        return;
    };
    let handshake = tokio::time::timeout(shared.limits.tls_handshake_timeout, acceptor.accept(stream));
    let tls = tokio::select! {
        r = handshake => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        _ = stop.wait_for(|s| *s) => return,
    };
    // ALPN decides the protocol; a TLS client that offers none speaks HTTP/1.1 (RFC 9113 §3.2).
    let builder =
        if tls.get_ref().1.alpn_protocol() == Some(ALPN_H2) { &shared.builders.http2 } else { &shared.builders.http1 };
    serve_io(TokioIo::new(tls), builder, shared, stop).await;
}

/// Serves HTTP on an established byte stream until the client leaves, the connection idles out,
/// or shutdown asks it to finish.
async fn serve_io<I>(io: I, builder: &auto::Builder<TokioExecutor>, shared: &Shared, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let router = shared.router.clone();
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let in_flight = requests.begin();
        let response = router.clone().oneshot(req);
        async move {
            let r = response.await;
            drop(in_flight);
            r
        }
    });
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    // Clients that vanish, time out or send garbage: nothing for an operator.
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|s| *s), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.idle(shared.limits.idle_timeout), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
