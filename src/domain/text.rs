//! Free text from operators and partners is untrusted: the one validator every
//! free-text field goes through ([`check`]), and [`quote`] for echoing a
//! caller's input in an error message without letting it grow or carry
//! control characters.
//!
//! A partner's title, description or note ends up in an analyst's terminal
//! (`certfed alert list`), in logs and in other tools. A character that makes
//! a terminal or a viewer do something other than show a glyph is refused,
//! with the field, the position and the code point named:
//!
//! - C0 controls U+0000–U+001F (ESC starts terminal escape sequences, BEL,
//!   backspace and CR overwrite what is shown), except, in multi-line fields
//!   ([`Kind::MultiLine`]: descriptions, notes, conditions, reports), TAB, LF
//!   and CR immediately followed by LF (a Windows line end). A lone CR is
//!   refused everywhere: it returns to the start of the line and lets the text
//!   after it hide the text before it.
//! - DEL U+007F and the C1 controls U+0080–U+009F (U+009B is a one-byte CSI).
//! - Bidirectional embeddings, overrides and isolates U+202A–U+202E and
//!   U+2066–U+2069 ("Trojan Source", CVE-2021-42574): they reorder what is
//!   shown. The plain marks LRM, RLM and ALM (U+200E, U+200F, U+061C) are
//!   allowed: right-to-left text needs them and they reorder nothing across
//!   the text.
//! - Line and paragraph separators U+2028, U+2029 (line breaks to some
//!   viewers, not to others: a field would look different in each).
//! - Invisible characters that hide or smuggle text: the byte order mark /
//!   zero-width no-break space U+FEFF, the deprecated format characters
//!   U+206A–U+206F, the interlinear annotation characters U+FFF9–U+FFFB, the
//!   tag characters U+E0000–U+E007F (invisible copies of ASCII).
//! - Noncharacters (U+FDD0–U+FDEF and the last two code points of every
//!   plane), which are not for interchange.
//!
//! Allowed, deliberately: every other printable character of every script,
//! zero-width joiner and non-joiner (emoji sequences, Indic and Persian
//! scripts), word joiner and zero-width space (Thai and Khmer word breaks),
//! soft hyphen, variation selectors, private-use characters.
//!
//! Stored text is never rewritten: a field is refused whole, so what is signed
//! and relayed is exactly what was validated. Pure functions, no I/O.

/// Whether line breaks are allowed in a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A title, summary, name or other one-line field: no TAB, no line break.
    SingleLine,
    /// A description, note or report: TAB, LF and CR LF allowed.
    MultiLine,
}

/// A refused character: the field, where, which code point and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{field}: contains {what} (U+{code:04X}) at character {position}; remove it (control, bidirectional-override and invisible formatting characters are refused in every text field so that no partner can rewrite what an analyst's terminal or viewer shows)"
)]
pub struct TextError {
    /// Proto path of the field, e.g. `alert.title`.
    pub field: String,
    /// 1-based character position of the first refused character.
    pub position: usize,
    /// Its code point.
    pub code: u32,
    /// What it is, e.g. "the control character ESC".
    pub what: String,
}

/// The name of a C0 control, for error messages.
fn c0_name(c: u32) -> &'static str {
    const NAMES: [&str; 32] = [
        "NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL", "BS", "TAB", "LF", "VT", "FF",
        "CR", "SO", "SI", "DLE", "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB", "CAN", "EM",
        "SUB", "ESC", "FS", "GS", "RS", "US",
    ];
    NAMES.get(c as usize).copied().unwrap_or("?")
}

/// Why `c` is refused in a field of `kind` (given the next character, for CR
/// LF), or `None` when it is allowed.
fn refused(c: char, next: Option<char>, kind: Kind) -> Option<String> {
    let u = c as u32;
    match u {
        0x09 | 0x0A if kind == Kind::MultiLine => None,
        0x0D if kind == Kind::MultiLine && next == Some('\n') => None,
        0x0D if kind == Kind::MultiLine => Some(
            "a carriage return (CR) not followed by a line feed; use LF or CR LF line ends"
                .to_string(),
        ),
        0x09 | 0x0A | 0x0D => Some(format!(
            "the control character {} (this field is a single line)",
            c0_name(u)
        )),
        0x00..=0x1F => Some(format!("the control character {}", c0_name(u))),
        0x7F => Some("the control character DEL".into()),
        0x80..=0x9F => Some("a C1 control character".into()),
        0x202A..=0x202E | 0x2066..=0x2069 => {
            Some("a bidirectional embedding, override or isolate character".into())
        }
        0x2028 => Some("a line separator character".into()),
        0x2029 => Some("a paragraph separator character".into()),
        0xFEFF => Some("a byte order mark / zero-width no-break space".into()),
        0x206A..=0x206F => Some("a deprecated invisible format character".into()),
        0xFFF9..=0xFFFB => Some("an interlinear annotation character".into()),
        0xE0000..=0xE007F => Some("an invisible tag character".into()),
        0xFDD0..=0xFDEF => Some("a noncharacter".into()),
        _ if u & 0xFFFE == 0xFFFE => Some("a noncharacter".into()),
        _ => None,
    }
}

