//! The exercise report as one self-contained HTML page (and the file names of
//! a run's outputs): who knew what when (inject × partner matrix), time to
//! shared awareness per inject, the assistance timeline, the scored
//! expectations and an SVG timeline chart.
//!
//! Invariants (as `app::report`, the incident situation report):
//! - Self-contained: no script, no external asset; a Content-Security-Policy of
//!   `default-src 'none'` (styles inline) says so to the browser.
//! - Everything from the scenario or the nodes (titles, names, ids, reasons)
//!   is HTML-escaped (`app::report::escape`).
//! - Deterministic: the same report gives the same bytes.
//! - Times are scenario times (`domain::exercise::score`): since the start of
//!   the run, or since an inject was sent, times the speed factor.
use crate::app::report::escape;
use crate::domain::exercise::score::{Report, human};
use std::fmt::Write as _;

/// Colour of an inject being sent (chart), also checked in the browser test.
pub const SENT_COLOUR: &str = "#d62728";
/// Colour of an inject stored at a partner.
pub const STORED_COLOUR: &str = "#1f77b4";
/// Colour of an acknowledgement.
pub const ACK_COLOUR: &str = "#2ca02c";

fn scaled(r: &Report, ms: i64) -> u64 {
    let speed = if r.record.speed > 0.0 {
        r.record.speed
    } else {
        1.0
    };
    (ms.max(0) as f64 * speed).round() as u64
}

/// The timeline chart: one row per participant, x = scenario time since the
/// start; a red diamond where a participant sent an inject, a blue dot where
/// an inject was stored at it, a green square where it was acknowledged.
pub fn chart(r: &Report) -> String {
    let rec = &r.record;
    let t0 = rec.started_ms;
    let mut end = 1u64;
    for i in &rec.injects {
        if let Some(s) = i.sent_ms {
            end = end.max(scaled(r, s - t0));
        }
        for s in &i.seen {
            for t in [s.stored_ms, s.acknowledged_ms].into_iter().flatten() {
                end = end.max(scaled(r, t - t0));
            }
        }
    }
    let (left, top, width, row) = (180.0, 30.0, 880.0, 36.0);
    let height = top + row * rec.participants.len() as f64 + 40.0;
    let x = |ms: u64| left + width * ms as f64 / end as f64;
    let y = |p: &str| {
        let i = rec
            .participants
            .iter()
            .position(|(id, _)| id == p)
            .unwrap_or(0);
        top + row * i as f64 + row / 2.0
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" viewBox="0 0 {w} {height}" role="img" aria-label="exercise timeline">"#,
        w = left + width + 40.0
    );
    for (id, name) in &rec.participants {
        let yy = y(id);
        let _ = write!(
            s,
            r##"<text x="{tx}" y="{ty}" font-size="13" text-anchor="end" font-family="sans-serif">{n}</text><line x1="{left}" y1="{yy}" x2="{x2}" y2="{yy}" stroke="#ccc"/>"##,
            tx = left - 10.0,
            ty = yy + 4.0,
            n = escape(name),
            x2 = left + width
        );
    }
    // Axis with five ticks.
    let axis_y = top + row * rec.participants.len() as f64 + 10.0;
    for k in 0..=4u64 {
        let ms = end * k / 4;
        let _ = write!(
            s,
            r##"<text x="{xx}" y="{ty}" font-size="11" text-anchor="middle" font-family="sans-serif" fill="#555">{t}</text>"##,
            xx = x(ms),
            ty = axis_y + 14.0,
            t = human(ms)
        );
    }
    for i in &rec.injects {
        let Some(sent) = i.sent_ms else { continue };
        let (sx, sy) = (x(scaled(r, sent - t0)), y(&i.from));
        for seen in &i.seen {
            if let Some(t) = seen.stored_ms {
                let (px, py) = (x(scaled(r, t - t0)), y(&seen.node));
                let _ = write!(
                    s,
                    r#"<line x1="{sx:.1}" y1="{sy:.1}" x2="{px:.1}" y2="{py:.1}" stroke="{STORED_COLOUR}" stroke-opacity="0.25"/><circle cx="{px:.1}" cy="{py:.1}" r="6" fill="{STORED_COLOUR}"><title>{t}</title></circle>"#,
                    t = escape(&format!("{} stored at {}", i.id, seen.node))
                );
            }
            if let Some(t) = seen.acknowledged_ms {
                let (px, py) = (x(scaled(r, t - t0)), y(&seen.node));
                let _ = write!(
                    s,
                    r#"<rect x="{:.1}" y="{:.1}" width="11" height="11" fill="{ACK_COLOUR}"><title>{t}</title></rect>"#,
                    px - 5.5,
                    py - 5.5,
                    t = escape(&format!("{} acknowledged at {}", i.id, seen.node))
                );
            }
        }
        let _ = write!(
            s,
            r#"<polygon points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="{SENT_COLOUR}"><title>{t}</title></polygon>"#,
            sx,
            sy - 9.0,
            sx + 9.0,
            sy,
            sx,
            sy + 9.0,
            sx - 9.0,
            sy,
            t = escape(&format!("{} sent by {}: {}", i.id, i.from, i.summary))
        );
    }
    s.push_str("</svg>");
    s
}

