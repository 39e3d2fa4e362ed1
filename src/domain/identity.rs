//! Member and operator identities, as carried in certificate URI SANs.
//!
//! A node certificate carries the URI SAN `urn:certfed:node:<id>`; an operator
//! certificate carries `urn:certfed:operator:<name>`. These strings are the only
//! place roles are encoded; `certfed pki` writes them and [`Identity::from_certificate`]
//! is the one place they are read back (the transport hands it the DER bytes).
use std::fmt;

/// URI SAN prefix of node (member) certificates.
pub const NODE_URI_PREFIX: &str = "urn:certfed:node:";
/// URI SAN prefix of operator certificates.
pub const OPERATOR_URI_PREFIX: &str = "urn:certfed:operator:";

/// What a certificate allows its holder to be.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A federation member node, by member id.
    Node(String),
    /// A human operator (or their tooling), by name.
    Operator(String),
}

impl Identity {
    /// The role name used in error messages.
    pub fn role(&self) -> &'static str {
        match self {
            Identity::Node(_) => "node",
            Identity::Operator(_) => "operator",
        }
    }
    /// The id or name.
    pub fn name(&self) -> &str {
        match self {
            Identity::Node(n) | Identity::Operator(n) => n,
        }
    }
    /// The URI SAN that encodes this identity.
    pub fn to_uri(&self) -> String {
        match self {
            Identity::Node(n) => format!("{NODE_URI_PREFIX}{n}"),
            Identity::Operator(n) => format!("{OPERATOR_URI_PREFIX}{n}"),
        }
    }
    /// Parses a URI SAN; `None` if it is not a certfed identity URI or the name is invalid.
    pub fn from_uri(uri: &str) -> Option<Identity> {
        if let Some(n) = uri.strip_prefix(NODE_URI_PREFIX) {
            validate_name(n).ok().map(|_| Identity::Node(n.to_string()))
        } else if let Some(n) = uri.strip_prefix(OPERATOR_URI_PREFIX) {
            validate_name(n)
                .ok()
                .map(|_| Identity::Operator(n.to_string()))
        } else {
            None
        }
    }
}

impl Identity {
    /// Reads the certfed identity of a DER certificate: exactly one URI SAN
    /// must be a certfed identity URI.
    pub fn from_certificate(der: &[u8]) -> Result<Identity, IdentityError> {
        use x509_parser::prelude::*;
        let (_, parsed) =
            X509Certificate::from_der(der).map_err(|e| IdentityError::Unparsable(e.to_string()))?;
        let mut found = Vec::new();
        if let Ok(Some(san)) = parsed.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::URI(uri) = name
                    && let Some(id) = Identity::from_uri(uri)
                {
                    found.push(id);
                }
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(IdentityError::Missing),
            _ => Err(IdentityError::Ambiguous),
        }
    }
}

/// Why a certificate does not name a certfed identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("certificate does not parse: {0}")]
    Unparsable(String),
    #[error(
        "certificate has no certfed identity (URI SAN urn:certfed:node:<id> or urn:certfed:operator:<name>); issue it with `certfed pki`"
    )]
    Missing,
    #[error("certificate carries more than one certfed identity URI SAN")]
    Ambiguous,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role(), self.name())
    }
}

/// Checks a member id or operator name: 1-63 characters of `a-z`, `0-9`, `-`, `.`,
/// `_`, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok_len = !name.is_empty() && name.len() <= 63;
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_'));
    if ok_len && ok_first && ok_chars {
        Ok(())
    } else {
        Err(format!(
            "invalid name {}: use 1-63 characters of a-z, 0-9, '-', '.', '_', starting with a letter or digit",
            crate::domain::text::quote(name)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trip() {
        let n = Identity::Node("node-a".into());
        assert_eq!(n.to_uri(), "urn:certfed:node:node-a");
        assert_eq!(Identity::from_uri(&n.to_uri()), Some(n));
        let o = Identity::Operator("alice".into());
        assert_eq!(Identity::from_uri(&o.to_uri()), Some(o));
    }

    #[test]
    fn rejects_foreign_and_invalid() {
        assert_eq!(Identity::from_uri("spiffe://x/node/a"), None);
        assert_eq!(Identity::from_uri("urn:certfed:node:"), None);
        assert_eq!(Identity::from_uri("urn:certfed:node:Node A"), None);
        assert_eq!(Identity::from_uri("urn:certfed:admin:x"), None);
    }
}
