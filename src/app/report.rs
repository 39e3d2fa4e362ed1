//! The situation report: one self-contained HTML page for people, rendered
//! from an incident's picture (`certfed incident report ID --html FILE`, and
//! the end of `certfed demo`).
//!
//! Invariants:
//! - Self-contained: no script, no external asset (no font, image, style sheet
//!   or link that loads anything); a Content-Security-Policy of
//!   `default-src 'none'` says so to the browser. It opens offline.
//! - Everything a partner wrote (titles, notes, summaries, indicator values,
//!   ids, partner names) is HTML-escaped ([`escape`]); nothing from a partner
//!   lands in an attribute unescaped or in a style or script context.
//! - Deterministic: the same picture and `generated_ms` give the same bytes.
//! - An exercise incident's page says so in its title and in a banner above
//!   everything else (`id="exercise"`); a real incident's page has neither.
//! - The escalation timeline is an inline SVG chart: the incident's severity
//!   (red step line) and the number of affected partners (blue step line) over
//!   time, and one mark per contribution, coloured by partner.
use crate::domain::alert::{sector_label, severity_label};
use crate::domain::assistance::state_label;
use crate::domain::envelope::ts_to_ms;
use crate::domain::incident::status_label;
use crate::domain::policy::tlp_label;
use crate::proto::v1::{
    AssistanceState, IncidentStatus, IndicatorType, MessageKind, Nis2Sector, Severity, Situation,
    Tlp,
};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Colour of the severity line (also checked in the screenshot test).
pub const SEVERITY_COLOUR: &str = "#d62728";
/// Colour of the affected-partners line.
pub const PARTNERS_COLOUR: &str = "#1f77b4";
/// Partner marks, in partner order.
const PALETTE: [&str; 10] = [
    "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
    "#393b79", "#637939",
];

/// Text made safe for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "&#x{:X};", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn ts(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref().map(|t| time(ts_to_ms(t))).unwrap_or_default()
}

fn sev(v: i32) -> &'static str {
    match Severity::try_from(v) {
        Ok(Severity::Unspecified) | Err(_) => "-",
        Ok(s) => severity_label(s),
    }
}

fn tlp(v: i32) -> &'static str {
    tlp_label(Tlp::try_from(v).unwrap_or(Tlp::Unspecified))
}

fn tlp_style(v: i32) -> &'static str {
    match Tlp::try_from(v).unwrap_or(Tlp::Unspecified) {
        Tlp::Clear => "background:#fff;color:#000;border:1px solid #000",
        Tlp::Green => "background:#000;color:#33ff00",
        Tlp::Amber | Tlp::AmberStrict => "background:#000;color:#ffc000",
        Tlp::Red => "background:#000;color:#ff2b2b",
        Tlp::Unspecified => "background:#ccc;color:#000",
    }
}

fn sector(v: i32) -> &'static str {
    sector_label(Nis2Sector::try_from(v).unwrap_or(Nis2Sector::Unspecified))
}

fn kind(v: i32) -> &'static str {
    match MessageKind::try_from(v) {
        Ok(MessageKind::Alert) => "alert",
        Ok(MessageKind::Sighting) => "sighting",
        Ok(MessageKind::IncidentStatus) => "status",
        Ok(MessageKind::IncidentLink) => "link",
        Ok(MessageKind::IncidentMerge) => "merge",
        Ok(MessageKind::AssistanceRequest) => "assistance request",
        _ => "other",
    }
}

fn indicator_type(v: i32) -> &'static str {
    match IndicatorType::try_from(v) {
        Ok(IndicatorType::Ip) => "ip",
        Ok(IndicatorType::Cidr) => "cidr",
        Ok(IndicatorType::Domain) => "domain",
        Ok(IndicatorType::Url) => "url",
        Ok(IndicatorType::Email) => "email",
        Ok(IndicatorType::Sha256) => "sha256",
        Ok(IndicatorType::Sha1) => "sha1",
        Ok(IndicatorType::Md5) => "md5",
        Ok(IndicatorType::Cve) => "cve",
        Ok(IndicatorType::Asn) => "asn",
        Ok(IndicatorType::Text) => "text",
        _ => "?",
    }
}

