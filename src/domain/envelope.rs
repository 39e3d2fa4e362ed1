//! Signed envelopes. The origin serializes the header once and signs
//! `SIGNING_CONTEXT || header`; the header carries the SHA-256 of the payload, so
//! relays can check the signature on metadata alone. Receivers verify the exact
//! bytes they got and never re-encode them.
use super::keys::{KeyRegistry, Signer};
use super::policy::tlp_from_wire;
use crate::proto::v1::{AttachmentBlob, EnvelopeHeader, MessageKind, SignedEnvelope, Tlp};
use ed25519_dalek::Signature;
use prost::Message;
use sha2::{Digest, Sha256};

/// Domain-separation prefix of every envelope signature.
pub const SIGNING_CONTEXT: &[u8] = b"certfed.v1.envelope\x00";

/// What the origin decides about a message before signing it.
#[derive(Debug, Clone)]
pub struct Draft {
    pub message_id: String,
    pub kind: MessageKind,
    pub tlp: Tlp,
    pub recipients: Vec<String>,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub hop_limit: u32,
    pub exercise: bool,
    /// `payload` is an `EncryptedPayload` for the recipients (see `e2e`).
    pub encrypted: bool,
    pub payload: Vec<u8>,
}

/// Checks applied to received envelopes.
#[derive(Debug, Clone, Copy)]
pub struct VerifyLimits {
    pub max_message_bytes: usize,
    pub max_clock_skew_ms: i64,
    /// Envelopes created longer ago than this are refused for good
    /// (`limits.max_message_age_days`): a message purged by retention must
    /// not be accepted again.
    pub max_message_age_ms: i64,
}

/// A verified envelope: its decoded header and the proven origin.
#[derive(Debug, Clone)]
pub struct Verified {
    pub header: EnvelopeHeader,
}

/// Why an envelope was refused. Each names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("envelope is {size} bytes, over the receiver's limit of {limit} bytes")]
    Oversized { size: usize, limit: usize },
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("unknown signer: signing key {0} is not pinned for any federation member")]
    UnknownSigner(String),
    #[error(
        "false origin: header claims origin {claimed} but signing key {key_id} belongs to {owner}"
    )]
    OriginMismatch {
        claimed: String,
        owner: String,
        key_id: String,
    },
    #[error("bad signature: the signature does not match the header bytes (altered or forged)")]
    BadSignature,
    #[error("payload altered: its SHA-256 does not match the signed header")]
    PayloadMismatch,
    #[error("clock skew: created {ahead_ms} ms in the future, over the allowed {limit_ms} ms")]
    ClockSkew { ahead_ms: i64, limit_ms: i64 },
    #[error("expired: the message expired at {expires_ms} (unix ms)")]
    Expired { expires_ms: i64 },
    #[error(
        "too old: created {age_days} days ago (at {created_ms} unix ms), over the receiver's limit of {limit_days} days (limits.max_message_age_days); a permanent refusal: resending cannot succeed"
    )]
    TooOld {
        created_ms: i64,
        age_days: i64,
        limit_days: i64,
    },
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    #[error("refused by policy: {0}")]
    Policy(String),
    /// Refused for good by the federation roster: the signer is not (or no
    /// longer) in it, its key is outside its validity period, or a roster
    /// message does not follow the held roster. `kind` names the rule (for
    /// the roster's own metrics and logs).
    #[error("refused by the roster: {reason}")]
    Roster { kind: &'static str, reason: String },
    /// Refused for now: this node's roster is behind (a roster message skips
    /// a version this node has not received yet). Retrying succeeds once the
    /// missing version has arrived.
    #[error("this node's roster is not current yet: {0}")]
    RosterBehind(String),
}

