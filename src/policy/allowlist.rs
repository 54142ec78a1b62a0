//! Allowlist (`admissionWhitelistPatterns`) patterns with Binary Authorization's wildcard rules.
//!
//! A pattern is exact, or ends in `*` (matches within one path segment: no `/`) or `**`
//! (matches across segments). Wildcards appear only at the end and only after the `registry/`
//! part. Tag and digest patterns (`...:v1.*`, `...@sha256:...`) match the tagged or digested
//! reference like any other text.
//!
//! Evaluation tries each image as written and in its normalised form
//! (`registry/repository[:tag][@digest]`, so `nginx:1.25` is also
//! `docker.io/library/nginx:1.25`); an image that does not parse is tried as written only.

use std::collections::HashSet;
use std::fmt;

/// Repositories whose images are exempt when a policy sets `globalPolicyEvaluationMode: ENABLE`:
/// the control-plane, node and add-on components a cluster needs to run, by repository (any
/// tag or digest), as published by Kubernetes and by the vendors' distributions.
///
/// Never a whole registry that also hosts test or tool images: `registry.k8s.io` serves
/// `e2e-test-images/agnhost`, which runs any shell command it is given. Registries that only
/// hold a distribution's own system components (Google documents these for GKE) are listed
/// whole, with `/**`, so that a look-alike (`gcr.io/gke-release-evil/...`) does not match.
pub const SYSTEM_IMAGE_REPOSITORIES: &[&str] = &[
    // Upstream Kubernetes (registry.k8s.io since 2023, k8s.gcr.io before, backed by
    // gcr.io/google-containers): control plane, node and cluster add-ons.
    "registry.k8s.io/kube-apiserver",
    "registry.k8s.io/kube-controller-manager",
    "registry.k8s.io/kube-scheduler",
    "registry.k8s.io/kube-proxy",
    "registry.k8s.io/etcd",
    "registry.k8s.io/pause",
    "registry.k8s.io/coredns/coredns",
    "registry.k8s.io/dns/k8s-dns-node-cache",
    "registry.k8s.io/metrics-server/metrics-server",
    "registry.k8s.io/kas-network-proxy/proxy-agent",
    "registry.k8s.io/kas-network-proxy/proxy-server",
    "registry.k8s.io/cpa/cluster-proportional-autoscaler",
    "registry.k8s.io/autoscaling/cluster-autoscaler",
    "registry.k8s.io/node-problem-detector/node-problem-detector",
    "registry.k8s.io/sig-storage/csi-provisioner",
    "registry.k8s.io/sig-storage/csi-attacher",
    "registry.k8s.io/sig-storage/csi-resizer",
    "registry.k8s.io/sig-storage/csi-snapshotter",
    "registry.k8s.io/sig-storage/csi-node-driver-registrar",
    "registry.k8s.io/sig-storage/livenessprobe",
    "registry.k8s.io/sig-storage/snapshot-controller",
    "registry.k8s.io/cloud-provider-aws/cloud-controller-manager",
    "registry.k8s.io/cloud-provider-gcp/cloud-controller-manager",
    "k8s.gcr.io/kube-apiserver",
    "k8s.gcr.io/kube-controller-manager",
    "k8s.gcr.io/kube-scheduler",
    "k8s.gcr.io/kube-proxy",
    "k8s.gcr.io/etcd",
    "k8s.gcr.io/pause",
    "k8s.gcr.io/coredns",
    "k8s.gcr.io/coredns/coredns",
    "k8s.gcr.io/dns/k8s-dns-node-cache",
    "k8s.gcr.io/metrics-server/metrics-server",
    "gcr.io/google-containers/pause",
    "gcr.io/google-containers/kube-proxy",
    "gcr.io/google_containers/pause",
    "gcr.io/google_containers/kube-proxy",
    // GKE system components: Google documents these registries as needed for a GKE cluster
    // to start, and publishes only its own components there.
    "gke.gcr.io/**",
    "gcr.io/gke-release/**",
    "gcr.io/stackdriver-agents/**",
    // AKS builds of the upstream node components and add-ons, published by Microsoft.
    "mcr.microsoft.com/oss/kubernetes/kube-proxy",
    "mcr.microsoft.com/oss/kubernetes/pause",
    "mcr.microsoft.com/oss/kubernetes/coredns",
    "mcr.microsoft.com/oss/kubernetes/metrics-server",
    "mcr.microsoft.com/oss/kubernetes/azure-cloud-node-manager",
    "mcr.microsoft.com/oss/kubernetes/azure-cloud-controller-manager",
    // EKS Distro builds of the upstream components, published by AWS.
    "public.ecr.aws/eks-distro/kubernetes/kube-apiserver",
    "public.ecr.aws/eks-distro/kubernetes/kube-controller-manager",
    "public.ecr.aws/eks-distro/kubernetes/kube-scheduler",
    "public.ecr.aws/eks-distro/kubernetes/kube-proxy",
    "public.ecr.aws/eks-distro/kubernetes/pause",
    "public.ecr.aws/eks-distro/etcd-io/etcd",
    "public.ecr.aws/eks-distro/coredns/coredns",
    "public.ecr.aws/eks-distro/kubernetes-sigs/metrics-server",
];

