//! Chain of custody: every relay signs a record of what it did with a message
//! (received from whom and when, forwarded to whom, which policy decision),
//! and every receiving node verifies the whole chain against pinned keys.
//! A record's free text (decision, forwarded-to names) is held to the rules of
//! [`crate::domain::text`], like every other text a partner sends.
//! The signatures of many chains may be checked at once
//! ([`verify_signatures`], Ed25519 batch verification); the proof it gives
//! is bound to the chain's bytes, and every other rule is still checked per
//! chain ([`verify_chain_checked`]).
use super::envelope::ts_to_ms;
use super::keys::{KeyRegistry, Signer};
use super::text::{self, Kind};
use crate::proto::v1::{HopRecord, SignedHop};
use ed25519_dalek::Signature;
use prost::Message;

/// Domain-separation prefix of hop record signatures.
pub const HOP_CONTEXT: &[u8] = b"certfed.v1.hop\x00";

fn signed_bytes(record: &[u8]) -> Vec<u8> {
    let mut m = HOP_CONTEXT.to_vec();
    m.extend_from_slice(record);
    m
}

/// Signs a hop record as this relay.
pub fn sign_hop(signer: &Signer, mut record: HopRecord) -> SignedHop {
    record.relay = signer.node_id.clone();
    record.signing_key_id = signer.key_id.clone();
    let bytes = record.encode_to_vec();
    let signature = signer.sign(&signed_bytes(&bytes)).to_bytes().to_vec();
    SignedHop {
        record: bytes,
        signature,
    }
}

/// Proof that every signature of one chain verified against the key its
/// record names (made only by [`verify_signatures`]), bound to that chain's
/// bytes: [`verify_chain_checked`] skips the signature checks only for the
/// very chain it was made for, and checks everything else as usual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignaturesChecked([u8; 32]);

/// Digest of a chain's records and signatures (binds a [`SignaturesChecked`]).
fn chain_digest(hops: &[SignedHop]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for hop in hops {
        h.update((hop.record.len() as u64).to_le_bytes());
        h.update(&hop.record);
        h.update((hop.signature.len() as u64).to_le_bytes());
        h.update(&hop.signature);
    }
    h.finalize().into()
}

/// Verifies the hop signatures of several chains at once (Ed25519 batch
/// verification: about half the work of one check per record), each record
/// against the pinned key it names. `Some` for a chain whose every record
/// decodes, names a pinned key and is signed by it; `None` when any of that
/// fails or the batch fails as a whole: such a chain is then checked record by
/// record by [`verify_chain_checked`], which names what is wrong. Nothing
/// else of a chain (relays, order, text, message) is checked here.
pub fn verify_signatures(
    reg: &KeyRegistry,
    chains: &[&[SignedHop]],
) -> Vec<Option<SignaturesChecked>> {
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    let mut sigs: Vec<Signature> = Vec::new();
    let mut keys = Vec::new();
    let mut ok: Vec<bool> = Vec::with_capacity(chains.len());
    for hops in chains {
        let mut good = !hops.is_empty();
        let mut these = Vec::with_capacity(hops.len());
        for hop in hops.iter() {
            let Ok(r) = HopRecord::decode(hop.record.as_slice()) else {
                good = false;
                break;
            };
            let Some((_, vk)) = reg.get(&r.signing_key_id) else {
                good = false;
                break;
            };
            let Ok(sig) = <[u8; 64]>::try_from(hop.signature.as_slice()) else {
                good = false;
                break;
            };
            these.push((signed_bytes(&hop.record), Signature::from_bytes(&sig), *vk));
        }
        if good {
            for (m, s, k) in these {
                msgs.push(m);
                sigs.push(s);
                keys.push(k);
            }
        }
        ok.push(good);
    }
    let all = match msgs.len() {
        0 => false,
        1 => super::sigcheck::verify(&msgs[0], &sigs[0], &keys[0]),
        _ => {
            let m: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
            super::sigcheck::verify_batch(&m, &sigs, &keys)
        }
    };
    chains
        .iter()
        .zip(ok)
        .map(|(hops, good)| (all && good).then(|| SignaturesChecked(chain_digest(hops))))
        .collect()
}

/// Verifies a chain received from `sender` for message `message_id` of
/// `origin`: each record signed by its relay's pinned key, about this message,
/// received from the previous node (the origin first), the last relay being
/// the sender (or no records when the sender is the origin), no node twice.
/// Returns the decoded records, or what is wrong, naming the hop.
///
/// The signatures are checked together (Ed25519 batch verification, about
/// half the work of one check each on a chain of several relays) after the
/// checks of the records; what is reported is what checking hop by hop
/// reports: the first hop whose signature does not verify (found by strict
/// checks one at a time when the batch fails), unless a record before it was
/// already wrong.
pub fn verify_chain(
    reg: &KeyRegistry,
    origin: &str,
    message_id: &str,
    sender: &str,
    hops: &[SignedHop],
) -> Result<Vec<HopRecord>, String> {
    verify_chain_checked(reg, origin, message_id, sender, hops, None)
}

