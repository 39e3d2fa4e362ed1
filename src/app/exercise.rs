//! `certfed exercise run`: plays a scenario (`domain::exercise::scenario`)
//! against a local federation it starts (real in-process nodes on loopback,
//! fresh PKI, real TLS and SQLite), driving each participant's node through
//! its Operator API, and records what every participant's node stored and
//! when, from that node's own Watch and store.
//!
//! Invariants:
//! - Every inject is signed as exercise traffic (`exercise` set) unless the
//!   scenario says `exercise = false` (`Scenario::exercise`), which only a
//!   local run accepts (`certfed demo`; `cli::exercise` refuses it live). The
//!   runner records only traffic of the scenario's own flag.
//! - Injects are sent in scenario order at `offset / speed` after the start.
//!   An inject that refers to an earlier one (an offer on a request, a
//!   sighting in an incident) is sent once the sender's node holds that
//!   message (bounded wait; a timeout records the inject as not sent, with
//!   the reason, and the run goes on).
//! - The times in the record are the nodes' own: `received` and
//!   `acknowledged` as each partner's node reports them (`GetMessage`), the
//!   assistance history as the requester's node replays it. Watch streams
//!   (with exercise traffic included) only tell the runner when to look and
//!   drive the simulated duty officers (`ack_after`); the record is read once
//!   everything is stored everywhere and every simulated acknowledgement has
//!   been answered (an arrival late in the run is acknowledged `ack_after`
//!   after it, which can be after the last inject's `ack_after`).
//! - Bounded: the run waits for stragglers at most [`SETTLE`] plus the
//!   longest `ack_after` (local) or the longest expectation window (live),
//!   scaled, after the last inject.
//! - Live runs ([`play`] with each participant's own Operator client, see
//!   `cli::exercise`) simulate nobody: acknowledgements are real operators'.
//! - [`Narration::Story`] (`certfed demo`) tells the run as it happens: one
//!   line per inject before it is sent, one line per alert as each node's
//!   Watch shows it (with the relay path), times since the caller's start.
use crate::app::localfed::Fed;
use crate::domain::envelope::ts_to_ms;
use crate::domain::exercise::scenario::{Action, ExpectKind, Scenario};
use crate::domain::exercise::score::{
    AssistanceRecord, ExpectRecord, InjectRecord, Milestone, Record, Seen,
};
use crate::proto::v1::operator_client::OperatorClient;
use crate::proto::v1::*;
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::Channel;

/// Longest wait for stragglers after the last inject (real time).
pub const SETTLE: Duration = Duration::from_secs(20);
/// Longest wait for a referred message to reach the sender's node.
const REFERENCE_WAIT: Duration = Duration::from_secs(30);

/// A summary cut to one line of at most 80 characters (scenario text is the
/// exercise lead's own, but a terminal line stays a line).
fn short(s: &str) -> String {
    let one: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(80)
        .collect();
    one
}

fn now_ms() -> i64 {
    crate::service::now_ms()
}

/// Messages each participant's node has stored (from its Watch).
#[derive(Default)]
struct Arrivals {
    held: Mutex<Vec<HashSet<String>>>,
    /// Simulated acknowledgements not yet answered by their node: the
    /// record is read only once they are (or the settle time is over).
    acks_pending: std::sync::atomic::AtomicUsize,
}

impl Arrivals {
    fn holds(&self, node: usize, id: &str) -> bool {
        self.held.lock().expect("arrivals")[node].contains(id)
    }
}

/// How a run tells what it does on standard output.
#[derive(Clone, Copy, Debug)]
pub enum Narration {
    /// Nothing.
    Quiet,
    /// One line per inject sent (`exercise run`).
    Plain,
    /// The demo's story: each inject told before it is sent, each alert as
    /// every node stores it, with its path; seconds since `t0`.
    Story(std::time::Instant),
}

/// A local federation of a scenario's participants, running (one in-process
/// node each: fresh PKI, real TLS and SQLite on loopback).
pub struct LocalFed {
    pub fed: Fed,
    running: Vec<crate::app::RunningNode>,
    /// Each participant's Operator client, in participant order.
    pub clients: Vec<OperatorClient<Channel>>,
}

