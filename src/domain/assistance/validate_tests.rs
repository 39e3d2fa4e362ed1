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