/// [`verify_chain`], skipping the signature checks when `checked` proves
/// they passed for exactly this chain ([`verify_signatures`]); a proof made
/// for other bytes is ignored (every signature is checked).
pub fn verify_chain_checked(
    reg: &KeyRegistry,
    origin: &str,
    message_id: &str,
    sender: &str,
    hops: &[SignedHop],
    checked: Option<&SignaturesChecked>,
) -> Result<Vec<HopRecord>, String> {
    let signatures_checked = checked.is_some_and(|c| c.0 == chain_digest(hops));
    let mut records = Vec::with_capacity(hops.len());
    let mut signed: Vec<Signed> = Vec::with_capacity(hops.len());
    let found = check_records(
        reg,
        origin,
        message_id,
        sender,
        hops,
        &mut records,
        &mut signed,
    );
    // A signature failure at an earlier hop than the first wrong record is
    // the one reported (as hop-by-hop checking found it first).
    if !signatures_checked && let Some(k) = first_bad_signature(&signed) {
        let (n, relay) = (&signed[k].hop, &signed[k].relay);
        return Err(format!(
            "hop {n} ({relay}): signature does not verify (tampered record)"
        ));
    }
    found?;
    Ok(records)
}

/// A hop's signature, to check once the records are read.
struct Signed {
    hop: usize,
    relay: String,
    bytes: Vec<u8>,
    signature: Signature,
    key: ed25519_dalek::VerifyingKey,
}

/// The checks of [`verify_chain`] other than the signatures, hop by hop; the
/// signature of each hop checked so far (those before the first wrong
/// record, and that record's when the wrong part comes after its signature)
/// is left in `signed`.
fn check_records(
    reg: &KeyRegistry,
    origin: &str,
    message_id: &str,
    sender: &str,
    hops: &[SignedHop],
    records: &mut Vec<HopRecord>,
    signed: &mut Vec<Signed>,
) -> Result<(), String> {
    let mut previous = origin.to_string();
    let mut seen = vec![origin.to_string()];
    for (i, hop) in hops.iter().enumerate() {
        let n = i + 1;
        let r = HopRecord::decode(hop.record.as_slice())
            .map_err(|e| format!("hop {n}: record does not decode: {e}"))?;
        let (owner, vk) = reg.get(&r.signing_key_id).ok_or_else(|| {
            format!(
                "hop {n} ({}): signing key {} is not pinned",
                r.relay, r.signing_key_id
            )
        })?;
        if owner != r.relay {
            return Err(format!(
                "hop {n}: record claims relay {} but key {} belongs to {owner}",
                r.relay, r.signing_key_id
            ));
        }
        let sig: [u8; 64] = hop
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| format!("hop {n} ({}): signature is not 64 bytes", r.relay))?;
        signed.push(Signed {
            hop: n,
            relay: r.relay.clone(),
            bytes: signed_bytes(&hop.record),
            signature: Signature::from_bytes(&sig),
            key: *vk,
        });
        // The record's free text is shown to operators (GetMessage custody).
        let field = |f: &str| format!("hop {n} ({}) {f}", r.relay);
        text::check(&field("decision"), &r.decision, Kind::SingleLine)
            .map_err(|e| e.to_string())?;
        for (j, to) in r.forwarded_to.iter().enumerate() {
            text::check(&field(&format!("forwarded_to[{j}]")), to, Kind::SingleLine)
                .map_err(|e| e.to_string())?;
        }
        if r.message_id != message_id {
            return Err(format!(
                "hop {n} ({}): record is about another message",
                r.relay
            ));
        }
        if r.received_from != previous {
            return Err(format!(
                "hop {n} ({}): received from {} but the chain says {previous} had it",
                r.relay, r.received_from
            ));
        }
        if seen.contains(&r.relay) {
            return Err(format!("hop {n}: {} appears twice", r.relay));
        }
        seen.push(r.relay.clone());
        previous = r.relay.clone();
        records.push(r);
    }
    if previous != sender {
        return Err(format!(
            "the chain ends with {previous}, but the message came from {sender}"
        ));
    }
    Ok(())
}

