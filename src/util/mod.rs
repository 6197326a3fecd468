//! Small shared helpers: deterministic random numbers, atomic output, checksums.

pub mod atomic;
pub mod names;
pub mod rng;
pub mod table;

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// Hex SHA-256 of a file's bytes.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    sha256_files(&[path])
}

/// SHA-256 of the concatenated bytes of `paths` (a sharded checkpoint, in shard order).
pub fn sha256_files<P: AsRef<Path>>(paths: &[P]) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    for path in paths {
        let mut file = std::fs::File::open(path)?;
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}
