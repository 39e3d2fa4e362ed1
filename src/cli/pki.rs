//! `certfed pki …`: create a federation CA, node and operator certificates, CRLs and
//! message-signing keys. Thin wrapper over [`crate::pki`].
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use time::{Duration, OffsetDateTime};

use crate::domain::identity::validate_name;
use crate::pki::{
    self, CA_CERT_FILE, CA_CRL_FILE, CA_KEY_FILE, CERT_SUFFIX, Ca, KEY_SUFFIX, RevokedEntry,
    SIGN_KEY_SUFFIX, SIGN_PUB_SUFFIX, Validity,
};

/// Default CA name (the certificate's CN).
pub const DEFAULT_CA_NAME: &str = "certfed federation CA";

/// `certfed pki` subcommands.
#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create a new federation CA: DIR/ca.crt and DIR/ca.key (mode 0600).
    Ca(CaArgs),
    /// Issue a node TLS certificate (URI SAN urn:certfed:node:<ID>, serverAuth+clientAuth).
    Node(NodeArgs),
    /// Issue an operator client certificate (URI SAN urn:certfed:operator:<NAME>, clientAuth).
    Operator(OperatorArgs),
    /// Create an Ed25519 message-signing key pair: <ID>.sign.key (0600) and <ID>.sign.pub.
    SigningKey(SigningKeyArgs),
    /// Revoke certificates: add them to the CA's CRL (read if present) and re-sign it.
    Revoke(RevokeArgs),
    /// Write a fresh CRL (empty, or keeping the entries of the existing one).
    Crl(CrlArgs),
}

/// Options shared by commands that write files.
#[derive(Debug, Args)]
pub struct ForceArg {
    /// Overwrite existing files (private keys are replaced atomically, mode 0600).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CaArgs {
    /// Directory to write ca.crt and ca.key into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// The CA's name (certificate common name).
    #[arg(long, default_value = DEFAULT_CA_NAME)]
    pub name: String,
    /// Validity in days.
    #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
    #[command(flatten)]
    pub force: ForceArg,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Directory holding ca.crt and ca.key.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// Node (member) id, e.g. node-a: 1-63 of a-z 0-9 - . _
    #[arg(long)]
    pub id: String,
    /// DNS name the node is reachable as (repeat, or comma-separate).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub dns: Vec<String>,
    /// IP address the node is reachable at (repeat, or comma-separate).
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    pub ip: Vec<IpAddr>,
    /// Directory to write <ID>.crt and <ID>.key into (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out_dir: PathBuf,
    /// Validity in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
    #[command(flatten)]
    pub force: ForceArg,
}

#[derive(Debug, Args)]
pub struct OperatorArgs {
    /// Directory holding ca.crt and ca.key.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// Operator name, e.g. alice: 1-63 of a-z 0-9 - . _
    #[arg(long)]
    pub name: String,
    /// Directory to write <NAME>.crt and <NAME>.key into (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out_dir: PathBuf,
    /// Validity in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
    #[command(flatten)]
    pub force: ForceArg,
}

#[derive(Debug, Args)]
pub struct SigningKeyArgs {
    /// Node id the key belongs to (names the files).
    #[arg(long)]
    pub id: String,
    /// Directory to write <ID>.sign.key and <ID>.sign.pub into (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out_dir: PathBuf,
    #[command(flatten)]
    pub force: ForceArg,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["serial", "cert"])))]
pub struct RevokeArgs {
    /// Directory holding ca.crt and ca.key.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// Serial number to revoke, in hex (as printed when issued; repeatable).
    #[arg(long, value_name = "HEX")]
    pub serial: Vec<String>,
    /// Certificate file to revoke (repeatable).
    #[arg(long, value_name = "FILE")]
    pub cert: Vec<PathBuf>,
    /// CRL file to update [default: <CA_DIR>/ca.crl].
    #[arg(long, value_name = "FILE")]
    pub crl: Option<PathBuf>,
    /// Days until the CRL's next update (nodes may reject a CRL past it).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Start a new CRL if the existing one cannot be read or belongs to another CA
    /// (its entries are lost).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CrlArgs {
    /// Directory holding ca.crt and ca.key.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// CRL file to write [default: <CA_DIR>/ca.crl].
    #[arg(long, value_name = "FILE")]
    pub crl: Option<PathBuf>,
    /// Days until the CRL's next update (nodes may reject a CRL past it).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Start a new, empty CRL if the existing one cannot be read or belongs to another
    /// CA (its entries are lost).
    #[arg(long)]
    pub force: bool,
}

/// Runs a `certfed pki` subcommand, reporting to stdout.
pub fn run(cmd: PkiCommand) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    run_with_output(cmd, &mut out)
}

/// Runs a `certfed pki` subcommand, reporting what was written to `out`.
pub fn run_with_output(cmd: PkiCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        PkiCommand::Ca(a) => cmd_ca(a, out),
        PkiCommand::Node(a) => cmd_node(a, out),
        PkiCommand::Operator(a) => cmd_operator(a, out),
        PkiCommand::SigningKey(a) => cmd_signing_key(a, out),
        PkiCommand::Revoke(a) => cmd_revoke(a, out),
        PkiCommand::Crl(a) => cmd_crl(a, out),
    }
}

fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))
}

/// Checks that none of `paths` exists (unless force), before anything is written, so a
/// refused command leaves no half-written pair behind.
fn check_free(paths: &[&Path], force: bool) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    for p in paths {
        if std::fs::symlink_metadata(p).is_ok() {
            bail!("{} already exists; pass --force to overwrite", p.display());
        }
    }
    Ok(())
}

/// Loads the CA from `DIR/ca.crt` and `DIR/ca.key`.
pub fn load_ca(ca_dir: &Path) -> anyhow::Result<Ca> {
    let cert_path = ca_dir.join(CA_CERT_FILE);
    let key_path = ca_dir.join(CA_KEY_FILE);
    let cert = pki::read_public(&cert_path).with_context(|| {
        format!(
            "no CA in {} (create one with `certfed pki ca --out-dir {}`)",
            ca_dir.display(),
            ca_dir.display()
        )
    })?;
    let key = pki::read_private(&key_path)?;
    Ca::load(&cert, &key).with_context(|| {
        format!(
            "cannot load the CA from {} and {}",
            cert_path.display(),
            key_path.display()
        )
    })
}

fn cmd_ca(a: CaArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let cert_path = a.out_dir.join(CA_CERT_FILE);
    let key_path = a.out_dir.join(CA_KEY_FILE);
    check_free(&[&cert_path, &key_path], a.force.force)?;
    ensure_dir(&a.out_dir)?;
    let ca = Ca::create(&a.name, Validity::days(a.days))?;
    pki::write_private(&key_path, &ca.key_pem(), a.force.force)?;
    pki::write_public(&cert_path, ca.cert_pem(), a.force.force)?;
    writeln!(
        out,
        "created CA {:?} valid {} days (serial {})",
        a.name,
        a.days,
        pki::cert_serial_hex(ca.cert_pem())?
    )?;
    writeln!(
        out,
        "  wrote {} (public: give to every node and operator)",
        cert_path.display()
    )?;
    writeln!(
        out,
        "  wrote {} (mode 0600: keep offline and secret)",
        key_path.display()
    )?;
    Ok(())
}

fn write_issued(
    issued: &pki::Issued,
    out_dir: &Path,
    name: &str,
    force: bool,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert_path = out_dir.join(format!("{name}{CERT_SUFFIX}"));
    let key_path = out_dir.join(format!("{name}{KEY_SUFFIX}"));
    pki::write_private(&key_path, &issued.key_pem, force)?;
    pki::write_public(&cert_path, &issued.cert_pem, force)?;
    Ok((cert_path, key_path))
}

fn cmd_node(a: NodeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    validate_name(&a.id).map_err(|e| anyhow::anyhow!("--id: {e}"))?;
    let cert_path = a.out_dir.join(format!("{}{CERT_SUFFIX}", a.id));
    let key_path = a.out_dir.join(format!("{}{KEY_SUFFIX}", a.id));
    check_free(&[&cert_path, &key_path], a.force.force)?;
    let ca = load_ca(&a.ca_dir)?;
    let issued = ca.issue_node(&a.id, &a.dns, &a.ip, Validity::days(a.days))?;
    ensure_dir(&a.out_dir)?;
    let (cert_path, key_path) = write_issued(&issued, &a.out_dir, &a.id, a.force.force)?;
    let mut sans = vec![format!("URI:urn:certfed:node:{}", a.id)];
    sans.extend(a.dns.iter().map(|d| format!("DNS:{d}")));
    sans.extend(a.ip.iter().map(|i| format!("IP:{i}")));
    writeln!(
        out,
        "issued node certificate for {} valid {} days, serial {}",
        a.id, a.days, issued.serial_hex
    )?;
    writeln!(out, "  SANs: {}", sans.join(", "))?;
    writeln!(out, "  wrote {}", cert_path.display())?;
    writeln!(out, "  wrote {} (mode 0600)", key_path.display())?;
    Ok(())
}

