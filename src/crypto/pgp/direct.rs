//! The direct path: the two shapes nearly every attestation has, a detached signature
//! (`gpg --armor --detach-sign`) and a one-pass signed message (`gpg --armor --sign`, compressed
//! or not), verified packet by packet with the checks sequoia's streaming verifier makes, without
//! its machinery (a reader stack, a message buffer and a certificate copy per call cost more
//! than the RSA-2048 verification itself).
//!
//! It only ever accepts. Input of any other shape (cleartext-signed text, unusual armor, unknown
//! hash algorithms) and every signature it does not accept go to the streaming verifier, which
//! gives the verdict and its reason. Tests and the `pgp_verify` fuzz target check that both
//! paths give the same result.

use std::io::Read;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sequoia_openpgp as openpgp;

use openpgp::Cert;
use openpgp::cert::amalgamation::{ValidAmalgamation as _, ValidateAmalgamation as _};
use openpgp::packet::{Key, Packet, Signature, key};
use openpgp::parse::{Dearmor, PacketParserBuilder, PacketParserResult, Parse};
use openpgp::policy::Policy;
use openpgp::types::{RevocationStatus, SignatureType};

use super::{cleartext_signed, valid_now};
use crate::crypto::MAX_INPUT_LEN;

const SIGNATURE: &str = "PGP SIGNATURE";
const MESSAGE: &str = "PGP MESSAGE";

/// The signed bytes when a signature in `signature` by `cert` is good, its key was valid when
/// it was made and is valid at `now`; `None` when not (or not recognised).
pub(super) fn accept(
    cert: &Cert,
    policy: &dyn Policy,
    signature: &[u8],
    payload: Option<&[u8]>,
    now: SystemTime,
) -> Option<Vec<u8>> {
    // (The streaming verifier reads any input holding this header line as cleartext-signed.)
    if cleartext_signed(signature) {
        return None;
    }
    let armored = signature.trim_ascii_start().starts_with(b"-----BEGIN ");
    let (labelled_message, (signatures, literal)) = if armored {
        let (kind, binary) = dearmor(signature)?;
        (kind == MESSAGE, packets(policy, &binary)?)
    } else {
        (false, packets(policy, signature)?)
    };
    match literal {
        // A message: the parser hashed the literal data as each one-pass signature asked.
        Some(data) => signatures
            .iter()
            .any(|sig| good(cert, policy, sig, now, |key| sig.verify_document(key)))
            .then_some(data),
        // The streaming verifier reads a block labelled `PGP MESSAGE` as a message.
        None if labelled_message => None,
        // Detached: hash the payload as a binary document (text signatures hash normalised
        // line endings: left to the streaming verifier).
        None => {
            let payload = payload?;
            signatures
                .iter()
                .any(|sig| {
                    sig.typ() == SignatureType::Binary
                        && good(cert, policy, sig, now, |key| {
                            sig.verify_message(key, payload)
                        })
                })
                .then(|| payload.to_vec())
        }
    }
}

/// sequoia's streaming verifier's checks of one signature (`Decryptor::verify_signatures`, with
/// the time given, so no clock skew tolerance), then ours: the key is valid at `now` too.
fn good(
    cert: &Cert,
    policy: &dyn Policy,
    sig: &Signature,
    now: SystemTime,
    verify: impl Fn(&Key<key::PublicParts, key::UnspecifiedRole>) -> openpgp::Result<()>,
) -> bool {
    let Some(made) = sig.signature_creation_time() else {
        return false;
    };
    let issuers = sig.get_issuers();
    if issuers.is_empty() {
        return false;
    }
    // The first key that made the signature, as sequoia finds it; only that one is then
    // checked at `now`, as the streaming verifier's caller does.
    let signer = cert.keys().key_handles(issuers).find_map(|ka| {
        let ka = ka.with_policy(policy, made).ok()?;
        let good = ka.valid_cert().alive().is_ok()
            && ka.alive().is_ok()
            && !matches!(
                ka.valid_cert().revocation_status(),
                RevocationStatus::Revoked(_)
            )
            && !matches!(ka.revocation_status(), RevocationStatus::Revoked(_))
            && ka.for_signing()
            && sig.signature_alive(now, Duration::ZERO).is_ok()
            && verify(ka.key()).is_ok()
            && policy.signature(sig, Default::default()).is_ok();
        good.then(|| ka.key().fingerprint())
    });
    signer.is_some_and(|signer| valid_now(cert, policy, now, &signer).is_ok())
}

