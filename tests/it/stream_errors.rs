//! A Push stream that fails — a frame that does not decode, a frame over the
//! transport limit — ends once, with a status saying why, after the frames
//! before it were answered; the node does not spin, logs the end once, and
//! the next stream from the same peer works.

use crate::common::*;
use crate::fedtools::*;
use certfed::proto::v1::*;
use prost::Message;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_frame_ends_the_stream_once_and_the_node_stays_idle() {
    // node-b runs as a process; the test plays its peer node-a.
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let b = spawn_node(&fed, 1, "info").await;
    let a_key = signer_from(&fed.pki, "node-a");
    let addr = fed.addr(1);

    // 1. A frame that does not decode as a PushFrame.
    let (acks, status) = raw_push(
        &fed.pki,
        &addr,
        "node-a",
        vec![vec![0xff; 16]],
        Duration::from_secs(30),
    )
    .await
    .expect("the node must end a stream whose frame does not decode");
    assert!(acks.is_empty());
    let st = status.expect("an error status");
    assert_eq!(st.code(), tonic::Code::InvalidArgument, "{st:?}");
    assert!(st.message().contains("does not decode"), "{st:?}");

    // 2. A good frame, then one over the transport limit: the first is
    // answered, then the stream ends naming the limit.
    let good = signed_alert(
        &a_key,
        "before the oversized frame",
        certfed::service::now_ms(),
    );
    let good_id = id_of(&good);
    let (acks, status) = raw_push(
        &fed.pki,
        &addr,
        "node-a",
        vec![frame(1, good).encode_to_vec(), vec![0x0a; 1 << 20]],
        Duration::from_secs(30),
    )
    .await
    .expect("the node must end a stream with an oversized frame");
    assert_eq!(acks.len(), 1, "the good frame is answered: {acks:?}");
    assert_eq!(acks[0].outcome, PushOutcome::Accepted as i32);
    let st = status.expect("an error status");
    assert!(
        st.message().contains("limits.max_message_bytes"),
        "the status names the limit: {st:?}"
    );
    assert!(holds(&fed, 1, &good_id).await);

    // 3. The node is idle afterwards (a spinning loop burns a whole core).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = b.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = b.cpu_ticks() - before;
    assert!(
        used < 150,
        "node-b used {used} ticks of CPU in 3 s while idle"
    );

    // 4. Each failed stream is logged once, and the log stays small.
    let log = b.log();
    let ended = log.matches("push stream ended").count();
    assert_eq!(ended, 2, "one line per failed stream:\n{log}");
    assert!(log.len() < 64 * 1024, "log grew to {} bytes", log.len());

    // 5. A normal push afterwards works.
    let mut fc = federation_client(&fed.pki, &addr, "node-a", Some("node-b")).await;
    let env = signed_alert(&a_key, "after the bad frames", certfed::service::now_ms());
    let mut s = fc
        .push(tokio_stream::iter(vec![frame(7, env)]))
        .await
        .unwrap()
        .into_inner();
    let ack = s.message().await.unwrap().expect("an ack");
    assert_eq!((ack.seq, ack.outcome), (7, PushOutcome::Accepted as i32));
}
