//! The `binauthz` command line: every subcommand and flag, with help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Binary Authorization for any Kubernetes cluster: only images that trusted parties have signed may run.
#[derive(Debug, Parser)]
#[command(
    name = "binauthz",
    version,
    long_version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("BINAUTHZ_COMMIT"), ")"),
    about,
    long_about = None,
    propagate_version = true,
    after_help = EXIT_STATUS
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The exit-status contract, shown under every command's help.
const EXIT_STATUS: &str = "\
Exit status: 0 when everything passed; 1 when something was refused (an attestation that does
not verify, a denied workload); 2 when the input is wrong (an error, an invalid document,
nothing to judge).";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions (or write one file per CRD with --out).
    Crds(CrdsArgs),
    /// Print the payload to sign for an image, byte-identical to
    /// `gcloud container binauthz create-signature-payload`.
    #[command(after_help = "\
Examples:
  binauthz create-signature-payload \\
    --artifact-url gcr.io/my-project/app@sha256:845f77fab71033404f4cfceaa1ddb27b70c3551ceb22a5e7f4498cdda6c9daea \\
    > payload.json")]
    CreateSignaturePayload(CreateSignaturePayloadArgs),
    /// Sign a payload with a PGP secret key or a PKIX (PEM) private key.
    #[command(after_help = "\
Examples:
  # PGP (gpg --armor --sign does the same)
  gpg --armor --export-secret-keys build@example.com > build.key
  binauthz sign --payload-file payload.json --pgp-secret-key build.key --output signature.pgp

  # PKIX
  binauthz sign --payload-file payload.json --pkix-private-key ec.pem \\
    --algorithm ECDSA_P256_SHA256 --output signature.bin")]
    Sign(SignArgs),
    /// Work with public keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Work with ImageAttestations.
    #[command(subcommand)]
    Attestation(AttestationCommand),
    /// Verify every ImageAttestation in the inputs against the Attestors in the inputs, offline;
    /// exits 0 only when all verified.
    #[command(after_help = "\
Examples:
  binauthz verify -f attestor.yaml -f attestations/
  binauthz verify -f gitops/ --at 2027-06-01T00:00:00Z   # will the keys still be valid?
  binauthz verify -f gitops/ -o json | jq '.results[] | select(.verdict == \"FAILED\")'

Exit status: 0 all verified, 1 one did not, 2 bad input (no ImageAttestation, an invalid document).")]
    Verify(VerifyArgs),
    /// Decide, offline, for every workload in the inputs, against the policies, attestors and
    /// attestations in the inputs, with the webhook's engine and messages; exits 0 only when every
    /// workload is admitted.
    #[command(after_help = "\
Examples:
  # Gate a pull request: workloads, policies, attestors and attestations of the repository
  binauthz evaluate -f deploy/ -f binauthz/

  # Rendered manifests on stdin; a CI-readable report
  kustomize build overlays/prod | binauthz evaluate -f - -f binauthz/ -o json

Exit status: 0 every workload admitted, 1 a workload denied, 2 bad input (an invalid document,
a workload no AttestationPolicy governs unless --allow-ungoverned, no workload at all).")]
    Evaluate(EvaluateArgs),
    /// Move AttestationPolicies from and to Google Binary Authorization (gcloud's YAML).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Move Attestors from Google Binary Authorization (gcloud's YAML).
    #[command(subcommand)]
    Attestor(AttestorCommand),
    /// Run the controller (leader only, elected by a Lease) and the admission webhook.
    Run(RunArgs),
    /// Print the shell completion script for SHELL.
    #[command(after_help = "\
Examples:
  binauthz completion bash > /etc/bash_completion.d/binauthz
  binauthz completion zsh > \"${fpath[1]}/_binauthz\"
  binauthz completion fish > ~/.config/fish/completions/binauthz.fish")]
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the version, the commit it was built from, and what it supports.
    Version {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
}

