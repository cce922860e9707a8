//! The server on PostgreSQL (tokio-postgres with a deadpool pool), for a chain of shops.
//! Pushes take a transaction-scoped advisory lock, so `server_seq` is handed out in commit
//! order and a pull cursor never skips a record that commits later. Entries go in with one
//! `INSERT ... SELECT FROM UNNEST(...)` per batch.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Transaction};
use uuid::Uuid;

use super::db::{Auth, DbError, Tally, TerminalRow, page};
use super::validate::{Batch, check_reversal};
use crate::domain::{Entry, MemberId, TerminalId, Timestamp};
use crate::sync::protocol::{
    BalanceResponse, ConfigResponse, DoubleSpendList, MemberRecord, PushResponse,
};

const SCHEMA: &str = include_str!("migrations/postgres_001.sql");
/// Serialises pushes (any constant works; it names this lock).
const PUSH_LOCK: i64 = 0x7469_6c6c_7061_7373;

/// The PostgreSQL backend.
pub struct PgDb {
    pool: Pool,
}

fn pg(e: tokio_postgres::Error) -> DbError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
        || e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION)
    {
        return DbError::Refused(format!("conflicts with stored data: {e}"));
    }
    DbError::Unavailable(e.to_string())
}

fn pool_err(e: deadpool_postgres::PoolError) -> DbError {
    DbError::Unavailable(e.to_string())
}

