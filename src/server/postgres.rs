//! The server on PostgreSQL (tokio-postgres with deadpool pools), for a chain of shops.
//! Pushes take a transaction-scoped advisory lock, so `server_seq` is handed out in commit
//! order and a pull cursor never skips a record that commits later. Entries go in with one
//! `INSERT ... SELECT FROM UNNEST(...)` per batch.
//!
//! Connections come from three pools, so no kind of call can take them all: pushes wait for
//! the lock on the writer's connection rather than each on its own, pull pages have theirs, and
//! the short reads every request makes (authentication, `/health`, config) always find one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Transaction,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};
use uuid::Uuid;

use super::audit::AuditItem;
use super::db::{
    Auth, DbError, GroupAnswers, KeyRow, ProgramCache, PushQueue, Tally, TerminalRow, cut,
    entry_record_name, key_fields, member_record_name, new_epoch, render, render_cut, report_entry,
    report_member, retirable, stored_entry,
};
use super::judge;
use super::report_records::Pace;
use super::validate::{Batch, PushRefusal, RULE_CONFLICT, RULE_ID_CONFLICT, RULE_UNKNOWN_MEMBER};
use crate::domain::Program;
use crate::domain::insights::{ByMember, Facts, FactsBuilder, GuestDay, ScoreDay};
use crate::domain::possible::{Needs, ProgramHistory, needs};
use crate::domain::{Entry, EntryId, MemberId, TerminalId, Timestamp};
use crate::sync::protocol::{
    BalanceResponse, ConfigQuery, ConfigResponse, DoubleSpendList, MAX_PAGE_BYTES,
    ProgramVersionBody, PushResponse, SeedResponse,
};

mod members;
mod passes;
mod report;
mod verify;

/// The schema, in order; each script is idempotent, and runs where `schema_version` says it has
/// not run yet.
const SCHEMA: [&str; 12] = [
    include_str!("migrations/postgres_001.sql"),
    include_str!("migrations/postgres_002.sql"),
    include_str!("migrations/postgres_003.sql"),
    include_str!("migrations/postgres_004.sql"),
    include_str!("migrations/postgres_005.sql"),
    include_str!("migrations/postgres_006.sql"),
    include_str!("migrations/postgres_007.sql"),
    include_str!("migrations/postgres_008.sql"),
    include_str!("migrations/postgres_009.sql"),
    include_str!("migrations/postgres_010.sql"),
    include_str!("migrations/postgres_011.sql"),
    include_str!("migrations/postgres_012.sql"),
];
/// Serialises pushes (any constant works; it names this lock).
const PUSH_LOCK: i64 = 0x7469_6c6c_7061_7373;
/// Connections for writes. Pushes hold the lock for their whole transaction, so a second
/// connection would only wait for it.
const WRITERS: usize = 1;
/// Connections for the short reads of every request: authentication, `/health`, config.
const QUICK_READERS: usize = 3;
/// Connections for pages of records (pulls, own entries, audit listings).
const PAGE_READERS: usize = 4;
/// The connection that brings the chain report's records up to date: apart from the writer,
/// as pushes never touch those tables, so neither waits for the other.
const REPORT_WRITERS: usize = 1;

/// The PostgreSQL backend.
pub struct PgDb {
    writer: Pool,
    quick: Pool,
    pages: Pool,
    report: Pool,
    queue: PushQueue,
}

fn pg(e: tokio_postgres::Error) -> DbError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
        || e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION)
    {
        return DbError::Refused(PushRefusal::push(
            RULE_CONFLICT,
            format!("conflicts with stored data: {e}"),
        ));
    }
    DbError::Unavailable(super::pg_tls::with_causes(&e))
}

/// The highest terminal_seq stored for `terminal` (0: none).
async fn last_terminal_seq(tx: &Transaction<'_>, terminal: &TerminalId) -> Result<i64, DbError> {
    Ok(fetch_one(
        tx,
        "SELECT COALESCE(MAX(terminal_seq), 0)::bigint FROM entries WHERE terminal_id = $1",
        &[&terminal.0],
    )
    .await?
    .get(0))
}

/// `sql` from the connection's cache of prepared statements: a query then costs one round trip
/// instead of two (prepare, then run).
async fn prepared<C: GenericClient>(c: &C, sql: &str) -> Result<Statement, DbError> {
    c.prepare_cached(sql).await.map_err(pg)
}

async fn fetch_all<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, DbError> {
    c.query(&prepared(c, sql).await?, params).await.map_err(pg)
}

async fn fetch_one<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row, DbError> {
    c.query_one(&prepared(c, sql).await?, params)
        .await
        .map_err(pg)
}

async fn fetch_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, DbError> {
    c.query_opt(&prepared(c, sql).await?, params)
        .await
        .map_err(pg)
}

async fn exec<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, DbError> {
    c.execute(&prepared(c, sql).await?, params)
        .await
        .map_err(pg)
}

/// A read-only transaction that sees one moment of the database (repeatable read).
pub(super) async fn snapshot(
    client: &mut deadpool_postgres::Object,
) -> Result<Transaction<'_>, DbError> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg)
}

/// Runs `sql` in `tx` a page of rows at a time, handing each row to `each`: what is held stays
/// one page, whatever the table's size.
async fn for_each_row(
    tx: &Transaction<'_>,
    sql: &str,
    mut each: impl FnMut(&Row) -> Result<(), DbError>,
) -> Result<(), DbError> {
    const PAGE_ROWS: i32 = 10_000;
    let stmt = tx.prepare(sql).await.map_err(pg)?;
    let portal = tx.bind(&stmt, &[]).await.map_err(pg)?;
    loop {
        let rows = tx.query_portal(&portal, PAGE_ROWS).await.map_err(pg)?;
        if rows.is_empty() {
            return Ok(());
        }
        for r in &rows {
            each(r)?;
        }
    }
}

