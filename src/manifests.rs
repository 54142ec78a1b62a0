//! Reading Kubernetes YAML from files, folders and stdin, the way GitOps repositories hold it:
//! every document of every `.yaml`/`.yml`/`.json` file, typed where it is one of ours.
//!
//! Documents of binauthz's kinds are held to what the API server enforces
//! ([`crate::crd::validate`]: schema, unknown fields, CEL rules, names) and may be defined once
//! each, so an offline verdict is the cluster's. Every input is bounded: bytes per file and in
//! all ([`crate::input`]), files, documents, nesting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::crd::{AttestationPolicy, Attestor, GROUP, ImageAttestation, validate};
use crate::input::{self, InputError};

/// Largest file read, so a stray archive or a hostile input cannot exhaust memory.
pub const MAX_FILE_BYTES: u64 = input::MAX_MANIFEST_BYTES;
/// Most bytes read over all inputs of one command.
pub const MAX_TOTAL_BYTES: u64 = 256 * 1024 * 1024;
/// Most files read from folders.
pub const MAX_FILES: usize = 100_000;
/// Most documents read over all inputs.
pub const MAX_DOCUMENTS: usize = 500_000;

/// Where a document came from: `path` (or `-`) and its 1-based index in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// File path, or `-` for stdin.
    pub path: String,
    /// 1-based index of the document in the file.
    pub document: usize,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (document {})", self.path, self.document)
    }
}

/// A document that is not one of ours (a workload, a Namespace, anything else).
#[derive(Clone, Debug)]
pub struct Other {
    /// Where it came from.
    pub source: Source,
    /// The document.
    pub value: serde_json::Value,
}

/// Everything read from the given inputs, sorted by kind.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    /// Attestors found.
    pub attestors: Vec<(Source, Attestor)>,
    /// AttestationPolicies found.
    pub policies: Vec<(Source, AttestationPolicy)>,
    /// ImageAttestations found.
    pub attestations: Vec<(Source, ImageAttestation)>,
    /// Labels of the Namespaces found, by name.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Every other document (workloads among them).
    pub others: Vec<Other>,
    /// Where each object of ours (and each Namespace) was defined: `Kind namespace/name`.
    defined: BTreeMap<String, Source>,
    /// Bytes and documents read so far.
    bytes: u64,
    documents: usize,
}

/// Why the inputs could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A path could not be read, or is too large, too deep or not text.
    #[error("{0}")]
    Input(#[from] InputError),
    /// A folder could not be walked.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// More files, bytes or documents than one command reads.
    #[error("{path}: {what}; pass only the manifests to judge")]
    TooMany {
        /// Where the limit was passed.
        path: String,
        /// Which limit.
        what: String,
    },
    /// A document is not valid YAML.
    #[error("{path}: not valid YAML: {message}")]
    Yaml {
        /// The path.
        path: String,
        /// The parser's message, with its line and column.
        message: String,
    },
    /// A document of one of our kinds does not match its schema.
    #[error("{document}: field {field}: {message}")]
    Invalid {
        /// Where it came from, its kind and name.
        document: String,
        /// The JSON path of the offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A document of one of our kinds would be refused by the API server: every problem, one
    /// line each.
    #[error("{}", problems.iter().map(|p| format!("{document}: {p}")).collect::<Vec<_>>().join("\n"))]
    Refused {
        /// Where it came from, its kind and name.
        document: String,
        /// What the API server would say.
        problems: Vec<validate::Problem>,
    },
    /// The same object is defined twice: the verdict would depend on the order of the files.
    #[error(
        "{again}: {object} is also defined in {first}; define each object once (the cluster keeps only the last applied)"
    )]
    Duplicate {
        /// `Kind namespace/name`.
        object: String,
        /// The first definition.
        first: Source,
        /// The second.
        again: Source,
    },
}

