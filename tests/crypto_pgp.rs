//! OpenPGP keys and signatures against real gpg, both directions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crypto_support;

use binauthz::crypto::pgp::{self, PgpPublicKey, PgpSignMode};
use binauthz::crypto::{KeyError, KeyKind, KeyProblem, PublicKey, SignError, SignatureError};
use crypto_support::{GpgHome, PAYLOAD};
use sequoia_openpgp as openpgp;

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// Every verification here runs both paths: the direct one accepts only what the streaming
/// verifier accepts, with the same signed bytes, and `verify` answers as the streaming verifier.
fn verify(
    key: &PgpPublicKey,
    signature: &[u8],
    payload: Option<&[u8]>,
) -> Result<Vec<u8>, SignatureError> {
    let now = now();
    let streaming = key.verify_streaming(signature, payload, now);
    if let Some(direct) = key.verify_direct(signature, payload, now) {
        assert_eq!(
            streaming.as_ref(),
            Ok(&direct),
            "the direct path accepted what the streaming verifier does not"
        );
    }
    let result = key.verify(signature, payload, now);
    assert_eq!(
        result, streaming,
        "verify and the streaming verifier disagree"
    );
    result
}

/// The direct path itself accepts `signature` (the common shapes must not fall back).
fn direct(key: &PgpPublicKey, signature: &[u8], payload: Option<&[u8]>) -> Vec<u8> {
    key.verify_direct(signature, payload, now())
        .expect("the direct path accepts this shape")
}

fn bad(result: Result<Vec<u8>, SignatureError>) -> String {
    match result {
        Err(SignatureError::BadSignature(reason)) => reason,
        other => panic!("expected BadSignature, got {other:?}"),
    }
}

/// A gpg home with one Ed25519 signing key and the payload in a file: most tests' set-up.
struct Signer {
    home: GpgHome,
    fpr: String,
    key: PgpPublicKey,
    file: String,
}

impl Signer {
    fn new(uid: &str) -> Self {
        let home = GpgHome::new();
        let fpr = home.gen_key(uid, "ed25519", "sign", "1y");
        let key = PgpPublicKey::from_armored(&home.export(&fpr)).unwrap();
        let file = home.write("payload.json", PAYLOAD);
        Self {
            home,
            fpr,
            key,
            file,
        }
    }

    /// gpg's output for `args` (`--sign`, `--detach-sign`, ...) over the payload.
    fn sign(&self, args: &[&str]) -> Vec<u8> {
        let mut all = vec!["--local-user", &self.fpr, "--output", "-"];
        all.extend_from_slice(args);
        all.push(&self.file);
        self.home.gpg(&all)
    }
}

