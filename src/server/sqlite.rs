//! The server on SQLite (rusqlite, bundled), WAL, each call on tokio's blocking pool: one writer
//! connection, and readers in two sets, so the reads every request makes (authentication,
//! `/health`, a till's config) never wait behind pull pages, which can take a reader for a
//! tenth of a second each. Pushes are serialised by the writer, so `server_seq` grows in commit
//! order and a cursor never skips a record that commits later.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use rusqlite_migration::{M, Migrations};
use tokio::sync::Semaphore;

use super::audit::AuditItem;
use super::db::{
    Auth, DbError, GroupAnswers, KeyRow, ProgramCache, PushQueue, Tally, TerminalRow, cut,
    entry_record_name, key_fields, member_record_name, new_epoch, render, render_cut, report_entry,
    report_member, retirable, stored_entry,
};
use super::judge;
use super::report_records::{Pace, records_error};
use super::validate::{
    Batch, CheckedEntry, PushRefusal, RULE_CONFLICT, RULE_ID_CONFLICT, RULE_UNKNOWN_MEMBER,
};
use crate::domain::Program;
use crate::domain::insights::{ByMember, Facts, FactsBuilder};
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

const STEPS: &[M<'static>] = &[
    M::up(include_str!("migrations/sqlite_001.sql")),
    M::up(include_str!("migrations/sqlite_002.sql")),
    M::up(include_str!("migrations/sqlite_003.sql")),
    M::up(include_str!("migrations/sqlite_004.sql")),
    M::up(include_str!("migrations/sqlite_005.sql")),
    M::up(include_str!("migrations/sqlite_006.sql")),
    M::up(include_str!("migrations/sqlite_007.sql")),
    M::up(include_str!("migrations/sqlite_008.sql")),
    M::up(include_str!("migrations/sqlite_009.sql")),
    M::up(include_str!("migrations/sqlite_010.sql")),
];
const MIGRATIONS: Migrations<'static> = Migrations::from_slice(STEPS);

/// Readers for the short reads of every request: authentication, `/health`, config, balances.
const QUICK_READERS: usize = 2;
/// Readers for pages of records (pulls, own entries, audit listings).
const PAGE_READERS: usize = 4;

/// The SQLite backend.
pub struct SqliteDb {
    writer: Arc<Connections>,
    quick: Arc<Connections>,
    pages: Arc<Connections>,
    queue: PushQueue,
    checkpoints: Checkpointer,
    /// Held while the chain report's records are brought up to date, by one caller at a time
    /// in this process; with it, a lock on `report_lock` for other processes on the same file
    /// (`tillpass-server report` beside a running server).
    report: tokio::sync::Mutex<()>,
    report_lock: std::path::PathBuf,
}

/// Connections to the database file, each used by one call at a time; a call waits for a free
/// one without holding a thread.
struct Connections {
    idle: Mutex<Vec<Connection>>,
    free: Arc<Semaphore>,
}

impl Connections {
    fn new(connections: Vec<Connection>) -> Arc<Self> {
        Arc::new(Connections {
            free: Arc::new(Semaphore::new(connections.len())),
            idle: Mutex::new(connections),
        })
    }
}

/// A connection taken from its set, put back when dropped (also when a call panics).
struct Lease<'a> {
    set: &'a Connections,
    conn: Option<Connection>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.set
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(conn);
        }
    }
}

fn connect(path: &str) -> Result<Connection, DbError> {
    let conn = Connection::open(path).map_err(|e| DbError::Setup(format!("{path}: {e}")))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted and overwritten content is zeroed, so an erased member leaves no copy on disk.
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "cache_size", -128 * 1024)?;
    Ok(conn)
}

/// Copies committed pages from the write-ahead log into the database file, on a thread and
/// connection of its own, whenever the writer has committed since it last ran.
#[derive(Clone)]
struct Checkpointer {
    wake: std::sync::mpsc::SyncSender<()>,
    /// Held while a checkpoint runs, by this thread, by the writer restarting the log, or by an
    /// erasure's scrub.
    running: Arc<Mutex<()>>,
    log: Arc<LogLength>,
}

impl Checkpointer {
    /// Starts the thread; it ends when the last handle is dropped.
    fn start(conn: Connection) -> Result<Self, DbError> {
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let running = Arc::new(Mutex::new(()));
        let log = Arc::new(LogLength::default());
        let (held, seen) = (Arc::clone(&running), Arc::clone(&log));
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    let _one = held.lock().unwrap_or_else(|e| e.into_inner());
                    // A failure leaves the log whole and readable, so it is only tried again.
                    if let Ok(frames) = checkpoint(&conn) {
                        seen.frames.store(frames, Ordering::Relaxed);
                    }
                }
            })
            .map_err(|e| DbError::Setup(format!("starting the checkpointer: {e}")))?;
        Ok(Checkpointer { wake, running, log })
    }

    /// Asks for a checkpoint; one already asked for covers this one too.
    fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// On the writer between groups: starts the log again once it is long
    /// ([`LogLength::restart_if_long`]).
    fn restart_if_long(&self, writer: &Connection) -> rusqlite::Result<()> {
        self.log.restart_if_long(writer, &self.running)
    }
}

/// Copies what it can of the log into the database file without waiting (passive): pages it
/// cannot copy now are copied by a later one. Returns the frames in the log.
fn checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
}