/// How `verify`, `evaluate` and `version` print their results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One line per result and a summary line, for people.
    #[default]
    Text,
    /// One JSON document (the schema is in the README).
    Json,
    /// The same document as YAML.
    Yaml,
}

/// `binauthz key ...`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print the id an Attestor uses for a public key: the fingerprint of a PGP key, the
    /// `ni:///sha-256;...` id of a PKIX key (what `--public-key-id` takes).
    #[command(after_help = "\
Examples:
  gpg --armor --export build@example.com > build.asc && binauthz key id build.asc
  openssl pkey -in ec.pem -pubout -out ec.pub && binauthz key id ec.pub
  binauthz key id cosign.pub")]
    Id {
        /// The public key: armored PGP (`gpg --armor --export KEY`) or PEM (`-----BEGIN PUBLIC
        /// KEY-----`); `-` is stdin.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// `binauthz policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the AttestationPolicy for a `gcloud container binauthz policy export` file (YAML or JSON).
    Import(PolicyImportArgs),
    /// Print an AttestationPolicy as `gcloud container binauthz policy import` takes it.
    Export(PolicyExportArgs),
}

/// Arguments of `binauthz policy import`.
#[derive(Debug, Args)]
pub struct PolicyImportArgs {
    /// The output of `gcloud container binauthz policy export`; `-` is stdin.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Name of the AttestationPolicy. Default: the project of the policy's `name`, else `imported`.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Use the rule of this clusterAdmissionRules key (LOCATION.CLUSTER, e.g. us-central1-a.prod)
    /// as the default rule: an AttestationPolicy governs one cluster.
    #[arg(long, value_name = "LOCATION.CLUSTER")]
    pub cluster: Option<String>,
}

