//! The chain report on SQLite: each member's record and the totals by day, in the till's
//! table shapes and through the till's SQL (`store::records`), brought up to date from the
//! entries and member versions after `report_state.last_seq`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use super::{SqliteDb, with};
use crate::domain::insights::{Facts, MemberFacts, Record, Totals, totals_answer};
use crate::domain::{MemberId, Program, Timestamp};
use crate::server::db::{DbError, report_member, report_program};
use crate::server::report_records::{
    BATCH_SEQS, CATCH_UP_CHUNK, MEMBERS_PER_STEP, Pace, Refreshed, entries_oldest_first,
    members_if_needed, records_error, remake_is_quicker,
};
use crate::store::StoreError;
use crate::store::records::{
    RECORD_INDEXES, add_totals, program_hash, read_record, totals_facts, write_fresh_record,
    write_record,
};

/// A wait for the records' locks (and the program) at least this long is logged.
const LOCK_WAIT_WORTH_SAYING: Duration = Duration::from_millis(10);

impl SqliteDb {
    /// Brings the report's records and totals up to date under the program in force, which
    /// it returns with where it left them: all made again for a new program or a large
    /// backlog, else the members of the entries and member versions that arrived since, a
    /// slice of sequence numbers at a time, each made on two readers and written a chunk at a
    /// time in short transactions on the writer, so pushes go on (`pace` says when to stop
    /// between steps).
    /// One caller at a time, in this process and across processes (a lock file beside the
    /// database).
    pub(crate) async fn report_current(
        &self,
        pace: Pace<'_>,
    ) -> Result<(Arc<Program>, Refreshed), DbError> {
        let asked = Instant::now();
        let _one = self.report.lock().await;
        let lock = self.report_lock.clone();
        let _other_processes =
            tokio::task::spawn_blocking(move || crate::store::file_lock::hold(&lock))
                .await
                .map_err(|e| DbError::Internal(format!("the report's lock: {e}")))?
                .map_err(|e| DbError::Unavailable(format!("the report's lock file: {e}")))?;
        let toml: String = with(&self.quick, |conn| {
            Ok(conn.query_row(
                "SELECT toml FROM program ORDER BY version DESC LIMIT 1",
                [],
                |r| r.get(0),
            )?)
        })
        .await?;
        let program = Arc::new(report_program(&toml)?);
        let hash = program_hash(&toml);
        // Said only when another refresh held the records (a report behind the keeper, or
        // another process): the keeper's uncontended look every few seconds says nothing.
        let waited = asked.elapsed();
        if waited >= LOCK_WAIT_WORTH_SAYING {
            tracing::debug!(
                waited_ms = waited.as_millis(),
                "chain report: waited for another refresh"
            );
        }
        let left = |refreshed| Ok((Arc::clone(&program), refreshed));
        loop {
            // Looked at before every slice: tills that pushed faster than a catch-up while it
            // ran can leave a backlog a remake reads less of.
            let (made, backlog, members): (Option<String>, i64, Option<i64>) =
                with(&self.quick, |conn| {
                    Ok(conn.query_row(
                        &format!(
                            "SELECT program, (SELECT last FROM server_seq) - last_seq, {}
                             FROM report_state",
                            members_if_needed()
                        ),
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )?)
                })
                .await?;
            if (made.as_deref() != Some(hash.as_str()) || remake_is_quicker(backlog, members))
                && let Some(stopped) = self.report_remake(&program, &hash, pace).await?
            {
                return left(stopped);
            }
            let started = Instant::now();
            let Some(slice) = with(&self.pages, next_slice).await? else {
                return left(Refreshed::Current);
            };
            let (sliced, last, members) = (started.elapsed(), slice.last, slice.touched.len());
            if !self.catch_up(&program, slice).await? {
                // A stored record does not decode: its sums cannot be taken off.
                if let Some(stopped) = self.report_remake(&program, &hash, pace).await? {
                    return left(stopped);
                }
                continue;
            }
            tracing::debug!(
                members,
                sliced_ms = sliced.as_millis(),
                made_and_written_ms = (started.elapsed() - sliced).as_millis(),
                "chain report: a catch-up slice"
            );
            if last {
                return left(Refreshed::Current);
            }
            if pace.stops() {
                return left(Refreshed::Partly);
            }
        }
    }

