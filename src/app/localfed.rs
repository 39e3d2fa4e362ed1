//! A local federation on loopback: a fresh PKI in a temporary folder (real
//! certificates from [`crate::pki`]), configuration files on disk, and nodes
//! started in this process with real TLS and real SQLite. Used by `certfed
//! bench` and `certfed demo` (and, as a complete local federation, by the
//! integration tests).
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

/// A free port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One node's place in a test federation.
#[derive(Clone)]
pub struct NodeSpec {
    pub id: String,
    pub port: u16,
    pub peers: Vec<(String, u16)>,
    pub extra: String,
    pub handshake_timeout_secs: u64,
}

/// Writes `<id>.toml` for a node in `pki`, with every node of `members` pinned.
pub fn write_config(pki: &Pki, spec: &NodeSpec, members: &[&str], data: &Path) -> PathBuf {
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
dir = "{data}"

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
        data = data.display(),
        extra = spec.extra,
    );
    for (p, port) in &spec.peers {
        s.push_str(&format!(
            "\n[[peers]]\nid = \"{p}\"\nendpoint = \"127.0.0.1:{port}\"\n"
        ));
    }
    for m in members {
        s.push_str(&format!(
            "\n[[members]]\nid = \"{m}\"\nsigning_keys = [\"{m}.sign.pub\"]\n"
        ));
    }
    let path = pki.path(&format!("{id}.toml"));
    std::fs::write(&path, s).unwrap();
    path
}

/// A line or mesh of in-process nodes. Setup helpers panic on I/O failure in
/// the temporary folder, which only happens when the machine is broken.
pub struct Fed {
    pub pki: Pki,
    pub specs: Vec<NodeSpec>,
    pub data: tempfile::TempDir,
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
        }
    }

    /// The line a - b - c.
    pub fn line() -> Fed {
        Fed::new(&["node-a", "node-b", "node-c"], &[(0, 1), (1, 2)])
    }

    pub fn config_path(&self, i: usize) -> PathBuf {
        let ids: Vec<&str> = self.specs.iter().map(|s| s.id.as_str()).collect();
        let data = self.data.path().join(&self.specs[i].id);
        write_config(&self.pki, &self.specs[i], &ids, &data)
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
