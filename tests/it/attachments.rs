//! Evidence attachments (issue 16) through real nodes on the line a–b–c:
//! the operator's client-streaming upload (nothing published until every
//! attachment is complete), the server-streaming download (byte-identical,
//! verified), encryption at rest of AMBER evidence, the malware guard, and
//! every way an upload can go wrong leaving nothing behind. Also the real
//! `certfed` binary: `alert publish --attach`, `attachment list|get`.

use crate::common::*;
use certfed::proto::v1::operator_client::OperatorClient;
use certfed::proto::v1::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

/// `n` bytes with `marker` repeated through them (to search for plaintext).
fn evidence(n: usize, marker: &[u8]) -> Vec<u8> {
    let mut v: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
    let mut i = 0;
    while i + marker.len() <= n {
        v[i..i + marker.len()].copy_from_slice(marker);
        i += 64 * 1024;
    }
    v
}

fn start(req: PublishAlertRequest, declared: Vec<Attachment>) -> PublishUpload {
    PublishUpload {
        frame: Some(publish_upload::Frame::Start(PublishUploadStart {
            request: Some(req),
            attachments: declared,
        })),
    }
}

fn data(index: u32, bytes: &[u8]) -> PublishUpload {
    PublishUpload {
        frame: Some(publish_upload::Frame::Data(AttachmentData {
            index,
            data: bytes.to_vec(),
        })),
    }
}

fn declare(name: &str, size: usize, malicious: bool) -> Attachment {
    Attachment {
        name: name.into(),
        size: size as u64,
        malicious,
        ..Default::default()
    }
}

/// Frames of `content` for attachment `index`, in pieces of `piece` bytes.
fn pieces(index: u32, content: &[u8], piece: usize) -> Vec<PublishUpload> {
    content.chunks(piece).map(|c| data(index, c)).collect()
}

async fn upload(
    op: &mut OperatorClient<Channel>,
    frames: Vec<PublishUpload>,
) -> Result<String, tonic::Status> {
    op.publish_alert_with_attachments(futures::stream::iter(frames))
        .await
        .map(|r| r.into_inner().message_id)
}

pub(crate) async fn download(
    op: &mut OperatorClient<Channel>,
    id: &str,
    name: &str,
    malware_ok: bool,
) -> Result<(Attachment, Vec<u8>), tonic::Status> {
    let mut s = op
        .get_attachment(GetAttachmentRequest {
            message_id: id.into(),
            name: name.into(),
            i_know_it_is_malware: malware_ok,
        })
        .await?
        .into_inner();
    let first = s.message().await?.and_then(|f| f.attachment).unwrap();
    let mut out = Vec::new();
    while let Some(f) = s.message().await? {
        out.extend(f.data);
    }
    Ok((first, out))
}

/// Publishes a GREEN alert that opens an incident; returns the incident id.
async fn open_incident(op: &mut OperatorClient<Channel>, title: &str) -> String {
    op.publish_alert(PublishAlertRequest {
        alert: Some(green_alert(title)),
        open_incident: true,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .message_id
}

fn amber_request(title: &str) -> PublishAlertRequest {
    let mut a = green_alert(title);
    a.tlp = Tlp::Amber as i32;
    PublishAlertRequest {
        alert: Some(a),
        recipients: vec!["node-c".into()],
        ..Default::default()
    }
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if let Ok(bytes) = std::fs::read(&p)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(p.display().to_string());
        }
    }
    hits
}

/// Waits until node `op` lists `n` attachments of `id`, all available.
async fn available(op: &OperatorClient<Channel>, id: &str, n: usize) -> bool {
    eventually(Duration::from_secs(90), || {
        let mut op = op.clone();
        let id = id.to_string();
        async move {
            op.list_attachments(ListAttachmentsRequest { message_id: id })
                .await
                .is_ok_and(|r| {
                    let r = r.into_inner();
                    r.attachments.len() == n
                        && r.attachments
                            .iter()
                            .all(|s| s.state == AttachmentState::Available as i32)
                })
        }
    })
    .await
}

