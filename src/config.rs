//! Node configuration: a closed, typed set read from TOML plus `CERTFED__SECTION__KEY`
//! environment overrides, validated before any port binds.
//!
//! Relative paths resolve against the folder of the configuration file (also when
//! they come from the environment), so a configuration tree can be moved as a whole.
use crate::domain::identity::validate_name;
use crate::proto::v1::Tlp;
use serde::{Deserialize, Deserializer};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration problem, naming the key or file and the reason.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// The whole configuration of one node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeSection,
    pub tls: TlsSection,
    pub storage: StorageSection,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub limits: LimitsSection,
    /// Limits of the listener against connection floods.
    #[serde(default)]
    pub listener: ListenerSection,
    /// Set reconciliation with each peer.
    #[serde(default)]
    pub reconcile: ReconcileSection,
    /// The read-only TAXII 2.1 server (off unless `taxii.listen` is set).
    #[serde(default)]
    pub taxii: TaxiiSection,
    /// Whether this node takes part in exercises (issue 18).
    #[serde(default)]
    pub exercise: ExerciseSection,
    /// Epidemic broadcast trees over the links (issue 13).
    #[serde(default)]
    pub gossip: GossipSection,
    /// Direct peers this node keeps links to.
    #[serde(default)]
    pub peers: Vec<PeerSection>,
    /// Federation members and their pinned message-signing public keys (a
    /// static list; not together with `[roster]`).
    #[serde(default)]
    pub members: Vec<MemberSection>,
    /// The signed federation roster this node follows instead of a static
    /// `[[members]]` list (issue 14; see `domain::roster`).
    #[serde(default)]
    pub roster: Option<RosterSection>,
    /// Folder of the configuration file (set by [`Config::load`]).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// This node's member id; must match the identity in `tls.cert`.
    pub id: String,
    /// host:port to listen on for gRPC (Operator, Federation, Health, reflection).
    pub listen: String,
    /// Ed25519 message-signing private key (PKCS#8 PEM, mode 0600).
    pub signing_key: PathBuf,
    /// The key this node signs with next (PKCS#8 PEM, mode 0600): read at
    /// start and on reload (SIGHUP), and used from the moment the trust in
    /// force (an applied roster, or `[[members]]`) lists its public half for
    /// this node, without a restart. Until then `signing_key` signs.
    #[serde(default)]
    pub next_signing_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Federation CA certificate(s) (PEM): the trust anchors for peers and operators.
    pub ca: PathBuf,
    /// This node's certificate chain (PEM).
    pub cert: PathBuf,
    /// This node's TLS private key (PEM, mode 0600).
    pub key: PathBuf,
    /// Certificate revocation lists (PEM). Expired CRLs are refused.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// Seconds a client has to finish the TLS handshake.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_secs: u64,
    /// Connections are closed after this many seconds, so that revocation takes effect.
    #[serde(default = "default_max_connection_age")]
    pub max_connection_age_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Where the store lives: `sqlite` (a file in `dir`, the default) or
    /// `postgres` (the database `url` names; two processes of one node may
    /// share it as an active/standby pair).
    #[serde(default)]
    pub backend: StorageBackend,
    /// Folder of the node's SQLite database; created (mode 0700) if missing.
    /// Required with `backend = "sqlite"`.
    #[serde(default)]
    pub dir: PathBuf,
    /// The PostgreSQL database (libpq URL or `key=value` string), e.g.
    /// `postgresql://certfed@db.example:5432/certfed?sslmode=verify-full&sslrootcert=/etc/certfed/db-ca.crt`.
    /// Required with `backend = "postgres"`. Never logged.
    #[serde(default)]
    pub url: Option<String>,
    /// File holding the database password (one line, mode 0600), when the
    /// URL has none.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The database password: meant for the environment
    /// (`CERTFED__STORAGE__PASSWORD`, read verbatim); never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// PostgreSQL: seconds an active member's lease lasts without renewal
    /// (renewed every quarter of it). The standby takes over within about
    /// this long after the active stops.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// Days a message is kept after its creation time; older messages are
    /// purged with their outbox, delivery and receipt rows (open assistance
    /// requests and their steps are kept until closed).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Per-TLP overrides of `retention_days` (`clear`, `green`, `amber`,
    /// `amber+strict`, `red`), e.g. `red = 90`.
    #[serde(default, deserialize_with = "de_tlp_days")]
    pub retention_days_by_tlp: Vec<(Tlp, u32)>,
    /// Integrity check of the database at start: `quick`, `full` or `off`.
    #[serde(default)]
    pub integrity_check: IntegrityCheckMode,
    /// Seconds a relay keeps the ciphertext of a message it cannot read
    /// after it arrived, at least, and until every peer it was queued for
    /// has it; then only the signed header stays. Within it the relay can
    /// answer a peer that needs a copy over fewer links (a message stopped
    /// at its hop limit elsewhere), and announces what its hop limit stopped
    /// here to a peer whose link comes up, even after a restart. 0 empties it
    /// within a second of the last peer's acknowledgement.
    #[serde(default = "default_relay_keep_secs")]
    pub relay_keep_secs: u64,
}

/// The storage backend.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// One SQLite file in `storage.dir`: no server to run.
    #[default]
    Sqlite,
    /// A PostgreSQL database (`storage.url`).
    Postgres,
}

impl StorageBackend {
    /// The configuration word.
    pub fn word(self) -> &'static str {
        match self {
            StorageBackend::Sqlite => "sqlite",
            StorageBackend::Postgres => "postgres",
        }
    }
}

/// A secret string: its Debug form never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Secret(String::deserialize(d)?))
    }
}

/// How thoroughly the store is checked for damage at start.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IntegrityCheckMode {
    /// Every page's structure (SQLite `quick_check`).
    #[default]
    Quick,
    /// Also every index against its table (SQLite `integrity_check`).
    Full,
    /// None (only the file header is checked).
    Off,
}

impl StorageSection {
    /// The database password: `password` (the environment) if set, else
    /// the first line of `password_file`, else none (the URL may carry it).
    pub fn database_password(&self) -> Result<Option<String>, ConfigError> {
        if let Some(p) = &self.password {
            return Ok(Some(p.0.clone()));
        }
        let Some(f) = &self.password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(f).map_err(|e| {
            err(format!(
                "storage.password_file: cannot read {}: {e}",
                f.display()
            ))
        })?;
        let line = text.lines().next().unwrap_or("").to_string();
        if line.is_empty() {
            return Err(err(format!(
                "storage.password_file: {} is empty; write the password on its first line",
                f.display()
            )));
        }
        Ok(Some(line))
    }

