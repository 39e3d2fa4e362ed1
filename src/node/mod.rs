//! The node: loads and checks everything the configuration names, opens the
//! store, binds the listeners, serves gRPC over mutual TLS, runs the peer links,
//! and shuts down within a bounded grace period.
pub mod assist;
pub mod ingest;
pub mod links;
pub mod metrics;
pub mod receipts;

use crate::api::authz::AuthzLayer;
use crate::api::{federation::FederationApi, operator::OperatorApi};
use crate::config::Config;
use crate::domain::envelope::VerifyLimits;
use crate::domain::identity::Identity;
use crate::domain::keys::{KeyRegistry, Signer, public_from_pem};
use crate::proto::v1::{federation_server::FederationServer, operator_server::OperatorServer};
use crate::storage::Store;
use crate::transport::{server::accept_loop, tls};
use anyhow::Context as _;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::ReceiverStream;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Shared state of a running node, handed to the gRPC adapters and the links.
pub struct NodeCtx {
    pub cfg: Config,
    pub id: String,
    pub signer: Signer,
    pub keys: RwLock<Arc<KeyRegistry>>,
    pub store: Store,
    pub listen: SocketAddr,
    pub started_ms: i64,
    pub tls_client: RwLock<Arc<rustls::ClientConfig>>,
    /// Cursor of every newly stored message, for Watch.
    pub stored: broadcast::Sender<u64>,
    pub links: links::Links,
    pub metrics: metrics::Metrics,
    pub shutdown: watch::Receiver<bool>,
    /// Serialises assistance actions taken by this node.
    pub assist_lock: tokio::sync::Mutex<()>,
    /// Receipts owed to origins.
    pub receipts: receipts::ReceiptQueue,
    /// Certificate serials revoked by the configured CRLs (replaced on reload).
    pub revoked: RwLock<Arc<HashSet<String>>>,
    /// The certificate serial each peer last presented (either direction).
    pub peer_serials: Mutex<HashMap<String, String>>,
}

impl NodeCtx {
    pub fn keys(&self) -> Arc<KeyRegistry> {
        self.keys.read().expect("keys lock").clone()
    }
    /// Records the certificate a peer presented.
    pub fn note_peer_serial(&self, peer: &str, serial: String) {
        self.peer_serials
            .lock()
            .expect("serials lock")
            .insert(peer.to_string(), serial);
    }

    /// Whether the certificate `peer` last presented is in `revoked`.
    pub fn peer_serial_revoked(&self, peer: &str, revoked: &HashSet<String>) -> bool {
        self.peer_serials
            .lock()
            .expect("serials lock")
            .get(peer)
            .is_some_and(|s| revoked.contains(s))
    }

    /// Certificate serials currently revoked.
    pub fn revoked(&self) -> Arc<HashSet<String>> {
        self.revoked.read().expect("revoked lock").clone()
    }

    pub fn verify_limits(&self) -> VerifyLimits {
        VerifyLimits {
            max_message_bytes: self.cfg.limits.max_message_bytes,
            max_clock_skew_ms: self.cfg.limits.max_clock_skew_secs as i64 * 1000,
        }
    }
}

/// Everything loaded from the files the configuration names, before any bind.
pub struct Prepared {
    pub cfg: Config,
    pub material: tls::TlsMaterial,
    pub signer: Signer,
    pub keys: KeyRegistry,
}

/// Loads and cross-checks TLS material, the signing key and the member keys.
pub fn prepare(cfg: Config) -> anyhow::Result<Prepared> {
    let files = tls::TlsFiles {
        ca: cfg.tls.ca.clone(),
        cert: cfg.tls.cert.clone(),
        key: cfg.tls.key.clone(),
        crls: cfg.tls.crls.clone(),
    };
    let material = tls::load_material(&files).map_err(|e| anyhow::anyhow!("tls: {e}"))?;
    let expected = Identity::Node(cfg.node.id.clone());
    if material.identity != expected {
        anyhow::bail!(
            "tls.cert: {} is the certificate of {}, but node.id is {:?}",
            cfg.tls.cert.display(),
            material.identity,
            cfg.node.id
        );
    }
    tls::check_private_permissions(&cfg.node.signing_key)
        .map_err(|e| anyhow::anyhow!("node.signing_key: {e}"))?;
    let pem = std::fs::read_to_string(&cfg.node.signing_key).with_context(|| {
        format!(
            "node.signing_key: cannot read {}",
            cfg.node.signing_key.display()
        )
    })?;
    let signer = Signer::from_pkcs8_pem(&cfg.node.id, &pem).map_err(|e| {
        anyhow::anyhow!("node.signing_key: {}: {e}", cfg.node.signing_key.display())
    })?;
    let keys = load_members(&cfg)?;
    match keys.get(&signer.key_id) {
        Some((owner, _)) if owner == cfg.node.id => {}
        Some((owner, _)) => anyhow::bail!(
            "node.signing_key: key {} is pinned for member {owner}, not for this node {}",
            signer.key_id,
            cfg.node.id
        ),
        None if keys.is_member(&cfg.node.id) => anyhow::bail!(
            "node.signing_key: key {} is not among the keys [[members]] pins for {}; add its .pub file",
            signer.key_id,
            cfg.node.id
        ),
        None => {}
    }
    Ok(Prepared {
        cfg,
        material,
        signer,
        keys,
    })
}