impl PgDb {
    /// Connects, creates the schema if missing and the first program version.
    pub async fn open(url: &str, now: Timestamp) -> Result<Self, DbError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| DbError::Setup(format!("bad PostgreSQL URL: {e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(8)
            .build()
            .map_err(|e| DbError::Setup(e.to_string()))?;
        let mut client = pool.get().await.map_err(pool_err)?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PUSH_LOCK])
            .await
            .map_err(pg)?;
        tx.batch_execute(SCHEMA).await.map_err(pg)?;
        let key: [u8; 32] = rand::random();
        tx.execute(
            "INSERT INTO program (version, toml, code_key, installed_at)
             SELECT 1, $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM program)",
            &[
                &crate::domain::program::DEMO_PROGRAM_TOML,
                &&key[..],
                &now.millis(),
            ],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        drop(client);
        Ok(PgDb { pool })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        self.pool.get().await.map_err(pool_err)
    }

    pub async fn authenticate(
        &self,
        token_hash: &str,
        terminal: &TerminalId,
    ) -> Result<Auth, DbError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id, terminal_id, revoked_at FROM terminals WHERE token_hash = $1",
                &[&token_hash],
            )
            .await
            .map_err(pg)?;
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
                let bound = client
                    .execute(
                        "UPDATE terminals SET terminal_id = $1 WHERE id = $2 AND terminal_id IS NULL
                         AND NOT EXISTS (SELECT 1 FROM terminals WHERE terminal_id = $1)",
                        &[&terminal.0, &id],
                    )
                    .await
                    .map_err(pg)?;
                Ok(if bound == 1 {
                    Auth::Terminal(terminal.clone())
                } else {
                    Auth::TerminalTaken
                })
            }
        }
    }

    pub async fn push(&self, batch: Batch, now: Timestamp) -> Result<PushResponse, DbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PUSH_LOCK])
            .await
            .map_err(pg)?;
        let mut seq: i64 = tx
            .query_one("SELECT last FROM server_seq", &[])
            .await
            .map_err(pg)?
            .get(0);
        let mut members = 0;
        for m in &batch.members {
            if upsert_member(&tx, m.record.clone(), &mut seq).await? {
                members += 1;
            }
        }
        let tally = insert_entries(&tx, &batch, &mut seq).await?;
        if !tally.balances.is_empty() {
            let (ids, deltas): (Vec<Uuid>, Vec<i64>) =
                tally.balances.iter().map(|(m, d)| (m.0, *d)).unzip();
            let rows = tx
                .query(
                    "INSERT INTO balances (member_id, balance)
                     SELECT * FROM UNNEST($1::uuid[], $2::bigint[])
                     ON CONFLICT (member_id) DO UPDATE SET balance = balances.balance + EXCLUDED.balance
                     RETURNING member_id, balance",
                    &[&ids, &deltas],
                )
                .await
                .map_err(pg)?;
            for row in rows {
                let (member, balance): (Uuid, i64) = (row.get(0), row.get(1));
                if balance < 0
                    && let Some(e) = tally.redeemed.get(&MemberId(member))
                {
                    tx.execute(
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
                    .await
                    .map_err(pg)?;
                }
            }
        }
        tx.execute("UPDATE server_seq SET last = $1", &[&seq])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(PushResponse {
            inserted: tally.inserted,
            duplicates: tally.duplicates,
            members,
            server_seq: seq,
        })
    }

    pub async fn pull(
        &self,
        terminal: &TerminalId,
        after: i64,
        limit: usize,
    ) -> Result<String, DbError> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg)?;
        let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
        let members: Vec<(i64, String)> = tx
            .query(
                "SELECT server_seq, body FROM member_versions WHERE server_seq > $1 ORDER BY server_seq LIMIT $2",
                &[&after, &limit_sql],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let entries: Vec<(i64, String)> = tx
            .query(
                "SELECT server_seq, body FROM entries WHERE server_seq > $1 AND terminal_id <> $2
                 ORDER BY server_seq LIMIT $3",
                &[&after, &terminal.0, &limit_sql],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let max_seq: i64 = tx
            .query_one("SELECT last FROM server_seq", &[])
            .await
            .map_err(pg)?
            .get(0);
        tx.commit().await.map_err(pg)?;
        Ok(page(&members, &entries, limit, max_seq.max(after)))
    }

    pub async fn config(&self) -> Result<ConfigResponse, DbError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT version, toml, code_key FROM program ORDER BY version DESC LIMIT 1",
                &[],
            )
            .await
            .map_err(pg)?;
        let key: Vec<u8> = row.get(2);
        Ok(ConfigResponse {
            program_version: row.get(0),
            program_toml: row.get(1),
            code_key: data_encoding::BASE64.encode(&key),
            programs: Vec::new(),
            epoch: String::new(),
            server_seq: 0,
            terminal_seq: 0,
            record_at_cursor: None,
        })
    }

    pub async fn balance(&self, member: MemberId) -> Result<Option<BalanceResponse>, DbError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT COALESCE((SELECT balance FROM balances WHERE member_id = m.id), 0),
                        (SELECT last FROM server_seq)
                 FROM members m WHERE m.id = $1",
                &[&member.0],
            )
            .await
            .map_err(pg)?;
        Ok(row.map(|r| BalanceResponse {
            member_id: member,
            balance: r.get(0),
            server_seq: r.get(1),
        }))
    }

    pub async fn double_spends(&self, limit: usize) -> Result<DoubleSpendList, DbError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT d.entry_id, d.terminal_id, d.occurred_at, d.points, d.balance_after, m.body
                 FROM double_spends d JOIN members m ON m.id = d.member_id
                 ORDER BY d.id DESC LIMIT $1",
                &[&i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(pg)?;
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
        Ok(self
            .client()
            .await?
            .query_one(
                "INSERT INTO terminals (name, token_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
                &[&name, &token_hash, &now.millis()],
            )
            .await
            .map_err(pg)?
            .get(0))
    }

    pub async fn revoke_terminal(&self, id: i64, now: Timestamp) -> Result<bool, DbError> {
        Ok(self
            .client()
            .await?
            .execute(
                "UPDATE terminals SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &[&id, &now.millis()],
            )
            .await
            .map_err(pg)?
            == 1)
    }

    pub async fn terminals(&self) -> Result<Vec<TerminalRow>, DbError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, name, terminal_id, created_at, revoked_at FROM terminals ORDER BY id",
                &[],
            )
            .await
            .map_err(pg)?;
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
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PUSH_LOCK])
            .await
            .map_err(pg)?;
        let row = tx
            .query_one(
                "INSERT INTO program (version, toml, code_key, installed_at)
                 SELECT version + 1, $1, code_key, $2 FROM program ORDER BY version DESC LIMIT 1
                 RETURNING version",
                &[&toml, &now.millis()],
            )
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(row.get(0))
    }

    pub async fn health(&self) -> Result<i64, DbError> {
        Ok(self
            .client()
            .await?
            .query_one("SELECT last FROM server_seq", &[])
            .await
            .map_err(pg)?
            .get(0))
    }
}

