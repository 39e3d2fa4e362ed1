//! TLP rules and distribution policy: who may receive a message, checked before anything
//! leaves a node and again at every hop. Everything here fails closed: an unknown or unset
//! TLP is never sent anywhere.
//!
//! In this federation CLEAR and GREEN may be broadcast and relayed ([`broadcastable`]);
//! AMBER, AMBER+STRICT and RED go only to the recipients the origin names, end-to-end
//! encrypted for them ([`requires_e2e`]): in clear only directly to a named recipient, as
//! ciphertext also over relay links (a node that is not a named recipient never receives
//! the plaintext). No TLP is both; UNSPECIFIED is neither and goes nowhere.
//!
//! This is the one place that knows the TLP vocabulary: the labels ([`tlp_label`]), the
//! operator words ([`parse_tlp`], which never falls back to a default) and the check of a
//! TLP value read off the wire ([`tlp_from_wire`]). `domain::alert` re-exports the
//! vocabulary items for its callers.
use std::collections::HashSet;

use crate::domain::identity::validate_name;
use crate::proto::v1::Tlp;

/// All TLP values except UNSPECIFIED, from least to most restrictive.
pub const ALL_TLPS: [Tlp; 5] = [
    Tlp::Clear,
    Tlp::Green,
    Tlp::Amber,
    Tlp::AmberStrict,
    Tlp::Red,
];

const TLP_WORDS: &str =
    "clear, green, amber, amber+strict, red (or TLP:CLEAR … TLP:RED, TLP_CLEAR … TLP_RED)";

/// Display label of a TLP: `TLP:CLEAR`, `TLP:GREEN`, `TLP:AMBER`, `TLP:AMBER+STRICT`, `TLP:RED`.
pub fn tlp_label(t: Tlp) -> &'static str {
    match t {
        Tlp::Unspecified => "TLP:UNSPECIFIED",
        Tlp::Clear => "TLP:CLEAR",
        Tlp::Green => "TLP:GREEN",
        Tlp::Amber => "TLP:AMBER",
        Tlp::AmberStrict => "TLP:AMBER+STRICT",
        Tlp::Red => "TLP:RED",
    }
}

/// Parses operator words: `clear|green|amber|amber+strict|red`, case-insensitive, with or
/// without the `TLP:` prefix, or the enum names (`TLP_AMBER_STRICT`). `white` (TLP 1.0)
/// is read as CLEAR, as TLP 2.0 prescribes. Anything else, UNSPECIFIED included, is an
/// error naming the input and the accepted words; there is no default.
pub fn parse_tlp(s: &str) -> Result<Tlp, String> {
    let w = s.trim().to_ascii_lowercase();
    let w = w
        .strip_prefix("tlp:")
        .or_else(|| w.strip_prefix("tlp_"))
        .unwrap_or(&w)
        .trim();
    match w {
        "clear" | "white" => Ok(Tlp::Clear),
        "green" => Ok(Tlp::Green),
        "amber" => Ok(Tlp::Amber),
        "amber+strict" | "amber_strict" | "amber-strict" => Ok(Tlp::AmberStrict),
        "red" => Ok(Tlp::Red),
        _ => Err(format!("unknown TLP {s:?}; use one of: {TLP_WORDS}")),
    }
}

/// The TLP marking of a proto field (`alert.tlp`, `request.tlp`, the envelope header):
/// it must be set and known. The error is the rule broken, for the caller to prefix with
/// the field.
pub fn tlp_from_wire(value: i32) -> Result<Tlp, String> {
    match Tlp::try_from(value) {
        Ok(Tlp::Unspecified) => Err(
            "required: set the TLP marking to TLP_CLEAR, TLP_GREEN, TLP_AMBER, TLP_AMBER_STRICT or TLP_RED"
                .to_string(),
        ),
        Ok(t) => Ok(t),
        Err(_) => Err(format!(
            "unknown TLP value {value}; use TLP_CLEAR, TLP_GREEN, TLP_AMBER, TLP_AMBER_STRICT or TLP_RED"
        )),
    }
}

/// CLEAR and GREEN: may be broadcast to the whole federation and relayed in clear.
/// Nothing else.
pub fn broadcastable(tlp: Tlp) -> bool {
    matches!(tlp, Tlp::Clear | Tlp::Green)
}

