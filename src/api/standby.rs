//! The standby gate: while this process is the standby of an active/standby
//! pair (or has lost its lease), every Federation and Operator call is
//! answered UNAVAILABLE with "standby of node X (this member), active is Y",
//! so peers' links and operators' CLIs move on to the active member. Health,
//! reflection and `Operator/GetNodeInfo` (which shows the role) still answer.
//! A node that is not part of a pair, or the active member, passes every call.
use crate::service::node::Node;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Whether `path` is refused on a standby.
pub fn refused_on_standby(path: &str) -> bool {
    let p = path.trim_start_matches('/');
    (p.starts_with("certfed.v1.Federation/") || p.starts_with("certfed.v1.Operator/"))
        && p != "certfed.v1.Operator/GetNodeInfo"
}

/// The layer.
#[derive(Clone)]
pub struct StandbyLayer {
    pub node: Arc<Node>,
}

impl<S> Layer<S> for StandbyLayer {
    type Service = Standby<S>;
    fn layer(&self, inner: S) -> Standby<S> {
        Standby {
            inner,
            node: self.node.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Standby<S> {
    inner: S,
    node: Arc<Node>,
}

type BoxFut<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for Standby<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFut<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if refused_on_standby(req.uri().path())
            && let Some(msg) = self.node.pair.standby_message(&self.node.id)
        {
            let resp = tonic::Status::unavailable(crate::api::error::bounded(msg)).into_http();
            return Box::pin(async move { Ok(resp) });
        }
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_refuses_work_but_shows_its_role() {
        assert!(refused_on_standby("/certfed.v1.Federation/Push"));
        assert!(refused_on_standby("/certfed.v1.Federation/Hello"));
        assert!(refused_on_standby("/certfed.v1.Operator/PublishAlert"));
        assert!(!refused_on_standby("/certfed.v1.Operator/GetNodeInfo"));
        assert!(!refused_on_standby("/grpc.health.v1.Health/Check"));
        assert!(!refused_on_standby(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        ));
    }
}
