//! Operator service adapter: decode each request, call the service that owns
//! it (`service::alerts`, `service::assistance`, `service::delivery`), map
//! errors with the one table in `api::error`. No business rule lives here.
//!
//! Invariants of the adapter itself:
//! - Every request is first held to the node's request size
//!   (`service::limits::check_request_size`, INVALID_ARGUMENT naming
//!   `limits.max_message_bytes`); the transport's own limit is set higher
//!   ([`OperatorApi::server`]) so that this check, not the transport's, answers.
//! - Every error goes through `api::error::status` or `bad_request` (bounded,
//!   never the caller's input at length).
//! - Actions that sign something run in their own task: a client that
//!   disconnects mid-call never leaves an action half done, and its retry
//!   with the same request id finds the finished result.
//! - No answer exceeds `service::limits::MAX_ANSWER_BYTES`; pages stop by
//!   count and by size.
use crate::api::audit;
use crate::api::error::{bad_request, page_limit, page_token, parse_page_token, status};
use crate::domain::envelope::ms_to_ts;
use crate::proto::v1::operator_server::{Operator, OperatorServer};
use crate::proto::v1::*;
use crate::service::alerts::{self, WatchFrom};
use crate::service::limits::{MAX_ANSWER_BYTES, check_request_size, transport_request_bytes};
use crate::service::node::Node;
use crate::service::{assistance, delivery, incidents, ingest, roster};
use prost::Message;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

pub struct OperatorApi {
    node: Arc<Node>,
}

impl OperatorApi {
    pub fn new(node: Arc<Node>) -> Self {
        OperatorApi { node }
    }

    /// The gRPC service with its size limits: requests up to
    /// `transport_request_bytes` reach the adapter (which refuses those over
    /// the node's limit with a clear message), answers up to `MAX_ANSWER_BYTES`.
    pub fn server(node: Arc<Node>) -> OperatorServer<OperatorApi> {
        let max = node.cfg.limits.max_message_bytes;
        OperatorServer::new(OperatorApi::new(node))
            .max_decoding_message_size(transport_request_bytes(max))
            .max_encoding_message_size(MAX_ANSWER_BYTES)
    }

    /// The request's message, refused if over the node's request size.
    fn take<M: Message>(&self, req: Request<M>) -> Result<M, Status> {
        let m = req.into_inner();
        check_request_size(m.encoded_len(), self.node.cfg.limits.max_message_bytes)
            .map_err(status)?;
        Ok(m)
    }

