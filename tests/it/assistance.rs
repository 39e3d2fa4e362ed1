//! The assistance workflow on real nodes: a requester behind a relay asks for
//! help under TLP:AMBER, a donor offers, the requester decides and moves the
//! request to closure; every node's view matches; the relay reads nothing.

use crate::common::*;
use certfed::proto::v1::operator_client::OperatorClient;
use certfed::proto::v1::*;
use std::time::Duration;
use tonic::transport::Channel;

pub(crate) fn request(title: &str) -> AssistanceRequest {
    AssistanceRequest {
        title: title.into(),
        description: "Wiper on grid operator; need forensics".into(),
        tlp: Tlp::Amber as i32,
        services: vec![
            AssistanceService::Forensics as i32,
            AssistanceService::IncidentResponse as i32,
        ],
        sector: Nis2Sector::Energy as i32,
        entity_category: EntityCategory::Essential as i32,
        rsit_class: RsitClass::Intrusions as i32,
        severity: Severity::Critical as i32,
        cross_border: true,
        needs: Some(EstimatedNeeds {
            skills: vec!["ICS forensics".into()],
            person_days: 20,
            on_site: true,
        }),
        ..Default::default()
    }
}

pub(crate) fn offer(summary: &str) -> Offer {
    Offer {
        summary: summary.into(),
        capabilities: vec![AssistanceService::Forensics as i32],
        capacity_person_days: 10,
        funding: FundingChannel::CybersecurityReserve as i32,
        ..Default::default()
    }
}

async fn view(op: &mut OperatorClient<Channel>, id: &str) -> Option<AssistanceView> {
    op.get_assistance_request(GetAssistanceRequestRequest {
        request_id: id.into(),
    })
    .await
    .ok()
    .map(|r| r.into_inner())
}

/// What must be equal on every node: state, offers and their states, the steps.
fn essence(v: &AssistanceView) -> (i32, Vec<(String, i32)>, Vec<String>) {
    (
        v.state,
        v.offers
            .iter()
            .map(|o| (o.offer_id.clone(), o.state))
            .collect(),
        v.history.iter().map(|h| h.message_id.clone()).collect(),
    )
}

