//! `certfed bench --signatures`: what signing and checking one envelope
//! costs on this processor. A thousand 1 KiB alerts are sealed as the
//! benchmark's other phases seal them (timed: `envelope::seal` of an encoded
//! alert — header, payload digest and Ed25519 signature), then checked with
//! [`verify_batch`] — the function admission runs on every
//! partner's envelope (header decoded, size, clock, expiry and key checks,
//! then the Ed25519 rule; a batch is one multiscalar check, one envelope a
//! single check) — in batches of 1, 16, 64 and 512, each size for about half
//! a second. Reported in µs per envelope, with the curve25519-dalek backend
//! the processor runs (AVX-512 IFMA, AVX2 or portable, chosen at run time).
//!
//! Invariants: nothing here is timed in a test; the run fails when a
//! well-signed envelope is refused, and unless one envelope with a changed
//! signature is refused, alone, in a batch of every size.
use crate::domain::envelope::{VerifyLimits, seal, verify_batch};
use crate::domain::keys::{KeyRegistry, Signer};
use crate::proto::v1::SignedEnvelope;
use anyhow::{bail, ensure};
use std::time::{Duration, Instant};

/// Envelopes sealed and checked.
const ENVELOPES: usize = 1024;
/// Batch sizes: a federation link's usual frame, two medium frames, and an
/// ingest batch.
const SIZES: [usize; 4] = [1, 16, 64, 512];
/// How long each size is measured (whole passes over the envelopes).
const PER_SIZE: Duration = Duration::from_millis(500);

/// The curve25519-dalek backend this processor runs: the build's backends
/// (`.cargo/config.toml` adds AVX-512 IFMA on x86-64), chosen by the
/// processor's features as the crate chooses them.
pub fn ed25519_backend() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if cfg!(curve25519_dalek_backend = "avx512")
            && std::arch::is_x86_feature_detected!("avx512ifma")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return "avx512ifma";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "avx2";
        }
    }
    "portable"
}

/// µs per envelope of `verify_batch` over `envs` in batches of `size`, every
/// one of them accepted.
fn verify_us(
    reg: &KeyRegistry,
    envs: &[SignedEnvelope],
    size: usize,
    now: i64,
    limits: &VerifyLimits,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut checked = 0usize;
    while checked == 0 || started.elapsed() < PER_SIZE {
        for chunk in envs.chunks(size) {
            let refs: Vec<&SignedEnvelope> = chunk.iter().collect();
            if let Some(e) = verify_batch(reg, &refs, now, limits)
                .into_iter()
                .find_map(Result::err)
            {
                bail!("a well-signed envelope was refused in a batch of {size}: {e:?}");
            }
            checked += chunk.len();
        }
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / checked as f64)
}

/// A batch of `size` with one signature changed must refuse that one alone.
fn refuses_a_forgery(
    reg: &KeyRegistry,
    envs: &[SignedEnvelope],
    size: usize,
    now: i64,
    limits: &VerifyLimits,
) -> anyhow::Result<()> {
    let mut batch = envs[..size].to_vec();
    let bad = size / 2;
    // The lowest bit of s: still a canonical scalar, so the equation itself
    // must fail.
    batch[bad].signature[32] ^= 1;
    let refs: Vec<&SignedEnvelope> = batch.iter().collect();
    let refused: Vec<usize> = verify_batch(reg, &refs, now, limits)
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .map(|(i, _)| i)
        .collect();
    ensure!(
        refused == [bad],
        "a batch of {size} with envelope {bad}'s signature changed refused {refused:?}"
    );
    Ok(())
}

struct Figures {
    sign_us: f64,
    verify_us: Vec<(usize, f64)>,
}

fn measure() -> anyhow::Result<Figures> {
    let sk = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let signer = Signer::new("node-a", sk);
    let mut reg = KeyRegistry::default();
    reg.add("node-a", signer.verifying_key())
        .map_err(anyhow::Error::msg)?;
    let now = crate::service::now_ms();
    let drafts: Vec<_> = (0..ENVELOPES)
        .map(|i| super::alert_draft(&super::kib_alert(i), now))
        .collect();
    let started = Instant::now();
    let envs: Vec<SignedEnvelope> = drafts.into_iter().map(|d| seal(&signer, d)).collect();
    let sign_us = started.elapsed().as_secs_f64() * 1e6 / ENVELOPES as f64;
    // A node's checks under the default `[limits]`.
    let limits = crate::config::LimitsSection::default().verify_limits();
    let mut verify = Vec::with_capacity(SIZES.len());
    for size in SIZES {
        refuses_a_forgery(&reg, &envs, size, now, &limits)?;
        verify.push((size, verify_us(&reg, &envs, size, now, &limits)?));
    }
    Ok(Figures {
        sign_us,
        verify_us: verify,
    })
}

pub async fn run(json: bool) -> anyhow::Result<()> {
    let backend = ed25519_backend();
    if !json {
        eprintln!(
            "certfed bench: signatures; {ENVELOPES} signed 1 KiB alerts checked in batches of {SIZES:?} ..."
        );
    }
    let f = tokio::task::spawn_blocking(measure).await??;
    let round = |x: f64| (x * 100.0).round() / 100.0;
    if json {
        let mut v = serde_json::Map::new();
        v.insert("ed25519_backend".into(), backend.into());
        v.insert("sign_us".into(), round(f.sign_us).into());
        for (size, us) in &f.verify_us {
            v.insert(format!("verify_{size}_us"), round(*us).into());
        }
        println!("{}", serde_json::Value::Object(v));
    } else {
        println!("{:<44} {:>12}", "metric", "value");
        println!("{:<44} {:>12}", "ed25519_backend", backend);
        println!(
            "{:<44} {:>12.2}",
            "sign_us (seal one encoded 1 KiB alert)", f.sign_us
        );
        for (size, us) in &f.verify_us {
            println!(
                "{:<44} {:>12.2}",
                format!("verify_{size}_us (per envelope, batches of {size})"),
                us
            );
        }
    }
    Ok(())
}
