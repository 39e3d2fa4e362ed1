//! The composition root: loads and checks everything the configuration names
//! ([`prepare`]), opens the store, binds the listeners, builds the shared
//! [`Node`] and the gRPC services, starts the peer links, the receipt task and
//! the retention purge ([`start`]), runs until a signal ([`serve`]), re-reads the configuration on
//! SIGHUP ([`RunningNode::reload`]) and shuts down within a bounded grace
//! period. Nothing below this module starts a task on its own.
//!
//! Also here, because they are applications of a whole node: the local
//! federation used by `demo` and `bench` ([`localfed`]), the demo and the
//! benchmarks.
pub mod bench;
pub mod demo;
pub mod exercise;
pub mod exercise_report;
pub mod localfed;
pub mod report;
pub mod systemd;

use crate::api::authz::AuthzLayer;
use crate::api::standby::StandbyLayer;
use crate::api::{federation::FederationApi, operator::OperatorApi};
use crate::config::Config;
use crate::domain::identity::Identity;
use crate::domain::keys::{KeyRegistry, Signer, public_from_pem};
use crate::domain::roster::{self, Document, Quorum};
use crate::proto::v1::Steward;
use crate::proto::v1::{federation_server::FederationServer, operator_server::OperatorServer};
use crate::service::links::LinkTasks;
use crate::service::node::{Node, NodeParts, ReceiptQueue};
use crate::service::now_ms;
use crate::service::pair::Pair;
use crate::transport::client::{KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};
use crate::transport::server::{AcceptConfig, ConnLimits, Identify, accept_loop};
use crate::transport::tls;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;

/// Everything loaded from the files the configuration names, before any bind.
pub struct Prepared {
    pub cfg: Config,
    pub material: tls::TlsMaterial,
    pub signer: Signer,
    /// `node.next_signing_key`, read (see `domain::keys::use_next_key`).
    pub next_signer: Option<Signer>,
    pub keys: KeyRegistry,
    /// `[roster]`: the pinned stewards and the roster file, read and decoded
    /// (checked against the store's chain in [`start`]).
    pub roster: Option<RosterStart>,
}

/// Where a roster-following node starts from (`[roster]`).
pub struct RosterStart {
    pub pinned: Option<Quorum>,
    pub file: Option<Document>,
}

/// Reads `[roster]`: the pinned stewards' public keys and the signed roster
/// file (decoded and shape-checked; its signatures are checked at start
/// against the store's chain, or on their own for a first start).
pub fn load_roster_start(cfg: &Config) -> anyhow::Result<Option<RosterStart>> {
    let Some(r) = &cfg.roster else {
        return Ok(None);
    };
    let pinned = match r.threshold {
        Some(threshold) => {
            let mut stewards = Vec::new();
            for (i, st) in r.stewards.iter().enumerate() {
                let key = format!("roster.stewards[{i}].key");
                let pem = std::fs::read_to_string(&st.key)
                    .with_context(|| format!("{key}: cannot read {}", st.key.display()))?;
                let vk = public_from_pem(&pem)
                    .map_err(|e| anyhow::anyhow!("{key}: {}: {e}", st.key.display()))?;
                stewards.push(Steward {
                    id: st.id.clone(),
                    public_key: vk.as_bytes().to_vec(),
                });
            }
            Some(Quorum::pinned(stewards, threshold).map_err(|e| anyhow::anyhow!("roster: {e}"))?)
        }
        None => None,
    };
    let file = match &r.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("roster.file: cannot read {}", path.display()))?;
            let bytes = roster::dearmor(&text)
                .map_err(|e| anyhow::anyhow!("roster.file: {}: {e}", path.display()))?;
            Some(
                roster::parse(&bytes)
                    .map_err(|e| anyhow::anyhow!("roster.file: {}: {e}", path.display()))?,
            )
        }
        None => None,
    };
    Ok(Some(RosterStart { pinned, file }))
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
    let identity = Identity::from_certificate(material.chain[0].as_ref())
        .map_err(|e| anyhow::anyhow!("tls.cert: {}: {e}", cfg.tls.cert.display()))?;
    let expected = Identity::Node(cfg.node.id.clone());
    if identity != expected {
        anyhow::bail!(
            "tls.cert: {} is the certificate of {}, but node.id is {:?}",
            cfg.tls.cert.display(),
            identity,
            cfg.node.id
        );
    }
    let signer = read_signer("node.signing_key", &cfg.node.signing_key, &cfg.node.id)?;
    let next_signer = match &cfg.node.next_signing_key {
        Some(path) => {
            let next = read_signer("node.next_signing_key", path, &cfg.node.id)?;
            if next.key_id == signer.key_id {
                anyhow::bail!(
                    "node.next_signing_key: {} holds the same key {} as node.signing_key; name the NEW key there, or remove node.next_signing_key",
                    path.display(),
                    next.key_id
                );
            }
            Some(next)
        }
        None => None,
    };
    let keys = load_members(&cfg)?;
    let roster = load_roster_start(&cfg)?;
    let next_pinned = next_signer
        .as_ref()
        .is_some_and(|n| matches!(keys.get(&n.key_id), Some((o, _)) if o == cfg.node.id));
    match keys.get(&signer.key_id) {
        Some((owner, _)) if owner == cfg.node.id => {}
        _ if next_pinned => {}
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
        next_signer,
        keys,
        roster,
    })
}

