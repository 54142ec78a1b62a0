//! The CLI's contract with scripts and CI, with the real binary, gpg and openssl: exit status 0,
//! 1 or 2 on every path; careless input refused (unknown fields with the nearest name,
//! duplicates, ungoverned workloads, unbounded or deep input); `attestation create` checking
//! what it writes; explanations of denials; `key id`, `attestor create`, `-o json|yaml`,
//! `completion`, `version`, `--help` examples.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crypto_support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crypto_support::{GpgHome, OpensslDir};

const DIGEST: &str = "sha256:5e52ff4d7e7b4f3cbb9c3b8dfd4f1a3b1c3e2b7f2f0b1d53a4e1a3b7e9f0c1d2";
const IMAGE: &str = "gcr.io/google-samples/hello-app";

fn binauthz(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_binauthz"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Run and expect `code`, with `needle` in stdout or stderr.
fn expect(args: &[&str], code: i32, needle: &str) -> Output {
    let out = binauthz(args);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(code), "{args:?}: {all}");
    assert!(
        all.contains(needle),
        "{args:?}: expected {needle:?} in:\n{all}"
    );
    out
}

const POLICY: &str = "\
apiVersion: binauthz.dev/v1alpha1
kind: AttestationPolicy
metadata: {name: require-build}
spec:
  defaultAdmissionRule:
    evaluationMode: REQUIRE_ATTESTATION
    requireAttestationsBy: [build]
  admissionWhitelistPatterns:
  - namePattern: registry.example.com/tools/*
";

fn pod(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: prod}}\nspec:\n  containers: [{{name: app, image: '{image}'}}]\n"
    )
}

#[test]
fn exit_status_is_0_1_or_2_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let policy = write(d, "policy.yaml", POLICY);
    let allowed = write(
        d,
        "allowed.yaml",
        pod("tool", "registry.example.com/tools/kubectl:1"),
    );
    let denied = write(d, "denied.yaml", pod("web", "nginx"));
    let empty = write(d, "empty.yaml", "");
    let configmap = write(
        d,
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    let no_image = write(
        d,
        "no-image.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: prod}\nspec:\n  containers: [{name: app}]\n",
    );
    let misspelt = write(
        d,
        "misspelt.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: prod}\nspec:\n  containers: [{name: app, imagee: nginx}]\n",
    );

    expect(
        &["evaluate", "-f", &policy, "-f", &allowed],
        0,
        "ADMITTED Pod prod/tool",
    );
    expect(
        &["evaluate", "-f", &policy, "-f", &denied],
        1,
        "DENIED   Pod prod/web",
    );
    // Bad input wins over a denial.
    expect(
        &["evaluate", "-f", &policy, "-f", &denied, "-f", &no_image],
        2,
        "INVALID",
    );
    expect(
        &["evaluate", "-f", &policy, "-f", &no_image],
        2,
        "spec.containers[0].image is missing",
    );
    expect(
        &["evaluate", "-f", &policy, "-f", &misspelt],
        2,
        "spec.containers[0].imagee: unknown field \"imagee\"; did you mean \"image\"?",
    );
    expect(&["evaluate", "-f", &policy, "-f", &empty], 2, "no workload");
    expect(
        &["evaluate", "-f", &policy, "-f", &configmap],
        2,
        "no workload",
    );
    // No policy governs: the cluster would admit, CI must not pass by accident.
    let out = expect(
        &["evaluate", "-f", &denied],
        2,
        "UNGOVERNED Pod prod/web: no AttestationPolicy in the inputs governs namespace prod; add the policies to the inputs, or pass --allow-ungoverned if that is intended",
    );
    assert!(text(&out.stdout).ends_with("Summary: 1 workload: 0 admitted, 1 ungoverned\n"));
    expect(
        &["evaluate", "-f", &denied, "--allow-ungoverned"],
        0,
        "ADMITTED Pod prod/web",
    );
    // A policy whose `kind` is misspelt is not a policy: the workload is ungoverned.
    let typo = write(
        d,
        "typo.yaml",
        POLICY.replace("kind: AttestationPolicy", "kind: AttestationPolicies"),
    );
    expect(
        &["evaluate", "-f", &typo, "-f", &denied],
        2,
        "\"AttestationPolicies\" is not a kind of binauthz.dev; use one of AttestationPolicy, Attestor, ImageAttestation",
    );
    expect(&["verify", "-f", &policy], 2, "no ImageAttestation found");
    expect(
        &["verify", "-f", &d.join("missing.yaml").to_string_lossy()],
        2,
        "missing.yaml",
    );
    expect(&["sign", "--payload-file", &policy], 2, "--pgp-secret-key");
    expect(&["no-such-command"], 2, "unrecognized subcommand");
}

#[test]
fn binauthz_documents_are_held_to_the_api_servers_rules() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let workload = write(d, "w.yaml", pod("web", "nginx"));
    let cases = [
        (
            POLICY.replace("requireAttestationsBy", "requireAttestationBy"),
            "spec.defaultAdmissionRule.requireAttestationBy: unknown field \"requireAttestationBy\"; did you mean \"requireAttestationsBy\"?",
        ),
        (
            POLICY.replace("admissionWhitelistPatterns", "admissionWhitelistPattern"),
            "did you mean \"admissionWhitelistPatterns\"?",
        ),
        (
            POLICY.replace("registry.example.com/tools/*", "gcr.io/**/foo"),
            "spec.admissionWhitelistPatterns[0].namePattern: a namePattern is an image name, or one ending in *",
        ),
        (
            POLICY.replace("registry.example.com/tools/*", "''"),
            "spec.admissionWhitelistPatterns[0].namePattern",
        ),
        (
            POLICY.replace("binauthz.dev/v1alpha1", "binauthz.dev/v1"),
            "apiVersion: binauthz.dev/v1 is not served; use binauthz.dev/v1alpha1",
        ),
        (
            POLICY.replace("name: require-build", "name: Require_Build"),
            "metadata.name: Invalid value: \"Require_Build\"",
        ),
        (
            POLICY.replace("    requireAttestationsBy: [build]\n", ""),
            "requireAttestationsBy must list attestors exactly when evaluationMode is REQUIRE_ATTESTATION",
        ),
        (
            "apiVersion: binauthz.dev/v1alpha1\nkind: Attestor\nmetadata: {name: build}\nspec:\n  publicKey: []\n".to_owned(),
            "spec.publicKey: unknown field \"publicKey\"; did you mean \"publicKeys\"?",
        ),
    ];
    for (document, needle) in cases {
        let file = write(d, "doc.yaml", &document);
        let out = expect(&["evaluate", "-f", &file, "-f", &workload], 2, needle);
        assert!(
            text(&out.stderr).starts_with("error: "),
            "{}",
            text(&out.stderr)
        );
        expect(&["verify", "-f", &file], 2, needle);
    }
    // Defined twice: the verdict would depend on the order of the files.
    let first = write(d, "a.yaml", POLICY);
    let second = write(
        d,
        "b.yaml",
        POLICY
            .replace("REQUIRE_ATTESTATION", "ALWAYS_ALLOW")
            .replace("    requireAttestationsBy: [build]\n", ""),
    );
    expect(
        &["evaluate", "-f", &first, "-f", &second, "-f", &workload],
        2,
        "b.yaml (document 1): AttestationPolicy require-build is also defined in",
    );
    let twice = write(
        d,
        "twice.yaml",
        format!("{}---\n{}", pod("web", "nginx"), pod("web", "nginx:2")),
    );
    expect(
        &["evaluate", "-f", &first, "-f", &twice],
        2,
        "Pod prod/web is also defined in",
    );
}