impl Rejection {
    /// Every [`Rejection::label`], so metrics can show each reason at 0 before
    /// the first refusal. A new variant's label must be added here (a test in
    /// `service::metrics` fails to compile until it has a sample).
    pub const ALL_LABELS: &'static [&'static str] = &[
        "oversized",
        "malformed",
        "unknown_signer",
        "origin_mismatch",
        "bad_signature",
        "payload_mismatch",
        "clock_skew",
        "expired",
        "too_old",
        "invalid_payload",
        "policy",
        "roster",
        "roster_behind",
    ];

    /// Short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::Oversized { .. } => "oversized",
            Rejection::Malformed(_) => "malformed",
            Rejection::UnknownSigner(_) => "unknown_signer",
            Rejection::OriginMismatch { .. } => "origin_mismatch",
            Rejection::BadSignature => "bad_signature",
            Rejection::PayloadMismatch => "payload_mismatch",
            Rejection::ClockSkew { .. } => "clock_skew",
            Rejection::Expired { .. } => "expired",
            Rejection::TooOld { .. } => "too_old",
            Rejection::InvalidPayload(_) => "invalid_payload",
            Rejection::Policy(_) => "policy",
            Rejection::Roster { .. } => "roster",
            Rejection::RosterBehind(_) => "roster_behind",
        }
    }
}