/// A connection from `pool`, once one is free.
async fn get(pool: &Pool) -> Result<deadpool_postgres::Object, DbError> {
    pool.get()
        .await
        .map_err(|e| DbError::Unavailable(super::pg_tls::with_causes(&e)))
}

/// Runs the schema scripts this database has not had, and notes how far it is. A database from
/// before the note gets every script again, which changes nothing there. Scripts take heavy
/// locks even when they change nothing (`ALTER TABLE ... IF NOT EXISTS`): run by an admin
/// command beside a serving server, they queued behind its long reads, and its next reads queued
/// behind them.
async fn upgrade_schema(tx: &deadpool_postgres::Transaction<'_>) -> Result<(), DbError> {
    // Looked for first: `IF NOT EXISTS` would log a notice at every start.
    let noted: bool = tx
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .await
        .map_err(pg)?
        .get(0);
    if !noted {
        tx.batch_execute(
            "CREATE TABLE schema_version (
                 singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
                 scripts   INTEGER NOT NULL CHECK (scripts >= 0)
             )",
        )
        .await
        .map_err(pg)?;
    }
    let done: i32 = tx
        .query_opt("SELECT scripts FROM schema_version", &[])
        .await
        .map_err(pg)?
        .map_or(0, |row| row.get(0));
    let done = usize::try_from(done).unwrap_or(0);
    if done > SCHEMA.len() {
        return Err(DbError::Setup(format!(
            "the database has {done} schema scripts and this server knows {}: run the newer server",
            SCHEMA.len()
        )));
    }
    for script in &SCHEMA[done..] {
        tx.batch_execute(script).await.map_err(pg)?;
    }
    if done < SCHEMA.len() {
        exec(
            tx,
            "INSERT INTO schema_version (singleton, scripts) VALUES (TRUE, $1)
             ON CONFLICT (singleton) DO UPDATE SET scripts = excluded.scripts",
            &[&(SCHEMA.len() as i32)],
        )
        .await?;
    }
    Ok(())
}