/// Checks one free-text field; `field` is its proto path (e.g.
/// `alert.indicators[2].comment`). Refuses the first character listed in the
/// module documentation, naming the field, the 1-based character position and
/// the code point.
pub fn check(field: &str, s: &str, kind: Kind) -> Result<(), TextError> {
    if plain_ascii(s.as_bytes(), kind) {
        return Ok(());
    }
    let mut chars = s.chars().enumerate().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|(_, n)| *n);
        if let Some(what) = refused(c, next, kind) {
            return Err(TextError {
                field: field.to_string(),
                position: i + 1,
                code: c as u32,
                what,
            });
        }
    }
    Ok(())
}

/// Whether `s` is printable ASCII only (and, in multi-line text, TAB and LF):
/// nothing [`refused`] refuses, so [`check`] needs no look at characters.
/// Checked eight bytes at a time in a word (SWAR: each byte's verdict lands
/// in its top bit, no carry crosses from one byte into the next), so it is
/// fast whatever the optimiser does with loops: the release build optimises
/// this crate for size, which left a byte-at-a-time loop at 1.6 µs for an
/// alert's 1 KiB description; words take about a fifth of that (0.29 µs).
fn plain_ascii(s: &[u8], kind: Kind) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const TOPS: u64 = u64::from_le_bytes([0x80; 8]);
    const LOW7: u64 = !TOPS;
    // 0x80 in each byte of `x` that is zero, 0 in the others (exact).
    let zero = |x: u64| !(((x & LOW7) + LOW7) | x | LOW7);
    let multi = kind == Kind::MultiLine;
    // 0x80 in each byte that is not allowed, 0 in the others.
    let bad = |w: u64| {
        let low = w & LOW7;
        // 0x7F (DEL) and above: the top bit set, or set by adding one.
        let high = (w | (low + ONES)) & TOPS;
        // Below 0x20: no carry into the top bit when adding 0x60.
        let control = !(low + 0x60 * ONES) & !w & TOPS;
        let allowed = if multi {
            zero(w ^ (b'\t' as u64 * ONES)) | zero(w ^ (b'\n' as u64 * ONES))
        } else {
            0
        };
        high | (control & !allowed)
    };
    let mut words = s.chunks_exact(8);
    let mut found = 0;
    for w in words.by_ref() {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        found |= bad(u64::from_le_bytes(b));
    }
    // The last bytes, padded with spaces (always allowed).
    let rest = words.remainder();
    let mut b = [b' '; 8];
    b[..rest.len()].copy_from_slice(rest);
    found |= bad(u64::from_le_bytes(b));
    found == 0
}

/// Checks every entry of a list of single-line texts (`field[i]`).
pub fn check_all(field: &str, list: &[String], kind: Kind) -> Result<(), TextError> {
    for (i, s) in list.iter().enumerate() {
        check(&format!("{field}[{i}]"), s, kind)?;
    }
    Ok(())
}

/// Longest part of a caller's input echoed in an error message, in characters.
pub const QUOTE_CHARS: usize = 64;

/// A time for people: UTC, RFC 3339, to the second (`2026-01-31T12:00:00Z`);
/// a time outside what RFC 3339 can show is written as unix milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms after the epoch"))
}

