//! Evidence attachments (issue 16): the pure rules. No I/O; the service layer
//! reads and writes the files and feeds chunks through these types.
//!
//! Invariants:
//! - An attachment travels in its *stored form*: for an encrypted message
//!   (TLP:AMBER and above) the STREAM ciphertext of its content, otherwise the
//!   content itself. The stored form is cut into chunks of
//!   [`AttachmentBlob::chunk_size`] bytes ([`CHUNK`] bytes of content, plus the
//!   16-byte tag when encrypted); the last chunk may be shorter, an empty
//!   attachment is one empty chunk.
//! - The signed header carries, per attachment, the size of the stored form,
//!   the chunk size and a root over the SHA-256 of every chunk ([`root`]).
//!   The chunk digest list travels before the chunks and is accepted only if it
//!   hashes to that root ([`Assembly::new`]); every chunk is then checked
//!   against its digest as it arrives ([`Assembly::accept`]), in order, so a
//!   corrupted, duplicated, reordered, short or long chunk is refused before a
//!   byte of it is kept, and a transfer resumes at [`Assembly::next`].
//! - Encryption is the STREAM construction (Hoang, Reyhanitabar, Rogaway,
//!   Vizár 2015, as in age and Tink) from the maintained `aead-stream` crate
//!   over ChaCha20Poly1305: chunk i is sealed with counter i and a last-chunk
//!   flag, so a reordered, dropped or truncated chunk does not decrypt. Each
//!   attachment has a fresh 32-byte key (chosen by the caller: the domain has
//!   no randomness), which travels only inside the HPKE-sealed payload.
//! - The manifest ([`Attachment`]: name, media type, size, SHA-256 of the
//!   content, malicious flag, key) rides in the payload; [`check_manifests`]
//!   ties every manifest to its blob (sizes agree with the framing, keys
//!   present exactly when encrypted, names unique and safe to use as a file
//!   name, the total within `limits.max_attachment_bytes`).
use crate::proto::v1::{Attachment, AttachmentBlob};
use aead_stream::{KeyInit, StreamBE32, StreamPrimitive};
use chacha20poly1305::ChaCha20Poly1305;
use sha2::{Digest, Sha256};

/// Bytes of content per chunk (1 MiB).
pub const CHUNK: u32 = 1 << 20;
/// Bytes the STREAM encryption adds to each chunk (the Poly1305 tag).
pub const TAG: u32 = 16;
/// Associated data of every STREAM chunk.
pub const STREAM_AAD: &[u8] = b"certfed.v1.attachment";
/// Domain separation of the chunk root.
const ROOT_CONTEXT: &[u8] = b"certfed.v1.chunks\x00";
/// Most attachments on one message.
pub const MAX_ATTACHMENTS: usize = 16;
/// Longest attachment name, in characters.
pub const MAX_NAME_CHARS: usize = 255;
/// Media type used when the operator names none.
pub const DEFAULT_MEDIA_TYPE: &str = "application/octet-stream";

/// A 32-byte SHA-256 digest.
pub type Digest32 = [u8; 32];

/// Why a chunk, a digest list or a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    #[error(
        "attachment framing: {0}; the signed header is inconsistent, the message cannot carry this attachment"
    )]
    Framing(String),
    #[error(
        "chunk digest list does not match the signed chunk root; the sending peer holds a corrupt or forged copy, fetch from another peer"
    )]
    DigestList,
    #[error(
        "chunk {got} arrived where chunk {expected} was due; chunks are sent in order, each once: resume from chunk {expected}"
    )]
    OutOfOrder { expected: u32, got: u32 },
    #[error(
        "chunk {index} has {got} bytes where the signed framing says {expected}; the sender's size lies, the chunk is refused"
    )]
    Length { index: u32, expected: u64, got: u64 },
    #[error(
        "chunk {index} fails its SHA-256 digest; it was corrupted or forged, refused (fetch it again, from another peer if one holds it)"
    )]
    Corrupt { index: u32 },
    #[error("every chunk is already here; nothing more is accepted")]
    Complete,
    #[error(
        "chunk {index} does not decrypt: altered, reordered, truncated or sealed with another key; the copy is corrupt"
    )]
    Decrypt { index: u32 },
    #[error("{0}")]
    Manifest(String),
}

