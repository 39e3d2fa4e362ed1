//! Signed alerts between real nodes on loopback: delivery, relay on the line,
//! outage catch-up, Watch resume, validation errors.

use crate::common::*;
use certfed::proto::v1::*;
use std::time::Duration;
use tokio_stream::StreamExt;

async fn count_alerts(c: &mut operator_client::OperatorClient<tonic::transport::Channel>) -> usize {
    let mut n = 0;
    let mut token = String::new();
    loop {
        let r = c
            .list_alerts(ListAlertsRequest {
                filter: None,
                page_size: 1000,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        n += r.alerts.len();
        if r.next_page_token.is_empty() {
            return n;
        }
        token = r.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn green_alert_reaches_peer_and_is_relayed_once_through_b() {
    let fed = Fed::line();
    let a = fed.start(0).await;
    let b = fed.start(1).await;
    let c = fed.start(2).await;
    let mut op_a = fed.operator(0).await;
    let id = op_a
        .publish_alert(PublishAlertRequest {
            alert: Some(green_alert("line relay")),
            recipients: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;

    let mut op_c = fed.operator(2).await;
    let got = arrives(&fed, 2, &id, Duration::from_secs(20)).await;
    assert!(got, "alert did not reach node-c through node-b");
    let m = op_c
        .get_message(GetMessageRequest {
            message_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.origin, "node-a");
    let path: Vec<_> = m.path.iter().map(|h| h.node_id.as_str()).collect();
    assert_eq!(
        path,
        ["node-a", "node-b"],
        "c's path must show it came through b"
    );
    assert_eq!(m.alert.unwrap().title, "line relay");

    let mut op_b = fed.operator(1).await;
    assert_eq!(count_alerts(&mut op_b).await, 1);
    assert_eq!(count_alerts(&mut op_c).await, 1);
    // Give any stray re-sends time to arrive, then check nothing was stored twice
    // and nothing went back to a.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count_alerts(&mut op_c).await, 1);
    assert_eq!(count_alerts(&mut op_a).await, 1);

    // The origin sees its peer b and, through receipts, b and c as delivered;
    // once c's operator acknowledges it, the origin sees that too.
    let delivered = |want_c: DeliveryState| {
        let op_a = op_a.clone();
        let id = id.clone();
        move || {
            let mut op_a = op_a.clone();
            let id = id.clone();
            async move {
                let d = op_a
                    .get_delivery_status(GetDeliveryStatusRequest { message_id: id })
                    .await
                    .unwrap()
                    .into_inner();
                let state = |n: &str| {
                    d.recipients
                        .iter()
                        .find(|r| r.node_id == n)
                        .map(|r| r.state)
                };
                state("node-b") == Some(DeliveryState::Delivered as i32)
                    && state("node-c") == Some(want_c as i32)
            }
        }
    };
    let ok = eventually(Duration::from_secs(10), delivered(DeliveryState::Delivered)).await;
    assert!(ok, "origin never saw b's and c's receipts");
    op_c.acknowledge_message(AcknowledgeMessageRequest {
        message_id: id.clone(),
    })
    .await
    .unwrap();
    let ok = eventually(
        Duration::from_secs(10),
        delivered(DeliveryState::Acknowledged),
    )
    .await;
    assert!(ok, "origin never saw c's operator acknowledgement");
    // Only b relayed (the alert, and c's receipts on their way back to a).
    assert!(b.node.metrics.relayed.get() >= 1);
    assert_eq!(a.node.metrics.relayed.get(), 0);
    assert_eq!(c.node.metrics.relayed.get(), 0);
    for n in [a, b, c] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_alerts_queued_while_peer_down_arrive_exactly_once() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let a = fed.start(0).await;
    let mut op_a = fed.operator(0).await;
    for i in 0..1000 {
        op_a.publish_alert(PublishAlertRequest {
            alert: Some(green_alert(&format!("queued {i}"))),
            recipients: vec![],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let peers = op_a
        .list_peers(ListPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(peers.peers[0].outbox_depth, 1000);
    assert_ne!(peers.peers[0].state, LinkState::Up as i32);

    let b = fed.start(1).await;
    let mut op_b = fed.operator(1).await;
    let ok = eventually(Duration::from_secs(60), || {
        let mut op_b = op_b.clone();
        async move { count_alerts(&mut op_b).await >= 1000 }
    })
    .await;
    assert!(ok, "not all 1000 alerts arrived");
    let ok = eventually(Duration::from_secs(10), || {
        let mut op_a = op_a.clone();
        async move {
            let p = op_a
                .list_peers(ListPeersRequest::default())
                .await
                .unwrap()
                .into_inner();
            p.peers[0].outbox_depth == 0 && p.peers[0].state == LinkState::Up as i32
        }
    })
    .await;
    assert!(ok, "a's outbox did not drain");
    assert_eq!(count_alerts(&mut op_b).await, 1000);
    let info = op_b
        .get_node_info(GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.stored_messages, 1000, "no message stored twice");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_from_cursor_without_gaps() {
    let fed = Fed::new(&["node-a"], &[]);
    let a = fed.start(0).await;
    let mut op = fed.operator(0).await;
    let mut stream = op
        .watch(WatchRequest {
            filter: None,
            after_cursor: 0,
            from_start: true,
        })
        .await
        .unwrap()
        .into_inner();
    let mut titles = Vec::new();
    for i in 0..5 {
        op.publish_alert(PublishAlertRequest {
            alert: Some(green_alert(&format!("w{i}"))),
            recipients: vec![],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let mut last = 0;
    for _ in 0..3 {
        let ev = stream.next().await.unwrap().unwrap();
        assert!(ev.cursor > last);
        last = ev.cursor;
        titles.push(ev.message.unwrap().alert.unwrap().title);
    }
    drop(stream);
    for i in 5..10 {
        op.publish_alert(PublishAlertRequest {
            alert: Some(green_alert(&format!("w{i}"))),
            recipients: vec![],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let mut stream = op
        .watch(WatchRequest {
            filter: None,
            after_cursor: last,
            from_start: false,
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..7 {
        let ev = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("watch stalled")
            .unwrap()
            .unwrap();
        titles.push(ev.message.unwrap().alert.unwrap().title);
    }
    let want: Vec<String> = (0..10).map(|i| format!("w{i}")).collect();
    assert_eq!(titles, want);

    // A filter applies to the stream: only critical alerts.
    let mut crit = op
        .watch(WatchRequest {
            filter: Some(AlertFilter {
                min_severity: Severity::Critical as i32,
                ..Default::default()
            }),
            after_cursor: 0,
            from_start: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut high = green_alert("not critical");
    high.severity = Severity::High as i32;
    let mut critical = green_alert("critical one");
    critical.severity = Severity::Critical as i32;
    for al in [high, critical] {
        op.publish_alert(PublishAlertRequest {
            alert: Some(al),
            recipients: vec![],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let ev = tokio::time::timeout(Duration::from_secs(5), crit.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ev.message.unwrap().alert.unwrap().title, "critical one");
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_validation_errors_name_the_field() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let a = fed.start(0).await;
    let mut op = fed.operator(0).await;
    let cases: Vec<(Alert, Vec<String>, &str)> = vec![
        (
            Alert {
                title: "  ".into(),
                ..green_alert("x")
            },
            vec![],
            "alert.title",
        ),
        (
            {
                let mut al = green_alert("bad ip");
                al.indicators[0].value = "300.1.1.1".into();
                al
            },
            vec![],
            "alert.indicators[0].value",
        ),
        (
            {
                let mut al = green_alert("bad hash");
                al.indicators[0].r#type = IndicatorType::Sha256 as i32;
                al.indicators[0].value = "abcd".into();
                al
            },
            vec![],
            "alert.indicators[0].value",
        ),
        (
            {
                let mut al = green_alert("red broadcast");
                al.tlp = Tlp::Red as i32;
                al
            },
            vec![],
            "TLP:RED",
        ),
        (
            green_alert("unknown recipient"),
            vec!["node-zz".into()],
            "recipients[0]",
        ),
        (
            {
                let mut al = green_alert("expires before created");
                al.expires = Some(prost_types::Timestamp {
                    seconds: 1,
                    nanos: 0,
                });
                al
            },
            vec![],
            "alert.expires",
        ),
        (
            {
                let mut al = green_alert("huge");
                al.description = "x".repeat(300 * 1024);
                al
            },
            vec![],
            "max_message_bytes",
        ),
    ];
    for (alert, recipients, needle) in cases {
        let title = alert.title.clone();
        let err = op
            .publish_alert(PublishAlertRequest {
                alert: Some(alert),
                recipients,
                ..Default::default()
            })
            .await
            .expect_err(&format!("{title:?} must be refused"));
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{title}: {err:?}");
        assert!(
            err.message().contains(needle),
            "{title}: message {:?} should name {needle}",
            err.message()
        );
    }
    assert_eq!(count_alerts(&mut op).await, 0, "nothing refused was stored");
    a.shutdown().await.unwrap();
}