/// `s` for an error message: quoted and escaped like a Rust string literal
/// (no control character survives), cut to [`QUOTE_CHARS`] characters with
/// the full length said, so that a 20 KB input never comes back whole.
pub fn quote(s: &str) -> String {
    let n = s.chars().count();
    if n <= QUOTE_CHARS {
        return format!("{s:?}");
    }
    let head: String = s.chars().take(QUOTE_CHARS).collect();
    format!("{head:?}… ({} bytes)", s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path passes only what the character rules pass: every
    /// ASCII byte alone, and between others, in both kinds of field.
    #[test]
    fn the_ascii_fast_path_agrees_with_the_rules() {
        for kind in [Kind::SingleLine, Kind::MultiLine] {
            for b in 0u8..0x80 {
                let alone = [b];
                let fast = plain_ascii(&alone, kind);
                let rule = refused(b as char, None, kind).is_none();
                assert_eq!(fast, rule && b != 0x0D, "byte {b:#04x}, {kind:?}");
                // Inside a longer text (past its first words) the byte
                // decides the answer, and check() agrees with the rules.
                let mut long = vec![b'a'; 100];
                long[70] = b;
                let text = String::from_utf8(long).unwrap();
                assert_eq!(plain_ascii(text.as_bytes(), kind), fast, "{b:#04x}");
                assert_eq!(check("f", &text, kind).is_ok(), rule, "{b:#04x}, {kind:?}");
            }
        }
        // Every byte value at every place of texts of every length up to
        // three words: each lane of a word and each length of the padded
        // tail decides alone (a byte of 0x80 or more is never plain ASCII).
        for kind in [Kind::SingleLine, Kind::MultiLine] {
            for b in 0u8..=0xFF {
                let alone = b < 0x80 && plain_ascii(&[b], kind);
                for len in 1..=24 {
                    for at in 0..len {
                        let mut text = vec![b'a'; len];
                        text[at] = b;
                        assert_eq!(
                            plain_ascii(&text, kind),
                            alone,
                            "{b:#04x} at {at} of {len}, {kind:?}"
                        );
                    }
                }
            }
            assert!(plain_ascii(b"", kind));
        }
        // Non-ASCII text takes the character rules, which pass it or not.
        assert!(!plain_ascii("é".as_bytes(), Kind::MultiLine));
        assert!(check("f", "é", Kind::MultiLine).is_ok());
        assert!(check("f", "a\u{202E}b", Kind::MultiLine).is_err());
    }

    #[test]
    fn printable_text_of_every_script_passes() {
        for s in [
            "Ransomware at a hospital",
            "Атака на энергосистему",
            "هجوم على الشبكة \u{200F}(RTL mark)",
            "攻撃 🚨 👩\u{200D}💻",
            "ข่าว\u{200B}ด่วน",
            "soft\u{AD}hyphen",
            "",
        ] {
            check("alert.title", s, Kind::SingleLine).unwrap();
        }
        check(
            "alert.description",
            "line 1\nline 2\r\n\tindented",
            Kind::MultiLine,
        )
        .unwrap();
    }

    #[test]
    fn every_dangerous_class_is_refused_with_field_position_and_code() {
        let cases: &[(&str, u32)] = &[
            ("a\u{1b}[2Jb", 0x1B),
            ("bell\u{7}", 0x07),
            ("nul\0", 0x00),
            ("back\u{8}space", 0x08),
            ("del\u{7f}", 0x7F),
            ("csi\u{9b}31m", 0x9B),
            ("c1\u{85}", 0x85),
            ("evil\u{202E}txt.exe", 0x202E),
            ("iso\u{2066}late", 0x2066),
            ("pdi\u{2069}", 0x2069),
            ("sep\u{2028}", 0x2028),
            ("para\u{2029}", 0x2029),
            ("bom\u{FEFF}", 0xFEFF),
            ("dep\u{206B}", 0x206B),
            ("ann\u{FFF9}", 0xFFF9),
            ("tag\u{E0041}", 0xE0041),
            ("non\u{FFFF}", 0xFFFF),
            ("non\u{FDD0}", 0xFDD0),
            ("non\u{1FFFE}", 0x1FFFE),
        ];
        for (s, code) in cases {
            for kind in [Kind::SingleLine, Kind::MultiLine] {
                let e = check("alert.title", s, kind).expect_err(s);
                assert_eq!(e.code, *code, "{s:?}");
                assert_eq!(e.field, "alert.title");
                let pos = s.chars().position(|c| c as u32 == *code).unwrap() + 1;
                assert_eq!(e.position, pos);
                let msg = e.to_string();
                assert!(msg.starts_with("alert.title: "), "{msg}");
                assert!(msg.contains(&format!("U+{code:04X}")), "{msg}");
            }
        }
        let e = check("x", "a\u{1b}", Kind::SingleLine).unwrap_err();
        assert!(e.to_string().contains("ESC"), "{e}");
    }

    #[test]
    fn line_breaks_only_in_multi_line_fields_and_never_a_lone_cr() {
        for s in ["a\nb", "a\tb", "a\r\nb"] {
            check("f", s, Kind::SingleLine).expect_err(s);
            check("f", s, Kind::MultiLine).expect(s);
        }
        for s in ["over\rwrite", "end\r", "a\r\r\n"] {
            let e = check("f", s, Kind::MultiLine).expect_err(s);
            assert_eq!(e.code, 0x0D);
        }
    }

    #[test]
    fn lists_name_the_entry() {
        let e = check_all(
            "alert.references",
            &["ok".into(), "bad\u{7}".into()],
            Kind::SingleLine,
        )
        .unwrap_err();
        assert_eq!(e.field, "alert.references[1]");
    }

    #[test]
    fn quote_bounds_and_escapes() {
        assert_eq!(quote("node-a"), "\"node-a\"");
        assert_eq!(quote("a\u{1b}b"), "\"a\\u{1b}b\"");
        let q = quote(&"x".repeat(20_000));
        assert!(q.len() < 100, "{q}");
        assert!(q.contains("20000 bytes"), "{q}");
    }
}
