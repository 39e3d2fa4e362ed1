//! The `certfed` binary: everything is in the library (`certfed::cli`).
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    certfed::cli::main()
}
