#![forbid(unsafe_code)]
use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = certfed::cli::Cli::parse();
    match certfed::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certfed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
