//! The state every service of a running node shares: who this node is (id,
//! signing key), what it trusts (member keys, CRL serials), its store, its
//! peers, its metrics, the queue of receipts it owes, its role in an
//! active/standby pair, and the shutdown signal.
//! Built once by the application at start; hot-reloadable parts (keys, client
//! TLS, revoked serials, the peer set) sit behind locks and are swapped whole.
//!
//! Nothing here starts a task or opens a socket: the application does that.
use crate::config::{Config, PeerSection};
use crate::domain::admission::ReceiptOwed;
use crate::domain::envelope::VerifyLimits;
use crate::domain::keys::{KeyRegistry, Signer};
use crate::domain::roster::Anchor;
use crate::service::InvalidArgument;
use crate::service::metrics::Metrics;
use crate::service::pair::Pair;
use crate::service::peers::Peers;
use crate::storage::Store;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Receipts owed to origins, waiting to be signed and sent (bounded: under
/// overload receipts are dropped, and logged, before messages ever are).
#[derive(Clone)]
pub struct ReceiptQueue(mpsc::Sender<ReceiptOwed>);

impl ReceiptQueue {
    /// Room for this many receipts before they are dropped.
    pub const CAPACITY: usize = 65_536;

    pub fn new() -> (ReceiptQueue, mpsc::Receiver<ReceiptOwed>) {
        let (tx, rx) = mpsc::channel(Self::CAPACITY);
        (ReceiptQueue(tx), rx)
    }

    pub fn push(&self, owed: ReceiptOwed) {
        if self.0.try_send(owed).is_err() {
            tracing::warn!("receipt queue full or closed; a receipt was dropped");
        }
    }
}

/// Shared state of a running node.
pub struct Node {
    pub cfg: Config,
    pub id: String,
    /// The key this node signs with now ([`Node::signer`]).
    signer: RwLock<Arc<Signer>>,
    /// The configured keys: `node.signing_key` and `node.next_signing_key`
    /// (replaced on reload); the one in use follows the trust in force.
    configured_signers: RwLock<(Arc<Signer>, Option<Arc<Signer>>)>,
    keys: RwLock<Arc<KeyRegistry>>,
    pub store: Store,
    pub listen: SocketAddr,
    pub started_ms: i64,
    tls_client: RwLock<Arc<rustls::ClientConfig>>,
    /// The cursor of the last message stored, for the tasks that follow the
    /// store (Watch, and through `arrivals` incident counting and the
    /// attachment fetcher). Set once per committed batch; a
    /// follower woken by it reads everything after its own cursor, so the
    /// wake-ups coalesce (one read per batch, never one per message).
    pub stored: watch::Sender<u64>,
    /// What each commit stored, handed to the tasks that follow every
    /// arrival (`service::arrivals`); filled before `stored` is advanced.
    pub arrivals: crate::service::arrivals::Arrivals,
    pub peers: Peers,
    pub metrics: Metrics,
    /// Cancelled when the node stops.
    pub shutdown: CancellationToken,
    /// Serialises assistance actions taken by this node.
    pub assist_lock: tokio::sync::Mutex<()>,
    /// One action per client request id at a time (idempotent retries).
    pub requests: crate::service::requests::Requests,
    /// Receipts owed to origins.
    pub receipts: ReceiptQueue,
    /// Set reconciliation with each peer (state per peer).
    pub reconcile: crate::service::reconciler::Reconciler,
    /// Certificate serials revoked by the configured CRLs (replaced on reload).
    revoked: RwLock<Arc<HashSet<String>>>,
    /// The certificate serial each peer last presented (either direction).
    peer_serials: Mutex<HashMap<String, String>>,
    /// Backend and active/standby role of this process.
    pub pair: Pair,
    /// The federation roster held (`None`: a static `[[members]]` list).
    roster: RwLock<Option<Arc<Anchor>>>,
    /// One roster change at a time (`service::roster::apply`).
    pub roster_lock: tokio::sync::Mutex<()>,
    /// Bumped to the version of each roster applied; the application
    /// re-applies the peer set (links of removed members close).
    roster_applied: watch::Sender<u64>,
    /// The peers the configuration lists (the roster may hide some).
    configured_peers: RwLock<Vec<PeerSection>>,
    /// Messages whose attachments are being fetched (`service::transfer`).
    pub fetching: Fetching,
    /// Epidemic broadcast trees over the links (`service::gossip`).
    pub gossip: crate::service::tree::Tree,
    /// The bandwidth schedule of attachment transfers, per peer.
    pub pacers: PeerPacers,
    /// Messages whose first copy came over a path at their signed hop
    /// limit (`domain::custody::HopLimited`).
    pub hop_limited: Mutex<crate::domain::hop_limit::HopLimited>,
    /// Ways to members learned from their messages, for routing messages to
    /// named recipients (`domain::routes`), and the messages routed from here
    /// waiting for their recipients' receipts.
    pub routes: Mutex<crate::domain::routes::Routes>,
    pub routed: Mutex<crate::domain::routes::Pending>,
}

/// The per-peer bound `limits.attachment_bytes_per_sec`: one schedule
/// (`domain::pace::Pacer`) per peer, shared by every transfer to or from it.
pub struct PeerPacers {
    epoch: std::time::Instant,
    peers: Mutex<std::collections::HashMap<String, crate::domain::pace::Pacer>>,
}

impl Default for PeerPacers {
    fn default() -> Self {
        PeerPacers {
            epoch: std::time::Instant::now(),
            peers: Mutex::new(Default::default()),
        }
    }
}

impl PeerPacers {
    /// Reserves `bytes` to or from `peer` under `rate` bytes per second;
    /// returns how long to wait before passing them on.
    pub fn wait(&self, peer: &str, bytes: u64, rate: u64) -> std::time::Duration {
        if rate == 0 {
            return std::time::Duration::ZERO;
        }
        let now = self.epoch.elapsed().as_nanos();
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let ns = peers
            .entry(peer.to_string())
            .or_default()
            .reserve(now, bytes, rate);
        std::time::Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

/// Messages whose attachments are being fetched now (`service::transfer`).
#[derive(Default)]
pub struct Fetching(pub Mutex<HashSet<String>>);

/// What the application hands over to build a [`Node`].
pub struct NodeParts {
    pub cfg: Config,
    pub signer: Signer,
    /// `node.next_signing_key`: signs from the moment the trust lists it.
    pub next_signer: Option<Signer>,
    pub keys: KeyRegistry,
    pub store: Store,
    pub listen: SocketAddr,
    pub started_ms: i64,
    pub tls_client: Arc<rustls::ClientConfig>,
    pub revoked: HashSet<String>,
    pub receipts: ReceiptQueue,
    pub pair: Pair,
    /// The roster to start from (`None`: a static `[[members]]` list).
    pub roster: Option<Anchor>,
}

/// The configured peers that the roster lets this node link to: all of them
/// without a roster or before the first one; else only the roster's members.
pub fn roster_peers(peers: &[PeerSection], roster: Option<&Anchor>) -> Vec<PeerSection> {
    match roster.and_then(Anchor::current) {
        Some(r) => peers
            .iter()
            .filter(|p| r.is_member(&p.id))
            .cloned()
            .collect(),
        None => peers.to_vec(),
    }
}

impl Node {
    pub fn new(p: NodeParts) -> Node {
        let (stored, _) = watch::channel(0);
        let metrics = Metrics::new();
        let peers = Peers::new(&roster_peers(&p.cfg.peers, p.roster.as_ref()));
        metrics.set_peers(&peers.ids());
        let current = Arc::new(p.signer);
        let node = Node {
            id: p.cfg.node.id.clone(),
            signer: RwLock::new(current.clone()),
            configured_signers: RwLock::new((current, p.next_signer.map(Arc::new))),
            keys: RwLock::new(Arc::new(p.keys)),
            store: p.store,
            listen: p.listen,
            started_ms: p.started_ms,
            tls_client: RwLock::new(p.tls_client),
            stored,
            arrivals: Default::default(),
            peers,
            metrics,
            shutdown: CancellationToken::new(),
            assist_lock: tokio::sync::Mutex::new(()),
            requests: Default::default(),
            receipts: p.receipts,
            reconcile: Default::default(),
            revoked: RwLock::new(Arc::new(p.revoked)),
            peer_serials: Mutex::default(),
            pair: p.pair,
            roster_applied: watch::channel(p.roster.as_ref().map_or(0, Anchor::version)).0,
            roster: RwLock::new(p.roster.map(Arc::new)),
            roster_lock: tokio::sync::Mutex::new(()),
            configured_peers: RwLock::new(p.cfg.peers.clone()),
            fetching: Default::default(),
            gossip: crate::service::tree::Tree::new(&p.cfg.gossip),
            pacers: Default::default(),
            hop_limited: Default::default(),
            routes: Default::default(),
            routed: Default::default(),
            cfg: p.cfg,
        };
        node.select_signer();
        node
    }

    /// The key this node signs with now.
    pub fn signer(&self) -> Arc<Signer> {
        self.signer.read().expect("signer lock").clone()
    }

    /// The configured next key while it is not in use yet (no roster or
    /// member list in force lists it for this node).
    pub fn next_signing_key_id(&self) -> Option<String> {
        let (_, next) = self.configured_signers.read().expect("signer lock").clone();
        let using = self.signer().key_id.clone();
        next.map(|n| n.key_id.clone()).filter(|n| *n != using)
    }

    /// Swaps in the keys a reload read (`node.signing_key`,
    /// `node.next_signing_key`) and picks the one to sign with.
    pub fn replace_signers(&self, current: Signer, next: Option<Signer>) {
        *self.configured_signers.write().expect("signer lock") =
            (Arc::new(current), next.map(Arc::new));
        self.select_signer();
    }

    /// Signs with the next key from the moment the trust in force lists it
    /// for this node (`domain::keys::use_next_key`), else with the current
    /// one. A switch is logged; the key given up is kept in the new signer to
    /// open copies still sealed to it. Called on every roster applied, every
    /// reload, and each minute (a key listed with a later `not_before`).
    pub fn select_signer(&self) {
        let (current, next) = self.configured_signers.read().expect("signer lock").clone();
        let keys = self.keys();
        let now = crate::service::now_ms();
        let want = match next {
            Some(n) if crate::domain::keys::use_next_key(&self.id, Some(&n.key_id), &keys, now) => {
                n
            }
            _ => current,
        };
        let mut held = self.signer.write().expect("signer lock");
        if held.key_id == want.key_id {
            return;
        }
        tracing::info!(
            from = %held.key_id,
            to = %want.key_id,
            roster_version = self.roster_version(),
            "signing key switched: messages created from now on are signed with the new key, without a restart"
        );
        *held = Arc::new(want.duplicate().after(&held));
    }

    /// The members' pinned signing keys.
    pub fn keys(&self) -> Arc<KeyRegistry> {
        self.keys.read().expect("keys lock").clone()
    }

    /// The TLS configuration for outbound links.
    pub fn tls_client(&self) -> Arc<rustls::ClientConfig> {
        self.tls_client.read().expect("tls lock").clone()
    }

    /// Certificate serials currently revoked.
    pub fn revoked(&self) -> Arc<HashSet<String>> {
        self.revoked.read().expect("revoked lock").clone()
    }

    /// Swaps in reloaded trust material. With a roster, the member keys come
    /// from the roster, not the configuration: `keys` is then ignored.
    pub fn replace_trust(
        &self,
        keys: KeyRegistry,
        tls_client: Arc<rustls::ClientConfig>,
        revoked: HashSet<String>,
    ) {
        if self.roster().is_none() {
            *self.keys.write().expect("keys lock") = Arc::new(keys);
        }
        *self.tls_client.write().expect("tls lock") = tls_client;
        *self.revoked.write().expect("revoked lock") = Arc::new(revoked);
        self.select_signer();
    }

    /// The federation roster held (`None`: a static `[[members]]` list).
    pub fn roster(&self) -> Option<Arc<Anchor>> {
        self.roster.read().expect("roster lock").clone()
    }

    /// The version of the roster held (0: none).
    pub fn roster_version(&self) -> u64 {
        self.roster().map_or(0, |a| a.version())
    }

    /// Swaps in a newly applied roster and the member keys it trusts, then
    /// tells the application (which re-applies the peer set).
    pub fn replace_roster(&self, anchor: Anchor, keys: KeyRegistry) {
        let v = anchor.version();
        *self.keys.write().expect("keys lock") = Arc::new(keys);
        *self.roster.write().expect("roster lock") = Some(Arc::new(anchor));
        self.select_signer();
        self.roster_applied.send_replace(v);
    }

    /// Signalled with the version of each roster applied.
    pub fn subscribe_roster(&self) -> watch::Receiver<u64> {
        self.roster_applied.subscribe()
    }

    /// The peers the configuration lists.
    pub fn configured_peers(&self) -> Vec<PeerSection> {
        self.configured_peers.read().expect("peers lock").clone()
    }

    /// A reload's peer list; returns the ones the roster lets this node link to.
    pub fn set_configured_peers(&self, peers: Vec<PeerSection>) -> Vec<PeerSection> {
        let out = roster_peers(&peers, self.roster().as_deref());
        *self.configured_peers.write().expect("peers lock") = peers;
        out
    }

    /// Records the certificate a peer presented. One it did not present
    /// before (renewed, or the first since this node started) may come with
    /// a fixed cause of its earlier refusals: reconciliation forgets them.
    pub fn note_peer_serial(&self, peer: &str, serial: String) {
        let before = self
            .peer_serials
            .lock()
            .expect("serials lock")
            .insert(peer.to_string(), serial.clone());
        if before.as_ref() != Some(&serial) {
            self.reconcile
                .forget_refusals(peer, crate::service::now_ms());
        }
    }

    /// Whether the certificate `peer` last presented is in `revoked`.
    pub fn peer_serial_revoked(&self, peer: &str, revoked: &HashSet<String>) -> bool {
        self.peer_serials
            .lock()
            .expect("serials lock")
            .get(peer)
            .is_some_and(|s| revoked.contains(s))
    }

    /// Every recipient must be a federation member known to this node.
    pub fn check_members(&self, recipients: &[String]) -> Result<(), InvalidArgument> {
        let keys = self.keys();
        for (i, r) in recipients.iter().enumerate() {
            if !keys.is_member(r) {
                return Err(InvalidArgument::new(
                    format!("recipients[{i}]"),
                    format!("{r} is not a federation member known to this node ([[members]])"),
                ));
            }
        }
        Ok(())
    }

    /// The checks applied to received envelopes.
    pub fn verify_limits(&self) -> VerifyLimits {
        self.cfg.limits.verify_limits()
    }
}
