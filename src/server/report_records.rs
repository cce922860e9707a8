//! The chain report's records and totals, kept on the server as a till keeps its own
//! (`domain::insights::{Record, Totals}`): what both backends share.

use crate::domain::Entry;

use super::db::{DbError, stored_entry};

/// Server sequence numbers whose members' records are made again in one transaction.
pub(super) const BATCH_SEQS: i64 = 20_000;
/// Members whose records are made in one transaction when making them all.
pub(super) const MEMBERS_PER_STEP: usize = 2_000;
/// Records not yet counted above which remaking every record, member by member in id order,
/// is quicker than making each touched one again.
pub(super) const REMAKE_BACKLOG: i64 = 200_000;

/// A member's stored entries (canonical JSON), oldest first, as a digest takes them.
pub(super) fn entries_oldest_first<'a>(
    bodies: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Entry>, DbError> {
    let mut entries = bodies
        .into_iter()
        .map(stored_entry)
        .collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|e| (e.occurred_at, e.id));
    Ok(entries)
}

/// A store error on the server's copy of the records, as the server reports it.
pub(super) fn records_error(e: crate::store::StoreError) -> DbError {
    DbError::Internal(format!("the chain report's records: {e}"))
}
