//! The federation roster, as pure rules: what a roster document must hold,
//! when a node accepts one (TUF-style root rotation under a k-of-n quorum of
//! stewards), what trust it gives (member keys with validity periods, the TLS
//! anchors of each member), what changed between two versions, and the text
//! armor of roster files. Nothing here does I/O or reads a clock: `now` is
//! passed in.
//!
//! Invariants (unit- and property-tested in `roster_tests.rs`):
//! - Signatures are over `SIGNING_CONTEXT || roster bytes`, the exact bytes
//!   carried in `SignedRoster.roster`; nothing is ever re-encoded to check.
//! - Version N+1 is accepted on top of version N only with at least
//!   `threshold(N)` valid signatures by distinct stewards of N AND at least
//!   `threshold(N+1)` by distinct stewards of N+1. A signature by a key of
//!   neither set, or one that does not verify, refuses the roster whole.
//! - Versions only increase: a lower version is a rollback; the same version
//!   with other bytes is a FORK (refused, and an alarm for the caller); the
//!   same bytes again are [`Verdict::Same`] (a re-flood, not an error).
//! - A version more than one ahead of the held one is refused for now
//!   ([`RefusalKind::Ahead`], temporary) when it carries its own quorum: the
//!   missing version may still arrive; without its own quorum it is refused
//!   for good.
//! - An expired roster introduces nothing: it is never accepted as a new
//!   version nor as the first one. The held roster expiring is the caller's
//!   loud warning; trust stays as it is (fail-safe, read-only).
//! - Bad input (too large, malformed, wrong federation) is refused with a
//!   reason naming the rule; every refusal has a [`RefusalKind`] label for
//!   metrics.
use crate::domain::envelope::{Rejection, checked_ts_to_ms};
use crate::domain::identity::validate_name;
use crate::domain::keys::{KeyRegistry, key_id};
use crate::domain::text::{self, Kind, quote, rfc3339_ms};
use crate::proto::v1::{
    EnvelopeHeader, MemberKey, Roster, RosterMember, RosterSignature, SignedRoster, Steward, Tlp,
};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Domain-separation prefix of every steward signature.
pub const SIGNING_CONTEXT: &[u8] = b"certfed.v1.roster\x00";
/// Largest serialized SignedRoster accepted (it must also fit in one envelope
/// of every node: `limits.max_message_bytes`, 256 KiB by default).
pub const MAX_ROSTER_BYTES: usize = 192 * 1024;
/// Most members in one roster.
pub const MAX_MEMBERS: usize = 1000;
/// Most signing keys per member.
pub const MAX_KEYS: usize = 8;
/// Most CA certificates per member.
pub const MAX_CAS: usize = 8;
/// Largest CA certificate (DER).
pub const MAX_CA_BYTES: usize = 16 * 1024;
/// Most public-key pins per member.
pub const MAX_PINS: usize = 8;
/// Most stewards.
pub const MAX_STEWARDS: usize = 64;
/// Most signatures on one roster (every steward of two versions).
pub const MAX_SIGNATURES: usize = 2 * MAX_STEWARDS;
/// Longest display name, in bytes.
pub const MAX_DISPLAY_NAME: usize = 200;
/// Longest contact, in bytes.
pub const MAX_CONTACT: usize = 500;

/// First and last line of a roster file.
pub const ARMOR_BEGIN: &str = "-----BEGIN CERTFED ROSTER-----";
pub const ARMOR_END: &str = "-----END CERTFED ROSTER-----";

/// The rule a refused roster broke (a metric label each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    /// Larger than [`MAX_ROSTER_BYTES`].
    Oversized,
    /// Does not decode, or breaks a rule of the document's shape.
    Malformed,
    /// Already expired: an expired roster introduces nothing.
    Expired,
    /// Names another federation than the held roster.
    WrongFederation,
    /// A version below the held one.
    Rollback,
    /// The held version with different bytes: stewards signed two histories.
    Fork,
    /// More than one version ahead of the held one (temporary: the missing
    /// version may still arrive).
    Ahead,
    /// Fewer valid steward signatures than a threshold asks.
    TooFewSignatures,
    /// A signature by a key that is no steward of either version.
    NonSteward,
    /// A steward's signature that does not verify.
    BadSignature,
    /// This node follows a static `[[members]]` list and takes no roster.
    Static,
}

impl RefusalKind {
    /// Every kind, for metrics that list them from the start.
    pub const ALL: [RefusalKind; 11] = [
        RefusalKind::Oversized,
        RefusalKind::Malformed,
        RefusalKind::Expired,
        RefusalKind::WrongFederation,
        RefusalKind::Rollback,
        RefusalKind::Fork,
        RefusalKind::Ahead,
        RefusalKind::TooFewSignatures,
        RefusalKind::NonSteward,
        RefusalKind::BadSignature,
        RefusalKind::Static,
    ];

    /// Short label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            RefusalKind::Oversized => "oversized",
            RefusalKind::Malformed => "malformed",
            RefusalKind::Expired => "expired",
            RefusalKind::WrongFederation => "wrong_federation",
            RefusalKind::Rollback => "rollback",
            RefusalKind::Fork => "fork",
            RefusalKind::Ahead => "ahead",
            RefusalKind::TooFewSignatures => "too_few_signatures",
            RefusalKind::NonSteward => "non_steward_signature",
            RefusalKind::BadSignature => "bad_signature",
            RefusalKind::Static => "static_members",
        }
    }

    /// The kind with this label.
    pub fn from_label(label: &str) -> Option<RefusalKind> {
        RefusalKind::ALL.into_iter().find(|k| k.label() == label)
    }
}

/// Why a roster was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    pub kind: RefusalKind,
    pub reason: String,
}