/// Log frames (4 KiB pages) past which the writer starts the log again: about 1 GiB.
const RESTART_FRAMES: i64 = 262_144;
/// How long starting the log again may wait for readers (pushes wait meanwhile) before it
/// gives up until the log has grown by another quarter.
const RESTART_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
/// The connections' usual wait for a lock.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The write-ahead log's length as the checkpointer last saw it, and the length from which
/// the writer starts it again.
///
/// While pushes follow each other, the checkpointer copies the log while the writer's next
/// group is already open, so the writer never finds it wholly copied when it begins and never
/// starts it again from its beginning: the file grew by every page ever written (24 GB three
/// minutes into a 10M-entry ingest). Only the writer, between groups, can have it started
/// again without racing itself for the write lock.
struct LogLength {
    frames: AtomicI64,
    restart_at: AtomicI64,
}

impl Default for LogLength {
    fn default() -> Self {
        LogLength {
            frames: AtomicI64::new(0),
            restart_at: AtomicI64::new(RESTART_FRAMES),
        }
    }
}

impl LogLength {
    /// On the writer between groups, when the log has passed its limit: copies the rest of it,
    /// waits up to `RESTART_WAIT` for readers of older pages, and so has the next write start
    /// the log from its beginning, reusing the file. When a long read keeps it waiting, it
    /// tries again a quarter further on.
    fn restart_if_long(&self, writer: &Connection, running: &Mutex<()>) -> rusqlite::Result<()> {
        let frames = self.frames.load(Ordering::Relaxed);
        if frames < self.restart_at.load(Ordering::Relaxed) {
            return Ok(());
        }
        let _one = running.lock().unwrap_or_else(|e| e.into_inner());
        writer.busy_timeout(RESTART_WAIT)?;
        let busy = writer.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
        writer.busy_timeout(BUSY_TIMEOUT)?;
        let restarted = busy? == 0;
        self.restart_at.store(
            if restarted {
                RESTART_FRAMES
            } else {
                frames + RESTART_FRAMES / 4
            },
            Ordering::Relaxed,
        );
        if restarted {
            self.frames.store(0, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Runs `f` on the blocking pool with a connection of `set`, once one is free. The permit goes
/// with the call, so a request given up while its call runs does not let another call in
/// before the connection is back.
async fn with<T: Send + 'static>(
    set: &Arc<Connections>,
    f: impl FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
) -> Result<T, DbError> {
    let permit = Arc::clone(&set.free)
        .acquire_owned()
        .await
        .map_err(|e| DbError::Internal(format!("database connections closed: {e}")))?;
    let set = Arc::clone(set);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut lease = Lease {
            conn: set
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop(),
            set: &set,
        };
        let conn = lease
            .conn
            .as_mut()
            .ok_or_else(|| DbError::Internal("no idle connection under a permit".to_owned()))?;
        f(conn)
    })
    .await
    .map_err(|e| DbError::Internal(format!("a database task failed: {e}")))?
}

/// A constraint violation as a refusal of `entry` (if one) by `rule`; other errors as they are.
fn refused(
    e: rusqlite::Error,
    entry: Option<EntryId>,
    rule: &'static str,
    what: String,
) -> DbError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            DbError::Refused(PushRefusal {
                entry_id: entry,
                rule,
                message: what,
            })
        }
        other => other.into(),
    }
}

fn last_seq(conn: &Connection) -> Result<i64, DbError> {
    Ok(
        conn.query_row("SELECT last FROM server_seq WHERE singleton = 1", [], |r| {
            r.get(0)
        })?,
    )
}

/// Every member-code key row.
fn key_rows(conn: &Connection) -> Result<Vec<KeyRow>, DbError> {
    Ok(conn
        .prepare_cached("SELECT id, master, retired_at IS NOT NULL FROM code_keys")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<Vec<KeyRow>>>()?)
}

/// The highest terminal_seq stored for `terminal` (0: none).
fn last_terminal_seq(conn: &Connection, terminal: &TerminalId) -> Result<i64, DbError> {
    Ok(conn
        .prepare_cached(
            "SELECT COALESCE(MAX(terminal_seq), 0) FROM entries WHERE terminal_id = ?1",
        )?
        .query_row(params![terminal.0], |r| r.get(0))?)
}

impl SqliteDb {
    /// Opens (creating and migrating) the database file.
    pub async fn open(path: &str, now: Timestamp) -> Result<Self, DbError> {
        let report_lock = crate::store::file_lock::beside(path.as_ref(), ".report-lock");
        let upgrade_lock = crate::store::file_lock::beside(path.as_ref(), ".upgrade-lock");
        let path = path.to_owned();
        let (writer, quick, pages, checkpoints) = tokio::task::spawn_blocking(move || {
            let mut writer = connect(&path)?;
            let migrating = |e| DbError::Setup(format!("migrating {path}: {e}"));
            // One process at a time (an admin command run while `serve` upgrades the file
            // would run the same migrations again): the lock is taken when some are pending,
            // and the version read again under it.
            let pending = MIGRATIONS.pending_migrations(&writer).map_err(migrating)?;
            let alone =
                crate::store::file_lock::hold_if(pending > 0, &upgrade_lock).map_err(|e| {
                    DbError::Setup(format!("the upgrade lock {}: {e}", upgrade_lock.display()))
                })?;
            MIGRATIONS.to_latest(&mut writer).map_err(migrating)?;
            ensure_first_program(&writer, now)?;
            drop(alone);
            // Pushes commit without copying the log into the database file: the checkpointer
            // does that on its own connection while the writer takes the next group.
            writer.pragma_update(None, "wal_autocheckpoint", 0)?;
            let readers = |n| {
                (0..n)
                    .map(|_| connect(&path))
                    .collect::<Result<Vec<_>, _>>()
            };
            Ok::<_, DbError>((
                writer,
                readers(QUICK_READERS)?,
                readers(PAGE_READERS)?,
                Checkpointer::start(connect(&path)?)?,
            ))
        })
        .await
        .map_err(|e| DbError::Unavailable(e.to_string()))??;
        let writer = Connections::new(vec![writer]);
        let queue = {
            let (writer, programs) = (Arc::clone(&writer), Arc::new(ProgramCache::default()));
            let checkpoints = checkpoints.clone();
            PushQueue::start(move |pushes| {
                let (writer, programs) = (Arc::clone(&writer), Arc::clone(&programs));
                let checkpoints = checkpoints.clone();
                async move {
                    let log = checkpoints.clone();
                    let answers = with(&writer, move |conn| {
                        let answers = write_group(conn, &programs, &pushes);
                        // A failure leaves the log as it was, to be started again later.
                        let _ = log.restart_if_long(conn);
                        Ok(answers)
                    })
                    .await;
                    checkpoints.wake();
                    answers.and_then(|answers| answers)
                }
            })
        };
        Ok(SqliteDb {
            writer,
            quick: Connections::new(quick),
            pages: Connections::new(pages),
            queue,
            checkpoints,
            report: tokio::sync::Mutex::new(()),
            report_lock,
        })
    }

