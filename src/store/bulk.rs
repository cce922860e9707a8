//! Loading a block of historic members with their entries (demo data, imports).

use rusqlite::TransactionBehavior;

use super::members::insert_member;
use super::rows::{insert_entry, upsert_state};
use super::{Result, Store, StoreError};
use crate::domain::summary::summarise;
use crate::domain::{Entry, Member, Timestamp};

/// Page cache for bulk loads, in KiB (SQLite takes a negative `cache_size` as KiB).
const BULK_CACHE_KIB: i64 = -256 * 1024;

/// A member and every entry they have, made elsewhere.
#[derive(Debug, Clone)]
pub struct HistoricMember {
    pub member: Member,
    pub entries: Vec<Entry>,
}

impl Store {
    /// True when the store has no members yet.
    pub fn is_empty(&self) -> Result<bool> {
        let any: bool = self
            .conn
            .query_row("SELECT EXISTS (SELECT 1 FROM members)", [], |r| r.get(0))?;
        Ok(!any)
    }

    /// Appends new members with their complete histories in one transaction, deriving each
    /// member's cached state as of `as_of` from those entries. Entries must come from other
    /// terminals (never this till's sequence) and pass the same shape checks as any entry.
    pub fn load_history(&mut self, members: &[HistoricMember], as_of: Timestamp) -> Result<()> {
        for h in members {
            for e in &h.entries {
                e.check_shape()?;
                if e.member_id != h.member.id || e.terminal_id == self.terminal {
                    return Err(StoreError::BadEntry {
                        id: e.id,
                        reason: "historic entries belong to their member and another terminal"
                            .to_owned(),
                    });
                }
            }
        }
        // Histories arrive in member order, so index pages are hit in random order: give this
        // connection a bigger page cache than SQLite's 2 MB default while it loads.
        self.conn
            .pragma_update(None, "cache_size", BULK_CACHE_KIB)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for h in members {
            insert_member(&tx, &h.member)?;
            for e in &h.entries {
                if !insert_entry(&tx, e)? {
                    return Err(StoreError::IdConflict(e.id));
                }
            }
            upsert_state(
                &tx,
                h.member.id,
                &summarise(&self.program, &h.entries, as_of),
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}
