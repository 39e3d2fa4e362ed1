//! The `certfed` command line.
pub mod assist;
pub mod client;
pub mod pki;

use crate::config::{Config, LogFormat};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "certfed",
    version,
    about = "Federated CERT/CSIRT messaging node: signed alerts and assistance coordination over mutual-TLS gRPC"
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
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Create a federation CA, node and operator certificates, CRLs and signing keys.
    Pki {
        #[command(subcommand)]
        cmd: pki::PkiCommand,
    },
    /// Start a real local federation on loopback and play a short scenario.
    Demo,
    /// Run the standard benchmark on loopback (starts its own nodes).
    Bench(Box<crate::app::bench::BenchArgs>),
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
    /// Request, offer, decide and follow assistance (Tallinn Mechanism style).
    Assist {
        #[command(flatten)]
        conn: client::Conn,
        #[command(subcommand)]
        cmd: Box<assist::AssistCmd>,
    },
    /// Direct peers and the state of each link.
    Peers {
        #[command(flatten)]
        conn: client::Conn,
    },
    /// Per-peer delivery state of a message.
    Delivery {
        #[command(flatten)]
        conn: client::Conn,
        /// Message id.
        message_id: String,
    },
    /// Stream messages as the node stores them.
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
    },
}

/// Sets up logging: `RUST_LOG` wins over the configured level; JSON or human
/// lines on stderr.
pub fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

/// Runs the parsed command line; the process exit code follows the result.
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
        Command::Pki { cmd } => pki::run(cmd),
        Command::Demo => {
            init_logging(LogFormat::Human, "error");
            rt()?.block_on(crate::app::demo::run())
        }
        Command::Bench(args) => {
            init_logging(LogFormat::Human, "error");
            rt()?.block_on(crate::app::bench::run(*args))
        }
        Command::Info { conn } => rt()?.block_on(client::info(conn)),
        Command::Alert { conn, cmd } => rt()?.block_on(client::alert(conn, *cmd)),
        Command::Assist { conn, cmd } => rt()?.block_on(assist::run(conn, *cmd)),
        Command::Peers { conn } => rt()?.block_on(client::peers(conn)),
        Command::Delivery { conn, message_id } => {
            rt()?.block_on(client::delivery(conn, message_id))
        }
        Command::Watch {
            conn,
            from_start,
            after,
            count,
        } => rt()?.block_on(client::watch(conn, from_start, after, count)),
    }
}