/// Arguments of `binauthz policy export`.
#[derive(Debug, Args)]
pub struct PolicyExportArgs {
    /// YAML holding the AttestationPolicy; `-` is stdin.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Google Cloud project of the policy and its attestors: attestor NAME becomes
    /// projects/PROJECT/attestors/NAME.
    #[arg(long, value_name = "PROJECT")]
    pub project: String,
    /// Which AttestationPolicy, when the file holds several.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// `binauthz attestor ...`.
#[derive(Debug, Subcommand)]
pub enum AttestorCommand {
    /// Print an Attestor for public key files, each key checked as the cluster will use it.
    #[command(after_help = "\
Examples:
  binauthz attestor create build --pgp-public-key-file build.asc > attestor.yaml
  binauthz attestor create signer --pkix-public-key-file ec.pub > attestor.yaml
  binauthz attestor create rsa --pkix-public-key-file rsa.pub --algorithm RSA_SIGN_PKCS1_2048_SHA256")]
    Create(AttestorCreateArgs),
    /// Print the Attestor for `gcloud container binauthz attestors describe NAME --format=yaml` output.
    Import(AttestorImportArgs),
}

/// Arguments of `binauthz attestor create`.
#[derive(Debug, Args)]
pub struct AttestorCreateArgs {
    /// Name of the Attestor (what policies list in requireAttestationsBy).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// An armored PGP public key (`gpg --armor --export KEY`); repeat for several.
    #[arg(long, value_name = "FILE")]
    pub pgp_public_key_file: Vec<PathBuf>,
    /// A PEM public key (`openssl pkey -pubout`, cosign.pub); repeat for several.
    #[arg(long, value_name = "FILE")]
    pub pkix_public_key_file: Vec<PathBuf>,
    /// Signature algorithm of the PKIX keys. Default: the only one that fits an EC or Ed25519
    /// key; RSA keys need it (e.g. RSA_SIGN_PKCS1_2048_SHA256).
    #[arg(long, value_name = "ALGORITHM")]
    pub algorithm: Option<String>,
    /// A custom id (RFC 3986 URI) for the one PKIX key. Default: its `ni:///sha-256;...` id.
    #[arg(long, value_name = "ID")]
    pub public_key_id: Option<String>,
    /// Free-form description.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
}

/// Arguments of `binauthz attestor import`.
#[derive(Debug, Args)]
pub struct AttestorImportArgs {
    /// The output of `gcloud container binauthz attestors describe NAME --format=yaml`; `-` is stdin.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Name of the Attestor. Default: NAME of `projects/PROJECT/attestors/NAME`.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// Arguments of `binauthz run`; every flag also reads an environment variable.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Namespace binauthz runs in: its Lease, TLS Secret and allowlists live there, and it is
    /// always exempt from the webhook.
    #[arg(
        long,
        env = "POD_NAMESPACE",
        default_value = "binauthz-system",
        value_name = "NS"
    )]
    pub namespace: String,
    /// Kubeconfig file. Default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Register the webhook by this https URL instead of the Service, e.g.
    /// https://127.0.0.1:8443/validate (out of cluster, tests); its host goes into the certificate.
    #[arg(long, env = "BINAUTHZ_WEBHOOK_URL", value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Name of the Service in front of the webhook.
    #[arg(
        long,
        env = "BINAUTHZ_SERVICE_NAME",
        default_value = "binauthz",
        value_name = "NAME"
    )]
    pub service_name: String,
    /// Port of that Service.
    #[arg(
        long,
        env = "BINAUTHZ_SERVICE_PORT",
        default_value_t = 443,
        value_name = "PORT"
    )]
    pub service_port: u16,
    /// What the API server does when the webhook cannot answer: Fail (closed) or Ignore (open).
    #[arg(long, env = "BINAUTHZ_FAILURE_POLICY", value_enum, default_value_t = crate::controller::FailurePolicy::Fail)]
    pub failure_policy: crate::controller::FailurePolicy,
    /// Seconds the API server waits for the webhook (1 to 30).
    #[arg(long, env = "BINAUTHZ_TIMEOUT_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..=30), value_name = "SECONDS")]
    pub timeout_seconds: i32,
    /// More namespaces the webhook never sees, comma-separated. binauthz's own namespace and
    /// kube-system are always exempt, so the cluster can never lock itself out.
    #[arg(
        long,
        env = "BINAUTHZ_EXEMPT_NAMESPACES",
        value_delimiter = ',',
        value_name = "NS,..."
    )]
    pub exempt_namespaces: Vec<String>,
    /// Require a client certificate issued by this CA (PEM) from every webhook caller: give the
    /// CA of the certificate the API server presents to webhooks (its AdmissionConfiguration
    /// kubeconfig). Everyone else is refused during the TLS handshake.
    #[arg(long, env = "BINAUTHZ_CLIENT_CA_FILE", value_name = "FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// Name of the generated ValidatingWebhookConfiguration.
    #[arg(
        long,
        env = "BINAUTHZ_WEBHOOK_CONFIGURATION",
        default_value = "binauthz",
        value_name = "NAME"
    )]
    pub webhook_configuration: String,
    /// Port of the TLS admission webhook.
    #[arg(
        long,
        env = "BINAUTHZ_WEBHOOK_PORT",
        default_value_t = 8443,
        value_name = "PORT"
    )]
    pub webhook_port: u16,
    /// Port of the plain-HTTP admin server (/livez, /readyz, /metrics).
    #[arg(
        long,
        env = "BINAUTHZ_ADMIN_PORT",
        default_value_t = 8080,
        value_name = "PORT"
    )]
    pub admin_port: u16,
    /// Identity in leader election and Events. Default: $POD_NAME, else the host name.
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pub identity: Option<String>,
    /// How often continuous validation judges every running pod again (e.g. 30s, 10m, 1h, 1d);
    /// policy and attestation changes also trigger it within seconds.
    #[arg(
        long,
        env = "BINAUTHZ_VALIDATION_INTERVAL",
        default_value = "1h",
        value_parser = crate::controller::validation::parse_interval,
        value_name = "DURATION"
    )]
    pub validation_interval: std::time::Duration,
    /// Registries (`host[:port]`) whose signatures are read over plain HTTP; loopback
    /// registries always are. Repeat or separate with commas.
    #[arg(
        long = "insecure-registry",
        env = "BINAUTHZ_INSECURE_REGISTRIES",
        value_delimiter = ',',
        value_name = "HOST[:PORT]"
    )]
    pub insecure_registries: Vec<String>,
    /// Append one JSON line per admission decision to this file (the audit log; schema in the
    /// README). Admission never waits on it: a full queue drops records, counted in
    /// binauthz_audit_records_dropped_total.
    #[arg(long, env = "BINAUTHZ_AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Log format: text (for people) or json (one object per line, for log pipelines). The
    /// level is RUST_LOG's (default info).
    #[arg(long, env = "BINAUTHZ_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Publish continuous validation's results as policy reports, one per namespace:
    /// OpenReports (openreports.io Report), the legacy wgpolicyk8s.io PolicyReport, or off.
    /// Nothing is written while the chosen CRD is not installed.
    #[arg(
        long,
        env = "BINAUTHZ_POLICY_REPORTS",
        value_enum,
        default_value_t = crate::controller::validation::policy_reports::ReportFormat::Openreports
    )]
    pub policy_reports: crate::controller::validation::policy_reports::ReportFormat,
}