impl PgDb {
    /// Connects, creates the schema if missing and the first program version.
    pub async fn open(url: &str, now: Timestamp) -> Result<Self, DbError> {
        let (plain, mode, root) = super::pg_tls::split_url(url)?;
        let mut config: tokio_postgres::Config = plain
            .parse()
            .map_err(|e| DbError::Setup(format!("bad PostgreSQL URL: {e}")))?;
        let tls = super::pg_tls::client_config(mode, root.as_deref())?;
        if tls.is_some() {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
        }
        let pool = |size| {
            let recycling = ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            };
            let manager = match &tls {
                Some(tls) => Manager::from_config(
                    config.clone(),
                    tokio_postgres_rustls::MakeRustlsConnect::new(tls.clone()),
                    recycling,
                ),
                None => Manager::from_config(config.clone(), NoTls, recycling),
            };
            Pool::builder(manager)
                .max_size(size)
                .build()
                .map_err(|e| DbError::Setup(e.to_string()))
        };
        let (writer, quick, pages) = (pool(WRITERS)?, pool(QUICK_READERS)?, pool(PAGE_READERS)?);
        let report = pool(REPORT_WRITERS)?;
        let mut client = get(&writer).await?;
        let tx = client.transaction().await.map_err(pg)?;
        exec(&tx, "SELECT pg_advisory_xact_lock($1)", &[&PUSH_LOCK]).await?;
        upgrade_schema(&tx).await?;
        let key: [u8; 32] = rand::random();
        exec(
            &tx,
            "INSERT INTO program (version, toml, code_key, installed_at)
             SELECT 1, $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM program)",
            &[
                &crate::domain::program::DEMO_PROGRAM_TOML,
                &&key[..],
                &now.millis(),
            ],
        )
        .await?;
        exec(
            &tx,
            "INSERT INTO server_meta (singleton, epoch) VALUES (TRUE, $1) ON CONFLICT DO NOTHING",
            &[&new_epoch()],
        )
        .await?;
        tx.commit().await.map_err(pg)?;
        drop(client);
        let queue = {
            let (writer, programs) = (writer.clone(), Arc::new(ProgramCache::default()));
            PushQueue::start(move |pushes| {
                let (writer, programs) = (writer.clone(), Arc::clone(&programs));
                async move { write_group(&writer, &programs, &pushes).await }
            })
        };
        Ok(PgDb {
            writer,
            quick,
            pages,
            report,
            queue,
        })
    }

    pub async fn authenticate(
        &self,
        token_hash: &str,
        terminal: &TerminalId,
    ) -> Result<Auth, DbError> {
        let client = get(&self.quick).await?;
        let row = fetch_opt(
            &client,
            "SELECT id, terminal_id, revoked_at FROM terminals WHERE token_hash = $1",
            &[&token_hash],
        )
        .await?;
        let Some(row) = row else {
            return Ok(Auth::Unknown);
        };
        let (id, bound, revoked): (i64, Option<String>, Option<i64>) =
            (row.get(0), row.get(1), row.get(2));
        if revoked.is_some() {
            return Ok(Auth::Revoked);
        }
        match bound {
            Some(b) if b == terminal.0 => Ok(Auth::Terminal(terminal.clone())),
            Some(b) => Ok(Auth::BoundElsewhere(b)),
            None => {
                let bound = exec(
                    &client,
                    "UPDATE terminals SET terminal_id = $1 WHERE id = $2 AND terminal_id IS NULL
                         AND NOT EXISTS (SELECT 1 FROM terminals WHERE terminal_id = $1)",
                    &[&terminal.0, &id],
                )
                .await?;
                if bound == 1 {
                    return Ok(Auth::Terminal(terminal.clone()));
                }
                // Another request bound the token first (the same till's, when it sends two
                // at once), or another token holds the terminal: what is stored now decides.
                let now_bound: Option<String> = fetch_one(
                    &client,
                    "SELECT terminal_id FROM terminals WHERE id = $1",
                    &[&id],
                )
                .await?
                .get(0);
                Ok(match now_bound {
                    Some(b) if b == terminal.0 => Auth::Terminal(terminal.clone()),
                    Some(b) => Auth::BoundElsewhere(b),
                    None => Auth::TerminalTaken,
                })
            }
        }
    }

    pub async fn push(&self, batch: Batch, now: Timestamp) -> Result<PushResponse, DbError> {
        self.queue.push(batch, now).await
    }

    pub async fn pull(
        &self,
        terminal: &TerminalId,
        after: i64,
        limit: usize,
    ) -> Result<String, DbError> {
        let mut client = get(&self.pages).await?;
        let tx = snapshot(&mut client).await?;
        let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
        let members: Vec<(i64, String)> = fetch_all(&tx, "SELECT server_seq, body FROM member_versions WHERE server_seq > $1 ORDER BY server_seq LIMIT $2",
                &[&after, &limit_sql]).await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let entries: Vec<(i64, String)> = fetch_all(
            &tx,
            "SELECT server_seq, body FROM entries WHERE server_seq > $1 AND terminal_id <> $2
                 ORDER BY server_seq LIMIT $3",
            &[&after, &terminal.0, &limit_sql],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
        let max_seq: i64 = fetch_one(&tx, "SELECT last FROM server_seq", &[])
            .await?
            .get(0);
        let page = cut(
            &members,
            &entries,
            limit,
            MAX_PAGE_BYTES,
            max_seq.max(after),
        );
        let name = record_at(&tx, page.next).await?;
        tx.commit().await.map_err(pg)?;
        Ok(render_cut(&members, &entries, page, name.as_deref()))
    }

    pub async fn own(
        &self,
        terminal: &TerminalId,
        after: i64,
        limit: usize,
    ) -> Result<String, DbError> {
        let mut client = get(&self.pages).await?;
        let tx = snapshot(&mut client).await?;
        let one_more = i64::try_from(limit).map_or(i64::MAX, |l| l.saturating_add(1));
        let mut rows: Vec<(i64, Uuid, Uuid, String)> = fetch_all(
            &tx,
            "SELECT terminal_seq, id, member_id, body FROM entries
                 WHERE terminal_id = $1 AND terminal_seq > $2 ORDER BY terminal_seq LIMIT $3",
            &[&terminal.0, &after, &one_more],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
        let more = rows.len() > limit;
        rows.truncate(limit);
        let mut member_ids: Vec<Uuid> = Vec::new();
        for (_, _, member, _) in &rows {
            if !member_ids.contains(member) {
                member_ids.push(*member);
            }
        }
        let members: Vec<String> = fetch_all(
            &tx,
            "SELECT m.body FROM UNNEST($1::uuid[]) WITH ORDINALITY AS t(id, ord)
                 JOIN members m ON m.id = t.id ORDER BY t.ord",
            &[&member_ids],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        let (next, next_record) = match rows.last() {
            Some((seq, id, _, _)) => (*seq, Some(entry_record_name(*id))),
            None => {
                let at = fetch_opt(
                    &tx,
                    "SELECT id FROM entries WHERE terminal_id = $1 AND terminal_seq = $2",
                    &[&terminal.0, &after],
                )
                .await?;
                (after, at.map(|r| entry_record_name(r.get(0))))
            }
        };
        tx.commit().await.map_err(pg)?;
        let m: Vec<&str> = members.iter().map(String::as_str).collect();
        let e: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
        Ok(render(&m, &e, next, more, next_record.as_deref()))
    }

    pub async fn config(
        &self,
        terminal: Option<&TerminalId>,
        query: ConfigQuery,
    ) -> Result<ConfigResponse, DbError> {
        let mut client = get(&self.quick).await?;
        let tx = snapshot(&mut client).await?;
        let row = fetch_one(
            &tx,
            "SELECT version, toml, code_key FROM program ORDER BY version DESC LIMIT 1",
            &[],
        )
        .await?;
        let key: Vec<u8> = row.get(2);
        let programs = fetch_all(
            &tx,
            "SELECT version, installed_at, toml FROM program WHERE version > $1 ORDER BY version",
            &[&query.known],
        )
        .await?
        .iter()
        .map(|r| ProgramVersionBody {
            version: r.get(0),
            installed_at: Timestamp::from_millis(r.get(1)),
            toml: r.get(2),
        })
        .collect();
        let meta = fetch_one(
            &tx,
            "SELECT (SELECT epoch FROM server_meta), (SELECT last FROM server_seq)",
            &[],
        )
        .await?;
        let terminal_seq = match terminal {
            Some(t) => last_terminal_seq(&tx, t).await?,
            None => 0,
        };
        let record_at_cursor = record_at(&tx, query.cursor).await?;
        let keys = key_rows(&tx).await?;
        tx.commit().await.map_err(pg)?;
        let (code_keys, code_key_current, code_key0_retired) = key_fields(&keys)?;
        Ok(ConfigResponse {
            program_version: row.get(0),
            program_toml: row.get(1),
            code_key: data_encoding::BASE64.encode(&key),
            programs,
            epoch: meta.get(0),
            server_seq: meta.get(1),
            terminal_seq,
            record_at_cursor,
            code_keys,
            code_key_current,
            code_key0_retired,
        })
    }

    pub async fn seed_key(&self, key: [u8; 32]) -> Result<Option<SeedResponse>, DbError> {
        let mut client = get(&self.writer).await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PUSH_LOCK])
            .await
            .map_err(pg)?;
        let held: Vec<u8> = fetch_one(
            &tx,
            "SELECT code_key FROM program ORDER BY version DESC LIMIT 1",
            &[],
        )
        .await?
        .get(0);
        if held == key {
            return Ok(Some(SeedResponse::AlreadyHeld));
        }
        let used: bool = fetch_one(
            &tx,
            "SELECT EXISTS (SELECT 1 FROM members) OR EXISTS (SELECT 1 FROM entries)
                 OR EXISTS (SELECT 1 FROM code_keys)",
            &[],
        )
        .await?
        .get(0);
        if used {
            return Ok(None);
        }
        exec(&tx, "UPDATE program SET code_key = $1", &[&&key[..]]).await?;
        tx.commit().await.map_err(pg)?;
        Ok(Some(SeedResponse::Taken))
    }

    pub async fn rotate_key(&self, now: Timestamp) -> Result<u32, DbError> {
        let mut client = get(&self.writer).await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PUSH_LOCK])
            .await
            .map_err(pg)?;
        let id: i64 = tx
            .query_one("SELECT COALESCE(MAX(id), 0) + 1 FROM code_keys", &[])
            .await
            .map_err(pg)?
            .get(0);
        let master: [u8; 32] = rand::random();
        tx.execute(
            "INSERT INTO code_keys (id, master, created_at) VALUES ($1, $2, $3)",
            &[&id, &&master[..], &now.millis()],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        u32::try_from(id).map_err(|_| DbError::Internal(format!("key id {id} out of range")))
    }

    pub async fn retire_key(&self, id: u32, now: Timestamp) -> Result<(), DbError> {
        let mut client = get(&self.writer).await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PUSH_LOCK])
            .await
            .map_err(pg)?;
        retirable(&key_rows(&tx).await?, id)?;
        // Key 0 has no row until it is retired (it is the program's code_key).
        tx.execute(
            "INSERT INTO code_keys (id, master, created_at, retired_at) VALUES ($1, NULL, $2, $2)
             ON CONFLICT (id) DO UPDATE SET
                 retired_at = COALESCE(code_keys.retired_at, EXCLUDED.retired_at)",
            &[&i64::from(id), &now.millis()],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    pub async fn record_refusal(
        &self,
        at: Timestamp,
        terminal: &TerminalId,
        refusal: &PushRefusal,
    ) -> Result<(), DbError> {
        exec(
            &get(&self.writer).await?,
            "INSERT INTO refusals (at, terminal_id, entry_id, rule, detail)
                 VALUES ($1, $2, $3, $4, $5)",
            &[
                &at.millis(),
                &terminal.0,
                &refusal.entry_id.map(|e| e.0),
                &refusal.rule,
                &refusal.message,
            ],
        )
        .await?;
        Ok(())
    }

    pub async fn audit(&self, since: Timestamp) -> Result<Vec<AuditItem>, DbError> {
        let mut client = get(&self.pages).await?;
        let tx = snapshot(&mut client).await?;
        let mut items: Vec<AuditItem> = fetch_all(
            &tx,
            "SELECT at, terminal_id, entry_id, rule, detail FROM refusals WHERE at >= $1",
            &[&since.millis()],
        )
        .await?
        .iter()
        .map(|r| AuditItem::refusal(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
        items.extend(
            fetch_all(
                &tx,
                "SELECT terminal_id, day, occurred_at, entry_id, flag, detail FROM flags
                 WHERE detected_at >= $1",
                &[&since.millis()],
            )
            .await?
            .iter()
            .map(|r| AuditItem::flag(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))),
        );
        let spends = fetch_all(
            &tx,
            "SELECT d.entry_id, d.terminal_id, d.occurred_at, d.points, d.balance_after, m.body
                 FROM double_spends d JOIN members m ON m.id = d.member_id
                 WHERE d.detected_at >= $1",
            &[&since.millis()],
        )
        .await?;
        for r in &spends {
            items.push(AuditItem::double_spend(super::double_spend(
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
            )?));
        }
        tx.commit().await.map_err(pg)?;
        Ok(items)
    }

    pub async fn balance(&self, member: MemberId) -> Result<Option<BalanceResponse>, DbError> {
        let client = get(&self.quick).await?;
        let row = fetch_opt(
            &client,
            "SELECT COALESCE((SELECT SUM(points) FROM entries WHERE member_id = m.id), 0)::bigint,
                        (SELECT last FROM server_seq)
                 FROM members m WHERE m.id = $1",
            &[&member.0],
        )
        .await?;
        Ok(row.map(|r| BalanceResponse {
            member_id: member,
            balance: r.get(0),
            server_seq: r.get(1),
        }))
    }

    /// The member's stored record and up to `limit` of their entries from tills other than
    /// `terminal`, in arrival order, read by one statement; `None` for an unknown member.
    pub async fn member_history(
        &self,
        member: MemberId,
        terminal: &TerminalId,
        limit: usize,
    ) -> Result<Option<(String, Vec<String>)>, DbError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(fetch_opt(
            &get(&self.quick).await?,
            "SELECT m.body, ARRAY(SELECT e.body FROM entries e
                                  WHERE e.member_id = m.id AND e.terminal_id <> $2
                                  ORDER BY e.server_seq LIMIT $3)
             FROM members m WHERE m.id = $1",
            &[&member.0, &terminal.0, &limit],
        )
        .await?
        .map(|r| (r.get(0), r.get(1))))
    }

    /// The member's stored record (JSON), `None` for an unknown member.
    pub async fn member_body(&self, member: MemberId) -> Result<Option<String>, DbError> {
        Ok(fetch_opt(
            &get(&self.quick).await?,
            "SELECT body FROM members WHERE id = $1",
            &[&member.0],
        )
        .await?
        .map(|r| r.get(0)))
    }

    pub async fn double_spends(&self, limit: usize) -> Result<DoubleSpendList, DbError> {
        let rows = fetch_all(
            &get(&self.pages).await?,
            "SELECT d.entry_id, d.terminal_id, d.occurred_at, d.points, d.balance_after, m.body
                 FROM double_spends d JOIN members m ON m.id = d.member_id
                 ORDER BY d.id DESC LIMIT $1",
            &[&i64::try_from(limit).unwrap_or(i64::MAX)],
        )
        .await?;
        let double_spends = rows
            .iter()
            .map(|r| {
                super::double_spend(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))
            })
            .collect::<Result<_, _>>()?;
        Ok(DoubleSpendList { double_spends })
    }

    pub async fn add_terminal(
        &self,
        name: &str,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<i64, DbError> {
        Ok(fetch_one(
            &get(&self.writer).await?,
            "INSERT INTO terminals (name, token_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
            &[&name, &token_hash, &now.millis()],
        )
        .await?
        .get(0))
    }

    pub async fn rotate_terminal(&self, id: i64, token_hash: &str) -> Result<bool, DbError> {
        Ok(exec(
            &get(&self.writer).await?,
            "UPDATE terminals SET token_hash = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&id, &token_hash],
        )
        .await?
            == 1)
    }

    pub async fn revoke_terminal(&self, id: i64, now: Timestamp) -> Result<bool, DbError> {
        Ok(exec(
            &get(&self.writer).await?,
            "UPDATE terminals SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&id, &now.millis()],
        )
        .await?
            == 1)
    }

    pub async fn terminals(&self) -> Result<Vec<TerminalRow>, DbError> {
        let rows = fetch_all(
            &get(&self.quick).await?,
            "SELECT id, name, terminal_id, created_at, revoked_at FROM terminals ORDER BY id",
            &[],
        )
        .await?;
        Ok(rows
            .iter()
            .map(|r| TerminalRow {
                id: r.get(0),
                name: r.get(1),
                terminal_id: r.get(2),
                created_at: Timestamp::from_millis(r.get(3)),
                revoked_at: r.get::<_, Option<i64>>(4).map(Timestamp::from_millis),
            })
            .collect())
    }

    pub async fn set_program(&self, toml: &str, now: Timestamp) -> Result<i64, DbError> {
        let mut client = get(&self.writer).await?;
        let tx = client.transaction().await.map_err(pg)?;
        exec(&tx, "SELECT pg_advisory_xact_lock($1)", &[&PUSH_LOCK]).await?;
        let row = fetch_one(
            &tx,
            "INSERT INTO program (version, toml, code_key, installed_at)
                 SELECT version + 1, $1, code_key, $2 FROM program ORDER BY version DESC LIMIT 1
                 RETURNING version",
            &[&toml, &now.millis()],
        )
        .await?;
        tx.commit().await.map_err(pg)?;
        Ok(row.get(0))
    }

    /// The chain report's facts and the program in force: from the totals by day once they
    /// are brought up to date, when they answer the period; else from one read-only snapshot
    /// of the entries in member order, fetched a page at a time, one member's held at a time.
    pub async fn report_facts(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<(Program, Facts), DbError> {
        let (program, _) = self.report_current(Pace::All).await?;
        let counted = self.report_from_totals(&program, from, to).await?;
        let mut client = get(&self.pages).await?;
        let tx = snapshot(&mut client).await?;
        let mut facts = match counted {
            Some(facts) => facts,
            None => {
                let mut members = Vec::new();
                for_each_row(&tx, "SELECT body FROM members", |r| {
                    members.push(report_member(r.get(0))?);
                    Ok(())
                })
                .await?;
                let mut by_member = ByMember::new(FactsBuilder::new(&program, from, to), members);
                for_each_row(&tx, "SELECT body FROM entries ORDER BY member_id", |r| {
                    report_entry(&mut by_member, r.get(0))
                })
                .await?;
                by_member.finish().finish()
            }
        };
        // Summed by day as they were pushed: a few rows a day, not one per sale.
        let range: [&(dyn ToSql + Sync); 2] = [&from.millis(), &to.millis()];
        let guests: Vec<GuestDay> = fetch_all(
            &tx,
            "SELECT day, orders, revenue FROM guest_sales_by_day WHERE day >= $1 AND day < $2",
            &range,
        )
        .await?
        .iter()
        .map(|r| GuestDay::stored(r.get(0), r.get(1), r.get(2)))
        .collect();
        let scores: Vec<ScoreDay> = fetch_all(
            &tx,
            "SELECT day, score::bigint, answers FROM recommend_answers_by_day
             WHERE day >= $1 AND day < $2",
            &range,
        )
        .await?
        .iter()
        .map(|r| ScoreDay::stored(r.get(0), r.get(1), r.get(2)))
        .collect();
        tx.commit().await.map_err(pg)?;
        facts.add_extras(&guests, &scores);
        Ok((Arc::unwrap_or_clone(program), facts))
    }

    pub async fn renew_epoch(&self) -> Result<String, DbError> {
        let epoch = super::db::new_epoch();
        get(&self.writer)
            .await?
            .execute("UPDATE server_meta SET epoch = $1", &[&epoch])
            .await
            .map_err(pg)?;
        Ok(epoch)
    }

    pub async fn scrub_erased(&self) -> Result<(), DbError> {
        get(&self.writer)
            .await?
            .batch_execute("VACUUM (FULL) members, member_versions")
            .await
            .map_err(pg)
    }

    pub async fn partner_view(
        &self,
        cards: Vec<String>,
        terminal: &TerminalId,
    ) -> Result<super::partners::PartnerView, DbError> {
        let client = get(&self.quick).await?;
        let mut view = super::partners::PartnerView::default();
        for card in cards {
            let Some(row) =
                fetch_opt(&client, "SELECT id FROM members WHERE card = $1", &[&card]).await?
            else {
                continue;
            };
            let id: Uuid = row.get(0);
            view.by_card
                .insert(card, (MemberId(id), partner_lines(&client, id).await?));
        }
        let own: Vec<Uuid> = fetch_all(
            &client,
            "SELECT DISTINCT member_id FROM entries WHERE terminal_id = $1 AND kind = 'partner_earn'",
            &[&terminal.0],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        for id in own {
            view.own.push(partner_lines(&client, id).await?);
        }
        view.next_seq = fetch_one(
            &client,
            "SELECT COALESCE(MAX(terminal_seq), 0) + 1 FROM entries WHERE terminal_id = $1",
            &[&terminal.0],
        )
        .await?
        .get(0);
        Ok(view)
    }

    pub async fn health(&self) -> Result<i64, DbError> {
        Ok(
            fetch_one(&get(&self.quick).await?, "SELECT last FROM server_seq", &[])
                .await?
                .get(0),
        )
    }
}

/// A member's partner lines and reversals.
async fn partner_lines<C: GenericClient>(c: &C, member: Uuid) -> Result<Vec<Entry>, DbError> {
    fetch_all(
        c,
        "SELECT body FROM entries WHERE member_id = $1 AND kind IN ('partner_earn', 'reverse')",
        &[&member],
    )
    .await?
    .iter()
    .map(|r| stored_entry(r.get(0)))
    .collect()
}

/// Every member-code key row.
async fn key_rows<C: GenericClient>(c: &C) -> Result<Vec<KeyRow>, DbError> {
    fetch_all(
        c,
        "SELECT id, master, retired_at IS NOT NULL FROM code_keys",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        let id: i64 = r.get(0);
        let id = u32::try_from(id).map_err(|_| DbError::Internal(format!("key id {id}")))?;
        Ok((id, r.get(1), r.get(2)))
    })
    .collect()
}

/// Takes a push's writes back inside its group.
const UNDO_PUSH: &str = "ROLLBACK TO SAVEPOINT push; RELEASE SAVEPOINT push";

const INSERT_ENTRIES: &str =
    "INSERT INTO entries (server_seq, id, member_id, terminal_id, terminal_seq, kind,
                              points, reverses, body)
     SELECT $1 + t.ord, t.id, t.member_id, t.terminal_id, t.terminal_seq, t.kind, t.points,
            t.reverses, t.body
     FROM UNNEST($2::bigint[], $3::uuid[], $4::uuid[], $5::text[], $6::bigint[], $7::text[],
                 $8::bigint[], $9::uuid[], $10::text[])
          AS t(ord, id, member_id, terminal_id, terminal_seq, kind, points, reverses, body)
     ORDER BY t.ord";