impl Refusal {
    fn new(kind: RefusalKind, reason: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            reason: reason.into(),
        }
    }

    /// Whether retrying later can succeed (only [`RefusalKind::Ahead`]).
    pub fn is_temporary(&self) -> bool {
        self.kind == RefusalKind::Ahead
    }

    /// The envelope rejection for a roster message refused for this reason.
    pub fn to_rejection(&self) -> Rejection {
        if self.is_temporary() {
            Rejection::RosterBehind(self.reason.clone())
        } else {
            Rejection::Roster {
                kind: self.kind.label(),
                reason: self.reason.clone(),
            }
        }
    }
}

fn malformed(reason: impl Into<String>) -> Refusal {
    Refusal::new(RefusalKind::Malformed, reason)
}

/// A roster that decodes and whose content follows the rules of
/// [`check_shape`]; its signatures are not checked yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The decoded roster.
    pub roster: Roster,
    /// The roster bytes as signed, and the signatures.
    pub signed: SignedRoster,
}

impl Document {
    pub fn version(&self) -> u64 {
        self.roster.version
    }

    /// The serialized SignedRoster (what travels and what files hold; the
    /// signed roster bytes inside it are the ones received).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.signed.encode_to_vec()
    }

    /// When it expires (unix ms); checked in range by [`check_shape`].
    pub fn expires_ms(&self) -> i64 {
        self.roster
            .expires
            .as_ref()
            .and_then(checked_ts_to_ms)
            .unwrap_or(i64::MIN)
    }

    /// Whether it has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_ms() <= now_ms
    }

    /// The member with id `id`.
    pub fn member(&self, id: &str) -> Option<&RosterMember> {
        self.roster.members.iter().find(|m| m.id == id)
    }

    /// Its stewards and threshold, the quorum the next version needs.
    pub fn quorum(&self) -> Quorum {
        Quorum {
            stewards: self.roster.stewards.clone(),
            threshold: self.roster.threshold,
            version: Some(self.roster.version),
        }
    }
}

/// A set of stewards and how many of them must sign.
#[derive(Debug, Clone, PartialEq)]
pub struct Quorum {
    pub stewards: Vec<Steward>,
    pub threshold: u32,
    /// The roster version they come from (`None`: stewards pinned in the
    /// configuration).
    pub version: Option<u64>,
}

impl Quorum {
    fn name(&self) -> String {
        match self.version {
            Some(v) => format!("version {v}'s stewards"),
            None => "the configured (pinned) stewards".to_string(),
        }
    }

    /// Checks a set of stewards and threshold given in a configuration.
    pub fn pinned(stewards: Vec<Steward>, threshold: u32) -> Result<Quorum, String> {
        check_stewards(&stewards, threshold)?;
        Ok(Quorum {
            stewards,
            threshold,
            version: None,
        })
    }
}

/// A roster this node has accepted, with the stewards whose signatures it
/// verified and the quorum that admitted it.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub doc: Document,
    /// Ids of the stewards whose signatures verified (of either quorum), sorted.
    pub signed_by: Vec<String>,
    /// The quorum of the version before it, or the pinned stewards (`None`:
    /// accepted on its own signatures, from the configured roster file).
    pub admitted_by: Option<Quorum>,
    /// When this node accepted it (unix ms).
    pub accepted_ms: i64,
}

impl Accepted {
    pub fn version(&self) -> u64 {
        self.doc.version()
    }

    /// Whether only exercise traffic is accepted from member `id`.
    pub fn exercise_only(&self, id: &str) -> bool {
        self.doc.member(id).is_some_and(|m| m.exercise_only)
    }

    /// Whether `id` is a member.
    pub fn is_member(&self, id: &str) -> bool {
        self.doc.member(id).is_some()
    }
}

/// What a node's roster trust rests on.
#[derive(Debug, Clone, PartialEq)]
pub enum Anchor {
    /// No roster yet: the first one must carry this quorum of pinned
    /// stewards (and its own).
    Pinned(Quorum),
    /// The roster held now.
    Current(Box<Accepted>),
}

impl Anchor {
    /// The roster held, if any.
    pub fn current(&self) -> Option<&Accepted> {
        match self {
            Anchor::Current(a) => Some(a),
            Anchor::Pinned(_) => None,
        }
    }

    /// The version held (0: none yet).
    pub fn version(&self) -> u64 {
        self.current().map_or(0, Accepted::version)
    }
}

/// The outcome of checking a roster against the anchor.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A new version to apply.
    Apply(Box<Accepted>),
    /// Exactly the roster held (a re-flood): nothing to apply.
    Same,
}

/// Decodes a serialized SignedRoster and checks its shape (not its signatures).
pub fn parse(bytes: &[u8]) -> Result<Document, Refusal> {
    if bytes.len() > MAX_ROSTER_BYTES {
        return Err(Refusal::new(
            RefusalKind::Oversized,
            format!(
                "the roster is {} bytes, over the limit of {MAX_ROSTER_BYTES} bytes",
                bytes.len()
            ),
        ));
    }
    let signed = SignedRoster::decode(bytes)
        .map_err(|e| malformed(format!("the roster does not decode as a SignedRoster: {e}")))?;
    if signed.signatures.len() > MAX_SIGNATURES {
        return Err(malformed(format!(
            "the roster carries {} signatures, more than {MAX_SIGNATURES}",
            signed.signatures.len()
        )));
    }
    let roster = Roster::decode(signed.roster.as_slice())
        .map_err(|e| malformed(format!("the signed roster bytes do not decode: {e}")))?;
    check_shape(&roster)
        .map_err(|e| malformed(format!("roster version {}: {e}", roster.version)))?;
    Ok(Document { roster, signed })
}

