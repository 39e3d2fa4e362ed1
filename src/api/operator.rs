//! Operator service adapter: decode each request, call the service that owns
//! it (`service::alerts`, `service::assistance`, `service::delivery`), map
//! errors with the one table in `api::error`. No business rule lives here.
use crate::api::audit;
use crate::api::error::{page_size, page_token, parse_page_token, status};
use crate::domain::envelope::ms_to_ts;
use crate::proto::v1::operator_server::Operator;
use crate::proto::v1::*;
use crate::service::alerts::{self, WatchFrom};
use crate::service::node::Node;
use crate::service::{assistance, delivery};
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
}

type WatchStream = Pin<Box<dyn futures::Stream<Item = Result<WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Operator for OperatorApi {
    async fn get_node_info(
        &self,
        _req: Request<GetNodeInfoRequest>,
    ) -> Result<Response<NodeInfo>, Status> {
        let info = delivery::node_info(&self.node).await.map_err(status)?;
        Ok(Response::new(info))
    }

    async fn publish_alert(
        &self,
        req: Request<PublishAlertRequest>,
    ) -> Result<Response<PublishAlertResponse>, Status> {
        let who = audit::operator(&req);
        let PublishAlertRequest { alert, recipients } = req.into_inner();
        let r = alerts::publish(&self.node, alert, recipients)
            .await
            .map_err(status);
        audit::log(&who, "publish alert", r.as_deref().unwrap_or(""), &r);
        let message_id = r?;
        Ok(Response::new(PublishAlertResponse { message_id }))
    }

    async fn get_message(
        &self,
        req: Request<GetMessageRequest>,
    ) -> Result<Response<MessageView>, Status> {
        let id = req.into_inner().message_id;
        let view = alerts::get(&self.node, &id).await.map_err(status)?;
        Ok(Response::new(view))
    }

    async fn list_alerts(
        &self,
        req: Request<ListAlertsRequest>,
    ) -> Result<Response<ListAlertsResponse>, Status> {
        let r = req.into_inner();
        let before = parse_page_token(&r.page_token)?;
        let (alerts, next) = alerts::list(&self.node, r.filter, before, page_size(r.page_size))
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
        let r = req.into_inner();
        let from = if r.from_start {
            WatchFrom::Start
        } else if r.after_cursor > 0 {
            WatchFrom::After(r.after_cursor)
        } else {
            WatchFrom::Now
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
        let r = req.into_inner();
        let start = parse_page_token(&r.page_token)?;
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        let (peers, total) = delivery::peers(&self.node, start, page_size(r.page_size))
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
        let id = req.into_inner().message_id;
        let d = delivery::status(&self.node, &id).await.map_err(status)?;
        Ok(Response::new(d))
    }

    async fn acknowledge_message(
        &self,
        req: Request<AcknowledgeMessageRequest>,
    ) -> Result<Response<AcknowledgeMessageResponse>, Status> {
        let who = audit::operator(&req);
        let id = req.into_inner().message_id;
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
        } = req.into_inner();
        let request =
            request.ok_or_else(|| crate::api::error::bad_request("request", "required"))?;
        let r = assistance::request(&self.node, request, recipients)
            .await
            .map_err(status);
        audit::log(&who, "request assistance", r.as_deref().unwrap_or(""), &r);
        let request_id = r?;
        Ok(Response::new(RequestAssistanceResponse { request_id }))
    }

    async fn offer_assistance(
        &self,
        req: Request<OfferAssistanceRequest>,
    ) -> Result<Response<OfferAssistanceResponse>, Status> {
        let who = audit::operator(&req);
        let OfferAssistanceRequest { request_id, offer } = req.into_inner();
        let r = assistance::offer(&self.node, request_id.clone(), offer)
            .await
            .map_err(status);
        let id = r.as_deref().unwrap_or(&request_id);
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
        } = req.into_inner();
        let action = if accept {
            "accept offer"
        } else {
            "decline offer"
        };
        let r = assistance::decide(&self.node, offer_id.clone(), accept, note)
            .await
            .map_err(status);
        audit::log(&who, action, &offer_id, &r);
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
        } = req.into_inner();
        let action = if withdraw_offer_id.is_empty() {
            "update assistance"
        } else {
            "withdraw offer"
        };
        let r = assistance::update(
            &self.node,
            request_id.clone(),
            state,
            note,
            withdraw_offer_id,
        )
        .await
        .map_err(status);
        audit::log(&who, action, &request_id, &r);
        let state = r?;
        Ok(Response::new(UpdateAssistanceResponse {
            state: state as i32,
        }))
    }

    async fn list_assistance_requests(
        &self,
        req: Request<ListAssistanceRequestsRequest>,
    ) -> Result<Response<ListAssistanceRequestsResponse>, Status> {
        let r = req.into_inner();
        let before = parse_page_token(&r.page_token)?;
        let (requests, next) =
            assistance::list(&self.node, &r.states, before, page_size(r.page_size))
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
        let id = req.into_inner().request_id;
        let view = assistance::get(&self.node, &id).await.map_err(status)?;
        Ok(Response::new(view))
    }
}
