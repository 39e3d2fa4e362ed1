//! Routing messages to named recipients (TLP:AMBER and above) toward them
//! instead of flooding their ciphertext over every relay link. One node's
//! view; `service::ingest` drives it.
//!
//! Rules:
//! - **Learned from arrivals** ([`Routes::learn`]): the first copy of a
//!   message originated by member M that came here from peer P over `links`
//!   links shows a way to M: back through P, `links` links long (links are
//!   two-way; custody records are signed, so the way is real). The shortest
//!   such way of the last [`ROUTE_TTL_MS`] is kept; a newer one replaces it
//!   when it is no longer, or when the kept one is older than that. A peer
//!   whose link goes down is no way to anybody ([`Routes::link_down`]).
//! - **A plan per message** ([`Routes::plan`]): a message to named
//!   recipients goes, from here, to each recipient that is itself among the
//!   peers policy lets it go to, and for each other recipient (not this node)
//!   to the peer of its known way — when that peer is among the targets
//!   policy chose, its link is up, and the way fits in the message's hop
//!   limit. A recipient
//!   that is on the message's path, or whose way goes back through a node on
//!   it, is left to that node (it holds the message and routes toward the
//!   recipient itself). If any other recipient has no usable way, the
//!   message floods as before (every target).
//!   The plan only ever narrows the targets policy chose. At the message's
//!   origin the peers left out get a **parked copy** (`service::ingest`): it
//!   goes in full after a hold unless every recipient confirms receipt
//!   first ([`Pending`]); receipts go to the origin whichever way the
//!   message took, so only the origin can tell. So a way that fails
//!   anywhere — a relay down for good, a relay that swallows messages, a
//!   receipt lost — costs a hold and then a flood, never the message: the
//!   end-to-end check is the recipients' own signed receipts. A copy that
//!   went after the hold (or after waiting in an outbox) is old by then, and
//!   old messages flood from every node (the caller routes only fresh
//!   ones).
//! - **Later copies** ([`Routes::again`]): a duplicate of a message routed
//!   from here can show it is needed further — its hint names recipients no
//!   copy queued here went toward (two ways planned upstream met here), or
//!   it comes after the origin's hold (a way failed): routed toward those
//!   recipients, or flooded from here, each at most once per message.
//!   Plans merge into a message's hints ([`Routes::assign`]); what counts as
//!   done is what was queued ([`Routes::sent`]).
//! - **Pending** ([`Pending`]): per message, the recipients still to confirm
//!   and the parked copies to drop when they have; forgotten after the hold
//!   (the copies then went) and capped at [`MAX_PENDING`] (a forgotten entry
//!   only costs the flood it would have saved).
//!
//! Invariants: a plan names only peers from the given targets; a route names
//! a peer that was up when learned and not reported down since; tables are
//! bounded ([`MAX_ROUTES`], [`MAX_PENDING`], [`MAX_ASSIGNED`],
//! [`MAX_NAMED_LATER`] names per message). Nothing here sends, stores or
//! reads a clock.
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Most members a route is kept to.
pub const MAX_ROUTES: usize = 4_096;
/// How long a learned way is trusted as the best one (a newer, longer one
/// replaces it after that).
pub const ROUTE_TTL_MS: i64 = 10 * 60 * 1000;
/// Most routed messages whose ways are remembered (for the hints their
/// copies carry; a forgotten one's copies carry none).
pub const MAX_ASSIGNED: usize = 16_384;
/// Most recipients later copies' hints may name per routed message
/// ([`Routes::again`]; further names are ignored).
pub const MAX_NAMED_LATER: usize = 64;
/// Most messages waiting for their recipients' receipts.
pub const MAX_PENDING: usize = 16_384;

/// A way back to a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The peer its messages came through.
    pub via: String,
    /// Links from the member to this node that way.
    pub links: u32,
    /// When it was learned.
    pub at_ms: i64,
}

/// Ways to members, learned from their messages' first arrivals, and the
/// ways the messages routed from here took.
#[derive(Debug, Default)]
pub struct Routes {
    by_member: HashMap<String, Route>,
    assigned: HashMap<String, Assigned>,
    assigned_order: VecDeque<String>,
}

