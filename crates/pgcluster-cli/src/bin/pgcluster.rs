use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = pgcluster_cli::Cli::parse();
    match pgcluster_cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}
