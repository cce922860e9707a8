//! The report's per-member digests (`domain::insights::Digest`, migration 020): brought up to
//! date from the entries that arrived since they were last, remade whole when the program
//! changes, in short transactions so that a sale never waits long behind them.

use std::collections::BTreeSet;

use rusqlite::{OptionalExtension as _, Transaction, TransactionBehavior, params};
use sha2::{Digest as _, Sha256};

use super::rows::{ENTRY_COLUMNS, entry_from_row, member_entries};
use super::{Result, Store, StoreError, schema};
use crate::domain::insights::Digest;
use crate::domain::{Entry, MemberId, Program, Timestamp};

/// Members whose digests are made in one transaction when making them all.
const MEMBERS_PER_TRANSACTION: usize = 2_000;
/// Arrival numbers whose members' digests are brought up to date in one transaction.
const ENTRIES_PER_TRANSACTION: i64 = 20_000;
/// The end of every period: a digest made for it counts every entry.
const ANY_PERIOD: Timestamp = Timestamp::from_millis(i64::MAX);

impl Store {
    /// Brings every member's digest up to date with the ledger under the program in force,
    /// telling `progress` (entries read, entries in all) when it has to remake them all.
    pub(super) fn refresh_digests(&mut self, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        self.reload()?;
        let program = program_hash(&schema::current_program(&self.conn)?.1);
        let made: Option<String> =
            self.conn
                .query_row("SELECT program FROM report_digest_state", [], |r| r.get(0))?;
        if made.as_deref() != Some(program.as_str()) {
            self.make_digests(&program, progress)?;
        }
        self.catch_up_digests()
    }

    /// Whether the digests answer a period ending at `to`: no entry is stamped at or after it.
    pub(super) fn digests_answer(&self, to: Timestamp) -> Result<bool> {
        let latest: Option<i64> =
            self.conn
                .query_row("SELECT latest_at FROM report_digest_state", [], |r| {
                    r.get(0)
                })?;
        Ok(latest.is_none_or(|at| at < to.millis()))
    }

    /// Whether the digests are made (under whichever program): `verify` checks them when so.
    pub(super) fn digests_made(&self) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT program IS NOT NULL FROM report_digest_state",
            [],
            |r| r.get(0),
        )?)
    }

    /// Remakes every digest, member range by member range. Entries arriving meanwhile are
    /// above the watermark set first, and counted by the catch-up that follows.
    fn make_digests(&mut self, program: &str, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM report_digests", [])?;
        tx.execute("DELETE FROM report_digest_stale", [])?;
        tx.execute(
            "UPDATE report_digest_state SET program = NULL, latest_at = NULL,
                    seq = (SELECT COALESCE(MAX(seq), 0) FROM ledger)",
            [],
        )?;
        let total: i64 = tx.query_row("SELECT seq FROM report_digest_state", [], |r| r.get(0))?;
        tx.commit()?;
        let total = u64::try_from(total).unwrap_or(0);
        let ids: Vec<MemberId> = self
            .conn
            .prepare("SELECT id FROM members ORDER BY id")?
            .query_map([], |r| Ok(MemberId(r.get(0)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let (mut read, mut latest) = (0u64, None);
        for chunk in ids.chunks(MEMBERS_PER_TRANSACTION) {
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
                .query_map(params![first.0, last.0], entry_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            read += entries.len() as u64;
            for theirs in entries.chunk_by(|a, b| a.member_id == b.member_id) {
                latest = latest.max(theirs.iter().map(|e| e.occurred_at.millis()).max());
                write_digest(&tx, &self.program, theirs[0].member_id, theirs)?;
            }
            tx.commit()?;
            progress(read, total.max(read));
        }
        self.conn.execute(
            "UPDATE report_digest_state SET program = ?1, latest_at = ?2",
            params![program, latest],
        )?;
        Ok(())
    }

    /// Remakes the digest of every member with an entry numbered above the watermark, or one
    /// whose entry left, a slice of arrival numbers at a time.
    fn catch_up_digests(&mut self) -> Result<()> {
        loop {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (from, last): (i64, i64) = tx.query_row(
                "SELECT seq, (SELECT COALESCE(MAX(seq), 0) FROM ledger) FROM report_digest_state",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let upto = last.min(from.saturating_add(ENTRIES_PER_TRANSACTION));
            let mut touched: BTreeSet<MemberId> = BTreeSet::new();
            let mut latest: Option<i64> = None;
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
            }
            for &member in &touched {
                let theirs = member_entries(&tx, member)?;
                write_digest(&tx, &self.program, member, &theirs)?;
            }
            tx.execute("DELETE FROM report_digest_stale", [])?;
            tx.execute(
                "UPDATE report_digest_state
                 SET seq = ?1, latest_at = MAX(COALESCE(latest_at, ?2), COALESCE(?2, latest_at))",
                params![upto, latest],
            )?;
            tx.commit()?;
            if upto >= last {
                return Ok(());
            }
        }
    }

    /// The stored digest of `member`, if the store holds one.
    pub(super) fn stored_digest(&self, member: MemberId) -> Result<Option<Digest>> {
        let bytes: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT digest FROM report_digests WHERE member_id = ?1")?
            .query_row(params![member.0], |r| r.get(0))
            .optional()?;
        bytes
            .map(|b| Digest::from_bytes(&b))
            .transpose()
            .map_err(|e| StoreError::BadRecord(e.to_string()))
    }

    /// Rewrites `member`'s digest from their entries (oldest first).
    pub(super) fn rewrite_digest(&mut self, member: MemberId, entries: &[Entry]) -> Result<()> {
        let tx = self.conn.transaction()?;
        write_digest(&tx, &self.program, member, entries)?;
        tx.commit()?;
        Ok(())
    }
}

/// What every period's report counts of a member's entries (oldest first).
pub(super) fn digest_of(program: &Program, entries: &[Entry]) -> Digest {
    Digest::of(program, entries, ANY_PERIOD)
}

/// Stores `member`'s digest of `entries` (oldest first); none for a member without entries.
fn write_digest(
    tx: &Transaction<'_>,
    program: &Program,
    member: MemberId,
    entries: &[Entry],
) -> Result<()> {
    if entries.is_empty() {
        tx.prepare_cached("DELETE FROM report_digests WHERE member_id = ?1")?
            .execute(params![member.0])?;
    } else {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO report_digests (member_id, digest) VALUES (?1, ?2)",
        )?
        .execute(params![member.0, digest_of(program, entries).to_bytes()])?;
    }
    Ok(())
}

/// The stored digests' form: a new one remakes them all, as a new program does.
const FORM: &str = "report digest 2\n";

/// The SHA-256 of the digests' form and a program's TOML, in hex: what the digests were made
/// under.
fn program_hash(toml: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(FORM.as_bytes());
    hash.update(toml.as_bytes());
    data_encoding::HEXLOWER.encode(&hash.finalize())
}