impl LocalFed {
    /// Starts one node per participant, linked as `s.links` says.
    pub async fn start(s: &Scenario) -> anyhow::Result<LocalFed> {
        let ids: Vec<&str> = s.participants.iter().map(|p| p.id.as_str()).collect();
        let fed = Fed::new(&ids, &s.links).sqlite();
        let mut running = Vec::new();
        for i in 0..ids.len() {
            running.push(fed.try_start(i).await?);
        }
        let mut clients = Vec::new();
        for i in 0..ids.len() {
            clients.push(fed.operator(i).await);
        }
        Ok(LocalFed {
            fed,
            running,
            clients,
        })
    }

    /// Stops every node (cleanly).
    pub async fn stop(self) -> anyhow::Result<()> {
        let mut first = Ok(());
        for n in self.running {
            if let Err(e) = n.shutdown().await
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}

/// Plays `s` on a fresh local federation of its participants at `speed`.
pub async fn run_local(s: &Scenario, speed: f64, quiet: bool) -> anyhow::Result<Record> {
    let local = LocalFed::start(s).await?;
    let narration = if quiet {
        Narration::Quiet
    } else {
        Narration::Plain
    };
    let record = play_told(s, local.clients.clone(), speed, "local", narration).await;
    let _ = local.stop().await;
    record
}

/// Plays `s` through the participants' Operator clients (in participant
/// order) and returns the record.
pub async fn play(
    s: &Scenario,
    clients: Vec<OperatorClient<Channel>>,
    speed: f64,
    mode: &str,
    quiet: bool,
) -> anyhow::Result<Record> {
    let narration = if quiet {
        Narration::Quiet
    } else {
        Narration::Plain
    };
    play_told(s, clients, speed, mode, narration).await
}

/// [`play`], told as `narration` says.
pub async fn play_told(
    s: &Scenario,
    clients: Vec<OperatorClient<Channel>>,
    speed: f64,
    mode: &str,
    narration: Narration,
) -> anyhow::Result<Record> {
    let n = s.participants.len();
    let arrivals = Arc::new(Arrivals {
        held: Mutex::new(vec![HashSet::new(); n]),
        acks_pending: Default::default(),
    });
    let say = |line: String| {
        if matches!(narration, Narration::Plain) {
            println!("{line}");
        }
    };
    let story = match narration {
        Narration::Story(t0) => Some(t0),
        _ => None,
    };
    let flag = s.exercise;
    // Watch every participant's node (exercise traffic included) before the
    // first inject; the simulated duty officers acknowledge what arrives.
    let mut watchers = Vec::new();
    for (i, p) in s.participants.iter().enumerate() {
        let mut op = clients[i].clone();
        let mut stream = op
            .watch(WatchRequest {
                filter: Some(AlertFilter {
                    include_exercise: true,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("{}: cannot watch its node: {}", p.id, e.message()))?
            .into_inner();
        let arrivals = arrivals.clone();
        let me = p.id.clone();
        let width = id_width(s);
        let ack = p
            .ack_after_ms
            .filter(|_| mode == "local")
            .map(|ms| Duration::from_secs_f64(ms as f64 / 1_000.0 / speed));
        watchers.push(tokio::spawn(async move {
            while let Some(Ok(ev)) = stream.next().await {
                let Some(m) = ev.message else { continue };
                if m.exercise != flag {
                    continue;
                }
                if let (Some(t0), Some(a)) = (story, &m.alert) {
                    let path: Vec<&str> = m.path.iter().map(|h| h.node_id.as_str()).collect();
                    println!(
                        "{} {me:<width$} knows   {:<46} path {}",
                        at(t0),
                        format!("\"{}\"", short(&a.title)),
                        if path.first() == Some(&me.as_str()) {
                            "(its own alert)".to_string()
                        } else {
                            format!("{} -> {me}", path.join(" -> "))
                        }
                    );
                }
                // The duty officer acknowledges every partner's message
                // (counted before the arrival shows, so that the record is
                // never read between the two).
                let acking = ack.filter(|_| m.origin != me);
                if acking.is_some() {
                    arrivals.acks_pending.fetch_add(1, Ordering::SeqCst);
                }
                arrivals.held.lock().expect("arrivals")[i].insert(m.message_id.clone());
                if let Some(after) = acking {
                    let mut op = op.clone();
                    let arrivals = arrivals.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let _ = op
                            .acknowledge_message(AcknowledgeMessageRequest {
                                message_id: m.message_id,
                            })
                            .await;
                        arrivals.acks_pending.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            }
        }));
    }

    let started = Instant::now();
    let started_ms = now_ms();
    let mut sent: HashMap<String, String> = HashMap::new();
    let mut records: Vec<InjectRecord> = Vec::new();
    for inj in &s.injects {
        let due = started + Duration::from_secs_f64(inj.at_ms as f64 / 1_000.0 / speed);
        tokio::time::sleep_until(due).await;
        let from = &s.participants[inj.from].id;
        let mut op = clients[inj.from].clone();
        if let Some(t0) = story {
            tell(s, inj, &sent, &arrivals, &mut op, t0).await;
        }
        let issued = now_ms();
        let result = send(&mut op, inj, &sent, &arrivals, inj.from, s.exercise).await;
        let eligible = eligible(s, inj);
        let when = format!("{:>7.1}s", started.elapsed().as_secs_f64() * speed);
        let (sent_ms, message_id, error) = match result {
            Ok(id) => {
                if let (Some(t0), Action::AssistanceRequest { .. }, false) =
                    (story, &inj.action, inj.to.is_empty())
                {
                    // The story waits (bounded) until every named recipient
                    // holds (and so could decrypt) the request.
                    let deadline = Instant::now() + REFERENCE_WAIT;
                    let named: Vec<usize> = inj
                        .to
                        .iter()
                        .filter_map(|t| s.participants.iter().position(|p| p.id == *t))
                        .collect();
                    while !named.iter().all(|&i| arrivals.holds(i, &id))
                        && Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    if named.iter().all(|&i| arrivals.holds(i, &id)) {
                        println!(
                            "{} {} {} received and decrypted the request",
                            at(t0),
                            inj.to.join(" and "),
                            if inj.to.len() == 1 { "has" } else { "have" }
                        );
                    }
                }
                if let (
                    Some(t0),
                    Action::Alert {
                        open_incident: true,
                        ..
                    },
                ) = (story, &inj.action)
                {
                    println!(
                        "{} {from:<w$} OPENS INCIDENT {} with it",
                        at(t0),
                        &id[..8.min(id.len())],
                        w = id_width(s)
                    );
                }
                say(format!(
                    "{when} {from:<10} {:<18} {}",
                    inj.action.kind(),
                    short(&inj.action.summary())
                ));
                sent.insert(inj.id.clone(), id.clone());
                (Some(issued), Some(id), None)
            }
            Err(e) => {
                let line = format!("{when} {from:<10} {:<18} NOT SENT: {e}", inj.action.kind());
                if story.is_some() {
                    println!("{line}");
                }
                say(line);
                (None, None, Some(e))
            }
        };
        records.push(InjectRecord {
            id: inj.id.clone(),
            kind: inj.action.kind().to_string(),
            from: from.clone(),
            summary: inj.action.summary(),
            offset_ms: inj.at_ms,
            sent_ms,
            message_id,
            error,
            eligible,
            seen: Vec::new(),
        });
    }

    // Let deliveries and simulated acknowledgements land.
    // Local: the simulated duty officers' longest delay; live: real
    // operators, given the longest expectation's window.
    let longest_ms = if mode == "local" {
        s.participants.iter().filter_map(|p| p.ack_after_ms).max()
    } else {
        s.expects.iter().map(|x| x.within_ms).max()
    };
    let longest_ack = longest_ms.map_or(Duration::ZERO, |ms| {
        Duration::from_secs_f64(ms as f64 / 1_000.0 / speed)
    });
    let deadline = Instant::now() + SETTLE + longest_ack;
    let index = |id: &str| s.participants.iter().position(|p| p.id == id);
    loop {
        let stored_everywhere = records.iter().all(|r| {
            r.message_id.as_ref().is_none_or(|m| {
                r.eligible
                    .iter()
                    .all(|p| index(p).is_some_and(|i| arrivals.holds(i, m)))
            })
        });
        let acked = arrivals.acks_pending.load(Ordering::SeqCst) == 0;
        if stored_everywhere
            && acked
            && Instant::now() + Duration::from_millis(200) >= deadline - SETTLE
        {
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Read the times from each partner's own store.
    for r in &mut records {
        let Some(id) = r.message_id.clone() else {
            continue;
        };
        for p in r.eligible.clone() {
            let Some(i) = index(&p) else { continue };
            let mut op = clients[i].clone();
            let m = op
                .get_message(GetMessageRequest {
                    message_id: id.clone(),
                })
                .await
                .ok()
                .map(|m| m.into_inner());
            r.seen.push(Seen {
                node: p,
                stored_ms: m.as_ref().and_then(|m| m.received.as_ref()).map(ts_to_ms),
                acknowledged_ms: m
                    .as_ref()
                    .and_then(|m| m.acknowledged.as_ref())
                    .map(ts_to_ms),
            });
        }
    }

    // The assistance timeline, as each requester's node replays it.
    let mut assistance = Vec::new();
    let by_message: HashMap<&str, &str> = sent
        .iter()
        .map(|(inj, msg)| (msg.as_str(), inj.as_str()))
        .collect();
    for inj in &s.injects {
        let Action::AssistanceRequest { .. } = inj.action else {
            continue;
        };
        let Some(rid) = sent.get(&inj.id) else {
            continue;
        };
        let mut op = clients[inj.from].clone();
        let Ok(v) = op
            .get_assistance_request(GetAssistanceRequestRequest {
                request_id: rid.clone(),
            })
            .await
        else {
            continue;
        };
        let mut accepted = false;
        let milestones = v
            .into_inner()
            .history
            .into_iter()
            .filter(|h| !h.action.starts_with("ignored"))
            .map(|h| {
                let step = by_message
                    .get(h.message_id.as_str())
                    .and_then(|i| s.injects.iter().find(|j| j.id == *i));
                let state = match step.map(|j| &j.action) {
                    Some(Action::AssistanceRequest { .. }) => "REQUESTED".to_string(),
                    Some(Action::Offer { .. }) => "OFFERED".to_string(),
                    Some(Action::Decision { accept: true, .. }) if !accepted => {
                        accepted = true;
                        "ACCEPTED".to_string()
                    }
                    Some(Action::AssistanceStatus { state, .. }) => {
                        crate::domain::assistance::state_label(*state).to_string()
                    }
                    _ => String::new(),
                };
                let state = if state.is_empty() {
                    milestone_state(&h.action)
                } else {
                    state
                };
                Milestone {
                    at_ms: h.at.as_ref().map(ts_to_ms).unwrap_or_default(),
                    actor: h.actor,
                    action: h.action,
                    state,
                }
            })
            .collect();
        assistance.push(AssistanceRecord {
            inject: inj.id.clone(),
            request_id: rid.clone(),
            milestones,
        });
    }
    for w in watchers {
        w.abort();
    }
    Ok(Record {
        scenario: s.name.clone(),
        description: s.description.clone(),
        mode: mode.to_string(),
        speed,
        started_ms,
        finished_ms: now_ms(),
        participants: s
            .participants
            .iter()
            .map(|p| (p.id.clone(), p.name.clone()))
            .collect(),
        injects: records,
        assistance,
        expects: s
            .expects
            .iter()
            .map(|x| ExpectRecord {
                id: x.id.clone(),
                what: match x.what {
                    ExpectKind::Aware => "aware",
                    ExpectKind::Acknowledged => "acknowledged",
                    ExpectKind::AssistanceAccepted => "assistance_accepted",
                }
                .to_string(),
                inject: x.inject.clone(),
                within_ms: x.within_ms,
                text: x.text.clone(),
            })
            .collect(),
    })
}

/// The state a history action moved the request to, if it says so.
fn milestone_state(action: &str) -> String {
    if action.contains("request now ACCEPTED") {
        return "ACCEPTED".into();
    }
    ["DEPLOYED", "COMPLETED", "CLOSED", "WITHDRAWN"]
        .into_iter()
        .find(|w| action.contains(w))
        .unwrap_or_default()
        .to_string()
}

/// The message id an earlier inject got, once node `at` holds it.
async fn referred(
    sent: &HashMap<String, String>,
    inject: &str,
    arrivals: &Arrivals,
    at: usize,
) -> Result<String, String> {
    let id = sent
        .get(inject)
        .cloned()
        .ok_or_else(|| format!("inject {inject} was not sent, so this one cannot refer to it"))?;
    let deadline = Instant::now() + REFERENCE_WAIT;
    while !arrivals.holds(at, &id) {
        if Instant::now() >= deadline {
            return Err(format!(
                "inject {inject} ({id}) did not reach the sender's node within {} s",
                REFERENCE_WAIT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(id)
}

/// The message id of the latest applied step of request `request_id` that
/// `is` picks (the decision and status RPCs answer with the state only).
async fn latest_step(
    op: &mut OperatorClient<Channel>,
    request_id: &str,
    is: impl Fn(&AssistanceEvent) -> bool,
) -> Result<String, String> {
    let v = op
        .get_assistance_request(GetAssistanceRequestRequest {
            request_id: request_id.to_string(),
        })
        .await
        .map_err(|e| format!("{:?}: {}", e.code(), e.message()))?
        .into_inner();
    v.history
        .iter()
        .rev()
        .find(|h| !h.action.starts_with("ignored") && is(h))
        .map(|h| h.message_id.clone())
        .ok_or_else(|| format!("the step on request {request_id} is not in its history"))
}

/// Sends one inject through the sender's Operator API; returns the message id.
async fn send(
    op: &mut OperatorClient<Channel>,
    inj: &crate::domain::exercise::scenario::Inject,
    sent: &HashMap<String, String>,
    arrivals: &Arrivals,
    me: usize,
    s_exercise: bool,
) -> Result<String, String> {
    let status = |e: tonic::Status| format!("{:?}: {}", e.code(), e.message());
    // A fresh idempotency key per inject: a retried RPC is not sent twice.
    let key = uuid::Uuid::now_v7().to_string();
    let to = inj.to.clone();
    match &inj.action {
        Action::Alert {
            alert,
            open_incident,
            incident,
            supersedes,
        } => {
            let incident_id = match incident {
                Some(i) => referred(sent, i, arrivals, me).await?,
                None => String::new(),
            };
            let mut alert = alert.clone();
            if let Some(u) = supersedes {
                alert.supersedes = referred(sent, u, arrivals, me).await?;
                alert.revision = Revision::Update as i32;
            }
            op.publish_alert(PublishAlertRequest {
                alert: Some(alert),
                recipients: to,
                request_id: key,
                open_incident: *open_incident,
                incident_id,
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().message_id)
            .map_err(status)
        }
        Action::Sighting { sighting, incident } => {
            let incident_id = referred(sent, incident, arrivals, me).await?;
            op.report_sighting(ReportSightingRequest {
                sighting: Some(Sighting {
                    incident_id,
                    ..sighting.clone()
                }),
                recipients: to,
                request_id: key,
                // Agrees with the incident (the same scenario opened it).
                exercise: Some(s_exercise),
            })
            .await
            .map(|r| r.into_inner().message_id)
            .map_err(status)
        }
        Action::IncidentStatus {
            incident,
            status: st,
            note,
        } => {
            let incident_id = referred(sent, incident, arrivals, me).await?;
            op.set_incident_status(SetIncidentStatusRequest {
                incident_id,
                status: *st as i32,
                note: note.clone(),
                request_id: key,
            })
            .await
            .map(|r| r.into_inner().message_id)
            .map_err(status)
        }
        Action::AssistanceRequest { request, alerts } => {
            let mut linked = Vec::new();
            for a in alerts {
                linked.push(referred(sent, a, arrivals, me).await?);
            }
            op.request_assistance(RequestAssistanceRequest {
                request: Some(AssistanceRequest {
                    linked_alerts: linked,
                    ..request.clone()
                }),
                recipients: to,
                request_id: key,
                exercise: s_exercise,
            })
            .await
            .map(|r| r.into_inner().request_id)
            .map_err(status)
        }
        Action::Offer { request, offer } => {
            let request_id = referred(sent, request, arrivals, me).await?;
            op.offer_assistance(OfferAssistanceRequest {
                request_id,
                offer: Some(offer.clone()),
                client_request_id: key,
            })
            .await
            .map(|r| r.into_inner().offer_id)
            .map_err(status)
        }
        Action::Decision {
            offer,
            accept,
            note,
        } => {
            let offer_id = referred(sent, offer, arrivals, me).await?;
            op.decide_offer(DecideOfferRequest {
                offer_id: offer_id.clone(),
                accept: *accept,
                note: note.clone(),
                request_id: key,
            })
            .await
            .map_err(status)?;
            let request_id = op
                .get_message(GetMessageRequest {
                    message_id: offer_id.clone(),
                })
                .await
                .map_err(status)?
                .into_inner()
                .request_id;
            latest_step(op, &request_id, |h| {
                h.action.contains(&offer_id) && !h.action.contains(" offered ")
            })
            .await
        }
        Action::AssistanceStatus {
            request,
            state,
            note,
        } => {
            let request_id = referred(sent, request, arrivals, me).await?;
            op.update_assistance(UpdateAssistanceRequest {
                request_id: request_id.clone(),
                state: *state as i32,
                note: note.clone(),
                client_request_id: key,
                ..Default::default()
            })
            .await
            .map_err(status)?;
            let label = crate::domain::assistance::state_label(*state);
            latest_step(op, &request_id, |h| h.action.contains(label)).await
        }
        Action::Link {
            incident,
            message,
            note,
        } => {
            let incident_id = referred(sent, incident, arrivals, me).await?;
            let message_id = referred(sent, message, arrivals, me).await?;
            op.link_to_incident(LinkToIncidentRequest {
                incident_id,
                message_id,
                note: note.clone(),
                request_id: key,
            })
            .await
            .map(|r| r.into_inner().message_id)
            .map_err(status)
        }
    }
}

/// The participants an inject is meant to reach: its named recipients; for a
/// step on an assistance request (offer, decision, status) without any, the
/// request's audience (its requester and recipients); else every other
/// participant. The sender is never among them.
fn eligible(s: &Scenario, inj: &crate::domain::exercise::scenario::Inject) -> Vec<String> {
    let from = &s.participants[inj.from].id;
    if !inj.to.is_empty() {
        return inj.to.clone();
    }
    let find = |id: &str| s.injects.iter().find(|i| i.id == id);
    let request = match &inj.action {
        Action::Offer { request, .. } | Action::AssistanceStatus { request, .. } => find(request),
        Action::Decision { offer, .. } => find(offer).and_then(|o| match &o.action {
            Action::Offer { request, .. } => find(request),
            _ => None,
        }),
        _ => None,
    };
    match request {
        Some(r) if !r.to.is_empty() => std::iter::once(&s.participants[r.from].id)
            .chain(r.to.iter())
            .filter(|p| *p != from)
            .cloned()
            .collect(),
        _ => s
            .participants
            .iter()
            .filter(|p| p.id != *from)
            .map(|p| p.id.clone())
            .collect(),
    }
}

/// `[  1.234s]`: seconds since `t0`.
fn at(t0: std::time::Instant) -> String {
    format!("[{:>7.3}s]", t0.elapsed().as_secs_f64())
}

/// The column width of participant ids in a story (at least 8).
fn id_width(s: &Scenario) -> usize {
    s.participants
        .iter()
        .map(|p| p.id.chars().count())
        .max()
        .unwrap_or(0)
        .max(8)
}

/// A proto enum name without its prefix, in lower-case words:
/// `ASSISTANCE_SERVICE_INCIDENT_RESPONSE` → `incident response`.
fn words(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', " ")
}

/// Tells inject `inj` in the story, before it is sent. A link first shows
/// the correlation match that motivates it, when the opener's picture has
/// one (bounded wait).
async fn tell(
    s: &Scenario,
    inj: &crate::domain::exercise::scenario::Inject,
    sent: &HashMap<String, String>,
    arrivals: &Arrivals,
    op: &mut OperatorClient<Channel>,
    t0: std::time::Instant,
) {
    use crate::domain::alert::{sector_label, severity_label};
    use crate::domain::policy::tlp_label;
    let w = id_width(s);
    let from = &s.participants[inj.from].id;
    let tlp = |t: i32| tlp_label(Tlp::try_from(t).unwrap_or(Tlp::Unspecified));
    let sev = |v: i32| severity_label(Severity::try_from(v).unwrap_or(Severity::Unspecified));
    let sector = |v: i32| sector_label(Nis2Sector::try_from(v).unwrap_or(Nis2Sector::Unspecified));
    let line = match &inj.action {
        Action::Alert { alert, .. } => format!(
            "PUBLISHES {} {} \"{}\"",
            tlp(alert.tlp),
            sev(alert.severity),
            short(&alert.title)
        ),
        Action::Sighting { sighting, .. } => format!(
            "SIGHTS   the incident: {} {}, {} observed ({}{})",
            short(&sighting.country),
            sector(sighting.sector),
            sighting.count,
            if sighting.tlp == 0 {
                "the incident's TLP".to_string()
            } else {
                tlp(sighting.tlp).to_string()
            },
            if inj.to.is_empty() {
                String::new()
            } else {
                format!(", to {} only", inj.to.join(", "))
            }
        ),
        Action::IncidentStatus { status, .. } => format!(
            "sets the status {}",
            crate::domain::incident::status_label(*status).to_ascii_uppercase()
        ),
        Action::AssistanceRequest { request, .. } => {
            let services: Vec<String> = request
                .services
                .iter()
                .map(|v| {
                    AssistanceService::try_from(*v)
                        .map(|x| words(x.as_str_name(), "ASSISTANCE_SERVICE_"))
                        .unwrap_or_default()
                })
                .collect();
            let mut about = Vec::new();
            if request.sector != 0 {
                about.push(sector(request.sector).to_string());
            }
            if let Ok(c) = EntityCategory::try_from(request.entity_category)
                && c != EntityCategory::Unspecified
            {
                about.push(format!(
                    "{} entity",
                    words(c.as_str_name(), "ENTITY_CATEGORY_")
                ));
            }
            if request.severity != 0 {
                about.push(sev(request.severity).to_string());
            }
            if request.cross_border {
                about.push("cross-border".into());
            }
            format!(
                "REQUESTS ASSISTANCE {}{}: {}{}",
                tlp(request.tlp),
                if inj.to.is_empty() {
                    String::new()
                } else {
                    format!(" to {}", inj.to.join(", "))
                },
                services.join(" + "),
                if about.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", about.join(", "))
                }
            )
        }
        Action::Offer { offer, .. } => format!("OFFERS   \"{}\"", short(&offer.summary)),
        Action::Decision { offer, accept, .. } => format!(
            "{} the offer of {}",
            if *accept { "ACCEPTS " } else { "DECLINES" },
            s.injects
                .iter()
                .find(|i| i.id == *offer)
                .map_or("?", |i| s.participants[i.from].id.as_str())
        ),
        Action::AssistanceStatus { state, .. } => format!(
            "marks the request {}",
            crate::domain::assistance::state_label(*state)
        ),
        Action::Link {
            incident, message, ..
        } => {
            if let (Ok(incident_id), Ok(message_id)) = (
                referred(sent, incident, arrivals, inj.from).await,
                referred(sent, message, arrivals, inj.from).await,
            ) {
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    let m = op
                        .get_situation(GetSituationRequest {
                            incident_id: incident_id.clone(),
                        })
                        .await
                        .ok()
                        .and_then(|r| {
                            r.into_inner()
                                .matches
                                .into_iter()
                                .find(|m| m.message_id == message_id)
                        });
                    if let Some(m) = m {
                        println!(
                            "{} {from:<w$} CORRELATION: {}'s alert shares {} with the incident",
                            at(t0),
                            m.origin,
                            short(&m.indicator.unwrap_or_default().value)
                        );
                        break;
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            "LINKS it into the incident".to_string()
        }
    };
    println!("{} {from:<w$} {line}", at(t0));
}
