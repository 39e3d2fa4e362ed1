//! Ed25519 signature checks: one rule for a single signature ([`verify`]) and
//! for many at once ([`verify_batch`]), so that whether a message is accepted
//! never depends on how it was checked.
//!
//! The rule (as ZIP 215 and ed25519-zebra, with RFC 8032's canonical
//! encodings and no weak keys): s is a canonical scalar; R is canonically
//! encoded and not of small order; the key is not of small order (weak: anyone
//! could sign for it); and `[8](sB − R − hA) = 0`, h = SHA-512(R ‖ A ‖ M) —
//! the cofactored equation. `VerifyingKey::verify_strict` checks the equation
//! without the factor 8 and `ed25519_dalek::verify_batch` without the
//! encoding and weak-key checks; a batch check without the factor cannot agree
//! with a single one: a signer who puts a small-order point into its own R
//! (or whose key has one) makes a signature that single checks refuse and a
//! batch accepts for some coefficients — which it can search for offline when
//! they are derived from the inputs, as dalek's are. With the factor 8 both
//! ignore that component, so both accept such a signature, everywhere.
//!
//! [`verify_batch`] checks n signatures as one multiscalar multiplication with
//! the public-key terms of each key summed first — n + k + 1 points for k
//! distinct keys, as ed25519-zebra's batch verifier does, where
//! `ed25519_dalek::verify_batch` takes 2n + 1 (on a federation link most of a
//! frame's messages come from a few origins; on the benchmark's single link
//! all from one):
//!
//! `[8]([-Σ zᵢsᵢ]B + Σ [zᵢ]Rᵢ + Σₖ [Σ_{i: Aᵢ = Aₖ} zᵢhᵢ]Aₖ) = 0`.
//!
//! Invariants:
//! - `verify_batch` is `true` exactly when [`verify`] is `true` for every
//!   item, but for a chance of 2⁻¹²⁸ per try that it is `true` for a forgery:
//!   the coefficients zᵢ are 128-bit values derived, as ed25519-dalek derives
//!   them, from a hash of every input (each hᵢ, which covers R, A and the
//!   message, each s, the count and the item's place), so a forger who
//!   changes any input gets new ones. Deterministic: no clock, no randomness.
//! - Slices of different lengths give `false`; an empty batch is `true`.
//! - Keys are also checked where they are pinned ([`crate::domain::keys::usable`]):
//!   a small-order component or a non-canonical encoding is refused there.
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha512};
use std::collections::HashMap;

/// Domain separation of the coefficients' hash.
const CONTEXT: &[u8] = b"certfed.v1.ed25519-batch\x00";

/// Whether `sig` is `key`'s signature of `msg` under the module's rule.
pub fn verify(msg: &[u8], sig: &Signature, key: &VerifyingKey) -> bool {
    if key.is_weak() {
        return false;
    }
    let Some((s, r)) = decode(sig) else {
        return false;
    };
    let h = Scalar::from_bytes_mod_order_wide(&hram(sig, key, msg));
    // sB − hA, against R.
    let expected = EdwardsPoint::vartime_double_scalar_mul_basepoint(&h, &-key.to_edwards(), &s);
    (expected - r).mul_by_cofactor().is_identity()
}

/// SHA-512(R ‖ A ‖ M).
fn hram(sig: &Signature, key: &VerifyingKey, msg: &[u8]) -> [u8; 64] {
    Sha512::new()
        .chain_update(sig.r_bytes())
        .chain_update(key.as_bytes())
        .chain_update(msg)
        .finalize()
        .into()
}