/// Every signature form gpg makes verifies and yields the signed payload.
fn check_gpg_forms(home: &GpgHome, fpr: &str, key: &PgpPublicKey) {
    let file = home.write("payload.json", PAYLOAD);
    let sign = |extra: &[&str]| {
        let mut args = vec!["--local-user", fpr, "--output", "-"];
        args.extend_from_slice(extra);
        args.push(&file);
        home.gpg(&args)
    };
    // gcloud's documented flow: attached, armored, default (ZIP) compression.
    let attached = sign(&["--armor", "--sign"]);
    assert!(attached.starts_with(b"-----BEGIN PGP MESSAGE-----"));
    assert_eq!(verify(key, &attached, None).unwrap(), PAYLOAD);
    assert_eq!(direct(key, &attached, None), PAYLOAD);
    // serializedPayload given too: the signed literal data is what counts.
    assert_eq!(verify(key, &attached, Some(b"other")).unwrap(), PAYLOAD);
    for extra in [
        &["--armor", "--compress-algo", "none", "--sign"][..],
        &["--compress-algo", "none", "--sign"][..],
        &["--sign"][..],
        &["--compress-algo", "zlib", "--sign"][..],
        &["--compress-algo", "bzip2", "--armor", "--sign"][..],
    ] {
        let signature = sign(extra);
        assert_eq!(verify(key, &signature, None).unwrap(), PAYLOAD, "{extra:?}");
        assert_eq!(direct(key, &signature, None), PAYLOAD, "{extra:?}");
    }
    // Cleartext signatures drop the final line ending (RFC 9580, 7.1).
    let clear = sign(&["--clearsign"]);
    assert!(clear.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----"));
    let signed = verify(key, &clear, None).unwrap();
    assert_eq!(signed, PAYLOAD.strip_suffix(b"\n").unwrap());
    // Left to the streaming verifier.
    assert_eq!(key.verify_direct(&clear, None, now()), None);
    for extra in [&["--armor", "--detach-sign"][..], &["--detach-sign"][..]] {
        let signature = sign(extra);
        assert_eq!(verify(key, &signature, Some(PAYLOAD)).unwrap(), PAYLOAD);
        assert_eq!(direct(key, &signature, Some(PAYLOAD)), PAYLOAD);
        assert_eq!(
            verify(key, &signature, None),
            Err(SignatureError::MissingPayload)
        );
        let mut tampered = PAYLOAD.to_vec();
        tampered[30] ^= 1;
        bad(verify(key, &signature, Some(&tampered)));
    }
}

#[test]
fn rsa3072_key_verifies_every_gpg_form() {
    let home = GpgHome::new();
    let fpr = home.gen_key("Test <t@example.com>", "rsa3072", "sign", "1y");
    let armored = home.export(&fpr);
    let key = PgpPublicKey::from_armored(&armored).unwrap();
    assert_eq!(key.fingerprint(), fpr);
    assert_eq!(fpr.len(), 40);
    check_gpg_forms(&home, &fpr, &key);

    let facts = key.facts(now());
    assert_eq!(facts.id, fpr);
    assert_eq!(facts.kind, KeyKind::Pgp);
    assert_eq!(facts.algorithm, "RSA 3072");
    assert!(facts.can_sign);
    assert_eq!(facts.problems, vec![]);
    let created = facts.created.unwrap();
    let expires = facts.expires.unwrap();
    assert!((now() - created).get_seconds().abs() < 600, "{created}");
    let days = (expires - created).total(jiff::Unit::Hour).unwrap() / 24.0;
    assert!((364.0..=367.0).contains(&days), "{days}");

    // CRLF line endings give the same key.
    let crlf = PgpPublicKey::from_armored(&armored.replace('\n', "\r\n")).unwrap();
    assert_eq!(crlf.fingerprint(), fpr);

    // Through the enum: id, kind and case-insensitive id matching.
    let public = PublicKey::Pgp(key);
    assert_eq!(public.id(), fpr);
    assert_eq!(public.kind(), KeyKind::Pgp);
    assert!(public.matches_id(&fpr.to_lowercase()));
    assert!(!public.matches_id(&fpr[..39]));
}

#[test]
fn ed25519_key_verifies_and_rejects_tampering_and_other_keys() {
    let home = GpgHome::new();
    let fpr = home.gen_key("Ed <ed@example.com>", "ed25519", "sign", "1y");
    let other = home.gen_key("Other <o@example.com>", "ed25519", "sign", "1y");
    let key = PgpPublicKey::from_armored(&home.export(&fpr)).unwrap();
    assert_eq!(key.facts(now()).algorithm, "EdDSA Ed25519");
    check_gpg_forms(&home, &fpr, &key);

    let file = home.write("payload.json", PAYLOAD);
    // Signature by another key.
    for extra in [
        &["--armor", "--sign"][..],
        &["--detach-sign"][..],
        &["--clearsign"][..],
    ] {
        let mut args = vec!["--local-user", other.as_str(), "--output", "-"];
        args.extend_from_slice(extra);
        args.push(&file);
        let signature = home.gpg(&args);
        let reason = bad(verify(&key, &signature, Some(PAYLOAD)));
        assert!(reason.contains(&fpr), "{reason}");
    }

    // Tampered signature MPI (last byte of a binary detached signature).
    let mut detached = home.gpg(&[
        "--local-user",
        &fpr,
        "--output",
        "-",
        "--detach-sign",
        &file,
    ]);
    assert!(verify(&key, &detached, Some(PAYLOAD)).is_ok());
    *detached.last_mut().unwrap() ^= 0x55;
    bad(verify(&key, &detached, Some(PAYLOAD)));

    // Tampered literal data inside an uncompressed binary signed message.
    let attached = home.gpg(&[
        "--local-user",
        &fpr,
        "--output",
        "-",
        "--compress-algo",
        "none",
        "--sign",
        &file,
    ]);
    let at = attached
        .windows(PAYLOAD.len())
        .position(|w| w == PAYLOAD)
        .unwrap();
    let mut tampered = attached.clone();
    tampered[at + 40] ^= 1;
    bad(verify(&key, &tampered, None));

    // Tampered cleartext.
    let clear = home.gpg(&["--local-user", &fpr, "--output", "-", "--clearsign", &file]);
    let text = String::from_utf8(clear).unwrap();
    let forged = text.replace("sha256:0000", "sha256:1111");
    assert_ne!(forged, text);
    bad(verify(&key, forged.as_bytes(), None));
}

#[test]
fn signing_subkey_is_accepted_and_its_revocation_honoured() {
    let home = GpgHome::new();
    let fpr = home.gen_key("Sub <s@example.com>", "ed25519", "cert", "1y");
    home.gpg(&["--quick-add-key", &fpr, "ed25519", "sign", "1y"]);
    let key = PgpPublicKey::from_armored(&home.export(&fpr)).unwrap();
    // The id is the primary key's fingerprint, the signature is made by the subkey.
    assert_eq!(key.fingerprint(), fpr);
    assert_eq!(key.cert().keys().subkeys().count(), 1);
    check_gpg_forms(&home, &fpr, &key);
    assert!(key.facts(now()).can_sign);

    let file = home.write("payload.json", PAYLOAD);
    let attached = home.armored_sign(&fpr, &file);
    let detached = home.gpg(&[
        "--local-user",
        &fpr,
        "--output",
        "-",
        "--detach-sign",
        &file,
    ]);

    // Revoke the signing subkey (gpg --edit-key: key 1, revkey, reason 0).
    let output = home.try_gpg(
        &["--command-fd", "0", "--edit-key", &fpr],
        Some(b"key 1\nrevkey\ny\n0\n\ny\nsave\n"),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let revoked = PgpPublicKey::from_armored(&home.export(&fpr)).unwrap();
    assert_eq!(
        verify(&revoked, &attached, None),
        Err(SignatureError::KeyRevoked)
    );
    assert_eq!(
        verify(&revoked, &detached, Some(PAYLOAD)),
        Err(SignatureError::KeyRevoked)
    );
    let facts = revoked.facts(now());
    assert!(!facts.can_sign);
    assert_eq!(facts.problems, vec![KeyProblem::CannotSign]);
    // And we refuse to sign with it.
    let secret = home.export_secret(&fpr, true);
    assert!(matches!(
        pgp::sign(&secret, None, PAYLOAD, PgpSignMode::Attached),
        Err(SignError::NoSigningKey(_))
    ));
}

#[test]
fn revoked_key_gives_key_revoked() {
    let home = GpgHome::new();
    let fpr = home.gen_key("Rev <r@example.com>", "ed25519", "sign", "1y");
    let file = home.write("payload.json", PAYLOAD);
    let attached = home.armored_sign(&fpr, &file);
    let detached = home.gpg(&[
        "--local-user",
        &fpr,
        "--output",
        "-",
        "--armor",
        "--detach-sign",
        &file,
    ]);
    let before = PgpPublicKey::from_armored(&home.export(&fpr)).unwrap();
    assert_eq!(verify(&before, &attached, None).unwrap(), PAYLOAD);

    // gpg stores a revocation certificate at key generation; its BEGIN line is prefixed with
    // ':' against accidental import.
    let rev_path = home
        .path()
        .join("openpgp-revocs.d")
        .join(format!("{fpr}.rev"));
    let rev = std::fs::read_to_string(rev_path)
        .unwrap()
        .replace(":-----BEGIN", "-----BEGIN");
    let rev_file = home.write("revoke.asc", rev.as_bytes());
    home.gpg(&["--import", &rev_file]);

    let key = PgpPublicKey::from_armored(&home.export(&fpr)).unwrap();
    assert_eq!(key.fingerprint(), fpr);
    assert_eq!(
        verify(&key, &attached, None),
        Err(SignatureError::KeyRevoked)
    );
    assert_eq!(
        verify(&key, &detached, Some(PAYLOAD)),
        Err(SignatureError::KeyRevoked)
    );
    let facts = key.facts(now());
    assert!(
        facts.problems.contains(&KeyProblem::Revoked),
        "{:?}",
        facts.problems
    );
    assert!(!facts.can_sign);
    assert!(SignatureError::KeyRevoked.to_string().contains("revoked"));

    let secret = home.export_secret(&fpr, true);
    let err = pgp::sign(&secret, None, PAYLOAD, PgpSignMode::Attached).unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");
}

#[test]
fn expired_key_gives_key_expired() {
    let home = GpgHome::new();
    let faked = ["--faked-system-time", "20200101T000000"];
    let mut args = faked.to_vec();
    args.extend([
        "--quick-gen-key",
        "Exp <e@example.com>",
        "ed25519",
        "sign",
        "1d",
    ]);
    home.gpg(&args);
    let fpr = home.fingerprint("e@example.com");
    let file = home.write("payload.json", PAYLOAD);
    // Signed while the key was valid (one hour after creation).
    let sign = |extra: &[&str]| {
        let mut args = vec![
            "--faked-system-time",
            "20200101T010000",
            "--local-user",
            &fpr,
            "--output",
            "-",
        ];
        args.extend_from_slice(extra);
        args.push(&file);
        home.gpg(&args)
    };
    let attached = sign(&["--armor", "--sign"]);
    let detached = sign(&["--detach-sign"]);
    let key = PgpPublicKey::from_armored(&home.export(&fpr)).unwrap();

    // Valid at the time of signing, expired now.
    let then: jiff::Timestamp = "2020-01-01T02:00:00Z".parse().unwrap();
    assert_eq!(key.verify(&attached, None, then).unwrap(), PAYLOAD);
    assert_eq!(key.verify_direct(&attached, None, then).unwrap(), PAYLOAD);
    assert_eq!(key.verify_direct(&attached, None, now()), None);
    assert_eq!(
        verify(&key, &attached, None),
        Err(SignatureError::KeyExpired)
    );
    assert_eq!(
        verify(&key, &detached, Some(PAYLOAD)),
        Err(SignatureError::KeyExpired)
    );

    let facts = key.facts(now());
    assert_eq!(facts.problems, vec![KeyProblem::Expired]);
    assert!(!facts.can_sign);
    assert_eq!(facts.expires, Some("2020-01-02T00:00:00Z".parse().unwrap()));
    assert_eq!(facts.created, Some("2020-01-01T00:00:00Z".parse().unwrap()));
    assert!(key.facts(then).problems.is_empty());
    // Before it was created.
    let before: jiff::Timestamp = "2019-06-01T00:00:00Z".parse().unwrap();
    assert!(
        key.facts(before)
            .problems
            .contains(&KeyProblem::NotYetValid)
    );
}

#[test]
fn weak_hash_and_weak_key_are_reported() {
    let home = GpgHome::new();
    let fpr = home.gen_key("Sha1 <h@example.com>", "ed25519", "sign", "1y");
    let file = home.write("payload.json", PAYLOAD);
    let key = PgpPublicKey::from_armored(&home.export(&fpr)).unwrap();
    let sha1 = home.gpg(&[
        "--local-user",
        &fpr,
        "--digest-algo",
        "SHA1",
        "--output",
        "-",
        "--detach-sign",
        &file,
    ]);
    let reason = bad(verify(&key, &sha1, Some(PAYLOAD)));
    assert!(reason.contains("SHA1"), "{reason}");

    let weak = home.gen_key("Weak <w@example.com>", "rsa1024", "sign", "1y");
    let key = PgpPublicKey::from_armored(&home.export(&weak)).unwrap();
    let facts = key.facts(now());
    assert_eq!(facts.algorithm, "RSA 1024");
    assert!(!facts.can_sign);
    assert!(
        facts
            .problems
            .iter()
            .any(|p| matches!(p, KeyProblem::WeakAlgorithm(_))),
        "{:?}",
        facts.problems
    );
    let signature = home.armored_sign(&weak, &file);
    assert!(verify(&key, &signature, None).is_err());
}

#[test]
fn cert_without_signing_key_cannot_sign() {
    let home = GpgHome::new();
    let fpr = home.gen_key("Cert <c@example.com>", "ed25519", "cert", "1y");
    let key = PgpPublicKey::from_armored(&home.export(&fpr)).unwrap();
    let facts = key.facts(now());
    assert!(!facts.can_sign);
    assert_eq!(facts.problems, vec![KeyProblem::CannotSign]);
    assert!(
        KeyProblem::CannotSign
            .to_string()
            .contains("--quick-add-key")
    );
    let secret = home.export_secret(&fpr, false);
    let err = pgp::sign(&secret, None, PAYLOAD, PgpSignMode::Detached).unwrap_err();
    assert!(matches!(err, SignError::NoSigningKey(_)), "{err}");
    assert!(err.to_string().contains("--quick-add-key"), "{err}");
}

#[test]
fn our_signatures_verify_with_gpg_and_with_us() {
    let home = GpgHome::new();
    let fpr = home.gen_key("Signer <si@example.com>", "rsa3072", "sign", "1y");
    let sub = home.gen_key("SubSigner <ss@example.com>", "ed25519", "cert", "1y");
    home.gpg(&["--quick-add-key", &sub, "ed25519", "sign", "1y"]);
    let payload_file = home.write("payload.json", PAYLOAD);
    for signer in [&fpr, &sub] {
        let key = PgpPublicKey::from_armored(&home.export(signer)).unwrap();
        for armor in [true, false] {
            let secret = home.export_secret(signer, armor);
            for mode in [
                PgpSignMode::Attached,
                PgpSignMode::Detached,
                PgpSignMode::Clearsign,
            ] {
                let signature = pgp::sign(&secret, None, PAYLOAD, mode).unwrap();
                let sig_file = home.write("sig.asc", &signature);
                let output = match mode {
                    PgpSignMode::Detached => {
                        assert!(signature.starts_with(b"-----BEGIN PGP SIGNATURE-----"));
                        home.try_gpg(
                            &["--status-fd", "1", "--verify", &sig_file, &payload_file],
                            None,
                        )
                    }
                    _ => home.try_gpg(&["--status-fd", "1", "--verify", &sig_file], None),
                };
                let status = String::from_utf8_lossy(&output.stdout);
                assert!(
                    output.status.success(),
                    "{mode:?}: {status}\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                assert!(status.contains("VALIDSIG"), "{status}");
                assert!(
                    status.contains(signer.as_str()),
                    "primary fpr in VALIDSIG: {status}"
                );
                if mode == PgpSignMode::Attached {
                    let decrypted = home.gpg(&["--output", "-", "--decrypt", &sig_file]);
                    assert_eq!(decrypted, PAYLOAD);
                }
                // Sequoia's cleartext framing keeps the payload's final newline in the signed text.
                assert_eq!(verify(&key, &signature, Some(PAYLOAD)).unwrap(), PAYLOAD);
            }
        }
    }
}

#[test]
fn passphrase_protected_secret_key() {
    let home = GpgHome::new();
    home.gpg(&[
        "--passphrase",
        "correct horse",
        "--quick-gen-key",
        "Pw <pw@example.com>",
        "ed25519",
        "sign",
        "1y",
    ]);
    let fpr = home.fingerprint("pw@example.com");
    let secret = home.gpg(&[
        "--passphrase",
        "correct horse",
        "--armor",
        "--export-secret-keys",
        &fpr,
    ]);
    assert_eq!(
        pgp::sign(&secret, None, PAYLOAD, PgpSignMode::Attached),
        Err(SignError::PassphraseRequired)
    );
    assert!(matches!(
        pgp::sign(&secret, Some("wrong"), PAYLOAD, PgpSignMode::Attached),
        Err(SignError::BadPassphrase(_))
    ));
    let signature = pgp::sign(
        &secret,
        Some("correct horse"),
        PAYLOAD,
        PgpSignMode::Attached,
    )
    .unwrap();
    let key = PgpPublicKey::from_armored(&home.export(&fpr)).unwrap();
    assert_eq!(verify(&key, &signature, None).unwrap(), PAYLOAD);
}

#[test]
fn sign_rejects_public_keys_and_bad_input() {
    let home = GpgHome::new();
    let fpr = home.gen_key("P <p@example.com>", "ed25519", "sign", "1y");
    let public = home.export(&fpr);
    let err = pgp::sign(public.as_bytes(), None, PAYLOAD, PgpSignMode::Attached).unwrap_err();
    assert_eq!(err, SignError::PublicKeyOnly);
    assert!(
        err.to_string().contains("gpg --armor --export-secret-keys"),
        "{err}"
    );
    let binary_public = home.gpg(&["--export", &fpr]);
    assert_eq!(
        pgp::sign(&binary_public, None, PAYLOAD, PgpSignMode::Detached),
        Err(SignError::PublicKeyOnly)
    );
    assert!(matches!(
        pgp::sign(b"", None, PAYLOAD, PgpSignMode::Attached),
        Err(SignError::Empty(_))
    ));
    assert!(matches!(
        pgp::sign(b"garbage", None, PAYLOAD, PgpSignMode::Attached),
        Err(SignError::Malformed(_))
    ));
    assert!(matches!(
        pgp::sign(&vec![b'a'; 2 << 20], None, PAYLOAD, PgpSignMode::Attached),
        Err(SignError::TooLarge(_))
    ));
    let other = home.gen_key("Q <q@example.com>", "ed25519", "sign", "1y");
    let both = home.gpg(&["--armor", "--export-secret-keys", &fpr, &other]);
    assert_eq!(
        pgp::sign(&both, None, PAYLOAD, PgpSignMode::Attached),
        Err(SignError::SeveralKeys(2))
    );
}

#[test]
fn key_parse_errors_are_clear() {
    let home = GpgHome::new();
    let a = home.gen_key("A <a@example.com>", "ed25519", "sign", "1y");
    let b = home.gen_key("B <b@example.com>", "ed25519", "sign", "1y");
    let file = home.write("payload.json", PAYLOAD);
    let message = String::from_utf8(home.armored_sign(&a, &file)).unwrap();

    let err = |text: &str| PgpPublicKey::from_armored(text).unwrap_err();
    let e = err("");
    assert!(matches!(e, KeyError::Empty { .. }), "{e}");
    assert!(e.to_string().contains("gpg --armor --export"), "{e}");
    let e = err("this is not a key");
    assert!(e.to_string().contains("not ASCII-armored"), "{e}");
    let e = err(&message);
    assert!(matches!(e, KeyError::WrongKind { .. }), "{e}");
    assert!(e.to_string().contains("PGP MESSAGE"), "{e}");
    let e = err(&home
        .export(&a)
        .replace("BLOCK-----\n\n", "BLOCK-----\n\nAAAA"));
    assert!(matches!(e, KeyError::Malformed { .. }), "{e}");
    let e =
        err("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!!\n-----END PGP PUBLIC KEY BLOCK-----\n");
    assert!(matches!(e, KeyError::Malformed { .. }), "{e}");

    let both = String::from_utf8(home.gpg(&["--armor", "--export", &a, &b])).unwrap();
    let e = err(&both);
    assert!(matches!(e, KeyError::SeveralKeys { count: 2, .. }), "{e}");
    assert!(
        e.to_string().contains(&a) && e.to_string().contains(&b),
        "{e}"
    );
    let two_blocks = format!("{}{}", home.export(&a), home.export(&b));
    assert!(matches!(
        err(&two_blocks),
        KeyError::SeveralKeys { count: 2, .. }
    ));

    let pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEXnpuYEfvLl1kj4fjxViFRwY1a+zC\n5qzlf9LJIK+rnjq42tiKGyyXMbnZKJiYPPdMDGyltnkrABnztg2jJ48aYQ==\n-----END PUBLIC KEY-----\n";
    let e = err(pem);
    assert!(e.to_string().contains("pkixPublicKey"), "{e}");
    let e = err(&"A".repeat(2 << 20));
    assert!(matches!(e, KeyError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("1 MiB"), "{e}");

    // A secret key is accepted, only its public part kept, and flagged.
    let secret = String::from_utf8(home.export_secret(&a, true)).unwrap();
    let key = PgpPublicKey::from_armored(&secret).unwrap();
    assert_eq!(key.fingerprint(), a);
    assert!(key.had_secret_key_material());
    assert!(!key.cert().is_tsk());
    assert!(
        key.facts(now())
            .problems
            .contains(&KeyProblem::SecretKeyMaterial)
    );
    assert_eq!(verify(&key, message.as_bytes(), None).unwrap(), PAYLOAD);
}

#[test]
fn bad_signature_inputs_are_clear() {
    let home = GpgHome::new();
    let fpr = home.gen_key("S <s@example.com>", "ed25519", "sign", "1y");
    let key = PgpPublicKey::from_armored(&home.export(&fpr)).unwrap();
    let file = home.write("payload.json", PAYLOAD);
    let attached = home.gpg(&["--local-user", &fpr, "--output", "-", "--sign", &file]);
    let armored = home.armored_sign(&fpr, &file);

    let malformed = |r: Result<Vec<u8>, SignatureError>| match r {
        Err(SignatureError::Malformed(reason)) => reason,
        other => panic!("expected Malformed, got {other:?}"),
    };
    malformed(verify(&key, b"", None));
    malformed(verify(&key, b"  \n", None));
    malformed(verify(&key, b"garbage garbage", None));
    malformed(verify(&key, home.export(&fpr).as_bytes(), None));
    // A literal message without any signature (gpg --store).
    let unsigned = home.gpg(&["--output", "-", "--armor", "--store", &file]);
    let reason = match verify(&key, &unsigned, Some(PAYLOAD)) {
        Err(SignatureError::BadSignature(reason)) => reason,
        other => panic!("expected BadSignature, got {other:?}"),
    };
    assert!(reason.contains("no signature"), "{reason}");
    for cut in [1, 10, attached.len() / 2, attached.len() - 1] {
        assert!(
            verify(&key, &attached[..cut], None).is_err(),
            "cut at {cut}"
        );
    }
    let half = &armored[..armored.len() / 2];
    assert!(verify(&key, half, None).is_err());
    assert_eq!(
        verify(&key, &vec![b'A'; 2 << 20], None),
        Err(SignatureError::TooLarge(2 << 20))
    );
    // Random bytes must never panic.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for len in [1usize, 2, 7, 64, 300, 4096] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        assert!(verify(&key, &bytes, Some(PAYLOAD)).is_err());
    }
}

#[test]
fn kritis_style_attached_message_armored_as_signature() {
    let signer = Signer::new("K <k@example.com>");
    let binary = signer.sign(&["--sign"]);
    let mut armored = Vec::new();
    {
        use std::io::Write;
        let mut writer =
            openpgp::armor::Writer::new(&mut armored, openpgp::armor::Kind::Signature).unwrap();
        writer.write_all(&binary).unwrap();
        writer.finalize().unwrap();
    }
    assert!(armored.starts_with(b"-----BEGIN PGP SIGNATURE-----"));
    assert_eq!(verify(&signer.key, &armored, None).unwrap(), PAYLOAD);
}

#[test]
fn large_and_bomb_payloads() {
    let home = GpgHome::new();
    let fpr = home.gen_key("L <l@example.com>", "ed25519", "sign", "1y");
    let key = PgpPublicKey::from_armored(&home.export(&fpr)).unwrap();
    // Larger than sequoia's in-memory buffer: streamed, trusted only after the check.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let file = home.write("big", &big);
    let signed = home.gpg(&[
        "--local-user",
        &fpr,
        "--output",
        "-",
        "--compress-algo",
        "none",
        "--sign",
        &file,
    ]);
    assert_eq!(verify(&key, &signed, None).unwrap(), big);
    let at = signed.windows(64).position(|w| w == &big[..64]).unwrap();
    let mut tampered = signed.clone();
    tampered[at + 250_000] ^= 1;
    bad(verify(&key, &tampered, None));
    // 8 MiB of zeros compress to a few KiB; the signed payload is refused, not inflated.
    let zeros = home.write("zeros", &vec![0u8; 8 << 20]);
    let bomb = home.gpg(&[
        "--local-user",
        &fpr,
        "--output",
        "-",
        "--compress-algo",
        "zlib",
        "--sign",
        &zeros,
    ]);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    match verify(&key, &bomb, None) {
        Err(SignatureError::Malformed(reason)) => assert!(reason.contains("1 MiB"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

/// Messages assembled around a good signature to make either path trust data it does not sign:
/// the signature moved in front of other literal data, the literal data swapped, more literal
/// data before or after the signed message, the one-pass signature's hash changed, a detached
/// signature given a payload it does not sign. Binary and armored (as `PGP MESSAGE`, which the
/// streaming verifier reads as a message), both paths, same answer.
#[test]
fn assembled_messages_trust_only_signed_data() {
    use openpgp::packet::{Literal, OnePassSig, Packet};
    use openpgp::parse::Parse as _;
    use openpgp::serialize::SerializeInto as _;
    use openpgp::types::{DataFormat, HashAlgorithm};

    let signer = Signer::new("A <a@example.com>");
    let key = &signer.key;
    let packets = |bytes: &[u8]| -> Vec<Packet> {
        openpgp::PacketPile::from_bytes(bytes)
            .unwrap()
            .into_children()
            .collect()
    };
    let detached = packets(&signer.sign(&["--detach-sign"]));
    let [Packet::Signature(sig)] = &detached[..] else {
        panic!("{detached:?}")
    };
    let message = packets(&signer.sign(&["--compress-algo", "none", "--sign"]));
    let [
        Packet::OnePassSig(ops),
        Packet::Literal(_),
        Packet::Signature(_),
    ] = &message[..]
    else {
        panic!("{message:?}")
    };
    let evil = b"{\"critical\":{\"image\":{\"docker-manifest-digest\":\"sha256:bad\"}}}".to_vec();
    let mut literal = Literal::new(DataFormat::Binary);
    literal.set_body(evil.clone());
    let literal = Packet::Literal(literal);
    let OnePassSig::V3(ops) = ops else {
        panic!("{ops:?}")
    };
    let mut sha512 = ops.clone();
    sha512.set_hash_algo(HashAlgorithm::SHA512);

    let cases: Vec<(&str, Vec<Packet>)> = vec![
        (
            "signature first, other literal data",
            vec![Packet::Signature(sig.clone()), literal.clone()],
        ),
        (
            "literal data swapped",
            vec![message[0].clone(), literal.clone(), message[2].clone()],
        ),
        ("literal data after the message", {
            let mut m = message.clone();
            m.push(literal.clone());
            m
        }),
        ("literal data before the message", {
            let mut m = vec![literal.clone()];
            m.extend(message.iter().cloned());
            m
        }),
        (
            "one-pass signature names another hash",
            vec![
                Packet::OnePassSig(sha512.into()),
                message[1].clone(),
                message[2].clone(),
            ],
        ),
        ("a detached signature", detached.clone()),
        (
            "detached signature and a one-pass signature",
            vec![message[0].clone(), Packet::Signature(sig.clone())],
        ),
    ];
    for (name, packets) in cases {
        let binary: Vec<u8> = packets.iter().flat_map(|p| p.to_vec().unwrap()).collect();
        let mut armored = Vec::new();
        {
            use std::io::Write;
            let mut writer =
                openpgp::armor::Writer::new(&mut armored, openpgp::armor::Kind::Message).unwrap();
            writer.write_all(&binary).unwrap();
            writer.finalize().unwrap();
        }
        for (form, bytes) in [("binary", &binary), ("armored", &armored)] {
            for payload in [None, Some(&evil[..]), Some(PAYLOAD)] {
                let result = verify(key, bytes, payload);
                assert!(
                    !matches!(&result, Ok(signed) if signed[..] != *PAYLOAD),
                    "{name} ({form}, payload {}): trusted unsigned data",
                    payload.is_some()
                );
            }
        }
    }
    // The genuine pieces, put back together, are accepted by the direct path.
    let genuine: Vec<u8> = message.iter().flat_map(|p| p.to_vec().unwrap()).collect();
    assert_eq!(direct(key, &genuine, None), PAYLOAD);
    let genuine: Vec<u8> = detached.iter().flat_map(|p| p.to_vec().unwrap()).collect();
    assert_eq!(direct(key, &genuine, Some(PAYLOAD)), PAYLOAD);
    assert_eq!(key.verify_direct(&genuine, Some(&evil), now()), None);
}

/// Genuine signatures in inputs the streaming verifier refuses: a v3 signature packet beside
/// them (refused by the policy), a copy with a hash algorithm nobody implements, a cleartext
/// header line in an armor header, white space sequoia's armor reader does not skip. The direct
/// path must not accept any of them either (the `verify` helper compares both paths).
#[test]
fn direct_path_refuses_what_the_streaming_verifier_refuses() {
    use openpgp::packet::Packet;
    use openpgp::parse::Parse as _;

    let signer = Signer::new("O <o@example.com>");
    let key = &signer.key;
    let detached = signer.sign(&["--detach-sign"]);
    let message = signer.sign(&["--compress-algo", "none", "--sign"]);
    let armor = |kind, bytes: &[u8], headers: &[(&str, &str)]| {
        use std::io::Write;
        let mut out = Vec::new();
        let mut writer =
            openpgp::armor::Writer::with_headers(&mut out, kind, headers.iter().copied()).unwrap();
        writer.write_all(bytes).unwrap();
        writer.finalize().unwrap();
        out
    };
    let signature = openpgp::armor::Kind::Signature;
    let genuine = armor(signature, &detached, &[]);
    assert_eq!(direct(key, &genuine, Some(PAYLOAD)), PAYLOAD);
    let refused = |name: &str, input: &[u8], payload: Option<&[u8]>| {
        assert!(
            verify(key, input, payload).is_err(),
            "{name}: the streaming verifier accepts it"
        );
    };

    // A v3 signature packet: RSA, SHA-256, a one-byte MPI.
    let mut v3 = vec![3, 5, 0x00, 0x60, 0, 0, 0];
    v3.extend_from_slice(&[0x11; 8]);
    v3.extend_from_slice(&[1, 8, 0xab, 0xcd, 0x00, 0x08, 0xff]);
    let mut v3_packet = vec![0xc2, u8::try_from(v3.len()).unwrap()];
    v3_packet.extend_from_slice(&v3);
    assert!(
        matches!(Packet::from_bytes(&v3_packet), Ok(Packet::Signature(s)) if s.version() == 3),
        "the crafted packet is a v3 signature"
    );
    let with_v3 = [&detached[..], &v3_packet].concat();
    refused("v3 signature after a detached one", &with_v3, Some(PAYLOAD));
    refused(
        "v3 signature after a detached one, armored",
        &armor(signature, &with_v3, &[]),
        Some(PAYLOAD),
    );
    refused(
        "v3 signature before a signed message",
        &[&v3_packet[..], &message].concat(),
        None,
    );

    // A copy of the detached signature naming hash algorithm 110.
    let mut copy = detached.clone();
    let header = if copy[1] < 192 { 2 } else { 3 };
    assert_eq!(copy[header], 4, "a v4 signature");
    copy[header + 3] = 110;
    refused(
        "a signature with an unknown hash beside a good one",
        &[&detached[..], &copy].concat(),
        Some(PAYLOAD),
    );

    refused(
        "a cleartext header line in an armor header",
        &armor(
            signature,
            &detached,
            &[("Comment", "-----BEGIN PGP SIGNED MESSAGE-----")],
        ),
        Some(PAYLOAD),
    );

    // White space that is not ASCII white space to sequoia's armor reader.
    let text = String::from_utf8(genuine.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for odd in ["\u{b}", "\u{a0}"] {
        let mut edited: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        edited[2].push_str(odd);
        let input = edited.join("\n");
        let result = verify(key, input.as_bytes(), Some(PAYLOAD));
        assert!(
            !matches!(&result, Ok(signed) if signed[..] != *PAYLOAD),
            "{odd:?}: {result:?}"
        );
    }
}

/// A signature names two keys of its certificate with the same key material: A, which made it
/// and has expired since, and B, bound later and live. The streaming verifier checks the first
/// key that made the signature (A) at `now` and refuses; the direct path must not go on to B.
#[test]
fn only_the_key_that_made_a_signature_is_checked_now() {
    use std::time::{Duration, SystemTime};

    use openpgp::cert::prelude::*;
    use openpgp::packet::Packet;
    use openpgp::packet::signature::SignatureBuilder;
    use openpgp::packet::signature::subpacket::{Subpacket, SubpacketValue};
    use openpgp::serialize::SerializeInto as _;
    use openpgp::types::{KeyFlags, SignatureType};

    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800); // 2020-01-01
    let (cert, _) = CertBuilder::new()
        .set_creation_time(t0)
        .add_userid("Twice <twice@example.com>")
        .add_subkey(
            KeyFlags::empty().set_signing(),
            Duration::from_secs(86_400),
            None,
        )
        .generate()
        .unwrap();
    let a = cert.keys().subkeys().secret().next().unwrap().key().clone();
    let b_made = t0 + Duration::from_secs(1800);
    let mut b = a.clone();
    b.set_creation_time(b_made).unwrap();
    let mut primary = cert
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .unwrap()
        .into_keypair()
        .unwrap();
    let backsig = SignatureBuilder::new(SignatureType::PrimaryKeyBinding)
        .set_signature_creation_time(b_made)
        .unwrap()
        .sign_primary_key_binding(
            &mut b.clone().into_keypair().unwrap(),
            cert.primary_key().key(),
            &b,
        )
        .unwrap();
    let binding = SignatureBuilder::new(SignatureType::SubkeyBinding)
        .set_signature_creation_time(b_made)
        .unwrap()
        .set_key_flags(KeyFlags::empty().set_signing())
        .unwrap()
        .set_embedded_signature(backsig)
        .unwrap()
        .sign_subkey_binding(&mut primary, None, &b)
        .unwrap();
    let (cert, _) = cert
        .insert_packets(vec![
            Packet::from(b.clone().parts_into_public()),
            binding.into(),
        ])
        .unwrap();
    assert_eq!(cert.keys().subkeys().count(), 2);
    let key =
        PgpPublicKey::from_armored(&String::from_utf8(cert.armored().to_vec().unwrap()).unwrap())
            .unwrap();

    let made = t0 + Duration::from_secs(3600);
    let mut sig = SignatureBuilder::new(SignatureType::Binary)
        .set_signature_creation_time(made)
        .unwrap()
        .sign_message(&mut a.clone().into_keypair().unwrap(), PAYLOAD)
        .unwrap();
    sig.unhashed_area_mut()
        .add(Subpacket::new(SubpacketValue::IssuerFingerprint(b.fingerprint()), false).unwrap())
        .unwrap();
    let detached = Packet::Signature(sig).to_vec().unwrap();

    // While A is live, both paths accept.
    let then: jiff::Timestamp = "2020-01-01T02:00:00Z".parse().unwrap();
    assert_eq!(
        key.verify_direct(&detached, Some(PAYLOAD), then).unwrap(),
        PAYLOAD
    );
    assert_eq!(
        key.verify_streaming(&detached, Some(PAYLOAD), then)
            .unwrap(),
        PAYLOAD
    );
    // Now A has expired: refused, by both.
    assert_eq!(
        verify(&key, &detached, Some(PAYLOAD)),
        Err(SignatureError::KeyExpired)
    );
}
