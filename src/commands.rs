//! What each CLI subcommand does, kept out of `main` so tests can call it.

use std::io::Write;
use std::path::Path;

use crate::crd;

/// Errors of the CLI subcommands, one line each.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Rendering YAML failed.
    #[error("cannot render YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CommandError + '_ {
    move |source| CommandError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `binauthz crds`: print every CRD, or write one file each into `out`.
pub fn crds(out: Option<&Path>) -> Result<(), CommandError> {
    match out {
        None => {
            let yaml = crd::all_yaml()?;
            std::io::stdout()
                .write_all(yaml.as_bytes())
                .map_err(io_error(Path::new("<stdout>")))?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
            for definition in crd::all() {
                let path = dir.join(crd::file_name(&definition));
                std::fs::write(&path, crd::to_yaml(&definition)?).map_err(io_error(&path))?;
            }
        }
    }
    Ok(())
}
