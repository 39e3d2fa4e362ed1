//! Deterministic tests of the attachment rules: framing, chunk root, STREAM
//! encryption (reorder, truncation, tamper), the in-order verifier and the
//! manifest checks. No I/O.
use super::*;

const KEY: Digest32 = [7; 32];

/// Content of `n` bytes that is not periodic in the chunk size.
fn content(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

/// Builds the stored form of `data`, written in pieces of `piece` bytes.
fn build(data: &[u8], key: Option<Digest32>, piece: usize) -> (Vec<Vec<u8>>, Built) {
    let mut b = Builder::new(key);
    let mut chunks = Vec::new();
    for p in data.chunks(piece.max(1)) {
        chunks.extend(b.write(p));
    }
    let (last, built) = b.finish();
    chunks.push(last);
    (chunks, built)
}

fn manifest(name: &str, built: &Built, key: Option<Digest32>) -> Attachment {
    Attachment {
        name: name.into(),
        media_type: "application/vnd.tcpdump.pcap".into(),
        size: built.content_size,
        sha256: built.content_sha256.to_vec(),
        malicious: false,
        key: key.map(|k| k.to_vec()).unwrap_or_default(),
    }
}

fn read_all(
    m: &Attachment,
    blob: &AttachmentBlob,
    chunks: Vec<Vec<u8>>,
) -> Result<Vec<u8>, AttachmentError> {
    let mut r = Reader::new(m, blob)?;
    let mut out = Vec::new();
    for c in chunks {
        out.extend(r.chunk(c)?);
    }
    r.finish()?;
    Ok(out)
}

#[test]
fn sizes_and_chunk_counts_follow_the_framing() {
    let c = CHUNK as usize;
    for (n, key) in [
        (0, None),
        (0, Some(KEY)),
        (1, Some(KEY)),
        (c - 1, None),
        (c, Some(KEY)),
        (c + 1, Some(KEY)),
        (3 * c, None),
        (2 * c + 5, Some(KEY)),
    ] {
        let data = content(n);
        for piece in [1000, c, 3 * c] {
            let (chunks, built) = build(&data, key, piece);
            let layout = Layout::of(&built.blob).unwrap();
            assert_eq!(layout.count() as usize, chunks.len(), "n={n} piece={piece}");
            assert_eq!(built.blob.size, stored_size(n as u64, key.is_some()));
            assert_eq!(content_size(&built.blob, key.is_some()), n as u64);
            assert_eq!(
                chunks.iter().map(|c| c.len() as u64).sum::<u64>(),
                built.blob.size
            );
            for (i, ch) in chunks.iter().enumerate() {
                assert_eq!(ch.len() as u64, layout.len_of(i as u32));
            }
            assert_eq!(built.content_size, n as u64);
            let m = manifest("x.pcap", &built, key);
            check_manifests(
                std::slice::from_ref(&m),
                std::slice::from_ref(&built.blob),
                key.is_some(),
                u64::MAX,
            )
            .unwrap();
            assert_eq!(read_all(&m, &built.blob, chunks).unwrap(), data);
        }
    }
}

#[test]
fn encrypted_chunks_hold_no_plaintext_and_differ_by_key() {
    let marker = b"PLAINTEXT-MARKER-16";
    let data: Vec<u8> = marker
        .iter()
        .cycle()
        .take(2 * CHUNK as usize + 10)
        .copied()
        .collect();
    let (chunks, _) = build(&data, Some(KEY), 4096);
    for c in &chunks {
        assert!(!c.windows(marker.len()).any(|w| w == marker));
    }
    let (other, _) = build(&data, Some([8; 32]), 4096);
    assert_ne!(chunks[0], other[0]);
    // In clear the content is the stored form.
    let (clear, _) = build(&data, None, 4096);
    assert_eq!(clear.concat(), data);
}

#[test]
fn stream_detects_reorder_truncation_tamper_and_wrong_key() {
    let data = content(3 * CHUNK as usize + 100);
    let (chunks, built) = build(&data, Some(KEY), 1 << 16);
    let m = manifest("a", &built, Some(KEY));
    // Reordered chunks.
    let mut swapped = chunks.clone();
    swapped.swap(0, 1);
    assert_eq!(
        read_all(&m, &built.blob, swapped),
        Err(AttachmentError::Decrypt { index: 0 })
    );
    // Truncated at a chunk boundary: chunk 2 was sealed as not-last.
    assert_eq!(
        open_chunk(&KEY, 2, true, chunks[2].clone()),
        Err(AttachmentError::Decrypt { index: 2 })
    );
    let mut r = Reader::new(&m, &built.blob).unwrap();
    r.chunk(chunks[0].clone()).unwrap();
    assert!(
        r.finish().is_err(),
        "a reader stopped early refuses to finish"
    );
    // A flipped bit.
    let mut bad = chunks.clone();
    bad[3][5] ^= 1;
    assert_eq!(
        read_all(&m, &built.blob, bad),
        Err(AttachmentError::Decrypt { index: 3 })
    );
    // Another key.
    let mut wrong = m.clone();
    wrong.key = vec![9; 32];
    assert_eq!(
        read_all(&wrong, &built.blob, chunks.clone()),
        Err(AttachmentError::Decrypt { index: 0 })
    );
    // A manifest whose SHA-256 lies (in clear, where no tag catches it).
    let (clear, cb) = build(&data, None, 1 << 20);
    let mut lying = manifest("a", &cb, None);
    lying.sha256[0] ^= 1;
    assert!(matches!(
        read_all(&lying, &cb.blob, clear),
        Err(AttachmentError::Manifest(_))
    ));
}

#[test]
fn assembly_verifies_each_chunk_in_order_and_resumes() {
    let data = content(4 * CHUNK as usize + 7);
    let (chunks, built) = build(&data, Some(KEY), 1 << 20);
    let list = encode_digests(&built.digests);
    // A digest list that does not hash to the signed root.
    let mut forged = list.clone();
    forged[0] ^= 1;
    assert_eq!(
        Assembly::new(&built.blob, &forged).unwrap_err(),
        AttachmentError::DigestList
    );
    assert_eq!(
        Assembly::new(&built.blob, &list[..32]).unwrap_err(),
        AttachmentError::DigestList
    );
    let mut a = Assembly::new(&built.blob, &list).unwrap();
    assert_eq!(a.layout().count(), 5);
    // Out of order, then a corrupted chunk, then a short one, then a long one.
    assert_eq!(
        a.accept(1, &chunks[1]),
        Err(AttachmentError::OutOfOrder {
            expected: 0,
            got: 1
        })
    );
    let mut bad = chunks[0].clone();
    bad[100] ^= 0x80;
    assert_eq!(
        a.accept(0, &bad),
        Err(AttachmentError::Corrupt { index: 0 })
    );
    assert!(matches!(
        a.accept(0, &chunks[0][..10]),
        Err(AttachmentError::Length { index: 0, .. })
    ));
    let mut long = chunks[0].clone();
    long.push(0);
    assert!(matches!(
        a.accept(0, &long),
        Err(AttachmentError::Length { .. })
    ));
    assert_eq!(a.next(), 0, "nothing refused is counted");
    a.accept(0, &chunks[0]).unwrap();
    a.accept(1, &chunks[1]).unwrap();
    // Duplicate of a chunk already kept.
    assert_eq!(
        a.accept(1, &chunks[1]),
        Err(AttachmentError::OutOfOrder {
            expected: 2,
            got: 1
        })
    );
    assert_eq!(a.verified_bytes(), 2 * u64::from(CHUNK + TAG));
    // A restart resumes at the chunks already kept, without re-sending them.
    let mut b = Assembly::new(&built.blob, &list).unwrap().resume(2);
    assert_eq!(b.next(), 2);
    for i in 2..5 {
        b.accept(i, &chunks[i as usize]).unwrap();
    }
    assert!(b.is_complete());
    assert_eq!(b.verified_bytes(), built.blob.size);
    assert_eq!(b.accept(5, &[]), Err(AttachmentError::Complete));
    assert_eq!(
        Assembly::new(&built.blob, &list).unwrap().resume(99).next(),
        5
    );
}

#[test]
fn framing_of_a_hostile_header_is_refused() {
    let blob = AttachmentBlob {
        size: 10,
        chunk_size: 0,
        chunk_root: vec![0; 32],
    };
    assert!(matches!(
        Layout::of(&blob),
        Err(AttachmentError::Framing(_))
    ));
    let blob = AttachmentBlob {
        size: u64::MAX,
        chunk_size: 1,
        chunk_root: vec![0; 32],
    };
    assert!(matches!(
        Layout::of(&blob),
        Err(AttachmentError::Framing(_))
    ));
    let blob = AttachmentBlob {
        size: 1,
        chunk_size: 1,
        chunk_root: vec![0; 3],
    };
    assert!(matches!(
        Layout::of(&blob),
        Err(AttachmentError::Framing(_))
    ));
}

#[test]
fn manifests_must_agree_with_their_blobs() {
    let (_, built) = build(&content(CHUNK as usize + 1), Some(KEY), 1 << 20);
    let good = manifest("capture.pcap", &built, Some(KEY));
    let blobs = [built.blob.clone()];
    check_manifests(std::slice::from_ref(&good), &blobs, true, 1 << 30).unwrap();
    let refused = |m: Attachment, encrypted: bool, limit: u64| {
        check_manifests(&[m], &blobs, encrypted, limit)
            .unwrap_err()
            .to_string()
    };
    // A size that lies.
    let mut m = good.clone();
    m.size += 1;
    assert!(refused(m, true, 1 << 30).contains("size lies"));
    // Over the limit.
    assert!(refused(good.clone(), true, 10).contains("limits.max_attachment_bytes"));
    // No key on an encrypted message; a key on a clear one (the blob's chunk
    // size is refused first there).
    let mut m = good.clone();
    m.key.clear();
    assert!(refused(m, true, 1 << 30).contains("32-byte key"));
    assert!(refused(good.clone(), false, 1 << 30).contains("chunk size"));
    // More manifests than blobs.
    assert!(
        check_manifests(&[good.clone(), good.clone()], &blobs, true, 1 << 30)
            .unwrap_err()
            .to_string()
            .contains("signed header")
    );
}

#[test]
fn names_and_media_types_are_checked() {
    for bad in [
        "",
        "../etc/passwd",
        "a/b",
        "a\\b",
        "..",
        "x\u{1b}[2J",
        "\u{202e}fdp.exe",
    ] {
        assert!(check_name("n", bad).is_err(), "{bad:?}");
    }
    for good in ["capture.pcap", "ransom note (1).txt", "журнал.log", "a.b.c"] {
        check_name("n", good).unwrap();
    }
    assert!(check_name("n", &"a".repeat(256)).is_err());
    for bad in [
        "",
        "pcap",
        "a/",
        "/b",
        "a/b/c",
        "text/plain; charset=\"x\"",
        "a b/c",
    ] {
        assert!(check_media_type("m", bad).is_err(), "{bad:?}");
    }
    check_media_type("m", "application/vnd.tcpdump.pcap").unwrap();
    check_media_type("m", DEFAULT_MEDIA_TYPE).unwrap();
    let a = |name: &str, size: u64| Attachment {
        name: name.into(),
        media_type: DEFAULT_MEDIA_TYPE.into(),
        size,
        ..Default::default()
    };
    assert!(
        check_declared(&[a("x", 1), a("x", 1)], 100)
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
    assert!(check_declared(&[a("x", 60), a("y", 60)], 100).is_err());
    check_declared(&[a("x", 50), a("y", 50)], 100).unwrap();
    let many: Vec<_> = (0..=MAX_ATTACHMENTS)
        .map(|i| a(&format!("f{i}"), 0))
        .collect();
    assert!(check_declared(&many, 100).is_err());
}