/// The ways one message was routed from here.
#[derive(Debug, Clone, Default)]
struct Assigned {
    /// (peer, the recipients it is the way to): the hints of its copies,
    /// every plan made here merged (two copies of one message can be
    /// planned at once; the store keeps one).
    ways: Vec<(String, Vec<String>)>,
    /// The peers copies were queued for from here ([`Routes::sent`]).
    sent_peers: Vec<String>,
    /// The recipients those copies go toward.
    sent_toward: Vec<String>,
    /// Recipients later copies' hints named ([`Again::Toward`]): each once.
    named_later: Vec<String>,
    /// A later copy made this node send it to every target ([`Again::Flood`]).
    flooded: bool,
}

/// What a node that routed a message does with a later copy of it (a
/// duplicate for its store): [`Routes::again`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Again {
    /// Nothing more.
    Nothing,
    /// Route it also toward these recipients: the copy's hint names them
    /// and this node did not route it toward them (another node's plan
    /// sent their way through here, and its copy came second).
    Toward(Vec<String>),
    /// Send it to every target but these peers (they had it from here): the
    /// copy left its sender after the origin's hold, i.e. a recipient had
    /// not confirmed it, so a way failed somewhere; every node that holds it
    /// now floods it, once.
    Flood(Vec<String>),
}

/// Where a message to named recipients goes from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// To these peers only (each a target), each the way to the recipients
    /// listed with it; the recipients this node routes toward (every
    /// recipient but itself) must confirm receipt before the hold runs out,
    /// or the other targets get it after all.
    Route {
        ways: Vec<(String, Vec<String>)>,
        toward: Vec<String>,
    },
    /// To every target, as restricted flooding does.
    Flood,
}

impl Routes {
    /// The first copy of a message from `member` came from peer `via` over
    /// `links` links.
    pub fn learn(&mut self, member: &str, via: &str, links: u32, now_ms: i64) {
        if member == via && links != 1 {
            // A member's own message from it comes over one link.
            return;
        }
        let new = Route {
            via: via.to_string(),
            links,
            at_ms: now_ms,
        };
        if let Some(r) = self.by_member.get_mut(member) {
            if links <= r.links || r.at_ms + ROUTE_TTL_MS <= now_ms {
                *r = new;
            }
            return;
        }
        if self.by_member.len() >= MAX_ROUTES {
            // Make room: the oldest way goes.
            if let Some(oldest) = self
                .by_member
                .iter()
                .min_by_key(|(_, r)| r.at_ms)
                .map(|(m, _)| m.clone())
            {
                self.by_member.remove(&oldest);
            }
        }
        self.by_member.insert(member.to_string(), new);
    }

    /// The link to `peer` went down: no way goes through it now.
    pub fn link_down(&mut self, peer: &str) {
        self.by_member.retain(|_, r| r.via != peer);
    }

    /// The known way to `member`.
    pub fn toward(&self, member: &str) -> Option<&Route> {
        self.by_member.get(member)
    }

    /// Where a message to `recipients` goes from node `me`, given the peers
    /// policy lets it go to (`targets`), those of them whose link is up now
    /// (`live`: a way goes only through one of them), the nodes it came
    /// through (`path`,
    /// its origin first; empty at the origin) and the links its hop limit
    /// still allows from here (`budget`: the signed limit less the links it
    /// crossed to get here).
    pub fn plan(
        &self,
        me: &str,
        recipients: &[String],
        targets: &[String],
        live: &[String],
        path: &[String],
        budget: u32,
    ) -> Plan {
        let mut ways: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut toward = BTreeSet::new();
        for r in recipients.iter().filter(|r| r.as_str() != me) {
            toward.insert(r.clone());
            if targets.contains(r) {
                ways.entry(r.clone()).or_default().push(r.clone());
                continue;
            }
            if path.contains(r) {
                continue;
            }
            let fits = |route: &Route| route.links <= budget;
            match self.by_member.get(r) {
                Some(route) if live.contains(&route.via) && fits(route) => {
                    ways.entry(route.via.clone()).or_default().push(r.clone());
                }
                Some(route) if path.contains(&route.via) => {}
                _ => return Plan::Flood,
            }
        }
        Plan::Route {
            ways: ways.into_iter().collect(),
            toward: toward.into_iter().collect(),
        }
    }

