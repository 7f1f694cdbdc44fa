//! The Python package compiled into the binary, written out to a directory on start-up.

use std::path::{Path, PathBuf};

use crate::ScriptHostError;

include!(concat!(env!("OUT_DIR"), "/embedded_python.rs"));

/// Writes the embedded package into `dir` (or a directory named after its hash under the
/// temporary directory) and returns the directory to put on `sys.path`. An existing directory
/// is reused only if every file in it is byte-identical to the embedded one.
pub(super) fn extract(dir: Option<&Path>) -> Result<PathBuf, ScriptHostError> {
    let shared = std::env::temp_dir().join(format!("flowtap-script-host-{HASH}"));
    let dir = dir.map(Path::to_path_buf).unwrap_or(shared);
    if matches_embedded(&dir) {
        return Ok(dir);
    }
    match write_all(&dir) {
        Ok(()) => Ok(dir),
        Err(_) if !matches_embedded(&dir) => {
            // Someone else's directory (another user, or tampered with): use a private one.
            let private = std::env::temp_dir()
                .join(format!("flowtap-script-host-{HASH}-{}", std::process::id()));
            write_all(&private).map_err(|source| ScriptHostError::Package {
                path: private.clone(),
                source,
            })?;
            Ok(private)
        }
        Err(_) => Ok(dir),
    }
}

fn matches_embedded(dir: &Path) -> bool {
    FILES.iter().all(|(rel, source)| {
        std::fs::read(dir.join(rel)).is_ok_and(|bytes| bytes == source.as_bytes())
    })
}

fn write_all(dir: &Path) -> std::io::Result<()> {
    for (rel, source) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Write beside and rename, so a concurrently starting worker never reads half a file.
        let tmp = path.with_extension(format!("py.{}.tmp", std::process::id()));
        std::fs::write(&tmp, source)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(())
}
