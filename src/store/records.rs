//! The report's record of each member and the totals by day the records add up to, as SQL:
//! the till's store keeps them in these tables (migrations 020-021), and the server's SQLite
//! backend in tables of the same shape, so both read and write them through this one module.

use rusqlite::{Connection, OptionalExtension as _, params};
use sha2::{Digest as _, Sha256};

use super::{Result, StoreError};
use crate::domain::insights::{
    AtRisk, Digest, Facts, GuestDay, Key, MemberFacts, Record, ScoreDay, StoredRecord, Sum,
    TierChange, Totals, moved,
};
use crate::domain::{MemberId, Program, Timestamp};

/// The indexes the report reads the records through. Made whole after making every record
/// (one sorted build, where a million inserts in random key order rewrote index pages at
/// every commit), and so not in the migration: the totals answer only once every record is made.
pub(crate) const RECORD_INDEXES: [(&str, &str); 2] = [
    (
        "report_members_last_sale",
        "CREATE INDEX IF NOT EXISTS report_members_last_sale
         ON report_members (last_sale, member_id, consent) WHERE last_sale IS NOT NULL",
    ),
    (
        "report_tier_changes_at",
        "CREATE INDEX IF NOT EXISTS report_tier_changes_at
         ON report_tier_changes (at, member_id, tier_before, tier_after, enrolled_at)",
    ),
];

/// A member's id, enrolment and consent from `id, created_at, marketing_consent`.
pub(crate) fn member_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MemberFacts> {
    Ok(MemberFacts {
        id: MemberId(r.get(0)?),
        enrolled_at: Timestamp::from_millis(r.get(1)?),
        marketing_consent: r.get(2)?,
    })
}

/// A tier change from `at, tier_before, tier_after` (the row's first three columns).
pub(crate) fn tier_change_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TierChange> {
    let tier = |i: usize| -> rusqlite::Result<usize> {
        usize::try_from(r.get::<_, i64>(i)?).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Integer, e.into())
        })
    };
    Ok(TierChange {
        at: Timestamp::from_millis(r.get(0)?),
        before: tier(1)?,
        after: tier(2)?,
    })
}

/// The stored record of `member`, if counted (`BadRecord` when its digest does not decode).
pub(crate) fn read_record(conn: &Connection, member: MemberId) -> Result<Option<Record>> {
    let counted = conn
        .prepare_cached(
            "SELECT member_id, enrolled_at, consent FROM report_members WHERE member_id = ?1",
        )?
        .query_row(params![member.0], member_from_row)
        .optional()?;
    let Some(counted) = counted else {
        return Ok(None);
    };
    let bytes: Option<Vec<u8>> = conn
        .prepare_cached("SELECT digest FROM report_digests WHERE member_id = ?1")?
        .query_row(params![member.0], |r| r.get(0))
        .optional()?;
    let digest = bytes
        .map(|b| Digest::from_bytes(&b))
        .transpose()
        .map_err(|e| StoreError::BadRecord(e.to_string()))?;
    Ok(Some(Record {
        member: counted,
        digest,
    }))
}

/// The stored record of `member` with its last purchase and tier change rows, if counted.
pub(crate) fn read_stored(conn: &Connection, member: MemberId) -> Result<Option<StoredRecord>> {
    let record = match read_record(conn, member) {
        Ok(None) => return Ok(None),
        Ok(Some(record)) => Some(record),
        Err(StoreError::BadRecord(_)) => None,
        Err(e) => return Err(e),
    };
    let last_sale = conn
        .prepare_cached("SELECT last_sale FROM report_members WHERE member_id = ?1")?
        .query_row(params![member.0], |r| r.get(0))?;
    let tier_changes = conn
        .prepare_cached(
            "SELECT at, tier_before, tier_after, enrolled_at FROM report_tier_changes
             WHERE member_id = ?1 ORDER BY at",
        )?
        .query_map(params![member.0], |r| {
            Ok((tier_change_from_row(r)?, Timestamp::from_millis(r.get(3)?)))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(StoredRecord {
        record,
        last_sale,
        tier_changes,
    }))
}

/// Stores `record` over the member's: their digest, their row and their tier changes.
pub(crate) fn write_record(tx: &Connection, record: &Record) -> Result<()> {
    let id = record.member.id.0;
    tx.prepare_cached("DELETE FROM report_digests WHERE member_id = ?1")?
        .execute(params![id])?;
    tx.prepare_cached("DELETE FROM report_tier_changes WHERE member_id = ?1")?
        .execute(params![id])?;
    write_fresh_record(tx, record)
}

/// Stores `record` of a member without one.
pub(crate) fn write_fresh_record(tx: &Connection, record: &Record) -> Result<()> {
    let id = record.member.id.0;
    if let Some(digest) = &record.digest {
        tx.prepare_cached("INSERT INTO report_digests (member_id, digest) VALUES (?1, ?2)")?
            .execute(params![id, digest.to_bytes()])?;
    }
    tx.prepare_cached(
        "INSERT OR REPLACE INTO report_members (member_id, enrolled_at, consent, last_sale)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        id,
        record.member.enrolled_at.millis(),
        record.member.marketing_consent,
        record.last_sale()
    ])?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO report_tier_changes (member_id, at, tier_before, tier_after, enrolled_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for change in record.tier_changes() {
        insert.execute(params![
            id,
            change.at.millis(),
            i64::try_from(change.before).unwrap_or(i64::MAX),
            i64::try_from(change.after).unwrap_or(i64::MAX),
            record.member.enrolled_at.millis()
        ])?;
    }
    Ok(())
}

/// Adds `totals` to the stored ones, leaving out sums that come to zero.
pub(crate) fn add_totals(tx: &Connection, totals: &Totals) -> Result<()> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO report_totals (sum, at, of, n) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (sum, at, of) DO UPDATE SET n = n + excluded.n",
    )?;
    for (key, n) in totals.iter() {
        upsert.execute(params![key.sum.code(), key.at, key.of, n])?;
    }
    tx.execute("DELETE FROM report_totals WHERE n = 0", [])?;
    Ok(())
}

