//! Message-signing keys: this node's private key and the registry of members'
//! pinned public keys. Keys are Ed25519, separate from TLS keys.
//!
//! With a federation roster (`roster`), a key may carry a validity period
//! (messages created outside it are refused, [`KeyRegistry::check_use`]), and
//! keys the roster chain no longer lists are remembered with the reason
//! ([`KeyRegistry::retired`]), so that a departed member's messages are
//! refused for good ("not in roster vN") instead of waiting as unknown.
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Key id: the first 16 hex digits of SHA-256 over the raw 32-byte public key.
pub fn key_id(vk: &VerifyingKey) -> String {
    let d = Sha256::digest(vk.as_bytes());
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// This node's signing identity: the key it signs with, and the keys it
/// signed with before a rotation while this process runs (kept only to open
/// end-to-end copies that senders on an older roster still seal to them;
/// never to sign).
pub struct Signer {
    pub node_id: String,
    pub key_id: String,
    key: SigningKey,
    previous: Vec<(String, SigningKey)>,
}

/// Most earlier keys a [`Signer`] keeps for opening copies sealed to them.
pub const MAX_PREVIOUS_KEYS: usize = 4;

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({}, key {})", self.node_id, self.key_id)
    }
}

impl Signer {
    /// Parses a PKCS#8 PEM Ed25519 private key.
    pub fn from_pkcs8_pem(node_id: &str, pem: &str) -> Result<Signer, String> {
        let key = SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| format!("not an Ed25519 PKCS#8 PEM private key: {e}"))?;
        Ok(Signer::new(node_id, key))
    }
    pub fn new(node_id: &str, key: SigningKey) -> Signer {
        Signer {
            node_id: node_id.to_string(),
            key_id: key_id(&key.verifying_key()),
            key,
            previous: Vec::new(),
        }
    }
    /// This signer, remembering `older`'s key (and the keys `older`
    /// remembered, at most [`MAX_PREVIOUS_KEYS`]) for opening copies sealed to
    /// them after a rotation.
    pub fn after(self, older: &Signer) -> Signer {
        let mut previous = vec![(older.key_id.clone(), older.key.clone())];
        previous.extend(older.previous.iter().cloned());
        previous.retain(|(id, _)| *id != self.key_id);
        previous.truncate(MAX_PREVIOUS_KEYS);
        Signer { previous, ..self }
    }
    /// A copy of this signer (the application holds one per configured key).
    pub fn duplicate(&self) -> Signer {
        Signer {
            node_id: self.node_id.clone(),
            key_id: self.key_id.clone(),
            key: self.key.clone(),
            previous: self.previous.clone(),
        }
    }
    /// The X25519 secret of the key `id` (the signing key or an earlier one).
    pub(crate) fn x25519_secret_of(&self, id: &str) -> Option<[u8; 32]> {
        if id == self.key_id {
            return Some(self.key.to_scalar_bytes());
        }
        self.previous
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, k)| k.to_scalar_bytes())
    }
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }
    pub(crate) fn sign(&self, msg: &[u8]) -> ed25519_dalek::Signature {
        use ed25519_dalek::Signer as _;
        self.key.sign(msg)
    }
}

/// Which configured key a node signs with: `next` (`node.next_signing_key`)
/// as soon as `trust` lists it for this node `me` and it is valid for a
/// message created at `now_ms`; until then `current` (`node.signing_key`).
/// So a node switches keys the moment it applies the roster (or reloads the
/// `[[members]]` list) that rotates its key, without a restart, and never
/// signs with a key its peers do not trust yet.
pub fn use_next_key(me: &str, next_key_id: Option<&str>, trust: &KeyRegistry, now_ms: i64) -> bool {
    next_key_id.is_some_and(|id| {
        trust.get(id).is_some_and(|(owner, _)| owner == me) && trust.check_use(id, now_ms).is_ok()
    })
}

