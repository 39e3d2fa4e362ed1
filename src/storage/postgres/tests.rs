//! Tests of the PostgreSQL backend against a REAL PostgreSQL server named by
//! `CERTFED_TEST_PG_URL` (`.ci/postgres` starts one): the shared conformance
//! suite, fencing, the lease, and the refusals at open. Without the variable
//! they are skipped with a loud message, except in CI (`CI` set), where a
//! missing PostgreSQL fails them.
use super::*;
use crate::storage::{Lease, LeaseRole, Store};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The server to test against, or `None` (skip) outside CI.
pub(crate) fn server() -> Option<String> {
    match std::env::var(admin::TEST_URL_VAR) {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{} is not set but CI is: the PostgreSQL tests must run in CI (.ci/run starts a server with .ci/postgres)",
            admin::TEST_URL_VAR
        ),
        _ => {
            eprintln!(
                "\n*** SKIPPED: PostgreSQL backend tests: set {} (eval \"$(.ci/postgres start)\") to run them ***\n",
                admin::TEST_URL_VAR
            );
            None
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn target(url: &str) -> PgTarget {
    PgTarget {
        url: url.to_string(),
        password: None,
        idle_in_transaction_secs: 5,
    }
}

fn opts(node: &str) -> OpenOptions {
    OpenOptions::new(node)
}

async fn open_plain(url: &str, node: &str) -> Result<PgStore, StoreError> {
    Ok(open(&target(url), &opts(node), None).await?.0)
}

#[test]
fn conformance() {
    let Some(server) = server() else { return };
    rt().block_on(async {
        let dbs: Mutex<HashMap<PathBuf, String>> = Mutex::default();
        crate::storage::conformance::run_all(|dir: &Path| -> Store {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    let known = dbs.lock().unwrap().get(dir).cloned();
                    let url = match known {
                        Some(u) => u,
                        None => {
                            let u = admin::create_database(&server, "conf").await.unwrap();
                            dbs.lock().unwrap().insert(dir.to_path_buf(), u.clone());
                            u
                        }
                    };
                    Arc::new(
                        open_plain(&url, "node-a")
                            .await
                            .expect("open postgres store"),
                    )
                })
            })
        })
        .await;
        let all: Vec<String> = dbs.lock().unwrap().values().cloned().collect();
        for u in all {
            let _ = admin::drop_database(&server, &u).await;
        }
    });
}

/// A fresh database on the test server, dropped at the end of `f`.
fn with_db(f: impl AsyncFnOnce(&str, &str)) {
    let Some(server) = server() else { return };
    rt().block_on(async {
        let url = admin::create_database(&server, "unit").await.unwrap();
        f(&server, &url).await;
        let _ = admin::drop_database(&server, &url).await;
    });
}

fn rejection(n: usize) -> Vec<RejectionRow> {
    vec![RejectionRow {
        from_peer: "p".into(),
        message_id: format!("m{n}"),
        reason: "r".into(),
    }]
}

#[test]
fn another_nodes_database_and_a_newer_schema_are_refused() {
    with_db(async |_, url| {
        open_plain(url, "node-a").await.unwrap().close().await;
        let e = open_plain(url, "node-b").await.err().unwrap().to_string();
        assert!(
            e.contains("holds the store of node node-a") && e.contains("node.id is node-b"),
            "{e}"
        );
        assert!(
            !e.contains(":") || !e.contains("@"),
            "no URL with a password: {e}"
        );
        admin::execute(
            url,
            &format!(
                "UPDATE store_meta SET value = '{}' WHERE key = 'schema_version'",
                schema::CURRENT_VERSION + 1
            ),
        )
        .await
        .unwrap();
        let e = open_plain(url, "node-a").await.err().unwrap().to_string();
        assert!(e.contains("newer than this certfed"), "{e}");
    });
}

#[test]
fn wrong_credentials_and_unreachable_servers_are_named_without_the_password() {
    let Some(server) = server() else { return };
    rt().block_on(async {
        let bad = match server.split_once('@') {
            Some((auth, rest)) => {
                let user = auth.rsplit_once(':').map_or(auth, |(u, _)| u);
                format!("{user}:wrong-password-xyz@{rest}")
            }
            None => return,
        };
        let e = open_plain(&bad, "node-a").await.err().unwrap().to_string();
        assert!(e.contains("password authentication failed"), "{e}");
        assert!(e.contains("storage.password_file"), "{e}");
        assert!(!e.contains("wrong-password-xyz"), "{e}");
        let port = crate::storage::postgres::tests::free_port();
        let e = open_plain(
            &format!("postgresql://certfed:secret-pw@127.0.0.1:{port}/x"),
            "node-a",
        )
        .await
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.contains(&format!("127.0.0.1:{port}")) && e.contains("check that PostgreSQL runs"),
            "{e}"
        );
        assert!(!e.contains("secret-pw"), "{e}");
    });
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pair(holder: &str, secs: u64) -> Option<PairOptions> {
    Some(PairOptions {
        holder: holder.into(),
        lease: Duration::from_secs(secs),
    })
}

