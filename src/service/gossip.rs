//! Plumtree frames from peers and the machine's timers (the state is
//! `service::tree`; see its invariants). A peer's frame is bounded (ids per
//! frame and per second), ids already held are dropped with one index
//! lookup each, and a graft is answered only with what
//! `domain::admission::entitled` lets go to that peer, queued in the outbox
//! (`service::resend::queue_and_wake`, which also releases a copy parked
//! for that peer). A HAVE completes the copies parked for the peer that
//! sent it; announced ids already held are answered with HAVE. A PRUNE
//! names only federation members (a key pinned here) or this node (others
//! are ignored and counted), so a peer cannot take the machine's trees for
//! made-up origins.
//! Hop counts with announcements (one per id, bounded, or ignored) and
//! GRAFT-ORIGIN (valid node ids, counted against the peer's rate) only move
//! links between eager and lazy: they never make this node send anything a
//! graft or policy would not. Requests for a shorter copy (`want_shorter`,
//! `domain::hop_limit`; a graft for a message stopped here at its hop limit
//! counts as one) are bounded like grafts, only for messages held here
//! (broadcasts, and messages to named recipients: a relay keeps their
//! ciphertext until it is `storage.relay_keep_secs` old, so that it can
//! answer), answered within the same policy, and sent on to this node's
//! peers at most once per message and bound, each peer asked charged to the
//! requester's rate (so one id of its budget brings this node at most one
//! copy, whatever this node's degree). What is held stopped at its
//! limit is announced again to a peer whose link comes up
//! ([`announce_stopped`]: what the trees remember and the relayed ciphertext
//! still kept, which a restart does not forget; a bounded number, one store
//! read per batch), and
//! reconciliation's finds of the same kind are asked for like grafts
//! ([`lacked_at_limit`]).
use crate::domain::hop_limit::{MAX_HOP_LIMITED, Want};
use crate::domain::plumtree::{Action, Event};
use crate::proto::v1::DeliveryState;
use crate::proto::v1::Gossip as Frame;
use crate::proto::v1::{EnvelopeHeader, MessageKind};
use crate::service::ingest::drop_parked;
use crate::service::node::Node;
use crate::service::now_ms;
use crate::service::resend::{
    Why, at_limit_for, entitled_peers, held_at_limit_for, held_over, queue_and_wake,
};
use crate::service::tree::{MAX_IDS, dispatch, refuse, to_ids};
use crate::storage::StoredMessage;
use prost::Message;

/// Most links an announced message can have crossed (a chain is refused
/// beyond its signed hop limit, which no origin sets above 64).
const MAX_ANNOUNCED_HOPS: u32 = 255;

