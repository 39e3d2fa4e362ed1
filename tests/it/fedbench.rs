//! `certfed bench --federation N --json`, small: the real binary starts N
//! real node processes (PKI, mutual TLS, SQLite on disk), plays broadcasts and
//! AMBER alerts, and prints one JSON object. Checked: the fields the contract
//! names are there with sane values, the run is exact (nothing missing,
//! duplicated or readable where it must not be), the steady state (warm
//! trees) is the default and `--federation-cold-trees` turns it off, and the
//! nodes run with the systemd unit's `MALLOC_ARENA_MAX=2` unless the
//! benchmark's environment sets another value. The single-link benchmark
//! with a few alerts, and the signature benchmark (its fields, and the
//! backend it names). No figure is judged here:
//! speed is for the benchmark itself, not a test.

use serde_json::Value;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_certfed");

/// Runs a 6-node federation benchmark with `extra` arguments (and
/// `env`), returning its JSON.
fn bench(extra: &[&str], env: &[(&str, &str)]) -> Value {
    let mut c = Command::new(BIN);
    c.env_remove("MALLOC_ARENA_MAX")
        .env("RUST_LOG", "error")
        .args([
            "bench",
            "--federation",
            "6",
            "--federation-green",
            "8",
            "--federation-amber",
            "3",
            "--federation-recipients",
            "2",
            "--federation-rate",
            "20",
            "--federation-settle",
            "60",
            "--json",
        ])
        .args(extra)
        .envs(env.iter().copied());
    json_of(&mut c, "certfed bench --federation")
}

/// Runs `c` (a `certfed bench … --json`), which must succeed, and returns the
/// one JSON object it prints; `what` names it in a failure.
fn json_of(c: &mut Command, what: &str) -> Value {
    let out = c.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"))
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} is not a number in {v}"))
}

#[test]
fn the_federation_benchmark_reports_an_exact_run_of_real_nodes() {
    let v = bench(&[], &[]);
    assert_eq!(v["federation_nodes"], 6, "{v}");
    // Degree 3 to 5 on 6 nodes: at least 9 links, at most 15.
    let links = num(&v, "federation_links");
    assert!((9.0..=15.0).contains(&links), "{v}");
    for k in [
        "all_eligible_p50_ms",
        "all_eligible_p99_ms",
        "per_delivery_p99_ms",
        "envelopes_per_delivery",
        "rss_per_node_mib",
    ] {
        assert!(num(&v, k) > 0.0, "{k} in {v}");
    }
    for k in ["receipts_per_delivery", "announce_bytes_per_delivery"] {
        assert!(num(&v, k) >= 0.0, "{k} in {v}");
    }
    assert!(
        num(&v, "all_eligible_p50_ms") <= num(&v, "all_eligible_p99_ms"),
        "{v}"
    );
    // 8 broadcasts to 5 other nodes and 3 alerts to 2 recipients each.
    assert_eq!(v["deliveries"], 8 * 5 + 3 * 2, "{v}");
    assert_eq!(v["missing"], 0, "{v}");
    assert_eq!(v["duplicated"], 0, "{v}");
    assert_eq!(v["amber_readable_elsewhere"], 0, "{v}");
    // The default: trees formed, nodes as the unit runs them.
    assert_eq!(v["warm_trees"], true, "{v}");
    assert_eq!(v["malloc_arena_max"], "2", "{v}");
}

#[test]
fn cold_trees_and_an_allocator_setting_of_its_own_are_taken() {
    let v = bench(&["--federation-cold-trees"], &[("MALLOC_ARENA_MAX", "3")]);
    assert_eq!(v["warm_trees"], false, "{v}");
    assert_eq!(v["malloc_arena_max"], "3", "{v}");
    assert_eq!(v["missing"], 0, "{v}");
    assert_eq!(v["duplicated"], 0, "{v}");
}

/// The single-link benchmark with fewer alerts than its listing page (50):
/// the listing measurement expects what the node holds, not a full page. Run
/// with indicators of each alert's own, which the node must accept.
#[test]
fn the_single_link_benchmark_runs_with_fewer_alerts_than_a_page() {
    let v = json_of(
        Command::new(BIN).env("RUST_LOG", "error").args([
            "bench",
            "--json",
            "--messages",
            "10",
            "--rate",
            "50",
            "--seconds",
            "1",
            "--distinct-indicators",
        ]),
        "certfed bench --messages 10 --distinct-indicators (a refused alert fails it)",
    );
    assert_eq!(v["ingest_messages"], 10, "{v}");
    assert_eq!(v["ingest_indicators"], "distinct", "{v}");
    for k in [
        "list_alerts_ms",
        "list_alerts_tlp_ms",
        "list_alerts_origin_ms",
    ] {
        assert!(num(&v, k) > 0.0, "{k} in {v}");
    }
    // The CPU each phase cost this process (ten alerts may take less than
    // one clock tick; a second of relaying between three nodes does not).
    let cores = num(&v, "cores");
    for (k, at_least) in [
        ("ingest_cpu_us_per_msg", 0.0),
        ("ingest_cores_busy", 0.0),
        ("relay_cpu_ms_per_msg", 1e-9),
        ("relay_cores_busy", 1e-9),
    ] {
        let x = num(&v, k);
        assert!(x.is_finite() && x >= at_least, "{k} in {v}");
    }
    assert!(num(&v, "relay_cores_busy") <= cores + 0.5, "{v}");
    assert!(
        v["load_average_before"]
            .as_str()
            .is_some_and(|l| l.split(' ').count() == 3),
        "{v}"
    );
}

/// The signature benchmark: every figure is there and positive (it fails
/// itself when a well-signed envelope is refused, or a changed signature is
/// not refused alone, in any batch size), and it names the backend this
/// processor runs: AVX-512 IFMA where the processor has it (the checkout's
/// build adds that backend on x86-64), else AVX2, else the portable one.
#[test]
fn the_signature_benchmark_names_the_backend_this_processor_runs() {
    let v = json_of(
        Command::new(BIN)
            .env("RUST_LOG", "error")
            .args(["bench", "--signatures", "--json"]),
        "certfed bench --signatures",
    );
    for k in [
        "sign_us",
        "verify_1_us",
        "verify_16_us",
        "verify_64_us",
        "verify_512_us",
    ] {
        let x = num(&v, k);
        assert!(x.is_finite() && x > 0.0, "{k} in {v}");
    }
    #[cfg(target_arch = "x86_64")]
    let want = if std::arch::is_x86_feature_detected!("avx512ifma")
        && std::arch::is_x86_feature_detected!("avx512vl")
    {
        "avx512ifma"
    } else if std::arch::is_x86_feature_detected!("avx2") {
        "avx2"
    } else {
        "portable"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let want = "portable";
    assert_eq!(v["ed25519_backend"], want, "{v}");
}
