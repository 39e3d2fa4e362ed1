//! Evidence attachments on the command line (issue 16):
//! `certfed alert publish … --attach FILE[,malware]` (uploads through the
//! client-streaming `PublishAlertWithAttachments`), `certfed attachment list
//! MESSAGE_ID` and `certfed attachment get MESSAGE_ID NAME --out FILE`.
//!
//! Invariants:
//! - Files are streamed in 1 MiB pieces, never read whole into memory.
//! - `get` writes to a temporary file (mode 0600: never executable) in the
//!   folder of `--out` and renames it to `--out` only after the node has sent
//!   the whole, verified content; a stream that ends with an error leaves
//!   nothing at `--out`. An existing `--out` is never overwritten.
//! - A malware sample is written only with `--i-know-it-is-malware`; without
//!   it the command refuses before anything is written (and the node refuses
//!   to send it).
//! - Names and media types from partners pass through `output::term`.
use crate::cli::client::{Conn, connect, show};
use crate::cli::error::{Failure, explain};
use crate::cli::output::term;
use crate::proto::v1::*;
use clap::Subcommand;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use tokio::io::AsyncReadExt;
use tokio_stream::StreamExt;

/// Bytes per upload frame.
const PIECE: usize = 1 << 20;

/// One `--attach FILE[,malware]`.
#[derive(Debug, Clone)]
pub struct AttachArg {
    pub path: PathBuf,
    pub malicious: bool,
}

/// Parses `FILE` or `FILE,malware`.
pub fn parse_attach(s: &str) -> Result<AttachArg, String> {
    let (path, malicious) = match s.rsplit_once(',') {
        Some((p, "malware")) => (p, true),
        Some((_, other)) if other.bytes().all(|b| b.is_ascii_alphabetic()) => {
            return Err(format!(
                "unknown flag {other:?} after the file name; write FILE or FILE,malware"
            ));
        }
        _ => (s, false),
    };
    if path.is_empty() {
        return Err("give a file name: --attach FILE[,malware]".into());
    }
    Ok(AttachArg {
        path: PathBuf::from(path),
        malicious,
    })
}

/// The media type named by a file's extension (the common evidence kinds).
pub fn media_type_of(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "pcap" | "cap" => "application/vnd.tcpdump.pcap",
        "pcapng" => "application/x-pcapng",
        "json" => "application/json",
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "eml" => "message/rfc822",
        "evtx" => "application/x-ms-evtx",
        _ => crate::domain::attachment::DEFAULT_MEDIA_TYPE,
    }
}