/// Reads a message-signing private key (`key` names the setting): mode 0600
/// or stricter, an Ed25519 PKCS#8 PEM.
fn read_signer(key: &str, path: &std::path::Path, node_id: &str) -> anyhow::Result<Signer> {
    tls::check_private_permissions(path).map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("{key}: cannot read {}", path.display()))?;
    Signer::from_pkcs8_pem(node_id, &pem)
        .map_err(|e| anyhow::anyhow!("{key}: {}: {e}", path.display()))
}

/// Everything `serve` checks before it binds a port: [`prepare`] (files, keys,
/// permissions, identities, member keys), the listen addresses and the TLS
/// configurations built from the material. `certfed check-config` runs exactly
/// this; `serve` runs it too, then opens the store and binds.
pub fn check(cfg: Config) -> anyhow::Result<Prepared> {
    cfg.listen_addr()?;
    if let Some(m) = &cfg.metrics.listen {
        crate::config::parse_addr("metrics.listen", m)?;
    }
    if let Some(t) = &cfg.taxii.listen {
        crate::config::parse_addr("taxii.listen", t)?;
    }
    let p = prepare(cfg)?;
    taxii_tls(&p.material).map_err(|e| anyhow::anyhow!("tls: {e}"))?;
    tls::client_config(&p.material).map_err(|e| anyhow::anyhow!("tls: {e}"))?;
    Ok(p)
}

