//! `verify`: recompute every derived number from the entries and report any drift.

use std::collections::HashMap;

use serde::Serialize;

use super::rows::{ENTRY_COLUMNS, STATE_COLUMNS, entry_from_row, state_from_row, upsert_state};
use super::{Corruption, Result, Store, StoreError};
use crate::domain::insights::{MemberFacts, Record, Totals};
use crate::domain::rules;
use crate::domain::summary::summarise;
use crate::domain::{Entry, EntryId, EntryKind, MemberId, MemberSummary, TerminalId, Timestamp};

/// Something derived that does not match the entries, or an entry that breaks a ledger rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Drift {
    /// The cached balance/tier differs from the fold of the member's entries.
    State {
        member: MemberId,
        card: String,
        cached: Option<MemberSummary>,
        derived: MemberSummary,
    },
    /// An entry with an impossible shape.
    Shape { entry: EntryId, reason: String },
    /// A reversal that does not exactly negate one entry of the same member.
    Reversal { entry: EntryId, reason: String },
    /// The cached state holds a value the store never writes (e.g. a negative tier).
    CorruptState {
        member: MemberId,
        card: String,
        reason: String,
        derived: MemberSummary,
    },
    /// The report's record of the member (digest, last purchase, tier changes, enrolment and
    /// consent) differs from what their entries and their row come to.
    Digest { member: MemberId, card: String },
    /// The report's totals by day differ from what every member's entries add up to, at
    /// `sums` places.
    Totals { sums: usize },
    /// The sums by day of sales without a member or of recommend answers (`table`) differ
    /// from their rows: `rows` counts the table's wrong rows and the rows it should have in
    /// their place, so one wrong day's sum counts twice.
    ExtrasByDay { table: String, rows: i64 },
    /// This till's own sequence numbers are not exactly 1..=last.
    LocalSequence {
        terminal: TerminalId,
        last_seq: i64,
        count: i64,
        min: i64,
        max: i64,
    },
}

/// The outcome of [`Store::verify`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub members: i64,
    pub entries: i64,
    pub drift: Vec<Drift>,
    /// Cached states rewritten from the entries (with `repair`).
    pub repaired: i64,
    /// Observations that are not errors, such as entries still missing from another till.
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// True when nothing drifted.
    pub fn is_clean(&self) -> bool {
        self.drift.is_empty()
    }
}

fn check_reversals(entries: &[Entry], drift: &mut Vec<Drift>) {
    let by_id: HashMap<EntryId, &Entry> = entries.iter().map(|e| (e.id, e)).collect();
    for e in entries.iter().filter(|e| e.kind == EntryKind::Reverse) {
        let reason = match e.reverses.and_then(|id| by_id.get(&id)) {
            None => Some("reverses an entry that is not this member's".to_owned()),
            Some(original) => match rules::reverse(original, false) {
                Err(refusal) => Some(refusal.to_string()),
                Ok(d) if d.points != e.points || d.amount_minor != e.amount_minor => {
                    Some("does not exactly negate the entry it reverses".to_owned())
                }
                Ok(_) => None,
            },
        };
        if let Some(reason) = reason {
            drift.push(Drift::Reversal {
                entry: e.id,
                reason,
            });
        }
    }
}

impl Store {
    /// Walks every member and entry once, recomputing balances and tiers from the entries, and
    /// checks the ledger's rules. With `repair`, drifted cached states are rewritten from the
    /// entries (the entries themselves are never touched).
    pub fn verify(&mut self, repair: bool) -> Result<VerifyReport> {
        self.verify_with_progress(repair, &mut |_, _| {})
    }

