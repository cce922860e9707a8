//! The server's storage, on SQLite (one shop) or PostgreSQL (a chain), behind one interface.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::audit::AuditItem;
use super::postgres::PgDb;
use super::report_records::{Pace, Refreshed};
use super::sqlite::SqliteDb;
use super::validate::{Batch, PushRefusal};
use crate::domain::insights::{ByMember, MemberFacts};
use crate::domain::possible::{ProgramHistory, ProgramVersion};
use crate::domain::{Entry, EntryKind, MemberId, MemberRecord, Program, TerminalId, Timestamp};
use crate::sync::protocol::{
    BalanceResponse, CardLookup, ConfigQuery, ConfigResponse, DoubleSpendList, MAX_HISTORY,
    MAX_PUSH_ENTRIES, PushResponse, RecordKind, SeedResponse, record_name,
};

/// Why a storage call failed; the HTTP layer maps each to a status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    /// The request's content cannot be stored (422): nothing was written.
    #[error(transparent)]
    Refused(PushRefusal),
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

    /// Stores a checked batch after the checks that need stored data (the till's sequence,
    /// the possibility check, member changes): all of it or nothing.
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

    /// The asking till's own entries numbered after `after` (and the members they need), as
    /// the JSON of a `PullResponse` whose `next` is a terminal_seq.
    pub async fn own(
        &self,
        terminal: &TerminalId,
        after: i64,
        limit: usize,
    ) -> Result<String, DbError> {
        match self {
            Db::Sqlite(db) => db.own(terminal, after, limit).await,
            Db::Postgres(db) => db.own(terminal, after, limit).await,
        }
    }

    /// The program in force, the versions after `query.known`, and where the server stands
    /// (for the asking till, if any).
    pub async fn config(
        &self,
        terminal: Option<&TerminalId>,
        query: ConfigQuery,
    ) -> Result<ConfigResponse, DbError> {
        match self {
            Db::Sqlite(db) => db.config(terminal, query).await,
            Db::Postgres(db) => db.config(terminal, query).await,
        }
    }

    /// Records a refused push, outside the ledger (in its own transaction).
    pub async fn record_refusal(
        &self,
        at: Timestamp,
        terminal: &TerminalId,
        refusal: &PushRefusal,
    ) -> Result<(), DbError> {
        match self {
            Db::Sqlite(db) => db.record_refusal(at, terminal, refusal).await,
            Db::Postgres(db) => db.record_refusal(at, terminal, refusal).await,
        }
    }

    /// Refusals, flags and double spends the server learned of since `since`, unsorted.
    pub async fn audit(&self, since: Timestamp) -> Result<Vec<AuditItem>, DbError> {
        match self {
            Db::Sqlite(db) => db.audit(since).await,
            Db::Postgres(db) => db.audit(since).await,
        }
    }

    /// A member's live balance, `None` for an unknown member.
    pub async fn balance(&self, member: MemberId) -> Result<Option<BalanceResponse>, DbError> {
        match self {
            Db::Sqlite(db) => db.balance(member).await,
            Db::Postgres(db) => db.balance(member).await,
        }
    }

    /// The member whose card in use `card` is, with their live balance ([`Db::balance`]).
    pub async fn card_lookup(&self, card: &str) -> Result<CardLookup, DbError> {
        let not_found = CardLookup {
            member: None,
            balance: 0,
        };
        let Some(id) = self.member_by_card(card.to_owned()).await? else {
            return Ok(not_found);
        };
        let body = match self {
            Db::Sqlite(db) => db.member_body(id).await?,
            Db::Postgres(db) => db.member_body(id).await?,
        };
        let (Some(body), Some(balance)) = (body, self.balance(id).await?) else {
            return Ok(not_found);
        };
        Ok(CardLookup {
            member: Some(super::member_push::stored_record(id, &body)?),
            balance: balance.balance,
        })
    }

    /// The JSON of the member's `MemberHistory` for the till `terminal` (its own entries left
    /// out, as a pull leaves them), `None` for an unknown member.
    pub async fn member_history(
        &self,
        member: MemberId,
        terminal: &TerminalId,
    ) -> Result<Option<String>, DbError> {
        let one_more = MAX_HISTORY + 1;
        let found = match self {
            Db::Sqlite(db) => db.member_history(member, terminal, one_more).await?,
            Db::Postgres(db) => db.member_history(member, terminal, one_more).await?,
        };
        let Some((body, entries)) = found else {
            return Ok(None);
        };
        let record = serde_json::to_string(&super::member_push::stored_record(member, &body)?)
            .map_err(|e| DbError::Internal(format!("member record {member}: {e}")))?;
        Ok(Some(render_history(&record, &entries)))
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

    /// Gives live terminal number `id` a new token (by its hash); the old one stops working at
    /// once. The till keeps its id and numbers, so nothing it has not pushed is stranded.
    /// False if there is no live terminal `id`.
    pub async fn rotate_terminal(&self, id: i64, token_hash: &str) -> Result<bool, DbError> {
        match self {
            Db::Sqlite(db) => db.rotate_terminal(id, token_hash).await,
            Db::Postgres(db) => db.rotate_terminal(id, token_hash).await,
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

    /// A consistent copy of a SQLite database at `path`, with an epoch of its own so that tills
    /// notice when it is put back. PostgreSQL is backed up with its own tools (pg_dump).
    pub async fn backup(&self, path: &str) -> Result<(), DbError> {
        match self {
            Db::Sqlite(db) => db.backup(path).await,
            Db::Postgres(_) => Err(DbError::Setup(
                "back up PostgreSQL with pg_dump (e.g. pg_dump -Fc -f tillpass.dump DB); after restoring one, run `tillpass-server restored`".into(),
            )),
        }
    }

    /// Gives the database a new epoch: run after putting back a backup made by other means, so
    /// every till pulls again and pushes what the copy lacks.
    pub async fn renew_epoch(&self) -> Result<String, DbError> {
        match self {
            Db::Sqlite(db) => db.renew_epoch().await,
            Db::Postgres(db) => db.renew_epoch().await,
        }
    }

    /// After a member's data was erased: leaves no copy in the database's files (SQLite: the
    /// write-ahead log emptied, deleted bytes being zeroed; PostgreSQL: the two member tables
    /// rewritten, so no dead row keeps the old versions).
    pub async fn scrub_erased(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite(db) => db.scrub_erased().await,
            Db::Postgres(db) => db.scrub_erased().await,
        }
    }

    /// Takes `key` as the member-code key 0 while the server holds no members, entries or
    /// rotated keys (`None` when it does, and nothing changes).
    pub async fn seed_key(&self, key: [u8; 32]) -> Result<Option<SeedResponse>, DbError> {
        match self {
            Db::Sqlite(db) => db.seed_key(key).await,
            Db::Postgres(db) => db.seed_key(key).await,
        }
    }

    /// Adds a member-code key (a fresh master); tills adopt it at their next sync and sign new
    /// codes with it. Returns its id.
    pub async fn rotate_key(&self, now: Timestamp) -> Result<u32, DbError> {
        match self {
            Db::Sqlite(db) => db.rotate_key(now).await,
            Db::Postgres(db) => db.rotate_key(now).await,
        }
    }

    /// Retires member-code key `id`: its codes are refused on every till after its next sync.
    pub async fn retire_key(&self, id: u32, now: Timestamp) -> Result<(), DbError> {
        match self {
            Db::Sqlite(db) => db.retire_key(id, now).await,
            Db::Postgres(db) => db.retire_key(id, now).await,
        }
    }

    /// The program's measures for `[from, to)` over the whole chain (`domain::insights`): every
    /// member and entry the server holds, read member by member, judged by the current
    /// program's settings.
    pub async fn report(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<crate::domain::insights::Report, DbError> {
        use crate::domain::insights::{Settings, report};
        let (program, facts) = match self {
            Db::Sqlite(db) => db.report_facts(from, to).await?,
            Db::Postgres(db) => db.report_facts(from, to).await?,
        };
        Ok(report(&facts, &Settings::of(&program)))
    }

    /// Brings the chain report's records and totals up to date with every entry and member
    /// record stored, at `pace`; says where it left them.
    pub(super) async fn report_current(&self, pace: Pace<'_>) -> Result<Refreshed, DbError> {
        let (_, refreshed) = match self {
            Db::Sqlite(db) => db.report_current(pace).await?,
            Db::Postgres(db) => db.report_current(pace).await?,
        };
        Ok(refreshed)
    }

    /// Checks every member's balance and the chain report's records and totals against the
    /// entries, in one snapshot (`tillpass-server verify`).
    pub async fn verify(&self) -> Result<super::verify::Verified, DbError> {
        match self {
            Db::Sqlite(db) => db.verify().await,
            Db::Postgres(db) => db.verify().await,
        }
    }

    /// For a partner file: the member holding each card in use, and each member with partner
    /// lines of `terminal`'s own, with their partner lines and reversals; and the next sequence
    /// number of `terminal`'s entries.
    pub async fn partner_view(
        &self,
        cards: Vec<String>,
        terminal: &TerminalId,
    ) -> Result<super::partners::PartnerView, DbError> {
        match self {
            Db::Sqlite(db) => db.partner_view(cards, terminal.clone()).await,
            Db::Postgres(db) => db.partner_view(cards, terminal).await,
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

/// A stored member record as the chain report sees it.
pub(super) fn report_member(body: &str) -> Result<MemberFacts, DbError> {
    let record: MemberRecord = serde_json::from_str(body)
        .map_err(|e| DbError::Internal(format!("a stored member record does not parse: {e}")))?;
    Ok(MemberFacts {
        id: record.member.id,
        enrolled_at: record.member.created_at,
        marketing_consent: record.member.marketing_consent,
    })
}

/// The program in force, for the chain report.
pub(super) fn report_program(toml: &str) -> Result<Program, DbError> {
    Program::from_toml(toml)
        .map_err(|e| DbError::Internal(format!("the stored program does not parse: {e}")))
}

/// Counts a stored entry (in member order) into the chain report.
pub(super) fn report_entry(by_member: &mut ByMember<'_>, body: &str) -> Result<(), DbError> {
    by_member
        .push(stored_entry(body)?)
        .map_err(|e| DbError::Internal(e.to_string()))
}

/// Most pushes one write transaction takes.
const GROUP_PUSHES: usize = 64;
/// A group takes no more pushes once it holds this many entries.
const GROUP_ENTRIES: usize = MAX_PUSH_ENTRIES;

/// A push waiting for the writer, and where its answer goes.
struct PushJob {
    batch: Batch,
    now: Timestamp,
    reply: oneshot::Sender<Result<PushResponse, DbError>>,
}

/// What a group of pushes came to: each push's answer in order, or why the group as a whole
/// was not stored.
pub(super) type GroupAnswers = Result<Vec<Result<PushResponse, DbError>>, DbError>;

/// Pushes wait here for the one writer, which takes every push waiting when it is free into
/// one transaction (group commit): pushes are serialised anyway, and one commit (one fsync)
/// for all of them is what lets the writer keep up with many tills. Each push in a group is
/// judged after the ones before it and refused alone (a savepoint); the answers go out once
/// the group has committed, or all carry the error if it did not.
pub(super) struct PushQueue(mpsc::UnboundedSender<PushJob>);

impl PushQueue {
    /// Runs `write` on each group (its pushes in arrival order), on a task of its own, until
    /// the queue is dropped.
    pub fn start<F, Fut>(mut write: F) -> Self
    where
        F: FnMut(Vec<(Batch, Timestamp)>) -> Fut + Send + 'static,
        Fut: Future<Output = GroupAnswers> + Send + 'static,
    {
        let (queue, mut waiting) = mpsc::unbounded_channel::<PushJob>();
        tokio::spawn(async move {
            while let Some(first) = waiting.recv().await {
                let mut entries = first.batch.entries.len();
                let mut group = vec![first];
                while group.len() < GROUP_PUSHES && entries < GROUP_ENTRIES {
                    match waiting.try_recv() {
                        Ok(job) => {
                            entries += job.batch.entries.len();
                            group.push(job);
                        }
                        Err(_) => break,
                    }
                }
                let (pushes, replies): (Vec<_>, Vec<_>) = group
                    .into_iter()
                    .map(|j| ((j.batch, j.now), j.reply))
                    .unzip();
                // On a task of its own, so a group that panics fails alone, not the writer.
                let answers = tokio::spawn(write(pushes)).await.unwrap_or_else(|e| {
                    Err(DbError::Internal(format!("a push group failed: {e}")))
                });
                // A push whose request was given up has nobody to answer.
                match answers {
                    Ok(answers) => {
                        for (reply, answer) in replies.into_iter().zip(answers) {
                            let _ = reply.send(answer);
                        }
                    }
                    Err(failed) => {
                        for reply in replies {
                            let _ = reply.send(Err(failed.clone()));
                        }
                    }
                }
            }
        });
        PushQueue(queue)
    }

    /// Queues a push and waits for its answer.
    pub async fn push(&self, batch: Batch, now: Timestamp) -> Result<PushResponse, DbError> {
        let (reply, answer) = oneshot::channel();
        self.0
            .send(PushJob { batch, now, reply })
            .map_err(|_| DbError::Unavailable("the writer has stopped".to_owned()))?;
        answer
            .await
            .map_err(|_| DbError::Internal("the writer dropped a push".to_owned()))?
    }
}

/// What inserting a batch's new entries did, for double-spend detection.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub inserted: usize,
    /// Each member's last redemption (or donation) inserted.
    pub redeemed: HashMap<MemberId, Entry>,
}

impl Tally {
    /// Counts an entry stored now.
    pub fn inserted(&mut self, e: &Entry) {
        self.inserted += 1;
        if matches!(e.kind, EntryKind::Redeem | EntryKind::Donation) {
            self.redeemed.insert(e.member_id, e.clone());
        }
    }
}

/// The parsed program history, reloaded when the highest stored version changes (another
/// process may run `tillpass-server program set` on the same database).
#[derive(Debug, Default)]
pub(super) struct ProgramCache(Mutex<Arc<ProgramHistory>>);

impl ProgramCache {
    /// The cached history, if its highest version is `latest`.
    pub fn current(&self, latest: i64) -> Option<Arc<ProgramHistory>> {
        let cached = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (cached.latest_version() == latest).then(|| Arc::clone(&cached))
    }

    /// Parses every stored version (version, TOML, installed_at) and caches them.
    pub fn load(&self, rows: Vec<(i64, String, i64)>) -> Result<Arc<ProgramHistory>, DbError> {
        let versions = rows
            .into_iter()
            .map(|(version, toml, installed_at)| {
                let program = Program::from_toml(&toml).map_err(|e| {
                    DbError::Internal(format!("stored program version {version}: {e}"))
                })?;
                Ok(ProgramVersion {
                    version,
                    installed_at: Timestamp::from_millis(installed_at),
                    program,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        let history = Arc::new(ProgramHistory::new(versions));
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::clone(&history);
        Ok(history)
    }
}

/// A new database's epoch: 128 random bits, hex.
pub(super) fn new_epoch() -> String {
    data_encoding::HEXLOWER.encode(&rand::random::<[u8; 16]>())
}

/// The record name of a member version row (its member id and the version in its body).
pub(super) fn member_record_name(member: uuid::Uuid, body: &str) -> Result<String, DbError> {
    #[derive(serde::Deserialize)]
    struct Versioned {
        version: i64,
    }
    let v: Versioned = serde_json::from_str(body)
        .map_err(|e| DbError::Internal(format!("corrupt stored member record {member}: {e}")))?;
    Ok(record_name(RecordKind::Member, member, v.version))
}

/// The record name of an entry.
pub(super) fn entry_record_name(id: uuid::Uuid) -> String {
    record_name(RecordKind::Entry, id, 0)
}

/// Parses a stored entry body.
pub(super) fn stored_entry(body: &str) -> Result<Entry, DbError> {
    serde_json::from_str(body)
        .map_err(|e| DbError::Internal(format!("corrupt stored entry: {e}; body {body:.80}")))
}

/// Appends `items` (already JSON) as a JSON array to `out`.
fn json_array<'a>(out: &mut String, items: impl Iterator<Item = &'a str>) {
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push(']');
}

/// Bytes of a page besides its records (field names, cursor, record name).
const PAGE_OVERHEAD: usize = 256;

/// Where a pull page ends: how many member and entry rows it takes, its cursor, and whether
/// more records wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cut {
    pub members: usize,
    pub entries: usize,
    pub next: i64,
    pub more: bool,
}

/// Merges member and entry rows (each in seq order) into one page of at most `limit` records
/// and `max_bytes` of JSON (a page stops early rather than exceed it, but always takes one
/// record). `max_seq` is the cursor when the page reaches the end.
pub(super) fn cut(
    members: &[(i64, String)],
    entries: &[(i64, String)],
    limit: usize,
    max_bytes: usize,
    max_seq: i64,
) -> Cut {
    let (mut m, mut e) = (0, 0);
    let mut last = None;
    let mut bytes = PAGE_OVERHEAD;
    let mut more = false;
    while m + e < limit && (m < members.len() || e < entries.len()) {
        let take_member = match (members.get(m), entries.get(e)) {
            (Some(a), Some(b)) => a.0 < b.0,
            (Some(_), None) => true,
            _ => false,
        };
        let (seq, body) = if take_member {
            &members[m]
        } else {
            &entries[e]
        };
        if last.is_some() && bytes + body.len() + 1 > max_bytes {
            more = true;
            break;
        }
        bytes += body.len() + 1;
        last = Some(*seq);
        if take_member {
            m += 1;
        } else {
            e += 1;
        }
    }
    let more = more || m + e >= limit;
    let next = match (more, last) {
        (true, Some(seq)) => seq,
        _ => max_seq,
    };
    Cut {
        members: m,
        entries: e,
        next,
        more,
    }
}

/// The JSON of a `PullResponse` from stored bodies, spliced as they are.
pub(super) fn render<'a>(
    members: &[&'a str],
    entries: &[&'a str],
    next: i64,
    more: bool,
    next_record: Option<&str>,
) -> String {
    let size: usize = members.iter().chain(entries).map(|b| b.len() + 1).sum();
    let mut out = String::with_capacity(size + PAGE_OVERHEAD);
    out.push_str("{\"members\":");
    json_array(&mut out, members.iter().copied());
    out.push_str(",\"entries\":");
    json_array(&mut out, entries.iter().copied());
    let record = serde_json::to_string(&next_record).unwrap_or_else(|_| "null".to_owned());
    out.push_str(&format!(
        ",\"next\":{next},\"more\":{more},\"next_record\":{record}}}"
    ));
    out
}

/// Renders a pull page for `cut`.
pub(super) fn render_cut(
    members: &[(i64, String)],
    entries: &[(i64, String)],
    cut: Cut,
    next_record: Option<&str>,
) -> String {
    let m: Vec<&str> = members[..cut.members]
        .iter()
        .map(|r| r.1.as_str())
        .collect();
    let e: Vec<&str> = entries[..cut.entries]
        .iter()
        .map(|r| r.1.as_str())
        .collect();
    render(&m, &e, cut.next, cut.more, next_record)
}

/// The JSON of a `MemberHistory` from the record's JSON and stored entry bodies (spliced as
/// they are): none of the entries, and `complete` false, when there are more than
/// [`MAX_HISTORY`].
fn render_history(record: &str, entries: &[String]) -> String {
    let complete = entries.len() <= MAX_HISTORY;
    let served = if complete { entries } else { &[] };
    let size: usize = served.iter().map(|b| b.len() + 1).sum();
    let mut out = String::with_capacity(record.len() + size + PAGE_OVERHEAD);
    out.push_str("{\"member\":");
    out.push_str(record);
    out.push_str(",\"entries\":");
    json_array(&mut out, served.iter().map(String::as_str));
    out.push_str(&format!(",\"complete\":{complete}}}"));
    out
}

/// A `code_keys` row: id, master (none for key 0), retired.
pub(super) type KeyRow = (u32, Option<Vec<u8>>, bool);

/// The live member-code keys: those added since key 0, derived for member codes, oldest first;
/// the current key (the newest live one); and whether key 0 is retired.
pub(super) struct LiveKeys {
    pub keys: Vec<(u32, crate::token::code::CodeKey)>,
    pub current: u32,
    pub key0_retired: bool,
}

/// The [`LiveKeys`] of the stored key rows.
pub(super) fn live_keys(rows: &[KeyRow]) -> Result<LiveKeys, DbError> {
    use crate::token::code::{CodeKey, MEMBER_CODE_PURPOSE};
    let mut keys = Vec::new();
    for (id, master, retired) in rows {
        if *id == 0 || *retired {
            continue;
        }
        let master: [u8; 32] = master
            .clone()
            .and_then(|m| m.try_into().ok())
            .ok_or_else(|| DbError::Internal(format!("member-code key {id} has no master")))?;
        keys.push((*id, CodeKey::from_bytes(master).derive(MEMBER_CODE_PURPOSE)));
    }
    keys.sort_by_key(|(id, _)| *id);
    let key0_retired = rows.iter().any(|(id, _, retired)| *id == 0 && *retired);
    let current = keys.last().map_or(0, |(id, _)| *id);
    Ok(LiveKeys {
        keys,
        current,
        key0_retired,
    })
}

/// What config tells tills of the member-code keys: [`live_keys`], each key in base64.
pub(super) fn key_fields(
    rows: &[KeyRow],
) -> Result<(Vec<crate::sync::protocol::CodeKeyBody>, u32, bool), DbError> {
    let LiveKeys {
        keys,
        current,
        key0_retired,
    } = live_keys(rows)?;
    let keys = keys
        .into_iter()
        .map(|(id, key)| crate::sync::protocol::CodeKeyBody {
            id,
            key: data_encoding::BASE64.encode(key.as_bytes()),
        })
        .collect();
    Ok((keys, current, key0_retired))
}

/// Whether key `id` may be retired: it must exist and be live, and one live key must remain.
pub(super) fn retirable(rows: &[KeyRow], id: u32) -> Result<(), DbError> {
    let live = |k: u32| {
        if k == 0 {
            !rows.iter().any(|(i, _, r)| *i == 0 && *r)
        } else {
            rows.iter().any(|(i, _, r)| *i == k && !*r)
        }
    };
    if !live(id) {
        return Err(DbError::Setup(format!(
            "there is no live member-code key {id} (see `key list`)"
        )));
    }
    let others = std::iter::once(0)
        .chain(rows.iter().map(|(i, _, _)| *i))
        .filter(|&k| k != id && live(k))
        .count();
    if others == 0 {
        return Err(DbError::Setup(format!(
            "key {id} is the only live member-code key; run `key rotate` first"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::protocol::PullResponse;

    #[test]
    fn pages_merge_in_seq_order_and_stop_at_the_limit() {
        let members = vec![(2, "\"m2\"".to_owned())];
        let entries = vec![(1, "\"e1\"".to_owned()), (3, "\"e3\"".to_owned())];
        let two = cut(&members, &entries, 2, usize::MAX, 9);
        assert_eq!(
            two,
            Cut {
                members: 1,
                entries: 1,
                next: 2,
                more: true
            }
        );
        assert_eq!(
            render_cut(&members, &entries, two, Some("member:x:1")),
            r#"{"members":["m2"],"entries":["e1"],"next":2,"more":true,"next_record":"member:x:1"}"#
        );
        let all = cut(&members, &entries, 5, usize::MAX, 9);
        assert_eq!(
            render_cut(&members, &entries, all, None),
            r#"{"members":["m2"],"entries":["e1","e3"],"next":9,"more":false,"next_record":null}"#
        );
    }

    #[test]
    fn a_page_stops_before_its_byte_limit_but_takes_one_record() {
        let big = |seq: i64| (seq, format!("\"{}\"", "x".repeat(1_000)));
        let entries: Vec<(i64, String)> = (1..=10).map(big).collect();
        let page = cut(&[], &entries, 20, PAGE_OVERHEAD + 3 * 1_003 + 10, 10);
        assert_eq!((page.entries, page.next, page.more), (3, 3, true));
        let json = render_cut(&[], &entries, page, Some("entry:e"));
        assert!(
            json.len() <= PAGE_OVERHEAD + 3 * 1_003 + 10,
            "{}",
            json.len()
        );
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(parsed["entries"].as_array().map(Vec::len), Some(3));
        let one = cut(&[], &entries, 20, 10, 10);
        assert_eq!((one.entries, one.next, one.more), (1, 1, true));
        let _: PullResponse = serde_json::from_str(&render(&[], &[], 0, false, None))
            .expect("an empty page is a PullResponse");
    }

    #[test]
    fn a_history_is_served_whole_or_not_at_all() {
        use crate::domain::summary::tests::entry;
        use crate::domain::{CardNumber, Member};
        use crate::sync::protocol::MemberHistory;
        let record = MemberRecord {
            member: Member {
                id: MemberId(uuid::Uuid::from_u128(7)),
                card: CardNumber::from_payload(42),
                name: "Ada".into(),
                phone: None,
                email: None,
                birthday: None,
                marketing_consent: false,
                created_at: Timestamp::from_millis(1),
            },
            version: 1,
            retired_cards: Vec::new(),
            erased_at: None,
            referred_by: None,
        };
        let json = serde_json::to_string(&record).expect("json");
        let entries: Vec<Entry> = (0..3)
            .map(|i| entry(EntryKind::Earn, 10 + i, Some(100), i))
            .collect();
        let bodies = |entries: &[Entry]| -> Vec<String> {
            entries
                .iter()
                .map(|e| serde_json::to_string(e).expect("json"))
                .collect()
        };
        let served: MemberHistory =
            serde_json::from_str(&render_history(&json, &bodies(&entries))).expect("a history");
        assert_eq!(
            served,
            MemberHistory {
                member: record.clone(),
                entries: entries.clone(),
                complete: true,
            }
        );
        let long = vec![entries[0].clone(); MAX_HISTORY + 1];
        let served: MemberHistory =
            serde_json::from_str(&render_history(&json, &bodies(&long))).expect("a history");
        assert_eq!((served.entries.len(), served.complete), (0, false));
        let at_most = &long[..MAX_HISTORY];
        let served: MemberHistory =
            serde_json::from_str(&render_history(&json, &bodies(at_most))).expect("a history");
        assert_eq!((served.entries.len(), served.complete), (MAX_HISTORY, true));
    }
}