/// Publishes `req` with the files of `attach`, streamed to the node.
pub async fn publish(
    conn: &Conn,
    req: PublishAlertRequest,
    attach: &[AttachArg],
) -> anyhow::Result<()> {
    let mut declared = Vec::new();
    let mut files = Vec::new();
    for a in attach {
        let shown = a.path.display().to_string();
        let file = tokio::fs::File::open(&a.path)
            .await
            .map_err(|e| Failure::usage(format!("--attach {shown}: cannot open: {e}")))?;
        let meta = file
            .metadata()
            .await
            .map_err(|e| Failure::usage(format!("--attach {shown}: {e}")))?;
        if !meta.is_file() {
            return Err(Failure::usage(format!(
                "--attach {shown}: not a regular file"
            )));
        }
        let name = a.path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            Failure::usage(format!("--attach {shown}: the file name is not UTF-8"))
        })?;
        declared.push(Attachment {
            name: name.to_string(),
            media_type: media_type_of(&a.path).to_string(),
            size: meta.len(),
            malicious: a.malicious,
            ..Default::default()
        });
        files.push((file, meta.len()));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<PublishUpload>(4);
    tx.send(PublishUpload {
        frame: Some(publish_upload::Frame::Start(PublishUploadStart {
            request: Some(req),
            attachments: declared,
        })),
    })
    .await
    .ok();
    // Reads the files in pieces; a read error ends the stream early, so the
    // node publishes nothing (it reports the attachment that fell short).
    let reader = tokio::spawn(async move {
        for (index, (mut file, size)) in files.into_iter().enumerate() {
            let mut left = size;
            while left > 0 {
                let mut buf = vec![0u8; PIECE.min(left as usize)];
                if let Err(e) = file.read_exact(&mut buf).await {
                    return Err(format!(
                        "attachment {index}: {e} (the file changed while read?)"
                    ));
                }
                left -= buf.len() as u64;
                let frame = PublishUpload {
                    frame: Some(publish_upload::Frame::Data(AttachmentData {
                        index: index as u32,
                        data: buf,
                    })),
                };
                if tx.send(frame).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    });
    let mut c = connect(conn).await?;
    let r = c
        .publish_alert_with_attachments(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    if let Ok(Err(e)) = reader.await {
        return Err(Failure::usage(format!("reading the attachments: {e}")));
    }
    let r = r.map_err(|s| explain(&conn.node, s))?.into_inner();
    show(conn.json, &r, "certfed.v1.PublishAlertResponse", || {
        format!("published {}\n", term(&r.message_id))
    })
}

#[derive(Subcommand, Debug)]
pub enum AttachmentCmd {
    /// The attachments of a message and their state on the node
    /// (available, fetching n %, not yet fetched).
    List {
        /// Message id.
        message_id: String,
    },
    /// Download an attachment to a file (verified against its signed SHA-256).
    Get {
        /// Message id.
        message_id: String,
        /// Attachment name, as listed.
        name: String,
        /// File to write (must not exist; written with mode 0600, never executable).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Required to save an attachment flagged as a malware sample.
        #[arg(long)]
        i_know_it_is_malware: bool,
    },
}

fn state_word(s: &AttachmentStatus) -> String {
    match AttachmentState::try_from(s.state).unwrap_or(AttachmentState::Unspecified) {
        AttachmentState::Available => "available".into(),
        AttachmentState::Fetching => format!("fetching {} %", s.percent),
        AttachmentState::NotFetched => "not yet fetched".into(),
        AttachmentState::Unspecified => "unknown".into(),
    }
}

pub async fn run(conn: Conn, cmd: AttachmentCmd) -> anyhow::Result<()> {
    let mut c = connect(&conn).await?;
    match cmd {
        AttachmentCmd::List { message_id } => {
            let r = c
                .list_attachments(ListAttachmentsRequest { message_id })
                .await
                .map_err(|s| explain(&conn.node, s))?
                .into_inner();
            show(conn.json, &r, "certfed.v1.ListAttachmentsResponse", || {
                let mut s = String::new();
                if r.attachments.is_empty() {
                    s.push_str("no attachments\n");
                }
                for a in &r.attachments {
                    let m = a.attachment.clone().unwrap_or_default();
                    let _ = writeln!(
                        s,
                        "{}  {} bytes  {}  {}{}",
                        term(&m.name),
                        m.size,
                        term(&m.media_type),
                        state_word(a),
                        if m.malicious { "  MALWARE SAMPLE" } else { "" }
                    );
                }
                s
            })
        }
        AttachmentCmd::Get {
            message_id,
            name,
            out,
            i_know_it_is_malware,
        } => {
            if out.exists() {
                return Err(Failure::usage(format!(
                    "--out {}: exists; remove it or choose another file",
                    out.display()
                )));
            }
            let dir = match out.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let mut stream = c
                .get_attachment(GetAttachmentRequest {
                    message_id,
                    name,
                    i_know_it_is_malware,
                })
                .await
                .map_err(|s| explain(&conn.node, s))?
                .into_inner();
            let first = stream
                .next()
                .await
                .transpose()
                .map_err(|s| explain(&conn.node, s))?
                .and_then(|f| f.attachment)
                .ok_or_else(|| Failure::usage("the node sent no manifest".to_string()))?;
            if first.malicious && !i_know_it_is_malware {
                return Err(Failure::usage(format!(
                    "{} is flagged as a malware sample; add --i-know-it-is-malware to save it",
                    term(&first.name)
                )));
            }
            // NamedTempFile is created with mode 0600 and removed if dropped.
            let mut tmp = tempfile::Builder::new()
                .prefix(".certfed-attachment-")
                .tempfile_in(&dir)
                .map_err(|e| {
                    Failure::usage(format!("--out: cannot write in {}: {e}", dir.display()))
                })?;
            let mut written: u64 = 0;
            while let Some(frame) = stream.next().await {
                let frame = frame.map_err(|s| explain(&conn.node, s))?;
                written += frame.data.len() as u64;
                if written > first.size {
                    return Err(Failure::usage(
                        "the node sent more bytes than the attachment's signed size; nothing was written".to_string(),
                    ));
                }
                tmp.write_all(&frame.data)?;
            }
            if written != first.size {
                return Err(Failure::usage(format!(
                    "the download ended after {written} of {} bytes; nothing was written, try again",
                    first.size
                )));
            }
            tmp.as_file().sync_all()?;
            tmp.persist_noclobber(&out)
                .map_err(|e| Failure::usage(format!("--out {}: {}", out.display(), e.error)))?;
            let r = AttachmentFrame {
                attachment: Some(first.clone()),
                data: Vec::new(),
            };
            show(conn.json, &r, "certfed.v1.AttachmentFrame", || {
                format!(
                    "wrote {} ({} bytes, SHA-256 verified) to {}\n",
                    term(&first.name),
                    written,
                    out.display()
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_flags_parse() {
        let a = parse_attach("cap.pcap").unwrap();
        assert!(!a.malicious);
        let a = parse_attach("/tmp/x,y/sample.bin,malware").unwrap();
        assert!(a.malicious);
        assert_eq!(a.path, PathBuf::from("/tmp/x,y/sample.bin"));
        assert!(parse_attach("x.bin,malwear").is_err());
        assert!(parse_attach(",malware").is_err());
        assert_eq!(
            media_type_of(Path::new("a.PCAP")),
            "application/vnd.tcpdump.pcap"
        );
        assert_eq!(
            media_type_of(Path::new("sample")),
            crate::domain::attachment::DEFAULT_MEDIA_TYPE
        );
    }
}
