//! A bulk pull's connection settings. The pull gets 256 MB of page cache (normal: 64 MB), as a
//! member-clustered ledger takes a big catch-up in random key order; it commits without waiting
//! for the disk (`synchronous=NORMAL`): a power cut can then undo its last pages, cursor and
//! entries together, and they are pulled again, while a sale committed in between still waits
//! for the disk, and with it everything before it; and its temporary files stay in memory, as
//! each member record is applied under a savepoint whose copies of the pages it changes would
//! otherwise go to a file on disk.
//!
//! The log is still copied into the file by the commit that fills it: a checkpoint thread
//! beside the pull was tried, and the log grew without end at 10M entries (the copy never
//! caught up with the writer at the moment it began its next transaction, so the log was never
//! started again from its beginning) until the disk was full.

use super::{Result, Store};

impl Store {
    /// Sets this connection up for a bulk pull; [`Store::end_bulk_pull`] puts it back.
    pub fn begin_bulk_pull(&self) -> Result<()> {
        self.conn.pragma_update(None, "cache_size", -256 * 1024)?;
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.conn.pragma_update(None, "temp_store", "MEMORY")?;
        Ok(())
    }

    /// Puts this connection back as [`super::schema::configure`] leaves it, after a bulk pull.
    pub fn end_bulk_pull(&self) -> Result<()> {
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
        ["synchronous", "temp_store", "cache_size"]
            .iter()
            .map(|p| pragma(store, p))
            .collect()
    }

    #[test]
    fn a_bulk_pull_leaves_the_connection_as_it_was() {
        let (_dir, mut store, member) = store_with_member();
        let normal = settings(&store);
        assert_eq!(normal, vec![2, 0, -64 * 1024], "FULL, DEFAULT, 64 MB");
        store.begin_bulk_pull().expect("begin");
        assert_eq!(
            settings(&store),
            vec![1, 2, -256 * 1024],
            "NORMAL, MEMORY, 256 MB"
        );
        store
            .earn(member, 1_000, "test", super::super::rows::tests::NOW)
            .expect("a sale meanwhile");
        store.end_bulk_pull().expect("end");
        assert_eq!(settings(&store), normal);
    }
}
