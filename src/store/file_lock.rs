//! An exclusive lock on a file beside a database, held across processes (and across
//! connections of one process) for work that must not run twice at once: a schema upgrade, a
//! report's refresh. The kernel releases it when its holder dies.

use std::fs::{File, TryLockError};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

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

/// [`hold`] when `needed`, else nothing.
pub(crate) fn hold_if(needed: bool, path: &Path) -> std::io::Result<Option<File>> {
    needed.then(|| hold(path)).transpose()
}

/// The lock file for the database at `database`: its real path (links resolved, its
/// directory's while the file does not exist yet) followed by `suffix`, so that two paths to
/// one database name one lock.
pub(crate) fn beside(database: &Path, suffix: &str) -> PathBuf {
    let real = std::fs::canonicalize(database)
        .or_else(|_| {
            let dir = database
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let name = database.file_name().ok_or(ErrorKind::InvalidInput)?;
            Ok::<_, std::io::Error>(std::fs::canonicalize(dir)?.join(name))
        })
        .unwrap_or_else(|_| database.to_owned());
    let mut name = real.into_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Whether some handle holds the lock on the file at `path` now (false when there is no such
/// file). A look only: the holder may let go the moment after.
pub(crate) fn is_held(path: &Path) -> bool {
    File::open(path).is_ok_and(|file| matches!(file.try_lock(), Err(TryLockError::WouldBlock)))
}

#[cfg(test)]
mod tests {
    use super::{beside, hold, is_held};

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

    /// A database reached through a link, before and after its file exists, names the lock
    /// its real path names.
    #[cfg(unix)]
    #[test]
    fn a_link_to_a_database_names_its_lock() {
        let dir = tempfile::tempdir().expect("dir");
        let real = dir.path().join("real");
        std::fs::create_dir(&real).expect("dir");
        std::os::unix::fs::symlink(&real, dir.path().join("link")).expect("link");
        let through_link = dir.path().join("link").join("till.db");
        let direct = real.canonicalize().expect("real").join("till.db");
        assert_eq!(
            beside(&through_link, ".lock"),
            beside(&direct, ".lock"),
            "no file yet"
        );
        std::fs::write(&direct, b"").expect("file");
        assert_eq!(beside(&through_link, ".lock"), beside(&direct, ".lock"));
        assert_eq!(
            beside(&direct, ".lock"),
            direct.with_file_name("till.db.lock")
        );
    }
}
