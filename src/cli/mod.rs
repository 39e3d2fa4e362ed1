//! The `certfed` command line: the node (`serve`, `check-config`), its tools
//! (`pki`, `demo`, `bench`, `completions`, `man`) and the operator client
//! commands (`info`, `alert`, `assist`, `incident`, `peers`, `delivery`, `watch`, `feed`).
//!
//! Invariants: the process exit code says what kind of failure happened
//! (`cli::error::Exit`, listed in `--help`); with `--json` errors are JSON on
//! stderr; a closed stdout ends a command quietly (exit 0), never a panic.
pub mod args;
pub mod assist;
pub mod attachment;
pub mod client;
pub mod error;
pub mod exchange;
pub mod exercise;
pub mod incident;
pub mod logging;
pub mod output;
pub mod pki;
pub mod roster;

use crate::config::{Config, LogFormat};
use clap::{CommandFactory, Parser, Subcommand};
use error::{Exit, Failure};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "certfed",
    version,
    about = "Federated CERT/CSIRT messaging node: signed alerts and assistance coordination over mutual-TLS gRPC",
    after_help = error::EXIT_CODES_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a node in the foreground until SIGTERM/SIGINT (systemd Type=notify).
    Serve {
        /// Configuration file (TOML); CERTFED__SECTION__KEY variables override it.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a configuration file exactly as `serve` would (files, keys,
    /// permissions, identities, peers, members) without opening a port; exit 0
    /// when `serve` would accept it, 1 naming the problem otherwise.
    CheckConfig {
        /// Configuration file (TOML); CERTFED__SECTION__KEY variables override it.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Create a federation CA, node and operator certificates, CRLs and signing keys.
    Pki {
        #[command(subcommand)]
        cmd: pki::PkiCommand,
    },
    /// The signed federation roster: draft, sign and verify offline; publish and show online.
    Roster {
        #[command(subcommand)]
        cmd: roster::RosterCommand,
    },
    /// Start a real local federation on loopback and play a short scenario,
    /// ending with the incident's HTML situation report.
    Demo {
        /// Where to write the situation report.
        #[arg(long, value_name = "FILE", default_value = "certfed-demo-report.html")]
        report: PathBuf,
    },
    /// Exercises: play a scenario on a local federation and report who knew
    /// what when (deploy/exercises/*.toml).
    Exercise {
        #[command(subcommand)]
        cmd: exercise::ExerciseCmd,
    },
    /// Run the standard benchmark on loopback (starts its own nodes).
    Bench(Box<crate::app::bench::BenchArgs>),
    /// Print a shell completion script (bash: source it, or install it as
    /// /usr/share/bash-completion/completions/certfed).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (certfed.1 and one per subcommand) to a folder.
    #[command(hide = true)]
    Man {
        /// Output folder.
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
    },
    /// Node identity, version, peers and members.
    Info {
        #[command(flatten)]
        conn: client::Conn,
    },
    /// Publish, list and inspect incident alerts.
    Alert {
        #[command(flatten)]
        conn: client::Conn,
        #[command(subcommand)]
        cmd: Box<client::AlertCmd>,
    },
    /// Evidence attached to messages: list them with their state, download one.
    Attachment {
        #[command(flatten)]
        conn: client::Conn,
        #[command(subcommand)]
        cmd: Box<attachment::AttachmentCmd>,
    },
    /// Request, offer, decide and follow assistance (Tallinn Mechanism style).
    Assist {
        #[command(flatten)]
        conn: client::Conn,
        #[command(subcommand)]
        cmd: Box<assist::AssistCmd>,
    },
    /// Incidents across partners: the shared picture, sightings, links,
    /// status, merges and the HTML situation report.
    Incident {
        #[command(flatten)]
        conn: client::Conn,
        #[command(subcommand)]
        cmd: Box<incident::IncidentCmd>,
    },
    /// Direct peers and the state of each link (and the last reconciliation
    /// with each).
    Peers {
        #[command(flatten)]
        conn: client::Conn,
        /// Reconcile with this peer now (ReconcilePeer) and show the result:
        /// the difference found, messages queued each way, rounds, bytes.
        #[arg(long, value_name = "PEER")]
        reconcile: Option<String>,
        /// With --reconcile: offer again what the peer refused for good
        /// within the last 24 h (its cause fixed on the peer).
        #[arg(long, requires = "reconcile")]
        retry_refused: bool,
    },
    /// Per-peer delivery state of a message.
    Delivery {
        #[command(flatten)]
        conn: client::Conn,
        /// Message id.
        message_id: String,
    },
    /// Write a feed of the node's alerts that other tools fetch (MISP feed folder).
    Feed {
        #[command(flatten)]
        conn: client::Conn,
        #[command(subcommand)]
        cmd: exchange::FeedCmd,
    },
    /// Stream messages as the node stores them (with --json: one JSON object per line).
    Watch {
        #[command(flatten)]
        conn: client::Conn,
        /// Start from the first stored message.
        #[arg(long)]
        from_start: bool,
        /// Resume after this cursor.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Stop after this many events (0: run until interrupted).
        #[arg(long, default_value_t = 0)]
        count: u64,
        /// Show exercise traffic too, marked [EXERCISE] (default: real
        /// traffic only).
        #[arg(long)]
        exercise: bool,
    },
}

impl Command {
    /// Whether errors should be printed as JSON.
    fn json(&self) -> bool {
        match self {
            Command::Info { conn }
            | Command::Alert { conn, .. }
            | Command::Assist { conn, .. }
            | Command::Attachment { conn, .. }
            | Command::Incident { conn, .. }
            | Command::Peers { conn, .. }
            | Command::Delivery { conn, .. }
            | Command::Feed { conn, .. }
            | Command::Watch { conn, .. } => conn.json,
            Command::Roster {
                cmd:
                    roster::RosterCommand::Publish { conn, .. }
                    | roster::RosterCommand::Show { conn, .. },
            } => conn.json,
            _ => false,
        }
    }
}

/// Sets up logging (see [`logging`]).
pub fn init_logging(format: LogFormat, level: &str) {
    logging::init(format, level);
}

/// `certfed check-config`: what `serve` checks before binding.
fn check_config(path: &std::path::Path) -> anyhow::Result<()> {
    let cfg = Config::load(path)?;
    let p = crate::app::check(cfg)?;
    // With a roster, the file's signatures are checked as a first start would
    // (a store holding a newer version makes an older or expired file moot).
    let roster = match &p.roster {
        None => String::new(),
        Some(r) => match &r.file {
            Some(doc) => {
                let checked = crate::domain::roster::check_first(
                    doc.clone(),
                    r.pinned.as_ref(),
                    crate::service::now_ms(),
                );
                format!(
                    "; roster.file: {} version {}, {} member(s), {}",
                    doc.roster.federation,
                    doc.version(),
                    doc.roster.members.len(),
                    match checked {
                        Ok(a) => format!("signed by {}", a.signed_by.join(", ")),
                        Err(e) => format!(
                            "NOT VALID for a first start ({e}); fine only if the store holds a newer version"
                        ),
                    }
                )
            }
            None => "; roster: waiting for a first roster signed by the pinned stewards".into(),
        },
    };
    output::emit(&format!(
        "{}: OK: node {}, listen {}, {} peer(s), {} member(s){roster}\n",
        path.display(),
        p.cfg.node.id,
        p.cfg.node.listen,
        p.cfg.peers.len(),
        p.cfg.members.len()
    ))
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    crate::transport::tls::install_default_provider();
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match cli.command {
        Command::Serve { config } => {
            let cfg = Config::load(&config)?;
            init_logging(cfg.log.format, &cfg.log.level);
            rt()?.block_on(crate::app::serve(cfg, &config))
        }
        Command::CheckConfig { config } => check_config(&config),
        Command::Pki { cmd } => pki::run(cmd),
        Command::Roster { cmd } => match cmd {
            roster::RosterCommand::Publish { .. } | roster::RosterCommand::Show { .. } => {
                rt()?.block_on(roster::run_online(cmd))
            }
            offline => roster::run(offline),
        },
        Command::Demo { report } => {
            init_logging(LogFormat::Human, "error");
            rt()?.block_on(crate::app::demo::run(report))
        }
        Command::Exercise { cmd } => {
            init_logging(LogFormat::Human, "error");
            rt()?.block_on(exercise::run(cmd))
        }
        Command::Bench(args) => {
            init_logging(LogFormat::Human, "error");
            rt()?.block_on(crate::app::bench::run(*args))
        }
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "certfed", &mut out);
            output::emit(&String::from_utf8_lossy(&out))
        }
        Command::Man { out_dir } => {
            std::fs::create_dir_all(&out_dir)?;
            clap_mangen::generate_to(Cli::command(), &out_dir)
                .map_err(|e| anyhow::anyhow!("{}: {e}", out_dir.display()))
        }
        Command::Info { conn } => rt()?.block_on(client::info(conn)),
        Command::Alert { conn, cmd } => rt()?.block_on(client::alert(conn, *cmd)),
        Command::Assist { conn, cmd } => rt()?.block_on(assist::run(conn, *cmd)),
        Command::Attachment { conn, cmd } => rt()?.block_on(attachment::run(conn, *cmd)),
        Command::Incident { conn, cmd } => rt()?.block_on(incident::run(conn, *cmd)),
        Command::Peers {
            conn,
            reconcile,
            retry_refused,
        } => rt()?.block_on(client::peers(conn, reconcile, retry_refused)),
        Command::Delivery { conn, message_id } => {
            rt()?.block_on(client::delivery(conn, message_id))
        }
        Command::Feed { conn, cmd } => rt()?.block_on(async {
            let mut c = client::connect(&conn).await?;
            exchange::feed(&mut c, &conn.node, conn.json, cmd).await
        }),
        Command::Watch {
            conn,
            from_start,
            after,
            count,
            exercise,
        } => rt()?.block_on(client::watch(conn, from_start, after, count, exercise)),
    }
}

