//! OpenPGP keys and signatures (sequoia, standard policy).
//!
//! Accepted signatures: attached messages (`gpg --sign`, armored or binary, compressed or not,
//! also Kritis' attached messages armored as `PGP SIGNATURE`), cleartext-signed messages
//! (`gpg --clearsign`) and detached signatures (`gpg --detach-sign`) over a given payload.
//! Signatures by valid signing subkeys count for the certificate.
//!
//! Validity: sequoia checks that the signing key was live and bound when the signature was made.
//! On top of that the certificate and the signing (sub)key must be unrevoked and unexpired at
//! verification time (`now`): a revoked key — for any reason, soft revocations included — or an
//! expired one stops vouching for every attestation it made.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::SystemTime;

use sequoia_openpgp as openpgp;

use openpgp::cert::prelude::*;
use openpgp::crypto::Password;
use openpgp::packet::{Key, Packet, key};
use openpgp::parse::stream::{
    DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationError, VerificationHelper,
    VerifierBuilder,
};
use openpgp::parse::{PacketParser, PacketParserResult, Parse};
use openpgp::policy::{Policy, StandardPolicy};
use openpgp::serialize::stream::{Armorer, LiteralWriter, Message, Signer};
use openpgp::types::RevocationStatus;
use openpgp::{Cert, KeyHandle};

mod direct;

use super::{
    KeyError, KeyFacts, KeyKind, KeyProblem, MAX_INPUT_LEN, SignError, SignatureError,
    to_system_time, to_timestamp,
};

const KEY_INPUT: &str = "asciiArmoredPgpPublicKey";
const MESSAGE_BUFFER: usize = 64 * 1024;
const KEY_FIX: &str = "give the whole output of `gpg --armor --export FINGERPRINT`";

/// An OpenPGP certificate (public parts only), named by its v4 primary-key fingerprint.
#[derive(Clone, Debug)]
pub struct PgpPublicKey {
    /// Shared: keys are cloned into indexes, certificates are large.
    cert: Arc<Cert>,
    fingerprint: String,
    had_secret: bool,
}

