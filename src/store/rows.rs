//! Mapping between SQL rows and domain types.

use rusqlite::{Row, params};

use super::Corruption;
use crate::domain::{
    CardNumber, Entry, EntryId, EntryKind, MemberId, MemberSummary, TerminalId, Timestamp,
};

/// Columns of `ledger` in the order [`entry_from_row`] reads them.
pub const ENTRY_COLUMNS: &str = "id, terminal_id, terminal_seq, member_id, kind, points, \
     amount_minor, currency, reward_id, reverses, occurred_at, note, actor, lines, stamps, returns";

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
        lines: match r.get::<_, Option<String>>(13)? {
            None => Vec::new(),
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(13, rusqlite::types::Type::Text, e.into())
            })?,
        },
        stamps: match r.get::<_, Option<String>>(14)? {
            None => Default::default(),
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(14, rusqlite::types::Type::Text, e.into())
            })?,
        },
        returns: r.get::<_, Option<uuid::Uuid>>(15)?.map(EntryId),
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
    insert_numbered(conn, e, next_seq(conn)?)
}

/// The arrival number the next entry inserted here gets.
pub fn next_seq(conn: &rusqlite::Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM ledger")?
        .query_row([], |r| r.get(0))
}

/// [`insert_entry`] with its arrival number `seq` (from [`next_seq`], counted up by the caller
/// for a run of inserts in one transaction).
pub fn insert_numbered(conn: &rusqlite::Connection, e: &Entry, seq: i64) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO ledger (id, terminal_id, terminal_seq, member_id, kind, points, amount_minor,
                             currency, reward_id, reverses, occurred_at, note, actor, lines, stamps, returns, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
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
        lines_json(&e.lines),
        (!e.stamps.is_empty()).then(|| serde_json::to_string(&e.stamps).unwrap_or_default()),
        e.returns.map(|r| r.0),
        seq,
    ])?;
    Ok(written == 1)
}

/// A basket's lines as stored: their JSON, or NULL when there are none.
fn lines_json(lines: &[crate::domain::basket::SaleLine]) -> Option<String> {
    (!lines.is_empty()).then(|| serde_json::to_string(lines).unwrap_or_default())
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
    let tier = i64::try_from(s.tier).map_err(|_| {
        rusqlite::Error::ToSqlConversionFailure(
            format!(
                "member {member}: tier {} does not fit in a database integer",
                s.tier
            )
            .into(),
        )
    })?;
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
        tier,
        s.as_of.millis(),
        s.last_activity_at.map(Timestamp::millis),
        s.entry_count,
    ])?;
    Ok(())
}

/// Columns of `member_state` in the order [`state_from_row`] reads them, from `offset`.
pub const STATE_COLUMNS: &str =
    "s.balance, s.qualifying, s.tier, s.as_of, s.last_activity_at, s.entry_count";