const INSERT_FLAGS: &str =
    "INSERT INTO flags (entry_id, member_id, terminal_id, occurred_at, day, flag, detail,
                        detected_at)
     SELECT t.*, $8 FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::text[],
                                $6::text[], $7::text[])
          AS t(entry_id, member_id, terminal_id, occurred_at, day, flag, detail)
     ON CONFLICT DO NOTHING";
/// The balances of the members a push redeemed for, its own entries counted.
const BALANCES_OF: &str = "SELECT member_id, SUM(points)::bigint FROM entries
     WHERE member_id = ANY($1) GROUP BY member_id";

/// Why a push failed inside its savepoint.
enum Failed {
    /// A refusal or a database error, as it is.
    Error(DbError),
    /// The insert found one of these new entries' ids stored already; which one is asked once
    /// the push's writes are taken back.
    IdTaken(Vec<EntryId>),
}

impl From<DbError> for Failed {
    fn from(e: DbError) -> Self {
        Failed::Error(e)
    }
}

/// Stores one push of a group, in the group's transaction, numbering its records after `seq`:
/// all of it, or nothing and why. `Err` when the group's transaction can no longer go on.
async fn push_one(
    tx: &Transaction<'_>,
    history: &ProgramHistory,
    batch: &Batch,
    now: Timestamp,
    seq: &mut i64,
) -> Result<Result<PushResponse, DbError>, DbError> {
    let mut next = *seq;
    let failed = match write_push(tx, history, batch, now, &mut next).await {
        Ok(ack) => {
            *seq = next;
            return Ok(Ok(ack));
        }
        Err(failed) => failed,
    };
    tx.batch_execute(UNDO_PUSH).await.map_err(pg)?;
    Ok(Err(match failed {
        Failed::Error(e) => e,
        Failed::IdTaken(ids) => taken_id(tx, &ids).await?,
    }))
}