/// The signatures, and the literal data of a message, when the packets are signatures only
/// (detached) or a well-formed one-pass signed message, possibly inside one compressed packet.
fn packets(policy: &dyn Policy, binary: &[u8]) -> Option<(Vec<Signature>, Option<Vec<u8>>)> {
    let mut ppr = PacketParserBuilder::from_bytes(binary)
        .ok()?
        .dearmor(Dearmor::Disabled)
        .build()
        .ok()?;
    let mut signatures = Vec::new();
    let mut literal = None;
    // One-pass signatures or compression: not a detached signature.
    let mut message = false;
    while let PacketParserResult::Some(mut pp) = ppr {
        // The streaming verifier puts packets to the policy (it refuses v3 signatures), and
        // gives up on a signature whose hash it cannot compute.
        policy.packet(&pp.packet).ok()?;
        match (&pp.packet, pp.recursion_depth()) {
            (Packet::Signature(sig), _) if sig.hash_algo().is_supported() => {}
            (Packet::OnePassSig(_), _) | (Packet::CompressedData(_), 0) => message = true,
            (Packet::Literal(_), _) if literal.is_none() => {
                let mut data = Vec::new();
                (&mut pp)
                    .take(MAX_INPUT_LEN as u64 + 1)
                    .read_to_end(&mut data)
                    .ok()?;
                if data.len() > MAX_INPUT_LEN {
                    return None;
                }
                literal = Some(data);
            }
            _ => return None,
        }
        let (packet, next) = pp.recurse().ok()?;
        if let Packet::Signature(sig) = packet {
            signatures.push(sig);
        }
        ppr = next;
    }
    let PacketParserResult::EOF(eof) = ppr else {
        return None;
    };
    match literal {
        Some(_) => eof.is_message().ok()?,
        // Detached: signatures, nothing else.
        None if message || signatures.is_empty() => return None,
        None => {}
    }
    Some((signatures, literal))
}

/// The label and packets of an armored `PGP SIGNATURE` or `PGP MESSAGE` block laid out as gpg
/// and sequoia write it: header line, `Key: value` headers, a blank line, base64 lines, an
/// optional checksum line (`=` and four base64 digits), the footer. `None` for any other layout
/// (the streaming verifier's reader is the tolerant one). The checksum is not checked: RFC 9580
/// says not to reject on it, and sequoia does not.
fn dearmor(armored: &[u8]) -> Option<(&str, Vec<u8>)> {
    // ASCII only, trimmed of ASCII white space only: sequoia's reader stops at anything else.
    if !armored.is_ascii() {
        return None;
    }
    let text = std::str::from_utf8(armored).ok()?.trim_ascii();
    let mut lines = text.lines().map(str::trim_ascii_end);
    let kind = lines
        .next()?
        .strip_prefix("-----BEGIN ")?
        .strip_suffix("-----")?;
    if kind != SIGNATURE && kind != MESSAGE {
        return None;
    }
    let footer = |line: &str| {
        line.strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
            == Some(kind)
    };
    for header in lines.by_ref() {
        if header.is_empty() {
            break;
        }
        if !header.contains(": ") {
            return None;
        }
    }
    let mut base64 = String::with_capacity(text.len());
    loop {
        let line = lines.next()?;
        if footer(line) {
            break;
        }
        if let Some(checksum) = line.strip_prefix('=') {
            let base64_char = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
            if checksum.len() != 4 || !checksum.bytes().all(base64_char) || !footer(lines.next()?) {
                return None;
            }
            break;
        }
        if line.is_empty() {
            return None;
        }
        base64.push_str(line);
    }
    if lines.next().is_some() {
        return None;
    }
    Some((kind, STANDARD.decode(base64).ok()?))
}
