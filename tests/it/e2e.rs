//! End-to-end encryption across a relay: on the line a–b–c, a TLP:RED alert
//! from a to c crosses b, which routes it on the signed header but can never
//! read it: not through the API, not in its data directory, not in its logs.

use crate::common::*;
use certfed::proto::v1::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn red_alert(marker: &str) -> Alert {
    let mut a = green_alert(&format!("RED {marker}"));
    a.tlp = Tlp::Red as i32;
    a.description = format!("secret details {marker}");
    a.indicators[0] = Indicator {
        r#type: IndicatorType::Domain as i32,
        value: format!("{}.example", marker.to_lowercase()),
        comment: String::new(),
    };
    a
}

fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if let Ok(bytes) = std::fs::read(&p)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(p.display().to_string());
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_alert_crosses_relay_that_cannot_read_it() {
    let fed = Fed::line().sqlite();
    // b is a real process logging everything, down to debug, to a file.
    let log_path = fed.data.path().join("node-b.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut b = Command::new(env!("CARGO_BIN_EXE_certfed"))
        .args(["serve", "--config"])
        .arg(fed.config_path(1))
        .env("RUST_LOG", "debug")
        // (A relay keeps forwarded ciphertext `storage.relay_keep_secs`,
        // 600 by default: here it empties it within a second.)
        .env("CERTFED__STORAGE__RELAY_KEEP_SECS", "0")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let a = fed.start(0).await;
    let c = fed.start(2).await;

    let marker = format!("ZX{}Q", uuid::Uuid::now_v7().simple());
    let mut op_a = fed.operator(0).await;
    let id = op_a
        .publish_alert(PublishAlertRequest {
            alert: Some(red_alert(&marker)),
            recipients: vec!["node-c".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;

    // c reads it, through b.
    let op_c = fed.operator(2).await;
    let ok = arrives(&fed, 2, &id, Duration::from_secs(20)).await;
    assert!(ok, "c never received the RED alert");
    let m = op_c
        .clone()
        .get_message(GetMessageRequest {
            message_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let alert = m.alert.unwrap();
    assert!(alert.description.contains(&marker));
    let path: Vec<_> = m.path.iter().map(|h| h.node_id.as_str()).collect();
    assert_eq!(path, ["node-a", "node-b"]);
    // The origin can read its own message too.
    let mine = op_a
        .get_message(GetMessageRequest {
            message_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(mine.alert.unwrap().title.contains(&marker));

    // c's signed receipt travels back through b: the origin sees c delivered,
    // while b (not a recipient) sent none.
    let ok = eventually(Duration::from_secs(10), || {
        let mut op_a = op_a.clone();
        let id = id.clone();
        async move {
            let d = op_a
                .get_delivery_status(GetDeliveryStatusRequest { message_id: id })
                .await
                .unwrap()
                .into_inner();
            d.recipients
                .iter()
                .any(|r| r.node_id == "node-c" && r.state == DeliveryState::Delivered as i32)
        }
    })
    .await;
    assert!(ok, "c's receipt never reached the origin");

    // b relayed it but cannot read it.
    let mut op_b = fed.operator(1).await;
    let list = op_b
        .list_alerts(ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        list.alerts.is_empty(),
        "b must not list what it cannot read"
    );
    let err = op_b
        .get_message(GetMessageRequest {
            message_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("end-to-end encrypted"));
    let err = op_b
        .acknowledge_message(AcknowledgeMessageRequest {
            message_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // a sees b delivered; b's outbox to c drains.
    let ok = eventually(Duration::from_secs(10), || {
        let mut op_b = op_b.clone();
        async move {
            let p = op_b
                .list_peers(ListPeersRequest::default())
                .await
                .unwrap()
                .into_inner();
            p.peers.iter().all(|p| p.outbox_depth == 0)
        }
    })
    .await;
    assert!(ok);
    // b empties the ciphertext once its peers have it (and its grace, 0 here,
    // has passed).
    let b_db = fed.data_dir(1).join("certfed.db");
    let emptied = eventually(Duration::from_secs(15), || {
        let b_db = b_db.clone();
        let id = id.clone();
        async move {
            let conn = rusqlite::Connection::open_with_flags(
                &b_db,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            conn.query_row(
                "SELECT length(payload) FROM messages WHERE message_id = ?1",
                [&id],
                |r| r.get::<_, i64>(0),
            )
            .is_ok_and(|n| n == 0)
        }
    })
    .await;
    assert!(emptied, "b keeps the forwarded ciphertext");

    // Stop b cleanly (checkpoints the WAL into the database file), then search
    // everything b wrote for the marker.
    Command::new("kill")
        .args(["-TERM", &b.id().to_string()])
        .status()
        .unwrap();
    assert!(b.wait().unwrap().success());
    let b_dir = fed.data_dir(1);
    assert!(b_dir.join("certfed.db").exists());
    assert_eq!(
        files_containing(&b_dir, marker.as_bytes()),
        Vec::<String>::new()
    );
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logs.contains("DEBUG") || logs.contains("INFO"),
        "b logged something"
    );
    assert!(!logs.contains(&marker), "b's logs hold the plaintext");
    // And b kept no ciphertext once it had forwarded it.
    let conn = rusqlite::Connection::open(b_dir.join("certfed.db")).unwrap();
    let (len, readable): (i64, bool) = conn
        .query_row(
            "SELECT length(payload), readable FROM messages WHERE message_id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (len, readable),
        (0, false),
        "relay purges forwarded ciphertext"
    );
    // The marker is in c's store (control: the search works).
    c.shutdown().await.unwrap();
    assert!(!files_containing(&fed.data_dir(2), marker.as_bytes()).is_empty());
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_relay_link_carries_only_traffic_for_its_peer() {
    // b's link to c has relay = false: no transit for third parties over it.
    let fed = Fed::line().sqlite();
    let a = fed.start(0).await;
    let cfg_b = fed.config_path(1);
    let c_port = fed.specs[2].port;
    let s = std::fs::read_to_string(&cfg_b).unwrap().replace(
        &format!("endpoint = \"127.0.0.1:{c_port}\"\n"),
        &format!("endpoint = \"127.0.0.1:{c_port}\"\nrelay = false\n"),
    );
    std::fs::write(&cfg_b, &s).unwrap();
    let cfg = certfed::config::Config::load(&cfg_b).unwrap();
    let b = certfed::app::start(certfed::app::prepare(cfg).unwrap())
        .await
        .unwrap();
    let c = fed.start(2).await;
    let mut op_a = fed.operator(0).await;
    let broadcast = op_a
        .publish_alert(PublishAlertRequest {
            alert: Some(green_alert("a's broadcast")),
            recipients: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    let for_c = op_a
        .publish_alert(PublishAlertRequest {
            alert: Some(red_alert("FORC")),
            recipients: vec!["node-c".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    let mut op_b = fed.operator(1).await;
    let own = op_b
        .publish_alert(PublishAlertRequest {
            alert: Some(green_alert("b's own")),
            recipients: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    let op_c = fed.operator(2).await;
    for id in [&own, &for_c] {
        let ok = arrives(&fed, 2, id, Duration::from_secs(10)).await;
        assert!(
            ok,
            "{id} is for c (b's own broadcast, or addressed to c) and must arrive"
        );
    }
    // The RED alert left a after the broadcast and b sends to c in arrival order:
    // had b queued the broadcast for c, c would have it by now.
    assert!(
        op_b.get_message(GetMessageRequest {
            message_id: broadcast.clone()
        })
        .await
        .is_ok()
    );
    let err = op_c
        .clone()
        .get_message(GetMessageRequest {
            message_id: broadcast,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::NotFound,
        "relay = false holds a's broadcast back at b"
    );
    for n in [a, b, c] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_capped_at_green_never_receives_amber() {
    // a may send b nothing above TLP:GREEN, even addressed to b.
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let cfg_a = fed.config_path(0);
    let b_port = fed.specs[1].port;
    let s = std::fs::read_to_string(&cfg_a).unwrap().replace(
        &format!("endpoint = \"127.0.0.1:{b_port}\"\n"),
        &format!("endpoint = \"127.0.0.1:{b_port}\"\nmax_tlp = \"green\"\n"),
    );
    std::fs::write(&cfg_a, &s).unwrap();
    let cfg = certfed::config::Config::load(&cfg_a).unwrap();
    let a = certfed::app::start(certfed::app::prepare(cfg).unwrap())
        .await
        .unwrap();
    let b = fed.start(1).await;
    let mut op_a = fed.operator(0).await;
    let mut amber = green_alert("capped");
    amber.tlp = Tlp::Amber as i32;
    let amber_id = op_a
        .publish_alert(PublishAlertRequest {
            alert: Some(amber),
            recipients: vec!["node-b".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    let green_id = op_a
        .publish_alert(PublishAlertRequest {
            alert: Some(green_alert("allowed")),
            recipients: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    let op_b = fed.operator(1).await;
    let ok = arrives(&fed, 1, &green_id, Duration::from_secs(10)).await;
    assert!(ok, "GREEN passes the cap");
    let err = op_b
        .clone()
        .get_message(GetMessageRequest {
            message_id: amber_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::NotFound,
        "AMBER must never reach b"
    );
    let d = op_a
        .get_delivery_status(GetDeliveryStatusRequest {
            message_id: amber_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        d.recipients
            .iter()
            .all(|r| r.state != DeliveryState::Delivered as i32)
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
