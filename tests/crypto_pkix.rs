//! PKIX keys and signatures against real openssl, both directions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crypto_support;

use binauthz::crypto::pkix::{self, PkixPublicKey};
use binauthz::crypto::{
    KeyError, KeyKind, KeyShape, PublicKey, SIMPLESIGNING_DSSE_TYPE, SignError, SignatureAlgorithm,
    SignatureError, dsse_pae,
};
use crypto_support::{OpensslDir, PAYLOAD};

use SignatureAlgorithm as A;

fn algorithms_for(shape: KeyShape) -> Vec<SignatureAlgorithm> {
    SignatureAlgorithm::ALL
        .into_iter()
        .filter(|a| a.key_shape() == shape)
        .collect()
}

fn key(dir: &OpensslDir, name: &str, alg: SignatureAlgorithm) -> PkixPublicKey {
    PkixPublicKey::from_pem(&dir.read_string(&format!("{name}.pub")), alg, None).unwrap()
}

/// openssl signs the payload file and its PAE file; returns (raw signature, PAE signature).
fn openssl_sign(dir: &OpensslDir, name: &str, sign_args: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let payload = dir.write("payload.json", PAYLOAD);
    let pae = dir.write("payload.pae", &dsse_pae(SIMPLESIGNING_DSSE_TYPE, PAYLOAD));
    let key = dir.file(&format!("{name}.key"));
    let mut out = Vec::new();
    for input in [&payload, &pae] {
        let sig = dir.file("out.sig");
        let mut args = sign_args.to_vec();
        args.extend(["-sign", key.as_str(), "-out", sig.as_str(), input.as_str()]);
        dir.openssl(&args);
        out.push(dir.read("out.sig"));
    }
    let pae_sig = out.pop().unwrap();
    (out.pop().unwrap(), pae_sig)
}

/// Our signature (raw and PAE) verified by openssl with `verify_args` (dgst options).
fn openssl_verifies(
    dir: &OpensslDir,
    name: &str,
    signature: &[u8],
    pae: bool,
    verify_args: &[&str],
) -> bool {
    let input = if pae {
        dir.write("check.in", &dsse_pae(SIMPLESIGNING_DSSE_TYPE, PAYLOAD))
    } else {
        dir.write("check.in", PAYLOAD)
    };
    let sig = dir.write("check.sig", signature);
    let public = dir.file(&format!("{name}.pub"));
    let mut args = verify_args.to_vec();
    args.extend([
        "-verify",
        public.as_str(),
        "-signature",
        sig.as_str(),
        input.as_str(),
    ]);
    dir.openssl_ok(&args)
}

/// Verify raw and PAE signatures with every alias; tampering and truncation fail cleanly.
fn check_verifies(
    dir: &OpensslDir,
    name: &str,
    shape: KeyShape,
    algs: &[SignatureAlgorithm],
    raw: &[u8],
    pae: &[u8],
) {
    assert!(!algs.is_empty());
    for &alg in algs {
        let key = key(dir, name, alg);
        assert_eq!(key.id(), dir.ni_id(name), "default id");
        assert_eq!(
            key.verify(raw, Some(PAYLOAD)).unwrap(),
            PAYLOAD,
            "{alg} raw"
        );
        assert_eq!(
            key.verify(pae, Some(PAYLOAD)).unwrap(),
            PAYLOAD,
            "{alg} pae"
        );
        assert_eq!(key.verify(raw, None), Err(SignatureError::MissingPayload));
        let mut tampered = PAYLOAD.to_vec();
        tampered[50] ^= 1;
        let err = key.verify(raw, Some(&tampered)).unwrap_err();
        assert!(
            matches!(err, SignatureError::BadSignature(_)),
            "{alg}: {err}"
        );
        assert!(err.to_string().contains(key.id()), "{err}");
        let mut flipped = raw.to_vec();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x40;
        assert!(matches!(
            key.verify(&flipped, Some(PAYLOAD)),
            Err(SignatureError::BadSignature(_))
        ));
        for cut in [1, raw.len() / 2, raw.len() - 1] {
            let err = key.verify(&raw[..cut], Some(PAYLOAD)).unwrap_err();
            assert!(
                matches!(
                    err,
                    SignatureError::BadSignature(_) | SignatureError::Malformed(_)
                ),
                "{err}"
            );
        }
        let public = PublicKey::Pkix(key);
        assert_eq!(public.kind(), KeyKind::Pkix);
        assert_eq!(
            public
                .verify(pae, Some(PAYLOAD), jiff::Timestamp::now())
                .unwrap(),
            PAYLOAD
        );
        let facts = public.facts(jiff::Timestamp::now());
        assert_eq!(facts.kind, KeyKind::Pkix);
        assert!(facts.can_sign && facts.problems.is_empty());
    }
    // Every algorithm for another key shape is refused, naming both.
    let pem = dir.read_string(&format!("{name}.pub"));
    for alg in SignatureAlgorithm::ALL
        .into_iter()
        .filter(|a| a.key_shape() != shape)
    {
        let err = PkixPublicKey::from_pem(&pem, alg, None).unwrap_err();
        assert!(
            matches!(err, KeyError::AlgorithmMismatch { .. }),
            "{alg}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&shape.to_string()) && msg.contains(alg.as_str()),
            "{msg}"
        );
    }
}

