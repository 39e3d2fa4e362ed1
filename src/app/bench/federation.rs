//! `certfed bench --federation N`: the federation at full size.
//!
//! N nodes (default 37), each a real `certfed serve` process of this binary
//! (real PKI, mutual TLS, SQLite on disk, metrics on loopback), linked by a
//! seeded random topology: a random spanning tree, then random links until
//! every node has its drawn degree (3, 4 or 5; never above 5). Each node runs
//! as the shipped systemd unit runs it (`MALLOC_ARENA_MAX=2`, unless this
//! process's environment sets it). Once a warm-up broadcast from every node
//! has reached every node (the trees of a running federation;
//! `--federation-cold-trees`: from node 0 only, so the other origins' trees
//! form inside the measurement), the benchmark plays `--federation-green`
//! GREEN broadcasts and `--federation-amber` AMBER alerts (each to
//! `--federation-recipients` named recipients) at `--federation-rate` alerts
//! per second from random origins, in a seeded random order.
//!
//! Every node's Watch stream (what an analyst sees: readable alerts only) is
//! open for the whole run; arrival times are taken in this process, so every
//! latency is "seen at the origin" → "seen at the node" and the observation
//! cost cancels. Measured:
//!
//! - `all_eligible_p50_ms` / `_p99_ms`: per alert, until the last eligible
//!   node (every node for a broadcast, the named recipients for AMBER) has it;
//! - `per_delivery_p99_ms`: per (alert, eligible node other than the origin);
//! - `envelopes_per_delivery`: Push frames sent over all links (messages
//!   and receipts; a bundle of receipts counts once:
//!   `certfed_frames_sent_total` summed over the nodes; a build without it
//!   counts envelopes received, `envelopes_counted_by` says which) per
//!   delivery, of which `receipts_per_delivery` are receipt frames and
//!   `named_per_delivery` frames of messages to named recipients (the AMBER
//!   alerts: routed toward their recipients, or flooded; ciphertext at
//!   relays);
//!   `receipts_stored_per_delivery`: receipts stored anywhere
//!   (`certfed_receipts_received_total`, at relays and origins) per delivery;
//!   `announce_bytes_per_delivery`: bytes of "I have" announcements sent
//!   (`certfed_announce_bytes_total`; 0 where the node has none);
//!   `gossip_frames_per_delivery`: Plumtree control frames (announcements,
//!   grafts, prunes; not envelopes) and `grafted_per_delivery`: messages
//!   queued because a peer asked for them; `shorter_copies_sent`: copies
//!   sent to peers that asked for one over fewer links (`domain::hop_limit`:
//!   a relay stopped at the hop limit by a long tree path);
//! - where a delivery's time goes, from the signed custody times of each
//!   first arrival (one clock: the nodes share this machine):
//!   `links_crossed_mean` / `_p99` (the depth of the path it came by),
//!   `link_p50_ms` / `_p99_ms` / `_mean_ms` (one link: from one node's
//!   `received_at` — the origin's `created` for the first — to the next
//!   one's: ingest, queueing, the send) and `store_to_watch_p99_ms` (the
//!   node's own store to its Watch stream);
//! - `cpu_ms_per_delivery`: CPU time (user + system) of all node processes
//!   from the first publish to the end of the settle, per delivery — the
//!   cost figure that does not depend on how loaded the machine is — and
//!   `cpu_cores_busy`, the same CPU time per second of that window;
//! - with `--federation-idle-seconds S`: `idle_cpu_cores_busy`, the CPU
//!   time of all node processes per second over S seconds with no traffic
//!   (after the warm-up settled, every Watch stream open, before the load):
//!   the fixed cost of timers, keepalives and idle tasks, which every
//!   `cpu_ms_per_delivery` includes (`idle_cpu_ms_per_node_per_s`: per node);
//! - `rss_per_node_mib`: mean resident memory of the node processes at the
//!   end (and the largest, `rss_max_node_mib`), split into private memory
//!   (`rss_anon_per_node_mib`: heap, stacks) and file-backed pages
//!   (`rss_file_per_node_mib`: mostly the certfed binary's code, one copy in
//!   RAM shared by every node process), and `pss_per_node_mib` (the
//!   proportional set size: shared pages divided among their sharers);
//!   `malloc_arena_max`: the heap arenas the nodes ran with (as the unit);
//! - exactness: `missing` (eligible deliveries that never showed up within
//!   `--federation-settle` seconds after the last publish), `duplicated`
//!   (a node's Watch showing one alert twice), `amber_readable_elsewhere`
//!   (an AMBER alert shown to a node that is not a named recipient: must be
//!   0) and `amber_held_elsewhere` (AMBER ciphertext held by nodes that are
//!   neither recipients nor origin: relays that carried it).
//!
//! With `--federation-kill K` (the variant uses 3) K random nodes are killed
//! (SIGKILL) a third of the way through the run and restarted two seconds
//! later; no alert originates at a node while it is down, and the run must
//! still be exact. Counters of a killed node are read just before the kill
//! and added to those of its second life.
//!
//! The run fails (non-zero exit, after printing) when anything is missing,
//! duplicated or readable where it must not be.
use super::memory::{NodeProcess, load_average, proc_status_mib};
use crate::app::localfed::Fed;
use crate::proto::v1::*;
use anyhow::{Context, bail};
use futures::StreamExt;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What `certfed bench --federation` plays.
#[derive(Debug, Clone)]
pub struct Plan {
    pub nodes: usize,
    pub seed: u64,
    pub green: usize,
    pub amber: usize,
    pub recipients: usize,
    pub rate: f64,
    pub kill: usize,
    pub settle_secs: u64,
    /// Plumtree off on every node (`gossip.plumtree = false`): flooding.
    pub flood: bool,
    /// Warm-up broadcasts from every node, not only node 0 (every origin's
    /// tree formed before the load: the steady state).
    pub warm_trees: bool,
    /// Seconds of no traffic measured before the load (0: none).
    pub idle_secs: u64,
    /// The nodes' `limits.hop_limit` (`None`: the default).
    pub hop_limit: Option<u32>,
}

