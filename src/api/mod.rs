//! Thin gRPC adapters: decode the request, call a service, map its error in
//! one table ([`error`]). Authorisation by certificate role is one tower layer
//! ([`authz`]); operator actions are logged by [`audit`]; `/metrics` is
//! served by [`metrics`]; the read-only TAXII 2.1 server by [`taxii`].
pub mod audit;
pub mod authz;
pub mod error;
pub mod federation;
pub mod metrics;
pub mod operator;
pub mod standby;
pub mod taxii;