/// When the certificates and CRLs in use expire, for the metrics: this
/// node's certificate, the earliest trust anchor in `tls.ca`, and each CRL
/// file's next update (unix seconds).
fn record_tls_expiry(node: &Node, cfg: &Config, material: &tls::TlsMaterial) {
    let node_cert = material
        .chain
        .first()
        .and_then(|c| crate::pki::cert_not_after(c.as_ref()).ok());
    let ca = tls::load_certs(&cfg.tls.ca).ok().and_then(|certs| {
        certs
            .iter()
            .filter_map(|c| crate::pki::cert_not_after(c.as_ref()).ok())
            .min()
    });
    let crls: Vec<(String, i64)> = cfg
        .tls
        .crls
        .iter()
        .filter_map(|path| {
            let ders = tls::load_crls(std::slice::from_ref(path)).ok()?;
            let next = ders
                .iter()
                .filter_map(|d| crate::pki::crl_next_update(d.as_ref()).ok().flatten())
                .min()?;
            Some((path.display().to_string(), next))
        })
        .collect();
    node.metrics.set_tls_expiry(node_cert, ca, &crls);
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

/// The TLS configuration of the TAXII listener: the node's server
/// configuration (same certificate, trust anchors and CRLs, client
/// certificates required) with ALPN http/1.1 instead of h2.
fn taxii_tls(material: &tls::TlsMaterial) -> Result<Arc<rustls::ServerConfig>, tls::TlsError> {
    let mut cfg = (*tls::server_config(material)?).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepts a client certificate that names a certfed identity; with a
/// roster, a node certificate only if the roster vouches for it as that
/// member's (`domain::roster::vouches_chain`: issued by a CA the roster lists
/// for the member, directly or through presented intermediates, or pinned),
/// and an operator certificate only if it chains to a CA the roster lists
/// for THIS node (`domain::roster::vouches_operator`). This runs right after the handshake, before any
/// RPC: the connection is closed, and counted, when it fails. (A check after
/// the handshake rather than a custom rustls verifier: the per-member CA
/// comes from the certificate's own identity, which WebPki's chain check
/// against `tls.ca` has already verified; and it swaps with the roster
/// without rebuilding the TLS configuration.)
fn identify(node: Option<Arc<Node>>) -> Identify<Identity> {
    Arc::new(move |chain| {
        let cert = chain.first().ok_or("no client certificate")?;
        let id = Identity::from_certificate(cert.as_ref()).map_err(|e| e.to_string())?;
        if let Some(node) = &node
            && let Some(roster) = node.roster()
            && let Some(cur) = roster.current()
        {
            let rest: Vec<&[u8]> = chain.iter().skip(1).map(|c| c.as_ref()).collect();
            let r = &cur.doc.roster;
            match &id {
                Identity::Node(member) => {
                    crate::domain::roster::vouches_chain(r, member, cert.as_ref(), &rest)?
                }
                Identity::Operator(name) => crate::domain::roster::vouches_operator(
                    r,
                    &node.id,
                    name,
                    cert.as_ref(),
                    &rest,
                )?,
            }
        }
        Ok(id)
    })
}

/// How a listener accepts connections: the node's handshake timeout and
/// listener caps, certfed identities, refusals counted.
fn accept_config(
    node: &Arc<Node>,
    tls: watch::Receiver<Arc<rustls::ServerConfig>>,
) -> AcceptConfig<Identity> {
    let l = &node.cfg.listener;
    let refused_node = node.clone();
    AcceptConfig {
        tls,
        handshake_timeout: node.cfg.tls.handshake_timeout(),
        limits: ConnLimits {
            max_handshakes: l.max_handshakes,
            max_handshakes_per_source: l.max_handshakes_per_source,
            max_connections: l.max_connections,
            max_connections_per_source: l.max_connections_per_source,
        },
        identify: identify(Some(node.clone())),
        on_refused: Arc::new(move |why| refused_node.metrics.connection_refused(why.key())),
    }
}

/// A node started in this process.
pub struct RunningNode {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    /// Where the TAXII 2.1 server listens (`taxii.listen`), if it is on.
    pub taxii_addr: Option<SocketAddr>,
    pub node: Arc<Node>,
    links: Arc<LinkTasks>,
    tls: watch::Sender<Arc<rustls::ServerConfig>>,
    taxii_tls: Option<watch::Sender<Arc<rustls::ServerConfig>>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// What the systemd STATUS line reports.
    pub status: Arc<systemd::Status>,
}

impl RunningNode {
    /// Re-reads the configuration file and swaps in new TLS material (certificate,
    /// key, trust anchors, CRLs), member signing keys, this node's own signing
    /// keys (`node.signing_key`, `node.next_signing_key`), the peer set and
    /// `[roster]` (a newer `roster.file` applied and flooded, see
    /// `roster_reload`). New
    /// connections use them at once; existing ones end within
    /// `tls.max_connection_age_secs`. An invalid configuration is refused and
    /// the running one stays in force.
    pub fn reload(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let r = self.reload_inner(path);
        self.node.metrics.config_loaded(r.is_ok(), now_ms());
        r
    }

    fn reload_inner(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let cfg = Config::load(path)?;
        if cfg.node.id != self.node.id {
            anyhow::bail!(
                "node.id changed from {} to {}: restart the node instead",
                self.node.id,
                cfg.node.id
            );
        }
        let peers = cfg.peers.clone();
        let mut p = check(cfg)?;
        check_signing_keys(&self.node, &p)?;
        let roster_step = roster_reload(&self.node, p.roster.take(), now_ms())?;
        let server = tls::server_config(&p.material)?;
        let client = tls::client_config(&p.material)?;
        record_tls_expiry(&self.node, &p.cfg, &p.material);
        let revoked = tls::revoked_serials(&p.material.crls);
        let _ = self.tls.send(server);
        if let Some(t) = &self.taxii_tls {
            let _ = t.send(taxii_tls(&p.material)?);
        }
        self.node.replace_trust(p.keys, client, revoked.clone());
        self.node.replace_signers(p.signer, p.next_signer);
        let peers = self.node.set_configured_peers(peers);
        self.links.apply(&self.node, peers, &revoked);
        match roster_step {
            RosterReload::Keep => {}
            RosterReload::Pin(q) => {
                tracing::info!(
                    stewards = q.stewards.len(),
                    threshold = q.threshold,
                    "reload: roster.stewards re-pinned; the first roster must carry their quorum"
                );
                self.node
                    .replace_roster(roster::Anchor::Pinned(q), KeyRegistry::default());
            }
            RosterReload::Apply(doc) => apply_roster_file(self.node.clone(), doc.to_bytes()),
        }
        tracing::info!(
            "reload: TLS material, CRLs, member keys, signing keys, peers and [roster] re-read"
        );
        Ok(())
    }

    /// Asks the node to stop and waits for it (bounded by the grace period).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.node.shutdown.cancel();
        self.task.await.context("node task panicked")?
    }
}

/// What a reload does with `[roster]`.
enum RosterReload {
    /// Nothing changes (the file is the roster held, or older).
    Keep,
    /// No roster yet: the first one must now carry these pinned stewards.
    Pin(Quorum),
    /// `roster.file` holds the next version, checked: apply it and flood it.
    Apply(Document),
}

/// Checks a reload's `[roster]` against the roster held, before anything of
/// the reload is swapped in (a refusal leaves the running configuration in
/// force): switching between `[roster]` and `[[members]]` needs a restart;
/// a newer `roster.file` must pass `domain::roster::check` on top of the held
/// roster (a refusal is counted and names the rule); an older one is noted;
/// pinned stewards matter only until a first roster is held.
fn roster_reload(
    node: &Node,
    start: Option<RosterStart>,
    now_ms: i64,
) -> anyhow::Result<RosterReload> {
    let held = node.roster();
    let (anchor, start) = match (held, start) {
        (None, None) => return Ok(RosterReload::Keep),
        (None, Some(_)) => anyhow::bail!(
            "[roster] added: this node started with a static [[members]] list; switching to the signed roster needs a restart (the roster chain is read from the store at start)"
        ),
        (Some(a), None) => anyhow::bail!(
            "[roster] removed: this node follows the signed roster (version {}); switching to a static [[members]] list needs a restart, and is rarely what you want (members would no longer follow the roster); keep [roster] to reload",
            a.version()
        ),
        (Some(a), Some(s)) => (a, s),
    };
    let anchor = match (&*anchor, start.pinned) {
        (roster::Anchor::Pinned(_), Some(q)) => roster::Anchor::Pinned(q),
        (roster::Anchor::Pinned(_), None) => anyhow::bail!(
            "roster.stewards removed while this node waits for its first roster: restart to start from roster.file alone"
        ),
        (roster::Anchor::Current(_), _) => (*anchor).clone(),
    };
    let Some(doc) = start.file else {
        return Ok(match anchor {
            roster::Anchor::Pinned(q) => RosterReload::Pin(q),
            roster::Anchor::Current(_) => RosterReload::Keep,
        });
    };
    let held = anchor.version();
    match roster::check(&anchor, doc.clone(), now_ms) {
        Ok(roster::Verdict::Same) => Ok(RosterReload::Keep),
        Ok(roster::Verdict::Apply(_)) => Ok(RosterReload::Apply(doc)),
        Err(r) if r.kind == roster::RefusalKind::Rollback => {
            tracing::info!(
                file = doc.version(),
                held,
                "reload: roster.file is older than the roster held; the held one stays in force"
            );
            Ok(RosterReload::Keep)
        }
        Err(r) => {
            crate::service::roster::refused(node, &r, "roster.file");
            anyhow::bail!(
                "roster.file: {r}; the running configuration (roster version {held}) stays in force: fix the file, or point roster.file at the roster held (certfed roster show --out)"
            )
        }
    }
}

/// Applies a roster file a reload checked, then floods it like a roster an
/// operator publishes (in a task: the store write is async; a refusal here,
/// a race with a roster from a peer, is counted and logged by `apply`).
fn apply_roster_file(node: Arc<Node>, bytes: Vec<u8>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::error!("reload: no runtime to apply roster.file on; restart the node to apply it");
        return;
    };
    rt.spawn(async move {
        let now = now_ms();
        match crate::service::roster::apply(&node, &bytes, "roster.file", now).await {
            Ok(a) if a.already_current => {}
            Ok(a) => {
                tracing::info!(version = a.version, changes = %a.changes.join("; "), "reload: roster.file applied; flooding it");
                let out = crate::service::ingest::Outgoing {
                    kind: crate::proto::v1::MessageKind::Roster,
                    tlp: crate::proto::v1::Tlp::Clear,
                    recipients: Vec::new(),
                    expires_ms: None,
                    exercise: false,
                    created_ms: None,
                    payload: bytes,
                };
                if let Err(e) = crate::service::ingest::originate(&node, out).await {
                    tracing::error!(error = %e, "reload: roster.file applied here but not flooded; publish it (certfed roster publish)");
                }
            }
            Err(e) => tracing::error!(error = %e, "reload: roster.file not applied"),
        }
    });
}

