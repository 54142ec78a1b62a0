//! What the policy needs from a Pod or a workload's pod template, read straight from JSON.
//!
//! Only the few fields that matter are read (no whole k8s-openapi object is built), so a large
//! review stays cheap, and a malformed one yields an error naming the JSON path.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

/// Namespace assumed when an object names none and the caller supplies none.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Service account a pod runs as when its spec names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// Kinds whose pods the policy can judge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    /// `v1` Pod.
    Pod,
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` ReplicaSet.
    ReplicaSet,
    /// `apps/v1` StatefulSet.
    StatefulSet,
    /// `apps/v1` DaemonSet.
    DaemonSet,
    /// `batch/v1` Job.
    Job,
    /// `batch/v1` CronJob.
    CronJob,
    /// `v1` ReplicationController.
    ReplicationController,
}

impl WorkloadKind {
    /// The kind for an `apiVersion` and `kind`, or `None` when it is not a workload. An empty
    /// `api_version` matches on the kind alone.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Self> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let any = api_version.is_empty();
        let (k, groups): (Self, &[&str]) = match kind {
            "Pod" => (Self::Pod, &[""]),
            "ReplicationController" => (Self::ReplicationController, &[""]),
            // `extensions` served these before `apps` existed.
            "Deployment" => (Self::Deployment, &["apps", "extensions"]),
            "ReplicaSet" => (Self::ReplicaSet, &["apps", "extensions"]),
            "DaemonSet" => (Self::DaemonSet, &["apps", "extensions"]),
            "StatefulSet" => (Self::StatefulSet, &["apps"]),
            "Job" => (Self::Job, &["batch"]),
            "CronJob" => (Self::CronJob, &["batch"]),
            _ => return None,
        };
        (any || groups.contains(&group)).then_some(k)
    }

    /// The Kubernetes kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pod => "Pod",
            Self::Deployment => "Deployment",
            Self::ReplicaSet => "ReplicaSet",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::Job => "Job",
            Self::CronJob => "CronJob",
            Self::ReplicationController => "ReplicationController",
        }
    }

    /// JSON path of the pod template (empty for a Pod itself).
    fn template_path(self) -> &'static [&'static str] {
        match self {
            Self::Pod => &[],
            Self::CronJob => &["spec", "jobTemplate", "spec", "template"],
            _ => &["spec", "template"],
        }
    }

    /// The same path as a prefix of the pod spec's fields: `spec.template.` (empty for a Pod).
    pub fn template_prefix(self) -> String {
        self.template_path()
            .iter()
            .map(|field| format!("{field}."))
            .collect()
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in the pod spec an image reference is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImageSource {
    /// `initContainers[].image`.
    InitContainers,
    /// `containers[].image`.
    Containers,
    /// `ephemeralContainers[].image`.
    EphemeralContainers,
    /// `volumes[].image.reference`: an OCI image mounted as a volume (KEP-4639); its files can
    /// be executed, so it is judged like a container image.
    Volumes,
}

impl ImageSource {
    /// The pod spec field name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InitContainers => "initContainers",
            Self::Containers => "containers",
            Self::EphemeralContainers => "ephemeralContainers",
            Self::Volumes => "volumes",
        }
    }

    /// Every place an image can be written, in the order they are read.
    pub const ALL: [Self; 4] = [
        Self::InitContainers,
        Self::Containers,
        Self::EphemeralContainers,
        Self::Volumes,
    ];

    /// JSON path of the image inside one item of the list.
    fn image_field(self) -> &'static str {
        match self {
            Self::Volumes => "image.reference",
            _ => "image",
        }
    }
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One image reference of the pod: a container's image or an image volume's reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageUse {
    /// Name of the container or volume.
    pub name: String,
    /// Image as written in the spec.
    pub image: String,
    /// Where it is written.
    pub source: ImageSource,
    /// Position in that list.
    pub index: usize,
}

impl ImageUse {
    /// JSON path of the image inside the pod spec, e.g. `spec.containers[1].image` or
    /// `spec.volumes[0].image.reference`.
    pub fn image_path(&self) -> String {
        format!(
            "spec.{}[{}].{}",
            self.source,
            self.index,
            self.source.image_field()
        )
    }
}

/// Why an object could not be read as a workload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    /// A field has the wrong JSON type.
    #[error("{path} must be {expected}, found {found}")]
    WrongType {
        /// JSON path of the field.
        path: String,
        /// What the field must be.
        expected: &'static str,
        /// What it is.
        found: &'static str,
    },
    /// A required field is absent.
    #[error("{path} is missing; {hint}")]
    Missing {
        /// JSON path of the field.
        path: String,
        /// What to add.
        hint: &'static str,
    },
}

/// A Pod, or the pod template of a workload: what the policy judges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Kind of the object.
    pub kind: WorkloadKind,
    /// `metadata.name`, else `metadata.generateName`, else empty.
    pub name: String,
    /// `metadata.namespace`, when written (see [`Workload::namespace`]).
    pub namespace: Option<String>,
    /// `serviceAccountName` of the pod spec (or the legacy `serviceAccount`), else `default`.
    pub service_account: String,
    /// Labels of the pod (or of the pod template).
    pub labels: BTreeMap<String, String>,
    /// Annotations of the pod (or template) in the `image-policy.k8s.io` domains; others are
    /// not copied, as they can be large and the policy ignores them.
    pub annotations: BTreeMap<String, String>,
    /// Every image reference the pod can pull: init containers, containers, ephemeral
    /// containers and image volumes, in that order. Every path that judges a pod reads this
    /// list, so a new place for an image in the Pod API is added here once.
    pub images: Vec<ImageUse>,
}

impl Workload {
    /// Read a workload from a whole object; `Ok(None)` when its `apiVersion`/`kind` is not a
    /// workload (the caller admits it).
    pub fn from_json(object: &Value) -> Result<Option<Self>, WorkloadError> {
        let root = as_object(object, "")?;
        let api_version = opt_str(root, "apiVersion", "")?.unwrap_or("");
        let kind = opt_str(root, "kind", "")?.unwrap_or("");
        match WorkloadKind::from_type(api_version, kind) {
            Some(kind) => Self::from_object(kind, object).map(Some),
            None => Ok(None),
        }
    }

    /// Read a workload of a known kind (e.g. from an AdmissionReview's `request.kind`).
    pub fn from_object(kind: WorkloadKind, object: &Value) -> Result<Self, WorkloadError> {
        let root = as_object(object, "")?;
        let meta = opt_object(root, "metadata", "")?;
        let name = match meta {
            Some(m) => opt_str(m, "name", "metadata")?
                .filter(|n| !n.is_empty())
                .or(opt_str(m, "generateName", "metadata")?)
                .unwrap_or(""),
            None => "",
        };
        let namespace = match meta {
            Some(m) => opt_str(m, "namespace", "metadata")?.filter(|n| !n.is_empty()),
            None => None,
        };

        // Walk down to the pod (template): its metadata and spec.
        let mut pod = root;
        let mut path = String::new();
        for field in kind.template_path() {
            pod = opt_object(pod, field, &path)?.ok_or_else(|| WorkloadError::Missing {
                path: join(&path, field),
                hint: "a workload needs a pod template",
            })?;
            path = join(&path, field);
        }
        let pod_meta_path = join(&path, "metadata");
        let (labels, annotations) = match opt_object(pod, "metadata", &path)? {
            Some(m) => (
                string_map(m, "labels", &pod_meta_path, |_| true)?,
                string_map(m, "annotations", &pod_meta_path, is_policy_annotation)?,
            ),
            None => (BTreeMap::new(), BTreeMap::new()),
        };
        let spec = opt_object(pod, "spec", &path)?.ok_or_else(|| WorkloadError::Missing {
            path: join(&path, "spec"),
            hint: "a pod needs a spec with containers",
        })?;
        let spec_path = join(&path, "spec");
        let service_account = opt_str(spec, "serviceAccountName", &spec_path)?
            .filter(|s| !s.is_empty())
            .or(opt_str(spec, "serviceAccount", &spec_path)?.filter(|s| !s.is_empty()))
            .unwrap_or(DEFAULT_SERVICE_ACCOUNT);

        let mut images = Vec::new();
        for source in ImageSource::ALL {
            read_images(spec, source, &spec_path, &mut images)?;
        }
        Ok(Self {
            kind,
            name: name.to_owned(),
            namespace: namespace.map(str::to_owned),
            service_account: service_account.to_owned(),
            labels,
            annotations,
            images,
        })
    }

    /// The namespace: as written, else [`DEFAULT_NAMESPACE`]. Callers that know better (the
    /// AdmissionReview's `request.namespace`, a CLI flag) set [`Workload::namespace`] first.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }
}

/// Annotations in the ImagePolicyWebhook convention (`*.image-policy.k8s.io/*`), breakglass
/// among them: the only annotations a decision reads.
pub fn is_policy_annotation(key: &str) -> bool {
    key.split_once('/').is_some_and(|(domain, _)| {
        domain == "image-policy.k8s.io" || domain.ends_with(".image-policy.k8s.io")
    })
}

/// Read the image references of one list of the pod spec (a volume without `image` has none).
fn read_images(
    spec: &Map<String, Value>,
    source: ImageSource,
    spec_path: &str,
    out: &mut Vec<ImageUse>,
) -> Result<(), WorkloadError> {
    let path = join(spec_path, source.as_str());
    let what = match source {
        ImageSource::Volumes => "a list of volumes",
        _ => "a list of containers",
    };
    let items = match spec.get(source.as_str()) {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(wrong_type(path, what, other)),
    };
    out.reserve(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let item_object = as_object(item, &item_path)?;
        let (holder, holder_path, hint) = match source {
            ImageSource::Volumes => match opt_object(item_object, "image", &item_path)? {
                Some(image) => (
                    image,
                    join(&item_path, "image"),
                    "an image volume needs the reference of the image to mount",
                ),
                None => continue,
            },
            _ => (
                item_object,
                item_path.clone(),
                "every container needs an image",
            ),
        };
        let field = match source {
            ImageSource::Volumes => "reference",
            _ => "image",
        };
        let image = opt_str(holder, field, &holder_path)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| WorkloadError::Missing {
                path: join(&holder_path, field),
                hint,
            })?;
        let name = opt_str(item_object, "name", &item_path)?.unwrap_or("");
        out.push(ImageUse {
            name: name.to_owned(),
            image: image.to_owned(),
            source,
            index: i,
        });
    }
    Ok(())
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(path: String, expected: &'static str, found: &Value) -> WorkloadError {
    WorkloadError::WrongType {
        path: if path.is_empty() {
            "(root)".into()
        } else {
            path
        },
        expected,
        found: type_name(found),
    }
}

fn as_object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, WorkloadError> {
    v.as_object()
        .ok_or_else(|| wrong_type(path.to_owned(), "an object", v))
}

fn opt_object<'a>(
    parent: &'a Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, WorkloadError> {
    match parent.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(wrong_type(join(path, field), "an object", other)),
    }
}

fn opt_str<'a>(
    parent: &'a Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<Option<&'a str>, WorkloadError> {
    match parent.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(join(path, field), "a string", other)),
    }
}

/// A `map[string]string` field, keeping only the keys `keep` accepts.
fn string_map(
    parent: &Map<String, Value>,
    field: &str,
    path: &str,
    keep: fn(&str) -> bool,
) -> Result<BTreeMap<String, String>, WorkloadError> {
    let Some(map) = opt_object(parent, field, path)? else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for (k, v) in map.iter().filter(|(k, _)| keep(k)) {
        let v = v
            .as_str()
            .ok_or_else(|| wrong_type(format!("{}[{k:?}]", join(path, field)), "a string", v))?;
        out.insert(k.clone(), v.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_spec() -> Value {
        json!({
            "serviceAccountName": "deployer",
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [
                {"name": "app", "image": "gcr.io/p/app@sha256:aaaa"},
                {"name": "side", "image": "nginx:1.25"}
            ],
            "volumes": [
                {"name": "cache", "emptyDir": {}},
                {"name": "payload", "image": {"reference": "docker.io/attacker/evil:latest",
                                              "pullPolicy": "Always"}}
            ]
        })
    }

    fn template() -> Value {
        json!({
            "metadata": {
                "labels": {"app": "web", "image-policy.k8s.io/break-glass": "true"},
                "annotations": {
                    "alpha.image-policy.k8s.io/break-glass": "true",
                    "kubectl.kubernetes.io/last-applied-configuration": "{...big...}"
                }
            },
            "spec": pod_spec()
        })
    }

    fn expected_images() -> Vec<ImageUse> {
        vec![
            ImageUse {
                name: "init".into(),
                image: "busybox".into(),
                source: ImageSource::InitContainers,
                index: 0,
            },
            ImageUse {
                name: "app".into(),
                image: "gcr.io/p/app@sha256:aaaa".into(),
                source: ImageSource::Containers,
                index: 0,
            },
            ImageUse {
                name: "side".into(),
                image: "nginx:1.25".into(),
                source: ImageSource::Containers,
                index: 1,
            },
            ImageUse {
                name: "payload".into(),
                image: "docker.io/attacker/evil:latest".into(),
                source: ImageSource::Volumes,
                index: 1,
            },
        ]
    }

    #[test]
    fn every_workload_kind_is_extracted() {
        let t = template();
        let cases = [
            (
                WorkloadKind::Pod,
                json!({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": "w", "namespace": "prod",
                                    "labels": t["metadata"]["labels"],
                                    "annotations": t["metadata"]["annotations"]},
                       "spec": pod_spec()}),
            ),
            (
                WorkloadKind::Deployment,
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "w", "namespace": "prod"}, "spec": {"template": t}}),
            ),
            (
                WorkloadKind::ReplicaSet,
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                       "metadata": {"name": "w", "namespace": "prod"}, "spec": {"template": t}}),
            ),
            (
                WorkloadKind::StatefulSet,
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                       "metadata": {"name": "w", "namespace": "prod"}, "spec": {"template": t}}),
            ),
            (
                WorkloadKind::DaemonSet,
                json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                       "metadata": {"name": "w", "namespace": "prod"}, "spec": {"template": t}}),
            ),
            (
                WorkloadKind::Job,
                json!({"apiVersion": "batch/v1", "kind": "Job",
                       "metadata": {"name": "w", "namespace": "prod"}, "spec": {"template": t}}),
            ),
            (
                WorkloadKind::CronJob,
                json!({"apiVersion": "batch/v1", "kind": "CronJob",
                       "metadata": {"name": "w", "namespace": "prod"},
                       "spec": {"schedule": "* * * * *",
                                "jobTemplate": {"spec": {"template": t}}}}),
            ),
            (
                WorkloadKind::ReplicationController,
                json!({"apiVersion": "v1", "kind": "ReplicationController",
                       "metadata": {"name": "w", "namespace": "prod"}, "spec": {"template": t}}),
            ),
        ];
        for (kind, object) in cases {
            let w = Workload::from_json(&object).unwrap().unwrap();
            assert_eq!(w.kind, kind);
            assert_eq!(w.name, "w", "{kind}");
            assert_eq!(w.namespace(), "prod", "{kind}");
            assert_eq!(w.service_account, "deployer", "{kind}");
            assert_eq!(w.images, expected_images(), "{kind}");
            assert_eq!(
                w.labels.get("app").map(String::as_str),
                Some("web"),
                "{kind}"
            );
            assert_eq!(
                w.labels
                    .get("image-policy.k8s.io/break-glass")
                    .map(String::as_str),
                Some("true")
            );
            // Only policy annotations are kept.
            assert_eq!(
                w.annotations.keys().collect::<Vec<_>>(),
                vec!["alpha.image-policy.k8s.io/break-glass"],
                "{kind}"
            );
            // The same through from_object.
            assert_eq!(Workload::from_object(kind, &object).unwrap(), w);
        }
    }

    #[test]
    fn ephemeral_containers_generate_name_and_defaults() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-"},
            "spec": {
                "containers": [{"name": "app", "image": "nginx"}],
                "ephemeralContainers": [{"name": "debug", "image": "busybox:1.36"}]
            }
        });
        let w = Workload::from_json(&pod).unwrap().unwrap();
        assert_eq!(w.name, "web-");
        assert_eq!(w.namespace, None);
        assert_eq!(w.namespace(), "default");
        assert_eq!(w.service_account, "default");
        assert!(w.labels.is_empty());
        assert_eq!(
            w.images[1],
            ImageUse {
                name: "debug".into(),
                image: "busybox:1.36".into(),
                source: ImageSource::EphemeralContainers,
                index: 0,
            }
        );
        assert_eq!(
            w.images[1].image_path(),
            "spec.ephemeralContainers[0].image"
        );
        // The legacy serviceAccount field is honoured.
        let pod = json!({"kind": "Pod", "spec": {"serviceAccount": "old", "containers": []}});
        let w = Workload::from_json(&pod).unwrap().unwrap();
        assert_eq!(w.service_account, "old");
        assert!(w.images.is_empty());
    }

    #[test]
    fn non_workloads_are_none() {
        for (api_version, kind) in [
            ("v1", "ConfigMap"),
            ("v1", "Service"),
            ("example.com/v1", "Deployment"),
            ("batch.volcano.sh/v1alpha1", "Job"),
            ("apps/v1", "Pod"),
        ] {
            let o = json!({"apiVersion": api_version, "kind": kind, "spec": {"containers": 3}});
            assert_eq!(Workload::from_json(&o), Ok(None), "{api_version} {kind}");
        }
        assert_eq!(
            WorkloadKind::from_type("extensions/v1beta1", "Deployment"),
            Some(WorkloadKind::Deployment)
        );
        assert_eq!(
            WorkloadKind::from_type("", "CronJob"),
            Some(WorkloadKind::CronJob)
        );
    }

    #[test]
    fn malformed_objects_name_the_json_path() {
        let cases = [
            (json!([1]), "(root) must be an object, found a list"),
            (
                json!({"kind": "Pod", "spec": {"containers": {"name": "x"}}}),
                "spec.containers must be a list of containers, found an object",
            ),
            (
                json!({"kind": "Pod", "spec": {"containers": [{"name": "x"}]}}),
                "spec.containers[0].image is missing; every container needs an image",
            ),
            (
                json!({"kind": "Pod", "spec": {"containers": [{"name": "x", "image": 5}]}}),
                "spec.containers[0].image must be a string, found a number",
            ),
            (
                json!({"kind": "Pod", "spec": {"initContainers": ["nginx"]}}),
                "spec.initContainers[0] must be an object, found a string",
            ),
            (
                json!({"kind": "Pod"}),
                "spec is missing; a pod needs a spec with containers",
            ),
            (
                json!({"kind": "Pod", "metadata": {"name": 1}, "spec": {}}),
                "metadata.name must be a string, found a number",
            ),
            (
                json!({"kind": "Pod", "metadata": {"labels": {"a": 1}}, "spec": {}}),
                "metadata.labels[\"a\"] must be a string, found a number",
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {}}),
                "spec.template is missing; a workload needs a pod template",
            ),
            (
                json!({"apiVersion": "batch/v1", "kind": "CronJob",
                       "spec": {"jobTemplate": {"spec": {"template": {"spec":
                           {"containers": [{"image": ""}]}}}}}}),
                "spec.jobTemplate.spec.template.spec.containers[0].image is missing; every container needs an image",
            ),
            (
                json!({"kind": "Pod", "spec": {"volumes": {"name": "x"}}}),
                "spec.volumes must be a list of volumes, found an object",
            ),
            (
                json!({"kind": "Pod", "spec": {"volumes": [{"name": "v", "image": {}}]}}),
                "spec.volumes[0].image.reference is missing; an image volume needs the reference of the image to mount",
            ),
            (
                json!({"kind": "Pod", "spec": {"volumes": [{"name": "v", "image": "evil"}]}}),
                "spec.volumes[0].image must be an object, found a string",
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec":
                    {"volumes": [{"name": "v", "image": {"reference": 7}}]}}}}),
                "spec.template.spec.volumes[0].image.reference must be a string, found a number",
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                       "spec": {"template": {"metadata": [], "spec": {}}}}),
                "spec.template.metadata must be an object, found a list",
            ),
        ];
        for (object, message) in cases {
            let err = match WorkloadKind::from_type(
                object["apiVersion"].as_str().unwrap_or(""),
                object["kind"].as_str().unwrap_or("Pod"),
            ) {
                Some(kind) => Workload::from_object(kind, &object).unwrap_err(),
                None => unreachable!(),
            };
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn policy_annotation_domains() {
        assert!(is_policy_annotation(
            "alpha.image-policy.k8s.io/break-glass"
        ));
        assert!(is_policy_annotation("image-policy.k8s.io/x"));
        assert!(!is_policy_annotation(
            "evil-image-policy.k8s.io/break-glass"
        ));
        assert!(!is_policy_annotation("image-policy.k8s.io"));
    }
}