/// Reads the pinned member keys.
pub fn load_members(cfg: &Config) -> anyhow::Result<KeyRegistry> {
    let mut reg = KeyRegistry::default();
    for (i, m) in cfg.members.iter().enumerate() {
        for (j, path) in m.signing_keys.iter().enumerate() {
            let key = format!("members[{i}].signing_keys[{j}]");
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("{key}: cannot read {}", path.display()))?;
            let vk = public_from_pem(&pem)
                .map_err(|e| anyhow::anyhow!("{key}: {}: {e}", path.display()))?;
            reg.add(&m.id, vk)
                .map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
        }
    }
    Ok(reg)
}

/// A node started in this process.
pub struct RunningNode {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub ctx: Arc<NodeCtx>,
    stop: watch::Sender<bool>,
    tls: watch::Sender<Arc<rustls::ServerConfig>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningNode {
    /// Re-reads the configuration file and swaps in new TLS material (certificate,
    /// key, trust anchors, CRLs) and member signing keys. New connections use
    /// them at once; existing ones end within `tls.max_connection_age_secs`. An
    /// invalid configuration is refused and the running one stays in force.
    pub fn reload(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let cfg = Config::load(path)?;
        if cfg.node.id != self.ctx.id {
            anyhow::bail!(
                "node.id changed from {} to {}: restart the node instead",
                self.ctx.id,
                cfg.node.id
            );
        }
        let peers = cfg.peers.clone();
        let p = prepare(cfg)?;
        let server = tls::server_config(&p.material)?;
        let client = tls::client_config(&p.material)?;
        let revoked = tls::revoked_serials(&p.material.crls);
        let _ = self.tls.send(server);
        *self.ctx.tls_client.write().expect("tls lock") = client;
        *self.ctx.keys.write().expect("keys lock") = Arc::new(p.keys);
        *self.ctx.revoked.write().expect("revoked lock") = Arc::new(revoked.clone());
        self.ctx.links.apply(&self.ctx, peers, &revoked);
        tracing::info!("reload: TLS material, CRLs, member keys and peers re-read");
        Ok(())
    }

    /// Asks the node to stop and waits for it (bounded by the grace period).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await.context("node task panicked")?
    }
}

/// Binds `addr`, naming the key in the error.
async fn bind(key: &str, addr: &str) -> anyhow::Result<TcpListener> {
    let sa = crate::config::parse_addr(key, addr)?;
    TcpListener::bind(sa).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            "; another process (perhaps another certfed) is using it: stop it or choose another port"
        } else {
            ""
        };
        anyhow::anyhow!("{key}: cannot listen on {addr}: {e}{hint}")
    })
}