#[test]
fn one_member_of_two_gets_the_lease_and_only_it_writes() {
    with_db(async |_, url| {
        let (a, la) = open(&target(url), &opts("node-a"), pair("host-a/:1", 30))
            .await
            .unwrap();
        let (b, lb) = open(&target(url), &opts("node-a"), pair("host-b/:1", 30))
            .await
            .unwrap();
        let (la, lb) = (la.unwrap(), lb.unwrap());
        // Before any tick both are standbys: nobody writes.
        let e = a.record_rejections(rejection(1), 1).await.unwrap_err();
        assert!(matches!(e, StoreError::Fenced(_)), "{e:?}");
        // Both try at once: exactly one wins.
        let (ta, tb) = tokio::join!(la.tick(), lb.tick());
        let (ta, tb) = (ta.unwrap(), tb.unwrap());
        let actives = [&ta, &tb]
            .iter()
            .filter(|t| matches!(t.role, LeaseRole::Active { .. }))
            .count();
        assert_eq!(actives, 1, "{ta:?} {tb:?}");
        let (winner, loser, lw, ll) = if matches!(ta.role, LeaseRole::Active { .. }) {
            (&a, &b, &la, &lb)
        } else {
            (&b, &a, &lb, &la)
        };
        winner.record_rejections(rejection(2), 1).await.unwrap();
        let e = loser.record_rejections(rejection(3), 1).await.unwrap_err();
        assert!(e.to_string().contains("standby"), "{e}");
        let t = ll.tick().await.unwrap();
        match &t.role {
            LeaseRole::Standby { active, .. } => assert_eq!(active, lw.holder()),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.other.as_deref(), Some(lw.holder()));
        // Renewals keep the epoch.
        let before = lw.tick().await.unwrap().role;
        assert_eq!(lw.tick().await.unwrap().role, before);
        a.close().await;
        b.close().await;
    });
}

#[test]
fn a_deposed_active_is_fenced_even_mid_stream() {
    with_db(async |_, url| {
        let (old, lold) = open(&target(url), &opts("node-a"), pair("host-a/:1", 1))
            .await
            .unwrap();
        let lold = lold.unwrap();
        assert!(matches!(
            lold.tick().await.unwrap().role,
            LeaseRole::Active { epoch: 1 }
        ));
        old.record_rejections(rejection(1), 1).await.unwrap();
        // The old active stops renewing (paused); its lease lapses and the
        // other member takes over.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (new, lnew) = open(&target(url), &opts("node-a"), pair("host-b/:1", 1))
            .await
            .unwrap();
        let lnew = lnew.unwrap();
        assert!(matches!(
            lnew.tick().await.unwrap().role,
            LeaseRole::Active { epoch: 2 }
        ));
        // The old one resumes: its write is refused, and so is every later one.
        let mut lost = old.lost();
        let e = old.record_rejections(rejection(2), 1).await.unwrap_err();
        assert!(matches!(e, StoreError::Fenced(_)), "{e:?}");
        assert!(e.to_string().contains("epoch 2 held by host-b/:1"), "{e}");
        assert!(lost.wait_for(|l| l.is_some()).await.is_ok());
        assert!(matches!(lold.tick().await, Err(StoreError::Fenced(_))));
        new.record_rejections(rejection(3), 1).await.unwrap();
        let rows: i64 = {
            let c = new.reader().await.unwrap();
            c.query_one("SELECT COUNT(*) FROM rejections", &[])
                .await
                .unwrap()
                .get(0)
        };
        assert_eq!(rows, 2, "the fenced write left nothing");
        old.close().await;
        // A clean release lets the standby in at once.
        new.close().await;
        lnew.release().await;
        let (third, l3) = open(&target(url), &opts("node-a"), pair("host-c/:1", 30))
            .await
            .unwrap();
        assert!(matches!(
            l3.unwrap().tick().await.unwrap().role,
            LeaseRole::Active { epoch: 3 }
        ));
        third.close().await;
    });
}

#[test]
fn a_restarted_member_takes_its_own_stale_lease_at_once() {
    with_db(async |_, url| {
        let (s, l) = open(&target(url), &opts("node-a"), pair("host-a/:7", 60))
            .await
            .unwrap();
        assert!(matches!(
            l.unwrap().tick().await.unwrap().role,
            LeaseRole::Active { epoch: 1 }
        ));
        s.close().await; // crashed: no release
        let (s, l) = open(&target(url), &opts("node-a"), pair("host-a/:7", 60))
            .await
            .unwrap();
        assert!(matches!(
            l.unwrap().tick().await.unwrap().role,
            LeaseRole::Active { epoch: 2 }
        ));
        s.close().await;
    });
}

