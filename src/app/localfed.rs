//! A local federation on loopback: a fresh PKI in a temporary folder (real
//! certificates from [`crate::pki`]), configuration files on disk, and nodes
//! started in this process with real TLS and a real store: SQLite files, or
//! (with [`Backend::Postgres`]) one fresh database per node on a real
//! PostgreSQL server, dropped with the federation. Used by `certfed bench`
//! and `certfed demo` (and, as a complete local federation, by the
//! integration tests, which pick the backend with [`Backend::from_env`]).
//!
//! A node may get a second member ([`Fed::add_standby`]): the same identity
//! and database on another port, and its peers list both addresses.
use crate::app::{RunningNode, prepare, start};
use crate::config::Config;
use crate::pki::{Ca, Issued, Validity, new_signing_key, write_private, write_public};
use crate::proto::v1::federation_client::FederationClient;
use crate::proto::v1::operator_client::OperatorClient;
use crate::transport::{client, tls};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::Channel;

/// A federation PKI in a temporary folder.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        crate::transport::tls::install_default_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::create("certfed test CA", Validity::days(30)).expect("CA");
        write_public(&dir.path().join("ca.crt"), ca.cert_pem(), false).unwrap();
        write_private(&dir.path().join("ca.key"), &ca.key_pem(), false).unwrap();
        Pki { dir, ca }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca_path(&self) -> PathBuf {
        self.path("ca.crt")
    }

    fn write_pair(&self, name: &str, issued: &Issued) -> (PathBuf, PathBuf) {
        let c = self.path(&format!("{name}.crt"));
        let k = self.path(&format!("{name}.key"));
        write_public(&c, &issued.cert_pem, true).unwrap();
        write_private(&k, &issued.key_pem, true).unwrap();
        (c, k)
    }

    /// Node TLS certificate + key and Ed25519 signing key pair for `id`.
    pub fn node(&self, id: &str) -> Issued {
        let issued = self
            .ca
            .issue_node(
                id,
                &["localhost".to_string()],
                &["127.0.0.1".parse().unwrap()],
                Validity::days(30),
            )
            .expect("node cert");
        self.write_pair(id, &issued);
        if !self.path(&format!("{id}.sign.key")).exists() {
            let sk = new_signing_key().unwrap();
            write_private(
                &self.path(&format!("{id}.sign.key")),
                &sk.private_pem,
                false,
            )
            .unwrap();
            write_public(&self.path(&format!("{id}.sign.pub")), &sk.public_pem, false).unwrap();
        }
        issued
    }

    /// Operator certificate + key, written as `<name>.crt/.key`.
    pub fn operator(&self, name: &str) -> Issued {
        let issued = self
            .ca
            .issue_operator(name, Validity::days(30))
            .expect("operator cert");
        self.write_pair(name, &issued);
        issued
    }

    /// Client TLS config for the certificate written as `<name>.crt/.key`.
    pub fn client_tls(&self, name: &str) -> std::sync::Arc<rustls::ClientConfig> {
        let m = tls::load_material(&tls::TlsFiles {
            ca: self.ca_path(),
            cert: self.path(&format!("{name}.crt")),
            key: self.path(&format!("{name}.key")),
            crls: vec![],
        })
        .expect("client material");
        tls::client_config(&m).expect("client config")
    }
}

/// A free port on 127.0.0.1 (bound then released), never one this process
/// handed out before: the kernel may give a released port again at once,
/// and two nodes of one federation given the same port would find each
/// other's certificate behind a peer's endpoint.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN.lock().expect("ports lock").insert(port) {
            return port;
        }
    }
}

/// One node's place in a test federation.
#[derive(Clone)]
pub struct NodeSpec {
    pub id: String,
    pub port: u16,
    pub peers: Vec<(String, u16)>,
    pub extra: String,
    pub handshake_timeout_secs: u64,
    /// Further addresses of peers (the second member of a pair), by peer id.
    pub peer_alternates: Vec<(String, u16)>,
    /// The port of this node's second member, if it has one.
    pub standby_port: Option<u16>,
}

/// Where the nodes of a local federation keep their stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file per node in the federation's temporary folder.
    Sqlite,
    /// A fresh database per node on the PostgreSQL server `admin_url` names
    /// (its role may create databases).
    Postgres { admin_url: String },
}

/// Selects the PostgreSQL backend for test federations.
pub const BACKEND_VAR: &str = "CERTFED_TEST_BACKEND";

impl Backend {
    /// The backend the environment asks for: `CERTFED_TEST_BACKEND=postgres`
    /// with the server in `CERTFED_TEST_PG_URL`; SQLite otherwise.
    ///
    /// # Panics
    /// When PostgreSQL is asked for and no server is named (a test setup error).
    pub fn from_env() -> Backend {
        match std::env::var(BACKEND_VAR).as_deref() {
            Ok("postgres") => {
                let url = std::env::var(crate::storage::postgres::admin::TEST_URL_VAR)
                    .unwrap_or_default();
                assert!(
                    !url.is_empty(),
                    "{BACKEND_VAR}=postgres needs {}",
                    crate::storage::postgres::admin::TEST_URL_VAR
                );
                Backend::Postgres { admin_url: url }
            }
            _ => Backend::Sqlite,
        }
    }
}