    /// Message `id` is routed from here along `ways` (peer, the recipients
    /// it is the way to): remembered for [`Routes::hint`], merged with any
    /// earlier plan for it.
    pub fn assign(&mut self, id: &str, ways: &[(String, Vec<String>)]) {
        if !self.assigned.contains_key(id) {
            while self.assigned.len() >= MAX_ASSIGNED {
                let Some(old) = self.assigned_order.pop_front() else {
                    break;
                };
                self.assigned.remove(&old);
            }
            self.assigned.insert(id.to_string(), Assigned::default());
            self.assigned_order.push_back(id.to_string());
        }
        let Some(a) = self.assigned.get_mut(id) else {
            return;
        };
        for (peer, recipients) in ways {
            match a.ways.iter_mut().find(|(p, _)| p == peer) {
                Some((_, rs)) => {
                    for r in recipients {
                        if !rs.contains(r) {
                            rs.push(r.clone());
                        }
                    }
                }
                None => a.ways.push((peer.clone(), recipients.clone())),
            }
        }
    }

    /// Copies of message `id` were queued from here along `ways` (a stored
    /// copy's plan, or [`Again::Toward`]'s): what [`Routes::again`] counts
    /// as done. Nothing for a message not remembered.
    pub fn sent(&mut self, id: &str, ways: &[(String, Vec<String>)]) {
        let Some(a) = self.assigned.get_mut(id) else {
            return;
        };
        for (peer, recipients) in ways {
            if !a.sent_peers.contains(peer) {
                a.sent_peers.push(peer.clone());
            }
            for r in recipients {
                if !a.sent_toward.contains(r) {
                    a.sent_toward.push(r.clone());
                }
            }
        }
    }

    /// A later copy of message `id` (held here: a duplicate) came with the
    /// `hint` its sender gave (`PushFrame.toward`, unchecked: the caller
    /// keeps only the message's signed recipients), and `old` when it left
    /// its sender after the origin's hold. Only for a message this node
    /// routed (a flooded one went everywhere already): once old, it floods
    /// from here (once); otherwise the hint's recipients no copy queued here
    /// went toward (nor this node) are routed toward now. Each recipient and the
    /// flood at most once per message.
    pub fn again(&mut self, me: &str, id: &str, hint: &[String], old: bool) -> Again {
        let Some(a) = self.assigned.get_mut(id) else {
            return Again::Nothing;
        };
        if a.flooded {
            return Again::Nothing;
        }
        if old {
            a.flooded = true;
            return Again::Flood(a.sent_peers.clone());
        }
        let mut new: Vec<String> = Vec::new();
        for r in hint {
            if r != me
                && a.named_later.len() + new.len() < MAX_NAMED_LATER
                && !new.contains(r)
                && !a.named_later.contains(r)
                && !a.sent_toward.contains(r)
            {
                new.push(r.clone());
            }
        }
        a.named_later.extend(new.iter().cloned());
        if new.is_empty() {
            Again::Nothing
        } else {
            Again::Toward(new)
        }
    }

    /// Whether message `id` was routed from here (and is remembered) and
    /// has not flooded from here since: a later copy may matter
    /// ([`Routes::again`]).
    pub fn routed_here(&self, id: &str) -> bool {
        self.assigned.get(id).is_some_and(|a| !a.flooded)
    }

    /// The peers copies of message `id` were queued for from here.
    pub fn sent_to(&self, id: &str) -> Vec<String> {
        self.assigned
            .get(id)
            .map(|a| a.sent_peers.clone())
            .unwrap_or_default()
    }

    /// Message `id` went to every target from here ([`Again::Flood`], or
    /// a plan for [`Again::Toward`] that found no way): nothing more for it.
    pub fn flooded(&mut self, id: &str) {
        if let Some(a) = self.assigned.get_mut(id) {
            a.flooded = true;
        }
    }

    /// The recipients a copy of `id` sent to `peer` goes toward
    /// (`PushFrame.toward`): those this node routed through that peer; empty
    /// when it did not route the message (it flooded, or has forgotten).
    pub fn hint(&self, id: &str, peer: &str) -> Vec<String> {
        self.assigned
            .get(id)
            .and_then(|a| a.ways.iter().find(|(p, _)| p == peer))
            .map(|(_, r)| r.clone())
            .unwrap_or_default()
    }
}

/// The recipients a relay routes a copy toward: those of the message's
/// signed `recipients` its sender named in the copy's hint
/// (`PushFrame.toward`), or all of them when there is no usable hint —
/// none, longer than the recipients, or naming none of them (a sender that
/// routed the message names at least one; anything else is not believed).
pub fn along(recipients: &[String], hint: &[String]) -> Vec<String> {
    if hint.is_empty() || hint.len() > recipients.len() {
        return recipients.to_vec();
    }
    let named: Vec<String> = recipients
        .iter()
        .filter(|r| hint.contains(r))
        .cloned()
        .collect();
    if named.is_empty() {
        recipients.to_vec()
    } else {
        named
    }
}