/// Waits until both nodes show the same view in `state`.
async fn converge(
    a: &OperatorClient<Channel>,
    c: &OperatorClient<Channel>,
    id: &str,
    state: AssistanceState,
) -> AssistanceView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (mut a, mut c) = (a.clone(), c.clone());
        let (va, vc) = (view(&mut a, id).await, view(&mut c, id).await);
        if let (Some(x), Some(y)) = (&va, &vc)
            && x.state == state as i32
            && essence(x) == essence(y)
        {
            return x.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "views did not converge on {state:?}: {va:#?} {vc:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amber_request_through_a_relay_to_closure() {
    let fed = Fed::line();
    let (a, b, c) = (fed.start(0).await, fed.start(1).await, fed.start(2).await);
    let (mut op_a, mut op_b, mut op_c) = (
        fed.operator(0).await,
        fed.operator(1).await,
        fed.operator(2).await,
    );

    // a watches its node: assistance events stream as they arrive.
    let mut watch = op_a
        .watch(WatchRequest {
            filter: None,
            after_cursor: 0,
            from_start: false,
        })
        .await
        .unwrap()
        .into_inner();

    // c (behind b) asks a for help, AMBER.
    let rid = op_c
        .request_assistance(RequestAssistanceRequest {
            request: Some(request("Grid wiper: forensics needed")),
            recipients: vec!["node-a".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .request_id;
    let v = converge(&op_a, &op_c, &rid, AssistanceState::Requested).await;
    assert_eq!(v.requester, "node-c");
    let ev = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("watch event")
        .unwrap()
        .unwrap();
    let m = ev.message.unwrap();
    assert_eq!(
        (m.kind, m.request_id.as_str()),
        (MessageKind::AssistanceRequest as i32, rid.as_str())
    );

    // a offers; the requester cannot offer on its own request.
    let err = op_c
        .offer_assistance(OfferAssistanceRequest {
            request_id: rid.clone(),
            offer: Some(offer("self")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    let offer_id = op_a
        .offer_assistance(OfferAssistanceRequest {
            request_id: rid.clone(),
            offer: Some(offer("Two ICS forensics analysts, 10 person-days")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .offer_id;
    converge(&op_a, &op_c, &rid, AssistanceState::Offered).await;

    // Only the requester decides.
    let err = op_a
        .decide_offer(DecideOfferRequest {
            offer_id: offer_id.clone(),
            accept: true,
            note: "accepting my own offer".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("node-c"),
        "names the requester: {}",
        err.message()
    );

    let st = op_c
        .decide_offer(DecideOfferRequest {
            offer_id: offer_id.clone(),
            accept: true,
            note: "welcome".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .state;
    assert_eq!(st, AssistanceState::Accepted as i32);
    let v = converge(&op_a, &op_c, &rid, AssistanceState::Accepted).await;
    assert_eq!(v.offers[0].state, OfferState::Accepted as i32);

    // A state the request cannot jump to.
    let err = op_c
        .update_assistance(UpdateAssistanceRequest {
            request_id: rid.clone(),
            state: AssistanceState::Closed as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("ACCEPTED"), "{}", err.message());

    for target in [
        AssistanceState::Deployed,
        AssistanceState::Completed,
        AssistanceState::Closed,
    ] {
        op_c.update_assistance(UpdateAssistanceRequest {
            request_id: rid.clone(),
            state: target as i32,
            note: format!("now {target:?}"),
            withdraw_offer_id: String::new(),
            ..Default::default()
        })
        .await
        .unwrap();
        converge(&op_a, &op_c, &rid, target).await;
    }

    // Closed is final.
    let err = op_c
        .update_assistance(UpdateAssistanceRequest {
            request_id: rid.clone(),
            state: AssistanceState::Deployed as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("CLOSED"), "{}", err.message());
    let err = op_a
        .offer_assistance(OfferAssistanceRequest {
            request_id: rid.clone(),
            offer: Some(offer("late")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    // The relay carried all of it and can read none of it.
    assert!(view(&mut op_b, &rid).await.is_none());
    let list = op_b
        .list_assistance_requests(ListAssistanceRequestsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.requests.is_empty());
    // Both ends list it, closed, with the full signed history.
    let list = op_a
        .list_assistance_requests(ListAssistanceRequestsRequest {
            states: vec![AssistanceState::Closed as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.requests.len(), 1);
    assert_eq!(
        list.requests[0].history.len(),
        6,
        "request, offer, decision, 3 status steps"
    );
    for n in [a, b, c] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_donor_catches_up_and_cannot_offer_after_closure() {
    // b in the middle of a, c and d; a is offline throughout.
    let fed = Fed::new(
        &["node-a", "node-b", "node-c", "node-d"],
        &[(0, 1), (1, 2), (1, 3)],
    );
    let (b, c, d) = (fed.start(1).await, fed.start(2).await, fed.start(3).await);
    let (op_c, op_d) = (fed.operator(2).await, fed.operator(3).await);
    let rid = op_c
        .clone()
        .request_assistance(RequestAssistanceRequest {
            request: Some(request("DDoS on rail ticketing")),
            recipients: vec!["node-a".into(), "node-d".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .request_id;
    converge(&op_d, &op_c, &rid, AssistanceState::Requested).await;
    let offer_id = op_d
        .clone()
        .offer_assistance(OfferAssistanceRequest {
            request_id: rid.clone(),
            offer: Some(offer("scrubbing capacity")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .offer_id;
    converge(&op_d, &op_c, &rid, AssistanceState::Offered).await;
    op_c.clone()
        .decide_offer(DecideOfferRequest {
            offer_id,
            accept: true,
            note: String::new(),
            ..Default::default()
        })
        .await
        .unwrap();
    for target in [
        AssistanceState::Deployed,
        AssistanceState::Completed,
        AssistanceState::Closed,
    ] {
        op_c.clone()
            .update_assistance(UpdateAssistanceRequest {
                request_id: rid.clone(),
                state: target as i32,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let closed = converge(&op_d, &op_c, &rid, AssistanceState::Closed).await;

    // a comes back: the request and every step reach it through b's outbox.
    let a = fed.start(0).await;
    let op_a = fed.operator(0).await;
    let seen = converge(&op_a, &op_c, &rid, AssistanceState::Closed).await;
    assert_eq!(essence(&seen), essence(&closed));
    let err = op_a
        .clone()
        .offer_assistance(OfferAssistanceRequest {
            request_id: rid.clone(),
            offer: Some(offer("too late")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("CLOSED"), "{}", err.message());
    for n in [a, b, c, d] {
        n.shutdown().await.unwrap();
    }
}