/// Parses an SPKI PEM Ed25519 public key ([`usable`] as well).
pub fn public_from_pem(pem: &str) -> Result<VerifyingKey, String> {
    VerifyingKey::from_public_key_pem(pem)
        .map_err(|e| format!("not an Ed25519 SPKI PEM public key: {e}"))
        .and_then(usable)
}

/// A public key fit to pin: of large prime order — neither weak (of small
/// order: anyone can sign for it) nor with a small-order component (which no
/// key generator makes; signatures for it are judged alike by single and batch
/// checks, see `sigcheck`, but not by other Ed25519 implementations). This
/// also refuses every non-canonical encoding: those decode to points with a
/// small-order component (tested below).
pub fn usable(vk: VerifyingKey) -> Result<VerifyingKey, String> {
    if vk.is_weak() {
        return Err(
            "a weak Ed25519 key (of small order: anyone can sign for it); generate a new key pair"
                .into(),
        );
    }
    if !vk.to_edwards().is_torsion_free() {
        return Err("not an Ed25519 key a key generator makes (it has a small-order component); generate a new key pair".into());
    }
    Ok(vk)
}

/// Pinned member keys: key id → (member id, decoded key). Decoded once, so
/// verification never re-parses keys.
#[derive(Clone, Default, Debug)]
pub struct KeyRegistry {
    keys: HashMap<String, (String, VerifyingKey)>,
    members: Vec<String>,
    /// Key id → (not before, not after), unix ms, for keys with a period.
    windows: HashMap<String, (Option<i64>, Option<i64>)>,
    /// Key id → why messages signed with it are refused (no longer listed).
    retired: HashMap<String, String>,
}

