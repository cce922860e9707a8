//! The server's storage, on SQLite (one shop) or PostgreSQL (a chain), behind one interface.

use std::collections::HashMap;

use serde::Serialize;

use super::postgres::PgDb;
use super::sqlite::SqliteDb;
use super::validate::Batch;
use crate::domain::{Entry, EntryKind, MemberId, TerminalId, Timestamp};
use crate::sync::protocol::{BalanceResponse, ConfigResponse, DoubleSpendList, PushResponse};

/// Why a storage call failed; the HTTP layer maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The request's content cannot be stored (422): nothing was written.
    #[error("{0}")]
    Refused(String),
    /// The database cannot be reached or is failing (503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database URL or setup is wrong.
    #[error("{0}")]
    Setup(String),
    /// A stored body does not parse, or a database task failed: a bug or corrupt data (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Unavailable(e.to_string())
    }
}

/// What a token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A live token, bound to this terminal (bound now if it was new).
    Terminal(TerminalId),
    Unknown,
    Revoked,
    /// The token is bound to another terminal id.
    BoundElsewhere(String),
    /// Another token already claimed this terminal id.
    TerminalTaken,
}

/// A registered terminal, for the admin listing.
#[derive(Debug, Clone, Serialize)]
pub struct TerminalRow {
    pub id: i64,
    pub name: String,
    /// The till's own id, once it has connected.
    pub terminal_id: Option<String>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// One of the two storage engines.
pub enum Db {
    Sqlite(SqliteDb),
    Postgres(PgDb),
}

impl Db {
    /// Opens `sqlite:PATH` or `postgres://...`, migrating the schema and creating the first
    /// program version (the demo program, a fresh member-code key) on a new database.
    pub async fn open(url: &str, now: Timestamp) -> Result<Self, DbError> {
        if let Some(path) = url.strip_prefix("sqlite:") {
            Ok(Db::Sqlite(SqliteDb::open(path, now).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Db::Postgres(PgDb::open(url, now).await?))
        } else {
            Err(DbError::Setup(format!(
                "--db must be sqlite:PATH or postgres://..., not {url:?}"
            )))
        }
    }

    /// The backend's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Checks a token (by its SHA-256) and binds it to `terminal` on first use.
    pub async fn authenticate(
        &self,
        token_hash: &str,
        terminal: &TerminalId,
    ) -> Result<Auth, DbError> {
        match self {
            Db::Sqlite(db) => db.authenticate(token_hash, terminal).await,
            Db::Postgres(db) => db.authenticate(token_hash, terminal).await,
        }
    }

    /// Stores a checked batch: all of it or nothing.
    pub async fn push(&self, batch: Batch, now: Timestamp) -> Result<PushResponse, DbError> {
        match self {
            Db::Sqlite(db) => db.push(batch, now).await,
            Db::Postgres(db) => db.push(batch, now).await,
        }
    }

    /// One page after `after`, as the JSON of a `PullResponse` (stored bodies spliced as-is).
    pub async fn pull(
        &self,
        terminal: &TerminalId,
        after: i64,
        limit: usize,
    ) -> Result<String, DbError> {
        match self {
            Db::Sqlite(db) => db.pull(terminal, after, limit).await,
            Db::Postgres(db) => db.pull(terminal, after, limit).await,
        }
    }

    /// The program in force.
    pub async fn config(&self) -> Result<ConfigResponse, DbError> {
        match self {
            Db::Sqlite(db) => db.config().await,
            Db::Postgres(db) => db.config().await,
        }
    }

    /// A member's live balance, `None` for an unknown member.
    pub async fn balance(&self, member: MemberId) -> Result<Option<BalanceResponse>, DbError> {
        match self {
            Db::Sqlite(db) => db.balance(member).await,
            Db::Postgres(db) => db.balance(member).await,
        }
    }

    /// Redemptions that overdrew a balance, newest first.
    pub async fn double_spends(&self, limit: usize) -> Result<DoubleSpendList, DbError> {
        match self {
            Db::Sqlite(db) => db.double_spends(limit).await,
            Db::Postgres(db) => db.double_spends(limit).await,
        }
    }

    /// Registers a terminal under the hash of its token; returns its number.
    pub async fn add_terminal(
        &self,
        name: &str,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<i64, DbError> {
        match self {
            Db::Sqlite(db) => db.add_terminal(name, token_hash, now).await,
            Db::Postgres(db) => db.add_terminal(name, token_hash, now).await,
        }
    }

    /// Revokes terminal number `id`; false if there is none.
    pub async fn revoke_terminal(&self, id: i64, now: Timestamp) -> Result<bool, DbError> {
        match self {
            Db::Sqlite(db) => db.revoke_terminal(id, now).await,
            Db::Postgres(db) => db.revoke_terminal(id, now).await,
        }
    }

    /// Every registered terminal.
    pub async fn terminals(&self) -> Result<Vec<TerminalRow>, DbError> {
        match self {
            Db::Sqlite(db) => db.terminals().await,
            Db::Postgres(db) => db.terminals().await,
        }
    }

    /// Installs a new program version (validated by the caller); returns its version.
    pub async fn set_program(&self, toml: &str, now: Timestamp) -> Result<i64, DbError> {
        match self {
            Db::Sqlite(db) => db.set_program(toml, now).await,
            Db::Postgres(db) => db.set_program(toml, now).await,
        }
    }

    /// Answers when the database does.
    pub async fn health(&self) -> Result<i64, DbError> {
        match self {
            Db::Sqlite(db) => db.health().await,
            Db::Postgres(db) => db.health().await,
        }
    }
}

/// What inserting a batch's entries did, for the ack, balances and double-spend detection.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub inserted: usize,
    pub duplicates: usize,
    /// Points added per member by the entries inserted.
    pub balances: HashMap<MemberId, i64>,
    /// Each member's last redemption inserted.
    pub redeemed: HashMap<MemberId, Entry>,
}

impl Tally {
    /// Counts an entry stored now.
    pub fn inserted(&mut self, e: &Entry) {
        self.inserted += 1;
        *self.balances.entry(e.member_id).or_default() += e.points;
        if e.kind == EntryKind::Redeem {
            self.redeemed.insert(e.member_id, e.clone());
        }
    }
}

/// Appends `items` (already JSON) as a JSON array to `out`.
pub(super) fn json_array<'a>(out: &mut String, items: impl Iterator<Item = &'a str>) {
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push(']');
}

/// Merges member and entry rows (each in seq order) into one page of at most `limit` records:
/// `(members JSON, entries JSON, next cursor, more)`.
pub(super) fn page(
    members: &[(i64, String)],
    entries: &[(i64, String)],
    limit: usize,
    max_seq: i64,
) -> String {
    let (mut m, mut e) = (0, 0);
    let mut last = None;
    while m + e < limit && (m < members.len() || e < entries.len()) {
        let take_member = match (members.get(m), entries.get(e)) {
            (Some(a), Some(b)) => a.0 < b.0,
            (Some(_), None) => true,
            _ => false,
        };
        if take_member {
            last = Some(members[m].0);
            m += 1;
        } else {
            last = Some(entries[e].0);
            e += 1;
        }
    }
    let full = m + e >= limit;
    let next = match (full, last) {
        (true, Some(seq)) => seq,
        _ => max_seq,
    };
    let mut out = String::with_capacity(
        members[..m].iter().map(|r| r.1.len() + 1).sum::<usize>()
            + entries[..e].iter().map(|r| r.1.len() + 1).sum::<usize>()
            + 64,
    );
    out.push_str("{\"members\":");
    json_array(&mut out, members[..m].iter().map(|r| r.1.as_str()));
    out.push_str(",\"entries\":");
    json_array(&mut out, entries[..e].iter().map(|r| r.1.as_str()));
    out.push_str(&format!(",\"next\":{next},\"more\":{full}}}"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_merge_in_seq_order_and_stop_at_the_limit() {
        let members = vec![(2, "\"m2\"".to_owned())];
        let entries = vec![(1, "\"e1\"".to_owned()), (3, "\"e3\"".to_owned())];
        assert_eq!(
            page(&members, &entries, 2, 9),
            r#"{"members":["m2"],"entries":["e1"],"next":2,"more":true}"#
        );
        assert_eq!(
            page(&members, &entries, 5, 9),
            r#"{"members":["m2"],"entries":["e1","e3"],"next":9,"more":false}"#
        );
    }
}
