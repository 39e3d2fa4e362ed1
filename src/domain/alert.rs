//! Alert validation (owned by the alert-validation work; see `validate_alert`).