impl PgpPublicKey {
    /// Parse one ASCII-armored certificate (LF or CRLF). A secret key block is accepted but only
    /// its public part is kept, and [`KeyProblem::SecretKeyMaterial`] is reported in the facts.
    pub fn from_armored(text: &str) -> Result<Self, KeyError> {
        if text.len() > MAX_INPUT_LEN {
            return Err(KeyError::TooLarge {
                input: KEY_INPUT,
                len: text.len(),
            });
        }
        if text.trim().is_empty() {
            return Err(KeyError::Empty {
                input: KEY_INPUT,
                fix: KEY_FIX,
            });
        }
        let headers: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix("-----BEGIN ")?.strip_suffix("-----"))
            .collect();
        let key_blocks = headers
            .iter()
            .filter(|h| **h == "PGP PUBLIC KEY BLOCK" || **h == "PGP PRIVATE KEY BLOCK")
            .count();
        match headers.first() {
            None => {
                return Err(KeyError::Malformed {
                    input: KEY_INPUT,
                    reason: "it is not ASCII-armored (there is no `-----BEGIN PGP PUBLIC KEY BLOCK-----` line)".to_string(),
                    fix: KEY_FIX,
                });
            }
            Some(&"PGP PUBLIC KEY BLOCK" | &"PGP PRIVATE KEY BLOCK") => {}
            Some(other) => {
                let (found, fix) = match *other {
                    "PGP MESSAGE" | "PGP SIGNATURE" | "PGP SIGNED MESSAGE" => (
                        format!("an OpenPGP message or signature (`{other}`)"),
                        format!(
                            "signatures belong in attestations; for the key, {KEY_FIX}"
                        ),
                    ),
                    pem => (
                        format!("a PEM `{pem}` block"),
                        "PEM keys are PKIX keys: put them in pkixPublicKey.publicKeyPem with a signatureAlgorithm".to_string(),
                    ),
                };
                return Err(KeyError::WrongKind {
                    input: KEY_INPUT,
                    found,
                    expected: "an OpenPGP public key",
                    fix,
                });
            }
        }
        if key_blocks > 1 {
            return Err(KeyError::SeveralKeys {
                input: KEY_INPUT,
                count: key_blocks,
                names: format!("{key_blocks} armored key blocks"),
                fix: "one attestor public key per PGP key; export each with `gpg --armor --export FINGERPRINT`",
            });
        }
        let certs = parse_certs(text.as_bytes()).map_err(|reason| KeyError::Malformed {
            input: KEY_INPUT,
            reason,
            fix: KEY_FIX,
        })?;
        let cert = match <[Cert; 1]>::try_from(certs) {
            Ok([cert]) => cert,
            Err(certs) if certs.is_empty() => {
                return Err(KeyError::Malformed {
                    input: KEY_INPUT,
                    reason: "the armored block holds no certificate".to_string(),
                    fix: KEY_FIX,
                });
            }
            Err(certs) => {
                return Err(KeyError::SeveralKeys {
                    input: KEY_INPUT,
                    count: certs.len(),
                    names: certs
                        .iter()
                        .map(|c| c.fingerprint().to_hex())
                        .collect::<Vec<_>>()
                        .join(", "),
                    fix: "one attestor public key per PGP key; export each with `gpg --armor --export FINGERPRINT`",
                });
            }
        };
        let version = cert.primary_key().key().version();
        if version != 4 {
            return Err(KeyError::Unsupported {
                input: KEY_INPUT,
                reason: format!(
                    "OpenPGP v{version} keys are not supported: key ids are v4 fingerprints (40 hex digits); use a v4 key (gpg 2.2/2.4 default)"
                ),
            });
        }
        let had_secret = cert.is_tsk();
        let cert = cert.strip_secret_key_material();
        let fingerprint = cert.fingerprint().to_hex();
        Ok(Self {
            cert: Arc::new(cert),
            fingerprint,
            had_secret,
        })
    }

    /// 40 upper-case hex digits, the v4 fingerprint of the primary key (the key id).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The parsed certificate.
    pub fn cert(&self) -> &Cert {
        &self.cert
    }

    /// Whether the armored text held secret key material (which was dropped).
    pub fn had_secret_key_material(&self) -> bool {
        self.had_secret
    }

    /// Algorithm, validity and problems of the certificate at `now` under the standard policy.
    pub fn facts(&self, now: jiff::Timestamp) -> KeyFacts {
        let policy = StandardPolicy::new();
        let time = to_system_time(now);
        let primary = self.cert.primary_key();
        let created_at = primary.key().creation_time();
        let mut facts = KeyFacts {
            id: self.fingerprint.clone(),
            kind: KeyKind::Pgp,
            algorithm: describe_key(primary.key()),
            fingerprint: self.fingerprint.clone(),
            created: to_timestamp(created_at),
            expires: None,
            can_sign: false,
            problems: Vec::new(),
        };
        if self.had_secret {
            facts.problems.push(KeyProblem::SecretKeyMaterial);
        }
        match self.cert.with_policy(&policy, time) {
            Ok(valid) => {
                facts.expires = valid
                    .primary_key()
                    .key_expiration_time()
                    .and_then(to_timestamp);
                let revoked = matches!(valid.revocation_status(), RevocationStatus::Revoked(_));
                let alive = valid.alive().is_ok();
                if revoked {
                    facts.problems.push(KeyProblem::Revoked);
                }
                if !alive {
                    facts.problems.push(if created_at > time {
                        KeyProblem::NotYetValid
                    } else {
                        KeyProblem::Expired
                    });
                }
                facts.can_sign = !revoked
                    && alive
                    && valid
                        .keys()
                        .supported()
                        .alive()
                        .revoked(false)
                        .for_signing()
                        .next()
                        .is_some();
                if !facts.can_sign && !revoked && alive {
                    facts.problems.push(KeyProblem::CannotSign);
                }
            }
            Err(error) => {
                if created_at > time {
                    facts.problems.push(KeyProblem::NotYetValid);
                } else if matches!(
                    self.cert.revocation_status(&policy, time),
                    RevocationStatus::Revoked(_)
                ) {
                    facts.problems.push(KeyProblem::Revoked);
                } else if matches!(
                    error.downcast_ref::<openpgp::Error>(),
                    Some(openpgp::Error::PolicyViolation(..))
                ) {
                    facts
                        .problems
                        .push(KeyProblem::WeakAlgorithm(format!("{error:#}")));
                } else {
                    facts
                        .problems
                        .push(KeyProblem::Unusable(format!("{error:#}")));
                }
            }
        }
        facts
    }

    /// Verify an attached, cleartext-signed or (with `payload`) detached signature made by this
    /// certificate; returns the signed bytes (the literal data, or `payload` when detached).
    ///
    /// The common shapes are verified by [`direct`]; anything it does not accept goes through
    /// sequoia's streaming verifier ([`Self::verify_streaming`]), which gives the verdict and
    /// its reason. Both give the same result for every input.
    pub fn verify(
        &self,
        signature: &[u8],
        payload: Option<&[u8]>,
        now: jiff::Timestamp,
    ) -> Result<Vec<u8>, SignatureError> {
        check_input(signature)?;
        match self.verify_direct(signature, payload, now) {
            Some(signed) => Ok(signed),
            None => self.streaming(signature, payload, &StandardPolicy::new(), now),
        }
    }

    /// The direct path alone: the signed bytes when it accepts, `None` when it does not
    /// (rejected, or a shape it leaves to the streaming verifier).
    pub fn verify_direct(
        &self,
        signature: &[u8],
        payload: Option<&[u8]>,
        now: jiff::Timestamp,
    ) -> Option<Vec<u8>> {
        if signature.len() > MAX_INPUT_LEN {
            return None;
        }
        direct::accept(
            &self.cert,
            &StandardPolicy::new(),
            signature,
            payload,
            to_system_time(now),
        )
    }

    /// [`Self::verify`] through sequoia's streaming verifier alone: the reference the direct
    /// path is checked against (same results, three times the cost on a good signature).
    pub fn verify_streaming(
        &self,
        signature: &[u8],
        payload: Option<&[u8]>,
        now: jiff::Timestamp,
    ) -> Result<Vec<u8>, SignatureError> {
        check_input(signature)?;
        self.streaming(signature, payload, &StandardPolicy::new(), now)
    }

    fn streaming(
        &self,
        signature: &[u8],
        payload: Option<&[u8]>,
        policy: &StandardPolicy<'_>,
        now: jiff::Timestamp,
    ) -> Result<Vec<u8>, SignatureError> {
        let time = to_system_time(now);
        let outcome = RefCell::new(None);
        let helper = Helper {
            cert: &self.cert,
            policy,
            now: time,
            outcome: &outcome,
        };
        let result = match classify(signature)? {
            Form::Detached => {
                let payload = payload.ok_or(SignatureError::MissingPayload)?;
                verify_detached(signature, payload, policy, time, helper).map(|()| payload.to_vec())
            }
            Form::Message => verify_message(signature, policy, time, helper),
        };
        match (outcome.into_inner(), result) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(())), Ok(data)) if data.len() <= MAX_INPUT_LEN => Ok(data),
            (_, Ok(data)) if data.len() > MAX_INPUT_LEN => Err(SignatureError::Malformed(
                "the signed payload is larger than 1 MiB".to_string(),
            )),
            (_, Err(e)) => Err(SignatureError::Malformed(format!(
                "the signature or signed message does not parse: {}",
                reason(&e)
            ))),
            (_, Ok(_)) => Err(SignatureError::BadSignature(
                "the message carries no signature".to_string(),
            )),
        }
    }
}

