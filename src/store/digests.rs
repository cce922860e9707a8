//! The report's record of each member (`domain::insights::Digest`, migration 020) and the
//! totals by day the records add up to (`domain::insights::Totals`, migration 021): brought up
//! to date from the entries and members that arrived since they were last, remade whole when
//! the program changes, in short transactions so that a sale never waits long behind them.
//! A record made again takes what the old one added off the totals and adds what it adds, in
//! the same transaction.

use std::collections::BTreeSet;

use rusqlite::{TransactionBehavior, params};

use super::records::{
    RECORD_INDEXES, add_totals, member_from_row, program_hash, read_record, read_stored,
    write_fresh_record, write_record,
};
use super::rows::{ENTRY_COLUMNS, entry_from_row, member_entries};
use super::{Result, Store, StoreError, schema};
use crate::domain::insights::{MemberFacts, Record, Totals, totals_answer};
use crate::domain::{Entry, MemberId, Timestamp};

/// Members whose records are made in one transaction when making them all.
const MEMBERS_PER_TRANSACTION: usize = 2_000;
/// Arrival numbers (and new members) whose records are brought up to date in one transaction.
const ENTRIES_PER_TRANSACTION: i64 = 20_000;
/// Arrivals (entries and members) not yet counted above which remaking every record is
/// quicker than making each touched one again (a till that just joined a chain, say).
const REMAKE_BACKLOG: i64 = 200_000;
impl Store {
    /// Brings every member's record and the totals up to date with the ledger and the members
    /// under the program in force, telling `progress` (entries read, entries in all) when it
    /// has to remake them all.
    pub(super) fn refresh_digests(&mut self, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        self.reload()?;
        let program = program_hash(&schema::current_program(&self.conn)?.1);
        let (made, backlog): (Option<String>, i64) = self.conn.query_row(
            "SELECT program, (SELECT COALESCE(MAX(seq), 0) FROM ledger) - seq
                    + (SELECT COALESCE(MAX(rowid), 0) FROM members) - members_rowid
             FROM report_digest_state",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if made.as_deref() != Some(program.as_str()) || backlog > REMAKE_BACKLOG {
            self.make_digests(&program, progress)?;
        }
        match self.catch_up_digests() {
            // A stored record that does not decode cannot be taken off the totals: remake all.
            Err(StoreError::BadRecord(_)) => {
                self.make_digests(&program, progress)?;
                self.catch_up_digests()
            }
            done => done,
        }
    }