/// A Gossip frame from `peer` (a configured peer, checked by the caller).
pub async fn received(node: &Node, peer: &str, f: Frame) {
    let g = &node.gossip;
    if !g.enabled {
        refuse(&node.metrics, "disabled", 1);
        return;
    }
    if f.ihave.len() > MAX_IDS
        || f.graft.len() > MAX_IDS
        || f.have.len() > MAX_IDS
        || f.prune_origins.len() > MAX_IDS
        || f.graft_origins.len() > MAX_IDS
    {
        refuse(&node.metrics, "malformed", 1);
        tracing::debug!(%peer, "gossip frame with too many ids ignored");
        return;
    }
    let Some(mut ihave) = to_ids(&node.metrics, &f.ihave) else {
        return;
    };
    let Some(mut graft) = to_ids(&node.metrics, &f.graft) else {
        return;
    };
    let Some(mut have) = to_ids(&node.metrics, &f.have) else {
        return;
    };
    // Hop counts: one per announced id, each at most MAX_ANNOUNCED_HOPS,
    // or none at all (an older peer); otherwise they are ignored.
    let mut ihave_hops = f.ihave_hops;
    if !ihave_hops.is_empty()
        && (ihave_hops.len() != f.ihave.len() || ihave_hops.iter().any(|&h| h > MAX_ANNOUNCED_HOPS))
    {
        refuse(&node.metrics, "malformed", 1);
        ihave_hops.clear();
    }
    // Requests for a shorter copy: one bound per id, each at most
    // MAX_ANNOUNCED_HOPS; otherwise the frame's requests are ignored.
    let mut want = Vec::new();
    if !f.want_shorter.is_empty() || !f.want_shorter_hops.is_empty() {
        if f.want_shorter.len() > MAX_IDS
            || f.want_shorter_hops.len() != f.want_shorter.len()
            || f.want_shorter_hops.iter().any(|&h| h > MAX_ANNOUNCED_HOPS)
        {
            refuse(&node.metrics, "malformed", 1);
        } else if let Some(ids) = to_ids(&node.metrics, &f.want_shorter) {
            want = ids.into_iter().zip(f.want_shorter_hops).collect();
        }
    }
    if f.graft_origins
        .iter()
        .any(|o| crate::domain::identity::validate_name(o).is_err())
    {
        refuse(&node.metrics, "malformed", 1);
        tracing::debug!(%peer, "gossip graft naming an invalid origin ignored");
        return;
    }
    // Grafts first: a peer's own missing messages matter more than hints.
    let k = g.take(peer, graft.len());
    if k < graft.len() {
        refuse(&node.metrics, "rate", (graft.len() - k) as u64);
        graft.truncate(k);
    }
    let k = g.take(peer, ihave.len());
    if k < ihave.len() {
        refuse(&node.metrics, "rate", (ihave.len() - k) as u64);
        ihave.truncate(k);
        ihave_hops.truncate(k);
    }
    let mut graft_origins = f.graft_origins;
    let k = g.take(peer, graft_origins.len());
    if k < graft_origins.len() {
        refuse(&node.metrics, "rate", (graft_origins.len() - k) as u64);
        graft_origins.truncate(k);
    }
    if !graft_origins.is_empty() {
        g.lock().tree.handle(
            now_ms(),
            Event::GraftOrigins {
                from: peer.into(),
                origins: graft_origins,
            },
        );
    }
    let k = g.take(peer, want.len());
    if k < want.len() {
        refuse(&node.metrics, "rate", (want.len() - k) as u64);
        want.truncate(k);
    }
    let k = g.take(peer, have.len());
    if k < have.len() {
        refuse(&node.metrics, "rate", (have.len() - k) as u64);
        have.truncate(k);
    }
    let now = now_ms();
    if !have.is_empty() {
        // Only copies this node parked for this peer: a HAVE for anything
        // else changes nothing.
        let cursors = g.have(peer, &have);
        if !cursors.is_empty() {
            let reason = "the peer already held it (answered an announcement)";
            let state = DeliveryState::Delivered;
            let done = drop_parked(node, peer, cursors, state, reason, now).await;
            node.metrics.gossip_lazy_confirmed.inc_by(done);
        }
    }
    if f.prune {
        // Origins are node ids; a frame naming anything else is ignored
        // whole (one tree per origin is bounded by the machine).
        if f.prune_origins
            .iter()
            .any(|o| crate::domain::identity::validate_name(o).is_err())
        {
            refuse(&node.metrics, "malformed", 1);
            tracing::debug!(%peer, "gossip prune naming an invalid origin ignored");
            return;
        }
        // Only federation members (a key pinned here) and this node have
        // trees: a made-up origin would hold one of the machine's
        // `max_origins` for good (and a prune naming none walks them all).
        // A prune naming only such origins is not a prune of every origin.
        let named = f.prune_origins.len();
        let origins: Vec<String> = {
            let keys = node.keys();
            f.prune_origins
                .into_iter()
                .filter(|o| *o == node.id || keys.is_member(o))
                .collect()
        };
        if origins.len() < named {
            refuse(
                &node.metrics,
                "unknown_origin",
                (named - origins.len()) as u64,
            );
        }
        if named == 0 || !origins.is_empty() {
            // A prune from the peer this node took as a shortcut is answered
            // with GRAFT-ORIGIN (see `domain::plumtree`).
            let mut inner = g.lock();
            let out = inner.tree.handle(
                now,
                Event::Prune {
                    from: peer.into(),
                    origins,
                },
            );
            dispatch(&node.metrics, &mut inner, out);
        }
    }
    if !ihave.is_empty() {
        // One index lookup each: what is held here is not missing.
        let held = match node.store.held(ihave.clone()).await {
            Ok(h) => h,
            Err(e) => {
                node.metrics.storage_error(&e);
                return;
            }
        };
        // Hop counts follow their ids (one each, or none when the peer sent
        // none or they were ignored above).
        let mut known = Vec::new();
        let mut known_hops = Vec::new();
        let mut missing = Vec::new();
        let mut missing_hops = Vec::new();
        for (k, i) in ihave.into_iter().enumerate() {
            let (ids, hops) = if held.contains(&i) {
                (&mut known, &mut known_hops)
            } else {
                (&mut missing, &mut missing_hops)
            };
            ids.push(i);
            hops.extend(ihave_hops.get(k));
        }
        let ihave = missing;
        if !known.is_empty() {
            // Held here at the hop limit, announced over a shorter way: asked
            // for (its copy goes on from here; `domain::hop_limit`).
            // Over a way not short enough by itself, from a peer that may not
            // have been asked (it lacked the message then): it is asked now.
            let (further, ask): (Vec<String>, Vec<(String, usize)>) = {
                let limited = node.hop_limited.lock().expect("hop_limited lock");
                let (mut further, mut ask) = (Vec::new(), Vec::new());
                for (i, h) in known.iter().zip(&known_hops) {
                    if limited.shorter(i, *h as usize + 1) {
                        further.push(i.clone());
                    } else if let Some(k) = limited.asked(i) {
                        ask.push((i.clone(), k));
                    }
                }
                (further, ask)
            };
            for (id, k) in ask {
                g.want_shorter(&node.metrics, &[peer.to_string()], &id, k);
            }
            let mut inner = g.lock();
            if !further.is_empty() {
                node.metrics
                    .gossip_shorter_asked
                    .inc_by(further.len() as u64);
                let graft = Action::Graft {
                    to: peer.into(),
                    ids: further,
                };
                dispatch(&node.metrics, &mut inner, vec![graft]);
            }
            let out = inner.tree.held_announced(now, peer, known, &known_hops);
            dispatch(&node.metrics, &mut inner, out);
            drop(inner);
            g.timer.notify_one();
        }
        if !ihave.is_empty() {
            let mut inner = g.lock();
            let out = inner.tree.handle(
                now,
                Event::IHave {
                    from: peer.into(),
                    ids: ihave,
                    hops: missing_hops,
                },
            );
            // (a shortcut, for an id stored since the lookup above)
            dispatch(&node.metrics, &mut inner, out);
            drop(inner);
            g.timer.notify_one();
        }
    }
    if !want.is_empty() {
        wanted(node, peer, want, now).await;
    }
    // A graft for a message stopped here at its hop limit (announced, no
    // copy): the peer lacks it, so a copy over one link fewer is wanted
    // here (`domain::hop_limit`); nothing could be sent it now.
    let mut stopped: Vec<(String, usize)> = {
        let limited = node.hop_limited.lock().expect("hop_limited lock");
        graft
            .iter()
            .filter_map(|i| Some((i.clone(), limited.stopped_len(i)?)))
            .collect()
    };
    // Not remembered (forgotten in a restart, or the oldest dropped): the
    // store says whether it is held here at its limit.
    let rest: Vec<String> = graft
        .iter()
        .filter(|i| !stopped.iter().any(|(s, _)| s == *i))
        .cloned()
        .collect();
    stopped.extend(stopped_in_store(node, peer, rest).await);
    if !stopped.is_empty() {
        graft.retain(|i| !stopped.iter().any(|(s, _)| s == i));
        lacked_at_limit(node, peer, stopped, now).await;
    }
    if !graft.is_empty() {
        {
            let mut inner = g.lock();
            // The machine makes the link eager for the origins of the ids
            // it remembers; what is sent is decided below.
            let _ = inner.tree.handle(
                now,
                Event::Graft {
                    from: peer.into(),
                    ids: graft.clone(),
                },
            );
        }
        let queued = send_asked(node, peer, &graft, Why::Grafted, now).await;
        node.metrics.gossip_graft_queued.inc_by(queued);
    }
}