/// The chunking of one stored form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Bytes of the stored form.
    pub size: u64,
    /// Bytes per chunk of the stored form.
    pub chunk_size: u32,
}

impl Layout {
    /// Checks a blob's numbers: a non-zero chunk size and fewer than 2^32
    /// chunks (the STREAM counter).
    pub fn of(blob: &AttachmentBlob) -> Result<Layout, AttachmentError> {
        if blob.chunk_size == 0 {
            return Err(AttachmentError::Framing("chunk_size is 0".into()));
        }
        let l = Layout {
            size: blob.size,
            chunk_size: blob.chunk_size,
        };
        if l.size.div_ceil(u64::from(l.chunk_size)) > u64::from(u32::MAX) {
            return Err(AttachmentError::Framing(format!(
                "{} bytes in chunks of {} make more than 2^32 chunks",
                l.size, l.chunk_size
            )));
        }
        if blob.chunk_root.len() != 32 {
            return Err(AttachmentError::Framing(format!(
                "chunk_root has {} bytes, not 32",
                blob.chunk_root.len()
            )));
        }
        Ok(l)
    }

    /// Number of chunks (at least one: an empty stored form is one empty chunk).
    pub fn count(&self) -> u32 {
        // `of` bounds the count below 2^32.
        u32::try_from(self.size.div_ceil(u64::from(self.chunk_size)).max(1)).unwrap_or(u32::MAX)
    }

    /// Bytes of chunk `i` (< count).
    pub fn len_of(&self, i: u32) -> u64 {
        let start = u64::from(i) * u64::from(self.chunk_size);
        self.size
            .saturating_sub(start)
            .min(u64::from(self.chunk_size))
    }

    /// Offset of chunk `i` in the stored form.
    pub fn offset_of(&self, i: u32) -> u64 {
        u64::from(i) * u64::from(self.chunk_size)
    }
}

/// The chunk root over the digests of every chunk of a stored form.
pub fn root(layout: Layout, digests: &[Digest32]) -> Digest32 {
    let mut h = Sha256::new();
    h.update(ROOT_CONTEXT);
    h.update(layout.size.to_be_bytes());
    h.update(layout.chunk_size.to_be_bytes());
    for d in digests {
        h.update(d);
    }
    h.finalize().into()
}

/// SHA-256 of one chunk.
pub fn chunk_digest(chunk: &[u8]) -> Digest32 {
    Sha256::digest(chunk).into()
}

/// Bytes of the stored form of `content_size` bytes of content.
pub fn stored_size(content_size: u64, encrypted: bool) -> u64 {
    if !encrypted {
        return content_size;
    }
    let chunks = content_size.div_ceil(u64::from(CHUNK)).max(1);
    content_size + chunks * u64::from(TAG)
}

/// Bytes of content behind a stored form (the inverse of [`stored_size`]).
pub fn content_size(blob: &AttachmentBlob, encrypted: bool) -> u64 {
    if !encrypted || blob.chunk_size == 0 {
        return blob.size;
    }
    let chunks = blob.size.div_ceil(u64::from(blob.chunk_size)).max(1);
    blob.size.saturating_sub(chunks * u64::from(TAG))
}

fn stream(key: &Digest32) -> StreamBE32<ChaCha20Poly1305> {
    let aead = ChaCha20Poly1305::new(key.into());
    <StreamBE32<ChaCha20Poly1305> as aead_stream::NewStream<_>>::from_aead(
        aead,
        &Default::default(),
    )
}

/// Decrypts chunk `index` of an encrypted stored form (`last`: the final
/// chunk) into its content.
pub fn open_chunk(
    key: &Digest32,
    index: u32,
    last: bool,
    mut chunk: Vec<u8>,
) -> Result<Vec<u8>, AttachmentError> {
    stream(key)
        .decrypt_in_place(index, last, STREAM_AAD, &mut chunk)
        .map_err(|_| AttachmentError::Decrypt { index })?;
    Ok(chunk)
}

