//! The read-only TAXII 2.1 server on `taxii.listen`: HTTPS (HTTP/1.1) with
//! mutual TLS, the same certificates and CRLs as the gRPC port.
//!
//! Endpoints (TAXII 2.1, section 4): discovery `GET /taxii2/`, API root
//! `GET /certfed/`, `GET /certfed/collections/`, `GET
//! /certfed/collections/{id}/`, `…/objects/` (with `added_after`, `limit`,
//! `next`, `match[id|type|version|spec_version]`), `…/objects/{object-id}/`,
//! `…/objects/{object-id}/versions/` and `…/manifest/`.
//!
//! Invariants:
//! - Only operator certificates (the identities the Operator API accepts) are
//!   served; a node certificate gets 403 on every endpoint, a connection
//!   without a valid client certificate never completes its handshake.
//! - Collections are the TLP levels up to `taxii.max_tlp`; what they hold is
//!   decided by `service::exchange` (readable, current, real alerts only).
//! - Read-only: POST and DELETE on a collection are 403 (`can_write` is
//!   false), other methods 405. Every answer, errors included, is
//!   `application/taxii+json;version=2.1`; errors are TAXII error messages.
//!   A client that accepts neither that nor `*/*` gets 406.
//! - Objects, manifest and versions answers carry `X-TAXII-Date-Added-First`
//!   and `X-TAXII-Date-Added-Last` when they hold anything.
//! - Slow clients cannot hold the listener: the handshake and the request
//!   headers have timeouts, and a connection lives at most
//!   `tls.max_connection_age_secs`.
use crate::domain::exchange::{
    API_ROOT_PATH, Collection, Page, Refused, TAXII_MEDIA_TYPE, api_root, collection_json,
    collections, discovery, error_json, parse_query,
};
use crate::domain::identity::Identity;
use crate::service::exchange::taxii_page;
use crate::service::node::Node;
use crate::transport::server::{PeerInfo, TlsConn};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::transport::server::Connected;

/// Time a client has to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, body: &Value) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(TAXII_MEDIA_TYPE),
    );
    r
}

fn error(status: StatusCode, title: &str, description: &str) -> Answer {
    answer(
        status,
        &error_json(
            status.as_u16(),
            title,
            &crate::api::error::bounded(description.to_string()),
        ),
    )
}

fn refused(r: Refused) -> Answer {
    error(
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
        r.title,
        &r.description,
    )
}

/// Whether the Accept header allows the TAXII media type (absent: yes).
fn acceptable(req: &Request<hyper::body::Incoming>) -> bool {
    let Some(v) = req.headers().get(hyper::header::ACCEPT) else {
        return true;
    };
    let Ok(v) = v.to_str() else { return false };
    v.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let ty = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: Vec<String> = parts
            .map(|p| p.replace(' ', "").to_ascii_lowercase())
            .collect();
        match ty.as_str() {
            "*/*" | "application/*" => true,
            "application/taxii+json" => params
                .iter()
                .filter(|p| p.starts_with("version="))
                .all(|p| p == "version=2.1"),
            _ => false,
        }
    })
}

/// The `https://host:port` a client reached us as (for absolute URLs).
fn base_url(req: &Request<hyper::body::Incoming>, fallback: &str) -> String {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or(fallback);
    format!("https://{host}")
}

fn with_window(mut r: Answer, page: &Page) -> Answer {
    if let Some((first, last)) = page.window() {
        for (name, v) in [
            ("x-taxii-date-added-first", first),
            ("x-taxii-date-added-last", last),
        ] {
            if let Ok(v) = hyper::header::HeaderValue::from_str(&v) {
                r.headers_mut().insert(name, v);
            }
        }
    }
    r
}

/// What the server needs to answer.
pub struct Taxii {
    pub node: Arc<Node>,
    /// The collections served (levels up to `taxii.max_tlp`).
    pub collections: Vec<Collection>,
    /// The listen address, for absolute URLs when a client sends no Host.
    pub listen: String,
}

impl Taxii {
    /// The server of `node`, listening on `listen`.
    pub fn new(node: Arc<Node>, listen: String) -> Taxii {
        let collections = collections(node.cfg.taxii.max_tlp);
        Taxii {
            node,
            collections,
            listen,
        }
    }