/// Upper-case 40-hex form of a fingerprint given with any case, spaces or `0x`; `None` if it is
/// not 40 hex digits.
pub fn normalize_fingerprint(id: &str) -> Option<String> {
    let trimmed = id.trim();
    let hex: String = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    (hex.len() == 40 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_uppercase())
}

/// How to produce a PGP signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PgpSignMode {
    /// A signed message holding the payload (`gpg --armor --sign`), armored `PGP MESSAGE`.
    Attached,
    /// A detached signature (`gpg --armor --detach-sign`), armored `PGP SIGNATURE`.
    Detached,
    /// A cleartext-signed message (`gpg --clearsign`); trailing whitespace on lines is not signed.
    Clearsign,
}

/// Sign `payload` with the newest live signing-capable (sub)key of a secret key (armored or
/// binary, as `gpg --export-secret-keys` writes it); returns armored output.
pub fn sign(
    secret_key: &[u8],
    passphrase: Option<&str>,
    payload: &[u8],
    mode: PgpSignMode,
) -> Result<Vec<u8>, SignError> {
    if secret_key.len() > MAX_INPUT_LEN {
        return Err(SignError::TooLarge(secret_key.len()));
    }
    if secret_key.iter().all(u8::is_ascii_whitespace) {
        return Err(SignError::Empty(
            "export the secret key with gpg --armor --export-secret-keys FINGERPRINT > key.asc",
        ));
    }
    let certs = parse_certs(secret_key).map_err(SignError::Malformed)?;
    let cert = match <[Cert; 1]>::try_from(certs) {
        Ok([cert]) => cert,
        Err(certs) if certs.is_empty() => {
            return Err(SignError::Malformed(
                "no OpenPGP key found; export it with gpg --armor --export-secret-keys FINGERPRINT"
                    .to_string(),
            ));
        }
        Err(certs) => return Err(SignError::SeveralKeys(certs.len())),
    };
    if !cert.is_tsk() {
        return Err(SignError::PublicKeyOnly);
    }
    let policy = StandardPolicy::new();
    let now = SystemTime::now();
    let fpr = cert.fingerprint().to_hex();
    let valid = cert
        .with_policy(&policy, now)
        .map_err(|e| SignError::NoSigningKey(format!("the key {fpr} is not usable: {e:#}")))?;
    if let RevocationStatus::Revoked(_) = valid.revocation_status() {
        return Err(SignError::NoSigningKey(format!("the key {fpr} is revoked")));
    }
    if let Err(e) = valid.alive() {
        return Err(SignError::NoSigningKey(format!(
            "the key {fpr} is not live ({e:#}); extend it with gpg --quick-set-expire {fpr} 1y"
        )));
    }
    let signing = || {
        valid
            .keys()
            .supported()
            .alive()
            .revoked(false)
            .for_signing()
    };
    let chosen = signing()
        .secret()
        .filter(|ka| ka.key().has_secret())
        .max_by_key(|ka| ka.key().creation_time());
    let Some(chosen) = chosen else {
        return Err(SignError::NoSigningKey(if signing().next().is_some() {
            format!(
                "the secret part of the signing key of {fpr} is not in the file (gpg stub or smartcard); export it with gpg --armor --export-secret-keys {fpr}"
            )
        } else {
            format!(
                "the key {fpr} has no live signing-capable key or subkey; add one with gpg --quick-add-key {fpr} ed25519 sign"
            )
        }));
    };
    let mut secret: Key<key::SecretParts, key::UnspecifiedRole> = chosen.key().clone();
    if secret.secret().is_encrypted() {
        let Some(passphrase) = passphrase else {
            return Err(SignError::PassphraseRequired);
        };
        secret = secret
            .decrypt_secret(&Password::from(passphrase))
            .map_err(|e| SignError::BadPassphrase(format!("{e:#}")))?;
    }
    let keypair = secret
        .into_keypair()
        .map_err(|e| SignError::Crypto(format!("{e:#}")))?;
    write_signature(keypair, payload, mode).map_err(|e| SignError::Crypto(format!("{e:#}")))
}