/// Turns content, written in pieces of any size, into its stored form chunk
/// by chunk, with the digests and the manifest numbers. Holds at most one
/// chunk of content.
pub struct Builder {
    key: Option<Digest32>,
    pending: Vec<u8>,
    index: u32,
    content_size: u64,
    stored_size: u64,
    content_sha: Sha256,
    digests: Vec<Digest32>,
}

/// What a finished [`Builder`] knows: the header blob, the chunk digests (to
/// send before the chunks) and the content's size and SHA-256.
#[derive(Debug, Clone)]
pub struct Built {
    pub blob: AttachmentBlob,
    pub digests: Vec<Digest32>,
    pub content_size: u64,
    pub content_sha256: Digest32,
}

impl Builder {
    /// `key`: the fresh STREAM key for an encrypted message, `None` in clear.
    pub fn new(key: Option<Digest32>) -> Builder {
        Builder {
            key,
            pending: Vec::new(),
            index: 0,
            content_size: 0,
            stored_size: 0,
            content_sha: Sha256::new(),
            digests: Vec::new(),
        }
    }

    /// Bytes of content taken so far.
    pub fn content_size(&self) -> u64 {
        self.content_size
    }

    fn seal(&mut self, last: bool) -> Vec<u8> {
        let mut chunk = std::mem::take(&mut self.pending);
        if let Some(key) = &self.key {
            // Encryption of a chunk under 2^32 blocks cannot fail.
            let _ = stream(key).encrypt_in_place(self.index, last, STREAM_AAD, &mut chunk);
        }
        self.index = self.index.saturating_add(1);
        self.stored_size += chunk.len() as u64;
        self.digests.push(chunk_digest(&chunk));
        chunk
    }

    /// Takes more content; returns the stored chunks it completed (each to be
    /// written in order). The last chunk is held back until [`Builder::finish`].
    pub fn write(&mut self, mut data: &[u8]) -> Vec<Vec<u8>> {
        self.content_size += data.len() as u64;
        self.content_sha.update(data);
        let mut out = Vec::new();
        while !data.is_empty() {
            // A full pending chunk is sealed only when more content follows,
            // so that the final chunk carries the last-chunk flag.
            if self.pending.len() == CHUNK as usize {
                out.push(self.seal(false));
            }
            let room = CHUNK as usize - self.pending.len();
            let take = room.min(data.len());
            if self.pending.capacity() == 0 {
                self.pending.reserve_exact(CHUNK as usize + TAG as usize);
            }
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        out
    }

    /// Seals the last chunk; returns it and what the manifest needs.
    pub fn finish(mut self) -> (Vec<u8>, Built) {
        let last = self.seal(true);
        let chunk_size = CHUNK + if self.key.is_some() { TAG } else { 0 };
        let layout = Layout {
            size: self.stored_size,
            chunk_size,
        };
        let blob = AttachmentBlob {
            size: self.stored_size,
            chunk_size,
            chunk_root: root(layout, &self.digests).to_vec(),
        };
        (
            last,
            Built {
                blob,
                digests: self.digests,
                content_size: self.content_size,
                content_sha256: self.content_sha.finalize().into(),
            },
        )
    }
}

/// Encodes a chunk digest list for the wire (32 bytes per chunk).
pub fn encode_digests(digests: &[Digest32]) -> Vec<u8> {
    digests.concat()
}

/// Receives one stored form chunk by chunk, from any number of sources and
/// sessions: verifies the digest list against the signed root, then every
/// chunk against its digest, in order. The caller appends each accepted chunk
/// to its temporary file and, after a restart, resumes with
/// [`Assembly::resume`] at the number of chunks already on disk.
#[derive(Debug, Clone)]
pub struct Assembly {
    layout: Layout,
    digests: Vec<Digest32>,
    next: u32,
}

impl Assembly {
    /// Checks the digest list (`list`: 32 bytes per chunk) against the blob.
    pub fn new(blob: &AttachmentBlob, list: &[u8]) -> Result<Assembly, AttachmentError> {
        let layout = Layout::of(blob)?;
        let count = layout.count() as usize;
        if list.len() != count * 32 {
            return Err(AttachmentError::DigestList);
        }
        let digests: Vec<Digest32> = list
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap_or([0; 32]))
            .collect();
        if root(layout, &digests).as_slice() != blob.chunk_root.as_slice() {
            return Err(AttachmentError::DigestList);
        }
        Ok(Assembly {
            layout,
            digests,
            next: 0,
        })
    }

