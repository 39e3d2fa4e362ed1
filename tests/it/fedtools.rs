//! Tools for the federation-stream tests: a node as a real `certfed serve`
//! process with its log in a file and its CPU time readable from /proc; a raw
//! Push client that sends arbitrary bytes as frames (a hostile peer); a TCP
//! proxy the test can black-hole (stop forwarding without closing anything);
//! envelopes signed as a member; ListPeers and delivery-state helpers.
#![allow(dead_code)]

use crate::common::*;
use certfed::domain::envelope::{Draft, seal};
use certfed::domain::keys::Signer;
use certfed::proto::v1::*;
use prost::Message;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const BIN: &str = env!("CARGO_BIN_EXE_certfed");
/// Generous bound for waits on a loaded machine.
pub const WAIT: Duration = Duration::from_secs(60);

/// A `certfed serve` process; killed and reaped when dropped.
pub struct Proc {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// User + system CPU time of the process so far, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // The command name (field 2) is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 and 15 of stat are 12 and 13 after the name.
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts node `i` of `fed` as a process with `RUST_LOG=rust_log`, logging to
/// `<id>.log`; returns once its Operator API answers.
pub async fn spawn_node(fed: &Fed, i: usize, rust_log: &str) -> Proc {
    let cfg = fed.config_path(i);
    let log = fed.pki.path(&format!("{}.log", fed.specs[i].id));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap();
    let p = Proc {
        child: Some(child),
        log,
    };
    let up = eventually(WAIT, || async move {
        let mut op = fed.operator(i).await;
        op.get_node_info(GetNodeInfoRequest {}).await.is_ok()
    })
    .await;
    assert!(up, "node {i} did not come up; log:\n{}", p.log());
    p
}

/// The signing key of member `id` in the test PKI.
pub fn signer_from(pki: &Pki, id: &str) -> Signer {
    let pem = std::fs::read_to_string(pki.path(&format!("{id}.sign.key"))).unwrap();
    Signer::from_pkcs8_pem(id, &pem).unwrap()
}

/// A GREEN broadcast alert draft created now.
pub fn draft(payload: Vec<u8>) -> Draft {
    Draft {
        message_id: uuid::Uuid::now_v7().to_string(),
        kind: MessageKind::Alert,
        tlp: Tlp::Green,
        recipients: vec![],
        created_ms: certfed::service::now_ms(),
        expires_ms: None,
        hop_limit: 8,
        exercise: false,
        encrypted: false,
        payload,
    }
}

/// A GREEN alert titled `title`, signed by `signer`, created at `created_ms`.
pub fn signed_alert(signer: &Signer, title: &str, created_ms: i64) -> SignedEnvelope {
    let mut d = draft(green_alert(title).encode_to_vec());
    d.created_ms = created_ms;
    seal(signer, d)
}

/// The message id in a signed envelope's header.
pub fn id_of(env: &SignedEnvelope) -> String {
    EnvelopeHeader::decode(env.header.as_slice())
        .unwrap()
        .message_id
}

/// A frame for Push.
pub fn frame(seq: u64, env: SignedEnvelope) -> PushFrame {
    PushFrame {
        toward: Vec::new(),
        bundled: Vec::new(),
        gossip: None,
        resent: false,
        returning: false,
        seq,
        envelope: Some(env),
        hops: vec![],
    }
}

/// A gRPC codec that sends each item's bytes verbatim as a message (so a test
/// can send frames that do not decode) and decodes `PushAck`s.
#[derive(Default, Clone)]
pub struct RawCodec;

pub struct RawEncoder;
pub struct AckDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for AckDecoder {
    type Item = PushAck;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<PushAck>, tonic::Status> {
        PushAck::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = PushAck;
    type Encoder = RawEncoder;
    type Decoder = AckDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> AckDecoder {
        AckDecoder
    }
}

/// Opens a Push stream to `addr` as node `name` and sends `frames` (raw bytes,
/// one gRPC message each); returns what came back: the acks in order, then
/// the status that ended the stream (`None` if it ended cleanly). Bounded by
/// `within`; `Err` if the node did not end the stream in time.
pub async fn raw_push(
    pki: &Pki,
    addr: &str,
    name: &str,
    frames: Vec<Vec<u8>>,
    within: Duration,
) -> Result<(Vec<PushAck>, Option<tonic::Status>), &'static str> {
    let ch = certfed::transport::client::channel(
        addr,
        pki.client_tls(name),
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    let mut grpc = tonic::client::Grpc::new(ch);
    let run = async move {
        grpc.ready().await.map_err(|_| "channel not ready")?;
        let path = http::uri::PathAndQuery::from_static("/certfed.v1.Federation/Push");
        // Keep the request stream open after the frames: the node, not the
        // client, must end the stream.
        let req = futures::StreamExt::chain(
            tokio_stream::iter(frames),
            futures::stream::pending::<Vec<u8>>(),
        );
        let resp = grpc
            .streaming(tonic::Request::new(req), path, RawCodec)
            .await;
        let mut s = match resp {
            Ok(r) => r.into_inner(),
            Err(st) => return Ok((Vec::new(), Some(st))),
        };
        let mut acks = Vec::new();
        loop {
            match s.message().await {
                Ok(Some(a)) => acks.push(a),
                Ok(None) => return Ok((acks, None)),
                Err(st) => return Ok((acks, Some(st))),
            }
        }
    };
    tokio::time::timeout(within, run)
        .await
        .map_err(|_| "the stream did not end")?
}

/// A TCP proxy on 127.0.0.1 to `target` that the test can black-hole: while
/// black-holed, bytes in either direction are read and dropped and new
/// connections are accepted and held, but nothing is closed (a silent
/// partition, as a dead router makes it).
pub struct Proxy {
    pub port: u16,
    blackhole: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let blackhole = Arc::new(AtomicBool::new(false));
        let bh = blackhole.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let bh = bh.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::spawn(pump(ri, wo, bh.clone()));
                    tokio::spawn(pump(ro, wi, bh));
                });
            }
        });
        Proxy {
            port,
            blackhole,
            task,
        }
    }

    pub fn set_blackhole(&self, on: bool) {
        self.blackhole.store(on, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    blackhole: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                // The other side really closed: pass it on only when not
                // black-holed (a partition hides closes too).
                while blackhole.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        if blackhole.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Node `i`'s view of its link to `peer`.
pub async fn peer_view(fed: &Fed, i: usize, peer: &str) -> Option<PeerView> {
    let mut op = fed.operator(i).await;
    op.list_peers(ListPeersRequest::default())
        .await
        .ok()?
        .into_inner()
        .peers
        .into_iter()
        .find(|p| p.peer_id == peer)
}

/// Node `i`'s delivery row for `message_id` towards `peer`.
pub async fn delivery_to(
    fed: &Fed,
    i: usize,
    message_id: &str,
    peer: &str,
) -> Option<RecipientDelivery> {
    let mut op = fed.operator(i).await;
    op.get_delivery_status(GetDeliveryStatusRequest {
        message_id: message_id.to_string(),
    })
    .await
    .ok()?
    .into_inner()
    .recipients
    .into_iter()
    .find(|r| r.node_id == peer)
}

/// Every alert id on node `i`, oldest first (ListAlerts lists newest first).
/// Small pages: a page of large alerts must stay under the response limit.
pub async fn alert_ids_oldest_first(fed: &Fed, i: usize) -> Vec<String> {
    let mut op = fed.operator(i).await;
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let r = op
            .list_alerts(ListAlertsRequest {
                filter: None,
                page_size: 8,
                page_token: token,
            })
            .await
            .expect("ListAlerts")
            .into_inner();
        ids.extend(r.alerts.into_iter().map(|a| a.message_id));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    ids.reverse();
    ids
}

/// How a [`FakePeer`] answers Push.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FakePush {
    /// Opens the stream and never acknowledges anything (a hung peer).
    Silent,
    /// Opens the stream, then fails it at once with UNAVAILABLE.
    FailAfterOpen,
}

/// A server with a valid node certificate for `node-b` that answers Hello
/// and Push the way it is told, counting Push calls.
pub struct FakePeer {
    pub pushes: Arc<std::sync::atomic::AtomicUsize>,
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct FakeFederation {
    id: String,
    mode: FakePush,
    pushes: Arc<std::sync::atomic::AtomicUsize>,
}

type FakeAcks =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<PushAck, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl certfed::proto::v1::federation_server::Federation for FakeFederation {
    type PushStream = FakeAcks;

    async fn push(
        &self,
        req: tonic::Request<tonic::Streaming<PushFrame>>,
    ) -> Result<tonic::Response<FakeAcks>, tonic::Status> {
        self.pushes.fetch_add(1, Ordering::SeqCst);
        let mut frames = req.into_inner();
        match self.mode {
            FakePush::Silent => {
                // Read (and drop) the frames so the sender is never blocked
                // by flow control, but never answer.
                tokio::spawn(async move { while let Ok(Some(_)) = frames.message().await {} });
                Ok(tonic::Response::new(Box::pin(futures::stream::pending())))
            }
            FakePush::FailAfterOpen => {
                Ok(tonic::Response::new(Box::pin(tokio_stream::iter(vec![
                    Err(tonic::Status::unavailable(
                        "fake peer: cannot take anything",
                    )),
                ]))))
            }
        }
    }

    async fn reconcile(
        &self,
        _req: tonic::Request<certfed::proto::v1::ReconcileRequest>,
    ) -> Result<tonic::Response<certfed::proto::v1::ReconcileResponse>, tonic::Status> {
        // Like a peer of a version before reconciliation.
        Err(tonic::Status::unimplemented("fake peer: no reconciliation"))
    }

    type FetchAttachmentStream = std::pin::Pin<
        Box<
            dyn futures::Stream<Item = Result<certfed::proto::v1::AttachmentChunk, tonic::Status>>
                + Send,
        >,
    >;

    async fn fetch_attachment(
        &self,
        _req: tonic::Request<certfed::proto::v1::FetchAttachmentRequest>,
    ) -> Result<tonic::Response<Self::FetchAttachmentStream>, tonic::Status> {
        // Like a peer of a version before attachments.
        Err(tonic::Status::unimplemented("fake peer: no attachments"))
    }

    async fn hello(
        &self,
        _req: tonic::Request<HelloRequest>,
    ) -> Result<tonic::Response<HelloResponse>, tonic::Status> {
        Ok(tonic::Response::new(HelloResponse {
            node_id: self.id.clone(),
            version: "fake".into(),
            max_message_bytes: 0,
            roster_version: 0,
            accepts_bundles: false,
            accepts_gossip: false,
            reconcile_max_ranges: 0,
        }))
    }
}

impl FakePeer {
    /// Serves as node `i` of `fed` (on its port, with its certificate).
    pub async fn start(fed: &Fed, i: usize, mode: FakePush) -> FakePeer {
        use certfed::transport::server::{AcceptConfig, ConnLimits, accept_loop};
        use certfed::transport::tls;
        let id = fed.specs[i].id.clone();
        let m = tls::load_material(&tls::TlsFiles {
            ca: fed.pki.ca_path(),
            cert: fed.pki.path(&format!("{id}.crt")),
            key: fed.pki.path(&format!("{id}.key")),
            crls: vec![],
        })
        .unwrap();
        let server = tls::server_config(&m).unwrap();
        let listener = TcpListener::bind(("127.0.0.1", fed.specs[i].port))
            .await
            .unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let identify: certfed::transport::server::Identify<certfed::domain::identity::Identity> =
            Arc::new(|c| {
                certfed::domain::identity::Identity::from_certificate(c[0].as_ref())
                    .map_err(|e| e.to_string())
            });
        let incoming = accept_loop(
            listener,
            AcceptConfig {
                tls: tokio::sync::watch::channel(server).1,
                handshake_timeout: Duration::from_secs(5),
                limits: ConnLimits {
                    max_handshakes: 64,
                    max_handshakes_per_source: 64,
                    max_connections: 64,
                    max_connections_per_source: 64,
                },
                identify,
                on_refused: Arc::new(|_| {}),
            },
            stop.clone(),
        );
        let pushes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let svc = certfed::proto::v1::federation_server::FederationServer::new(FakeFederation {
            id,
            mode,
            pushes: pushes.clone(),
        });
        let s = stop.clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::ReceiverStream::new(incoming),
                    async move { s.cancelled().await },
                ),
        );
        FakePeer { pushes, stop }
    }
}

