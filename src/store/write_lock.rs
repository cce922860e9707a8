//! Sharing the store's one write lock between a long writer and quick ones. A catch-up pull
//! applies up to a quarter of a million entries a transaction, seconds of work; a sale or a
//! card taken on from the server meanwhile would wait for all of it. Every connection of this
//! process waits for the lock in [`wait_for_lock`], which says that it waits; the long writer
//! asks [`someone_waits`] between chunks and then [`step_aside`]: it commits what it has, lets
//! the waiter in, and takes the lock again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The longest a connection waits for the write lock before "database is locked".
const WAIT_AT_MOST: Duration = Duration::from_secs(5);
/// Between tries for the lock.
const NAP: Duration = Duration::from_millis(2);
/// How long a long writer leaves the lock free: many naps, so a waiter's next try falls in it.
const STEP_ASIDE: Duration = Duration::from_millis(20);

static WAITING: AtomicBool = AtomicBool::new(false);

/// SQLite's busy handler for every store connection: notes that a writer waits, naps, and tries
/// again, for up to [`WAIT_AT_MOST`].
pub(super) fn wait_for_lock(attempt: i32) -> bool {
    WAITING.store(true, Ordering::Relaxed);
    if NAP * attempt.unsigned_abs() >= WAIT_AT_MOST {
        return false;
    }
    std::thread::sleep(NAP);
    true
}

/// Whether a connection of this process has waited for the write lock since the last call.
pub(super) fn someone_waits() -> bool {
    WAITING.swap(false, Ordering::Relaxed)
}

/// Commits what `tx` holds so far, leaves the lock free for [`STEP_ASIDE`], then opens a new
/// write transaction under the same handle (its commit or rollback ends that one). Only for
/// work that is whole at every step, replayed idempotently if a crash comes between steps.
pub(super) fn step_aside(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch("COMMIT")?;
    std::thread::sleep(STEP_ASIDE);
    tx.execute_batch("BEGIN IMMEDIATE")
}

/// Steps aside ([`step_aside`]) if a writer waits for the lock.
pub(super) fn let_waiting_writer_in(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    if someone_waits() {
        step_aside(tx)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, TransactionBehavior};

    fn open(path: &std::path::Path) -> Connection {
        let conn = Connection::open(path).expect("open");
        crate::store::schema::configure(&conn).expect("configure");
        conn
    }

    fn rows(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn.prepare("SELECT n FROM t ORDER BY n").expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    /// A writer that finds the lock held says so; the holder commits its work so far, the
    /// waiter gets in, and the holder's later work stays in its transaction until it commits.
    #[test]
    fn a_waiting_writer_is_let_in_between_steps() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("lock.sqlite3");
        let mut long = open(&path);
        long.execute_batch("CREATE TABLE t (n INTEGER)")
            .expect("table");
        let tx = long
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("begin");
        tx.execute("INSERT INTO t VALUES (1)", []).expect("insert");
        let quick_path = path.clone();
        let quick = std::thread::spawn(move || {
            open(&quick_path)
                .execute("INSERT INTO t VALUES (2)", [])
                .expect("the quick write gets in")
        });
        // The flag is the process's: another test's waiter may have raised it before this one
        // waits, so step aside each time it is up until the quick writer is done.
        while !quick.is_finished() {
            if someone_waits() {
                step_aside(&tx).expect("step aside");
            } else {
                std::thread::yield_now();
            }
        }
        let reader = open(&path);
        assert!(rows(&reader).contains(&1), "the work so far is committed");
        quick.join().expect("the quick writer");
        tx.execute("INSERT INTO t VALUES (3)", []).expect("insert");
        assert!(
            !rows(&reader).contains(&3),
            "later work waits for the commit"
        );
        tx.commit().expect("commit");
        assert_eq!(rows(&reader), vec![1, 2, 3]);
    }
}
