//! Database administration the benchmarks and tests need: a fresh, empty
//! database per node (on a server whose role may create databases), and its
//! removal afterwards. Never used by `certfed serve`: an operator creates the
//! node's database once (README, "PostgreSQL storage").
//!
//! Invariants: names are generated here (`certfed_` + a prefix of ASCII
//! letters, digits and `_` + random hex), so no caller's text reaches SQL
//! unquoted; errors never name the password.
use super::connect::{self, PgTarget, with_dbname};
use super::pg_err;
use crate::storage::StoreError;

/// The environment variable naming a PostgreSQL server for tests and
/// benchmarks: a URL whose role may create databases.
pub const TEST_URL_VAR: &str = "CERTFED_TEST_PG_URL";

/// One administrative session on the server `url` names.
async fn session(url: &str) -> Result<deadpool_postgres::Object, StoreError> {
    let p = connect::parse(&PgTarget {
        url: url.to_string(),
        password: None,
        idle_in_transaction_secs: 60,
    })?;
    let pool = connect::pool(&p, 1)?;
    pool.get().await.map_err(|e| super::refuse_connect(&p, e))
}

/// Creates an empty database named `certfed_<prefix>_<random>` on the server
/// `admin_url` names; returns the URL of the new database.
pub async fn create_database(admin_url: &str, prefix: &str) -> Result<String, StoreError> {
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    let name = format!("certfed_{clean}_{:016x}", rand::random::<u64>());
    let c = session(admin_url).await?;
    c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .map_err(|e| pg_err("cannot create a database", e))?;
    Ok(with_dbname(admin_url, &name))
}

/// Drops the database `url` names (connected to through `admin_url`),
/// ending its sessions first.
pub async fn drop_database(admin_url: &str, url: &str) -> Result<(), StoreError> {
    let p = connect::parse(&PgTarget {
        url: url.to_string(),
        password: None,
        idle_in_transaction_secs: 60,
    })?;
    let name = p.target.dbname.clone();
    if !name.starts_with("certfed_") || name.contains('"') {
        return Err(StoreError::Invalid(format!(
            "storage: refusing to drop {name}: not a database made by create_database"
        )));
    }
    let c = session(admin_url).await?;
    c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .map_err(|e| pg_err("cannot drop a database", e))?;
    Ok(())
}

/// Runs `sql` on the database `url` names (tests that damage a store on purpose).
pub async fn execute(url: &str, sql: &str) -> Result<(), StoreError> {
    session(url)
        .await?
        .batch_execute(sql)
        .await
        .map_err(|e| pg_err("cannot run a statement", e))
}
