//! `certfed exercise run SCENARIO [--speed N] [--dry-run] [--out DIR]` and
//! `certfed exercise report RUN --html FILE --json FILE`.
//!
//! Invariants:
//! - A scenario is parsed and validated whole (`domain::exercise::scenario`)
//!   before anything starts; an error names the file and line and exits 1.
//! - A scenario with `exercise = false` (real traffic, e.g. the demo's) is
//!   refused with `--credentials` before the credentials are even read.
//! - With `--credentials FILE` (live mode) every participant must have an
//!   entry whose node answers `GetNodeInfo` with that participant's id, all
//!   checked before the first inject; nothing is simulated there.
//! - `run` writes `<stem>.json` (the record and its scores) and `<stem>.html`
//!   into the current folder unless `--out` says otherwise, and prints their
//!   paths; `report` recomputes both from a run's JSON record, so a report
//!   can be re-rendered (or rendered elsewhere) without replaying.
use crate::app::exercise_report::{render, stem};
use crate::domain::exercise::scenario::{MAX_SCENARIO_BYTES, parse};
use crate::domain::exercise::score::{Record, Report, human, score};
use crate::proto::v1::GetNodeInfoRequest;
use crate::proto::v1::operator_client::OperatorClient;
use clap::Subcommand;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use tonic::transport::Channel;

#[derive(Subcommand, Debug)]
pub enum ExerciseCmd {
    /// Play a scenario (deploy/exercises/*.toml) on a local federation it
    /// starts (one node per participant: real TLS and storage on loopback),
    /// record who knew what when from every node, and write the report.
    Run {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// Replay speed: 10 plays a 40-minute scenario in 4 minutes.
        #[arg(long, default_value_t = 1.0, value_parser = parse_speed)]
        speed: f64,
        /// Validate the scenario and print its plan; start and send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Folder for the report files (default: the current folder).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// Print only the report summary, not each inject as it is sent.
        #[arg(long)]
        quiet: bool,
        /// Play on a live federation instead: each participant's node and
        /// operator credentials, from this file (TOML, one [[participants]]
        /// table each: id, node, ca, cert, key).
        #[arg(long, value_name = "FILE")]
        credentials: Option<PathBuf>,
    },
    /// Render the report of a run from its JSON record.
    Report {
        /// The run's JSON file (written by `exercise run`).
        run: PathBuf,
        /// Write the HTML report (with the SVG timeline) here.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Write the JSON report here.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
}

fn parse_speed(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number; e.g. --speed 10"))?;
    if !(v.is_finite() && (0.01..=1000.0).contains(&v)) {
        return Err(format!("{s}: the speed factor is between 0.01 and 1000"));
    }
    Ok(v)
}

fn read_limited(path: &Path, limit: usize, what: &str) -> anyhow::Result<String> {
    let f = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read the {what}: {e}", path.display()))?;
    let mut text = String::new();
    f.take(limit as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| anyhow::anyhow!("{}: not a UTF-8 text {what}: {e}", path.display()))?;
    if text.len() > limit {
        anyhow::bail!(
            "{}: the {what} is larger than {limit} bytes",
            path.display()
        );
    }
    Ok(text)
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes)
        .map_err(|e| anyhow::anyhow!("{}: cannot write the report: {e}", path.display()))
}

fn json(r: &Report) -> anyhow::Result<Vec<u8>> {
    let mut v = serde_json::to_vec_pretty(r)?;
    v.push(b'\n');
    Ok(v)
}

/// The summary printed after a run or a report.
fn summary(r: &Report) -> String {
    let mut s = String::new();
    let met = r.outcomes.iter().filter(|o| o.met).count();
    s.push_str(&format!(
        "\n{}: {met} of {} expected outcomes met\n",
        r.record.scenario,
        r.outcomes.len()
    ));
    for o in &r.outcomes {
        let result = if o.met {
            format!("met ({})", o.measured_ms.map_or("—".into(), human))
        } else if let Some(by) = o.missed_by_ms {
            format!("MISSED by {}", human(by))
        } else {
            format!("MISSED: {}", o.why)
        };
        s.push_str(&format!(
            "  {:<24} within {:<8} {}\n",
            o.id,
            human(o.within_ms),
            result
        ));
    }
    s
}

/// One participant's entry in a credentials file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialEntry {
    id: String,
    node: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialFile {
    participants: Vec<toml::Spanned<CredentialEntry>>,
}