#[test]
fn every_input_is_bounded() {
    // A device that never ends, and a stream larger than the limit, are refused at the limit.
    let started = Instant::now();
    expect(
        &["evaluate", "-f", "/dev/zero"],
        2,
        "/dev/zero: more than 16777216 bytes",
    );
    expect(
        &["verify", "-f", "/dev/zero"],
        2,
        "over the limit for a manifest file",
    );
    expect(
        &["key", "id", "/dev/zero"],
        2,
        "over the limit for a payload, key or signature",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_binauthz"))
        .args(["evaluate", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'#'; 1 << 20];
        // The reader stops at the limit; the pipe then breaks.
        for _ in 0..50 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("-: more than 16777216 bytes"),
        "{}",
        text(&out.stderr)
    );
    // Nesting is refused before the parser sees it.
    let dir = tempfile::tempdir().unwrap();
    let deep = write(dir.path(), "deep.yaml", "[".repeat(100_000));
    expect(
        &["evaluate", "-f", &deep],
        2,
        "deep.yaml: line 1: nested more than 128 levels deep",
    );
    let deep_block = write(dir.path(), "block.yaml", "- ".repeat(100_000));
    expect(
        &["evaluate", "-f", &deep_block],
        2,
        "nested more than 128 levels deep",
    );
    println!("bounded inputs refused in {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "refusals must not read without bound"
    );
}

/// A gpg key, a payload and an attached signature for IMAGE@DIGEST.
struct Signed {
    gpg: GpgHome,
    fingerprint: String,
    dir: tempfile::TempDir,
    url: String,
    signature: String,
    attestor: String,
}

fn signed() -> Signed {
    let gpg = GpgHome::new();
    let fingerprint = gpg.gen_key("Build <build@example.com>", "ed25519", "sign", "1y");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{IMAGE}@{DIGEST}");
    let payload = binauthz(&["create-signature-payload", "--artifact-url", &url]).stdout;
    let payload_file = write(dir.path(), "payload.json", payload);
    let signature = dir.path().join("signature.pgp");
    gpg.gpg(&[
        "--local-user",
        &fingerprint,
        "--armor",
        "--output",
        signature.to_str().unwrap(),
        "--sign",
        &payload_file,
    ]);
    let public = write(dir.path(), "build.asc", gpg.export(&fingerprint));
    let attestor = binauthz(&[
        "attestor",
        "create",
        "build",
        "--pgp-public-key-file",
        &public,
    ]);
    assert!(attestor.status.success(), "{}", text(&attestor.stderr));
    let attestor = write(dir.path(), "attestor.yaml", attestor.stdout);
    Signed {
        gpg,
        fingerprint,
        url,
        signature: signature.to_str().unwrap().to_owned(),
        attestor,
        dir,
    }
}

#[test]
fn attestation_create_checks_what_it_writes() {
    let s = signed();
    let d = s.dir.path();
    let create = |extra: &[&str]| {
        let mut args = vec![
            "attestation",
            "create",
            "--artifact-url",
            &s.url,
            "--attestor",
            "build",
            "--signature-file",
            &s.signature,
            "--public-key-id",
            &s.fingerprint,
        ];
        args.extend_from_slice(extra);
        args.iter()
            .map(|a| (*a).to_owned())
            .collect::<Vec<String>>()
    };
    let run = |args: Vec<String>| binauthz(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // Verified against the Attestor before it is printed; gcloud's URL and attestor forms.
    let https = format!("https://{}", s.url);
    let out = run({
        let mut a = create(&["--attestor-file", &s.attestor, "--namespace", "apps"]);
        a[3] = https.clone();
        a[5] = "projects/example/attestors/build".into();
        a
    });
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    assert!(
        yaml.contains(&format!("artifactUrl: {}\n", s.url)),
        "{yaml}"
    );
    assert!(yaml.contains("attestor: build\n"), "{yaml}");
    let folder = d.join("ok");
    std::fs::create_dir(&folder).unwrap();
    write(&folder, "a.yaml", &yaml);
    std::fs::copy(&s.attestor, folder.join("attestor.yaml")).unwrap();
    expect(
        &["verify", "-f", folder.to_str().unwrap()],
        0,
        "VERIFIED apps/build-",
    );

    // Each refused with exit 2, naming what is wrong.
    let truncated = write(
        d,
        "truncated.pgp",
        &std::fs::read(&s.signature).unwrap()[..200],
    );
    let arbitrary = write(d, "arbitrary.sig", b"not a signature at all");
    let other_payload = write(
        d,
        "other.json",
        binauthz(&[
            "create-signature-payload",
            "--artifact-url",
            &format!("{IMAGE}@sha256:{}", "ab".repeat(32)),
        ])
        .stdout,
    );
    let empty = write(d, "empty.sig", "");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            create(&["--name", "Build/One"]),
            "--name \"Build/One\": a name is at most 253 lower-case letters",
        ),
        (create(&["--namespace", "Apps"]), "--namespace \"Apps\""),
        (
            {
                let mut a = create(&[]);
                a[5] = "Build".into();
                a
            },
            "--attestor \"Build\"",
        ),
        (
            {
                let mut a = create(&[]);
                a[9] = " ".into();
                a
            },
            "--public-key-id: give the id of the key that signed",
        ),
        (
            {
                let mut a = create(&[]);
                a[7] = empty.clone();
                a
            },
            "the signature file is empty",
        ),
        (
            create(&["--payload-file", &other_payload]),
            "the payload vouches for sha256:abab",
        ),
        (
            {
                let mut a = create(&["--attestor-file", &s.attestor]);
                a[7] = truncated.clone();
                a
            },
            "the signature does not verify with Attestor build",
        ),
        (
            {
                let mut a = create(&["--attestor-file", &s.attestor]);
                a[7] = arbitrary.clone();
                a
            },
            "the signature does not verify with Attestor build",
        ),
        (
            {
                let mut a = create(&["--attestor-file", &s.attestor]);
                a[9] = "0000000000000000000000000000000000000000".into();
                a
            },
            "is not a key of Attestor build (its keys: ",
        ),
        (
            create(&["--attestor-file", &folder.join("a.yaml").to_string_lossy()]),
            "holds no Attestor named build",
        ),
    ];
    for (args, needle) in cases {
        let out = run(args.clone());
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err}"
        );
    }
    drop(s.gpg);
}