fn cmd_operator(a: OperatorArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    validate_name(&a.name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let cert_path = a.out_dir.join(format!("{}{CERT_SUFFIX}", a.name));
    let key_path = a.out_dir.join(format!("{}{KEY_SUFFIX}", a.name));
    check_free(&[&cert_path, &key_path], a.force.force)?;
    let ca = load_ca(&a.ca_dir)?;
    let issued = ca.issue_operator(&a.name, Validity::days(a.days))?;
    ensure_dir(&a.out_dir)?;
    let (cert_path, key_path) = write_issued(&issued, &a.out_dir, &a.name, a.force.force)?;
    writeln!(
        out,
        "issued operator certificate for {} valid {} days, serial {}",
        a.name, a.days, issued.serial_hex
    )?;
    writeln!(out, "  SANs: URI:urn:certfed:operator:{}", a.name)?;
    writeln!(out, "  wrote {}", cert_path.display())?;
    writeln!(out, "  wrote {} (mode 0600)", key_path.display())?;
    Ok(())
}

fn cmd_signing_key(a: SigningKeyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    validate_name(&a.id).map_err(|e| anyhow::anyhow!("--id: {e}"))?;
    let key_path = a.out_dir.join(format!("{}{SIGN_KEY_SUFFIX}", a.id));
    let pub_path = a.out_dir.join(format!("{}{SIGN_PUB_SUFFIX}", a.id));
    check_free(&[&key_path, &pub_path], a.force.force)?;
    ensure_dir(&a.out_dir)?;
    let k = pki::new_signing_key()?;
    pki::write_private(&key_path, &k.private_pem, a.force.force)?;
    pki::write_public(&pub_path, &k.public_pem, a.force.force)?;
    writeln!(
        out,
        "created Ed25519 signing key for {}, key id {}",
        a.id, k.key_id
    )?;
    writeln!(out, "  wrote {} (mode 0600)", key_path.display())?;
    writeln!(
        out,
        "  wrote {} (give to federation peers)",
        pub_path.display()
    )?;
    Ok(())
}

/// Reads the existing CRL at `path` (if any) for `ca`: (entries, crl_number). With
/// `force`, an unreadable or foreign CRL is replaced by an empty one.
fn existing_crl(
    ca: &Ca,
    path: &Path,
    force: bool,
    out: &mut dyn Write,
) -> anyhow::Result<(Vec<RevokedEntry>, u64)> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok((Vec::new(), 0));
    }
    let read = pki::read_public(path).and_then(|pem| {
        if !pki::crl_issued_by(&pem, ca.cert_pem())? {
            bail!("it was not issued by this CA");
        }
        pki::read_crl_entries(&pem)
    });
    match read {
        Ok(v) => Ok(v),
        Err(e) if force => {
            writeln!(
                out,
                "warning: discarding unusable CRL {} ({e:#}); starting a new one",
                path.display()
            )?;
            Ok((Vec::new(), 0))
        }
        Err(e) => Err(e.context(format!(
            "cannot update the CRL {}; fix or remove it, or pass --force to start a new, empty one",
            path.display()
        ))),
    }
}

fn write_crl(
    ca: &Ca,
    path: &Path,
    entries: &[RevokedEntry],
    number: u64,
    days: u32,
) -> anyhow::Result<()> {
    let next_update = OffsetDateTime::now_utc() + Duration::days(i64::from(days));
    let pem = ca.crl_with_entries(entries, number, next_update)?;
    // Replacing the CRL is the point of these commands.
    pki::write_public(path, &pem, true)
}

fn cmd_revoke(a: RevokeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let ca = load_ca(&a.ca_dir)?;
    let crl_path = a.crl.unwrap_or_else(|| a.ca_dir.join(CA_CRL_FILE));
    let mut targets: Vec<(String, String)> = Vec::new(); // (serial, where from)
    for s in &a.serial {
        targets.push((pki::normalize_serial_hex(s)?, format!("--serial {s}")));
    }
    for c in &a.cert {
        let pem = pki::read_public(c)?;
        let serial = pki::cert_serial_hex(&pem)
            .with_context(|| format!("cannot read the certificate {}", c.display()))?;
        if !pki::issued_by(&pem, ca.cert_pem())? {
            bail!(
                "{} was not issued by the CA in {}; revoke it with its own CA",
                c.display(),
                a.ca_dir.display()
            );
        }
        targets.push((serial, c.display().to_string()));
    }
    let (mut entries, number) = existing_crl(&ca, &crl_path, a.force, out)?;
    let now = OffsetDateTime::now_utc();
    let mut added = 0;
    for (serial, from) in targets {
        if entries.iter().any(|e| e.serial_hex == serial) {
            writeln!(out, "  {serial} ({from}) was already revoked")?;
            continue;
        }
        writeln!(out, "  revoking {serial} ({from})")?;
        entries.push(RevokedEntry {
            serial_hex: serial,
            revoked_at: now,
        });
        added += 1;
    }
    let number = number + 1;
    write_crl(&ca, &crl_path, &entries, number, a.days)?;
    writeln!(
        out,
        "wrote {} (CRL number {number}, {} revoked, {added} new, next update in {} days)",
        crl_path.display(),
        entries.len(),
        a.days
    )?;
    writeln!(
        out,
        "  distribute it to every node; they cut off revoked peers on reload"
    )?;
    Ok(())
}

fn cmd_crl(a: CrlArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let ca = load_ca(&a.ca_dir)?;
    let crl_path = a.crl.unwrap_or_else(|| a.ca_dir.join(CA_CRL_FILE));
    let (entries, number) = existing_crl(&ca, &crl_path, a.force, out)?;
    let number = number + 1;
    write_crl(&ca, &crl_path, &entries, number, a.days)?;
    writeln!(
        out,
        "wrote {} (CRL number {number}, {} revoked, next update in {} days)",
        crl_path.display(),
        entries.len(),
        a.days
    )?;
    Ok(())
}
