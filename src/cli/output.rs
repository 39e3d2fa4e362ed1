//! What the command line writes: the protobuf JSON mapping of API responses,
//! text made safe for a terminal, and stdout writes that survive a closed pipe.
//!
//! Invariants:
//! - `--json` output is the canonical protobuf JSON mapping of the response
//!   message, as grpcurl prints it (lowerCamelCase names, enum value names,
//!   RFC 3339 timestamps, 64-bit integers as strings, default values omitted):
//!   the message is re-read as a `prost_reflect::DynamicMessage` against the
//!   descriptor set the node serves over reflection, so every field is there.
//! - Nothing a partner wrote reaches the terminal raw. In text output, control
//!   characters (C0, DEL, C1), bidirectional overrides and invisible format
//!   characters are shown as `\u{..}` escapes; in JSON they are `\uXXXX`
//!   escapes inside strings (the same JSON value, parsed).
//! - A closed stdout (`certfed info --json | head -1`) is not an error: the
//!   write returns [`Closed`] and the command ends quietly with exit 0.
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use std::borrow::Cow;
use std::io::Write;
use std::sync::OnceLock;

/// Stdout was closed by the reader (broken pipe): stop writing, exit 0.
#[derive(Debug, thiserror::Error)]
#[error("stdout closed")]
pub struct Closed;

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("the embedded descriptor set decodes")
    })
}

/// The protobuf JSON mapping of `msg`, whose full proto name is `type_name`
/// (e.g. `certfed.v1.NodeInfo`).
pub fn proto_value<M: Message>(msg: &M, type_name: &str) -> anyhow::Result<serde_json::Value> {
    let desc = pool()
        .get_message_by_name(type_name)
        .ok_or_else(|| anyhow::anyhow!("no message type {type_name} in the descriptor set"))?;
    let dynamic = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice())
        .map_err(|e| anyhow::anyhow!("re-reading {type_name}: {e}"))?;
    Ok(serde_json::to_value(&dynamic)?)
}

/// Pretty JSON (two-space indent, as grpcurl), terminal-safe, with a newline.
pub fn json_pretty(v: &serde_json::Value) -> String {
    let mut s = escape_json(&serde_json::to_string_pretty(v).unwrap_or_default()).into_owned();
    s.push('\n');
    s
}

/// One-line JSON, terminal-safe, with a newline (for streams: JSON Lines).
pub fn json_line(v: &serde_json::Value) -> String {
    let mut s = escape_json(&serde_json::to_string(v).unwrap_or_default()).into_owned();
    s.push('\n');
    s
}

/// Characters that must not reach a terminal raw: controls (C0, DEL, C1),
/// bidirectional marks/overrides/isolates, zero-width and other invisible
/// format characters, line/paragraph separators, the byte-order mark.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061C}'
            | '\u{115F}' | '\u{1160}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}')
}

fn escape_with(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) && !keep(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A one-line field (title, id, table cell) made safe for a terminal:
/// newlines and tabs are escaped too.
pub fn term(s: &str) -> Cow<'_, str> {
    escape_with(s, |_| false)
}

/// A multi-line text (description) made safe for a terminal: newlines and
/// tabs stay, every other unsafe character is escaped.
pub fn term_block(s: &str) -> Cow<'_, str> {
    escape_with(s, |c| c == '\n' || c == '\t')
}

/// Serialized JSON with every unsafe character that serde_json leaves raw
/// (DEL, C1, bidi and format characters) written as a `\uXXXX` escape. Such
/// characters can only occur inside JSON strings, so the value is unchanged.
pub fn escape_json(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe_in_json) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe_in_json(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Unsafe characters other than the structural newline and the C0 controls
/// serde_json already escapes inside strings.
fn is_unsafe_in_json(c: char) -> bool {
    is_unsafe(c) && !matches!(c, '\n' | ' ')
}

/// Writes `text` to stdout and flushes; a closed pipe is [`Closed`].
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Closed.into()),
        Err(e) => Err(anyhow::anyhow!("cannot write to stdout: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes() {
        assert_eq!(term("plain title"), "plain title");
        assert_eq!(term("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(term("x\u{9b}31m"), "x\\u{9b}31m");
        assert_eq!(term("evil\u{202E}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(term("two\nlines"), "two\\u{a}lines");
        assert_eq!(term_block("two\nlines\tok\u{7}"), "two\nlines\tok\\u{7}");
        assert_eq!(term("Ünïcödé ✓ 日本"), "Ünïcödé ✓ 日本");
    }

    #[test]
    fn json_escapes_keep_the_value() {
        let v = serde_json::json!({"title": "a\u{1b}[31m\u{9b}\u{202e}\u{7f}b", "n": "x\ny"});
        let s = json_pretty(&v);
        assert!(s.chars().all(|c| !is_unsafe(c) || c == '\n'), "{s:?}");
        assert!(s.contains("\\u001b") && s.contains("\\u009b") && s.contains("\\u202e"));
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
        let line = json_line(&v);
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&line).unwrap(), v);
    }

    #[test]
    fn proto_json_mapping() {
        use crate::proto::v1::*;
        let info = NodeInfo {
            node_id: "node-a".into(),
            stored_messages: 7,
            started: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            ..Default::default()
        };
        let v = proto_value(&info, "certfed.v1.NodeInfo").unwrap();
        assert_eq!(v["nodeId"], "node-a");
        assert_eq!(v["storedMessages"], "7");
        assert_eq!(v["started"], "2023-11-14T22:13:20Z");
        let p = PeerView {
            peer_id: "node-b".into(),
            max_tlp: Tlp::Green as i32,
            state: LinkState::Up as i32,
            ..Default::default()
        };
        let v = proto_value(&p, "certfed.v1.PeerView").unwrap();
        assert_eq!(v["maxTlp"], "TLP_GREEN");
        assert_eq!(v["state"], "LINK_STATE_UP");
        assert!(proto_value(&p, "certfed.v1.Nope").is_err());
    }
}
