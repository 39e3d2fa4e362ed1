//! Federation PKI (owned by the PKI work).