/// Runs `f` on a runtime of its own in another thread (callable from sync
/// code and from inside an async runtime alike).
fn block_on_side<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    })
    .join()
    .expect("side thread")
}

/// Writes `<id>.toml` for a node in `pki`, with every node of `members` pinned.
pub fn write_config(pki: &Pki, spec: &NodeSpec, members: &[&str], data: &Path) -> PathBuf {
    let storage = format!("dir = \"{}\"", data.display());
    write_config_with(pki, spec, members, &storage, &format!("{}.toml", spec.id))
}

/// Writes the configuration file `file` for a node in `pki`; `storage` is
/// the body of its `[storage]` section.
pub fn write_config_with(
    pki: &Pki,
    spec: &NodeSpec,
    members: &[&str],
    storage: &str,
    file: &str,
) -> PathBuf {
    let id = &spec.id;
    let mut s = format!(
        r#"[node]
id = "{id}"
listen = "127.0.0.1:{port}"
signing_key = "{id}.sign.key"

[tls]
ca = "ca.crt"
cert = "{id}.crt"
key = "{id}.key"
handshake_timeout_secs = {hs}
{crls}

[storage]
{storage}

[log]
level = "warn"

[limits]
shutdown_grace_secs = 3
{extra}
"#,
        port = spec.port,
        hs = spec.handshake_timeout_secs,
        crls = if pki.path("ca.crl").exists() {
            "crls = [\"ca.crl\"]"
        } else {
            ""
        },
        extra = spec.extra,
    );
    for (p, port) in &spec.peers {
        let alternates: Vec<String> = spec
            .peer_alternates
            .iter()
            .filter(|(q, _)| q == p)
            .map(|(_, a)| format!("\"127.0.0.1:{a}\""))
            .collect();
        if alternates.is_empty() {
            s.push_str(&format!(
                "\n[[peers]]\nid = \"{p}\"\nendpoint = \"127.0.0.1:{port}\"\n"
            ));
        } else {
            s.push_str(&format!(
                "\n[[peers]]\nid = \"{p}\"\nendpoints = [\"127.0.0.1:{port}\", {}]\n",
                alternates.join(", ")
            ));
        }
    }
    for m in members {
        s.push_str(&format!(
            "\n[[members]]\nid = \"{m}\"\nsigning_keys = [\"{m}.sign.pub\"]\n"
        ));
    }
    let path = pki.path(file);
    std::fs::write(&path, s).unwrap();
    path
}

/// A line or mesh of in-process nodes. Setup helpers panic on I/O failure in
/// the temporary folder, which only happens when the machine is broken.
pub struct Fed {
    pub pki: Pki,
    pub specs: Vec<NodeSpec>,
    pub data: tempfile::TempDir,
    /// Where the nodes keep their stores.
    pub backend: Backend,
    /// The database of each node (PostgreSQL), by node id, made on first use.
    dbs: std::sync::Mutex<Vec<(String, String)>>,
}

impl Drop for Fed {
    fn drop(&mut self) {
        let Backend::Postgres { admin_url } = &self.backend else {
            return;
        };
        let dbs = std::mem::take(&mut *self.dbs.lock().expect("dbs lock"));
        if dbs.is_empty() {
            return;
        }
        let admin = admin_url.clone();
        block_on_side(async move {
            for (_, url) in dbs {
                let _ = crate::storage::postgres::admin::drop_database(&admin, &url).await;
            }
        });
    }
}

impl Fed {
    /// Nodes `ids` with links `edges` (pairs of indexes).
    pub fn new(ids: &[&str], edges: &[(usize, usize)]) -> Fed {
        let pki = Pki::new();
        pki.operator("operator");
        let mut specs: Vec<NodeSpec> = ids
            .iter()
            .map(|id| {
                pki.node(id);
                NodeSpec {
                    id: id.to_string(),
                    port: free_port(),
                    peers: vec![],
                    extra: String::new(),
                    handshake_timeout_secs: 2,
                    peer_alternates: vec![],
                    standby_port: None,
                }
            })
            .collect();
        for &(a, b) in edges {
            let (pa, pb) = (specs[a].port, specs[b].port);
            let (ia, ib) = (specs[a].id.clone(), specs[b].id.clone());
            specs[a].peers.push((ib, pb));
            specs[b].peers.push((ia, pa));
        }
        Fed {
            pki,
            specs,
            data: tempfile::tempdir().unwrap(),
            backend: Backend::from_env(),
            dbs: Default::default(),
        }
    }