/// A raw 32-byte Ed25519 public key.
pub fn public_key(field: &str, raw: &[u8]) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = raw.try_into().map_err(|_| {
        format!(
            "{field}: {} bytes, expected a raw 32-byte Ed25519 key",
            raw.len()
        )
    })?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|e| format!("not an Ed25519 public key: {e}"))
        .and_then(super::keys::usable)
        .map_err(|e| format!("{field}: {e}"))
}

fn ts_field(field: &str, t: &Option<prost_types::Timestamp>) -> Result<Option<i64>, String> {
    match t {
        None => Ok(None),
        Some(t) => checked_ts_to_ms(t)
            .map(Some)
            .ok_or_else(|| format!("{field}: out of range")),
    }
}

fn check_stewards(stewards: &[Steward], threshold: u32) -> Result<(), String> {
    if stewards.is_empty() || stewards.len() > MAX_STEWARDS {
        return Err(format!(
            "stewards: list 1 to {MAX_STEWARDS} stewards ({} listed)",
            stewards.len()
        ));
    }
    let mut ids = HashSet::new();
    let mut keys = HashSet::new();
    for (i, s) in stewards.iter().enumerate() {
        validate_name(&s.id).map_err(|e| format!("stewards[{i}].id: {e}"))?;
        if !ids.insert(s.id.as_str()) {
            return Err(format!("stewards[{i}].id: {} is listed twice", s.id));
        }
        let vk = public_key(&format!("stewards[{i}].public_key"), &s.public_key)?;
        if !keys.insert(key_id(&vk)) {
            return Err(format!(
                "stewards[{i}]: the key of {} is listed for another steward too",
                s.id
            ));
        }
    }
    if threshold == 0 || threshold as usize > stewards.len() {
        return Err(format!(
            "threshold: {threshold}; must be between 1 and the number of stewards ({})",
            stewards.len()
        ));
    }
    Ok(())
}

/// Checks what a roster must hold, whatever its signatures: a federation
/// name, a version from 1, issue and expiry times in order, members with
/// distinct ids and keys, TLS anchors for each, clean text, stewards with
/// distinct ids and keys and a threshold they can meet. The error names the
/// field.
pub fn check_shape(r: &Roster) -> Result<(), String> {
    validate_name(&r.federation).map_err(|e| format!("federation: {e}"))?;
    if r.version == 0 {
        return Err("version: must be at least 1".into());
    }
    let issued = ts_field("issued", &r.issued)?.ok_or_else(|| "issued: required".to_string())?;
    let expires =
        ts_field("expires", &r.expires)?.ok_or_else(|| "expires: required".to_string())?;
    if expires <= issued {
        return Err("expires: must be after issued".into());
    }
    check_stewards(&r.stewards, r.threshold)?;
    let steward_keys: HashSet<String> = r
        .stewards
        .iter()
        .filter_map(|s| public_key("", &s.public_key).ok())
        .map(|k| key_id(&k))
        .collect();
    if r.members.len() > MAX_MEMBERS {
        return Err(format!(
            "members: {} listed, at most {MAX_MEMBERS}",
            r.members.len()
        ));
    }
    let mut ids = HashSet::new();
    let mut all_keys: BTreeMap<String, String> = BTreeMap::new();
    for (i, m) in r.members.iter().enumerate() {
        let f = |name: &str| format!("members[{i}].{name}");
        validate_name(&m.id).map_err(|e| format!("{}: {e}", f("id")))?;
        if !ids.insert(m.id.as_str()) {
            return Err(format!("{}: {} is listed twice", f("id"), m.id));
        }
        if m.signing_keys.is_empty() || m.signing_keys.len() > MAX_KEYS {
            return Err(format!(
                "{}: {} needs 1 to {MAX_KEYS} signing keys ({} listed)",
                f("signing_keys"),
                m.id,
                m.signing_keys.len()
            ));
        }
        for (j, k) in m.signing_keys.iter().enumerate() {
            let field = format!("members[{i}].signing_keys[{j}]");
            let vk = public_key(&format!("{field}.public_key"), &k.public_key)?;
            let kid = key_id(&vk);
            if let Some(other) = all_keys.insert(kid.clone(), m.id.clone()) {
                return Err(format!(
                    "{field}: key {kid} is listed for {other} too (or twice for {})",
                    m.id
                ));
            }
            if steward_keys.contains(&kid) {
                return Err(format!(
                    "{field}: key {kid} is also a steward's key; keep steward keys apart from message-signing keys"
                ));
            }
            let from = ts_field(&format!("{field}.not_before"), &k.not_before)?;
            let until = ts_field(&format!("{field}.not_after"), &k.not_after)?;
            if let (Some(a), Some(b)) = (from, until)
                && b <= a
            {
                return Err(format!("{field}.not_after: must be after not_before"));
            }
        }
        if m.tls_cas.is_empty() && m.tls_pins.is_empty() {
            return Err(format!(
                "members[{i}]: {} has neither a CA (tls_cas) nor a pin (tls_pins) to vouch for its TLS certificates",
                m.id
            ));
        }
        if m.tls_cas.len() > MAX_CAS {
            return Err(format!("{}: at most {MAX_CAS}", f("tls_cas")));
        }
        for (j, ca) in m.tls_cas.iter().enumerate() {
            check_ca(ca).map_err(|e| format!("members[{i}].tls_cas[{j}]: {e}"))?;
        }
        if m.tls_pins.len() > MAX_PINS {
            return Err(format!("{}: at most {MAX_PINS}", f("tls_pins")));
        }
        for (j, p) in m.tls_pins.iter().enumerate() {
            if p.len() != 32 {
                return Err(format!(
                    "members[{i}].tls_pins[{j}]: {} bytes, expected a 32-byte SHA-256 digest",
                    p.len()
                ));
            }
        }
        text::check(&f("display_name"), &m.display_name, Kind::SingleLine)
            .map_err(|e| e.to_string())?;
        if m.display_name.len() > MAX_DISPLAY_NAME {
            return Err(format!(
                "{}: at most {MAX_DISPLAY_NAME} bytes",
                f("display_name")
            ));
        }
        text::check(&f("contact"), &m.contact, Kind::SingleLine).map_err(|e| e.to_string())?;
        if m.contact.len() > MAX_CONTACT {
            return Err(format!("{}: at most {MAX_CONTACT} bytes", f("contact")));
        }
        let cc_ok = m.country.is_empty()
            || (m.country.len() == 2 && m.country.chars().all(|c| c.is_ascii_uppercase()));
        if !cc_ok {
            return Err(format!(
                "{}: {} is not an ISO 3166-1 alpha-2 code in upper case (e.g. EE)",
                f("country"),
                quote(&m.country)
            ));
        }
    }
    Ok(())
}

