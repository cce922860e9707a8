//! An exclusive lock on a file beside a database, held across processes (and across
//! connections of one process) for work that must not run twice at once: a schema upgrade, a
//! report's refresh. The kernel releases it when its holder dies.

use std::fs::{File, TryLockError};
use std::io::ErrorKind;
use std::path::Path;

/// Waits for, then holds until dropped, the exclusive lock on the file at `path`, made if
/// missing. A lock file another user made (and this one may not write) is locked through a
/// read handle, which locks just the same.
pub(crate) fn hold(path: &Path) -> std::io::Result<File> {
    let file = match File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
    {
        Err(e) if e.kind() == ErrorKind::PermissionDenied => File::open(path)?,
        opened => opened?,
    };
    file.lock()?;
    Ok(file)
}

/// Whether some handle holds the lock on the file at `path` now (false when there is no such
/// file). A look only: the holder may let go the moment after.
pub(crate) fn is_held(path: &Path) -> bool {
    File::open(path).is_ok_and(|file| matches!(file.try_lock(), Err(TryLockError::WouldBlock)))
}

#[cfg(test)]
mod tests {
    use super::{hold, is_held};

    /// One holder at a time, even within one process: a second handle waits for the first
    /// to go (`try_lock` says it would block), then takes the lock.
    #[test]
    fn the_lock_is_held_until_dropped() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("work.lock");
        assert!(!is_held(&path), "no file, no holder");
        let first = hold(&path).expect("first");
        assert!(is_held(&path));
        let second = std::fs::File::open(&path).expect("second handle");
        assert!(matches!(
            second.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(first);
        assert!(!is_held(&path));
        second.try_lock().expect("free once the first is dropped");
    }
}
