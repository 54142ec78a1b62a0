//! The `binauthz` command line: every subcommand and flag, with help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Binary Authorization for any Kubernetes cluster: only images that trusted parties have signed may run.
#[derive(Debug, Parser)]
#[command(name = "binauthz", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions (or write one file per CRD with --out).
    Crds(CrdsArgs),
}

/// Arguments of `binauthz crds`.
#[derive(Debug, Args)]
pub struct CrdsArgs {
    /// Write one YAML file per CRD into this folder instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