#[test]
fn ecdsa_all_curves_both_directions() {
    let dir = OpensslDir::new();
    for (curve, shape, dgst) in [
        ("P-256", KeyShape::P256, "-sha256"),
        ("P-384", KeyShape::P384, "-sha384"),
        ("P-521", KeyShape::P521, "-sha512"),
    ] {
        let name = curve.to_lowercase();
        dir.genpkey(
            &name,
            &[
                "-algorithm",
                "EC",
                "-pkeyopt",
                &format!("ec_paramgen_curve:{curve}"),
            ],
        );
        let (raw, pae) = openssl_sign(&dir, &name, &["dgst", dgst]);
        assert_eq!(raw[0], 0x30, "DER");
        let algs = algorithms_for(shape);
        assert_eq!(algs.len(), 2, "name and alias");
        check_verifies(&dir, &name, shape, &algs, &raw, &pae);

        // The same key as SEC1 `EC PRIVATE KEY` and as openssl ecparam writes it.
        let sec1 = dir.file(&format!("{name}.sec1"));
        dir.openssl(&[
            "ec",
            "-in",
            &dir.file(&format!("{name}.key")),
            "-out",
            &sec1,
        ]);
        assert!(
            dir.read_string(&format!("{name}.sec1"))
                .contains("BEGIN EC PRIVATE KEY")
        );
        for (label, private) in [
            ("pkcs8", dir.read_string(&format!("{name}.key"))),
            ("sec1", dir.read_string(&format!("{name}.sec1"))),
        ] {
            for alg in &algs {
                for pae in [false, true] {
                    let signature = pkix::sign(&private, *alg, PAYLOAD, pae).unwrap();
                    assert!(
                        openssl_verifies(&dir, &name, &signature, pae, &["dgst", dgst]),
                        "{label} {alg} pae={pae}"
                    );
                    assert_eq!(
                        key(&dir, &name, *alg)
                            .verify(&signature, Some(PAYLOAD))
                            .unwrap(),
                        PAYLOAD
                    );
                    // The openssl check can fail: the other input does not verify.
                    assert!(!openssl_verifies(
                        &dir,
                        &name,
                        &signature,
                        !pae,
                        &["dgst", dgst]
                    ));
                }
            }
        }
        // Wrong key for the algorithm.
        let private = dir.read_string(&format!("{name}.key"));
        for alg in [
            A::EcdsaP256Sha256,
            A::EcdsaP384Sha384,
            A::EcdsaP521Sha512,
            A::RsaSignPkcs12048Sha256,
            A::Ed25519,
        ] {
            if alg.key_shape() == shape {
                continue;
            }
            let err = pkix::sign(&private, alg, PAYLOAD, false).unwrap_err();
            assert!(
                matches!(err, SignError::WrongKeyType { .. }),
                "{alg}: {err}"
            );
            assert!(err.to_string().contains(&shape.to_string()), "{err}");
        }
    }

    // ecparam -genkey writes `EC PARAMETERS` then `EC PRIVATE KEY`.
    let params_key = dir.file("ecparam.key");
    dir.openssl(&[
        "ecparam",
        "-genkey",
        "-name",
        "prime256v1",
        "-out",
        &params_key,
    ]);
    let text = dir.read_string("ecparam.key");
    assert!(text.contains("BEGIN EC PARAMETERS") && text.contains("BEGIN EC PRIVATE KEY"));
    dir.openssl(&[
        "pkey",
        "-in",
        &params_key,
        "-pubout",
        "-out",
        &dir.file("ecparam.pub"),
    ]);
    let signature = pkix::sign(&text, A::EcSignP256Sha256, PAYLOAD, false).unwrap();
    assert!(openssl_verifies(
        &dir,
        "ecparam",
        &signature,
        false,
        &["dgst", "-sha256"]
    ));
}

