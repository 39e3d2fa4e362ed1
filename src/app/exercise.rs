//! `certfed exercise run`: plays a scenario (`domain::exercise::scenario`)
//! against a local federation it starts (real in-process nodes on loopback,
//! fresh PKI, real TLS and SQLite), driving each participant's node through
//! its Operator API, and records what every participant's node stored and
//! when, from that node's own Watch and store.
//!
//! Invariants:
//! - Every inject is signed as exercise traffic (`exercise` set); the runner
//!   never sends anything real.
//! - Injects are sent in scenario order at `offset / speed` after the start.
//!   An inject that refers to an earlier one (an offer on a request, a
//!   sighting in an incident) is sent once the sender's node holds that
//!   message (bounded wait; a timeout records the inject as not sent, with
//!   the reason, and the run goes on).
//! - The times in the record are the nodes' own: `received` and
//!   `acknowledged` as each partner's node reports them (`GetMessage`), the
//!   assistance history as the requester's node replays it. Watch streams
//!   (with exercise traffic included) only tell the runner when to look and
//!   drive the simulated duty officers (`ack_after`).
//! - Bounded: the run waits for stragglers at most [`SETTLE`] plus the
//!   longest `ack_after` (local) or the longest expectation window (live),
//!   scaled, after the last inject.
//! - Live runs ([`play`] with each participant's own Operator client, see
//!   `cli::exercise`) simulate nobody: acknowledgements are real operators'.
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
}

impl Arrivals {
    fn holds(&self, node: usize, id: &str) -> bool {
        self.held.lock().expect("arrivals")[node].contains(id)
    }
}

/// Plays `s` on a fresh local federation of its participants at `speed`.
pub async fn run_local(s: &Scenario, speed: f64, quiet: bool) -> anyhow::Result<Record> {
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
    let record = play(s, clients, speed, "local", quiet).await;
    for n in running {
        let _ = n.shutdown().await;
    }
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
    let n = s.participants.len();
    let arrivals = Arc::new(Arrivals {
        held: Mutex::new(vec![HashSet::new(); n]),
    });
    let say = |line: String| {
        if !quiet {
            println!("{line}");
        }
    };
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
        let ack = p
            .ack_after_ms
            .filter(|_| mode == "local")
            .map(|ms| Duration::from_secs_f64(ms as f64 / 1_000.0 / speed));
        watchers.push(tokio::spawn(async move {
            while let Some(Ok(ev)) = stream.next().await {
                let Some(m) = ev.message else { continue };
                if !m.exercise {
                    continue;
                }
                arrivals.held.lock().expect("arrivals")[i].insert(m.message_id.clone());
                // The duty officer acknowledges every partner's message.
                if let (Some(after), true) = (ack, m.origin != me) {
                    let mut op = op.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let _ = op
                            .acknowledge_message(AcknowledgeMessageRequest {
                                message_id: m.message_id,
                            })
                            .await;
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
        let issued = now_ms();
        let result = send(&mut op, inj, &sent, &arrivals, inj.from).await;
        let eligible: Vec<String> = if inj.to.is_empty() {
            s.participants
                .iter()
                .filter(|p| p.id != *from)
                .map(|p| p.id.clone())
                .collect()
        } else {
            inj.to.clone()
        };
        let at = format!("{:>7.1}s", started.elapsed().as_secs_f64() * speed);
        let (sent_ms, message_id, error) = match result {
            Ok(id) => {
                say(format!(
                    "{at} {from:<10} {:<18} {}",
                    inj.action.kind(),
                    short(&inj.action.summary())
                ));
                sent.insert(inj.id.clone(), id.clone());
                (Some(issued), Some(id), None)
            }
            Err(e) => {
                say(format!(
                    "{at} {from:<10} {:<18} NOT SENT: {e}",
                    inj.action.kind()
                ));
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
        if stored_everywhere && Instant::now() + Duration::from_millis(200) >= deadline - SETTLE {
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
        } => {
            let incident_id = match incident {
                Some(i) => referred(sent, i, arrivals, me).await?,
                None => String::new(),
            };
            op.publish_alert(PublishAlertRequest {
                alert: Some(alert.clone()),
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
                exercise: true,
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
    }
}
