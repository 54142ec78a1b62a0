//! `binauthz policy import|export` and `binauthz attestor import`: Google Binary Authorization's
//! gcloud YAML to and from binauthz's kinds.

use std::path::Path;

use super::{CommandError, read_text};
use crate::cli::{AttestorImportArgs, PolicyExportArgs, PolicyImportArgs};
use crate::manifests::Manifests;

fn gcloud_error(path: &Path) -> impl FnOnce(crate::gcloud::GcloudError) -> CommandError + '_ {
    move |source| CommandError::Gcloud {
        path: path.display().to_string(),
        source,
    }
}

/// `binauthz policy import`: the AttestationPolicy YAML for a gcloud policy export.
pub fn policy_import(args: &PolicyImportArgs) -> Result<String, CommandError> {
    let text = read_text(&args.file)?;
    let options = crate::gcloud::PolicyImportOptions {
        name: args.name.clone(),
        cluster: args.cluster.clone(),
    };
    let imported =
        crate::gcloud::import_policy(&text, &options).map_err(gcloud_error(&args.file))?;
    Ok(imported.to_yaml()?)
}

/// `binauthz policy export`: gcloud's policy YAML for an AttestationPolicy.
pub fn policy_export(args: &PolicyExportArgs) -> Result<String, CommandError> {
    let manifests = Manifests::load(std::slice::from_ref(&args.file))?;
    let names: Vec<&str> = manifests
        .policies
        .iter()
        .map(|(_, p)| p.metadata.name.as_deref().unwrap_or_default())
        .collect();
    let chosen = match &args.name {
        Some(name) => manifests
            .policies
            .iter()
            .find(|(_, p)| p.metadata.name.as_deref() == Some(name.as_str())),
        None if manifests.policies.len() == 1 => manifests.policies.first(),
        None if manifests.policies.is_empty() => None,
        None => {
            return Err(CommandError::Usage(format!(
                "{}: holds {} AttestationPolicies ({}); choose one with --name",
                args.file.display(),
                names.len(),
                names.join(", ")
            )));
        }
    };
    let Some((_, policy)) = chosen else {
        return Err(CommandError::Usage(match &args.name {
            Some(name) => format!(
                "{}: no AttestationPolicy named {name} (found: {})",
                args.file.display(),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ),
            None => format!("{}: no AttestationPolicy found", args.file.display()),
        }));
    };
    crate::gcloud::export_policy(&policy.spec, &args.project).map_err(gcloud_error(&args.file))
}

/// `binauthz attestor import`: the Attestor YAML for a gcloud attestor description.
pub fn attestor_import(args: &AttestorImportArgs) -> Result<String, CommandError> {
    let text = read_text(&args.file)?;
    let imported = crate::gcloud::import_attestor(&text, args.name.as_deref())
        .map_err(gcloud_error(&args.file))?;
    Ok(imported.to_yaml()?)
}