/// Operator clients for every participant, in scenario order, from a
/// credentials file (paths relative to its folder); refuses a missing or
/// unknown participant and credentials that reach another node, naming the
/// line.
async fn live_clients(
    path: &Path,
    s: &crate::domain::exercise::scenario::Scenario,
) -> anyhow::Result<Vec<OperatorClient<Channel>>> {
    let text = read_limited(path, 1 << 20, "credentials file")?;
    let line = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
    let file: CredentialFile = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: line {}: {}",
            path.display(),
            e.span().map_or(0, |r| line(r.start)),
            e.message().trim()
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut by_id: std::collections::HashMap<String, (usize, CredentialEntry)> = Default::default();
    for c in file.participants {
        let l = line(c.span().start);
        let c = c.into_inner();
        if !s.participants.iter().any(|p| p.id == c.id) {
            anyhow::bail!(
                "{}: line {l}: {:?} is not a participant of scenario {:?}",
                path.display(),
                c.id,
                s.name
            );
        }
        if by_id.contains_key(&c.id) {
            anyhow::bail!("{}: line {l}: {} is listed twice", path.display(), c.id);
        }
        by_id.insert(c.id.clone(), (l, c));
    }
    let mut clients = Vec::new();
    for p in &s.participants {
        let Some((l, c)) = by_id.remove(&p.id) else {
            anyhow::bail!(
                "{}: participant {} (scenario line {}) has no credentials; add a [[participants]] table with its id, node, ca, cert and key",
                path.display(),
                p.id,
                p.line
            );
        };
        let conn = crate::cli::client::Conn {
            node: c.node.clone(),
            ca: Some(base.join(&c.ca)),
            cert: Some(base.join(&c.cert)),
            key: Some(base.join(&c.key)),
            json: false,
        };
        let at =
            |e: anyhow::Error| anyhow::anyhow!("{}: line {l} ({}): {e:#}", path.display(), p.id);
        let mut op = crate::cli::client::connect(&conn).await.map_err(at)?;
        let info = op
            .get_node_info(GetNodeInfoRequest::default())
            .await
            .map_err(|e| {
                at(anyhow::anyhow!(
                    "{} answers {:?}: {}",
                    c.node,
                    e.code(),
                    e.message()
                ))
            })?
            .into_inner();
        if info.node_id != p.id {
            anyhow::bail!(
                "{}: line {l}: the credentials for {} reach node {} at {}; give {}'s own node address",
                path.display(),
                p.id,
                info.node_id,
                c.node,
                p.id
            );
        }
        clients.push(op);
    }
    Ok(clients)
}

pub async fn run(cmd: ExerciseCmd) -> anyhow::Result<()> {
    match cmd {
        ExerciseCmd::Run {
            scenario,
            speed,
            dry_run,
            out,
            quiet,
            credentials,
        } => {
            let text = read_limited(&scenario, MAX_SCENARIO_BYTES, "scenario")?;
            let s = parse(&text, crate::service::now_ms())
                .map_err(|e| anyhow::anyhow!("{}: {e}", scenario.display()))?;
            let last = s.injects.last().map_or(0, |i| i.at_ms);
            println!(
                "{}: {} participants, {} injects over {}, {} expected outcomes; at {speed}× the run takes about {}",
                s.name,
                s.participants.len(),
                s.injects.len(),
                human(last),
                s.expects.len(),
                human((last as f64 / speed) as u64)
            );
            // A scenario of real traffic never reaches a live federation.
            if credentials.is_some() && !s.exercise {
                anyhow::bail!(
                    "{}: the scenario says exercise = false (its injects would be signed as real traffic); it plays only on a local federation: drop --credentials, or set exercise = true to rehearse it on the live federation",
                    scenario.display()
                );
            }
            // Live: every participant's credentials reach that participant's
            // node, checked before anything is sent.
            let live = match &credentials {
                Some(path) => Some(live_clients(path, &s).await?),
                None => None,
            };
            if dry_run {
                for i in &s.injects {
                    println!(
                        "  {:>8}  {:<10} {:<18} {}",
                        human(i.at_ms),
                        s.participants[i.from].id,
                        i.action.kind(),
                        i.id
                    );
                }
                if live.is_some() {
                    println!("dry run: every participant's credentials reach its node");
                }
                println!("dry run: the scenario is valid; nothing was started or sent");
                return Ok(());
            }
            if !out.is_dir() {
                anyhow::bail!(
                    "{}: not a folder; create it or give --out an existing folder",
                    out.display()
                );
            }
            let record = match live {
                Some(clients) => {
                    crate::app::exercise::play(&s, clients, speed, "live", quiet).await?
                }
                None => crate::app::exercise::run_local(&s, speed, quiet).await?,
            };
            let report = score(record);
            let base = out.join(stem(&report.record.scenario, report.record.started_ms));
            let (j, h) = (base.with_extension("json"), base.with_extension("html"));
            write(&j, &json(&report)?)?;
            write(&h, render(&report).as_bytes())?;
            print!("{}", summary(&report));
            println!("report: {}\n        {}", h.display(), j.display());
            Ok(())
        }
        ExerciseCmd::Report {
            run,
            html,
            json: json_out,
        } => {
            if html.is_none() && json_out.is_none() {
                anyhow::bail!("give --html FILE and/or --json FILE: where to write the report");
            }
            let text = read_limited(&run, 64 << 20, "run record")?;
            let record: Record = serde_json::from_str::<Report>(&text)
                .map(|r| r.record)
                .or_else(|_| serde_json::from_str::<Record>(&text))
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{}: not the JSON of an exercise run ({e}); give the .json file `certfed exercise run` wrote",
                        run.display()
                    )
                })?;
            let report = score(record);
            if let Some(p) = &html {
                write(p, render(&report).as_bytes())?;
            }
            if let Some(p) = &json_out {
                write(p, &json(&report)?)?;
            }
            print!("{}", summary(&report));
            Ok(())
        }
    }
}
