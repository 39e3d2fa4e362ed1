//! Text from partners is untrusted: a hostile peer (a test client with a valid
//! node certificate) pushes signed alerts and assistance steps whose free
//! text carries terminal escapes, C1 controls and bidi overrides. Each is
//! refused at admission with the field named, and nothing is stored; the
//! same messages without those characters are accepted.

use crate::common::*;
use certfed::domain::envelope::{Draft, seal};
use certfed::domain::keys::Signer;
use certfed::proto::v1::*;
use prost::Message;

fn signer_from(pki: &Pki, id: &str) -> Signer {
    let pem = std::fs::read_to_string(pki.path(&format!("{id}.sign.key"))).unwrap();
    Signer::from_pkcs8_pem(id, &pem).unwrap()
}

fn envelope(key: &Signer, kind: MessageKind, payload: Vec<u8>) -> SignedEnvelope {
    seal(
        key,
        Draft {
            message_id: uuid::Uuid::now_v7().to_string(),
            kind,
            tlp: Tlp::Green,
            recipients: vec![],
            created_ms: certfed::service::now_ms(),
            expires_ms: None,
            hop_limit: 8,
            exercise: false,
            encrypted: false,
            payload,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partners_control_characters_are_refused_at_admission() {
    // b listens; the test plays node-a, a configured peer of b.
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let b = fed.start(1).await;
    let a_key = signer_from(&fed.pki, "node-a");
    let esc = "\u{1b}]8;;https://evil.example\u{7}click\u{1b}]8;;\u{7}";

    let alert = |f: &dyn Fn(&mut Alert)| {
        let mut a = green_alert("partner alert");
        f(&mut a);
        envelope(&a_key, MessageKind::Alert, a.encode_to_vec())
    };
    let request = |title: &str| {
        let r = AssistanceRequest {
            title: title.into(),
            description: "help".into(),
            tlp: Tlp::Green as i32,
            services: vec![AssistanceService::Forensics as i32],
            ..Default::default()
        };
        envelope(&a_key, MessageKind::AssistanceRequest, r.encode_to_vec())
    };
    let rid = uuid::Uuid::now_v7().to_string();
    let offer = OfferMessage {
        request_id: rid.clone(),
        offer: Some(Offer {
            summary: "team \u{202E}gnp.exe".into(),
            ..Default::default()
        }),
    };
    let decision = DecisionMessage {
        request_id: rid.clone(),
        offer_id: uuid::Uuid::now_v7().to_string(),
        accept: true,
        note: format!("ok{esc}"),
    };
    let status = StatusMessage {
        request_id: rid.clone(),
        state: AssistanceState::Deployed as i32,
        note: "on site".into(),
        withdraw_offer_id: String::new(),
        summary_report: "done\u{9b}2J".into(),
    };

    let cases: Vec<(&str, SignedEnvelope, PushOutcome, &str)> = vec![
        (
            "ESC in title",
            alert(&|a| a.title.push_str(esc)),
            PushOutcome::Rejected,
            "alert.title",
        ),
        (
            "bidi in description",
            alert(&|a| a.description = "see \u{2066}attached\u{2069}".into()),
            PushOutcome::Rejected,
            "alert.description",
        ),
        (
            "C1 in comment",
            alert(&|a| a.indicators[0].comment = "\u{85}x".into()),
            PushOutcome::Rejected,
            "alert.indicators[0].comment",
        ),
        (
            "CR in text indicator",
            alert(&|a| {
                a.indicators.push(Indicator {
                    r#type: IndicatorType::Text as i32,
                    value: "fake\rreal".into(),
                    comment: String::new(),
                })
            }),
            PushOutcome::Rejected,
            "alert.indicators[1].value",
        ),
        (
            "ESC in request title",
            request(&format!("help{esc}")),
            PushOutcome::Rejected,
            "request.title",
        ),
        (
            "bidi in offer summary",
            envelope(&a_key, MessageKind::Offer, offer.encode_to_vec()),
            PushOutcome::Rejected,
            "offer.summary",
        ),
        (
            "ESC in decision note",
            envelope(&a_key, MessageKind::Decision, decision.encode_to_vec()),
            PushOutcome::Rejected,
            "decision.note",
        ),
        (
            "CSI in status report",
            envelope(&a_key, MessageKind::Status, status.encode_to_vec()),
            PushOutcome::Rejected,
            "status.summary_report",
        ),
        (
            "clean alert",
            alert(&|a| a.description = "line 1\r\nline 2 — ünïcödé 日本 👩\u{200D}💻".into()),
            PushOutcome::Accepted,
            "",
        ),
        (
            "clean request",
            request("Ransomware at a hospital"),
            PushOutcome::Accepted,
            "",
        ),
    ];

    let mut fc = federation_client(&fed.pki, &fed.addr(1), "node-a", Some("node-b")).await;
    for (i, (name, env, want, needle)) in cases.iter().enumerate() {
        let frame = PushFrame {
            toward: Vec::new(),
            bundled: Vec::new(),
            gossip: None,
            resent: false,
            returning: false,
            hops: vec![],
            seq: i as u64 + 1,
            envelope: Some(env.clone()),
        };
        let mut acks = fc
            .push(tokio_stream::iter(vec![frame]))
            .await
            .unwrap()
            .into_inner();
        let ack = acks.message().await.unwrap().expect("one ack per frame");
        assert_eq!(ack.outcome, *want as i32, "{name}: {ack:?}");
        assert!(
            ack.reason.contains(needle),
            "{name}: reason {:?} lacks {needle:?}",
            ack.reason
        );
        if *want == PushOutcome::Rejected {
            assert!(
                ack.reason.contains("U+"),
                "{name}: the character is named: {}",
                ack.reason
            );
            assert!(
                !ack.reason.chars().any(|c| c.is_control()),
                "{name}: the reason echoes no control character"
            );
        }
    }
    let mut op = fed.operator(1).await;
    let info = op
        .get_node_info(GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        info.stored_messages, 2,
        "only the clean alert and request are stored"
    );
    b.shutdown().await.unwrap();
}