#[test]
fn failing_job_rolls_back_alone_in_a_shared_batch() {
    with_db(async |_, url| {
        let store = open_plain(url, "node-a").await.unwrap();
        let mut jobs = Vec::new();
        for i in 0..40i64 {
            let s = store.clone();
            jobs.push(tokio::spawn(async move {
                let sql = if i % 5 == 0 {
                    "INSERT INTO rejections (at_ms, from_peer, message_id, reason) VALUES (1, 'p', 'm', 'r'); SELECT 1/0".to_string()
                } else {
                    format!("INSERT INTO rejections (at_ms, from_peer, message_id, reason) VALUES ({i}, 'p', 'm', 'r')")
                };
                s.unit(Durability::Durable, Op::Raw(sql)).await
            }));
        }
        let mut failed = 0;
        for j in jobs {
            if j.await.unwrap().is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 8);
        let c = store.reader().await.unwrap();
        let n: i64 = c
            .query_one("SELECT COUNT(*) FROM rejections", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 32, "only the failing jobs' writes are undone");
        drop(c);
        store.close().await;
    });
}

#[test]
fn concurrent_inserts_share_one_call_and_a_bad_one_still_fails_alone() {
    use crate::proto::v1::MessageKind;
    use crate::storage::conformance::msg;
    with_db(async |_, url| {
        let store = open_plain(url, "node-a").await.unwrap();
        // The writer is busy: the inserts queue up behind, and are taken as
        // one run of consecutive insert jobs.
        let busy = store
            .enqueue(Durability::Durable, Op::Raw("SELECT pg_sleep(0.3)".into()))
            .await
            .unwrap();
        let mut pending = Vec::new();
        for i in 0..40 {
            // Every 8th job is refused by PostgreSQL (a NUL in a text column);
            // job 39 repeats job 1's message.
            let id = match i {
                _ if i % 8 == 3 => format!("bad\0{i}"),
                39 => "m-1".to_string(),
                _ => format!("m-{i}"),
            };
            let m = msg(&id, "node-a", MessageKind::Alert, &["node-b"]);
            pending.push(
                store
                    .insert_queued(vec![m], Durability::Durable)
                    .await
                    .unwrap(),
            );
        }
        busy.await.unwrap();
        let mut stored = Vec::new();
        let mut failed = 0;
        for (i, p) in pending.into_iter().enumerate() {
            match p.await {
                Ok(s) => stored.push((i, s)),
                Err(e) => {
                    assert_eq!(i % 8, 3, "job {i} failed: {e}");
                    failed += 1;
                }
            }
        }
        assert_eq!(failed, 5, "only the bad jobs fail");
        let new: Vec<u64> = stored
            .iter()
            .filter_map(|(_, s)| match s[0] {
                Stored::New(c) => Some(c),
                Stored::Duplicate => None,
            })
            .collect();
        assert_eq!(new.len(), 34, "{stored:?}");
        assert!(
            new.windows(2).all(|w| w[0] < w[1]),
            "cursors follow the queue: {new:?}"
        );
        assert!(matches!(stored.last(), Some((39, s)) if s[0] == Stored::Duplicate));
        assert_eq!(store.message_count().await.unwrap(), 34);
        assert_eq!(
            store.outbox_depths().await.unwrap(),
            vec![("node-b".to_string(), 34)]
        );
        store.close().await;
    });
}

#[test]
fn migration_6_gives_existing_keys_their_incident() {
    use crate::proto::v1::MessageKind;
    use crate::storage::conformance::msg;
    with_db(async |_, url| {
        let store = open_plain(url, "node-a").await.unwrap();
        let mut opener = msg("inc-1", "node-a", MessageKind::Alert, &[]);
        opener.incident_id = Some("inc-1".into());
        opener.keys = vec!["ip:192.0.2.1".into()];
        let mut loose = msg("loose-1", "node-a", MessageKind::Alert, &[]);
        loose.keys = vec!["ip:192.0.2.1".into()];
        store
            .insert(vec![opener, loose], Durability::Durable)
            .await
            .unwrap();
        store.close().await;
        // The database as version 5 left it: no incident on key rows.
        admin::execute(
            url,
            "DROP INDEX message_keys_incident;
             ALTER TABLE message_keys DROP COLUMN incident_id,
                 ALTER COLUMN key TYPE TEXT COLLATE \"default\";
             UPDATE store_meta SET value = '5' WHERE key = 'schema_version'",
        )
        .await
        .unwrap();
        let store = open_plain(url, "node-a").await.unwrap();
        assert_eq!(
            store
                .keyed_incidents(vec!["ip:192.0.2.1".into()], 10)
                .await
                .unwrap(),
            vec![("ip:192.0.2.1".to_string(), "inc-1".to_string())],
            "the incident member's key row got its incident; the loose one none"
        );
        assert_eq!(
            store
                .keyed(vec!["ip:192.0.2.1".into()], 10)
                .await
                .unwrap()
                .len(),
            2
        );
        store.close().await;
    });
}
