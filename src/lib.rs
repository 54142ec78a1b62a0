//! binauthz: Binary Authorization for any Kubernetes cluster.
//!
//! The pure core (`image`, `payload`, `crypto`, `verify`, `policy`) has no Kubernetes client;
//! the CRD types in `crd` are plain data derived with kube and schemars. Each replica runs one
//! trust pipeline (`trust`), serves the `webhook` and `admin` endpoints from it; the leader's
//! `controller` reports what it found. `run` is the one place that wires a replica.

pub mod admin;
pub mod audit;
pub mod cli;
pub mod commands;
pub mod controller;
pub mod cosign;
pub mod crd;
pub mod crypto;
pub mod events;
pub mod gcloud;
pub mod image;
pub mod input;
pub mod manifests;
pub mod metrics;
pub mod payload;
pub mod policy;
pub mod registry;
pub mod registry_sync;
pub mod run;
pub mod tls;
pub mod trust;
pub mod verify;
pub mod watcher;
pub mod webhook;
