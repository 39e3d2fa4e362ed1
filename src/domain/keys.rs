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

/// This node's signing identity.
pub struct Signer {
    pub node_id: String,
    pub key_id: String,
    key: SigningKey,
}

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
        }
    }
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }
    /// The X25519 secret matching `verifying_key().to_montgomery()` (see `e2e`).
    pub(crate) fn x25519_secret(&self) -> [u8; 32] {
        self.key.to_scalar_bytes()
    }
    pub(crate) fn sign(&self, msg: &[u8]) -> ed25519_dalek::Signature {
        use ed25519_dalek::Signer as _;
        self.key.sign(msg)
    }
}

/// Parses an SPKI PEM Ed25519 public key.
pub fn public_from_pem(pem: &str) -> Result<VerifyingKey, String> {
    VerifyingKey::from_public_key_pem(pem)
        .map_err(|e| format!("not an Ed25519 SPKI PEM public key: {e}"))
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
