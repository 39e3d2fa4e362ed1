//! Where the PostgreSQL store is and how to reach it: `storage.url` (a libpq
//! URL or `key=value` string) read into the driver's configuration, the
//! password added from outside the URL, TLS set up when the URL asks for it,
//! and the connection pool every part of the backend draws from.
//!
//! Invariants:
//! - The password never appears in a log line or an error: errors name the
//!   user, host, port and database only ([`Target`]).
//! - TLS is used exactly when `sslmode` is `require`, `verify-ca` or
//!   `verify-full`; the server's certificate is then always checked against
//!   `sslrootcert` (the CA file, required) and its host name (rustls, TLS 1.3
//!   only). `prefer` and `allow` (TLS when the server happens to offer it,
//!   unverified) are refused: fail closed.
//! - Every session runs with `synchronous_commit = on` (durable writes wait
//!   for the WAL flush, and for synchronous replicas when the operator set
//!   them up) and `idle_in_transaction_session_timeout`, so a paused process
//!   cannot hold a row lock (and block a takeover) for long.
use crate::storage::StoreError;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::config::{Host, SslMode};

/// How to reach the database, as the configuration gives it.
#[derive(Clone)]
pub struct PgTarget {
    /// `storage.url`: `postgresql://user@host:port/db?sslmode=verify-full&sslrootcert=/etc/certfed/db-ca.crt`
    /// or `host=... user=... dbname=...`.
    pub url: String,
    /// The password, when it does not come with the URL (a file or
    /// `CERTFED__STORAGE__PASSWORD`).
    pub password: Option<String>,
    /// Seconds after which a session idle inside a transaction is ended by
    /// the server.
    pub idle_in_transaction_secs: u64,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("url", &redact(&self.url))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `url` with any password in it replaced, for messages.
pub fn redact(url: &str) -> String {
    if let Some(rest) = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
    {
        let scheme = &url[..url.len() - rest.len()];
        let (auth, tail) = match rest.find('@') {
            Some(at) if rest[..at].find('/').is_none() => (&rest[..at], &rest[at..]),
            _ => ("", rest),
        };
        let auth = match auth.split_once(':') {
            Some((user, _)) => format!("{user}:<redacted>"),
            None => auth.to_string(),
        };
        let tail = redact_params(tail, '&');
        return format!("{scheme}{auth}{tail}");
    }
    redact_params(url, ' ')
}

fn redact_params(s: &str, sep: char) -> String {
    s.split(sep)
        .map(|p| {
            let lower = p.to_ascii_lowercase();
            let key = lower.trim_start_matches('?');
            if key.starts_with("password=") {
                let cut = p.find('=').map_or(p.len(), |i| i + 1);
                format!("{}<redacted>", &p[..cut])
            } else {
                p.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(&sep.to_string())
}

/// What an error may say about the database: no password.
#[derive(Debug, Clone)]
pub struct Target {
    pub user: String,
    pub hosts: String,
    pub dbname: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "database {} on {} as user {}",
            self.dbname, self.hosts, self.user
        )
    }
}

/// TLS as the URL asks for it.
enum Tls {
    Off,
    Verified(PathBuf),
}

/// Takes the libpq parameters tokio-postgres does not know (`sslrootcert`,
/// the verifying `sslmode`s) out of the URL; the rest is the driver's.
fn split_tls(url: &str) -> Result<(String, Tls), StoreError> {
    let bad = |m: String| StoreError::Invalid(format!("storage.url: {m}"));
    let mut root: Option<PathBuf> = None;
    let mut mode: Option<String> = None;
    let is_url = url.starts_with("postgresql://") || url.starts_with("postgres://");
    let rebuilt = if is_url {
        match url.split_once('?') {
            None => url.to_string(),
            Some((base, query)) => {
                let mut keep = Vec::new();
                for p in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    match k {
                        "sslrootcert" => root = Some(PathBuf::from(percent_decode(v))),
                        "sslmode" => mode = Some(v.to_string()),
                        _ => keep.push(p.to_string()),
                    }
                }
                if keep.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", keep.join("&"))
                }
            }
        }
    } else {
        let mut keep = Vec::new();
        for p in url.split_whitespace() {
            match p.split_once('=') {
                Some(("sslrootcert", v)) => root = Some(PathBuf::from(v.trim_matches('\''))),
                Some(("sslmode", v)) => mode = Some(v.trim_matches('\'').to_string()),
                _ => keep.push(p.to_string()),
            }
        }
        keep.join(" ")
    };
    let tls = match mode.as_deref() {
        None | Some("disable") => Tls::Off,
        Some("require" | "verify-ca" | "verify-full") => match root {
            Some(r) => Tls::Verified(r),
            None => {
                return Err(bad(format!(
                    "sslmode={} needs sslrootcert=/path/to/ca.crt (the CA that signed the database server's certificate): certfed always verifies the server",
                    mode.unwrap_or_default()
                )));
            }
        },
        Some(m @ ("prefer" | "allow")) => {
            return Err(bad(format!(
                "sslmode={m} would accept an unencrypted or unverified connection; use sslmode=verify-full with sslrootcert=... (or sslmode=disable on a trusted local socket)"
            )));
        }
        Some(m) => {
            return Err(bad(format!(
                "unknown sslmode {m:?}; use disable, require, verify-ca or verify-full"
            )));
        }
    };
    Ok((rebuilt, tls))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The parsed target: the driver's configuration, TLS, and what errors may name.
pub struct Parsed {
    pub config: tokio_postgres::Config,
    tls: Tls,
    pub target: Target,
}

impl Parsed {
    /// The CA file the server's certificate is checked against (TLS on).
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        match &self.tls {
            Tls::Off => None,
            Tls::Verified(ca) => Some(ca),
        }
    }
}