/// A push's checks and writes, inside a savepoint (`SAVEPOINT push`) it leaves to the caller to
/// take back on failure. Two round trips for a push of sales, whatever its size: requests sent
/// together are pipelined by tokio-postgres, in the order they are first polled (so statements
/// that must run in order are prepared beforehand, and joined `biased`).
async fn write_push(
    tx: &Transaction<'_>,
    history: &ProgramHistory,
    batch: &Batch,
    now: Timestamp,
    seq: &mut i64,
) -> Result<PushResponse, Failed> {
    let all: Vec<&Entry> = batch.entries.iter().map(|c| &c.entry).collect();
    // What every entry would need: the replayed ones are among what is fetched anyway.
    let wanted = needs(all.iter().copied());
    let member_ids: Vec<Uuid> = all
        .iter()
        .map(|e| e.member_id.0)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let member_param: [&(dyn ToSql + Sync); 1] = [&member_ids];
    let (savepoint, last, known_members, fetched) = tokio::join!(
        biased;
        tx.batch_execute("SAVEPOINT push"),
        last_terminal_seq(tx, &batch.terminal),
        fetch_all(tx, "SELECT id FROM members WHERE id = ANY($1)", &member_param),
        known_entries(tx, &wanted),
    );
    savepoint.map_err(pg)?;
    let (last, known_members, fetched) = (last?, known_members?, fetched?);
    let stored = stored_by_seq(tx, &batch.terminal, &judge::replayed_seqs(batch, last)).await?;
    let split = judge::sequence(batch, last, &stored).map_err(DbError::Refused)?;
    let members = members::store_members(tx, batch, seq).await?;
    let flags = judge::possible(history, fetched, &wanted, &split.new).map_err(DbError::Refused)?;
    // Every member must be known: stored, or stored by this push.
    let known: HashSet<Uuid> = known_members
        .iter()
        .map(|r| r.get(0))
        .chain(batch.members.iter().map(|m| m.record.member.id.0))
        .collect();
    if let Some(c) = split
        .new
        .iter()
        .find(|c| !known.contains(&c.entry.member_id.0))
    {
        let e = &c.entry;
        return Err(Failed::Error(DbError::Refused(PushRefusal::entry(
            e.id,
            RULE_UNKNOWN_MEMBER,
            format!(
                "entry {}: member {} is unknown to the server (push the member first)",
                e.id, e.member_id
            ),
        ))));
    }

    let entries: Vec<&Entry> = split.new.iter().map(|c| &c.entry).collect();
    let mut tally = Tally::default();
    for e in &entries {
        tally.inserted(e);
    }
    let base = *seq;
    let n = i64::try_from(entries.len()).unwrap_or(i64::MAX);
    let ords: Vec<i64> = (1..=n).collect();
    let ids: Vec<Uuid> = entries.iter().map(|e| e.id.0).collect();
    let members_of: Vec<Uuid> = entries.iter().map(|e| e.member_id.0).collect();
    let terminals: Vec<&str> = entries.iter().map(|e| e.terminal_id.0.as_str()).collect();
    let numbers: Vec<i64> = entries.iter().map(|e| e.terminal_seq).collect();
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    let points: Vec<i64> = entries.iter().map(|e| e.points).collect();
    let reverses: Vec<Option<Uuid>> = entries.iter().map(|e| e.reverses.map(|r| r.0)).collect();
    let bodies: Vec<&str> = split.new.iter().map(|c| c.body.as_str()).collect();
    let rows = judge::flag_rows(&split.new, flags);
    let f_entries: Vec<Uuid> = rows.iter().map(|f| f.entry_id).collect();
    let f_members: Vec<Uuid> = rows.iter().map(|f| f.member_id).collect();
    let f_terminals: Vec<&str> = rows.iter().map(|f| f.terminal_id.as_str()).collect();
    let f_at: Vec<i64> = rows.iter().map(|f| f.occurred_at).collect();
    let f_days: Vec<&str> = rows.iter().map(|f| f.day.as_str()).collect();
    let f_names: Vec<&str> = rows.iter().map(|f| f.flag).collect();
    let f_details: Vec<&str> = rows.iter().map(|f| f.detail.as_str()).collect();
    let redeemers: Vec<Uuid> = tally.redeemed.keys().map(|m| m.0).collect();
    let insert = prepared(tx, INSERT_ENTRIES).await?;
    let add_flags = prepared(tx, INSERT_FLAGS).await?;
    let balances_of = prepared(tx, BALANCES_OF).await?;
    let (inserted, flagged, balances, released) = tokio::join!(
        biased;
        async {
            if ids.is_empty() {
                return Ok(0);
            }
            tx.execute(
                &insert,
                &[
                    &base, &ords, &ids, &members_of, &terminals, &numbers, &kinds, &points,
                    &reverses, &bodies,
                ],
            )
            .await
        },
        async {
            if f_entries.is_empty() {
                return Ok(0);
            }
            tx.execute(
                &add_flags,
                &[
                    &f_entries, &f_members, &f_terminals, &f_at, &f_days, &f_names, &f_details,
                    &now.millis(),
                ],
            )
            .await
        },
        async {
            if redeemers.is_empty() {
                return Ok(Vec::new());
            }
            tx.query(&balances_of, &[&redeemers]).await
        },
        tx.batch_execute("RELEASE SAVEPOINT push"),
    );
    if let Err(e) = inserted {
        return Err(if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            Failed::IdTaken(entries.iter().map(|e| e.id).collect())
        } else {
            Failed::Error(pg(e))
        });
    }
    flagged.map_err(pg)?;
    let balances = balances.map_err(pg)?;
    released.map_err(pg)?;
    store_extras(tx, batch).await?;
    *seq = base + n;
    // After the release: a failure here fails the whole group.
    for row in balances {
        let (member, balance): (Uuid, i64) = (row.get(0), row.get(1));
        if balance < 0
            && let Some(e) = tally.redeemed.get(&MemberId(member))
        {
            exec(
                tx,
                "INSERT INTO double_spends (entry_id, member_id, terminal_id, occurred_at,
                                            points, balance_after, detected_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (entry_id) DO NOTHING",
                &[
                    &e.id.0,
                    &member,
                    &e.terminal_id.0,
                    &e.occurred_at.millis(),
                    &e.points,
                    &balance,
                    &now.millis(),
                ],
            )
            .await?;
        }
    }
    Ok(PushResponse {
        inserted: tally.inserted,
        duplicates: split.replays,
        members,
        server_seq: *seq,
    })
}