async fn upsert_member(
    tx: &Transaction<'_>,
    mut record: MemberRecord,
    seq: &mut i64,
) -> Result<bool, DbError> {
    let id = record.member.id;
    let stored = tx
        .query_opt("SELECT version FROM members WHERE id = $1", &[&id.0])
        .await
        .map_err(pg)?;
    if stored.is_some_and(|r| r.get::<_, i64>(0) >= record.version) {
        return Ok(false);
    }
    let holders = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM members WHERE card = $2 AND id <> $1),
                    EXISTS (SELECT 1 FROM members WHERE phone = $3 AND id <> $1),
                    EXISTS (SELECT 1 FROM members WHERE email = $4 AND id <> $1)",
            &[
                &id.0,
                &record.member.card.as_str(),
                &record.member.phone,
                &record.member.email,
            ],
        )
        .await
        .map_err(pg)?;
    if holders.get::<_, bool>(0) {
        return Err(DbError::Refused(format!(
            "member {id}: card {} already belongs to another member; replace this member's card at the till",
            record.member.card
        )));
    }
    super::strip_taken_contacts(&mut record, holders.get(1), holders.get(2));
    *seq += 1;
    let body = serde_json::to_string(&record).map_err(|e| DbError::Refused(e.to_string()))?;
    tx.execute(
        "INSERT INTO members (id, version, card, phone, email, body)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, card = EXCLUDED.card,
             phone = EXCLUDED.phone, email = EXCLUDED.email, body = EXCLUDED.body",
        &[
            &id.0,
            &record.version,
            &record.member.card.as_str(),
            &record.member.phone,
            &record.member.email,
            &body,
        ],
    )
    .await
    .map_err(pg)?;
    // Every version is appended with its own seq: a member's first version always comes before
    // its entries in a pull, whatever later versions do.
    tx.execute(
        "INSERT INTO member_versions (server_seq, member_id, body) VALUES ($1, $2, $3)",
        &[&*seq, &id.0, &body],
    )
    .await
    .map_err(pg)?;
    Ok(true)
}

