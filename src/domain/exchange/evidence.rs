//! Evidence attachments in the exchange formats (issue 16 × issue 15): the
//! helpers the MISP and STIX mappings share — MISP's malware-sample
//! convention ([`zip_sample`], [`unzip_sample`]), base64 bounded by the
//! node's limit ([`unb64`]) and the check of stated hashes
//! ([`check_hashes`]). The types (`ExportedFile`, `ImportedFile`) are in
//! `common`.
//!
//! Invariants:
//! - A malware sample never leaves certfed in the clear: it is exported the
//!   way MISP stores and shares samples — a zip encrypted with the password
//!   `infected` (ZipCrypto, the only zip encryption PyMISP and Python's
//!   `zipfile` read) holding two entries, `<md5>` (the sample) and
//!   `<md5>.filename.txt` (its file name). The password is public by
//!   convention: the zip only keeps scanners and careless clicks off the
//!   sample. (The zip crate fills the 10-byte ZipCrypto header from the
//!   system's random source; nothing secret depends on it.)
//! - Reading a sample back never inflates more than the caller's bound:
//!   each entry is read through a `take(max + 1)`, so a zip bomb stops at
//!   the bound with an error.
//! - Content an import carries is checked against every hash and size the
//!   file states for it ([`check_hashes`]); a file that lies is refused,
//!   naming the hash that does not match.
//! - Pure: no files, sockets or clocks; everything is in memory (the
//!   import file itself is bounded by `MAX_IMPORT_BYTES`).
use base64::Engine as _;
use sha2::Digest as _;
use std::io::{Read, Write};

/// The password of MISP's malware-sample zips.
pub const SAMPLE_PASSWORD: &str = "infected";
/// Largest attachment an export includes by default (bytes); larger ones are
/// described (name, size, SHA-256) without their content.
pub const DEFAULT_INLINE_BYTES: u64 = 16 * 1024 * 1024;

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// MD5 of `data`, hex.
pub fn md5_hex(data: &[u8]) -> String {
    hex(&md5::Md5::digest(data))
}

/// SHA-256 of `data`, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&sha2::Sha256::digest(data))
}

/// Base64 (standard alphabet, padded), as MISP `data` and STIX `payload_bin`.
pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Decodes base64 whose decoded size is known to be within `max` bytes
/// before decoding (the text is at most 4/3 of it).
pub fn unb64(text: &str, max: u64) -> Result<Vec<u8>, String> {
    let decoded_len = (text.len() as u64 / 4) * 3;
    if decoded_len > max.saturating_add(3) {
        return Err(format!(
            "about {decoded_len} bytes once decoded, over the limit of {max} bytes (limits.max_attachment_bytes of the node)"
        ));
    }
    let cleaned: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let out = base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .map_err(|e| format!("not valid base64 ({e})"))?;
    if out.len() as u64 > max {
        return Err(format!(
            "{} bytes, over the limit of {max} bytes (limits.max_attachment_bytes of the node)",
            out.len()
        ));
    }
    Ok(out)
}

/// A malware sample zipped as MISP does: entries `<md5>` and
/// `<md5>.filename.txt`, both encrypted with [`SAMPLE_PASSWORD`]. Returns
/// the zip and the MD5 (hex) of the sample.
pub fn zip_sample(name: &str, content: &[u8]) -> Result<(Vec<u8>, String), String> {
    use zip::unstable::write::FileOptionsExt;
    let md5 = md5_hex(content);
    let err = |e: &dyn std::fmt::Display| format!("cannot zip the malware sample {name:?}: {e}");
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .with_deprecated_encryption(SAMPLE_PASSWORD.as_bytes())
        .map_err(|e| err(&e))?;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(md5.as_str(), opts).map_err(|e| err(&e))?;
    w.write_all(content).map_err(|e| err(&e))?;
    w.start_file(format!("{md5}.filename.txt"), opts)
        .map_err(|e| err(&e))?;
    w.write_all(name.as_bytes()).map_err(|e| err(&e))?;
    let out = w.finish().map_err(|e| err(&e))?.into_inner();
    Ok((out, md5))
}

