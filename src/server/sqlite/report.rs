//! The chain report on SQLite: each member's record and the totals by day, in the till's
//! table shapes and through the till's SQL (`store::records`), brought up to date from the
//! entries and member versions after `report_state.last_seq`.

use std::collections::BTreeSet;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use super::{SqliteDb, with};
use crate::domain::insights::{Facts, MemberFacts, Record, Totals, totals_answer};
use crate::domain::{MemberId, Program, Timestamp};
use crate::server::db::{DbError, report_member};
use crate::server::report_records::{
    BATCH_SEQS, MEMBERS_PER_STEP, REMAKE_BACKLOG, entries_oldest_first, records_error,
};
use crate::store::StoreError;
use crate::store::records::{
    RECORD_INDEXES, add_totals, program_hash, read_record, totals_facts, write_fresh_record,
    write_record,
};

/// How a catch-up step ended.
enum Step {
    Done,
    More,
    /// A stored record does not decode: its sums cannot be taken off, so all are made again.
    Undecodable,
}

impl SqliteDb {
    /// Brings the report's records and totals up to date under `program` (whose TOML is
    /// `toml`): all made again for a new program or a large backlog, else the members of the
    /// entries and member versions that arrived since, a slice of sequence numbers a
    /// transaction on the writer, so pushes go on between them.
    pub(super) async fn report_refresh(
        &self,
        program: Arc<Program>,
        toml: &str,
    ) -> Result<(), DbError> {
        let hash = program_hash(toml);
        let (made, backlog): (Option<String>, i64) = with(&self.quick, |conn| {
            Ok(conn.query_row(
                "SELECT program, (SELECT last FROM server_seq) - last_seq FROM report_state",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await?;
        if made.as_deref() != Some(hash.as_str()) || backlog > REMAKE_BACKLOG {
            self.report_remake(Arc::clone(&program), hash.clone())
                .await?;
        }
        loop {
            let step = {
                let program = Arc::clone(&program);
                with(&self.writer, move |conn| catch_up(conn, &program)).await?
            };
            match step {
                Step::Done => return Ok(()),
                Step::More => {}
                Step::Undecodable => {
                    self.report_remake(Arc::clone(&program), hash.clone())
                        .await?
                }
            }
        }
    }

    /// Makes every record again, members in id order, then the totals in one write.
    async fn report_remake(&self, program: Arc<Program>, hash: String) -> Result<(), DbError> {
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
        let mut made = Made::default();
        loop {
            let program = Arc::clone(&program);
            let (next, done) = with(&self.writer, move |conn| {
                let done = remake_step(conn, &program, &mut made.after)
                    .map(|counted| made.add(counted))?;
                Ok((made, done))
            })
            .await?;
            made = next;
            if done {
                break;
            }
        }
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
            Ok(())
        })
        .await
    }

    /// The facts of `[from, to)` from the totals when they answer it (whole days, ending after
    /// every entry and enrolment counted), else `None`.
    pub(super) async fn report_from_totals(
        &self,
        program: Arc<Program>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Option<Facts>, DbError> {
        with(&self.pages, move |conn| {
            let tx = conn.transaction()?;
            let (latest_at, latest_enrolled) = tx.query_row(
                "SELECT latest_at, latest_enrolled FROM report_state",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if !totals_answer(from, to, latest_at, latest_enrolled) {
                return Ok(None);
            }
            let facts = totals_facts(&tx, &program, from, to).map_err(records_error)?;
            Ok(Some(facts))
        })
        .await
    }
}

/// What making every record has counted so far.
#[derive(Default)]
struct Made {
    /// The last member made.
    after: Option<MemberId>,
    totals: Totals,
    latest_at: Option<i64>,
    latest_enrolled: Option<i64>,
}

/// What one step of making every record counted, and whether it was the last.
struct Counted {
    totals: Totals,
    latest_at: Option<i64>,
    latest_enrolled: Option<i64>,
    last: bool,
}

impl Made {
    /// Adds a step's counts; true when it was the last.
    fn add(&mut self, step: Counted) -> bool {
        self.totals.merge(&step.totals);
        self.latest_at = self.latest_at.max(step.latest_at);
        self.latest_enrolled = self.latest_enrolled.max(step.latest_enrolled);
        step.last
    }
}

/// Makes the records of the next members after `after` (in id order), in one transaction.
fn remake_step(
    conn: &mut Connection,
    program: &Program,
    after: &mut Option<MemberId>,
) -> Result<Counted, DbError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let members: Vec<MemberFacts> = tx
        .prepare_cached(
            "SELECT body FROM members WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2",
        )?
        .query_map(params![after.map(|m| m.0), MEMBERS_PER_STEP as i64], |r| {
            r.get::<_, String>(0)
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .iter()
        .map(|body| report_member(body))
        .collect::<Result<_, _>>()?;
    let mut counted = Counted {
        totals: Totals::default(),
        latest_at: None,
        latest_enrolled: None,
        last: members.len() < MEMBERS_PER_STEP,
    };
    for member in members {
        *after = Some(member.id);
        let record = record_of(&tx, program, member, &mut counted.latest_at)?;
        counted.latest_enrolled = counted
            .latest_enrolled
            .max(Some(record.member.enrolled_at.millis()));
        write_fresh_record(&tx, &record).map_err(records_error)?;
        record.count(&mut counted.totals, 1);
    }
    tx.commit()?;
    Ok(counted)
}

/// The record of `member` from their stored entries, noting the latest entry's time.
fn record_of(
    conn: &Connection,
    program: &Program,
    member: MemberFacts,
    latest_at: &mut Option<i64>,
) -> Result<Record, DbError> {
    let bodies = conn
        .prepare_cached("SELECT body FROM entries WHERE member_id = ?1")?
        .query_map(params![member.id.0], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let entries = entries_oldest_first(bodies.iter().map(String::as_str))?;
    *latest_at = (*latest_at).max(entries.iter().map(|e| e.occurred_at.millis()).max());
    Ok(Record::of(program, member, &entries))
}

/// Makes again the record of every member with an entry or a member version after the
/// cursor, a slice of sequence numbers, moving the totals by the difference.
fn catch_up(conn: &mut Connection, program: &Program) -> Result<Step, DbError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (after, last): (i64, i64) = tx.query_row(
        "SELECT last_seq, (SELECT last FROM server_seq) FROM report_state",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if after >= last {
        return Ok(Step::Done);
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
    let (mut moved, mut latest_at, mut latest_enrolled) = (Totals::default(), None, None);
    for id in touched {
        let body: Option<String> = tx
            .prepare_cached("SELECT body FROM members WHERE id = ?1")?
            .query_row(params![id.0], |r| r.get(0))
            .optional()?;
        let Some(body) = body else { continue };
        match read_record(&tx, id) {
            Ok(Some(old)) => old.count(&mut moved, -1),
            Ok(None) => {}
            Err(StoreError::BadRecord(_)) => return Ok(Step::Undecodable),
            Err(e) => return Err(records_error(e)),
        }
        let record = record_of(&tx, program, report_member(&body)?, &mut latest_at)?;
        latest_enrolled = latest_enrolled.max(Some(record.member.enrolled_at.millis()));
        write_record(&tx, &record).map_err(records_error)?;
        record.count(&mut moved, 1);
    }
    add_totals(&tx, &moved).map_err(records_error)?;
    tx.execute(
        "UPDATE report_state
         SET last_seq = ?1,
             latest_at = MAX(COALESCE(latest_at, ?2), COALESCE(?2, latest_at)),
             latest_enrolled = MAX(COALESCE(latest_enrolled, ?3), COALESCE(?3, latest_enrolled))",
        params![upto, latest_at, latest_enrolled],
    )?;
    tx.commit()?;
    Ok(if upto >= last { Step::Done } else { Step::More })
}
