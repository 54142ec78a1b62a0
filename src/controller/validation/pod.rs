//! What continuous validation keeps of pods: only what the policy reads.
//!
//! [`RunningPod`] is a partial Pod (kube's `#[resource(inherit = Pod)]`): the watch decodes the
//! API server's JSON straight into it and serde skips every other field, so the full Pod is
//! never built; [`strip_pod`] then drops the metadata the policy ignores. A cached pod costs a
//! few hundred bytes (a typed `k8s_openapi` Pod with one container is over 4 KiB even empty).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use kube::api::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::policy::{Workload, WorkloadError, WorkloadKind, is_policy_annotation};

/// A pod as continuous validation keeps it: identity, labels, the `image-policy.k8s.io`
/// annotations, the service account and every container's name and image.
#[derive(Resource, Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[resource(inherit = "Pod")]
pub struct RunningPod {
    /// Name, namespace, uid, labels and (after [`strip_pod`]) the policy annotations.
    pub metadata: ObjectMeta,
    /// What the policy reads of the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<RunningPodSpec>,
}

/// The part of a pod spec the policy reads (same field names, so the webhook's reader reads
/// it as it reads a Pod).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningPodSpec {
    /// `serviceAccountName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// The legacy `serviceAccount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// `containers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<ContainerImage>>,
    /// `initContainers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_containers: Option<Vec<ContainerImage>>,
    /// `ephemeralContainers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_containers: Option<Vec<ContainerImage>>,
    /// `volumes`, each reduced to its name and image (after [`strip_pod`], absent unless one
    /// mounts an image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<VolumeImage>>,
}

/// A volume's name and, for an image volume, the image it mounts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct VolumeImage {
    /// `name`.
    #[serde(default)]
    pub name: String,
    /// `image` (only image volumes have one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageVolumeSource>,
}

/// `volumes[].image`: the OCI image mounted as a volume.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ImageVolumeSource {
    /// `reference`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// A container's name and image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ContainerImage {
    /// `name`.
    #[serde(default)]
    pub name: String,
    /// `image` (always set on a pod the API server accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// Keep only what validation reads of a pod: name, namespace, uid, labels, the
/// `image-policy.k8s.io` annotations and the volumes' names when one mounts an image
/// (managed fields, owners and other annotations go).
pub fn strip_pod(pod: &mut RunningPod) {
    // Volumes keep their positions (the decision names `spec.volumes[i]`), so they stay unless
    // none mounts an image.
    if let Some(spec) = &mut pod.spec
        && spec
            .volumes
            .as_ref()
            .is_some_and(|v| v.iter().all(|v| v.image.is_none()))
    {
        spec.volumes = None;
    }
    let meta = std::mem::take(&mut pod.metadata);
    pod.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        labels: meta.labels,
        annotations: meta
            .annotations
            .map(|a| {
                a.into_iter()
                    .filter(|(k, _)| is_policy_annotation(k))
                    .collect::<BTreeMap<_, _>>()
            })
            .filter(|a| !a.is_empty()),
        ..ObjectMeta::default()
    };
}

/// The pod as the admission webhook reads it (the same JSON reader, so the same decision).
pub fn workload(pod: &RunningPod) -> Result<Workload, WorkloadError> {
    let object = serde_json::to_value(pod).unwrap_or_default();
    Workload::from_object(WorkloadKind::Pod, &object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn it_is_a_pod_to_the_api() {
        assert_eq!(RunningPod::kind(&()), "Pod");
        assert_eq!(RunningPod::api_version(&()), "v1");
        assert_eq!(RunningPod::plural(&()), "pods");
        assert_eq!(
            RunningPod::url_path(&(), Some("apps")),
            Pod::url_path(&(), Some("apps"))
        );
    }

    #[test]
    fn stripped_pods_keep_what_the_policy_reads() {
        let full: Value = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "p", "namespace": "apps", "uid": "u", "resourceVersion": "7",
                "labels": {"app": "x", "image-policy.k8s.io/break-glass": "true"},
                "annotations": {
                    "alpha.image-policy.k8s.io/break-glass": "true",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}"
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "r"}]
            },
            "spec": {
                "serviceAccountName": "deployer",
                "nodeName": "n1",
                "initContainers": [{"name": "init", "image": "busybox", "command": ["sh"]}],
                "containers": [{"name": "app", "image": "nginx:1", "env": [{"name": "A", "value": "b"}],
                                "ports": [{"containerPort": 80}]}],
                "ephemeralContainers": [{"name": "debug", "image": "busybox:1", "stdin": true}],
                "volumes": [{"name": "v", "emptyDir": {}},
                            {"name": "payload", "image": {"reference": "evil:1", "pullPolicy": "Always"}}]
            },
            "status": {"phase": "Running", "podIP": "10.0.0.1"}
        });
        let mut pod: RunningPod = serde_json::from_value(full.clone()).unwrap();
        strip_pod(&mut pod);
        assert_eq!(
            workload(&pod).unwrap(),
            Workload::from_json(&full).unwrap().unwrap(),
            "the same decision input as the admission webhook reads"
        );
        assert_eq!(pod.metadata.uid.as_deref(), Some("u"));
        assert_eq!(pod.metadata.labels.as_ref().unwrap().len(), 2);
        assert_eq!(
            pod.metadata.annotations,
            Some(BTreeMap::from([(
                "alpha.image-policy.k8s.io/break-glass".to_owned(),
                "true".to_owned()
            )]))
        );
        assert!(pod.metadata.managed_fields.is_none());
        assert!(pod.metadata.owner_references.is_none());
        assert!(pod.metadata.resource_version.is_none());
        let kept = serde_json::to_value(&pod).unwrap();
        assert_eq!(
            kept["spec"],
            json!({
                "serviceAccountName": "deployer",
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "app", "image": "nginx:1"}],
                "ephemeralContainers": [{"name": "debug", "image": "busybox:1"}],
                "volumes": [{"name": "v"}, {"name": "payload", "image": {"reference": "evil:1"}}]
            })
        );
        assert!(kept.get("status").is_none());
        assert!(
            std::mem::size_of::<RunningPod>() < 512,
            "{}",
            std::mem::size_of::<RunningPod>()
        );
        // The legacy service account field and a pod without init containers.
        let legacy: RunningPod = serde_json::from_value(json!({
            "metadata": {"name": "q", "namespace": "apps"},
            "spec": {"serviceAccount": "old", "containers": [{"name": "a", "image": "x"}],
                     "initContainers": null}
        }))
        .unwrap();
        assert_eq!(workload(&legacy).unwrap().service_account, "old");
    }
}
