//! Reaching past the hop limit a tree path used up. An origin signs how many
//! links its message may cross (`hop_limit`); a relay that got its first copy
//! over that many forwards it to nobody. Epidemic broadcast trees
//! (`domain::plumtree`) form from first arrivals, which under load take
//! detours, so a tree path can be longer than the graph's shortest: a member
//! within the limit of the origin can then sit behind relays that all got
//! the message at the limit, with no copy coming its way (the 37-node
//! benchmark lost deliveries so). This is the pure bookkeeping of the repair,
//! one node's view; `service::ingest` and `service::gossip` drive it.
//!
//! Rules:
//! - **At the limit** ([`HopLimited::stopped`]): a node that stores a message
//!   over `len` links, at its limit, announces it (`I have`, with `len`) to
//!   the peers policy would otherwise send it to, and parks no copy for them.
//!   A peer that holds it answers HAVE; one that lacks it asks for it
//!   (GRAFT) once its graft timer runs out — only then does this node know
//!   that somebody needs a shorter way, and it treats that graft as a
//!   request for a copy over `len - 1` links (below). So requests cost
//!   nothing while every member gets the message anyway.
//! - **Asked** ([`HopLimited::want`], WANT-SHORTER on the wire): a node
//!   holding the message over at most `k` links answers with its copy (sent
//!   like a graft's answer, within the forwarding policy); one holding it
//!   over more remembers who asked and asks its own peers for at most
//!   `k - 1` — once per message and bound (a stricter request that found
//!   nothing says nothing of a looser one) until [`ASK_AGAIN_MS`] have passed
//!   since it last asked for this message (then a request is asked on again:
//!   an answer lost with a link, or a node asked before it restarted and
//!   forgot, is asked again the next time the peer lacking the message
//!   grafts), nothing below 0, and a bound of 0 only of the origin (only it
//!   holds a message over 0 links). So a request travels at most `len - 1`
//!   links and every node sends it on at most `len` times per message every
//!   [`ASK_AGAIN_MS`].
//! - **A shorter copy** ([`HopLimited::shorter`], [`HopLimited::improved`]):
//!   a held message remembered here that comes again over fewer links than
//!   it is held with is taken (its shorter chain replaces the stored one)
//!   and sent on: to every peer policy allows when it had been stopped at
//!   the limit here (then it is no longer stopped), otherwise only to the
//!   peers that asked for it (the others got it from this node already).
//!   It stays remembered with the
//!   new length: a copy shorter still (the answer to this node's own
//!   request, after another way's copy that was shorter but not short
//!   enough) goes on too. So each node sends a message on at most `len`
//!   more times.
//! - Also: an announcement (`I have`, with its hop count) of a message
//!   remembered here that shows a shorter way asks that peer for it (GRAFT);
//!   one that does not, from a peer that may not have been asked (it lacked
//!   the message then), asks it with the strictest bound asked so far.
//!
//! Invariants: a message is remembered at most once, with the longest way
//! it is held over (never a longer one than the store's); at most
//! [`MAX_HOP_LIMITED`] messages are remembered (the oldest forgotten first:
//! a later copy of one forgotten is a plain duplicate again) and at most
//! [`MAX_ASKERS`] askers per message. Nothing here sends, stores or reads a
//! clock (the time is passed in).
use std::collections::{HashMap, VecDeque};

/// Most messages remembered.
pub const MAX_HOP_LIMITED: usize = 16_384;
/// Most peers remembered as askers of one message.
pub const MAX_ASKERS: usize = 16;
/// A request for a shorter copy asked on this long ago and not answered is
/// asked on again at the next request for it (four graft timeouts by
/// default: the peer lacking the message grafts again every timeout, up to
/// `max_graft_tries` times, so a request goes on again a few times).
pub const ASK_AGAIN_MS: i64 = 2_000;

#[derive(Debug, Clone)]
struct Limited {
    /// Links the held copy crossed to get here.
    len: usize,
    /// It went to no peer here (it came at the limit).
    stopped: bool,
    /// Peers that asked for a shorter copy than the one held here.
    askers: Vec<String>,
    /// The bounds this node asked its peers for (bit k: a copy over at
    /// most k links; bounds beyond 63 are never asked: a holder within a
    /// hop limit, at most 64, answers them itself).
    asked: u64,
    /// When this node last asked its peers for `id` (ms since the epoch).
    asked_ms: i64,
}

/// What a node asked for a shorter copy does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// Send the asker the copy held here (it crossed few enough links).
    Send,
    /// Ask the other peers for a copy over at most this many links.
    Ask(usize),
    /// Nothing (asked already for as few, or only the origin could help and
    /// this node is not it, or nothing is held to compare).
    Nothing,
}

