//! Unit tests of request and offer validation: valid content passes, and each broken
//! rule is reported on the right proto field.
use super::fixtures::*;
use super::view::ms_timestamp;
use super::*;
use crate::proto::v1::{AssistanceRequest, Contact, Offer};

fn field_of(e: Result<(), AssistanceError>) -> String {
    match e {
        Err(AssistanceError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

// ---- content validation ----

type Mutation<T> = Box<dyn Fn(&mut T)>;

#[test]
fn valid_request_and_offer() {
    validate_request(&request(), T0).unwrap();
    validate_offer(&offer("team", 5)).unwrap();
    // optional enums may be unset
    let mut r = request();
    r.sector = 0;
    r.entity_category = 0;
    r.rsit_class = 0;
    r.severity = 0;
    r.deadline = None;
    r.needs = None;
    r.contacts.clear();
    r.linked_alerts.clear();
    validate_request(&r, T0).unwrap();
}

#[test]
fn invalid_requests_name_the_field() {
    let cases: Vec<(&str, Mutation<AssistanceRequest>)> = vec![
        ("request.title", Box::new(|r| r.title = "  ".into())),
        ("request.title", Box::new(|r| r.title = "x".repeat(201))),
        ("request.description", Box::new(|r| r.description.clear())),
        ("request.tlp", Box::new(|r| r.tlp = 0)),
        ("request.tlp", Box::new(|r| r.tlp = 99)),
        ("request.services", Box::new(|r| r.services.clear())),
        ("request.services[1]", Box::new(|r| r.services[1] = 0)),
        ("request.services[0]", Box::new(|r| r.services[0] = 42)),
        (
            "request.services[1]",
            Box::new(|r| r.services[1] = r.services[0]),
        ),
        ("request.sector", Box::new(|r| r.sector = 99)),
        (
            "request.entity_category",
            Box::new(|r| r.entity_category = 9),
        ),
        ("request.rsit_class", Box::new(|r| r.rsit_class = 99)),
        ("request.severity", Box::new(|r| r.severity = 99)),
        (
            "request.needs.skills[0]",
            Box::new(|r| r.needs.as_mut().unwrap().skills[0] = " ".into()),
        ),
        (
            "request.deadline",
            Box::new(|r| r.deadline = Some(ms_timestamp(T0))),
        ),
        (
            "request.deadline",
            Box::new(|r| r.deadline.as_mut().unwrap().nanos = -1),
        ),
        (
            "request.contacts[0].email",
            Box::new(|r| r.contacts[0].email = "duty.cert.example".into()),
        ),
        (
            "request.contacts[1]",
            Box::new(|r| r.contacts.push(Contact::default())),
        ),
        (
            "request.linked_alerts[0]",
            Box::new(|r| r.linked_alerts[0] = "alert-7".into()),
        ),
    ];
    for (field, mutate) in cases {
        let mut r = request();
        mutate(&mut r);
        assert_eq!(field_of(validate_request(&r, T0)), field);
    }
    let e = validate_request(
        &AssistanceRequest {
            title: "x".repeat(201),
            ..request()
        },
        T0,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("request.title: title is 201 characters")
    );
}

#[test]
fn invalid_offers_name_the_field() {
    let cases: Vec<(&str, Mutation<Offer>)> = vec![
        ("offer.summary", Box::new(|o| o.summary = " ".into())),
        ("offer.summary", Box::new(|o| o.summary = "y".repeat(201))),
        ("offer.capabilities[0]", Box::new(|o| o.capabilities[0] = 0)),
        (
            "offer.capabilities[0]",
            Box::new(|o| o.capabilities[0] = 77),
        ),
        ("offer.funding", Box::new(|o| o.funding = 9)),
        (
            "offer.available_until",
            Box::new(|o| o.available_until = Some(ms_timestamp(T0 - 1))),
        ),
        (
            "offer.available_from",
            Box::new(|o| o.available_from.as_mut().unwrap().nanos = 2_000_000_000),
        ),
        (
            "offer.contacts[0].email",
            Box::new(|o| {
                o.contacts.push(Contact {
                    email: "a@".into(),
                    ..Contact::default()
                })
            }),
        ),
    ];
    for (field, mutate) in cases {
        let mut o = offer("team", 3);
        mutate(&mut o);
        assert_eq!(field_of(validate_offer(&o)), field);
    }
    // open-ended windows are fine
    let mut o = offer("team", 3);
    o.available_until = None;
    validate_offer(&o).unwrap();
}

// ---- free text ----

#[test]
fn every_free_text_field_refuses_control_and_bidi_characters() {
    let esc = "\u{1b}]0;pwned\u{7}";
    let requests: Vec<(&str, Mutation<AssistanceRequest>)> = vec![
        ("request.title", Box::new(move |r| r.title.push_str(esc))),
        (
            "request.description",
            Box::new(|r| r.description.push('\u{202E}')),
        ),
        (
            "request.mitigation_done",
            Box::new(|r| r.mitigation_done.push('\u{9b}')),
        ),
        (
            "request.needs.skills[0]",
            Box::new(|r| r.needs.as_mut().unwrap().skills[0].push('\u{2066}')),
        ),
        (
            "request.contacts[0].name",
            Box::new(|r| r.contacts[0].name.push('\u{7f}')),
        ),
        (
            "request.contacts[0].role",
            Box::new(|r| r.contacts[0].role.push('\n')),
        ),
        (
            "request.contacts[0].phone",
            Box::new(|r| r.contacts[0].phone.push('\r')),
        ),
    ];
    for (field, mutate) in requests {
        let mut r = request();
        mutate(&mut r);
        assert_eq!(field_of(validate_request(&r, T0)), field);
        // The replay's content check lets stored history through unchanged.
        request_content(&r, T0).unwrap();
    }
    let offers: Vec<(&str, Mutation<Offer>)> = vec![
        ("offer.summary", Box::new(move |o| o.summary.push_str(esc))),
        (
            "offer.conditions",
            Box::new(|o| o.conditions.push('\u{2069}')),
        ),
        (
            "offer.contacts[0].name",
            Box::new(|o| {
                o.contacts.push(Contact {
                    name: "x\u{1b}".into(),
                    ..Contact::default()
                })
            }),
        ),
    ];
    for (field, mutate) in offers {
        let mut o = offer("team", 3);
        mutate(&mut o);
        assert_eq!(field_of(validate_offer(&o)), field);
        offer_content(&o).unwrap();
    }
    let mut d = match decision_step("off-1", true) {
        Step::Decision(d) => d,
        _ => unreachable!(),
    };
    validate_decision(&d).unwrap();
    d.note = "ok\nfine\u{1b}[2J".into();
    assert_eq!(field_of(validate_decision(&d)), "decision.note");
    let mut s = match status_step(crate::proto::v1::AssistanceState::Deployed) {
        Step::Status(s) => s,
        _ => unreachable!(),
    };
    validate_status(&s).unwrap();
    s.summary_report = "done\u{202d}".into();
    assert_eq!(field_of(validate_status(&s)), "status.summary_report");
    s.summary_report.clear();
    s.note = "\u{0}".into();
    assert_eq!(field_of(validate_status(&s)), "status.note");
    s.note.clear();
    s.state = 99;
    assert_eq!(field_of(validate_status(&s)), "status.state");
    // Multi-line notes keep their line breaks.
    s.state = crate::proto::v1::AssistanceState::Deployed as i32;
    s.note = "team on site\r\n\tday 1".into();
    validate_status(&s).unwrap();
}

#[test]
fn check_refuses_bad_text_before_signing_but_replay_keeps_old_steps() {
    let mut sim = Sim::new();
    let mut o = offer("team \u{1b}[31m", 3);
    o.conditions = "none".into();
    let step = Step::Offer(crate::proto::v1::OfferMessage {
        request_id: RID.into(),
        offer: Some(o),
    });
    let e = sim.act("node-donor", step.clone()).unwrap_err();
    assert!(
        matches!(e, AssistanceError::Invalid { ref field, .. } if field == "offer.summary"),
        "{e:?}"
    );
    // A step stored before the text rules existed still replays.
    sim.steps
        .push(signed("old-offer", "node-donor", T0 + 5, step));
    let a = sim.state();
    assert_eq!(a.offers.len(), 1, "{:?}", a.history);
}