/// Checks a DER certificate meant as a trust anchor: it parses, whole, and is a CA.
fn check_ca(der: &[u8]) -> Result<(), String> {
    use x509_parser::prelude::*;
    if der.len() > MAX_CA_BYTES {
        return Err(format!(
            "{} bytes, over the limit of {MAX_CA_BYTES}",
            der.len()
        ));
    }
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not a DER certificate: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the certificate".into());
    }
    if !cert.is_ca() {
        return Err(format!(
            "{} is not a CA certificate (basicConstraints CA:TRUE)",
            cert.subject()
        ));
    }
    Ok(())
}

/// Most intermediate CAs followed from a peer's certificate towards a CA the
/// roster lists for its member.
pub const MAX_INTERMEDIATES: usize = 4;

/// Whether roster `r` vouches for `cert_der`, a TLS certificate naming
/// member `member`, presented alone (see [`vouches_chain`]).
pub fn vouches(r: &Roster, member: &str, cert_der: &[u8]) -> Result<(), String> {
    vouches_chain(r, member, cert_der, &[])
}

/// Whether roster `r` vouches for `cert_der`, a TLS certificate naming
/// member `member`, with the intermediate CA certificates the peer presented
/// after it: the certificate's public key is pinned for the member, or the
/// certificate was issued (issuer name and signature) by one of the CA
/// certificates the roster lists for the member, directly or through at
/// most [`MAX_INTERMEDIATES`] presented intermediates (each a CA, each
/// issued by the next) — so a CA listed for another member, or an
/// intermediate it issued, cannot mint a certificate that passes as this
/// one. The chain to the node's trust anchors, validity and revocation are
/// checked by the TLS handshake before this; the error says what to fix.
pub fn vouches_chain(
    r: &Roster,
    member: &str,
    cert_der: &[u8],
    intermediates: &[&[u8]],
) -> Result<(), String> {
    use sha2::Digest as _;
    use x509_parser::prelude::*;
    let Some(m) = r.members.iter().find(|m| m.id == member) else {
        return Err(format!("{member} is not in roster v{}", r.version));
    };
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| format!("the certificate for {member} does not parse: {e}"))?;
    let spki = sha2::Sha256::digest(cert.public_key().raw);
    if m.tls_pins.iter().any(|p| p.as_slice() == spki.as_slice()) {
        return Ok(());
    }
    if chains_to(&cert, intermediates, &m.tls_cas) {
        return Ok(());
    }
    Err(format!(
        "the certificate for {member} (issued by {}) does not chain to a CA that roster v{} lists for {member} (directly or through the intermediates it presented), and its key is not pinned there: another member's CA cannot vouch for {member}",
        quote(&cert.issuer().to_string()),
        r.version
    ))
}

/// Whether `cert` was issued by one of `cas` (DER), directly or through at
/// most [`MAX_INTERMEDIATES`] of the `intermediates` (each a CA issued by
/// the next; issuer name and signature checked at every step).
fn chains_to(
    cert: &x509_parser::certificate::X509Certificate<'_>,
    intermediates: &[&[u8]],
    cas: &[Vec<u8>],
) -> bool {
    use x509_parser::prelude::*;
    let cas: Vec<X509Certificate<'_>> = cas
        .iter()
        .filter_map(|ca| X509Certificate::from_der(ca).ok().map(|(_, c)| c))
        .collect();
    let issued_by = |c: &X509Certificate<'_>, by: &X509Certificate<'_>| {
        by.subject().as_raw() == c.issuer().as_raw()
            && c.verify_signature(Some(by.public_key())).is_ok()
    };
    let presented: Vec<X509Certificate<'_>> = intermediates
        .iter()
        .filter_map(|d| X509Certificate::from_der(d).ok().map(|(_, c)| c))
        .filter(|c| c.is_ca())
        .collect();
    // Walk up from the certificate: at each step, a listed CA that issued
    // the current certificate vouches; else follow a presented intermediate.
    let mut current = cert.clone();
    for _ in 0..=MAX_INTERMEDIATES {
        if cas.iter().any(|ca| issued_by(&current, ca)) {
            return true;
        }
        match presented.iter().find(|i| issued_by(&current, i)) {
            Some(next) if next.subject().as_raw() != current.subject().as_raw() => {
                current = next.clone();
            }
            _ => return false,
        }
    }
    false
}

