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
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;
use tokio_stream::StreamExt;

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
    use crate::cli::args::{media_type_of, parse_attach};

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