/// AMBER, AMBER+STRICT and RED: need named recipients and are end-to-end encrypted for
/// them. Nothing else (UNSPECIFIED is never sent at all).
pub fn requires_e2e(tlp: Tlp) -> bool {
    matches!(tlp, Tlp::Amber | Tlp::AmberStrict | Tlp::Red)
}

/// Why a message may not be distributed as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// AMBER, AMBER+STRICT or RED with no named recipients.
    #[error(
        "{tlp} may not be broadcast: name the recipient nodes (recipients) or use TLP:CLEAR/TLP:GREEN"
    )]
    BroadcastNotAllowed {
        /// Label of the offending TLP, e.g. "TLP:RED".
        tlp: &'static str,
    },
    /// The TLP is not set.
    #[error(
        "TLP is not set: mark the message TLP_CLEAR, TLP_GREEN, TLP_AMBER, TLP_AMBER_STRICT or TLP_RED (unmarked messages are never distributed)"
    )]
    UnknownTlp,
    /// A recipient is not a valid member id, or is listed twice.
    #[error("invalid recipient: {0}")]
    InvalidRecipient(String),
}

/// Whether a message of this TLP may be sent to these recipients. An empty list means a
/// broadcast to the whole federation: allowed for CLEAR and GREEN only. Each recipient
/// must be a valid member id, listed once.
pub fn check_distribution(tlp: Tlp, recipients: &[String]) -> Result<(), PolicyError> {
    if tlp == Tlp::Unspecified {
        return Err(PolicyError::UnknownTlp);
    }
    let mut seen = HashSet::new();
    for r in recipients {
        validate_name(r).map_err(PolicyError::InvalidRecipient)?;
        if !seen.insert(r.as_str()) {
            return Err(PolicyError::InvalidRecipient(format!(
                "{r:?} is listed twice; name each recipient node once"
            )));
        }
    }
    if recipients.is_empty() && !broadcastable(tlp) {
        return Err(PolicyError::BroadcastNotAllowed {
            tlp: tlp_label(tlp),
        });
    }
    Ok(())
}

/// Per-peer policy from configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerPolicy {
    /// Highest TLP this peer may receive (default TLP:RED).
    pub max_tlp: Tlp,
    /// May this link carry messages for others (relay)? Default true. Only CLEAR and
    /// GREEN are ever relayed.
    pub relay: bool,
}

impl Default for PeerPolicy {
    fn default() -> Self {
        PeerPolicy {
            max_tlp: Tlp::Red,
            relay: true,
        }
    }
}

/// Decision for sending one message to one direct peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Send it.
    Send,
    /// Do not send it, for this reason (logged and shown in the delivery state).
    Skip(String),
}

impl Route {
    /// True for [`Route::Send`].
    pub fn is_send(&self) -> bool {
        matches!(self, Route::Send)
    }
}

/// What routing needs to know of a message: its signed metadata and the path
/// it took (origin first).
#[derive(Clone, Copy, Debug)]
pub struct Outbound<'a> {
    pub tlp: Tlp,
    pub origin: &'a str,
    pub recipients: &'a [String],
    pub path: &'a [String],
    /// The payload is end-to-end encrypted for the recipients.
    pub end_to_end: bool,
}