/// `peer` asks for copies of held messages that crossed at most the links
/// given (see `domain::hop_limit`): those held over few enough go to it
/// (within the forwarding policy, like a graft's answer); for the others it
/// is remembered and this node's other peers are asked for one link fewer.
async fn wanted(node: &Node, peer: &str, want: Vec<(String, u32)>, now: i64) {
    // (One bound per id: a frame repeating an id keeps its last.)
    let want: std::collections::HashMap<String, u32> = want.into_iter().collect();
    let held = match node
        .store
        .get_messages(want.keys().cloned().collect())
        .await
    {
        Ok(h) => h,
        Err(e) => {
            node.metrics.storage_error(&e);
            return;
        }
    };
    let mut send = Vec::new();
    let mut ask = Vec::new();
    for m in held {
        let Ok(h) = EnvelopeHeader::decode(m.header.as_slice()) else {
            continue;
        };
        let Some(k) = want.get(&m.message_id).map(|k| *k as usize) else {
            continue;
        };
        // Broadcasts and messages to named recipients (a receipt goes back
        // its own way, never past a hop limit).
        if h.kind == MessageKind::Receipt as i32 {
            refuse(&node.metrics, "not_entitled", 1);
            continue;
        }
        let len = held_over(node, &m);
        let w = node.hop_limited.lock().expect("hop_limited lock").want(
            &m.message_id,
            len,
            k,
            peer,
            now,
        );
        match w {
            Want::Send => send.push(m.message_id),
            Want::Ask(k) => ask.push((m, k)),
            Want::Nothing => {}
        }
    }
    if !send.is_empty() {
        let queued = send_asked(node, peer, &send, Why::Shorter, now).await;
        node.metrics.gossip_shorter_sent.inc_by(queued);
    }
    for (m, k) in ask {
        ask_shorter(node, &m, k, peer);
    }
}