fn write_signature(
    keypair: openpgp::crypto::KeyPair,
    payload: &[u8],
    mode: PgpSignMode,
) -> openpgp::Result<Vec<u8>> {
    let mut sink = Vec::new();
    {
        let message = Message::new(&mut sink);
        match mode {
            PgpSignMode::Attached => {
                let message = Armorer::new(message)
                    .kind(openpgp::armor::Kind::Message)
                    .build()?;
                let message = Signer::new(message, keypair)?.build()?;
                let mut literal = LiteralWriter::new(message).build()?;
                literal.write_all(payload)?;
                literal.finalize()?;
            }
            PgpSignMode::Detached => {
                let message = Armorer::new(message)
                    .kind(openpgp::armor::Kind::Signature)
                    .build()?;
                let mut signer = Signer::new(message, keypair)?.detached().build()?;
                signer.write_all(payload)?;
                signer.finalize()?;
            }
            PgpSignMode::Clearsign => {
                let mut signer = Signer::new(message, keypair)?.cleartext().build()?;
                signer.write_all(payload)?;
                signer.finalize()?;
            }
        }
    }
    Ok(sink)
}

/// Bounded, non-empty signature input.
fn check_input(signature: &[u8]) -> Result<(), SignatureError> {
    if signature.len() > MAX_INPUT_LEN {
        return Err(SignatureError::TooLarge(signature.len()));
    }
    if signature.iter().all(u8::is_ascii_whitespace) {
        return Err(SignatureError::Malformed(
            "the signature is empty".to_string(),
        ));
    }
    Ok(())
}