    /// How long a lease lasts without renewal.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    /// Days messages of TLP `tlp` are kept.
    pub fn retention_days_for(&self, tlp: Tlp) -> u32 {
        self.retention_days_by_tlp
            .iter()
            .find(|(t, _)| *t == tlp)
            .map_or(self.retention_days, |(_, d)| *d)
    }

    /// How long messages of TLP `tlp` are kept.
    pub fn retention_for(&self, tlp: Tlp) -> Duration {
        Duration::from_secs(u64::from(self.retention_days_for(tlp)) * DAY_SECS)
    }
}

/// `[exercise]`: exercise traffic (envelopes signed with `exercise` set).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExerciseSection {
    /// false: this node refuses exercise envelopes: it neither stores nor
    /// relays them (a partner behind it gets none either), and the origin
    /// gets a rejection receipt saying so. Default true.
    #[serde(default = "default_true")]
    pub accept: bool,
}

impl Default for ExerciseSection {
    fn default() -> Self {
        ExerciseSection { accept: true }
    }
}

/// `[gossip]`: epidemic broadcast trees (Plumtree, `domain::plumtree`).
/// With peers that support them too, broadcast messages go in full only
/// over a spanning tree that forms itself from first arrivals; the other
/// links carry batched "I have" announcements, and a node that misses a
/// message asks for it (graft). Peers without support get everything in full.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GossipSection {
    /// true (the default): broadcasts over trees with peers that support
    /// them (full copies over eager links, announcements over lazy ones,
    /// each announced copy kept queued until the peer confirms it holds the
    /// message). false: flood every message in full over every link policy
    /// allows (and tell peers this node takes no announcements).
    #[serde(default = "default_true")]
    pub plumtree: bool,
    /// Milliseconds a node waits after an announcement of a message it lacks
    /// before it asks the announcer for it (10 to 60000; default 500).
    #[serde(default = "default_graft_timeout_ms")]
    pub graft_timeout_ms: u64,
    /// Milliseconds announcements to one peer are gathered before they go
    /// as one frame (1 to 5000; default 25).
    #[serde(default = "default_ihave_batch_ms")]
    pub ihave_batch_ms: u64,
    /// Milliseconds the copy of an announced message is held back for a
    /// lazy peer: sent in full after that unless the peer answered that it
    /// holds it (100 to 600000, longer than `graft_timeout_ms`; default
    /// 5000, or twice `graft_timeout_ms` if that is longer). Shorter: fewer
    /// late arrivals when a tree link is slow, more duplicate copies.
    #[serde(default)]
    pub lazy_hold_ms: Option<u64>,
    /// How many links shorter another way from an origin (announced by a
    /// peer with its hop count, or a duplicate's) must be for this node to
    /// make it its tree link for that origin (0 to 8; 0: never; default 1).
    #[serde(default = "default_shortcut_hops")]
    pub shortcut_hops: u32,
}

impl GossipSection {
    /// `lazy_hold_ms`, or its default for this `graft_timeout_ms`.
    pub fn lazy_hold_ms(&self) -> u64 {
        self.lazy_hold_ms
            .unwrap_or_else(|| 5_000u64.max(self.graft_timeout_ms.saturating_mul(2)))
    }
}

fn default_graft_timeout_ms() -> u64 {
    500
}

fn default_ihave_batch_ms() -> u64 {
    25
}

fn default_shortcut_hops() -> u32 {
    1
}