impl Manifests {
    /// Read every document of the given files and folders (recursively; `-` is stdin).
    pub fn load(paths: &[PathBuf]) -> Result<Self, ManifestError> {
        let mut manifests = Self::default();
        for path in paths {
            if path.as_os_str() != "-" && path.is_dir() {
                let mut files = Vec::new();
                for entry in walkdir::WalkDir::new(path).sort_by_file_name() {
                    let entry = entry.map_err(|e| ManifestError::Io {
                        path: path.display().to_string(),
                        source: e.into(),
                    })?;
                    if entry.file_type().is_file() && is_manifest_file(entry.path()) {
                        files.push(entry.into_path());
                        if files.len() > MAX_FILES {
                            return Err(ManifestError::TooMany {
                                path: path.display().to_string(),
                                what: format!("more than {MAX_FILES} manifest files"),
                            });
                        }
                    }
                }
                for file in files {
                    manifests.add_file(&file)?;
                }
            } else {
                manifests.add_file(path)?;
            }
        }
        Ok(manifests)
    }

    /// Read one file (`-` is stdin; pipes and devices too, bounded alike).
    pub fn add_file(&mut self, path: &Path) -> Result<(), ManifestError> {
        let text = input::read_text(path, input::MANIFESTS)?;
        self.bytes += text.len() as u64;
        if self.bytes > MAX_TOTAL_BYTES {
            return Err(ManifestError::TooMany {
                path: path.display().to_string(),
                what: format!("more than {MAX_TOTAL_BYTES} bytes of manifests in all"),
            });
        }
        self.add_text(&input::show(path), &text)
    }

