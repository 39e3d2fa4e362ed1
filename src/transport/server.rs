//! The accept loop: TCP accept, then each TLS handshake in its own task with a
//! timeout, so a silent client never blocks others. A finished connection is
//! handed on only if the caller's `identify` function accepts the client
//! certificate; it then carries what `identify` returned into tonic as
//! `ConnectInfo`. This layer does not know what identities are.
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
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
pub type Identify<I> = Arc<dyn Fn(&CertificateDer<'_>) -> Result<I, String> + Send + Sync>;

/// Accepts TCP connections on `listener` until `stop` is cancelled, handshakes
/// each in its own task (bounded by `handshake_timeout`) with the TLS
/// configuration currently in `tls` (so certificates and CRLs can be swapped at
/// runtime), and sends the connections `identify` accepts to the returned channel.
pub fn accept_loop<I: Clone + Send + Sync + Unpin + 'static>(
    listener: TcpListener,
    tls: watch::Receiver<Arc<ServerConfig>>,
    handshake_timeout: Duration,
    identify: Identify<I>,
    stop: CancellationToken,
) -> mpsc::Receiver<Result<TlsConn<I>, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.cancelled() => break,
            };
            let (tcp, addr) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(tls.borrow().clone());
            let tx = tx.clone();
            let identify = identify.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Err(_) => {
                        tracing::info!(%addr, "TLS handshake timed out; connection closed")
                    }
                    Ok(Err(e)) => tracing::info!(%addr, error = %e, "TLS handshake refused"),
                    Ok(Ok(stream)) => {
                        let cert = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first().cloned());
                        let identity = match cert.as_ref().map(|c| identify(c)) {
                            Some(Ok(id)) => id,
                            Some(Err(e)) => {
                                tracing::info!(%addr, reason = %e, "client certificate refused");
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
                        };
                        let _ = tx.send(Ok(conn)).await;
                    }
                }
            });
        }
    });
    rx
}
