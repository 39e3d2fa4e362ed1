//! Incidents on real nodes (line a - b - c, real TLS and SQLite): three
//! partners report on one campaign under different TLPs; every node's picture
//! is the pure function of everything it holds; the relay that cannot read a
//! contribution counts it and shows nothing of it; correlation fires on a
//! shared indicator and one call links the match; the marking and role rules
//! refuse what they must, at the origin and, for a partner that bypasses its
//! own checks, in every picture (counted in the metrics).
use crate::common::*;
use certfed::domain::envelope::{Draft, ms_to_ts, seal_in_incident};
use certfed::domain::incident::picture;
use certfed::proto::v1::*;
use certfed::service::incidents::contribution;
use prost::Message;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "secret-staging.example";

fn alert(title: &str, tlp: Tlp, sev: Severity, country: &str, indicator: &str) -> Alert {
    Alert {
        title: title.into(),
        description: "campaign".into(),
        tlp: tlp as i32,
        severity: sev as i32,
        sectors: vec![Nis2Sector::Energy as i32],
        affected_countries: vec![country.into()],
        indicators: vec![Indicator {
            r#type: IndicatorType::Domain as i32,
            value: indicator.into(),
            comment: String::new(),
        }],
        ..Default::default()
    }
}

async fn situation(fed: &Fed, i: usize, id: &str) -> Option<Situation> {
    fed.operator(i)
        .await
        .get_situation(GetSituationRequest {
            incident_id: id.into(),
        })
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// The picture computed independently from every message node `n` stores.
async fn pure_picture(n: &certfed::app::RunningNode, id: &str) -> Situation {
    let held: Vec<_> = n
        .node
        .store
        .messages_after(0, 100_000)
        .await
        .unwrap()
        .iter()
        .filter_map(|m| contribution(m, None))
        .collect();
    picture(id, &held).expect("the opener is held")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_partners_one_campaign_pictures_are_pure_and_restricted_stays_hidden() {
    let fed = Fed::line();
    let nodes = vec![fed.start(0).await, fed.start(1).await, fed.start(2).await];
    let mut a = fed.operator(0).await;
    let mut b = fed.operator(1).await;
    let mut c = fed.operator(2).await;

    // node-a opens the incident under TLP:GREEN.
    let incident = a
        .publish_alert(PublishAlertRequest {
            alert: Some(alert(
                "Grid intrusion",
                Tlp::Green,
                Severity::High,
                "UA",
                "update-scada.example",
            )),
            open_incident: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    assert!(
        eventually(WAIT, || async {
            situation(&fed, 2, &incident).await.is_some()
        })
        .await,
        "node-c holds the incident"
    );
    // node-b sights it (GREEN); node-c reports under TLP:AMBER to node-a only,
    // through node-b, which can only relay the ciphertext.
    b.report_sighting(ReportSightingRequest {
        sighting: Some(Sighting {
            incident_id: incident.clone(),
            indicators: vec![Indicator {
                r#type: IndicatorType::Domain as i32,
                value: "update-scada.example".into(),
                comment: String::new(),
            }],
            country: "PL".into(),
            sector: Nis2Sector::Transport as i32,
            count: 7,
            severity: Severity::Medium as i32,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut hidden = alert(
        "Staging server found",
        Tlp::Amber,
        Severity::Critical,
        "DE",
        SECRET,
    );
    hidden.description = "seen only by a".into();
    let hidden_id = c
        .publish_alert(PublishAlertRequest {
            alert: Some(hidden),
            recipients: vec!["node-a".into()],
            incident_id: incident.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;

    // Converged: a reads all three; b reads two and counts one; c reads all three.
    let ok = eventually(WAIT, || async {
        let (Some(sa), Some(sb), Some(sc)) = (
            situation(&fed, 0, &incident).await,
            situation(&fed, 1, &incident).await,
            situation(&fed, 2, &incident).await,
        ) else {
            return false;
        };
        sa.contributions == 3
            && sb.contributions == 2
            && sb.restricted.iter().map(|r| r.count).sum::<u32>() == 1
            && sc.contributions == 3
    })
    .await;
    assert!(ok, "pictures converge");
    let pics = [
        situation(&fed, 0, &incident).await.unwrap(),
        situation(&fed, 1, &incident).await.unwrap(),
        situation(&fed, 2, &incident).await.unwrap(),
    ];
    // Each node's picture is the pure function of what it holds.
    for (i, n) in nodes.iter().enumerate() {
        let pure = pure_picture(n, &incident).await;
        assert_eq!(pics[i].digest, pure.digest, "node {i}");
    }
    // node-a: escalation to critical, three partners, three countries.
    assert_eq!(pics[0].severity, Severity::Critical as i32);
    assert_eq!(pics[0].partners_affected, ["node-a", "node-b", "node-c"]);
    assert_eq!(pics[0].countries, ["DE", "PL", "UA"]);
    // node-b: knows that node-c contributed an AMBER alert, nothing of what it says.
    let r = &pics[1].restricted[0];
    assert_eq!(
        (r.origin.as_str(), r.kind, r.tlp, r.count),
        ("node-c", MessageKind::Alert as i32, Tlp::Amber as i32, 1)
    );
    assert_eq!(pics[1].severity, Severity::High as i32);
    assert_eq!(pics[1].partners_affected, ["node-a", "node-b"]);
    let encoded = String::from_utf8_lossy(&pics[1].encode_to_vec()).into_owned();
    for leak in [SECRET, "Staging server", "DE", hidden_id.as_str()] {
        assert!(!encoded.contains(leak), "node-b's picture shows {leak:?}");
    }

    // Correlation: node-c publishes a loose GREEN alert on the same indicator;
    // node-a sees the match (picture and Watch) and links it with one call.
    let mut watch = a
        .watch(WatchRequest {
            from_start: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let loose = c
        .publish_alert(PublishAlertRequest {
            alert: Some(alert(
                "Scanning",
                Tlp::Green,
                Severity::Low,
                "EE",
                "update-scada.example",
            )),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    let matched = tokio::time::timeout(WAIT, async {
        while let Some(ev) = watch.message().await.unwrap() {
            if ev.message.as_ref().unwrap().message_id == loose {
                return ev.incident_matches;
            }
        }
        Vec::new()
    })
    .await
    .unwrap();
    assert_eq!(matched.len(), 1, "Watch shows the match");
    assert_eq!(matched[0].incident_id, incident);
    let s = situation(&fed, 0, &incident).await.unwrap();
    assert!(s.matches.iter().any(|m| m.message_id == loose));
    a.link_to_incident(LinkToIncidentRequest {
        incident_id: incident.clone(),
        message_id: loose.clone(),
        note: "same infrastructure".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let s = situation(&fed, 0, &incident).await.unwrap();
    assert!(
        !s.matches.iter().any(|m| m.message_id == loose),
        "linked: no longer a match"
    );
    assert!(s.countries.contains(&"EE".to_string()));
    assert!(
        eventually(WAIT, || async {
            situation(&fed, 1, &incident)
                .await
                .is_some_and(|s| s.countries.contains(&"EE".to_string()))
        })
        .await,
        "the link reaches the others"
    );

    // Rules at the origin: only the opener sets the status; no wider sighting.
    let e = b
        .set_incident_status(SetIncidentStatusRequest {
            incident_id: incident.clone(),
            status: IncidentStatus::Resolved as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    a.set_incident_status(SetIncidentStatusRequest {
        incident_id: incident.clone(),
        status: IncidentStatus::Contained as i32,
        note: "blocked at the border routers".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(
        eventually(WAIT, || async {
            situation(&fed, 2, &incident)
                .await
                .is_some_and(|s| s.status == IncidentStatus::Contained as i32)
        })
        .await
    );
    let amber_incident = a
        .publish_alert(PublishAlertRequest {
            alert: Some(alert(
                "Quiet one",
                Tlp::Amber,
                Severity::Low,
                "UA",
                "quiet.example",
            )),
            recipients: vec!["node-b".into()],
            open_incident: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    assert!(
        eventually(WAIT, || async {
            situation(&fed, 1, &amber_incident).await.is_some()
        })
        .await
    );
    let e = b
        .report_sighting(ReportSightingRequest {
            sighting: Some(Sighting {
                incident_id: amber_incident.clone(),
                country: "PL".into(),
                tlp: Tlp::Green as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("wider"), "{}", e.message());
    // node-c is not a recipient of the AMBER incident: it cannot contribute.
    let e = c
        .report_sighting(ReportSightingRequest {
            sighting: Some(Sighting {
                incident_id: amber_incident.clone(),
                country: "EE".into(),
                tlp: Tlp::Amber as i32,
                ..Default::default()
            }),
            recipients: vec!["node-a".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.code(),
            tonic::Code::NotFound | tonic::Code::PermissionDenied
        ),
        "{e:?}"
    );
    // Absurd counts are refused with the field named.
    let e = b
        .report_sighting(ReportSightingRequest {
            sighting: Some(Sighting {
                incident_id: incident.clone(),
                country: "PL".into(),
                count: 1_000_000_000_000,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("sighting.count"), "{}", e.message());

    // A partner that bypasses its own checks: node-b signs a GREEN sighting
    // of the AMBER incident and pushes it to node-a. Every picture leaves it
    // out with the reason, and node-a counts the refusal.
    let forged = Sighting {
        incident_id: amber_incident.clone(),
        country: "PL".into(),
        count: 1,
        observed: Some(ms_to_ts(certfed::service::now_ms())),
        tlp: Tlp::Green as i32,
        ..Default::default()
    };
    let env = seal_in_incident(
        &nodes[1].node.signer(),
        Draft {
            message_id: uuid::Uuid::now_v7().to_string(),
            kind: MessageKind::Sighting,
            tlp: Tlp::Green,
            recipients: vec![],
            created_ms: certfed::service::now_ms(),
            expires_ms: None,
            hop_limit: 8,
            exercise: false,
            encrypted: false,
            payload: forged.encode_to_vec(),
        },
        amber_incident.clone(),
    );
    let forged_id = certfed::proto::v1::EnvelopeHeader::decode(env.header.as_slice())
        .unwrap()
        .message_id;
    certfed::service::ingest::ingest(&nodes[1].node, None, vec![env], vec![])
        .await
        .unwrap();
    assert!(
        eventually(WAIT, || async {
            situation(&fed, 0, &amber_incident)
                .await
                .is_some_and(|s| s.refused.iter().any(|r| r.message_id == forged_id))
        })
        .await,
        "node-a's picture refuses the wider sighting"
    );
    let s = situation(&fed, 0, &amber_incident).await.unwrap();
    let r = s
        .refused
        .iter()
        .find(|r| r.message_id == forged_id)
        .unwrap();
    assert!(r.reason.contains("wider"), "{}", r.reason);
    assert_eq!(s.partners_affected, ["node-a"], "left out of the picture");
    let metrics = nodes[0].node.metrics.encode();
    assert!(
        metrics.contains("certfed_incident_refusals_total{rule=\"marking\"} 1"),
        "{metrics}"
    );

    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merges_take_both_openers_and_links_refuse_cycles() {
    let fed = Fed::line();
    let nodes = vec![fed.start(0).await, fed.start(1).await, fed.start(2).await];
    let mut a = fed.operator(0).await;
    let mut c = fed.operator(2).await;
    let open = |title: &'static str| PublishAlertRequest {
        alert: Some(alert(title, Tlp::Green, Severity::High, "UA", "x.example")),
        open_incident: true,
        ..Default::default()
    };
    let one = a
        .publish_alert(open("one"))
        .await
        .unwrap()
        .into_inner()
        .message_id;
    let two = c
        .publish_alert(open("two"))
        .await
        .unwrap()
        .into_inner()
        .message_id;
    let three = c
        .publish_alert(open("three"))
        .await
        .unwrap()
        .into_inner()
        .message_id;
    for id in [&one, &two, &three] {
        for i in 0..3 {
            assert!(eventually(WAIT, || async { situation(&fed, i, id).await.is_some() }).await);
        }
    }
    // node-c cannot merge node-a's incident in its name.
    let e = c
        .merge_incidents(MergeIncidentsRequest {
            incident_id: one.clone(),
            other_incident_id: two.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    // node-a proposes: nothing merges yet.
    let r = a
        .merge_incidents(MergeIncidentsRequest {
            incident_id: one.clone(),
            other_incident_id: two.clone(),
            note: "same actor".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.merged);
    assert!(
        eventually(WAIT, || async {
            situation(&fed, 2, &two)
                .await
                .is_some_and(|s| s.pending_merges.len() == 1 && s.merged.is_empty())
        })
        .await,
        "node-c sees the proposal, not a merge"
    );
    // node-c agrees: both ids now show one picture under the older id, everywhere.
    let r = c
        .merge_incidents(MergeIncidentsRequest {
            incident_id: two.clone(),
            other_incident_id: one.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.merged, "the second side completes the merge");
    let ok = eventually(WAIT, || async {
        let mut digests = Vec::new();
        for i in 0..3 {
            for id in [&one, &two] {
                match situation(&fed, i, id).await {
                    Some(s) if s.incident_id == one && s.merged == [two.clone()] => {
                        digests.push(s.digest)
                    }
                    _ => return false,
                }
            }
        }
        digests.windows(2).all(|w| w[0] == w[1])
    })
    .await;
    assert!(
        ok,
        "every node shows the same merged picture under both ids"
    );
    // The listing shows the merged incident once.
    let list = a
        .list_incidents(ListIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = list
        .incidents
        .iter()
        .map(|i| i.incident_id.as_str())
        .collect();
    assert!(
        ids.contains(&one.as_str()) && !ids.contains(&two.as_str()),
        "{ids:?}"
    );

    // Links: three is part of one; linking one into three is a cycle.
    a.link_to_incident(LinkToIncidentRequest {
        incident_id: one.clone(),
        message_id: three.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(
        eventually(WAIT, || async {
            situation(&fed, 2, &three)
                .await
                .is_some_and(|s| s.part_of == [one.clone()])
        })
        .await
    );
    let e = c
        .link_to_incident(LinkToIncidentRequest {
            incident_id: three.clone(),
            message_id: one.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("cycle"), "{}", e.message());
    // node-c bypasses its own check and signs the cycle anyway: every picture
    // leaves the link out with the reason, and node-a counts it.
    let forged = IncidentLink {
        incident_id: three.clone(),
        message_id: one.clone(),
        note: String::new(),
    };
    let now = certfed::service::now_ms();
    let env = seal_in_incident(
        &nodes[2].node.signer(),
        Draft {
            message_id: uuid::Uuid::now_v7().to_string(),
            kind: MessageKind::IncidentLink,
            tlp: Tlp::Green,
            recipients: vec![],
            created_ms: now,
            expires_ms: None,
            hop_limit: 8,
            exercise: false,
            encrypted: false,
            payload: forged.encode_to_vec(),
        },
        three.clone(),
    );
    let forged_id = EnvelopeHeader::decode(env.header.as_slice())
        .unwrap()
        .message_id;
    certfed::service::ingest::ingest(&nodes[2].node, None, vec![env], vec![])
        .await
        .unwrap();
    assert!(
        eventually(WAIT, || async {
            situation(&fed, 0, &three).await.is_some_and(|s| {
                s.refused
                    .iter()
                    .any(|r| r.message_id == forged_id && r.reason.contains("cycle"))
            })
        })
        .await,
        "node-a's picture refuses the cycle"
    );
    assert_eq!(
        situation(&fed, 0, &three).await.unwrap().part_of,
        std::slice::from_ref(&one),
        "the picture is unchanged by the refused link"
    );
    assert!(
        eventually(WAIT, || async {
            nodes[0]
                .node
                .metrics
                .encode()
                .contains("certfed_incident_refusals_total{rule=\"cycle\"} 1")
        })
        .await,
        "node-a counts the cycle"
    );
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

/// Correlation still fires when the indicator is common: hundreds of older
/// alerts that belong to no incident carry it, and the incident that shares it
/// is newer than all of them (the lookup must not stop at the first rows of a
/// hot key). Counted once per incident on the receiving node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn correlation_finds_the_incident_behind_a_hot_indicator() {
    const HOT: &str = "cdn-shared.example";
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let na = fed.start(0).await;
    let _nb = fed.start(1).await;
    let mut a = fed.operator(0).await;
    let mut b = fed.operator(1).await;
    for i in 0..260 {
        a.publish_alert(PublishAlertRequest {
            alert: Some(alert(
                &format!("noise {i}"),
                Tlp::Green,
                Severity::Low,
                "EE",
                HOT,
            )),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let incident = a
        .publish_alert(PublishAlertRequest {
            alert: Some(alert("Campaign", Tlp::Green, Severity::High, "EE", HOT)),
            open_incident: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    let mut watch = a.watch(WatchRequest::default()).await.unwrap().into_inner();
    let loose = b
        .publish_alert(PublishAlertRequest {
            alert: Some(alert("Seen here too", Tlp::Green, Severity::Low, "LV", HOT)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    let matched = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(ev) = watch.message().await.unwrap() {
            if ev.message.as_ref().unwrap().message_id == loose {
                return ev.incident_matches;
            }
        }
        Vec::new()
    })
    .await
    .unwrap();
    assert_eq!(
        matched
            .iter()
            .map(|m| m.incident_id.as_str())
            .collect::<Vec<_>>(),
        vec![incident.as_str()],
        "Watch shows the match behind the hot indicator"
    );
    assert!(
        eventually(Duration::from_secs(60), || async {
            na.node
                .metrics
                .encode()
                .contains("certfed_incident_matches_total 1\n")
        })
        .await,
        "node-a counts the match once"
    );
}

/// The operator's commands, as the real binary runs them: `incident sight`,
/// `show`, `list --json`, `status` (and its refusal for a non-opener, exit 5),
/// `link` of a correlation match.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_incident_commands_work_end_to_end() {
    const BIN: &str = env!("CARGO_BIN_EXE_certfed");
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let nodes = vec![fed.start(0).await, fed.start(1).await];
    let run = |i: usize, args: Vec<String>| {
        let mut c = std::process::Command::new(BIN);
        for v in ["CERTFED_NODE", "CERTFED_CA", "CERTFED_CERT", "CERTFED_KEY"] {
            c.env_remove(v);
        }
        c.args(&args)
            .args(["--node", &fed.addr(i), "--ca"])
            .arg(fed.pki.ca_path())
            .arg("--cert")
            .arg(fed.pki.path("operator.crt"))
            .arg("--key")
            .arg(fed.pki.path("operator.key"))
            .env("RUST_LOG", "error");
        async move {
            tokio::task::spawn_blocking(move || c.output().unwrap())
                .await
                .unwrap()
        }
    };
    let ok = |o: &std::process::Output| {
        let s = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "exit {:?}\n{s}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        s
    };
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let incident = fed
        .operator(0)
        .await
        .publish_alert(PublishAlertRequest {
            alert: Some(alert(
                "Grid intrusion",
                Tlp::Green,
                Severity::High,
                "UA",
                "update-scada.example",
            )),
            open_incident: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    assert!(
        eventually(WAIT, || async {
            situation(&fed, 1, &incident).await.is_some()
        })
        .await
    );

    let out = ok(&run(
        1,
        args(&[
            "incident",
            "sight",
            &incident,
            "--country",
            "PL",
            "--sector",
            "transport",
            "--indicator",
            "domain:update-scada.example",
            "--count",
            "7",
            "--severity",
            "medium",
        ]),
    )
    .await);
    assert!(out.starts_with("sighting reported ("), "{out}");
    let shown = ok(&run(1, args(&["incident", "show", &incident])).await);
    assert!(
        shown.contains("affected: 2 partner(s): node-a, node-b"),
        "{shown}"
    );
    assert!(shown.contains("countries: PL, UA"), "{shown}");
    assert!(shown.contains("update-scada.example  seen by 2"), "{shown}");

    assert!(
        eventually(WAIT, || async {
            situation(&fed, 0, &incident)
                .await
                .is_some_and(|s| s.contributions == 2)
        })
        .await
    );
    let list = ok(&run(0, args(&["incident", "list", "--json"])).await);
    let v: serde_json::Value =
        serde_json::from_str(list.trim()).unwrap_or_else(|e| panic!("{e}: {list}"));
    let first = &v["incidents"][0];
    assert_eq!(first["incidentId"], incident.as_str(), "{v}");
    assert_eq!(first["partnersAffected"], 2, "{v}");

    // Only the opener sets the status: node-b is refused with exit code 5.
    let refused = run(1, args(&["incident", "status", &incident, "contained"])).await;
    assert_eq!(refused.status.code(), Some(5), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("opener"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let out = ok(&run(
        0,
        args(&[
            "incident",
            "status",
            &incident,
            "contained",
            "--note",
            "blocked at the border",
        ]),
    )
    .await);
    assert!(out.starts_with("status contained"), "{out}");

    // A loose alert on the same indicator is a match; one command links it.
    let loose = fed
        .operator(1)
        .await
        .publish_alert(PublishAlertRequest {
            alert: Some(alert(
                "Scanning",
                Tlp::Green,
                Severity::Low,
                "EE",
                "update-scada.example",
            )),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    assert!(
        eventually(WAIT, || async {
            let s = ok(&run(0, args(&["incident", "show", &incident])).await);
            s.contains("correlation matches") && s.contains(&loose)
        })
        .await,
        "the match shows in `incident show`"
    );
    let out = ok(&run(0, args(&["incident", "link", &incident, &loose])).await);
    assert!(out.starts_with("linked ("), "{out}");
    let shown = ok(&run(0, args(&["incident", "show", &incident])).await);
    assert!(shown.contains("contained"), "{shown}");
    assert!(
        shown.contains("status note: blocked at the border"),
        "{shown}"
    );
    assert!(shown.contains("countries: EE, PL, UA"), "{shown}");
    assert!(!shown.contains("correlation matches"), "{shown}");
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

/// Incident actions are idempotent by client `request_id` (AIP-155): a retry
/// returns the first sighting and sends nothing new; the same id on another
/// body is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_sighting_is_sent_once() {
    let fed = Fed::line();
    let _a = fed.start(0).await;
    let mut a = fed.operator(0).await;
    let incident = a
        .publish_alert(PublishAlertRequest {
            alert: Some(alert(
                "Grid intrusion",
                Tlp::Green,
                Severity::High,
                "UA",
                "update-scada.example",
            )),
            open_incident: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    let request_id = uuid::Uuid::now_v7().to_string();
    let sight = |count: u64| ReportSightingRequest {
        sighting: Some(Sighting {
            incident_id: incident.clone(),
            country: "PL".into(),
            count,
            ..Default::default()
        }),
        request_id: request_id.clone(),
        ..Default::default()
    };
    let first = a.report_sighting(sight(3)).await.unwrap().into_inner();
    let again = a.report_sighting(sight(3)).await.unwrap().into_inner();
    assert_eq!(first.message_id, again.message_id);
    let other = a.report_sighting(sight(4)).await.unwrap_err();
    assert_eq!(other.code(), tonic::Code::AlreadyExists, "{other:?}");
    let s = situation(&fed, 0, &incident).await.expect("held");
    let marks: Vec<&str> = s.timeline.iter().map(|p| p.message_id.as_str()).collect();
    assert_eq!(
        marks,
        vec![incident.as_str(), first.message_id.as_str()],
        "the alert and one sighting"
    );
}