/// Whether roster `r` lets operator certificate `cert_der` (with the
/// intermediates presented after it) use the Operator API of node `me`: it
/// must chain to a CA the roster lists for `me` itself, so that no other
/// member's CA can mint an operator of this node. A roster that lists no CA
/// for `me` (public-key pins only), or does not list `me`, leaves operators
/// to `tls.ca` alone.
pub fn vouches_operator(
    r: &Roster,
    me: &str,
    operator: &str,
    cert_der: &[u8],
    intermediates: &[&[u8]],
) -> Result<(), String> {
    use x509_parser::prelude::*;
    // A node the roster does not list (removed: cut off from the
    // federation) or lists with pins only keeps its operators on `tls.ca`,
    // so that they can still see what happened.
    let Some(m) = r.members.iter().find(|m| m.id == me) else {
        return Ok(());
    };
    if m.tls_cas.is_empty() {
        return Ok(());
    }
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| format!("the operator certificate does not parse: {e}"))?;
    if chains_to(&cert, intermediates, &m.tls_cas) {
        return Ok(());
    }
    Err(format!(
        "the operator certificate of {} (issued by {}) does not chain to a CA that roster v{} lists for this node {me}: issue operator certificates from {me}'s own CA",
        quote(operator),
        quote(&cert.issuer().to_string()),
        r.version
    ))
}

/// The subject of a DER certificate, for people (empty if it does not parse).
pub fn ca_subject(der: &[u8]) -> String {
    use x509_parser::prelude::*;
    X509Certificate::from_der(der)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_default()
}

fn signed_bytes(roster: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + roster.len());
    m.extend_from_slice(SIGNING_CONTEXT);
    m.extend_from_slice(roster);
    m
}

/// Adds (or replaces) the signature of `key` over the roster bytes, exactly
/// as they are; returns the key id.
pub fn sign(signed: &mut SignedRoster, key: &SigningKey) -> String {
    use ed25519_dalek::Signer as _;
    let kid = key_id(&key.verifying_key());
    let signature = key.sign(&signed_bytes(&signed.roster)).to_bytes().to_vec();
    signed.signatures.retain(|s| s.key_id != kid);
    signed.signatures.push(RosterSignature {
        key_id: kid.clone(),
        signature,
    });
    kid
}

/// The steward (of `quorum`) owning key id `kid`.
fn steward_of<'a>(quorum: &'a [Steward], kid: &str) -> Option<&'a Steward> {
    quorum.iter().find(|s| {
        public_key("", &s.public_key)
            .map(|k| key_id(&k) == kid)
            .unwrap_or(false)
    })
}

/// Verifies every signature of `doc`: each must be by a steward of `before`
/// (the quorum that must admit it, if any) or of the document itself, and
/// verify. Then each quorum's threshold must be met by distinct stewards.
/// Returns the ids of the stewards who signed, sorted.
pub fn verify_signatures(doc: &Document, before: Option<&Quorum>) -> Result<Vec<String>, Refusal> {
    let own = doc.quorum();
    let v = doc.version();
    let msg = signed_bytes(&doc.signed.roster);
    let mut verified: BTreeSet<String> = BTreeSet::new(); // key ids
    for (i, s) in doc.signed.signatures.iter().enumerate() {
        let steward = steward_of(&own.stewards, &s.key_id)
            .or_else(|| before.and_then(|b| steward_of(&b.stewards, &s.key_id)));
        let Some(steward) = steward else {
            let whose = match before {
                Some(b) => format!("neither a steward of version {v} nor one of {}", b.name()),
                None => format!("not a steward of version {v}"),
            };
            return Err(Refusal::new(
                RefusalKind::NonSteward,
                format!(
                    "signatures[{i}]: key {} is {whose}; a roster carries stewards' signatures only",
                    quote(&s.key_id)
                ),
            ));
        };
        let sig: [u8; 64] = s.signature.as_slice().try_into().map_err(|_| {
            malformed(format!(
                "signatures[{i}]: {} bytes, expected a 64-byte Ed25519 signature",
                s.signature.len()
            ))
        })?;
        let vk = public_key("", &steward.public_key).map_err(malformed)?;
        if !super::sigcheck::verify(&msg, &Signature::from_bytes(&sig), &vk) {
            return Err(Refusal::new(
                RefusalKind::BadSignature,
                format!(
                    "signatures[{i}]: the signature of steward {} (key {}) does not verify: the roster was altered after signing, or the signature is forged",
                    steward.id, s.key_id
                ),
            ));
        }
        verified.insert(s.key_id.clone());
    }
    let mut signed_by = BTreeSet::new();
    let mut count = |q: &Quorum| -> Result<(), Refusal> {
        let who: Vec<&str> = q
            .stewards
            .iter()
            .filter(|s| public_key("", &s.public_key).is_ok_and(|k| verified.contains(&key_id(&k))))
            .map(|s| s.id.as_str())
            .collect();
        signed_by.extend(who.iter().map(|s| s.to_string()));
        if (who.len() as u64) < u64::from(q.threshold) {
            return Err(Refusal::new(
                RefusalKind::TooFewSignatures,
                format!(
                    "version {v} is signed by {} of {} ({}); {} are needed",
                    who.len(),
                    q.name(),
                    if who.is_empty() {
                        "none".to_string()
                    } else {
                        who.join(", ")
                    },
                    q.threshold
                ),
            ));
        }
        Ok(())
    };
    if let Some(b) = before {
        count(b)?;
    }
    count(&Quorum {
        version: Some(v),
        ..own
    })?;
    Ok(signed_by.into_iter().collect())
}

fn expired_refusal(doc: &Document) -> Refusal {
    Refusal::new(
        RefusalKind::Expired,
        format!(
            "version {} expired at {}; an expired roster introduces nothing (ask the stewards for a current one)",
            doc.version(),
            rfc3339_ms(doc.expires_ms())
        ),
    )
}

/// Checks a roster to start from when this node holds none: it must not be
/// expired and must carry its own quorum, and that of `pinned` stewards if
/// the configuration pins some.
pub fn check_first(
    doc: Document,
    pinned: Option<&Quorum>,
    now_ms: i64,
) -> Result<Accepted, Refusal> {
    if doc.is_expired(now_ms) {
        return Err(expired_refusal(&doc));
    }
    let signed_by = verify_signatures(&doc, pinned)?;
    Ok(Accepted {
        doc,
        signed_by,
        admitted_by: pinned.cloned(),
        accepted_ms: now_ms,
    })
}

