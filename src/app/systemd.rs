//! The systemd notify protocol (`Type=notify`), as `certfed serve` speaks it:
//!
//! - `READY=1` once the listeners are bound and the store is open, with a
//!   `STATUS=` line saying what the node is doing (its role in an
//!   active/standby pair — "active (lease epoch N)" or "standby, active is
//!   Y" —, listen address, peers up, last reload result), refreshed whenever
//!   that changes.
//! - `WATCHDOG=1` every half `WatchdogSec`, but only while the store answers
//!   a read within that half interval: a node whose store hangs stops pinging
//!   and systemd restarts it.
//! - On SIGHUP: `RELOADING=1` with `MONOTONIC_USEC`, then `READY=1` and a
//!   `STATUS=` that says whether the reload was applied or refused (and why).
//! - `STOPPING=1` on shutdown.
//!
//! Without `NOTIFY_SOCKET` every call here is a no-op. Nothing here decides
//! anything about the node; it only reports.
use crate::service::node::Node;
use sd_notify::NotifyState;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the STATUS line reports besides the live peer count.
#[derive(Default)]
pub struct Status {
    last_reload: Mutex<Option<String>>,
}

impl Status {
    /// The STATUS text for `node` now.
    pub fn line(&self, node: &Node) -> String {
        let (up, total) = node.metrics.peers_up();
        let reload = self
            .last_reload
            .lock()
            .expect("status lock")
            .clone()
            .unwrap_or_else(|| "none since start".into());
        use crate::service::pair::Role;
        let role = match node.pair.role() {
            Role::Single => String::new(),
            Role::Active { epoch } => format!("active (lease epoch {epoch}); "),
            Role::Standby { active, epoch } => format!(
                "standby, active is {} (lease epoch {epoch}); ",
                active.as_deref().unwrap_or("nobody yet")
            ),
            Role::Lost(_) => "lease lost, stepping down; ".into(),
        };
        format!(
            "{role}serving on {}; peers up {up}/{total}; last reload: {reload}",
            node.listen
        )
    }
}

fn send(states: &[NotifyState]) {
    let _ = sd_notify::notify(states);
}

/// Tells systemd the node is ready.
pub fn ready(node: &Node, status: &Status) {
    let line = status.line(node);
    send(&[NotifyState::Ready, NotifyState::Status(&line)]);
}

/// Tells systemd a reload has begun (`RELOADING=1` with the monotonic clock,
/// as `Type=notify-reload` requires).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Tells systemd the reload is over and how it went.
pub fn reloaded(node: &Node, status: &Status, error: Option<&anyhow::Error>) {
    let at = rfc3339_now();
    let text = match error {
        None => format!("applied at {at}"),
        Some(e) => {
            let mut msg = format!("{e:#}").replace('\n', " ");
            if msg.len() > 300 {
                let mut end = 300;
                while !msg.is_char_boundary(end) {
                    end -= 1;
                }
                msg.truncate(end);
                msg.push_str("...");
            }
            format!("REFUSED at {at} (running configuration kept): {msg}")
        }
    };
    *status.last_reload.lock().expect("status lock") = Some(text);
    let line = status.line(node);
    send(&[NotifyState::Ready, NotifyState::Status(&line)]);
}

/// Tells systemd the node is stopping.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Refreshes STATUS when it changes (checked every 2 s) and, when systemd
/// asked for a watchdog, pings it every half interval while the store
/// answers. Runs until the node stops.
pub async fn run(node: Arc<Node>, status: Arc<Status>, watchdog: Option<Duration>) {
    let mut status_tick = tokio::time::interval(Duration::from_secs(2));
    let half = watchdog.map(|w| (w / 2).max(Duration::from_millis(10)));
    let mut dog_tick = tokio::time::interval(half.unwrap_or(Duration::from_secs(3600)));
    dog_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = status.line(&node);
    let mut store_ok = true;
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            _ = status_tick.tick() => {
                let line = status.line(&node);
                if line != last {
                    send(&[NotifyState::Status(&line)]);
                    last = line;
                }
            }
            _ = dog_tick.tick(), if half.is_some() => {
                let limit = half.unwrap_or(Duration::from_secs(1));
                let answered = matches!(
                    tokio::time::timeout(limit, node.store.last_cursor()).await,
                    Ok(Ok(_))
                );
                if answered {
                    send(&[NotifyState::Watchdog]);
                    if !store_ok {
                        tracing::warn!("store answers again; watchdog pings resumed");
                        send(&[NotifyState::Status(&last)]);
                    }
                } else if store_ok {
                    tracing::error!(
                        within_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
                        "store did not answer; watchdog pings withheld (systemd restarts the node after WatchdogSec)"
                    );
                    send(&[NotifyState::Status("store not answering; watchdog pings withheld")]);
                }
                store_ok = answered;
            }
        }
    }
}
