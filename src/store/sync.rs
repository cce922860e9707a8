//! The till's side of sync, in SQL: what waits to be pushed, marking it pushed, applying pulled
//! pages with their cursor in one transaction, and the server's program and key.

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use super::ledger::refresh_state;
use super::members::{MEMBER_COLUMNS, insert_member_row, member_from_row};
use super::rows::{ENTRY_COLUMNS, card_at, entry_from_row};
use super::{MemberView, Result, Store, StoreError};
use crate::domain::insights::{GuestSale, GuestSaleVoid, RecommendAnswer};
use crate::domain::member::name_tokens;
use crate::domain::merge::merge;
use crate::domain::{Entry, MemberId, MemberRecord, RetiredCard, Timestamp};

/// Where this till syncs to, and how it trusts that server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncSettings {
    pub server_url: Option<String>,
    pub token: Option<String>,
    /// The server key's pin from the join code; `None`: a CA-issued certificate.
    pub pin: Option<String>,
    /// Plain HTTP to another machine was allowed on purpose.
    pub insecure_http: bool,
}

/// What waits to be pushed, read in one snapshot (members before the entries that need them).
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    pub members: Vec<MemberRecord>,
    /// This till's entries in terminal_seq order.
    pub entries: Vec<Entry>,
    /// Sales without a member, recommend answers and voids of sales without a member not
    /// pushed yet, oldest first, with the rowid of the last of each (what marking them pushed
    /// moves past).
    pub guest_sales: Vec<GuestSale>,
    pub answers: Vec<RecommendAnswer>,
    pub voids: Vec<GuestSaleVoid>,
    pub last_guest_sale: i64,
    pub last_answer: i64,
    pub last_void: i64,
}

impl Outbox {
    /// Nothing to push.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
            && self.entries.is_empty()
            && self.guest_sales.is_empty()
            && self.answers.is_empty()
            && self.voids.is_empty()
    }
}

/// Sync bookkeeping for status displays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncCounters {
    pub waiting_entries: i64,
    /// This till's entries up to this terminal_seq are on the server.
    pub pushed_seq: i64,
    pub waiting_members: i64,
    pub pull_cursor: i64,
    pub program_version: i64,
    pub last_success: Option<Timestamp>,
    pub last_error: Option<String>,
    /// The server database the cursor belongs to.
    pub epoch: Option<String>,
    /// The record at the cursor, as the server named it.
    pub cursor_record: Option<String>,
    /// Pulled records set aside.
    pub quarantined: i64,
}

/// Why the server's program key cannot be taken on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "this till already has {members} members whose codes use its own key, and the server has members and a key of its own; a till with members can start a new chain (join a server that holds no members yet, which takes this till's key), or join this one as a new till"
)]
pub struct KeyMismatch {
    pub members: i64,
}

