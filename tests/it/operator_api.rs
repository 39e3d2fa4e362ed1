//! The Operator API held to its inputs, through the real gRPC API (a real
//! node, real TLS, the generated tonic client): every RPC and field refuses
//! bad input with the right code and a bounded message naming the field;
//! actions with a client's request id happen once, across retries, restarts
//! and concurrent duplicates; pages stay bounded in bytes for any stored data.

use crate::common::*;
use certfed::proto::v1::operator_client::OperatorClient;
use certfed::proto::v1::*;
use futures::future::BoxFuture;
use prost_types::Timestamp;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

const MISSING: &str = "0190f5f2-7d3c-7a8b-9c1d-2e3f4a5b6c7d";

fn green_request(title: &str) -> AssistanceRequest {
    AssistanceRequest {
        title: title.into(),
        description: "need help".into(),
        tlp: Tlp::Green as i32,
        services: vec![AssistanceService::Forensics as i32],
        ..Default::default()
    }
}

fn offer(summary: &str) -> Offer {
    Offer {
        summary: summary.into(),
        capabilities: vec![AssistanceService::Forensics as i32],
        ..Default::default()
    }
}

type Call =
    Box<dyn FnOnce(OperatorClient<Channel>) -> BoxFuture<'static, Result<(), tonic::Status>>>;

/// One row of the table: what is sent, the code and a fragment of the answer.
struct Case {
    name: &'static str,
    call: Call,
    code: Code,
    needle: &'static str,
}

fn case<F>(name: &'static str, code: Code, needle: &'static str, f: F) -> Case
where
    F: FnOnce(OperatorClient<Channel>) -> BoxFuture<'static, Result<(), tonic::Status>> + 'static,
{
    Case {
        name,
        call: Box::new(f),
        code,
        needle,
    }
}

/// A call of `method` with `req`, built now, sent when the row runs.
macro_rules! rpc {
    ($method:ident, $req:expr) => {{
        let req = $req;
        move |mut op: OperatorClient<Channel>| -> BoxFuture<'static, Result<(), tonic::Status>> {
            Box::pin(async move { op.$method(req).await.map(|_| ()) })
        }
    }};
}

fn alert_with(f: impl FnOnce(&mut Alert)) -> PublishAlertRequest {
    let mut a = green_alert("validation");
    f(&mut a);
    PublishAlertRequest {
        alert: Some(a),
        ..Default::default()
    }
}