    /// Continues after `verified` chunks already kept (clamped to the count).
    pub fn resume(mut self, verified: u32) -> Assembly {
        self.next = verified.min(self.layout.count());
        self
    }

    /// The chunking.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The index of the next chunk due.
    pub fn next(&self) -> u32 {
        self.next
    }

    /// Bytes verified so far.
    pub fn verified_bytes(&self) -> u64 {
        self.layout.offset_of(self.next).min(self.layout.size)
    }

    /// Every chunk is here.
    pub fn is_complete(&self) -> bool {
        self.next >= self.layout.count()
    }

    /// Checks chunk `index`; on success it is the next one kept.
    pub fn accept(&mut self, index: u32, chunk: &[u8]) -> Result<(), AttachmentError> {
        if self.is_complete() {
            return Err(AttachmentError::Complete);
        }
        if index != self.next {
            return Err(AttachmentError::OutOfOrder {
                expected: self.next,
                got: index,
            });
        }
        let expected = self.layout.len_of(index);
        if chunk.len() as u64 != expected {
            return Err(AttachmentError::Length {
                index,
                expected,
                got: chunk.len() as u64,
            });
        }
        if chunk_digest(chunk) != self.digests[index as usize] {
            return Err(AttachmentError::Corrupt { index });
        }
        self.next += 1;
        Ok(())
    }
}

/// Checks an attachment name: 1 to 255 characters, no control or invisible
/// character, no path separator, not `.` or `..` (it becomes a file name on
/// the operator's disk only through `--out`, but it is shown in terminals).
pub fn check_name(field: &str, name: &str) -> Result<(), AttachmentError> {
    let bad = |why: &str| AttachmentError::Manifest(format!("{field}: {why}"));
    if name.is_empty() {
        return Err(bad("required: the file name of the attachment"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(bad(&format!(
            "longer than {MAX_NAME_CHARS} characters; shorten the file name"
        )));
    }
    if name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(bad(&format!(
            "{} is a path; give a plain file name without / or \\",
            super::text::quote(name)
        )));
    }
    super::text::check(field, name, super::text::Kind::SingleLine)
        .map_err(|e| AttachmentError::Manifest(e.to_string()))
}

/// The media type a file name's extension names (the common evidence kinds;
/// [`DEFAULT_MEDIA_TYPE`] otherwise).
pub fn media_type_for_name(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
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
        _ => DEFAULT_MEDIA_TYPE,
    }
}

/// Checks a media type: `type/subtype`, printable ASCII, no spaces, at most 127
/// characters (RFC 6838).
pub fn check_media_type(field: &str, media_type: &str) -> Result<(), AttachmentError> {
    let ok = media_type.len() <= 127
        && media_type.split_once('/').is_some_and(|(t, s)| {
            !t.is_empty()
                && !s.is_empty()
                && !s.contains('/')
                && media_type
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        });
    if ok {
        Ok(())
    } else {
        Err(AttachmentError::Manifest(format!(
            "{field}: {} is not a media type; write type/subtype, e.g. application/vnd.tcpdump.pcap",
            super::text::quote(media_type)
        )))
    }
}

/// Checks what an operator declares before uploading: names, media types and
/// the total size against `limit` (`limits.max_attachment_bytes`).
pub fn check_declared(list: &[Attachment], limit: u64) -> Result<(), AttachmentError> {
    if list.len() > MAX_ATTACHMENTS {
        return Err(AttachmentError::Manifest(format!(
            "attachments: {} given, at most {MAX_ATTACHMENTS} per message; pack them in an archive",
            list.len()
        )));
    }
    let mut total: u64 = 0;
    for (i, a) in list.iter().enumerate() {
        check_name(&format!("attachments[{i}].name"), &a.name)?;
        check_media_type(&format!("attachments[{i}].media_type"), &a.media_type)?;
        if list[..i].iter().any(|b| b.name == a.name) {
            return Err(AttachmentError::Manifest(format!(
                "attachments[{i}].name: {} is given twice; names are unique within a message",
                super::text::quote(&a.name)
            )));
        }
        total = total.saturating_add(a.size);
    }
    if total > limit {
        return Err(AttachmentError::Manifest(format!(
            "attachments: {total} bytes in all, over limits.max_attachment_bytes = {limit}; share less or raise the limit on every node"
        )));
    }
    Ok(())
}

