//! The chain report's records and totals, kept on the server as a till keeps its own
//! (`domain::insights::{Record, Totals}`): what both backends share.

use crate::domain::Entry;

use super::activity::Activity;
use super::db::{DbError, stored_entry};

/// How a refresh of the chain report's records shares the database with pushing tills.
#[derive(Clone, Copy)]
pub enum Pace<'a> {
    /// A report waits on it: everything, now.
    All,
    /// The keeper once tills are quiet: everything, stopping between steps when they push.
    UntilPushes(&'a Activity),
    /// The keeper while tills push: one catch-up slice, never a remake.
    Slice,
}

impl Pace<'_> {
    /// Whether the refresh stops here, between two steps.
    pub(super) fn stops(self) -> bool {
        match self {
            Pace::All => false,
            Pace::UntilPushes(activity) => activity.ingesting(),
            Pace::Slice => true,
        }
    }
}

/// Where a refresh left the chain report's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// Up to date with every push stored when it last looked.
    Current,
    /// Part way: slices, or a remake begun again, are left for later.
    Partly,
    /// They must all be made again (a new program, a large backlog): not begun at the pace of
    /// one slice.
    RemakeLeft,
}

/// Server sequence numbers whose members' records are made again in one transaction.
pub(super) const BATCH_SEQS: i64 = 20_000;
/// Members whose records a catch-up writes in one transaction, while the next are made.
pub(super) const CATCH_UP_CHUNK: usize = 1_000;
/// Members whose records are made in one transaction when making them all.
pub(super) const MEMBERS_PER_STEP: usize = 2_000;

/// A column for the report state's query: the members, counted only when `remake_is_quicker`
/// needs them (a backlog over a slice), so a report after a few pushes does not count them.
pub(super) fn members_if_needed() -> String {
    format!(
        "CASE WHEN (SELECT last FROM server_seq) - last_seq > {BATCH_SEQS}
              THEN (SELECT COUNT(*) FROM members) END"
    )
}

/// Whether making every record again, member by member in id order, reads less than catching
/// up `backlog` sequence numbers: a slice makes again the record of every member it touches
/// from all their entries, so a backlog that touches about every member (more numbers than
/// members, or than a slice when there are fewer members) is quicker read in one pass.
pub(super) fn remake_is_quicker(backlog: i64, members: Option<i64>) -> bool {
    members.is_some_and(|members| backlog > members.max(BATCH_SEQS))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remake_waits_for_a_backlog_touching_about_every_member() {
        assert!(
            !remake_is_quicker(BATCH_SEQS, None),
            "one slice: not counted"
        );
        assert!(
            remake_is_quicker(BATCH_SEQS + 1, Some(10)),
            "two slices over ten members"
        );
        assert!(!remake_is_quicker(BATCH_SEQS * 2, Some(50_000)));
        assert!(!remake_is_quicker(900_000, Some(1_000_000)));
        assert!(remake_is_quicker(1_000_001, Some(1_000_000)));
    }
}