/// How `binauthz run` writes its log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Arguments of `binauthz evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Files and folders of YAML (read recursively); `-` is stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Namespace for workloads that name none.
    #[arg(long, short, value_name = "NS", default_value = "default")]
    pub namespace: String,
    /// Verify attestations as of this time (RFC 3339). Default: now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<jiff::Timestamp>,
    /// Admit workloads that no AttestationPolicy governs (as the cluster does) instead of
    /// failing with exit status 2: say so when the inputs deliberately hold no policy for them.
    #[arg(long)]
    pub allow_ungoverned: bool,
    /// Registry signatures, as the cluster syncs them.
    #[command(flatten)]
    pub fetch: FetchArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Arguments of `binauthz create-signature-payload`.
#[derive(Debug, Args)]
pub struct CreateSignaturePayloadArgs {
    /// The image by digest, e.g. gcr.io/my-project/app@sha256:<64 hex>.
    #[arg(long, value_name = "URL")]
    pub artifact_url: String,
}

/// Arguments of `binauthz sign`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("key").required(true).args(["pgp_secret_key", "pkix_private_key"])))]
pub struct SignArgs {
    /// The payload to sign (the output of create-signature-payload); `-` is stdin.
    #[arg(long, value_name = "FILE")]
    pub payload_file: PathBuf,
    /// PGP secret key file (`gpg --armor --export-secret-keys KEY`), armored or binary.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["pkix_private_key", "algorithm", "pae"])]
    pub pgp_secret_key: Option<PathBuf>,
    /// File holding the passphrase of the PGP secret key (else BINAUTHZ_PGP_PASSPHRASE, else none).
    #[arg(long, value_name = "FILE", requires = "pgp_secret_key")]
    pub passphrase_file: Option<PathBuf>,
    /// PGP signature form: attached (as `gpg --armor --sign`, what gcloud documents), detached or clearsign.
    #[arg(long, value_enum, default_value_t = PgpMode::Attached, requires = "pgp_secret_key")]
    pub mode: PgpMode,
    /// PKIX private key in PEM (PKCS#8 `PRIVATE KEY`, or `EC PRIVATE KEY` / `RSA PRIVATE KEY` as openssl writes them).
    #[arg(long, value_name = "FILE", requires = "algorithm")]
    pub pkix_private_key: Option<PathBuf>,
    /// PKIX signature algorithm: a Binary Authorization name (ECDSA_P256_SHA256, RSA_SIGN_PKCS1_2048_SHA256, ...,
    /// ED25519) or gcloud's form (ecdsa-p256-sha256).
    #[arg(long, value_name = "ALGORITHM")]
    pub algorithm: Option<String>,
    /// Sign the DSSE pre-authentication encoding of the payload (gcloud's --pae-encode-payload).
    #[arg(long)]
    pub pae: bool,
    /// Where to write the signature (PGP: armored text; PKIX: raw signature bytes, as openssl writes them).
    /// Default: stdout, refused for binary output on a terminal.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// PGP signature forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PgpMode {
    /// One armored message holding payload and signature (`gpg --armor --sign`).
    Attached,
    /// A signature alone; the payload goes in serializedPayload (`gpg --armor --detach-sign`).
    Detached,
    /// A cleartext-signed message (`gpg --clearsign`).
    Clearsign,
}

