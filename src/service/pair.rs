//! The node's role when two processes of it share one PostgreSQL store as an
//! active/standby pair: which backend, whether this process is the active
//! member (it holds the lease and serves) or the standby (it waits), which
//! epoch, and who the other member is. The application's lease task updates
//! it; the API refuses Federation and Operator calls on a standby with
//! [`Pair::standby_message`]; GetNodeInfo, metrics and systemd show it.
//!
//! Invariants: a node without a pair (SQLite, or a store opened without a
//! lease) is `Single` for its whole life and serves; a `Lost` role never
//! changes again (the process steps down and exits).
use std::sync::Mutex;
use tokio::sync::watch;

/// This process's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not part of a pair: always serves.
    Single,
    /// Waiting: `active` (if known) holds the lease with `epoch`.
    Standby { active: Option<String>, epoch: u64 },
    /// Holds the lease with `epoch`: serves and writes.
    Active { epoch: u64 },
    /// Held the lease and lost it: stops serving, then exits.
    Lost(String),
}

impl Role {
    /// `single`, `active`, `standby` (a lost member counts as standby).
    pub fn word(&self) -> &'static str {
        match self {
            Role::Single => "single",
            Role::Active { .. } => "active",
            Role::Standby { .. } | Role::Lost(_) => "standby",
        }
    }

    /// Whether this process serves Federation and Operator calls.
    pub fn serves(&self) -> bool {
        matches!(self, Role::Single | Role::Active { .. })
    }

    /// The lease epoch, when there is one.
    pub fn epoch(&self) -> u64 {
        match self {
            Role::Standby { epoch, .. } | Role::Active { epoch } => *epoch,
            _ => 0,
        }
    }
}

/// The pair state of a running node.
pub struct Pair {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// This member's name in the lease (empty without a pair).
    pub member: String,
    role: watch::Sender<Role>,
    other: Mutex<Option<String>>,
}

impl Pair {
    /// A node that is not part of a pair.
    pub fn single(backend: &'static str) -> Pair {
        Pair {
            backend,
            member: String::new(),
            role: watch::channel(Role::Single).0,
            other: Mutex::new(None),
        }
    }

    /// A member of a pair, standby until its lease says otherwise.
    pub fn member(backend: &'static str, member: String) -> Pair {
        Pair {
            backend,
            member,
            role: watch::channel(Role::Standby {
                active: None,
                epoch: 0,
            })
            .0,
            other: Mutex::new(None),
        }
    }

    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// Sets the role (a lost role stays lost); true if it changed.
    pub fn set_role(&self, r: Role) -> bool {
        self.role.send_if_modified(|cur| {
            if matches!(cur, Role::Lost(_)) || *cur == r {
                return false;
            }
            *cur = r;
            true
        })
    }

    /// The other member of the pair, when it was seen recently.
    pub fn other(&self) -> Option<String> {
        self.other.lock().expect("pair lock").clone()
    }

    pub fn set_other(&self, o: Option<String>) {
        *self.other.lock().expect("pair lock") = o;
    }

    /// Why a call is refused here, or `None` if this process serves.
    pub fn standby_message(&self, node_id: &str) -> Option<String> {
        match self.role() {
            Role::Single | Role::Active { .. } => None,
            Role::Standby { active, epoch } => Some(match active {
                Some(a) => format!(
                    "standby of node {node_id} ({}), active is {a} (lease epoch {epoch}); call the active member",
                    self.member
                ),
                None => format!(
                    "standby of node {node_id} ({}), no active member yet; retry in a few seconds",
                    self.member
                ),
            }),
            Role::Lost(why) => Some(format!(
                "node {node_id} ({}) lost its lease and is stepping down: {why}",
                self.member
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_names_the_active_and_a_lost_role_stays_lost() {
        let p = Pair::member("postgres", "host-b/127.0.0.1:7702".into());
        assert!(!p.role().serves());
        let m = p.standby_message("node-a").unwrap();
        assert!(
            m.contains("standby of node node-a") && m.contains("no active member yet"),
            "{m}"
        );
        p.set_role(Role::Standby {
            active: Some("host-a/127.0.0.1:7701".into()),
            epoch: 3,
        });
        let m = p.standby_message("node-a").unwrap();
        assert!(m.contains("active is host-a/127.0.0.1:7701"), "{m}");
        assert!(p.set_role(Role::Active { epoch: 4 }));
        assert_eq!(p.standby_message("node-a"), None);
        assert!(p.set_role(Role::Lost("moved".into())));
        assert!(!p.set_role(Role::Active { epoch: 5 }));
        assert_eq!(p.role().word(), "standby");
        assert!(Pair::single("sqlite").role().serves());
    }
}