impl Default for GossipSection {
    fn default() -> Self {
        GossipSection {
            plumtree: true,
            graft_timeout_ms: default_graft_timeout_ms(),
            ihave_batch_ms: default_ihave_batch_ms(),
            lazy_hold_ms: None,
            shortcut_hops: default_shortcut_hops(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// host:port for the Prometheus `/metrics` endpoint; unset disables it.
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxiiSection {
    /// host:port for the TAXII 2.1 server (HTTPS, mutual TLS with operator
    /// certificates, discovery at `/taxii2/`); unset disables it.
    pub listen: Option<String>,
    /// Highest TLP level served as a collection: clear, green, amber,
    /// amber+strict, red (default red: every level this node can read).
    #[serde(default = "default_max_tlp", deserialize_with = "de_tlp")]
    pub max_tlp: Tlp,
}

impl Default for TaxiiSection {
    fn default() -> Self {
        TaxiiSection {
            listen: None,
            max_tlp: default_max_tlp(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `human` or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// Default filter (tracing `EnvFilter` syntax); `RUST_LOG` takes precedence.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: LogFormat::Human,
            level: default_log_level(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest accepted serialized envelope, in bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// How far in the future a message's creation time may be, in seconds.
    #[serde(default = "default_clock_skew")]
    pub max_clock_skew_secs: u64,
    /// Hop limit put on messages this node originates.
    #[serde(default = "default_hop_limit")]
    pub hop_limit: u32,
    /// Seconds in-flight calls get to finish on shutdown.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
    /// Envelopes created longer ago than this many days are refused for good.
    /// At most `storage.retention_days`, so a purged message cannot come back.
    #[serde(default = "default_max_message_age_days")]
    pub max_message_age_days: u32,
    /// Seconds a peer has to acknowledge something while messages are in
    /// flight to it before the link is reopened.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout_secs: u64,
    /// Most bytes of attachments (evidence files) on one message, all
    /// attachments together (issue 16). Default 64 MiB.
    #[serde(default = "default_max_attachment_bytes")]
    pub max_attachment_bytes: u64,
    /// Attachments of a message are fetched from the delivering peer as soon
    /// as the message arrives when they total at most this many bytes (in
    /// their stored form); larger ones when first asked for. Default 64 MiB.
    #[serde(default = "default_max_attachment_bytes")]
    pub eager_attachment_bytes: u64,
    /// Bytes per second of attachments to and from one peer, all transfers
    /// with that peer together (0: unbounded). Attachments travel on their
    /// own connection, so alerts never queue behind them; this bound keeps
    /// large transfers from filling a thin link.
    #[serde(default)]
    pub attachment_bytes_per_sec: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_message_bytes: default_max_message_bytes(),
            max_clock_skew_secs: default_clock_skew(),
            hop_limit: default_hop_limit(),
            shutdown_grace_secs: default_shutdown_grace(),
            max_message_age_days: default_max_message_age_days(),
            ack_timeout_secs: default_ack_timeout(),
            max_attachment_bytes: default_max_attachment_bytes(),
            eager_attachment_bytes: default_max_attachment_bytes(),
            attachment_bytes_per_sec: 0,
        }
    }
}

/// Caps on what the listener accepts, checked before any TLS work: a TCP
/// connection over a cap is closed at once (and counted).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    /// TLS handshakes in progress at once, from all sources.
    #[serde(default = "default_max_handshakes")]
    pub max_handshakes: usize,
    /// TLS handshakes in progress at once from one source address.
    #[serde(default = "default_max_handshakes_per_source")]
    pub max_handshakes_per_source: usize,
    /// Open connections (handshaking or established), from all sources.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open connections from one source address.
    #[serde(default = "default_max_connections_per_source")]
    pub max_connections_per_source: usize,
}

impl Default for ListenerSection {
    fn default() -> Self {
        ListenerSection {
            max_handshakes: default_max_handshakes(),
            max_handshakes_per_source: default_max_handshakes_per_source(),
            max_connections: default_max_connections(),
            max_connections_per_source: default_max_connections_per_source(),
        }
    }
}

/// Set reconciliation with each peer: when a link comes up and then every
/// `interval_secs`, the two nodes compare the messages of the last
/// `window_days` their link carries (`domain::reconcile::audiences`), and each queues what the other lacks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileSection {
    /// Days of history reconciled (by creation time); at most
    /// `limits.max_message_age_days`. 0 turns reconciliation off (this node
    /// still answers its peers' rounds).
    #[serde(default = "default_reconcile_window_days")]
    pub window_days: u32,
    /// Seconds between reconciliations with a peer whose link is up.
    #[serde(default = "default_reconcile_interval")]
    pub interval_secs: u64,
    /// Seconds one reconciliation may take before it is abandoned.
    #[serde(default = "default_reconcile_timeout")]
    pub timeout_secs: u64,
    /// Reconciliation rounds one peer may ask of this node per minute; more
    /// are refused (RESOURCE_EXHAUSTED) until the minute has passed.
    #[serde(default = "default_reconcile_rounds")]
    pub max_rounds_per_minute: u32,
    /// Most items of the reconciled set one round reads into memory (about
    /// 56 bytes each); a ten-minute bucket holding more is not compared.
    #[serde(default = "default_reconcile_round_items")]
    pub max_round_items: usize,
}

impl Default for ReconcileSection {
    fn default() -> Self {
        ReconcileSection {
            window_days: default_reconcile_window_days(),
            interval_secs: default_reconcile_interval(),
            timeout_secs: default_reconcile_timeout(),
            max_rounds_per_minute: default_reconcile_rounds(),
            max_round_items: default_reconcile_round_items(),
        }
    }
}

impl ReconcileSection {
    /// The reconciled history, as a duration.
    pub fn window(&self) -> Duration {
        Duration::from_secs(u64::from(self.window_days) * DAY_SECS)
    }
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

fn default_reconcile_window_days() -> u32 {
    30
}
fn default_reconcile_interval() -> u64 {
    300
}
fn default_reconcile_timeout() -> u64 {
    120
}
fn default_reconcile_round_items() -> usize {
    300_000
}
fn default_reconcile_rounds() -> u32 {
    600
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawPeer")]
pub struct PeerSection {
    /// Member id of the peer; its certificate must name it.
    pub id: String,
    /// host:port of the peer's listener (the first of `endpoints`). A DNS
    /// name is resolved each time the link connects, never at load time.
    pub endpoint: HostPort,
    /// Every address of the peer, in the order a link tries them: one
    /// (`endpoint = "..."`) or the members of an active/standby pair
    /// (`endpoints = ["a:7700", "b:7700"]`); the link settles on the one
    /// that answers as active.
    pub endpoints: Vec<HostPort>,
    /// Highest TLP this peer may receive: clear, green, amber, amber+strict, red.
    #[serde(default = "default_max_tlp", deserialize_with = "de_tlp")]
    pub max_tlp: Tlp,
    /// Whether this link may carry messages for other members (relay).
    #[serde(default = "default_true")]
    pub relay: bool,
}

/// `[[peers]]` as written: `endpoint` or `endpoints`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    id: String,
    #[serde(default)]
    endpoint: Option<HostPort>,
    #[serde(default)]
    endpoints: Vec<HostPort>,
    #[serde(default = "default_max_tlp", deserialize_with = "de_tlp")]
    max_tlp: Tlp,
    #[serde(default = "default_true")]
    relay: bool,
}

/// Most addresses one peer may list.
const MAX_ENDPOINTS: usize = 8;

impl TryFrom<RawPeer> for PeerSection {
    type Error = String;
    fn try_from(r: RawPeer) -> Result<Self, String> {
        let endpoints = match (r.endpoint, r.endpoints.is_empty()) {
            (Some(_), false) => {
                return Err(format!(
                    "peer {}: give endpoint or endpoints, not both (endpoints = [\"a:7700\", \"b:7700\"] lists every member of an active/standby pair)",
                    r.id
                ));
            }
            (Some(e), true) => vec![e],
            (None, false) => r.endpoints,
            (None, true) => {
                return Err(format!(
                    "peer {}: missing field `endpoint` (host:port of the peer; endpoints = [...] for an active/standby pair)",
                    r.id
                ));
            }
        };
        if endpoints.len() > MAX_ENDPOINTS {
            return Err(format!(
                "peer {}: {} endpoints; at most {MAX_ENDPOINTS}",
                r.id,
                endpoints.len()
            ));
        }
        for (i, e) in endpoints.iter().enumerate() {
            if endpoints[..i].contains(e) {
                return Err(format!("peer {}: endpoint {e} is listed twice", r.id));
            }
        }
        Ok(PeerSection {
            id: r.id,
            endpoint: endpoints[0].clone(),
            endpoints,
            max_tlp: r.max_tlp,
            relay: r.relay,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSection {
    /// Member id.
    pub id: String,
    /// Ed25519 message-signing public keys (SPKI PEM files) of this member. List
    /// old and new key during a rotation; remove a key to revoke it.
    pub signing_keys: Vec<PathBuf>,
}

/// Where the node's federation roster starts: a signed roster file, and/or
/// stewards (with a threshold) whose quorum the first roster must carry.
/// Newer rosters arrive over the federation and are applied without restart.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterSection {
    /// A signed roster to start from (the text file `certfed roster sign`
    /// writes). Used when the store holds no newer roster.
    pub file: Option<PathBuf>,
    /// Pinned stewards: the first roster this node accepts (the file, or
    /// one arriving over the federation) must carry `threshold` of their
    /// signatures.
    #[serde(default)]
    pub stewards: Vec<StewardSection>,
    /// How many of `stewards` must sign the first roster.
    pub threshold: Option<u32>,
}

/// A pinned steward.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StewardSection {
    /// Steward id, as the roster names it.
    pub id: String,
    /// The steward's Ed25519 public key (SPKI PEM file, as `certfed pki
    /// signing-key` writes it).
    pub key: PathBuf,
}

fn default_handshake_timeout() -> u64 {
    10
}
fn default_max_connection_age() -> u64 {
    3600
}
fn default_log_level() -> String {
    "info".into()
}
/// Ceiling of `limits.max_attachment_bytes` (1 TiB).
pub const MAX_ATTACHMENT_BYTES: u64 = 1 << 40;

fn default_max_attachment_bytes() -> u64 {
    64 * 1024 * 1024
}

fn default_max_message_bytes() -> usize {
    256 * 1024
}
fn default_clock_skew() -> u64 {
    300
}
/// `limits.hop_limit` when the configuration does not set it.
pub const DEFAULT_HOP_LIMIT: u32 = 8;

fn default_hop_limit() -> u32 {
    DEFAULT_HOP_LIMIT
}
fn default_shutdown_grace() -> u64 {
    10
}
fn default_ack_timeout() -> u64 {
    30
}
fn default_max_handshakes() -> usize {
    128
}
fn default_max_handshakes_per_source() -> usize {
    64
}
fn default_max_connections() -> usize {
    512
}
fn default_max_connections_per_source() -> usize {
    128
}
fn default_max_tlp() -> Tlp {
    Tlp::Red
}
fn default_lease_secs() -> u64 {
    8
}
fn default_relay_keep_secs() -> u64 {
    600
}
fn default_retention_days() -> u32 {
    365
}
fn default_max_message_age_days() -> u32 {
    90
}
const DAY_SECS: u64 = 86_400;
/// Longest retention or message age accepted, in days (100 years).
const MAX_DAYS: u32 = 36_500;

/// A table `{ tlp word = days }`, keys read with `parse_tlp`.
fn de_tlp_days<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(Tlp, u32)>, D::Error> {
    let map = std::collections::BTreeMap::<String, u32>::deserialize(d)?;
    let mut out: Vec<(Tlp, u32)> = Vec::with_capacity(map.len());
    for (k, days) in map {
        let tlp = crate::domain::policy::parse_tlp(&k).map_err(serde::de::Error::custom)?;
        if out.iter().any(|(t, _)| *t == tlp) {
            return Err(serde::de::Error::custom(format!(
                "{k:?} names a TLP that is already listed"
            )));
        }
        out.push((tlp, days));
    }
    Ok(out)
}

fn de_tlp<'de, D: Deserializer<'de>>(d: D) -> Result<Tlp, D::Error> {
    let s = String::deserialize(d)?;
    crate::domain::policy::parse_tlp(&s).map_err(serde::de::Error::custom)
}

/// A `host:port` endpoint, checked for shape when the configuration is read
/// and resolved (for a DNS name) only when connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP literal, without IPv6 brackets.
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// Parses `host:port` (`[v6]:port` for IPv6 literals).
    pub fn parse(s: &str) -> Result<HostPort, String> {
        let bad = |why: &str| {
            format!("invalid endpoint {s:?}: {why}; expected host:port, e.g. cert.example.org:7700")
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| bad("the port is not a number 1-65535"))?;
        if port == 0 {
            return Err(bad("port 0"));
        }
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let ok_host = !host.is_empty()
            && host.len() <= 253
            && (host.parse::<std::net::IpAddr>().is_ok()
                || host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')));
        if !ok_host {
            return Err(bad("not a host name or IP address"));
        }
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HostPort::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl TlsSection {
    /// Time a client has to finish the TLS handshake.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
    /// Age after which connections are closed.
    pub fn max_connection_age(&self) -> Duration {
        Duration::from_secs(self.max_connection_age_secs)
    }
}

impl LimitsSection {
    /// How far in the future a message's creation time may be.
    pub fn max_clock_skew(&self) -> Duration {
        Duration::from_secs(self.max_clock_skew_secs)
    }
    /// Time in-flight calls get to finish on shutdown.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
    /// Oldest creation time (as an age) of an accepted envelope.
    pub fn max_message_age(&self) -> Duration {
        Duration::from_secs(u64::from(self.max_message_age_days) * DAY_SECS)
    }

    /// The checks applied to received envelopes under these limits.
    pub fn verify_limits(&self) -> crate::domain::envelope::VerifyLimits {
        crate::domain::envelope::VerifyLimits {
            max_message_bytes: self.max_message_bytes,
            max_clock_skew_ms: i64::try_from(self.max_clock_skew().as_millis()).unwrap_or(i64::MAX),
            max_message_age_ms: i64::try_from(self.max_message_age().as_millis())
                .unwrap_or(i64::MAX),
        }
    }

    /// Time a peer has to acknowledge something while messages are in flight.
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_secs(self.ack_timeout_secs)
    }
}
fn default_true() -> bool {
    true
}

impl Config {
    /// Reads `path`, applies `CERTFED__*` environment overrides, resolves relative
    /// paths and validates everything that can be checked without binding a port.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if !path.is_file() {
            return Err(err(format!(
                "config file {}: not found or not a regular file",
                path.display()
            )));
        }
        let raw = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("CERTFED")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env_without_secrets())),
            )
            .build()
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
        let mut cfg: Config = raw
            .try_deserialize()
            .map_err(|e| err(format!("{}: {}", path.display(), key_first(&e.to_string()))))?;
        let base = path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        cfg.base_dir = base;
        // Read verbatim: parsing would turn a password of digits into a number.
        if let Ok(p) = std::env::var(PASSWORD_VAR) {
            cfg.storage.password = Some(Secret(p));
        }
        cfg.resolve_paths();
        cfg.validate()?;
        Ok(cfg)
    }

    /// The storage keys, checked by backend.
    fn validate_storage(&self) -> Result<(), ConfigError> {
        let st = &self.storage;
        match st.backend {
            StorageBackend::Sqlite => {
                if st.dir.as_os_str().is_empty() {
                    return Err(err(
                        "storage.dir: required with storage.backend = \"sqlite\" (the folder of the node's database)",
                    ));
                }
                if st.url.is_some() {
                    return Err(err(
                        "storage.url: only used with storage.backend = \"postgres\"; set the backend or remove the url",
                    ));
                }
            }
            StorageBackend::Postgres => {
                let url = st.url.as_deref().unwrap_or("").trim();
                if url.is_empty() {
                    return Err(err(
                        "storage.url: required with storage.backend = \"postgres\", e.g. postgresql://certfed@db.example:5432/certfed?sslmode=verify-full&sslrootcert=/etc/certfed/db-ca.crt",
                    ));
                }
                if let Some(f) = &st.password_file {
                    require_file("storage.password_file", f)?;
                    check_secret_file("storage.password_file", f)?;
                }
                if !(2..=300).contains(&st.lease_secs) {
                    return Err(err("storage.lease_secs: must be between 2 and 300"));
                }
            }
        }
        Ok(())
    }

    fn resolve_paths(&mut self) {
        let base = self.base_dir.clone();
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.node.signing_key);
        if let Some(k) = &mut self.node.next_signing_key {
            fix(k);
        }
        fix(&mut self.tls.ca);
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        self.tls.crls.iter_mut().for_each(fix);
        if !self.storage.dir.as_os_str().is_empty() {
            fix(&mut self.storage.dir);
        }
        if let Some(p) = &mut self.storage.password_file {
            fix(p);
        }
        for m in &mut self.members {
            m.signing_keys.iter_mut().for_each(fix);
        }
        if let Some(r) = &mut self.roster {
            r.file.iter_mut().for_each(fix);
            for st in &mut r.stewards {
                fix(&mut st.key);
            }
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        validate_name(&self.node.id).map_err(|e| err(format!("node.id: {e}")))?;
        if !(100..=10_000_000).contains(&self.reconcile.max_round_items) {
            return Err(err(format!(
                "reconcile.max_round_items: {}; must be between 100 and 10000000 (items of the set one round may read, ~56 bytes each)",
                self.reconcile.max_round_items
            )));
        }
        let g = &self.gossip;
        if !(10..=60_000).contains(&g.graft_timeout_ms) {
            return Err(err(format!(
                "gossip.graft_timeout_ms: {} ms; must be between 10 and 60000",
                g.graft_timeout_ms
            )));
        }
        if !(1..=5_000).contains(&g.ihave_batch_ms) {
            return Err(err(format!(
                "gossip.ihave_batch_ms: {} ms; must be between 1 and 5000",
                g.ihave_batch_ms
            )));
        }
        if g.shortcut_hops > 8 {
            return Err(err(format!(
                "gossip.shortcut_hops: {}; must be between 0 (no shortcuts) and 8",
                g.shortcut_hops
            )));
        }
        if let Some(hold) = g.lazy_hold_ms {
            if !(100..=600_000).contains(&hold) {
                return Err(err(format!(
                    "gossip.lazy_hold_ms: {hold} ms; must be between 100 and 600000"
                )));
            }
            if hold <= g.graft_timeout_ms {
                return Err(err(format!(
                    "gossip.lazy_hold_ms ({hold} ms) must be longer than gossip.graft_timeout_ms ({} ms): a lazy peer must have time to ask for a message before its copy is sent anyway; raise lazy_hold_ms or leave it out (default: 5000, or twice graft_timeout_ms)",
                    g.graft_timeout_ms
                )));
            }
        }
        parse_addr("node.listen", &self.node.listen)?;
        if let Some(m) = &self.metrics.listen {
            let a = parse_addr("metrics.listen", m)?;
            if a == parse_addr("node.listen", &self.node.listen)? {
                return Err(err("metrics.listen: must differ from node.listen"));
            }
        }
        if let Some(t) = &self.taxii.listen {
            let a = parse_addr("taxii.listen", t)?;
            if a == parse_addr("node.listen", &self.node.listen)? {
                return Err(err("taxii.listen: must differ from node.listen"));
            }
            if let Some(m) = &self.metrics.listen
                && a == parse_addr("metrics.listen", m)?
            {
                return Err(err("taxii.listen: must differ from metrics.listen"));
            }
        }
        require_file("node.signing_key", &self.node.signing_key)?;
        if let Some(k) = &self.node.next_signing_key {
            require_file("node.next_signing_key", k)?;
        }
        require_file("tls.ca", &self.tls.ca)?;
        require_file("tls.cert", &self.tls.cert)?;
        require_file("tls.key", &self.tls.key)?;
        for (i, c) in self.tls.crls.iter().enumerate() {
            require_file(&format!("tls.crls[{i}]"), c)?;
        }
        if self.tls.handshake_timeout_secs == 0 {
            return Err(err("tls.handshake_timeout_secs: must be at least 1"));
        }
        if self.tls.max_connection_age_secs == 0 {
            return Err(err("tls.max_connection_age_secs: must be at least 1"));
        }
        self.validate_storage()?;
        if self.storage.dir.exists() && !self.storage.dir.is_dir() {
            return Err(err(format!(
                "storage.dir: {} exists and is not a directory",
                self.storage.dir.display()
            )));
        }
        if self.limits.max_attachment_bytes > MAX_ATTACHMENT_BYTES {
            return Err(err(
                "limits.max_attachment_bytes: must be at most 1099511627776 (1 TiB); 0 refuses every attachment",
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.limits.max_message_bytes) {
            return Err(err(
                "limits.max_message_bytes: must be between 1024 and 67108864",
            ));
        }
        if self.limits.max_clock_skew_secs > 86_400 {
            return Err(err(
                "limits.max_clock_skew_secs: must be at most 86400 (one day); fix the clocks instead (NTP)",
            ));
        }
        if !(1..=64).contains(&self.limits.hop_limit) {
            return Err(err("limits.hop_limit: must be between 1 and 64"));
        }
        self.validate_retention()?;
        if !(1..=3600).contains(&self.limits.ack_timeout_secs) {
            return Err(err("limits.ack_timeout_secs: must be between 1 and 3600"));
        }
        let l = &self.listener;
        for (key, v) in [
            ("listener.max_handshakes", l.max_handshakes),
            (
                "listener.max_handshakes_per_source",
                l.max_handshakes_per_source,
            ),
            ("listener.max_connections", l.max_connections),
            (
                "listener.max_connections_per_source",
                l.max_connections_per_source,
            ),
        ] {
            if v == 0 {
                return Err(err(format!("{key}: must be at least 1")));
            }
        }
        if l.max_handshakes_per_source > l.max_handshakes {
            return Err(err(
                "listener.max_handshakes_per_source: must not exceed listener.max_handshakes",
            ));
        }
        if l.max_connections_per_source > l.max_connections {
            return Err(err(
                "listener.max_connections_per_source: must not exceed listener.max_connections",
            ));
        }
        if l.max_handshakes > l.max_connections {
            return Err(err(
                "listener.max_handshakes: must not exceed listener.max_connections (a handshake is a connection)",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, m) in self.members.iter().enumerate() {
            validate_name(&m.id).map_err(|e| err(format!("members[{i}].id: {e}")))?;
            if !seen.insert(m.id.as_str()) {
                return Err(err(format!("members[{i}].id: {} is listed twice", m.id)));
            }
            if m.signing_keys.is_empty() {
                return Err(err(format!(
                    "members[{i}].signing_keys: list at least one public key file for {}",
                    m.id
                )));
            }
            for (j, k) in m.signing_keys.iter().enumerate() {
                require_file(&format!("members[{i}].signing_keys[{j}]"), k)?;
            }
        }
        self.validate_roster()?;
        let mut peers = std::collections::HashSet::new();
        for (i, p) in self.peers.iter().enumerate() {
            validate_name(&p.id).map_err(|e| err(format!("peers[{i}].id: {e}")))?;
            if p.id == self.node.id {
                return Err(err(format!("peers[{i}].id: {} is this node itself", p.id)));
            }
            if !peers.insert(p.id.as_str()) {
                return Err(err(format!("peers[{i}].id: {} is listed twice", p.id)));
            }
            // With a roster, peers are checked against it at runtime: a peer
            // the roster does not list waits until a roster lists it.
            if self.roster.is_none() && !seen.contains(p.id.as_str()) {
                return Err(err(format!(
                    "peers[{i}]: {} is not in [[members]]; add it with its signing public key",
                    p.id
                )));
            }
        }
        Ok(())
    }

    /// `[roster]`: not together with `[[members]]`; a file or pinned stewards
    /// with a threshold they can meet.
    fn validate_roster(&self) -> Result<(), ConfigError> {
        let Some(r) = &self.roster else {
            return Ok(());
        };
        if !self.members.is_empty() {
            return Err(err(
                "[roster] and [[members]] are both set: a node follows either the signed federation roster or a static member list, not both; remove the [[members]] entries (the roster lists the members and their keys) or remove [roster]",
            ));
        }
        if r.file.is_none() && r.stewards.is_empty() {
            return Err(err(
                "roster: set roster.file (a signed roster to start from), or roster.stewards and roster.threshold (the stewards whose quorum the first roster must carry), or both",
            ));
        }
        if let Some(f) = &r.file {
            require_file("roster.file", f)?;
        }
        match (r.stewards.len(), r.threshold) {
            (0, Some(_)) => {
                return Err(err(
                    "roster.threshold: set only together with roster.stewards",
                ));
            }
            (n, None) if n > 0 => {
                return Err(err(
                    "roster.threshold: required with roster.stewards (how many of them must sign the first roster)",
                ));
            }
            (n, Some(k)) if k == 0 || k as usize > n => {
                return Err(err(format!(
                    "roster.threshold: {k}; must be between 1 and the number of roster.stewards ({n})"
                )));
            }
            _ => {}
        }
        let mut ids = std::collections::HashSet::new();
        for (i, st) in r.stewards.iter().enumerate() {
            validate_name(&st.id).map_err(|e| err(format!("roster.stewards[{i}].id: {e}")))?;
            if !ids.insert(st.id.as_str()) {
                return Err(err(format!(
                    "roster.stewards[{i}].id: {} is listed twice",
                    st.id
                )));
            }
            require_file(&format!("roster.stewards[{i}].key"), &st.key)?;
        }
        Ok(())
    }

    /// Retention and message age: each within 1..=36500 days, and no message
    /// age above any retention (a purged message must not be accepted again).
    fn validate_retention(&self) -> Result<(), ConfigError> {
        let st = &self.storage;
        let days = |key: &str, v: u32| {
            if (1..=MAX_DAYS).contains(&v) {
                Ok(())
            } else {
                Err(err(format!(
                    "{key}: {v} days; must be between 1 and {MAX_DAYS}"
                )))
            }
        };
        days("storage.retention_days", st.retention_days)?;
        let by_tlp_key = |t: Tlp| {
            let word = crate::domain::policy::tlp_label(t)
                .trim_start_matches("TLP:")
                .to_ascii_lowercase();
            if word.contains('+') {
                format!("storage.retention_days_by_tlp.\"{word}\"")
            } else {
                format!("storage.retention_days_by_tlp.{word}")
            }
        };
        for (t, d) in &st.retention_days_by_tlp {
            days(&by_tlp_key(*t), *d)?;
        }
        let age = self.limits.max_message_age_days;
        days("limits.max_message_age_days", age)?;
        let shortest = std::iter::once(("storage.retention_days".to_string(), st.retention_days))
            .chain(
                st.retention_days_by_tlp
                    .iter()
                    .map(|(t, d)| (by_tlp_key(*t), *d)),
            )
            .min_by_key(|(_, d)| *d);
        let r = &self.reconcile;
        if r.window_days > age {
            return Err(err(format!(
                "reconcile.window_days ({}) must not exceed limits.max_message_age_days ({age}): peers would refuse messages older than that; lower reconcile.window_days",
                r.window_days
            )));
        }
        if r.interval_secs < 5 || r.interval_secs > 86_400 {
            return Err(err(format!(
                "reconcile.interval_secs: {} s; must be between 5 and 86400",
                r.interval_secs
            )));
        }
        if r.timeout_secs < 5 || r.timeout_secs > 3_600 {
            return Err(err(format!(
                "reconcile.timeout_secs: {} s; must be between 5 and 3600",
                r.timeout_secs
            )));
        }
        if r.max_rounds_per_minute < 10 {
            return Err(err(format!(
                "reconcile.max_rounds_per_minute: {}; must be at least 10 (one reconciliation takes a handful of rounds)",
                r.max_rounds_per_minute
            )));
        }
        if let Some((key, d)) = shortest
            && age > d
        {
            return Err(err(format!(
                "limits.max_message_age_days ({age}) must not exceed {key} ({d}): a message purged after {d} days would be accepted again when a peer re-sends it; lower limits.max_message_age_days or raise {key}"
            )));
        }
        Ok(())
    }

    /// The listen address, already validated.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr("node.listen", &self.node.listen)
    }
}

/// Rewrites the `config` crate's "<reason> for key `peers[0]max_tlp`" as
/// "peers[0].max_tlp: <reason>", so that every error starts with the key.
fn key_first(msg: &str) -> String {
    let Some((reason, rest)) = msg.rsplit_once(" for key `") else {
        return msg.to_string();
    };
    let Some(key) = rest.strip_suffix('`') else {
        return msg.to_string();
    };
    let mut fixed = String::with_capacity(key.len() + 4);
    let mut prev = ' ';
    for c in key.chars() {
        if prev == ']' && c != '[' && c != '.' {
            fixed.push('.');
        }
        fixed.push(c);
        prev = c;
    }
    format!("{fixed}: {reason}")
}

/// Parses `host:port` (an IP literal or a resolvable name) into one socket address.
pub fn parse_addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bad = || {
        err(format!(
            "{key}: invalid address {s:?}: expected host:port, e.g. 127.0.0.1:7701"
        ))
    };
    if !s.contains(':') {
        return Err(bad());
    }
    s.to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)
}

/// The environment variable of the database password.
pub const PASSWORD_VAR: &str = "CERTFED__STORAGE__PASSWORD";

/// The process environment less the database password (read verbatim instead).
fn env_without_secrets() -> config::Map<String, String> {
    std::env::vars()
        .filter(|(k, _)| k != PASSWORD_VAR)
        .collect()
}

/// A file holding a secret must not be readable by others.
fn check_secret_file(key: &str, p: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p)
        .map_err(|e| err(format!("{key}: cannot read {}: {e}", p.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(err(format!(
            "{key}: {} is readable by group or others (mode {:o}); chmod 600 it",
            p.display(),
            mode & 0o777
        )));
    }
    Ok(())
}

fn require_file(key: &str, p: &Path) -> Result<(), ConfigError> {
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(err(format!("{key}: {} is not a regular file", p.display()))),
        Err(e) => Err(err(format!("{key}: cannot read {}: {e}", p.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_start_with_the_key() {
        assert_eq!(
            key_first("unknown TLP \"purple\" for key `peers[0]max_tlp`"),
            "peers[0].max_tlp: unknown TLP \"purple\""
        );
        assert_eq!(key_first("missing field `id`"), "missing field `id`");
        assert_eq!(
            key_first("bad for key `members[1].signing_keys[0]`"),
            "members[1].signing_keys[0]: bad"
        );
    }

    #[test]
    fn taxii_listen_is_checked_before_any_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.toml");
        let base = "[node]\nid = \"n\"\nlisten = \"127.0.0.1:7700\"\nsigning_key = \"k\"\n[tls]\nca = \"c\"\ncert = \"c\"\nkey = \"k\"\n[storage]\ndir = \"d\"\n[metrics]\nlisten = \"127.0.0.1:9700\"\n";
        for (taxii, want) in [
            (
                "listen = \"127.0.0.1:7700\"",
                "taxii.listen: must differ from node.listen",
            ),
            (
                "listen = \"127.0.0.1:9700\"",
                "taxii.listen: must differ from metrics.listen",
            ),
            ("listen = \"nowhere\"", "taxii.listen: invalid address"),
            (
                "listen = \"127.0.0.1:7710\"\nmax_tlp = \"purple\"",
                "unknown TLP",
            ),
            ("listen = \"127.0.0.1:7710\"\nport = 1", "port"),
            ("listen = \"127.0.0.1:7710\"", "node.signing_key"),
        ] {
            std::fs::write(&path, format!("{base}[taxii]\n{taxii}\n")).unwrap();
            let e = Config::load(&path).unwrap_err().to_string();
            assert!(e.contains(want), "{taxii}: {e}");
        }
    }

    /// The error of loading a minimal configuration (whose key files do not
    /// exist) with `section` appended.
    fn load_error(section: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.toml");
        let base = "[node]\nid = \"n\"\nlisten = \"127.0.0.1:7700\"\nsigning_key = \"k\"\n[tls]\nca = \"c\"\ncert = \"c\"\nkey = \"k\"\n[storage]\ndir = \"d\"\n";
        std::fs::write(&path, format!("{base}{section}")).unwrap();
        Config::load(&path).unwrap_err().to_string()
    }

    #[test]
    fn the_lazy_hold_outlasts_the_graft_timeout() {
        for (gossip, want) in [
            (
                "graft_timeout_ms = 2000\nlazy_hold_ms = 1000",
                "gossip.lazy_hold_ms (1000 ms) must be longer than gossip.graft_timeout_ms (2000 ms)",
            ),
            ("lazy_hold_ms = 50", "gossip.lazy_hold_ms: 50 ms"),
            // Valid: the next complaint is the missing key file.
            ("graft_timeout_ms = 10000", "node.signing_key"),
            ("lazy_hold_ms = 800", "node.signing_key"),
        ] {
            let e = load_error(&format!("[gossip]\n{gossip}\n"));
            assert!(e.contains(want), "{gossip}: {e}");
        }
        let mut g = GossipSection::default();
        assert!(g.plumtree, "on by default");
        assert_eq!(g.lazy_hold_ms(), 5_000);
        g.graft_timeout_ms = 10_000;
        assert_eq!(
            g.lazy_hold_ms(),
            20_000,
            "an older config with a long graft timeout still starts"
        );
        g.lazy_hold_ms = Some(30_000);
        assert_eq!(g.lazy_hold_ms(), 30_000);
    }

    #[test]
    fn the_items_a_reconciliation_round_reads_are_bounded() {
        for (items, want) in [
            (
                "99",
                "reconcile.max_round_items: 99; must be between 100 and 10000000",
            ),
            ("20000000", "reconcile.max_round_items: 20000000"),
            // Valid: the next complaint is the missing key file.
            ("100", "node.signing_key"),
            ("1000000", "node.signing_key"),
        ] {
            let e = load_error(&format!("[reconcile]\nmax_round_items = {items}\n"));
            assert!(e.contains(want), "{items}: {e}");
        }
        assert_eq!(ReconcileSection::default().max_round_items, 300_000);
    }

    #[test]
    fn endpoints_are_checked_for_shape_not_resolved() {
        let h = HostPort::parse("cert.example.invalid:7700").unwrap();
        assert_eq!((h.host.as_str(), h.port), ("cert.example.invalid", 7700));
        assert_eq!(h.to_string(), "cert.example.invalid:7700");
        let v6 = HostPort::parse("[::1]:7701").unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.to_string().as_str()),
            ("::1", "[::1]:7701")
        );
        for bad in ["nohost", ":7700", "a:0", "a:70000", "a b:1", "a:x"] {
            assert!(HostPort::parse(bad).is_err(), "{bad}");
        }
    }

    /// Loads a minimal configuration with `storage` and `limits` lines added.
    fn load_with(storage: &str, limits: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        for f in ["sign.key", "ca.crt", "node.crt", "node.key"] {
            std::fs::write(dir.path().join(f), "placeholder").unwrap();
        }
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            format!(
                "[node]\nid = \"node-a\"\nlisten = \"127.0.0.1:7701\"\nsigning_key = \"sign.key\"\n\
                 [tls]\nca = \"ca.crt\"\ncert = \"node.crt\"\nkey = \"node.key\"\n\
                 [storage]\ndir = \"data\"\n{storage}\n[limits]\n{limits}\n"
            ),
        )
        .unwrap();
        Config::load(&path)
    }

    #[test]
    fn roster_and_members_together_are_refused_naming_the_conflict() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "sign.key", "ca.crt", "node.crt", "node.key", "r.roster", "m.pub", "s1.pub",
        ] {
            std::fs::write(dir.path().join(f), "placeholder").unwrap();
        }
        let base = "[node]\nid = \"node-a\"\nlisten = \"127.0.0.1:7701\"\nsigning_key = \"sign.key\"\n\
                    [tls]\nca = \"ca.crt\"\ncert = \"node.crt\"\nkey = \"node.key\"\n\
                    [storage]\ndir = \"data\"\n";
        let load = |extra: &str| {
            let path = dir.path().join("node.toml");
            std::fs::write(&path, format!("{base}{extra}")).unwrap();
            Config::load(&path).map(|_| ()).map_err(|e| e.to_string())
        };
        let e = load(
            "[roster]\nfile = \"r.roster\"\n[[members]]\nid = \"node-b\"\nsigning_keys = [\"m.pub\"]\n",
        )
        .unwrap_err();
        assert!(e.contains("[roster] and [[members]] are both set"), "{e}");
        load("[roster]\nfile = \"r.roster\"\n[[peers]]\nid = \"node-b\"\nendpoint = \"127.0.0.1:1\"\n")
            .expect("peers are checked against the roster at runtime");
        let e = load("[roster]\n").unwrap_err();
        assert!(e.contains("set roster.file"), "{e}");
        let e = load("[roster]\nthreshold = 1\n[[roster.stewards]]\nid = \"s1\"\nkey = \"s1.pub\"\n[[roster.stewards]]\nid = \"s1\"\nkey = \"s1.pub\"\n").unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
        let e =
            load("[roster]\nthreshold = 2\n[[roster.stewards]]\nid = \"s1\"\nkey = \"s1.pub\"\n")
                .unwrap_err();
        assert!(e.contains("roster.threshold: 2"), "{e}");
        let e = load("[roster]\n[[roster.stewards]]\nid = \"s1\"\nkey = \"s1.pub\"\n").unwrap_err();
        assert!(e.contains("roster.threshold: required"), "{e}");
        load("[roster]\nthreshold = 1\n[[roster.stewards]]\nid = \"s1\"\nkey = \"s1.pub\"\n")
            .unwrap();
        let e = load("[roster]\nfile = \"missing.roster\"\n").unwrap_err();
        assert!(e.contains("roster.file"), "{e}");
    }

    #[test]
    fn retention_and_age_defaults() {
        let c = load_with("", "").unwrap();
        assert_eq!(c.storage.retention_days, 365);
        assert_eq!(c.limits.max_message_age_days, 90);
        assert_eq!(c.storage.integrity_check, IntegrityCheckMode::Quick);
        assert_eq!(
            c.storage.retention_for(Tlp::Red),
            Duration::from_secs(365 * 86_400)
        );
        assert_eq!(c.limits.max_message_age(), Duration::from_secs(90 * 86_400));
    }

    #[test]
    fn per_tlp_retention_overrides_the_default() {
        let c = load_with(
            "retention_days = 400\nintegrity_check = \"full\"\n[storage.retention_days_by_tlp]\nred = 120\n\"amber+strict\" = 180",
            "",
        )
        .unwrap();
        assert_eq!(c.storage.retention_days_for(Tlp::Red), 120);
        assert_eq!(c.storage.retention_days_for(Tlp::AmberStrict), 180);
        assert_eq!(c.storage.retention_days_for(Tlp::Green), 400);
        assert_eq!(c.storage.integrity_check, IntegrityCheckMode::Full);
    }

    #[test]
    fn a_message_age_above_retention_names_both_keys() {
        let e = load_with("retention_days = 30", "max_message_age_days = 31")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "limits.max_message_age_days (31) must not exceed storage.retention_days (30)"
            ),
            "{e}"
        );
        let e = load_with("[storage.retention_days_by_tlp]\nred = 60", "")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("limits.max_message_age_days (90) must not exceed storage.retention_days_by_tlp.red (60)"),
            "{e}"
        );
        let e = load_with("[storage.retention_days_by_tlp]\npurple = 60", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown TLP \"purple\""), "{e}");
        let e = load_with("retention_days = 0", "").unwrap_err().to_string();
        assert!(e.contains("storage.retention_days: 0 days"), "{e}");
        let e = load_with("", "max_message_age_days = 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.max_message_age_days: 0 days"), "{e}");
        let e = load_with("integrity_check = \"sometimes\"", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("integrity_check"), "{e}");
    }
}