    async fn handle(&self, who: &Identity, req: Request<hyper::body::Incoming>) -> Answer {
        if let Identity::Node(n) = who {
            return error(
                StatusCode::FORBIDDEN,
                "operator certificate required",
                &format!(
                    "this TAXII server is for the operators of {} (operator certificates, as the Operator API); the node certificate of {n} may not read it",
                    self.node.id
                ),
            );
        }
        if !acceptable(&req) {
            return error(
                StatusCode::NOT_ACCEPTABLE,
                "not acceptable",
                &format!(
                    "this server answers in {TAXII_MEDIA_TYPE}; send Accept: {TAXII_MEDIA_TYPE}"
                ),
            );
        }
        let path = req.uri().path().to_string();
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let root = API_ROOT_PATH.trim_matches('/');
        let method = req.method().clone();
        let write = matches!(
            method,
            Method::POST | Method::PUT | Method::DELETE | Method::PATCH
        );
        if write
            && segs.len() >= 4
            && segs[0] == root
            && segs[1] == "collections"
            && segs[3] == "objects"
        {
            return error(
                StatusCode::FORBIDDEN,
                "read-only collection",
                "certfed collections are read-only (can_write is false): publish alerts with certfed alert publish or certfed alert import",
            );
        }
        if method != Method::GET && method != Method::HEAD {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
                &format!("{method} is not supported: this TAXII server is read-only (GET)"),
            );
        }
        let query: Vec<(String, String)> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        match segs.as_slice() {
            ["taxii2"] => answer(
                StatusCode::OK,
                &discovery(&base_url(&req, &self.listen), &self.node.id),
            ),
            [r] if *r == root => answer(StatusCode::OK, &api_root(&self.node.id)),
            [r, "collections"] if *r == root => {
                let list: Vec<Value> = self
                    .collections
                    .iter()
                    .map(|c| collection_json(c, &self.node.id))
                    .collect();
                answer(StatusCode::OK, &json!({ "collections": list }))
            }
            [r, "collections", id, rest @ ..] if *r == root => {
                let Some(c) = self.collections.iter().find(|c| c.id == *id) else {
                    return error(
                        StatusCode::NOT_FOUND,
                        "no such collection",
                        &format!(
                            "no collection {} here; list them at {API_ROOT_PATH}collections/",
                            crate::domain::text::quote(id)
                        ),
                    );
                };
                self.collection(c, rest, &query).await
            }
            [r, "status", ..] if *r == root => error(
                StatusCode::NOT_FOUND,
                "no such status",
                "this server is read-only and has no status resources",
            ),
            _ => error(
                StatusCode::NOT_FOUND,
                "not found",
                &format!(
                    "no TAXII resource at {}; discovery is at /taxii2/",
                    crate::domain::text::quote(&path)
                ),
            ),
        }
    }

    async fn collection(
        &self,
        c: &Collection,
        rest: &[&str],
        params: &[(String, String)],
    ) -> Answer {
        let parse = |extra: Option<(&str, &str)>| {
            parse_query(
                params
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .chain(extra),
            )
        };
        let page = |q| async move { taxii_page(&self.node, c.tlp, q).await };
        let failed = |e: crate::storage::StoreError| {
            tracing::warn!(error = %e, "TAXII: reading the store failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store unavailable",
                "the node could not read its store; retry later",
            )
        };
        match rest {
            [] => answer(StatusCode::OK, &collection_json(c, &self.node.id)),
            ["objects"] | ["manifest"] => {
                let q = match parse(None) {
                    Ok(q) => q,
                    Err(r) => return refused(r),
                };
                match page(q).await {
                    Ok(p) => {
                        let body = if rest == ["objects"] {
                            p.envelope()
                        } else {
                            p.manifest()
                        };
                        with_window(answer(StatusCode::OK, &body), &p)
                    }
                    Err(e) => failed(e),
                }
            }
            ["objects", id] | ["objects", id, "versions"] => {
                let q = match parse(Some(("match[id]", id))) {
                    Ok(q) => q,
                    Err(r) => return refused(r),
                };
                match page(q).await {
                    Ok(p) if p.objects.is_empty() && !p.more() => error(
                        StatusCode::NOT_FOUND,
                        "no such object",
                        &format!(
                            "no object {} in this collection",
                            crate::domain::text::quote(id)
                        ),
                    ),
                    Ok(p) => {
                        let body = if rest.len() == 2 {
                            p.envelope()
                        } else {
                            p.versions()
                        };
                        with_window(answer(StatusCode::OK, &body), &p)
                    }
                    Err(e) => failed(e),
                }
            }
            _ => error(
                StatusCode::NOT_FOUND,
                "not found",
                "no such resource in a collection",
            ),
        }
    }
}

/// Serves TAXII on the connections `incoming` delivers until the node stops.
pub async fn serve(
    mut incoming: mpsc::Receiver<Result<TlsConn<Identity>, std::io::Error>>,
    taxii: Arc<Taxii>,
) {
    let shutdown = taxii.node.shutdown.clone();
    let max_age = taxii.node.cfg.tls.max_connection_age();
    loop {
        let conn = tokio::select! {
            c = incoming.recv() => c,
            _ = shutdown.cancelled() => return,
        };
        let Some(Ok(conn)) = conn else {
            match conn {
                None => return,
                Some(_) => continue,
            }
        };
        let PeerInfo { identity, addr, .. } = conn.connect_info();
        let taxii = taxii.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let taxii = taxii.clone();
                let identity = identity.clone();
                async move {
                    let head = req.method() == Method::HEAD;
                    let mut r = taxii.handle(&identity, req).await;
                    if head {
                        *r.body_mut() = Full::new(Bytes::new());
                    }
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(conn), svc);
            tokio::select! {
                r = served => {
                    if let Err(e) = r {
                        tracing::debug!(%addr, error = %e, "TAXII connection ended");
                    }
                }
                _ = tokio::time::sleep(max_age) => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bounded_error_text() {
        let long = "x".repeat(5000);
        let r = super::error(hyper::StatusCode::NOT_FOUND, "t", &long);
        assert_eq!(r.status(), 404);
    }
}
