//! `/metrics` over plain HTTP/1.1 on `metrics.listen`: refreshes the gauges
//! that are read from the store (outbox depths, assistance requests by state)
//! and serves the registry of `service::metrics`.
//!
//! Invariants:
//! - Content negotiation: a scraper that accepts OpenMetrics
//!   (`Accept: application/openmetrics-text`, as Prometheus sends) gets
//!   OpenMetrics 1.0.0 with that content type; anyone else (curl, promtool)
//!   gets the Prometheus text format 0.0.4 as `text/plain; version=0.0.4`.
//!   The body always matches its declared type.
//! - A scrape's cost does not grow with history: outbox depths are one
//!   grouped query, and assistance counts are materialised — only threads that
//!   received a step since the last scrape are replayed (every request once,
//!   at the first scrape after start).
//! - Gauges read from the store keep their last value when the store fails;
//!   the failure is counted in `certfed_storage_errors_total`.
use crate::domain::assistance::state_label;
use crate::proto::v1::{AssistanceState, MessageKind};
use crate::service::assistance::load;
use crate::service::metrics::StateLabel;
use crate::service::node::Node;
use crate::storage::StoreError;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::net::TcpListener;

/// OpenMetrics content type (the body prometheus-client encodes).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus text format 0.0.4 content type.
pub const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every assistance state the gauge shows, at 0 when no request is in it.
const STATES: [AssistanceState; 7] = [
    AssistanceState::Requested,
    AssistanceState::Offered,
    AssistanceState::Accepted,
    AssistanceState::Deployed,
    AssistanceState::Completed,
    AssistanceState::Closed,
    AssistanceState::Withdrawn,
];

/// Replays the threads touched since the last scrape (every request on the
/// first scrape) and publishes the counts.
async fn refresh_assistance(node: &Node) -> Result<(), StoreError> {
    let (seeded, touched) = {
        let mut c = node
            .metrics
            .assistance_counts
            .lock()
            .expect("assistance counts lock");
        (c.seeded, std::mem::take(&mut c.touched))
    };
    let mut ids: Vec<String> = touched.into_iter().collect();
    if !seeded {
        let mut before = 0;
        loop {
            let page = node
                .store
                .by_kind(MessageKind::AssistanceRequest as i32, before, 1000)
                .await?;
            let Some(last) = page.last() else { break };
            before = last.cursor;
            ids.extend(page.into_iter().map(|m| m.message_id));
        }
    }
    let mut states = Vec::with_capacity(ids.len());
    for id in &ids {
        match load(node, id).await {
            // Exercise requests are not real work: never counted.
            Ok(Some((a, _))) if !a.exercise => {
                states.push((id.clone(), Some(state_label(a.state))))
            }
            Ok(_) => states.push((id.clone(), None)),
            Err(e) => {
                // Try these again at the next scrape.
                let mut c = node.metrics.assistance_counts.lock().expect("lock");
                c.touched.extend(ids);
                return Err(e);
            }
        }
    }
    let by_state = {
        let mut c = node.metrics.assistance_counts.lock().expect("lock");
        for (id, s) in states {
            match s {
                Some(s) => {
                    c.states.insert(id, s);
                }
                None => {
                    c.states.remove(&id);
                }
            }
        }
        c.seeded = true;
        c.by_state()
    };
    for s in STATES {
        let label = state_label(s);
        node.metrics
            .assistance
            .get_or_create(&StateLabel {
                state: label.to_string(),
            })
            .set(by_state.get(label).copied().unwrap_or(0));
    }
    Ok(())
}

/// Updates the gauges that are read from the store.
async fn refresh(node: &Node) {
    let started = std::time::Instant::now();
    if let Err(e) = refresh_assistance(node).await {
        node.metrics.storage_error(&e);
    }
    match node.store.outbox_depths().await {
        Ok(depths) => node.metrics.set_outbox_depths(&depths),
        Err(e) => node.metrics.storage_error(&e),
    }
    node.metrics
        .scrape_seconds
        .set(started.elapsed().as_secs_f64());
}

/// Whether the client's `Accept` header takes OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let mut it = part.split(';');
            let media = it.next().unwrap_or("").trim();
            let q_zero = it.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !q_zero
        })
    })
}

/// Rewrites an OpenMetrics exposition as Prometheus text format 0.0.4: counter
/// families are named with their `_total` suffix in `# HELP`/`# TYPE`,
/// `# UNIT` lines, `_created` samples and `# EOF` are dropped. Everything else
/// (gauges, histograms, label escaping) is the same in both formats.
pub fn to_text_004(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        if let Some(r) = renamed {
            out.push_str(&r);
        } else {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            if name
                .strip_suffix("_created")
                .is_some_and(|n| counters.contains(n))
            {
                continue;
            }
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Serves `/metrics` until the node stops.
pub async fn serve(listener: TcpListener, node: Arc<Node>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = node.shutdown.cancelled() => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let node = node.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let node = node.clone();
                    async move {
                        if req.uri().path() == "/metrics" {
                            refresh(&node).await;
                            let accept = req
                                .headers()
                                .get(hyper::header::ACCEPT)
                                .and_then(|v| v.to_str().ok());
                            let body = node.metrics.encode();
                            let (ctype, body) = if wants_openmetrics(accept) {
                                (OPENMETRICS, body)
                            } else {
                                (TEXT_004, to_text_004(&body))
                            };
                            hyper::Response::builder()
                                .header("content-type", ctype)
                                .body(Full::new(Bytes::from(body)))
                        } else {
                            hyper::Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::from_static(b"not found: try /metrics\n")))
                        }
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text;q=0, text/plain"
        )));
    }

    #[test]
    fn text_004_names_counters_with_total() {
        let om = "# HELP certfed_x Things.\n# TYPE certfed_x counter\ncertfed_x_total 3\ncertfed_x_created 1.0\n# HELP g G.\n# TYPE g gauge\n# UNIT g seconds\ng 1\n# EOF\n";
        let t = to_text_004(om);
        assert_eq!(
            t,
            "# HELP certfed_x_total Things.\n# TYPE certfed_x_total counter\ncertfed_x_total 3\n# HELP g G.\n# TYPE g gauge\ng 1\n"
        );
    }
}