    /// Whether the totals answer `[from, to)`: whole days, ending after every entry and every
    /// enrolment counted.
    pub(super) fn totals_answer(&self, from: Timestamp, to: Timestamp) -> Result<bool> {
        let (latest_at, latest_enrolled) = self.conn.query_row(
            "SELECT latest_at, latest_enrolled FROM report_digest_state",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(totals_answer(from, to, latest_at, latest_enrolled))
    }

    /// Whether the records are made (under whichever program): `verify` checks them when so.
    pub(super) fn digests_made(&self) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT program IS NOT NULL FROM report_digest_state",
            [],
            |r| r.get(0),
        )?)
    }

    /// Remakes every record and the totals, member range by member range. Entries and members
    /// arriving meanwhile are above the watermarks set first, and counted again (their record
    /// taken off, the new one added) by the catch-up that follows.
    fn make_digests(&mut self, program: &str, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for table in [
            "report_digests",
            "report_members",
            "report_tier_changes",
            "report_totals",
            "report_digest_stale",
        ] {
            tx.execute(&format!("DELETE FROM {table}"), [])?;
        }
        for (name, _) in RECORD_INDEXES {
            tx.execute(&format!("DROP INDEX IF EXISTS {name}"), [])?;
        }
        tx.execute(
            "UPDATE report_digest_state SET program = NULL, latest_at = NULL,
                    latest_enrolled = NULL, seq = (SELECT COALESCE(MAX(seq), 0) FROM ledger),
                    members_rowid = (SELECT COALESCE(MAX(rowid), 0) FROM members)",
            [],
        )?;
        let total: i64 = tx.query_row("SELECT seq FROM report_digest_state", [], |r| r.get(0))?;
        tx.commit()?;
        let total = u64::try_from(total).unwrap_or(0);
        let members: Vec<MemberFacts> = self
            .conn
            .prepare("SELECT id, created_at, marketing_consent FROM members ORDER BY id")?
            .query_map([], member_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        let (mut read, mut latest, mut latest_enrolled) = (0u64, None, None);
        let mut totals = Totals::default();
        for chunk in members.chunks(MEMBERS_PER_TRANSACTION) {
            let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
                continue;
            };
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let entries: Vec<Entry> = tx
                .prepare_cached(&format!(
                    "SELECT {ENTRY_COLUMNS} FROM ledger WHERE member_id BETWEEN ?1 AND ?2
                     ORDER BY member_id, occurred_at, id"
                ))?
                .query_map(params![first.id.0, last.id.0], entry_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            read += entries.len() as u64;
            latest = latest.max(entries.iter().map(|e| e.occurred_at.millis()).max());
            let mut rest = entries.as_slice();
            for member in chunk {
                // Entries of members not in the list (enrolled since) are counted by the catch-up.
                let skip = rest.partition_point(|e| e.member_id < member.id);
                let theirs = rest[skip..].partition_point(|e| e.member_id == member.id);
                let (mine, after) = rest[skip..].split_at(theirs);
                rest = after;
                latest_enrolled = latest_enrolled.max(Some(member.enrolled_at.millis()));
                let record = Record::of(&self.program, member.clone(), mine);
                write_fresh_record(&tx, &record)?;
                record.count(&mut totals, 1);
            }
            tx.commit()?;
            progress(read, total.max(read));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        add_totals(&tx, &totals)?;
        for (_, create) in RECORD_INDEXES {
            tx.execute(create, [])?;
        }
        tx.execute(
            "UPDATE report_digest_state SET program = ?1, latest_at = ?2, latest_enrolled = ?3",
            params![program, latest, latest_enrolled],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Makes again the record of every member with an entry numbered above the watermark, one
    /// whose entry left or whose consent changed, and every member added since, a slice at a
    /// time, moving the totals by the difference.
    fn catch_up_digests(&mut self) -> Result<()> {
        loop {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (from, last, members_from): (i64, i64, i64) = tx.query_row(
                "SELECT seq, (SELECT COALESCE(MAX(seq), 0) FROM ledger), members_rowid
                 FROM report_digest_state",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let upto = last.min(from.saturating_add(ENTRIES_PER_TRANSACTION));
            let mut touched: BTreeSet<MemberId> = BTreeSet::new();
            let (mut latest, mut members_upto, mut added) = (None::<i64>, members_from, 0i64);
            {
                let mut stmt = tx.prepare_cached(
                    "SELECT member_id, occurred_at FROM ledger WHERE seq > ?1 AND seq <= ?2",
                )?;
                let mut rows = stmt.query(params![from, upto])?;
                while let Some(row) = rows.next()? {
                    touched.insert(MemberId(row.get(0)?));
                    latest = latest.max(Some(row.get(1)?));
                }
                let mut stale = tx.prepare_cached("SELECT member_id FROM report_digest_stale")?;
                for id in stale.query_map([], |r| Ok(MemberId(r.get(0)?)))? {
                    touched.insert(id?);
                }
                let mut new = tx.prepare_cached(
                    "SELECT rowid, id FROM members WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
                )?;
                let mut rows = new.query(params![members_from, ENTRIES_PER_TRANSACTION])?;
                while let Some(row) = rows.next()? {
                    members_upto = row.get(0)?;
                    touched.insert(MemberId(row.get(1)?));
                    added += 1;
                }
            }
            let mut moved = Totals::default();
            let mut latest_enrolled = None;
            for &id in &touched {
                let member = tx
                    .prepare_cached(
                        "SELECT id, created_at, marketing_consent FROM members WHERE id = ?1",
                    )?
                    .query_row(params![id.0], member_from_row)?;
                latest_enrolled = latest_enrolled.max(Some(member.enrolled_at.millis()));
                if let Some(old) = read_record(&tx, id)? {
                    old.count(&mut moved, -1);
                }
                let record = Record::of(&self.program, member, &member_entries(&tx, id)?);
                write_record(&tx, &record)?;
                record.count(&mut moved, 1);
            }
            add_totals(&tx, &moved)?;
            tx.execute("DELETE FROM report_digest_stale", [])?;
            tx.execute(
                "UPDATE report_digest_state
                 SET seq = ?1, members_rowid = ?2,
                     latest_at = MAX(COALESCE(latest_at, ?3), COALESCE(?3, latest_at)),
                     latest_enrolled = MAX(COALESCE(latest_enrolled, ?4), COALESCE(?4, latest_enrolled))",
                params![upto, members_upto, latest, latest_enrolled],
            )?;
            tx.commit()?;
            if upto >= last && added < ENTRIES_PER_TRANSACTION {
                return Ok(());
            }
        }
    }

    /// Whether the stored record of `derived.member` is `derived`, with the last purchase and
    /// tier changes it gives (a record that does not decode is not).
    pub(super) fn record_agrees(&self, derived: &Record) -> Result<bool> {
        Ok(read_stored(&self.conn, derived.member.id)?.is_some_and(|stored| stored.is(derived)))
    }

    /// Writes `records` over the stored ones and `totals` over the stored totals, as `verify`
    /// derived them from the ledger.
    pub(super) fn rewrite_records(&mut self, records: &[Record], totals: &Totals) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for record in records {
            write_record(&tx, record)?;
        }
        tx.execute("DELETE FROM report_totals", [])?;
        add_totals(&tx, totals)?;
        tx.commit()?;
        Ok(())
    }
}