pub fn ms_to_ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Milliseconds of a timestamp, saturating at the ends of `i64` (a crafted
/// value can neither overflow nor panic). Use [`checked_ts_to_ms`] where an
/// out-of-range time must be refused.
pub fn ts_to_ms(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

/// Latest second a timestamp may carry (9999-12-31T23:59:59Z, as RFC 3339 and
/// the protobuf `Timestamp` define it).
pub const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// Milliseconds of a timestamp within the range protobuf defines (0001-01-01 to
/// 9999-12-31, nanos below one second); `None` outside it.
pub fn checked_ts_to_ms(ts: &prost_types::Timestamp) -> Option<i64> {
    const MIN_SECONDS: i64 = -62_135_596_800;
    let ok = (MIN_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&ts.seconds)
        && (0..1_000_000_000).contains(&ts.nanos);
    ok.then(|| ts_to_ms(ts))
}

fn signed_bytes(header: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + header.len());
    m.extend_from_slice(SIGNING_CONTEXT);
    m.extend_from_slice(header);
    m
}

/// Signs a draft: serializes the header once and signs it.
pub fn seal(signer: &Signer, d: Draft) -> SignedEnvelope {
    seal_in_incident(signer, d, String::new())
}

/// [`seal`] for a message that belongs to incident `incident_id` (empty: none),
/// carried in the signed header (`EnvelopeHeader.incident_id`).
pub fn seal_in_incident(signer: &Signer, d: Draft, incident_id: String) -> SignedEnvelope {
    seal_with_attachments(signer, d, incident_id, Vec::new())
}

/// [`seal_in_incident`] for a message that carries attachments: their stored
/// forms (`domain::attachment`) go into the signed header.
pub fn seal_with_attachments(
    signer: &Signer,
    d: Draft,
    incident_id: String,
    attachments: Vec<AttachmentBlob>,
) -> SignedEnvelope {
    let header = EnvelopeHeader {
        incident_id,
        message_id: d.message_id,
        origin: signer.node_id.clone(),
        signing_key_id: signer.key_id.clone(),
        created: Some(ms_to_ts(d.created_ms)),
        expires: d.expires_ms.map(ms_to_ts),
        tlp: d.tlp as i32,
        recipients: d.recipients,
        hop_limit: d.hop_limit,
        kind: d.kind as i32,
        payload_sha256: Sha256::digest(&d.payload).to_vec(),
        exercise: d.exercise,
        encrypted: d.encrypted,
        attachments,
    }
    .encode_to_vec();
    let signature = signer.sign(&signed_bytes(&header)).to_bytes().to_vec();
    SignedEnvelope {
        header,
        payload: d.payload,
        signature,
    }
}

/// The envelope is within the size limit.
fn size_ok(env: &SignedEnvelope, limits: &VerifyLimits) -> Result<(), Rejection> {
    let size = env.encoded_len();
    if size > limits.max_message_bytes {
        return Err(Rejection::Oversized {
            size,
            limit: limits.max_message_bytes,
        });
    }
    Ok(())
}

/// The envelope's header, decoded.
fn decode_header(env: &SignedEnvelope) -> Result<EnvelopeHeader, Rejection> {
    EnvelopeHeader::decode(env.header.as_slice())
        .map_err(|e| Rejection::Malformed(format!("header does not decode: {e}")))
}

/// Structural and policy checks that need no key, after the size and the
/// decoding, on `header` decoded from `env.header`: header shape, payload
/// hash, clock. Returns the signature for the signature step.
fn prechecked(
    env: &SignedEnvelope,
    header: &EnvelopeHeader,
    now_ms: i64,
    limits: &VerifyLimits,
) -> Result<Signature, Rejection> {
    let sig: [u8; 64] = env.signature.as_slice().try_into().map_err(|_| {
        Rejection::Malformed(format!(
            "signature is {} bytes, expected 64",
            env.signature.len()
        ))
    })?;
    if uuid::Uuid::parse_str(&header.message_id).is_err() {
        return Err(Rejection::Malformed(format!(
            "message_id {:?} is not a UUID",
            header.message_id
        )));
    }
    if super::identity::validate_name(&header.origin).is_err() {
        return Err(Rejection::Malformed(format!(
            "origin {:?} is not a valid member id",
            header.origin
        )));
    }
    match MessageKind::try_from(header.kind) {
        Ok(MessageKind::Unspecified) | Err(_) => {
            return Err(Rejection::Malformed(format!(
                "unknown message kind {}",
                header.kind
            )));
        }
        Ok(_) => {}
    }
    tlp_from_wire(header.tlp)
        .map_err(|_| Rejection::Malformed(format!("unknown TLP {}", header.tlp)))?;
    let created = header
        .created
        .as_ref()
        .ok_or_else(|| Rejection::Malformed("header has no creation time".into()))
        .and_then(|t| {
            checked_ts_to_ms(t)
                .ok_or_else(|| Rejection::Malformed("header creation time is out of range".into()))
        })?;
    if let Some(exp) = &header.expires
        && checked_ts_to_ms(exp).is_none()
    {
        return Err(Rejection::Malformed(
            "header expiry time is out of range".into(),
        ));
    }
    if created - now_ms > limits.max_clock_skew_ms {
        return Err(Rejection::ClockSkew {
            ahead_ms: created - now_ms,
            limit_ms: limits.max_clock_skew_ms,
        });
    }
    if let Some(exp) = header.expires.as_ref().map(ts_to_ms)
        && exp <= now_ms
    {
        return Err(Rejection::Expired { expires_ms: exp });
    }
    let age = now_ms.saturating_sub(created);
    if age > limits.max_message_age_ms {
        const DAY_MS: i64 = 86_400_000;
        return Err(Rejection::TooOld {
            created_ms: created,
            age_days: age / DAY_MS,
            limit_days: limits.max_message_age_ms / DAY_MS,
        });
    }
    if Sha256::digest(&env.payload).as_slice() != header.payload_sha256.as_slice() {
        return Err(Rejection::PayloadMismatch);
    }
    Ok(Signature::from_bytes(&sig))
}

/// The checks of an envelope before its signature: size, decoding,
/// [`prechecked`], then its signing key — held, of the origin the header
/// names, valid at the message's creation. Returns the header, the
/// signature and the key.
fn checked(
    reg: &KeyRegistry,
    env: &SignedEnvelope,
    now_ms: i64,
    limits: &VerifyLimits,
) -> Result<(EnvelopeHeader, Signature, ed25519_dalek::VerifyingKey), Rejection> {
    size_ok(env, limits)?;
    let header = decode_header(env)?;
    let (sig, vk) = checked_decoded(reg, env, &header, now_ms, limits)?;
    Ok((header, sig, vk))
}

/// [`checked`] after the size and the decoding, on `header` decoded from
/// `env.header`: the signature and the key.
fn checked_decoded(
    reg: &KeyRegistry,
    env: &SignedEnvelope,
    header: &EnvelopeHeader,
    now_ms: i64,
    limits: &VerifyLimits,
) -> Result<(Signature, ed25519_dalek::VerifyingKey), Rejection> {
    let sig = prechecked(env, header, now_ms, limits)?;
    Ok((sig, signing_key(reg, header, now_ms)?))
}

/// The key that signed `header`: held, of the origin it names, valid at
/// the message's creation.
fn signing_key(
    reg: &KeyRegistry,
    header: &EnvelopeHeader,
    now_ms: i64,
) -> Result<ed25519_dalek::VerifyingKey, Rejection> {
    let key_id = &header.signing_key_id;
    let (owner, vk) = reg.get(key_id).ok_or_else(|| match reg.retired(key_id) {
        // A key the roster chain listed once: refused for good.
        Some(why) => Rejection::Roster {
            kind: "not_in_roster",
            reason: why.to_string(),
        },
        None => Rejection::UnknownSigner(key_id.clone()),
    })?;
    if owner != header.origin {
        return Err(Rejection::OriginMismatch {
            claimed: header.origin.clone(),
            owner: owner.to_string(),
            key_id: key_id.clone(),
        });
    }
    let created = header.created.as_ref().map(ts_to_ms).unwrap_or(now_ms);
    reg.check_use(key_id, created)
        .map_err(|reason| Rejection::Roster {
            kind: "key_not_valid",
            reason: format!("{owner}: {reason}"),
        })?;
    Ok(*vk)
}

/// Verifies a batch of envelopes. Uses Ed25519 batch verification
/// (`sigcheck::verify_batch`) when every precheck passes and falls back to
/// one-by-one checks under the same rule (`sigcheck::verify`) to find the bad
/// ones when the batch fails. Results are in input order.
pub fn verify_batch(
    reg: &KeyRegistry,
    envs: &[&SignedEnvelope],
    now_ms: i64,
    limits: &VerifyLimits,
) -> Vec<Result<Verified, Rejection>> {
    verify_batch_decoded(reg, envs, &mut [], now_ms, limits)
}

/// [`verify_batch`], for a caller that decoded the headers already:
/// `headers[i]`, when there and `Some`, is `envs[i].header` decoded (not
/// decoded again). Each header an envelope passes with moves into its
/// [`Verified`] (`None` left behind); a refused envelope's stays. The
/// checks read `headers[i]` where the signature covers `envs[i].header`:
/// give only the decoding of that envelope's own header bytes (a test
/// checks the verdicts equal those of decoding again).
pub fn verify_batch_decoded(
    reg: &KeyRegistry,
    envs: &[&SignedEnvelope],
    headers: &mut [Option<EnvelopeHeader>],
    now_ms: i64,
    limits: &VerifyLimits,
) -> Vec<Result<Verified, Rejection>> {
    let mut results: Vec<Result<Verified, Rejection>> = Vec::with_capacity(envs.len());
    // (index, signed message, signature, key) of the items still to verify.
    let mut pending = Vec::with_capacity(envs.len());
    for (i, env) in envs.iter().enumerate() {
        let decoded = headers.get_mut(i).and_then(Option::take);
        let given = decoded.is_some();
        let verdict = match decoded {
            Some(header) => match size_ok(env, limits)
                .and_then(|()| checked_decoded(reg, env, &header, now_ms, limits))
            {
                Ok((sig, vk)) => Ok((header, sig, vk)),
                Err(r) => {
                    // A refused envelope's header stays where it was given.
                    headers[i] = Some(header);
                    Err(r)
                }
            },
            None => checked(reg, env, now_ms, limits),
        };
        match verdict {
            Ok((header, sig, vk)) => {
                pending.push((i, signed_bytes(&env.header), sig, vk, given));
                results.push(Ok(Verified { header }));
            }
            Err(r) => results.push(Err(r)),
        }
    }
    if pending.is_empty() {
        return results;
    }
    let msgs: Vec<&[u8]> = pending.iter().map(|p| p.1.as_slice()).collect();
    let sigs: Vec<Signature> = pending.iter().map(|p| p.2).collect();
    let keys: Vec<_> = pending.iter().map(|p| p.3).collect();
    let batch_ok = pending.len() > 1 && super::sigcheck::verify_batch(&msgs, &sigs, &keys);
    if !batch_ok {
        for (i, msg, sig, vk, given) in &pending {
            if !super::sigcheck::verify(msg, sig, vk) {
                let passed = std::mem::replace(&mut results[*i], Err(Rejection::BadSignature));
                // A refused envelope's header goes back where it was given.
                if let (Ok(v), true) = (passed, *given) {
                    headers[*i] = Some(v.header);
                }
            }
        }
    }
    results
}

/// [`verify`] for an envelope this node has just sealed ([`seal`]) with the
/// signer whose public key is `sealed_with`, handed straight from the seal:
/// every check but the Ed25519 equation, and the key the registry holds for
/// the header's key id must be `sealed_with`. A signature made with a key's
/// secret always satisfies the rule (`sigcheck`: R = rB has no small-order
/// part, s is reduced), so the equation would cost a verification (about 37
/// µs, on every message this node publishes and every receipt it signs) to
/// learn nothing; what can differ — a key the registry no longer holds, or
/// holds for another member, or not at the message's creation time — is
/// checked as for a partner's envelope.
pub fn verify_own(
    reg: &KeyRegistry,
    env: &SignedEnvelope,
    sealed_with: &ed25519_dalek::VerifyingKey,
    now_ms: i64,
    limits: &VerifyLimits,
) -> Result<Verified, Rejection> {
    let (header, _, vk) = checked(reg, env, now_ms, limits)?;
    if vk != *sealed_with {
        return Err(Rejection::BadSignature);
    }
    Ok(Verified { header })
}

/// Verifies one envelope.
pub fn verify(
    reg: &KeyRegistry,
    env: &SignedEnvelope,
    now_ms: i64,
    limits: &VerifyLimits,
) -> Result<Verified, Rejection> {
    verify_batch(reg, &[env], now_ms, limits)
        .pop()
        .expect("one result per envelope")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn signer(id: &str, seed: u8) -> Signer {
        Signer::new(id, SigningKey::from_bytes(&[seed; 32]))
    }

    fn draft(now: i64) -> Draft {
        Draft {
            message_id: uuid::Uuid::now_v7().to_string(),
            kind: MessageKind::Alert,
            tlp: Tlp::Green,
            recipients: vec![],
            created_ms: now,
            expires_ms: None,
            hop_limit: 8,
            exercise: false,
            encrypted: false,
            payload: b"payload bytes".to_vec(),
        }
    }

    const DAY_MS: i64 = 86_400_000;

    const LIM: VerifyLimits = VerifyLimits {
        max_message_bytes: 4096,
        max_clock_skew_ms: 60_000,
        max_message_age_ms: 30 * DAY_MS,
    };

    fn setup() -> (Signer, Signer, KeyRegistry) {
        let a = signer("node-a", 1);
        let b = signer("node-b", 2);
        let mut reg = KeyRegistry::default();
        reg.add("node-a", a.verifying_key()).unwrap();
        reg.add("node-b", b.verifying_key()).unwrap();
        (a, b, reg)
    }

    /// Verification on headers the caller decoded gives the verdicts of
    /// verification that decodes them: for good envelopes, a bad signature,
    /// a changed payload, an unknown signer, an undecodable header, a
    /// header with a time ahead of the clock, and slots the caller left
    /// empty or did not give; a passing envelope's header moves into its
    /// verdict, a refused one's stays.
    #[test]
    fn decoded_headers_give_the_verdicts_of_decoding_again() {
        let (a, b, reg) = setup();
        let now = 1_000_000_000;
        let stranger = signer("node-x", 9);
        let mut envs: Vec<SignedEnvelope> = (0..4).map(|_| seal(&a, draft(now))).collect();
        envs.push(seal(&b, draft(now)));
        let mut bad_sig = seal(&a, draft(now));
        bad_sig.signature[5] ^= 1;
        envs.push(bad_sig);
        let mut changed = seal(&b, draft(now));
        changed.payload.push(0);
        envs.push(changed);
        envs.push(seal(&stranger, draft(now)));
        envs.push(seal(&a, draft(now + 3_600_000)));
        let mut garbage = seal(&a, draft(now));
        garbage.header = vec![0xff; 7];
        envs.push(garbage);
        let refs: Vec<&SignedEnvelope> = envs.iter().collect();
        let want = verify_batch(&reg, &refs, now, &LIM);
        assert_eq!(want.iter().filter(|v| v.is_ok()).count(), 5);
        for given in [envs.len(), envs.len() - 3, 0] {
            let mut headers: Vec<Option<EnvelopeHeader>> = envs[..given]
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    (i % 4 != 3)
                        .then(|| EnvelopeHeader::decode(e.header.as_slice()).ok())
                        .flatten()
                })
                .collect();
            let before: Vec<bool> = headers.iter().map(Option::is_some).collect();
            let got = verify_batch_decoded(&reg, &refs, &mut headers, now, &LIM);
            let plain =
                |v: &[Result<Verified, Rejection>]| -> Vec<Result<EnvelopeHeader, Rejection>> {
                    v.iter().map(|r| r.clone().map(|v| v.header)).collect()
                };
            assert_eq!(plain(&got), plain(&want), "{given} headers given");
            for (i, had) in before.iter().enumerate() {
                assert_eq!(
                    headers[i].is_some(),
                    *had && want[i].is_err(),
                    "slot {i}: moved exactly when it passed"
                );
            }
        }
    }

    #[test]
    fn seal_then_verify() {
        let (a, _, reg) = setup();
        let env = seal(&a, draft(1_000_000));
        let v = verify(&reg, &env, 1_000_000, &LIM).unwrap();
        assert_eq!(v.header.origin, "node-a");
        assert_eq!(v.header.signing_key_id, a.key_id);
    }

    /// What a verification of this node's own fresh envelope answers, as
    /// the full check would: the same verdict in every case the checks before
    /// the signature decide (kept, expired, too old, ahead of the clock, too
    /// large, unknown key, key of another member), and a refusal when the key
    /// the registry holds is not the one the envelope was sealed with. The
    /// claim it rests on — a signature made with the key's secret always
    /// passes the rule — is checked over 300 keys and messages.
    #[test]
    fn own_envelopes_get_the_full_checks_verdict_without_the_equation() {
        let (a, b, mut reg) = setup();
        let stranger = signer("node-x", 9);
        // node-a's key registered as node-b's.
        let mut alias = KeyRegistry::default();
        alias.add("node-b", a.verifying_key()).unwrap();
        let now = 1_000_000_000;
        let big = |mut d: Draft| {
            d.payload = vec![b'x'; 5000];
            d
        };
        let aged = |mut d: Draft, ms: i64| {
            d.created_ms += ms;
            d
        };
        let expiring = |mut d: Draft| {
            d.expires_ms = Some(now - 1);
            d
        };
        let cases: Vec<(&str, &Signer, Draft, &KeyRegistry)> = vec![
            ("fresh", &a, draft(now), &reg),
            ("too old", &a, aged(draft(now), -31 * DAY_MS), &reg),
            ("ahead", &a, aged(draft(now), 120_000), &reg),
            ("expired", &a, expiring(draft(now)), &reg),
            ("too large", &a, big(draft(now)), &reg),
            ("unknown key", &stranger, draft(now), &reg),
            ("another member's key", &a, draft(now), &alias),
        ];
        for (what, s, d, r) in cases {
            let env = seal(s, d);
            let full = verify(r, &env, now, &LIM).map(|v| v.header);
            let own = verify_own(r, &env, &s.verifying_key(), now, &LIM).map(|v| v.header);
            assert_eq!(own, full, "{what}");
        }
        // Sealed with one key, the registry holding another for its id.
        let env = seal(&a, draft(now));
        assert!(verify(&reg, &env, now, &LIM).is_ok());
        assert_eq!(
            verify_own(&reg, &env, &b.verifying_key(), now, &LIM).unwrap_err(),
            Rejection::BadSignature
        );
        for seed in 0..300u16 {
            let mut secret = [0u8; 32];
            secret[..2].copy_from_slice(&seed.to_le_bytes());
            secret[2] = 0xa5;
            let s = Signer::new("node-s", SigningKey::from_bytes(&secret));
            reg.add("node-s", s.verifying_key()).unwrap();
            let mut d = draft(now);
            d.payload = seed.to_be_bytes().repeat(usize::from(seed % 40));
            assert!(verify(&reg, &seal(&s, d), now, &LIM).is_ok(), "key {seed}");
        }
    }

    #[test]
    fn altered_header_payload_and_signature_are_refused() {
        let (a, _, reg) = setup();
        let env = seal(&a, draft(1_000_000));
        let mut h = env.clone();
        let last = h.header.len() - 1;
        h.header[last] ^= 1;
        assert!(verify(&reg, &h, 1_000_000, &LIM).is_err());
        let mut p = env.clone();
        p.payload[0] ^= 1;
        assert_eq!(
            verify(&reg, &p, 1_000_000, &LIM).unwrap_err(),
            Rejection::PayloadMismatch
        );
        let mut s = env.clone();
        s.signature[10] ^= 1;
        assert_eq!(
            verify(&reg, &s, 1_000_000, &LIM).unwrap_err(),
            Rejection::BadSignature
        );
        s.signature.pop();
        assert!(matches!(
            verify(&reg, &s, 1_000_000, &LIM).unwrap_err(),
            Rejection::Malformed(_)
        ));
    }

    #[test]
    fn false_origin_and_unknown_signer() {
        let (a, b, reg) = setup();
        // b's key but claiming to be a: re-sign a header naming node-a with b's key.
        let mut hdr = EnvelopeHeader::decode(seal(&a, draft(1_000_000)).header.as_slice()).unwrap();
        hdr.signing_key_id = b.key_id.clone();
        let header = hdr.encode_to_vec();
        let forged = SignedEnvelope {
            signature: b.sign(&signed_bytes(&header)).to_bytes().to_vec(),
            header,
            payload: b"payload bytes".to_vec(),
        };
        assert!(matches!(
            verify(&reg, &forged, 1_000_000, &LIM).unwrap_err(),
            Rejection::OriginMismatch { .. }
        ));
        let stranger = signer("node-x", 9);
        let env = seal(&stranger, draft(1_000_000));
        assert!(matches!(
            verify(&reg, &env, 1_000_000, &LIM).unwrap_err(),
            Rejection::UnknownSigner(_)
        ));
    }

    #[test]
    fn too_old_is_refused_for_good_with_the_limit_named() {
        let (a, _, reg) = setup();
        // 2026-01-01, and a message that claims 1970 with no expiry.
        let now = 1_767_225_600_000;
        let env = seal(&a, draft(0));
        let r = verify(&reg, &env, now, &LIM).unwrap_err();
        assert_eq!(
            r,
            Rejection::TooOld {
                created_ms: 0,
                age_days: now / DAY_MS,
                limit_days: 30
            }
        );
        assert_eq!(r.label(), "too_old");
        let text = r.to_string();
        assert!(text.contains("limits.max_message_age_days"), "{text}");
        assert!(text.contains("permanent"), "{text}");
        // Exactly at the limit is accepted; one millisecond over is not.
        let env = seal(&a, draft(now - 30 * DAY_MS));
        assert!(verify(&reg, &env, now, &LIM).is_ok());
        let env = seal(&a, draft(now - 30 * DAY_MS - 1));
        assert!(matches!(
            verify(&reg, &env, now, &LIM).unwrap_err(),
            Rejection::TooOld { age_days: 30, .. }
        ));
        // Even the oldest time protobuf allows neither overflows nor passes.
        let env = seal(&a, draft(-62_135_596_800_000));
        assert!(matches!(
            verify(&reg, &env, now, &LIM).unwrap_err(),
            Rejection::TooOld { .. }
        ));
    }

    #[test]
    fn clock_expiry_and_size() {
        let (a, _, reg) = setup();
        let env = seal(&a, draft(2_000_000));
        assert!(matches!(
            verify(&reg, &env, 1_000_000, &LIM).unwrap_err(),
            Rejection::ClockSkew { .. }
        ));
        let mut d = draft(1_000_000);
        d.expires_ms = Some(1_000_500);
        let env = seal(&a, d);
        assert!(verify(&reg, &env, 1_000_400, &LIM).is_ok());
        assert!(matches!(
            verify(&reg, &env, 1_000_600, &LIM).unwrap_err(),
            Rejection::Expired { .. }
        ));
        let mut d = draft(1_000_000);
        d.payload = vec![7; 5000];
        let env = seal(&a, d);
        assert!(matches!(
            verify(&reg, &env, 1_000_000, &LIM).unwrap_err(),
            Rejection::Oversized { .. }
        ));
    }

    #[test]
    fn out_of_range_times_are_refused_not_panics() {
        let (a, _, reg) = setup();
        let env = seal(&a, draft(1_000_000));
        let mut hdr = EnvelopeHeader::decode(env.header.as_slice()).unwrap();
        for (secs, nanos) in [(i64::MAX, 0), (i64::MIN, 0), (1, -1), (1, 1_000_000_000)] {
            hdr.created = Some(prost_types::Timestamp {
                seconds: secs,
                nanos,
            });
            let header = hdr.encode_to_vec();
            let forged = SignedEnvelope {
                signature: a.sign(&signed_bytes(&header)).to_bytes().to_vec(),
                header,
                payload: env.payload.clone(),
            };
            let r = verify(&reg, &forged, 1_000_000, &LIM);
            assert!(
                matches!(&r, Err(Rejection::Malformed(m)) if m.contains("out of range")),
                "{secs}/{nanos}: {r:?}"
            );
        }
        assert_eq!(
            ts_to_ms(&prost_types::Timestamp {
                seconds: i64::MAX,
                nanos: 999_999_999
            }),
            i64::MAX
        );
    }

    #[test]
    fn batch_isolates_the_bad_item() {
        let (a, b, reg) = setup();
        let mut envs: Vec<SignedEnvelope> = (0..20)
            .map(|i| seal(if i % 2 == 0 { &a } else { &b }, draft(1_000_000)))
            .collect();
        envs[7].signature[3] ^= 0x40;
        let refs: Vec<&SignedEnvelope> = envs.iter().collect();
        let res = verify_batch(&reg, &refs, 1_000_000, &LIM);
        for (i, r) in res.iter().enumerate() {
            if i == 7 {
                assert_eq!(r.as_ref().unwrap_err(), &Rejection::BadSignature);
            } else {
                assert!(r.is_ok(), "item {i}: {r:?}");
            }
        }
        // All good: batch path.
        envs[7] = seal(&a, draft(1_000_000));
        let refs: Vec<&SignedEnvelope> = envs.iter().collect();
        assert!(
            verify_batch(&reg, &refs, 1_000_000, &LIM)
                .iter()
                .all(Result::is_ok)
        );
    }
}