/// Where a shorter copy goes on to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Onward {
    /// Every peer the forwarding policy allows (it was stopped here).
    Every,
    /// Only these peers (they asked for it).
    Only(Vec<String>),
}

/// Whether a message held here over `len` links (0: originated here), under
/// its signed `hop_limit`, is stopped at the limit for a peer that grafts it
/// (its store says so when [`HopLimited`] no longer remembers): not a receipt
/// (receipts go back their own way), not a peer on its path (it may go back
/// there), and held over at least the limit. The graft is then a request for
/// a copy over one link fewer, which is returned.
pub fn stopped_for_graft(
    len: usize,
    hop_limit: u32,
    receipt: bool,
    carried: bool,
) -> Option<usize> {
    let at_limit = len > 0 && len as u64 >= u64::from(hop_limit);
    (at_limit && !receipt && !carried).then(|| len - 1)
}

/// Messages held here that a shorter copy should take further (see the
/// module docs).
#[derive(Debug, Default)]
pub struct HopLimited {
    held: HashMap<String, Limited>,
    order: VecDeque<String>,
}

impl HopLimited {
    fn entry(&mut self, id: &str, len: usize) -> &mut Limited {
        if !self.held.contains_key(id) {
            self.order.push_back(id.to_string());
            while self.order.len() > MAX_HOP_LIMITED {
                if let Some(old) = self.order.pop_front() {
                    self.held.remove(&old);
                }
            }
        }
        let e = self.held.entry(id.to_string()).or_insert(Limited {
            len,
            stopped: false,
            askers: Vec::new(),
            asked: 0,
            asked_ms: 0,
        });
        e.len = len;
        e
    }

    /// Message `id` is held over `len` links, at its limit here (it went to
    /// no peer, it is only announced).
    pub fn stopped(&mut self, id: &str, len: usize) {
        self.entry(id, len).stopped = true;
    }

    /// The messages stopped here at their limit, newest first, with the
    /// links each is held over (at most [`MAX_HOP_LIMITED`]).
    pub fn stopped_ids(&self) -> Vec<(String, usize)> {
        self.order
            .iter()
            .rev()
            .filter_map(|id| {
                let e = self.held.get(id).filter(|e| e.stopped)?;
                Some((id.clone(), e.len))
            })
            .collect()
    }

    /// The links `id` is held over, if it was stopped here at its limit (a
    /// peer's graft for it is a request for a shorter copy: see
    /// [`HopLimited::want`] with one link fewer).
    pub fn stopped_len(&self, id: &str) -> Option<usize> {
        self.held.get(id).filter(|e| e.stopped).map(|e| e.len)
    }

    /// Peer `from` asks, at `now_ms`, for a copy of `id` that crossed at
    /// most `k` links; this node holds it over `len` (0: its origin).
    pub fn want(&mut self, id: &str, len: usize, k: usize, from: &str, now_ms: i64) -> Want {
        if len <= k {
            return Want::Send;
        }
        // A remembered (shorter) way stays: the store holds that one.
        let len = self.held.get(id).map_or(len, |e| e.len.min(len));
        let e = self.entry(id, len);
        if !e.askers.iter().any(|a| a == from) && e.askers.len() < MAX_ASKERS {
            e.askers.push(from.to_string());
        }
        let Some(next) = k.checked_sub(1).filter(|n| *n < 64) else {
            return Want::Nothing;
        };
        // Unanswered for long: asked on again (the answer may have been lost
        // with a link, or a node asked may have restarted and forgotten).
        if now_ms.saturating_sub(e.asked_ms) >= ASK_AGAIN_MS {
            e.asked = 0;
        }
        // Once per bound: a stricter request that went unanswered says
        // nothing of a looser one.
        if e.asked & (1 << next) != 0 {
            return Want::Nothing;
        }
        e.asked |= 1 << next;
        e.asked_ms = now_ms;
        Want::Ask(next)
    }

    /// The strictest bound this node asked its peers for `id` (a peer that
    /// announces it later, over a way not short enough by itself, may still
    /// find a shorter one: it is asked too).
    pub fn asked(&self, id: &str) -> Option<usize> {
        let e = self.held.get(id)?;
        (e.asked != 0).then(|| e.asked.trailing_zeros() as usize)
    }

    /// Whether a copy of `id` that crossed `len` links reaches further than
    /// the one held (only for messages remembered here).
    pub fn shorter(&self, id: &str, len: usize) -> bool {
        self.held.get(id).is_some_and(|e| len < e.len)
    }

