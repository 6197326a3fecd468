//! Write outputs so that a reader never sees a half-written file: each file goes to a temporary
//! sibling first and is renamed into place only once every file of the set has been written.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Write all `(name, bytes)` pairs into `dir` (created if missing). Either every file is renamed
/// into place or, on error, the temporaries are removed and the previous contents stay untouched.
pub fn write_files_atomically(dir: &Path, files: &[(&str, Vec<u8>)]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = (|| -> Result<()> {
        for (name, bytes) in files {
            let final_path = dir.join(name);
            let temp_path = dir.join(format!(".{name}.tmp-{}", std::process::id()));
            staged.push((temp_path.clone(), final_path));
            std::fs::write(&temp_path, bytes)
                .with_context(|| format!("cannot write {}", temp_path.display()))?;
        }
        Ok(())
    })();
    if let Err(error) = result {
        for (temp, _) in &staged {
            let _ = std::fs::remove_file(temp);
        }
        return Err(error);
    }
    let mut written = Vec::new();
    for (temp, final_path) in staged {
        std::fs::rename(&temp, &final_path)
            .with_context(|| format!("cannot move {} into place", final_path.display()))?;
        written.push(final_path);
    }
    Ok(written)
}

/// Write one file atomically: temporary sibling, then rename.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?
        .to_string_lossy()
        .into_owned();
    write_files_atomically(dir, &[(name.as_str(), bytes.to_vec())])?;
    Ok(())
}