/// A push's sales without a member, their voids and recommend answers, each stored if absent.
async fn store_extras(tx: &Transaction<'_>, batch: &Batch) -> Result<(), DbError> {
    let terminal = batch.terminal.0.as_str();
    if !batch.guest_sales.is_empty() {
        let ids: Vec<Uuid> = batch.guest_sales.iter().map(|s| s.id).collect();
        let at: Vec<i64> = batch
            .guest_sales
            .iter()
            .map(|s| s.occurred_at.millis())
            .collect();
        let amounts: Vec<i64> = batch.guest_sales.iter().map(|s| s.amount_minor).collect();
        exec(
            tx,
            "INSERT INTO guest_sales (id, terminal_id, occurred_at, amount_minor)
             SELECT t.id, $1, t.at, t.amount FROM UNNEST($2::uuid[], $3::bigint[], $4::bigint[])
                  AS t(id, at, amount)
             ON CONFLICT (id) DO NOTHING",
            &[&terminal, &ids, &at, &amounts],
        )
        .await?;
    }
    if !batch.voids.is_empty() {
        let sales: Vec<Uuid> = batch.voids.iter().map(|v| v.sale).collect();
        let at: Vec<i64> = batch.voids.iter().map(|v| v.occurred_at.millis()).collect();
        exec(
            tx,
            "INSERT INTO guest_sale_voids (sale_id, terminal_id, occurred_at)
             SELECT t.sale, $1, t.at FROM UNNEST($2::uuid[], $3::bigint[]) AS t(sale, at)
             ON CONFLICT (sale_id, terminal_id) DO NOTHING",
            &[&terminal, &sales, &at],
        )
        .await?;
    }
    if !batch.answers.is_empty() {
        let ids: Vec<Uuid> = batch.answers.iter().map(|a| a.id).collect();
        let at: Vec<i64> = batch
            .answers
            .iter()
            .map(|a| a.occurred_at.millis())
            .collect();
        let scores: Vec<i16> = batch.answers.iter().map(|a| i16::from(a.score)).collect();
        let members: Vec<Option<Uuid>> = batch
            .answers
            .iter()
            .map(|a| a.member_id.map(|m| m.0))
            .collect();
        let guest_sales: Vec<Option<Uuid>> = batch.answers.iter().map(|a| a.guest_sale).collect();
        exec(
            tx,
            "INSERT INTO recommend_answers (id, terminal_id, occurred_at, score, member_id, guest_sale)
             SELECT t.id, $1, t.at, t.score, t.member, t.sale
             FROM UNNEST($2::uuid[], $3::bigint[], $4::smallint[], $5::uuid[], $6::uuid[])
                  AS t(id, at, score, member, sale)
             ON CONFLICT (id) DO NOTHING",
            &[&terminal, &ids, &at, &scores, &members, &guest_sales],
        )
        .await?;
    }
    Ok(())
}

