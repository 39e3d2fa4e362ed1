//! The PostgreSQL server `certfed bench --storage postgres` measures on: the
//! one `--pg-url` (or `CERTFED_BENCH_PG_URL`) names — a role that may create
//! databases; each benchmark node gets a fresh database, dropped afterwards —
//! or, when none is named, a throw-away cluster of the PostgreSQL installed
//! on this machine (`/usr/lib/postgresql/*/bin`, Debian's layout), started in
//! a temporary folder on a free loopback port with the durable defaults
//! (`fsync = on`, `synchronous_commit = on`) and stopped and removed when the
//! benchmark ends.
//!
//! Invariants: the throw-away cluster listens on 127.0.0.1 only and asks for
//! a random password (SCRAM) over TCP; `initdb` refuses root, so as root the
//! cluster runs as the `postgres` user; the password never reaches a log or
//! an error text.
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the benchmark's databases live.
pub struct Server {
    /// A URL whose role may create databases.
    pub url: String,
    /// Set when the benchmark started the server itself.
    pub cluster: Option<Cluster>,
}

/// A throw-away PostgreSQL cluster, stopped when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    /// `PostgreSQL 15.x` as the server reports it.
    pub version: String,
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`.
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Runs `program args` (as the `postgres` user when `as_postgres`).
fn run(as_postgres: bool, program: &Path, args: &[&str], what: &str) -> anyhow::Result<()> {
    let mut cmd = if as_postgres {
        let mut line = shell_quote(&program.to_string_lossy());
        for a in args {
            line.push(' ');
            line.push_str(&shell_quote(a));
        }
        let mut c = Command::new("su");
        c.args(["postgres", "-s", "/bin/sh", "-c", &line]);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    };
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: cannot run {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl Server {
    /// The server `url` names, or a throw-away cluster when `url` is `None`.
    pub fn get(url: Option<String>) -> anyhow::Result<Server> {
        if let Some(url) = url.filter(|u| !u.is_empty()) {
            return Ok(Server { url, cluster: None });
        }
        let Some(bin) = bin_dir() else {
            bail!(
                "certfed bench --storage postgres needs a PostgreSQL server: name one with --pg-url \
                 postgresql://USER:PASSWORD@HOST:PORT/postgres (a role that may create databases) or \
                 CERTFED_BENCH_PG_URL, or install PostgreSQL (apt-get install postgresql) so that the \
                 benchmark can start a throw-away cluster"
            );
        };
        let (url, cluster) = Cluster::start(bin)?;
        Ok(Server {
            url,
            cluster: Some(cluster),
        })
    }
}

impl Cluster {
    fn start(bin: PathBuf) -> anyhow::Result<(String, Cluster)> {
        use std::os::unix::fs::PermissionsExt;
        let as_postgres = is_root();
        let dir = tempfile::tempdir().context("a temporary folder for the PostgreSQL cluster")?;
        // The cluster's user must reach its folder.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let password = {
            use rand::Rng;
            let mut rng = rand::rng();
            (0..24)
                .map(|_| {
                    char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)])
                })
                .collect::<String>()
        };
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n"))?;
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600))?;
        if as_postgres {
            run(
                false,
                Path::new("chown"),
                &[
                    "-R",
                    "postgres",
                    dir.path().to_str().context("temporary folder name")?,
                ],
                "chown the cluster folder to postgres",
            )?;
        }
        let data = dir.path().join("data");
        let data_s = data.to_string_lossy().to_string();
        let sock = dir.path().to_string_lossy().to_string();
        let pw_s = pwfile.to_string_lossy().to_string();
        run(
            as_postgres,
            &bin.join("initdb"),
            &[
                "-D",
                &data_s,
                "-U",
                "postgres",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "--pwfile",
                &pw_s,
            ],
            "initdb",
        )?;
        let port = crate::app::localfed::free_port();
        let opts = format!(
            "-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on -c synchronous_commit=on"
        );
        let log = dir.path().join("log").to_string_lossy().to_string();
        let version = String::from_utf8_lossy(
            &Command::new(bin.join("postgres"))
                .arg("--version")
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default(),
        )
        .trim()
        .to_string();
        let cluster = Cluster {
            dir,
            bin: bin.clone(),
            as_postgres,
            version,
        };
        run(
            as_postgres,
            &bin.join("pg_ctl"),
            &["-D", &data_s, "-l", &log, "-w", "-o", &opts, "start"],
            "pg_ctl start",
        )?;
        Ok((
            format!("postgresql://postgres:{password}@127.0.0.1:{port}/postgres"),
            cluster,
        ))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data").to_string_lossy().to_string();
        let _ = run(
            self.as_postgres,
            &self.bin.join("pg_ctl"),
            &["-D", &data, "-m", "fast", "-w", "stop"],
            "pg_ctl stop",
        );
    }
}
