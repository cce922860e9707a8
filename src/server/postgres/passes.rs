//! The pass service's tables on PostgreSQL (`postgres_005.sql`). Its writes use the quick
//! connections, never the push writer, so they do not queue behind ingest.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{PgDb, exec, fetch_all, fetch_one, fetch_opt, get, key_rows, pg, snapshot};
use crate::domain::{MemberId, Timestamp};
use crate::server::db::DbError;
use crate::server::passes::records::{
    Channel, PassChange, PassRow, PassSource, QueuedPush, Settled, Touched,
};

const PASS_COLUMNS: &str = "serial, member_id, updated_at, shown, voided";

fn pass_row(r: &Row) -> PassRow {
    PassRow {
        serial: r.get(0),
        member_id: MemberId(r.get(1)),
        updated_at: r.get(2),
        shown: r.get(3),
        voided: r.get(4),
    }
}

/// Queues a push due now, or folds it into the pending one for the same pass and device (which
/// keeps its time, so a push backing off from a failing service is not hurried).
async fn enqueue<C: GenericClient>(
    c: &C,
    channel: Channel,
    serial: &str,
    target: &str,
    now: Timestamp,
) -> Result<(), DbError> {
    exec(
        c,
        "INSERT INTO pass_pushes (channel, serial, target, queued_at, due_at)
         VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (channel, serial, target)
         DO UPDATE SET generation = pass_pushes.generation + 1",
        &[&channel.as_str(), &serial, &target, &now.millis()],
    )
    .await?;
    Ok(())
}