/// Counters summed over the nodes (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    received: f64,
    receipts: f64,
    announce_bytes: f64,
    frames: f64,
    receipt_frames: f64,
    named_frames: f64,
    named_routed: f64,
    named_not_needed: f64,
    named_sent_again: f64,
    gossip_frames: f64,
    grafted: f64,
    shorter: f64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, o: Counters) -> Counters {
        Counters {
            received: self.received - o.received,
            receipts: self.receipts - o.receipts,
            announce_bytes: self.announce_bytes - o.announce_bytes,
            frames: self.frames - o.frames,
            receipt_frames: self.receipt_frames - o.receipt_frames,
            named_frames: self.named_frames - o.named_frames,
            named_routed: self.named_routed - o.named_routed,
            named_not_needed: self.named_not_needed - o.named_not_needed,
            named_sent_again: self.named_sent_again - o.named_sent_again,
            gossip_frames: self.gossip_frames - o.gossip_frames,
            grafted: self.grafted - o.grafted,
            shorter: self.shorter - o.shorter,
        }
    }
}

impl std::ops::Add for Counters {
    type Output = Counters;
    fn add(self, o: Counters) -> Counters {
        Counters {
            received: self.received + o.received,
            receipts: self.receipts + o.receipts,
            announce_bytes: self.announce_bytes + o.announce_bytes,
            frames: self.frames + o.frames,
            receipt_frames: self.receipt_frames + o.receipt_frames,
            named_frames: self.named_frames + o.named_frames,
            named_routed: self.named_routed + o.named_routed,
            named_not_needed: self.named_not_needed + o.named_not_needed,
            named_sent_again: self.named_sent_again + o.named_sent_again,
            gossip_frames: self.gossip_frames + o.gossip_frames,
            grafted: self.grafted + o.grafted,
            shorter: self.shorter + o.shorter,
        }
    }
}

/// Links between every two nodes (breadth-first; `usize::MAX`: unreachable).
fn distances(n: usize, edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut adj = vec![Vec::new(); n];
    for &(a, b) in edges {
        adj[a].push(b);
        adj[b].push(a);
    }
    (0..n)
        .map(|s| {
            let mut d = vec![usize::MAX; n];
            d[s] = 0;
            let mut queue = std::collections::VecDeque::from([s]);
            while let Some(v) = queue.pop_front() {
                for &u in &adj[v] {
                    if d[u] == usize::MAX {
                        d[u] = d[v] + 1;
                        queue.push_back(u);
                    }
                }
            }
            d
        })
        .collect()
}

/// A seeded random topology: `n` nodes, each of degree 3 to 5 (fewer only
/// when `n` is too small), connected. Edges are pairs (low, high).
pub fn topology(n: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let max_deg = 5.min(n.saturating_sub(1));
    let want: Vec<usize> = (0..n)
        .map(|_| rng.random_range(3..=5).min(max_deg))
        .collect();
    let mut deg = vec![0usize; n];
    let mut edges: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    // A random spanning tree: each node joins an earlier one with room.
    for k in 1..n {
        let v = order[k];
        let room: Vec<usize> = order[..k]
            .iter()
            .copied()
            .filter(|&u| deg[u] < max_deg)
            .collect();
        let u = *room.choose(&mut rng).unwrap_or(&order[0]);
        edges.insert((u.min(v), u.max(v)));
        deg[u] += 1;
        deg[v] += 1;
    }
    // Then links between nodes below their drawn degree.
    for _ in 0..n * 20 {
        let short: Vec<usize> = (0..n).filter(|&v| deg[v] < want[v]).collect();
        if short.is_empty() {
            break;
        }
        let v = *short.choose(&mut rng).expect("not empty");
        let free: Vec<usize> = (0..n)
            .filter(|&u| u != v && deg[u] < max_deg && !edges.contains(&(u.min(v), u.max(v))))
            .collect();
        // Prefer another node below its target, else any with room.
        let below: Vec<usize> = free.iter().copied().filter(|&u| deg[u] < want[u]).collect();
        let Some(&u) = below.choose(&mut rng).or_else(|| free.choose(&mut rng)) else {
            continue;
        };
        edges.insert((u.min(v), u.max(v)));
        deg[u] += 1;
        deg[v] += 1;
    }
    edges.into_iter().collect()
}

