//! `certfed bench --memory`: the memory budget of a relaying node whose peer
//! stays down.
//!
//! The line node-a – node-b – node-c: node-b runs as a real `certfed serve`
//! process, node-c is never started, and this process plays node-a, pushing N
//! signed 1 KiB GREEN alerts over one Push stream. node-b verifies and stores
//! each one and queues it for node-c in its durable outbox. node-b's resident
//! memory (`VmRSS`, and the kernel's peak `VmHWM`) is read from `/proc` when idle
//! and every 250 ms while the alerts queue up.
//!
//! Budgets: idle RSS at most 64 MiB, peak RSS at most 100 MiB, and every alert
//! in node-c's outbox.
use crate::app::localfed::Fed;
use crate::proto::v1::*;
use anyhow::{Context, bail};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Idle resident memory budget of a node.
const IDLE_BUDGET_MIB: f64 = 64.0;
/// Resident memory budget of a node queueing for a peer that stays down.
const PEAK_BUDGET_MIB: f64 = 100.0;
/// How long the node sits idle before its RSS is read.
const IDLE_WAIT: Duration = Duration::from_secs(3);
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in MiB.
pub(super) fn proc_status_mib(pid: &str, field: &str) -> Option<f64> {
    proc_kb_mib(pid, "status", field)
}

/// A `kB` field of `/proc/<pid>/<file>` (`status`, `smaps_rollup`), in MiB.
pub(super) fn proc_kb_mib(pid: &str, file: &str, field: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib as f64 / 1024.0)
}

/// CPU time (user + system) a process has used so far, in seconds.
pub(super) fn proc_cpu_seconds(pid: &str) -> Option<f64> {
    let pid: i32 = pid.parse().ok()?;
    let st = procfs::process::Process::new(pid).ok()?.stat().ok()?;
    Some((st.utime + st.stime) as f64 / procfs::ticks_per_second() as f64)
}

/// CPU time (user + system) this process has used so far, in seconds.
pub(super) fn own_cpu_seconds() -> Option<f64> {
    proc_cpu_seconds(&std::process::id().to_string())
}

/// The machine's load averages over 1, 5 and 15 minutes (`/proc/loadavg`).
pub(super) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Starts node `i` as a `certfed serve` process and waits until it listens.
pub(super) async fn spawn(fed: &Fed, i: usize) -> anyhow::Result<NodeProcess> {
    spawn_with(fed, i, &[]).await
}

/// The allocator setting of the shipped systemd unit
/// (`deploy/systemd/certfed.service`): two heap arenas.
pub(super) const UNIT_MALLOC_ARENA_MAX: &str = "2";

/// Starts node `i` as the shipped systemd unit runs it: with
/// `MALLOC_ARENA_MAX=2` in its environment, unless this process's
/// environment sets `MALLOC_ARENA_MAX` (then that value is inherited).
/// Returns the process and the value it runs with.
pub(super) async fn spawn_as_unit(fed: &Fed, i: usize) -> anyhow::Result<(NodeProcess, String)> {
    match std::env::var("MALLOC_ARENA_MAX") {
        Ok(v) => Ok((spawn(fed, i).await?, v)),
        Err(_) => Ok((
            spawn_with(fed, i, &[("MALLOC_ARENA_MAX", UNIT_MALLOC_ARENA_MAX)]).await?,
            UNIT_MALLOC_ARENA_MAX.to_string(),
        )),
    }
}

