//! What each CLI subcommand does, kept out of `main` so tests can call it.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::cli::{
    AttestationCreateArgs, AttestorImportArgs, EvaluateArgs, PgpMode, PolicyExportArgs,
    PolicyImportArgs, SignArgs, VerifyArgs,
};
use crate::crd::{self, ImageAttestation, ImageAttestationSpec};
use crate::crypto::{self, SignatureAlgorithm};
use crate::image::ImageRef;
use crate::manifests::Manifests;
use crate::payload;
use crate::verify::{self, AttestorKeys};

/// Largest payload, key or signature file read by the CLI.
const MAX_INPUT_BYTES: u64 = 1024 * 1024;

/// Errors of the CLI subcommands, one line each.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Rendering YAML failed.
    #[error("cannot render YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// An input file is larger than the CLI reads.
    #[error(
        "{path}: {size} bytes is too large for a payload, key or signature (limit {MAX_INPUT_BYTES} bytes); check the file name"
    )]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
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

/// `binauthz crds`: print every CRD, or write one file each into `out`.
pub fn crds(out: Option<&Path>) -> Result<(), CommandError> {
    match out {
        None => {
            let yaml = crd::all_yaml()?;
            std::io::stdout()
                .write_all(yaml.as_bytes())
                .map_err(io_error(Path::new("<stdout>")))?;
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

/// Read a small input file (`-` is stdin), refusing anything over [`MAX_INPUT_BYTES`].
fn read_input(path: &Path) -> Result<Vec<u8>, CommandError> {
    let shown = path.display().to_string();
    let mut bytes = Vec::new();
    let reader: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(io_error(path))?)
    };
    reader
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(CommandError::TooLarge {
            path: shown,
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
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
            stdout
                .write_all(bytes)
                .map_err(io_error(Path::new("<stdout>")))
        }
    }
}

/// `binauthz create-signature-payload`: print gcloud's payload bytes for an image.
pub fn create_signature_payload(artifact_url: &str) -> Result<(), CommandError> {
    let bytes = payload::create(artifact_url)?;
    write_output(None, &bytes, false)
}

/// `binauthz sign`: sign a payload with a PGP or PKIX key.
pub fn sign(args: &SignArgs) -> Result<(), CommandError> {
    let payload = read_input(&args.payload_file)?;
    if let Some(key_file) = &args.pgp_secret_key {
        let key = read_input(key_file)?;
        let passphrase = match &args.passphrase_file {
            Some(file) => Some(
                String::from_utf8_lossy(&read_input(file)?)
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
    let key = String::from_utf8(read_input(key_file)?).map_err(|_| {
        CommandError::Usage(format!(
            "{}: not a PEM file (it is not text)",
            key_file.display()
        ))
    })?;
    let signature = crypto::pkix::sign(&key, algorithm, &payload, args.pae)?;
    write_output(args.output.as_deref(), &signature, true)
}

/// `binauthz attestation create`: the ImageAttestation for a signature, as YAML.
pub fn attestation_create(args: &AttestationCreateArgs) -> Result<String, CommandError> {
    let image = ImageRef::parse(&args.artifact_url)
        .map_err(|e| CommandError::Usage(format!("--artifact-url: {e}")))?;
    let Some(digest) = image.digest() else {
        return Err(CommandError::Usage(format!(
            "--artifact-url {} has no digest; name the image as registry/repository@sha256:<digest>",
            args.artifact_url
        )));
    };
    let raw = read_input(&args.signature_file)?;
    let text = std::str::from_utf8(&raw).ok().map(str::trim);
    let (signature, carries_payload) = match text {
        Some(t) if t.starts_with("-----BEGIN PGP") => (
            t.to_owned(),
            t.starts_with("-----BEGIN PGP MESSAGE")
                || t.starts_with("-----BEGIN PGP SIGNED MESSAGE"),
        ),
        _ => (STANDARD.encode(&raw), false),
    };
    if signature.is_empty() {
        return Err(CommandError::Usage(format!(
            "{}: the signature file is empty",
            args.signature_file.display()
        )));
    }
    let serialized_payload = match &args.payload_file {
        Some(file) => Some(STANDARD.encode(read_input(file)?)),
        None if carries_payload => None,
        None => Some(STANDARD.encode(payload::create(&args.artifact_url)?)),
    };
    let name = match &args.name {
        Some(name) => name.clone(),
        None => {
            let hex = digest.as_str().trim_start_matches("sha256:");
            format!("{}-{}", args.attestor, &hex[..hex.len().min(16)])
        }
    };
    let mut attestation = ImageAttestation::new(
        &name,
        ImageAttestationSpec {
            artifact_url: args.artifact_url.clone(),
            attestor: args.attestor.clone(),
            serialized_payload,
            signatures: vec![crd::Signature {
                public_key_id: args.public_key_id.clone(),
                signature,
            }],
        },
    );
    attestation.metadata.namespace = Some(args.namespace.clone());
    Ok(serde_yaml::to_string(&attestation)?)
}

/// One line of `binauthz verify` output.
pub struct VerifyLine {
    /// `namespace/name` of the attestation.
    pub attestation: String,
    /// The attestor it names.
    pub attestor: String,
    /// The verdict.
    pub result: Result<verify::Verified, verify::Failure>,
}

/// Verify every attestation of the manifests against their attestors, as of `now`.
pub fn verify_manifests(manifests: &Manifests, now: jiff::Timestamp) -> Vec<VerifyLine> {
    let attestors: BTreeMap<String, AttestorKeys> = manifests
        .attestors
        .iter()
        .filter_map(|(_, a)| {
            a.metadata
                .name
                .as_deref()
                .map(|n| (n.to_owned(), AttestorKeys::load(n, &a.spec)))
        })
        .collect();
    manifests
        .attestations
        .iter()
        .map(|(_, a)| VerifyLine {
            attestation: qualified_name(a),
            attestor: a.spec.attestor.clone(),
            result: verify::verify(&a.spec, attestors.get(&a.spec.attestor), now),
        })
        .collect()
}

/// `binauthz verify`: print one line per attestation; success only when all verified.
pub fn verify(args: &VerifyArgs) -> Result<ExitCode, CommandError> {
    let manifests = Manifests::load(&args.paths)?;
    if manifests.attestations.is_empty() {
        eprintln!(
            "error: no ImageAttestation found in {}",
            show_paths(&args.paths)
        );
        return Ok(ExitCode::from(1));
    }
    let lines = verify_manifests(&manifests, args.at.unwrap_or_else(jiff::Timestamp::now));
    let mut all = true;
    let mut out = std::io::stdout().lock();
    for line in &lines {
        let written = match &line.result {
            Ok(v) => writeln!(
                out,
                "VERIFIED {} {} key {}",
                line.attestation,
                v.image.as_written(),
                v.key_id
            ),
            Err(f) => {
                all = false;
                writeln!(
                    out,
                    "FAILED   {} {}: {}",
                    line.attestation, f.reason, f.message
                )
            }
        };
        written.map_err(io_error(Path::new("<stdout>")))?;
    }
    Ok(if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn show_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The verdict on one workload of `binauthz evaluate`.
pub struct WorkloadLine {
    /// `Kind namespace/name`.
    pub workload: String,
    /// The decision, or why the document could not be read as a workload.
    pub decision: Result<crate::policy::Decision, String>,
}

/// Decide for every workload of the manifests, as the webhook would, as of `now`: the same
/// entry point ([`Snapshot::decide`](crate::policy::Snapshot::decide)) over the policies,
/// namespaces and verified attestations of the manifests.
pub fn evaluate_manifests(
    manifests: &Manifests,
    default_namespace: &str,
    now: jiff::Timestamp,
) -> Vec<WorkloadLine> {
    use crate::policy::{CompiledPolicy, Namespaces, Snapshot, TrustIndex, Workload};

    let mut trust = TrustIndex::new();
    for line in verify_manifests(manifests, now) {
        if let Ok(verified) = &line.result {
            // Only sha256 digests verify, so the index accepts every verified entry.
            let _ = trust.insert(&line.attestor, &verified.digest, &line.attestation);
        }
    }
    // Sorted by name, as the cluster orders them (and so their messages).
    let mut policies: Vec<CompiledPolicy> = manifests
        .policies
        .iter()
        .map(|(_, p)| {
            CompiledPolicy::compile(p.metadata.name.as_deref().unwrap_or_default(), &p.spec)
        })
        .collect();
    policies.sort_by(|a, b| a.name().cmp(b.name()));
    let namespaces: Namespaces = manifests.namespaces.clone().into_iter().collect();
    let snapshot = Snapshot {
        policies: &policies,
        namespaces: &namespaces,
        trust: &trust,
    };
    let mut lines = Vec::new();
    for other in &manifests.others {
        let mut workload = match Workload::from_json(&other.value) {
            Ok(Some(workload)) => workload,
            Ok(None) => continue,
            Err(e) => {
                lines.push(WorkloadLine {
                    workload: other.source.to_string(),
                    decision: Err(e.to_string()),
                });
                continue;
            }
        };
        if workload.namespace.is_none() {
            workload.namespace = Some(default_namespace.to_owned());
        }
        let namespace = workload.namespace().to_owned();
        let decision = snapshot.decide(&workload).map_err(|undecided| {
            format!("{undecided}; add the Namespace manifest of {namespace}, with its labels, to the inputs")
        });
        lines.push(WorkloadLine {
            workload: format!("{} {}/{}", workload.kind.as_str(), namespace, workload.name),
            decision,
        });
    }
    lines
}

/// `namespace/name` of an attestation read from a file (`default` when it names no namespace).
fn qualified_name(attestation: &ImageAttestation) -> String {
    crate::trust::object_key(
        Some(
            attestation
                .metadata
                .namespace
                .as_deref()
                .unwrap_or("default"),
        ),
        attestation.metadata.name.as_deref().unwrap_or("<unnamed>"),
    )
}

/// `binauthz evaluate`: print the decision for every workload; success only when all admitted.
pub fn evaluate(args: &EvaluateArgs) -> Result<ExitCode, CommandError> {
    let manifests = Manifests::load(&args.paths)?;
    let now = args.at.unwrap_or_else(jiff::Timestamp::now);
    if manifests.policies.is_empty() {
        eprintln!(
            "warning: no AttestationPolicy found in {}; every workload is admitted",
            show_paths(&args.paths)
        );
    }
    let lines = evaluate_manifests(&manifests, &args.namespace, now);
    if lines.is_empty() {
        eprintln!(
            "error: no workload (Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob, ReplicationController) found in {}",
            show_paths(&args.paths)
        );
        return Ok(ExitCode::from(1));
    }
    let mut all = true;
    let mut out = std::io::stdout().lock();
    for line in &lines {
        let written = match &line.decision {
            Err(problem) => {
                all = false;
                writeln!(out, "INVALID  {}: {problem}", line.workload)
            }
            Ok(d) if !d.allowed => {
                all = false;
                writeln!(out, "DENIED   {}: {}", line.workload, d.message())
            }
            Ok(d) => {
                let verdict = if d.breakglass {
                    "BREAKGLASS"
                } else {
                    "ADMITTED"
                };
                let mut text = format!("{verdict} {}", line.workload);
                for warning in d.warnings() {
                    text.push_str(&format!("\n  warning: {warning}"));
                }
                writeln!(out, "{text}")
            }
        };
        written.map_err(io_error(Path::new("<stdout>")))?;
    }
    Ok(if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn read_text(path: &Path) -> Result<String, CommandError> {
    String::from_utf8(read_input(path)?).map_err(|_| {
        CommandError::Usage(format!(
            "{}: not a text file (it is not UTF-8)",
            path.display()
        ))
    })
}

fn gcloud_error(path: &Path) -> impl FnOnce(crate::gcloud::GcloudError) -> CommandError + '_ {
    move |source| CommandError::Gcloud {
        path: path.display().to_string(),
        source,
    }
}

/// `binauthz policy import`: the AttestationPolicy YAML for a gcloud policy export.
pub fn policy_import(args: &PolicyImportArgs) -> Result<String, CommandError> {
    let text = read_text(&args.file)?;
    let options = crate::gcloud::PolicyImportOptions {
        name: args.name.clone(),
        cluster: args.cluster.clone(),
    };
    let imported =
        crate::gcloud::import_policy(&text, &options).map_err(gcloud_error(&args.file))?;
    Ok(imported.to_yaml()?)
}

/// `binauthz policy export`: gcloud's policy YAML for an AttestationPolicy.
pub fn policy_export(args: &PolicyExportArgs) -> Result<String, CommandError> {
    let manifests = Manifests::load(std::slice::from_ref(&args.file))?;
    let names: Vec<&str> = manifests
        .policies
        .iter()
        .map(|(_, p)| p.metadata.name.as_deref().unwrap_or_default())
        .collect();
    let chosen = match &args.name {
        Some(name) => manifests
            .policies
            .iter()
            .find(|(_, p)| p.metadata.name.as_deref() == Some(name.as_str())),
        None if manifests.policies.len() == 1 => manifests.policies.first(),
        None if manifests.policies.is_empty() => None,
        None => {
            return Err(CommandError::Usage(format!(
                "{}: holds {} AttestationPolicies ({}); choose one with --name",
                args.file.display(),
                names.len(),
                names.join(", ")
            )));
        }
    };
    let Some((_, policy)) = chosen else {
        return Err(CommandError::Usage(match &args.name {
            Some(name) => format!(
                "{}: no AttestationPolicy named {name} (found: {})",
                args.file.display(),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ),
            None => format!("{}: no AttestationPolicy found", args.file.display()),
        }));
    };
    crate::gcloud::export_policy(&policy.spec, &args.project).map_err(gcloud_error(&args.file))
}

/// `binauthz attestor import`: the Attestor YAML for a gcloud attestor description.
pub fn attestor_import(args: &AttestorImportArgs) -> Result<String, CommandError> {
    let text = read_text(&args.file)?;
    let imported = crate::gcloud::import_attestor(&text, args.name.as_deref())
        .map_err(gcloud_error(&args.file))?;
    Ok(imported.to_yaml()?)
}
