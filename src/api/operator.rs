//! Operator service adapter: decode, call the core, map errors.
use super::{bad_request, page_size, parse_page_token, store_err};
use crate::domain::alert::{Limits, validate_alert};
use crate::domain::assistance::{AssistanceError, Step, validate_request};
use crate::domain::envelope::{ms_to_ts, ts_to_ms};
use crate::domain::policy::check_distribution;
use crate::node::ingest::{Outgoing, originate, sectors_mask};
use crate::node::receipts::ReceiptJob;
use crate::node::{NodeCtx, assist, now_ms};
use crate::proto::v1::operator_server::Operator;
use crate::proto::v1::*;
use crate::storage::messages::{AlertQuery, StoredMessage};
use prost::Message;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

pub struct OperatorApi {
    ctx: Arc<NodeCtx>,
}

impl OperatorApi {
    pub fn new(ctx: Arc<NodeCtx>) -> Self {
        OperatorApi { ctx }
    }
}

/// The operator-facing view of a stored message.
pub fn message_view(m: &StoredMessage) -> MessageView {
    let header = EnvelopeHeader::decode(m.header.as_slice()).unwrap_or_default();
    let alert = (m.kind == MessageKind::Alert as i32)
        .then(|| Alert::decode(m.body()).ok())
        .flatten();
    MessageView {
        message_id: m.message_id.clone(),
        origin: m.origin.clone(),
        kind: m.kind,
        tlp: m.tlp,
        recipients: header.recipients,
        created: Some(ms_to_ts(m.created_ms)),
        received: Some(ms_to_ts(m.received_ms)),
        alert,
        path: m
            .path
            .iter()
            .map(|h| PathHop {
                node_id: h.node.clone(),
                at: Some(ms_to_ts(h.at_ms)),
            })
            .collect(),
        envelope: Some(SignedEnvelope {
            header: m.header.clone(),
            payload: m.payload.clone(),
            signature: m.signature.clone(),
        }),
        cursor: m.cursor,
        acknowledged: m.acknowledged_ms.map(ms_to_ts),
        superseded_by: m.superseded_by.clone().unwrap_or_default(),
        request_id: m.request_id.clone().unwrap_or_default(),
        custody: m
            .hops
            .as_deref()
            .and_then(|b| HopChain::decode(b).ok())
            .map(|c| {
                c.hops
                    .iter()
                    .filter_map(|h| HopRecord::decode(h.record.as_slice()).ok())
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn summary(m: &StoredMessage) -> AlertSummary {
    AlertSummary {
        message_id: m.message_id.clone(),
        origin: m.origin.clone(),
        alert: Alert::decode(m.body()).ok(),
        created: Some(ms_to_ts(m.created_ms)),
        received: Some(ms_to_ts(m.received_ms)),
        cursor: m.cursor,
        superseded_by: m.superseded_by.clone().unwrap_or_default(),
    }
}

/// Translates the proto filter into a store query, validating enum values.
fn alert_query(f: Option<AlertFilter>) -> Result<AlertQuery, Status> {
    let f = f.unwrap_or_default();
    for t in &f.tlp {
        if !matches!(Tlp::try_from(*t), Ok(x) if x != Tlp::Unspecified) {
            return Err(bad_request("filter.tlp", format!("unknown TLP value {t}")));
        }
    }
    for s in &f.sectors {
        if !matches!(Nis2Sector::try_from(*s), Ok(x) if x != Nis2Sector::Unspecified) {
            return Err(bad_request(
                "filter.sectors",
                format!("unknown sector value {s}"),
            ));
        }
    }
    if Severity::try_from(f.min_severity).is_err() {
        return Err(bad_request("filter.min_severity", "unknown severity value"));
    }
    Ok(AlertQuery {
        min_severity: f.min_severity,
        tlps: f.tlp,
        sectors_mask: sectors_mask(&f.sectors),
        origins: f.origins,
        created_after_ms: f.created_after.as_ref().map(ts_to_ms),
        created_before_ms: f.created_before.as_ref().map(ts_to_ms),
        include_exercise: f.include_exercise,
    })
}

/// Whether a stored message passes a Watch filter.
fn watch_matches(q: &AlertQuery, m: &StoredMessage) -> bool {
    if !m.readable || m.kind == MessageKind::Receipt as i32 {
        return false;
    }
    if m.kind != MessageKind::Alert as i32 {
        return true;
    }
    let Ok(a) = Alert::decode(m.body()) else {
        return false;
    };
    (q.include_exercise || !a.exercise)
        && a.severity >= q.min_severity
        && (q.tlps.is_empty() || q.tlps.contains(&m.tlp))
        && (q.sectors_mask == 0 || sectors_mask(&a.sectors) & q.sectors_mask != 0)
        && (q.origins.is_empty() || q.origins.contains(&m.origin))
        && q.created_after_ms.is_none_or(|t| m.created_ms >= t)
        && q.created_before_ms.is_none_or(|t| m.created_ms < t)
}

/// Maps a failure to originate a message to a status for the operator.
fn originate_err(e: crate::node::ingest::OriginateError) -> Status {
    use crate::node::ingest::OriginateError;
    match e {
        OriginateError::Rejected(r) => Status::invalid_argument(r.to_string()),
        OriginateError::Seal(m) => Status::failed_precondition(format!("cannot encrypt: {m}")),
        OriginateError::Store(s) => store_err(s),
    }
}

/// Per-node delivery state of a message: link-level states for direct peers,
/// overridden by receipts from recipients; a named recipient with neither is
/// RELAYED once some peer took the message, else QUEUED.
fn delivery_view(
    me: &str,
    recipients: &[String],
    links: Vec<crate::storage::messages::DeliveryRow>,
    receipts: Vec<crate::storage::messages::ReceiptRow>,
) -> Vec<RecipientDelivery> {
    use std::collections::BTreeMap;
    let mut out: BTreeMap<String, RecipientDelivery> = BTreeMap::new();
    let mut handed_on = false;
    for l in links {
        handed_on |= l.state == DeliveryState::Delivered as i32;
        out.insert(
            l.peer.clone(),
            RecipientDelivery {
                node_id: l.peer,
                state: l.state,
                reason: l.reason,
                updated: Some(ms_to_ts(l.updated_ms)),
                attempts: l.attempts,
            },
        );
    }
    for r in receipts {
        let state = match ReceiptState::try_from(r.state) {
            Ok(ReceiptState::Acknowledged) => DeliveryState::Acknowledged,
            Ok(ReceiptState::Rejected) => DeliveryState::Rejected,
            _ => DeliveryState::Delivered,
        };
        let attempts = out.get(&r.node).map(|d| d.attempts).unwrap_or(0);
        out.insert(
            r.node.clone(),
            RecipientDelivery {
                node_id: r.node,
                state: state as i32,
                reason: r.reason,
                updated: Some(ms_to_ts(r.at_ms)),
                attempts,
            },
        );
    }
    for rcpt in recipients.iter().filter(|r| r.as_str() != me) {
        out.entry(rcpt.clone())
            .or_insert_with(|| RecipientDelivery {
                node_id: rcpt.clone(),
                state: if handed_on {
                    DeliveryState::Relayed
                } else {
                    DeliveryState::Queued
                } as i32,
                reason: String::new(),
                updated: None,
                attempts: 0,
            });
    }
    out.into_values().collect()
}

/// Maps an assistance domain error to a gRPC status.
fn assist_err(e: AssistanceError) -> Status {
    match e {
        AssistanceError::PermissionDenied(m) => Status::permission_denied(m),
        AssistanceError::FailedPrecondition(m) => Status::failed_precondition(m),
        AssistanceError::NotFound(m) => Status::not_found(m),
        e @ AssistanceError::Invalid { .. } => Status::invalid_argument(e.to_string()),
    }
}

fn assist_action_err(e: assist::AssistError) -> Status {
    match e {
        assist::AssistError::Domain(d) => assist_err(d),
        assist::AssistError::Originate(o) => originate_err(o),
        assist::AssistError::Store(s) => store_err(s),
    }
}

impl OperatorApi {
    /// Every recipient must be a known federation member.
    fn check_members(&self, recipients: &[String]) -> Result<(), Status> {
        let keys = self.ctx.keys();
        for (i, r) in recipients.iter().enumerate() {
            if !keys.is_member(r) {
                return Err(bad_request(
                    &format!("recipients[{i}]"),
                    format!("{r} is not a federation member known to this node ([[members]])"),
                ));
            }
        }
        Ok(())
    }
}

type WatchStream = Pin<Box<dyn futures::Stream<Item = Result<WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Operator for OperatorApi {
    async fn get_node_info(
        &self,
        _req: Request<GetNodeInfoRequest>,
    ) -> Result<Response<NodeInfo>, Status> {
        let ctx = &self.ctx;
        let stored = ctx.store.message_count().await.map_err(store_err)?;
        Ok(Response::new(NodeInfo {
            node_id: ctx.id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            listen: ctx.listen.to_string(),
            signing_key_id: ctx.signer.key_id.clone(),
            peers: ctx.links.peers().iter().map(|p| p.id.clone()).collect(),
            members: ctx.keys().members().to_vec(),
            started: Some(ms_to_ts(ctx.started_ms)),
            stored_messages: stored,
        }))
    }

    async fn publish_alert(
        &self,
        req: Request<PublishAlertRequest>,
    ) -> Result<Response<PublishAlertResponse>, Status> {
        let ctx = &self.ctx;
        let PublishAlertRequest { alert, recipients } = req.into_inner();
        let alert = alert.ok_or_else(|| bad_request("alert", "required"))?;
        let now = now_ms();
        let tlp = Tlp::try_from(alert.tlp).unwrap_or(Tlp::Unspecified);
        let limits = Limits {
            max_message_bytes: ctx.cfg.limits.max_message_bytes,
            ..Limits::default()
        };
        let payload = alert.encode_to_vec();
        validate_alert(&alert, now, payload.len(), &limits)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        check_distribution(tlp, &recipients)
            .map_err(|e| bad_request("recipients", e.to_string()))?;
        self.check_members(&recipients)?;
        if !alert.supersedes.is_empty() {
            match ctx
                .store
                .get_message(alert.supersedes.clone())
                .await
                .map_err(store_err)?
            {
                Some(old) if old.origin == ctx.id && old.kind == MessageKind::Alert as i32 => {}
                Some(old) => {
                    return Err(Status::permission_denied(format!(
                        "alert.supersedes: {} was issued by {}; only its origin may update or retract it",
                        old.message_id, old.origin
                    )));
                }
                None => {
                    return Err(Status::failed_precondition(format!(
                        "alert.supersedes: no alert {} on this node",
                        alert.supersedes
                    )));
                }
            }
        }
        let outgoing = Outgoing {
            kind: MessageKind::Alert,
            tlp,
            recipients,
            expires_ms: alert.expires.as_ref().map(ts_to_ms),
            exercise: alert.exercise,
            created_ms: Some(now),
            payload,
        };
        let (message_id, _) = originate(ctx, outgoing).await.map_err(originate_err)?;
        tracing::info!(%message_id, tlp = alert.tlp, "alert published");
        Ok(Response::new(PublishAlertResponse { message_id }))
    }

    async fn get_message(
        &self,
        req: Request<GetMessageRequest>,
    ) -> Result<Response<MessageView>, Status> {
        let id = req.into_inner().message_id;
        if id.is_empty() {
            return Err(bad_request("message_id", "required"));
        }
        match self
            .ctx
            .store
            .get_message(id.clone())
            .await
            .map_err(store_err)?
        {
            Some(m) if !m.readable => Err(Status::permission_denied(format!(
                "{id} is end-to-end encrypted for other nodes; this node only relays it"
            ))),
            Some(m) => Ok(Response::new(message_view(&m))),
            None => Err(Status::not_found(format!("no message {id} on this node"))),
        }
    }

    async fn list_alerts(
        &self,
        req: Request<ListAlertsRequest>,
    ) -> Result<Response<ListAlertsResponse>, Status> {
        let r = req.into_inner();
        let q = alert_query(r.filter)?;
        let size = page_size(r.page_size);
        let before = parse_page_token(&r.page_token)?;
        let mut rows = self
            .ctx
            .store
            .list_alerts(MessageKind::Alert as i32, q, before, size + 1)
            .await
            .map_err(store_err)?;
        let more = rows.len() > size;
        rows.truncate(size);
        let next_page_token = if more {
            rows.last()
                .map(|m| m.cursor.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListAlertsResponse {
            alerts: rows.iter().map(summary).collect(),
            next_page_token,
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let r = req.into_inner();
        let q = alert_query(r.filter)?;
        let ctx = self.ctx.clone();
        // Subscribe before reading the backlog so nothing falls in between.
        let mut notes = ctx.stored.subscribe();
        let mut cursor = if r.from_start {
            0
        } else if r.after_cursor > 0 {
            r.after_cursor
        } else {
            ctx.store.last_cursor().await.map_err(store_err)?
        };
        let (tx, rx) = mpsc::channel(256);
        let mut shutdown = ctx.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let batch = match ctx.store.messages_after(cursor, 256).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(store_err(e))).await;
                        return;
                    }
                };
                let full = batch.len() == 256;
                for m in batch {
                    cursor = m.cursor;
                    if watch_matches(&q, &m) {
                        let ev = WatchEvent {
                            cursor: m.cursor,
                            message: Some(message_view(&m)),
                        };
                        if tx.send(Ok(ev)).await.is_err() {
                            return;
                        }
                    }
                }
                if full {
                    continue;
                }
                tokio::select! {
                    n = notes.recv() => {
                        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = n {
                            return;
                        }
                    }
                    _ = tx.closed() => return,
                    _ = crate::node::stopped(&mut shutdown) => {
                        let _ = tx.send(Err(Status::unavailable("node is shutting down; resume with after_cursor"))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_peers(
        &self,
        req: Request<ListPeersRequest>,
    ) -> Result<Response<ListPeersResponse>, Status> {
        let r = req.into_inner();
        let size = page_size(r.page_size);
        let start = parse_page_token(&r.page_token)? as usize;
        let depths: std::collections::HashMap<String, u64> = self
            .ctx
            .store
            .outbox_depths()
            .await
            .map_err(store_err)?
            .into_iter()
            .collect();
        let all = self.ctx.links.peers();
        let peers: Vec<PeerView> = all
            .iter()
            .skip(start)
            .take(size)
            .map(|p| {
                let st = self.ctx.links.status(&p.id);
                PeerView {
                    peer_id: p.id.clone(),
                    endpoint: p.endpoint.clone(),
                    state: st.state,
                    last_contact: st.last_contact_ms.map(ms_to_ts),
                    outbox_depth: depths.get(&p.id).copied().unwrap_or(0),
                    last_error: st.last_error,
                    max_tlp: crate::domain::alert::parse_tlp(&p.max_tlp)
                        .map(|t| t as i32)
                        .unwrap_or(0),
                }
            })
            .collect();
        let next = start + peers.len();
        Ok(Response::new(ListPeersResponse {
            peers,
            next_page_token: if next < all.len() {
                next.to_string()
            } else {
                String::new()
            },
        }))
    }

    async fn get_delivery_status(
        &self,
        req: Request<GetDeliveryStatusRequest>,
    ) -> Result<Response<DeliveryStatus>, Status> {
        let id = req.into_inner().message_id;
        if id.is_empty() {
            return Err(bad_request("message_id", "required"));
        }
        let store = &self.ctx.store;
        let Some(m) = store.get_message(id.clone()).await.map_err(store_err)? else {
            return Err(Status::not_found(format!("no message {id} on this node")));
        };
        let links = store.delivery(id.clone()).await.map_err(store_err)?;
        let receipts = store.receipts(id.clone()).await.map_err(store_err)?;
        let header = EnvelopeHeader::decode(m.header.as_slice()).unwrap_or_default();
        Ok(Response::new(DeliveryStatus {
            message_id: id,
            recipients: delivery_view(&self.ctx.id, &header.recipients, links, receipts),
        }))
    }

    async fn acknowledge_message(
        &self,
        req: Request<AcknowledgeMessageRequest>,
    ) -> Result<Response<AcknowledgeMessageResponse>, Status> {
        let id = req.into_inner().message_id;
        if id.is_empty() {
            return Err(bad_request("message_id", "required"));
        }
        let store = &self.ctx.store;
        let Some(at) = store
            .acknowledge(id.clone(), now_ms())
            .await
            .map_err(store_err)?
        else {
            return Err(Status::not_found(format!("no message {id} on this node")));
        };
        if let Some(m) = store.get_message(id.clone()).await.map_err(store_err)?
            && m.origin != self.ctx.id
            && m.kind != MessageKind::Receipt as i32
        {
            self.ctx.receipts.push(ReceiptJob {
                origin: m.origin,
                message_id: id,
                state: ReceiptState::Acknowledged,
                reason: String::new(),
            });
        }
        Ok(Response::new(AcknowledgeMessageResponse {
            acknowledged: Some(ms_to_ts(at)),
        }))
    }

    async fn request_assistance(
        &self,
        req: Request<RequestAssistanceRequest>,
    ) -> Result<Response<RequestAssistanceResponse>, Status> {
        let ctx = &self.ctx;
        let RequestAssistanceRequest {
            request,
            recipients,
        } = req.into_inner();
        let request = request.ok_or_else(|| bad_request("request", "required"))?;
        let now = now_ms();
        validate_request(&request, now).map_err(assist_err)?;
        let tlp = Tlp::try_from(request.tlp).unwrap_or(Tlp::Unspecified);
        check_distribution(tlp, &recipients)
            .map_err(|e| bad_request("recipients", e.to_string()))?;
        self.check_members(&recipients)?;
        let outgoing = Outgoing {
            kind: MessageKind::AssistanceRequest,
            tlp,
            recipients,
            expires_ms: None,
            exercise: false,
            created_ms: Some(now),
            payload: request.encode_to_vec(),
        };
        let (request_id, _) = originate(ctx, outgoing).await.map_err(originate_err)?;
        tracing::info!(%request_id, tlp = request.tlp, "assistance requested");
        Ok(Response::new(RequestAssistanceResponse { request_id }))
    }

    async fn offer_assistance(
        &self,
        req: Request<OfferAssistanceRequest>,
    ) -> Result<Response<OfferAssistanceResponse>, Status> {
        let OfferAssistanceRequest { request_id, offer } = req.into_inner();
        if offer.is_none() {
            return Err(bad_request("offer", "required"));
        }
        let step = Step::Offer(OfferMessage {
            request_id: request_id.clone(),
            offer,
        });
        let (offer_id, _) = assist::act(&self.ctx, &request_id, step)
            .await
            .map_err(assist_action_err)?;
        tracing::info!(%request_id, %offer_id, "assistance offered");
        Ok(Response::new(OfferAssistanceResponse { offer_id }))
    }

    async fn decide_offer(
        &self,
        req: Request<DecideOfferRequest>,
    ) -> Result<Response<DecideOfferResponse>, Status> {
        let DecideOfferRequest {
            offer_id,
            accept,
            note,
        } = req.into_inner();
        if offer_id.is_empty() {
            return Err(bad_request("offer_id", "required"));
        }
        let request_id = assist::request_of_offer(&self.ctx, &offer_id)
            .await
            .map_err(store_err)?
            .ok_or_else(|| Status::not_found(format!("no offer {offer_id} on this node")))?;
        let step = Step::Decision(DecisionMessage {
            request_id: request_id.clone(),
            offer_id,
            accept,
            note,
        });
        let (_, a) = assist::act(&self.ctx, &request_id, step)
            .await
            .map_err(assist_action_err)?;
        Ok(Response::new(DecideOfferResponse {
            state: a.state as i32,
        }))
    }

    async fn update_assistance(
        &self,
        req: Request<UpdateAssistanceRequest>,
    ) -> Result<Response<UpdateAssistanceResponse>, Status> {
        let UpdateAssistanceRequest {
            request_id,
            state,
            note,
            withdraw_offer_id,
        } = req.into_inner();
        if request_id.is_empty() {
            return Err(bad_request("request_id", "required"));
        }
        if withdraw_offer_id.is_empty() == (state == AssistanceState::Unspecified as i32) {
            return Err(bad_request(
                "state",
                "give either a target state (requester) or withdraw_offer_id (donor), not both",
            ));
        }
        let step = Step::Status(StatusMessage {
            request_id: request_id.clone(),
            state,
            note,
            withdraw_offer_id,
            summary_report: String::new(),
        });
        let (_, a) = assist::act(&self.ctx, &request_id, step)
            .await
            .map_err(assist_action_err)?;
        Ok(Response::new(UpdateAssistanceResponse {
            state: a.state as i32,
        }))
    }

    async fn list_assistance_requests(
        &self,
        req: Request<ListAssistanceRequestsRequest>,
    ) -> Result<Response<ListAssistanceRequestsResponse>, Status> {
        let r = req.into_inner();
        let size = page_size(r.page_size);
        let mut before = parse_page_token(&r.page_token)?;
        let now = now_ms();
        let mut out = Vec::new();
        let mut next_page_token = String::new();
        // Filtering by state happens after replay, so read until the page is full.
        'pages: loop {
            let rows = self
                .ctx
                .store
                .requests(MessageKind::AssistanceRequest as i32, before, size)
                .await
                .map_err(store_err)?;
            let last = rows.len() < size;
            for m in rows {
                before = m.cursor;
                if let Some((a, _)) = assist::load(&self.ctx, &m.message_id)
                    .await
                    .map_err(store_err)?
                    && (r.states.is_empty() || r.states.contains(&(a.state as i32)))
                {
                    out.push(a.to_view(now));
                    if out.len() == size {
                        next_page_token = m.cursor.to_string();
                        break 'pages;
                    }
                }
            }
            if last {
                break;
            }
        }
        Ok(Response::new(ListAssistanceRequestsResponse {
            requests: out,
            next_page_token,
        }))
    }

    async fn get_assistance_request(
        &self,
        req: Request<GetAssistanceRequestRequest>,
    ) -> Result<Response<AssistanceView>, Status> {
        let id = req.into_inner().request_id;
        if id.is_empty() {
            return Err(bad_request("request_id", "required"));
        }
        match assist::load(&self.ctx, &id).await.map_err(store_err)? {
            Some((a, _)) => Ok(Response::new(a.to_view(now_ms()))),
            None => Err(Status::not_found(format!(
                "no assistance request {id} on this node"
            ))),
        }
    }
}
