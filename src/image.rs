//! placeholder until the image module lands
#![allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Digest(String);
impl Digest {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef(String);
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ImageRefError(String);
impl ImageRef {
    pub fn parse(s: &str) -> Result<Self, ImageRefError> {
        Err(ImageRefError(s.into()))
    }
    pub fn as_written(&self) -> &str {
        &self.0
    }
    pub fn name(&self) -> String {
        self.0.clone()
    }
    pub fn digest(&self) -> Option<&Digest> {
        None
    }
}
pub fn same_repository(a: &str, b: &str) -> bool {
    a == b
}
