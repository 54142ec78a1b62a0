//! `binauthz`: the one binary (CLI, controller and webhook).

use std::process::ExitCode;

use binauthz::cli::{Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.command {
        Command::Crds(args) => binauthz::commands::crds(args.out.as_deref())?,
    }
    Ok(ExitCode::SUCCESS)
}