    pub async fn authenticate(
        &self,
        token_hash: &str,
        terminal: &TerminalId,
    ) -> Result<Auth, DbError> {
        // Every request authenticates: read on a quick reader, so requests queue neither
        // behind pushes on the writer nor behind pull pages; only a token's first use (binding
        // it) needs the writer.
        let (hash, term) = (token_hash.to_owned(), terminal.clone());
        let state = with(&self.quick, move |conn| token_state(conn, &hash, &term)).await?;
        if let Ok(auth) = state {
            return Ok(auth);
        }
        let (hash, terminal) = (token_hash.to_owned(), terminal.clone());
        with(&self.writer, move |conn| bind_token(conn, &hash, &terminal)).await
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
        let terminal = terminal.clone();
        with(&self.pages, move |conn| {
            let tx = conn.transaction()?;
            let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
            let members: Vec<(i64, String)> = tx
                .prepare_cached(
                    "SELECT server_seq, body FROM member_versions WHERE server_seq > ?1
                     ORDER BY server_seq LIMIT ?2",
                )?
                .query_map(params![after, limit_sql], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let entries: Vec<(i64, String)> = tx
                .prepare_cached(
                    "SELECT server_seq, body FROM entries WHERE server_seq > ?1 AND terminal_id <> ?2
                     ORDER BY server_seq LIMIT ?3",
                )?
                .query_map(params![after, terminal.0, limit_sql], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let max_seq = last_seq(&tx)?;
            let page = cut(&members, &entries, limit, MAX_PAGE_BYTES, max_seq.max(after));
            let name = record_at(&tx, page.next)?;
            Ok(render_cut(&members, &entries, page, name.as_deref()))
        })
        .await
    }

    pub async fn own(
        &self,
        terminal: &TerminalId,
        after: i64,
        limit: usize,
    ) -> Result<String, DbError> {
        let terminal = terminal.clone();
        with(&self.pages, move |conn| {
            let tx = conn.transaction()?;
            let one_more = i64::try_from(limit).map_or(i64::MAX, |l| l.saturating_add(1));
            let mut rows: Vec<(i64, uuid::Uuid, uuid::Uuid, String)> = tx
                .prepare_cached(
                    "SELECT terminal_seq, id, member_id, body FROM entries
                     WHERE terminal_id = ?1 AND terminal_seq > ?2 ORDER BY terminal_seq LIMIT ?3",
                )?
                .query_map(params![terminal.0, after, one_more], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let more = rows.len() > limit;
            rows.truncate(limit);
            let mut member_ids: Vec<uuid::Uuid> = Vec::new();
            for (_, _, member, _) in &rows {
                if !member_ids.contains(member) {
                    member_ids.push(*member);
                }
            }
            let mut member = tx.prepare_cached("SELECT body FROM members WHERE id = ?1")?;
            let members = member_ids
                .iter()
                .map(|id| member.query_row(params![id], |r| r.get::<_, String>(0)))
                .collect::<rusqlite::Result<Vec<String>>>()?;
            let (next, next_record) = match rows.last() {
                Some((seq, id, _, _)) => (*seq, Some(entry_record_name(*id))),
                None => (after, own_record_at(&tx, &terminal, after)?),
            };
            let m: Vec<&str> = members.iter().map(String::as_str).collect();
            let e: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
            Ok(render(&m, &e, next, more, next_record.as_deref()))
        })
        .await
    }

    pub async fn config(
        &self,
        terminal: Option<&TerminalId>,
        query: ConfigQuery,
    ) -> Result<ConfigResponse, DbError> {
        let terminal = terminal.cloned();
        with(&self.quick, move |conn| {
            let tx = conn.transaction()?;
            let (version, toml, key): (i64, String, Vec<u8>) = tx.query_row(
                "SELECT version, toml, code_key FROM program ORDER BY version DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let programs = tx
                .prepare_cached(
                    "SELECT version, installed_at, toml FROM program WHERE version > ?1
                     ORDER BY version",
                )?
                .query_map(params![query.known], |r| {
                    Ok(ProgramVersionBody {
                        version: r.get(0)?,
                        installed_at: Timestamp::from_millis(r.get(1)?),
                        toml: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let epoch: String = tx.query_row(
                "SELECT epoch FROM server_meta WHERE singleton = 1",
                [],
                |r| r.get(0),
            )?;
            let terminal_seq = match &terminal {
                Some(t) => last_terminal_seq(&tx, t)?,
                None => 0,
            };
            let keys = key_rows(&tx)?;
            let (code_keys, code_key_current, code_key0_retired) = key_fields(&keys)?;
            Ok(ConfigResponse {
                program_version: version,
                program_toml: toml,
                code_key: data_encoding::BASE64.encode(&key),
                programs,
                epoch,
                server_seq: last_seq(&tx)?,
                terminal_seq,
                record_at_cursor: record_at(&tx, query.cursor)?,
                code_keys,
                code_key_current,
                code_key0_retired,
            })
        })
        .await
    }

    pub async fn seed_key(&self, key: [u8; 32]) -> Result<Option<SeedResponse>, DbError> {
        with(&self.writer, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let held: Vec<u8> = tx.query_row(
                "SELECT code_key FROM program ORDER BY version DESC LIMIT 1",
                [],
                |r| r.get(0),
            )?;
            if held == key {
                return Ok(Some(SeedResponse::AlreadyHeld));
            }
            let used: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM members) OR EXISTS (SELECT 1 FROM entries)
                     OR EXISTS (SELECT 1 FROM code_keys)",
                [],
                |r| r.get(0),
            )?;
            if used {
                return Ok(None);
            }
            tx.execute("UPDATE program SET code_key = ?1", params![&key[..]])?;
            tx.commit()?;
            Ok(Some(SeedResponse::Taken))
        })
        .await
    }

    pub async fn rotate_key(&self, now: Timestamp) -> Result<u32, DbError> {
        with(&self.writer, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let id: u32 =
                tx.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM code_keys", [], |r| {
                    r.get(0)
                })?;
            let master: [u8; 32] = rand::random();
            tx.execute(
                "INSERT INTO code_keys (id, master, created_at) VALUES (?1, ?2, ?3)",
                params![id, &master[..], now.millis()],
            )?;
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    pub async fn retire_key(&self, id: u32, now: Timestamp) -> Result<(), DbError> {
        with(&self.writer, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let keys = key_rows(&tx)?;
            retirable(&keys, id)?;
            // Key 0 has no row until it is retired (it is the program's code_key).
            tx.execute(
                "INSERT INTO code_keys (id, master, created_at, retired_at)
                 VALUES (?1, NULL, ?2, ?2)
                 ON CONFLICT (id) DO UPDATE SET
                     retired_at = COALESCE(code_keys.retired_at, excluded.retired_at)",
                params![id, now.millis()],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn record_refusal(
        &self,
        at: Timestamp,
        terminal: &TerminalId,
        refusal: &PushRefusal,
    ) -> Result<(), DbError> {
        let (terminal, refusal) = (terminal.clone(), refusal.clone());
        with(&self.writer, move |conn| {
            conn.prepare_cached(
                "INSERT INTO refusals (at, terminal_id, entry_id, rule, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                at.millis(),
                terminal.0,
                refusal.entry_id.map(|e| e.0),
                refusal.rule,
                refusal.message
            ])?;
            Ok(())
        })
        .await
    }

    pub async fn audit(&self, since: Timestamp) -> Result<Vec<AuditItem>, DbError> {
        with(&self.pages, move |conn| {
            let tx = conn.transaction()?;
            let mut items: Vec<AuditItem> = tx
                .prepare(
                    "SELECT at, terminal_id, entry_id, rule, detail FROM refusals WHERE at >= ?1",
                )?
                .query_map(params![since.millis()], |r| {
                    Ok(AuditItem::refusal(
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?;
            items.extend(
                tx.prepare(
                    "SELECT terminal_id, day, occurred_at, entry_id, flag, detail FROM flags
                     WHERE detected_at >= ?1",
                )?
                .query_map(params![since.millis()], |r| {
                    Ok(AuditItem::flag(
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            );
            let spends = tx
                .prepare(
                    "SELECT d.entry_id, d.terminal_id, d.occurred_at, d.points, d.balance_after, m.body
                     FROM double_spends d JOIN members m ON m.id = d.member_id
                     WHERE d.detected_at >= ?1",
                )?
                .query_map(params![since.millis()], |r| {
                    Ok((
                        r.get::<_, uuid::Uuid>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for (entry, terminal, at, points, balance_after, body) in spends {
                items.push(AuditItem::double_spend(super::double_spend(
                    entry,
                    terminal,
                    at,
                    points,
                    balance_after,
                    &body,
                )?));
            }
            Ok(items)
        })
        .await
    }

    /// The member's stored record (JSON), `None` for an unknown member.
    pub async fn member_body(&self, member: MemberId) -> Result<Option<String>, DbError> {
        with(&self.quick, move |conn| {
            Ok(conn
                .query_row(
                    "SELECT body FROM members WHERE id = ?1",
                    params![member.0],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    /// The member's stored record and up to `limit` of their entries from tills other than
    /// `terminal`, in arrival order, read in one snapshot; `None` for an unknown member.
    pub async fn member_history(
        &self,
        member: MemberId,
        terminal: &TerminalId,
        limit: usize,
    ) -> Result<Option<(String, Vec<String>)>, DbError> {
        let terminal = terminal.clone();
        with(&self.quick, move |conn| {
            let tx = conn.transaction()?;
            let Some(body) = tx
                .query_row(
                    "SELECT body FROM members WHERE id = ?1",
                    params![member.0],
                    |r| r.get(0),
                )
                .optional()?
            else {
                return Ok(None);
            };
            let entries = tx
                .prepare_cached(
                    "SELECT body FROM entries WHERE member_id = ?1 AND terminal_id <> ?2
                     ORDER BY server_seq LIMIT ?3",
                )?
                .query_map(
                    params![
                        member.0,
                        terminal.0,
                        i64::try_from(limit).unwrap_or(i64::MAX)
                    ],
                    |r| r.get(0),
                )?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some((body, entries)))
        })
        .await
    }

    pub async fn balance(&self, member: MemberId) -> Result<Option<BalanceResponse>, DbError> {
        with(&self.quick, move |conn| {
            let known: Option<i64> = conn
                .query_row(
                    "SELECT 1 FROM members WHERE id = ?1",
                    params![member.0],
                    |r| r.get(0),
                )
                .optional()?;
            if known.is_none() {
                return Ok(None);
            }
            let balance: Option<i64> = conn
                .query_row(
                    "SELECT balance FROM balances WHERE member_id = ?1",
                    params![member.0],
                    |r| r.get(0),
                )
                .optional()?;
            let server_seq: i64 =
                conn.query_row("SELECT last FROM server_seq WHERE singleton = 1", [], |r| {
                    r.get(0)
                })?;
            Ok(Some(BalanceResponse {
                member_id: member,
                balance: balance.unwrap_or(0),
                server_seq,
            }))
        })
        .await
    }

    /// The chain report's facts and the program in force: from the totals by day once they
    /// are brought up to date, when they answer the period; else from one read transaction
    /// over the entries in member order (the member index), one member's held at a time.
    pub async fn report_facts(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<(Program, Facts), DbError> {
        let (program, _) = self.report_current(Pace::All).await?;
        let counted = self
            .report_from_totals(Arc::clone(&program), from, to)
            .await?;
        let facts = with(&self.pages, {
            let program = Arc::clone(&program);
            move |conn| {
                let tx = conn.transaction()?;
                let mut facts = match counted {
                    Some(facts) => facts,
                    None => {
                        let mut members = Vec::new();
                        let mut stmt = tx.prepare("SELECT body FROM members")?;
                        let mut rows = stmt.query([])?;
                        while let Some(row) = rows.next()? {
                            members.push(report_member(&row.get::<_, String>(0)?)?);
                        }
                        let mut by_member =
                            ByMember::new(FactsBuilder::new(&program, from, to), members);
                        let mut stmt = tx.prepare("SELECT body FROM entries ORDER BY member_id")?;
                        let mut rows = stmt.query([])?;
                        while let Some(row) = rows.next()? {
                            report_entry(&mut by_member, &row.get::<_, String>(0)?)?;
                        }
                        by_member.finish().finish()
                    }
                };
                let (guests, scores) =
                    crate::store::records::extras_in(&tx, "recommend_answers", from, to)
                        .map_err(records_error)?;
                facts.add_extras(&guests, &scores);
                Ok(facts)
            }
        })
        .await?;
        Ok((Arc::unwrap_or_clone(program), facts))
    }

    pub async fn double_spends(&self, limit: usize) -> Result<DoubleSpendList, DbError> {
        with(&self.pages, move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT d.entry_id, d.terminal_id, d.occurred_at, d.points, d.balance_after, m.body
                 FROM double_spends d JOIN members m ON m.id = d.member_id
                 ORDER BY d.rowid DESC LIMIT ?1",
            )?;
            let rows = stmt
                .query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                    Ok((
                        r.get::<_, uuid::Uuid>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let double_spends = rows
                .into_iter()
                .map(|(entry, terminal, at, points, balance_after, body)| {
                    super::double_spend(entry, terminal, at, points, balance_after, &body)
                })
                .collect::<Result<_, _>>()?;
            Ok(DoubleSpendList { double_spends })
        })
        .await
    }

    pub async fn add_terminal(
        &self,
        name: &str,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<i64, DbError> {
        let (name, hash) = (name.to_owned(), token_hash.to_owned());
        with(&self.writer, move |conn| {
            conn.execute(
                "INSERT INTO terminals (name, token_hash, created_at) VALUES (?1, ?2, ?3)",
                params![name, hash, now.millis()],
            )?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    pub async fn revoke_terminal(&self, id: i64, now: Timestamp) -> Result<bool, DbError> {
        with(&self.writer, move |conn| {
            Ok(conn.execute(
                "UPDATE terminals SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now.millis()],
            )? == 1)
        })
        .await
    }

    pub async fn rotate_terminal(&self, id: i64, token_hash: &str) -> Result<bool, DbError> {
        let hash = token_hash.to_owned();
        with(&self.writer, move |conn| {
            Ok(conn.execute(
                "UPDATE terminals SET token_hash = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, hash],
            )? == 1)
        })
        .await
    }

    pub async fn terminals(&self) -> Result<Vec<TerminalRow>, DbError> {
        with(&self.quick, |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, name, terminal_id, created_at, revoked_at FROM terminals ORDER BY id",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(TerminalRow {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        terminal_id: r.get(2)?,
                        created_at: Timestamp::from_millis(r.get(3)?),
                        revoked_at: r.get::<_, Option<i64>>(4)?.map(Timestamp::from_millis),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    pub async fn set_program(&self, toml: &str, now: Timestamp) -> Result<i64, DbError> {
        let toml = toml.to_owned();
        with(&self.writer, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (version, key): (i64, Vec<u8>) = tx.query_row(
                "SELECT version, code_key FROM program ORDER BY version DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            tx.execute(
                "INSERT INTO program (version, toml, code_key, installed_at) VALUES (?1, ?2, ?3, ?4)",
                params![version + 1, toml, key, now.millis()],
            )?;
            tx.commit()?;
            Ok(version + 1)
        })
        .await
    }

    pub async fn backup(&self, path: &str) -> Result<(), DbError> {
        let path = path.to_owned();
        with(&self.pages, move |conn| {
            if std::path::Path::new(&path).exists() {
                return Err(DbError::Setup(format!(
                    "{path} exists already; choose a new file for the backup"
                )));
            }
            conn.execute("VACUUM INTO ?1", params![path])?;
            // The copy is another database once put back: tills must notice and heal.
            let copy = Connection::open(&path)?;
            copy.execute(
                "UPDATE server_meta SET epoch = ?1 WHERE singleton = 1",
                params![new_epoch()],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn renew_epoch(&self) -> Result<String, DbError> {
        with(&self.writer, |conn| {
            let epoch = new_epoch();
            conn.execute(
                "UPDATE server_meta SET epoch = ?1 WHERE singleton = 1",
                params![epoch],
            )?;
            Ok(epoch)
        })
        .await
    }

    pub async fn scrub_erased(&self) -> Result<(), DbError> {
        let running = Arc::clone(&self.checkpoints.running);
        with(&self.writer, move |conn| {
            // One checkpoint at a time: SQLite refuses a second at once without waiting.
            let _one = running.lock().unwrap_or_else(|e| e.into_inner());
            let busy: i64 =
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
            if busy != 0 {
                return Err(DbError::Unavailable(
                    "the write-ahead log could not be emptied: a reader held it past the busy timeout"
                        .into(),
                ));
            }
            Ok(())
        })
        .await
    }

    pub async fn partner_view(
        &self,
        cards: Vec<String>,
        terminal: TerminalId,
    ) -> Result<super::partners::PartnerView, DbError> {
        with(&self.quick, move |conn| {
            let lines_of = |id: uuid::Uuid| -> Result<Vec<Entry>, DbError> {
                let bodies: Vec<String> = conn
                    .prepare_cached(
                        "SELECT body FROM entries
                         WHERE member_id = ?1 AND kind IN ('partner_earn', 'reverse')",
                    )?
                    .query_map(params![id], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                bodies.iter().map(|b| stored_entry(b)).collect()
            };
            let mut view = super::partners::PartnerView::default();
            for card in cards {
                let member: Option<uuid::Uuid> = conn
                    .prepare_cached("SELECT id FROM members WHERE card = ?1")?
                    .query_row(params![card], |r| r.get(0))
                    .optional()?;
                if let Some(id) = member {
                    view.by_card.insert(card, (MemberId(id), lines_of(id)?));
                }
            }
            let own: Vec<uuid::Uuid> = conn
                .prepare_cached(
                    "SELECT DISTINCT member_id FROM entries
                     WHERE terminal_id = ?1 AND kind = 'partner_earn'",
                )?
                .query_map(params![terminal.0], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for id in own {
                view.own.push(lines_of(id)?);
            }
            view.next_seq = conn.query_row(
                "SELECT COALESCE(MAX(terminal_seq), 0) + 1 FROM entries WHERE terminal_id = ?1",
                params![terminal.0],
                |r| r.get(0),
            )?;
            Ok(view)
        })
        .await
    }

    pub async fn health(&self) -> Result<i64, DbError> {
        with(&self.quick, |conn| {
            Ok(
                conn.query_row("SELECT last FROM server_seq WHERE singleton = 1", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
    }
}

/// Stores one push of a group, on the writer in the group's transaction, numbering its records
/// after `seq`: all of it, or nothing and why.
fn push_one(
    tx: &Connection,
    programs: &ProgramCache,
    batch: &Batch,
    now: Timestamp,
    seq: &mut i64,
) -> Result<PushResponse, DbError> {
    let last = last_terminal_seq(tx, &batch.terminal)?;
    let stored = stored_by_seq(tx, &batch.terminal, &judge::replayed_seqs(batch, last))?;
    let split = judge::sequence(batch, last, &stored).map_err(DbError::Refused)?;
    let members = members::store_members(tx, batch, seq)?;
    let wanted = needs(split.new.iter().map(|c| &c.entry));
    let history = program_history(tx, programs)?;
    let flags = judge::possible(&history, known_entries(tx, &wanted)?, &wanted, &split.new)
        .map_err(DbError::Refused)?;
    let first_new = *seq;
    let tally = insert_entries(tx, &split.new, seq)?;
    let mut flag = tx.prepare_cached(
        "INSERT INTO flags (entry_id, member_id, terminal_id, occurred_at, day, flag, detail,
                            detected_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
    )?;
    for f in judge::flag_rows(&split.new, flags) {
        flag.execute(params![
            f.entry_id,
            f.member_id,
            f.terminal_id,
            f.occurred_at,
            f.day,
            f.flag,
            f.detail,
            now.millis()
        ])?;
    }
    drop(flag);
    // One statement adds every new entry to its member's balance. The new entries are read by
    // their rowid range: left to itself, the planner walks the member index over the whole
    // table to save a sort, which made every push cost as much as the ledger is long.
    tx.prepare_cached(
        "INSERT INTO balances (member_id, balance)
         SELECT member_id, SUM(points) FROM entries NOT INDEXED WHERE server_seq > ?1
         GROUP BY member_id
         ON CONFLICT (member_id) DO UPDATE SET balance = balance + excluded.balance",
    )?
    .execute(params![first_new])?;
    let mut bal = tx.prepare_cached("SELECT balance FROM balances WHERE member_id = ?1")?;
    let mut overdrawn = tx.prepare_cached(
        "INSERT INTO double_spends (entry_id, member_id, terminal_id, occurred_at, points,
                                    balance_after, detected_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (entry_id) DO NOTHING",
    )?;
    for (member, e) in &tally.redeemed {
        let balance: i64 = bal.query_row(params![member.0], |r| r.get(0))?;
        if balance < 0 {
            overdrawn.execute(params![
                e.id.0,
                member.0,
                e.terminal_id.0,
                e.occurred_at.millis(),
                e.points,
                balance,
                now.millis()
            ])?;
        }
    }
    drop((bal, overdrawn));
    let mut sale = tx.prepare_cached(
        "INSERT INTO guest_sales (id, terminal_id, occurred_at, amount_minor)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING",
    )?;
    for s in &batch.guest_sales {
        sale.execute(params![
            s.id,
            batch.terminal.0,
            s.occurred_at.millis(),
            s.amount_minor
        ])?;
    }
    let mut void = tx.prepare_cached(
        "INSERT INTO guest_sale_voids (sale_id, terminal_id, occurred_at)
         VALUES (?1, ?2, ?3) ON CONFLICT (sale_id, terminal_id) DO NOTHING",
    )?;
    for v in &batch.voids {
        void.execute(params![v.sale, batch.terminal.0, v.occurred_at.millis()])?;
    }
    let mut answer = tx.prepare_cached(
        "INSERT INTO recommend_answers (id, terminal_id, occurred_at, score, member_id, guest_sale)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
    )?;
    for a in &batch.answers {
        answer.execute(params![
            a.id,
            batch.terminal.0,
            a.occurred_at.millis(),
            a.score,
            a.member_id.map(|m| m.0),
            a.guest_sale
        ])?;
    }
    drop((sale, void, answer));
    Ok(PushResponse {
        inserted: tally.inserted,
        duplicates: split.replays,
        members,
        server_seq: *seq,
    })
}

/// Stores a group of pushes in one transaction, each in a savepoint of its own so a refused
/// push leaves the others standing.
fn write_group(
    conn: &mut Connection,
    programs: &ProgramCache,
    pushes: &[(Batch, Timestamp)],
) -> GroupAnswers {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut seq = last_seq(&tx)?;
    let mut answers = Vec::with_capacity(pushes.len());
    for (batch, now) in pushes {
        let mut savepoint = tx.savepoint()?;
        let mut next = seq;
        let answer = push_one(&savepoint, programs, batch, *now, &mut next);
        if answer.is_ok() {
            savepoint.commit()?;
            seq = next;
        } else {
            savepoint.rollback()?;
            savepoint.finish()?;
        }
        answers.push(answer);
    }
    tx.execute(
        "UPDATE server_seq SET last = ?1 WHERE singleton = 1",
        params![seq],
    )?;
    tx.commit()?;
    Ok(answers)
}

/// What a token says, or `Err(row id)` for a live token not yet bound to any terminal.
fn token_state(
    conn: &Connection,
    hash: &str,
    terminal: &TerminalId,
) -> Result<Result<Auth, i64>, DbError> {
    let row: Option<(i64, Option<String>, Option<i64>)> = conn
        .prepare_cached("SELECT id, terminal_id, revoked_at FROM terminals WHERE token_hash = ?1")?
        .query_row(params![hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    Ok(match row {
        None => Ok(Auth::Unknown),
        Some((_, _, Some(_))) => Ok(Auth::Revoked),
        Some((_, Some(bound), None)) if bound == terminal.0 => Ok(Auth::Terminal(terminal.clone())),
        Some((_, Some(bound), None)) => Ok(Auth::BoundElsewhere(bound)),
        Some((id, None, None)) => Err(id),
    })
}

/// Binds a new token to `terminal` unless another token holds that terminal (on the writer, so
/// two first uses cannot both bind).
fn bind_token(conn: &Connection, hash: &str, terminal: &TerminalId) -> Result<Auth, DbError> {
    let id = match token_state(conn, hash, terminal)? {
        Ok(auth) => return Ok(auth),
        Err(id) => id,
    };
    let taken: Option<i64> = conn
        .query_row(
            "SELECT id FROM terminals WHERE terminal_id = ?1",
            params![terminal.0],
            |r| r.get(0),
        )
        .optional()?;
    if taken.is_some() {
        return Ok(Auth::TerminalTaken);
    }
    conn.execute(
        "UPDATE terminals SET terminal_id = ?1 WHERE id = ?2",
        params![terminal.0, id],
    )?;
    Ok(Auth::Terminal(terminal.clone()))
}

/// A new database's first program (the demo program with a fresh member-code key) and its
/// epoch.
fn ensure_first_program(conn: &Connection, now: Timestamp) -> Result<(), DbError> {
    let key: [u8; 32] = rand::random();
    conn.execute(
        "INSERT INTO program (version, toml, code_key, installed_at)
         SELECT 1, ?1, ?2, ?3 WHERE NOT EXISTS (SELECT 1 FROM program)",
        params![
            crate::domain::program::DEMO_PROGRAM_TOML,
            &key[..],
            now.millis()
        ],
    )?;
    conn.execute(
        "INSERT INTO server_meta (singleton, epoch) VALUES (1, ?1) ON CONFLICT DO NOTHING",
        params![new_epoch()],
    )?;
    Ok(())
}

/// Every program version, parsed once per new highest version.
fn program_history(
    conn: &Connection,
    cache: &ProgramCache,
) -> Result<Arc<ProgramHistory>, DbError> {
    let latest: i64 = conn.query_row("SELECT COALESCE(MAX(version), 0) FROM program", [], |r| {
        r.get(0)
    })?;
    if let Some(history) = cache.current(latest) {
        return Ok(history);
    }
    let rows = conn
        .prepare("SELECT version, toml, installed_at FROM program ORDER BY version")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    cache.load(rows)
}

/// The name of the record at `seq`, if there is one.
fn record_at(conn: &Connection, seq: i64) -> Result<Option<String>, DbError> {
    if seq <= 0 {
        return Ok(None);
    }
    let entry: Option<uuid::Uuid> = conn
        .prepare_cached("SELECT id FROM entries WHERE server_seq = ?1")?
        .query_row(params![seq], |r| r.get(0))
        .optional()?;
    if let Some(id) = entry {
        return Ok(Some(entry_record_name(id)));
    }
    let member: Option<(uuid::Uuid, String)> = conn
        .prepare_cached("SELECT member_id, body FROM member_versions WHERE server_seq = ?1")?
        .query_row(params![seq], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    member
        .map(|(id, body)| member_record_name(id, &body))
        .transpose()
}

/// The name of `terminal`'s entry numbered `seq`, if there is one.
fn own_record_at(
    conn: &Connection,
    terminal: &TerminalId,
    seq: i64,
) -> Result<Option<String>, DbError> {
    Ok(conn
        .prepare_cached("SELECT id FROM entries WHERE terminal_id = ?1 AND terminal_seq = ?2")?
        .query_row(params![terminal.0, seq], |r| r.get(0))
        .optional()?
        .map(entry_record_name))
}

/// `terminal`'s stored entries numbered `seqs`: number -> id and body.
fn stored_by_seq(
    conn: &Connection,
    terminal: &TerminalId,
    seqs: &[i64],
) -> Result<HashMap<i64, (EntryId, String)>, DbError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, body FROM entries WHERE terminal_id = ?1 AND terminal_seq = ?2",
    )?;
    let mut stored = HashMap::with_capacity(seqs.len());
    for &seq in seqs {
        let row: Option<(uuid::Uuid, String)> = stmt
            .query_row(params![terminal.0, seq], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((id, body)) = row {
            stored.insert(seq, (EntryId(id), body));
        }
    }
    Ok(stored)
}

/// The stored entries the possibility check needs: reversal targets, stored reversals of
/// them, and whole histories.
fn known_entries(conn: &Connection, wanted: &Needs) -> Result<Vec<Entry>, DbError> {
    let mut bodies: Vec<String> = Vec::new();
    let mut by_id = conn.prepare_cached("SELECT body FROM entries WHERE id = ?1")?;
    let mut reversal = conn.prepare_cached("SELECT body FROM entries WHERE reverses = ?1")?;
    for target in &wanted.targets {
        for stmt in [&mut by_id, &mut reversal] {
            if let Some(body) = stmt.query_row(params![target.0], |r| r.get(0)).optional()? {
                bodies.push(body);
            }
        }
    }
    let mut history = conn.prepare_cached("SELECT body FROM entries WHERE member_id = ?1")?;
    for member in &wanted.histories {
        for body in history.query_map(params![member.0], |r| r.get::<_, String>(0))? {
            bodies.push(body?);
        }
    }
    bodies.iter().map(|b| stored_entry(b)).collect()
}

/// Inserts a push's new entries (in sequence order), each with the next server_seq.
fn insert_entries(
    conn: &Connection,
    new: &[&CheckedEntry],
    seq: &mut i64,
) -> Result<Tally, DbError> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO entries (server_seq, id, member_id, terminal_id, terminal_seq, kind, points,
                              reverses, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING",
    )?;
    let mut tally = Tally::default();
    for checked in new {
        let e = &checked.entry;
        let next = *seq + 1;
        let changed = insert
            .execute(params![
                next,
                e.id.0,
                e.member_id.0,
                e.terminal_id.0,
                e.terminal_seq,
                e.kind.as_str(),
                e.points,
                e.reverses.map(|r| r.0),
                checked.body
            ])
            .map_err(|err| match err {
                // The foreign key to members (checked on every insert anyway) names the case.
                rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    DbError::Refused(PushRefusal::entry(
                        e.id,
                        RULE_UNKNOWN_MEMBER,
                        format!(
                            "entry {}: member {} is unknown to the server (push the member first)",
                            e.id, e.member_id
                        ),
                    ))
                }
                other => refused(
                    other,
                    Some(e.id),
                    RULE_CONFLICT,
                    format!("entry {}: conflicts with a stored entry", e.id),
                ),
            })?;
        if changed == 0 {
            return Err(DbError::Refused(PushRefusal::entry(
                e.id,
                RULE_ID_CONFLICT,
                format!(
                    "entry {} already exists on the server with different content; nothing was stored",
                    e.id
                ),
            )));
        }
        *seq = next;
        tally.inserted(e);
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two processes opening a new server database at the same moment (each open has its
    /// own connections and lock file handle, as another process's would): both open it, one
    /// makes the schema and the other finds it made.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_opens_of_a_new_database_both_succeed() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("server.sqlite3");
        let path = path.to_str().expect("utf-8");
        let now = Timestamp::from_millis(1_780_000_000_000);
        let (first, second) = tokio::join!(SqliteDb::open(path, now), SqliteDb::open(path, now));
        first.expect("the first open");
        second.expect("the second open");
        let conn = Connection::open(path).expect("open");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(version, STEPS.len() as i64);
    }

    #[test]
    fn a_long_log_is_started_again_so_it_stops_growing() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("log.sqlite3");
        let path = path.to_str().expect("utf-8");
        let writer = connect(path).expect("open");
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .expect("pragma");
        writer
            .execute_batch("CREATE TABLE t (x BLOB)")
            .expect("table");
        let insert = "INSERT INTO t VALUES (zeroblob(8000))";
        let checkpointer = connect(path).expect("open");
        // As under ingest: the checkpointer runs while the writer's next transaction is open,
        // so the writer never finds the log wholly copied when it begins, and the log grows
        // (about 150 frames here).
        let log = LogLength::default();
        for _ in 0..50 {
            writer
                .execute_batch(&format!("BEGIN IMMEDIATE; {insert};"))
                .expect("write");
            let frames = checkpoint(&checkpointer).expect("checkpoint");
            log.frames.store(frames, Ordering::Relaxed);
            writer.execute_batch("COMMIT").expect("commit");
        }
        let running = Mutex::new(());
        log.restart_if_long(&writer, &running)
            .expect("under the limit");
        log.restart_at.store(100, Ordering::Relaxed);
        log.restart_if_long(&writer, &running).expect("restart");
        assert_eq!(log.restart_at.load(Ordering::Relaxed), RESTART_FRAMES);
        for _ in 0..5 {
            writer.execute(insert, []).expect("insert");
        }
        let restarted = checkpoint(&writer).expect("checkpoint");
        assert!(restarted < 30, "the log started again: {restarted} frames");
    }
}