/// `binauthz attestation ...`.
#[derive(Debug, Subcommand)]
pub enum AttestationCommand {
    /// Print an ImageAttestation YAML document for a signature, like
    /// `gcloud container binauthz attestations create` (commit it to GitOps, or pipe it to kubectl apply -f -).
    #[command(after_help = "\
Examples:
  binauthz attestation create --artifact-url \"$IMAGE\" --attestor build \\
    --signature-file signature.pgp --public-key-id \"$(binauthz key id build.asc)\" \\
    --attestor-file attestor.yaml --namespace prod > attestation.yaml")]
    Create(AttestationCreateArgs),
}

/// Arguments of `binauthz attestation create`.
#[derive(Debug, Args)]
pub struct AttestationCreateArgs {
    /// The image by digest, e.g. gcr.io/my-project/app@sha256:<64 hex> (gcloud's
    /// https://gcr.io/... form too).
    #[arg(long, value_name = "URL")]
    pub artifact_url: String,
    /// Name of the Attestor that vouches for the image (or gcloud's
    /// projects/PROJECT/attestors/NAME).
    #[arg(long, value_name = "NAME")]
    pub attestor: String,
    /// YAML holding the Attestor: the signature is verified with its keys before anything is
    /// printed.
    #[arg(long, value_name = "FILE")]
    pub attestor_file: Option<PathBuf>,
    /// The signature: PGP (armored or binary) or PKIX (raw bytes); `-` is stdin.
    #[arg(long, value_name = "FILE")]
    pub signature_file: PathBuf,
    /// Id of the key that signed: the PGP fingerprint, or the PKIX key id.
    #[arg(long, value_name = "ID")]
    pub public_key_id: String,
    /// The signed payload. Default: none for PGP messages that carry it (attached, clearsigned),
    /// else the output of create-signature-payload for --artifact-url.
    #[arg(long, value_name = "FILE")]
    pub payload_file: Option<PathBuf>,
    /// Namespace of the ImageAttestation.
    #[arg(long, short, value_name = "NS", default_value = "default")]
    pub namespace: String,
    /// Name of the ImageAttestation. Default: <attestor>-<first 16 hex digits of the digest>.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// Arguments of `binauthz verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Files and folders of YAML (read recursively); `-` is stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Verify as of this time (RFC 3339), e.g. to check a key's expiry ahead. Default: now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<jiff::Timestamp>,
    /// Registry signatures, as the cluster syncs them.
    #[command(flatten)]
    pub fetch: FetchArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Fetching cosign signatures from the registries the Attestors of the inputs name
/// (`spec.registrySignatures`), as the cluster does.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Fetch the cosign signatures of the Attestors' repositories (`evaluate`: of the
    /// workloads' images; `verify`: of every signed image) and judge them with the rest.
    #[arg(long)]
    pub fetch_signatures: bool,
    /// Docker config with registry credentials. Default: $DOCKER_CONFIG/config.json, else
    /// ~/.docker/config.json, when it exists (an Attestor's pullSecret is a cluster Secret).
    #[arg(long, value_name = "FILE", requires = "fetch_signatures")]
    pub registry_config: Option<PathBuf>,
    /// Registries (`host[:port]`) read over plain HTTP; loopback registries always are.
    #[arg(
        long = "insecure-registry",
        value_delimiter = ',',
        value_name = "HOST[:PORT]",
        requires = "fetch_signatures"
    )]
    pub insecure_registries: Vec<String>,
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