/// Reads `/metrics` over plain HTTP on `port` and sums the counters used.
async fn scrape(port: u16) -> anyhow::Result<Counters> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("connecting to /metrics on port {port}"))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_string(&mut body))
        .await
        .context("/metrics did not answer within 20 s")??;
    let value = |name: &str| -> f64 {
        body.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    Ok(Counters {
        received: value("certfed_messages_received_total"),
        receipts: value("certfed_receipts_received_total"),
        announce_bytes: value("certfed_announce_bytes_total"),
        frames: value("certfed_frames_sent_total"),
        receipt_frames: value("certfed_frames_sent_total{kind=\"receipts\"}"),
        named_frames: value("certfed_frames_sent_total{kind=\"named\"}"),
        named_routed: value("certfed_named_routed_total"),
        named_not_needed: value("certfed_named_not_needed_total"),
        named_sent_again: value("certfed_named_sent_again_total"),
        gossip_frames: value("certfed_gossip_frames_sent_total"),
        grafted: value("certfed_gossip_graft_queued_total"),
        shorter: value("certfed_gossip_shorter_sent_total"),
    })
}

/// What one alert of the run is.
struct Sent {
    origin: usize,
    /// Eligible nodes other than the origin.
    eligible: Vec<usize>,
    amber: bool,
}

/// Arrivals seen through every node's Watch: by node, message id → times.
type Seen = Arc<Mutex<Vec<HashMap<String, Vec<Instant>>>>>;

/// The way each first arrival came, by node, message id → its times in
/// ms since the epoch (one clock: every node runs on this machine): the
/// origin's `created`, each relay's signed `received_at` in custody order,
/// the node's own `received`, then when its Watch showed it here.
type Ways = Arc<Mutex<Vec<HashMap<String, Vec<i64>>>>>;

/// `[created, relays' received_at…, received, watched]` of a message view.
fn way_of(m: &MessageView, watched_ms: i64) -> Option<Vec<i64>> {
    let ms = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
    };
    let mut out = vec![ms(&m.created)?];
    for h in &m.custody {
        out.push(ms(&h.received_at)?);
    }
    out.push(ms(&m.received)?);
    out.push(watched_ms);
    Some(out)
}

/// Keeps a Watch stream open on node `i` until `stop`, reconnecting (from
/// the last cursor seen) when the node goes away and comes back.
fn watch(
    fed: Arc<Fed>,
    i: usize,
    seen: Seen,
    ways: Ways,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut cursor = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let mut op = fed.operator(i).await;
            let req = WatchRequest {
                filter: Some(AlertFilter {
                    include_exercise: true,
                    ..Default::default()
                }),
                after_cursor: cursor,
                from_start: false,
            };
            let Ok(r) = op.watch(req).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let mut stream = r.into_inner();
            while let Some(Ok(ev)) = stream.next().await {
                let at = Instant::now();
                cursor = cursor.max(ev.cursor);
                if let Some(m) = ev.message {
                    let wall = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    if let Some(w) = way_of(&m, wall) {
                        ways.lock().expect("ways lock")[i]
                            .entry(m.message_id.clone())
                            .or_insert(w);
                    }
                    seen.lock().expect("seen lock")[i]
                        .entry(m.message_id)
                        .or_default()
                        .push(at);
                }
                if stop.load(Ordering::Relaxed) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// `k` distinct ports on 127.0.0.1 that can be bound now, from a seeded
/// start between 20000 and 30000 (below Linux's default ephemeral range,
/// 32768 and up, so no outbound connection takes one meanwhile).
fn quiet_ports(k: usize, seed: u64) -> anyhow::Result<Vec<u16>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ std::process::id() as u64);
    let mut p: u16 = rng.random_range(20_000..30_000);
    let mut out = Vec::with_capacity(k);
    while out.len() < k {
        if p >= 32_000 {
            bail!("no {k} free ports between 20000 and 32000 on 127.0.0.1");
        }
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            out.push(p);
        }
        p += 1;
    }
    Ok(out)
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