/// Reads `t` into a driver configuration (no connection yet).
pub fn parse(t: &PgTarget) -> Result<Parsed, StoreError> {
    let (rest, tls) = split_tls(&t.url)?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e| {
        StoreError::Invalid(format!(
            "storage.url: {e} (in {}); expected postgresql://user@host:port/dbname?sslmode=verify-full&sslrootcert=/path/ca.crt",
            redact(&t.url)
        ))
    })?;
    if let Some(p) = &t.password {
        config.password(p.as_bytes());
    }
    if config.get_hosts().is_empty() {
        return Err(StoreError::Invalid(
            "storage.url: no host; name the database server (host:port, or a socket folder)".into(),
        ));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    // A dead server or a cut network is noticed in seconds, not hours.
    config.keepalives_idle(Duration::from_secs(10));
    if config.get_application_name().is_none() {
        config.application_name("certfed");
    }
    let idle = t.idle_in_transaction_secs.max(1) * 1000;
    let mut options = config.get_options().unwrap_or_default().to_string();
    options.push_str(&format!(
        " -c synchronous_commit=on -c idle_in_transaction_session_timeout={idle}"
    ));
    config.options(options.trim());
    let hosts = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(h, p)| match h {
            Host::Tcp(h) => format!("{h}:{p}"),
            Host::Unix(path) => format!("{}/.s.PGSQL.{p}", path.display()),
        })
        .collect::<Vec<_>>()
        .join(",");
    let target = Target {
        user: config.get_user().unwrap_or("(default user)").to_string(),
        hosts,
        dbname: config
            .get_dbname()
            .map(str::to_string)
            .unwrap_or_else(|| config.get_user().unwrap_or("postgres").to_string()),
    };
    if matches!(tls, Tls::Verified(_)) {
        config.ssl_mode(SslMode::Require);
    } else {
        config.ssl_mode(SslMode::Disable);
    }
    Ok(Parsed {
        config,
        tls,
        target,
    })
}