/// Queues for `peer` the held messages `ids` it asked for (a graft, or a
/// request for a shorter copy) that policy lets go to it
/// ([`queue_and_wake`]); the rest is counted refused. Returns how many were
/// queued.
async fn send_asked(node: &Node, peer: &str, ids: &[String], why: Why, now: i64) -> u64 {
    let (queued, refused) = queue_and_wake(node, peer, ids, why, now).await;
    if refused > 0 {
        refuse(&node.metrics, "not_entitled", refused);
    }
    queued
}

/// Of the held messages `ids` that `peer` grafted, those this node holds at
/// their hop limit (`resend::at_limit_for`), each with the links it crossed
/// to reach this node.
async fn stopped_in_store(node: &Node, peer: &str, ids: Vec<String>) -> Vec<(String, usize)> {
    if ids.is_empty() {
        return Vec::new();
    }
    let held = match node.store.get_messages(ids).await {
        Ok(h) => h,
        Err(e) => {
            node.metrics.storage_error(&e);
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for m in held {
        let Ok(h) = EnvelopeHeader::decode(m.header.as_slice()) else {
            continue;
        };
        if let Some(len) = at_limit_for(node, &m, &h, peer) {
            out.push((m.message_id, len));
        }
    }
    out
}

/// `peer` lacks held messages stopped here at their hop limit (`at_limit`:
/// each with the links it crossed to reach this node): its graft for them,
/// or reconciliation's find (`resend::Entitled::at_limit`). Each is
/// remembered as stopped (again, if forgotten: a shorter copy goes on to
/// every peer) and a copy over one link fewer is wanted here, so this node's
/// other peers are asked for one (at most once per
/// `domain::hop_limit::ASK_AGAIN_MS` per message). Without Plumtree nothing
/// is asked. Returns how many messages were asked for.
pub(crate) async fn lacked_at_limit(
    node: &Node,
    peer: &str,
    at_limit: Vec<(String, usize)>,
    now: i64,
) -> u64 {
    if at_limit.is_empty() || !node.gossip.enabled {
        return 0;
    }
    let asked = at_limit.len() as u64;
    let want: Vec<(String, u32)> = {
        let mut limited = node.hop_limited.lock().expect("hop_limited lock");
        at_limit
            .into_iter()
            .filter_map(|(id, len)| {
                limited.stopped(&id, len);
                Some((id, u32::try_from(len.checked_sub(1)?).ok()?))
            })
            .collect()
    };
    wanted(node, peer, want, now).await;
    asked
}

/// Most messages stopped here announced to a peer whose link comes up.
const ANNOUNCE_BATCH: usize = 512;

/// The link to `peer` came up: the messages stopped here at their hop limit
/// that only the limit keeps from it (`resend::held_at_limit_for`) are
/// announced to it with their hop counts, as when they came. A peer that was
/// down then never heard of them; if it lacks one it grafts, which asks this
/// node's peers for a shorter way (`domain::hop_limit`). Reconciliation finds
/// the broadcasts too, but not end-to-end encrypted messages, which relays do
/// not reconcile: for those this is the way back. Two sources: what the
/// trees still remember as stopped here (`domain::plumtree::Config::remember_ms`,
/// 10 minutes), and the ciphertext this node still keeps as a relay
/// (`storage.relay_keep_secs`) — what a restart, or the trees' memory,
/// forgot, read at most once a minute per peer (`Tree::store_announce_due`);
/// such a message is remembered again, as stopped here and by the trees
/// (outside them, as a message to named recipients), so that it can be
/// announced. One store read per [`ANNOUNCE_BATCH`] ids, at most
/// `MAX_HOP_LIMITED` from each source.
pub async fn announce_stopped(node: std::sync::Arc<Node>, peer: String) {
    let stopped = node
        .hop_limited
        .lock()
        .expect("hop_limited lock")
        .stopped_ids();
    let stopped: Vec<String> = node
        .gossip
        .remembered(stopped)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let kept = if node.gossip.store_announce_due(&peer, now_ms()) {
        match node.store.relayed_kept(MAX_HOP_LIMITED).await {
            Ok(k) => k,
            Err(e) => {
                node.metrics.storage_error(&e);
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let seen: std::collections::HashSet<&String> = stopped.iter().collect();
    let kept: Vec<String> = kept.into_iter().filter(|id| !seen.contains(id)).collect();
    let from_memory = stopped.chunks(ANNOUNCE_BATCH).map(|c| (c, false));
    let from_store = kept.chunks(ANNOUNCE_BATCH).map(|c| (c, true));
    for (chunk, forgotten) in from_memory.chain(from_store) {
        let found = match held_at_limit_for(&node, &peer, chunk.to_vec()).await {
            Ok(f) => f,
            Err(e) => {
                node.metrics.storage_error(&e);
                return;
            }
        };
        if forgotten {
            // Remembered again: as stopped here (a graft, the next link-up),
            // and by the trees (outside them, as a message to named
            // recipients), which announce only what they remember.
            let mut limited = node.hop_limited.lock().expect("hop_limited lock");
            for (id, len) in &found {
                limited.stopped(id, *len);
            }
            drop(limited);
            for (id, len) in &found {
                let hops = u32::try_from(*len).unwrap_or(u32::MAX);
                node.gossip.untracked(&node.metrics, None, id, hops);
            }
        }
        for (id, _) in found {
            node.gossip
                .announce_only(&node.metrics, &id, std::slice::from_ref(&peer));
        }
    }
}

/// Asks this node's peers (those the forwarding policy lets see the message,
/// whatever the hop limit, and those on its path; not `requester`, the peer
/// whose request this passes on) for a copy of `m` (a broadcast, or a
/// message to named recipients) that crossed at most `k` links to reach
/// them. Each peer asked is charged to the requester's gossip rate, as an id
/// it sent: every peer asked may answer with a full copy, so without the
/// charge one request would cost the requester one id and bring this node as
/// many copies as it has peers. Returns how many were asked.
fn ask_shorter(node: &Node, m: &StoredMessage, k: usize, requester: &str) -> usize {
    let Ok(h) = EnvelopeHeader::decode(m.header.as_slice()) else {
        return 0;
    };
    if h.kind == MessageKind::Receipt as i32 {
        return 0;
    }
    let path: Vec<String> = m.path.iter().map(|p| p.node.clone()).collect();
    let mut peers: Vec<String> = entitled_peers(node, &h, &path, u32::MAX)
        .into_iter()
        // A bound of 0 only the origin meets.
        .filter(|p| p.id != requester && (k > 0 || p.id == h.origin))
        .map(|p| p.id)
        .collect();
    let room = node.gossip.take(requester, peers.len());
    if room < peers.len() {
        refuse(&node.metrics, "rate", (peers.len() - room) as u64);
        peers.truncate(room);
    }
    if peers.is_empty() {
        return 0;
    }
    node.gossip
        .want_shorter(&node.metrics, &peers, &m.message_id, k)
}

/// Fires the machine's timers (announcement batches, grafts) until shutdown.
pub async fn run(node: std::sync::Arc<Node>) {
    let g = &node.gossip;
    if !g.enabled {
        return;
    }
    loop {
        let deadline = g.lock().tree.next_deadline();
        let wait = deadline
            .map(|d| std::time::Duration::from_millis(u64::try_from(d - now_ms()).unwrap_or(0)));
        tokio::select! {
            _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {
                let mut inner = g.lock();
                let out = inner.tree.handle(now_ms(), Event::Tick);
                dispatch(&node.metrics, &mut inner, out);
            }
            _ = g.timer.notified() => {}
            _ = node.shutdown.cancelled() => return,
        }
    }
}