    /// Read every document of one YAML (or JSON) text.
    pub fn add_text(&mut self, path: &str, text: &str) -> Result<(), ManifestError> {
        input::check_depth(path, text)?;
        for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            self.documents += 1;
            if self.documents > MAX_DOCUMENTS {
                return Err(ManifestError::TooMany {
                    path: path.to_owned(),
                    what: format!("more than {MAX_DOCUMENTS} documents in all"),
                });
            }
            let value: serde_yaml::Value =
                serde::Deserialize::deserialize(document).map_err(|e| ManifestError::Yaml {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
            let value: serde_json::Value =
                serde_json::to_value(value).map_err(|e| ManifestError::Yaml {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
            let source = Source {
                path: path.to_owned(),
                document: index + 1,
            };
            self.add_value(source, value)?;
        }
        Ok(())
    }

    fn add_value(&mut self, source: Source, value: serde_json::Value) -> Result<(), ManifestError> {
        if value.is_null() {
            return Ok(());
        }
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_owned();
        let api_version = value
            .get("apiVersion")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        let ours = api_version.split('/').next() == Some(GROUP);
        match (ours, kind.as_str()) {
            (_, "List") => {
                if let Some(items) = value.get("items").and_then(|i| i.as_array()) {
                    for item in items.clone() {
                        self.add_value(source.clone(), item)?;
                    }
                }
            }
            (true, _) => {
                let name = value
                    .pointer("/metadata/name")
                    .and_then(|n| n.as_str())
                    .unwrap_or("<unnamed>")
                    .to_owned();
                if let Err(problems) = validate::check(&value) {
                    return Err(ManifestError::Refused {
                        document: format!("{source} {kind} {name}"),
                        problems,
                    });
                }
                match kind.as_str() {
                    "Attestor" => {
                        self.define(format!("Attestor {name}"), &source)?;
                        let typed = typed(&source, &kind, value)?;
                        self.attestors.push((source, typed));
                    }
                    "AttestationPolicy" => {
                        self.define(format!("AttestationPolicy {name}"), &source)?;
                        let typed = typed(&source, &kind, value)?;
                        self.policies.push((source, typed));
                    }
                    _ => {
                        let namespace = value
                            .pointer("/metadata/namespace")
                            .and_then(|n| n.as_str())
                            .unwrap_or("default");
                        self.define(format!("ImageAttestation {namespace}/{name}"), &source)?;
                        let typed = typed(&source, &kind, value)?;
                        self.attestations.push((source, typed));
                    }
                }
            }
            (false, "Namespace") if api_version == "v1" => {
                let name = value
                    .pointer("/metadata/name")
                    .and_then(|n| n.as_str())
                    .unwrap_or_default();
                self.define(format!("Namespace {name}"), &source)?;
                let labels = value
                    .pointer("/metadata/labels")
                    .and_then(|l| l.as_object())
                    .map(|labels| {
                        labels
                            .iter()
                            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                            .collect()
                    })
                    .unwrap_or_default();
                self.namespaces.insert(name.to_owned(), labels);
                self.others.push(Other { source, value });
            }
            _ => self.others.push(Other { source, value }),
        }
        Ok(())
    }
}

impl Manifests {
    /// Add an ImageAttestation made from a registry signature (`binauthz ... --fetch-signatures`).
    pub fn add_fetched(&mut self, source: Source, attestation: ImageAttestation) {
        let key = format!(
            "ImageAttestation {}/{}",
            attestation
                .metadata
                .namespace
                .as_deref()
                .unwrap_or("default"),
            attestation.metadata.name.as_deref().unwrap_or_default()
        );
        // The same signature fetched twice is one attestation.
        if self.defined.insert(key, source.clone()).is_none() {
            self.attestations.push((source, attestation));
        }
    }

    /// Record where an object is defined; a second definition is an error.
    fn define(&mut self, object: String, source: &Source) -> Result<(), ManifestError> {
        if let Some(first) = self.defined.get(&object) {
            return Err(ManifestError::Duplicate {
                object,
                first: first.clone(),
                again: source.clone(),
            });
        }
        self.defined.insert(object, source.clone());
        Ok(())
    }
}

fn is_manifest_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn typed<T: DeserializeOwned>(
    source: &Source,
    kind: &str,
    value: serde_json::Value,
) -> Result<T, ManifestError> {
    let name = value
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .unwrap_or("<unnamed>")
        .to_owned();
    serde_path_to_error::deserialize(value).map_err(|e| ManifestError::Invalid {
        document: format!("{source} {kind} {name}"),
        field: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &str = r#"
apiVersion: binauthz.dev/v1alpha1
kind: Attestor
metadata: {name: build}
spec:
  publicKeys: []
---
apiVersion: v1
kind: Namespace
metadata:
  name: prod
  labels: {env: prod}
---
# an empty document
---
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web}
- apiVersion: binauthz.dev/v1alpha1
  kind: AttestationPolicy
  metadata: {name: p}
  spec:
    defaultAdmissionRule: {evaluationMode: ALWAYS_ALLOW}
"#;

    #[test]
    fn sorts_documents_by_kind() {
        let mut m = Manifests::default();
        m.add_text("mixed.yaml", MIXED).unwrap();
        assert_eq!(m.attestors.len(), 1);
        assert_eq!(m.policies.len(), 1);
        assert_eq!(
            m.attestors[0].0,
            Source {
                path: "mixed.yaml".into(),
                document: 1
            }
        );
        assert_eq!(m.namespaces["prod"]["env"], "prod");
        assert_eq!(m.others.len(), 2, "namespace and deployment");
    }

    #[test]
    fn invalid_field_is_named() {
        let text = "apiVersion: binauthz.dev/v1alpha1\nkind: AttestationPolicy\nmetadata: {name: p}\nspec:\n  defaultAdmissionRule: {evaluationMode: SOMETIMES}\n";
        let err = Manifests::default()
            .add_text("p.yaml", text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("p.yaml (document 1) AttestationPolicy p"),
            "{err}"
        );
        assert!(
            err.contains("spec.defaultAdmissionRule.evaluationMode"),
            "{err}"
        );
        assert!(err.contains("SOMETIMES"), "{err}");
    }

    #[test]
    fn broken_yaml_is_reported_with_the_file() {
        let err = Manifests::default()
            .add_text("bad.yaml", "a: [1, 2\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bad.yaml: not valid YAML"), "{err}");
    }

    #[test]
    fn folders_are_read_recursively_and_huge_files_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/x.yaml"), MIXED).unwrap();
        std::fs::write(dir.path().join("a/readme.md"), "not yaml: [").unwrap();
        let m = Manifests::load(&[dir.path().to_owned()]).unwrap();
        assert_eq!(m.attestors.len(), 1);
        let huge = dir.path().join("huge.yaml");
        let file = std::fs::File::create(&huge).unwrap();
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        let err = Manifests::load(&[huge]).unwrap_err().to_string();
        assert!(err.contains("over the"), "{err}");
    }
}
