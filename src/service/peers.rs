//! The node's direct peers as the services see them: the configured peer set
//! (replaced whole on reload), each link's status as ListPeers shows it, the
//! signal that wakes a link when its outbox grows, and the signal that cuts a
//! link's reconnect backoff short when the peer shows it is reachable (it
//! connected to us). The link tasks themselves live in `links.rs`; this is
//! only their shared state.
//!
//! A link's `last_error` keeps the last meaningful reason (a refusal, a
//! revoked or wrong certificate, a keepalive or acknowledgement timeout): a
//! later generic failure ("transport error", "Cancelled", a reset) is shown
//! after it instead of replacing it, until the peer accepts something again.
use crate::config::PeerSection;
use crate::domain::admission::Peer;
use crate::domain::identity::Identity;
use crate::domain::policy::PeerPolicy;
use crate::proto::v1::LinkState;
use crate::transport::client::ServerCheck;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, watch};

/// Link state as shown by ListPeers.
#[derive(Debug, Clone)]
pub struct LinkStatus {
    pub state: LinkState,
    pub last_contact_ms: Option<i64>,
    /// What ListPeers shows: the connection error, or else the last delivery
    /// problem (a message the peer cannot take); empty if none.
    pub last_error: String,
    /// The last meaningful connection error of the current outage.
    meaningful: Option<String>,
    /// The last delivery problem on this link (kept while the link is up).
    delivery_note: Option<String>,
    /// The largest envelope the peer said it accepts (Hello), if it said.
    pub peer_max_message_bytes: Option<u64>,
    /// The roster version the peer said it holds (Hello, either direction).
    pub peer_roster_version: Option<u64>,
    /// Most ranges the peer accepts in a Reconcile frame (Hello), if it said.
    pub peer_reconcile_ranges: Option<u32>,
}

impl Default for LinkStatus {
    fn default() -> Self {
        LinkStatus {
            state: LinkState::Connecting,
            last_contact_ms: None,
            last_error: String::new(),
            meaningful: None,
            delivery_note: None,
            peer_max_message_bytes: None,
            peer_roster_version: None,
            peer_reconcile_ranges: None,
        }
    }
}

/// Why a link failed, and whether the text says more than "it broke".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkError {
    pub text: String,
    /// False for failures that carry no cause of their own (a reset, a
    /// cancelled call, a bare "transport error").
    pub meaningful: bool,
}

impl LinkError {
    pub fn meaningful(text: impl Into<String>) -> LinkError {
        LinkError {
            text: text.into(),
            meaningful: true,
        }
    }

    pub fn generic(text: impl Into<String>) -> LinkError {
        LinkError {
            text: text.into(),
            meaningful: false,
        }
    }
}

impl LinkStatus {
    /// The link failed: DOWN, with the error; a generic error is shown after
    /// the last meaningful one of this outage rather than instead of it.
    pub fn failed(&mut self, e: LinkError) {
        self.state = LinkState::Down;
        if e.meaningful {
            self.last_error = e.text.clone();
            self.meaningful = Some(e.text);
        } else if let Some(m) = &self.meaningful {
            self.last_error = format!("{m} (latest attempt: {})", e.text);
        } else {
            self.last_error = e.text;
        }
    }

    /// The link is up and the peer answers: the outage is over.
    pub fn up(&mut self, now_ms: i64) {
        self.state = LinkState::Up;
        self.last_contact_ms = Some(now_ms);
        self.meaningful = None;
        self.last_error = self.delivery_note.clone().unwrap_or_default();
    }

    /// Notes a delivery problem on a working link (shown while it is up).
    pub fn note_delivery(&mut self, note: String) {
        if self.state == LinkState::Up {
            self.last_error = note.clone();
        }
        self.delivery_note = Some(note);
    }
}

/// The peer set, link statuses and wake-up signals.
pub struct Peers {
    config: Mutex<Arc<Vec<PeerSection>>>,
    status: Mutex<HashMap<String, LinkStatus>>,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    /// Per peer: signalled when the peer connects to us (it is reachable).
    reachable: Mutex<HashMap<String, Arc<Notify>>>,
    /// Bumped on every reload, so open streams re-check their peer.
    generation: watch::Sender<u64>,
}

impl Peers {
    pub fn new(peers: &[PeerSection]) -> Peers {
        let p = Peers {
            config: Mutex::new(Arc::new(Vec::new())),
            status: Mutex::default(),
            wakers: Mutex::default(),
            reachable: Mutex::default(),
            generation: watch::channel(0).0,
        };
        p.replace(peers.to_vec());
        p
    }

    /// The configured peers.
    pub fn list(&self) -> Arc<Vec<PeerSection>> {
        self.config.lock().expect("peers lock").clone()
    }

