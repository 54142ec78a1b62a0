//! `binauthz`: the one binary (CLI, controller and webhook).

use std::process::ExitCode;

use binauthz::cli::{AttestationCommand, AttestorCommand, Cli, Command, KeyCommand, PolicyCommand};
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
        Command::CreateSignaturePayload(args) => {
            binauthz::commands::create_signature_payload(&args.artifact_url)?;
        }
        Command::Sign(args) => binauthz::commands::sign(&args)?,
        Command::Attestation(AttestationCommand::Create(args)) => {
            print!("{}", binauthz::commands::attestation_create(&args)?);
        }
        Command::Verify(args) => return Ok(binauthz::commands::verify(&args)?),
        Command::Run(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(binauthz::run::main(args))?;
        }
        Command::Evaluate(args) => return Ok(binauthz::commands::evaluate(&args)?),
        Command::Policy(PolicyCommand::Import(args)) => {
            print!("{}", binauthz::commands::policy_import(&args)?);
        }
        Command::Policy(PolicyCommand::Export(args)) => {
            print!("{}", binauthz::commands::policy_export(&args)?);
        }
        Command::Attestor(AttestorCommand::Import(args)) => {
            print!("{}", binauthz::commands::attestor_import(&args)?);
        }
        Command::Attestor(AttestorCommand::Create(args)) => {
            print!("{}", binauthz::commands::attestor_create(&args)?);
        }
        Command::Key(KeyCommand::Id { file }) => print!("{}", binauthz::commands::key_id(&file)?),
        Command::Completion { shell } => binauthz::commands::completion(shell)?,
        Command::Version { output } => binauthz::commands::version(output)?,
    }
    Ok(ExitCode::SUCCESS)
}
