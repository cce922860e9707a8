//! Mapping between SQL rows and domain types.

use rusqlite::{Row, params};

use crate::domain::{
    CardNumber, Entry, EntryId, EntryKind, MemberId, MemberSummary, TerminalId, Timestamp,
};

/// Columns of `ledger` in the order [`entry_from_row`] reads them.
pub const ENTRY_COLUMNS: &str = "id, terminal_id, terminal_seq, member_id, kind, points, \
     amount_minor, currency, reward_id, reverses, occurred_at, note, actor";

/// Reads an entry selected with [`ENTRY_COLUMNS`].
pub fn entry_from_row(r: &Row<'_>) -> rusqlite::Result<Entry> {
    let kind: String = r.get(4)?;
    let kind = kind.parse::<EntryKind>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, e.into())
    })?;
    Ok(Entry {
        id: EntryId(r.get(0)?),
        terminal_id: TerminalId(r.get(1)?),
        terminal_seq: r.get(2)?,
        member_id: MemberId(r.get(3)?),
        kind,
        points: r.get(5)?,
        amount_minor: r.get(6)?,
        currency: r.get(7)?,
        reward_id: r.get(8)?,
        reverses: r.get::<_, Option<uuid::Uuid>>(9)?.map(EntryId),
        occurred_at: Timestamp::from_millis(r.get(10)?),
        note: r.get(11)?,
        actor: r.get(12)?,
    })
}

/// Reads a card number column.
pub fn card_at(r: &Row<'_>, index: usize) -> rusqlite::Result<CardNumber> {
    r.get::<_, String>(index)?
        .parse()
        .map_err(|e: crate::domain::card::CardError| {
            rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, e.into())
        })
}

/// Appends `entry` unless its id is present. Returns whether a row was written.
pub fn insert_entry(conn: &rusqlite::Connection, e: &Entry) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO ledger (id, terminal_id, terminal_seq, member_id, kind, points, amount_minor,
                             currency, reward_id, reverses, occurred_at, note, actor, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
                 (SELECT COALESCE(MAX(seq), 0) + 1 FROM ledger))
         ON CONFLICT (id) DO NOTHING",
    )?;
    let written = stmt.execute(params![
        e.id.0,
        e.terminal_id.0,
        e.terminal_seq,
        e.member_id.0,
        e.kind.as_str(),
        e.points,
        e.amount_minor,
        e.currency,
        e.reward_id,
        e.reverses.map(|r| r.0),
        e.occurred_at.millis(),
        e.note,
        e.actor,
    ])?;
    Ok(written == 1)
}

/// All entries of one member, oldest first.
pub fn member_entries(
    conn: &rusqlite::Connection,
    member: MemberId,
) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENTRY_COLUMNS} FROM ledger WHERE member_id = ?1 ORDER BY occurred_at, id"
    ))?;
    stmt.query_map(params![member.0], entry_from_row)?.collect()
}

/// Reads one entry by id.
pub fn entry_by_id(conn: &rusqlite::Connection, id: EntryId) -> rusqlite::Result<Option<Entry>> {
    use rusqlite::OptionalExtension as _;
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {ENTRY_COLUMNS} FROM ledger WHERE id = ?1"))?;
    stmt.query_row(params![id.0], entry_from_row).optional()
}

/// Writes a member's cached state.
pub fn upsert_state(
    conn: &rusqlite::Connection,
    member: MemberId,
    s: &MemberSummary,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO member_state (member_id, balance, qualifying, tier, as_of, last_activity_at,
                                  entry_count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (member_id) DO UPDATE SET
             balance = excluded.balance, qualifying = excluded.qualifying, tier = excluded.tier,
             as_of = excluded.as_of, last_activity_at = excluded.last_activity_at,
             entry_count = excluded.entry_count",
    )?;
    stmt.execute(params![
        member.0,
        s.balance,
        s.qualifying,
        i64::try_from(s.tier).unwrap_or(0),
        s.as_of.millis(),
        s.last_activity_at.map(Timestamp::millis),
        s.entry_count,
    ])?;
    Ok(())
}

/// Columns of `member_state` in the order [`state_from_row`] reads them, from `offset`.
pub const STATE_COLUMNS: &str =
    "s.balance, s.qualifying, s.tier, s.as_of, s.last_activity_at, s.entry_count";

/// Reads cached state selected with [`STATE_COLUMNS`] starting at column `offset`.
pub fn state_from_row(r: &Row<'_>, offset: usize) -> rusqlite::Result<MemberSummary> {
    Ok(MemberSummary {
        balance: r.get(offset)?,
        qualifying: r.get(offset + 1)?,
        tier: usize::try_from(r.get::<_, i64>(offset + 2)?).unwrap_or(0),
        as_of: Timestamp::from_millis(r.get(offset + 3)?),
        last_activity_at: r
            .get::<_, Option<i64>>(offset + 4)?
            .map(Timestamp::from_millis),
        entry_count: r.get(offset + 5)?,
    })
}