    /// Member ids of the configured peers.
    pub fn ids(&self) -> Vec<String> {
        self.list().iter().map(|p| p.id.clone()).collect()
    }

    /// The peers and their link policy, as admission sees them.
    pub fn policies(&self) -> Vec<Peer> {
        self.list()
            .iter()
            .map(|p| Peer {
                id: p.id.clone(),
                policy: PeerPolicy {
                    max_tlp: p.max_tlp,
                    relay: p.relay,
                },
            })
            .collect()
    }

    /// Whether `id` is a configured peer.
    pub fn is_peer(&self, id: &str) -> bool {
        self.list().iter().any(|p| p.id == id)
    }

    /// Replaces the peer set: new peers get a status and a waker, removed
    /// peers lose theirs, and open streams are told to re-check.
    pub fn replace(&self, new: Vec<PeerSection>) {
        {
            let mut status = self.status.lock().expect("peers lock");
            status.retain(|id, _| new.iter().any(|p| &p.id == id));
            let mut wakers = self.wakers.lock().expect("peers lock");
            wakers.retain(|id, _| new.iter().any(|p| &p.id == id));
            let mut reachable = self.reachable.lock().expect("peers lock");
            reachable.retain(|id, _| new.iter().any(|p| &p.id == id));
            for p in &new {
                status.entry(p.id.clone()).or_default();
                wakers
                    .entry(p.id.clone())
                    .or_insert_with(|| Arc::new(Notify::new()));
                reachable
                    .entry(p.id.clone())
                    .or_insert_with(|| Arc::new(Notify::new()));
            }
        }
        *self.config.lock().expect("peers lock") = Arc::new(new);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Changes on every reload of the peer set or the CRLs.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Tells open streams to re-check their peer (after a CRL reload).
    pub fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// The signal that wakes the link to `peer`.
    pub fn waker(&self, peer: &str) -> Option<Arc<Notify>> {
        self.wakers.lock().expect("peers lock").get(peer).cloned()
    }

    /// Tells the link to `peer` that its outbox has new entries.
    pub fn wake(&self, peer: &str) {
        if let Some(n) = self.waker(peer) {
            n.notify_one();
        }
    }

    /// The signal that tells the link to `peer` that the peer is reachable.
    pub fn reachable_signal(&self, peer: &str) -> Option<Arc<Notify>> {
        self.reachable
            .lock()
            .expect("peers lock")
            .get(peer)
            .cloned()
    }

    /// `peer` connected to this node: a link to it waiting out a reconnect
    /// backoff tries again now (a link that is up is not disturbed).
    pub fn reachable(&self, peer: &str) {
        if let Some(n) = self.reachable_signal(peer) {
            n.notify_waiters();
        }
    }

    pub fn status(&self, peer: &str) -> LinkStatus {
        self.status
            .lock()
            .expect("peers lock")
            .get(peer)
            .cloned()
            .unwrap_or_default()
    }

    /// The peer holds at least roster `version` (it took, or sent us, a
    /// roster message of that version).
    pub fn note_roster(&self, peer: &str, version: u64) {
        self.update(peer, |s| {
            s.peer_roster_version = Some(s.peer_roster_version.unwrap_or(0).max(version));
        });
    }

    pub fn update(&self, peer: &str, f: impl FnOnce(&mut LinkStatus)) {
        if let Some(s) = self.status.lock().expect("peers lock").get_mut(peer) {
            f(s);
        }
    }
}

/// [`expect_node`], and with a roster, only a certificate the roster vouches
/// for as `expected`'s (`domain::roster::vouches`: issued by a CA it lists
/// for that member, or pinned). Refused before any RPC is sent.
pub fn expect_member(
    expected: &str,
    roster: Option<Arc<crate::domain::roster::Anchor>>,
) -> ServerCheck {
    let node = expect_node(expected);
    let id = expected.to_string();
    Arc::new(move |chain| {
        node(chain)?;
        match roster.as_deref().and_then(|a| a.current()) {
            Some(cur) => {
                let rest: Vec<&[u8]> = chain.iter().skip(1).map(|c| c.as_ref()).collect();
                crate::domain::roster::vouches_chain(&cur.doc.roster, &id, chain[0].as_ref(), &rest)
            }
            None => Ok(()),
        }
    })
}

/// A server check that accepts only the certificate of node `expected`.
pub fn expect_node(expected: &str) -> ServerCheck {
    let expected = Identity::Node(expected.to_string());
    Arc::new(move |chain| {
        match chain
            .first()
            .ok_or_else(|| "no certificate presented".to_string())
            .and_then(|c| Identity::from_certificate(c.as_ref()).map_err(|e| e.to_string()))
        {
            Ok(seen) if seen == expected => Ok(()),
            Ok(seen) => Err(format!(
                "presented the certificate of {seen}, expected {expected}"
            )),
            Err(e) => Err(e),
        }
    })
}