pub(super) fn member_record(conn: &Connection, id: MemberId) -> Result<MemberRecord> {
    let (member, version, erased_at, referred_by) = conn
        .prepare_cached(&format!(
            "SELECT {MEMBER_COLUMNS}, m.version, m.erased_at, m.referred_by
             FROM members m WHERE m.id = ?1"
        ))?
        .query_row(params![id.0], |r| {
            Ok((
                member_from_row(r)?,
                r.get::<_, i64>(8)?,
                r.get::<_, Option<i64>>(9)?.map(Timestamp::from_millis),
                r.get::<_, Option<uuid::Uuid>>(10)?.map(MemberId),
            ))
        })
        .optional()?
        .ok_or(StoreError::UnknownMember(id))?;
    let mut stmt = conn.prepare_cached(
        "SELECT card, retired_at, replaced_by FROM retired_cards WHERE member_id = ?1
         ORDER BY retired_at, card",
    )?;
    let retired_cards = stmt
        .query_map(params![id.0], |r| {
            Ok(RetiredCard {
                card: card_at(r, 0)?,
                retired_at: Timestamp::from_millis(r.get(1)?),
                replaced_by: card_at(r, 2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(MemberRecord {
        member,
        version,
        retired_cards,
        erased_at,
        referred_by,
    })
}

/// Takes on a member record from the server: a new member is added; one known here becomes
/// the two merged ([`merge`]), which is the server's record unless this till holds something
/// the server lacks (a card replaced here and not yet pushed), and then waits to be pushed.
pub(super) fn apply_member(
    conn: &Connection,
    program: &crate::domain::Program,
    rec: &MemberRecord,
) -> Result<()> {
    let local = match member_record(conn, rec.member.id) {
        Ok(local) => Some(local),
        Err(StoreError::UnknownMember(_)) => None,
        Err(e) => return Err(e),
    };
    let Some(local) = local else {
        write_member(conn, program, rec, false)?;
        return Ok(());
    };
    let merged = merge(&local, rec)?;
    if merged == local {
        return Ok(());
    }
    write_member(conn, program, &merged, true)?;
    if merged != rec.canonical() {
        conn.prepare_cached(
            "INSERT INTO member_outbox (member_id) VALUES (?1) ON CONFLICT DO NOTHING",
        )?
        .execute(params![rec.member.id.0])?;
    }
    Ok(())
}

/// Writes `rec` over the member's row and retired cards (`known`), or adds it. A phone or
/// email held here by another member goes to `rec` (the server's order decides who keeps it; it
/// strips it from the other too).
pub(super) fn write_member(
    conn: &Connection,
    program: &crate::domain::Program,
    rec: &MemberRecord,
    known: bool,
) -> Result<()> {
    let m = &rec.member;
    for (column, value) in [("phone", &m.phone), ("email", &m.email)] {
        if let Some(value) = value {
            conn.prepare_cached(&format!(
                "UPDATE members SET {column} = NULL WHERE {column} = ?1 AND id <> ?2"
            ))?
            .execute(params![value, m.id.0])?;
        }
    }
    if known {
        conn.prepare_cached(
            "UPDATE members SET card = ?2, name = ?3, phone = ?4, email = ?5, birthday = ?6,
                    marketing_consent = ?7
             WHERE id = ?1",
        )?
        .execute(params![
            m.id.0,
            m.card.as_str(),
            m.name,
            m.phone,
            m.email,
            m.birthday.map(|b| b.to_string()),
            m.marketing_consent,
        ])?;
        conn.prepare_cached("DELETE FROM member_name_tokens WHERE member_id = ?1")?
            .execute(params![m.id.0])?;
        let mut tokens = conn
            .prepare_cached("INSERT INTO member_name_tokens (token, member_id) VALUES (?1, ?2)")?;
        for token in name_tokens(&m.name) {
            tokens.execute(params![token, m.id.0])?;
        }
    } else {
        insert_member_row(conn, m)?;
        refresh_state(conn, program, m.id, &[], m.created_at)?;
    }
    conn.prepare_cached(
        "UPDATE members SET version = ?2, erased_at = ?3, referred_by = ?4 WHERE id = ?1",
    )?
    .execute(params![
        m.id.0,
        rec.version,
        rec.erased_at.map(|t| t.millis()),
        rec.referred_by.map(|r| r.0)
    ])?;
    if rec.erased_at.is_some() {
        super::privacy::forget_traces(conn, m.id)?;
    }
    // A retired card's row follows the record (it now leads to the card in use); a card
    // another member retired stays theirs.
    let mut retire = conn.prepare_cached(
        "INSERT INTO retired_cards (card, member_id, retired_at, replaced_by)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (card) DO UPDATE SET retired_at = excluded.retired_at,
             replaced_by = excluded.replaced_by
         WHERE retired_cards.member_id = excluded.member_id",
    )?;
    for r in &rec.retired_cards {
        retire.execute(params![
            r.card.as_str(),
            m.id.0,
            r.retired_at.millis(),
            r.replaced_by.as_str()
        ])?;
    }
    Ok(())
}

/// This till's rows of one of the extras tables (sales without a member, answers, voids)
/// after its push cursor, oldest first: `select` reads the rowid first and `row` makes each
/// row from the columns after it. `after` is `(cursor, at most, terminal)`. Returns the rows
/// and the rowid of the last, the cursor when there are none (what marking them pushed moves
/// past).
fn own_rows_after<T>(
    tx: &Connection,
    select: &str,
    (cursor, max, terminal): (i64, usize, &str),
    row: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<(Vec<T>, i64)> {
    let mut last = cursor;
    let rows = tx
        .prepare_cached(&format!(
            "{select} WHERE rowid > ?1 AND terminal_id = ?2 ORDER BY rowid LIMIT ?3"
        ))?
        .query_map(params![cursor, terminal, max as i64], |r| {
            Ok((r.get::<_, i64>(0)?, row(r)?))
        })?
        .map(|pair| {
            pair.map(|(rowid, item)| {
                last = rowid;
                item
            })
        })
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, last))
}

impl Store {
    /// Whether the ledger holds entries of other tills although this till never pulled any:
    /// the history `demo` makes up for demo tills. Two index lookups, whatever the size.
    pub fn holds_demo_history(&self) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT (SELECT pull_cursor FROM sync_state) = 0
                AND (EXISTS (SELECT 1 FROM ledger WHERE terminal_id < ?1)
                     OR EXISTS (SELECT 1 FROM ledger WHERE terminal_id > ?1))",
            params![self.terminal_id().0],
            |r| r.get(0),
        )?)
    }

    /// The saved server address and token.
    pub fn sync_settings(&self) -> Result<SyncSettings> {
        Ok(self.conn.query_row(
            "SELECT server_url, token, pin, insecure_http FROM sync_state WHERE singleton = 1",
            [],
            |r| {
                Ok(SyncSettings {
                    server_url: r.get(0)?,
                    token: r.get(1)?,
                    pin: r.get(2)?,
                    insecure_http: r.get(3)?,
                })
            },
        )?)
    }

    /// Saves the server address and this till's token (trusting the operating system's
    /// certificate authorities, plain HTTP to this machine only).
    pub fn set_sync_server(&mut self, url: &str, token: &str) -> Result<()> {
        self.join_server(url, token, None, false)
    }

    /// Forgets the server: the till works alone again (what it pushed stays pushed).
    pub fn forget_server(&mut self) -> Result<()> {
        self.conn.execute(
            "UPDATE sync_state SET server_url = NULL, token = NULL, pin = NULL, insecure_http = 0
             WHERE singleton = 1",
            [],
        )?;
        Ok(())
    }

    /// Saves the server address, this till's token, the server key's pin and whether plain
    /// HTTP to another machine is allowed.
    pub fn join_server(
        &mut self,
        url: &str,
        token: &str,
        pin: Option<&str>,
        insecure_http: bool,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE sync_state SET server_url = ?1, token = ?2, pin = ?3, insecure_http = ?4
             WHERE singleton = 1",
            params![url, token, pin, insecure_http],
        )?;
        Ok(())
    }

    /// Counts and times for the status bar and `sync status`.
    pub fn sync_counters(&self) -> Result<SyncCounters> {
        let last_seq: i64 = self.conn.query_row(
            "SELECT last_seq FROM terminal WHERE singleton = 1",
            [],
            |r| r.get(0),
        )?;
        let waiting_members: i64 =
            self.conn
                .query_row("SELECT COUNT(*) FROM member_outbox", [], |r| r.get(0))?;
        let quarantined = self.quarantine_count()?;
        Ok(self.conn.query_row(
            "SELECT pushed_seq, pull_cursor, program_version, last_success, last_error, epoch,
                    cursor_record
             FROM sync_state WHERE singleton = 1",
            [],
            |r| {
                let pushed: i64 = r.get(0)?;
                Ok(SyncCounters {
                    waiting_entries: (last_seq - pushed).max(0),
                    pushed_seq: pushed,
                    waiting_members,
                    pull_cursor: r.get(1)?,
                    program_version: r.get(2)?,
                    last_success: r.get::<_, Option<i64>>(3)?.map(Timestamp::from_millis),
                    last_error: r.get(4)?,
                    epoch: r.get(5)?,
                    cursor_record: r.get(6)?,
                    quarantined,
                })
            },
        )?)
    }

    /// Up to `max_members` changed members and `max_entries` of this till's unpushed entries,
    /// read in one snapshot so every entry's member is either on the server or in this batch.
    pub fn outbox(&mut self, max_members: usize, max_entries: usize) -> Result<Outbox> {
        let tx = self.conn.transaction()?;
        let ids: Vec<MemberId> = tx
            .prepare_cached("SELECT member_id FROM member_outbox LIMIT ?1")?
            .query_map(params![max_members as i64], |r| Ok(MemberId(r.get(0)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let members = ids
            .into_iter()
            .map(|id| member_record(&tx, id))
            .collect::<Result<Vec<_>>>()?;
        let total: i64 = tx.query_row("SELECT COUNT(*) FROM member_outbox", [], |r| r.get(0))?;
        // Entries only once every waiting member is in this batch.
        let entries = if total as usize > members.len() {
            Vec::new()
        } else {
            let pushed: i64 = tx.query_row(
                "SELECT pushed_seq FROM sync_state WHERE singleton = 1",
                [],
                |r| r.get(0),
            )?;
            tx.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM ledger WHERE terminal_id = ?1 AND terminal_seq > ?2
                 ORDER BY terminal_seq LIMIT ?3"
            ))?
            .query_map(
                params![self.terminal.0, pushed, max_entries as i64],
                entry_from_row,
            )?
            .collect::<rusqlite::Result<_>>()?
        };
        let (guests_pushed, answers_pushed, voids_pushed): (i64, i64, i64) = tx.query_row(
            "SELECT guest_sales_pushed, answers_pushed, voids_pushed FROM sync_state
             WHERE singleton = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let terminal = self.terminal.0.as_str();
        let (guest_sales, last_guest_sale) = own_rows_after(
            &tx,
            "SELECT rowid, id, occurred_at, amount_minor FROM guest_sales",
            (guests_pushed, max_entries, terminal),
            |r| {
                Ok(GuestSale {
                    id: r.get(1)?,
                    occurred_at: Timestamp::from_millis(r.get(2)?),
                    amount_minor: r.get(3)?,
                })
            },
        )?;
        let (answers, last_answer) = own_rows_after(
            &tx,
            "SELECT rowid, id, occurred_at, score, member_id, guest_sale FROM nps_answers",
            (answers_pushed, max_entries, terminal),
            |r| {
                Ok(RecommendAnswer {
                    id: r.get(1)?,
                    occurred_at: Timestamp::from_millis(r.get(2)?),
                    score: r.get(3)?,
                    member_id: r.get::<_, Option<uuid::Uuid>>(4)?.map(MemberId),
                    guest_sale: r.get(5)?,
                })
            },
        )?;
        let (voids, last_void) = own_rows_after(
            &tx,
            "SELECT rowid, sale_id, occurred_at FROM guest_sale_voids",
            (voids_pushed, max_entries, terminal),
            |r| {
                Ok(GuestSaleVoid {
                    sale: r.get(1)?,
                    occurred_at: Timestamp::from_millis(r.get(2)?),
                })
            },
        )?;
        tx.commit()?;
        Ok(Outbox {
            members,
            entries,
            guest_sales,
            answers,
            voids,
            last_guest_sale,
            last_answer,
            last_void,
        })
    }

    /// Records that the server has `outbox`: its members leave the outbox unless changed since,
    /// and the pushed sequence moves past its entries.
    pub fn mark_pushed(&mut self, outbox: &Outbox) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for rec in &outbox.members {
            tx.execute(
                "DELETE FROM member_outbox WHERE member_id = ?1
                 AND (SELECT version FROM members WHERE id = ?1) = ?2",
                params![rec.member.id.0, rec.version],
            )?;
        }
        if let Some(last) = outbox.entries.last() {
            tx.execute(
                "UPDATE sync_state SET pushed_seq = MAX(pushed_seq, ?1) WHERE singleton = 1",
                params![last.terminal_seq],
            )?;
        }
        tx.execute(
            "UPDATE sync_state SET guest_sales_pushed = MAX(guest_sales_pushed, ?1),
                                   answers_pushed = MAX(answers_pushed, ?2),
                                   voids_pushed = MAX(voids_pushed, ?3)
             WHERE singleton = 1",
            params![outbox.last_guest_sale, outbox.last_answer, outbox.last_void],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Notes the server database this till syncs with.
    pub fn set_epoch(&mut self, epoch: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE sync_state SET epoch = ?1 WHERE singleton = 1",
            params![epoch],
        )?;
        Ok(())
    }

    /// The server was restored from an older copy or replaced: pull everything again from the
    /// start (applying is idempotent), push every member record again, and note its epoch.
    pub fn restart_pull(&mut self, epoch: &str) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE sync_state SET pull_cursor = 0, cursor_record = NULL, epoch = ?1
             WHERE singleton = 1",
            params![epoch],
        )?;
        // The older copy may lack member records pushed after it was made (a member enrolled
        // here since, say): without them the server would refuse this till's entries for those
        // members for good. Every record goes again; the server's merge ignores what it has.
        tx.execute(
            "INSERT OR IGNORE INTO member_outbox (member_id) SELECT id FROM members",
            [],
        )?;
        // Sales without a member, their voids and recommend answers likewise (stored if
        // absent).
        tx.execute(
            "UPDATE sync_state SET guest_sales_pushed = 0, answers_pushed = 0, voids_pushed = 0
             WHERE singleton = 1",
            [],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The server holds this till's entries only up to `seq` (it was restored from an older
    /// copy): push again from there.
    pub fn push_again_after(&mut self, seq: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE sync_state SET pushed_seq = MIN(pushed_seq, ?1) WHERE singleton = 1",
            params![seq.max(0)],
        )?;
        Ok(())
    }

    /// Notes the end of a sync attempt: success clears the last error.
    pub fn record_sync(&mut self, at: Timestamp, error: Option<&str>) -> Result<()> {
        match error {
            None => self.conn.execute(
                "UPDATE sync_state SET last_success = ?1, last_error = NULL WHERE singleton = 1",
                params![at.millis()],
            )?,
            Some(e) => self.conn.execute(
                "UPDATE sync_state SET last_error = ?1 WHERE singleton = 1",
                params![e],
            )?,
        };
        Ok(())
    }

    /// Installs the server's program (when newer) and member-code key. A till with members of
    /// its own under a different key refuses: their printed codes would stop working.
    pub fn install_server_program(
        &mut self,
        version: i64,
        toml: &str,
        key: [u8; 32],
        at: Timestamp,
    ) -> Result<bool> {
        let installed: i64 = self.conn.query_row(
            "SELECT program_version FROM sync_state WHERE singleton = 1",
            [],
            |r| r.get(0),
        )?;
        if key != *self.code_key.as_bytes() {
            let members: i64 = self
                .conn
                .query_row("SELECT COUNT(*) FROM members", [], |r| r.get(0))?;
            if members > 0 {
                return Err(StoreError::KeyMismatch(KeyMismatch { members }));
            }
            self.conn.execute(
                "UPDATE secrets SET value = ?1 WHERE name = 'member_code_key'",
                params![&key[..]],
            )?;
            self.code_key = crate::token::code::CodeKey::from_bytes(key);
            self.keys = super::schema::keyring(&self.conn)?;
        }
        if version == installed {
            return Ok(false);
        }
        self.set_program(toml, at)?;
        self.conn.execute(
            "UPDATE sync_state SET program_version = ?1 WHERE singleton = 1",
            params![version],
        )?;
        Ok(true)
    }

    /// Takes on the server's member-code keys added since key 0 (derived for member codes; a
    /// till never holds a master key), the current one, and whether key 0 is retired. A key the
    /// server no longer lists is retired here too: its codes are refused from now on.
    pub fn install_code_keys(
        &mut self,
        keys: &[(u32, [u8; 32])],
        current: u32,
        key0_retired: bool,
    ) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM code_keys", [])?;
        for (id, secret) in keys {
            tx.execute(
                "INSERT INTO code_keys (id, secret) VALUES (?1, ?2)",
                params![id, &secret[..]],
            )?;
        }
        tx.execute(
            "UPDATE sync_state SET code_key_current = ?1, code_key0_retired = ?2
             WHERE singleton = 1",
            params![current, key0_retired],
        )?;
        tx.commit()?;
        self.keys = super::schema::keyring(&self.conn)?;
        Ok(())
    }

    /// Members whose balance is below zero (offline redemptions at several tills spent the same
    /// points), lowest first.
    pub fn overdrawn_members(&self, limit: usize) -> Result<Vec<MemberView>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT member_id FROM member_state WHERE balance < 0 ORDER BY balance LIMIT ?1",
        )?;
        let ids: Vec<MemberId> = stmt
            .query_map(params![limit as i64], |r| Ok(MemberId(r.get(0)?)))?
            .collect::<rusqlite::Result<_>>()?;
        ids.into_iter().map(|id| self.member(id)).collect()
    }
}