async fn insert_entries(
    tx: &Transaction<'_>,
    batch: &Batch,
    seq: &mut i64,
) -> Result<Tally, DbError> {
    let entries: Vec<&Entry> = batch.entries.iter().map(|c| &c.entry).collect();
    if entries.is_empty() {
        return Ok(Tally::default());
    }
    // Every member must be known.
    let member_ids: Vec<Uuid> = entries
        .iter()
        .map(|e| e.member_id.0)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let known: HashSet<Uuid> = tx
        .query("SELECT id FROM members WHERE id = ANY($1)", &[&member_ids])
        .await
        .map_err(pg)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(e) = entries.iter().find(|e| !known.contains(&e.member_id.0)) {
        return Err(DbError::Refused(format!(
            "entry {}: member {} is unknown to the server (push the member first)",
            e.id, e.member_id
        )));
    }
    // Reversals of entries stored earlier must negate them exactly.
    let in_batch: HashSet<Uuid> = entries.iter().map(|e| e.id.0).collect();
    let targets: Vec<Uuid> = entries
        .iter()
        .filter_map(|e| e.reverses.map(|r| r.0))
        .filter(|t| !in_batch.contains(t))
        .collect();
    if !targets.is_empty() {
        let originals: HashMap<Uuid, Entry> = tx
            .query(
                "SELECT id, body FROM entries WHERE id = ANY($1)",
                &[&targets],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|r| {
                let body: &str = r.get(1);
                let id: Uuid = r.get(0);
                serde_json::from_str(body)
                    .map(|e| (id, e))
                    .map_err(|err| DbError::Internal(format!("corrupt stored entry {id}: {err}")))
            })
            .collect::<Result<_, _>>()?;
        for e in &entries {
            let Some(target) = e.reverses.filter(|t| !in_batch.contains(&t.0)) else {
                continue;
            };
            let original = originals.get(&target.0).ok_or_else(|| {
                DbError::Refused(format!(
                    "entry {}: reverses entry {target}, which the server does not have",
                    e.id
                ))
            })?;
            check_reversal(e, original).map_err(DbError::Refused)?;
        }
    }
    let base = *seq;
    let n = entries.len();
    let ords: Vec<i64> = (1..=i64::try_from(n).unwrap_or(i64::MAX)).collect();
    let ids: Vec<Uuid> = entries.iter().map(|e| e.id.0).collect();
    let members: Vec<Uuid> = entries.iter().map(|e| e.member_id.0).collect();
    let terminals: Vec<&str> = entries.iter().map(|e| e.terminal_id.0.as_str()).collect();
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    let points: Vec<i64> = entries.iter().map(|e| e.points).collect();
    let reverses: Vec<Option<Uuid>> = entries.iter().map(|e| e.reverses.map(|r| r.0)).collect();
    let bodies: Vec<&str> = batch.entries.iter().map(|c| c.body.as_str()).collect();
    let rows = tx
        .query(
            "INSERT INTO entries (server_seq, id, member_id, terminal_id, kind, points, reverses, body)
             SELECT $1 + t.ord, t.id, t.member_id, t.terminal_id, t.kind, t.points, t.reverses, t.body
             FROM UNNEST($2::bigint[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::bigint[],
                         $8::uuid[], $9::text[])
                  AS t(ord, id, member_id, terminal_id, kind, points, reverses, body)
             ORDER BY t.ord
             ON CONFLICT (id) DO NOTHING
             RETURNING id, server_seq",
            &[&base, &ords, &ids, &members, &terminals, &kinds, &points, &reverses, &bodies],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                DbError::Refused("a reversal in this batch reverses an entry that was already reversed".into())
            } else {
                pg(e)
            }
        })?;
    let inserted_ids: HashSet<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    if let Some(max) = rows.iter().map(|r| r.get::<_, i64>(1)).max() {
        *seq = max.max(base);
    }
    // Ids already present must hold identical content (a retry), or the whole batch is refused.
    if inserted_ids.len() < n {
        let (dup_ids, dup_bodies): (Vec<Uuid>, Vec<&str>) = ids
            .iter()
            .zip(&bodies)
            .filter(|(id, _)| !inserted_ids.contains(id))
            .map(|(id, body)| (*id, *body))
            .unzip();
        let conflict = tx
            .query_opt(
                "SELECT t.id FROM UNNEST($1::uuid[], $2::text[]) AS t(id, body)
                 JOIN entries e ON e.id = t.id WHERE e.body <> t.body LIMIT 1",
                &[&dup_ids, &dup_bodies],
            )
            .await
            .map_err(pg)?;
        if let Some(row) = conflict {
            let id: Uuid = row.get(0);
            return Err(DbError::Refused(format!(
                "entry {id} already exists on the server with different content; nothing was stored"
            )));
        }
    }
    let mut tally = Tally {
        duplicates: n - inserted_ids.len(),
        ..Tally::default()
    };
    for e in entries.iter().filter(|e| inserted_ids.contains(&e.id.0)) {
        tally.inserted(e);
    }
    Ok(tally)
}
