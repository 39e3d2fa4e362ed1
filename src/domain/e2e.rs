//! End-to-end encryption of payloads for named recipients (TLP:AMBER and
//! above). Each copy is sealed with HPKE (RFC 9180, base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305) to one pinned key
//! of one recipient, with the message id as associated data.
//!
//! A member's X25519 key is the birational image of its pinned Ed25519
//! signing key (as libsodium's `crypto_sign_ed25519_pk_to_curve25519` and age's
//! ssh-ed25519 recipients do), so encryption keys are distributed, rotated and
//! revoked exactly like signing keys. Using one key pair for Ed25519 and an
//! X25519 KEM is analysed in Thormarker, "On using the same key pair for
//! Ed25519 and an X25519 based KEM" (IACR ePrint 2021/509).
use super::keys::{KeyRegistry, Signer};
use crate::proto::v1::{EncryptedPayload, SealedCopy};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use prost::Message;

/// HPKE `info` of every payload copy.
pub const HPKE_INFO: &[u8] = b"certfed.v1.payload";

type PublicKey = <X25519HkdfSha256 as Kem>::PublicKey;
type PrivateKey = <X25519HkdfSha256 as Kem>::PrivateKey;
type EncappedKey = <X25519HkdfSha256 as Kem>::EncappedKey;

/// Why a payload could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("encrypted payload does not decode: {0}")]
    Malformed(String),
    #[error("no copy is sealed to this node's key {0}")]
    NotForMe(String),
    #[error("the copy for this node does not decrypt (altered or sealed to another key)")]
    Failed,
}

/// Seals `plaintext` for every pinned key of every recipient.
pub fn seal(
    plaintext: &[u8],
    message_id: &str,
    recipients: &[String],
    keys: &KeyRegistry,
) -> Result<Vec<u8>, String> {
    let mut copies = Vec::new();
    for r in recipients {
        let member_keys = keys.keys_of(r);
        if member_keys.is_empty() {
            return Err(format!(
                "no pinned key for recipient {r}; add it to [[members]]"
            ));
        }
        for (key_id, vk) in member_keys {
            let pk = PublicKey::from_bytes(&vk.to_montgomery().to_bytes())
                .map_err(|e| format!("key {key_id} of {r}: {e}"))?;
            let (enc, ciphertext) =
                hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
                    &OpModeS::Base,
                    &pk,
                    HPKE_INFO,
                    plaintext,
                    message_id.as_bytes(),
                )
                .map_err(|e| format!("sealing for {r}: {e}"))?;
            copies.push(SealedCopy {
                recipient: r.clone(),
                key_id,
                encapsulated_key: enc.to_bytes().to_vec(),
                ciphertext,
            });
        }
    }
    Ok(EncryptedPayload { copies }.encode_to_vec())
}