/// Decides whether a message (origin, TLP, recipients, relay path already travelled) may
/// go from `this_node` to the direct peer `peer`.
///
/// - Unset TLP, or a peer whose `max_tlp` is unset: skip (fail closed).
/// - Never back to the origin, to a node on `path`, or to this node itself.
/// - TLP above the peer's `max_tlp`: skip.
/// - CLEAR/GREEN broadcast: the origin sends to every peer; a relaying node forwards only
///   over links with `relay = true`.
/// - CLEAR/GREEN with recipients: send to a peer that is a recipient, or over a relay link
///   (a recipient may be behind it).
/// - AMBER, AMBER+STRICT, RED: never broadcast; in clear only to a peer that is itself
///   a named recipient; end-to-end encrypted (`end_to_end`) also over relay links, since
///   a relay cannot read it.
pub fn route_to_peer(
    msg: &Outbound<'_>,
    this_node: &str,
    peer: &str,
    policy: &PeerPolicy,
) -> Route {
    let Outbound {
        tlp,
        origin,
        recipients,
        path,
        end_to_end,
    } = *msg;
    if tlp == Tlp::Unspecified {
        return Route::Skip("message TLP is not set; unmarked messages are never forwarded".into());
    }
    if peer == origin {
        return Route::Skip(format!(
            "{peer} is the origin of the message; not sending it back"
        ));
    }
    if peer == this_node {
        return Route::Skip(format!("{peer} is this node"));
    }
    if path.iter().any(|p| p == peer) {
        return Route::Skip(format!(
            "{peer} is on the message's relay path (it already carried it); not sending it back"
        ));
    }
    if policy.max_tlp == Tlp::Unspecified {
        return Route::Skip(format!(
            "peer policy max_tlp for {peer} is not set; set it (e.g. TLP_RED) to send anything to this peer"
        ));
    }
    if tlp > policy.max_tlp {
        return Route::Skip(format!(
            "peer policy max_tlp is {}, message is {}",
            tlp_label(policy.max_tlp),
            tlp_label(tlp)
        ));
    }
    let is_recipient = recipients.iter().any(|r| r == peer);
    let relaying = this_node != origin;
    match (broadcastable(tlp), recipients.is_empty()) {
        (true, true) => {
            if !relaying || policy.relay {
                Route::Send
            } else {
                Route::Skip(format!(
                    "link to {peer} is not a relay link (relay = false); only the origin's own broadcasts go over it"
                ))
            }
        }
        (true, false) => {
            if is_recipient || policy.relay {
                Route::Send
            } else {
                Route::Skip(format!(
                    "{peer} is not a named recipient and the link is not a relay link (relay = false)"
                ))
            }
        }
        (false, true) => Route::Skip(format!(
            "{} message has no named recipients; it may not be broadcast",
            tlp_label(tlp)
        )),
        (false, false) => {
            if is_recipient || (end_to_end && policy.relay) {
                // Non-recipients only ever carry the end-to-end encrypted form.
                Route::Send
            } else {
                Route::Skip(format!(
                    "{peer} is not a named recipient of this {} message; it goes only directly to its recipients",
                    tlp_label(tlp)
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn policy(relay: bool) -> PeerPolicy {
        PeerPolicy {
            max_tlp: Tlp::Red,
            relay,
        }
    }

    #[track_caller]
    fn skip_reason(r: Route) -> String {
        match r {
            Route::Skip(reason) => reason,
            Route::Send => panic!("expected Skip, got Send"),
        }
    }

    #[test]
    fn tlp_parse_and_labels() {
        for t in ALL_TLPS {
            assert_eq!(parse_tlp(tlp_label(t)), Ok(t));
            assert_eq!(parse_tlp(&tlp_label(t).to_lowercase()), Ok(t));
            assert_eq!(parse_tlp(t.as_str_name()), Ok(t));
            assert_eq!(parse_tlp(&tlp_label(t)[4..].to_lowercase()), Ok(t));
        }
        assert_eq!(tlp_label(Tlp::Amber), "TLP:AMBER");
        assert_eq!(tlp_label(Tlp::AmberStrict), "TLP:AMBER+STRICT");
        assert_eq!(parse_tlp("amber+strict"), Ok(Tlp::AmberStrict));
        assert_eq!(parse_tlp(" Amber+Strict "), Ok(Tlp::AmberStrict));
        assert_eq!(parse_tlp("TLP:AMBER+STRICT"), Ok(Tlp::AmberStrict));
        assert_eq!(parse_tlp("TLP_AMBER_STRICT"), Ok(Tlp::AmberStrict));
        assert_eq!(parse_tlp("RED"), Ok(Tlp::Red));
        assert_eq!(parse_tlp("white"), Ok(Tlp::Clear));
        for s in [
            "",
            "unspecified",
            "TLP_UNSPECIFIED",
            "purple",
            "amber strict",
            "tlp:",
        ] {
            let e = parse_tlp(s).unwrap_err();
            assert!(e.contains("clear, green, amber, amber+strict, red"), "{e}");
        }
    }

    #[test]
    fn broadcastable_and_requires_e2e_split_the_tlps() {
        assert!(broadcastable(Tlp::Clear));
        assert!(broadcastable(Tlp::Green));
        for t in [Tlp::Amber, Tlp::AmberStrict, Tlp::Red] {
            assert!(!broadcastable(t), "{t:?}");
            assert!(requires_e2e(t), "{t:?}");
        }
        assert!(!requires_e2e(Tlp::Clear));
        assert!(!requires_e2e(Tlp::Green));
        // Every marked TLP is exactly one of the two; UNSPECIFIED is neither.
        for t in ALL_TLPS {
            assert_ne!(broadcastable(t), requires_e2e(t), "{t:?}");
        }
        assert!(!broadcastable(Tlp::Unspecified));
        assert!(!requires_e2e(Tlp::Unspecified));
        // The split follows the order: everything above GREEN needs end-to-end encryption.
        for t in ALL_TLPS {
            assert_eq!(requires_e2e(t), t > Tlp::Green, "{t:?}");
        }
    }

    #[test]
    fn tlp_from_wire_rules() {
        for t in ALL_TLPS {
            assert_eq!(tlp_from_wire(t as i32), Ok(t));
        }
        assert_eq!(
            tlp_from_wire(Tlp::Unspecified as i32).unwrap_err(),
            "required: set the TLP marking to TLP_CLEAR, TLP_GREEN, TLP_AMBER, TLP_AMBER_STRICT or TLP_RED"
        );
        for v in [-1, 6, 42] {
            assert_eq!(
                tlp_from_wire(v).unwrap_err(),
                format!(
                    "unknown TLP value {v}; use TLP_CLEAR, TLP_GREEN, TLP_AMBER, TLP_AMBER_STRICT or TLP_RED"
                )
            );
        }
    }

    #[test]
    fn parse_tlp_has_no_fallback() {
        let e = parse_tlp("purple").unwrap_err();
        assert_eq!(
            e,
            "unknown TLP \"purple\"; use one of: clear, green, amber, amber+strict, red (or TLP:CLEAR … TLP:RED, TLP_CLEAR … TLP_RED)"
        );
        // Words that look like a TLP but are not one are refused, never read as a default.
        for s in [
            "tlp:unspecified",
            "TLP:",
            "green!",
            "amberstrict",
            "TLP RED",
        ] {
            assert!(parse_tlp(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn distribution_broadcast_only_clear_green() {
        for t in ALL_TLPS {
            let r = check_distribution(t, &[]);
            if matches!(t, Tlp::Clear | Tlp::Green) {
                assert_eq!(r, Ok(()), "{t:?}");
            } else {
                let e = r.unwrap_err();
                assert_eq!(e, PolicyError::BroadcastNotAllowed { tlp: tlp_label(t) });
                assert!(
                    e.to_string()
                        .contains("name the recipient nodes (recipients)")
                );
            }
            check_distribution(t, &s(&["node-b", "cert.ua"])).unwrap();
        }
        assert_eq!(
            check_distribution(Tlp::Red, &[]).unwrap_err().to_string(),
            "TLP:RED may not be broadcast: name the recipient nodes (recipients) or use TLP:CLEAR/TLP:GREEN"
        );
        assert_eq!(
            check_distribution(Tlp::AmberStrict, &[])
                .unwrap_err()
                .to_string(),
            "TLP:AMBER+STRICT may not be broadcast: name the recipient nodes (recipients) or use TLP:CLEAR/TLP:GREEN"
        );
    }

    #[test]
    fn distribution_unknown_tlp_fails_closed() {
        for rcpts in [vec![], s(&["node-b"])] {
            let e = check_distribution(Tlp::Unspecified, &rcpts).unwrap_err();
            assert_eq!(e, PolicyError::UnknownTlp);
            assert!(e.to_string().contains("TLP_CLEAR"), "{e}");
        }
    }

    #[test]
    fn distribution_invalid_recipients() {
        for bad in ["", "Node-B", "node b", "-node", &"a".repeat(64)] {
            let e = check_distribution(Tlp::Red, &s(&["node-b", bad])).unwrap_err();
            assert!(
                matches!(&e, PolicyError::InvalidRecipient(m) if m.contains("invalid name")),
                "{e}"
            );
            assert!(e.to_string().starts_with("invalid recipient: "));
        }
        let e = check_distribution(Tlp::Green, &s(&["node-b", "node-c", "node-b"])).unwrap_err();
        assert!(
            matches!(&e, PolicyError::InvalidRecipient(m) if m.contains("\"node-b\" is listed twice")),
            "{e}"
        );
    }

    /// The full table: every TLP × broadcast/with recipients × peer a recipient or not ×
    /// relay link or not × this node the origin or a relay.
    #[test]
    fn route_table() {
        for tlp in ALL_TLPS {
            let shareable = matches!(tlp, Tlp::Clear | Tlp::Green);
            for with_recipients in [false, true] {
                for peer_is_recipient in [false, true] {
                    if peer_is_recipient && !with_recipients {
                        continue;
                    }
                    for relay in [false, true] {
                        for this_is_origin in [false, true] {
                            let recipients = match (with_recipients, peer_is_recipient) {
                                (false, _) => vec![],
                                (true, true) => s(&["node-d", "peer"]),
                                (true, false) => s(&["node-d"]),
                            };
                            let this = if this_is_origin { "origin" } else { "relay" };
                            let path = if this_is_origin {
                                vec![]
                            } else {
                                s(&["origin"])
                            };
                            let got = route_to_peer(
                                &Outbound {
                                    tlp,
                                    origin: "origin",
                                    recipients: &recipients,
                                    path: &path,
                                    end_to_end: false,
                                },
                                this,
                                "peer",
                                &policy(relay),
                            );
                            let want = match (shareable, with_recipients) {
                                (true, false) => this_is_origin || relay,
                                (true, true) => peer_is_recipient || relay,
                                (false, false) => false,
                                (false, true) => peer_is_recipient,
                            };
                            let case = format!(
                                "{tlp:?} recipients={with_recipients} peer_is_recipient={peer_is_recipient} relay={relay} origin={this_is_origin}"
                            );
                            assert_eq!(got.is_send(), want, "{case}: {got:?}");
                            if let Route::Skip(reason) = got {
                                assert!(!reason.is_empty(), "{case}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn route_skip_reasons() {
        let r = skip_reason(route_to_peer(
            &Outbound {
                tlp: Tlp::Red,
                origin: "a",
                recipients: &s(&["c"]),
                path: &s(&["a"]),
                end_to_end: false,
            },
            "b",
            "d",
            &policy(true),
        ));
        assert!(
            r.contains("not a named recipient of this TLP:RED message"),
            "{r}"
        );
        let r = skip_reason(route_to_peer(
            &Outbound {
                tlp: Tlp::Amber,
                origin: "a",
                recipients: &[],
                path: &[],
                end_to_end: false,
            },
            "a",
            "d",
            &policy(true),
        ));
        assert!(
            r.contains("TLP:AMBER message has no named recipients"),
            "{r}"
        );
        let r = skip_reason(route_to_peer(
            &Outbound {
                tlp: Tlp::Green,
                origin: "a",
                recipients: &[],
                path: &s(&["a"]),
                end_to_end: false,
            },
            "b",
            "d",
            &policy(false),
        ));
        assert!(r.contains("not a relay link (relay = false)"), "{r}");
        let r = skip_reason(route_to_peer(
            &Outbound {
                tlp: Tlp::Clear,
                origin: "a",
                recipients: &s(&["c"]),
                path: &[],
                end_to_end: false,
            },
            "a",
            "d",
            &policy(false),
        ));
        assert!(
            r.contains("not a named recipient and the link is not a relay link"),
            "{r}"
        );
    }

    #[test]
    fn never_back_to_origin_or_along_path() {
        for tlp in ALL_TLPS {
            for relay in [false, true] {
                let p = policy(relay);
                // Back to the origin, even when it is named as a recipient.
                let r = skip_reason(route_to_peer(
                    &Outbound {
                        tlp,
                        origin: "a",
                        recipients: &s(&["a", "c"]),
                        path: &s(&["a"]),
                        end_to_end: false,
                    },
                    "b",
                    "a",
                    &p,
                ));
                assert!(r.contains("origin"), "{r}");
                let r = skip_reason(route_to_peer(
                    &Outbound {
                        tlp,
                        origin: "a",
                        recipients: &[],
                        path: &s(&["a"]),
                        end_to_end: false,
                    },
                    "b",
                    "a",
                    &p,
                ));
                assert!(r.contains("origin"), "{r}");
                // To a node that already carried it (on the path), even a recipient.
                let path = s(&["a", "x", "b"]);
                let r = skip_reason(route_to_peer(
                    &Outbound {
                        tlp,
                        origin: "a",
                        recipients: &s(&["x"]),
                        path: &path,
                        end_to_end: false,
                    },
                    "c",
                    "x",
                    &p,
                ));
                assert!(r.contains("relay path"), "{r}");
                let r = skip_reason(route_to_peer(
                    &Outbound {
                        tlp,
                        origin: "a",
                        recipients: &[],
                        path: &path,
                        end_to_end: false,
                    },
                    "c",
                    "b",
                    &p,
                ));
                assert!(r.contains("relay path"), "{r}");
                // To itself.
                let r = skip_reason(route_to_peer(
                    &Outbound {
                        tlp,
                        origin: "a",
                        recipients: &s(&["b"]),
                        path: &s(&["a"]),
                        end_to_end: false,
                    },
                    "b",
                    "b",
                    &p,
                ));
                assert!(r.contains("this node"), "{r}");
            }
        }
    }

    #[test]
    fn peer_max_tlp() {
        for max in ALL_TLPS {
            for tlp in ALL_TLPS {
                let p = PeerPolicy {
                    max_tlp: max,
                    relay: true,
                };
                let got = route_to_peer(
                    &Outbound {
                        tlp,
                        origin: "a",
                        recipients: &s(&["b"]),
                        path: &[],
                        end_to_end: false,
                    },
                    "a",
                    "b",
                    &p,
                );
                if tlp > max {
                    let r = skip_reason(got);
                    assert_eq!(
                        r,
                        format!(
                            "peer policy max_tlp is {}, message is {}",
                            tlp_label(max),
                            tlp_label(tlp)
                        )
                    );
                } else {
                    assert_eq!(got, Route::Send, "{tlp:?} max {max:?}");
                }
            }
        }
        let r = skip_reason(route_to_peer(
            &Outbound {
                tlp: Tlp::Amber,
                origin: "a",
                recipients: &s(&["b"]),
                path: &[],
                end_to_end: false,
            },
            "a",
            "b",
            &PeerPolicy {
                max_tlp: Tlp::Green,
                relay: true,
            },
        ));
        assert_eq!(r, "peer policy max_tlp is TLP:GREEN, message is TLP:AMBER");
        // An unset max_tlp sends nothing, not even CLEAR.
        let p = PeerPolicy {
            max_tlp: Tlp::Unspecified,
            relay: true,
        };
        let r = skip_reason(route_to_peer(
            &Outbound {
                tlp: Tlp::Clear,
                origin: "a",
                recipients: &[],
                path: &[],
                end_to_end: false,
            },
            "a",
            "b",
            &p,
        ));
        assert!(r.contains("max_tlp for b is not set"), "{r}");
    }

    #[test]
    fn unspecified_tlp_never_routed() {
        for relay in [false, true] {
            for rcpts in [vec![], s(&["b"])] {
                let r = skip_reason(route_to_peer(
                    &Outbound {
                        tlp: Tlp::Unspecified,
                        origin: "a",
                        recipients: &rcpts,
                        path: &[],
                        end_to_end: false,
                    },
                    "a",
                    "b",
                    &policy(relay),
                ));
                assert!(r.contains("TLP is not set"), "{r}");
            }
        }
    }

    #[test]
    fn line_topology() {
        // a - b - c: a GREEN broadcast from a reaches c through b; a RED message for c
        // is not handed to b (not a recipient), but goes from a to c when they peer directly.
        let p = PeerPolicy::default();
        assert_eq!(p.max_tlp, Tlp::Red);
        assert!(p.relay);
        assert!(
            route_to_peer(
                &Outbound {
                    tlp: Tlp::Green,
                    origin: "a",
                    recipients: &[],
                    path: &[],
                    end_to_end: false
                },
                "a",
                "b",
                &p
            )
            .is_send()
        );
        assert!(
            route_to_peer(
                &Outbound {
                    tlp: Tlp::Green,
                    origin: "a",
                    recipients: &[],
                    path: &s(&["a"]),
                    end_to_end: false
                },
                "b",
                "c",
                &p
            )
            .is_send()
        );
        assert!(
            !route_to_peer(
                &Outbound {
                    tlp: Tlp::Green,
                    origin: "a",
                    recipients: &[],
                    path: &s(&["a", "b"]),
                    end_to_end: false
                },
                "c",
                "b",
                &p
            )
            .is_send()
        );
        assert!(
            !route_to_peer(
                &Outbound {
                    tlp: Tlp::Red,
                    origin: "a",
                    recipients: &s(&["c"]),
                    path: &[],
                    end_to_end: false
                },
                "a",
                "b",
                &p
            )
            .is_send()
        );
        assert!(
            route_to_peer(
                &Outbound {
                    tlp: Tlp::Red,
                    origin: "a",
                    recipients: &s(&["c"]),
                    path: &[],
                    end_to_end: false
                },
                "a",
                "c",
                &p
            )
            .is_send()
        );
        assert!(
            route_to_peer(
                &Outbound {
                    tlp: Tlp::Red,
                    origin: "a",
                    recipients: &s(&["b", "c"]),
                    path: &[],
                    end_to_end: false
                },
                "a",
                "b",
                &p
            )
            .is_send()
        );
    }
}

#[cfg(test)]
mod end_to_end_tests {
    use super::*;

    #[test]
    fn restricted_ciphertext_may_cross_relay_links_only() {
        let relay = PeerPolicy {
            max_tlp: Tlp::Red,
            relay: true,
        };
        let no_relay = PeerPolicy {
            max_tlp: Tlp::Red,
            relay: false,
        };
        let green_only = PeerPolicy {
            max_tlp: Tlp::Green,
            relay: true,
        };
        let to_c = vec!["node-c".to_string()];
        for tlp in [Tlp::Amber, Tlp::AmberStrict, Tlp::Red] {
            // Plaintext never goes to a non-recipient.
            assert!(
                !route_to_peer(
                    &Outbound {
                        tlp,
                        origin: "node-a",
                        recipients: &to_c,
                        path: &[],
                        end_to_end: false
                    },
                    "node-a",
                    "node-b",
                    &relay
                )
                .is_send()
            );
            // Ciphertext may cross a relay link toward the recipient...
            assert!(
                route_to_peer(
                    &Outbound {
                        tlp,
                        origin: "node-a",
                        recipients: &to_c,
                        path: &[],
                        end_to_end: true
                    },
                    "node-a",
                    "node-b",
                    &relay
                )
                .is_send()
            );
            // ...but not a link that refuses relaying, nor a peer capped below the TLP.
            assert!(
                !route_to_peer(
                    &Outbound {
                        tlp,
                        origin: "node-a",
                        recipients: &to_c,
                        path: &[],
                        end_to_end: true
                    },
                    "node-a",
                    "node-b",
                    &no_relay
                )
                .is_send()
            );
            assert!(
                !route_to_peer(
                    &Outbound {
                        tlp,
                        origin: "node-a",
                        recipients: &to_c,
                        path: &[],
                        end_to_end: true
                    },
                    "node-a",
                    "node-b",
                    &green_only
                )
                .is_send()
            );
            // A recipient that is a direct peer always gets it.
            assert!(
                route_to_peer(
                    &Outbound {
                        tlp,
                        origin: "node-a",
                        recipients: &to_c,
                        path: &[],
                        end_to_end: true
                    },
                    "node-a",
                    "node-c",
                    &no_relay
                )
                .is_send()
            );
            // Never a broadcast.
            assert!(
                !route_to_peer(
                    &Outbound {
                        tlp,
                        origin: "node-a",
                        recipients: &[],
                        path: &[],
                        end_to_end: true
                    },
                    "node-a",
                    "node-b",
                    &relay
                )
                .is_send()
            );
        }
    }
}
