//! Role-based access by gRPC service, enforced in one tower layer in front of
//! every service: node certificates may call Federation and Health; operator
//! certificates Operator, Health and reflection. Everything else is
//! PERMISSION_DENIED, naming the role seen and the role needed.
use crate::domain::identity::Identity;
use crate::transport::server::PeerInfo;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Who may call a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any authenticated caller.
    Anyone,
    /// Only callers with this role ("node" or "operator").
    Role(&'static str),
    /// Not a service of this node.
    NoSuchService,
}

/// Who may call the service at `path` (`/package.Service/Method`).
pub fn required_role(path: &str) -> Access {
    let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match service {
        "grpc.health.v1.Health" => Access::Anyone,
        "certfed.v1.Operator"
        | "grpc.reflection.v1.ServerReflection"
        | "grpc.reflection.v1alpha.ServerReflection" => Access::Role("operator"),
        "certfed.v1.Federation" => Access::Role("node"),
        _ => Access::NoSuchService,
    }
}

/// Decides whether `who` may call `path`; the error is the message for the caller.
pub fn authorize(who: Option<&Identity>, path: &str) -> Result<(), String> {
    let Some(who) = who else {
        return Err("no verified client certificate on this connection".into());
    };
    match required_role(path) {
        Access::Anyone => Ok(()),
        Access::Role(role) if role == who.role() => Ok(()),
        Access::Role(role) => Err(format!(
            "{path} is for {role} certificates only; this connection presented the {} certificate of {:?}",
            who.role(),
            who.name()
        )),
        Access::NoSuchService => Err(format!("{path}: no such service on a certfed node")),
    }
}

/// The layer.
#[derive(Clone, Copy, Default)]
pub struct AuthzLayer;

impl<S> Layer<S> for AuthzLayer {
    type Service = Authz<S>;
    fn layer(&self, inner: S) -> Authz<S> {
        Authz { inner }
    }
}

#[derive(Clone)]
pub struct Authz<S> {
    inner: S,
}

type BoxFut<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for Authz<S>
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
        let who = req
            .extensions()
            .get::<PeerInfo<Identity>>()
            .map(|p| &p.identity);
        match authorize(who, req.uri().path()) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(msg) => {
                let caller = who.map_or_else(|| "unauthenticated".to_string(), |w| w.to_string());
                tracing::warn!(path = req.uri().path(), %caller, "permission denied");
                let resp =
                    tonic::Status::permission_denied(crate::api::error::bounded(msg)).into_http();
                Box::pin(async move { Ok(resp) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_by_service() {
        let node = Identity::Node("node-a".into());
        let op = Identity::Operator("alice".into());
        assert!(authorize(Some(&node), "/certfed.v1.Federation/Push").is_ok());
        assert!(authorize(Some(&op), "/certfed.v1.Operator/GetNodeInfo").is_ok());
        assert!(authorize(Some(&node), "/grpc.health.v1.Health/Check").is_ok());
        assert!(authorize(Some(&op), "/grpc.health.v1.Health/Check").is_ok());
        assert!(
            authorize(
                Some(&op),
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
            )
            .is_ok()
        );
        let e = authorize(Some(&node), "/certfed.v1.Operator/GetNodeInfo").unwrap_err();
        assert!(
            e.contains("for operator certificates only") && e.contains("node"),
            "{e}"
        );
        let e = authorize(Some(&op), "/certfed.v1.Federation/Push").unwrap_err();
        assert!(e.contains("for node certificates only"), "{e}");
        assert!(
            authorize(
                Some(&node),
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
            )
            .is_err()
        );
        assert!(authorize(None, "/grpc.health.v1.Health/Check").is_err());
        assert!(authorize(Some(&op), "/other.Service/X").is_err());
    }
}
