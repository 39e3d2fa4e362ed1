//! Exercise segregation on real nodes (issue 18): exercise traffic never shows
//! in a real listing, Watch or assistance/incident listing, never touches a
//! real message (supersede, join an incident), and a node with
//! `exercise.accept = false` stores none of it while real traffic flows.

use crate::common::*;
use certfed::proto::v1::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn exercise_alert(title: &str) -> Alert {
    Alert {
        exercise: true,
        ..green_alert(title)
    }
}

async fn alerts_on(fed: &Fed, i: usize, include_exercise: bool) -> Vec<String> {
    let mut op = fed.operator(i).await;
    op.list_alerts(ListAlertsRequest {
        filter: Some(AlertFilter {
            include_exercise,
            ..Default::default()
        }),
        page_size: 100,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .alerts
    .into_iter()
    .map(|a| a.message_id)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exercise_traffic_stays_apart_and_an_opted_out_node_stores_none() {
    // a–b, a–c; c takes no part in exercises.
    let mut fed = Fed::new(&["node-a", "node-b", "node-c"], &[(0, 1), (0, 2)]);
    fed.specs[2].extra = "\n[exercise]\naccept = false\n".into();
    let _a = fed.start(0).await;
    let _b = fed.start(1).await;
    let _c = fed.start(2).await;

    let x = publish_on(&fed, 0, exercise_alert("EXERCISE grid intrusion"), &[]).await;
    let r = publish_on(&fed, 0, green_alert("real grid intrusion"), &[]).await;
    assert!(
        eventually(WAIT, || async {
            holds(&fed, 1, &x).await && holds(&fed, 1, &r).await && holds(&fed, 2, &r).await
        })
        .await,
        "both reach b, the real one reaches c"
    );

    // c refused the exercise alert: the origin's delivery status says why.
    let mut a = fed.operator(0).await;
    let refused = eventually(WAIT, || {
        let mut a = a.clone();
        let x = x.clone();
        async move {
            let d = a
                .get_delivery_status(GetDeliveryStatusRequest { message_id: x })
                .await
                .unwrap()
                .into_inner();
            d.recipients.iter().any(|r| {
                r.node_id == "node-c"
                    && r.state == DeliveryState::Rejected as i32
                    && r.reason.contains("exercise.accept = false")
            })
        }
    })
    .await;
    assert!(refused, "a sees c's refusal of the exercise alert");
    assert!(!holds(&fed, 2, &x).await, "c stores no exercise content");
    assert!(
        !alerts_on(&fed, 2, true).await.contains(&x),
        "c lists no exercise alert, even when asked for them"
    );

    // Listings: real only by default, exercise on request.
    let real = alerts_on(&fed, 1, false).await;
    assert!(real.contains(&r) && !real.contains(&x), "{real:?}");
    let all = alerts_on(&fed, 1, true).await;
    assert!(all.contains(&r) && all.contains(&x), "{all:?}");

    // Watch from the start: the real alert comes, the exercise one (stored
    // before it) never does; with include_exercise it does.
    for include_exercise in [false, true] {
        let mut b = fed.operator(1).await;
        let mut stream = b
            .watch(WatchRequest {
                filter: Some(AlertFilter {
                    include_exercise,
                    ..Default::default()
                }),
                from_start: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut seen = Vec::new();
        while !seen.contains(&r) {
            let ev = tokio::time::timeout(WAIT, stream.message())
                .await
                .expect("watch event")
                .unwrap()
                .expect("stream open");
            seen.push(ev.message.unwrap().message_id);
        }
        assert_eq!(seen.contains(&x), include_exercise, "{seen:?}");
    }

    // An exercise update never supersedes a real alert, nor the reverse.
    let cross = |old: &str, exercise: bool| Alert {
        revision: Revision::Update as i32,
        supersedes: old.to_string(),
        exercise,
        ..green_alert("update")
    };
    for (old, exercise, words) in [
        (&r, true, "exercise update cannot supersede real message"),
        (&x, false, "real update cannot supersede exercise message"),
    ] {
        let e = a
            .publish_alert(PublishAlertRequest {
                alert: Some(cross(old, exercise)),
                ..Default::default()
            })
            .await
            .expect_err("crossing update refused");
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains(words), "{}", e.message());
    }

    // An exercise alert never joins a real incident.
    let inc = a
        .publish_alert(PublishAlertRequest {
            alert: Some(green_alert("real incident")),
            open_incident: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    let e = a
        .publish_alert(PublishAlertRequest {
            alert: Some(exercise_alert("EXERCISE joins")),
            incident_id: inc.clone(),
            ..Default::default()
        })
        .await
        .expect_err("exercise alert into a real incident refused");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message()
            .contains("exercise alert cannot join real message"),
        "{}",
        e.message()
    );

    // Assistance: an exercise request is listed only on request, its offers
    // are exercise too, and c never stores it.
    let rid = a
        .request_assistance(RequestAssistanceRequest {
            request: Some(AssistanceRequest {
                title: "EXERCISE forensics for grid operator".into(),
                description: "scenario inject".into(),
                tlp: Tlp::Green as i32,
                services: vec![AssistanceService::Forensics as i32],
                ..Default::default()
            }),
            exercise: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .request_id;
    let mut b = fed.operator(1).await;
    assert!(eventually(WAIT, || holds(&fed, 1, &rid)).await);
    let list = |include_exercise: bool| {
        let mut b = b.clone();
        async move {
            b.list_assistance_requests(ListAssistanceRequestsRequest {
                page_size: 50,
                include_exercise,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .requests
        }
    };
    assert!(list(false).await.iter().all(|v| v.request_id != rid));
    let listed = list(true).await;
    let v = listed.iter().find(|v| v.request_id == rid).expect("listed");
    assert!(v.exercise);
    let offer_id = b
        .offer_assistance(OfferAssistanceRequest {
            request_id: rid.clone(),
            offer: Some(Offer {
                summary: "two forensic analysts".into(),
                capabilities: vec![AssistanceService::Forensics as i32],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .offer_id;
    let offered = eventually(WAIT, || {
        let mut a = a.clone();
        let rid = rid.clone();
        let offer_id = offer_id.clone();
        async move {
            a.get_assistance_request(GetAssistanceRequestRequest { request_id: rid })
                .await
                .is_ok_and(|v| v.into_inner().offers.iter().any(|o| o.offer_id == offer_id))
        }
    })
    .await;
    assert!(offered, "the exercise offer answers the exercise request");
    let offer_msg = b
        .get_message(GetMessageRequest {
            message_id: offer_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        offer_msg.exercise,
        "an offer on an exercise request is exercise traffic"
    );
    assert!(!holds(&fed, 2, &rid).await, "c stores no exercise request");
    a.acknowledge_message(AcknowledgeMessageRequest {
        message_id: r.clone(),
    })
    .await
    .ok();
}
