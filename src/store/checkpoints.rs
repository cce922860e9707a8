//! Copying the write-ahead log into the database file beside a bulk pull. By default SQLite
//! does it inside the commit that fills the log past 1,000 pages: a catch-up commit then also
//! reads its pages back, writes them into the file and waits for the disk, seconds per batch on
//! a large store, while the next batch waits. During a bulk pull the puller's connection leaves
//! that to [`Checkpointer`], which does it on its own connection and thread, so the copying
//! overlaps the next batch's work.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::{Result, Store, StoreError};

/// How often the log is copied while a bulk pull runs.
const EVERY: Duration = Duration::from_millis(250);

/// Copies the log into the file every [`EVERY`] until dropped; dropping it copies what is left
/// and waits for the thread.
pub struct Checkpointer {
    stop: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Self> {
        let open_err = |cause| StoreError::Open {
            path: path.to_owned(),
            cause,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        super::schema::configure(&conn).map_err(open_err)?;
        let (stop, stopped) = mpsc::sync_channel::<()>(0);
        let thread = std::thread::Builder::new()
            .name("till-checkpoint".into())
            .spawn(move || {
                loop {
                    let last = matches!(
                        stopped.recv_timeout(EVERY),
                        Ok(()) | Err(RecvTimeoutError::Disconnected)
                    );
                    // A failed copy leaves the pages in the log, where readers find them; the
                    // next copy, or the puller's own after the pull, takes them.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    if last {
                        return;
                    }
                }
            })
            .map_err(|cause| StoreError::Thread {
                name: "checkpoint",
                cause,
            })?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Store {
    /// Sets this connection up for a bulk pull and starts copying the log beside it; dropping
    /// the [`Checkpointer`] and calling [`Store::end_bulk_pull`] put everything back.
    ///
    /// The pull gets 256 MB of page cache (normal: 64 MB), as a member-clustered ledger takes a
    /// big catch-up in random key order. It commits without waiting for the disk
    /// (`synchronous=NORMAL`): a power cut can then undo its last pages, cursor and entries
    /// together, and they are pulled again. A sale committed in between still waits for the
    /// disk, and with it everything before it. Its temporary files are kept in memory.
    pub fn begin_bulk_pull(&self) -> Result<Checkpointer> {
        let checkpointer = Checkpointer::start(&self.path)?;
        self.conn.pragma_update(None, "cache_size", -256 * 1024)?;
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // Each member record is applied under a savepoint, whose copies of the pages it changes
        // would otherwise go to a file on disk.
        self.conn.pragma_update(None, "temp_store", "MEMORY")?;
        Ok(checkpointer)
    }

    /// Puts this connection back as [`super::schema::configure`] leaves it, after a bulk pull.
    pub fn end_bulk_pull(&self) -> Result<()> {
        self.conn.pragma_update(None, "wal_autocheckpoint", 1000)?;
        super::schema::configure(&self.conn)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::rows::tests::store_with_member;

    fn pragma(store: &super::Store, name: &str) -> i64 {
        store
            .conn
            .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .expect(name)
    }

    /// The settings a bulk pull changes.
    fn settings(store: &super::Store) -> Vec<i64> {
        [
            "synchronous",
            "wal_autocheckpoint",
            "temp_store",
            "cache_size",
        ]
        .iter()
        .map(|p| pragma(store, p))
        .collect()
    }

    /// Ledger rows in the database file itself, leaving out the log.
    fn rows_in_the_file(store: &super::Store) -> i64 {
        let uri = format!("file:{}?immutable=1", store.path.display());
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        rusqlite::Connection::open_with_flags(uri, flags)
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM ledger", [], |r| r.get(0)))
            .expect("read the file alone")
    }

    #[test]
    fn a_bulk_pull_leaves_the_log_copied_and_the_connection_as_it_was() {
        let (_dir, mut store, member) = store_with_member();
        let normal = settings(&store);
        let checkpoints = store.begin_bulk_pull().expect("begin");
        assert_eq!(
            pragma(&store, "wal_autocheckpoint"),
            0,
            "copying is the thread's"
        );
        assert_eq!(pragma(&store, "synchronous"), 1, "NORMAL");
        for i in 0..50 {
            store
                .earn(member, 1_000 + i, "test", super::super::rows::tests::NOW)
                .expect("earn");
        }
        drop(checkpoints);
        let rows: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM ledger", [], |r| r.get(0))
            .expect("count");
        assert!(rows > 50, "the welcome bonus and the sales");
        assert_eq!(
            rows_in_the_file(&store),
            rows,
            "the checkpointer copied the log into the file"
        );
        store.end_bulk_pull().expect("end");
        assert_eq!(settings(&store), normal);
    }
}