/// Whether every `sigs[i]` is `keys[i]`'s signature of `msgs[i]` (see the
/// module's invariants for what `true` guarantees).
pub fn verify_batch(msgs: &[&[u8]], sigs: &[Signature], keys: &[VerifyingKey]) -> bool {
    let n = sigs.len();
    if msgs.len() != n || keys.len() != n {
        return false;
    }
    let mut rs = Vec::with_capacity(n);
    let mut ss = Vec::with_capacity(n);
    let mut hrams = Vec::with_capacity(n);
    let mut transcript = Sha512::new();
    transcript.update(CONTEXT);
    transcript.update((n as u64).to_le_bytes());
    for ((msg, sig), key) in msgs.iter().zip(sigs).zip(keys) {
        let Some((s, r)) = decode(sig) else {
            return false;
        };
        let hram = hram(sig, key, msg);
        transcript.update(hram);
        transcript.update(sig.s_bytes());
        rs.push(r);
        ss.push(s);
        hrams.push(Scalar::from_bytes_mod_order_wide(&hram));
    }
    let seed = transcript.finalize();

    // Coefficients: the base point's, each R's, then each distinct key's.
    let mut scalars = Vec::with_capacity(n + 2);
    let mut points = Vec::with_capacity(n + 2);
    let mut b = Scalar::ZERO;
    let mut per_key: Vec<(EdwardsPoint, Scalar)> = Vec::new();
    let mut slot: HashMap<[u8; 32], usize> = HashMap::new();
    for (i, ((r, s), hram)) in rs.into_iter().zip(&ss).zip(&hrams).enumerate() {
        let z = coefficient(&seed, i);
        b -= z * s;
        scalars.push(z);
        points.push(r);
        let key = &keys[i];
        let k = match slot.get(key.as_bytes()) {
            Some(&k) => k,
            None => {
                if key.is_weak() {
                    return false;
                }
                per_key.push((key.to_edwards(), Scalar::ZERO));
                slot.insert(*key.as_bytes(), per_key.len() - 1);
                per_key.len() - 1
            }
        };
        per_key[k].1 += z * hram;
    }
    for (a, coefficient) in per_key {
        scalars.push(coefficient);
        points.push(a);
    }
    scalars.push(b);
    points.push(ED25519_BASEPOINT_POINT);
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

/// The i-th 128-bit coefficient.
fn coefficient(seed: &[u8], i: usize) -> Scalar {
    let h = Sha512::new()
        .chain_update(seed)
        .chain_update((i as u64).to_le_bytes())
        .finalize();
    let mut z = [0u8; 16];
    z.copy_from_slice(&h[..16]);
    Scalar::from(u128::from_le_bytes(z))
}

/// s and R of a signature, if s is a canonical scalar and R decodes
/// ([`decode_r`]).
fn decode(sig: &Signature) -> Option<(Scalar, EdwardsPoint)> {
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(*sig.s_bytes()))?;
    Some((s, decode_r(sig.r_bytes())?))
}

/// R as a point, if its encoding is canonical (y < p = 2²⁵⁵ − 19; the
/// encodings with x = 0 and the sign bit set are those of the two small-order
/// points y = ±1, refused below) and it does not have small order.
fn decode_r(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    let y_at_least_p =
        bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[0] >= 0xed;
    if y_at_least_p || small_order_y(bytes) {
        return None;
    }
    CompressedEdwardsY(*bytes).decompress()
}

/// The y-coordinates (little-endian, y < p) of the eight points of small
/// order, as libsodium's `has_small_order` lists them: 0 (order 4, both
/// signs of x), 1 (the identity), p − 1 (order 2) and two of order 8 (both
/// signs of x each).
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    [0; 32],
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
];

