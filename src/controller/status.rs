//! Writing status: server-side apply of `{apiVersion, kind, status}` on the status
//! subresource, with the one binauthz field manager, forced.

use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::{Api, Resource};
use serde::Serialize;

use super::{Error, bounded};
use crate::crd::FIELD_MANAGER;

/// The apply patch that sets `status` of a `K`.
pub fn status_patch<K: Resource<DynamicType = ()>>(status: &impl Serialize) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    })
}

/// Apply `status` to the named object by server-side apply.
pub async fn apply<K>(
    api: &Api<DeserializeGuard<K>>,
    name: &str,
    status: &impl Serialize,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = status_patch::<K>(status);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    bounded(api.patch_status(name, &params, &Patch::Apply(&patch))).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Attestor, AttestorStatus};

    #[test]
    fn patch_names_the_type() {
        let patch = status_patch::<Attestor>(&AttestorStatus::default());
        assert_eq!(patch["apiVersion"], "binauthz.dev/v1alpha1");
        assert_eq!(patch["kind"], "Attestor");
        assert_eq!(patch["status"]["usableKeys"], 0);
    }
}
