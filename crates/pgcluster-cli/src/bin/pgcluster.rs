use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = pgcluster_cli::parse_from(std::env::args_os());
    match pgcluster_cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", err.render());
            err.exit_code()
        }
    }
}