#[test]
fn docs_example_id_matches_openssl_formula() {
    let dir = OpensslDir::new();
    let pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEXnpuYEfvLl1kj4fjxViFRwY1a+zC\n5qzlf9LJIK+rnjq42tiKGyyXMbnZKJiYPPdMDGyltnkrABnztg2jJ48aYQ==\n-----END PUBLIC KEY-----\n";
    dir.write("docs.pub", pem.as_bytes());
    let expected = "ni:///sha-256;EwVxs8fNUAHq9FI2AMfh8WNIXVBuuTMeGtPH72U-I70";
    assert_eq!(dir.ni_id("docs"), expected);
    let key = PkixPublicKey::from_pem(pem, A::EcdsaP256Sha256, None).unwrap();
    assert_eq!(key.id(), expected);
    assert_eq!(PkixPublicKey::default_id(key.spki_der()), expected);
}

#[test]
fn rsa_pkcs1_and_pss_both_directions() {
    let dir = OpensslDir::new();
    for bits in [2048u32, 3072, 4096] {
        let name = format!("rsa{bits}");
        dir.genpkey(
            &name,
            &[
                "-algorithm",
                "RSA",
                "-pkeyopt",
                &format!("rsa_keygen_bits:{bits}"),
            ],
        );
        let shape = KeyShape::Rsa(bits);
        let private = dir.read_string(&format!("{name}.key"));
        // PKCS#1 `RSA PRIVATE KEY` as openssl -traditional writes it.
        let pkcs1_file = dir.file(&format!("{name}.pkcs1"));
        dir.openssl(&[
            "rsa",
            "-in",
            &dir.file(&format!("{name}.key")),
            "-traditional",
            "-out",
            &pkcs1_file,
        ]);
        let pkcs1 = dir.read_string(&format!("{name}.pkcs1"));
        assert!(pkcs1.contains("BEGIN RSA PRIVATE KEY"));

        let algs = algorithms_for(shape);
        for hash in ["-sha256", "-sha512"] {
            let want = |a: &SignatureAlgorithm| {
                a.hash().map(|h| h.output_len()) == Some(if hash == "-sha256" { 32 } else { 64 })
            };
            let pkcs1_algs: Vec<_> = algs
                .iter()
                .copied()
                .filter(|a| a.as_str().contains("PKCS1") && want(a))
                .collect();
            let pss_algs: Vec<_> = algs
                .iter()
                .copied()
                .filter(|a| a.as_str().contains("PSS") && want(a))
                .collect();
            if !pkcs1_algs.is_empty() {
                let (raw, pae) = openssl_sign(&dir, &name, &["dgst", hash]);
                check_verifies(&dir, &name, shape, &pkcs1_algs, &raw, &pae);
                // A PKCS#1 signature is not a PSS signature.
                for alg in &pss_algs {
                    assert!(matches!(
                        key(&dir, &name, *alg).verify(&raw, Some(PAYLOAD)),
                        Err(SignatureError::BadSignature(_))
                    ));
                }
                for alg in &pkcs1_algs {
                    for private in [&private, &pkcs1] {
                        for pae in [false, true] {
                            let signature = pkix::sign(private, *alg, PAYLOAD, pae).unwrap();
                            assert!(
                                openssl_verifies(&dir, &name, &signature, pae, &["dgst", hash]),
                                "{alg}"
                            );
                        }
                    }
                }
            }
            if !pss_algs.is_empty() {
                for saltlen in ["digest", "-1", "max", "-2", "0", "20"] {
                    let args = [
                        "dgst",
                        hash,
                        "-sigopt",
                        "rsa_padding_mode:pss",
                        "-sigopt",
                        &format!("rsa_pss_saltlen:{saltlen}"),
                    ];
                    let (raw, pae) = openssl_sign(&dir, &name, &args);
                    check_verifies(&dir, &name, shape, &pss_algs, &raw, &pae);
                }
                for alg in &pss_algs {
                    for pae in [false, true] {
                        let signature = pkix::sign(&pkcs1, *alg, PAYLOAD, pae).unwrap();
                        let args = [
                            "dgst",
                            hash,
                            "-sigopt",
                            "rsa_padding_mode:pss",
                            "-sigopt",
                            "rsa_pss_saltlen:digest",
                        ];
                        assert!(
                            openssl_verifies(&dir, &name, &signature, pae, &args),
                            "{alg}"
                        );
                        assert!(
                            key(&dir, &name, *alg)
                                .verify(&signature, Some(PAYLOAD))
                                .is_ok()
                        );
                    }
                }
            }
        }
        // Size is exact, as Google checks it.
        for other in [2048u32, 3072, 4096].into_iter().filter(|b| *b != bits) {
            for alg in algorithms_for(KeyShape::Rsa(other)) {
                let err = pkix::sign(&private, alg, PAYLOAD, false).unwrap_err();
                assert!(matches!(err, SignError::WrongKeyType { .. }), "{err}");
                assert!(
                    err.to_string().contains(&format!("RSA {bits}-bit")),
                    "{err}"
                );
            }
        }
        let err = pkix::sign(&private, A::EcdsaP256Sha256, PAYLOAD, false).unwrap_err();
        assert!(
            err.to_string().contains(&format!("an RSA {bits}-bit key")),
            "{err}"
        );
    }
}