impl PgDb {
    /// What `member`'s passes are made from; `None` for an unknown member.
    pub async fn pass_source(&self, member: MemberId) -> Result<Option<PassSource>, DbError> {
        let client = get(&self.quick).await?;
        let Some(record) = fetch_opt(
            &client,
            "SELECT body FROM members WHERE id = $1",
            &[&member.0],
        )
        .await?
        else {
            return Ok(None);
        };
        let entries = fetch_all(
            &client,
            "SELECT body FROM entries WHERE member_id = $1",
            &[&member.0],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        let program = fetch_one(
            &client,
            "SELECT toml, code_key FROM program ORDER BY version DESC LIMIT 1",
            &[],
        )
        .await?;
        let keys = key_rows(&client).await?;
        Ok(Some(PassSource {
            record: record.get(0),
            entries,
            program: program.get(0),
            code_key: program.get(1),
            keys,
        }))
    }

    /// The member whose card in use is `card`.
    pub async fn member_by_card(&self, card: String) -> Result<Option<MemberId>, DbError> {
        Ok(fetch_opt(
            &get(&self.quick).await?,
            "SELECT id FROM members WHERE card = $1",
            &[&card],
        )
        .await?
        .map(|r| MemberId(r.get(0))))
    }

    /// Stores a new pass link for `member` under the hash of its token.
    pub async fn pass_link_add(
        &self,
        token_hash: String,
        member: MemberId,
        now: Timestamp,
    ) -> Result<(), DbError> {
        exec(
            &get(&self.quick).await?,
            "INSERT INTO pass_links (token_hash, member_id, created_at) VALUES ($1, $2, $3)",
            &[&token_hash, &member.0, &now.millis()],
        )
        .await?;
        Ok(())
    }

    /// The member a live (unrevoked) link token hash leads to.
    pub async fn pass_link_member(&self, token_hash: String) -> Result<Option<MemberId>, DbError> {
        Ok(fetch_opt(
            &get(&self.quick).await?,
            "SELECT member_id FROM pass_links WHERE token_hash = $1 AND revoked_at IS NULL",
            &[&token_hash],
        )
        .await?
        .map(|r| MemberId(r.get(0))))
    }

    /// Revokes every live link of `member`; how many there were.
    pub async fn pass_links_revoke(
        &self,
        member: MemberId,
        now: Timestamp,
    ) -> Result<usize, DbError> {
        let n = exec(
            &get(&self.quick).await?,
            "UPDATE pass_links SET revoked_at = $2 WHERE member_id = $1 AND revoked_at IS NULL",
            &[&member.0, &now.millis()],
        )
        .await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Records the pass `serial` of `member` if it is new (with the fingerprint of what it shows
    /// and, when Google is on, its object queued for insertion); the stored pass either way.
    pub async fn pass_issue(
        &self,
        serial: String,
        member: MemberId,
        shown: String,
        google: bool,
        now: Timestamp,
    ) -> Result<PassRow, DbError> {
        let mut client = get(&self.quick).await?;
        let tx = client.transaction().await.map_err(pg)?;
        let inserted = exec(
            &tx,
            "INSERT INTO passes (serial, member_id, updated_at, shown) VALUES ($1, $2, $3, $4)
             ON CONFLICT (serial) DO NOTHING",
            &[&serial, &member.0, &now.millis(), &shown],
        )
        .await?;
        if inserted > 0 && google {
            enqueue(&tx, Channel::Google, &serial, "", now).await?;
        }
        let row = fetch_one(
            &tx,
            &format!("SELECT {PASS_COLUMNS} FROM passes WHERE serial = $1"),
            &[&serial],
        )
        .await?;
        tx.commit().await.map_err(pg)?;
        Ok(pass_row(&row))
    }

    /// The pass with serial number `serial`.
    pub async fn pass_row(&self, serial: String) -> Result<Option<PassRow>, DbError> {
        Ok(fetch_opt(
            &get(&self.quick).await?,
            &format!("SELECT {PASS_COLUMNS} FROM passes WHERE serial = $1"),
            &[&serial],
        )
        .await?
        .as_ref()
        .map(pass_row))
    }

    /// Registers a device for a pass's updates (or renews its push token); true if new.
    pub async fn pass_register(
        &self,
        device: String,
        pass_type: String,
        serial: String,
        push_token: String,
        now: Timestamp,
    ) -> Result<bool, DbError> {
        let row = fetch_one(
            &get(&self.quick).await?,
            "INSERT INTO pass_registrations (device_id, pass_type, serial, push_token, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (device_id, pass_type, serial)
             DO UPDATE SET push_token = excluded.push_token
             RETURNING (xmax = 0)",
            &[&device, &pass_type, &serial, &push_token, &now.millis()],
        )
        .await?;
        Ok(row.get(0))
    }

    /// Forgets a device's registration for a pass; false if there was none.
    pub async fn pass_unregister(
        &self,
        device: String,
        pass_type: String,
        serial: String,
    ) -> Result<bool, DbError> {
        Ok(exec(
            &get(&self.quick).await?,
            "DELETE FROM pass_registrations
             WHERE device_id = $1 AND pass_type = $2 AND serial = $3",
            &[&device, &pass_type, &serial],
        )
        .await?
            > 0)
    }

    /// The passes registered on `device` (of `pass_type`) updated after `since` (all of them
    /// without it), with their update tags.
    pub async fn pass_updated(
        &self,
        device: String,
        pass_type: String,
        since: Option<i64>,
    ) -> Result<Vec<(String, i64)>, DbError> {
        Ok(fetch_all(
            &get(&self.quick).await?,
            "SELECT p.serial, p.updated_at FROM pass_registrations r
             JOIN passes p ON p.serial = r.serial
             WHERE r.device_id = $1 AND r.pass_type = $2 AND p.updated_at > $3
             ORDER BY p.serial",
            &[&device, &pass_type, &since.unwrap_or(-1)],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
    }

    /// The members with passes whose entries or records changed after the updater's cursor, up
    /// to `batch` sequence numbers further.
    pub async fn pass_touched(&self, batch: i64) -> Result<(i64, Touched), DbError> {
        let mut client = get(&self.quick).await?;
        let tx = snapshot(&mut client).await?;
        let row = fetch_one(
            &tx,
            "SELECT (SELECT last_seq FROM pass_cursor), (SELECT last FROM server_seq)",
            &[],
        )
        .await?;
        let (after, last): (i64, i64) = (row.get(0), row.get(1));
        let upto = last.min(after.saturating_add(batch));
        let members = fetch_all(
            &tx,
            "SELECT t.member_id FROM (
                 SELECT member_id FROM entries WHERE server_seq > $1 AND server_seq <= $2
                 UNION
                 SELECT member_id FROM member_versions WHERE server_seq > $1 AND server_seq <= $2
             ) t
             WHERE EXISTS (SELECT 1 FROM passes p WHERE p.member_id = t.member_id)",
            &[&after, &upto],
        )
        .await?
        .iter()
        .map(|r| MemberId(r.get(0)))
        .collect();
        tx.commit().await.map_err(pg)?;
        Ok((
            after,
            Touched {
                members,
                upto,
                last,
            },
        ))
    }

    /// Every pass of `member`.
    pub async fn passes_of(&self, member: MemberId) -> Result<Vec<PassRow>, DbError> {
        Ok(fetch_all(
            &get(&self.quick).await?,
            &format!("SELECT {PASS_COLUMNS} FROM passes WHERE member_id = $1 ORDER BY serial"),
            &[&member.0],
        )
        .await?
        .iter()
        .map(pass_row)
        .collect())
    }

    /// Applies changed passes (new tag at least a second past the last, pushes queued to every
    /// registered device and to Google when on) and moves the cursor from `after` to `upto`, in
    /// one transaction. False, with nothing changed, if another updater moved the cursor first.
    pub async fn pass_apply(
        &self,
        changes: Vec<PassChange>,
        after: i64,
        upto: i64,
        google: bool,
        now: Timestamp,
    ) -> Result<bool, DbError> {
        let mut client = get(&self.quick).await?;
        let tx = client.transaction().await.map_err(pg)?;
        let moved = exec(
            &tx,
            "UPDATE pass_cursor SET last_seq = $2 WHERE last_seq = $1",
            &[&after, &upto],
        )
        .await?;
        if moved == 0 {
            return Ok(false);
        }
        for change in &changes {
            exec(
                &tx,
                "UPDATE passes SET updated_at = GREATEST($2, updated_at + 1000), shown = $3,
                                   voided = $4
                 WHERE serial = $1",
                &[&change.serial, &now.millis(), &change.shown, &change.voided],
            )
            .await?;
            let tokens = fetch_all(
                &tx,
                "SELECT push_token FROM pass_registrations WHERE serial = $1",
                &[&change.serial],
            )
            .await?;
            for token in tokens {
                enqueue(&tx, Channel::Apns, &change.serial, token.get(0), now).await?;
            }
            if google {
                enqueue(&tx, Channel::Google, &change.serial, "", now).await?;
            }
        }
        tx.commit().await.map_err(pg)?;
        Ok(true)
    }

    /// Up to `limit` pushes due by `now`, oldest first, and when the next one after them is due.
    pub async fn pass_due(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<(Vec<QueuedPush>, Option<i64>), DbError> {
        let client = get(&self.quick).await?;
        let due = fetch_all(
            &client,
            "SELECT id, channel, serial, target, generation, attempts::bigint FROM pass_pushes
             WHERE due_at <= $1 ORDER BY due_at, id LIMIT $2",
            &[&now.millis(), &i64::try_from(limit).unwrap_or(i64::MAX)],
        )
        .await?;
        let next: Option<i64> = fetch_one(
            &client,
            "SELECT MIN(due_at) FROM pass_pushes WHERE due_at > $1",
            &[&now.millis()],
        )
        .await?
        .get(0);
        let pushes = due
            .iter()
            .map(|r| {
                let (id, channel): (i64, String) = (r.get(0), r.get(1));
                let channel = Channel::parse(&channel).ok_or_else(|| {
                    DbError::Internal(format!("queued push {id} has channel {channel:?}"))
                })?;
                Ok(QueuedPush {
                    id,
                    channel,
                    serial: r.get(2),
                    target: r.get(3),
                    generation: r.get(4),
                    attempts: r.get(5),
                })
            })
            .collect::<Result<_, DbError>>()?;
        Ok((pushes, next))
    }

    /// Records what came of a batch of sends, in one transaction.
    pub async fn pass_settle(&self, settled: Settled) -> Result<(), DbError> {
        let mut client = get(&self.quick).await?;
        let tx = client.transaction().await.map_err(pg)?;
        for (id, generation) in &settled.done {
            exec(
                &tx,
                "DELETE FROM pass_pushes WHERE id = $1 AND generation = $2",
                &[id, generation],
            )
            .await?;
        }
        for (id, token) in &settled.gone {
            exec(&tx, "DELETE FROM pass_pushes WHERE id = $1", &[id]).await?;
            exec(
                &tx,
                "DELETE FROM pass_registrations WHERE push_token = $1",
                &[token],
            )
            .await?;
        }
        for (id, due, error) in &settled.retry {
            exec(
                &tx,
                "UPDATE pass_pushes SET due_at = $2, attempts = attempts + 1, last_error = $3
                 WHERE id = $1",
                &[id, &due.millis(), error],
            )
            .await?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(())
    }

    /// Queued pushes, and how many of them failed at least once.
    pub async fn pass_queue_len(&self) -> Result<(i64, i64), DbError> {
        let row = fetch_one(
            &get(&self.quick).await?,
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE attempts > 0) FROM pass_pushes",
            &[],
        )
        .await?;
        Ok((row.get(0), row.get(1)))
    }
}