/// Reads `member`'s cached state selected with [`STATE_COLUMNS`] starting at column `offset`.
/// A negative tier is reported as [`Corruption::NegativeTier`] (see `StoreError`'s `From`).
pub fn state_from_row(
    r: &Row<'_>,
    offset: usize,
    member: MemberId,
) -> rusqlite::Result<MemberSummary> {
    let tier: i64 = r.get(offset + 2)?;
    let tier = usize::try_from(tier).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            offset + 2,
            rusqlite::types::Type::Integer,
            Box::new(Corruption::NegativeTier { member, tier }),
        )
    })?;
    Ok(MemberSummary {
        balance: r.get(offset)?,
        qualifying: r.get(offset + 1)?,
        tier,
        as_of: Timestamp::from_millis(r.get(offset + 3)?),
        last_activity_at: r
            .get::<_, Option<i64>>(offset + 4)?
            .map(Timestamp::from_millis),
        entry_count: r.get(offset + 5)?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::MemberInput;
    use crate::store::{Drift, Store, StoreError};

    /// 2026-11-23T12:00:00Z.
    pub(crate) const NOW: Timestamp = Timestamp::from_millis(1_795_435_200_000);

    /// A new store in a temporary directory (kept alive by the returned guard) with one member.
    pub(crate) fn store_with_member() -> (tempfile::TempDir, Store, MemberId) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = Store::open(&dir.path().join("till.sqlite3")).expect("open");
        let input = MemberInput {
            name: "Ada Lovelace".into(),
            ..Default::default()
        };
        let member = store
            .add_member(input, "test", NOW)
            .expect("enrol")
            .member
            .id;
        (dir, store, member)
    }

    /// A sale at `till` (another connection to `path`) once some other connection holds the
    /// write lock, as a cashier's sale during a long write; then `look` at the store. `None`
    /// when `done` is set before the lock was ever seen held.
    pub(crate) fn sale_once_locked<T>(
        path: &std::path::Path,
        till: &mut Store,
        member: MemberId,
        done: &std::sync::atomic::AtomicBool,
        look: impl FnOnce(&Store) -> T,
    ) -> Option<T> {
        let probe = rusqlite::Connection::open(path).expect("probe");
        probe
            .busy_timeout(std::time::Duration::ZERO)
            .expect("no wait");
        // A write finds the lock busy once the long writer holds it.
        while probe.execute_batch("BEGIN IMMEDIATE").is_ok() {
            probe.execute_batch("ROLLBACK").expect("rollback");
            if done.load(std::sync::atomic::Ordering::Relaxed) {
                return None;
            }
        }
        till.earn(member, 1_000, "test", NOW)
            .expect("the sale gets in");
        Some(look(till))
    }

    /// Keeps what `count` (a SELECT of one number) gives at the moment each sale's entry goes
    /// in, inside the sale's own transaction, on the selling connection; [`seen_at_sale`] reads
    /// the least. (Counted after the sale's commit, the writer it waited for may have run on.)
    pub(crate) fn look_at_sale(till: &Store, count: &str) {
        till.connection()
            .execute_batch(&format!(
                "CREATE TEMP TABLE seen_at_sale (n INTEGER);
                 CREATE TEMP TRIGGER look_at_sale AFTER INSERT ON ledger
                 BEGIN INSERT INTO seen_at_sale {count}; END"
            ))
            .expect("a look at the sale");
    }

    /// What [`look_at_sale`] saw, the least of it.
    pub(crate) fn seen_at_sale(till: &Store) -> i64 {
        till.connection()
            .query_row("SELECT MIN(n) FROM seen_at_sale", [], |r| r.get(0))
            .expect("seen at the sale")
    }

    /// Writes `tier` into the member's cached state behind the store's back.
    pub(crate) fn set_cached_tier(store: &Store, member: MemberId, tier: i64) {
        store
            .connection()
            .execute(
                "UPDATE member_state SET tier = ?1 WHERE member_id = ?2",
                params![tier, member.0],
            )
            .expect("tamper with the cache");
    }

    #[test]
    fn a_tier_too_large_to_store_is_refused_not_written_as_tier_0() {
        let (_dir, store, member) = store_with_member();
        let before = store.member(member).expect("member").state;
        let huge = MemberSummary {
            tier: usize::MAX,
            ..before
        };
        let err = upsert_state(store.connection(), member, &huge).expect_err("no such tier");
        assert!(err.to_string().contains(&member.to_string()), "{err}");
        assert_eq!(store.member(member).expect("member").state, before);
    }

    #[test]
    fn a_negative_cached_tier_is_an_error_naming_the_member() {
        let (_dir, store, member) = store_with_member();
        set_cached_tier(&store, member, -3);
        let err = store.member(member).expect_err("tier -3 is no tier");
        assert!(
            matches!(
                &err,
                StoreError::Corrupt(Corruption::NegativeTier { member: m, tier: -3 }) if *m == member
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&member.to_string()), "{message}");
        assert!(message.contains("tier -3"), "{message}");
    }

    #[test]
    fn verify_reports_and_repairs_a_corrupt_cached_tier() {
        let (_dir, mut store, member) = store_with_member();
        set_cached_tier(&store, member, -3);
        let report = store.verify(false).expect("verify");
        assert!(
            matches!(
                report.drift.as_slice(),
                [Drift::CorruptState { member: m, .. }] if *m == member
            ),
            "{report:?}"
        );
        assert_eq!(store.verify(true).expect("repair").repaired, 1);
        assert!(store.verify(false).expect("verify").is_clean());
        assert_eq!(store.member(member).expect("readable again").state.tier, 0);
    }
}