/// Checks a roster against what this node holds (the rules of the module
/// documentation).
pub fn check(anchor: &Anchor, doc: Document, now_ms: i64) -> Result<Verdict, Refusal> {
    let cur = match anchor {
        Anchor::Pinned(q) => {
            return check_first(doc, Some(q), now_ms).map(|a| Verdict::Apply(Box::new(a)));
        }
        Anchor::Current(cur) => cur,
    };
    let held = cur.version();
    let v = doc.version();
    if doc.roster.federation != cur.doc.roster.federation {
        return Err(Refusal::new(
            RefusalKind::WrongFederation,
            format!(
                "the roster is for federation {}, this node follows {}",
                quote(&doc.roster.federation),
                cur.doc.roster.federation
            ),
        ));
    }
    if v < held {
        return Err(Refusal::new(
            RefusalKind::Rollback,
            format!(
                "version {v} is older than the version {held} this node holds; versions only increase"
            ),
        ));
    }
    if v == held {
        if doc.signed.roster == cur.doc.signed.roster {
            return Ok(Verdict::Same);
        }
        // Only a version carrying the quorum that admitted the held one (or,
        // for a first roster, the held one's own stewards) is a fork; anything
        // else is merely a bad roster.
        let quorum = cur.admitted_by.clone().unwrap_or_else(|| cur.doc.quorum());
        let signers = verify_signatures(&doc, Some(&quorum))?;
        return Err(Refusal::new(
            RefusalKind::Fork,
            format!(
                "FORK: another version {v}, signed by a steward quorum ({}), while this node holds a different version {v}: stewards' keys signed two histories; the held version stays in force",
                signers.join(", ")
            ),
        ));
    }
    if v > held + 1 {
        // Worth waiting for only if it carries its own quorum.
        verify_signatures(&doc, None)?;
        return Err(Refusal::new(
            RefusalKind::Ahead,
            format!(
                "version {v} follows version {}, which this node has not received yet (it holds version {held})",
                v - 1
            ),
        ));
    }
    if doc.is_expired(now_ms) {
        return Err(expired_refusal(&doc));
    }
    let before = cur.doc.quorum();
    let signed_by = verify_signatures(&doc, Some(&before))?;
    Ok(Verdict::Apply(Box::new(Accepted {
        doc,
        signed_by,
        admitted_by: Some(before),
        accepted_ms: now_ms,
    })))
}

/// Admission of a roster message (kind ROSTER): a TLP:CLEAR, unencrypted
/// payload that follows the held roster ([`check`]). `anchor` is `None` on a
/// node with a static `[[members]]` list. The same roster again is admitted
/// (it is a re-flood; the store deduplicates the message).
pub fn admit_message(
    anchor: Option<&Anchor>,
    h: &EnvelopeHeader,
    body: &[u8],
    now_ms: i64,
) -> Result<(), Rejection> {
    if h.tlp != Tlp::Clear as i32 || h.encrypted {
        return Err(Rejection::Policy(
            "a roster travels as an unencrypted TLP:CLEAR message".into(),
        ));
    }
    let Some(anchor) = anchor else {
        let r = Refusal::new(
            RefusalKind::Static,
            "this node follows a static [[members]] list and takes no roster",
        );
        return Err(r.to_rejection());
    };
    let doc = parse(body).map_err(|r| r.to_rejection())?;
    check(anchor, doc, now_ms)
        .map(|_| ())
        .map_err(|r| r.to_rejection())
}

/// The refusal a rejection of a roster message stands for, if it is one.
pub fn refusal_of(r: &Rejection) -> Option<Refusal> {
    match r {
        Rejection::Roster { kind, reason } => RefusalKind::from_label(kind).map(|k| Refusal {
            kind: k,
            reason: reason.clone(),
        }),
        Rejection::RosterBehind(reason) => Some(Refusal::new(RefusalKind::Ahead, reason.clone())),
        _ => None,
    }
}

/// The member keys a roster chain trusts: every key the newest roster
/// (`chain`'s last) lists, with its validity period; every key an older one
/// listed and the newest does not, retired with the reason ("node-c is not
/// in roster v4"). `chain` is in version order.
pub fn trust(chain: &[&Roster]) -> Result<KeyRegistry, String> {
    let mut reg = KeyRegistry::default();
    let Some(cur) = chain.last() else {
        return Ok(reg);
    };
    for m in &cur.members {
        for (j, k) in m.signing_keys.iter().enumerate() {
            let vk = public_key(&format!("{}.signing_keys[{j}]", m.id), &k.public_key)?;
            let from = k.not_before.as_ref().and_then(checked_ts_to_ms);
            let until = k.not_after.as_ref().and_then(checked_ts_to_ms);
            reg.add_with_window(&m.id, vk, from, until)?;
        }
    }
    for old in chain.iter().rev().skip(1) {
        for m in &old.members {
            let gone = !cur.members.iter().any(|c| c.id == m.id);
            for k in &m.signing_keys {
                let Ok(vk) = public_key("", &k.public_key) else {
                    continue;
                };
                let kid = key_id(&vk);
                let why = if gone {
                    format!("{} is not in roster v{}", m.id, cur.version)
                } else {
                    format!(
                        "key {kid} of {} is no longer listed in roster v{}",
                        m.id, cur.version
                    )
                };
                reg.retire(&kid, why);
            }
        }
    }
    Ok(reg)
}

/// Who may vouch for one member's TLS certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsAnchors {
    pub member: String,
    /// DER CA certificates.
    pub cas: Vec<Vec<u8>>,
    /// SHA-256 digests of accepted SubjectPublicKeyInfos.
    pub pins: Vec<[u8; 32]>,
}