    /// A copy of `id` over `len` links, shorter than the one held, was
    /// taken: where it goes on to (`None`: not remembered, or not shorter).
    /// It stays remembered with `len`.
    pub fn improved(&mut self, id: &str, len: usize) -> Option<Onward> {
        let e = self.held.get_mut(id).filter(|e| len < e.len)?;
        e.len = len;
        // Once sent on everywhere it is no longer stopped here: a graft for
        // it is answered as usual, a copy shorter still goes to askers.
        let every = std::mem::take(&mut e.stopped);
        Some(if every {
            Onward::Every
        } else {
            Onward::Only(e.askers.clone())
        })
    }

    /// Messages remembered (for gauges and tests).
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A time for the requests of the tests that do not wait.
    const T: i64 = 1_000_000;

    #[test]
    fn a_message_stopped_at_its_limit_asks_on_a_graft_and_a_shorter_copy_goes_everywhere() {
        let mut h = HopLimited::default();
        assert!(!h.shorter("m", 1), "not remembered: a plain duplicate");
        assert_eq!(h.stopped_len("m"), None);
        h.stopped("m", 8);
        assert_eq!(h.stopped_len("m"), Some(8));
        // A peer lacks it (its graft): a copy over 7 links is wanted here,
        // so the peers are asked for one over 6.
        assert_eq!(
            h.want("m", 8, 7, "x", T),
            Want::Ask(6),
            "asks for a way two shorter"
        );
        assert_eq!(h.want("m", 8, 7, "y", T), Want::Nothing, "asked already");
        assert!(h.shorter("m", 7));
        assert!(!h.shorter("m", 8), "as long: nothing gained");
        assert!(!h.shorter("m", 9));
        assert_eq!(h.improved("m", 8), None, "not shorter");
        assert_eq!(h.improved("m", 7), Some(Onward::Every));
        assert!(!h.shorter("m", 7), "remembered with the new length");
        assert_eq!(h.stopped_len("m"), None, "sent on: no longer stopped");
        assert_eq!(
            h.improved("m", 5),
            Some(Onward::Only(vec!["x".into(), "y".into()])),
            "shorter still: to the askers"
        );
        assert_eq!(h.improved("x", 1), None, "not remembered");
        h.stopped("n", 1);
        assert_eq!(
            h.want("n", 1, 0, "x", T),
            Want::Nothing,
            "only the origin is closer"
        );
        assert!(h.shorter("n", 0));
    }

    #[test]
    fn the_messages_stopped_here_are_listed_newest_first_and_only_while_stopped() {
        let mut h = HopLimited::default();
        h.stopped("a", 3);
        assert_eq!(
            h.want("b", 5, 3, "x", T),
            Want::Ask(2),
            "asked, not stopped"
        );
        h.stopped("c", 4);
        assert_eq!(
            h.stopped_ids(),
            [("c".to_string(), 4), ("a".to_string(), 3)]
        );
        assert_eq!(h.improved("c", 2), Some(Onward::Every));
        assert_eq!(
            h.stopped_ids(),
            [("a".to_string(), 3)],
            "sent on: no longer stopped"
        );
        for i in 0..MAX_HOP_LIMITED {
            h.stopped(&format!("m{i}"), 2);
        }
        let all = h.stopped_ids();
        assert_eq!(all.len(), MAX_HOP_LIMITED, "bounded: the oldest forgotten");
        assert_eq!(all[0].0, format!("m{}", MAX_HOP_LIMITED - 1));
        assert!(!all.iter().any(|(id, _)| id == "a"));
    }