    /// Makes every record again, members in id order (a step's worth made on two readers,
    /// then written on the writer), then the totals in one write; where it stopped instead
    /// when the pace is one slice (not begun) or it gave way part way (the next caller starts
    /// again).
    async fn report_remake(
        &self,
        program: &Arc<Program>,
        hash: &str,
        pace: Pace<'_>,
    ) -> Result<Option<Refreshed>, DbError> {
        if matches!(pace, Pace::Slice) {
            return Ok(Some(Refreshed::RemakeLeft));
        }
        with(&self.writer, |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for table in [
                "report_digests",
                "report_members",
                "report_tier_changes",
                "report_totals",
            ] {
                tx.execute(&format!("DELETE FROM {table}"), [])?;
            }
            for (name, _) in RECORD_INDEXES {
                tx.execute(&format!("DROP INDEX IF EXISTS {name}"), [])?;
            }
            tx.execute(
                "UPDATE report_state SET program = NULL, latest_at = NULL, latest_enrolled = NULL,
                        last_seq = (SELECT last FROM server_seq)",
                [],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await?;
        // What every step has counted so far (its records written step by step), and the
        // last member made.
        let (mut made, mut after) = (Counted::default(), None);
        loop {
            let members = with(&self.pages, move |conn| next_members(conn, after)).await?;
            let done = members.len() < MEMBERS_PER_STEP;
            after = members.last().map(|m| m.id).or(after);
            let mut step = self
                .on_two_readers(program, members, |conn, program, members| {
                    made_anew(conn, program, members).map(Some)
                })
                .await?
                .unwrap_or_default();
            let records = std::mem::take(&mut step.records);
            made.merge(step);
            with(&self.writer, move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                for record in &records {
                    write_fresh_record(&tx, record).map_err(records_error)?;
                }
                tx.commit()?;
                Ok(())
            })
            .await?;
            if done {
                break;
            }
            if pace.stops() {
                return Ok(Some(Refreshed::Partly));
            }
        }
        let hash = hash.to_owned();
        with(&self.writer, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            add_totals(&tx, &made.totals).map_err(records_error)?;
            for (_, create) in RECORD_INDEXES {
                tx.execute(create, [])?;
            }
            tx.execute(
                "UPDATE report_state SET program = ?1, latest_at = ?2, latest_enrolled = ?3",
                params![hash, made.latest_at, made.latest_enrolled],
            )?;
            tx.commit()?;
            Ok(None)
        })
        .await
    }