/// The TLS anchors of every member of a roster.
pub fn tls_anchors(r: &Roster) -> Vec<TlsAnchors> {
    r.members
        .iter()
        .map(|m| TlsAnchors {
            member: m.id.clone(),
            cas: m.tls_cas.clone(),
            pins: m
                .tls_pins
                .iter()
                .filter_map(|p| <[u8; 32]>::try_from(p.as_slice()).ok())
                .collect(),
        })
        .collect()
}

/// The key id of a member key (empty if the key is invalid).
pub fn member_key_id(k: &MemberKey) -> String {
    public_key("", &k.public_key)
        .map(|vk| key_id(&vk))
        .unwrap_or_default()
}

/// The key id of a steward (empty if the key is invalid).
pub fn steward_key_id(s: &Steward) -> String {
    public_key("", &s.public_key)
        .map(|vk| key_id(&vk))
        .unwrap_or_default()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn window(k: &MemberKey) -> String {
    let f = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .and_then(checked_ts_to_ms)
            .map(rfc3339_ms)
            .unwrap_or_else(|| "open".into())
    };
    match (&k.not_before, &k.not_after) {
        (None, None) => "no end".into(),
        _ => format!("{} to {}", f(&k.not_before), f(&k.not_after)),
    }
}

/// What changed from `prev` (none: everything is new) to `next`, one line
/// per change, in a stable order. Text from the roster is quoted.
pub fn diff(prev: Option<&Roster>, next: &Roster) -> Vec<String> {
    let mut out = Vec::new();
    let empty = Roster::default();
    let p = prev.unwrap_or(&empty);
    if prev.is_some() && p.federation != next.federation {
        out.push(format!(
            "federation {} -> {}",
            quote(&p.federation),
            quote(&next.federation)
        ));
    }
    if p.expires != next.expires {
        let e = next
            .expires
            .as_ref()
            .and_then(checked_ts_to_ms)
            .map(rfc3339_ms)
            .unwrap_or_default();
        out.push(format!("expires {e}"));
    }
    let old: BTreeMap<&str, &RosterMember> = p.members.iter().map(|m| (m.id.as_str(), m)).collect();
    let new: BTreeMap<&str, &RosterMember> =
        next.members.iter().map(|m| (m.id.as_str(), m)).collect();
    for (id, m) in &new {
        match old.get(id) {
            None => out.push(format!(
                "+ member {id}{}: {} signing key(s) [{}], {} CA(s), {} pin(s){}",
                if m.display_name.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", quote(&m.display_name))
                },
                m.signing_keys.len(),
                m.signing_keys
                    .iter()
                    .map(member_key_id)
                    .collect::<Vec<_>>()
                    .join(", "),
                m.tls_cas.len(),
                m.tls_pins.len(),
                if m.exercise_only {
                    ", exercise only"
                } else {
                    ""
                }
            )),
            Some(o) => member_diff(id, o, m, &mut out),
        }
    }
    for id in old.keys().filter(|id| !new.contains_key(*id)) {
        out.push(format!(
            "- member {id}: removed (its messages are refused, its links closed)"
        ));
    }
    let sk = |r: &Roster| -> BTreeMap<String, String> {
        r.stewards
            .iter()
            .map(|s| (s.id.clone(), steward_key_id(s)))
            .collect()
    };
    let (os, ns) = (sk(p), sk(next));
    for (id, k) in &ns {
        match os.get(id) {
            None => out.push(format!("+ steward {id} (key {k})")),
            Some(ok) if ok != k => out.push(format!("~ steward {id}: key {ok} -> {k}")),
            _ => {}
        }
    }
    for id in os.keys().filter(|id| !ns.contains_key(*id)) {
        out.push(format!("- steward {id}"));
    }
    if prev.is_none() {
        out.push(format!(
            "threshold {} of {}",
            next.threshold,
            next.stewards.len()
        ));
    } else if p.threshold != next.threshold {
        out.push(format!(
            "threshold {} -> {} of {}",
            p.threshold,
            next.threshold,
            next.stewards.len()
        ));
    }
    out
}

fn member_diff(id: &str, o: &RosterMember, m: &RosterMember, out: &mut Vec<String>) {
    let keys = |r: &RosterMember| -> BTreeMap<String, String> {
        r.signing_keys
            .iter()
            .map(|k| (member_key_id(k), window(k)))
            .collect()
    };
    let (ok, nk) = (keys(o), keys(m));
    for (kid, w) in &nk {
        match ok.get(kid) {
            None => out.push(format!("~ member {id}: + signing key {kid} ({w})")),
            Some(ow) if ow != w => out.push(format!(
                "~ member {id}: signing key {kid} valid {ow} -> {w}"
            )),
            _ => {}
        }
    }
    for kid in ok.keys().filter(|k| !nk.contains_key(*k)) {
        out.push(format!("~ member {id}: - signing key {kid}"));
    }
    let subjects = |r: &RosterMember| -> BTreeSet<String> {
        r.tls_cas.iter().map(|c| ca_subject(c)).collect()
    };
    if o.tls_cas != m.tls_cas {
        let (a, b) = (subjects(o), subjects(m));
        for s in b.difference(&a) {
            out.push(format!("~ member {id}: + CA {}", quote(s)));
        }
        for s in a.difference(&b) {
            out.push(format!("~ member {id}: - CA {}", quote(s)));
        }
        if a == b {
            out.push(format!("~ member {id}: CA certificates replaced"));
        }
    }
    let pins =
        |r: &RosterMember| -> BTreeSet<String> { r.tls_pins.iter().map(|p| hex(p)).collect() };
    let (a, b) = (pins(o), pins(m));
    for s in b.difference(&a) {
        out.push(format!("~ member {id}: + pin {s}"));
    }
    for s in a.difference(&b) {
        out.push(format!("~ member {id}: - pin {s}"));
    }
    let text = |name: &str, a: &str, b: &str, out: &mut Vec<String>| {
        if a != b {
            out.push(format!(
                "~ member {id}: {name} {} -> {}",
                quote(a),
                quote(b)
            ));
        }
    };
    text("display name", &o.display_name, &m.display_name, out);
    text("country", &o.country, &m.country, out);
    text("contact", &o.contact, &m.contact, out);
    if o.exercise_only != m.exercise_only {
        out.push(format!(
            "~ member {id}: exercise only {} -> {}",
            o.exercise_only, m.exercise_only
        ));
    }
}