/// With a roster in force, a reload must leave this node a key its peers
/// trust: `node.signing_key` or `node.next_signing_key` listed for it in the
/// roster held. A key the roster does not list yet goes in
/// `node.next_signing_key` (the node switches to it when a roster lists it).
fn check_signing_keys(node: &Node, p: &Prepared) -> anyhow::Result<()> {
    let Some(anchor) = node.roster() else {
        return Ok(());
    };
    let Some(cur) = anchor.current() else {
        return Ok(());
    };
    let keys = node.keys();
    let listed = |s: &Signer| matches!(keys.get(&s.key_id), Some((o, _)) if o == node.id);
    if listed(&p.signer) || p.next_signer.as_ref().is_some_and(listed) {
        return Ok(());
    }
    anyhow::bail!(
        "node.signing_key: key {} is not listed for {} in roster v{}{}: peers would refuse what it signs; put a new key in node.next_signing_key instead (the node switches to it when a roster lists it), and ask the stewards for a roster that lists it (certfed roster rotate-key)",
        p.signer.key_id,
        node.id,
        cur.version(),
        p.next_signer
            .as_ref()
            .map(|n| format!(", nor is node.next_signing_key's key {}", n.key_id))
            .unwrap_or_default()
    )
}

/// Follows the roster: each version applied re-applies the peer set (links
/// to members it removed stop, links to members it added start), and the
/// roster's expiry is watched (a warning and a metric once expired).
async fn follow_roster(node: Arc<Node>, links: Arc<LinkTasks>) {
    if node.roster().is_none() {
        return;
    }
    let mut applied = node.subscribe_roster();
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut warned = i64::MIN;
    loop {
        tokio::select! {
            r = applied.changed() => {
                if r.is_err() {
                    return;
                }
                let peers = crate::service::node::roster_peers(
                    &node.configured_peers(),
                    node.roster().as_deref(),
                );
                links.apply(&node, peers, &node.revoked());
            }
            _ = tick.tick() => {
                crate::service::roster::watch_expiry(&node, now_ms(), &mut warned);
                node.select_signer();
            }
            _ = node.shutdown.cancelled() => return,
        }
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

/// The store, and for a member of an active/standby pair its lease.
struct Opened {
    store: crate::storage::Store,
    lease: Option<Arc<dyn crate::storage::Lease>>,
    pair: Pair,
}

/// This machine's host name (for the member's name in a pair).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Opens the node's store for `node.id` with the configured backend. SQLite:
/// checked as `storage.integrity_check` says; a service manager is told the
/// check may take a while (about 4 s per GB, plus margin), so a large store
/// is not killed as a failed start. PostgreSQL: migrated, its owner checked,
/// fenced behind a lease (this process starts as standby).
async fn open_store(cfg: &Config) -> anyhow::Result<Opened> {
    use crate::config::{IntegrityCheckMode, StorageBackend};
    use crate::storage::{IntegrityCheck, OpenOptions};
    let integrity = match cfg.storage.integrity_check {
        IntegrityCheckMode::Quick => IntegrityCheck::Quick,
        IntegrityCheckMode::Full => IntegrityCheck::Full,
        IntegrityCheckMode::Off => IntegrityCheck::Off,
    };
    let opts = OpenOptions {
        node_id: cfg.node.id.clone(),
        integrity,
    };
    if cfg.storage.backend == StorageBackend::Postgres {
        use crate::storage::postgres::{self, PairOptions, PgTarget};
        let target = PgTarget {
            url: cfg.storage.url.clone().unwrap_or_default(),
            password: cfg.storage.database_password()?,
            idle_in_transaction_secs: (cfg.storage.lease_secs / 2).max(2),
        };
        let member = format!("{}/{}", hostname(), cfg.node.listen);
        let (store, lease) = postgres::open(
            &target,
            &opts,
            Some(PairOptions {
                holder: member.clone(),
                lease: cfg.storage.lease(),
            }),
        )
        .await?;
        let lease: Option<Arc<dyn crate::storage::Lease>> = match lease {
            Some(l) => Some(Arc::new(l)),
            None => None,
        };
        let pair = Pair::member("postgres", member);
        // The first look at the lease before anything serves: a lone member
        // (or the first of a pair) is active from its first call on.
        if let Some(l) = &lease {
            use crate::service::pair::Role;
            use crate::storage::LeaseRole;
            match l.tick().await {
                Ok(t) => {
                    pair.set_other(t.other);
                    pair.set_role(match t.role {
                        LeaseRole::Active { epoch } => {
                            tracing::info!(epoch, member = %pair.member, "lease taken at start: this process is the ACTIVE member of node {}", cfg.node.id);
                            Role::Active { epoch }
                        }
                        LeaseRole::Standby { epoch, active } => {
                            tracing::info!(epoch, %active, member = %pair.member, "standby at start: another member holds the lease");
                            Role::Standby {
                                active: Some(active),
                                epoch,
                            }
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease: first attempt failed; this process starts as standby and retries")
                }
            }
        }
        return Ok(Opened {
            store: Arc::new(store),
            lease,
            pair,
        });
    }
    let gb = crate::storage::sqlite::db_size(&cfg.storage.dir) / 1_000_000_000;
    if integrity != IntegrityCheck::Off && gb > 0 {
        let per_gb: u64 = if integrity == IntegrityCheck::Full {
            30
        } else {
            10
        };
        let usec = (60 + gb * per_gb).saturating_mul(1_000_000);
        let _ = sd_notify::notify(&[sd_notify::NotifyState::ExtendTimeoutUsec(
            u32::try_from(usec).unwrap_or(u32::MAX),
        )]);
    }
    Ok(Opened {
        store: crate::storage::sqlite::open(&cfg.storage.dir, &opts)?,
        lease: None,
        pair: Pair::single("sqlite"),
    })
}

/// How often a standby looks for a roster the active member applied.
const STANDBY_ROSTER_EVERY: Duration = Duration::from_secs(2);

/// Keeps the lease of a member of an active/standby pair: renews it while
/// active (every quarter of `storage.lease_secs`), tries to take it while
/// standby (every second at most; a standby also follows the roster the
/// active member applies, see `service::roster::follow_store`), and publishes
/// the role. Ends when the
/// node stops, or when this member lost the lease (role `Lost`).
async fn run_lease(node: Arc<Node>, lease: Arc<dyn crate::storage::Lease>) {
    use crate::service::pair::Role;
    use crate::storage::{LeaseRole, StoreError};
    let ttl = node.cfg.storage.lease();
    let active_every = (ttl / 4).max(Duration::from_millis(250));
    let standby_every = active_every.min(Duration::from_secs(1));
    let mut lost = lease.lost();
    let mut failing_since: Option<std::time::Instant> = None;
    let mut roster_every = std::time::Instant::now();
    loop {
        let role = match lease.tick().await {
            Ok(t) => {
                if failing_since.take().is_some() {
                    tracing::info!("lease: the database answers again");
                }
                node.metrics
                    .lease_age_seconds
                    .set(t.renewed_age_ms as f64 / 1000.0);
                node.pair.set_other(t.other);
                match t.role {
                    LeaseRole::Active { epoch } => Role::Active { epoch },
                    LeaseRole::Standby { epoch, active } => Role::Standby {
                        active: Some(active),
                        epoch,
                    },
                }
            }
            Err(StoreError::Fenced(why)) => Role::Lost(why),
            Err(e) => {
                if failing_since.is_none() {
                    failing_since = Some(std::time::Instant::now());
                    tracing::error!(error = %e, "lease: cannot reach the database to renew or take the lease; writes wait (fenced by epoch), the role is kept");
                }
                node.pair.role()
            }
        };
        let before = node.pair.role();
        if node.pair.set_role(role.clone()) {
            node.metrics.set_role(role.word());
            match &role {
                Role::Active { epoch } => {
                    node.metrics.takeovers.inc();
                    tracing::warn!(epoch, member = %node.pair.member, previous = ?before, "lease taken: this process is now the ACTIVE member of node {}", node.id);
                }
                Role::Standby { active, epoch } => {
                    tracing::info!(epoch, active = active.as_deref().unwrap_or("none"), member = %node.pair.member, "standby: another member holds the lease");
                }
                Role::Lost(why) => {
                    tracing::error!(reason = %why, "lease lost: this process stops serving and exits (the service manager restarts it as standby)");
                }
                Role::Single => {}
            }
        }
        if matches!(role, Role::Lost(_)) {
            node.shutdown.cancel();
            return;
        }
        // A standby follows the roster the active member applies (in memory,
        // writing nothing), every few seconds.
        if matches!(role, Role::Standby { .. }) && roster_every.elapsed() >= STANDBY_ROSTER_EVERY {
            roster_every = std::time::Instant::now();
            crate::service::roster::follow_store(&node, now_ms()).await;
        }
        let every = if matches!(role, Role::Active { .. }) {
            active_every
        } else {
            standby_every
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = lost.changed() => {
                let why = lost.borrow().clone().unwrap_or_else(|| "the lease moved".into());
                node.pair.set_role(Role::Lost(why.clone()));
                node.metrics.set_role("standby");
                tracing::error!(reason = %why, "lease lost (a write found it): this process stops serving and exits");
                node.shutdown.cancel();
                return;
            }
            _ = node.shutdown.cancelled() => return,
        }
    }
}

/// Starts a node: everything is checked and bound before this returns.
pub async fn start(prepared: Prepared) -> anyhow::Result<RunningNode> {
    let Prepared {
        cfg,
        material,
        signer,
        next_signer,
        keys,
        roster: roster_start,
    } = prepared;
    let tls_cfg = cfg.clone();
    let server_tls = tls::server_config(&material)?;
    let client_tls = tls::client_config(&material)?;
    let Opened { store, lease, pair } = open_store(&cfg).await?;
    let (keys, roster_anchor) = match roster_start {
        None => (keys, None),
        Some(r) => {
            let (anchor, keys, notes) =
                crate::service::roster::bootstrap(&store, r.pinned, r.file, now_ms())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            for n in notes {
                tracing::info!("roster: {n}");
            }
            (keys, Some(anchor))
        }
    };
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
    let taxii_listener = match &cfg.taxii.listen {
        Some(t) => Some(bind("taxii.listen", t).await?),
        None => None,
    };
    let taxii_addr = taxii_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;

    let (receipt_queue, receipt_rx) = ReceiptQueue::new();
    let node = Arc::new(Node::new(NodeParts {
        signer,
        next_signer,
        keys,
        store,
        listen: addr,
        started_ms: now_ms(),
        tls_client: client_tls,
        revoked: tls::revoked_serials(&material.crls),
        receipts: receipt_queue,
        pair,
        roster: roster_anchor,
        cfg,
    }));
    if let Some(cur) = node.roster().as_deref().and_then(|a| a.current()) {
        let signer = node.signer();
        let listed = matches!(node.keys().get(&signer.key_id), Some((o, _)) if o == node.id);
        if cur.is_member(&node.id) && !listed {
            tracing::warn!(
                key = %signer.key_id,
                roster_version = cur.version(),
                "this node's signing key is not listed for it in the roster held: peers refuse what it signs; set node.signing_key to the key the roster lists (or node.next_signing_key to the new one) and reload"
            );
        }
    }
    node.metrics.set_role(node.pair.role().word());
    if matches!(node.pair.role(), crate::service::pair::Role::Active { .. }) {
        // Took the lease at start (see open_store).
        node.metrics.takeovers.inc();
    }
    record_tls_expiry(&node, &tls_cfg, &material);
    node.metrics.config_loaded(true, now_ms());

    let (health, health_svc) = tonic_health::server::health_reporter();
    set_health(&health, node.pair.role().serves()).await;
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
    let max = node.cfg.limits.max_message_bytes + 64 * 1024;
    let operator = OperatorApi::server(node.clone());
    let federation = FederationServer::new(FederationApi::new(node.clone()))
        .max_decoding_message_size(max)
        // Attachment chunks (FetchAttachment) are 1 MiB and a tag.
        .max_encoding_message_size(max.max(crate::service::transfer::MAX_CHUNK_FRAME));

    let (tls_tx, tls_rx) = watch::channel(server_tls);
    let incoming = accept_loop(
        listener,
        accept_config(&node, tls_rx),
        node.shutdown.clone(),
    );
    let server_stop = node.shutdown.clone();
    let server = tonic::transport::Server::builder()
        .max_connection_age(node.cfg.tls.max_connection_age())
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .layer(AuthzLayer)
        .layer(StandbyLayer { node: node.clone() })
        .add_service(health_svc)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(operator)
        .add_service(federation)
        .serve_with_incoming_shutdown(ReceiverStream::new(incoming), async move {
            server_stop.cancelled().await
        });
    let server = tokio::spawn(server);
    let metrics_task =
        metrics_listener.map(|l| tokio::spawn(crate::api::metrics::serve(l, node.clone())));
    let (taxii_tls_tx, taxii_task) = match (taxii_listener, taxii_addr) {
        (Some(l), Some(a)) => {
            let (tx, rx) = watch::channel(taxii_tls(&material)?);
            // The TAXII listener faces the same floods: it gets the same caps
            // (its own, apart from the gRPC listener's).
            let incoming = accept_loop(l, accept_config(&node, rx), node.shutdown.clone());
            let taxii = crate::api::taxii::Taxii::new(node.clone(), a.to_string());
            let task = tokio::spawn(crate::api::taxii::serve(incoming, Arc::new(taxii)));
            (Some(tx), Some(task))
        }
        _ => (None, None),
    };
    let links = Arc::new(LinkTasks::default());
    // Links, receipts and the purge run only while this process serves (at
    // once without a pair; once the lease is taken for a member of a pair).
    let lease_task = lease
        .clone()
        .map(|l| tokio::spawn(run_lease(node.clone(), l)));
    let work = tokio::spawn(serve_when_active(
        node.clone(),
        links.clone(),
        receipt_rx,
        health.clone(),
    ));

    let metrics_text = metrics_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
    let taxii_text = taxii_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
    tracing::info!(node = %node.id, %addr, metrics = %metrics_text, taxii = %taxii_text, peers = node.peers.ids().len(), "certfed node ready");
    let status = Arc::new(systemd::Status::default());
    systemd::ready(&node, &status);
    let notifier = tokio::spawn(systemd::run(
        node.clone(),
        status.clone(),
        sd_notify::watchdog_enabled(),
    ));

    let node2 = node.clone();
    let links2 = links.clone();
    let task = tokio::spawn(async move {
        node2.shutdown.cancelled().await;
        systemd::stopping();
        tracing::info!("shutting down: no new connections; draining in-flight calls");
        // Every service the health endpoint knows, the whole server ("") included.
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        health
            .set_not_serving::<OperatorServer<OperatorApi>>()
            .await;
        health
            .set_not_serving::<FederationServer<FederationApi>>()
            .await;
        let grace = node2.cfg.limits.shutdown_grace();
        let abort = server.abort_handle();
        let result = match tokio::time::timeout(grace, server).await {
            Ok(Ok(r)) => r.map_err(anyhow::Error::from),
            Ok(Err(e)) => Err(anyhow::anyhow!("server task failed: {e}")),
            Err(_) => {
                tracing::warn!(
                    grace_secs = grace.as_secs(),
                    "grace period over; closing remaining connections"
                );
                abort.abort();
                Ok(())
            }
        };
        let started = match tokio::time::timeout(Duration::from_secs(2), work).await {
            Ok(Ok(tasks)) => tasks,
            _ => Vec::new(),
        };
        for t in links2.stop_all().into_iter().chain(started) {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        if let Some(t) = lease_task {
            let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
        }
        if let Some(t) = metrics_task {
            t.abort();
        }
        if let Some(t) = taxii_task {
            t.abort();
        }
        notifier.abort();
        node2.store.close().await;
        if let Some(l) = &lease {
            // After the last write: the standby may take over at once.
            l.release().await;
        }
        tracing::info!("stopped");
        if let crate::service::pair::Role::Lost(why) = node2.pair.role() {
            return Err(anyhow::anyhow!(
                "this process lost the lease of node {} and stepped down: {why}; it exits so that the service manager restarts it as the standby",
                node2.id
            ));
        }
        result
    });

    Ok(RunningNode {
        addr,
        metrics_addr,
        taxii_addr,
        node,
        links,
        tls: tls_tx,
        taxii_tls: taxii_tls_tx,
        task,
        status,
    })
}

/// Sets the health of Operator and Federation (and the whole server).
async fn set_health(health: &tonic_health::server::HealthReporter, serving: bool) {
    use tonic_health::ServingStatus;
    let st = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    health.set_service_status("", st).await;
    health
        .set_service_status(
            <OperatorServer<OperatorApi> as tonic::server::NamedService>::NAME,
            st,
        )
        .await;
    health
        .set_service_status(
            <FederationServer<FederationApi> as tonic::server::NamedService>::NAME,
            st,
        )
        .await;
}

/// Waits until this process serves (at once without a pair), then starts
/// the peer links, the receipt task, the retention purge and the incident
/// task, and keeps the
/// health status in step with the role. Returns the tasks it started.
async fn serve_when_active(
    node: Arc<Node>,
    links: Arc<LinkTasks>,
    receipt_rx: tokio::sync::mpsc::Receiver<crate::domain::admission::ReceiptOwed>,
    health: tonic_health::server::HealthReporter,
) -> Vec<tokio::task::JoinHandle<()>> {
    let start_version = node.roster_version();
    let mut role = node.pair.subscribe();
    loop {
        if role.borrow_and_update().serves() {
            break;
        }
        tokio::select! {
            r = role.changed() => if r.is_err() { return Vec::new() },
            _ = node.shutdown.cancelled() => return Vec::new(),
        }
    }
    set_health(&health, true).await;
    // The other member may have applied rosters while this one waited.
    // (A standby already followed them in memory: the links follow too.)
    let roster_moved = node.pair.backend == "postgres"
        && (crate::service::roster::take_over(&node, now_ms()).await
            || node.roster_version() != start_version);
    links.start_all(&node);
    if roster_moved {
        let peers =
            crate::service::node::roster_peers(&node.configured_peers(), node.roster().as_deref());
        links.apply(&node, peers, &node.revoked());
    }
    let tasks = vec![
        tokio::spawn(crate::service::receipts::run(node.clone(), receipt_rx)),
        tokio::spawn(crate::service::retention::run(node.clone())),
        tokio::spawn(crate::service::retention::empty_relayed(node.clone())),
        tokio::spawn(crate::service::incidents::run(node.clone())),
        tokio::spawn(follow_roster(node.clone(), links.clone())),
        tokio::spawn(crate::service::transfer::run(node.clone())),
        tokio::spawn(crate::service::gossip::run(node.clone())),
    ];
    if node.pair.backend == "postgres" {
        tracing::info!(node = %node.id, member = %node.pair.member, "serving as the active member");
    }
    let watcher = {
        let node = node.clone();
        tokio::spawn(async move {
            let mut role = node.pair.subscribe();
            loop {
                tokio::select! {
                    r = role.changed() => if r.is_err() { return },
                    _ = node.shutdown.cancelled() => return,
                }
                let serves = role.borrow_and_update().serves();
                set_health(&health, serves).await;
            }
        })
    };
    let mut all = tasks;
    all.push(watcher);
    all
}

/// `certfed serve`: runs until SIGTERM or SIGINT; SIGHUP reloads.
pub async fn serve(cfg: Config, path: &std::path::Path) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %path.display(),
        node = %cfg.node.id,
        "certfed starting"
    );
    let prepared = check(cfg)?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let node = start(prepared).await?;
    let stopped = node.node.shutdown.clone();
    loop {
        tokio::select! {
            _ = stopped.cancelled() => break,
            _ = term.recv() => { tracing::info!("SIGTERM received"); break; }
            _ = int.recv() => { tracing::info!("SIGINT received"); break; }
            _ = hup.recv() => {
                tracing::info!(config = %path.display(), "SIGHUP received: reloading");
                systemd::reloading();
                let result = node.reload(path);
                if let Err(e) = &result {
                    tracing::error!(error = %format!("{e:#}"), "reload refused; the running configuration stays in force");
                }
                systemd::reloaded(&node.node, &node.status, result.as_ref().err());
            }
        }
    }
    node.shutdown().await
}
