//! Idempotent operator actions (Google AIP-155): an action that creates
//! something may carry a client-chosen request id (a UUID). A retry with the
//! same id and the same request within [`WINDOW_MS`] returns the original
//! answer and creates nothing; the same id with a different request is
//! refused ([`RequestIdError::Reused`], ALREADY_EXISTS).
//!
//! How it holds across failures:
//! - The id is claimed in the store durably (`Storage::claim_request`) together
//!   with a digest of the request and the message id the action will sign,
//!   chosen *before* it is signed. The store keeps one claim per id (the
//!   claim is atomic), and in this process one action per id runs at a time
//!   ([`Requests::lock`]), so concurrent duplicates create one message.
//! - After the action, the answer is recorded with the claim. If the node
//!   stops in between, a retry finds the claim without an answer and looks
//!   the chosen message id up: stored means the action happened (its answer
//!   is rebuilt from the store); absent means it did not, and the action runs
//!   again with the same message id (which the store deduplicates anyway).
//! - An action refused before it stored anything releases its claim, so the
//!   client may correct the request and send it again with the same id.
//!
//! Callers run the action in its own task (the API layer does), so a client
//! that disconnects mid-call does not cut an action in half.
use crate::domain::text::quote;
use crate::service::{ErrorKind, InvalidArgument, ServiceError, now_ms};
use crate::storage::{Claim, RequestRecord, Store, StoreError};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// How long a request id is remembered: 7 days.
pub const WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;

/// Why an idempotent action was refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestIdError {
    /// The id names another request: the message says which field and what to do.
    #[error("{0}")]
    Reused(String),
    /// The recorded answer does not decode.
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl ServiceError for RequestIdError {
    fn kind(&self) -> ErrorKind {
        match self {
            RequestIdError::Reused(_) => ErrorKind::AlreadyExists,
            RequestIdError::Corrupt(_) => ErrorKind::DataLoss,
            RequestIdError::Store(e) => e.kind(),
        }
    }
}

/// A client's request id for one action, with the digest of its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    /// The proto field it came in (`request_id` or `client_request_id`).
    pub field: &'static str,
    /// Canonical form: lower-case hyphenated UUID.
    pub id: String,
    /// SHA-256 of the operation name and the request without the id.
    pub fingerprint: Vec<u8>,
    /// The RPC, for messages ("PublishAlert").
    pub operation: &'static str,
}

impl RequestKey {
    /// The key for `raw` (the field's value) on `operation`, whose request,
    /// encoded with the id field cleared, is `body`. Empty `raw`: no key.
    /// Anything but a UUID (the nil UUID included) is refused naming `field`.
    pub fn parse(
        field: &'static str,
        raw: &str,
        operation: &'static str,
        body: &[u8],
    ) -> Result<Option<RequestKey>, InvalidArgument> {
        if raw.is_empty() {
            return Ok(None);
        }
        let id = match uuid::Uuid::try_parse(raw) {
            Ok(u) if !u.is_nil() => u.hyphenated().to_string(),
            _ => {
                return Err(InvalidArgument::new(
                    field,
                    format!(
                        "{} is not a UUID; send a fresh UUID (e.g. from uuidgen) per new request, the same one when retrying it, or leave it empty",
                        quote(raw)
                    ),
                ));
            }
        };
        let mut h = Sha256::new();
        h.update(b"certfed.v1.Operator/");
        h.update(operation.as_bytes());
        h.update([0]);
        h.update(body);
        Ok(Some(RequestKey {
            field,
            id,
            fingerprint: h.finalize().to_vec(),
            operation,
        }))
    }
}

/// Per-id locks of this process: one action per request id at a time.
#[derive(Default)]
pub struct Requests {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while an action with a request id runs; frees the id's lock on drop.
pub struct RequestGuard<'a> {
    requests: &'a Requests,
    id: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut locks = self.requests.locks.lock().expect("request locks");
        if locks
            .get(&self.id)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.id);
        }
    }
}

impl Requests {
    /// Waits until no other action with request id `id` runs in this process.
    pub async fn lock(&self, id: &str) -> RequestGuard<'_> {
        let lock = self
            .locks
            .lock()
            .expect("request locks")
            .entry(id.to_string())
            .or_default()
            .clone();
        let guard = lock.lock_owned().await;
        RequestGuard {
            requests: self,
            id: id.to_string(),
            guard: Some(guard),
        }
    }

    /// Ids with an action running or waiting (for tests).
    pub fn in_flight(&self) -> usize {
        self.locks.lock().expect("request locks").len()
    }
}

