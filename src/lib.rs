//! binauthz: Binary Authorization for any Kubernetes cluster.
//!
//! The pure core (`image`, `payload`, `crypto`, `verify`, `policy`) has no Kubernetes client;
//! the CRD types in `crd` are plain data derived with kube and schemars.

pub mod admin;
pub mod backoff;
pub mod cli;
pub mod commands;
pub mod controller;
pub mod crd;
pub mod crypto;
pub mod gcloud;
pub mod image;
pub mod index;
pub mod manifests;
pub mod metrics;
pub mod payload;
pub mod policy;
pub mod run;
pub mod tls;
pub mod verify;
pub mod webhook;
