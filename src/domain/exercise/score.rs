//! The report of an exercise run as a pure function of what was recorded
//! ([`Record`]): who knew what when, time to shared awareness per inject,
//! the assistance timeline and the scored expectations.
//!
//! Invariants:
//! - Every time in a [`Record`] comes from a participant node's own store
//!   (`MessageView.received`, `.acknowledged`, the signed times of assistance
//!   steps) or from the runner's clock when it sent an inject; [`score`] only
//!   subtracts them.
//! - Durations are reported in scenario time: wall-clock milliseconds times
//!   the speed factor (at 10× a real second is ten scenario seconds), so an
//!   expectation "within 5m" means the same at every speed.
//! - An expectation is met only when every eligible partner reached it; a
//!   partner that never did makes it missed with `missed_by_ms` unknown
//!   (`None`): the report says who is missing instead.
//!
//! No I/O; the JSON form is this module's serde derive.
use serde::{Deserialize, Serialize};

/// What a run observed (written as the `record` of the JSON report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub scenario: String,
    pub description: String,
    /// "local" or "live".
    pub mode: String,
    pub speed: f64,
    /// Wall-clock start of the run (unix ms).
    pub started_ms: i64,
    pub finished_ms: i64,
    /// Participants (member ids) and their display names, in scenario order.
    pub participants: Vec<(String, String)>,
    pub injects: Vec<InjectRecord>,
    pub assistance: Vec<AssistanceRecord>,
    pub expects: Vec<ExpectRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectRecord {
    pub id: String,
    pub kind: String,
    pub from: String,
    pub summary: String,
    /// Scenario offset.
    pub offset_ms: u64,
    /// When the runner sent it (unix ms), if it did.
    pub sent_ms: Option<i64>,
    pub message_id: Option<String>,
    /// Why it was not sent (the node's answer), if it was not.
    pub error: Option<String>,
    /// The partners that should receive it (all but the sender, or the
    /// named recipients).
    pub eligible: Vec<String>,
    /// One entry per eligible partner.
    pub seen: Vec<Seen>,
}

/// One partner's view of one inject, from that partner's node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub node: String,
    /// Stored at the partner (unix ms, the partner's `received`).
    pub stored_ms: Option<i64>,
    /// Acknowledged by an operator there.
    pub acknowledged_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistanceRecord {
    /// The assistance_request inject.
    pub inject: String,
    pub request_id: String,
    /// Applied steps from the requester's replayed history, oldest first.
    pub milestones: Vec<Milestone>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Milestone {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    /// The request's state after this step, e.g. `ACCEPTED` (empty if unknown).
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpectRecord {
    pub id: String,
    /// aware | acknowledged | assistance_accepted
    pub what: String,
    pub inject: String,
    pub within_ms: u64,
    pub text: String,
}

/// The computed report (with the record it was computed from).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub record: Record,
    pub awareness: Vec<Awareness>,
    pub outcomes: Vec<Outcome>,
}

/// Time to shared awareness of one inject, in scenario ms after it was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Awareness {
    pub inject: String,
    /// Until every eligible partner had stored it (`None`: some never did).
    pub all_stored_ms: Option<u64>,
    /// Until every eligible partner had acknowledged it.
    pub all_acknowledged_ms: Option<u64>,
    /// Eligible partners that never stored it.
    pub never_stored: Vec<String>,
    pub never_acknowledged: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub id: String,
    pub what: String,
    pub inject: String,
    pub text: String,
    pub within_ms: u64,
    pub met: bool,
    /// Scenario time it took (`None`: never reached).
    pub measured_ms: Option<u64>,
    /// How much too late (`None` when met or never reached).
    pub missed_by_ms: Option<u64>,
    /// What kept it from being met, in words (empty when met).
    pub why: String,
}

/// Scenario duration of a wall-clock span.
fn scaled(real_ms: i64, speed: f64) -> u64 {
    (real_ms.max(0) as f64 * speed).round() as u64
}

