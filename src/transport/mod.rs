//! Transport: mutual TLS, the accept loop, outbound channels.
pub mod client;
pub mod server;
pub mod tls;