/// Rewrites `path` with `from` replaced by `to` (once), into `name` next to it.
pub fn edited(path: &std::path::Path, name: &str, from: &str, to: &str) -> PathBuf {
    let s = std::fs::read_to_string(path).unwrap();
    assert!(s.contains(from), "{} has no {from:?}", path.display());
    let out = path.with_file_name(name);
    std::fs::write(&out, s.replacen(from, to, 1)).unwrap();
    out
}

/// Starts a node in this process from the configuration file `path`.
pub async fn start_from(path: &std::path::Path) -> certfed::app::RunningNode {
    let cfg = certfed::config::Config::load(path).unwrap();
    certfed::app::start(certfed::app::prepare(cfg).unwrap())
        .await
        .unwrap()
}

/// The Prometheus text of the `/metrics` endpoint at `addr`.
pub async fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The value of the sample `name` (with its labels, as printed) in a scrape.
pub fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

/// Pushes `frames` to node `to` (id `to_id`) as a test client with peer
/// `as_peer`'s certificate; the acknowledgements.
pub async fn push_as(
    fed: &Fed,
    to: usize,
    to_id: &str,
    as_peer: &str,
    frames: Vec<PushFrame>,
) -> tonic::Streaming<PushAck> {
    federation_client(&fed.pki, &fed.addr(to), as_peer, Some(to_id))
        .await
        .push(tokio_stream::iter(frames))
        .await
        .unwrap()
        .into_inner()
}
