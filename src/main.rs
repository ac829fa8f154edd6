//! The `tiering` binary: parse arguments, run, map the error to an exit code.

use clap::Parser;

fn main() {
    let cli = tiering::cli::Cli::parse();
    if let Err(err) = tiering::cli::execute(cli) {
        eprintln!("error: {err}");
        std::process::exit(err.exit_code());
    }
}