#[test]
fn key_ids_are_printed_as_attestors_use_them() {
    let s = signed();
    let public = s.dir.path().join("build.asc");
    expect(
        &["key", "id", public.to_str().unwrap()],
        0,
        &format!("{}\n", s.fingerprint),
    );
    let ssl = OpensslDir::new();
    ssl.genpkey(
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let out = expect(&["key", "id", &ssl.file("ec.pub")], 0, "ni:///sha-256;");
    assert_eq!(text(&out.stdout), format!("{}\n", ssl.ni_id("ec")));
    expect(&["key", "id", &ssl.file("ec.key")], 2, "PRIVATE KEY");
    // An Attestor made from the PEM key takes the only algorithm that fits; RSA needs a choice.
    let out = expect(
        &[
            "attestor",
            "create",
            "signer",
            "--pkix-public-key-file",
            &ssl.file("ec.pub"),
        ],
        0,
        "signatureAlgorithm: ECDSA_P256_SHA256",
    );
    assert!(text(&out.stdout).starts_with(&format!("# key id: {}\n", ssl.ni_id("ec"))));
    ssl.genpkey(
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    expect(
        &[
            "attestor",
            "create",
            "signer",
            "--pkix-public-key-file",
            &ssl.file("rsa.pub"),
        ],
        2,
        "an RSA 2048-bit key signs with one of RSA_PSS_2048_SHA256, RSA_SIGN_PKCS1_2048_SHA256; choose with --algorithm",
    );
    expect(
        &[
            "attestor",
            "create",
            "signer",
            "--pkix-public-key-file",
            &ssl.file("rsa.pub"),
            "--algorithm",
            "ECDSA_P256_SHA256",
        ],
        2,
        "ECDSA_P256_SHA256",
    );
}

#[test]
fn reports_are_json_or_yaml_with_a_stable_schema() {
    let s = signed();
    let d = s.dir.path();
    let attestation = binauthz(&[
        "attestation",
        "create",
        "--artifact-url",
        &s.url,
        "--attestor",
        "build",
        "--signature-file",
        &s.signature,
        "--public-key-id",
        &s.fingerprint,
        "--namespace",
        "prod",
    ]);
    write(d, "attestation.yaml", attestation.stdout);
    write(d, "policy.yaml", POLICY);
    write(
        d,
        "workloads.yaml",
        format!(
            "{}---\n{}",
            pod("signed", &s.url),
            pod("unsigned", &format!("{IMAGE}@sha256:{}", "cd".repeat(32)))
        ),
    );
    let folder = d.to_str().unwrap();

    let out = binauthz(&["evaluate", "-f", folder, "-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["apiVersion"], "binauthz.dev/v1alpha1");
    assert_eq!(report["kind"], "EvaluationReport");
    assert_eq!(
        report["summary"],
        serde_json::json!({"workloads": 2, "admitted": 1, "breakglass": 0, "denied": 1,
                           "invalid": 0, "ungoverned": 0, "exitCode": 1})
    );
    let results = report["results"].as_array().unwrap();
    assert_eq!(results[0]["verdict"], "ADMITTED");
    assert_eq!(results[0]["policies"], serde_json::json!(["require-build"]));
    let denied = &results[1];
    assert_eq!(denied["verdict"], "DENIED");
    assert_eq!(denied["kind"], "Pod");
    assert_eq!(denied["namespace"], "prod");
    assert_eq!(denied["name"], "unsigned");
    assert!(
        denied["source"]
            .as_str()
            .unwrap()
            .ends_with("workloads.yaml (document 2)")
    );
    let image = &denied["images"][0];
    assert_eq!(image["uses"], serde_json::json!(["container app"]));
    assert_eq!(image["rule"], "default admission rule");
    assert_eq!(image["enforcementMode"], "ENFORCED_BLOCK_AND_AUDIT_LOG");
    assert_eq!(image["denies"], true);
    assert_eq!(
        image["explanation"][0],
        format!(
            "no ImageAttestation in the inputs names sha256:{}; sign it and add the output of `binauthz attestation create`",
            "cd".repeat(32)
        )
    );

    let out = binauthz(&["evaluate", "-f", folder, "-o", "yaml"]);
    let yaml: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert_eq!(
        serde_json::to_value(yaml).unwrap(),
        report,
        "YAML holds the same document"
    );

    let out = binauthz(&["verify", "-f", folder, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kind"], "VerificationReport");
    assert_eq!(
        report["summary"],
        serde_json::json!({"attestations": 1, "verified": 1, "failed": 0, "exitCode": 0})
    );
    assert_eq!(report["results"][0]["verdict"], "VERIFIED");
    assert_eq!(report["results"][0]["keyId"], s.fingerprint.as_str());
    assert_eq!(report["results"][0]["attestor"], "build");
}

#[test]
fn completion_version_and_help_are_there() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = expect(&["completion", shell], 0, "evaluate");
        assert!(out.stdout.len() > 1000, "{shell}");
    }
    let out = expect(&["version", "-o", "json"], 0, "\"commit\"");
    let version: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    let commit = version["commit"].as_str().unwrap();
    assert!(commit == "unknown" || commit.len() == 12, "{commit}");
    assert!(
        version["features"]
            .to_string()
            .contains("ECDSA_P256_SHA256")
    );
    expect(
        &["--version"],
        0,
        &format!("binauthz {} (commit ", env!("CARGO_PKG_VERSION")),
    );
    for command in [
        vec!["evaluate"],
        vec!["verify"],
        vec!["sign"],
        vec!["attestation", "create"],
        vec!["attestor", "create"],
        vec!["key", "id"],
        vec!["create-signature-payload"],
        vec!["completion"],
    ] {
        let mut args = command.clone();
        args.push("--help");
        expect(&args, 0, "Examples:");
    }
    expect(&["--help"], 0, "Exit status: 0 when everything passed");
}