/// Opens the copy sealed to this node's key (or to a key it signed with
/// before a rotation, see [`Signer::after`]).
pub fn open(payload: &[u8], message_id: &str, me: &Signer) -> Result<Vec<u8>, OpenError> {
    let ep = EncryptedPayload::decode(payload).map_err(|e| OpenError::Malformed(e.to_string()))?;
    // The copy sealed to the signing key, else one sealed to a key this node
    // signed with before a rotation (a sender on an older roster).
    let (copy, secret) = ep
        .copies
        .iter()
        .filter(|c| c.recipient == me.node_id)
        .filter_map(|c| me.x25519_secret_of(&c.key_id).map(|s| (c, s)))
        .min_by_key(|(c, _)| c.key_id != me.key_id)
        .ok_or_else(|| OpenError::NotForMe(me.key_id.clone()))?;
    let sk = PrivateKey::from_bytes(&secret).map_err(|_| OpenError::Failed)?;
    let enc = EncappedKey::from_bytes(&copy.encapsulated_key)
        .map_err(|e| OpenError::Malformed(format!("encapsulated key: {e}")))?;
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        &sk,
        &enc,
        HPKE_INFO,
        &copy.ciphertext,
        message_id.as_bytes(),
    )
    .map_err(|_| OpenError::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn member(id: &str, seed: u8) -> Signer {
        Signer::new(id, SigningKey::from_bytes(&[seed; 32]))
    }

    #[test]
    fn after_a_rotation_copies_sealed_to_the_old_key_still_open() {
        let (old, a) = (member("node-c", 3), member("node-a", 1));
        let mut reg = KeyRegistry::default();
        reg.add("node-c", old.verifying_key()).unwrap();
        reg.add("node-a", a.verifying_key()).unwrap();
        // A sender on the roster before the rotation seals to the old key only.
        let sealed = seal(b"AMBER", "m-1", &["node-c".into()], &reg).unwrap();
        let new = member("node-c", 4);
        assert!(matches!(
            open(&sealed, "m-1", &new),
            Err(OpenError::NotForMe(_))
        ));
        let rotated = member("node-c", 4).after(&old);
        assert_eq!(rotated.key_id, new.key_id, "signs with the new key");
        assert_eq!(open(&sealed, "m-1", &rotated).unwrap(), b"AMBER");
        // During the overlap a sender seals to both; either opens.
        reg.add("node-c", new.verifying_key()).unwrap();
        let both = seal(b"AMBER", "m-2", &["node-c".into()], &reg).unwrap();
        assert_eq!(open(&both, "m-2", &rotated).unwrap(), b"AMBER");
        assert_eq!(open(&both, "m-2", &new).unwrap(), b"AMBER");
        // The old key remembered by someone else's signer opens nothing.
        assert!(open(&sealed, "m-1", &member("node-a", 9).after(&a)).is_err());
    }

    #[test]
    fn only_recipients_open_their_copy() {
        let (a, b, c) = (
            member("node-a", 1),
            member("node-b", 2),
            member("node-c", 3),
        );
        let mut reg = KeyRegistry::default();
        for s in [&a, &b, &c] {
            reg.add(&s.node_id, s.verifying_key()).unwrap();
        }
        let sealed = seal(b"RED secret", "m-1", &["node-c".into()], &reg).unwrap();
        assert!(
            !sealed.windows(10).any(|w| w == b"RED secret"),
            "no plaintext in the payload"
        );
        assert_eq!(open(&sealed, "m-1", &c).unwrap(), b"RED secret");
        assert!(matches!(
            open(&sealed, "m-1", &b),
            Err(OpenError::NotForMe(_))
        ));
        // Bound to the message id.
        assert_eq!(open(&sealed, "m-2", &c), Err(OpenError::Failed));
        // Altered ciphertext.
        let mut ep = EncryptedPayload::decode(sealed.as_slice()).unwrap();
        ep.copies[0].ciphertext[0] ^= 1;
        assert_eq!(open(&ep.encode_to_vec(), "m-1", &c), Err(OpenError::Failed));
        // A copy relabelled for another node does not open with that node's key.
        let mut ep = EncryptedPayload::decode(sealed.as_slice()).unwrap();
        ep.copies[0].recipient = "node-b".into();
        ep.copies[0].key_id = b.key_id.clone();
        assert_eq!(open(&ep.encode_to_vec(), "m-1", &b), Err(OpenError::Failed));
        // Unknown recipient.
        assert!(seal(b"x", "m", &["node-z".into()], &reg).is_err());
    }

    #[test]
    fn every_key_of_a_rotating_member_gets_a_copy() {
        let old = member("node-c", 3);
        let new = member("node-c", 4);
        let mut reg = KeyRegistry::default();
        reg.add("node-c", old.verifying_key()).unwrap();
        reg.add("node-c", new.verifying_key()).unwrap();
        let sealed = seal(b"hello", "m", &["node-c".into()], &reg).unwrap();
        assert_eq!(open(&sealed, "m", &old).unwrap(), b"hello");
        assert_eq!(open(&sealed, "m", &new).unwrap(), b"hello");
    }
}
