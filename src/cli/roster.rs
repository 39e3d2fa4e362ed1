//! `certfed roster …`: the stewards' tools for the signed federation roster.
//!
//! Offline, file to file (a steward key never has to leave its machine):
//! `init` starts a draft (version 1, or the next version of a current roster
//! with `--from`), `add-member`, `remove-member`, `rotate-key` and
//! `set-stewards` edit it, `sign --key` adds one steward's signature, and
//! `verify` checks it (against the current roster with `--current`) and
//! prints what changes. Online: `publish` hands it to a node (which checks,
//! applies and floods it); `show` prints the roster a node holds.
//!
//! Invariants: a roster file is the text armor of a SignedRoster
//! (`domain::roster::armor`); every edit re-encodes the roster once and drops
//! the signatures (they were over the old bytes), and says so; `sign` never
//! re-encodes the roster bytes it signs. Nothing here decides validity: that
//! is `domain::roster`, the same code every node runs.
use crate::cli::client::{self, Conn, show, ts};
use crate::cli::output::{emit, term};
use crate::domain::keys::{key_id, public_from_pem};
use crate::domain::roster::{self, Accepted, Anchor, Verdict, draft};
use crate::proto::v1::{
    GetRosterRequest, PublishRosterRequest, Roster, RosterMember, SignedRoster, Steward,
};
use crate::service::now_ms;
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use prost::Message;
use sha2::Digest;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Subcommand)]
pub enum RosterCommand {
    /// Start a draft: version 1 of a new federation, or (--from) the next
    /// version of the current roster.
    Init(InitArgs),
    /// Add a member to a draft.
    AddMember(AddMemberArgs),
    /// Remove a member from a draft (its messages will be refused, its links closed).
    RemoveMember(RemoveMemberArgs),
    /// Rotate a member's signing key in a draft: the old key stays valid for
    /// messages created up to --old-valid-hours from now, the new one is added.
    RotateKey(RotateKeyArgs),
    /// Replace the stewards and threshold of a draft (the old stewards' quorum
    /// must still sign this version).
    SetStewards(SetStewardsArgs),
    /// Add one steward's signature to a roster file (offline; the roster bytes are not changed).
    Sign(SignArgs),
    /// Check a roster file (against the current one with --current) and print what changes.
    Verify(VerifyArgs),
    /// Hand a signed roster to a node: it checks it, applies it and floods it to the federation.
    Publish {
        #[command(flatten)]
        conn: Conn,
        /// The signed roster file.
        file: PathBuf,
    },
    /// Show the roster a node holds: version, members, who signed it, what changed.
    Show {
        #[command(flatten)]
        conn: Conn,
        /// Also write the held signed roster to this file (to start the next draft from).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The draft file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Name of the federation (new federations only).
    #[arg(long, required_unless_present = "from", conflicts_with = "from")]
    pub federation: Option<String>,
    /// A steward, as ID=PUBLIC_KEY.pem (`certfed pki signing-key` writes the
    /// key pair; repeatable; new federations only).
    #[arg(long, value_name = "ID=FILE", conflicts_with = "from")]
    pub steward: Vec<String>,
    /// How many stewards must sign each version (new federations only).
    #[arg(long, conflicts_with = "from")]
    pub threshold: Option<u32>,
    /// Start the next version from this current roster (as `certfed roster show --out` writes it).
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Days from now until the draft expires.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub expires_days: u32,
    /// Overwrite --out if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct AddMemberArgs {
    /// The draft file (edited in place).
    pub draft: PathBuf,
    /// Member id (its node id).
    #[arg(long)]
    pub id: String,
    /// The member's message-signing public key (PEM; repeatable).
    #[arg(long, value_name = "FILE", required = true)]
    pub signing_key: Vec<PathBuf>,
    /// A CA certificate (PEM) allowed to issue the member's node and operator
    /// certificates (repeatable).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Vec<PathBuf>,
    /// A certificate (PEM) whose public key is pinned for the member (repeatable).
    #[arg(long, value_name = "FILE")]
    pub pin_cert: Vec<PathBuf>,
    /// Name shown to operators.
    #[arg(long, default_value = "")]
    pub display_name: String,
    /// ISO 3166-1 alpha-2 country code.
    #[arg(long, default_value = "")]
    pub country: String,
    /// How to reach the member's team.
    #[arg(long, default_value = "")]
    pub contact: String,
    /// Accept only exercise traffic from this member.
    #[arg(long)]
    pub exercise_only: bool,
}

#[derive(Debug, Args)]
pub struct RemoveMemberArgs {
    /// The draft file (edited in place).
    pub draft: PathBuf,
    /// Member id.
    #[arg(long)]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct RotateKeyArgs {
    /// The draft file (edited in place).
    pub draft: PathBuf,
    /// Member id.
    #[arg(long)]
    pub id: String,
    /// The member's new signing public key (PEM).
    #[arg(long, value_name = "FILE")]
    pub new_key: PathBuf,
    /// Hours from now during which messages signed with the old key are still
    /// accepted (messages in flight across the rotation are not lost).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(0..=8760))]
    pub old_valid_hours: u32,
}

#[derive(Debug, Args)]
pub struct SetStewardsArgs {
    /// The draft file (edited in place).
    pub draft: PathBuf,
    /// A steward, as ID=PUBLIC_KEY.pem (repeatable).
    #[arg(long, value_name = "ID=FILE", required = true)]
    pub steward: Vec<String>,
    /// How many stewards must sign.
    #[arg(long)]
    pub threshold: u32,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The roster file to sign.
    pub file: PathBuf,
    /// The steward's private signing key (PEM, mode 0600).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Write the signed roster here instead of over FILE.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The roster file to check.
    pub file: PathBuf,
    /// The roster the federation holds now (`certfed roster show --out`); without
    /// it the file is checked as a first roster (its own stewards' quorum).
    #[arg(long, value_name = "FILE")]
    pub current: Option<PathBuf>,
}

/// Runs an offline roster command (`publish` and `show` go through [`run_online`]).
pub fn run(cmd: RosterCommand) -> anyhow::Result<()> {
    let mut out = String::new();
    match cmd {
        RosterCommand::Init(a) => init(a, &mut out)?,
        RosterCommand::AddMember(a) => {
            let mut m = RosterMember {
                id: a.id.clone(),
                display_name: a.display_name,
                country: a.country,
                contact: a.contact,
                exercise_only: a.exercise_only,
                ..Default::default()
            };
            for (i, p) in a.signing_key.iter().enumerate() {
                let vk = read_pub(p).with_context(|| format!("--signing-key[{i}]"))?;
                m.signing_keys.push(crate::proto::v1::MemberKey {
                    public_key: vk.as_bytes().to_vec(),
                    not_before: None,
                    not_after: None,
                });
            }
            for p in &a.tls_ca {
                m.tls_cas.extend(read_certs(p)?);
            }
            for p in &a.pin_cert {
                for der in read_certs(p)? {
                    m.tls_pins
                        .push(spki_digest(&der).with_context(|| p.display().to_string())?);
                }
            }
            edit(&a.draft, &mut out, |r| draft::add_member(r, m))?;
            let _ = writeln!(out, "added member {}", a.id);
        }
        RosterCommand::RemoveMember(a) => {
            edit(&a.draft, &mut out, |r| {
                draft::remove_member(r, &a.id).map(|_| ())
            })?;
            let _ = writeln!(out, "removed member {}", a.id);
        }
        RosterCommand::RotateKey(a) => {
            let vk = read_pub(&a.new_key).context("--new-key")?;
            let now = now_ms();
            let until = now + i64::from(a.old_valid_hours) * 3_600_000;
            edit(&a.draft, &mut out, |r| {
                draft::rotate_key(r, &a.id, &vk, until, now)
            })?;
            let _ = writeln!(
                out,
                "{}: new signing key {}; the old key(s) stay valid for messages created until {}",
                a.id,
                key_id(&vk),
                crate::domain::text::rfc3339_ms(until)
            );
        }
        RosterCommand::SetStewards(a) => {
            let stewards = parse_stewards(&a.steward)?;
            edit(&a.draft, &mut out, |r| {
                draft::set_stewards(r, stewards, a.threshold)
            })?;
            let _ = writeln!(out, "stewards set: {} of {}", a.threshold, a.steward.len());
        }
        RosterCommand::Sign(a) => sign(a, &mut out)?,
        RosterCommand::Verify(a) => verify(a, &mut out)?,
        RosterCommand::Publish { .. } | RosterCommand::Show { .. } => {
            bail!("internal: publish and show run online")
        }
    }
    emit(&out)
}

/// Runs `publish` and `show`.
pub async fn run_online(cmd: RosterCommand) -> anyhow::Result<()> {
    match cmd {
        RosterCommand::Publish { conn, file } => {
            let (signed, _) = read_file(&file)?;
            let mut c = client::connect(&conn).await?;
            let r = c
                .publish_roster(PublishRosterRequest {
                    signed_roster: signed.encode_to_vec(),
                })
                .await
                .map_err(|s| crate::cli::error::explain(&conn.node, s))?
                .into_inner();
            show(conn.json, &r, "certfed.v1.PublishRosterResponse", || {
                let mut s = String::new();
                if r.already_current {
                    let _ = writeln!(
                        s,
                        "{} already holds roster version {}; flooded again (message {})",
                        term(&conn.node),
                        r.version,
                        r.message_id
                    );
                } else {
                    let _ = writeln!(
                        s,
                        "roster version {} applied on {} and flooded (message {})",
                        r.version,
                        term(&conn.node),
                        r.message_id
                    );
                }
                for c in &r.changes {
                    let _ = writeln!(s, "  {}", term(c));
                }
                s
            })
        }
        RosterCommand::Show { conn, out } => {
            let mut c = client::connect(&conn).await?;
            let v = c
                .get_roster(GetRosterRequest {})
                .await
                .map_err(|s| crate::cli::error::explain(&conn.node, s))?
                .into_inner();
            if let Some(path) = &out {
                if !v.active {
                    bail!(
                        "{} holds no roster to write to {}",
                        conn.node,
                        path.display()
                    );
                }
                std::fs::write(path, roster::armor(&v.signed_roster))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            show(conn.json, &v, "certfed.v1.RosterView", || {
                let mut s = String::new();
                if !v.active {
                    if v.stewards.is_empty() {
                        let _ = writeln!(s, "no roster: this node uses a static [[members]] list");
                    } else {
                        let _ = writeln!(
                            s,
                            "no roster yet: waiting for one signed by {} of the pinned stewards {}",
                            v.threshold,
                            v.stewards
                                .iter()
                                .map(|st| term(&st.id).into_owned())
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    }
                    return s;
                }
                let _ = writeln!(s, "federation  {}", term(&v.federation));
                let _ = writeln!(s, "version     {}", v.version);
                let _ = writeln!(s, "issued      {}", ts(&v.issued));
                let _ = writeln!(
                    s,
                    "expires     {}{}",
                    ts(&v.expires),
                    if v.expired {
                        "  EXPIRED: ask the stewards for a newer version"
                    } else {
                        ""
                    }
                );
                let _ = writeln!(s, "accepted    {}", ts(&v.accepted));
                let _ = writeln!(
                    s,
                    "stewards    {} of {}: {}",
                    v.threshold,
                    v.stewards.len(),
                    v.stewards
                        .iter()
                        .map(|st| format!("{} ({})", term(&st.id), st.key_id))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let _ = writeln!(s, "signed by   {}", term(&v.signed_by.join(", ")));
                let _ = writeln!(s, "members     {}", v.members.len());
                for m in &v.members {
                    let keys: Vec<String> = m
                        .signing_keys
                        .iter()
                        .map(|k| {
                            if k.not_after.is_some() {
                                format!("{} until {}", k.key_id, ts(&k.not_after))
                            } else {
                                k.key_id.clone()
                            }
                        })
                        .collect();
                    let _ = writeln!(
                        s,
                        "  {:<12} {:<20} {:<2} keys {}{}",
                        term(&m.id),
                        term(&m.display_name),
                        term(&m.country),
                        keys.join(", "),
                        if m.exercise_only {
                            "  exercise only"
                        } else {
                            ""
                        }
                    );
                }
                if v.previous_version > 0 {
                    let _ = writeln!(s, "changes from version {}:", v.previous_version);
                } else {
                    let _ = writeln!(s, "changes (first version held):");
                }
                for c in &v.changes {
                    let _ = writeln!(s, "  {}", term(c));
                }
                s
            })
        }
        other => run(other),
    }
}

fn init(a: InitArgs, out: &mut String) -> anyhow::Result<()> {
    if !a.force && a.out.exists() {
        bail!(
            "--out {}: exists; use --force to overwrite it",
            a.out.display()
        );
    }
    let now = now_ms();
    let expires = now + i64::from(a.expires_days) * DAY_MS;
    let r = match &a.from {
        Some(from) => {
            let (_, current) = read_file(from)?;
            draft::next(&current, now, expires)
        }
        None => {
            let federation = a.federation.as_deref().unwrap_or_default();
            let stewards = parse_stewards(&a.steward)?;
            let threshold = a
                .threshold
                .context("--threshold: required for a new federation")?;
            draft::new(federation, stewards, threshold, now, expires)
                .map_err(|e| anyhow::anyhow!("{e}"))?
        }
    };
    write_file(&a.out, &draft::unsigned(&r))?;
    let _ = writeln!(
        out,
        "wrote draft of {} version {} to {} (expires {}); edit it, then each steward runs `certfed roster sign`",
        r.federation,
        r.version,
        a.out.display(),
        crate::domain::text::rfc3339_ms(expires)
    );
    Ok(())
}

fn sign(a: SignArgs, out: &mut String) -> anyhow::Result<()> {
    crate::transport::tls::check_private_permissions(&a.key)
        .map_err(|e| anyhow::anyhow!("--key: {e}"))?;
    let pem = std::fs::read_to_string(&a.key)
        .with_context(|| format!("--key: cannot read {}", a.key.display()))?;
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        anyhow::anyhow!(
            "--key: {}: not an Ed25519 private key: {e}",
            a.key.display()
        )
    })?;
    let (mut signed, r) = read_file(&a.file)?;
    let kid = key_id(&key.verifying_key());
    let steward = r
        .stewards
        .iter()
        .find(|s| roster::steward_key_id(s) == kid)
        .map(|s| s.id.clone());
    let n = roster::sign(&mut signed, &key);
    let target = a.out.as_ref().unwrap_or(&a.file);
    write_file(target, &signed)?;
    match steward {
        Some(id) => {
            let _ = writeln!(
                out,
                "signed version {} as steward {id} (key {n}); {} signature(s) now; wrote {}",
                r.version,
                signed.signatures.len(),
                target.display()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "signed version {} with key {n}, which is not a steward of this version (fine only if it is one of the previous version's stewards); {} signature(s) now; wrote {}",
                r.version,
                signed.signatures.len(),
                target.display()
            );
        }
    }
    Ok(())
}

fn verify(a: VerifyArgs, out: &mut String) -> anyhow::Result<()> {
    let (signed, _) = read_file(&a.file)?;
    let doc = roster::parse(&signed.encode_to_vec())
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    let now = now_ms();
    let (prev, verdict) = match &a.current {
        Some(cur_path) => {
            let (cs, _) = read_file(cur_path)?;
            let cur = roster::parse(&cs.encode_to_vec())
                .map_err(|e| anyhow::anyhow!("--current {}: {e}", cur_path.display()))?;
            let anchor = Anchor::Current(Box::new(Accepted {
                doc: cur.clone(),
                signed_by: Vec::new(),
                admitted_by: None,
                accepted_ms: now,
            }));
            (Some(cur.roster), roster::check(&anchor, doc.clone(), now))
        }
        None => (
            None,
            roster::check_first(doc.clone(), None, now).map(|a| Verdict::Apply(Box::new(a))),
        ),
    };
    let _ = writeln!(
        out,
        "{}: {} version {}, {} member(s), stewards {} of {}, {} signature(s)",
        a.file.display(),
        term(&doc.roster.federation),
        doc.version(),
        doc.roster.members.len(),
        doc.roster.threshold,
        doc.roster.stewards.len(),
        doc.signed.signatures.len()
    );
    let changes = roster::diff(prev.as_ref(), &doc.roster);
    match &verdict {
        Ok(Verdict::Apply(acc)) => {
            let _ = writeln!(
                out,
                "VALID: nodes will apply it (signed by {})",
                acc.signed_by.join(", ")
            );
        }
        Ok(Verdict::Same) => {
            let _ = writeln!(
                out,
                "VALID: it is the current roster itself (nothing changes)"
            );
        }
        Err(_) => {}
    }
    let _ = writeln!(
        out,
        "changes{}:",
        prev.as_ref()
            .map(|p| format!(" from version {}", p.version))
            .unwrap_or_default()
    );
    for c in &changes {
        let _ = writeln!(out, "  {}", term(c));
    }
    if let Err(r) = verdict {
        emit(out)?;
        out.clear();
        bail!("NOT VALID ({}): {r}", r.kind.label());
    }
    Ok(())
}

/// Applies an edit to a draft file (re-encoding the roster once; the
/// signatures are dropped, since they were over the old bytes).
fn edit(
    path: &Path,
    out: &mut String,
    f: impl FnOnce(&mut Roster) -> Result<(), String>,
) -> anyhow::Result<()> {
    let (signed, mut r) = read_file(path)?;
    f(&mut r).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    roster::check_shape(&r).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    write_file(path, &draft::unsigned(&r))?;
    if !signed.signatures.is_empty() {
        let _ = writeln!(
            out,
            "note: {} signature(s) dropped (they were over the previous content); the stewards sign again",
            signed.signatures.len()
        );
    }
    Ok(())
}

/// A roster file: the SignedRoster and its decoded roster (shape not checked:
/// drafts may be incomplete until signed).
fn read_file(path: &Path) -> anyhow::Result<(SignedRoster, Roster)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = roster::dearmor(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let signed = SignedRoster::decode(bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("{}: not a signed roster: {e}", path.display()))?;
    let r = Roster::decode(signed.roster.as_slice())
        .map_err(|e| anyhow::anyhow!("{}: the roster does not decode: {e}", path.display()))?;
    Ok((signed, r))
}

fn write_file(path: &Path, signed: &SignedRoster) -> anyhow::Result<()> {
    std::fs::write(path, roster::armor(&signed.encode_to_vec()))
        .with_context(|| format!("cannot write {}", path.display()))
}

fn read_pub(path: &Path) -> anyhow::Result<ed25519_dalek::VerifyingKey> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    public_from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn parse_stewards(list: &[String]) -> anyhow::Result<Vec<Steward>> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let (id, file) = s.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("--steward[{i}]: {} is not ID=PUBLIC_KEY.pem", term(s))
            })?;
            let vk = read_pub(Path::new(file)).with_context(|| format!("--steward[{i}]"))?;
            Ok(Steward {
                id: id.to_string(),
                public_key: vk.as_bytes().to_vec(),
            })
        })
        .collect()
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let certs = crate::transport::tls::load_certs(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no certificate in it", path.display());
    }
    Ok(certs.into_iter().map(|c| c.as_ref().to_vec()).collect())
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo.
fn spki_digest(der: &[u8]) -> anyhow::Result<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
    Ok(sha2::Sha256::digest(cert.public_key().raw).to_vec())
}