#[test]
fn rsa_pss_restricted_key() {
    let dir = OpensslDir::new();
    dir.genpkey(
        "pss",
        &["-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let args = [
        "dgst",
        "-sha256",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:digest",
    ];
    let (raw, pae) = openssl_sign(&dir, "pss", &args);
    check_verifies(
        &dir,
        "pss",
        KeyShape::Rsa(2048),
        &[A::RsaPss2048Sha256, A::RsaSignPss2048Sha256],
        &raw,
        &pae,
    );
}

#[test]
fn ed25519_both_directions() {
    let dir = OpensslDir::new();
    dir.genpkey("ed", &["-algorithm", "ed25519"]);
    let payload = dir.write("payload.json", PAYLOAD);
    let pae_file = dir.write("payload.pae", &dsse_pae(SIMPLESIGNING_DSSE_TYPE, PAYLOAD));
    let key_file = dir.file("ed.key");
    let mut sigs = Vec::new();
    for input in [&payload, &pae_file] {
        let out = dir.file("ed.sig");
        dir.openssl(&[
            "pkeyutl", "-sign", "-rawin", "-inkey", &key_file, "-in", input, "-out", &out,
        ]);
        sigs.push(dir.read("ed.sig"));
    }
    check_verifies(
        &dir,
        "ed",
        KeyShape::Ed25519,
        &[A::Ed25519],
        &sigs[0],
        &sigs[1],
    );
    let private = dir.read_string("ed.key");
    for pae in [false, true] {
        let signature = pkix::sign(&private, A::Ed25519, PAYLOAD, pae).unwrap();
        assert_eq!(signature.len(), 64);
        let input = if pae { &pae_file } else { &payload };
        let sig_file = dir.write("ours.sig", &signature);
        dir.openssl(&[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            &dir.file("ed.pub"),
            "-rawin",
            "-in",
            input,
            "-sigfile",
            &sig_file,
        ]);
    }
    let err = pkix::sign(&private, A::EcdsaP256Sha256, PAYLOAD, false).unwrap_err();
    assert!(err.to_string().contains("Ed25519"), "{err}");
}

#[test]
fn bad_private_keys_are_clear() {
    let dir = OpensslDir::new();
    dir.genpkey(
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let encrypted = dir.file("enc.key");
    dir.openssl(&[
        "pkcs8",
        "-topk8",
        "-in",
        &dir.file("ec.key"),
        "-v2",
        "aes256",
        "-passout",
        "pass:x",
        "-out",
        &encrypted,
    ]);
    let cases: Vec<(String, &str)> = vec![
        (dir.read_string("enc.key"), "decrypt it"),
        (dir.read_string("ec.pub"), "public key"),
        (String::new(), "empty"),
        ("garbage".to_string(), "no `-----BEGIN PRIVATE KEY-----`"),
        (
            "-----BEGIN PRIVATE KEY-----\nAAAA\n".to_string(),
            "no `-----END",
        ),
        ("x".repeat(2 << 20), "1 MiB"),
        (
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nAAAA\n-----END PGP PRIVATE KEY BLOCK-----\n"
                .to_string(),
            "OpenPGP",
        ),
        (
            format!("{}{}", dir.read_string("ec.key"), dir.read_string("ec.key")),
            "2 keys",
        ),
    ];
    for (input, want) in cases {
        let err = pkix::sign(&input, A::EcdsaP256Sha256, PAYLOAD, false).unwrap_err();
        assert!(err.to_string().contains(want), "want {want:?} in {err}");
    }
    let broken = dir.read_string("ec.key").replacen("M", "A", 1);
    assert!(pkix::sign(&broken, A::EcdsaP256Sha256, PAYLOAD, false).is_err());
}

#[test]
fn bad_public_keys_are_clear() {
    let dir = OpensslDir::new();
    dir.genpkey(
        "k1",
        &[
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:secp256k1",
        ],
    );
    let err =
        PkixPublicKey::from_pem(&dir.read_string("k1.pub"), A::EcdsaP256Sha256, None).unwrap_err();
    assert!(matches!(err, KeyError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("secp256k1"), "{err}");
    dir.genpkey("ed448", &["-algorithm", "ed448"]);
    let err = PkixPublicKey::from_pem(&dir.read_string("ed448.pub"), A::Ed25519, None).unwrap_err();
    assert!(err.to_string().contains("Ed448"), "{err}");
    // A self-signed certificate is not a public key, but the fix is named.
    dir.genpkey(
        "p",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let cert = dir.file("p.crt");
    dir.openssl(&[
        "req",
        "-new",
        "-x509",
        "-key",
        &dir.file("p.key"),
        "-subj",
        "/CN=t",
        "-days",
        "1",
        "-out",
        &cert,
    ]);
    let err =
        PkixPublicKey::from_pem(&dir.read_string("p.crt"), A::EcdsaP256Sha256, None).unwrap_err();
    assert!(err.to_string().contains("openssl x509"), "{err}");
    // Garbage signatures never panic.
    let key = key(&dir, "p", A::EcdsaP256Sha256);
    for bad in [
        &b""[..],
        b"\x30",
        b"\x30\x81",
        b"\x30\x06\x02\x01\x01\x02\x01\x01",
        &[0x30; 100],
    ] {
        assert!(key.verify(bad, Some(PAYLOAD)).is_err());
    }
    assert_eq!(
        key.verify(&vec![0x30; 2 << 20], Some(PAYLOAD)),
        Err(SignatureError::TooLarge(2 << 20))
    );
}
