//! TEMPORARY placeholder until the PKI branch merges.
#[derive(clap::Subcommand, Debug)]
pub enum PkiCommand {
    Ca,
}
pub fn run(_c: PkiCommand) -> anyhow::Result<()> {
    anyhow::bail!("not merged")
}
