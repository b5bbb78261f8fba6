//! Locating server binaries: PATH first, then Debian's versioned Postgres directories.

use std::path::{Path, PathBuf};

use super::ServerError;

/// Finds `name` on PATH, or in the newest `/usr/lib/postgresql/<major>/bin`.
pub fn find(name: &str) -> Result<PathBuf, ServerError> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let candidate = entry.path().join("bin").join(name);
            is_executable(&candidate).then_some((major, candidate))
        })
        .collect();
    versioned.sort();
    versioned
        .pop()
        .map(|(_, path)| path)
        .ok_or_else(|| ServerError::BinaryNotFound(name.to_string()))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
