//! What each CLI subcommand does, kept out of `main` so tests can call it.
//!
//! Every subcommand keeps one exit-status contract ([`Exit`]): 0 when everything it was asked
//! about passed, 1 when something was refused (an attestation failed, a workload was denied),
//! 2 when the input itself is wrong (an error, an invalid document, nothing to judge).

mod attestation;
mod evaluate;
mod fetch;
mod gcloud;
mod key;
mod report;
mod verify;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

pub use attestation::attestation_create;
pub use evaluate::{WorkloadLine, evaluate, evaluate_manifests};
pub use gcloud::{attestor_import, policy_export, policy_import};
pub use key::{attestor_create, key_id};
pub use report::{EvaluationReport, VerificationReport};
pub use verify::{VerifyLine, verify, verify_manifests};

use crate::cli::{OutputFormat, PgpMode, SignArgs};
use crate::crd;
use crate::crypto::{self, SignatureAlgorithm};
use crate::input::{self, InputError};
use crate::payload;

/// The exit status of every subcommand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// Everything passed.
    Passed = 0,
    /// Something was refused: an attestation did not verify, a workload was denied.
    Refused = 1,
    /// The input is wrong: an error, an invalid document, nothing to judge.
    BadInput = 2,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// Errors of the CLI subcommands, one line each (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Reading an input failed, or it is too large, too deep or not text.
    #[error("{0}")]
    Input(#[from] InputError),
    /// Writing an output failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Rendering YAML failed.
    #[error("cannot render YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// Rendering JSON failed.
    #[error("cannot render JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A payload could not be made or read.
    #[error("{0}")]
    Payload(#[from] payload::PayloadError),
    /// Signing failed.
    #[error("{0}")]
    Sign(#[from] crypto::SignError),
    /// Reading manifests failed.
    #[error("{0}")]
    Manifests(#[from] crate::manifests::ManifestError),
    /// An argument is not usable.
    #[error("{0}")]
    Usage(String),
    /// A gcloud file could not be imported, or a policy exported.
    #[error("{path}: {source}")]
    Gcloud {
        /// The file.
        path: String,
        /// What is wrong, naming the field.
        source: crate::gcloud::GcloudError,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CommandError + '_ {
    move |source| CommandError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn stdout_error(source: std::io::Error) -> CommandError {
    CommandError::Io {
        path: "<stdout>".into(),
        source,
    }
}

/// `binauthz crds`: print every CRD, or write one file each into `out`.
pub fn crds(out: Option<&Path>) -> Result<(), CommandError> {
    match out {
        None => {
            let yaml = crd::all_yaml()?;
            std::io::stdout()
                .write_all(yaml.as_bytes())
                .map_err(stdout_error)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
            for definition in crd::all() {
                let path = dir.join(crd::file_name(&definition));
                std::fs::write(&path, crd::to_yaml(&definition)?).map_err(io_error(&path))?;
            }
        }
    }
    Ok(())
}

/// Read a payload, key or signature (`-` is stdin), bounded.
fn read_small(path: &Path) -> Result<Vec<u8>, CommandError> {
    Ok(input::read_bytes(path, input::SMALL)?)
}

/// Read a small text input (a key, a gcloud export), bounded.
fn read_text(path: &Path) -> Result<String, CommandError> {
    Ok(input::read_text(path, input::SMALL)?)
}

fn write_output(output: Option<&Path>, bytes: &[u8], binary: bool) -> Result<(), CommandError> {
    match output {
        Some(path) => std::fs::write(path, bytes).map_err(io_error(path)),
        None => {
            let mut stdout = std::io::stdout();
            if binary && stdout.is_terminal() {
                return Err(CommandError::Usage(
                    "the signature is binary; write it to a file with --output FILE".into(),
                ));
            }
            stdout.write_all(bytes).map_err(stdout_error)
        }
    }
}

/// Print a report as JSON or YAML (text is each command's own).
fn print_structured<T: serde::Serialize>(
    format: OutputFormat,
    report: &T,
) -> Result<(), CommandError> {
    let text = match format {
        OutputFormat::Json => serde_json::to_string_pretty(report)? + "\n",
        OutputFormat::Yaml => serde_yaml::to_string(report)?,
        OutputFormat::Text => return Ok(()),
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(stdout_error)
}

/// `binauthz create-signature-payload`: print gcloud's payload bytes for an image.
pub fn create_signature_payload(artifact_url: &str) -> Result<(), CommandError> {
    let bytes = payload::create(artifact_url)?;
    write_output(None, &bytes, false)
}

/// `binauthz sign`: sign a payload with a PGP or PKIX key.
pub fn sign(args: &SignArgs) -> Result<(), CommandError> {
    let payload = read_small(&args.payload_file)?;
    if let Some(key_file) = &args.pgp_secret_key {
        let key = read_small(key_file)?;
        let passphrase = match &args.passphrase_file {
            Some(file) => Some(
                String::from_utf8_lossy(&read_small(file)?)
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            None => std::env::var("BINAUTHZ_PGP_PASSPHRASE").ok(),
        };
        let mode = match args.mode {
            PgpMode::Attached => crypto::pgp::PgpSignMode::Attached,
            PgpMode::Detached => crypto::pgp::PgpSignMode::Detached,
            PgpMode::Clearsign => crypto::pgp::PgpSignMode::Clearsign,
        };
        let signature = crypto::pgp::sign(&key, passphrase.as_deref(), &payload, mode)?;
        return write_output(args.output.as_deref(), &signature, false);
    }
    let (Some(key_file), Some(algorithm)) = (&args.pkix_private_key, &args.algorithm) else {
        return Err(CommandError::Usage(
            "give --pgp-secret-key, or --pkix-private-key with --algorithm".into(),
        ));
    };
    let algorithm: SignatureAlgorithm = algorithm
        .parse()
        .map_err(|e| CommandError::Usage(format!("--algorithm: {e}")))?;
    let key = String::from_utf8(read_small(key_file)?).map_err(|_| {
        CommandError::Usage(format!(
            "{}: not a PEM file (it is not text)",
            key_file.display()
        ))
    })?;
    let signature = crypto::pkix::sign(&key, algorithm, &payload, args.pae)?;
    write_output(args.output.as_deref(), &signature, true)
}

/// What `binauthz version` reports: the build, for bug reports and audits.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    /// The crate version.
    pub version: &'static str,
    /// The git commit it was built from (with `-dirty` when the tree had changes), or
    /// `unknown` outside a git checkout.
    pub commit: &'static str,
    /// The rustc that built it.
    pub rustc: &'static str,
    /// The target triple.
    pub target: &'static str,
    /// `release` or `debug`.
    pub profile: &'static str,
    /// What the build can verify and sign.
    pub features: Vec<String>,
}

impl Version {
    /// This build.
    pub fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            commit: env!("BINAUTHZ_COMMIT"),
            rustc: env!("BINAUTHZ_RUSTC"),
            target: env!("BINAUTHZ_TARGET"),
            profile: env!("BINAUTHZ_PROFILE"),
            features: vec![
                "PGP keys and signatures (sequoia-openpgp)".to_owned(),
                format!(
                    "PKIX signature algorithms (aws-lc-rs): {}",
                    SignatureAlgorithm::ALL
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "DSSE pre-authentication encoding (sign --pae)".to_owned(),
            ],
        }
    }
}

/// `binauthz version`: the build's version, commit, compiler and features.
pub fn version(format: OutputFormat) -> Result<(), CommandError> {
    let version = Version::current();
    if format != OutputFormat::Text {
        return print_structured(format, &version);
    }
    let mut text = format!(
        "binauthz {}\ncommit:   {}\nrustc:    {}\ntarget:   {} ({})\nfeatures:\n",
        version.version, version.commit, version.rustc, version.target, version.profile
    );
    for feature in &version.features {
        text.push_str(&format!("  {feature}\n"));
    }
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(stdout_error)
}

/// `binauthz completion SHELL`: the shell's completion script, on stdout.
pub fn completion(shell: clap_complete::Shell) -> Result<(), CommandError> {
    use clap::CommandFactory as _;
    let mut command = crate::cli::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "binauthz", &mut out);
    std::io::stdout().write_all(&out).map_err(stdout_error)
}