/// The allowlist patterns of [`SYSTEM_IMAGE_REPOSITORIES`]: a repository `R` becomes `R:*`
/// (any tag) and `R@*` (any digest); a registry ending in `/**` stays as it is.
pub fn system_image_patterns() -> impl Iterator<Item = String> {
    SYSTEM_IMAGE_REPOSITORIES.iter().flat_map(|r| {
        if r.ends_with("/**") {
            vec![(*r).to_owned()]
        } else {
            vec![format!("{r}:*"), format!("{r}@*")]
        }
    })
}

/// An allowlist pattern that was refused, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidPattern {
    /// The pattern as written.
    pub pattern: String,
    /// Why it is not valid, and what would be.
    pub reason: &'static str,
}

impl fmt::Display for InvalidPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.pattern, self.reason)
    }
}

/// One valid pattern, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// Matches only this exact string.
    Exact(String),
    /// Trailing `*`: this prefix, then anything without `/`.
    Segment(String),
    /// Trailing `**`: this prefix, then anything.
    Any(String),
}

impl Pattern {
    /// Compile one pattern, or say why it is invalid.
    pub(crate) fn compile(pattern: &str) -> Result<Self, InvalidPattern> {
        let fail = |reason| InvalidPattern {
            pattern: pattern.to_owned(),
            reason,
        };
        if pattern.is_empty() {
            return Err(fail("pattern is empty"));
        }
        if pattern.chars().any(char::is_whitespace) {
            return Err(fail("pattern must not contain whitespace"));
        }
        let prefix = pattern.trim_end_matches('*');
        let stars = pattern.len() - prefix.len();
        if prefix.contains('*') {
            return Err(fail(
                "wildcards are only allowed at the end of the pattern (e.g. gcr.io/my-project/nginx*)",
            ));
        }
        if stars > 2 {
            return Err(fail(
                "a pattern may end in * (one path segment) or ** (any depth), not more stars",
            ));
        }
        if stars > 0 {
            match prefix.split_once('/') {
                Some((registry, _)) if !registry.is_empty() => {}
                _ => {
                    return Err(fail(
                        "wildcards are only allowed after the registry/ part (e.g. gcr.io/my-project/*)",
                    ));
                }
            }
        }
        Ok(match stars {
            0 => Self::Exact(pattern.to_owned()),
            1 => Self::Segment(prefix.to_owned()),
            _ => Self::Any(prefix.to_owned()),
        })
    }
}

/// A compiled set of patterns, matched without allocating.
#[derive(Clone, Debug, Default)]
pub(crate) struct Allowlist {
    exact: HashSet<String>,
    segment: Vec<String>,
    any: Vec<String>,
}

impl Allowlist {
    /// Add one compiled pattern.
    pub(crate) fn push(&mut self, pattern: Pattern) {
        match pattern {
            Pattern::Exact(s) => {
                self.exact.insert(s);
            }
            Pattern::Segment(p) => self.segment.push(p),
            Pattern::Any(p) => self.any.push(p),
        }
    }

