//! The lock file (`strata.lock`) that keeps two processes from writing one store.
//!
//! A writer holds an exclusive `flock` on the file for as long as the store is open and
//! writes its pid into it, so that the second opener can say who holds the store. The
//! kernel drops the lock when the process dies (even on `kill -9`), so a stale lock file
//! never blocks a restart. This module never deletes the lock file: deleting it would let a
//! third process lock a different inode.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "strata.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the store at {dir} is in use by process {pid} (lock file {file}); stop that process or use another directory")]
    Held {
        dir: PathBuf,
        file: PathBuf,
        pid: String,
    },
    #[error("cannot lock the store at {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An exclusive hold on a store directory, released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Takes the lock on `dir` or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<StoreLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    pid: holder(&path).unwrap_or_else(|| "unknown".into()),
                    file: path,
                })
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(StoreLock { _file: file })
    }

    /// Whether some process holds `dir`'s lock now; returns its pid if so.
    pub fn held_by(dir: &Path) -> Option<String> {
        let path = dir.join(LOCK_FILE);
        let file = File::open(&path).ok()?;
        match file.try_lock_shared() {
            Ok(()) => None,
            Err(_) => Some(holder(&path).unwrap_or_else(|| "unknown".into())),
        }
    }
}

fn holder(path: &Path) -> Option<String> {
    let mut s = String::new();
    File::open(path).ok()?.read_to_string(&mut s).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = StoreLock::acquire(dir.path()).unwrap();
        let err = StoreLock::acquire(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&std::process::id().to_string()),
            "message does not name the pid: {msg}"
        );
        assert!(StoreLock::held_by(dir.path()).is_some());
        drop(held);
        assert!(StoreLock::held_by(dir.path()).is_none());
        StoreLock::acquire(dir.path()).unwrap();
    }
}