/// The whole program: parse, run, report; returns the exit code.
pub fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let informational = matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            if !informational && std::env::args().any(|a| a == "--json") {
                let msg = e.render().to_string();
                let f = Failure::new(Exit::Usage, tonic::Code::InvalidArgument, msg.trim());
                return exit_code(error::report(&f.into(), true));
            }
            // clap prints it; usage errors exit 2, help and version 0. A
            // closed stdout is not worth a panic here either.
            let code = e.exit_code();
            let _ = e.print();
            return std::process::ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
    };
    let json = cli.command.json();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => exit_code(error::report(&e, json)),
    }
}

fn exit_code(e: Exit) -> std::process::ExitCode {
    std::process::ExitCode::from(e as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag and argument of every subcommand says what it is for, and the
    /// connection flags sit under one heading.
    #[test]
    fn every_argument_has_help_and_connection_flags_are_grouped() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
                let client = cmd.get_arguments().any(|x| x.get_id() == "ca");
                if client && ["node", "ca", "cert", "key", "json"].contains(&id) {
                    assert_eq!(a.get_help_heading(), Some("Connection"), "{path} --{id}");
                }
            }
            for s in cmd.get_subcommands() {
                walk(s, &format!("{path} {}", s.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "certfed", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
        Cli::command().debug_assert();
    }
}