/// Checks the manifests of a message against its signed blobs: one blob per
/// manifest, sizes consistent with the framing, a 32-byte key exactly when
/// `encrypted`, a 32-byte SHA-256, and everything [`check_declared`] checks.
pub fn check_manifests(
    list: &[Attachment],
    blobs: &[AttachmentBlob],
    encrypted: bool,
    limit: u64,
) -> Result<(), AttachmentError> {
    if list.len() != blobs.len() {
        return Err(AttachmentError::Manifest(format!(
            "the payload lists {} attachments and the signed header {}; the message is malformed",
            list.len(),
            blobs.len()
        )));
    }
    check_declared(list, limit)?;
    let chunk_size = CHUNK + if encrypted { TAG } else { 0 };
    for (i, (a, b)) in list.iter().zip(blobs).enumerate() {
        let bad = |why: String| AttachmentError::Manifest(format!("attachments[{i}]: {why}"));
        Layout::of(b)?;
        if b.chunk_size != chunk_size {
            return Err(bad(format!(
                "chunk size {} where {chunk_size} is used",
                b.chunk_size
            )));
        }
        if b.size != stored_size(a.size, encrypted) {
            return Err(bad(format!(
                "content of {} bytes cannot have a stored form of {} bytes; the size lies",
                a.size, b.size
            )));
        }
        if a.sha256.len() != 32 {
            return Err(bad("sha256 must have 32 bytes".into()));
        }
        match (encrypted, a.key.len()) {
            (true, 32) | (false, 0) => {}
            (true, _) => return Err(bad("an encrypted message needs a 32-byte key".into())),
            (false, _) => return Err(bad("a clear message carries no key".into())),
        }
    }
    Ok(())
}

/// Decrypts (when `key` is set) and checks a whole stored form read chunk by
/// chunk: chunks are fed in order, the last one with `last`; the content's
/// SHA-256 and size are compared with the manifest at the end.
pub struct Reader {
    key: Option<Digest32>,
    layout: Layout,
    next: u32,
    sha: Sha256,
    size: u64,
    expect_sha: Vec<u8>,
    expect_size: u64,
}

impl Reader {
    pub fn new(manifest: &Attachment, blob: &AttachmentBlob) -> Result<Reader, AttachmentError> {
        let key = if manifest.key.is_empty() {
            None
        } else {
            Some(manifest.key.as_slice().try_into().map_err(|_| {
                AttachmentError::Manifest("attachment key must have 32 bytes".into())
            })?)
        };
        Ok(Reader {
            key,
            layout: Layout::of(blob)?,
            next: 0,
            sha: Sha256::new(),
            size: 0,
            expect_sha: manifest.sha256.clone(),
            expect_size: manifest.size,
        })
    }

    /// The chunking of the stored form.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Turns the next stored chunk into content.
    pub fn chunk(&mut self, chunk: Vec<u8>) -> Result<Vec<u8>, AttachmentError> {
        let index = self.next;
        if index >= self.layout.count() {
            return Err(AttachmentError::Complete);
        }
        let last = index + 1 == self.layout.count();
        let content = match &self.key {
            Some(k) => open_chunk(k, index, last, chunk)?,
            None => chunk,
        };
        self.next += 1;
        self.size += content.len() as u64;
        self.sha.update(&content);
        Ok(content)
    }

    /// After the last chunk: the content is exactly what the manifest signed.
    pub fn finish(self) -> Result<(), AttachmentError> {
        if self.next < self.layout.count() {
            return Err(AttachmentError::Manifest(format!(
                "the stored copy ends after chunk {} of {}; it is truncated",
                self.next,
                self.layout.count()
            )));
        }
        let sha: Digest32 = self.sha.finalize().into();
        if self.size != self.expect_size || sha.as_slice() != self.expect_sha.as_slice() {
            return Err(AttachmentError::Manifest(
                "the content does not match the signed SHA-256; the stored copy is corrupt".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "attachment_tests.rs"]
mod tests;
