//! A connection flood from one address: 2,000 idle TCP connections that never
//! start a TLS handshake. The node closes the excess at once, before any TLS
//! work (counted in `certfed_connections_refused_total`), holds at most
//! `listener.max_handshakes_per_source` of them until the handshake timeout,
//! and meanwhile still serves a peer that connects and an operator.

use crate::common::*;
use crate::fedtools::*;
use certfed::proto::v1::*;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

const FLOOD: usize = 2000;

/// Opens `n` TCP connections to `port` from `source` (an address of the
/// loopback network) and keeps them idle.
async fn flood(source: &str, port: u16, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let s = TcpSocket::new_v4().unwrap();
        s.bind(format!("{source}:0").parse().unwrap()).unwrap();
        let target = format!("127.0.0.1:{port}").parse().unwrap();
        match tokio::time::timeout(Duration::from_secs(5), s.connect(target)).await {
            Ok(Ok(c)) => conns.push(c),
            Ok(Err(e)) => panic!("flood connection {} failed: {e}", conns.len()),
            Err(_) => panic!("flood connection {} timed out", conns.len()),
        }
    }
    conns
}

/// Whether the node closed this connection (EOF or reset) within `within`.
async fn closed(c: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 1];
    match tokio::time::timeout(within, c.read(&mut b)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_is_refused_before_tls_and_the_node_still_serves() {
    // 4,000 sockets in this process: make sure the descriptor limit allows it.
    let _ = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            "--nofile=20000:20000",
        ])
        .status();
    let mut fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    // A long handshake timeout: without the caps, the flood would hold every
    // connection for 30 s.
    fed.specs[1].handshake_timeout_secs = 30;
    let b = fed.start(1).await;
    let port = fed.specs[1].port;

    // The flood comes from 127.0.0.3; the peer and the operator from 127.0.0.1.
    let mut conns = flood("127.0.0.3", port, FLOOD).await;
    // Every connection over the cap is closed at once; the ones within it
    // wait for a ClientHello until the handshake timeout (30 s here).
    let refused =
        futures::future::join_all(conns.iter_mut().map(|c| closed(c, Duration::from_secs(3))))
            .await
            .into_iter()
            .filter(|c| *c)
            .count();
    let cap = 64; // listener.max_handshakes_per_source default
    assert_eq!(
        refused,
        FLOOD - cap,
        "flood connections closed at once (all but the per-source handshake cap)"
    );

    // While the flood holds its slots, a peer connects and delivers, and an
    // operator is served.
    let a = fed.start(0).await;
    let id = publish_on(&fed, 0, green_alert("through the flood"), &[]).await;
    assert!(arrives(&fed, 1, &id, WAIT).await, "the peer is served");
    let mut op = fed.operator(1).await;
    let info = op
        .get_node_info(GetNodeInfoRequest {})
        .await
        .expect("the operator is served")
        .into_inner();
    assert_eq!(info.stored_messages, 1);

    let m = b.node.metrics.encode();
    let counted = sample(
        &m,
        "certfed_connections_refused_total{reason=\"max_handshakes_per_source\"}",
    );
    assert!(
        counted >= (FLOOD - cap) as f64,
        "the refusals are counted ({counted}):\n{m}"
    );
    drop(conns);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