/// Whether a canonical encoding (y < p) is one of a point of small order:
/// its y, sign bit aside, is listed — the same verdict as decompressing it
/// and multiplying by the cofactor, without the field arithmetic (about a
/// seventh of R's decoding).
fn small_order_y(bytes: &[u8; 32]) -> bool {
    SMALL_ORDER_Y
        .iter()
        .any(|y| y[..31] == bytes[..31] && y[31] == bytes[31] & 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use rand::{Rng, SeedableRng};

    /// The checkout's `.cargo/config.toml` builds curve25519-dalek with its
    /// AVX-512 IFMA backend beside the AVX2 one (chosen at run time by the
    /// processor): a single check about a third less CPU on a processor that
    /// has it. A build whose `RUSTFLAGS` replaced that list fails here instead of
    /// checking signatures slower. Every other test of this module runs on
    /// the backend this processor selects.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn curve25519_dalek_is_built_with_its_avx512_backend() {
        let built_with_it: bool = cfg!(curve25519_dalek_backend = "avx512");
        assert!(
            built_with_it,
            "built without --cfg curve25519_dalek_backend=\"avx512\" (the rustflags of .cargo/config.toml; a RUSTFLAGS in the environment replaces them: add it there)"
        );
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    /// `n` messages signed by keys drawn from `keys` distinct ones.
    fn batch(
        rng: &mut rand::rngs::StdRng,
        n: usize,
        keys: u8,
    ) -> (Vec<Vec<u8>>, Vec<Signature>, Vec<VerifyingKey>) {
        let mut msgs = Vec::new();
        let mut sigs = Vec::new();
        let mut vks = Vec::new();
        for _ in 0..n {
            let sk = key(rng.random_range(0..keys));
            let len = rng.random_range(0..200);
            let msg: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            sigs.push(sk.sign(&msg));
            vks.push(sk.verifying_key());
            msgs.push(msg);
        }
        (msgs, sigs, vks)
    }

    /// `n` messages as [`batch`] makes them (from two keys), then `msg`
    /// signed `sig` under `vk`.
    fn batch_and(
        rng: &mut rand::rngs::StdRng,
        n: usize,
        msg: Vec<u8>,
        sig: Signature,
        vk: VerifyingKey,
    ) -> (Vec<Vec<u8>>, Vec<Signature>, Vec<VerifyingKey>) {
        let (mut msgs, mut sigs, mut vks) = batch(rng, n, 2);
        msgs.push(msg);
        sigs.push(sig);
        vks.push(vk);
        (msgs, sigs, vks)
    }

    /// The batch verdict, checked against the single checks' (every test
    /// below also tests that the two agree).
    fn check(msgs: &[Vec<u8>], sigs: &[Signature], vks: &[VerifyingKey]) -> bool {
        let m: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        let batch = verify_batch(&m, sigs, vks);
        if m.len() == sigs.len() && sigs.len() == vks.len() {
            let singles = (0..m.len()).all(|i| verify(m[i], &sigs[i], &vks[i]));
            assert_eq!(batch, singles, "the batch and the single checks disagree");
        }
        batch
    }

    /// The point of order 2, (0, −1).
    fn order_two() -> EdwardsPoint {
        let mut y = [0xffu8; 32];
        y[0] = 0xec;
        y[31] = 0x7f;
        let t = CompressedEdwardsY(y)
            .decompress()
            .expect("(0, -1) is on the curve");
        assert!(t.is_small_order() && !t.is_identity());
        t
    }

    /// `sk`'s signature of `msg` with nonce `r` and `extra` added to R, for
    /// the public key `a` (`sk`'s own, or one with a component of its own).
    fn made(sk: &SigningKey, a: &[u8; 32], msg: &[u8], r: u64, extra: EdwardsPoint) -> Signature {
        let r = Scalar::from(r);
        let big_r = (EdwardsPoint::mul_base(&r) + extra).compress();
        let h: [u8; 64] = Sha512::new()
            .chain_update(big_r.as_bytes())
            .chain_update(a)
            .chain_update(msg)
            .finalize()
            .into();
        let s = r + Scalar::from_bytes_mod_order_wide(&h) * sk.to_scalar();
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(big_r.as_bytes());
        b[32..].copy_from_slice(s.as_bytes());
        Signature::from_bytes(&b)
    }

    #[test]
    fn a_small_order_part_of_r_made_by_its_signer_is_judged_alike_in_every_batch() {
        // R = rB + T: verify_strict refuses it (without the factor 8), and a
        // batch without the factor accepts it for some coefficients, which the
        // signer can search for offline when they are derived from the inputs.
        // Under the rule, single checks and every batch accept it.
        let sk = key(9);
        let vk = sk.verifying_key();
        let mut strict_refused = 0;
        for r in 1..=24u64 {
            let msg = format!("alert {r}").into_bytes();
            let odd = made(&sk, vk.as_bytes(), &msg, r, order_two());
            strict_refused += vk.verify_strict(&msg, &odd).is_err() as usize;
            let mut rng = rand::rngs::StdRng::seed_from_u64(r);
            let (msgs, sigs, vks) = batch_and(&mut rng, (r % 5) as usize + 1, msg, odd, vk);
            assert!(check(&msgs, &sigs, &vks), "batch {r}");
        }
        assert_eq!(strict_refused, 24, "verify_strict refuses them all");
    }

    #[test]
    fn a_key_with_a_small_order_part_is_judged_alike_in_every_batch() {
        // A' = A + T (which `keys::usable` refuses to pin): signatures made
        // with A's secret for A' pass verify_strict only where h is even.
        let sk = key(10);
        let mixed = (sk.verifying_key().to_edwards() + order_two())
            .compress()
            .to_bytes();
        let vk = VerifyingKey::from_bytes(&mixed).expect("decodes");
        assert!(!vk.is_weak());
        let mut strict = [0, 0];
        for r in 1..=24u64 {
            let msg = format!("alert {r}").into_bytes();
            let sig = made(&sk, &mixed, &msg, r, EdwardsPoint::default());
            strict[vk.verify_strict(&msg, &sig).is_ok() as usize] += 1;
            let mut rng = rand::rngs::StdRng::seed_from_u64(100 + r);
            let (msgs, sigs, vks) = batch_and(&mut rng, (r % 4) as usize, msg, sig, vk);
            assert!(check(&msgs, &sigs, &vks), "batch {r}");
        }
        assert!(strict[0] > 0 && strict[1] > 0, "verify_strict: {strict:?}");
    }

    #[test]
    fn every_length_mismatch_is_refused() {
        let sk = key(1);
        let vk = sk.verifying_key();
        let m: &[u8] = b"m";
        let s = sk.sign(m);
        assert!(verify_batch(&[m], &[s], &[vk]));
        assert!(!verify_batch(&[m, m], &[s, s], &[vk]));
        assert!(!verify_batch(&[m], &[s, s], &[vk, vk]));
        assert!(!verify_batch(&[m, m], &[s], &[vk, vk]));
        assert!(verify_batch(&[], &[], &[]));
    }

    #[test]
    fn valid_batches_pass_whatever_the_keys() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for n in [0, 1, 2, 3, 17, 64, 200] {
            for keys in [1, 2, 5, 40] {
                let (msgs, sigs, vks) = batch(&mut rng, n, keys);
                assert!(check(&msgs, &sigs, &vks), "{n} signatures, {keys} keys");
                let m: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
                assert!(ed25519_dalek::verify_batch(&m, &sigs, &vks).is_ok());
            }
        }
    }

    #[test]
    fn any_change_to_one_item_fails_the_batch() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        for round in 0..40 {
            let (mut msgs, mut sigs, mut vks) = batch(&mut rng, 20, 3);
            let i = rng.random_range(0..20);
            match round % 5 {
                0 => msgs[i].push(0),
                1 => {
                    let mut b = sigs[i].to_bytes();
                    b[rng.random_range(0..32)] ^= 1 << rng.random_range(0..8);
                    sigs[i] = Signature::from_bytes(&b);
                }
                2 => {
                    let mut b = sigs[i].to_bytes();
                    b[32] ^= 1 << rng.random_range(0..8);
                    sigs[i] = Signature::from_bytes(&b);
                }
                // Another member's key.
                3 => vks[i] = key(if round % 2 == 0 { 99 } else { 200 }).verifying_key(),
                // Two items' signatures swapped: each still valid for its own message.
                _ => {
                    let j = (i + 1) % 20;
                    msgs.swap(i, j);
                    if msgs[i] == msgs[j] {
                        msgs[i].push(1);
                    }
                }
            }
            assert!(
                !check(&msgs, &sigs, &vks),
                "round {round}: item {i} changed"
            );
            let m: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
            let strict = (0..20).all(|k| vks[k].verify_strict(m[k], &sigs[k]).is_ok());
            assert!(!strict, "round {round}: the strict check agrees");
        }
    }

    #[test]
    fn errors_that_cancel_in_a_plain_sum_fail_the_batch() {
        // s₀ + d and s₁ − d: the unweighted sum of the two equations still
        // holds; only the coefficients zᵢ tell them apart.
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let (msgs, mut sigs, vks) = batch(&mut rng, 5, 1);
        let d = Scalar::from(987_654_321u64);
        for (i, delta) in [(0, d), (1, -d)] {
            let mut b = sigs[i].to_bytes();
            let s = Scalar::from_canonical_bytes(b[32..].try_into().unwrap()).unwrap() + delta;
            b[32..].copy_from_slice(s.as_bytes());
            sigs[i] = Signature::from_bytes(&b);
        }
        assert!(!check(&msgs, &sigs, &vks));
    }

    #[test]
    fn a_weak_key_is_refused_though_its_made_up_signature_fits_the_equation() {
        // The identity as a public key: (R, s) = (rB, r) satisfies sB = R + hA
        // for any message, without any secret.
        let mut id = [0u8; 32];
        id[0] = 1;
        let weak = VerifyingKey::from_bytes(&id).expect("decodes");
        assert!(weak.is_weak());
        let r = Scalar::from(12345u64);
        let big_r = EdwardsPoint::mul_base(&r).compress();
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(big_r.as_bytes());
        b[32..].copy_from_slice(r.as_bytes());
        let forged = Signature::from_bytes(&b);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let (msgs, sigs, vks) = batch_and(&mut rng, 4, b"anything at all".to_vec(), forged, weak);
        let m: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        assert!(
            ed25519_dalek::verify_batch(&m, &sigs, &vks).is_ok(),
            "the equation alone accepts it"
        );
        assert!(!check(&msgs, &sigs, &vks));
        assert!(weak.verify_strict(m[4], &forged).is_err());
    }

    #[test]
    fn a_small_order_r_is_refused_though_the_equation_holds() {
        // R = the identity and s = h·x: sB = R + hA holds (the equation both
        // batch checks compute), but verify_strict refuses a small-order R.
        let sk = key(7);
        let vk = sk.verifying_key();
        let msg = b"an alert".to_vec();
        let odd = made(&sk, vk.as_bytes(), &msg, 0, EdwardsPoint::default());
        assert_eq!(odd.r_bytes()[0], 1, "R is the identity");
        assert!(vk.verify_strict(&msg, &odd).is_err());
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let (msgs, sigs, vks) = batch_and(&mut rng, 3, msg, odd, vk);
        let m: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        assert!(
            ed25519_dalek::verify_batch(&m, &sigs, &vks).is_ok(),
            "the equation alone accepts it"
        );
        assert!(!check(&msgs, &sigs, &vks));
    }

    #[test]
    fn an_r_encoded_with_y_at_least_p_does_not_decode() {
        // p + k for small k: the same y as k, which decompression alone accepts
        // where k is on the curve (and not of small order).
        let mut accepted_alone = 0;
        for k in 2u8..19 {
            let mut bytes = [0xffu8; 32];
            bytes[0] = 0xed + k;
            bytes[31] = 0x7f;
            assert!(decode_r(&bytes).is_none(), "p + {k}");
            let mut canonical = [0u8; 32];
            canonical[0] = k;
            if let Some(p) = CompressedEdwardsY(bytes).decompress()
                && !p.is_small_order()
            {
                assert!(decode_r(&canonical).is_some(), "{k} itself decodes");
                accepted_alone += 1;
            }
        }
        assert!(accepted_alone > 0, "no y in 2..19 is on the curve");
    }

    /// The eight points of small order, found without the table: the
    /// multiples of [ℓ]P (P's torsion part) for points P until one has
    /// order 8.
    fn torsion() -> Vec<EdwardsPoint> {
        for y in 2u8.. {
            let mut b = [0u8; 32];
            b[0] = y;
            let Some(p) = CompressedEdwardsY(b).decompress() else {
                continue;
            };
            // [ℓ]P = [ℓ − 1]P + P.
            let t = p * -Scalar::ONE + p;
            let all: Vec<EdwardsPoint> = (0..8u64).map(|i| t * Scalar::from(i)).collect();
            if all[4] != EdwardsPoint::default() {
                return all;
            }
        }
        unreachable!()
    }

    #[test]
    fn the_small_order_list_is_the_torsion_points_y() {
        let ts = torsion();
        let mut ys: Vec<[u8; 32]> = ts
            .iter()
            .map(|t| {
                assert!(t.is_small_order());
                let mut y = t.compress().to_bytes();
                y[31] &= 0x7f;
                y
            })
            .collect();
        ys.sort();
        ys.dedup();
        let mut listed = SMALL_ORDER_Y.to_vec();
        listed.sort();
        assert_eq!(ys, listed, "five y-coordinates, eight points");
        // Each torsion point, with either sign bit, is refused as R.
        for t in &ts {
            let mut b = t.compress().to_bytes();
            assert!(decode_r(&b).is_none());
            b[31] ^= 0x80;
            assert!(decode_r(&b).is_none());
        }
    }

    #[test]
    fn r_decodes_exactly_when_it_is_a_point_not_of_small_order() {
        // Random encodings (about half are points), and points with every
        // torsion part (mixed order: decoded), against decompression and the
        // cofactor check.
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let ts = torsion();
        let mut points = 0;
        for i in 0..4000u64 {
            let b: [u8; 32] = if i % 2 == 0 {
                rng.random()
            } else {
                (EdwardsPoint::mul_base(&Scalar::from(rng.random::<u64>())) + ts[(i % 8) as usize])
                    .compress()
                    .to_bytes()
            };
            let y_at_least_p =
                b[31] & 0x7f == 0x7f && b[1..31].iter().all(|&x| x == 0xff) && b[0] >= 0xed;
            let expected = match CompressedEdwardsY(b).decompress() {
                Some(p) if !y_at_least_p && !p.is_small_order() => Some(p),
                _ => None,
            };
            points += usize::from(expected.is_some());
            assert_eq!(decode_r(&b), expected, "{b:02x?}");
        }
        assert!(points > 2000, "{points} points");
    }

    #[test]
    fn non_canonical_s_is_refused() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let (msgs, sigs, vks) = batch(&mut rng, 3, 1);
        // s + ℓ: the same scalar, not canonically encoded.
        let mut b = sigs[1].to_bytes();
        let s = Scalar::from_canonical_bytes(b[32..].try_into().unwrap()).unwrap();
        let l_plus: [u8; 32] = {
            // ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian.
            let l: [u8; 32] = [
                0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
                0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
            ];
            let mut out = [0u8; 32];
            let mut carry = 0u16;
            for k in 0..32 {
                let v = s.as_bytes()[k] as u16 + l[k] as u16 + carry;
                out[k] = v as u8;
                carry = v >> 8;
            }
            out
        };
        b[32..].copy_from_slice(&l_plus);
        let mut bad = sigs.clone();
        bad[1] = Signature::from_bytes(&b);
        assert!(!check(&msgs, &bad, &vks), "s + ℓ");
        assert!(check(&msgs, &sigs, &vks));
        // Slices of different lengths.
        assert!(!check(&msgs[..2], &sigs, &vks));
    }
}