/// The whole page.
pub fn render(r: &Report) -> String {
    let rec = &r.record;
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'"><title>Exercise report: {name}</title><style>
body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;margin:8px 0 20px}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:left;vertical-align:top}}th{{background:#f3f3f3}}.met{{color:#1a7f37;font-weight:bold}}.missed{{color:#b42318;font-weight:bold}}.never{{color:#b42318}}.muted{{color:#777}}.legend span{{margin-right:16px}}
</style></head><body><h1>Exercise report: {name}</h1><p>{desc}</p><p class="muted">{mode} run at {speed}× speed, started {start}; times are scenario times (wall-clock × speed). Every inject was exercise traffic.</p>"#,
        name = escape(&rec.scenario),
        desc = escape(&rec.description),
        mode = escape(&rec.mode),
        speed = rec.speed,
        start = crate::domain::text::rfc3339_ms(rec.started_ms),
    );

    let met = r.outcomes.iter().filter(|o| o.met).count();
    let _ = write!(
        h,
        "<h2>Expected outcomes: {met} of {} met</h2><table><tr><th>outcome</th><th>expected</th><th>inject</th><th>within</th><th>measured</th><th>result</th></tr>",
        r.outcomes.len()
    );
    for o in &r.outcomes {
        let result = if o.met {
            "<span class=\"met\">met</span>".to_string()
        } else {
            match o.missed_by_ms {
                Some(by) => format!("<span class=\"missed\">missed by {}</span>", human(by)),
                None => format!("<span class=\"missed\">missed</span>: {}", escape(&o.why)),
            }
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{result}</td></tr>",
            escape(&o.id),
            escape(&o.text),
            escape(&o.what),
            escape(&o.inject),
            human(o.within_ms),
            o.measured_ms.map_or("—".to_string(), human),
        );
    }
    h.push_str("</table>");

    let _ = write!(
        h,
        "<h2>Timeline</h2><p class=\"legend\"><span style=\"color:{SENT_COLOUR}\">◆ inject sent</span><span style=\"color:{STORED_COLOUR}\">● stored at a partner</span><span style=\"color:{ACK_COLOUR}\">■ acknowledged</span></p>{}",
        chart(r)
    );

    h.push_str("<h2>Time to shared awareness</h2><table><tr><th>inject</th><th>kind</th><th>from</th><th>at</th><th>every partner stored it</th><th>every partner acknowledged it</th></tr>");
    for (i, a) in rec.injects.iter().zip(&r.awareness) {
        let cell = |v: Option<u64>, never: &[String]| match v {
            Some(ms) => format!("after {}", human(ms)),
            None if i.sent_ms.is_none() => format!(
                "<span class=\"never\">not sent: {}</span>",
                escape(i.error.as_deref().unwrap_or(""))
            ),
            None => format!(
                "<span class=\"never\">never at {}</span>",
                escape(&never.join(", "))
            ),
        };
        let _ = write!(
            h,
            "<tr><td>{}<br><span class=\"muted\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&i.id),
            escape(&i.summary),
            escape(&i.kind),
            escape(&i.from),
            human(i.offset_ms),
            cell(a.all_stored_ms, &a.never_stored),
            cell(a.all_acknowledged_ms, &a.never_acknowledged),
        );
    }
    h.push_str("</table>");

    h.push_str("<h2>Who knew what, when</h2><p class=\"muted\">Stored / acknowledged at each partner, after the inject was sent.</p><table><tr><th>inject</th>");
    for (_, name) in &rec.participants {
        let _ = write!(h, "<th>{}</th>", escape(name));
    }
    h.push_str("</tr>");
    for i in &rec.injects {
        let _ = write!(h, "<tr><td>{}</td>", escape(&i.id));
        for (id, _) in &rec.participants {
            let cell = if *id == i.from {
                "<span class=\"muted\">sender</span>".to_string()
            } else if let Some(seen) = i.seen.iter().find(|s| s.node == *id) {
                let at = |t: Option<i64>| match (t, i.sent_ms) {
                    (Some(t), Some(sent)) => human(scaled(r, t - sent)),
                    _ => "—".to_string(),
                };
                format!("{} / {}", at(seen.stored_ms), at(seen.acknowledged_ms))
            } else if i.eligible.contains(id) {
                "<span class=\"never\">—</span>".to_string()
            } else {
                "<span class=\"muted\">not a recipient</span>".to_string()
            };
            let _ = write!(h, "<td>{cell}</td>");
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");

    h.push_str("<h2>Assistance</h2>");
    if rec.assistance.is_empty() {
        h.push_str("<p class=\"muted\">No assistance request in this run.</p>");
    }
    for a in &rec.assistance {
        let _ = write!(
            h,
            "<h3>{} <span class=\"muted\">({})</span></h3><table><tr><th>at</th><th>by</th><th>step</th><th>request state</th></tr>",
            escape(&a.inject),
            escape(&a.request_id)
        );
        for m in &a.milestones {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                human(scaled(r, m.at_ms - rec.started_ms)),
                escape(&m.actor),
                escape(&m.action),
                escape(&m.state)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    h
}

/// File stem of a run's outputs: `exercise-<scenario>-<UTC time>`, the
/// scenario name reduced to `[a-z0-9-]`.
pub fn stem(scenario: &str, started_ms: i64) -> String {
    let mut slug: String = scenario
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while slug.contains("--") {
        slug = slug.replace("--", "-");
    }
    let slug: String = slug.trim_matches('-').chars().take(40).collect();
    let t = crate::domain::text::rfc3339_ms(started_ms)
        .replace([':', '.'], "")
        .replace('-', "");
    format!("exercise-{slug}-{t}")
}