/// All certificates in `bytes` (armored or binary); the error says why parsing failed.
fn parse_certs(bytes: &[u8]) -> Result<Vec<Cert>, String> {
    CertParser::from_bytes(bytes)
        .map_err(|e| reason(&e))?
        .map(|c| c.map_err(|e| reason(&e)))
        .collect()
}

/// An error chain as one clause: no trailing period, so it can be followed by a fix.
fn reason(error: &openpgp::anyhow::Error) -> String {
    format!("{error:#}").trim_end_matches('.').to_string()
}

/// "RSA 3072", "EdDSA Ed25519", "ECDSA NIST P-256", ...
fn describe_key<P: key::KeyParts, R: key::KeyRole>(key: &Key<P, R>) -> String {
    use openpgp::crypto::mpi::PublicKey as Mpis;
    match key.mpis() {
        Mpis::RSA { n, .. } => format!("RSA {}", n.bits()),
        Mpis::DSA { p, .. } => format!("DSA {}", p.bits()),
        Mpis::EdDSA { curve, .. } => format!("EdDSA {curve}"),
        Mpis::ECDSA { curve, .. } => format!("ECDSA {curve}"),
        _ => key.pk_algo().to_string(),
    }
}

/// Whether the input holds a cleartext signature's header line (anywhere: read as cleartext).
fn cleartext_signed(signature: &[u8]) -> bool {
    memchr::memmem::find(signature, b"-----BEGIN PGP SIGNED MESSAGE-----").is_some()
}

enum Form {
    /// Signature packets only: needs the payload.
    Detached,
    /// A signed message (possibly compressed) or cleartext-signed text.
    Message,
}