/// The ways of a plan: the peers it sends to.
pub fn peers(ways: &[(String, Vec<String>)]) -> Vec<String> {
    ways.iter().map(|(p, _)| p.clone()).collect()
}

/// One message routed from here, waiting for its recipients' receipts.
#[derive(Debug, Clone)]
struct Waiting {
    /// Recipients that have not confirmed yet.
    left: BTreeSet<String>,
    /// Parked copies: (peer, outbox cursor).
    parked: Vec<(String, u64)>,
    /// When the parked copies go in full.
    until_ms: i64,
}

/// Messages routed from here whose other targets got parked copies.
#[derive(Debug, Default)]
pub struct Pending {
    by_id: HashMap<String, Waiting>,
    order: VecDeque<(i64, String)>,
}

impl Pending {
    /// Message `id`, routed toward `toward`, parked copies for `parked`
    /// (peer, outbox cursor) that go in full at `until_ms`.
    pub fn routed(
        &mut self,
        id: &str,
        toward: &[String],
        parked: Vec<(String, u64)>,
        until_ms: i64,
        now_ms: i64,
    ) {
        self.expire(now_ms);
        if parked.is_empty() || toward.is_empty() {
            return;
        }
        while self.by_id.len() >= MAX_PENDING {
            let Some((_, old)) = self.order.pop_front() else {
                break;
            };
            self.by_id.remove(&old);
        }
        self.by_id.insert(
            id.to_string(),
            Waiting {
                left: toward.iter().cloned().collect(),
                parked,
                until_ms,
            },
        );
        self.order.push_back((until_ms, id.to_string()));
    }

    /// Recipient `recipient` confirmed receipt of `ids`: the parked copies of
    /// the messages every routed-to recipient has now confirmed, to drop.
    pub fn receipted(
        &mut self,
        recipient: &str,
        ids: &[String],
        now_ms: i64,
    ) -> Vec<(String, u64)> {
        self.expire(now_ms);
        let mut done = Vec::new();
        for id in ids {
            let Some(w) = self.by_id.get_mut(id) else {
                continue;
            };
            w.left.remove(recipient);
            if w.left.is_empty()
                && let Some(w) = self.by_id.remove(id)
            {
                done.extend(w.parked);
            }
        }
        done
    }