/// A SignedRoster as the text of a roster file.
pub fn armor(bytes: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut s = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    s.push_str(ARMOR_BEGIN);
    s.push('\n');
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(ARMOR_END);
    s.push('\n');
    s
}

/// The SignedRoster bytes of a roster file's text.
pub fn dearmor(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    // Base64 grows by a third; refuse a file far larger than a roster first.
    if text.len() > MAX_ROSTER_BYTES * 2 {
        return Err(format!(
            "{} bytes: far larger than a roster may be ({MAX_ROSTER_BYTES} bytes)",
            text.len()
        ));
    }
    let start = text
        .find(ARMOR_BEGIN)
        .ok_or_else(|| format!("no {ARMOR_BEGIN} line: not a roster file"))?;
    let body = &text[start + ARMOR_BEGIN.len()..];
    let end = body
        .find(ARMOR_END)
        .ok_or_else(|| format!("no {ARMOR_END} line: the roster file is cut short"))?;
    let b64: String = body[..end].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| format!("the roster file's base64 does not decode: {e}"))
}

/// Drafts: pure edits of a roster document for the `certfed roster` tools.
/// Every edit changes the roster bytes, so the caller drops the signatures.
pub mod draft {
    use super::*;
    use crate::domain::envelope::ms_to_ts;

    /// A first roster (version 1) with no members yet.
    pub fn new(
        federation: &str,
        stewards: Vec<Steward>,
        threshold: u32,
        issued_ms: i64,
        expires_ms: i64,
    ) -> Result<Roster, String> {
        validate_name(federation).map_err(|e| format!("federation: {e}"))?;
        check_stewards(&stewards, threshold)?;
        Ok(Roster {
            federation: federation.to_string(),
            version: 1,
            issued: Some(ms_to_ts(issued_ms)),
            expires: Some(ms_to_ts(expires_ms)),
            members: Vec::new(),
            stewards,
            threshold,
        })
    }

    /// The next version of `prev`: the same content, version + 1, issued now.
    pub fn next(prev: &Roster, issued_ms: i64, expires_ms: i64) -> Roster {
        Roster {
            version: prev.version + 1,
            issued: Some(ms_to_ts(issued_ms)),
            expires: Some(ms_to_ts(expires_ms)),
            ..prev.clone()
        }
    }

    /// Adds a member (refused if the id is taken).
    pub fn add_member(r: &mut Roster, m: RosterMember) -> Result<(), String> {
        if r.members.iter().any(|x| x.id == m.id) {
            return Err(format!(
                "{} is already a member; remove it first, or use rotate-key for its keys",
                m.id
            ));
        }
        r.members.push(m);
        Ok(())
    }

    /// Removes a member.
    pub fn remove_member(r: &mut Roster, id: &str) -> Result<RosterMember, String> {
        let i = r
            .members
            .iter()
            .position(|m| m.id == id)
            .ok_or_else(|| format!("{id} is not a member of this roster"))?;
        Ok(r.members.remove(i))
    }

    /// Rotates a member's signing key: every key of the member still open
    /// (or valid past `old_until_ms`) gets `not_after = old_until_ms`, keys
    /// that ended before `retire_before_ms` are dropped, and `new_key` is added.
    pub fn rotate_key(
        r: &mut Roster,
        id: &str,
        new_key: &VerifyingKey,
        old_until_ms: i64,
        retire_before_ms: i64,
    ) -> Result<(), String> {
        let m = r
            .members
            .iter_mut()
            .find(|m| m.id == id)
            .ok_or_else(|| format!("{id} is not a member of this roster"))?;
        let new_raw = new_key.as_bytes().to_vec();
        if m.signing_keys.iter().any(|k| k.public_key == new_raw) {
            return Err(format!(
                "key {} is already listed for {id}",
                key_id(new_key)
            ));
        }
        m.signing_keys.retain(|k| {
            k.not_after
                .as_ref()
                .and_then(checked_ts_to_ms)
                .is_none_or(|t| t >= retire_before_ms)
        });
        for k in &mut m.signing_keys {
            let ends = k.not_after.as_ref().and_then(checked_ts_to_ms);
            if ends.is_none_or(|t| t > old_until_ms) {
                k.not_after = Some(ms_to_ts(old_until_ms));
            }
        }
        m.signing_keys.push(MemberKey {
            public_key: new_raw,
            not_before: None,
            not_after: None,
        });
        Ok(())
    }

    /// Replaces the stewards and threshold.
    pub fn set_stewards(
        r: &mut Roster,
        stewards: Vec<Steward>,
        threshold: u32,
    ) -> Result<(), String> {
        check_stewards(&stewards, threshold)?;
        r.stewards = stewards;
        r.threshold = threshold;
        Ok(())
    }

    /// An unsigned SignedRoster for `r` (its canonical bytes, encoded once).
    pub fn unsigned(r: &Roster) -> SignedRoster {
        SignedRoster {
            roster: r.encode_to_vec(),
            signatures: Vec::new(),
        }
    }
}

#[cfg(test)]
#[path = "roster_tests.rs"]
mod tests;