/// Tell a detached signature from a signed message by its packets (the armor label lies:
/// Kritis armors whole signed messages as `PGP SIGNATURE`).
fn classify(signature: &[u8]) -> Result<Form, SignatureError> {
    const MESSAGE: &[u8] = b"-----BEGIN PGP MESSAGE-----";
    // gcloud's (and gpg --sign's) attached form says what it is: no need to parse it twice.
    // Only a `PGP SIGNATURE` label is ambiguous (Kritis armors whole messages with it).
    let start = signature.trim_ascii_start();
    if start.starts_with(MESSAGE) {
        return Ok(Form::Message);
    }
    if cleartext_signed(signature) {
        return Ok(Form::Message);
    }
    let malformed = |e: openpgp::anyhow::Error| {
        SignatureError::Malformed(format!(
            "not an OpenPGP signature or signed message: {}",
            reason(&e)
        ))
    };
    let mut ppr = PacketParser::from_bytes(signature).map_err(malformed)?;
    let mut signatures = 0usize;
    while let PacketParserResult::Some(pp) = ppr {
        match &pp.packet {
            Packet::Signature(_) => signatures += 1,
            Packet::Unknown(u) if u.tag() == openpgp::packet::Tag::Signature => signatures += 1,
            Packet::Literal(_) | Packet::CompressedData(_) | Packet::OnePassSig(_) => {
                return Ok(Form::Message);
            }
            Packet::Marker(_) | Packet::Padding(_) => {}
            other => {
                return Err(SignatureError::Malformed(format!(
                    "found a {} where a signature or signed message was expected",
                    other.tag()
                )));
            }
        }
        ppr = pp.next().map_err(malformed)?.1;
    }
    if signatures == 0 {
        return Err(SignatureError::Malformed(
            "no OpenPGP packets found".to_string(),
        ));
    }
    Ok(Form::Detached)
}

fn verify_detached(
    signature: &[u8],
    payload: &[u8],
    policy: &dyn Policy,
    time: SystemTime,
    helper: Helper<'_>,
) -> openpgp::Result<()> {
    let mut verifier =
        DetachedVerifierBuilder::from_bytes(signature)?.with_policy(policy, time, helper)?;
    verifier.verify_bytes(payload)
}

fn verify_message(
    signature: &[u8],
    policy: &dyn Policy,
    time: SystemTime,
    helper: Helper<'_>,
) -> openpgp::Result<Vec<u8>> {
    let verifier = VerifierBuilder::from_bytes(signature)?
        // Payloads are small; sequoia allocates this buffer per message (default 25 MiB).
        // Larger literal data is streamed and only trusted once check() passed at its end.
        .buffer_size(MESSAGE_BUFFER)
        .with_policy(policy, time, helper)?;
    let mut data = Vec::new();
    verifier
        .take(MAX_INPUT_LEN as u64 + 1)
        .read_to_end(&mut data)?;
    Ok(data)
}

/// Supplies the one certificate and records the verdict (sequoia's errors lose our types).
struct Helper<'a> {
    cert: &'a Cert,
    policy: &'a dyn Policy,
    now: SystemTime,
    outcome: &'a RefCell<Option<Result<(), SignatureError>>>,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(vec![self.cert.clone()])
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let verdict = self.judge(structure);
        let ok = verdict.is_ok();
        *self.outcome.borrow_mut() = Some(verdict);
        if ok {
            Ok(())
        } else {
            Err(openpgp::Error::BadSignature("rejected".to_string()).into())
        }
    }
}