fn filter(f: impl FnOnce(&mut AlertFilter)) -> Option<AlertFilter> {
    let mut x = AlertFilter::default();
    f(&mut x);
    Some(x)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operator_rpc_validates_every_field() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let a = fed.start(0).await;
    let mut op = fed.operator(0).await;
    // Something real to point at: a stored alert and an open request.
    let alert_id = publish_on(&fed, 0, green_alert("real"), &[]).await;
    let request_id = op
        .request_assistance(RequestAssistanceRequest {
            request: Some(green_request("real request")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .request_id;
    let last = op
        .get_message(GetMessageRequest {
            message_id: alert_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .cursor;
    let huge = "7".repeat(20_000);
    let esc = "\u{1b}]0;owned\u{7}";
    let max = a.node.cfg.limits.max_message_bytes;
    let rid = request_id.clone();
    let rid2 = request_id.clone();
    let rid3 = request_id.clone();
    let h = huge.clone();
    let h2 = huge.clone();
    let h3 = huge.clone();
    let aid = alert_id.clone();

    let cases: Vec<Case> = vec![
        // ids: empty, malformed, huge, well-formed but unknown
        case(
            "get empty",
            Code::InvalidArgument,
            "message_id: required",
            rpc!(
                get_message,
                GetMessageRequest {
                    message_id: String::new()
                }
            ),
        ),
        case(
            "get malformed",
            Code::InvalidArgument,
            "message_id: ",
            rpc!(
                get_message,
                GetMessageRequest {
                    message_id: "../etc/passwd".into()
                }
            ),
        ),
        case(
            "get huge",
            Code::InvalidArgument,
            "message_id: ",
            rpc!(get_message, GetMessageRequest { message_id: h }),
        ),
        case(
            "get escape",
            Code::InvalidArgument,
            "message_id: ",
            rpc!(
                get_message,
                GetMessageRequest {
                    message_id: format!("x{esc}")
                }
            ),
        ),
        case(
            "get unknown",
            Code::NotFound,
            "no message",
            rpc!(
                get_message,
                GetMessageRequest {
                    message_id: MISSING.into()
                }
            ),
        ),
        case(
            "delivery empty",
            Code::InvalidArgument,
            "message_id: required",
            rpc!(
                get_delivery_status,
                GetDeliveryStatusRequest {
                    message_id: String::new()
                }
            ),
        ),
        case(
            "delivery malformed",
            Code::InvalidArgument,
            "message_id: ",
            rpc!(
                get_delivery_status,
                GetDeliveryStatusRequest {
                    message_id: "42".into()
                }
            ),
        ),
        case(
            "ack empty",
            Code::InvalidArgument,
            "message_id: required",
            rpc!(
                acknowledge_message,
                AcknowledgeMessageRequest {
                    message_id: String::new()
                }
            ),
        ),
        case(
            "ack malformed",
            Code::InvalidArgument,
            "message_id: ",
            rpc!(
                acknowledge_message,
                AcknowledgeMessageRequest { message_id: h2 }
            ),
        ),
        case(
            "ack unknown",
            Code::NotFound,
            "no message",
            rpc!(
                acknowledge_message,
                AcknowledgeMessageRequest {
                    message_id: MISSING.into()
                }
            ),
        ),
        case(
            "get request empty",
            Code::InvalidArgument,
            "request_id: required",
            rpc!(
                get_assistance_request,
                GetAssistanceRequestRequest {
                    request_id: String::new()
                }
            ),
        ),
        case(
            "get request malformed",
            Code::InvalidArgument,
            "request_id: ",
            rpc!(
                get_assistance_request,
                GetAssistanceRequestRequest {
                    request_id: "req-1".into()
                }
            ),
        ),
        case(
            "get request unknown",
            Code::NotFound,
            "no assistance request",
            rpc!(
                get_assistance_request,
                GetAssistanceRequestRequest {
                    request_id: MISSING.into()
                }
            ),
        ),
        // PublishAlert
        case(
            "publish no alert",
            Code::InvalidArgument,
            "alert: required",
            rpc!(publish_alert, PublishAlertRequest::default()),
        ),
        case(
            "publish ESC title",
            Code::InvalidArgument,
            "alert.title: ",
            rpc!(publish_alert, alert_with(|a| a.title.push_str(esc))),
        ),
        case(
            "publish bidi description",
            Code::InvalidArgument,
            "alert.description: ",
            rpc!(
                publish_alert,
                alert_with(|a| a.description = "invoice\u{202E}fdp.exe".into())
            ),
        ),
        case(
            "publish C1 comment",
            Code::InvalidArgument,
            "alert.indicators[0].comment: ",
            rpc!(
                publish_alert,
                alert_with(|a| a.indicators[0].comment = "\u{9b}2J".into())
            ),
        ),
        case(
            "publish DEL reference",
            Code::InvalidArgument,
            "alert.references[0]: ",
            rpc!(
                publish_alert,
                alert_with(|a| a.references = vec!["https://x.example/\u{7f}".into()])
            ),
        ),
        case(
            "publish unknown tlp",
            Code::InvalidArgument,
            "alert.tlp",
            rpc!(publish_alert, alert_with(|a| a.tlp = 99)),
        ),
        case(
            "publish unknown sector",
            Code::InvalidArgument,
            "alert.sectors[0]",
            rpc!(publish_alert, alert_with(|a| a.sectors = vec![99])),
        ),
        case(
            "publish bad supersedes",
            Code::InvalidArgument,
            "alert.supersedes",
            rpc!(
                publish_alert,
                alert_with(|a| {
                    a.revision = Revision::Update as i32;
                    a.supersedes = "nope".into();
                })
            ),
        ),
        case(
            "publish bad recipient",
            Code::InvalidArgument,
            "recipients",
            rpc!(
                publish_alert,
                PublishAlertRequest {
                    alert: Some(green_alert("x")),
                    recipients: vec![format!("Node{esc}")],
                    ..Default::default()
                }
            ),
        ),
        case(
            "publish bad request_id",
            Code::InvalidArgument,
            "request_id: ",
            rpc!(
                publish_alert,
                PublishAlertRequest {
                    alert: Some(green_alert("x")),
                    request_id: "retry-1".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "publish over size",
            Code::InvalidArgument,
            "limits.max_message_bytes",
            rpc!(
                publish_alert,
                alert_with(|a| a.description = "x".repeat(max + 100 * 1024))
            ),
        ),
        case(
            "publish far over size",
            Code::InvalidArgument,
            "limits.max_message_bytes",
            rpc!(
                publish_alert,
                alert_with(|a| a.description = "x".repeat(3 * 1024 * 1024))
            ),
        ),
        case(
            "publish alert over size",
            Code::InvalidArgument,
            "limits.max_message_bytes",
            rpc!(
                publish_alert,
                alert_with(|a| a.description = "x".repeat(max))
            ),
        ),
        // ListAlerts / Watch filters and cursors
        case(
            "list tlp 99",
            Code::InvalidArgument,
            "filter.tlp[0]",
            rpc!(
                list_alerts,
                ListAlertsRequest {
                    filter: filter(|f| f.tlp = vec![99]),
                    ..Default::default()
                }
            ),
        ),
        case(
            "list tlp unspecified",
            Code::InvalidArgument,
            "filter.tlp[1]",
            rpc!(
                list_alerts,
                ListAlertsRequest {
                    filter: filter(|f| f.tlp = vec![1, 0]),
                    ..Default::default()
                }
            ),
        ),
        case(
            "list sector 99",
            Code::InvalidArgument,
            "filter.sectors[0]",
            rpc!(
                list_alerts,
                ListAlertsRequest {
                    filter: filter(|f| f.sectors = vec![99]),
                    ..Default::default()
                }
            ),
        ),
        case(
            "list severity 99",
            Code::InvalidArgument,
            "filter.min_severity",
            rpc!(
                list_alerts,
                ListAlertsRequest {
                    filter: filter(|f| f.min_severity = 99),
                    ..Default::default()
                }
            ),
        ),
        case(
            "list bad origin",
            Code::InvalidArgument,
            "filter.origins[0]",
            rpc!(
                list_alerts,
                ListAlertsRequest {
                    filter: filter(|f| f.origins = vec![h3]),
                    ..Default::default()
                }
            ),
        ),
        case(
            "list bad nanos",
            Code::InvalidArgument,
            "filter.created_after",
            rpc!(
                list_alerts,
                ListAlertsRequest {
                    filter: filter(|f| f.created_after = Some(Timestamp {
                        seconds: 1,
                        nanos: -1
                    })),
                    ..Default::default()
                }
            ),
        ),
        case(
            "list empty window",
            Code::InvalidArgument,
            "filter.created_before",
            rpc!(
                list_alerts,
                ListAlertsRequest {
                    filter: filter(|f| {
                        f.created_after = Some(Timestamp {
                            seconds: 10,
                            nanos: 0,
                        });
                        f.created_before = Some(Timestamp {
                            seconds: 5,
                            nanos: 0,
                        });
                    }),
                    ..Default::default()
                }
            ),
        ),
        case(
            "list bad token",
            Code::InvalidArgument,
            "page_token",
            rpc!(
                list_alerts,
                ListAlertsRequest {
                    page_token: "abc".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "list token over 2^63",
            Code::InvalidArgument,
            "page_token",
            rpc!(
                list_alerts,
                ListAlertsRequest {
                    page_token: u64::MAX.to_string(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "peers bad token",
            Code::InvalidArgument,
            "page_token",
            rpc!(
                list_peers,
                ListPeersRequest {
                    page_token: "-1".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "watch cursor 2^63",
            Code::InvalidArgument,
            "after_cursor",
            rpc!(
                watch,
                WatchRequest {
                    after_cursor: 1 << 63,
                    ..Default::default()
                }
            ),
        ),
        case(
            "watch cursor max",
            Code::InvalidArgument,
            "after_cursor",
            rpc!(
                watch,
                WatchRequest {
                    after_cursor: u64::MAX,
                    ..Default::default()
                }
            ),
        ),
        case(
            "watch cursor beyond end",
            Code::OutOfRange,
            "after_cursor",
            rpc!(
                watch,
                WatchRequest {
                    after_cursor: last + 1000,
                    ..Default::default()
                }
            ),
        ),
        case(
            "watch both starts",
            Code::InvalidArgument,
            "from_start",
            rpc!(
                watch,
                WatchRequest {
                    after_cursor: 1,
                    from_start: true,
                    ..Default::default()
                }
            ),
        ),
        case(
            "watch tlp 99",
            Code::InvalidArgument,
            "filter.tlp[0]",
            rpc!(
                watch,
                WatchRequest {
                    filter: filter(|f| f.tlp = vec![99]),
                    ..Default::default()
                }
            ),
        ),
        // Assistance
        case(
            "request none",
            Code::InvalidArgument,
            "request: required",
            rpc!(request_assistance, RequestAssistanceRequest::default()),
        ),
        case(
            "request ESC title",
            Code::InvalidArgument,
            "request.title: ",
            rpc!(
                request_assistance,
                RequestAssistanceRequest {
                    request: Some(green_request(&format!("help{esc}"))),
                    ..Default::default()
                }
            ),
        ),
        case(
            "request bidi description",
            Code::InvalidArgument,
            "request.description: ",
            rpc!(
                request_assistance,
                RequestAssistanceRequest {
                    request: Some(AssistanceRequest {
                        description: "a\u{2067}b".into(),
                        ..green_request("t")
                    }),
                    ..Default::default()
                }
            ),
        ),
        case(
            "request unknown service",
            Code::InvalidArgument,
            "request.services[0]",
            rpc!(
                request_assistance,
                RequestAssistanceRequest {
                    request: Some(AssistanceRequest {
                        services: vec![99],
                        ..green_request("t")
                    }),
                    ..Default::default()
                }
            ),
        ),
        case(
            "request bad request_id",
            Code::InvalidArgument,
            "request_id: ",
            rpc!(
                request_assistance,
                RequestAssistanceRequest {
                    request: Some(green_request("t")),
                    request_id: "1".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "offer empty request_id",
            Code::InvalidArgument,
            "request_id: required",
            rpc!(
                offer_assistance,
                OfferAssistanceRequest {
                    offer: Some(offer("team")),
                    ..Default::default()
                }
            ),
        ),
        case(
            "offer malformed request_id",
            Code::InvalidArgument,
            "request_id: ",
            rpc!(
                offer_assistance,
                OfferAssistanceRequest {
                    request_id: "abc".into(),
                    offer: Some(offer("team")),
                    ..Default::default()
                }
            ),
        ),
        case(
            "offer unknown request",
            Code::NotFound,
            "no assistance request",
            rpc!(
                offer_assistance,
                OfferAssistanceRequest {
                    request_id: MISSING.into(),
                    offer: Some(offer("team")),
                    ..Default::default()
                }
            ),
        ),
        case(
            "offer none",
            Code::InvalidArgument,
            "offer: required",
            rpc!(
                offer_assistance,
                OfferAssistanceRequest {
                    request_id: rid.clone(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "offer ESC summary",
            Code::InvalidArgument,
            "offer.summary: ",
            rpc!(
                offer_assistance,
                OfferAssistanceRequest {
                    request_id: rid,
                    offer: Some(offer("team\u{1b}[8m")),
                    ..Default::default()
                }
            ),
        ),
        case(
            "offer bad client_request_id",
            Code::InvalidArgument,
            "client_request_id: ",
            rpc!(
                offer_assistance,
                OfferAssistanceRequest {
                    request_id: rid2.clone(),
                    offer: Some(offer("team")),
                    client_request_id: "zzz".into()
                }
            ),
        ),
        case(
            "decide empty",
            Code::InvalidArgument,
            "offer_id: required",
            rpc!(decide_offer, DecideOfferRequest::default()),
        ),
        case(
            "decide malformed",
            Code::InvalidArgument,
            "offer_id: ",
            rpc!(
                decide_offer,
                DecideOfferRequest {
                    offer_id: "offer-1".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "decide unknown",
            Code::NotFound,
            "no offer",
            rpc!(
                decide_offer,
                DecideOfferRequest {
                    offer_id: MISSING.into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "decide ESC note",
            Code::InvalidArgument,
            "note: ",
            rpc!(
                decide_offer,
                DecideOfferRequest {
                    offer_id: MISSING.into(),
                    note: format!("ok{esc}"),
                    ..Default::default()
                }
            ),
        ),
        case(
            "decide bad request_id",
            Code::InvalidArgument,
            "request_id: ",
            rpc!(
                decide_offer,
                DecideOfferRequest {
                    offer_id: MISSING.into(),
                    request_id: "again".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "update empty",
            Code::InvalidArgument,
            "request_id: required",
            rpc!(
                update_assistance,
                UpdateAssistanceRequest {
                    state: AssistanceState::Withdrawn as i32,
                    ..Default::default()
                }
            ),
        ),
        case(
            "update malformed",
            Code::InvalidArgument,
            "request_id: ",
            rpc!(
                update_assistance,
                UpdateAssistanceRequest {
                    request_id: "r".into(),
                    state: AssistanceState::Withdrawn as i32,
                    ..Default::default()
                }
            ),
        ),
        case(
            "update state 99",
            Code::InvalidArgument,
            "state: ",
            rpc!(
                update_assistance,
                UpdateAssistanceRequest {
                    request_id: rid2.clone(),
                    state: 99,
                    ..Default::default()
                }
            ),
        ),
        case(
            "update neither",
            Code::InvalidArgument,
            "state: ",
            rpc!(
                update_assistance,
                UpdateAssistanceRequest {
                    request_id: rid2.clone(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "update bad withdraw id",
            Code::InvalidArgument,
            "withdraw_offer_id: ",
            rpc!(
                update_assistance,
                UpdateAssistanceRequest {
                    request_id: rid2.clone(),
                    withdraw_offer_id: "o".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "update ESC note",
            Code::InvalidArgument,
            "note: ",
            rpc!(
                update_assistance,
                UpdateAssistanceRequest {
                    request_id: rid2.clone(),
                    state: AssistanceState::Withdrawn as i32,
                    note: format!("bye{esc}"),
                    ..Default::default()
                }
            ),
        ),
        case(
            "update CR note",
            Code::InvalidArgument,
            "note: ",
            rpc!(
                update_assistance,
                UpdateAssistanceRequest {
                    request_id: rid2,
                    state: AssistanceState::Withdrawn as i32,
                    note: "done\rhidden".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "list states 99",
            Code::InvalidArgument,
            "states[0]",
            rpc!(
                list_assistance_requests,
                ListAssistanceRequestsRequest {
                    states: vec![99],
                    ..Default::default()
                }
            ),
        ),
        case(
            "list states unspecified",
            Code::InvalidArgument,
            "states[1]",
            rpc!(
                list_assistance_requests,
                ListAssistanceRequestsRequest {
                    states: vec![1, 0],
                    ..Default::default()
                }
            ),
        ),
        case(
            "list requests bad token",
            Code::InvalidArgument,
            "page_token",
            rpc!(
                list_assistance_requests,
                ListAssistanceRequestsRequest {
                    page_token: "x".into(),
                    ..Default::default()
                }
            ),
        ),
        // Valid requests still pass (the table is not refusing everything).
        case(
            "valid get",
            Code::Ok,
            "",
            rpc!(get_message, GetMessageRequest { message_id: aid }),
        ),
        case(
            "valid list",
            Code::Ok,
            "",
            rpc!(
                list_alerts,
                ListAlertsRequest {
                    filter: filter(|f| {
                        f.tlp = vec![2];
                        f.origins = vec!["node-a".into()];
                    }),
                    ..Default::default()
                }
            ),
        ),
        case(
            "valid list states",
            Code::Ok,
            "",
            rpc!(
                list_assistance_requests,
                ListAssistanceRequestsRequest {
                    states: vec![1, 2],
                    ..Default::default()
                }
            ),
        ),
        case(
            "valid watch at end",
            Code::Ok,
            "",
            rpc!(
                watch,
                WatchRequest {
                    after_cursor: last,
                    ..Default::default()
                }
            ),
        ),
        case(
            "valid multi-line note",
            Code::Ok,
            "",
            rpc!(
                update_assistance,
                UpdateAssistanceRequest {
                    request_id: rid3,
                    state: AssistanceState::Withdrawn as i32,
                    note: "line 1\r\nline 2\n\tend".into(),
                    ..Default::default()
                }
            ),
        ),
    ];
    let n = cases.len();
    let mut failures = Vec::new();
    for c in cases {
        let r = (c.call)(op.clone()).await;
        let (code, msg) = match &r {
            Ok(()) => (Code::Ok, String::new()),
            Err(s) => (s.code(), s.message().to_string()),
        };
        if code != c.code || !msg.contains(c.needle) {
            failures.push(format!(
                "{}: want {:?} with {:?}, got {:?}: {msg}",
                c.name, c.code, c.needle, code
            ));
        }
        if msg.len() > 1024 || msg.chars().any(|ch| ch.is_control()) {
            failures.push(format!(
                "{}: message not bounded or not escaped ({} bytes): {msg:?}",
                c.name,
                msg.len()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Nothing refused was stored: the real alert and request only.
    let info = op
        .get_node_info(GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.stored_messages, 3, "alert, request, withdrawal");
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_publish_creates_one_message_across_restarts_and_races() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let key = uuid::Uuid::now_v7().to_string();
    let publish = |key: &str, title: &str| PublishAlertRequest {
        alert: Some(green_alert(title)),
        recipients: vec![],
        request_id: key.to_string(),
        ..Default::default()
    };
    let a = fed.start(0).await;
    let mut op = fed.operator(0).await;
    let first = op
        .publish_alert(publish(&key, "once"))
        .await
        .unwrap()
        .into_inner()
        .message_id;
    let again = op
        .publish_alert(publish(&key, "once"))
        .await
        .unwrap()
        .into_inner()
        .message_id;
    assert_eq!(first, again, "a retry returns the original message id");
    // Upper-case form of the same UUID is the same key.
    let upper = op
        .publish_alert(publish(&key.to_uppercase(), "once"))
        .await
        .unwrap()
        .into_inner()
        .message_id;
    assert_eq!(first, upper);
    let err = op
        .publish_alert(publish(&key, "another body"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(
        err.message().starts_with("request_id: "),
        "{}",
        err.message()
    );
    a.shutdown().await.unwrap();

    // After a restart the store still knows the key.
    let a = fed.start(0).await;
    let mut op = fed.operator(0).await;
    let after = op
        .publish_alert(publish(&key, "once"))
        .await
        .unwrap()
        .into_inner()
        .message_id;
    assert_eq!(first, after, "the key survives a restart");
    let listed = op
        .list_alerts(ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert_eq!(listed.len(), 1, "one message for all the retries");

    // Concurrent duplicates: one message.
    let race = uuid::Uuid::now_v7().to_string();
    let calls = (0..8).map(|_| {
        let mut op = op.clone();
        let req = publish(&race, "raced");
        tokio::spawn(async move {
            op.publish_alert(req)
                .await
                .map(|r| r.into_inner().message_id)
        })
    });
    let ids: Vec<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert!(ids.iter().all(|i| i == &ids[0]), "{ids:?}");
    let listed = op
        .list_alerts(ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert_eq!(listed.len(), 2, "one message per key");
    // Without a key every call is new.
    publish_on(&fed, 0, green_alert("no key"), &[]).await;
    publish_on(&fed, 0, green_alert("no key"), &[]).await;
    let info = op
        .get_node_info(GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.stored_messages, 4);
    // A refused request frees its key: corrected, it goes through.
    let fixable = uuid::Uuid::now_v7().to_string();
    let mut bad = publish(&fixable, "fix me");
    bad.alert.as_mut().unwrap().title = "bad\u{1b}".into();
    assert_eq!(
        op.publish_alert(bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    op.publish_alert(publish(&fixable, "fix me")).await.unwrap();
    assert_eq!(a.node.requests.in_flight(), 0, "no lock left behind");
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_between_signing_and_recording_answers_the_retry_from_the_store() {
    use certfed::service::requests::RequestKey;
    use certfed::storage::{Claim, RequestRecord};
    use prost::Message;
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]).sqlite();
    let a = fed.start(0).await;
    let stored = publish_on(&fed, 0, green_alert("stored"), &[]).await;
    a.shutdown().await.unwrap();

    // Claims as an interrupted call leaves them: one whose message was stored
    // (the answer not yet recorded), one whose message never was.
    let body = |title: &str| {
        PublishAlertRequest {
            alert: Some(green_alert(title)),
            ..Default::default()
        }
        .encode_to_vec()
    };
    let done = uuid::Uuid::now_v7().to_string();
    let lost = uuid::Uuid::now_v7().to_string();
    let chosen = uuid::Uuid::now_v7().to_string();
    let store = certfed::storage::sqlite::open(
        &fed.data_dir(0),
        &certfed::storage::OpenOptions::new(fed.specs[0].id.clone()),
    )
    .unwrap();
    for (key, title, message_id) in [(&done, "stored", &stored), (&lost, "lost", &chosen)] {
        let k = RequestKey::parse("request_id", key, "PublishAlert", &body(title))
            .unwrap()
            .unwrap();
        let rec = RequestRecord {
            request_id: k.id,
            fingerprint: k.fingerprint,
            message_id: message_id.clone(),
            response: None,
            created_ms: certfed::service::now_ms(),
        };
        assert_eq!(store.claim_request(rec, 0).await.unwrap(), Claim::Claimed);
    }
    store.close().await;
    drop(store);

    let a = fed.start(0).await;
    let mut op = fed.operator(0).await;
    let retry = |key: &str, title: &str| PublishAlertRequest {
        alert: Some(green_alert(title)),
        recipients: vec![],
        request_id: key.to_string(),
        ..Default::default()
    };
    let r = op
        .publish_alert(retry(&done, "stored"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.message_id, stored, "found in the store, not signed again");
    let r = op
        .publish_alert(retry(&lost, "lost"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.message_id, chosen,
        "signed now, with the id chosen before"
    );
    let info = op
        .get_node_info(GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.stored_messages, 2);
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_assistance_action_is_idempotent() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let a = fed.start(0).await;
    let b = fed.start(1).await;
    let mut op_a = fed.operator(0).await;
    let mut op_b = fed.operator(1).await;
    let k = || uuid::Uuid::now_v7().to_string();

    // b asks (twice, one key): one request.
    let key = k();
    let ask = |key: &str| RequestAssistanceRequest {
        request: Some(green_request("DDoS on the ministry")),
        recipients: vec![],
        request_id: key.to_string(),
        exercise: false,
    };
    let rid = op_b
        .request_assistance(ask(&key))
        .await
        .unwrap()
        .into_inner()
        .request_id;
    assert_eq!(
        rid,
        op_b.request_assistance(ask(&key))
            .await
            .unwrap()
            .into_inner()
            .request_id
    );
    let listed = op_b
        .list_assistance_requests(ListAssistanceRequestsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.requests.len(), 1);
    assert!(
        arrives(&fed, 0, &rid, Duration::from_secs(60)).await,
        "request reaches a"
    );

    // a offers (twice, one key): one offer.
    let key = k();
    let give = |key: &str| OfferAssistanceRequest {
        request_id: rid.clone(),
        offer: Some(offer("scrubbing capacity")),
        client_request_id: key.to_string(),
    };
    let oid = op_a
        .offer_assistance(give(&key))
        .await
        .unwrap()
        .into_inner()
        .offer_id;
    assert_eq!(
        oid,
        op_a.offer_assistance(give(&key))
            .await
            .unwrap()
            .into_inner()
            .offer_id
    );
    let mut other = give(&key);
    other.offer.as_mut().unwrap().summary = "something else".into();
    let err = op_a.offer_assistance(other).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(
        err.message().starts_with("client_request_id: "),
        "{}",
        err.message()
    );
    assert!(
        arrives(&fed, 1, &oid, Duration::from_secs(60)).await,
        "offer reaches b"
    );

    // b accepts (twice, one key): one decision; a retry answers the same state.
    let key = k();
    let decide = |key: &str| DecideOfferRequest {
        offer_id: oid.clone(),
        accept: true,
        note: "thanks".into(),
        request_id: key.to_string(),
    };
    let s1 = op_b
        .decide_offer(decide(&key))
        .await
        .unwrap()
        .into_inner()
        .state;
    let s2 = op_b
        .decide_offer(decide(&key))
        .await
        .unwrap()
        .into_inner()
        .state;
    assert_eq!(
        (s1, s2),
        (
            AssistanceState::Accepted as i32,
            AssistanceState::Accepted as i32
        )
    );
    // A new key is a new action: refused, the offer is no longer pending.
    let err = op_b.decide_offer(decide(&k())).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    // b deploys (twice, one key): one status step.
    let key = k();
    let deploy = |key: &str| UpdateAssistanceRequest {
        request_id: rid.clone(),
        state: AssistanceState::Deployed as i32,
        note: "team on site".into(),
        withdraw_offer_id: String::new(),
        client_request_id: key.to_string(),
    };
    let s1 = op_b
        .update_assistance(deploy(&key))
        .await
        .unwrap()
        .into_inner()
        .state;
    let s2 = op_b
        .update_assistance(deploy(&key))
        .await
        .unwrap()
        .into_inner()
        .state;
    assert_eq!(
        (s1, s2),
        (
            AssistanceState::Deployed as i32,
            AssistanceState::Deployed as i32
        )
    );

    let v = op_b
        .get_assistance_request(GetAssistanceRequestRequest {
            request_id: rid.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.offers.len(), 1, "{v:?}");
    // request, offer, decision, status: nothing twice.
    assert_eq!(v.history.len(), 4, "{:#?}", v.history);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_bounded_by_bytes_for_large_stored_items() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let a = fed.start(0).await;
    let mut op = fed.operator(0).await;
    // 40 alerts of ~240 KB (each within the default 256 KiB limit): ~9.6 MB.
    let n = 40;
    let mut ids = Vec::new();
    for i in 0..n {
        let mut al = green_alert(&format!("big {i}"));
        al.description = format!("{i:04} ").repeat(48_000);
        ids.push(publish_on(&fed, 0, al, &[]).await);
    }
    // The default page size (100) with the default client (4 MiB receive limit).
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let r = op
            .list_alerts(ListAlertsRequest {
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("a page at the defaults succeeds")
            .into_inner();
        pages += 1;
        assert!(!r.alerts.is_empty());
        seen.extend(r.alerts.into_iter().map(|s| s.message_id));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
        assert!(pages < 100, "paging ends");
    }
    assert!(pages >= 3, "{pages} pages for ~9.6 MB");
    ids.reverse();
    assert_eq!(seen, ids, "every alert once, newest first");

    // Watch replays them one event each, none over the answer limit.
    let mut w = op
        .watch(WatchRequest {
            from_start: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..n {
        let ev = tokio::time::timeout(Duration::from_secs(60), w.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(ev.message.is_some());
    }

    // Assistance requests with large descriptions page the same way.
    for i in 0..14 {
        op.request_assistance(RequestAssistanceRequest {
            request: Some(AssistanceRequest {
                description: "d".repeat(240_000),
                ..green_request(&format!("request {i}"))
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let mut got = 0;
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let r = op
            .list_assistance_requests(ListAssistanceRequestsRequest {
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("a page at the defaults succeeds")
            .into_inner();
        got += r.requests.len();
        pages += 1;
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert_eq!(got, 14);
    assert!(pages >= 2, "{pages}");
    a.shutdown().await.unwrap();
}