/// The refusal of a push one of whose new entries (`new`, in order) has an id already stored.
async fn taken_id(tx: &Transaction<'_>, new: &[EntryId]) -> Result<DbError, DbError> {
    let ids: Vec<Uuid> = new.iter().map(|e| e.0).collect();
    let taken: HashSet<Uuid> = fetch_all(tx, "SELECT id FROM entries WHERE id = ANY($1)", &[&ids])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(DbError::Refused(
        match new.iter().find(|e| taken.contains(&e.0)) {
            Some(id) => PushRefusal::entry(
                *id,
                RULE_ID_CONFLICT,
                format!(
                    "entry {id} already exists on the server with different content; nothing was stored"
                ),
            ),
            None => PushRefusal::push(RULE_CONFLICT, "conflicts with stored data".to_owned()),
        },
    ))
}

/// Stores a group of pushes in one transaction under the push lock, each in a savepoint of its
/// own so a refused push leaves the others standing.
async fn write_group(
    writer: &Pool,
    programs: &ProgramCache,
    pushes: &[(Batch, Timestamp)],
) -> GroupAnswers {
    let mut client = get(writer).await?;
    let tx = client.transaction().await.map_err(pg)?;
    // The reads are sent after the lock, so they run once it is held.
    let lock = prepared(&tx, "SELECT pg_advisory_xact_lock($1)").await?;
    let last = prepared(&tx, "SELECT last FROM server_seq").await?;
    let (locked, last) = tokio::join!(
        biased;
        tx.execute(&lock, &[&PUSH_LOCK]),
        tx.query_one(&last, &[]),
    );
    locked.map_err(pg)?;
    let mut seq: i64 = last.map_err(pg)?.get(0);
    let history = program_history(&tx, programs).await?;
    let mut answers = Vec::with_capacity(pushes.len());
    for (batch, now) in pushes {
        answers.push(push_one(&tx, &history, batch, *now, &mut seq).await?);
    }
    exec(&tx, "UPDATE server_seq SET last = $1", &[&seq]).await?;
    tx.commit().await.map_err(pg)?;
    Ok(answers)
}