impl KeyRegistry {
    /// Adds a member's key. A key id pinned to two different members is refused.
    pub fn add(&mut self, member: &str, vk: VerifyingKey) -> Result<(), String> {
        let id = key_id(&vk);
        if let Some((other, _)) = self.keys.get(&id)
            && other != member
        {
            return Err(format!(
                "signing key {id} is listed for both {other} and {member}"
            ));
        }
        self.keys.insert(id, (member.to_string(), vk));
        if !self.members.iter().any(|m| m == member) {
            self.members.push(member.to_string());
        }
        Ok(())
    }
    /// The owner and key for a key id.
    pub fn get(&self, key_id: &str) -> Option<(&str, &VerifyingKey)> {
        self.keys.get(key_id).map(|(m, k)| (m.as_str(), k))
    }
    /// Every pinned key of a member (more than one during a rotation), by key id.
    pub fn keys_of(&self, member: &str) -> Vec<(String, VerifyingKey)> {
        let mut v: Vec<_> = self
            .keys
            .iter()
            .filter(|(_, (m, _))| m == member)
            .map(|(id, (_, k))| (id.clone(), *k))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
    /// Adds a member's key valid for messages created within
    /// `[not_before, not_after]` (unix ms; `None`: open).
    pub fn add_with_window(
        &mut self,
        member: &str,
        vk: VerifyingKey,
        not_before: Option<i64>,
        not_after: Option<i64>,
    ) -> Result<(), String> {
        self.add(member, vk)?;
        if not_before.is_some() || not_after.is_some() {
            self.windows.insert(key_id(&vk), (not_before, not_after));
        }
        Ok(())
    }
    /// Remembers a key no longer listed, with the reason its messages are
    /// refused (ignored if the key is listed).
    pub fn retire(&mut self, key_id: &str, why: String) {
        if !self.keys.contains_key(key_id) {
            self.retired.insert(key_id.to_string(), why);
        }
    }
    /// Why messages signed with `key_id` are refused for good, if it is a
    /// key the roster chain listed before and no longer lists.
    pub fn retired(&self, key_id: &str) -> Option<&str> {
        self.retired.get(key_id).map(String::as_str)
    }
    /// Whether a message created at `created_ms` may be signed with the
    /// listed key `key_id` (its validity period, if it has one); the error
    /// says which bound it crosses.
    pub fn check_use(&self, key_id: &str, created_ms: i64) -> Result<(), String> {
        let Some((from, until)) = self.windows.get(key_id) else {
            return Ok(());
        };
        let at = |ms: i64| crate::domain::text::rfc3339_ms(ms);
        if let Some(f) = from
            && created_ms < *f
        {
            return Err(format!(
                "signing key {key_id} is valid from {}, the message was created at {}",
                at(*f),
                at(created_ms)
            ));
        }
        if let Some(u) = until
            && created_ms > *u
        {
            return Err(format!(
                "signing key {key_id} was valid until {}, the message was created at {} (the key was rotated)",
                at(*u),
                at(created_ms)
            ));
        }
        Ok(())
    }
    pub fn is_member(&self, id: &str) -> bool {
        self.members.iter().any(|m| m == id)
    }
    pub fn members(&self) -> &[String] {
        &self.members
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vk(seed: u8) -> VerifyingKey {
        SigningKey::from_bytes(&[seed; 32]).verifying_key()
    }

    #[test]
    fn the_next_key_is_used_once_trusted_for_this_node_and_valid_now() {
        let next = key_id(&vk(2));
        let mut trust = KeyRegistry::default();
        trust.add("node-c", vk(1)).unwrap();
        // Not listed yet: keep signing with the current key.
        assert!(!use_next_key("node-c", Some(&next), &trust, 1_000));
        assert!(!use_next_key("node-c", None, &trust, 1_000));
        // Listed for another member: never.
        let mut other = trust.clone();
        other.add("node-d", vk(2)).unwrap();
        assert!(!use_next_key("node-c", Some(&next), &other, 1_000));
        // Listed for this node, valid from t=5000.
        trust
            .add_with_window("node-c", vk(2), Some(5_000), None)
            .unwrap();
        assert!(!use_next_key("node-c", Some(&next), &trust, 4_999));
        assert!(use_next_key("node-c", Some(&next), &trust, 5_000));
    }

    #[test]
    fn keys_of_small_order_or_with_a_small_order_part_or_encoded_oddly_are_not_pinned() {
        use curve25519_dalek::edwards::CompressedEdwardsY;
        use ed25519_dalek::pkcs8::EncodePublicKey;
        let good = SigningKey::from_bytes(&[3; 32]).verifying_key();
        assert!(usable(good).is_ok());
        let pem = good.to_public_key_pem(Default::default()).unwrap();
        assert!(public_from_pem(&pem).is_ok());
        // Weak: the identity.
        let mut id = [0u8; 32];
        id[0] = 1;
        let weak = VerifyingKey::from_bytes(&id).unwrap();
        let e = usable(weak).unwrap_err();
        assert!(
            e.contains("weak") && e.contains("generate a new key pair"),
            "{e}"
        );
        let pem = weak.to_public_key_pem(Default::default()).unwrap();
        assert!(public_from_pem(&pem).unwrap_err().contains("weak"));
        // A good key plus the point of order 2.
        let mut y = [0xffu8; 32];
        y[0] = 0xec;
        y[31] = 0x7f;
        let t = CompressedEdwardsY(y).decompress().unwrap();
        let mixed =
            VerifyingKey::from_bytes(&(good.to_edwards() + t).compress().to_bytes()).unwrap();
        assert!(!mixed.is_weak());
        assert!(usable(mixed).unwrap_err().contains("small-order component"));
        // Every non-canonical encoding that decodes (y ≥ p, either sign).
        let mut decoded = 0;
        for k in 0u8..19 {
            for sign in [0u8, 0x80] {
                let mut b = [0xffu8; 32];
                b[0] = 0xed + k;
                b[31] = 0x7f | sign;
                if let Ok(vk) = VerifyingKey::from_bytes(&b) {
                    decoded += 1;
                    assert!(usable(vk).is_err(), "p + {k}, sign {sign}");
                }
            }
        }
        assert!(decoded > 0);
    }
}