impl Helper<'_> {
    /// Success if any signature by this certificate is good and its key is valid now;
    /// otherwise the most telling failure.
    fn judge(&self, structure: MessageStructure) -> Result<(), SignatureError> {
        let mut worst: Option<(u8, SignatureError)> = None;
        let mut note = |rank: u8, error: SignatureError| {
            if worst.as_ref().is_none_or(|(r, _)| rank > *r) {
                worst = Some((rank, error));
            }
        };
        let own = self.cert.fingerprint().to_hex();
        for layer in structure.into_iter() {
            let results = match layer {
                MessageLayer::SignatureGroup { results } => results,
                MessageLayer::Compression { .. } => continue,
                MessageLayer::Encryption { .. } => {
                    return Err(SignatureError::Malformed(
                        "the message is encrypted; attestations must be signed, not encrypted"
                            .to_string(),
                    ));
                }
            };
            for result in results {
                match result {
                    Ok(good) => match valid_now(
                        self.cert,
                        self.policy,
                        self.now,
                        &good.ka.key().fingerprint(),
                    ) {
                        Ok(()) => return Ok(()),
                        Err(e) => note(rank(&e), e),
                    },
                    Err(VerificationError::MissingKey { sig }) => {
                        // Prefer full fingerprints over the 64-bit key ids they imply.
                        let handles = sig.get_issuers();
                        let fingerprints: Vec<String> = handles
                            .iter()
                            .filter(|h| matches!(h, KeyHandle::Fingerprint(_)))
                            .map(KeyHandle::to_hex)
                            .collect();
                        let issuers = if fingerprints.is_empty() {
                            handles
                                .iter()
                                .map(KeyHandle::to_hex)
                                .collect::<Vec<_>>()
                                .join(", ")
                        } else {
                            fingerprints.join(", ")
                        };
                        note(
                            1,
                            SignatureError::BadSignature(format!(
                                "made by key {issuers}, which is not key {own} (or one of its subkeys)"
                            )),
                        );
                    }
                    Err(VerificationError::UnboundKey { error, .. }) => note(
                        2,
                        SignatureError::BadSignature(format!(
                            "the signing key was not validly bound to {own} when the signature was made: {error:#}"
                        )),
                    ),
                    Err(VerificationError::BadKey { ka, error, .. }) => {
                        let revoked =
                            matches!(
                                ka.valid_cert().revocation_status(),
                                RevocationStatus::Revoked(_)
                            ) || matches!(ka.revocation_status(), RevocationStatus::Revoked(_));
                        let expired = ka.valid_cert().alive().is_err() || ka.alive().is_err();
                        if revoked {
                            note(5, SignatureError::KeyRevoked);
                        } else if expired {
                            note(4, SignatureError::KeyExpired);
                        } else {
                            note(
                                3,
                                SignatureError::BadSignature(format!(
                                    "the signing key cannot make this signature: {error:#}"
                                )),
                            );
                        }
                    }
                    Err(VerificationError::BadSignature { error, .. }) => note(
                        3,
                        SignatureError::BadSignature(format!(
                            "it does not verify with key {own}: {error:#}"
                        )),
                    ),
                    Err(VerificationError::MalformedSignature { error, .. }) => {
                        note(2, SignatureError::Malformed(format!("{error:#}")));
                    }
                    Err(VerificationError::UnknownSignature { sig }) => note(
                        2,
                        SignatureError::Malformed(format!(
                            "the signature packet does not parse: {}",
                            sig.error()
                        )),
                    ),
                    Err(other) => note(2, SignatureError::BadSignature(other.to_string())),
                }
            }
        }
        Err(worst.map_or_else(
            || SignatureError::BadSignature("the message carries no signature".to_string()),
            |(_, e)| e,
        ))
    }
}

/// The certificate and the key that signed must be unrevoked and live at `now`.
fn valid_now(
    cert: &Cert,
    policy: &dyn Policy,
    now: SystemTime,
    signer: &openpgp::Fingerprint,
) -> Result<(), SignatureError> {
    let valid = cert.with_policy(policy, now).map_err(|e| {
        SignatureError::BadSignature(format!(
            "the key is not valid now under the standard policy: {e:#}"
        ))
    })?;
    if let RevocationStatus::Revoked(_) = valid.revocation_status() {
        return Err(SignatureError::KeyRevoked);
    }
    if valid.alive().is_err() {
        return Err(SignatureError::KeyExpired);
    }
    let Some(ka) = valid.keys().key_handle(signer.clone()).next() else {
        return Err(SignatureError::BadSignature(format!(
            "the signing key {signer} is no longer validly bound to the certificate"
        )));
    };
    if let RevocationStatus::Revoked(_) = ka.revocation_status() {
        return Err(SignatureError::KeyRevoked);
    }
    if ka.alive().is_err() {
        return Err(SignatureError::KeyExpired);
    }
    if !ka.for_signing() {
        return Err(SignatureError::BadSignature(format!(
            "the key {signer} is not signing-capable"
        )));
    }
    Ok(())
}

fn rank(error: &SignatureError) -> u8 {
    match error {
        SignatureError::KeyRevoked => 5,
        SignatureError::KeyExpired => 4,
        _ => 3,
    }
}