/// Computes the report of `record`.
pub fn score(record: Record) -> Report {
    let speed = if record.speed.is_finite() && record.speed > 0.0 {
        record.speed
    } else {
        1.0
    };
    let awareness: Vec<Awareness> = record
        .injects
        .iter()
        .map(|i| {
            let never = |f: fn(&Seen) -> Option<i64>| -> Vec<String> {
                i.eligible
                    .iter()
                    .filter(|p| !i.seen.iter().any(|s| &s.node == *p && f(s).is_some()))
                    .cloned()
                    .collect()
            };
            let never_stored = never(|s| s.stored_ms);
            let never_acknowledged = never(|s| s.acknowledged_ms);
            let after = |f: fn(&Seen) -> Option<i64>, missing: &[String]| {
                let sent = i.sent_ms?;
                if !missing.is_empty() {
                    return None;
                }
                let last = i.seen.iter().filter_map(f).max().unwrap_or(sent);
                Some(scaled(last - sent, speed))
            };
            Awareness {
                inject: i.id.clone(),
                all_stored_ms: after(|s| s.stored_ms, &never_stored),
                all_acknowledged_ms: after(|s| s.acknowledged_ms, &never_acknowledged),
                never_stored,
                never_acknowledged,
            }
        })
        .collect();

    let outcomes = record
        .expects
        .iter()
        .map(|x| {
            let inject = record.injects.iter().find(|i| i.id == x.inject);
            let aware = awareness.iter().find(|a| a.inject == x.inject);
            let (measured, why) = match (x.what.as_str(), inject, aware) {
                (_, Some(i), _) if i.sent_ms.is_none() => (
                    None,
                    format!(
                        "inject {} was not sent: {}",
                        i.id,
                        i.error.as_deref().unwrap_or("the run stopped before it")
                    ),
                ),
                ("aware", _, Some(a)) => (
                    a.all_stored_ms,
                    if a.never_stored.is_empty() {
                        String::new()
                    } else {
                        format!("never stored at {}", a.never_stored.join(", "))
                    },
                ),
                ("acknowledged", _, Some(a)) => (
                    a.all_acknowledged_ms,
                    if a.never_acknowledged.is_empty() {
                        String::new()
                    } else {
                        format!("never acknowledged at {}", a.never_acknowledged.join(", "))
                    },
                ),
                ("assistance_accepted", Some(i), _) => {
                    let accepted = record
                        .assistance
                        .iter()
                        .find(|a| a.inject == x.inject)
                        .and_then(|a| a.milestones.iter().find(|m| m.state == "ACCEPTED"));
                    match (accepted, i.sent_ms) {
                        (Some(m), Some(sent)) => {
                            (Some(scaled(m.at_ms - sent, speed)), String::new())
                        }
                        _ => (None, "no offer was accepted".to_string()),
                    }
                }
                _ => (None, format!("inject {} is not in the record", x.inject)),
            };
            let met = measured.is_some_and(|m| m <= x.within_ms);
            Outcome {
                id: x.id.clone(),
                what: x.what.clone(),
                inject: x.inject.clone(),
                text: x.text.clone(),
                within_ms: x.within_ms,
                met,
                measured_ms: measured,
                missed_by_ms: measured
                    .filter(|m| *m > x.within_ms)
                    .map(|m| m - x.within_ms),
                why: if met {
                    String::new()
                } else if why.is_empty() {
                    "too late".to_string()
                } else {
                    why
                },
            }
        })
        .collect();
    Report {
        record,
        awareness,
        outcomes,
    }
}

/// `1m05s`, `12.3s`, `850ms`: a scenario duration for people.
pub fn human(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1_000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1_000)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            scenario: "s".into(),
            description: String::new(),
            mode: "local".into(),
            speed: 10.0,
            started_ms: 1_000,
            finished_ms: 9_000,
            participants: vec![
                ("a".into(), "A".into()),
                ("b".into(), "B".into()),
                ("c".into(), "C".into()),
            ],
            injects: vec![InjectRecord {
                id: "i1".into(),
                kind: "alert".into(),
                from: "a".into(),
                summary: "x".into(),
                offset_ms: 0,
                sent_ms: Some(1_000),
                message_id: Some("m".into()),
                error: None,
                eligible: vec!["b".into(), "c".into()],
                seen: vec![
                    Seen {
                        node: "b".into(),
                        stored_ms: Some(1_010),
                        acknowledged_ms: Some(1_200),
                    },
                    Seen {
                        node: "c".into(),
                        stored_ms: Some(1_050),
                        acknowledged_ms: None,
                    },
                ],
            }],
            assistance: vec![],
            expects: vec![
                ExpectRecord {
                    id: "e1".into(),
                    what: "aware".into(),
                    inject: "i1".into(),
                    within_ms: 1_000,
                    text: String::new(),
                },
                ExpectRecord {
                    id: "e2".into(),
                    what: "aware".into(),
                    inject: "i1".into(),
                    within_ms: 100,
                    text: String::new(),
                },
                ExpectRecord {
                    id: "e3".into(),
                    what: "acknowledged".into(),
                    inject: "i1".into(),
                    within_ms: 60_000,
                    text: String::new(),
                },
            ],
        }
    }

    #[test]
    fn awareness_is_the_last_eligible_partner_in_scenario_time() {
        let r = score(record());
        let a = &r.awareness[0];
        assert_eq!(a.all_stored_ms, Some(500), "50 ms at 10×");
        assert_eq!(a.all_acknowledged_ms, None);
        assert_eq!(a.never_acknowledged, ["c"]);
        let o = &r.outcomes;
        assert!(o[0].met && o[0].missed_by_ms.is_none());
        assert!(!o[1].met);
        assert_eq!(o[1].missed_by_ms, Some(400));
        assert!(!o[2].met && o[2].missed_by_ms.is_none());
        assert!(o[2].why.contains("never acknowledged at c"), "{}", o[2].why);
    }

    #[test]
    fn an_inject_not_sent_misses_its_expectations_with_the_reason() {
        let mut rec = record();
        rec.injects[0].sent_ms = None;
        rec.injects[0].error = Some("FAILED_PRECONDITION: no".into());
        let r = score(rec);
        assert!(
            r.outcomes
                .iter()
                .all(|o| !o.met && o.why.contains("was not sent"))
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(850), "850ms");
        assert_eq!(human(12_300), "12.3s");
        assert_eq!(human(65_000), "1m05s");
        assert_eq!(human(3_900_000), "1h05m");
    }
}
