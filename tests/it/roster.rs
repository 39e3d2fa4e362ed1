//! The signed federation roster on real nodes: a ring of five nodes started
//! from roster v1 (stewards 2-of-3, made and signed with the `certfed roster`
//! tools as real processes), then
//! - v2 adds a sixth member: published on one node, it floods to every node,
//!   which then links to the newcomer and accept its messages, without any
//!   configuration edit or restart;
//! - hostile rosters (a rollback, one steward's signature only, a fork, bytes
//!   that do not decode) are refused with their reason and never applied;
//! - v3 removes a member: every node drops it from its peers (links closed
//!   both ways) and its messages are refused with "not in roster v3";
//! - v4 rotates a member's key: messages its old key signs after the
//!   rotation are refused, those signed before and the new key's are kept;
//! - every hostile roster (too few signatures, a non-steward's, a lower
//!   version, a fork, stewards replaced without the old quorum, bytes that do
//!   not decode, too large) reaches EVERY node as a roster message from a
//!   peer, over the Federation API, and is refused and counted by each.
use crate::common::*;
use certfed::proto::v1::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_certfed");
const WAIT: Duration = Duration::from_secs(60);

pub(crate) fn certfed(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .current_dir(dir)
        .env("RUST_LOG", "error")
        .args(args)
        .output()
        .expect("run certfed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "certfed {args:?} failed: {text}");
    text
}

fn certfed_fails(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .current_dir(dir)
        .env("RUST_LOG", "error")
        .args(args)
        .output()
        .expect("run certfed");
    assert!(!out.status.success(), "certfed {args:?} should fail");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Node `i`'s configuration: no [[members]], the roster file instead.
fn roster_config(fed: &Fed, i: usize) {
    let spec = &fed.specs[i];
    let path = write_config(&fed.pki, spec, &[], &fed.data_dir(i));
    let mut s = std::fs::read_to_string(&path).unwrap();
    s.push_str("\n[roster]\nfile = \"roster-v1.roster\"\n");
    std::fs::write(&path, s).unwrap();
}

pub(crate) async fn start(fed: &Fed, i: usize) -> certfed::app::RunningNode {
    roster_config(fed, i);
    let cfg =
        certfed::config::Config::load(&fed.pki.path(&format!("{}.toml", fed.specs[i].id))).unwrap();
    certfed::app::start(certfed::app::prepare(cfg).unwrap())
        .await
        .expect("node starts")
}

pub(crate) async fn roster_version(fed: &Fed, i: usize) -> u64 {
    let mut op = fed.operator(i).await;
    op.get_roster(GetRosterRequest {})
        .await
        .map(|r| r.into_inner().version)
        .unwrap_or(0)
}

async fn peer_ids(fed: &Fed, i: usize) -> Vec<String> {
    let mut op = fed.operator(i).await;
    op.list_peers(ListPeersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .peers
        .into_iter()
        .map(|p| p.peer_id)
        .collect()
}

async fn publish(fed: &Fed, i: usize, file: &Path) -> Result<PublishRosterResponse, tonic::Status> {
    let text = std::fs::read_to_string(file).unwrap();
    let bytes = certfed::domain::roster::dearmor(&text).unwrap();
    let mut op = fed.operator(i).await;
    op.publish_roster(PublishRosterRequest {
        signed_roster: bytes,
    })
    .await
    .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_and_leave_by_signed_roster_without_restart() {
    // node-a..node-e in a ring; node-f (the newcomer) peers with node-a, and
    // node-a lists it as a peer from the start (it waits for the roster).
    let ids = ["node-a", "node-b", "node-c", "node-d", "node-e", "node-f"];
    let fed = Fed::new(&ids, &[(0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (0, 5)]);
    let dir = fed.pki.dir.path();
    for s in ["s1", "s2", "s3"] {
        certfed(dir, &["pki", "signing-key", "--id", s]);
    }
    // v1: five members, stewards 2-of-3, signed by s1 and s2.
    certfed(
        dir,
        &[
            "roster",
            "init",
            "--out",
            "roster-v1.roster",
            "--federation",
            "test-fed",
            "--steward",
            "s1=s1.sign.pub",
            "--steward",
            "s2=s2.sign.pub",
            "--steward",
            "s3=s3.sign.pub",
            "--threshold",
            "2",
        ],
    );
    for id in &ids[..5] {
        certfed(
            dir,
            &[
                "roster",
                "add-member",
                "roster-v1.roster",
                "--id",
                id,
                "--signing-key",
                &format!("{id}.sign.pub"),
                "--tls-ca",
                "ca.crt",
                "--display-name",
                &format!("CERT {id}"),
            ],
        );
    }
    let unsigned = certfed_fails(dir, &["roster", "verify", "roster-v1.roster"]);
    assert!(unsigned.contains("too_few_signatures"), "{unsigned}");
    certfed(
        dir,
        &["roster", "sign", "roster-v1.roster", "--key", "s1.sign.key"],
    );
    certfed(
        dir,
        &["roster", "sign", "roster-v1.roster", "--key", "s2.sign.key"],
    );
    let ok = certfed(dir, &["roster", "verify", "roster-v1.roster"]);
    assert!(ok.contains("VALID"), "{ok}");

    let mut nodes = Vec::new();
    for i in 0..6 {
        nodes.push(start(&fed, i).await);
    }
    for i in 0..6 {
        assert_eq!(roster_version(&fed, i).await, 1, "node {i} starts from v1");
    }
    assert!(
        !peer_ids(&fed, 0).await.contains(&"node-f".to_string()),
        "node-f is not in v1: node-a does not link to it"
    );

    // v2: node-f joins. Made offline from v1, signed by s2 and s3, published on node-c.
    certfed(
        dir,
        &[
            "roster",
            "init",
            "--from",
            "roster-v1.roster",
            "--out",
            "roster-v2.roster",
        ],
    );
    certfed(
        dir,
        &[
            "roster",
            "add-member",
            "roster-v2.roster",
            "--id",
            "node-f",
            "--signing-key",
            "node-f.sign.pub",
            "--tls-ca",
            "ca.crt",
            "--display-name",
            "CERT node-f",
        ],
    );
    certfed(
        dir,
        &["roster", "sign", "roster-v2.roster", "--key", "s2.sign.key"],
    );
    certfed(
        dir,
        &["roster", "sign", "roster-v2.roster", "--key", "s3.sign.key"],
    );
    let diff = certfed(
        dir,
        &[
            "roster",
            "verify",
            "roster-v2.roster",
            "--current",
            "roster-v1.roster",
        ],
    );
    assert!(diff.contains("+ member node-f"), "{diff}");
    let r = publish(&fed, 2, &dir.join("roster-v2.roster"))
        .await
        .unwrap();
    assert_eq!(r.version, 2);
    assert!(
        r.changes.iter().any(|c| c.contains("+ member node-f")),
        "{r:?}"
    );
    for i in 0..6 {
        assert!(
            eventually(WAIT, || async { roster_version(&fed, i).await == 2 }).await,
            "node {i} applies v2 from the flood"
        );
    }
    // `certfed roster show` (a real client process) prints it and saves it.
    let addr = fed.addr(4);
    let shown = certfed(
        dir,
        &[
            "roster",
            "show",
            "--node",
            &addr,
            "--ca",
            "ca.crt",
            "--cert",
            "operator.crt",
            "--key",
            "operator.key",
            "--out",
            "held.roster",
        ],
    );
    assert!(shown.contains("version     2"), "{shown}");
    assert!(shown.contains("+ member node-f"), "{shown}");
    let same = certfed(
        dir,
        &[
            "roster",
            "verify",
            "held.roster",
            "--current",
            "roster-v2.roster",
        ],
    );
    assert!(same.contains("it is the current roster itself"), "{same}");
    // ListPeers shows every peer on v2 (none behind), learnt from the flood.
    for i in [0, 2] {
        let all_current = eventually(WAIT, || async {
            let mut op = fed.operator(i).await;
            let peers = op
                .list_peers(ListPeersRequest::default())
                .await
                .unwrap()
                .into_inner()
                .peers;
            peers
                .iter()
                .all(|p| p.roster_version == 2 && !p.roster_behind)
        })
        .await;
        assert!(all_current, "node {i} sees its peers on v2");
    }
    let view = fed
        .operator(4)
        .await
        .get_roster(GetRosterRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.previous_version, 1);
    assert!(
        view.changes.iter().any(|c| c.contains("+ member node-f")),
        "{view:?}"
    );
    assert!(view.signed_by.contains(&"s2".to_string()), "{view:?}");
    // The newcomer's broadcast reaches the far side of the ring.
    let from_f = publish_on(&fed, 5, green_alert("from the newcomer"), &[]).await;
    for i in 1..5 {
        assert!(
            arrives(&fed, i, &from_f, WAIT).await,
            "node {i} accepts node-f's alert"
        );
    }

    // Hostile rosters, each refused with its reason, never applied.
    let e = publish(&fed, 1, &dir.join("roster-v1.roster"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("older"), "{e:?}");
    certfed(
        dir,
        &[
            "roster",
            "init",
            "--from",
            "roster-v2.roster",
            "--out",
            "one-sig.roster",
        ],
    );
    certfed(
        dir,
        &[
            "roster",
            "remove-member",
            "one-sig.roster",
            "--id",
            "node-d",
        ],
    );
    certfed(
        dir,
        &["roster", "sign", "one-sig.roster", "--key", "s1.sign.key"],
    );
    let e = publish(&fed, 1, &dir.join("one-sig.roster"))
        .await
        .unwrap_err();
    assert!(e.message().contains("2 are needed"), "{e:?}");
    // A fork: another v2, properly signed by two stewards.
    certfed(
        dir,
        &[
            "roster",
            "init",
            "--from",
            "roster-v1.roster",
            "--out",
            "fork.roster",
        ],
    );
    certfed(
        dir,
        &["roster", "remove-member", "fork.roster", "--id", "node-e"],
    );
    certfed(
        dir,
        &["roster", "sign", "fork.roster", "--key", "s1.sign.key"],
    );
    certfed(
        dir,
        &["roster", "sign", "fork.roster", "--key", "s3.sign.key"],
    );
    let e = publish(&fed, 3, &dir.join("fork.roster"))
        .await
        .unwrap_err();
    assert!(e.message().contains("FORK"), "{e:?}");
    let mut op = fed.operator(0).await;
    let e = op
        .publish_roster(PublishRosterRequest {
            signed_roster: b"not a roster".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    for i in 0..6 {
        assert_eq!(roster_version(&fed, i).await, 2, "node {i} still holds v2");
    }

    // v3: node-b leaves.
    certfed(
        dir,
        &[
            "roster",
            "init",
            "--from",
            "roster-v2.roster",
            "--out",
            "roster-v3.roster",
        ],
    );
    certfed(
        dir,
        &[
            "roster",
            "remove-member",
            "roster-v3.roster",
            "--id",
            "node-b",
        ],
    );
    certfed(
        dir,
        &["roster", "sign", "roster-v3.roster", "--key", "s1.sign.key"],
    );
    certfed(
        dir,
        &["roster", "sign", "roster-v3.roster", "--key", "s3.sign.key"],
    );
    publish(&fed, 0, &dir.join("roster-v3.roster"))
        .await
        .unwrap();
    for i in [0, 2, 3, 4, 5] {
        assert!(
            eventually(WAIT, || async { roster_version(&fed, i).await == 3 }).await,
            "node {i} applies v3"
        );
    }
    for i in [0, 2] {
        assert!(
            eventually(WAIT, || async {
                !peer_ids(&fed, i).await.contains(&"node-b".to_string())
            })
            .await,
            "node {i} closes its link to node-b"
        );
    }
    // node-b's messages are refused "not in roster v3" (node-b applied v3 too,
    // over its own link before it closed, or it is cut off: either way nothing
    // it signs now is accepted anywhere).
    let mut op_b = fed.operator(1).await;
    let sent = op_b
        .publish_alert(PublishAlertRequest {
            alert: Some(green_alert("from the departed member")),
            ..Default::default()
        })
        .await;
    if let Ok(r) = sent {
        let id = r.into_inner().message_id;
        tokio::time::sleep(Duration::from_secs(3)).await;
        for i in [0, 2, 3, 4, 5] {
            assert!(
                !holds(&fed, i, &id).await,
                "node {i} refuses node-b's alert"
            );
        }
    } else {
        let e = sent.unwrap_err();
        assert!(e.message().contains("not in roster v3"), "{e:?}");
    }
    // A message node-b signed, handed to node-a as if relayed by node-c, is
    // refused for good, with the reason.
    let pem = std::fs::read_to_string(dir.join("node-b.sign.key")).unwrap();
    let signer = certfed::domain::keys::Signer::from_pkcs8_pem("node-b", &pem).unwrap();
    let env = certfed::domain::envelope::seal(
        &signer,
        certfed::domain::envelope::Draft {
            message_id: uuid::Uuid::now_v7().to_string(),
            kind: MessageKind::Alert,
            tlp: Tlp::Green,
            recipients: vec![],
            created_ms: certfed::service::now_ms(),
            expires_ms: None,
            hop_limit: 8,
            exercise: false,
            encrypted: false,
            payload: prost::Message::encode_to_vec(&green_alert("signed by node-b")),
        },
    );
    let got = certfed::service::ingest::ingest(&nodes[0].node, Some("node-c"), vec![env], vec![])
        .await
        .unwrap();
    match &got[0] {
        certfed::service::ingest::Ingested::Rejected(r) => {
            assert!(r.to_string().contains("node-b is not in roster v3"), "{r}")
        }
        other => panic!("node-b's message must be refused for good: {other:?}"),
    }
    // v4 rotates node-c's key: its old key signs nothing created from now on.
    certfed(dir, &["pki", "signing-key", "--id", "node-c-new"]);
    certfed(
        dir,
        &[
            "roster",
            "init",
            "--from",
            "roster-v3.roster",
            "--out",
            "roster-v4.roster",
        ],
    );
    certfed(
        dir,
        &[
            "roster",
            "rotate-key",
            "roster-v4.roster",
            "--id",
            "node-c",
            "--new-key",
            "node-c-new.sign.pub",
            "--old-valid-hours",
            "0",
        ],
    );
    certfed(
        dir,
        &["roster", "sign", "roster-v4.roster", "--key", "s2.sign.key"],
    );
    certfed(
        dir,
        &["roster", "sign", "roster-v4.roster", "--key", "s3.sign.key"],
    );
    publish(&fed, 3, &dir.join("roster-v4.roster"))
        .await
        .unwrap();
    assert!(
        eventually(WAIT, || async { roster_version(&fed, 0).await == 4 }).await,
        "node-a applies v4"
    );
    let signed_by = |key: &str, created_ms: i64| {
        let pem = std::fs::read_to_string(dir.join(key)).unwrap();
        let signer = certfed::domain::keys::Signer::from_pkcs8_pem("node-c", &pem).unwrap();
        certfed::domain::envelope::seal(
            &signer,
            certfed::app::bench::alert_draft(&green_alert("rotation"), created_ms),
        )
    };
    let now = certfed::service::now_ms();
    let envs = vec![
        signed_by("node-c.sign.key", now + 2_000),
        signed_by("node-c.sign.key", now - 600_000),
        signed_by("node-c-new.sign.key", now + 2_000),
    ];
    let got = certfed::service::ingest::ingest(&nodes[0].node, Some("node-c"), envs, vec![])
        .await
        .unwrap();
    use certfed::service::ingest::Ingested;
    match &got[0] {
        Ingested::Rejected(r) => assert!(r.to_string().contains("was valid until"), "{r}"),
        other => panic!("the old key's later message must be refused: {other:?}"),
    }
    assert!(
        matches!(got[1], Ingested::New(_)),
        "signed before the rotation: kept {:?}",
        got[1]
    );
    assert!(
        matches!(got[2], Ingested::New(_)),
        "the new key is trusted {:?}",
        got[2]
    );

    let metrics = nodes[0].node.metrics.encode();
    assert!(metrics.contains("certfed_roster_version 4"), "{metrics}");
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

/// A certificate for member X issued by a CA the roster lists for another
/// member (here: the shared CA, listed for node-a and node-b, while the
/// roster says node-c's certificates come from node-c's own CA) is refused
/// right after the handshake, in both directions, before any RPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_members_ca_is_refused_at_the_handshake() {
    let ids = ["node-a", "node-b", "node-c"];
    let fed = Fed::new(&ids, &[(0, 1), (1, 2)]);
    let dir = fed.pki.dir.path();
    certfed(
        dir,
        &["pki", "ca", "--out-dir", "ca-c", "--name", "CA of node-c"],
    );
    for s in ["s1", "s2"] {
        certfed(dir, &["pki", "signing-key", "--id", s]);
    }
    certfed(
        dir,
        &[
            "roster",
            "init",
            "--out",
            "roster-v1.roster",
            "--federation",
            "test-fed",
            "--steward",
            "s1=s1.sign.pub",
            "--steward",
            "s2=s2.sign.pub",
            "--threshold",
            "2",
        ],
    );
    for id in ids {
        let ca = if id == "node-c" {
            "ca-c/ca.crt"
        } else {
            "ca.crt"
        };
        certfed(
            dir,
            &[
                "roster",
                "add-member",
                "roster-v1.roster",
                "--id",
                id,
                "--signing-key",
                &format!("{id}.sign.pub"),
                "--tls-ca",
                ca,
            ],
        );
    }
    certfed(
        dir,
        &["roster", "sign", "roster-v1.roster", "--key", "s1.sign.key"],
    );
    certfed(
        dir,
        &["roster", "sign", "roster-v1.roster", "--key", "s2.sign.key"],
    );
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(start(&fed, i).await);
    }
    // node-a and node-b link; node-b refuses node-c's certificate (issued by
    // the CA the roster lists for node-a and node-b, not by node-c's).
    let from_a = publish_on(&fed, 0, green_alert("from node-a"), &[]).await;
    assert!(
        arrives(&fed, 1, &from_a, WAIT).await,
        "node-a to node-b works"
    );
    let refused = eventually(WAIT, || async {
        let mut op = fed.operator(1).await;
        let peers = op
            .list_peers(ListPeersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .peers;
        peers.iter().any(|p| {
            p.peer_id == "node-c"
                && p.state != LinkState::Up as i32
                && p.last_error.contains("cannot vouch for node-c")
        })
    })
    .await;
    let mut op = fed.operator(1).await;
    let peers = op
        .list_peers(ListPeersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .peers;
    assert!(refused, "node-b refuses node-c's certificate: {peers:?}");
    // node-c's own operator API refuses an operator certificate of the
    // shared CA too: the roster says node-c's certificates come from ca-c.
    let mut op_c = fed.operator(2).await;
    assert!(
        op_c.get_node_info(GetNodeInfoRequest {}).await.is_err(),
        "an operator certificate from another member's CA is refused on node-c"
    );
    let (from_c, _) = certfed::service::ingest::originate(
        &nodes[2].node,
        certfed::service::ingest::Outgoing {
            kind: MessageKind::Alert,
            tlp: Tlp::Green,
            recipients: vec![],
            expires_ms: None,
            exercise: false,
            created_ms: None,
            payload: prost::Message::encode_to_vec(&green_alert("from node-c")),
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!holds(&fed, 1, &from_c).await, "nothing from node-c passes");
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

/// `certfed roster init --from FROM --out OUT`, the edits (each the arguments
/// after `roster`, with OUT appended after the subcommand), then a signature
/// by each key in `signers`.
fn next_roster(dir: &Path, from: &str, out: &str, edits: &[&[&str]], signers: &[&str]) {
    certfed(dir, &["roster", "init", "--from", from, "--out", out]);
    for e in edits {
        let mut args = vec!["roster", e[0], out];
        args.extend_from_slice(&e[1..]);
        certfed(dir, &args);
    }
    for s in signers {
        let key = format!("{s}.sign.key");
        certfed(dir, &["roster", "sign", out, "--key", &key]);
    }
}

/// Roster v1 for `ids` (all vouched for by the test CA), stewards s1..s3
/// 2-of-3, signed by s1 and s2, in `roster-v1.roster`.
fn roster_v1(dir: &Path, ids: &[&str]) {
    for s in ["s1", "s2", "s3"] {
        certfed(dir, &["pki", "signing-key", "--id", s]);
    }
    certfed(
        dir,
        &[
            "roster",
            "init",
            "--out",
            "roster-v1.roster",
            "--federation",
            "test-fed",
            "--steward",
            "s1=s1.sign.pub",
            "--steward",
            "s2=s2.sign.pub",
            "--steward",
            "s3=s3.sign.pub",
            "--threshold",
            "2",
        ],
    );
    for id in ids {
        let key = format!("{id}.sign.pub");
        certfed(
            dir,
            &[
                "roster",
                "add-member",
                "roster-v1.roster",
                "--id",
                id,
                "--signing-key",
                &key,
                "--tls-ca",
                "ca.crt",
            ],
        );
    }
    for s in ["s1", "s2"] {
        let key = format!("{s}.sign.key");
        certfed(dir, &["roster", "sign", "roster-v1.roster", "--key", &key]);
    }
}

/// The SignedRoster bytes of an armored roster file.
fn roster_bytes(dir: &Path, file: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    certfed::domain::roster::dearmor(&text).unwrap()
}

/// A ROSTER message carrying `bytes`, signed by member `by` (as a member
/// that floods it would sign it).
fn roster_message(fed: &Fed, by: &str, bytes: Vec<u8>) -> SignedEnvelope {
    let pem = std::fs::read_to_string(fed.pki.path(&format!("{by}.sign.key"))).unwrap();
    let signer = certfed::domain::keys::Signer::from_pkcs8_pem(by, &pem).unwrap();
    certfed::domain::envelope::seal(
        &signer,
        certfed::domain::envelope::Draft {
            message_id: uuid::Uuid::now_v7().to_string(),
            kind: MessageKind::Roster,
            tlp: Tlp::Clear,
            recipients: vec![],
            created_ms: certfed::service::now_ms(),
            expires_ms: None,
            hop_limit: 8,
            exercise: false,
            encrypted: false,
            payload: bytes,
        },
    )
}

/// Pushes `env` to node `to` over the Federation API as node `from` (its own
/// certificate, real mutual TLS), the way a flooding peer hands it on;
/// returns the node's answer.
async fn push_as(fed: &Fed, from: usize, to: usize, env: SignedEnvelope) -> PushAck {
    let name = fed.specs[from].id.clone();
    let mut c = federation_client(&fed.pki, &fed.addr(to), &name, None).await;
    let frame = PushFrame {
        seq: 1,
        envelope: Some(env),
        ..Default::default()
    };
    let mut acks = c
        .push(tokio_stream::iter(vec![frame]))
        .await
        .expect("push stream opens")
        .into_inner();
    tokio::time::timeout(WAIT, acks.message())
        .await
        .expect("an answer in time")
        .expect("a well-formed answer")
        .expect("one ack")
}

/// The value of `certfed_roster_refused_total{reason="<label>"}` on a node.
fn refused_count(node: &certfed::app::RunningNode, label: &str) -> u64 {
    let text = node.node.metrics.encode();
    let key = format!("certfed_roster_refused_total{{reason=\"{label}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Each hostile roster, handed to EVERY node of a five-node ring as a roster
/// message from one of its peers (a compromised member flooding it: signed
/// with the member's key, sent over the member's own mutual-TLS link), is
/// refused by every node with its reason, counted under that reason in
/// `certfed_roster_refused_total`, and never applied: every node keeps v2.
/// A node that refuses a roster does not relay it either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hostile_roster_is_refused_on_every_node() {
    let ids = ["node-a", "node-b", "node-c", "node-d", "node-e"];
    let fed = Fed::new(&ids, &[(0, 1), (1, 2), (2, 3), (3, 4), (4, 0)]);
    let dir = fed.pki.dir.path();
    roster_v1(dir, &ids);
    certfed(dir, &["pki", "signing-key", "--id", "x1"]);
    certfed(dir, &["pki", "signing-key", "--id", "x2"]);
    let mut nodes = Vec::new();
    for i in 0..5 {
        nodes.push(start(&fed, i).await);
    }
    // v2, legitimately flooded (so "older" and "fork" have a held v2 to hit).
    next_roster(
        dir,
        "roster-v1.roster",
        "roster-v2.roster",
        &[],
        &["s1", "s3"],
    );
    publish(&fed, 0, &dir.join("roster-v2.roster"))
        .await
        .unwrap();
    for i in 0..5 {
        assert!(
            eventually(WAIT, || async { roster_version(&fed, i).await == 2 }).await,
            "node {i} applies v2 from the flood"
        );
    }

    // The hostile rosters, each with the refusal label every node must count.
    let e3 = [
        "add-member",
        "--id",
        "node-x",
        "--signing-key",
        "x1.sign.pub",
        "--tls-ca",
        "ca.crt",
    ];
    next_roster(dir, "roster-v2.roster", "one-sig.roster", &[&e3], &["s1"]);
    next_roster(
        dir,
        "roster-v2.roster",
        "non-steward.roster",
        &[&e3],
        &["s1", "x1"],
    );
    next_roster(
        dir,
        "roster-v1.roster",
        "fork.roster",
        &[&["remove-member", "--id", "node-d"]],
        &["s2", "s3"],
    );
    next_roster(
        dir,
        "roster-v2.roster",
        "new-stewards.roster",
        &[&[
            "set-stewards",
            "--steward",
            "x1=x1.sign.pub",
            "--steward",
            "x2=x2.sign.pub",
            "--threshold",
            "2",
        ]],
        &["x1", "x2"],
    );
    let mut too_large = roster_bytes(dir, "roster-v2.roster");
    too_large.resize(certfed::domain::roster::MAX_ROSTER_BYTES + 1, 0);
    let hostile: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "one steward's signature",
            roster_bytes(dir, "one-sig.roster"),
            "too_few_signatures",
        ),
        (
            "a non-steward's signature",
            roster_bytes(dir, "non-steward.roster"),
            "non_steward_signature",
        ),
        (
            "a lower version",
            roster_bytes(dir, "roster-v1.roster"),
            "rollback",
        ),
        ("a fork of v2", roster_bytes(dir, "fork.roster"), "fork"),
        (
            "stewards replaced without the old quorum",
            roster_bytes(dir, "new-stewards.roster"),
            "too_few_signatures",
        ),
        (
            "bytes that do not decode",
            b"not a roster".to_vec(),
            "malformed",
        ),
        ("one byte too large", too_large, "oversized"),
    ];
    for (what, bytes, label) in hostile {
        let before: Vec<u64> = nodes.iter().map(|n| refused_count(n, label)).collect();
        let forks_before: Vec<String> = nodes
            .iter()
            .map(|n| forks_line(&n.node.metrics.encode()))
            .collect();
        for to in 0..5 {
            // From its ring neighbour, as a flood would bring it.
            let from = (to + 1) % 5;
            let env = roster_message(&fed, ids[from], bytes.clone());
            let ack = push_as(&fed, from, to, env).await;
            assert_eq!(
                ack.outcome,
                PushOutcome::Rejected as i32,
                "{what}: node {to} refuses it for good: {ack:?}"
            );
            assert!(ack.reason.contains("roster"), "{what}: {ack:?}");
        }
        for (i, n) in nodes.iter().enumerate() {
            assert_eq!(
                refused_count(n, label),
                before[i] + 1,
                "{what}: node {i} counts one refusal under {label}"
            );
            assert_eq!(
                roster_version(&fed, i).await,
                2,
                "{what}: node {i} keeps v2"
            );
            if label == "fork" {
                assert_ne!(
                    forks_line(&n.node.metrics.encode()),
                    forks_before[i],
                    "a fork is an alarm on node {i}"
                );
            }
        }
    }
    // Nothing hostile was stored, so nothing hostile is relayed: one more
    // second for a relay to show, then every count is still one per node.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(refused_count(n, "malformed"), 1, "node {i} got it once");
        assert_eq!(refused_count(n, "too_few_signatures"), 2, "node {i}");
    }
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

fn forks_line(metrics: &str) -> String {
    metrics
        .lines()
        .find(|l| l.starts_with("certfed_roster_forks_total"))
        .unwrap_or_default()
        .to_string()
}

/// Sum of a counter family (every label) in a node's metrics.
fn counter_sum(node: &certfed::app::RunningNode, family: &str) -> u64 {
    let prefix = format!("{family}{{");
    node.node
        .metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn node_info(fed: &Fed, i: usize) -> NodeInfo {
    fed.operator(i)
        .await
        .get_node_info(GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Rewrites node `i`'s configuration: `node.signing_key` and
/// `node.next_signing_key` (None: not set).
fn set_signing_keys(fed: &Fed, i: usize, current: &str, next: Option<&str>) {
    let path = fed.pki.path(&format!("{}.toml", fed.specs[i].id));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("next_signing_key =") {
            continue;
        }
        if line.starts_with("signing_key =") {
            out.push_str(&format!("signing_key = \"{current}\"\n"));
            if let Some(n) = next {
                out.push_str(&format!("next_signing_key = \"{n}\"\n"));
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    std::fs::write(&path, out).unwrap();
}

/// A running node's signing key rotates without a restart: node-c's operator
/// names the new key in `node.next_signing_key` and reloads (SIGHUP's path);
/// the stewards publish v2, which lists the new key for node-c and keeps
/// the old one valid for messages created in the next 30 s. While node-c
/// publishes a stream of alerts, every node applies v2 and node-c switches
/// keys the moment it applies it. Every alert of the stream is then held
/// by every node, none refused; a message the old key signs after its
/// period is refused; no node restarted. A reload naming a key the roster
/// does not list as `node.signing_key` is refused, the running key kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_node_switches_signing_keys_when_the_roster_rotates_them() {
    use certfed::domain::roster::{armor, draft};
    use prost::Message;
    let ids = ["node-a", "node-b", "node-c", "node-d", "node-e"];
    let fed = Fed::new(&ids, &[(0, 1), (1, 2), (2, 3), (3, 4), (4, 0)]);
    let dir = fed.pki.dir.path();
    roster_v1(dir, &ids);
    certfed(dir, &["pki", "signing-key", "--id", "node-c-new"]);
    let mut nodes = Vec::new();
    for i in 0..5 {
        nodes.push(start(&fed, i).await);
    }
    let started: Vec<_> = {
        let mut v = Vec::new();
        for i in 0..5 {
            v.push(node_info(&fed, i).await.started);
        }
        v
    };
    let old_id = node_info(&fed, 2).await.signing_key_id;
    let new_vk = certfed::domain::keys::public_from_pem(
        &std::fs::read_to_string(dir.join("node-c-new.sign.pub")).unwrap(),
    )
    .unwrap();
    let new_id = certfed::domain::keys::key_id(&new_vk);
    let cfg_c = fed.pki.path("node-c.toml");
    let old_key = dir.join("node-c.sign.key");
    let old_key = old_key.to_str().unwrap();
    let new_key = dir.join("node-c-new.sign.key");
    let new_key = new_key.to_str().unwrap();

    // Refused: the new key as node.signing_key before any roster lists it.
    set_signing_keys(&fed, 2, new_key, None);
    let e = nodes[2].reload(&cfg_c).unwrap_err().to_string();
    assert!(
        e.contains("is not listed for node-c in roster v1") && e.contains("next_signing_key"),
        "{e}"
    );
    assert_eq!(node_info(&fed, 2).await.signing_key_id, old_id, "kept");
    // The operator's step: the new key as node.next_signing_key, reloaded.
    set_signing_keys(&fed, 2, old_key, Some(new_key));
    nodes[2].reload(&cfg_c).expect("reload with a next key");
    let info = node_info(&fed, 2).await;
    assert_eq!(
        info.signing_key_id, old_id,
        "not listed yet: the old key signs"
    );
    assert_eq!(info.next_signing_key_id, new_id);

    // v2 (made offline): node-c's new key listed; its old key valid for
    // messages created in the next 30 s.
    certfed(
        dir,
        &[
            "roster",
            "init",
            "--from",
            "roster-v1.roster",
            "--out",
            "roster-v2.roster",
        ],
    );
    let until = certfed::service::now_ms() + 30_000;
    let bytes = roster_bytes(dir, "roster-v2.roster");
    let signed = SignedRoster::decode(bytes.as_slice()).unwrap();
    let mut r = Roster::decode(signed.roster.as_slice()).unwrap();
    draft::rotate_key(&mut r, "node-c", &new_vk, until, certfed::service::now_ms()).unwrap();
    std::fs::write(
        dir.join("roster-v2.roster"),
        armor(&draft::unsigned(&r).encode_to_vec()),
    )
    .unwrap();
    for s in ["s1", "s3"] {
        let key = format!("{s}.sign.key");
        certfed(dir, &["roster", "sign", "roster-v2.roster", "--key", &key]);
    }

    // node-c publishes a stream while v2 is published on node-a and floods.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let stream = async {
        let mut sent = Vec::new();
        let mut op = fed.operator(2).await;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let n = sent.len();
            let id = op
                .publish_alert(PublishAlertRequest {
                    alert: Some(green_alert(&format!("stream {n}"))),
                    ..Default::default()
                })
                .await
                .expect("node-c takes every alert of the stream")
                .into_inner()
                .message_id;
            sent.push(id);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sent
    };
    let rotate = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        publish(&fed, 0, &dir.join("roster-v2.roster"))
            .await
            .unwrap();
        let switched = eventually(WAIT, || async {
            node_info(&fed, 2).await.signing_key_id == new_id
        })
        .await;
        let at = certfed::service::now_ms();
        for i in 0..5 {
            assert!(
                eventually(WAIT, || async { roster_version(&fed, i).await == 2 }).await,
                "node {i} applies v2"
            );
        }
        // Keep the stream going on the new key for a while.
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        (switched, at)
    };
    let (sent, (switched, switched_at)) = tokio::join!(stream, rotate);
    assert!(switched, "node-c switches to its new key without a restart");
    assert!(
        switched_at <= until,
        "node-c switched within the old key's grace period (the test needs it)"
    );
    let info = node_info(&fed, 2).await;
    assert!(info.next_signing_key_id.is_empty(), "{info:?}");
    assert!(sent.len() >= 10, "a stream: {} alerts", sent.len());
    for i in 0..5 {
        for id in &sent {
            assert!(arrives(&fed, i, id, WAIT).await, "node {i} holds {id}");
        }
        assert_eq!(
            counter_sum(&nodes[i], "certfed_messages_rejected_total"),
            0,
            "node {i} refused nothing"
        );
        assert_eq!(node_info(&fed, i).await.started, started[i], "no restart");
    }
    // Each alert is held once: node-a lists the stream's alerts once each.
    let listed: Vec<String> = fed
        .operator(0)
        .await
        .list_alerts(ListAlertsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .alerts
        .into_iter()
        .map(|a| a.message_id)
        .filter(|id| sent.contains(id))
        .collect();
    let mut unique = listed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(listed.len(), sent.len(), "every alert listed");
    assert_eq!(unique.len(), sent.len(), "each once");

    // The old key's period ends: what it signs later is refused by node-c's
    // peers (pushed over node-c's own links), for good.
    let wait = (until - certfed::service::now_ms() + 1_000).max(0);
    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    let pem = std::fs::read_to_string(old_key).unwrap();
    let old = certfed::domain::keys::Signer::from_pkcs8_pem("node-c", &pem).unwrap();
    for to in [1, 3] {
        let env = signed_by(&old, "after its period");
        let ack = push_as(&fed, 2, to, env).await;
        assert_eq!(
            ack.outcome,
            PushOutcome::Rejected as i32,
            "node {to}: {ack:?}"
        );
        assert!(ack.reason.contains("was valid until"), "{ack:?}");
    }
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

/// A GREEN alert created now, signed by `signer`.
fn signed_by(signer: &certfed::domain::keys::Signer, title: &str) -> SignedEnvelope {
    certfed::domain::envelope::seal(
        signer,
        certfed::domain::envelope::Draft {
            message_id: uuid::Uuid::now_v7().to_string(),
            kind: MessageKind::Alert,
            tlp: Tlp::Green,
            recipients: vec![],
            created_ms: certfed::service::now_ms(),
            expires_ms: None,
            hop_limit: 8,
            exercise: false,
            encrypted: false,
            payload: prost::Message::encode_to_vec(&green_alert(title)),
        },
    )
}

/// Rewrites node `i`'s `[roster]` or `[[members]]` (and everything after
/// them) with `tail`.
fn set_roster_section(fed: &Fed, i: usize, tail: &str) {
    let path = fed.pki.path(&format!("{}.toml", fed.specs[i].id));
    let text = std::fs::read_to_string(&path).unwrap();
    let end = ["\n[roster]", "\n[[members]]"]
        .iter()
        .filter_map(|m| text.find(m))
        .min()
        .unwrap_or(text.len());
    let head = text[..end].to_string();
    std::fs::write(&path, format!("{head}\n{tail}")).unwrap();
}

/// `[roster]` on reload (SIGHUP's path), no restart: a newer roster.file
/// is checked, applied and flooded to every node; an older one is noted and
/// changes nothing; a file the roster rules refuse (a fork) refuses the
/// reload with the reason, counted, the roster held stays; switching to a
/// static [[members]] list is refused, naming the restart it needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_section_changes_are_picked_up_on_reload() {
    let ids = ["node-a", "node-b", "node-c"];
    let fed = Fed::new(&ids, &[(0, 1), (1, 2)]);
    let dir = fed.pki.dir.path();
    roster_v1(dir, &ids);
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(start(&fed, i).await);
    }
    let cfg_b = fed.pki.path("node-b.toml");
    next_roster(
        dir,
        "roster-v1.roster",
        "roster-v2.roster",
        &[],
        &["s1", "s2"],
    );
    next_roster(
        dir,
        "roster-v1.roster",
        "fork.roster",
        &[&["remove-member", "--id", "node-c"]],
        &["s2", "s3"],
    );
    // Switching to [[members]]: refused, v1 stays.
    set_roster_section(
        &fed,
        1,
        &ids.iter()
            .map(|m| format!("[[members]]\nid = \"{m}\"\nsigning_keys = [\"{m}.sign.pub\"]\n"))
            .collect::<String>(),
    );
    let e = nodes[1].reload(&cfg_b).unwrap_err().to_string();
    assert!(
        e.contains("[roster] removed") && e.contains("needs a restart"),
        "{e}"
    );
    // v2 as node-b's roster.file: applied on reload, flooded to all.
    set_roster_section(&fed, 1, "[roster]\nfile = \"roster-v2.roster\"\n");
    nodes[1]
        .reload(&cfg_b)
        .expect("reload with a newer roster file");
    for i in 0..3 {
        assert!(
            eventually(WAIT, || async { roster_version(&fed, i).await == 2 }).await,
            "node {i} holds v2 after node-b's reload"
        );
    }
    // The older v1 again: noted, nothing changes.
    set_roster_section(&fed, 1, "[roster]\nfile = \"roster-v1.roster\"\n");
    nodes[1]
        .reload(&cfg_b)
        .expect("an older file is not an error");
    assert_eq!(roster_version(&fed, 1).await, 2);
    // A fork of v2 as roster.file: the reload is refused with the reason.
    let forks = refused_count(&nodes[1], "fork");
    set_roster_section(&fed, 1, "[roster]\nfile = \"fork.roster\"\n");
    let e = nodes[1].reload(&cfg_b).unwrap_err().to_string();
    assert!(e.contains("roster.file") && e.contains("FORK"), "{e}");
    assert_eq!(refused_count(&nodes[1], "fork"), forks + 1, "counted");
    assert_eq!(roster_version(&fed, 1).await, 2, "v2 stays in force");
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

/// A root CA (`<dir>/<file>.crt`, written) and an intermediate it issues,
/// loaded as a certfed CA (path length 0: it issues node certificates).
fn root_with_intermediate(dir: &Path, file: &str, name: &str) -> (String, certfed::pki::Ca) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let root_pem = p.self_signed(&key).unwrap().pem();
    std::fs::write(dir.join(format!("{file}.crt")), &root_pem).unwrap();
    let root = rcgen::Issuer::new(p, key);
    let ikey = rcgen::KeyPair::generate().unwrap();
    let mut ip = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ip.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} issuing"));
    ip.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ip.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let inter_pem = ip.signed_by(&ikey, &root).unwrap().pem();
    let ca = certfed::pki::Ca::load(&inter_pem, &ikey.serialize_pem()).unwrap();
    (root_pem, ca)
}

/// Replaces node `id`'s TLS certificate with one `ca` (an intermediate)
/// issues, presented with the intermediate after it.
fn reissue_through(dir: &Path, id: &str, ca: &certfed::pki::Ca) {
    let issued = ca
        .issue_node(
            id,
            &["localhost".to_string()],
            &["127.0.0.1".parse().unwrap()],
            certfed::pki::Validity::days(30),
        )
        .unwrap();
    let chain = format!("{}{}", issued.cert_pem, ca.cert_pem());
    certfed::pki::write_public(&dir.join(format!("{id}.crt")), &chain, true).unwrap();
    certfed::pki::write_private(&dir.join(format!("{id}.key")), &issued.key_pem, true).unwrap();
}

/// The roster's CA check follows intermediates: node-c's certificate is
/// issued by an intermediate of node-c's own root CA (the root is what the
/// roster lists for node-c, and what every node's tls.ca holds); node-c
/// presents the intermediate and is accepted both ways. node-d's
/// certificate comes through an intermediate of that same root while the
/// roster says node-d's certificates come from the shared CA: refused.
/// Operators follow the same rule for their node: node-c takes operator
/// certificates from its own CA only; node-a refuses those. A member CA
/// the roster lists but `tls.ca` lacks (node-e's) is no trust anchor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roster_ca_check_follows_presented_intermediates() {
    let ids = ["node-a", "node-b", "node-c", "node-d", "node-e"];
    let fed = Fed::new(&ids, &[(0, 1), (1, 2), (1, 3), (1, 4)]);
    let dir = fed.pki.dir.path();
    let (root_c, issuing_c) = root_with_intermediate(dir, "root-c", "Root CA of node-c");
    reissue_through(dir, "node-c", &issuing_c);
    reissue_through(dir, "node-d", &issuing_c);
    // node-e's root is listed in the roster but in nobody's tls.ca.
    let (_, issuing_e) = root_with_intermediate(dir, "root-e", "Root CA of node-e");
    reissue_through(dir, "node-e", &issuing_e);
    // Every node's tls.ca: the shared CA and node-c's root.
    let shared = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
    std::fs::write(dir.join("ca.crt"), format!("{shared}{root_c}")).unwrap();
    std::fs::write(dir.join("shared-ca.crt"), &shared).unwrap();
    for s in ["s1", "s2", "s3"] {
        certfed(dir, &["pki", "signing-key", "--id", s]);
    }
    certfed(
        dir,
        &[
            "roster",
            "init",
            "--out",
            "roster-v1.roster",
            "--federation",
            "test-fed",
            "--steward",
            "s1=s1.sign.pub",
            "--steward",
            "s2=s2.sign.pub",
            "--threshold",
            "2",
        ],
    );
    for id in ids {
        let ca = match id {
            "node-c" => "root-c.crt",
            "node-e" => "root-e.crt",
            _ => "shared-ca.crt",
        };
        let key = format!("{id}.sign.pub");
        certfed(
            dir,
            &[
                "roster",
                "add-member",
                "roster-v1.roster",
                "--id",
                id,
                "--signing-key",
                &key,
                "--tls-ca",
                ca,
            ],
        );
    }
    for s in ["s1", "s2"] {
        let key = format!("{s}.sign.key");
        certfed(dir, &["roster", "sign", "roster-v1.roster", "--key", &key]);
    }
    let mut nodes = Vec::new();
    for i in 0..5 {
        nodes.push(start(&fed, i).await);
    }
    // node-c's operators: certificates from node-c's own CA (through its
    // intermediate); one from the shared CA is refused on node-c, and
    // node-c's is refused on node-a.
    let op = issuing_c
        .issue_operator("operator-c", certfed::pki::Validity::days(30))
        .unwrap();
    let chain = format!("{}{}", op.cert_pem, issuing_c.cert_pem());
    certfed::pki::write_public(&dir.join("operator-c.crt"), &chain, true).unwrap();
    certfed::pki::write_private(&dir.join("operator-c.key"), &op.key_pem, true).unwrap();
    let mut shared_op = fed.operator(2).await;
    let e = shared_op.get_node_info(GetNodeInfoRequest {}).await;
    assert!(e.is_err(), "the shared CA's operator is refused on node-c");
    let mut op_c = operator_client(&fed.pki, &fed.addr(2), "operator-c").await;
    op_c.get_node_info(GetNodeInfoRequest {})
        .await
        .expect("node-c's own operator is accepted");
    let mut op_c_on_a = operator_client(&fed.pki, &fed.addr(0), "operator-c").await;
    assert!(
        op_c_on_a
            .get_node_info(GetNodeInfoRequest {})
            .await
            .is_err(),
        "node-c's operator is refused on node-a"
    );
    // node-c (through its intermediate) links with node-b both ways.
    let from_c = op_c
        .publish_alert(PublishAlertRequest {
            alert: Some(green_alert("from node-c")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    assert!(
        arrives(&fed, 0, &from_c, WAIT).await,
        "node-c's alert reaches node-a"
    );
    let from_a = publish_on(&fed, 0, green_alert("from node-a"), &[]).await;
    let reached = eventually(WAIT, || {
        let mut op = op_c.clone();
        let id = from_a.clone();
        async move {
            op.get_message(GetMessageRequest { message_id: id })
                .await
                .is_ok()
        }
    })
    .await;
    assert!(reached, "node-a's alert reaches node-c");
    // node-d's certificate chains to node-c's root: not node-d's CA.
    let refused = eventually(WAIT, || async {
        let mut op = fed.operator(1).await;
        let peers = op
            .list_peers(ListPeersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .peers;
        peers.iter().any(|p| {
            p.peer_id == "node-d"
                && p.state != LinkState::Up as i32
                && p.last_error.contains("cannot vouch for node-d")
        })
    })
    .await;
    assert!(refused, "node-b refuses node-d's certificate");
    // The roster adds no trust anchor: node-e's root, listed for node-e in
    // the roster but not in node-b's tls.ca, fails the handshake.
    let unknown = eventually(WAIT, || async {
        peer_view_of(&fed, 1, "node-e")
            .await
            .is_some_and(|p| p.state != LinkState::Up as i32 && !p.last_error.is_empty())
    })
    .await;
    assert!(
        unknown,
        "node-b does not trust node-e's root: {:?}",
        peer_view_of(&fed, 1, "node-e").await
    );
    let from_d = publish_on(&fed, 3, green_alert("from node-d"), &[]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!holds(&fed, 1, &from_d).await, "nothing from node-d passes");
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

async fn peer_view_of(fed: &Fed, i: usize, peer: &str) -> Option<PeerView> {
    let mut op = fed.operator(i).await;
    op.list_peers(ListPeersRequest::default())
        .await
        .ok()?
        .into_inner()
        .peers
        .into_iter()
        .find(|p| p.peer_id == peer)
}

/// The same rotation without a roster (a static `[[members]]` list): every
/// node adds node-b's new public key and reloads; node-b, with the new key
/// as `node.next_signing_key`, switches at the reload where its own list
/// names it — not before — and its alerts, signed with the new key, reach
/// the others. No restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_static_members_the_next_key_signs_once_the_members_list_names_it() {
    let fed = Fed::line();
    let dir = fed.pki.dir.path();
    certfed(dir, &["pki", "signing-key", "--id", "node-b-new"]);
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(fed.start(i).await);
    }
    let old_id = node_info(&fed, 1).await.signing_key_id;
    let edit = |i: usize, list_new: bool, next: bool| {
        let path = fed.config_path(i);
        let mut text = std::fs::read_to_string(&path).unwrap();
        if list_new {
            text = text.replace(
                "signing_keys = [\"node-b.sign.pub\"]",
                "signing_keys = [\"node-b.sign.pub\", \"node-b-new.sign.pub\"]",
            );
        }
        if next {
            text = text.replace(
                "signing_key = \"node-b.sign.key\"",
                "signing_key = \"node-b.sign.key\"\nnext_signing_key = \"node-b-new.sign.key\"",
            );
        }
        std::fs::write(&path, text).unwrap();
        path
    };
    // node-b names its next key first: not listed yet, so not used.
    let p = edit(1, false, true);
    nodes[1].reload(&p).unwrap();
    let info = node_info(&fed, 1).await;
    assert_eq!(info.signing_key_id, old_id, "not listed: the old key signs");
    assert!(!info.next_signing_key_id.is_empty());
    // Every node lists the new public key; node-b switches at its reload.
    for i in [0, 2] {
        let p = edit(i, true, false);
        nodes[i].reload(&p).unwrap();
    }
    let p = edit(1, true, true);
    nodes[1].reload(&p).unwrap();
    let info = node_info(&fed, 1).await;
    assert_ne!(info.signing_key_id, old_id, "switched at the reload");
    assert!(info.next_signing_key_id.is_empty(), "{info:?}");
    let id = publish_on(&fed, 1, green_alert("signed with the new key"), &[]).await;
    for i in [0, 2] {
        assert!(arrives(&fed, i, &id, WAIT).await, "node {i} accepts it");
    }
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}
