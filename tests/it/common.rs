//! Test helpers on top of `certfed::app::localfed` (fresh PKI, config files,
//! in-process nodes on 127.0.0.1, generated clients).

pub use certfed::app::localfed::*;
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

/// Publishes `alert` on node `i` to `to` (empty: the whole federation).
pub async fn publish_on(
    fed: &Fed,
    i: usize,
    alert: certfed::proto::v1::Alert,
    to: &[&str],
) -> String {
    let mut op = fed.operator(i).await;
    op.publish_alert(certfed::proto::v1::PublishAlertRequest {
        alert: Some(alert),
        recipients: to.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .message_id
}

/// Whether node `i` holds (and can read) message `id`.
pub async fn holds(fed: &Fed, i: usize, id: &str) -> bool {
    let mut op = fed.operator(i).await;
    op.get_message(certfed::proto::v1::GetMessageRequest {
        message_id: id.to_string(),
    })
    .await
    .is_ok()
}

/// Waits until node `i` holds message `id`.
pub async fn arrives(fed: &Fed, i: usize, id: &str, within: Duration) -> bool {
    eventually(within, || holds(fed, i, id)).await
}

/// The PostgreSQL server named by `CERTFED_TEST_PG_URL` (a role that may
/// create databases), or `None` — the test is skipped, loudly — outside CI.
/// Under CI a missing server fails the test.
pub fn pg_server() -> Option<String> {
    match std::env::var("CERTFED_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CERTFED_TEST_PG_URL is not set but CI is: .ci/run must start PostgreSQL")
        }
        _ => {
            eprintln!(
                "\n*** SKIPPED: this test needs PostgreSQL: eval \"$(.ci/postgres start)\" ***\n"
            );
            None
        }
    }
}