/// A sample read out of a MISP malware-sample zip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The MD5 the zip names the sample by (entry name).
    pub md5: String,
    /// The file name in `<md5>.filename.txt`, if present.
    pub filename: Option<String>,
    pub content: Vec<u8>,
}

/// Reads a malware-sample zip (MISP convention, `password`), inflating at
/// most `max` bytes of sample. Refuses a zip that is not of that shape, a
/// wrong password, and a sample whose MD5 is not its entry name.
pub fn unzip_sample(data: &[u8], password: &str, max: u64) -> Result<Sample, String> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(data)).map_err(|e| {
        format!("not a zip ({e}); MISP shares malware samples as a zip encrypted with the password \"{SAMPLE_PASSWORD}\"")
    })?;
    let names: Vec<String> = z
        .file_names()
        .map(|n| n.map(|n| n.to_string()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the zip's entry names cannot be read ({e})"))?;
    let sample_name = names
        .iter()
        .find(|n| !n.ends_with(".filename.txt"))
        .cloned();
    let Some(sample_name) = sample_name.filter(|_| names.len() <= 2) else {
        return Err(format!(
            "the zip holds {} entries ({}); a MISP malware sample holds <md5> and <md5>.filename.txt",
            names.len(),
            names.join(", ")
        ));
    };
    let read = |z: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
                name: &str,
                max: u64|
     -> Result<Vec<u8>, String> {
        let idx = z
            .index_for_name(name)
            .ok_or_else(|| format!("entry {name:?} missing"))?;
        let f = z.by_index_decrypt(idx, password.as_bytes()).map_err(|e| {
            format!("entry {name:?} does not open with the password {password:?} ({e})")
        })?;
        let mut out = Vec::new();
        f.take(max.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| {
                format!("entry {name:?} does not decrypt or inflate ({e}): wrong password or a corrupt zip")
            })?;
        if out.len() as u64 > max {
            return Err(format!(
                "entry {name:?} inflates to more than {max} bytes (limits.max_attachment_bytes of the node)"
            ));
        }
        Ok(out)
    };
    let content = read(&mut z, &sample_name, max)?;
    let filename = match names.iter().find(|n| n.ends_with(".filename.txt")) {
        Some(n) => {
            let raw = read(&mut z, n, 4096)?;
            Some(String::from_utf8_lossy(&raw).trim().to_string())
        }
        None => None,
    };
    let md5 = md5_hex(&content);
    if !sample_name.eq_ignore_ascii_case(&md5) {
        return Err(format!(
            "the sample's MD5 is {md5} but the zip names it {sample_name:?}; the zip is corrupt or was altered"
        ));
    }
    Ok(Sample {
        md5,
        filename,
        content,
    })
}

/// Checks `content` against hashes a file states (`{"SHA-256": "…", "MD5":
/// "…"}`, STIX hash names, case and dashes ignored). Unknown hash names are
/// returned (not checked); a hash that does not match is an error naming it.
pub fn check_hashes(
    hashes: &serde_json::Map<String, serde_json::Value>,
    content: &[u8],
) -> Result<Vec<String>, String> {
    let mut unchecked = Vec::new();
    for (k, v) in hashes {
        let want = v.as_str().unwrap_or("").to_ascii_lowercase();
        let got = match k.to_ascii_uppercase().replace('-', "").as_str() {
            "SHA256" => sha256_hex(content),
            "SHA1" => hex(&sha1_digest(content)),
            "MD5" => md5_hex(content),
            _ => {
                unchecked.push(k.clone());
                continue;
            }
        };
        if want != got {
            return Err(format!(
                "hashes.{k} says {want} but the content's is {got}: the file lies about its content (or was altered); nothing is imported"
            ));
        }
    }
    Ok(unchecked)
}

fn sha1_digest(data: &[u8]) -> [u8; 20] {
    // Only to check a SHA-1 a file states; certfed never relies on SHA-1.
    sha1_smol::Sha1::from(data).digest().bytes()
}
