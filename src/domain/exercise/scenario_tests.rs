//! The scenario format: the seed scenario parses; every kind of bad input is
//! refused naming its line.
use super::*;

const NOW: i64 = 1_790_000_000_000;
const SEED: &str = include_str!("../../../deploy/exercises/northern-grid.toml");

fn refused(text: &str) -> ScenarioError {
    parse(text, NOW).expect_err("refused")
}

/// A small valid scenario, with `extra` appended.
fn small(extra: &str) -> String {
    format!(
        r#"[scenario]
name = "t"

[[participants]]
id = "a"

[[participants]]
id = "b"

[[injects]]
id = "first"
at = "0s"
from = "a"
kind = "alert"
title = "x"
severity = "high"
open_incident = true
{extra}"#
    )
}

#[test]
fn the_seed_scenario_parses() {
    let s = parse(SEED, NOW).unwrap();
    assert_eq!(s.participants.len(), 5);
    assert!(s.injects.len() >= 10);
    assert_eq!(s.links.len(), 6);
    let kinds: std::collections::BTreeSet<&str> =
        s.injects.iter().map(|i| i.action.kind()).collect();
    for k in [
        "alert",
        "sighting",
        "incident_status",
        "assistance_request",
        "offer",
        "decision",
        "assistance_status",
    ] {
        assert!(kinds.contains(k), "seed lacks {k}");
    }
    assert!(s.injects.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    assert!(s.injects.iter().all(|i| match &i.action {
        Action::Alert { alert, .. } => alert.exercise,
        _ => true,
    }));
    assert_eq!(s.expects.len(), 5);
}

#[test]
fn a_small_scenario_defaults_to_a_mesh() {
    let s = parse(&small(""), NOW).unwrap();
    assert_eq!(s.links, [(0, 1)]);
    assert_eq!(s.injects[0].from, 0);
}

#[test]
fn bad_input_is_refused_naming_the_line() {
    // (appended text, expected line, words)
    let cases: &[(&str, usize, &str)] = &[
        (
            "\n[[injects]]\nid = \"x\"\nat = \"1m\"\nfrom = \"zz\"\nkind = \"alert\"\ntitle = \"t\"\nseverity = \"low\"\n",
            19,
            "\"zz\" is not a participant (a, b)",
        ),
        (
            "\n[[injects]]\nid = \"x\"\nat = \"1m\"\nfrom = \"b\"\nto = [\"q\"]\nkind = \"alert\"\ntitle = \"t\"\nseverity = \"low\"\n",
            19,
            "to: \"q\" is not a participant",
        ),
        (
            "\n[[injects]]\nid = \"x\"\nat = \"5m\"\nfrom = \"b\"\nkind = \"sighting\"\nincident = \"first\"\ncountry = \"NO\"\n\n[[injects]]\nid = \"y\"\nat = \"2m\"\nfrom = \"a\"\nkind = \"incident_status\"\nincident = \"first\"\nstatus = \"contained\"\n",
            27,
            "comes before the previous inject",
        ),
        (
            "\n[[injects]]\nid = \"x\"\nat = \"1m\"\nfrom = \"b\"\nkind = \"alert\"\ntitle = \"t\"\n",
            19,
            "severity is required for an alert",
        ),
        (
            "\n[[injects]]\nid = \"x\"\nat = \"1m\"\nfrom = \"b\"\nkind = \"offer\"\nrequest = \"first\"\nsummary = \"s\"\n",
            19,
            "is a alert, not a assistance_request",
        ),
        (
            "\n[[injects]]\nid = \"x\"\nat = \"1m\"\nfrom = \"b\"\nkind = \"alert\"\ntitle = \"t\"\nseverity = \"dire\"\n",
            19,
            "severity: unknown severity",
        ),
        (
            "\n[[injects]]\nid = \"x\"\nat = \"soon\"\nfrom = \"b\"\nkind = \"alert\"\ntitle = \"t\"\nseverity = \"low\"\n",
            19,
            "is not a duration",
        ),
        (
            "\n[[injects]]\nid = \"x\"\nat = \"1m\"\nfrom = \"b\"\nkind = \"incident_status\"\nincident = \"first\"\nstatus = \"resolved\"\n",
            19,
            "only the participant that opened incident",
        ),
        (
            "\n[[injects]]\nid = \"x\"\nat = \"1m\"\nfrom = \"b\"\nkind = \"teleport\"\n",
            19,
            "kind \"teleport\" is unknown",
        ),
        (
            "\n[[injects]]\nid = \"x\"\nat = \"1m\"\nfrom = \"b\"\nkind = \"alert\"\ntitle = \"t\"\nseverity = \"low\"\ncolour = \"red\"\n",
            26,
            "unknown field `colour`",
        ),
        (
            "\n[[injects]]\nid = \"x\"\nat = \"1m\"\nfrom = \"b\"\nkind = \"alert\"\ntitle = \"bad\\u0007bell\"\nseverity = \"low\"\n",
            19,
            "title",
        ),
        (
            "\n[[expect]]\nid = \"e\"\nwhat = \"assistance_accepted\"\ninject = \"first\"\nwithin = \"5m\"\n",
            19,
            "is about an assistance_request",
        ),
        (
            "\n[[expect]]\nid = \"e\"\nwhat = \"aware\"\ninject = \"nope\"\nwithin = \"5m\"\n",
            19,
            "no inject \"nope\"",
        ),
    ];
    for (extra, line, words) in cases {
        let e = refused(&small(extra));
        assert!(e.to_string().contains(words), "{extra}\n=> {e}");
        assert_eq!(e.line, *line, "{extra}\n=> {e}");
        assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
    }
}

#[test]
fn participants_are_checked() {
    let one = "[scenario]\nname = \"t\"\n\n[[participants]]\nid = \"a\"\n";
    assert!(refused(one).to_string().contains("at least two"));
    let twice = "[scenario]\nname = \"t\"\n\n[[participants]]\nid = \"a\"\n\n[[participants]]\nid = \"a\"\n";
    let e = refused(twice);
    assert_eq!(e.line, 7);
    assert!(e.to_string().contains("listed twice"), "{e}");
    let syntax = "[scenario]\nname = \"t\n";
    assert_eq!(refused(syntax).line, 2);
}

#[test]
fn offsets_read_like_durations() {
    assert_eq!(parse_offset("0").unwrap(), 0);
    assert_eq!(parse_offset("90s").unwrap(), 90_000);
    assert_eq!(parse_offset("1h30m").unwrap(), 5_400_000);
    assert_eq!(parse_offset("250ms").unwrap(), 250);
    for bad in ["", "5", "m", "-1s", "1d", "99999999999999999999h"] {
        assert!(parse_offset(bad).is_err(), "{bad}");
    }
}

const DEMO: &str = include_str!("../../../deploy/exercises/demo.toml");

#[test]
fn the_demo_scenario_parses_as_real_traffic_with_updates_and_links() {
    let s = parse(DEMO, NOW).unwrap();
    assert!(!s.exercise, "the demo plays real traffic, as it always did");
    assert!(
        parse(SEED, NOW).unwrap().exercise,
        "scenarios default to exercise"
    );
    assert_eq!(s.participants.len(), 5);
    assert_eq!(s.links.len(), 5);
    let upd = s.injects.iter().find(|i| i.id == "grid-update").unwrap();
    match &upd.action {
        Action::Alert {
            alert,
            supersedes,
            incident,
            open_incident,
        } => {
            assert_eq!(supersedes.as_deref(), Some("grid"));
            assert_eq!(alert.revision, Revision::Update as i32);
            assert!(alert.supersedes.is_empty(), "filled in at run time");
            assert!(!alert.exercise);
            assert!(incident.is_none() && !open_incident);
        }
        other => panic!("{other:?}"),
    }
    let link = s.injects.iter().find(|i| i.id == "link-scanning").unwrap();
    assert!(
        matches!(&link.action, Action::Link { incident, message, .. }
        if incident == "grid" && message == "scanning")
    );
    let req = s.injects.iter().find(|i| i.id == "help").unwrap();
    match &req.action {
        Action::AssistanceRequest { request, .. } => {
            assert_eq!(request.entity_category, EntityCategory::Essential as i32);
            assert_eq!(request.rsit_class, RsitClass::Intrusions as i32);
            assert_eq!(request.needs.as_ref().unwrap().skills.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    let offer = s.injects.iter().find(|i| i.id == "offer-pl").unwrap();
    assert!(matches!(&offer.action, Action::Offer { offer, .. }
        if offer.funding == FundingChannel::CybersecurityReserve as i32));
}

#[test]
fn updates_and_links_are_checked_naming_the_line() {
    // Only the sender of an alert updates it.
    let e = refused(&small(
        "\n[[injects]]\nid = \"u\"\nat = \"1s\"\nfrom = \"b\"\nkind = \"alert\"\nupdate = \"first\"\ntitle = \"y\"\nseverity = \"high\"\n",
    ));
    assert!(
        e.to_string().contains(
            "inject \"u\": update: only the participant that sent alert \"first\" updates it"
        ),
        "{e}"
    );
    assert_eq!(e.line, 19);
    // An update stays in its alert's incident.
    let e = refused(&small(
        "\n[[injects]]\nid = \"u\"\nat = \"1s\"\nfrom = \"a\"\nkind = \"alert\"\nupdate = \"first\"\nincident = \"first\"\ntitle = \"y\"\nseverity = \"high\"\n",
    ));
    assert!(e.message.contains("an update stays in the incident"), "{e}");
    // Only the opener links; the message must be an earlier alert.
    let other = "\n[[injects]]\nid = \"other\"\nat = \"1s\"\nfrom = \"b\"\nkind = \"alert\"\ntitle = \"z\"\nseverity = \"low\"\n";
    let e = refused(&small(&format!(
        "{other}\n[[injects]]\nid = \"l\"\nat = \"2s\"\nfrom = \"b\"\nkind = \"link\"\nincident = \"first\"\nmessage = \"other\"\n"
    )));
    assert!(
        e.message
            .contains("only the participant that opened incident \"first\" links into it"),
        "{e}"
    );
    let e = refused(&small(
        "\n[[injects]]\nid = \"l\"\nat = \"2s\"\nfrom = \"a\"\nkind = \"link\"\nincident = \"first\"\nmessage = \"later\"\n",
    ));
    assert!(
        e.message.contains("message: no earlier inject \"later\""),
        "{e}"
    );
    let ok = parse(
        &small(&format!(
            "{other}\n[[injects]]\nid = \"l\"\nat = \"2s\"\nfrom = \"a\"\nkind = \"link\"\nincident = \"first\"\nmessage = \"other\"\nnote = \"same C2\"\n"
        )),
        NOW,
    )
    .unwrap();
    assert_eq!(ok.injects.last().unwrap().action.kind(), "link");
    // Unknown words in the new fields are refused.
    let e = refused(&small(
        "\n[[injects]]\nid = \"r\"\nat = \"1s\"\nfrom = \"a\"\nkind = \"assistance_request\"\ntitle = \"help\"\nentity = \"vital\"\n",
    ));
    assert!(e.message.contains("entity: unknown entity category"), "{e}");
}

#[test]
fn a_scenario_can_say_it_is_real_traffic() {
    let text = small("").replace("name = \"t\"", "name = \"t\"\nexercise = false");
    let s = parse(&text, NOW).unwrap();
    assert!(!s.exercise);
    assert!(s.injects.iter().all(|i| match &i.action {
        Action::Alert { alert, .. } => !alert.exercise,
        _ => true,
    }));
    let e = refused(&small("").replace("name = \"t\"", "name = \"t\"\nexercise = \"no\""));
    assert_eq!(e.line, 3, "{e}");
    assert!(e.message.contains("expected a boolean"), "{e}");
}