/// The partners of a picture in a fixed order, for colours and the legend.
fn partner_order(s: &Situation) -> Vec<String> {
    let mut p: BTreeSet<String> = s.partners_reporting.iter().cloned().collect();
    p.extend(s.timeline.iter().map(|t| t.partner.clone()));
    p.into_iter().collect()
}

fn colour(partners: &[String], who: &str) -> &'static str {
    let i = partners.iter().position(|p| p == who).unwrap_or(0);
    PALETTE[i % PALETTE.len()]
}

/// The escalation chart as inline SVG.
pub fn chart(s: &Situation) -> String {
    const W: f64 = 960.0;
    const H: f64 = 300.0;
    const L: f64 = 70.0;
    const R: f64 = 60.0;
    const T: f64 = 20.0;
    const B: f64 = 50.0;
    let partners = partner_order(s);
    let times: Vec<i64> = s
        .timeline
        .iter()
        .map(|p| p.at.as_ref().map_or(0, ts_to_ms))
        .collect();
    let t0 = s
        .opened
        .as_ref()
        .map(ts_to_ms)
        .into_iter()
        .chain(times.iter().copied())
        .min()
        .unwrap_or(0);
    let t1 = times.iter().copied().max().unwrap_or(t0).max(t0 + 1);
    let max_partners = s
        .timeline
        .iter()
        .map(|p| p.affected_partners)
        .max()
        .unwrap_or(1)
        .max(1);
    let x = |t: i64| L + (W - L - R) * ((t - t0) as f64 / (t1 - t0) as f64);
    let ys = |v: i32| T + (H - T - B) * (1.0 - f64::from(v.clamp(0, 4)) / 4.0);
    let yp = |n: u32| T + (H - T - B) * (1.0 - f64::from(n) / f64::from(max_partners));
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" id="timeline" role="img" width="{W}" height="{H}" viewBox="0 0 {W} {H}" aria-label="Escalation timeline: severity and affected partners over time">"##
    );
    let _ = write!(
        out,
        r##"<rect x="{L}" y="{T}" width="{}" height="{}" fill="#f8f9fb" stroke="#ccd"/>"##,
        W - L - R,
        H - T - B
    );
    for v in 1..=4 {
        let y = ys(v);
        let _ = write!(
            out,
            r##"<line x1="{L}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e3e6ee"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end" fill="{SEVERITY_COLOUR}">{}</text>"##,
            W - R,
            L - 6.0,
            y + 4.0,
            sev(v)
        );
    }
    let _ = write!(
        out,
        r##"<text x="{}" y="{:.1}" font-size="11" fill="{PARTNERS_COLOUR}">{max_partners}</text><text x="{}" y="{:.1}" font-size="11" fill="{PARTNERS_COLOUR}">0</text>"##,
        W - R + 6.0,
        yp(max_partners) + 4.0,
        W - R + 6.0,
        yp(0) + 4.0
    );
    let _ = write!(
        out,
        r##"<text x="{L}" y="{:.1}" font-size="11" fill="#444">{}</text><text x="{}" y="{:.1}" font-size="11" text-anchor="end" fill="#444">{}</text>"##,
        H - B + 16.0,
        escape(&time(t0)),
        W - R,
        H - B + 16.0,
        escape(&time(t1))
    );
    // Step lines: severity now and affected partners after each contribution.
    let mut sev_pts = String::new();
    let mut par_pts = String::new();
    let mut last: Option<(f64, f64, f64)> = None;
    for (p, t) in s.timeline.iter().zip(&times) {
        let (xx, sy, py) = (x(*t), ys(p.severity_now), yp(p.affected_partners));
        if let Some((_, lsy, lpy)) = last {
            let _ = write!(sev_pts, "{xx:.1},{lsy:.1} ");
            let _ = write!(par_pts, "{xx:.1},{lpy:.1} ");
        }
        let _ = write!(sev_pts, "{xx:.1},{sy:.1} ");
        let _ = write!(par_pts, "{xx:.1},{py:.1} ");
        last = Some((xx, sy, py));
    }
    if let Some((_, sy, py)) = last {
        let _ = write!(sev_pts, "{:.1},{sy:.1}", W - R);
        let _ = write!(par_pts, "{:.1},{py:.1}", W - R);
    }
    let _ = write!(
        out,
        r##"<polyline class="severity" points="{sev_pts}" fill="none" stroke="{SEVERITY_COLOUR}" stroke-width="4"/><polyline class="partners" points="{par_pts}" fill="none" stroke="{PARTNERS_COLOUR}" stroke-width="4" stroke-dasharray="10 4"/>"##
    );
    // One mark per contribution, by partner, at the severity it stated (or
    // the incident's severity then, when it stated none).
    for (p, t) in s.timeline.iter().zip(&times) {
        let level = if p.severity != 0 {
            p.severity
        } else {
            p.severity_now
        };
        let _ = write!(
            out,
            r##"<circle class="mark" cx="{:.1}" cy="{:.1}" r="8" fill="{}" stroke="#fff" stroke-width="2"><title>{} {} — {} ({})</title></circle>"##,
            x(*t),
            ys(level),
            colour(&partners, &p.partner),
            escape(&ts(&p.at)),
            escape(&p.partner),
            escape(&p.summary),
            kind(p.kind)
        );
    }
    // Legend.
    let mut lx = L;
    let ly = H - 14.0;
    for (label, col, dash) in [
        ("severity", SEVERITY_COLOUR, ""),
        (
            "affected partners",
            PARTNERS_COLOUR,
            r#" stroke-dasharray="10 4""#,
        ),
    ] {
        let _ = write!(
            out,
            r##"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{col}" stroke-width="4"{dash}/><text x="{}" y="{}" font-size="12" fill="#222">{label}</text>"##,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0
        );
        lx += 150.0;
    }
    for p in &partners {
        let _ = write!(
            out,
            r##"<circle cx="{}" cy="{ly}" r="6" fill="{}"/><text x="{}" y="{}" font-size="12" fill="#222">{}</text>"##,
            lx + 6.0,
            colour(&partners, p),
            lx + 16.0,
            ly + 4.0,
            escape(p)
        );
        lx += 24.0 + 8.0 * p.chars().count().min(24) as f64;
    }
    out.push_str("</svg>");
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#1b1e24;background:#fff}\
h1{font-size:22px;margin:0 0 6px}h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #dde}\
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #d5d8e0;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#eef0f5}.tlp{display:inline-block;padding:2px 8px;font-weight:bold;font-family:monospace}\
.meta td{border:none;padding:2px 12px 2px 0}.mono{font-family:monospace;word-break:break-all}\
.none{color:#777;font-style:italic}.yes{text-align:center;font-weight:bold}";

/// The whole page.
pub fn render(s: &Situation, node: &str, generated_ms: i64) -> String {
    let mut h = String::new();
    let title = if s.title.is_empty() {
        format!("Incident {}", s.incident_id)
    } else {
        s.title.clone()
    };
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{}{} — situation report</title><style>{STYLE}</style></head><body>
{}<h1>{}</h1>"#,
        if s.exercise { "EXERCISE — " } else { "" },
        escape(&title),
        if s.exercise {
            "<p id=\"exercise\" style=\"background:#ffd200;color:#000;font-weight:bold;padding:.4em\">EXERCISE — this incident was opened by exercise traffic; it is not a real incident.</p>\n"
        } else {
            ""
        },
        escape(&title)
    );
    let status = IncidentStatus::try_from(s.status).unwrap_or(IncidentStatus::Open);
    let _ = write!(
        h,
        r#"<p><span class="tlp" style="{}">{}</span> status <b>{}</b>{} · severity <b>{}</b> · opened {} by {} · updated {}</p>"#,
        tlp_style(s.tlp),
        tlp(s.tlp),
        status_label(status),
        if s.status_note.is_empty() {
            String::new()
        } else {
            format!(" ({})", escape(&s.status_note))
        },
        sev(s.severity),
        escape(&ts(&s.opened)),
        escape(&s.opener),
        escape(&ts(&s.updated))
    );
    let list = |v: &[String]| {
        if v.is_empty() {
            "<span class=\"none\">none</span>".to_string()
        } else {
            escape(&v.join(", "))
        }
    };
    let sectors: Vec<String> = s.sectors.iter().map(|x| sector(*x).to_string()).collect();
    let _ = write!(
        h,
        r#"<table class="meta"><tr><td>Incident</td><td class="mono">{}</td></tr>
<tr><td>Partners affected</td><td>{} ({})</td></tr>
<tr><td>Partners reporting</td><td>{}</td></tr>
<tr><td>Countries</td><td>{}</td></tr><tr><td>Sectors</td><td>{}</td></tr>
<tr><td>Readable contributions</td><td>{}</td></tr></table>"#,
        escape(&s.incident_id),
        s.partners_affected.len(),
        list(&s.partners_affected),
        list(&s.partners_reporting),
        list(&s.countries),
        list(&sectors),
        s.contributions
    );
    if !s.merged.is_empty() || !s.parts.is_empty() || !s.part_of.is_empty() {
        let _ = write!(
            h,
            "<p>Merged: {} · parts: {} · part of: {}</p>",
            list(&s.merged),
            list(&s.parts),
            list(&s.part_of)
        );
    }

    h.push_str("<h2>Escalation timeline</h2>");
    h.push_str(&chart(s));
    h.push_str("<table><tr><th>time</th><th>partner</th><th>kind</th><th>TLP</th><th>severity stated</th><th>severity then</th><th>affected partners</th><th>what</th></tr>");
    for p in &s.timeline {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&ts(&p.at)),
            escape(&p.partner),
            kind(p.kind),
            tlp(p.tlp),
            sev(p.severity),
            sev(p.severity_now),
            p.affected_partners,
            escape(&p.summary)
        );
    }
    h.push_str("</table>");

    h.push_str("<h2>Partners × sectors</h2>");
    let cols: Vec<i32> = s.sectors.clone();
    h.push_str("<table><tr><th>partner</th>");
    for c in &cols {
        let _ = write!(h, "<th>{}</th>", sector(*c));
    }
    h.push_str("<th>countries</th><th>contributions</th></tr>");
    for p in &s.partners {
        let _ = write!(h, "<tr><td>{}</td>", escape(&p.partner));
        for c in &cols {
            let mark = if p.sectors.contains(c) { "●" } else { "" };
            let _ = write!(h, "<td class=\"yes\">{mark}</td>");
        }
        let _ = write!(
            h,
            "<td>{}</td><td>{}</td></tr>",
            escape(&p.countries.join(", ")),
            p.contributions
        );
    }
    h.push_str("</table>");

    h.push_str("<h2>Indicators</h2>");
    if s.indicators.is_empty() {
        h.push_str("<p class=\"none\">none</p>");
    } else {
        h.push_str("<table><tr><th>type</th><th>value</th><th>partners</th><th>seen by</th><th>observations</th><th>first seen</th><th>last seen</th></tr>");
        for i in &s.indicators {
            let ind = i.indicator.clone().unwrap_or_default();
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                indicator_type(ind.r#type),
                escape(&ind.value),
                i.partners.len(),
                escape(&i.partners.join(", ")),
                i.observations,
                escape(&ts(&i.first_seen)),
                escape(&ts(&i.last_seen))
            );
        }
        h.push_str("</table>");
    }

    h.push_str("<h2>Assistance requests</h2>");
    if s.assistance.is_empty() {
        h.push_str("<p class=\"none\">none linked</p>");
    } else {
        h.push_str(
            "<table><tr><th>request</th><th>requester</th><th>title</th><th>state</th></tr>",
        );
        for a in &s.assistance {
            let state = AssistanceState::try_from(a.state).unwrap_or(AssistanceState::Unspecified);
            let _ = write!(
                h,
                "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&a.request_id),
                escape(&a.requester),
                if a.title.is_empty() {
                    "<span class=\"none\">not readable here</span>".to_string()
                } else {
                    escape(&a.title)
                },
                if state == AssistanceState::Unspecified {
                    "-"
                } else {
                    state_label(state)
                }
            );
        }
        h.push_str("</table>");
    }

    h.push_str("<h2>Known only to others</h2>");
    if s.restricted.is_empty() {
        h.push_str("<p class=\"none\">nothing: this node reads every contribution it holds</p>");
    } else {
        h.push_str("<p>Contributions this node holds but cannot read (counts only, never content):</p><table><tr><th>origin</th><th>kind</th><th>TLP</th><th>count</th></tr>");
        for r in &s.restricted {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&r.origin),
                kind(r.kind),
                tlp(r.tlp),
                r.count
            );
        }
        h.push_str("</table>");
    }
    if !s.refused.is_empty() {
        h.push_str("<h2>Refused contributions</h2><table><tr><th>message</th><th>origin</th><th>kind</th><th>reason</th></tr>");
        for r in &s.refused {
            let _ = write!(
                h,
                "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&r.message_id),
                escape(&r.origin),
                kind(r.kind),
                escape(&r.reason)
            );
        }
        h.push_str("</table>");
    }
    if s.truncated {
        h.push_str("<p class=\"none\">The picture was too large for one answer: the oldest timeline points and the least-seen indicators are left out.</p>");
    }
    let _ = writeln!(
        h,
        "<p style=\"margin-top:28px;color:#666;font-size:12px\">Picture of node {} at {} · digest <span class=\"mono\">{}</span> (equal on every node holding the same contributions) · generated by certfed {}</p></body></html>",
        escape(node),
        escape(&time(generated_ms)),
        escape(&s.digest),
        env!("CARGO_PKG_VERSION")
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::envelope::ms_to_ts;
    use crate::proto::v1::TimelinePoint;

    fn hostile() -> Situation {
        Situation {
            incident_id: "<script>alert(1)</script>".into(),
            title: "Grid \"wiper\" <img src=x onerror=alert(1)> & co".into(),
            opener: "a".into(),
            tlp: Tlp::Green as i32,
            opened: Some(ms_to_ts(1_000)),
            partners_reporting: vec!["a".into(), "b<b>".into()],
            timeline: vec![
                TimelinePoint {
                    at: Some(ms_to_ts(1_000)),
                    partner: "a".into(),
                    severity_now: 3,
                    affected_partners: 1,
                    summary: "</title><script>x</script>".into(),
                    ..Default::default()
                },
                TimelinePoint {
                    at: Some(ms_to_ts(5_000)),
                    partner: "b<b>".into(),
                    severity: 4,
                    severity_now: 4,
                    affected_partners: 2,
                    summary: "'quoted'".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn partner_text_is_escaped_everywhere() {
        let page = render(&hostile(), "node-a", 0);
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        // The page's own markup uses <b>; the partner named "b<b>" must not.
        assert!(!page.contains("b<b>"), "{page}");
        assert!(page.contains("b&lt;b&gt;"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("&#39;quoted&#39;"));
    }

    #[test]
    fn self_contained_and_deterministic() {
        let page = render(&hostile(), "node-a", 0);
        assert_eq!(page, render(&hostile(), "node-a", 0));
        assert!(page.contains("default-src 'none'"));
        for bad in [
            "<script",
            "<link",
            "src=\"http",
            "href=\"http",
            "url(",
            "@import",
        ] {
            assert!(!page.contains(bad), "{bad} in the page");
        }
        // One mark per contribution.
        assert_eq!(page.matches("class=\"mark\"").count(), 2);
    }
}