    /// Runs a signing action to its end in its own task, even if the caller
    /// goes away.
    async fn detached<T, F>(&self, f: impl FnOnce(Arc<Node>) -> F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Status>> + Send + 'static,
    {
        tokio::spawn(f(self.node.clone())).await.map_err(|e| {
            Status::internal(crate::api::error::bounded(format!(
                "action task failed: {e}"
            )))
        })?
    }
}

type WatchStream = Pin<Box<dyn futures::Stream<Item = Result<WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Operator for OperatorApi {
    async fn get_node_info(
        &self,
        req: Request<GetNodeInfoRequest>,
    ) -> Result<Response<NodeInfo>, Status> {
        self.take(req)?;
        let info = delivery::node_info(&self.node).await.map_err(status)?;
        Ok(Response::new(info))
    }

    async fn publish_alert(
        &self,
        req: Request<PublishAlertRequest>,
    ) -> Result<Response<PublishAlertResponse>, Status> {
        let who = audit::operator(&req);
        let body = self.take(req)?;
        if body.validate_only {
            alerts::validate_publish(&self.node, body)
                .await
                .map_err(status)?;
            return Ok(Response::new(PublishAlertResponse::default()));
        }
        let r = self
            .detached(|node| async move { alerts::publish_in(&node, body).await.map_err(status) })
            .await;
        audit::log(&who, "publish alert", r.as_deref().unwrap_or(""), &r);
        let message_id = r?;
        Ok(Response::new(PublishAlertResponse { message_id }))
    }

    async fn get_message(
        &self,
        req: Request<GetMessageRequest>,
    ) -> Result<Response<MessageView>, Status> {
        let id = self.take(req)?.message_id;
        let view = alerts::get(&self.node, &id).await.map_err(status)?;
        Ok(Response::new(view))
    }

    async fn list_alerts(
        &self,
        req: Request<ListAlertsRequest>,
    ) -> Result<Response<ListAlertsResponse>, Status> {
        let r = self.take(req)?;
        let before = parse_page_token(&r.page_token)?;
        let (alerts, next) = alerts::list(&self.node, r.filter, before, page_limit(r.page_size))
            .await
            .map_err(status)?;
        Ok(Response::new(ListAlertsResponse {
            alerts,
            next_page_token: page_token(next),
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let r = self.take(req)?;
        let from = match (r.from_start, r.after_cursor) {
            (true, 0) => WatchFrom::Start,
            (true, _) => {
                return Err(bad_request(
                    "from_start",
                    "give either from_start or after_cursor, not both",
                ));
            }
            (false, 0) => WatchFrom::Now,
            (false, c) => WatchFrom::After(c),
        };
        let rx = alerts::watch(self.node.clone(), r.filter, from)
            .await
            .map_err(status)?;
        let stream = ReceiverStream::new(rx).map(|r| r.map_err(status));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_peers(
        &self,
        req: Request<ListPeersRequest>,
    ) -> Result<Response<ListPeersResponse>, Status> {
        let r = self.take(req)?;
        let start = parse_page_token(&r.page_token)?;
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        let (peers, total) = delivery::peers(&self.node, start, page_limit(r.page_size))
            .await
            .map_err(status)?;
        let next = start.saturating_add(peers.len());
        Ok(Response::new(ListPeersResponse {
            peers,
            next_page_token: if next < total {
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
        let id = self.take(req)?.message_id;
        let d = delivery::status(&self.node, &id).await.map_err(status)?;
        Ok(Response::new(d))
    }

    async fn reconcile_peer(
        &self,
        req: Request<ReconcilePeerRequest>,
    ) -> Result<Response<ReconcilePeerResponse>, Status> {
        let who = audit::operator(&req);
        let ReconcilePeerRequest {
            peer_id: peer,
            retry_refused,
        } = self.take(req)?;
        if peer.is_empty() {
            return Err(bad_request(
                "peer_id",
                "required: the member id of a configured peer",
            ));
        }
        if let Err(e) = crate::domain::identity::validate_name(&peer) {
            return Err(bad_request("peer_id", e));
        }
        // Runs to its end (bounded by reconcile.timeout_secs) even if the
        // caller goes away.
        let r = self
            .detached(move |node| async move {
                crate::service::reconcile::reconcile_now(&node, &peer, retry_refused)
                    .await
                    .map_err(status)
            })
            .await;
        audit::log(&who, "reconcile", "", &r);
        Ok(Response::new(ReconcilePeerResponse { result: Some(r?) }))
    }

    async fn acknowledge_message(
        &self,
        req: Request<AcknowledgeMessageRequest>,
    ) -> Result<Response<AcknowledgeMessageResponse>, Status> {
        let who = audit::operator(&req);
        let id = self.take(req)?.message_id;
        let r = alerts::acknowledge(&self.node, &id).await.map_err(status);
        audit::log(&who, "acknowledge", &id, &r);
        let at = r?;
        Ok(Response::new(AcknowledgeMessageResponse {
            acknowledged: Some(ms_to_ts(at)),
        }))
    }

    async fn request_assistance(
        &self,
        req: Request<RequestAssistanceRequest>,
    ) -> Result<Response<RequestAssistanceResponse>, Status> {
        let who = audit::operator(&req);
        let RequestAssistanceRequest {
            request,
            recipients,
            request_id: client_key,
            exercise,
        } = self.take(req)?;
        let r = self
            .detached(|node| async move {
                assistance::request(&node, request, recipients, client_key, exercise)
                    .await
                    .map_err(status)
            })
            .await;
        audit::log(&who, "request assistance", r.as_deref().unwrap_or(""), &r);
        let request_id = r?;
        Ok(Response::new(RequestAssistanceResponse { request_id }))
    }

    async fn offer_assistance(
        &self,
        req: Request<OfferAssistanceRequest>,
    ) -> Result<Response<OfferAssistanceResponse>, Status> {
        let who = audit::operator(&req);
        let OfferAssistanceRequest {
            request_id,
            offer,
            client_request_id,
        } = self.take(req)?;
        let on = request_id.clone();
        let r = self
            .detached(|node| async move {
                assistance::offer(&node, request_id, offer, client_request_id)
                    .await
                    .map_err(status)
            })
            .await;
        let id = r.as_deref().unwrap_or(&on);
        audit::log(&who, "offer assistance", id, &r);
        let offer_id = r?;
        Ok(Response::new(OfferAssistanceResponse { offer_id }))
    }

    async fn decide_offer(
        &self,
        req: Request<DecideOfferRequest>,
    ) -> Result<Response<DecideOfferResponse>, Status> {
        let who = audit::operator(&req);
        let DecideOfferRequest {
            offer_id,
            accept,
            note,
            request_id: client_key,
        } = self.take(req)?;
        let action = if accept {
            "accept offer"
        } else {
            "decline offer"
        };
        let on = offer_id.clone();
        let r = self
            .detached(|node| async move {
                assistance::decide(&node, offer_id, accept, note, client_key)
                    .await
                    .map_err(status)
            })
            .await;
        audit::log(&who, action, &on, &r);
        let state = r?;
        Ok(Response::new(DecideOfferResponse {
            state: state as i32,
        }))
    }

    async fn update_assistance(
        &self,
        req: Request<UpdateAssistanceRequest>,
    ) -> Result<Response<UpdateAssistanceResponse>, Status> {
        let who = audit::operator(&req);
        let UpdateAssistanceRequest {
            request_id,
            state,
            note,
            withdraw_offer_id,
            client_request_id,
        } = self.take(req)?;
        let action = if withdraw_offer_id.is_empty() {
            "update assistance"
        } else {
            "withdraw offer"
        };
        let on = request_id.clone();
        let r = self
            .detached(|node| async move {
                assistance::update(
                    &node,
                    request_id,
                    state,
                    note,
                    withdraw_offer_id,
                    client_request_id,
                )
                .await
                .map_err(status)
            })
            .await;
        audit::log(&who, action, &on, &r);
        let state = r?;
        Ok(Response::new(UpdateAssistanceResponse {
            state: state as i32,
        }))
    }

    async fn list_assistance_requests(
        &self,
        req: Request<ListAssistanceRequestsRequest>,
    ) -> Result<Response<ListAssistanceRequestsResponse>, Status> {
        let r = self.take(req)?;
        let before = parse_page_token(&r.page_token)?;
        let (requests, next) = assistance::list(
            &self.node,
            &r.states,
            r.include_exercise,
            before,
            page_limit(r.page_size),
        )
        .await
        .map_err(status)?;
        Ok(Response::new(ListAssistanceRequestsResponse {
            requests,
            next_page_token: page_token(next),
        }))
    }

    async fn get_assistance_request(
        &self,
        req: Request<GetAssistanceRequestRequest>,
    ) -> Result<Response<AssistanceView>, Status> {
        let id = self.take(req)?.request_id;
        let view = assistance::get(&self.node, &id).await.map_err(status)?;
        Ok(Response::new(view))
    }

    async fn get_roster(
        &self,
        req: Request<GetRosterRequest>,
    ) -> Result<Response<RosterView>, Status> {
        self.take(req)?;
        let view = roster::view(&self.node, crate::service::now_ms())
            .await
            .map_err(status)?;
        Ok(Response::new(view))
    }

    async fn publish_alert_with_attachments(
        &self,
        req: Request<tonic::Streaming<PublishUpload>>,
    ) -> Result<Response<PublishAlertResponse>, Status> {
        let who = audit::operator(&req);
        let mut frames = req.into_inner();
        let start = match frames.message().await? {
            Some(PublishUpload {
                frame: Some(publish_upload::Frame::Start(s)),
            }) => s,
            _ => {
                return Err(bad_request(
                    "start",
                    "the first frame must be `start` (the alert and the attachments to come)",
                ));
            }
        };
        check_request_size(start.encoded_len(), self.node.cfg.limits.max_message_bytes)
            .map_err(status)?;
        // Every later frame must be content; anything else ends the upload.
        let data = frames.map(|f| match f {
            Ok(PublishUpload {
                frame: Some(publish_upload::Frame::Data(d)),
            }) => Ok(d),
            Ok(_) => Err("a frame other than `data` after `start`".to_string()),
            Err(e) => Err(e.message().chars().take(200).collect()),
        });
        // Detached: once the stream has ended, publishing finishes even if the
        // caller goes away (its retry with the request id finds the result).
        let r = self
            .detached(|node| async move {
                crate::service::attachments::upload(&node, start, Box::pin(data))
                    .await
                    .map_err(status)
            })
            .await;
        audit::log(
            &who,
            "publish alert with attachments",
            r.as_deref().unwrap_or(""),
            &r,
        );
        Ok(Response::new(PublishAlertResponse { message_id: r? }))
    }

    async fn report_sighting_with_attachments(
        &self,
        req: Request<tonic::Streaming<SightingUpload>>,
    ) -> Result<Response<ReportSightingResponse>, Status> {
        let who = audit::operator(&req);
        let mut frames = req.into_inner();
        let start = match frames.message().await? {
            Some(SightingUpload {
                frame: Some(sighting_upload::Frame::Start(s)),
            }) => s,
            _ => {
                return Err(bad_request(
                    "start",
                    "the first frame must be `start` (the sighting and the attachments to come)",
                ));
            }
        };
        check_request_size(start.encoded_len(), self.node.cfg.limits.max_message_bytes)
            .map_err(status)?;
        // Every later frame must be content; anything else ends the upload.
        let data = frames.map(|f| match f {
            Ok(SightingUpload {
                frame: Some(sighting_upload::Frame::Data(d)),
            }) => Ok(d),
            Ok(_) => Err("a frame other than `data` after `start`".to_string()),
            Err(e) => Err(e.message().chars().take(200).collect()),
        });
        // Detached: once the stream has ended, publishing finishes even if the
        // caller goes away (its retry with the request id finds the result).
        let r = self
            .detached(|node| async move {
                crate::service::attachments::upload_sighting(&node, start, Box::pin(data))
                    .await
                    .map_err(status)
            })
            .await;
        audit::log(
            &who,
            "report sighting with attachments",
            r.as_deref().unwrap_or(""),
            &r,
        );
        Ok(Response::new(ReportSightingResponse { message_id: r? }))
    }

    async fn publish_step_with_attachments(
        &self,
        req: Request<tonic::Streaming<StepUpload>>,
    ) -> Result<Response<StepUploadResponse>, Status> {
        let who = audit::operator(&req);
        let mut frames = req.into_inner();
        let start = match frames.message().await? {
            Some(StepUpload {
                frame: Some(step_upload::Frame::Start(s)),
            }) => s,
            _ => {
                return Err(bad_request(
                    "start",
                    "the first frame must be `start` (the assistance step and the attachments to come)",
                ));
            }
        };
        check_request_size(start.encoded_len(), self.node.cfg.limits.max_message_bytes)
            .map_err(status)?;
        // Every later frame must be content; anything else ends the upload.
        let data = frames.map(|f| match f {
            Ok(StepUpload {
                frame: Some(step_upload::Frame::Data(d)),
            }) => Ok(d),
            Ok(_) => Err("a frame other than `data` after `start`".to_string()),
            Err(e) => Err(e.message().chars().take(200).collect()),
        });
        // Detached: once the stream has ended, publishing finishes even if the
        // caller goes away (its retry with the request id finds the result).
        let r = self
            .detached(|node| async move {
                crate::service::attachments::upload_step(&node, start, Box::pin(data))
                    .await
                    .map_err(status)
            })
            .await;
        let on = r.as_ref().map(|a| a.message_id.clone()).unwrap_or_default();
        audit::log(&who, "assistance step with attachments", &on, &r);
        Ok(Response::new(r?))
    }

    async fn list_attachments(
        &self,
        req: Request<ListAttachmentsRequest>,
    ) -> Result<Response<ListAttachmentsResponse>, Status> {
        let id = self.take(req)?.message_id;
        let r = crate::service::attachments::list(&self.node, &id)
            .await
            .map_err(status)?;
        Ok(Response::new(r))
    }

    type GetAttachmentStream =
        Pin<Box<dyn futures::Stream<Item = Result<AttachmentFrame, Status>> + Send>>;

    async fn get_attachment(
        &self,
        req: Request<GetAttachmentRequest>,
    ) -> Result<Response<Self::GetAttachmentStream>, Status> {
        let who = audit::operator(&req);
        let r = self.take(req)?;
        crate::service::transfer::on_demand(&self.node, &r.message_id).await;
        let got = crate::service::attachments::download(
            &self.node,
            &r.message_id,
            &r.name,
            r.i_know_it_is_malware,
        )
        .await
        .map_err(status);
        audit::log(&who, "download attachment", &r.message_id, &got);
        let (manifest, rx) = got?;
        let first = futures::stream::once(async move {
            Ok(AttachmentFrame {
                attachment: Some(manifest),
                data: Vec::new(),
            })
        });
        let rest = ReceiverStream::new(rx).map(|c| {
            c.map(|data| AttachmentFrame {
                attachment: None,
                data,
            })
            .map_err(status)
        });
        Ok(Response::new(Box::pin(first.chain(rest))))
    }

    async fn publish_roster(
        &self,
        req: Request<PublishRosterRequest>,
    ) -> Result<Response<PublishRosterResponse>, Status> {
        let who = audit::operator(&req);
        let bytes = self.take(req)?.signed_roster;
        let r = self
            .detached(|node| async move {
                let now = crate::service::now_ms();
                let applied = roster::apply(&node, &bytes, "operator", now)
                    .await
                    .map_err(status)?;
                // Flooded like a TLP:CLEAR broadcast; every node checks it.
                let (message_id, _) = ingest::originate(
                    &node,
                    ingest::Outgoing {
                        kind: MessageKind::Roster,
                        tlp: Tlp::Clear,
                        recipients: Vec::new(),
                        expires_ms: None,
                        exercise: false,
                        created_ms: None,
                        payload: bytes,
                    },
                )
                .await
                .map_err(status)?;
                Ok(PublishRosterResponse {
                    version: applied.version,
                    message_id,
                    changes: applied.changes,
                    already_current: applied.already_current,
                })
            })
            .await;
        let on = r.as_ref().map(|p| p.message_id.clone()).unwrap_or_default();
        audit::log(&who, "publish roster", &on, &r);
        Ok(Response::new(r?))
    }

    async fn list_incidents(
        &self,
        req: Request<ListIncidentsRequest>,
    ) -> Result<Response<ListIncidentsResponse>, Status> {
        let r = self.take(req)?;
        let before = parse_page_token(&r.page_token)?;
        let (list, next) = incidents::list(
            &self.node,
            r.include_resolved,
            r.include_exercise,
            before,
            page_limit(r.page_size),
        )
        .await
        .map_err(status)?;
        Ok(Response::new(ListIncidentsResponse {
            incidents: list,
            next_page_token: page_token(next),
        }))
    }

    async fn get_situation(
        &self,
        req: Request<GetSituationRequest>,
    ) -> Result<Response<Situation>, Status> {
        let id = self.take(req)?.incident_id;
        let s = incidents::situation(&self.node, &id)
            .await
            .map_err(status)?;
        Ok(Response::new(s))
    }

    async fn report_sighting(
        &self,
        req: Request<ReportSightingRequest>,
    ) -> Result<Response<ReportSightingResponse>, Status> {
        let who = audit::operator(&req);
        let body = self.take(req)?;
        let r = self
            .detached(|node| async move { incidents::sight(&node, body).await.map_err(status) })
            .await;
        audit::log(&who, "report sighting", r.as_deref().unwrap_or(""), &r);
        Ok(Response::new(ReportSightingResponse { message_id: r? }))
    }

    async fn link_to_incident(
        &self,
        req: Request<LinkToIncidentRequest>,
    ) -> Result<Response<LinkToIncidentResponse>, Status> {
        let who = audit::operator(&req);
        let body = self.take(req)?;
        let r = self
            .detached(|node| async move { incidents::link(&node, body).await.map_err(status) })
            .await;
        audit::log(&who, "link to incident", r.as_deref().unwrap_or(""), &r);
        Ok(Response::new(LinkToIncidentResponse { message_id: r? }))
    }

    async fn set_incident_status(
        &self,
        req: Request<SetIncidentStatusRequest>,
    ) -> Result<Response<SetIncidentStatusResponse>, Status> {
        let who = audit::operator(&req);
        let body = self.take(req)?;
        let r = self
            .detached(
                |node| async move { incidents::set_status(&node, body).await.map_err(status) },
            )
            .await;
        audit::log(&who, "set incident status", r.as_deref().unwrap_or(""), &r);
        Ok(Response::new(SetIncidentStatusResponse { message_id: r? }))
    }

    async fn merge_incidents(
        &self,
        req: Request<MergeIncidentsRequest>,
    ) -> Result<Response<MergeIncidentsResponse>, Status> {
        let who = audit::operator(&req);
        let body = self.take(req)?;
        let r = self
            .detached(|node| async move { incidents::merge(&node, body).await.map_err(status) })
            .await;
        let id = r.as_ref().map(|(id, _)| id.as_str()).unwrap_or("");
        audit::log(&who, "merge incidents", id, &r);
        let (message_id, merged) = r?;
        Ok(Response::new(MergeIncidentsResponse { message_id, merged }))
    }
}