    /// This federation on SQLite whatever the environment says (tests that
    /// look at SQLite files).
    pub fn sqlite(mut self) -> Fed {
        self.backend = Backend::Sqlite;
        self
    }

    /// This federation on PostgreSQL (the server `admin_url` names).
    pub fn postgres(mut self, admin_url: &str) -> Fed {
        self.backend = Backend::Postgres {
            admin_url: admin_url.to_string(),
        };
        self
    }

    /// The database URL of node `i` (PostgreSQL), created on first use.
    ///
    /// # Panics
    /// On SQLite, or when the server refuses to create the database.
    pub fn db_url(&self, i: usize) -> String {
        let Backend::Postgres { admin_url } = &self.backend else {
            panic!("db_url: this federation runs on SQLite");
        };
        let id = self.specs[i].id.clone();
        let mut dbs = self.dbs.lock().expect("dbs lock");
        if let Some((_, u)) = dbs.iter().find(|(n, _)| *n == id) {
            return u.clone();
        }
        let (admin, prefix) = (admin_url.clone(), id.clone());
        let url = block_on_side(async move {
            crate::storage::postgres::admin::create_database(&admin, &prefix).await
        })
        .expect("create a test database");
        dbs.push((id, url.clone()));
        url
    }

    /// The `[storage]` section of node `i`.
    pub fn storage_toml(&self, i: usize) -> String {
        match &self.backend {
            Backend::Sqlite => format!("dir = \"{}\"", self.data_dir(i).display()),
            // The folder holds the node's attachment files (issue 16).
            Backend::Postgres { .. } => format!(
                "backend = \"postgres\"\nurl = \"{}\"\nlease_secs = 3\ndir = \"{}\"",
                self.db_url(i),
                self.data_dir(i).display()
            ),
        }
    }

    /// Gives node `i` a second member (same identity and store, another
    /// port) and lists both addresses in its peers' configurations. Returns
    /// the second member's port.
    pub fn add_standby(&mut self, i: usize) -> u16 {
        let port = free_port();
        self.specs[i].standby_port = Some(port);
        let id = self.specs[i].id.clone();
        for s in &mut self.specs {
            if s.peers.iter().any(|(p, _)| *p == id) {
                s.peer_alternates.push((id.clone(), port));
            }
        }
        port
    }

    /// The configuration of node `i`'s second member ([`Fed::add_standby`]).
    ///
    /// # Panics
    /// When node `i` has no second member.
    pub fn standby_config_path(&self, i: usize) -> PathBuf {
        let mut spec = self.specs[i].clone();
        spec.port = spec.standby_port.expect("add_standby first");
        let ids: Vec<&str> = self.specs.iter().map(|s| s.id.as_str()).collect();
        let storage = self.storage_toml(i);
        write_config_with(
            &self.pki,
            &spec,
            &ids,
            &storage,
            &format!("{}.standby.toml", spec.id),
        )
    }

    /// The line a - b - c.
    pub fn line() -> Fed {
        Fed::new(&["node-a", "node-b", "node-c"], &[(0, 1), (1, 2)])
    }

    pub fn config_path(&self, i: usize) -> PathBuf {
        let ids: Vec<&str> = self.specs.iter().map(|s| s.id.as_str()).collect();
        let storage = self.storage_toml(i);
        write_config_with(
            &self.pki,
            &self.specs[i],
            &ids,
            &storage,
            &format!("{}.toml", self.specs[i].id),
        )
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.data.path().join(&self.specs[i].id)
    }

    /// Starts node `i` in this process.
    pub async fn try_start(&self, i: usize) -> anyhow::Result<RunningNode> {
        let cfg = Config::load(&self.config_path(i))?;
        start(prepare(cfg)?).await
    }

    /// Starts node `i` in this process; panics on failure (tests).
    pub async fn start(&self, i: usize) -> RunningNode {
        self.try_start(i).await.expect("node starts")
    }

    pub fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.specs[i].port)
    }

    pub async fn operator(&self, i: usize) -> OperatorClient<Channel> {
        operator_client(&self.pki, &self.addr(i), "operator").await
    }
}

/// An Operator client with the certificate `<name>.crt`.
pub async fn operator_client(pki: &Pki, addr: &str, name: &str) -> OperatorClient<Channel> {
    let ch = client::channel(addr, pki.client_tls(name), None, Duration::from_secs(5)).unwrap();
    OperatorClient::new(ch)
}

/// A Federation client with the certificate `<name>.crt`, expecting the server `expect`.
pub async fn federation_client(
    pki: &Pki,
    addr: &str,
    name: &str,
    expect: Option<&str>,
) -> FederationClient<Channel> {
    let ch = client::channel(
        addr,
        pki.client_tls(name),
        expect.map(crate::service::peers::expect_node),
        Duration::from_secs(5),
    )
    .unwrap();
    FederationClient::new(ch)
}
