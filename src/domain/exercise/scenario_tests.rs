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