/// Runs `action` at most once for `key` (always when `key` is `None`), with
/// the node's store and its per-id locks.
///
/// `action` gets the message id to sign with and returns the answer.
/// `recover` rebuilds the answer from the store when an earlier attempt
/// stored its message but the node stopped before recording the answer.
pub async fn once<R, E, A, AF, V, VF>(
    store: &Store,
    locks: &Requests,
    key: Option<RequestKey>,
    action: A,
    recover: V,
) -> Result<R, E>
where
    R: prost::Message + Default,
    E: From<RequestIdError> + From<StoreError>,
    A: FnOnce(String) -> AF,
    AF: Future<Output = Result<R, E>>,
    V: FnOnce(String) -> VF,
    VF: Future<Output = Result<R, E>>,
{
    let Some(key) = key else {
        return action(uuid::Uuid::now_v7().to_string()).await;
    };
    let _serial = locks.lock(&key.id).await;
    let now = now_ms();
    let rec = RequestRecord {
        request_id: key.id.clone(),
        fingerprint: key.fingerprint.clone(),
        message_id: uuid::Uuid::now_v7().to_string(),
        response: None,
        created_ms: now,
    };
    let message_id = match store
        .claim_request(rec.clone(), now.saturating_sub(WINDOW_MS))
        .await
        .map_err(RequestIdError::from)?
    {
        Claim::Claimed => rec.message_id,
        Claim::Held(held) if held.fingerprint != key.fingerprint => {
            return Err(RequestIdError::Reused(format!(
                "{}: {} was already used within the last 7 days for a different request (another {} body, or another action); send a fresh UUID for a new request, and the identical request to retry",
                key.field, key.id, key.operation
            ))
            .into());
        }
        Claim::Held(RequestRecord {
            response: Some(bytes),
            ..
        }) => {
            tracing::info!(request_id = %key.id, operation = key.operation, "retry answered from the request-id record");
            return R::decode(bytes.as_slice()).map_err(|e| {
                RequestIdError::Corrupt(format!(
                    "{}: the recorded answer for {} does not decode ({e}); the store may be damaged",
                    key.field, key.id
                ))
                .into()
            });
        }
        Claim::Held(held) => {
            if store.get_message(&held.message_id).await?.is_some() {
                // Stored, answer not recorded: the node stopped in between.
                let answer = recover(held.message_id).await?;
                record(store, &key, &answer).await;
                return Ok(answer);
            }
            held.message_id
        }
    };
    match action(message_id.clone()).await {
        Ok(answer) => {
            record(store, &key, &answer).await;
            Ok(answer)
        }
        Err(e) => {
            // Free the id only when nothing was stored; otherwise a retry
            // recovers the answer from the store.
            match store.get_message(&message_id).await {
                Ok(None) => {
                    if let Err(re) = store.release_request(&key.id).await {
                        tracing::warn!(request_id = %key.id, error = %re, "cannot release a failed request id; a retry will check the store again");
                    }
                }
                Ok(Some(_)) => {}
                Err(se) => {
                    tracing::warn!(request_id = %key.id, error = %se, "cannot tell whether a failed action stored its message; a retry will check again");
                }
            }
            Err(e)
        }
    }
}

/// Records the answer; a failure only costs a store lookup on a retry.
async fn record<R: prost::Message>(store: &Store, key: &RequestKey, answer: &R) {
    if let Err(e) = store
        .complete_request(&key.id, answer.encode_to_vec())
        .await
    {
        tracing::warn!(request_id = %key.id, error = %e, "cannot record the answer of a request id; a retry will look the message up");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_canonical_uuids_and_bound_to_the_body() {
        assert_eq!(
            RequestKey::parse("request_id", "", "PublishAlert", b"x"),
            Ok(None)
        );
        let a = RequestKey::parse(
            "request_id",
            "0190F5F2-7D3C-7A8B-9C1D-2E3F4A5B6C7D",
            "PublishAlert",
            b"x",
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.id, "0190f5f2-7d3c-7a8b-9c1d-2e3f4a5b6c7d");
        let b = RequestKey::parse("request_id", &a.id, "PublishAlert", b"y")
            .unwrap()
            .unwrap();
        assert_ne!(a.fingerprint, b.fingerprint, "another body");
        let c = RequestKey::parse("request_id", &a.id, "RequestAssistance", b"x")
            .unwrap()
            .unwrap();
        assert_ne!(a.fingerprint, c.fingerprint, "another operation");
        for bad in [
            "abc",
            "00000000-0000-0000-0000-000000000000",
            &"7".repeat(20_000),
            "0190f5f2-7d3c-7a8b-9c1d-2e3f4a5b6c7\u{1b}",
        ] {
            let e =
                RequestKey::parse("client_request_id", bad, "OfferAssistance", b"").unwrap_err();
            assert_eq!(e.field, "client_request_id");
            assert!(e.reason.len() < 400, "{}", e.reason.len());
            assert!(!e.reason.contains('\u{1b}'), "{}", e.reason);
        }
    }
}