    /// Messages waited for.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Forgets the messages whose parked copies already went.
    fn expire(&mut self, now_ms: i64) {
        while let Some((until, id)) = self.order.front() {
            let gone = !self.by_id.contains_key(id);
            if !gone && *until > now_ms {
                break;
            }
            if !gone && self.by_id.get(id).is_some_and(|w| w.until_ms <= now_ms) {
                self.by_id.remove(id);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_route_is_learned_from_a_first_arrival_and_kept_shortest() {
        let mut r = Routes::default();
        r.learn("m", "p", 3, 0);
        assert_eq!(r.toward("m").unwrap().via, "p");
        // Longer, and the kept one is fresh: kept.
        r.learn("m", "q", 4, 1_000);
        assert_eq!(r.toward("m").unwrap().via, "p");
        // As short: newer wins.
        r.learn("m", "q", 3, 2_000);
        assert_eq!(r.toward("m").unwrap().via, "q");
        // Longer, but the kept one is stale: replaced.
        r.learn("m", "p", 5, 2_000 + ROUTE_TTL_MS);
        assert_eq!(
            r.toward("m"),
            Some(&Route {
                via: "p".into(),
                links: 5,
                at_ms: 2_000 + ROUTE_TTL_MS
            })
        );
        // A member's own message over more than one link is no way to it.
        r.learn("z", "z", 2, 0);
        assert!(r.toward("z").is_none());
    }

    #[test]
    fn a_later_copy_routes_toward_the_recipients_its_hint_adds_then_floods_once_when_old() {
        let mut r = Routes::default();
        assert_eq!(
            r.again("me", "m1", &s(&["r2"]), false),
            Again::Nothing,
            "not routed from here (flooded, or forgotten): it went everywhere"
        );
        // Two copies planned at once: the plans merge into the hints; only
        // the stored one's copies count as sent.
        r.assign("m1", &[("p".into(), s(&["r1"]))]);
        r.assign("m1", &[("q".into(), s(&["r2"]))]);
        assert_eq!(r.hint("m1", "p"), s(&["r1"]));
        assert_eq!(r.hint("m1", "q"), s(&["r2"]));
        r.sent("m1", &[("p".into(), s(&["r1"]))]);
        assert_eq!(r.sent_to("m1"), s(&["p"]));
        // The other copy (a duplicate) named r2: not sent toward yet.
        assert_eq!(
            r.again("me", "m1", &s(&["r1", "r2", "me"]), false),
            Again::Toward(s(&["r2"])),
            "only what is new, never this node"
        );
        assert_eq!(
            r.again("me", "m1", &s(&["r2"]), false),
            Again::Nothing,
            "each recipient once, whatever was found for it"
        );
        r.assign("m1", &[("p".into(), s(&["r2"])), ("x".into(), s(&["r3"]))]);
        r.sent("m1", &[("p".into(), s(&["r2"])), ("x".into(), s(&["r3"]))]);
        assert_eq!(r.hint("m1", "p"), s(&["r1", "r2"]), "copies carry it");
        assert_eq!(r.hint("m1", "x"), s(&["r3"]));
        assert_eq!(r.again("me", "m1", &s(&["r3"]), false), Again::Nothing);
        // Old: a way failed somewhere; every target but those it went to.
        assert_eq!(r.again("me", "m1", &[], true), Again::Flood(s(&["p", "x"])));
        assert_eq!(r.again("me", "m1", &[], true), Again::Nothing, "once");
        assert!(!r.routed_here("m1"));
        assert_eq!(r.again("me", "m1", &s(&["r9"]), false), Again::Nothing);
        // A hint cannot grow the state without bound.
        r.assign("m2", &[]);
        let many: Vec<String> = (0..1000).map(|i| format!("x{i}")).collect();
        let Again::Toward(named) = r.again("me", "m2", &many, false) else {
            panic!("routed toward the first ones");
        };
        assert_eq!(named.len(), MAX_NAMED_LATER);
        assert_eq!(r.again("me", "m2", &s(&["y"]), false), Again::Nothing);
        r.flooded("m2");
        assert_eq!(r.again("me", "m2", &[], true), Again::Nothing);
    }

    #[test]
    fn a_link_down_removes_the_ways_through_it() {
        let mut r = Routes::default();
        r.learn("m", "p", 2, 0);
        r.learn("n", "q", 2, 0);
        r.link_down("p");
        assert!(r.toward("m").is_none());
        assert!(r.toward("n").is_some());
    }

    #[test]
    fn a_plan_routes_only_when_every_recipient_has_a_usable_way() {
        let mut r = Routes::default();
        r.learn("r1", "p", 2, 0);
        r.learn("r2", "q", 3, 0);
        let targets = s(&["p", "q", "x", "r3"]);
        // Direct recipient, two routed ones, this node among the recipients.
        assert_eq!(
            r.plan(
                "me",
                &s(&["r1", "r2", "r3", "me"]),
                &targets,
                &targets,
                &[],
                7
            ),
            Plan::Route {
                ways: vec![
                    ("p".into(), s(&["r1"])),
                    ("q".into(), s(&["r2"])),
                    ("r3".into(), s(&["r3"])),
                ],
                toward: s(&["r1", "r2", "r3"]),
            }
        );
        // A recipient with no way: flood.
        assert_eq!(
            r.plan("me", &s(&["r1", "r4"]), &targets, &targets, &[], 7),
            Plan::Flood
        );
        // The way's peer not a target (policy): flood.
        assert_eq!(
            r.plan("me", &s(&["r1"]), &s(&["q", "x"]), &s(&["q", "x"]), &[], 7),
            Plan::Flood
        );
        // The way's peer is a target but its link is down: flood.
        assert_eq!(
            r.plan("me", &s(&["r1"]), &targets, &s(&["q"]), &[], 7),
            Plan::Flood
        );
        // The way goes back through a node that holds it, or the recipient
        // holds it: left to them.
        assert_eq!(
            r.plan(
                "me",
                &s(&["r1", "r2", "r3"]),
                &s(&["q"]),
                &s(&["q"]),
                &s(&["o", "p", "r3"]),
                6
            ),
            Plan::Route {
                ways: vec![("q".into(), s(&["r2"]))],
                toward: s(&["r1", "r2", "r3"]),
            }
        );
        // The way does not fit in the hop limit: 3 links, 2 left (3 of 5 crossed).
        assert_eq!(
            r.plan("me", &s(&["r2"]), &targets, &targets, &[], 2),
            Plan::Flood
        );
        assert_eq!(
            r.plan("me", &s(&["r2"]), &targets, &targets, &[], 3),
            Plan::Route {
                ways: vec![("q".into(), s(&["r2"]))],
                toward: s(&["r2"]),
            }
        );
        // Only this node: nobody further needs it.
        assert_eq!(
            r.plan("me", &s(&["me"]), &targets, &targets, &[], 7),
            Plan::Route {
                ways: vec![],
                toward: vec![],
            }
        );
    }

    #[test]
    fn a_copy_names_the_recipients_its_peer_is_the_way_to() {
        let mut r = Routes::default();
        let ways = vec![
            ("p".to_string(), s(&["r1", "r3"])),
            ("q".into(), s(&["r2"])),
        ];
        r.assign("m", &ways);
        assert_eq!(peers(&ways), s(&["p", "q"]));
        assert_eq!(r.hint("m", "p"), s(&["r1", "r3"]));
        assert_eq!(r.hint("m", "q"), s(&["r2"]));
        // Not routed through that peer, or not routed here: no hint.
        assert!(r.hint("m", "x").is_empty());
        assert!(r.hint("other", "p").is_empty());
        for i in 0..MAX_ASSIGNED {
            r.assign(&format!("n{i}"), &ways);
        }
        assert_eq!(r.assigned.len(), MAX_ASSIGNED);
        assert!(r.hint("m", "p").is_empty(), "the oldest is forgotten first");
    }

    #[test]
    fn a_hint_narrows_the_recipients_only_when_it_names_some_of_them() {
        let rcpt = s(&["r1", "r2", "r3"]);
        assert_eq!(along(&rcpt, &s(&["r2"])), s(&["r2"]));
        assert_eq!(along(&rcpt, &s(&["r3", "r1", "zz"])), s(&["r1", "r3"]));
        // No hint, one naming nobody, or one longer than the recipients: all.
        assert_eq!(along(&rcpt, &[]), rcpt);
        assert_eq!(along(&rcpt, &s(&["zz"])), rcpt);
        assert_eq!(along(&rcpt, &s(&["r1", "r2", "r3", "r4"])), rcpt);
    }

    #[test]
    fn parked_copies_are_dropped_once_every_routed_recipient_confirmed() {
        let mut p = Pending::default();
        p.routed("m1", &s(&["r1", "r2"]), vec![("x".into(), 7)], 30_000, 0);
        assert!(p.receipted("r1", &s(&["m1"]), 1_000).is_empty());
        // A receipt from someone else, or for another message: nothing.
        assert!(p.receipted("r3", &s(&["m1", "m2"]), 1_000).is_empty());
        assert_eq!(
            p.receipted("r2", &s(&["m1"]), 2_000),
            vec![("x".to_string(), 7)]
        );
        assert!(p.is_empty());
        // Too late: the copies went at the hold, nothing left to drop.
        p.routed("m2", &s(&["r1"]), vec![("x".into(), 8)], 30_000, 0);
        assert!(p.receipted("r1", &s(&["m2"]), 30_000).is_empty());
        assert!(p.is_empty());
        // Nothing parked: nothing remembered.
        p.routed("m3", &s(&["r1"]), vec![], 30_000, 0);
        assert!(p.is_empty());
    }

    #[test]
    fn the_tables_are_bounded() {
        let mut r = Routes::default();
        for i in 0..(MAX_ROUTES + 10) {
            r.learn(&format!("m{i}"), "p", 2, i as i64);
        }
        assert_eq!(r.by_member.len(), MAX_ROUTES);
        // The oldest went first.
        assert!(r.toward("m0").is_none());
        assert!(r.toward(&format!("m{}", MAX_ROUTES + 9)).is_some());
        let mut p = Pending::default();
        for i in 0..(MAX_PENDING + 10) {
            p.routed(
                &format!("m{i}"),
                &s(&["r"]),
                vec![("x".into(), 1)],
                1_000_000,
                0,
            );
        }
        assert_eq!(p.len(), MAX_PENDING);
    }
}
