//! Test helpers on top of `certfed::localfed` (fresh PKI, config files,
//! in-process nodes on 127.0.0.1, generated clients).
#![allow(dead_code)]

pub use certfed::localfed::*;
use std::time::Duration;

/// Polls `f` every 50 ms until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A GREEN alert with the given title.
pub fn green_alert(title: &str) -> certfed::proto::v1::Alert {
    use certfed::proto::v1::*;
    Alert {
        title: title.into(),
        description: "test alert".into(),
        tlp: Tlp::Green as i32,
        severity: Severity::High as i32,
        rsit_class: RsitClass::MaliciousCode as i32,
        sectors: vec![Nis2Sector::Energy as i32],
        affected_countries: vec!["EE".into()],
        indicators: vec![Indicator {
            r#type: IndicatorType::Ip as i32,
            value: "192.0.2.7".into(),
            comment: String::new(),
        }],
        ..Default::default()
    }
}