    /// Whether there is no pattern at all (then no image needs normalising).
    pub(crate) fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.segment.is_empty() && self.any.is_empty()
    }

    /// Whether one image string matches any pattern.
    pub(crate) fn matches(&self, image: &str) -> bool {
        (!self.exact.is_empty() && self.exact.contains(image))
            || self.segment.iter().any(|p| {
                image
                    .strip_prefix(p.as_str())
                    .is_some_and(|rest| !rest.contains('/'))
            })
            || self.any.iter().any(|p| image.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[&str]) -> Allowlist {
        let mut a = Allowlist::default();
        for p in patterns {
            a.push(Pattern::compile(p).unwrap());
        }
        a
    }

    #[test]
    fn matching_follows_the_documented_examples() {
        // (pattern, image, matches)
        let cases: &[(&str, &str, bool)] = &[
            // Exact match without wildcard.
            (
                "gcr.io/example-project/helloworld",
                "gcr.io/example-project/helloworld",
                true,
            ),
            (
                "gcr.io/example-project/helloworld",
                "gcr.io/example-project/helloworld:v1",
                false,
            ),
            (
                "gcr.io/example-project/helloworld",
                "gcr.io/example-project/hello",
                false,
            ),
            // `*` stays within one path segment (docs, v1 and v1beta1 docstrings).
            (
                "gcr.io/my-project/nginx*",
                "gcr.io/my-project/nginx:latest",
                true,
            ),
            ("gcr.io/my-project/nginx*", "gcr.io/my-project/nginx", true),
            (
                "gcr.io/my-project/nginx*",
                "gcr.io/my-project/nginx-images/nginx",
                false,
            ),
            ("gcr.io/nginx*", "gcr.io/nginx@latest", true),
            ("gcr.io/nginx*", "gcr.io/nginx/image", false),
            ("gcr.io/*", "gcr.io/x", true),
            ("gcr.io/*", "gcr.io/x/y", false),
            // `**` crosses segments.
            ("gcr.io/nginx**", "gcr.io/nginx/image", true),
            (
                "gcr.io/my-project/nginx**",
                "gcr.io/my-project/nginx-1.14.2/image:latest",
                true,
            ),
            // The docs' caution: a `**` without `/` also covers look-alike projects.
            (
                "gcr.io/my-project**",
                "gcr.io/my-project-exploit/nginx-exploit",
                true,
            ),
            (
                "gcr.io/my-project/**",
                "gcr.io/my-project-exploit/nginx-exploit",
                false,
            ),
            // Tag and digest patterns.
            ("gcr.io/p/nginx:v1.*", "gcr.io/p/nginx:v1.25", true),
            ("gcr.io/p/nginx:v1.*", "gcr.io/p/nginx:v2.0", false),
            ("gcr.io/p/nginx:v1.*", "gcr.io/p/nginx", false),
            ("gcr.io/im@sha256:77b0", "gcr.io/im@sha256:77b0", true),
            ("gcr.io/im@sha256:*", "gcr.io/im@sha256:77b0", true),
            ("gcr.io/im@sha256:*", "gcr.io/im:latest", false),
            // A local reference is an exact pattern.
            ("loc-ref", "loc-ref", true),
            ("loc-ref", "loc-ref2", false),
        ];
        for (pattern, image, want) in cases {
            assert_eq!(
                list(&[pattern]).matches(image),
                *want,
                "pattern {pattern} image {image}"
            );
        }
    }

    #[test]
    fn invalid_patterns_name_the_reason() {
        let cases: &[(&str, &str)] = &[
            ("gcr.io/n*x", "only allowed at the end"),
            ("gcr.io/*/nginx", "only allowed at the end"),
            ("*", "after the registry/ part"),
            ("**", "after the registry/ part"),
            ("gcr.io*", "after the registry/ part"),
            ("gcr.io**", "after the registry/ part"),
            ("/foo*", "after the registry/ part"),
            ("gcr.io/p/***", "not more stars"),
            ("", "empty"),
            ("gcr.io/p /x", "whitespace"),
        ];
        for (pattern, reason) in cases {
            let err = Pattern::compile(pattern).unwrap_err();
            assert!(err.reason.contains(reason), "{pattern}: {}", err.reason);
            assert_eq!(err.pattern, *pattern);
        }
        assert_eq!(
            Pattern::compile("gcr.io*").unwrap_err().to_string(),
            "\"gcr.io*\": wildcards are only allowed after the registry/ part (e.g. gcr.io/my-project/*)"
        );
    }

    #[test]
    fn valid_patterns_compile_to_their_kind() {
        assert_eq!(
            Pattern::compile("gcr.io/p/i").unwrap(),
            Pattern::Exact("gcr.io/p/i".into())
        );
        assert_eq!(
            Pattern::compile("gcr.io/p/*").unwrap(),
            Pattern::Segment("gcr.io/p/".into())
        );
        assert_eq!(
            Pattern::compile("registry.k8s.io/**").unwrap(),
            Pattern::Any("registry.k8s.io/".into())
        );
    }

    #[test]
    fn system_patterns_are_valid_and_do_not_cover_look_alikes_or_test_images() {
        let patterns: Vec<String> = system_image_patterns().collect();
        let sys = list(&patterns.iter().map(String::as_str).collect::<Vec<_>>());
        for p in &patterns {
            assert!(
                p.ends_with("/**") || p.ends_with(":*") || p.ends_with("@*"),
                "{p}"
            );
        }
        for exempt in [
            "registry.k8s.io/pause:3.10",
            "registry.k8s.io/kube-proxy:v1.34.3",
            "registry.k8s.io/coredns/coredns:v1.12.0",
            "registry.k8s.io/pause@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a",
            "registry.k8s.io/etcd:3.6.4-0@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a",
            "gke.gcr.io/gke-metrics-agent/x:1",
            "gcr.io/gke-release/asm/proxyv2:1.0",
        ] {
            assert!(sys.matches(exempt), "{exempt}");
        }
        for judged in [
            // Test images run anything they are told to.
            "registry.k8s.io/e2e-test-images/agnhost:2.52",
            "registry.k8s.io/e2e-test-images/busybox:1.36.1-1",
            "k8s.gcr.io/e2e-test-images/agnhost:2.39",
            // Look-alikes of listed repositories and registries.
            "registry.k8s.io/pause-evil:1",
            "registry.k8s.io/pause/evil:1",
            "registry.k8s.io/pause",
            "gcr.io/gke-release-evil/x",
            "docker.io/library/nginx",
        ] {
            assert!(!sys.matches(judged), "{judged}");
        }
        assert!(Allowlist::default().is_empty());
        assert!(!Allowlist::default().matches("anything"));
    }
}