/// The rustls configuration for the database: the CA file as the only root,
/// TLS 1.3.
fn rustls_config(ca: &std::path::Path) -> Result<rustls::ClientConfig, StoreError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let bad = |m: String| StoreError::Invalid(format!("storage.url: sslrootcert {m}"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .map_err(|e| bad(format!("{}: cannot read: {e}", ca.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("{}: not PEM certificates: {e}", ca.display())))?;
    if certs.is_empty() {
        return Err(bad(format!("{}: holds no certificate", ca.display())));
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| bad(format!("{}: {e}", ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| bad(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(cfg)
}

/// A pool of up to `size` sessions to the database of `p`.
pub fn pool(p: &Parsed, size: usize) -> Result<Pool, StoreError> {
    let mc = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let mgr = match &p.tls {
        Tls::Off => Manager::from_config(p.config.clone(), tokio_postgres::NoTls, mc),
        Tls::Verified(ca) => {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(rustls_config(ca)?);
            Manager::from_config(p.config.clone(), tls, mc)
        }
    };
    Pool::builder(mgr)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(10)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| StoreError::Invalid(format!("storage: cannot build the pool: {e}")))
}

/// `url` naming database `dbname` instead of the one it names.
pub fn with_dbname(url: &str, dbname: &str) -> String {
    if let Some(rest) = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
    {
        let scheme = &url[..url.len() - rest.len()];
        let (main, query) = match rest.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (rest, None),
        };
        let authority = main.split_once('/').map_or(main, |(a, _)| a);
        let q = query.map(|q| format!("?{q}")).unwrap_or_default();
        return format!("{scheme}{authority}/{dbname}{q}");
    }
    let kept: Vec<&str> = url
        .split_whitespace()
        .filter(|p| !p.starts_with("dbname="))
        .collect();
    format!("{} dbname={dbname}", kept.join(" "))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dbname_is_replaced() {
        assert_eq!(
            with_dbname("postgresql://u:p@h:1/postgres?sslmode=disable", "t1"),
            "postgresql://u:p@h:1/t1?sslmode=disable"
        );
        assert_eq!(with_dbname("postgresql://u@h", "t1"), "postgresql://u@h/t1");
        assert_eq!(
            with_dbname("host=h dbname=x user=u", "t1"),
            "host=h user=u dbname=t1"
        );
    }

    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgresql://certfed:s3cret@db:5432/certfed?sslmode=disable"),
            "postgresql://certfed:<redacted>@db:5432/certfed?sslmode=disable"
        );
        assert_eq!(
            redact("postgres://db/certfed?user=x&password=s3cret"),
            "postgres://db/certfed?user=x&password=<redacted>"
        );
        assert_eq!(
            redact("host=db user=certfed password=s3cret"),
            "host=db user=certfed password=<redacted>"
        );
        let t = PgTarget {
            url: "postgresql://u:s3cret@h/d".into(),
            password: Some("other".into()),
            idle_in_transaction_secs: 5,
        };
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("s3cret") && !dbg.contains("other"), "{dbg}");
    }

    #[test]
    fn tls_is_verified_or_off() {
        let (rest, tls) = split_tls(
            "postgresql://u@h/d?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.crt&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(rest, "postgresql://u@h/d?connect_timeout=3");
        assert!(matches!(tls, Tls::Verified(p) if p == std::path::Path::new("/etc/ca.crt")));
        let e = split_tls("postgresql://u@h/d?sslmode=require")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("needs sslrootcert"), "{e}");
        let e = split_tls("host=h sslmode=prefer")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("sslmode=prefer"), "{e}");
        let (rest, tls) = split_tls("host=h user=u sslmode=disable").unwrap();
        assert_eq!(rest, "host=h user=u");
        assert!(matches!(tls, Tls::Off));
    }

    #[test]
    fn parse_names_the_target_without_the_password() {
        let p = parse(&PgTarget {
            url: "postgresql://certfed:pw@db.example:6432/fed".into(),
            password: None,
            idle_in_transaction_secs: 5,
        })
        .unwrap();
        assert_eq!(
            p.target.to_string(),
            "database fed on db.example:6432 as user certfed"
        );
        let e = parse(&PgTarget {
            url: "postgresql://certfed:pw@db/fed?bogus=1".into(),
            password: None,
            idle_in_transaction_secs: 5,
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("storage.url") && !e.contains(":pw@"), "{e}");
    }
}
