//! The accept loop: TCP accept, then each TLS handshake in its own task with a
//! timeout, so a silent client never blocks others. A finished connection is
//! handed on only if the caller's `identify` function accepts the client
//! certificate; it then carries what `identify` returned into tonic as
//! `ConnectInfo`. This layer does not know what identities are.
//!
//! Floods are refused before any TLS work: a TCP connection that would exceed
//! [`ConnLimits`] (handshakes in progress, open connections, each in total and
//! per source address) is closed as soon as it is accepted, reported to the
//! caller's `on_refused`, and logged at most once per [`LOG_EVERY`] with a
//! count (so are failed handshakes). A connection counts until it is closed
//! (its [`TlsConn`] dropped).
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Who is on the other end of a connection, as proven by its certificate.
#[derive(Clone, Debug)]
pub struct PeerInfo<I> {
    pub identity: I,
    pub addr: SocketAddr,
    /// Serial of the certificate presented (lower-case hex).
    pub serial: String,
}

/// A server-side TLS connection that knows its peer.
pub struct TlsConn<I> {
    inner: TlsStream<TcpStream>,
    info: PeerInfo<I>,
    _slot: Slot,
}

/// Caps on what the listener accepts, checked before any TLS work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// TLS handshakes in progress, from all sources.
    pub max_handshakes: usize,
    /// TLS handshakes in progress from one source address.
    pub max_handshakes_per_source: usize,
    /// Open connections (handshaking or established), from all sources.
    pub max_connections: usize,
    /// Open connections from one source address.
    pub max_connections_per_source: usize,
}

/// The cap a refused connection hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Handshakes,
    HandshakesPerSource,
    Connections,
    ConnectionsPerSource,
}

impl Refused {
    /// The configuration key of the cap (also the metric label).
    pub fn key(self) -> &'static str {
        match self {
            Refused::Handshakes => "max_handshakes",
            Refused::HandshakesPerSource => "max_handshakes_per_source",
            Refused::Connections => "max_connections",
            Refused::ConnectionsPerSource => "max_connections_per_source",
        }
    }
}

/// Called for every connection refused by a cap.
pub type OnRefused = Arc<dyn Fn(Refused) + Send + Sync>;

/// Refusals and accept errors are logged at most once per this period.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts of handshakes and connections, in total and per source.
#[derive(Default)]
struct Counts {
    handshakes: usize,
    connections: usize,
    /// Per source: (handshakes, connections).
    per_source: HashMap<IpAddr, (usize, usize)>,
}

/// The admission gate of the listener.
struct Gate {
    limits: ConnLimits,
    counts: Mutex<Counts>,
}

impl Gate {
    /// Takes a slot for a new connection from `ip`, or says which cap it hits.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let l = self.limits;
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (hs, conns) = c.per_source.get(&ip).copied().unwrap_or((0, 0));
        if c.connections >= l.max_connections {
            return Err(Refused::Connections);
        }
        if conns >= l.max_connections_per_source {
            return Err(Refused::ConnectionsPerSource);
        }
        if c.handshakes >= l.max_handshakes {
            return Err(Refused::Handshakes);
        }
        if hs >= l.max_handshakes_per_source {
            return Err(Refused::HandshakesPerSource);
        }
        c.handshakes += 1;
        c.connections += 1;
        c.per_source.insert(ip, (hs + 1, conns + 1));
        Ok(Slot {
            gate: self.clone(),
            ip,
            handshaking: true,
        })
    }
}

/// A connection's place in the gate's counts, given back when dropped.
struct Slot {
    gate: Arc<Gate>,
    ip: IpAddr,
    handshaking: bool,
}

