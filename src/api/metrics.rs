//! `/metrics` over plain HTTP/1.1 on `metrics.listen`: refreshes the gauges
//! that are read from the store (outbox depths, assistance requests by state)
//! and serves the registry of `service::metrics`.
use crate::service::assistance::count_by_state;
use crate::service::metrics::StateLabel;
use crate::service::node::Node;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Updates the gauges that are read from the store.
async fn refresh(node: &Node) {
    if let Ok(counts) = count_by_state(node).await {
        for (state, n) in counts {
            node.metrics
                .assistance
                .get_or_create(&StateLabel {
                    state: state.to_string(),
                })
                .set(n);
        }
    }
    if let Ok(depths) = node.store.outbox_depths().await {
        node.metrics.set_outbox_depths(&depths);
    }
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
                            hyper::Response::builder()
                                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                                .body(Full::new(Bytes::from(node.metrics.encode())))
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