    /// [`Store::verify`], telling `progress` every few thousand members how many of how many
    /// are done.
    pub fn verify_with_progress(
        &mut self,
        repair: bool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<VerifyReport> {
        // States a bulk pull left for later are due work, not drift: do it first.
        self.refresh_stale()?;
        // Digests not made yet are made by the first report; made ones are checked up to date.
        let digests = self.digests_made()?;
        if digests {
            self.refresh_digests(&mut |_, _| {})?;
        }
        let total: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM members", [], |r| r.get(0))?;
        let total = u64::try_from(total).unwrap_or(0);
        let mut report = VerifyReport::default();
        let mut fixes: Vec<(MemberId, MemberSummary)> = Vec::new();
        let mut record_fixes: Vec<Record> = Vec::new();
        let mut totals = Totals::default();
        {
            let mut members = self.conn.prepare(&format!(
                "SELECT m.id, m.card, m.created_at, m.marketing_consent, s.member_id IS NOT NULL,
                        {STATE_COLUMNS} FROM members m
                 LEFT JOIN member_state s ON s.member_id = m.id ORDER BY m.id"
            ))?;
            let mut entries = self.conn.prepare(&format!(
                "SELECT {ENTRY_COLUMNS} FROM ledger ORDER BY member_id, occurred_at, id"
            ))?;
            let mut entry_rows = entries.query_map([], entry_from_row)?.peekable();
            let mut member_rows = members.query([])?;
            let mut batch: Vec<Entry> = Vec::new();
            while let Some(row) = member_rows.next()? {
                let member = MemberId(row.get(0)?);
                let card: String = row.get(1)?;
                // A corrupt cached state is drift to report and repair, not a reason to stop.
                let cached: std::result::Result<Option<MemberSummary>, Corruption> =
                    if row.get::<_, bool>(4)? {
                        match state_from_row(row, 5, member).map_err(StoreError::from) {
                            Ok(state) => Ok(Some(state)),
                            Err(StoreError::Corrupt(corruption)) => Err(corruption),
                            Err(e) => return Err(e),
                        }
                    } else {
                        Ok(None)
                    };
                batch.clear();
                while let Some(Ok(e)) = entry_rows.peek() {
                    if e.member_id != member {
                        break;
                    }
                    if let Some(Ok(e)) = entry_rows.next() {
                        batch.push(e);
                    }
                }
                if let Some(Err(_)) = entry_rows.peek()
                    && let Some(Err(e)) = entry_rows.next()
                {
                    return Err(e.into());
                }
                report.members += 1;
                if report.members % 5_000 == 0 {
                    progress(u64::try_from(report.members).unwrap_or(0), total);
                }
                report.entries += i64::try_from(batch.len()).unwrap_or(i64::MAX);
                for e in &batch {
                    if let Err(shape) = e.check_shape() {
                        report.drift.push(Drift::Shape {
                            entry: e.id,
                            reason: shape.reason,
                        });
                    }
                }
                check_reversals(&batch, &mut report.drift);
                if digests {
                    let facts = MemberFacts {
                        id: member,
                        enrolled_at: Timestamp::from_millis(row.get(2)?),
                        marketing_consent: row.get(3)?,
                    };
                    let derived = Record::of(&self.program, facts, &batch);
                    derived.count(&mut totals, 1);
                    if !self.record_agrees(&derived)? {
                        report.drift.push(Drift::Digest {
                            member,
                            card: card.clone(),
                        });
                        record_fixes.push(derived);
                    }
                }
                let as_of = cached.as_ref().ok().copied().flatten().map_or_else(
                    || {
                        batch
                            .iter()
                            .map(|e| e.occurred_at)
                            .max()
                            .unwrap_or(Timestamp::from_millis(0))
                    },
                    |c| c.as_of,
                );
                let derived = summarise(&self.program, &batch, as_of);
                match cached {
                    Ok(cached) if cached == Some(derived) => {}
                    Ok(cached) => {
                        report.drift.push(Drift::State {
                            member,
                            card,
                            cached,
                            derived,
                        });
                        fixes.push((member, derived));
                    }
                    Err(corruption) => {
                        report.drift.push(Drift::CorruptState {
                            member,
                            card,
                            reason: corruption.to_string(),
                            derived,
                        });
                        fixes.push((member, derived));
                    }
                }
            }
        }
        self.check_sequences(&mut report)?;
        self.check_extras_by_day(&mut report, repair)?;
        if repair && !fixes.is_empty() {
            let tx = self.conn.transaction()?;
            for (member, derived) in &fixes {
                upsert_state(&tx, *member, derived)?;
            }
            tx.commit()?;
            report.repaired += i64::try_from(fixes.len()).unwrap_or(i64::MAX);
        }
        if digests {
            let stored = match super::records::stored_totals(&self.conn) {
                Ok(stored) => Some(stored),
                Err(StoreError::BadRecord(_)) => None,
                Err(e) => return Err(e),
            };
            // Totals that do not read back differ everywhere.
            let sums = stored.map_or(totals.iter().count().max(1), |stored| {
                totals.differences(&stored)
            });
            if sums > 0 {
                report.drift.push(Drift::Totals { sums });
            }
            if repair && (sums > 0 || !record_fixes.is_empty()) {
                self.rewrite_records(&record_fixes, &totals)?;
                report.repaired +=
                    i64::try_from(record_fixes.len()).unwrap_or(i64::MAX) + i64::from(sums > 0);
            }
        }
        Ok(report)
    }

    /// Compares each by-day table with its rows summed again, and with `repair` makes the
    /// table again from them.
    fn check_extras_by_day(&mut self, report: &mut VerifyReport, repair: bool) -> Result<()> {
        for (table, summed) in super::records::extras_by_day("nps_answers") {
            let rows: i64 = self.conn.query_row(
                &super::records::extras_drift_sql(&table, &summed),
                [],
                |r| r.get(0),
            )?;
            if rows == 0 {
                continue;
            }
            report.drift.push(Drift::ExtrasByDay {
                table: table.clone(),
                rows,
            });
            if repair {
                let tx = self.conn.transaction()?;
                tx.execute(&format!("DELETE FROM {table}"), [])?;
                tx.execute(&format!("INSERT INTO {table} {summed}"), [])?;
                tx.commit()?;
                report.repaired += 1;
            }
        }
        Ok(())
    }

    fn check_sequences(&self, report: &mut VerifyReport) -> Result<()> {
        let last_seq: i64 = self
            .conn
            .query_row("SELECT last_seq FROM terminal", [], |r| r.get(0))?;
        let mut stmt = self.conn.prepare(
            "SELECT terminal_id, COUNT(*), MIN(terminal_seq), MAX(terminal_seq) FROM ledger
             GROUP BY terminal_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut local = (0, 0, 0);
        for row in rows {
            let (terminal, count, min, max) = row?;
            if terminal == self.terminal.0 {
                local = (count, min, max);
            } else if count != max {
                report.notes.push(format!(
                    "terminal {terminal}: {} of its entries up to #{max} are not here yet",
                    max - count
                ));
            }
        }
        let (count, min, max) = local;
        let gapless = count == last_seq && max == last_seq && (count == 0 || min == 1);
        if !gapless {
            report.drift.push(Drift::LocalSequence {
                terminal: self.terminal.clone(),
                last_seq,
                count,
                min,
                max,
            });
        }
        Ok(())
    }

    /// Recomputes every member's cached state from their entries, as of `at` when given (a
    /// re-tier, e.g. nightly, so tiers follow the rolling window) or as of the instant each was
    /// cached at (after a program change). Returns the number of members.
    pub fn rebuild_state(&mut self, at: Option<Timestamp>) -> Result<i64> {
        let members: Vec<(MemberId, i64)> = {
            let mut stmt = self.conn.prepare(
                "SELECT m.id, COALESCE(s.as_of, 0) FROM members m
                 LEFT JOIN member_state s ON s.member_id = m.id",
            )?;
            stmt.query_map([], |r| Ok((MemberId(r.get(0)?), r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        let tx = self.conn.transaction()?;
        let mut n = 0;
        for (member, as_of) in members {
            let entries = super::rows::member_entries(&tx, member)?;
            let when = at.map_or(Timestamp::from_millis(as_of), |t| {
                t.max(Timestamp::from_millis(as_of))
            });
            upsert_state(&tx, member, &summarise(&self.program, &entries, when))?;
            n += 1;
        }
        tx.commit()?;
        Ok(n)
    }
}