impl Slot {
    /// The handshake is over: the connection no longer counts as handshaking.
    fn established(&mut self) {
        if std::mem::take(&mut self.handshaking) {
            let mut c = self.gate.counts.lock().unwrap_or_else(|e| e.into_inner());
            c.handshakes -= 1;
            if let Some(e) = c.per_source.get_mut(&self.ip) {
                e.0 -= 1;
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.established();
        let mut c = self.gate.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.connections -= 1;
        let gone = c.per_source.get_mut(&self.ip).is_some_and(|e| {
            e.1 -= 1;
            *e == (0, 0)
        });
        if gone {
            c.per_source.remove(&self.ip);
        }
    }
}

/// [`Throttled::tick`] on a shared throttle.
fn tick(t: &Mutex<Throttled>) -> Option<u64> {
    t.lock().unwrap_or_else(|e| e.into_inner()).tick()
}

/// Logs a recurring event at most once per [`LOG_EVERY`], with the count.
struct Throttled {
    last: Option<tokio::time::Instant>,
    suppressed: u64,
}

impl Throttled {
    /// Whether to log now; returns how many were suppressed since last time.
    fn tick(&mut self) -> Option<u64> {
        let now = tokio::time::Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < LOG_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

impl<I: Clone + Send + Sync + 'static> tonic::transport::server::Connected for TlsConn<I> {
    type ConnectInfo = PeerInfo<I>;
    fn connect_info(&self) -> PeerInfo<I> {
        self.info.clone()
    }
}

impl<I: Unpin> AsyncRead for TlsConn<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: Unpin> AsyncWrite for TlsConn<I> {
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

/// Decides whether a client certificate may connect, and who it is.
/// Decides who a client is from the certificates it presented (its own
/// first, then any intermediates), after the handshake verified them.
pub type Identify<I> = Arc<dyn Fn(&[CertificateDer<'_>]) -> Result<I, String> + Send + Sync>;

/// What the accept loop needs besides the listener.
pub struct AcceptConfig<I> {
    /// The TLS configuration; the current one is used for each handshake (so
    /// certificates and CRLs can be swapped at runtime).
    pub tls: watch::Receiver<Arc<ServerConfig>>,
    /// Time a client has to finish the TLS handshake.
    pub handshake_timeout: Duration,
    pub limits: ConnLimits,
    /// Decides whether a client certificate may connect, and who it is.
    pub identify: Identify<I>,
    /// Told about each connection refused by a cap.
    pub on_refused: OnRefused,
}

/// Accepts TCP connections on `listener` until `stop` is cancelled, refuses
/// those over the caps, handshakes each of the others in its own task
/// (bounded by the handshake timeout), and sends the connections `identify`
/// accepts to the returned channel.
pub fn accept_loop<I: Clone + Send + Sync + Unpin + 'static>(
    listener: TcpListener,
    cfg: AcceptConfig<I>,
    stop: CancellationToken,
) -> mpsc::Receiver<Result<TlsConn<I>, io::Error>> {
    let AcceptConfig {
        tls,
        handshake_timeout,
        limits,
        identify,
        on_refused,
    } = cfg;
    let gate = Arc::new(Gate {
        limits,
        counts: Mutex::default(),
    });
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut refusals = Throttled {
            last: None,
            suppressed: 0,
        };
        let mut accept_errors = Throttled {
            last: None,
            suppressed: 0,
        };
        // Separate throttles: silent clients must not hide a refused
        // certificate (e.g. a revoked one) from the log.
        let handshake_log = Arc::new(Mutex::new(Throttled {
            last: None,
            suppressed: 0,
        }));
        let timeout_log = Arc::new(Mutex::new(Throttled {
            last: None,
            suppressed: 0,
        }));
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.cancelled() => break,
            };
            let (tcp, addr) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    if let Some(more) = accept_errors.tick() {
                        tracing::warn!(error = %e, more, "accept failed (out of file descriptors? see listener.max_connections)");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let mut slot = match gate.admit(addr.ip()) {
                Ok(s) => s,
                Err(why) => {
                    drop(tcp);
                    on_refused(why);
                    if let Some(more) = refusals.tick() {
                        tracing::warn!(source = %addr.ip(), limit = %format!("listener.{}", why.key()), more, "connection refused before TLS: a listener limit is reached (a flood?)");
                    }
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(tls.borrow().clone());
            let tx = tx.clone();
            let identify = identify.clone();
            let handshake_log = handshake_log.clone();
            let timeout_log = timeout_log.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    // Throttled: a flood of bad handshakes must not flood the log.
                    Err(_) => {
                        if let Some(more) = tick(&timeout_log) {
                            tracing::info!(%addr, more, "TLS handshake timed out; connection closed");
                        }
                    }
                    Ok(Err(e)) => {
                        if let Some(more) = tick(&handshake_log) {
                            tracing::info!(%addr, error = %e, more, "TLS handshake refused");
                        }
                    }
                    Ok(Ok(stream)) => {
                        slot.established();
                        let presented = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .map(<[CertificateDer<'_>]>::to_vec)
                            .unwrap_or_default();
                        let cert = presented.first().cloned();
                        let identity = match cert.as_ref().map(|_| identify(&presented)) {
                            Some(Ok(id)) => id,
                            Some(Err(e)) => {
                                if let Some(more) = tick(&handshake_log) {
                                    tracing::info!(%addr, reason = %e, more, "client certificate refused");
                                }
                                return;
                            }
                            None => return,
                        };
                        tracing::debug!(%addr, "TLS connection established");
                        let serial = cert
                            .as_ref()
                            .and_then(crate::transport::tls::cert_serial)
                            .unwrap_or_default();
                        let conn = TlsConn {
                            inner: stream,
                            info: PeerInfo {
                                identity,
                                addr,
                                serial,
                            },
                            _slot: slot,
                        };
                        let _ = tx.send(Ok(conn)).await;
                    }
                }
            });
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(h: usize, hs: usize, c: usize, cs: usize) -> Arc<Gate> {
        Arc::new(Gate {
            limits: ConnLimits {
                max_handshakes: h,
                max_handshakes_per_source: hs,
                max_connections: c,
                max_connections_per_source: cs,
            },
            counts: Mutex::default(),
        })
    }

    #[test]
    fn the_gate_counts_handshakes_and_connections_per_source() {
        let g = gate(3, 2, 5, 3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut a1 = g.admit(a).unwrap();
        let a2 = g.admit(a).unwrap();
        assert_eq!(g.admit(a).err(), Some(Refused::HandshakesPerSource));
        let b1 = g.admit(b).unwrap();
        assert_eq!(g.admit(b).err(), Some(Refused::Handshakes), "3 in total");
        a1.established();
        let mut a3 = g.admit(a).unwrap();
        assert_eq!(
            g.admit(a).err(),
            Some(Refused::ConnectionsPerSource),
            "3 open from a"
        );
        a3.established();
        let _b2 = g.admit(b).unwrap();
        assert_eq!(g.admit(b).err(), Some(Refused::Connections), "5 open");
        drop((a1, a2, a3, b1));
        let again = g.admit(a).expect("slots come back when connections close");
        assert_eq!(g.counts.lock().unwrap().per_source.get(&a), Some(&(1, 1)));
        drop((again, _b2));
        let c = g.counts.lock().unwrap();
        assert_eq!((c.handshakes, c.connections, c.per_source.len()), (0, 0, 0));
    }
}