/// The index in `signed` of the first signature that does not verify
/// (`sigcheck`'s rule). One batch check when there are several; single checks
/// otherwise, and to find the bad one when the batch fails.
fn first_bad_signature(signed: &[Signed]) -> Option<usize> {
    if signed.len() > 1 {
        let msgs: Vec<&[u8]> = signed.iter().map(|s| s.bytes.as_slice()).collect();
        let sigs: Vec<Signature> = signed.iter().map(|s| s.signature).collect();
        let keys: Vec<_> = signed.iter().map(|s| s.key).collect();
        if super::sigcheck::verify_batch(&msgs, &sigs, &keys) {
            return None;
        }
    }
    signed
        .iter()
        .position(|s| !super::sigcheck::verify(&s.bytes, &s.signature, &s.key))
}

/// The path a verified chain proves: (node, when it got the message).
pub fn path_of(origin: &str, created_ms: i64, records: &[HopRecord]) -> Vec<(String, i64)> {
    let mut p = vec![(origin.to_string(), created_ms)];
    p.extend(records.iter().map(|r| {
        (
            r.relay.clone(),
            r.received_at.as_ref().map(ts_to_ms).unwrap_or(0),
        )
    }));
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn setup() -> (Signer, Signer, KeyRegistry) {
        let b = Signer::new("node-b", SigningKey::from_bytes(&[2; 32]));
        let c = Signer::new("node-c", SigningKey::from_bytes(&[3; 32]));
        let mut reg = KeyRegistry::default();
        reg.add("node-b", b.verifying_key()).unwrap();
        reg.add("node-c", c.verifying_key()).unwrap();
        (b, c, reg)
    }

    fn rec(from: &str) -> HopRecord {
        HopRecord {
            message_id: "m".into(),
            received_from: from.into(),
            decision: "relayed".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_valid_chain_verifies_and_tampering_is_named() {
        let (b, c, reg) = setup();
        let chain = vec![sign_hop(&b, rec("node-a")), sign_hop(&c, rec("node-b"))];
        let recs = verify_chain(&reg, "node-a", "m", "node-c", &chain).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(
            path_of("node-a", 1, &recs)
                .iter()
                .map(|p| p.0.as_str())
                .collect::<Vec<_>>(),
            ["node-a", "node-b", "node-c"]
        );
        assert!(verify_chain(&reg, "node-a", "m", "node-a", &[]).is_ok());

        let mut t = chain.clone();
        let last = t[0].record.len() - 1;
        t[0].record[last] ^= 1;
        let e = verify_chain(&reg, "node-a", "m", "node-c", &t).unwrap_err();
        assert!(e.contains("hop 1") && e.contains("node-b"), "{e}");

        // Dropping a hop breaks the chain.
        let e = verify_chain(&reg, "node-a", "m", "node-c", &chain[1..]).unwrap_err();
        assert!(e.contains("received from node-b"), "{e}");
        // Wrong sender, wrong message.
        assert!(verify_chain(&reg, "node-a", "m", "node-b", &chain).is_err());
        assert!(verify_chain(&reg, "node-a", "other", "node-c", &chain).is_err());
        // A record signed by one relay claiming to be another.
        let mut forged = sign_hop(&c, rec("node-a"));
        let mut r = HopRecord::decode(forged.record.as_slice()).unwrap();
        r.relay = "node-b".into();
        forged.record = r.encode_to_vec();
        let e = verify_chain(&reg, "node-a", "m", "node-b", &[forged]).unwrap_err();
        assert!(e.contains("belongs to node-c"), "{e}");
        // A relay's free text is held to the text rules.
        let mut r = rec("node-a");
        r.decision = "relayed \u{1b}[2J".into();
        let e = verify_chain(&reg, "node-a", "m", "node-b", &[sign_hop(&b, r)]).unwrap_err();
        assert!(
            e.contains("hop 1 (node-b) decision") && e.contains("U+001B"),
            "{e}"
        );
        // No repeats.
        let looped = vec![
            sign_hop(&b, rec("node-a")),
            sign_hop(&c, rec("node-b")),
            sign_hop(&b, rec("node-c")),
        ];
        assert!(
            verify_chain(&reg, "node-a", "m", "node-b", &looped)
                .unwrap_err()
                .contains("twice")
        );
    }

    /// The signatures of a chain are checked together; a bad one is still
    /// named by its hop (the first, when several are bad), and a record
    /// found wrong before a bad signature is reported as hop-by-hop
    /// checking reports it (and the reverse).
    #[test]
    fn a_batch_checked_chain_names_the_first_bad_hop() {
        let (b, c, mut reg) = setup();
        let d = Signer::new("node-d", SigningKey::from_bytes(&[4; 32]));
        let e = Signer::new("node-e", SigningKey::from_bytes(&[5; 32]));
        reg.add("node-d", d.verifying_key()).unwrap();
        reg.add("node-e", e.verifying_key()).unwrap();
        let chain = vec![
            sign_hop(&b, rec("node-a")),
            sign_hop(&c, rec("node-b")),
            sign_hop(&d, rec("node-c")),
            sign_hop(&e, rec("node-d")),
        ];
        assert_eq!(
            verify_chain(&reg, "node-a", "m", "node-e", &chain)
                .unwrap()
                .len(),
            4
        );
        // A signature flipped at hop 3 (the record intact): hop 3 named.
        let mut t = chain.clone();
        t[2].signature[5] ^= 1;
        let err = verify_chain(&reg, "node-a", "m", "node-e", &t).unwrap_err();
        assert!(err.starts_with("hop 3 (node-d): signature"), "{err}");
        // Two bad: the first is named.
        t[1].signature[9] ^= 1;
        let err = verify_chain(&reg, "node-a", "m", "node-e", &t).unwrap_err();
        assert!(err.starts_with("hop 2 (node-c): signature"), "{err}");
        // A bad signature at hop 2 before a wrong record at hop 4.
        let mut t = chain.clone();
        t[1].signature[0] ^= 1;
        t[3] = sign_hop(&e, rec("node-x"));
        let err = verify_chain(&reg, "node-a", "m", "node-e", &t).unwrap_err();
        assert!(err.starts_with("hop 2 (node-c): signature"), "{err}");
        // A wrong record at hop 2 before a bad signature at hop 3.
        let mut t = chain.clone();
        t[1] = sign_hop(&c, rec("node-x"));
        t[2].signature[0] ^= 1;
        let err = verify_chain(&reg, "node-a", "m", "node-e", &t).unwrap_err();
        assert!(
            err.contains("hop 2 (node-c): received from node-x"),
            "{err}"
        );
        // A signature of another record of the same relay does not pass.
        let mut t = chain.clone();
        t[3].signature = sign_hop(&e, rec("node-c")).signature;
        let err = verify_chain(&reg, "node-a", "m", "node-e", &t).unwrap_err();
        assert!(err.starts_with("hop 4 (node-e): signature"), "{err}");
    }

    /// Signatures checked in a batch vouch only for the chains they were
    /// checked for: one bad signature anywhere gives no proof for any chain
    /// (each is then checked alone, naming the bad hop), and a proof used
    /// for other bytes is ignored (the tampered record is still refused).
    #[test]
    fn batch_checked_signatures_vouch_only_for_their_own_chain() {
        let (b, c, reg) = setup();
        let good = vec![sign_hop(&b, rec("node-a")), sign_hop(&c, rec("node-b"))];
        let other = vec![sign_hop(&b, rec("node-a"))];
        let proofs = verify_signatures(&reg, &[&good, &other, &[]]);
        assert!(proofs[0].is_some() && proofs[1].is_some());
        assert!(proofs[2].is_none(), "no chain, nothing to vouch for");
        let recs =
            verify_chain_checked(&reg, "node-a", "m", "node-c", &good, proofs[0].as_ref()).unwrap();
        assert_eq!(recs.len(), 2);
        // The other rules still apply with a proof.
        assert!(
            verify_chain_checked(&reg, "node-a", "m", "node-b", &good, proofs[0].as_ref()).is_err()
        );

        // A record changed after its signature: no proof for any chain of the batch.
        let mut tampered = good.clone();
        let mut r = HopRecord::decode(tampered[1].record.as_slice()).unwrap();
        r.decision = "changed".into();
        tampered[1].record = r.encode_to_vec();
        let proofs = verify_signatures(&reg, &[&other, &tampered]);
        assert!(proofs.iter().all(Option::is_none), "{proofs:?}");
        let e = verify_chain_checked(&reg, "node-a", "m", "node-c", &tampered, None).unwrap_err();
        assert!(
            e.contains("hop 2 (node-c): signature does not verify"),
            "{e}"
        );
        // The proof for the good chain does not carry over to the tampered one.
        let proof = verify_signatures(&reg, &[&good]).pop().flatten();
        assert!(proof.is_some());
        let e = verify_chain_checked(&reg, "node-a", "m", "node-c", &tampered, proof.as_ref())
            .unwrap_err();
        assert!(e.contains("signature does not verify"), "{e}");
        // A signature by a key not pinned: no proof.
        let stranger = Signer::new("node-b", ed25519_dalek::SigningKey::from_bytes(&[9; 32]));
        assert!(verify_signatures(&reg, &[&[sign_hop(&stranger, rec("node-a"))]])[0].is_none());
    }
}
