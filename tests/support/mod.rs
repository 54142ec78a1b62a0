//! Helpers shared by the integration tests (`mod support;` in a test file).

// Each test binary compiles this module and uses only part of it; a failed setup step is a
// test failure, so panicking with a message is the right response.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

pub mod attack;
pub mod cluster;
pub mod oci;
pub mod operator;
pub mod plane;
pub mod process;
pub mod signer;
pub mod tls;
