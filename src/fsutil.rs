//! Writing files so that no reader ever sees half of one, and locks that keep two processes
//! from writing the same directory.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Refuses an output directory `dir` (given by `flag`) that is a file, or lies under one,
/// with an error naming the flag, the file, and `what` the directory is for.
pub fn check_output_dir(flag: &str, dir: &Path, what: &str) -> Result<()> {
    let file = dir
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .find(|a| a.exists() && !a.is_dir());
    match file {
        None => Ok(()),
        Some(f) if f == dir => Err(Error::flag(
            flag,
            format!("{} is a file; expected a directory for {what}", dir.display()),
        )),
        Some(f) => Err(Error::flag(
            flag,
            format!(
                "{} is a file, so {} cannot be made; expected a directory for {what}",
                f.display(),
                dir.display()
            ),
        )),
    }
}

/// Write `bytes` to `path` atomically: a temporary file in the same directory, flushed to disk,
/// then renamed over `path`. An interrupted write leaves either the old file or none.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(PARTIAL_PREFIX)
        .suffix(PARTIAL_SUFFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    // Errors name the file being written, not the temporary one (which is removed as `tmp`
    // drops): "No space left on device" is about `path` as far as the user is concerned.
    // Through the plain file: `NamedTempFile`'s own writes add the temporary path to errors.
    tmp.as_file().write_all(bytes).map_err(|e| Error::io(path, e))?;
    // Temporary files are created private (0600); the result should be an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let perms = std::fs::Permissions::from_mode(0o644);
        tmp.as_file()
            .set_permissions(perms)
            .map_err(|e| Error::io(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

const PARTIAL_PREFIX: &str = ".mnist-mlp-";
const PARTIAL_SUFFIX: &str = ".partial";

/// Remove the temporary files [`write_atomic`] left in `dir` when its process was killed
/// mid-write (a process that ends normally removes its own). Only for a directory that no
/// other process is writing into; returns how many were removed.
pub fn remove_stale_partials(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PARTIAL_PREFIX) && name.ends_with(PARTIAL_SUFFIX) {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// [`write_atomic`] for JSON, pretty-printed with a final newline.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).expect("our config types always serialise");
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// The lock file `train` holds in its run directory while it writes there.
pub const LOCK_FILE: &str = ".mnist-mlp.lock";

/// An exclusive lock on a piece of work (a run directory, one run of a study), held as
/// `flock(2)` on a lock file. The kernel drops the lock when its process ends, however it ends
/// (`SIGKILL` and a crashed node's lost NFS lease included), so a dead process never holds it;
/// the file itself records who holds it, for the message of whoever is refused.
#[derive(Debug)]
pub struct Lock {
    file: std::fs::File,
    path: PathBuf,
}

impl Lock {
    /// Take the lock at `path` (creating the file), or fail at once with [`Error::Locked`]
    /// naming `what` is locked and by whom.
    pub fn try_acquire(path: &Path, what: &str) -> Result<Lock> {
        Self::acquire(path, what, false)
    }

    /// Take the lock at `path`, waiting while another process holds it.
    pub fn wait(path: &Path, what: &str) -> Result<Lock> {
        Self::acquire(path, what, true)
    }

    fn acquire(path: &Path, what: &str, wait: bool) -> Result<Lock> {
        use std::fs::TryLockError;
        loop {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            if wait {
                file.lock().map_err(|e| lock_failed(path, e))?;
            } else {
                match file.try_lock() {
                    Ok(()) => {}
                    Err(TryLockError::WouldBlock) => {
                        let holder = std::fs::read_to_string(path).unwrap_or_default();
                        let holder = holder.trim();
                        return Err(Error::Locked {
                            what: what.to_string(),
                            path: path.to_path_buf(),
                            holder: if holder.is_empty() {
                                "a process that has not yet said who it is".into()
                            } else {
                                holder.to_string()
                            },
                        });
                    }
                    Err(TryLockError::Error(e)) => return Err(lock_failed(path, e)),
                }
            }
            // A releasing holder removes the file after we opened it and before we locked it:
            // then we hold a lock on a file nobody else will ever open, and must take the new one.
            if same_file(&file, path) {
                let mut lock = Lock {
                    file,
                    path: path.to_path_buf(),
                };
                lock.record_holder();
                return Ok(lock);
            }
        }
    }

    /// Write who holds the lock into the file (best effort: it only serves messages).
    fn record_holder(&mut self) {
        let command: Vec<String> = std::env::args().collect();
        let text = format!(
            "pid {} on host {}: {}\n",
            std::process::id(),
            hostname(),
            command.join(" ")
        );
        let _ = self.file.set_len(0);
        let _ = std::io::Seek::seek(&mut self.file, std::io::SeekFrom::Start(0));
        let _ = self.file.write_all(text.as_bytes());
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lock {
    /// The file is removed while still locked, so no lock file outlives a clean exit; a waiter
    /// that opened it meanwhile sees it gone and takes a fresh one (see `acquire`).
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lock_failed(path: &Path, e: std::io::Error) -> Error {
    Error::io(
        path,
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot lock it ({e}); the directory must be on a file system where flock works \
                 (local, NFSv4, NFSv3 with its lock manager, CephFS, Lustre mounted with -o flock)"
            ),
        ),
    )
}

fn same_file(file: &std::fs::File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

/// This machine's name, for records of who ran what.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}