/// Every program version, parsed once per new highest version.
async fn program_history(
    tx: &Transaction<'_>,
    cache: &ProgramCache,
) -> Result<Arc<ProgramHistory>, DbError> {
    let latest: i64 = fetch_one(
        tx,
        "SELECT COALESCE(MAX(version), 0)::bigint FROM program",
        &[],
    )
    .await?
    .get(0);
    if let Some(history) = cache.current(latest) {
        return Ok(history);
    }
    let rows = fetch_all(
        tx,
        "SELECT version, toml, installed_at FROM program ORDER BY version",
        &[],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    cache.load(rows)
}

/// The name of the record at `seq`, if there is one.
async fn record_at(tx: &Transaction<'_>, seq: i64) -> Result<Option<String>, DbError> {
    if seq <= 0 {
        return Ok(None);
    }
    if let Some(row) =
        fetch_opt(tx, "SELECT id FROM entries WHERE server_seq = $1", &[&seq]).await?
    {
        return Ok(Some(entry_record_name(row.get(0))));
    }
    fetch_opt(
        tx,
        "SELECT member_id, body FROM member_versions WHERE server_seq = $1",
        &[&seq],
    )
    .await?
    .map(|r| member_record_name(r.get(0), r.get(1)))
    .transpose()
}

/// `terminal`'s stored entries numbered `seqs`: number -> id and body.
async fn stored_by_seq(
    tx: &Transaction<'_>,
    terminal: &TerminalId,
    seqs: &[i64],
) -> Result<HashMap<i64, (EntryId, String)>, DbError> {
    if seqs.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(fetch_all(
        tx,
        "SELECT terminal_seq, id, body FROM entries
             WHERE terminal_id = $1 AND terminal_seq = ANY($2)",
        &[&terminal.0, &seqs],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), (EntryId(r.get(1)), r.get(2))))
    .collect())
}

/// The stored entries the possibility check needs: reversal targets, stored reversals of
/// them, and whole histories.
async fn known_entries(tx: &Transaction<'_>, wanted: &Needs) -> Result<Vec<Entry>, DbError> {
    let targets: Vec<Uuid> = wanted.targets.iter().map(|t| t.0).collect();
    let histories: Vec<Uuid> = wanted.histories.iter().map(|m| m.0).collect();
    if targets.is_empty() && histories.is_empty() {
        return Ok(Vec::new());
    }
    fetch_all(
        tx,
        "SELECT body FROM entries WHERE id = ANY($1) OR reverses = ANY($1) OR member_id = ANY($2)",
        &[&targets, &histories],
    )
    .await?
    .iter()
    .map(|r| stored_entry(r.get(0)))
    .collect()
}