/// The stored records' form: a new one remakes them all, as a new program does.
const FORM: &str = "report digest 3\n";

/// The SHA-256 of the records' form and a program's TOML, in hex: what the records were made
/// under.
pub(crate) fn program_hash(toml: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(FORM.as_bytes());
    hash.update(toml.as_bytes());
    data_encoding::HEXLOWER.encode(&hash.finalize())
}

/// The totals as stored (`BadRecord` for a sum this code does not know).
pub(crate) fn stored_totals(conn: &Connection) -> Result<Totals> {
    let mut totals = Totals::default();
    let mut stmt = conn.prepare_cached("SELECT sum, at, of, n FROM report_totals")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let code: i64 = row.get(0)?;
        let sum = Sum::from_code(code)
            .ok_or_else(|| StoreError::BadRecord(format!("unknown report total {code}")))?;
        let key = Key {
            sum,
            at: row.get(1)?,
            of: row.get(2)?,
        };
        totals.add(key, row.get(3)?);
    }
    Ok(totals)
}

/// The facts of `[from, to)` (whole days, after every entry and enrolment counted) under
/// `program`, from the totals by day, the last purchases of the members at risk and the tier
/// changes in the period: a few thousand rows, whatever the members. What the ledger does not
/// give (sales without a member, recommend answers) is left to the caller.
pub(crate) fn totals_facts(
    conn: &Connection,
    program: &Program,
    from: Timestamp,
    to: Timestamp,
) -> Result<Facts> {
    let mut facts = stored_totals(conn)?.facts(from, to, program.tiers.len());
    // Only the members at risk are read: their last purchase is before the cutoff.
    let cutoff = to.plus_days(-program.churn_days);
    facts.last_purchases = conn
        .prepare_cached(
            "SELECT member_id, last_sale, consent FROM report_members
             WHERE last_sale < ?1 ORDER BY last_sale, member_id",
        )?
        .query_map(params![cutoff.millis()], |r| {
            Ok(AtRisk {
                member: MemberId(r.get(0)?),
                last_purchase: Timestamp::from_millis(r.get(1)?),
                marketing_consent: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let changes = conn
        .prepare_cached(
            "SELECT at, tier_before, tier_after, member_id, enrolled_at
             FROM report_tier_changes WHERE at > ?1 AND at < ?2 AND enrolled_at <= ?1",
        )?
        .query_map(params![from.millis(), to.millis()], |r| {
            Ok((
                MemberId(r.get(3)?),
                Timestamp::from_millis(r.get(4)?),
                tier_change_from_row(r)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    (facts.moved_up, facts.moved_down) = moved(changes, from);
    Ok(facts)
}

/// The sums kept by day beside sales without a member and recommend answers, with how each
/// is made from its rows, in the table's column order: `(by-day table, rows summed again)`.
/// A sale voided by the till that recorded it is left out.
/// The till keeps answers in `nps_answers`, the server in `recommend_answers`; the SQL is the
/// same on SQLite and PostgreSQL.
pub(crate) fn extras_by_day(answers: &str) -> [(String, String); 2] {
    [
        (
            "guest_sales_by_day".to_owned(),
            "SELECT occurred_at - occurred_at % 86400000, COUNT(*), SUM(amount_minor)
             FROM guest_sales AS g
             WHERE NOT EXISTS (SELECT 1 FROM guest_sale_voids AS v
                               WHERE v.sale_id = g.id AND v.terminal_id = g.terminal_id)
             GROUP BY 1"
                .to_owned(),
        ),
        (
            format!("{answers}_by_day"),
            format!(
                "SELECT occurred_at - occurred_at % 86400000, score, COUNT(*) FROM {answers}
                 GROUP BY 1, 2"
            ),
        ),
    ]
}

/// The statement counting the rows where a by-day `table` and its rows summed again
/// (`summed`) disagree, both ways (the till's and the server's, SQLite and PostgreSQL alike).
pub(crate) fn extras_drift_sql(table: &str, summed: &str) -> String {
    format!(
        "SELECT (SELECT COUNT(*) FROM (SELECT * FROM {table} EXCEPT {summed}) AS kept)
              + (SELECT COUNT(*) FROM ({summed} EXCEPT SELECT * FROM {table}) AS made)"
    )
}

/// The sales without a member and the recommend answers (kept in `answers`) summed by day,
/// for the days in `[from, to)`: a few rows a day, not one per sale.
pub(crate) fn extras_in(
    conn: &Connection,
    answers: &str,
    from: Timestamp,
    to: Timestamp,
) -> Result<(Vec<GuestDay>, Vec<ScoreDay>)> {
    let range = params![from.millis(), to.millis()];
    let guests = conn
        .prepare_cached(
            "SELECT day, orders, revenue FROM guest_sales_by_day WHERE day >= ?1 AND day < ?2",
        )?
        .query_map(range, |r| {
            Ok(GuestDay::stored(r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let scores = conn
        .prepare_cached(&format!(
            "SELECT day, score, answers FROM {answers}_by_day WHERE day >= ?1 AND day < ?2"
        ))?
        .query_map(range, |r| {
            Ok(ScoreDay::stored(r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok((guests, scores))
}