fn leftovers(data_dir: &Path) -> Vec<String> {
    std::fs::read_dir(data_dir.join("attachments"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amber_evidence_is_stored_encrypted_and_downloads_byte_identical() {
    let fed = Fed::line();
    let _a = fed.start(0).await;
    let _b = fed.start(1).await;
    let _c = fed.start(2).await;
    let mut op = fed.operator(0).await;
    let marker = format!("PCAPMARK{}", uuid::Uuid::now_v7().simple());
    let capture = evidence(3 * 1024 * 1024 + 12_345, marker.as_bytes());
    let sample = evidence(70_000, b"MZ-not-really");
    let mut frames = vec![start(
        amber_request("capture attached"),
        vec![
            declare("capture.pcap", capture.len(), false),
            declare("empty.txt", 0, false),
            declare("dropper.bin", sample.len(), true),
        ],
    )];
    frames.extend(pieces(0, &capture, 300_000));
    frames.extend(pieces(2, &sample, 1 << 20));
    let id = upload(&mut op, frames).await.unwrap();

    // The alert travels as usual; c reads it.
    assert!(
        arrives(&fed, 2, &id, Duration::from_secs(30)).await,
        "c never received the alert"
    );

    // At the origin: listed available, downloads byte-identical.
    let list = op
        .list_attachments(ListAttachmentsRequest {
            message_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = list
        .attachments
        .iter()
        .map(|s| s.attachment.as_ref().unwrap().name.as_str())
        .collect();
    assert_eq!(names, ["capture.pcap", "empty.txt", "dropper.bin"]);
    for s in &list.attachments {
        assert_eq!(s.state, AttachmentState::Available as i32);
        assert!(
            s.attachment.as_ref().unwrap().key.is_empty(),
            "no key leaves the node"
        );
    }
    let (m, got) = download(&mut op, &id, "capture.pcap", false).await.unwrap();
    assert_eq!(m.size, capture.len() as u64);
    assert_eq!(m.media_type, "application/octet-stream");
    assert!(m.key.is_empty());
    assert!(got == capture, "downloaded copy differs");
    let (_, got) = download(&mut op, &id, "empty.txt", false).await.unwrap();
    assert!(got.is_empty());

    // The malware sample only with the explicit flag.
    let e = download(&mut op, &id, "dropper.bin", false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("malware"), "{}", e.message());
    let (m, got) = download(&mut op, &id, "dropper.bin", true).await.unwrap();
    assert!(m.malicious);
    assert!(got == sample);
    let e = download(&mut op, &id, "nope.bin", true).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // AMBER evidence is encrypted at rest: no plaintext in any node's folder.
    for i in 0..3 {
        let hits = files_containing(&fed.data_dir(i), marker.as_bytes());
        assert!(hits.is_empty(), "plaintext marker found in {hits:?}");
    }
    assert!(
        !leftovers(&fed.data_dir(0))
            .iter()
            .any(|n| n.starts_with(".upload-")),
        "temporary upload folder left behind"
    );

    // c fetches the evidence from b, which fetched the ciphertext from a;
    // c's copies are byte-identical.
    let mut op_c = fed.operator(2).await;
    assert!(
        available(&op_c, &id, 3).await,
        "c never got the attachments"
    );
    let (_, got) = download(&mut op_c, &id, "capture.pcap", false)
        .await
        .unwrap();
    assert!(got == capture, "c's copy differs");
    let (_, got) = download(&mut op_c, &id, "dropper.bin", true).await.unwrap();
    assert!(got == sample);
    // b, a relay, drops the ciphertext once c has it.
    let b_dir = fed.data_dir(1).join("attachments").join(&id);
    assert!(
        eventually(Duration::from_secs(20), || {
            let d = b_dir.clone();
            async move { !d.exists() }
        })
        .await,
        "b still holds {:?}",
        std::fs::read_dir(&b_dir).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    // b relays the alert but cannot read it, nor its manifests.
    let mut op_b = fed.operator(1).await;
    assert!(
        eventually(Duration::from_secs(20), || {
            let mut op_b = op_b.clone();
            let id = id.clone();
            async move {
                op_b.list_attachments(ListAttachmentsRequest { message_id: id })
                    .await
                    .is_err_and(|e| e.code() == Code::PermissionDenied)
            }
        })
        .await
    );
    let e = op_b
        .list_attachments(ListAttachmentsRequest {
            message_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("encrypted"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_upload_publishes_nothing_and_leaves_nothing() {
    let fed = Fed::new(&["node-a"], &[]);
    let _a = fed.start(0).await;
    let mut op = fed.operator(0).await;
    let body = vec![5u8; 2_000_000];
    let req = || {
        let mut r = amber_request("broken upload");
        r.alert.as_mut().unwrap().tlp = Tlp::Green as i32;
        r.recipients.clear();
        r
    };
    let cases: Vec<(&str, Vec<PublishUpload>, &str)> = vec![
        (
            "ends early",
            {
                let mut f = vec![start(req(), vec![declare("a.bin", body.len(), false)])];
                f.extend(pieces(0, &body[..1_500_000], 1 << 20));
                f
            },
            "ended after 1500000 of its 2000000 bytes",
        ),
        (
            "size lies (more bytes than declared)",
            {
                let mut f = vec![start(req(), vec![declare("a.bin", 1000, false)])];
                f.extend(pieces(0, &body[..1001], 1 << 20));
                f
            },
            "more than the declared 1000 bytes",
        ),
        (
            "out of order",
            {
                let mut f = vec![start(
                    req(),
                    vec![declare("a.bin", 10, false), declare("b.bin", 10, false)],
                )];
                f.push(data(1, &[0; 10]));
                f
            },
            "one after another",
        ),
        (
            "over limits.max_attachment_bytes",
            vec![start(
                req(),
                vec![declare("huge.bin", 65 * 1024 * 1024, false)],
            )],
            "limits.max_attachment_bytes",
        ),
        (
            "a path as name",
            vec![start(req(), vec![declare("../../etc/cron.d/x", 1, false)])],
            "plain file name",
        ),
        (
            "declared SHA-256 differs",
            {
                let mut d = declare("a.bin", 10, false);
                d.sha256 = vec![0; 32];
                vec![start(req(), vec![d]), data(0, &[1; 10])]
            },
            "does not match the declared SHA-256",
        ),
        (
            "no start frame",
            vec![data(0, &[1; 10])],
            "first frame must be `start`",
        ),
        (
            "an invalid alert is refused before any byte",
            {
                let mut r = req();
                r.alert.as_mut().unwrap().title.clear();
                vec![start(r, vec![declare("a.bin", 10, false)])]
            },
            "title",
        ),
    ];
    for (what, frames, expect) in cases {
        let e = upload(&mut op, frames).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
        assert!(e.message().contains(expect), "{what}: {}", e.message());
    }
    // Nothing was published, nothing is left on disk.
    let alerts = op
        .list_alerts(ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert!(alerts.is_empty(), "an aborted upload published {alerts:?}");
    assert_eq!(leftovers(&fed.data_dir(0)), Vec::<String>::new());
    // And the same node still takes a good upload.
    let mut f = vec![start(req(), vec![declare("a.bin", body.len(), false)])];
    f.extend(pieces(0, &body, 1 << 20));
    let id = upload(&mut op, f).await.unwrap();
    let (_, got) = download(&mut op, &id, "a.bin", false).await.unwrap();
    assert!(got == body);
    // In clear (GREEN) the stored form is the content itself, checked against
    // its digests when read: a flipped byte on disk ends the download with
    // DATA_LOSS and never reaches the operator unnoticed.
    let blob = fed.data_dir(0).join("attachments").join(&id).join("0.blob");
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1_500_000] ^= 1;
    std::fs::write(&blob, &bytes).unwrap();
    let e = download(&mut op, &id, "a.bin", false).await.unwrap_err();
    assert_eq!(e.code(), Code::DataLoss, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_attaches_and_saves_evidence_without_execute_bit() {
    use std::os::unix::fs::PermissionsExt;
    let fed = Fed::new(&["node-a", "node-c"], &[(0, 1)]);
    let _a = fed.start(0).await;
    let _c = fed.start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("capture.pcap");
    let content = evidence(1_300_000, b"CLI-MARKER");
    std::fs::write(&pcap, &content).unwrap();
    let sample = dir.path().join("sample.exe");
    std::fs::write(&sample, b"MZ fake sample").unwrap();
    std::fs::set_permissions(&sample, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cli = |args: &[&str]| {
        let pki = &fed.pki;
        Command::new(env!("CARGO_BIN_EXE_certfed"))
            .args(args)
            .args(["--node", &fed.addr(0), "--ca"])
            .arg(pki.ca_path())
            .arg("--cert")
            .arg(pki.path("operator.crt"))
            .arg("--key")
            .arg(pki.path("operator.key"))
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    };
    let out = cli(&[
        "alert",
        "publish",
        "--title",
        "evidence attached",
        "--tlp",
        "amber",
        "--severity",
        "high",
        "--to",
        "node-c",
        "--attach",
        pcap.to_str().unwrap(),
        "--attach",
        &format!("{},malware", sample.display()),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["messageId"].as_str().unwrap().to_string();

    let out = cli(&["attachment", "list", &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("capture.pcap") && text.contains("available"),
        "{text}"
    );
    assert!(text.contains("MALWARE SAMPLE"), "{text}");

    let saved = dir.path().join("out.pcap");
    let out = cli(&[
        "attachment",
        "get",
        &id,
        "capture.pcap",
        "--out",
        saved.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&saved).unwrap() == content);
    // An existing file is never overwritten.
    let out = cli(&[
        "attachment",
        "get",
        &id,
        "capture.pcap",
        "--out",
        saved.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));

    // The malware guard: refused without the flag, nothing written.
    let mal = dir.path().join("saved.exe");
    let out = cli(&[
        "attachment",
        "get",
        &id,
        "sample.exe",
        "--out",
        mal.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--i-know-it-is-malware"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!mal.exists());
    let out = cli(&[
        "attachment",
        "get",
        &id,
        "sample.exe",
        "--out",
        mal.to_str().unwrap(),
        "--i-know-it-is-malware",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&mal).unwrap(), b"MZ fake sample");
    let mode = std::fs::metadata(&mal).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0, "saved sample is executable: {mode:o}");
    // No temporary file left beside the outputs.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with(".certfed-")),
        "{names:?}"
    );
}

/// Bytes of one encrypted chunk of the stored form.
const SEALED_CHUNK: u64 = (1 << 20) + 16;

fn upload_frames(req: PublishAlertRequest, name: &str, content: &[u8]) -> Vec<PublishUpload> {
    let mut f = vec![start(req, vec![declare(name, content.len(), false)])];
    f.extend(pieces(0, content, 1 << 20));
    f
}

fn part_len(data_dir: &Path, id: &str) -> Option<u64> {
    std::fs::metadata(data_dir.join("attachments").join(id).join("0.part"))
        .ok()
        .map(|m| m.len())
}

fn spawn_node(fed: &Fed, i: usize, log: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_certfed"))
        .args(["serve", "--config"])
        .arg(fed.config_path(i))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mb_amber_capture_crosses_a_relay_killed_mid_transfer() {
    let mut fed = Fed::line();
    // a sends attachments at 20 MB/s, so b's fetch is caught in the middle.
    fed.specs[0].extra = "attachment_bytes_per_sec = 20000000".into();
    let a = fed.start(0).await;
    let c = fed.start(2).await;
    let log1 = fed.data.path().join("b-1.log");
    let log2 = fed.data.path().join("b-2.log");
    let mut b = spawn_node(&fed, 1, &log1);

    let marker = format!("CAPMARK{}", uuid::Uuid::now_v7().simple());
    let capture = evidence(50 * 1000 * 1000, marker.as_bytes());
    let mut op = fed.operator(0).await;
    let id = upload(
        &mut op,
        upload_frames(amber_request("50 MB capture"), "capture.pcap", &capture),
    )
    .await
    .unwrap();

    // kill -9 of b while its copy is part-way.
    let b_dir = fed.data_dir(1);
    let caught = eventually(Duration::from_secs(60), || {
        let d = b_dir.clone();
        let id = id.clone();
        async move { part_len(&d, &id).is_some_and(|n| n >= 4 * SEALED_CHUNK) }
    })
    .await;
    assert!(caught, "b never started fetching");
    b.kill().unwrap();
    b.wait().unwrap();
    let kept = part_len(&b_dir, &id).unwrap();
    assert!(
        kept < capture.len() as u64,
        "b finished before it was killed; the test cannot check the resume"
    );

    let mut b = spawn_node(&fed, 1, &log2);
    let op_c = fed.operator(2).await;
    assert!(available(&op_c, &id, 1).await, "c never got the capture");
    let (_, got) = download(&mut op_c.clone(), &id, "capture.pcap", false)
        .await
        .unwrap();
    assert!(got == capture, "c's copy is not byte-identical");

    // b resumed after the chunks it had verified (never asked for them again).
    let after = std::fs::read_to_string(&log2).unwrap();
    let resumed = after
        .lines()
        .find(|l| l.contains("resuming attachment fetch"))
        .unwrap_or_else(|| panic!("b did not resume:\n{after}"));
    assert!(!resumed.contains("from_chunk=0"), "{resumed}");
    // b drops the ciphertext once c has it, and never held a plaintext byte.
    let gone = eventually(Duration::from_secs(30), || {
        let d = b_dir.join("attachments").join(&id);
        async move { !d.exists() }
    })
    .await;
    assert!(gone, "b still holds the ciphertext after c has it");
    let _ = b.kill();
    let _ = b.wait();
    for dir in [b_dir.as_path(), fed.data.path()] {
        let hits: Vec<_> = files_containing(dir, marker.as_bytes())
            .into_iter()
            .filter(|p| !p.contains("/node-a/") && !p.contains("/node-c/"))
            .collect();
        assert!(hits.is_empty(), "plaintext marker at b: {hits:?}");
    }
    drop((a, c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_chunk_is_refused_and_fetched_again() {
    let mut fed = Fed::line();
    // On demand only: nothing moves until c's operator asks.
    fed.specs[1].extra = "eager_attachment_bytes = 0".into();
    fed.specs[2].extra = "eager_attachment_bytes = 0".into();
    let _a = fed.start(0).await;
    let _b = fed.start(1).await;
    let _c = fed.start(2).await;
    let content = evidence(4 * 1024 * 1024 + 99, b"corrupt-me");
    let mut op = fed.operator(0).await;
    let id = upload(
        &mut op,
        upload_frames(amber_request("corrupt source"), "dump.bin", &content),
    )
    .await
    .unwrap();
    assert!(arrives(&fed, 2, &id, Duration::from_secs(30)).await);
    let mut op_c = fed.operator(2).await;
    let list = op_c
        .list_attachments(ListAttachmentsRequest {
            message_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.attachments[0].state,
        AttachmentState::NotFetched as i32
    );

    // a's copy goes bad in chunk 2 (a hostile or broken source).
    let a_blob = fed.data_dir(0).join("attachments").join(&id).join("0.blob");
    let good = std::fs::read(&a_blob).unwrap();
    let mut bad = good.clone();
    bad[(2 * SEALED_CHUNK + 5) as usize] ^= 0x40;
    std::fs::write(&a_blob, &bad).unwrap();

    // Asking for it starts the fetch (c from b, b from a).
    let e = download(&mut op_c, &id, "dump.bin", false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("not on this node") || e.message().contains("fetched"));
    // b keeps exactly the two chunks before the corrupt one, nothing more.
    let b_dir = fed.data_dir(1);
    let stuck = eventually(Duration::from_secs(30), || {
        let d = b_dir.clone();
        let id = id.clone();
        async move { part_len(&d, &id) == Some(2 * SEALED_CHUNK) }
    })
    .await;
    assert!(stuck, "b's copy: {:?}", part_len(&b_dir, &id));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        part_len(&b_dir, &id),
        Some(2 * SEALED_CHUNK),
        "a corrupt chunk was kept"
    );
    assert!(!b_dir.join("attachments").join(&id).join("0.blob").exists());

    // The source is good again: the retry fetches the rest, c gets it whole.
    std::fs::write(&a_blob, &good).unwrap();
    let _ = download(&mut op_c, &id, "dump.bin", false).await;
    assert!(available(&op_c, &id, 1).await, "c never got the attachment");
    let (_, got) = download(&mut op_c, &id, "dump.bin", false).await.unwrap();
    assert!(got == content);
}

fn step_frames(step: step_upload_start::Step, files: &[(&str, &[u8])]) -> Vec<StepUpload> {
    let mut frames = vec![StepUpload {
        frame: Some(step_upload::Frame::Start(StepUploadStart {
            step: Some(step),
            attachments: files
                .iter()
                .map(|(n, c)| declare(n, c.len(), false))
                .collect(),
        })),
    }];
    for (i, (_, c)) in files.iter().enumerate() {
        for piece in c.chunks(256 * 1024) {
            frames.push(StepUpload {
                frame: Some(step_upload::Frame::Data(AttachmentData {
                    index: i as u32,
                    data: piece.to_vec(),
                })),
            });
        }
    }
    frames
}

async fn step(
    op: &mut OperatorClient<Channel>,
    frames: Vec<StepUpload>,
) -> Result<StepUploadResponse, tonic::Status> {
    op.publish_step_with_attachments(futures::stream::iter(frames))
        .await
        .map(|r| r.into_inner())
}

/// Every assistance step (request, offer, decision, update) carries evidence
/// to the request's audience, encrypted for AMBER (relay b holds ciphertext
/// only); a step the state machine refuses, on an unknown request, or with an
/// upload that falls short publishes nothing and leaves nothing on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assistance_steps_carry_evidence_to_the_audience() {
    use step_upload_start::Step;
    let fed = Fed::line();
    let _a = fed.start(0).await;
    let _b = fed.start(1).await;
    let _c = fed.start(2).await;
    let mut op_a = fed.operator(0).await;
    let mut op_c = fed.operator(2).await;
    let marker = format!("ASSISTMARK{}", uuid::Uuid::now_v7().simple());
    let logs = evidence(1_500_000, marker.as_bytes());
    // a asks c for help (AMBER, through relay b) with a log extract.
    let r = step(
        &mut op_a,
        step_frames(
            Step::Request(RequestAssistanceRequest {
                request: Some(crate::assistance::request("Wiper: logs attached")),
                recipients: vec!["node-c".into()],
                request_id: uuid::Uuid::now_v7().to_string(),
                exercise: false,
            }),
            &[("auth.log", &logs)],
        ),
    )
    .await
    .unwrap();
    let rid = r.message_id.clone();
    assert_eq!(r.state, AssistanceState::Requested as i32);
    assert!(
        available(&op_c, &rid, 1).await,
        "c never got the request's evidence"
    );
    let (m, got) = download(&mut op_c, &rid, "auth.log", false).await.unwrap();
    assert_eq!((m.name.as_str(), got.len()), ("auth.log", logs.len()));
    assert!(got == logs, "c's copy differs");
    // The relay never held the log in the clear.
    assert!(
        files_containing(&fed.data_dir(1), marker.as_bytes()).is_empty(),
        "plaintext evidence at relay b"
    );

    // c offers, with its plan; a sees the offer's evidence.
    let plan = evidence(40_000, b"PLAN");
    let offered = step(
        &mut op_c,
        step_frames(
            Step::Offer(OfferAssistanceRequest {
                request_id: rid.clone(),
                offer: Some(crate::assistance::offer("forensics team")),
                client_request_id: uuid::Uuid::now_v7().to_string(),
            }),
            &[("plan.txt", &plan)],
        ),
    )
    .await
    .unwrap();
    let oid = offered.message_id.clone();
    assert!(
        available(&op_a, &oid, 1).await,
        "a never got the offer's evidence"
    );
    assert_eq!(
        download(&mut op_a, &oid, "plan.txt", false)
            .await
            .unwrap()
            .1,
        plan
    );

    // The requester's decision and update carry evidence too.
    let nda = b"terms of engagement".to_vec();
    let decided = step(
        &mut op_a,
        step_frames(
            Step::Decision(DecideOfferRequest {
                offer_id: oid.clone(),
                accept: true,
                note: "welcome".into(),
                request_id: uuid::Uuid::now_v7().to_string(),
            }),
            &[("terms.txt", &nda)],
        ),
    )
    .await
    .unwrap();
    assert_eq!(decided.state, AssistanceState::Accepted as i32);
    assert!(available(&op_c, &decided.message_id, 1).await);
    assert_eq!(
        download(&mut op_c, &decided.message_id, "terms.txt", false)
            .await
            .unwrap()
            .1,
        nda
    );
    let report = b"deployment report".to_vec();
    let updated = step(
        &mut op_a,
        step_frames(
            Step::Update(UpdateAssistanceRequest {
                request_id: rid.clone(),
                state: AssistanceState::Deployed as i32,
                note: "team on site".into(),
                withdraw_offer_id: String::new(),
                client_request_id: uuid::Uuid::now_v7().to_string(),
            }),
            &[("report.txt", &report)],
        ),
    )
    .await
    .unwrap();
    assert_eq!(updated.state, AssistanceState::Deployed as i32);
    assert!(available(&op_c, &updated.message_id, 1).await);

    // Refusals: nothing signed, nothing left behind.
    let before = leftovers(&fed.data_dir(2));
    // Only the requester decides: c deciding its own offer is refused after the upload.
    let e = step(
        &mut op_c,
        step_frames(
            Step::Decision(DecideOfferRequest {
                offer_id: oid.clone(),
                accept: true,
                note: String::new(),
                request_id: uuid::Uuid::now_v7().to_string(),
            }),
            &[("x.txt", b"x")],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // An offer on a request c does not hold.
    let e = step(
        &mut op_c,
        step_frames(
            Step::Offer(OfferAssistanceRequest {
                request_id: uuid::Uuid::now_v7().to_string(),
                offer: Some(crate::assistance::offer("nothing to offer on")),
                client_request_id: String::new(),
            }),
            &[("x.txt", b"x")],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // An upload that falls short of its declared size.
    let mut short = step_frames(
        Step::Offer(OfferAssistanceRequest {
            request_id: rid.clone(),
            offer: Some(crate::assistance::offer("second offer")),
            client_request_id: String::new(),
        }),
        &[("short.txt", &[7u8; 1000])],
    );
    if let Some(step_upload::Frame::Start(s)) = short[0].frame.as_mut() {
        s.attachments[0].size = 5000;
    }
    let e = step(&mut op_c, short).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(leftovers(&fed.data_dir(2)), before);
    let v = op_c
        .get_assistance_request(GetAssistanceRequestRequest {
            request_id: rid.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.offers.len(), 1, "a refused step was signed: {v:?}");

    // The command line: `assist update … --attach`.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("final.txt");
    std::fs::write(&file, b"final report from the CLI").unwrap();
    let pki = &fed.pki;
    let out = Command::new(env!("CARGO_BIN_EXE_certfed"))
        .args(["assist", "--node", &fed.addr(0), "--ca"])
        .arg(pki.ca_path())
        .arg("--cert")
        .arg(pki.path("operator.crt"))
        .arg("--key")
        .arg(pki.path("operator.key"))
        .args(["--json", "update", &rid, "--state", "completed", "--attach"])
        .arg(&file)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "ASSISTANCE_STATE_COMPLETED", "{v}");
    let id = v["messageId"].as_str().unwrap().to_string();
    assert!(available(&op_c, &id, 1).await);
    assert_eq!(
        download(&mut op_c, &id, "final.txt", false)
            .await
            .unwrap()
            .1,
        b"final report from the CLI"
    );
}

/// An alert contributed to an incident carries evidence like any alert: the
/// upload names the incident, the partners see the contribution counted and
/// its attachment; a contribution to an unknown incident publishes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_contributions_carry_evidence() {
    let fed = Fed::line();
    let _a = fed.start(0).await;
    let _b = fed.start(1).await;
    let _c = fed.start(2).await;
    let mut op_a = fed.operator(0).await;
    let mut op_c = fed.operator(2).await;
    let incident = open_incident(&mut op_a, "grid wiper wave").await;
    // c joins the incident with a capture (GREEN: to the whole federation).
    let capture = evidence(200_000, b"INCIDENTCAP");
    let req = PublishAlertRequest {
        alert: Some(green_alert("seen here too")),
        incident_id: incident.clone(),
        ..Default::default()
    };
    let seen = eventually(Duration::from_secs(60), || {
        let mut op_c = op_c.clone();
        let mut frames = vec![start(
            req.clone(),
            vec![declare("c.pcap", capture.len(), false)],
        )];
        frames.extend(pieces(0, &capture, 64 * 1024));
        async move { upload(&mut op_c, frames).await.is_ok() }
    })
    .await;
    assert!(seen, "c could not contribute to the incident");
    let contributions = eventually(Duration::from_secs(60), || {
        let mut op_a = op_a.clone();
        let incident = incident.clone();
        async move {
            op_a.list_incidents(ListIncidentsRequest::default())
                .await
                .is_ok_and(|r| {
                    r.into_inner()
                        .incidents
                        .iter()
                        .any(|i| i.incident_id == incident && i.contributions >= 2)
                })
        }
    })
    .await;
    assert!(contributions, "a does not count c's contribution");
    let list = op_a
        .list_alerts(ListAlertsRequest {
            filter: Some(AlertFilter {
                origins: vec!["node-c".into()],
                ..Default::default()
            }),
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let id = list.alerts[0].message_id.clone();
    assert!(available(&op_a, &id, 1).await);
    assert_eq!(
        download(&mut op_a, &id, "c.pcap", false).await.unwrap().1,
        capture
    );
    // An unknown incident: refused before any byte is kept.
    let before = leftovers(&fed.data_dir(2));
    let mut frames = vec![start(
        PublishAlertRequest {
            alert: Some(green_alert("into the void")),
            incident_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        },
        vec![declare("v.pcap", 10, false)],
    )];
    frames.push(data(0, &[1u8; 10]));
    let e = upload(&mut op_c, frames).await.unwrap_err();
    assert!(
        matches!(
            e.code(),
            Code::NotFound | Code::FailedPrecondition | Code::InvalidArgument
        ),
        "{e:?}"
    );
    assert_eq!(leftovers(&fed.data_dir(2)), before);
    let _ = &mut op_c;
}

/// `limits.attachment_bytes_per_sec` bounds a peer, not a stream: two
/// attachments served to b at the same time share a's 1 MB/s, so 3 MB take
/// at least 3 s (a per-stream bound would let them through in 1.5 s). Only
/// a lower bound is asserted: a loaded machine is only ever slower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bandwidth_bound_is_shared_by_every_transfer_to_a_peer() {
    let mut fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    fed.specs[0].extra = "attachment_bytes_per_sec = 1000000".into();
    let _a = fed.start(0).await;
    let _b = fed.start(1).await;
    let mut op = fed.operator(0).await;
    let op_b = fed.operator(1).await;
    let one = evidence(1_500_000, b"PACED-1");
    let two = evidence(1_500_000, b"PACED-2");
    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    for (n, content) in [("one.bin", &one), ("two.bin", &two)] {
        let mut frames = vec![start(
            PublishAlertRequest {
                alert: Some(green_alert(n)),
                ..Default::default()
            },
            vec![declare(n, content.len(), false)],
        )];
        frames.extend(pieces(0, content, 256 * 1024));
        ids.push(upload(&mut op, frames).await.unwrap());
    }
    for id in &ids {
        assert!(available(&op_b, id, 1).await, "b never got {id}");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2900),
        "3 MB to one peer at 1 MB/s took {took:?}: the bound is not shared"
    );
}

/// A fetch that gives up is counted for the peer that delivered the message:
/// in ListPeers and in `certfed_attachment_fetches_abandoned_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_fetch_is_counted_for_its_peer() {
    let mut fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    fed.specs[1].extra = format!(
        "eager_attachment_bytes = 0\n[metrics]\nlisten = \"127.0.0.1:{}\"\n",
        free_port()
    );
    let _a = fed.start(0).await;
    let b = fed.start(1).await;
    let mut op = fed.operator(0).await;
    let mut op_b = fed.operator(1).await;
    let content = evidence(3 * 1024 * 1024, b"never-whole");
    let mut frames = vec![start(
        PublishAlertRequest {
            alert: Some(green_alert("broken source")),
            ..Default::default()
        },
        vec![declare("dump.bin", content.len(), false)],
    )];
    frames.extend(pieces(0, &content, 1 << 20));
    let id = upload(&mut op, frames).await.unwrap();
    assert!(arrives(&fed, 1, &id, Duration::from_secs(30)).await);
    let abandoned = |op: OperatorClient<Channel>| async move {
        let mut op = op;
        op.list_peers(ListPeersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .peers
            .iter()
            .find(|p| p.peer_id == "node-a")
            .map(|p| p.attachment_fetches_abandoned)
            .unwrap()
    };
    assert_eq!(abandoned(op_b.clone()).await, 0);
    // a's only copy goes bad for good: every attempt is refused.
    let blob = fed.data_dir(0).join("attachments").join(&id).join("0.blob");
    let mut bad = std::fs::read(&blob).unwrap();
    bad[1024 * 1024 + 7] ^= 0x01;
    std::fs::write(&blob, &bad).unwrap();
    let _ = download(&mut op_b, &id, "dump.bin", false).await;
    // 12 attempts with backoff (about a minute).
    let counted = eventually(Duration::from_secs(240), || {
        let op_b = op_b.clone();
        async move { abandoned(op_b).await == 1 }
    })
    .await;
    assert!(counted, "the abandoned fetch was not counted");
    let metrics = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(b.metrics_addr.unwrap())
            .await
            .unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf).into_owned()
    };
    assert!(
        metrics.contains("certfed_attachment_fetches_abandoned_total{peer=\"node-a\"} 1"),
        "{metrics}"
    );
}

/// A relay passes evidence on while it is still fetching it (cut-through):
/// a sends at 1 MB/s, and c's copy grows while b's is still partial. With
/// store-and-forward (b serving only complete files) c could not start
/// before b had all 6 MB, and this test fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_passes_chunks_on_while_it_is_still_fetching() {
    let mut fed = Fed::line();
    fed.specs[0].extra = "attachment_bytes_per_sec = 1000000".into();
    let _a = fed.start(0).await;
    let _b = fed.start(1).await;
    let _c = fed.start(2).await;
    let content = evidence(6_000_000, b"CUT-THROUGH");
    let mut op = fed.operator(0).await;
    let id = upload(
        &mut op,
        upload_frames(amber_request("paced capture"), "capture.pcap", &content),
    )
    .await
    .unwrap();
    let (b_dir, c_dir) = (fed.data_dir(1), fed.data_dir(2));
    let overlapped = eventually(Duration::from_secs(60), || {
        let (b_dir, c_dir, id) = (b_dir.clone(), c_dir.clone(), id.clone());
        async move {
            let c_has = part_len(&c_dir, &id).unwrap_or(0);
            let b_partial = part_len(&b_dir, &id).is_some();
            c_has >= 2 * SEALED_CHUNK && b_partial
        }
    })
    .await;
    assert!(
        overlapped,
        "c's copy never grew while b was still fetching: b stores and then forwards"
    );
    let op_c = fed.operator(2).await;
    assert!(available(&op_c, &id, 1).await, "c never got the capture");
    let (_, got) = download(&mut op_c.clone(), &id, "capture.pcap", false)
        .await
        .unwrap();
    assert!(got == content, "c's copy is not byte-identical");
}

fn sighting_frames(req: ReportSightingRequest, files: &[(&str, &[u8])]) -> Vec<SightingUpload> {
    let mut f = vec![SightingUpload {
        frame: Some(sighting_upload::Frame::Start(SightingUploadStart {
            sighting: Some(req),
            attachments: files
                .iter()
                .map(|(n, c)| declare(n, c.len(), false))
                .collect(),
        })),
    }];
    for (i, (_, content)) in files.iter().enumerate() {
        for d in pieces(i as u32, content, 64 * 1024) {
            if let Some(publish_upload::Frame::Data(d)) = d.frame {
                f.push(SightingUpload {
                    frame: Some(sighting_upload::Frame::Data(d)),
                });
            }
        }
    }
    f
}

fn sighting(incident: &str, tlp: Tlp, to: &[&str]) -> ReportSightingRequest {
    ReportSightingRequest {
        sighting: Some(Sighting {
            incident_id: incident.into(),
            country: "EE".into(),
            count: 3,
            note: "seen on our grid operators".into(),
            tlp: tlp as i32,
            ..Default::default()
        }),
        recipients: to.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Sightings carry evidence like alerts (ReportSightingWithAttachments): a
/// GREEN sighting's capture reaches the incident's opener byte for byte; an
/// AMBER sighting's capture for node-a crosses the relay b as ciphertext only
/// (no marker at b); an upload that falls short, or a first frame that is not
/// `start`, publishes nothing and leaves nothing on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sightings_carry_evidence() {
    let fed = Fed::line();
    let _a = fed.start(0).await;
    let _b = fed.start(1).await;
    let _c = fed.start(2).await;
    let mut op_a = fed.operator(0).await;
    let mut op_c = fed.operator(2).await;
    let incident = open_incident(&mut op_a, "grid wiper wave").await;
    assert!(arrives(&fed, 2, &incident, Duration::from_secs(60)).await);

    let green = evidence(150_000, b"SIGHTGREEN");
    let id = op_c
        .report_sighting_with_attachments(tokio_stream::iter(sighting_frames(
            sighting(&incident, Tlp::Unspecified, &[]),
            &[("grid.pcap", &green)],
        )))
        .await
        .unwrap()
        .into_inner()
        .message_id;
    assert!(
        available(&op_a, &id, 1).await,
        "a never got the sighting's capture"
    );
    assert_eq!(
        download(&mut op_a, &id, "grid.pcap", false)
            .await
            .unwrap()
            .1,
        green
    );

    let marker = format!("SIGHTAMBER{}", uuid::Uuid::now_v7().simple());
    let amber = evidence(120_000, marker.as_bytes());
    let id = op_c
        .report_sighting_with_attachments(tokio_stream::iter(sighting_frames(
            sighting("", Tlp::Amber, &["node-a"]),
            &[("amber.log", &amber)],
        )))
        .await;
    // A sighting without an incident needs an indicator.
    let e = id.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let mut req = sighting("", Tlp::Amber, &["node-a"]);
    req.sighting.as_mut().unwrap().indicators = vec![Indicator {
        r#type: IndicatorType::Domain as i32,
        value: "wiper.example.org".into(),
        ..Default::default()
    }];
    let id = op_c
        .report_sighting_with_attachments(tokio_stream::iter(sighting_frames(
            req,
            &[("amber.log", &amber)],
        )))
        .await
        .unwrap()
        .into_inner()
        .message_id;
    assert!(
        available(&op_a, &id, 1).await,
        "a never got the AMBER capture"
    );
    assert_eq!(
        download(&mut op_a, &id, "amber.log", false)
            .await
            .unwrap()
            .1,
        amber
    );
    let at_b = files_containing(&fed.data_dir(1), marker.as_bytes());
    assert!(at_b.is_empty(), "plaintext at the relay: {at_b:?}");

    // Short content: nothing published, nothing left.
    let before = leftovers(&fed.data_dir(2));
    let mut frames = sighting_frames(
        sighting(&incident, Tlp::Unspecified, &[]),
        &[("short.bin", &[7u8; 100])],
    );
    if let Some(SightingUpload {
        frame: Some(sighting_upload::Frame::Start(s)),
    }) = frames.first_mut()
    {
        s.attachments[0].size = 200;
    }
    let e = op_c
        .report_sighting_with_attachments(tokio_stream::iter(frames))
        .await
        .unwrap_err();
    assert!(
        matches!(e.code(), Code::InvalidArgument | Code::DataLoss),
        "{e:?}"
    );
    assert_eq!(leftovers(&fed.data_dir(2)), before);
    // The first frame must be `start`.
    let e = op_c
        .report_sighting_with_attachments(tokio_stream::iter(vec![SightingUpload {
            frame: Some(sighting_upload::Frame::Data(AttachmentData {
                index: 0,
                data: vec![1, 2, 3],
            })),
        }]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("start"), "{}", e.message());

    // The CLI: `certfed incident sight INCIDENT --attach FILE`.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    let content = evidence(70_000, b"SIGHTCLI");
    std::fs::write(&log, &content).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_certfed"))
        .args([
            "incident",
            "sight",
            &incident,
            "--country",
            "EE",
            "--attach",
        ])
        .arg(&log)
        .args(["--json", "--node", &fed.addr(2), "--ca"])
        .arg(fed.pki.ca_path())
        .arg("--cert")
        .arg(fed.pki.path("operator.crt"))
        .arg("--key")
        .arg(fed.pki.path("operator.key"))
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["messageId"].as_str().unwrap().to_string();
    assert!(
        available(&op_a, &id, 1).await,
        "a never got the CLI's attachment"
    );
    assert_eq!(
        download(&mut op_a, &id, "auth.log", false).await.unwrap().1,
        content
    );
}
