//! The newcomer's offline flow, end to end with the real binary, gpg and openssl: make a key,
//! produce a payload, sign, create the attestation YAML, verify it, and every bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crypto_support;

use std::path::Path;
use std::process::{Command, Output};

use crypto_support::{GpgHome, OpensslDir};

const DIGEST: &str = "sha256:5e52ff4d7e7b4f3cbb9c3b8dfd4f1a3b1c3e2b7f2f0b1d53a4e1a3b7e9f0c1d2";
const IMAGE: &str = "gcr.io/google-samples/hello-app";

fn binauthz(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_binauthz"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> Vec<u8> {
    let out = binauthz(args);
    assert!(
        out.status.success(),
        "binauthz {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn attestor_yaml(name: &str, key: &str) -> String {
    let indented: String = key.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        "apiVersion: binauthz.dev/v1alpha1\nkind: Attestor\nmetadata:\n  name: {name}\nspec:\n  publicKeys:\n  - comment: test key\n    asciiArmoredPgpPublicKey: |\n{indented}"
    )
}

fn pkix_attestor_yaml(name: &str, pem: &str, algorithm: &str) -> String {
    let indented: String = pem.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        "apiVersion: binauthz.dev/v1alpha1\nkind: Attestor\nmetadata:\n  name: {name}\nspec:\n  publicKeys:\n  - pkixPublicKey:\n      signatureAlgorithm: {algorithm}\n      publicKeyPem: |\n{indented}"
    )
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn pgp_flow_from_gpg_to_verified() {
    let gpg = GpgHome::new();
    let fpr = gpg.gen_key(
        "Build Attestor <build@example.com>",
        "rsa3072",
        "sign",
        "1y",
    );
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let url = format!("{IMAGE}@{DIGEST}");

    let payload = ok(&["create-signature-payload", "--artifact-url", &url]);
    let payload_file = write(dir, "payload.json", &payload);
    let signature_file = dir.join("signature.pgp");
    gpg.gpg(&[
        "--local-user",
        &fpr,
        "--armor",
        "--output",
        signature_file.to_str().unwrap(),
        "--sign",
        &payload_file,
    ]);

    let yaml = ok(&[
        "attestation",
        "create",
        "--artifact-url",
        &url,
        "--attestor",
        "build",
        "--signature-file",
        signature_file.to_str().unwrap(),
        "--public-key-id",
        &fpr,
        "--namespace",
        "apps",
    ]);
    let yaml = String::from_utf8(yaml).unwrap();
    assert!(yaml.contains("kind: ImageAttestation"), "{yaml}");
    assert!(yaml.contains("namespace: apps"), "{yaml}");
    assert!(
        yaml.contains(&format!("name: build-{}", &DIGEST[7..23])),
        "{yaml}"
    );
    assert!(
        !yaml.contains("serializedPayload"),
        "an attached PGP message carries its payload: {yaml}"
    );
    std::fs::create_dir(dir.join("gitops")).unwrap();
    write(&dir.join("gitops"), "attestation.yaml", &yaml);
    write(
        &dir.join("gitops"),
        "attestor.yaml",
        attestor_yaml("build", &gpg.export(&fpr)),
    );

    let out = binauthz(&["verify", "-f", dir.join("gitops").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.starts_with("VERIFIED apps/build-"), "{text}");
    assert!(text.contains(&fpr), "{text}");

    // The same signature presented for another digest does not verify.
    let other = format!("{IMAGE}@sha256:{}", "ab".repeat(32));
    let forged = yaml.replace(&url, &other);
    write(
        &dir.join("gitops"),
        "forged.yaml",
        forged.replace("name: build-", "name: forged-"),
    );
    let out = binauthz(&["verify", "-f", dir.join("gitops").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAILED   apps/forged-") && text.contains("DigestMismatch"),
        "{text}"
    );

    // binauthz sign makes the same kind of signature, in every mode.
    let secret = write(dir, "secret.asc", gpg.export_secret(&fpr, true));
    for mode in ["attached", "detached", "clearsign"] {
        let sig = dir.join(format!("sig-{mode}.asc"));
        ok(&[
            "sign",
            "--payload-file",
            &payload_file,
            "--pgp-secret-key",
            &secret,
            "--mode",
            mode,
            "--output",
            sig.to_str().unwrap(),
        ]);
        let mut args = vec![
            "attestation",
            "create",
            "--artifact-url",
            &url,
            "--attestor",
            "build",
            "--signature-file",
            sig.to_str().unwrap(),
            "--public-key-id",
            &fpr,
            "--name",
            "by-binauthz",
        ];
        if mode == "detached" {
            args.extend(["--payload-file", &payload_file]);
        }
        let yaml = ok(&args);
        let folder = dir.join(format!("mode-{mode}"));
        std::fs::create_dir(&folder).unwrap();
        write(&folder, "a.yaml", yaml);
        write(
            &folder,
            "attestor.yaml",
            attestor_yaml("build", &gpg.export(&fpr)),
        );
        let out = binauthz(&["verify", "-f", folder.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{mode}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    }
}

#[test]
fn pkix_flow_from_openssl_to_verified() {
    let ssl = OpensslDir::new();
    ssl.genpkey(
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let public = ssl.read_string("ec.pub");
    let key_id = ssl.ni_id("ec");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{IMAGE}@{DIGEST}");
    let payload = ok(&["create-signature-payload", "--artifact-url", &url]);
    let payload_file = write(dir.path(), "payload.json", &payload);

    // A signature made by openssl itself, and one made by binauthz sign.
    ssl.openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        &ssl.file("ec.key"),
        "-out",
        &ssl.file("openssl.sig"),
        &payload_file,
    ]);
    let ours = dir.path().join("ours.sig");
    ok(&[
        "sign",
        "--payload-file",
        &payload_file,
        "--pkix-private-key",
        &ssl.file("ec.key"),
        "--algorithm",
        "ecdsa-p256-sha256",
        "--output",
        ours.to_str().unwrap(),
    ]);
    for (name, sig) in [
        ("openssl", ssl.file("openssl.sig")),
        ("ours", ours.to_str().unwrap().to_owned()),
    ] {
        let yaml = ok(&[
            "attestation",
            "create",
            "--artifact-url",
            &url,
            "--attestor",
            "kms",
            "--signature-file",
            &sig,
            "--public-key-id",
            &key_id,
            "--name",
            name,
        ]);
        let yaml = String::from_utf8(yaml).unwrap();
        assert!(
            yaml.contains("serializedPayload"),
            "PKIX attestations carry the payload: {yaml}"
        );
        let folder = dir.path().join(name);
        std::fs::create_dir(&folder).unwrap();
        write(&folder, "a.yaml", &yaml);
        write(
            &folder,
            "attestor.yaml",
            pkix_attestor_yaml("kms", &public, "ECDSA_P256_SHA256"),
        );
        let out = binauthz(&["verify", "-f", folder.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        // The key under the wrong algorithm is not a usable key.
        write(
            &folder,
            "attestor.yaml",
            pkix_attestor_yaml("kms", &public, "RSA_SIGN_PKCS1_2048_SHA256"),
        );
        let out = binauthz(&["verify", "-f", folder.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("KeyNotFound"), "{text}");
    }
}

#[test]
fn bad_input_gives_one_clear_error_line() {
    let gpg = GpgHome::new();
    let fpr = gpg.gen_key("Only Public <p@example.com>", "ed25519", "sign", "1y");
    let dir = tempfile::tempdir().unwrap();
    let payload_file = write(dir.path(), "payload.json", b"{}");
    let public = write(dir.path(), "public.asc", gpg.export(&fpr));

    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "sign".into(),
                "--payload-file".into(),
                payload_file.clone(),
                "--pgp-secret-key".into(),
                public.clone(),
            ],
            "public key",
        ),
        (
            vec![
                "create-signature-payload".into(),
                "--artifact-url".into(),
                "gcr.io/p/i:latest".into(),
            ],
            "fully qualified",
        ),
        (
            vec![
                "sign".into(),
                "--payload-file".into(),
                payload_file.clone(),
                "--pkix-private-key".into(),
                public.clone(),
                "--algorithm".into(),
                "ECDSA_P256_SHA256".into(),
            ],
            "PEM",
        ),
        (
            vec![
                "sign".into(),
                "--payload-file".into(),
                payload_file.clone(),
                "--pkix-private-key".into(),
                public.clone(),
                "--algorithm".into(),
                "ECDSA_P999".into(),
            ],
            "--algorithm",
        ),
        (
            vec![
                "attestation".into(),
                "create".into(),
                "--artifact-url".into(),
                "gcr.io/p/i:latest".into(),
                "--attestor".into(),
                "a".into(),
                "--signature-file".into(),
                public.clone(),
                "--public-key-id".into(),
                "x".into(),
            ],
            "digest",
        ),
        (
            vec![
                "verify".into(),
                "-f".into(),
                dir.path().join("missing.yaml").to_str().unwrap().into(),
            ],
            "missing.yaml",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = binauthz(&args);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} should fail with a usage error: {err}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?} should print one line: {err}"
        );
        assert!(err.starts_with("error: "), "{err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err}"
        );
    }

    // A huge payload file is refused before anything is read into memory.
    let huge = dir.path().join("huge.json");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(5 * 1024 * 1024)
        .unwrap();
    let out = binauthz(&[
        "sign",
        "--payload-file",
        huge.to_str().unwrap(),
        "--pgp-secret-key",
        &public,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("over the limit"), "{}", stderr(&out));

    // Garbage signatures are reported per attestation, not as a crash.
    let folder = dir.path().join("garbage");
    std::fs::create_dir(&folder).unwrap();
    write(
        &folder,
        "attestor.yaml",
        attestor_yaml("build", &gpg.export(&fpr)),
    );
    write(
        &folder,
        "a.yaml",
        format!(
            "apiVersion: binauthz.dev/v1alpha1\nkind: ImageAttestation\nmetadata: {{name: junk, namespace: apps}}\nspec:\n  artifactUrl: {IMAGE}@{DIGEST}\n  attestor: build\n  signatures:\n  - publicKeyId: {fpr}\n    signature: '!!! not base64 !!!'\n"
        ),
    );
    let out = binauthz(&["verify", "-f", folder.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAILED   apps/junk MalformedSignature"),
        "{text}"
    );
}

#[test]
fn evaluate_decides_a_gitops_folder_like_the_webhook() {
    let gpg = GpgHome::new();
    let fpr = gpg.gen_key("Build <b@example.com>", "ed25519", "sign", "1y");
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let url = format!("{IMAGE}@{DIGEST}");
    let payload_file = write(
        work.path(),
        "payload.json",
        ok(&["create-signature-payload", "--artifact-url", &url]),
    );
    let sig = work.path().join("sig.asc");
    gpg.gpg(&[
        "--local-user",
        &fpr,
        "--armor",
        "--output",
        sig.to_str().unwrap(),
        "--sign",
        &payload_file,
    ]);
    let attestation = ok(&[
        "attestation",
        "create",
        "--artifact-url",
        &url,
        "--attestor",
        "build",
        "--signature-file",
        sig.to_str().unwrap(),
        "--public-key-id",
        &fpr,
        "--namespace",
        "prod",
    ]);
    write(&repo, "attestation.yaml", attestation);
    write(
        &repo,
        "attestor.yaml",
        attestor_yaml("build", &gpg.export(&fpr)),
    );
    write(
        &repo,
        "policy.yaml",
        "\
apiVersion: binauthz.dev/v1alpha1
kind: AttestationPolicy
metadata: {name: require-build}
spec:
  defaultAdmissionRule:
    evaluationMode: REQUIRE_ATTESTATION
    enforcementMode: ENFORCED_BLOCK_AND_AUDIT_LOG
    requireAttestationsBy: [build]
  kubernetesNamespaceAdmissionRules:
    staging:
      evaluationMode: REQUIRE_ATTESTATION
      enforcementMode: DRYRUN_AUDIT_LOG_ONLY
      requireAttestationsBy: [build]
",
    );
    write(
        &repo,
        "workloads.yaml",
        format!(
            "\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: hello, namespace: prod}}
spec:
  template:
    spec:
      containers: [{{name: app, image: '{url}'}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: hello-world, namespace: prod}}
spec:
  containers: [{{name: web, image: nginx}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: trial, namespace: staging}}
spec:
  containers: [{{name: web, image: nginx}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: iv, namespace: prod}}
spec:
  containers:
  - {{name: app, image: '{url}', command: [/payload/evil],
     volumeMounts: [{{name: payload, mountPath: /payload}}]}}
  volumes:
  - {{name: payload, image: {{reference: 'docker.io/attacker/evil:latest', pullPolicy: Always}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: ignored, namespace: prod}}
"
        ),
    );
    let out = binauthz(&["evaluate", "-f", repo.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "one workload is denied: {text}{}",
        stderr(&out)
    );
    assert!(text.contains("ADMITTED Deployment prod/hello\n"), "{text}");
    assert!(
        text.contains("DENIED   Pod prod/hello-world: Image nginx denied by Binary Authorization default admission rule of policy require-build. Image nginx denied by attestor build: Expected digest with sha256 scheme, but got tag or malformed digest"),
        "{text}"
    );
    assert!(
        text.contains(
            "ADMITTED Pod staging/trial\n  warning: dry run: Image nginx would be denied"
        ),
        "{text}"
    );
    assert!(!text.contains("ignored"), "{text}");
    // An image volume is judged like a container image, and named.
    assert!(
        text.contains("DENIED   Pod prod/iv: volume payload: Image docker.io/attacker/evil:latest denied by Binary Authorization default admission rule of policy require-build. Image docker.io/attacker/evil:latest denied by attestor build: Expected digest with sha256 scheme"),
        "{text}"
    );

    // Without the attestation the signed Deployment is denied too.
    std::fs::remove_file(repo.join("attestation.yaml")).unwrap();
    let out = binauthz(&["evaluate", "-f", repo.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "DENIED   Deployment prod/hello: Image gcr.io/google-samples/hello-app@sha256:"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "No attestations found that were valid and signed by a key trusted by the attestor"
        ),
        "{text}"
    );
}
