//! Sizes of what the Operator API takes and gives, derived from the one
//! configured limit, `limits.max_message_bytes`:
//!
//! - A request may be [`max_request_bytes`] (the message limit plus 64 KiB for
//!   recipients and ids). The transport accepts up to [`transport_request_bytes`]
//!   so that a request between the two reaches the service and is refused there
//!   with INVALID_ARGUMENT naming `limits.max_message_bytes`, instead of the
//!   transport's own OUT_OF_RANGE.
//! - A List page stops before [`PAGE_BYTES`] (below the 4 MiB a gRPC client
//!   receives by default); one item larger than that comes alone in its page.
//! - No answer exceeds [`MAX_ANSWER_BYTES`], the server's encoding limit:
//!   a stored message is at most the largest limit a node can be configured
//!   with (64 MiB), so its view fits; an assistance view, which grows with its
//!   offers, is trimmed to fit (`AssistanceView.truncated`).
//! - A reason text from a peer is kept to 512 bytes ([`bounded`]) before it
//!   is stored, logged or shown.
use crate::service::InvalidArgument;

/// Most bytes of items in one List page (a page may hold fewer than its
/// `page_size`); a single larger item is returned alone.
pub const PAGE_BYTES: usize = 3 * 1024 * 1024;

/// Largest `limits.max_message_bytes` a configuration may set.
pub const MAX_CONFIGURABLE_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The server's encoding limit for Operator answers and Watch events: twice
/// the largest message any configuration accepts (a message view holds the
/// payload decoded and the envelope) plus room for the rest.
pub const MAX_ANSWER_BYTES: usize = 2 * MAX_CONFIGURABLE_MESSAGE_BYTES + 1024 * 1024;

// A page fits a client's default 4 MiB receive limit; any stored message's
// view (payload decoded plus the envelope) fits the answer limit.
const _: () = assert!(PAGE_BYTES < 4 * 1024 * 1024);
const _: () = assert!(MAX_ANSWER_BYTES > 2 * MAX_CONFIGURABLE_MESSAGE_BYTES);

/// Room in a request beyond the message itself (recipients, ids, options).
const REQUEST_OVERHEAD: usize = 64 * 1024;

/// Largest Operator request the service accepts.
pub fn max_request_bytes(max_message_bytes: usize) -> usize {
    max_message_bytes.saturating_add(REQUEST_OVERHEAD)
}

/// The transport's decoding limit for Operator requests: well above
/// [`max_request_bytes`], so that over-size requests get the service's clear
/// refusal.
pub fn transport_request_bytes(max_message_bytes: usize) -> usize {
    max_message_bytes
        .saturating_mul(4)
        .saturating_add(1024 * 1024)
        .max(16 * 1024 * 1024)
}

/// Refuses a request of `len` encoded bytes over [`max_request_bytes`].
pub fn check_request_size(len: usize, max_message_bytes: usize) -> Result<(), InvalidArgument> {
    let max = max_request_bytes(max_message_bytes);
    if len > max {
        return Err(InvalidArgument::new(
            "request",
            format!(
                "the request is {len} bytes, over this node's limit of {max} bytes (limits.max_message_bytes = {max_message_bytes}, plus 64 KiB for the rest of the request); shorten the text or attach less, or ask the node's administrator to raise limits.max_message_bytes"
            ),
        ));
    }
    Ok(())
}

/// Bytes an item adds to a page: its encoding plus the field's tag and length.
pub fn framed_len(encoded_len: usize) -> usize {
    encoded_len + 1 + prost::length_delimiter_len(encoded_len)
}

/// What one List page may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit {
    /// Most items.
    pub items: usize,
    /// Most bytes of items (the first item is always taken).
    pub bytes: usize,
}

impl PageLimit {
    /// `items` items within [`PAGE_BYTES`].
    pub fn items(items: usize) -> PageLimit {
        PageLimit {
            items: items.max(1),
            bytes: PAGE_BYTES,
        }
    }
}

/// Collects a page: takes items while fewer than `limit.items` and within
/// `limit.bytes` (always the first one).
pub struct PageBuilder<T> {
    limit: PageLimit,
    bytes: usize,
    items: Vec<T>,
}

impl<T: prost::Message> PageBuilder<T> {
    pub fn new(limit: PageLimit) -> Self {
        PageBuilder {
            limit,
            bytes: 0,
            items: Vec::new(),
        }
    }

    /// Adds `item` if it fits; `false` (and the item is not added) when the
    /// page is full, by count or by size.
    pub fn push(&mut self, item: T) -> bool {
        if self.items.len() >= self.limit.items {
            return false;
        }
        let n = framed_len(item.encoded_len());
        if !self.items.is_empty() && self.bytes + n > self.limit.bytes {
            return false;
        }
        self.bytes += n;
        self.items.push(item);
        true
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn into_items(self) -> Vec<T> {
        self.items
    }
}

/// A reason from a peer, bounded so that a peer cannot fill the store or the
/// operator's screen with it.
pub fn bounded(reason: &str) -> String {
    const MAX: usize = 512;
    if reason.len() <= MAX {
        return reason.to_string();
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &reason[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::PeerView;

    #[test]
    fn pages_stop_by_count_or_bytes_and_always_take_one() {
        let big = |n: usize| PeerView {
            last_error: "x".repeat(n),
            ..Default::default()
        };
        let mut p = PageBuilder::new(PageLimit {
            items: 10,
            bytes: 1000,
        });
        assert!(p.push(big(5000)), "a lone big item is taken");
        assert!(!p.push(big(1)), "nothing after it");
        let mut p = PageBuilder::new(PageLimit {
            items: 10,
            bytes: 1000,
        });
        let mut n = 0;
        while p.push(big(100)) {
            n += 1;
        }
        assert_eq!(n, 9, "9 × 103 bytes fit in 1000");
        let mut p = PageBuilder::new(PageLimit::items(2));
        assert!(p.push(big(1)) && p.push(big(1)) && !p.push(big(1)));
    }

    #[test]
    fn sizes() {
        assert!(transport_request_bytes(256 * 1024) > max_request_bytes(256 * 1024));
        assert!(
            transport_request_bytes(MAX_CONFIGURABLE_MESSAGE_BYTES)
                > max_request_bytes(MAX_CONFIGURABLE_MESSAGE_BYTES)
        );
        assert!(check_request_size(300_000, 256 * 1024).is_ok());
        let e = check_request_size(400_000, 256 * 1024).unwrap_err();
        assert!(e.reason.contains("limits.max_message_bytes"), "{e}");
    }
}