/// [`spawn`] with extra environment variables.
async fn spawn_with(fed: &Fed, i: usize, env: &[(&str, &str)]) -> anyhow::Result<NodeProcess> {
    let id = &fed.specs[i].id;
    let log = fed.pki.path(&format!("{id}.log"));
    let log_file = std::fs::File::create(&log)?;
    let exe = std::env::current_exe().context("locating the certfed binary")?;
    let child = Command::new(exe)
        .envs(env.iter().copied())
        .args(["serve", "--config"])
        .arg(fed.config_path(i))
        // (`CERTFED_BENCH_LOG`: the nodes' log filter, to look into a run.)
        .env(
            "RUST_LOG",
            std::env::var("CERTFED_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        // The quick_check of a 2 GB store takes several seconds: not what is measured.
        .env("CERTFED__STORAGE__INTEGRITY_CHECK", "off")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {id}"))?;
    let mut node = NodeProcess { child, log };
    let port = fed.specs[i].port;
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Some(st) = node.child.try_wait()? {
            bail!("{id} exited ({st}) before listening:\n{}", node.log_tail());
        }
        if Instant::now() > deadline {
            bail!("{id} did not listen within 60 s:\n{}", node.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(node)
}

/// The node process; killed if still running when dropped (error paths).
pub(super) struct NodeProcess {
    pub(super) child: std::process::Child,
    pub(super) log: std::path::PathBuf,
}

impl NodeProcess {
    pub(super) fn pid(&self) -> String {
        self.child.id().to_string()
    }

    pub(super) fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM, then wait (up to 30 s) for the exit status.
    pub(super) async fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let st = Command::new("kill")
            .args(["-TERM", &self.pid()])
            .status()
            .context("running kill -TERM")?;
        if !st.success() {
            bail!("kill -TERM {} failed", self.pid());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!(
                    "node process {} did not exit within 30 s of SIGTERM",
                    self.pid()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Total size of the database files (`certfed.db`, `-wal`, `-shm`) in `dir`, in MiB.
pub(super) fn db_mib(dir: &Path) -> f64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0.0;
    };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("certfed.db"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum::<u64>() as f64
        / (1024.0 * 1024.0)
}

fn mib(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Peak of `VmRSS` samples, stored as KiB in atomics for the sampler task.
#[derive(Default)]
struct Peaks {
    node_kib: AtomicU64,
    self_kib: AtomicU64,
    samples: AtomicU64,
    stop: AtomicBool,
}

pub async fn run(messages: usize, json: bool) -> anyhow::Result<()> {
    if !json {
        eprintln!(
            "certfed bench --memory: node-b as a process, node-c down, {messages} signed 1 KiB alerts queued for node-c ..."
        );
    }
    // Measures SQLite files (and the process's memory on them) whatever the
    // test environment's backend.
    let fed = Fed::new(&["node-a", "node-b", "node-c"], &[(0, 1), (1, 2)]).sqlite();
    let mut node = spawn(&fed, 1).await?;
    let pid = node.pid();

    tokio::time::sleep(IDLE_WAIT).await;
    let idle =
        proc_status_mib(&pid, "VmRSS").with_context(|| format!("reading /proc/{pid}/status"))?;

    // Sample b's RSS (and this process's own) while the alerts queue up.
    let peaks = Arc::new(Peaks::default());
    let sampler = {
        let peaks = peaks.clone();
        let pid = pid.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            while !peaks.stop.load(Ordering::Relaxed) {
                tick.tick().await;
                if let Some(m) = proc_status_mib(&pid, "VmRSS") {
                    peaks
                        .node_kib
                        .fetch_max((m * 1024.0) as u64, Ordering::Relaxed);
                    peaks.samples.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(m) = proc_status_mib("self", "VmRSS") {
                    peaks
                        .self_kib
                        .fetch_max((m * 1024.0) as u64, Ordering::Relaxed);
                }
            }
        })
    };

    // Sign on a thread of its own (a bounded stream, see SignedStream).
    let mut signed = super::SignedStream::start(&fed, "node-a", messages, 0)?;

    let mut client =
        crate::app::localfed::federation_client(&fed.pki, &fed.addr(1), "node-a", Some("node-b"))
            .await;
    let started = Instant::now();
    let mut acks = client
        .push(tokio_stream::wrappers::ReceiverStream::new(signed.frames()))
        .await
        .context("push stream")?
        .into_inner();
    let mut queued = 0usize;
    while queued < messages {
        let ack = match acks.message().await {
            Ok(Some(a)) => a,
            Ok(None) => bail!("push stream ended after {queued} acks"),
            Err(s) => bail!(
                "push stream failed after {queued} acks: {s}\nnode-b log:\n{}",
                node.log_tail()
            ),
        };
        if ack.outcome != PushOutcome::Accepted as i32 {
            bail!("frame {} not accepted: {}", ack.seq, ack.reason);
        }
        queued += 1;
        if !json && queued.is_multiple_of(100_000) {
            eprintln!(
                "  {queued:>9} queued  {:>6.1} s  node-b RSS {:>6.1} MiB",
                started.elapsed().as_secs_f64(),
                proc_status_mib(&pid, "VmRSS").unwrap_or(f64::NAN)
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    peaks.stop.store(true, Ordering::Relaxed);
    sampler.await?;
    signed.finish()?;
    drop(acks);
    drop(client);

    let mut op = fed.operator(1).await;
    let peers = op
        .list_peers(ListPeersRequest {
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .context("ListPeers on node-b")?
        .into_inner()
        .peers;
    let outbox_depth = peers
        .iter()
        .find(|p| p.peer_id == "node-c")
        .map(|p| p.outbox_depth)
        .context("node-c missing from node-b's ListPeers")?;
    drop(op);

    let final_rss = proc_status_mib(&pid, "VmRSS").unwrap_or(f64::NAN);
    let hwm = proc_status_mib(&pid, "VmHWM").unwrap_or(f64::NAN);
    let peak = peaks.node_kib.load(Ordering::Relaxed) as f64 / 1024.0;
    let self_peak = peaks.self_kib.load(Ordering::Relaxed) as f64 / 1024.0;
    let samples = peaks.samples.load(Ordering::Relaxed);
    let db = db_mib(&fed.data_dir(1));
    let exit = node.terminate().await?;

    if json {
        let v = serde_json::json!({
            "idle_rss_mib": mib(idle),
            "peak_rss_mib": mib(peak),
            "final_rss_mib": mib(final_rss),
            "hwm_rss_mib": mib(hwm),
            "queued": queued,
            "outbox_depth": outbox_depth,
            "db_mib": mib(db),
            "seconds": (seconds * 100.0).round() / 100.0,
            "rss_samples": samples,
            "bench_process_peak_rss_mib": mib(self_peak),
        });
        println!("{v}");
    } else {
        println!(
            "{:<44} {:>12}",
            "metric (node-b, peer node-c down)", "value"
        );
        println!("{:<44} {:>12.1}", "idle RSS MiB", idle);
        println!("{:<44} {:>12.1}", "peak RSS MiB while queueing", peak);
        println!("{:<44} {:>12.1}", "final RSS MiB", final_rss);
        println!("{:<44} {:>12.1}", "VmHWM MiB (kernel peak, whole run)", hwm);
        println!("{:<44} {:>12}", "messages queued (acknowledged)", queued);
        println!("{:<44} {:>12}", "outbox depth for node-c", outbox_depth);
        println!("{:<44} {:>12.1}", "db size MiB (db + wal + shm)", db);
        println!("{:<44} {:>12.1}", "seconds", seconds);
        println!("{:<44} {:>12}", "RSS samples (every 250 ms)", samples);
        println!("{:<44} {:>12.1}", "bench process peak RSS MiB", self_peak);
    }

    let mut failures = Vec::new();
    if idle > IDLE_BUDGET_MIB {
        failures.push(format!(
            "idle RSS {idle:.1} MiB is over the {IDLE_BUDGET_MIB} MiB budget"
        ));
    }
    if peak.max(hwm) > PEAK_BUDGET_MIB {
        failures.push(format!(
            "peak RSS {:.1} MiB (sampled {peak:.1}, VmHWM {hwm:.1}) is over the {PEAK_BUDGET_MIB} MiB budget",
            peak.max(hwm)
        ));
    }
    if outbox_depth != messages as u64 {
        failures.push(format!(
            "outbox depth for node-c is {outbox_depth}, expected {messages}"
        ));
    }
    if !exit.success() {
        failures.push(format!("node-b did not exit cleanly on SIGTERM: {exit}"));
    }
    if !failures.is_empty() {
        bail!("memory budget not met: {}", failures.join("; "));
    }
    Ok(())
}
