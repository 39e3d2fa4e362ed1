//! Shared test fixtures: a valid request and offer, step builders, and `Sim`, a tiny
//! federation that checks every action against the replayed state before signing it
//! and asserts the replay then applies it.
use super::view::ms_timestamp;
use super::*;
use crate::proto::v1::{
    AssistanceRequest, AssistanceService, AssistanceState as S, Contact, DecisionMessage,
    EntityCategory, EstimatedNeeds, FundingChannel, Nis2Sector, Offer, OfferMessage, OfferState,
    RsitClass, Severity, StatusMessage, Tlp,
};

pub(super) const T0: i64 = 1_700_000_000_000;
pub(super) const REQ: &str = "node-req";
pub(super) const RID: &str = "req-0001";

pub(super) fn request() -> AssistanceRequest {
    AssistanceRequest {
        title: "Ransomware at a regional hospital group".into(),
        description: "Encrypted PACS and EHR; need forensics and recovery".into(),
        tlp: Tlp::Amber as i32,
        services: vec![
            AssistanceService::Forensics as i32,
            AssistanceService::Recovery as i32,
        ],
        sector: Nis2Sector::Health as i32,
        entity_category: EntityCategory::Essential as i32,
        rsit_class: RsitClass::MaliciousCode as i32,
        severity: Severity::Critical as i32,
        cross_border: true,
        needs: Some(EstimatedNeeds {
            skills: vec!["Windows forensics".into()],
            person_days: 20,
            on_site: true,
        }),
        mitigation_done: "network isolated".into(),
        deadline: Some(ms_timestamp(T0 + 86_400_000)),
        contacts: vec![Contact {
            name: "Duty officer".into(),
            role: "IR lead".into(),
            email: "duty@cert.example".into(),
            phone: "+372 600 0000".into(),
        }],
        linked_alerts: vec!["0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into()],
    }
}

pub(super) fn offer(summary: &str, days: u32) -> Offer {
    Offer {
        summary: summary.into(),
        capabilities: vec![AssistanceService::Forensics as i32],
        capacity_person_days: days,
        available_from: Some(ms_timestamp(T0)),
        available_until: Some(ms_timestamp(T0 + 7 * 86_400_000)),
        conditions: "remote first".into(),
        funding: FundingChannel::CybersecurityReserve as i32,
        contacts: vec![],
    }
}

pub(super) fn offer_step(days: u32) -> Step {
    Step::Offer(OfferMessage {
        request_id: RID.into(),
        offer: Some(offer("forensics team", days)),
    })
}

pub(super) fn decision_step(offer_id: &str, accept: bool) -> Step {
    Step::Decision(DecisionMessage {
        request_id: RID.into(),
        offer_id: offer_id.into(),
        accept,
        note: "thanks".into(),
    })
}

pub(super) fn status_step(state: S) -> Step {
    Step::Status(StatusMessage {
        request_id: RID.into(),
        state: state as i32,
        note: String::new(),
        withdraw_offer_id: String::new(),
        summary_report: String::new(),
    })
}

pub(super) fn withdraw_step(offer_id: &str) -> Step {
    Step::Status(StatusMessage {
        request_id: RID.into(),
        state: S::Unspecified as i32,
        note: "team reassigned".into(),
        withdraw_offer_id: offer_id.into(),
        summary_report: String::new(),
    })
}

pub(super) fn signed(id: &str, actor: &str, t: i64, step: Step) -> SignedStep {
    SignedStep {
        message_id: id.into(),
        actor: actor.into(),
        created_ms: t,
        step,
        exercise: false,
    }
}

pub(super) fn request_step() -> SignedStep {
    signed(RID, REQ, T0, Step::Request(request()))
}

/// A tiny federation: every action is checked against the replayed state and, if
/// accepted, signed with the next time and message id.
pub(super) struct Sim {
    pub(super) steps: Vec<SignedStep>,
    pub(super) t: i64,
    n: u32,
}

impl Sim {
    pub(super) fn new() -> Self {
        Sim {
            steps: vec![request_step()],
            t: T0,
            n: 0,
        }
    }
    pub(super) fn state(&self) -> Assistance {
        replay(RID, &self.steps).expect("request replays")
    }
    pub(super) fn act(&mut self, actor: &str, step: Step) -> Result<String, AssistanceError> {
        let a = self.state();
        let t = next_created_ms(&a, self.t + 1);
        check(&a, actor, &step, t)?;
        self.t = t;
        self.n += 1;
        let id = format!("m-{:04}", self.n);
        self.steps.push(signed(&id, actor, t, step));
        let after = self.state();
        let last = after.history.last().unwrap();
        assert!(last.applied, "check accepted but replay ignored: {last:?}");
        Ok(id)
    }
    pub(super) fn offer(&mut self, donor: &str) -> Result<String, AssistanceError> {
        self.act(donor, offer_step(10))
    }
    pub(super) fn decide(
        &mut self,
        who: &str,
        id: &str,
        accept: bool,
    ) -> Result<String, AssistanceError> {
        self.act(who, decision_step(id, accept))
    }
    pub(super) fn status(&mut self, who: &str, s: S) -> Result<String, AssistanceError> {
        self.act(who, status_step(s))
    }
    pub(super) fn withdraw(&mut self, who: &str, id: &str) -> Result<String, AssistanceError> {
        self.act(who, withdraw_step(id))
    }
    pub(super) fn offer_state(&self, id: &str) -> OfferState {
        self.state()
            .offers
            .iter()
            .find(|o| o.offer_id == id)
            .unwrap()
            .state
    }
}