    /// Makes again the records of the members a slice touches, a chunk of them at a time:
    /// while the writer writes one chunk (its records and what they move in the totals, in
    /// one transaction) the readers make the next, and the last chunk's transaction moves the
    /// cursor past the slice. A chunk written before a crash is made again from the same
    /// cursor, its own old record counted out. False when a stored record does not decode.
    async fn catch_up(&self, program: &Arc<Program>, slice: Slice) -> Result<bool, DbError> {
        let mut chunks: Vec<Vec<MemberId>> = slice
            .touched
            .chunks(CATCH_UP_CHUNK)
            .map(<[MemberId]>::to_vec)
            .collect();
        if chunks.is_empty() {
            // Arrivals that touch no member's record still move the cursor.
            chunks.push(Vec::new());
        }
        let count = chunks.len();
        let mut writing = None;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let making = self.on_two_readers(program, chunk, remade);
            let made = match writing.take() {
                Some(written) => {
                    let (made, written) = tokio::join!(making, written);
                    written?;
                    made?
                }
                None => making.await?,
            };
            let Some(counted) = made else {
                return Ok(false);
            };
            let cursor = (i + 1 == count).then_some((slice.after, slice.upto));
            writing = Some(with(&self.writer, move |conn| {
                catch_up_write(conn, &counted, cursor)
            }));
        }
        if let Some(written) = writing {
            written.await?;
        }
        Ok(true)
    }

    /// `make` over `members` split in two, on two readers at once (each half in its own read
    /// transaction: a record is made from whatever entries its reader sees, which is at least
    /// every entry up to the cursor), the halves' counts added together; none when either
    /// half finds a stored record that does not decode.
    async fn on_two_readers<M: Send + 'static>(
        &self,
        program: &Arc<Program>,
        mut members: Vec<M>,
        make: MakeRecords<M>,
    ) -> Result<Option<Counted>, DbError> {
        let second = members.split_off(members.len() / 2);
        let (one, two) = (Arc::clone(program), Arc::clone(program));
        let (first, second) = tokio::try_join!(
            with(&self.pages, move |conn| make(conn, &one, members)),
            with(&self.pages, move |conn| make(conn, &two, second)),
        )?;
        Ok(first.zip(second).map(|(mut first, second)| {
            first.merge(second);
            first
        }))
    }

    /// The facts of `[from, to)` from the totals when they are whole and answer it (whole
    /// days, ending after every entry and enrolment counted), else `None`.
    pub(super) async fn report_from_totals(
        &self,
        program: Arc<Program>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Option<Facts>, DbError> {
        with(&self.pages, move |conn| {
            let tx = conn.transaction()?;
            // A remake in progress (another caller's, once this one's refresh let go of the
            // lock) has emptied the records and not yet set the program: not whole.
            let (whole, latest_at, latest_enrolled): (bool, _, _) = tx.query_row(
                "SELECT program IS NOT NULL, latest_at, latest_enrolled FROM report_state",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            if !whole || !totals_answer(from, to, latest_at, latest_enrolled) {
                return Ok(None);
            }
            let facts = totals_facts(&tx, &program, from, to).map_err(records_error)?;
            Ok(Some(facts))
        })
        .await
    }
}

/// Makes the records of some members in a read transaction; none when a stored record they
/// replace does not decode.
type MakeRecords<M> = fn(&mut Connection, &Program, Vec<M>) -> Result<Option<Counted>, DbError>;

/// Records made on readers and what they count.
#[derive(Default)]
struct Counted {
    records: Vec<Record>,
    /// What the records add to the totals; in a catch-up, less what the records they replace
    /// took off.
    totals: Totals,
    latest_at: Option<i64>,
    latest_enrolled: Option<i64>,
}

impl Counted {
    /// Counts a record made from entries whose latest is at `latest_at`.
    fn add(&mut self, record: Record, latest_at: Option<i64>) {
        self.latest_at = self.latest_at.max(latest_at);
        self.latest_enrolled = self
            .latest_enrolled
            .max(Some(record.member.enrolled_at.millis()));
        record.count(&mut self.totals, 1);
        self.records.push(record);
    }

    /// Adds what another reader counted.
    fn merge(&mut self, other: Counted) {
        self.records.extend(other.records);
        self.totals.merge(&other.totals);
        self.latest_at = self.latest_at.max(other.latest_at);
        self.latest_enrolled = self.latest_enrolled.max(other.latest_enrolled);
    }
}

/// The next step of members after `after` in id order; fewer when they are the last.
fn next_members(
    conn: &mut Connection,
    after: Option<MemberId>,
) -> Result<Vec<MemberFacts>, DbError> {
    conn.prepare_cached(
        "SELECT body FROM members WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2",
    )?
    .query_map(params![after.map(|m| m.0), MEMBERS_PER_STEP as i64], |r| {
        r.get::<_, String>(0)
    })?
    .collect::<rusqlite::Result<Vec<_>>>()?
    .iter()
    .map(|body| report_member(body))
    .collect()
}

/// Makes, in a read transaction (so pushes go on), the records of `members`, with none
/// stored yet.
fn made_anew(
    conn: &mut Connection,
    program: &Program,
    members: Vec<MemberFacts>,
) -> Result<Counted, DbError> {
    let tx = conn.transaction()?;
    let mut counted = Counted::default();
    for member in members {
        let (record, latest_at) = record_of(&tx, program, member)?;
        counted.add(record, latest_at);
    }
    Ok(counted)
}

/// The record of `member` from their stored entries, and the latest entry's time.
fn record_of(
    conn: &Connection,
    program: &Program,
    member: MemberFacts,
) -> Result<(Record, Option<i64>), DbError> {
    let bodies = conn
        .prepare_cached("SELECT body FROM entries WHERE member_id = ?1")?
        .query_map(params![member.id.0], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let entries = entries_oldest_first(bodies.iter().map(String::as_str))?;
    let latest_at = entries.iter().map(|e| e.occurred_at.millis()).max();
    Ok((Record::of(program, member, &entries), latest_at))
}

/// A slice of sequence numbers after the cursor, `(after, upto]`, and the members with an
/// entry or a member version in it.
struct Slice {
    after: i64,
    upto: i64,
    /// Whether the slice reaches the last sequence number.
    last: bool,
    touched: Vec<MemberId>,
}

/// The next slice after the cursor; none when the records count every sequence number.
fn next_slice(conn: &mut Connection) -> Result<Option<Slice>, DbError> {
    let tx = conn.transaction()?;
    let (after, last): (i64, i64) = tx.query_row(
        "SELECT last_seq, (SELECT last FROM server_seq) FROM report_state",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if after >= last {
        return Ok(None);
    }
    let upto = last.min(after.saturating_add(BATCH_SEQS));
    let touched: BTreeSet<MemberId> = tx
        .prepare_cached(
            "SELECT member_id FROM entries WHERE server_seq > ?1 AND server_seq <= ?2
             UNION
             SELECT member_id FROM member_versions WHERE server_seq > ?1 AND server_seq <= ?2",
        )?
        .query_map(params![after, upto], |r| Ok(MemberId(r.get(0)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(Slice {
        after,
        upto,
        last: upto >= last,
        touched: touched.into_iter().collect(),
    }))
}

/// Makes again, in a read transaction (so pushes go on), the records of `members`, each
/// stored record counted out of the totals and the new one in; none when a stored record
/// does not decode.
fn remade(
    conn: &mut Connection,
    program: &Program,
    members: Vec<MemberId>,
) -> Result<Option<Counted>, DbError> {
    let tx = conn.transaction()?;
    let mut counted = Counted::default();
    for id in members {
        let body: Option<String> = tx
            .prepare_cached("SELECT body FROM members WHERE id = ?1")?
            .query_row(params![id.0], |r| r.get(0))
            .optional()?;
        let Some(body) = body else { continue };
        match read_record(&tx, id) {
            Ok(Some(old)) => old.count(&mut counted.totals, -1),
            Ok(None) => {}
            Err(StoreError::BadRecord(_)) => return Ok(None),
            Err(e) => return Err(records_error(e)),
        }
        let (record, latest_at) = record_of(&tx, program, report_member(&body)?)?;
        counted.add(record, latest_at);
    }
    Ok(Some(counted))
}

/// Writes a chunk of records a catch-up made and what they move in the totals, in one short
/// write transaction (the records are read by the same one caller, so none changed
/// meanwhile); with `cursor` (the slice's `(after, upto]`), moves the cursor past the slice.
fn catch_up_write(
    conn: &mut Connection,
    counted: &Counted,
    cursor: Option<(i64, i64)>,
) -> Result<(), DbError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for record in &counted.records {
        write_record(&tx, record).map_err(records_error)?;
    }
    add_totals(&tx, &counted.totals).map_err(records_error)?;
    tx.execute(
        "UPDATE report_state
         SET latest_at = MAX(COALESCE(latest_at, ?1), COALESCE(?1, latest_at)),
             latest_enrolled = MAX(COALESCE(latest_enrolled, ?2), COALESCE(?2, latest_enrolled))",
        params![counted.latest_at, counted.latest_enrolled],
    )?;
    if let Some((after, upto)) = cursor {
        let moved = tx.execute(
            "UPDATE report_state SET last_seq = ?1 WHERE last_seq = ?2",
            params![upto, after],
        )?;
        if moved != 1 {
            return Err(DbError::Internal(
                "the chain report's records moved while a catch-up step made them".into(),
            ));
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn totals_emptied_by_a_remake_in_progress_do_not_answer() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("server.sqlite3");
        let path = path.to_str().expect("utf-8");
        let now = Timestamp::from_millis(1_780_000_000_000);
        let db = SqliteDb::open(path, now).await.expect("open");
        let (program, _) = db.report_current(Pace::All).await.expect("records made");
        let (from, to) = crate::domain::insights::last_days(now, 90);
        let answered = db
            .report_from_totals(Arc::clone(&program), from, to)
            .await
            .expect("read");
        assert!(answered.is_some(), "whole records answer");

        // What a remake's first step leaves while it makes the records again.
        let other = rusqlite::Connection::open(path).expect("open");
        other
            .execute_batch(
                "DELETE FROM report_totals;
                 UPDATE report_state SET program = NULL, latest_at = NULL, latest_enrolled = NULL;",
            )
            .expect("remake begun");
        let answered = db
            .report_from_totals(program, from, to)
            .await
            .expect("read");
        assert!(answered.is_none(), "counted from the ledger instead");
    }
}