pub async fn run(plan: Plan, json: bool) -> anyhow::Result<()> {
    if plan.nodes < 4 {
        bail!(
            "--federation {}: at least 4 nodes are needed (a degree of 3 to 5)",
            plan.nodes
        );
    }
    if plan.recipients == 0 || plan.recipients >= plan.nodes {
        bail!(
            "--federation-recipients {}: give 1 to {} (named recipients other than the origin)",
            plan.recipients,
            plan.nodes - 1
        );
    }
    if plan.kill >= plan.nodes / 2 {
        bail!(
            "--federation-kill {}: kill fewer than half the nodes",
            plan.kill
        );
    }
    if plan.rate.is_nan() || plan.rate <= 0.0 {
        bail!("--federation-rate must be a positive number of alerts per second");
    }
    let n = plan.nodes;
    let load_before = load_average();
    let edges = topology(n, plan.seed);
    let hop_limit = plan.hop_limit.unwrap_or(crate::config::DEFAULT_HOP_LIMIT);
    let dist = distances(n, &edges);
    let diameter = dist.iter().flatten().copied().max().unwrap_or(0);
    let names: Vec<String> = (0..n).map(|i| format!("node-{i:02}")).collect();
    let ids: Vec<&str> = names.iter().map(String::as_str).collect();
    if !json {
        eprintln!(
            "certfed bench --federation {n}: {} links (seed {}); starting {n} certfed serve processes ...",
            edges.len(),
            plan.seed
        );
    }
    let mut fed = Fed::new(&ids, &edges).sqlite();
    // 2N ports below the kernel's ephemeral range, so that the nodes'
    // outbound connections cannot take a port before its node listens on it.
    let ports = quiet_ports(2 * n, plan.seed)?;
    let (node_ports, metrics_ports) = ports.split_at(n);
    // Peers are found by name (ports drawn earlier may repeat).
    let by_name: HashMap<String, u16> = fed
        .specs
        .iter()
        .zip(node_ports)
        .map(|(s, &p)| (s.id.clone(), p))
        .collect();
    for (i, spec) in fed.specs.iter_mut().enumerate() {
        spec.port = node_ports[i];
        for (name, p) in &mut spec.peers {
            *p = by_name[name.as_str()];
        }
        // (The node's `[limits]` section comes first: `extra` continues it.)
        spec.extra = plan
            .hop_limit
            .map(|h| format!("hop_limit = {h}\n"))
            .unwrap_or_default();
        spec.extra.push_str(&format!(
            "\n[metrics]\nlisten = \"127.0.0.1:{}\"\n",
            metrics_ports[i]
        ));
        spec.extra
            .push_str(&format!("\n[gossip]\nplumtree = {}\n", !plan.flood));
    }
    let metrics_ports = metrics_ports.to_vec();
    let fed = Arc::new(fed);
    // To look into a run afterwards: its nodes' folders (stores, logs,
    // configurations) are left in place.
    if std::env::var_os("CERTFED_BENCH_KEEP").is_some() {
        eprintln!(
            "certfed bench --federation: the nodes' folders stay in {} (CERTFED_BENCH_KEEP)",
            fed.data.path().display()
        );
        std::mem::forget(fed.clone());
    }
    let mut procs: Vec<NodeProcess> = Vec::with_capacity(n);
    let mut arenas = String::new();
    for i in 0..n {
        let (p, a) = super::memory::spawn_as_unit(&fed, i).await?;
        arenas = a;
        procs.push(p);
    }
    let started_nodes = Instant::now();

    // Warm-up: one broadcast from node 0 over every link (from every node
    // with `warm_trees`), until all within the hop limit hold them.
    let warm_origins = if plan.warm_trees { n } else { 1 };
    let mut warm_ids = Vec::with_capacity(warm_origins);
    for o in 0..warm_origins {
        let mut op = fed.operator(o).await;
        let id = op
            .publish_alert(PublishAlertRequest {
                alert: Some(super::kib_alert(o)),
                ..Default::default()
            })
            .await
            .context("warm-up PublishAlert")?
            .into_inner()
            .message_id;
        warm_ids.push(id);
        if plan.warm_trees {
            // One origin at a time, as a running federation's trees form.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for (i, name) in names.iter().enumerate() {
        let mut op = fed.operator(i).await;
        // (Warm-up broadcast `o` is from node `o`: owed within the hop limit.)
        for (o, warm) in warm_ids.iter().enumerate() {
            if dist[o][i] > hop_limit as usize {
                continue;
            }
            while op
                .get_message(GetMessageRequest {
                    message_id: warm.clone(),
                })
                .await
                .is_err()
            {
                if Instant::now() > deadline {
                    let peers = warm_diagnosis(&fed, &names, i, warm).await;
                    bail!(
                        "the warm-up broadcast {warm} did not reach {name} within 120 s; its peers:\n{peers}\nthe end of its log:\n{}",
                        procs[i].log_tail()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Let the warm-up's receipts and announcements settle before the
    // counters are read: until the frames sent stop changing for a second
    // (at least 2 s, at most 30 s).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settle_until = Instant::now() + Duration::from_secs(30);
    let mut last = f64::NAN;
    while Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut c = Counters::default();
        for p in &metrics_ports {
            c = c + scrape(*p).await?;
        }
        let now = c.frames + c.gossip_frames + c.receipts;
        if now == last {
            break;
        }
        last = now;
    }
    if !json {
        eprintln!(
            "  all {n} nodes up and linked after {:.1} s; playing {} GREEN + {} AMBER at {}/s ...",
            started_nodes.elapsed().as_secs_f64(),
            plan.green,
            plan.amber,
            plan.rate
        );
    }

    let seen: Seen = Arc::new(Mutex::new(vec![HashMap::new(); n]));
    let ways: Ways = Arc::new(Mutex::new(vec![HashMap::new(); n]));
    let stop = Arc::new(AtomicBool::new(false));
    let watchers: Vec<_> = (0..n)
        .map(|i| watch(fed.clone(), i, seen.clone(), ways.clone(), stop.clone()))
        .collect();
    // Give every Watch time to subscribe.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut before = Counters::default();
    for p in &metrics_ports {
        before = before + scrape(*p).await?;
    }
    let mut lost_lives = Counters::default();
    let cpu_of = |procs: &[NodeProcess]| -> f64 {
        procs
            .iter()
            .filter_map(|p| super::memory::proc_cpu_seconds(&p.pid()))
            .sum()
    };
    // The fixed cost: the nodes' CPU with nothing to carry (timers,
    // keepalives, idle tasks), every Watch stream open as under the load.
    let idle = if plan.idle_secs > 0 {
        let cpu0 = cpu_of(&procs);
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(plan.idle_secs)).await;
        let secs = t0.elapsed().as_secs_f64();
        let mut after = Counters::default();
        for p in &metrics_ports {
            after = after + scrape(*p).await?;
        }
        let frames = (after - before).frames + (after - before).gossip_frames;
        let cores = (cpu_of(&procs) - cpu0) / secs;
        if !json {
            eprintln!(
                "  idle for {secs:.1} s: the {n} nodes used {cores:.3} cores ({:.2} ms of CPU per node per second); {frames} frames sent",
                cores * 1000.0 / n as f64
            );
        }
        before = after;
        Some((secs, cores, frames))
    } else {
        None
    };
    let cpu_before = cpu_of(&procs);
    let mut cpu_lost_lives = 0.0;

    let mut rng = rand::rngs::StdRng::seed_from_u64(plan.seed ^ 0x5eed);
    let mut kinds: Vec<bool> = std::iter::repeat_n(false, plan.green)
        .chain(std::iter::repeat_n(true, plan.amber))
        .collect();
    kinds.shuffle(&mut rng);
    let total = kinds.len();
    let kill_at = if plan.kill > 0 { total / 3 } else { usize::MAX };
    let mut down: Vec<usize> = Vec::new();
    let mut restart_at: Option<Instant> = None;
    let mut killed = Vec::new();
    let sent: Arc<Mutex<HashMap<String, Sent>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = Vec::with_capacity(total);
    let clients: Vec<_> = {
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            v.push(fed.operator(i).await);
        }
        v
    };
    let run_started = Instant::now();
    for (k, amber) in kinds.into_iter().enumerate() {
        tick.tick().await;
        if k == kill_at {
            let mut pick: Vec<usize> = (0..n).collect();
            pick.shuffle(&mut rng);
            down = pick[..plan.kill].to_vec();
            for &v in &down {
                lost_lives = lost_lives + scrape(metrics_ports[v]).await.unwrap_or_default();
                cpu_lost_lives += super::memory::proc_cpu_seconds(&procs[v].pid()).unwrap_or(0.0);
                let _ = procs[v].child.kill();
                let _ = procs[v].child.wait();
                killed.push(names[v].clone());
            }
            restart_at = Some(Instant::now() + Duration::from_secs(2));
            if !json {
                eprintln!(
                    "  killed {} (SIGKILL); restarting them in 2 s",
                    killed.join(", ")
                );
            }
        }
        if let Some(at) = restart_at
            && Instant::now() >= at
        {
            for &v in &down {
                procs[v] = super::memory::spawn_as_unit(&fed, v).await?.0;
            }
            down.clear();
            restart_at = None;
        }
        let alive: Vec<usize> = (0..n).filter(|v| !down.contains(v)).collect();
        let origin = *alive.choose(&mut rng).expect("nodes alive");
        let (tlp, recipients): (Tlp, Vec<usize>) = if amber {
            let others: Vec<usize> = (0..n).filter(|&v| v != origin).collect();
            let r = others
                .choose_multiple(&mut rng, plan.recipients)
                .copied()
                .collect();
            (Tlp::Amber, r)
        } else {
            (Tlp::Green, vec![])
        };
        // Owed to the nodes within the hop limit of the origin.
        let reach = |v: &usize| dist[origin][*v] <= hop_limit as usize;
        let eligible: Vec<usize> = if amber {
            recipients.iter().copied().filter(reach).collect()
        } else {
            (0..n).filter(|&v| v != origin).filter(reach).collect()
        };
        let mut alert = super::kib_alert(k + 1);
        alert.tlp = tlp as i32;
        let req = PublishAlertRequest {
            alert: Some(alert),
            recipients: recipients.iter().map(|&v| names[v].clone()).collect(),
            ..Default::default()
        };
        let mut op = clients[origin].clone();
        let sent = sent.clone();
        let failures = failures.clone();
        let origin_name = names[origin].clone();
        tasks.push(tokio::spawn(async move {
            match op.publish_alert(req).await {
                Ok(r) => {
                    sent.lock().expect("sent lock").insert(
                        r.into_inner().message_id,
                        Sent {
                            origin,
                            eligible,
                            amber,
                        },
                    );
                }
                Err(e) => failures
                    .lock()
                    .expect("failures lock")
                    .push(format!("PublishAlert on {origin_name}: {}", e.message())),
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    if let Some(at) = restart_at {
        tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
        for &v in &down {
            procs[v] = super::memory::spawn_as_unit(&fed, v).await?.0;
        }
    }
    let publish_seconds = run_started.elapsed().as_secs_f64();

    // Wait until every eligible node shows every alert, or the settle time.
    let settle = Instant::now() + Duration::from_secs(plan.settle_secs);
    let peak_rss = Arc::new(Mutex::new(vec![0f64; n]));
    loop {
        let missing = {
            let sent = sent.lock().expect("sent lock");
            let seen = seen.lock().expect("seen lock");
            sent.iter()
                .map(|(id, s)| {
                    s.eligible
                        .iter()
                        .chain(std::iter::once(&s.origin))
                        .filter(|&&v| !seen[v].contains_key(id))
                        .count()
                })
                .sum::<usize>()
        };
        for (i, p) in procs.iter().enumerate() {
            if let Some(m) = proc_status_mib(&p.pid(), "VmRSS") {
                let mut pk = peak_rss.lock().expect("rss lock");
                pk[i] = pk[i].max(m);
            }
        }
        if missing == 0 || Instant::now() > settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Receipts of the last alerts travel back: give them a moment.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss: Vec<f64> = procs
        .iter()
        .filter_map(|p| proc_status_mib(&p.pid(), "VmRSS"))
        .collect();
    let mean_of = |file: &str, field: &str| {
        let v: Vec<f64> = procs
            .iter()
            .filter_map(|p| super::memory::proc_kb_mib(&p.pid(), file, field))
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let (rss_anon, rss_file) = (mean_of("status", "RssAnon"), mean_of("status", "RssFile"));
    // Proportional set size: shared pages divided among their sharers.
    let pss = mean_of("smaps_rollup", "Pss");
    let mut after = Counters::default();
    for p in &metrics_ports {
        after = after + scrape(*p).await?;
    }
    let used = after + lost_lives - before;
    // CPU the nodes spent from the first publish to the end of the settle
    // (a killed node's first life counted up to its kill).
    let cpu_seconds = cpu_of(&procs) + cpu_lost_lives - cpu_before;
    let cpu_window = run_started.elapsed().as_secs_f64();

    // AMBER ciphertext held by nodes that are neither recipients nor origin.
    let sent = std::mem::take(&mut *sent.lock().expect("sent lock"));
    let mut amber_held_elsewhere = 0usize;
    for (id, s) in sent.iter().filter(|(_, s)| s.amber) {
        for (v, op) in clients.iter().enumerate() {
            if v == s.origin || s.eligible.contains(&v) {
                continue;
            }
            let mut op = op.clone();
            // Held as ciphertext: PERMISSION_DENIED ("only relays it");
            // readable (a leak) is counted through Watch below.
            let r = op
                .get_message(GetMessageRequest {
                    message_id: id.clone(),
                })
                .await;
            match r {
                Ok(_) => amber_held_elsewhere += 1,
                Err(e) if e.code() == tonic::Code::PermissionDenied => amber_held_elsewhere += 1,
                Err(_) => {}
            }
        }
    }
    // Deliveries not seen through Watch: say, for the first few, whether the
    // node holds the alert (its Watch stream missed it) or not (lost or late).
    let unseen: Vec<(String, usize, usize, bool)> = {
        let seen = seen.lock().expect("seen lock");
        sent.iter()
            .flat_map(|(id, s)| {
                s.eligible
                    .iter()
                    .filter(|&&v| !seen[v].contains_key(id))
                    .map(|&v| (id.clone(), v, s.origin, s.amber))
                    .collect::<Vec<_>>()
            })
            .take(10)
            .collect()
    };
    for (id, v, origin, amber) in unseen {
        let held = clients[v]
            .clone()
            .get_message(GetMessageRequest {
                message_id: id.clone(),
            })
            .await
            .is_ok();
        eprintln!(
            "not seen: {} alert {id} from {} at {}: {}",
            if amber { "AMBER" } else { "GREEN" },
            names[origin],
            names[v],
            if held {
                "stored there (its Watch stream missed it)"
            } else {
                "not stored there"
            }
        );
        if held {
            continue;
        }
        // Lost or late: where it is stuck. Each peer of the node: whether it
        // holds the alert, and its delivery toward the node (none: it never
        // queued it there — a lazy link that was not asked for it).
        for &(x, y) in &edges {
            let p = match (x == v, y == v) {
                (true, _) => y,
                (_, true) => x,
                _ => continue,
            };
            let status = clients[p]
                .clone()
                .get_delivery_status(GetDeliveryStatusRequest {
                    message_id: id.clone(),
                })
                .await;
            let what = match status {
                Err(e) => format!("does not hold it ({:?})", e.code()),
                Ok(r) => match r
                    .into_inner()
                    .recipients
                    .into_iter()
                    .find(|d| d.node_id == names[v])
                {
                    None => "holds it; no delivery toward it".to_string(),
                    Some(d) => format!(
                        "holds it; delivery {:?} after {} attempt(s): {}",
                        DeliveryState::try_from(d.state).unwrap_or(DeliveryState::Unspecified),
                        d.attempts,
                        crate::domain::text::quote(&d.reason)
                    ),
                },
            };
            // And what the peer says of its link to the node.
            let link = clients_link(&fed, p, &names[v]).await;
            eprintln!("  peer {} of {}: {what}; {link}", names[p], names[v]);
        }
        eprintln!("  the end of {}'s log:\n{}", names[v], procs[v].log_tail());
    }
    stop.store(true, Ordering::Relaxed);
    for mut p in procs {
        let _ = p.terminate().await;
    }
    for w in watchers {
        w.abort();
    }
    let load_after = load_average();

    let seen = std::mem::take(&mut *seen.lock().expect("seen lock"));
    let (mut all, mut per) = (Vec::new(), Vec::new());
    let (mut missing, mut duplicated, mut deliveries, mut readable_elsewhere) = (0, 0, 0, 0);
    for (id, s) in &sent {
        for (v, at) in seen.iter().enumerate() {
            if let Some(t) = at.get(id) {
                duplicated += t.len() - 1;
                if s.amber && v != s.origin && !s.eligible.contains(&v) {
                    readable_elsewhere += 1;
                }
            }
        }
        let Some(t0) = seen[s.origin].get(id).and_then(|t| t.first()) else {
            missing += 1 + s.eligible.len();
            continue;
        };
        let mut last = 0f64;
        let mut complete = true;
        for &v in &s.eligible {
            deliveries += 1;
            match seen[v].get(id).and_then(|t| t.first()) {
                Some(t) => {
                    let ms = t.saturating_duration_since(*t0).as_secs_f64() * 1000.0;
                    per.push(ms);
                    last = last.max(ms);
                }
                None => {
                    missing += 1;
                    complete = false;
                }
            }
        }
        if complete {
            all.push(last);
        }
    }
    all.sort_by(f64::total_cmp);
    per.sort_by(f64::total_cmp);
    // Where a delivery's time goes, from the signed custody times of each
    // first arrival: links it crossed, the time of each link (a relay's
    // `received_at` to the next one's: its ingest, queueing and the send),
    // and the node's own store-to-Watch time.
    let ways = std::mem::take(&mut *ways.lock().expect("ways lock"));
    let (mut links_crossed, mut hop_ms, mut watch_ms) = (Vec::new(), Vec::new(), Vec::new());
    for (id, s) in &sent {
        for &v in &s.eligible {
            let Some(w) = ways[v].get(id) else { continue };
            let (stored, watched) = (w[w.len() - 2], w[w.len() - 1]);
            let path = &w[..w.len() - 1];
            links_crossed.push((path.len() - 1) as f64);
            hop_ms.extend(path.windows(2).map(|p| (p[1] - p[0]) as f64));
            watch_ms.push((watched - stored) as f64);
        }
    }
    links_crossed.sort_by(f64::total_cmp);
    hop_ms.sort_by(f64::total_cmp);
    watch_ms.sort_by(f64::total_cmp);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    // Envelopes over the links: Push frames sent (a bundle of receipts
    // counts once) where the nodes count them; otherwise (older builds,
    // one envelope a frame) envelopes received and receipts stored.
    let (envelopes, receipt_envelopes, counted_by) = if used.frames > 0.0 {
        (
            used.frames,
            used.receipt_frames,
            "certfed_frames_sent_total",
        )
    } else {
        (
            used.received,
            used.receipts,
            "certfed_messages_received_total",
        )
    };
    let pct = super::percentile;
    let d = deliveries.max(1) as f64;
    let rss_mean = rss.iter().sum::<f64>() / rss.len().max(1) as f64;
    let rss_max = rss.iter().copied().fold(0f64, f64::max);
    let peak = peak_rss
        .lock()
        .expect("rss lock")
        .iter()
        .copied()
        .fold(0f64, f64::max);
    let publish_failures = failures.lock().expect("failures lock").clone();
    let mut v = serde_json::json!({
        "federation_nodes": n,
        "federation_links": edges.len(),
        "federation_hop_limit": hop_limit,
        "federation_diameter": diameter,
        "federation_seed": plan.seed,
        "federation_alerts": sent.len(),
        "federation_green": plan.green,
        "federation_amber": plan.amber,
        "federation_rate_per_s": plan.rate,
        "federation_achieved_rate_per_s": round(total as f64 / publish_seconds, 2),
        "federation_killed": killed,
        "deliveries": deliveries,
        "all_eligible_p50_ms": round(pct(&all, 0.50), 1),
        "all_eligible_p99_ms": round(pct(&all, 0.99), 1),
        "per_delivery_p50_ms": round(pct(&per, 0.50), 1),
        "per_delivery_p99_ms": round(pct(&per, 0.99), 1),
        "envelopes_per_delivery": round(envelopes / d, 3),
        "receipts_per_delivery": round(receipt_envelopes / d, 3),
        "envelopes_counted_by": counted_by,
        "receipts_stored_per_delivery": round(used.receipts / d, 3),
        "announce_bytes_per_delivery": round(used.announce_bytes / d, 1),
        "gossip_frames_per_delivery": round(used.gossip_frames / d, 3),
        "grafted_per_delivery": round(used.grafted / d, 3),
        "shorter_copies_sent": used.shorter,
        "plumtree": !plan.flood,
        "warm_trees": plan.warm_trees,
        "cpu_ms_per_delivery": round(cpu_seconds * 1000.0 / d, 2),
        "cpu_cores_busy": round(cpu_seconds / cpu_window.max(1e-9), 2),
        "rss_per_node_mib": round(rss_mean, 1),
        "rss_anon_per_node_mib": round(rss_anon, 1),
        "rss_file_per_node_mib": round(rss_file, 1),
        "pss_per_node_mib": round(pss, 1),
        "rss_max_node_mib": round(rss_max.max(peak), 1),
        "missing": missing,
        "duplicated": duplicated,
        "amber_readable_elsewhere": readable_elsewhere,
        "amber_held_elsewhere": amber_held_elsewhere,
        "publish_failures": publish_failures.len(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "in_process": false,
    });
    // (Beside the literal: one more field passes `json!`'s recursion limit.)
    v["named_per_delivery"] = serde_json::json!(round(used.named_frames / d, 3));
    v["named_routed"] = serde_json::json!(used.named_routed);
    v["named_not_needed"] = serde_json::json!(used.named_not_needed);
    v["named_sent_again"] = serde_json::json!(used.named_sent_again);
    v["malloc_arena_max"] = serde_json::json!(arenas);
    let idle_v = match idle {
        Some((secs, cores, frames)) => serde_json::json!({
            "idle_seconds": round(secs, 1),
            "idle_cpu_cores_busy": round(cores, 3),
            "idle_cpu_ms_per_node_per_s": round(cores * 1000.0 / n as f64, 3),
            "idle_frames_sent": frames,
        }),
        None => serde_json::json!({}),
    };
    // (a second object: one `json!` of every field passes its macro's
    // recursion limit)
    let ways_v = serde_json::json!({
        "links_crossed_mean": round(mean(&links_crossed), 2),
        "links_crossed_p99": round(pct(&links_crossed, 0.99), 1),
        "link_p50_ms": round(pct(&hop_ms, 0.50), 1),
        "link_p99_ms": round(pct(&hop_ms, 0.99), 1),
        "link_mean_ms": round(mean(&hop_ms), 1),
        "store_to_watch_p99_ms": round(pct(&watch_ms, 0.99), 1),
    });
    for extra in [ways_v, idle_v] {
        if let (Some(m), serde_json::Value::Object(w)) = (v.as_object_mut(), extra) {
            m.extend(w);
        }
    }
    if json {
        println!("{v}");
    } else {
        println!("{:<36} {:>14}", "metric", "value");
        if let serde_json::Value::Object(m) = &v {
            for (k, x) in m {
                let s = match x {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                println!("{k:<36} {s:>14}");
            }
        }
    }
    if let Some(f) = publish_failures.first() {
        bail!("{} publishes failed, e.g. {f}", publish_failures.len());
    }
    if missing > 0 || duplicated > 0 || readable_elsewhere > 0 {
        bail!(
            "the federation was not exact: {missing} deliveries missing after {} s, {duplicated} duplicated, {readable_elsewhere} AMBER alerts readable by a non-recipient",
            plan.settle_secs
        );
    }
    Ok(())
}

/// What node `p` says of its link to `peer` (`None`: no such link, or no
/// answer).
async fn link_view(fed: &Fed, p: usize, peer: &str) -> Option<crate::proto::v1::PeerView> {
    fed.operator(p)
        .await
        .list_peers(ListPeersRequest {
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .ok()?
        .into_inner()
        .peers
        .into_iter()
        .find(|v| v.peer_id == peer)
}

/// What node `p` says of its link to `peer`: state, outbox depth, last error.
async fn clients_link(fed: &Fed, p: usize, peer: &str) -> String {
    match link_view(fed, p, peer).await {
        Some(v) => format!(
            "link {:?}, outbox {}, last error {}",
            crate::proto::v1::LinkState::try_from(v.state).unwrap_or_default(),
            v.outbox_depth,
            crate::domain::text::quote(&v.last_error)
        ),
        None => "no link".into(),
    }
}

/// For a warm-up broadcast that did not reach node `i`: whether each of
/// its peers holds it, and what each says of its link to node `i`.
async fn warm_diagnosis(fed: &Fed, names: &[String], i: usize, id: &str) -> String {
    let mut out = String::new();
    for (peer, _) in &fed.specs[i].peers {
        let Some(j) = names.iter().position(|n| n == peer) else {
            continue;
        };
        let held = fed
            .operator(j)
            .await
            .get_message(GetMessageRequest {
                message_id: id.to_string(),
            })
            .await
            .is_ok();
        let link = link_view(fed, j, &names[i]).await;
        out.push_str(&format!("  {peer}: holds it: {held}; its link: {link:?}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::topology;

    /// Connected, degrees within 3..=5, no self-links or repeats, and the
    /// same seed gives the same topology.
    #[test]
    fn topology_is_connected_with_degree_3_to_5() {
        for seed in 0..50 {
            for n in [6usize, 12, 37] {
                let e = topology(n, seed);
                assert_eq!(e, topology(n, seed));
                let mut deg = vec![0; n];
                let mut adj = vec![Vec::new(); n];
                for &(a, b) in &e {
                    assert!(a < b, "{a}-{b}");
                    deg[a] += 1;
                    deg[b] += 1;
                    adj[a].push(b);
                    adj[b].push(a);
                }
                assert!(
                    deg.iter().all(|&d| (3..=5).contains(&d)),
                    "seed {seed} n {n}: {deg:?}"
                );
                let mut seen = vec![false; n];
                let mut stack = vec![0];
                while let Some(v) = stack.pop() {
                    if !std::mem::replace(&mut seen[v], true) {
                        stack.extend(adj[v].iter().copied());
                    }
                }
                assert!(seen.iter().all(|&s| s), "seed {seed} n {n}: not connected");
            }
        }
    }
}
