//! Signature verification: our pipeline next to the raw crypto call, same key, same messages.
//!
//! Sequoia caches every signature it verified (a process-wide table keyed by signature, digest
//! and key), so verifying one PGP signature twice measures a table lookup, not RSA. The PGP
//! rows therefore use a fresh signature for every call of our code (each over its own payload,
//! as each attestation names its own digest), and the raw row calls the uncached primitive
//! (`Key::verify` after hashing payload and signature trailer, exactly what sequoia does on a
//! cache miss) over the same signatures. aws-lc-rs caches nothing. The table's ratio comes from
//! rounds alternating the raw call and `verify::verify` ([`harness::paired`]).

use std::hint::black_box;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{self as sig, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sequoia_openpgp as openpgp;

use openpgp::cert::prelude::*;
use openpgp::crypto::hash::Hash as _;
use openpgp::parse::Parse as _;
use openpgp::serialize::SerializeInto as _;
use openpgp::types::KeyFlags;

use binauthz::crd::{self, AttestorPublicKey, AttestorSpec, ImageAttestationSpec};
use binauthz::crypto::pgp::{self, PgpPublicKey, PgpSignMode};
use binauthz::crypto::pkix::{self, PkixPublicKey};
use binauthz::crypto::{PublicKey, SignatureAlgorithm};
use binauthz::payload;
use binauthz::verify::{self, AttestorKeys};

use crate::harness::{self, Report, Rng, Stats, Timing};

const ATTESTOR: &str = "bench";

/// One signed attestation: payload, signature as stored in the attestation, the whole spec.
struct Signed {
    payload: Vec<u8>,
    signature: Vec<u8>,
    spec: ImageAttestationSpec,
}

/// The figures of one algorithm.
struct Line {
    name: &'static str,
    raw: Stats,
    key_verify: Stats,
    full_verify: Stats,
    /// `verify::verify` over the raw call, from alternating rounds ([`harness::paired`]).
    over_raw: f64,
    raw_call: &'static str,
}

/// Run the section; returns RSA-2048 PGP `verify::verify` signatures per second, and its cost
/// over the raw crypto call.
pub fn run(timing: &Timing, report: &mut Report) -> (f64, f64) {
    let mut rng = Rng::new(0x5eed_0001);
    let mut lines = Vec::new();
    for (name, suite, per_round, attached) in [
        ("PGP RSA-2048", CipherSuite::RSA2k, 200, true),
        ("PGP RSA-4096", CipherSuite::RSA4k, 60, false),
        ("PGP Ed25519", CipherSuite::Cv25519, 400, false),
    ] {
        lines.push(pgp_line(
            timing, report, &mut rng, name, suite, per_round, attached,
        ));
    }
    lines.push(pkix_line(
        timing,
        report,
        &mut rng,
        "PKIX ECDSA P-256",
        SignatureAlgorithm::EcdsaP256Sha256,
    ));
    lines.push(pkix_line(
        timing,
        report,
        &mut rng,
        "PKIX RSA-PSS-2048",
        SignatureAlgorithm::RsaPss2048Sha256,
    ));
    report.table(comparison_table(&lines));
    (lines[0].full_verify.per_second(), lines[0].over_raw)
}

fn comparison_table(lines: &[Line]) -> String {
    let mut out = String::from(
        "Signature verification, per second on one core (median of rounds; same key and messages in a row;\nverify/raw: median ratio of alternating rounds of the two)\n",
    );
    out.push_str(&format!(
        "{:<18} {:>11} {:>18} {:>15} {:>11}  raw call\n",
        "algorithm", "raw crypto", "PublicKey::verify", "verify::verify", "verify/raw"
    ));
    out.push_str(&format!("{}\n", "-".repeat(128)));
    for l in lines {
        out.push_str(&format!(
            "{:<18} {:>11} {:>18} {:>15} {:>10.2}x  {}\n",
            l.name,
            harness::per_second(l.raw.per_second()),
            harness::per_second(l.key_verify.per_second()),
            harness::per_second(l.full_verify.per_second()),
            l.over_raw,
            l.raw_call
        ));
    }
    out
}

fn artifact_url(rng: &mut Rng, i: usize) -> String {
    format!(
        "us-docker.pkg.dev/bench-project/apps/service-{i}@sha256:{}",
        hex::encode(rng.bytes32())
    )
}

fn attestor_keys(key: AttestorPublicKey) -> AttestorKeys {
    let spec = AttestorSpec {
        description: None,
        public_keys: vec![key],
        registry_signatures: None,
    };
    let keys = AttestorKeys::load(ATTESTOR, &spec);
    if let Some(problem) = keys.keys.iter().find_map(|k| k.key.as_ref().err()) {
        panic!("bench key does not load: {problem}");
    }
    keys
}

fn spec(url: String, payload: &[u8], key_id: &str, signature: String) -> ImageAttestationSpec {
    ImageAttestationSpec {
        artifact_url: url,
        attestor: ATTESTOR.into(),
        serialized_payload: Some(STANDARD.encode(payload)),
        signatures: vec![crd::Signature {
            public_key_id: key_id.into(),
            signature,
        }],
    }
}

fn pgp_line(
    timing: &Timing,
    report: &mut Report,
    rng: &mut Rng,
    name: &'static str,
    suite: CipherSuite,
    per_round: usize,
    attached: bool,
) -> Line {
    let per_round = if timing.quick() {
        per_round / 10
    } else {
        per_round
    };
    let rounds = timing.rounds;
    let warm = per_round / 4 + 1;
    let per_set = warm + rounds * per_round;

    let started = std::time::Instant::now();
    let (cert, _revocation) = CertBuilder::new()
        .set_cipher_suite(suite)
        .add_userid("Bench Attestor <bench@example.com>")
        .set_primary_key_flags(KeyFlags::empty().set_certification().set_signing())
        .generate()
        .expect("generate PGP key");
    let secret = cert.as_tsk().armored().to_vec().expect("armor secret key");
    let public = String::from_utf8(cert.armored().to_vec().expect("armor key")).expect("utf8");
    let key = PgpPublicKey::from_armored(&public).expect("parse our own key");
    let fingerprint = key.fingerprint().to_owned();
    let public_key = PublicKey::Pgp(key);
    let attestor = attestor_keys(AttestorPublicKey {
        ascii_armored_pgp_public_key: Some(public),
        ..AttestorPublicKey::default()
    });

    // Three disjoint sets of fresh signatures: one for PublicKey::verify (and the raw call),
    // one for verify::verify, one for the rounds alternating the raw call and verify::verify.
    // Signed by our own signer, on both cores.
    let urls: Vec<String> = (0..3 * per_set).map(|i| artifact_url(rng, i)).collect();
    let signed = sign_all(&urls, |payload| {
        pgp::sign(&secret, None, payload, PgpSignMode::Detached).expect("sign")
    });
    let signed: Vec<Signed> = signed
        .into_iter()
        .zip(urls)
        .map(|((payload, signature), url)| {
            let text = String::from_utf8(signature.clone()).expect("armored");
            let spec = spec(url, &payload, &fingerprint, text);
            Signed {
                payload,
                signature,
                spec,
            }
        })
        .collect();
    let (set_a, rest) = signed.split_at(per_set);
    let (set_b, set_c) = rest.split_at(per_set);
    eprintln!(
        "  [{name}: key and {} signatures made in {:.1} s]",
        signed.len(),
        started.elapsed().as_secs_f64()
    );

    // The raw primitive, over set A's signatures, uncached.
    let signing_key = cert.primary_key().key().clone();
    let packets: Vec<openpgp::packet::Signature> = set_a
        .iter()
        .map(|s| match openpgp::Packet::from_bytes(&s.signature) {
            Ok(openpgp::Packet::Signature(sig)) => sig,
            other => panic!("not a signature packet: {other:?}"),
        })
        .collect();
    let raw_call = |i: usize| {
        let k = i % packets.len();
        let sig = &packets[k];
        let mut hash = sig
            .hash_algo()
            .context()
            .expect("hash")
            .for_signature(sig.version());
        hash.update(&set_a[k].payload);
        sig.hash(&mut hash).expect("hash trailer");
        let digest = hash.into_digest().expect("digest");
        let ok = signing_key.verify(sig.mpis(), sig.hash_algo(), &digest);
        assert!(black_box(ok).is_ok(), "raw verification failed");
    };
    let raw = harness::timed(timing, raw_call);
    report.time(
        "verify",
        format!("{name} raw: hash + Key::verify (nettle)"),
        raw,
        "",
    );

    let now = jiff::Timestamp::now();
    for s in &set_a[..warm] {
        assert!(
            public_key
                .verify(&s.signature, Some(&s.payload), now)
                .is_ok()
        );
    }
    let key_verify = harness::fixed(warm, rounds, per_round, |i| {
        let s = &set_a[i];
        let ok = public_key.verify(black_box(&s.signature), Some(&s.payload), now);
        assert!(black_box(ok).is_ok(), "PublicKey::verify failed");
    });
    report.time(
        "verify",
        format!("{name} PublicKey::verify, detached, fresh signatures"),
        key_verify,
        format!("{:.2}x raw", key_verify.median_ns / raw.median_ns),
    );

    for s in &set_b[..warm] {
        assert!(verify::verify(&s.spec, Some(&attestor), now).is_ok());
    }
    let full_verify = harness::fixed(warm, rounds, per_round, |i| {
        let ok = verify::verify(black_box(&set_b[i].spec), Some(&attestor), now);
        assert!(black_box(ok).is_ok(), "verify::verify failed");
    });
    report.time(
        "verify",
        format!("{name} verify::verify, detached, fresh signatures"),
        full_verify,
        format!("{:.2}x raw", full_verify.median_ns / raw.median_ns),
    );
    for s in &set_c[..warm] {
        assert!(verify::verify(&s.spec, Some(&attestor), now).is_ok());
    }
    let over_raw = harness::paired(warm, rounds, per_round, raw_call, |i| {
        let ok = verify::verify(black_box(&set_c[i].spec), Some(&attestor), now);
        assert!(black_box(ok).is_ok(), "verify::verify failed");
    });

    if attached {
        // gcloud's documented flow: `gpg --armor --sign`, the payload inside the message.
        let urls: Vec<String> = (0..per_set).map(|i| artifact_url(rng, i)).collect();
        let specs: Vec<ImageAttestationSpec> = sign_all(&urls, |payload| {
            pgp::sign(&secret, None, payload, PgpSignMode::Attached).expect("sign")
        })
        .into_iter()
        .zip(urls)
        .map(|((_, signature), url)| {
            let text = String::from_utf8(signature).expect("armored");
            ImageAttestationSpec {
                serialized_payload: None,
                ..spec(url, b"", &fingerprint, text)
            }
        })
        .collect();
        // Signatures made after `now` are not valid yet; take the time again.
        let now = jiff::Timestamp::now();
        for s in &specs[..warm] {
            assert!(verify::verify(s, Some(&attestor), now).is_ok());
        }
        let stats = harness::fixed(warm, rounds, per_round, |i| {
            let ok = verify::verify(black_box(&specs[i]), Some(&attestor), now);
            if let Err(e) = black_box(ok) {
                panic!("verify::verify failed on attached message {i}: {e}");
            }
        });
        report.time(
            "verify",
            format!("{name} verify::verify, attached message, fresh signatures"),
            stats,
            format!("{:.2}x raw", stats.median_ns / raw.median_ns),
        );
    }

    // Set A again: every signature is now in sequoia's cache (what a re-verification after an
    // unrelated change costs).
    let cached = harness::timed(timing, |i| {
        let s = &set_a[i % set_a.len()];
        let ok = public_key.verify(black_box(&s.signature), Some(&s.payload), now);
        assert!(black_box(ok).is_ok());
    });
    report.time(
        "verify",
        format!("{name} PublicKey::verify, same signatures again"),
        cached,
        "sequoia's verification cache hit",
    );

    Line {
        name,
        raw,
        key_verify,
        full_verify,
        over_raw,
        raw_call: "sequoia Signature::hash + Key::verify (nettle), no cache",
    }
}

/// Sign every URL's payload on two threads; returns (payload, signature) in URL order.
fn sign_all(urls: &[String], sign: impl Fn(&[u8]) -> Vec<u8> + Sync) -> Vec<(Vec<u8>, Vec<u8>)> {
    let half = urls.len().div_ceil(2);
    let sign = &sign;
    std::thread::scope(|scope| {
        let workers: Vec<_> = urls
            .chunks(half.max(1))
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|url| {
                            let payload = payload::create(url).expect("payload");
                            let signature = sign(&payload);
                            (payload, signature)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("signing thread"))
            .collect()
    })
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pkix_line(
    timing: &Timing,
    report: &mut Report,
    rng: &mut Rng,
    name: &'static str,
    algorithm: SignatureAlgorithm,
) -> Line {
    // Key pair from aws-lc-rs; `raw_key` is what UnparsedPublicKey takes (EC point, PKCS#1).
    let (private_pem, spki_der, raw_key, raw_alg): (
        String,
        Vec<u8>,
        Vec<u8>,
        &'static dyn sig::VerificationAlgorithm,
    ) = match algorithm {
        SignatureAlgorithm::EcdsaP256Sha256 => {
            let pair = sig::EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_ASN1_SIGNING)
                .expect("generate P-256");
            let pkcs8 = pair.to_pkcs8v1().expect("pkcs8");
            let spki = pair.public_key().as_der().expect("spki");
            (
                pem("PRIVATE KEY", pkcs8.as_ref()),
                spki.as_ref().to_vec(),
                pair.public_key().as_ref().to_vec(),
                &sig::ECDSA_P256_SHA256_ASN1,
            )
        }
        SignatureAlgorithm::RsaPss2048Sha256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .expect("generate RSA-2048");
            let pkcs8: aws_lc_rs::encoding::Pkcs8V1Der<'_> = pair.as_der().expect("pkcs8");
            let spki = pair.public_key().as_der().expect("spki");
            (
                pem("PRIVATE KEY", pkcs8.as_ref()),
                spki.as_ref().to_vec(),
                pair.public_key().as_ref().to_vec(),
                &sig::RSA_PSS_2048_8192_SHA256,
            )
        }
        other => panic!("no bench for {other}"),
    };
    let public_pem = pem("PUBLIC KEY", &spki_der);
    let key = PkixPublicKey::from_pem(&public_pem, algorithm, None).expect("parse our own key");
    let key_id = key.id().to_owned();
    let public_key = PublicKey::Pkix(key);
    let attestor = attestor_keys(AttestorPublicKey {
        pkix_public_key: Some(crd::PkixPublicKey {
            public_key_pem: public_pem,
            signature_algorithm: algorithm,
        }),
        ..AttestorPublicKey::default()
    });

    let urls: Vec<String> = (0..32).map(|i| artifact_url(rng, i)).collect();
    let signed: Vec<Signed> = sign_all(&urls, |payload| {
        pkix::sign(&private_pem, algorithm, payload, false).expect("sign")
    })
    .into_iter()
    .zip(urls)
    .map(|((payload, signature), url)| {
        let spec = spec(url, &payload, &key_id, STANDARD.encode(&signature));
        Signed {
            payload,
            signature,
            spec,
        }
    })
    .collect();
    let n = signed.len();
    let now = jiff::Timestamp::now();

    let raw_call = |i: usize| {
        let s = &signed[i % n];
        let ok = sig::UnparsedPublicKey::new(raw_alg, &raw_key).verify(&s.payload, &s.signature);
        assert!(black_box(ok).is_ok(), "raw verification failed");
    };
    let raw = harness::timed(timing, raw_call);
    report.time(
        "verify",
        format!("{name} raw: UnparsedPublicKey::verify (aws-lc-rs)"),
        raw,
        "",
    );
    let key_verify = harness::timed(timing, |i| {
        let s = &signed[i % n];
        let ok = public_key.verify(black_box(&s.signature), Some(&s.payload), now);
        assert!(black_box(ok).is_ok(), "PublicKey::verify failed");
    });
    report.time(
        "verify",
        format!("{name} PublicKey::verify"),
        key_verify,
        format!("{:.2}x raw", key_verify.median_ns / raw.median_ns),
    );
    let full_call = |i: usize| {
        let ok = verify::verify(black_box(&signed[i % n].spec), Some(&attestor), now);
        assert!(black_box(ok).is_ok(), "verify::verify failed");
    };
    let full_verify = harness::timed(timing, full_call);
    report.time(
        "verify",
        format!("{name} verify::verify"),
        full_verify,
        format!("{:.2}x raw", full_verify.median_ns / raw.median_ns),
    );
    let over_raw = harness::paired(
        0,
        timing.rounds,
        full_verify.ops_per_round,
        raw_call,
        full_call,
    );
    Line {
        name,
        raw,
        key_verify,
        full_verify,
        over_raw,
        raw_call: "aws-lc-rs UnparsedPublicKey::verify (hash + verify)",
    }
}