    #[test]
    fn an_asked_node_answers_asks_on_once_per_bound_and_sends_only_to_askers() {
        let mut h = HopLimited::default();
        assert_eq!(
            h.want("m", 3, 3, "a", T),
            Want::Send,
            "held over few enough"
        );
        assert!(h.is_empty(), "an answer remembers nothing");
        assert_eq!(h.want("m", 5, 3, "a", T), Want::Ask(2));
        assert_eq!(h.want("m", 5, 3, "b", T), Want::Nothing, "asked already");
        assert_eq!(
            h.want("m", 5, 2, "c", T),
            Want::Ask(1),
            "a lower bound asks again"
        );
        assert_eq!(h.want("m", 5, 2, "c", T), Want::Nothing);
        assert_eq!(h.asked("m"), Some(1), "the strictest bound asked");
        assert_eq!(
            h.want("m", 5, 4, "c", T),
            Want::Ask(3),
            "so does a higher one"
        );
        assert_eq!(h.asked("m"), Some(1));
        assert_eq!(h.asked("x"), None);
        assert_eq!(h.want("m", 5, 3, "c", T), Want::Nothing);
        assert_eq!(
            h.want("q", 200, 100, "a", T),
            Want::Nothing,
            "no bound beyond 63"
        );
        assert!(h.shorter("m", 4) && !h.shorter("m", 5));
        let askers = Some(Onward::Only(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(
            h.improved("m", 4),
            askers,
            "not short enough for a, but shorter"
        );
        assert_eq!(h.improved("m", 2), askers, "the answer: shorter still");
        assert_eq!(h.want("m", 2, 3, "d", T), Want::Send);
        // Nothing below the origin: a bound of 0 is asked of nobody.
        assert_eq!(h.want("o", 2, 0, "a", T), Want::Nothing);
        assert_eq!(h.improved("o", 1), Some(Onward::Only(vec!["a".into()])));
        // Stopped at the limit here and asked: every peer.
        h.stopped("p", 8);
        assert_eq!(h.want("p", 8, 5, "a", T), Want::Ask(4));
        assert_eq!(h.stopped_len("m"), None, "not stopped here, only asked");
        assert_eq!(h.improved("p", 5), Some(Onward::Every));
    }

    #[test]
    fn a_request_unanswered_for_long_is_asked_on_again_once_per_period() {
        let mut h = HopLimited::default();
        h.stopped("m", 4);
        assert_eq!(h.want("m", 4, 3, "x", T), Want::Ask(2));
        assert_eq!(h.want("m", 4, 3, "x", T + 1), Want::Nothing);
        assert_eq!(
            h.want("m", 4, 3, "x", T + ASK_AGAIN_MS - 1),
            Want::Nothing,
            "the peer grafts again within the period: not asked on"
        );
        assert_eq!(
            h.want("m", 4, 3, "x", T + ASK_AGAIN_MS),
            Want::Ask(2),
            "unanswered for the period: asked on again"
        );
        assert_eq!(h.want("m", 4, 3, "y", T + ASK_AGAIN_MS + 1), Want::Nothing);
        assert_eq!(h.asked("m"), Some(2));
        // A stricter bound asked later keeps the period from its ask; past
        // it every bound is asked again, the strictest remembered.
        assert_eq!(
            h.want("m", 4, 2, "x", T + 2 * ASK_AGAIN_MS - 1),
            Want::Ask(1)
        );
        assert_eq!(h.want("m", 4, 3, "x", T + 2 * ASK_AGAIN_MS), Want::Nothing);
        assert_eq!(h.want("m", 4, 3, "x", T + 3 * ASK_AGAIN_MS), Want::Ask(2));
        assert_eq!(h.asked("m"), Some(2), "older asks expired");
        assert_eq!(
            h.improved("m", 2),
            Some(Onward::Every),
            "the askers are kept across periods; stopped here: every peer"
        );
        // A clock that went back asks nothing again early.
        h.stopped("n", 4);
        assert_eq!(h.want("n", 4, 3, "x", T), Want::Ask(2));
        assert_eq!(h.want("n", 4, 3, "x", T - 60_000), Want::Nothing);
    }

    #[test]
    fn a_graft_is_a_request_for_a_shorter_copy_only_for_a_message_at_its_limit() {
        assert_eq!(
            stopped_for_graft(3, 3, false, false),
            Some(2),
            "at the limit"
        );
        assert_eq!(
            stopped_for_graft(5, 3, false, false),
            Some(4),
            "past it (a limit lowered since)"
        );
        assert_eq!(stopped_for_graft(2, 3, false, false), None, "within it");
        assert_eq!(stopped_for_graft(0, 0, false, false), None, "its origin");
        assert_eq!(stopped_for_graft(1, 0, false, false), Some(0));
        assert_eq!(stopped_for_graft(3, 3, true, false), None, "a receipt");
        assert_eq!(
            stopped_for_graft(3, 3, false, true),
            None,
            "a peer on its path"
        );
    }

    #[test]
    fn state_stays_bounded() {
        let mut h = HopLimited::default();
        for i in 0..MAX_HOP_LIMITED + 10 {
            h.stopped(&i.to_string(), 8);
        }
        assert!(h.held.len() <= MAX_HOP_LIMITED && h.order.len() <= MAX_HOP_LIMITED);
        assert!(!h.shorter("0", 1), "the oldest is forgotten first");
        assert!(h.shorter(&(MAX_HOP_LIMITED + 9).to_string(), 1));
        for i in 0..MAX_ASKERS + 5 {
            h.want("x", 9, 7, &format!("p{i}"), T);
        }
        match h.improved("x", 1) {
            Some(Onward::Only(a)) => assert_eq!(a.len(), MAX_ASKERS),
            other => panic!("askers expected, got {other:?}"),
        }
    }
}