/// Starts a node: everything is checked and bound before this returns.
pub async fn start(prepared: Prepared) -> anyhow::Result<RunningNode> {
    let Prepared {
        cfg,
        material,
        signer,
        keys,
    } = prepared;
    let server_tls = tls::server_config(&material)?;
    let client_tls = tls::client_config(&material)?;
    let store = Store::open(&cfg.storage.dir)?;
    let listener = bind("node.listen", &cfg.node.listen).await?;
    let addr = listener.local_addr()?;
    let metrics_listener = match &cfg.metrics.listen {
        Some(m) => Some(bind("metrics.listen", m).await?),
        None => None,
    };
    let metrics_addr = metrics_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (stored, _) = broadcast::channel(4096);
    let links = links::Links::new(&cfg);
    let (receipt_queue, receipt_rx) = receipts::ReceiptQueue::new();
    let ctx = Arc::new(NodeCtx {
        id: cfg.node.id.clone(),
        signer,
        keys: RwLock::new(Arc::new(keys)),
        store: store.clone(),
        listen: addr,
        started_ms: now_ms(),
        tls_client: RwLock::new(client_tls),
        stored,
        links,
        metrics: metrics::Metrics::new(),
        shutdown: stop_rx.clone(),
        assist_lock: tokio::sync::Mutex::new(()),
        receipts: receipt_queue,
        revoked: RwLock::new(Arc::new(tls::revoked_serials(&material.crls))),
        peer_serials: Mutex::default(),
        cfg,
    });

    let (health, health_svc) = tonic_health::server::health_reporter();
    health.set_serving::<OperatorServer<OperatorApi>>().await;
    health
        .set_serving::<FederationServer<FederationApi>>()
        .await;
    // Both reflection versions describe every service on the port, including
    // each other (grpcurl 1.8 speaks v1alpha only).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let max = ctx.cfg.limits.max_message_bytes + 64 * 1024;
    let operator = OperatorServer::new(OperatorApi::new(ctx.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max * 4);
    let federation = FederationServer::new(FederationApi::new(ctx.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);

    let (tls_tx, tls_rx) = watch::channel(server_tls);
    let incoming = accept_loop(
        listener,
        tls_rx,
        Duration::from_secs(ctx.cfg.tls.handshake_timeout_secs),
        stop_rx.clone(),
    );
    let mut server_stop = stop_rx.clone();
    let server = tonic::transport::Server::builder()
        .max_connection_age(Duration::from_secs(ctx.cfg.tls.max_connection_age_secs))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .layer(AuthzLayer)
        .add_service(health_svc)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(operator)
        .add_service(federation)
        .serve_with_incoming_shutdown(ReceiverStream::new(incoming), async move {
            let _ = crate::node::stopped(&mut server_stop).await;
        });
    let server = tokio::spawn(server);
    let metrics_task = metrics_listener.map(|l| tokio::spawn(metrics::serve(l, ctx.clone())));
    ctx.links.start_all(&ctx);
    let receipt_task = tokio::spawn(receipts::run(ctx.clone(), receipt_rx));

    tracing::info!(node = %ctx.id, %addr, metrics = ?metrics_addr, peers = ctx.links.peers().len(), "certfed node ready");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled().map(|every| {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every / 2);
            loop {
                tokio::select! {
                    _ = tick.tick() => { let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]); }
                    _ = crate::node::stopped(&mut stop) => break,
                }
            }
        })
    });

    let ctx2 = ctx.clone();
    let mut stop_wait = stop_rx.clone();
    let task = tokio::spawn(async move {
        let _ = crate::node::stopped(&mut stop_wait).await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        tracing::info!("shutting down: no new connections; draining in-flight calls");
        health
            .set_not_serving::<OperatorServer<OperatorApi>>()
            .await;
        let grace = Duration::from_secs(ctx2.cfg.limits.shutdown_grace_secs);
        let abort = server.abort_handle();
        let result = match tokio::time::timeout(grace, server).await {
            Ok(Ok(r)) => r.map_err(anyhow::Error::from),
            Ok(Err(e)) => Err(anyhow::anyhow!("server task failed: {e}")),
            Err(_) => {
                tracing::warn!(?grace, "grace period over; closing remaining connections");
                abort.abort();
                Ok(())
            }
        };
        for t in ctx2.links.stop_all().into_iter().chain([receipt_task]) {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        if let Some(t) = metrics_task {
            t.abort();
        }
        if let Some(w) = watchdog {
            w.abort();
        }
        let store = ctx2.store.clone();
        tokio::task::spawn_blocking(move || store.close()).await?;
        tracing::info!("stopped");
        result
    });

    Ok(RunningNode {
        addr,
        metrics_addr,
        ctx,
        stop: stop_tx,
        tls: tls_tx,
        task,
    })
}

/// `certfed serve`: runs until SIGTERM or SIGINT; SIGHUP reloads.
pub async fn serve(cfg: Config, path: &std::path::Path) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let prepared = prepare(cfg)?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let node = start(prepared).await?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); break; }
            _ = int.recv() => { tracing::info!("SIGINT received"); break; }
            _ = hup.recv() => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                if let Err(e) = node.reload(path) {
                    tracing::error!(error = %format!("{e:#}"), "reload refused; the running configuration stays in force");
                }
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
        }
    }
    node.shutdown().await
}

/// Resolves once the stop flag is set (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
