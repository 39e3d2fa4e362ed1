//! Outbound mutual-TLS gRPC channels (peer links and the operator CLI).
//! TLS is done here, in the connector, with our own rustls configuration; the
//! server certificate, once it verifies against the trust anchors, is also put
//! to the caller's [`ServerCheck`] (e.g. "is this the node I meant to reach?").
//!
//! Every channel pings its server every [`KEEPALIVE_INTERVAL`] (also while
//! idle) and drops the connection when a ping is not answered within
//! [`KEEPALIVE_TIMEOUT`]: a silent partition ends calls within ~8 s instead of
//! leaving them hanging. The server side uses the same values.
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

/// Interval between HTTP/2 keepalive pings, on both sides of a connection.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(3);
/// Time a keepalive ping has to be answered before the connection is dropped.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Splits `host:port` into host (without IPv6 brackets) and port.
fn split_host(endpoint: &str) -> io::Result<(String, u16)> {
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("endpoint {endpoint:?}: expected host:port"),
        )
    })?;
    let port: u16 = port.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("endpoint {endpoint:?}: invalid port"),
        )
    })?;
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
    ))
}

/// A check of the server's certificate beyond chain validation; the error says
/// what was wrong (the connection is refused with it).
/// Checks the certificates a server presented (its own first, then any
/// intermediates), after the handshake verified them.
pub type ServerCheck = Arc<dyn Fn(&[CertificateDer<'_>]) -> Result<(), String> + Send + Sync>;

/// Opens a TLS connection to `endpoint` and puts the server's certificate to `expect`.
pub async fn connect_tls(
    endpoint: &str,
    tls: Arc<ClientConfig>,
    expect: Option<&ServerCheck>,
    connect_timeout: Duration,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let (host, port) = split_host(endpoint)?;
    let server_name = ServerName::try_from(host.clone()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("endpoint {endpoint:?}: invalid host name: {e}"),
        )
    })?;
    let fut = async {
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        let _ = tcp.set_nodelay(true);
        TlsConnector::from(tls).connect(server_name, tcp).await
    };
    let stream = tokio::time::timeout(connect_timeout, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("{endpoint}: timed out")))??;
    if let Some(check) = expect {
        let presented = stream
            .get_ref()
            .1
            .peer_certificates()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| io::Error::other("server sent no certificate"))?;
        check(presented).map_err(|why| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{endpoint}: {why}"),
            )
        })?;
    }
    Ok(stream)
}

/// Where a channel reports the serial of the certificate each connection saw.
pub type SerialSink = Arc<std::sync::Mutex<Option<String>>>;

/// A lazily connecting gRPC channel over mutual TLS to `endpoint`.
pub fn channel(
    endpoint: &str,
    tls: Arc<ClientConfig>,
    expect: Option<ServerCheck>,
    connect_timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    channel_observed(endpoint, tls, expect, connect_timeout, None)
}

/// Like [`channel`], also recording the server certificate's serial in `sink`.
pub fn channel_observed(
    endpoint: &str,
    tls: Arc<ClientConfig>,
    expect: Option<ServerCheck>,
    connect_timeout: Duration,
    sink: Option<SerialSink>,
) -> Result<Channel, tonic::transport::Error> {
    let target = endpoint.to_string();
    // The URI is only used for the :authority header; TLS is done by the connector.
    let ep = Endpoint::from_shared(format!("http://{endpoint}"))?
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .connect_timeout(connect_timeout);
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let tls = tls.clone();
        let target = target.clone();
        let expect = expect.clone();
        let sink = sink.clone();
        async move {
            let s = connect_tls(&target, tls, expect.as_ref(), connect_timeout).await?;
            if let Some(sink) = sink {
                let serial = s
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(crate::transport::tls::cert_serial);
                *sink.lock().expect("serial sink") = serial;
            }
            Ok::<_, io::Error>(TokioIo::new(s))
        }
    });
    Ok(ep.connect_with_connector_lazy(connector))
}
