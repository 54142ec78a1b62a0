//! placeholder until the payload module lands
#![allow(missing_docs)]
use crate::image::Digest;
pub struct Payload {
    pub docker_reference: String,
    pub manifest_digest: Digest,
    pub payload_type: Option<String>,
}
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(String);
pub fn parse(_bytes: &[u8]) -> Result<Payload, PayloadError> {
    Err(PayloadError("stub".into()))
}
pub fn create(_url: &str) -> Result<Vec<u8>, PayloadError> {
    Err(PayloadError("stub".into()))
}
