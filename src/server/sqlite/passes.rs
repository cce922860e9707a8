//! The pass service's tables on SQLite (migration `sqlite_005`).

use rusqlite::{Connection, OptionalExtension as _, params};

use super::{SqliteDb, key_rows, with};
use crate::domain::{MemberId, Timestamp};
use crate::server::db::DbError;
use crate::server::passes::records::{
    Channel, PassChange, PassRow, PassSource, QueuedPush, Settled, Touched,
};

fn pass_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PassRow> {
    Ok(PassRow {
        serial: r.get(0)?,
        member_id: MemberId(r.get(1)?),
        updated_at: r.get(2)?,
        shown: r.get(3)?,
        voided: r.get(4)?,
    })
}

const PASS_COLUMNS: &str = "serial, member_id, updated_at, shown, voided";

fn passes_of(conn: &Connection, member: MemberId) -> Result<Vec<PassRow>, DbError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {PASS_COLUMNS} FROM passes WHERE member_id = ?1 ORDER BY serial"
        ))?
        .query_map(params![member.0], pass_row)?
        .collect::<rusqlite::Result<_>>()?)
}

impl SqliteDb {
    /// What `member`'s passes are made from; `None` for an unknown member.
    pub async fn pass_source(&self, member: MemberId) -> Result<Option<PassSource>, DbError> {
        with(&self.quick, move |conn| {
            let tx = conn.transaction()?;
            let Some(record) = tx
                .query_row(
                    "SELECT body FROM members WHERE id = ?1",
                    params![member.0],
                    |r| r.get::<_, String>(0),
                )
                .optional()?
            else {
                return Ok(None);
            };
            let entries = tx
                .prepare_cached("SELECT body FROM entries WHERE member_id = ?1")?
                .query_map(params![member.0], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let (program, code_key) = tx.query_row(
                "SELECT toml, code_key FROM program ORDER BY version DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let keys = key_rows(&tx)?;
            Ok(Some(PassSource {
                record,
                entries,
                program,
                code_key,
                keys,
            }))
        })
        .await
    }

    /// The member whose card in use is `card`.
    pub async fn member_by_card(&self, card: String) -> Result<Option<MemberId>, DbError> {
        with(&self.quick, move |conn| {
            Ok(conn
                .query_row(
                    "SELECT id FROM members WHERE card = ?1",
                    params![card],
                    |r| r.get(0),
                )
                .optional()?
                .map(MemberId))
        })
        .await
    }

    /// Stores a new pass link for `member` under the hash of its token.
    pub async fn pass_link_add(
        &self,
        token_hash: String,
        member: MemberId,
        now: Timestamp,
    ) -> Result<(), DbError> {
        with(&self.writer, move |conn| {
            conn.execute(
                "INSERT INTO pass_links (token_hash, member_id, created_at) VALUES (?1, ?2, ?3)",
                params![token_hash, member.0, now.millis()],
            )?;
            Ok(())
        })
        .await
    }

    /// The member a live (unrevoked) link token hash leads to.
    pub async fn pass_link_member(&self, token_hash: String) -> Result<Option<MemberId>, DbError> {
        with(&self.quick, move |conn| {
            Ok(conn
                .query_row(
                    "SELECT member_id FROM pass_links
                     WHERE token_hash = ?1 AND revoked_at IS NULL",
                    params![token_hash],
                    |r| r.get(0),
                )
                .optional()?
                .map(MemberId))
        })
        .await
    }

    /// Revokes every live link of `member`; how many there were.
    pub async fn pass_links_revoke(
        &self,
        member: MemberId,
        now: Timestamp,
    ) -> Result<usize, DbError> {
        with(&self.writer, move |conn| {
            Ok(conn.execute(
                "UPDATE pass_links SET revoked_at = ?2 WHERE member_id = ?1 AND revoked_at IS NULL",
                params![member.0, now.millis()],
            )?)
        })
        .await
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
        with(&self.writer, move |conn| {
            let tx = conn.transaction()?;
            let inserted = tx.execute(
                "INSERT INTO passes (serial, member_id, updated_at, shown) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (serial) DO NOTHING",
                params![serial, member.0, now.millis(), shown],
            )?;
            if inserted > 0 && google {
                enqueue(&tx, Channel::Google, &serial, "", now)?;
            }
            let row = tx.query_row(
                &format!("SELECT {PASS_COLUMNS} FROM passes WHERE serial = ?1"),
                params![serial],
                pass_row,
            )?;
            tx.commit()?;
            Ok(row)
        })
        .await
    }

    /// The pass with serial number `serial`.
    pub async fn pass_row(&self, serial: String) -> Result<Option<PassRow>, DbError> {
        with(&self.quick, move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {PASS_COLUMNS} FROM passes WHERE serial = ?1"),
                    params![serial],
                    pass_row,
                )
                .optional()?)
        })
        .await
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
        with(&self.writer, move |conn| {
            let tx = conn.transaction()?;
            let known = tx
                .query_row(
                    "SELECT 1 FROM pass_registrations
                     WHERE device_id = ?1 AND pass_type = ?2 AND serial = ?3",
                    params![device, pass_type, serial],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            tx.execute(
                "INSERT INTO pass_registrations (device_id, pass_type, serial, push_token, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (device_id, pass_type, serial) DO UPDATE SET push_token = excluded.push_token",
                params![device, pass_type, serial, push_token, now.millis()],
            )?;
            tx.commit()?;
            Ok(!known)
        })
        .await
    }

    /// Forgets a device's registration for a pass; false if there was none.
    pub async fn pass_unregister(
        &self,
        device: String,
        pass_type: String,
        serial: String,
    ) -> Result<bool, DbError> {
        with(&self.writer, move |conn| {
            Ok(conn.execute(
                "DELETE FROM pass_registrations
                 WHERE device_id = ?1 AND pass_type = ?2 AND serial = ?3",
                params![device, pass_type, serial],
            )? > 0)
        })
        .await
    }

    /// The passes registered on `device` (of `pass_type`) updated after `since` (all of them
    /// without it), with their update tags.
    pub async fn pass_updated(
        &self,
        device: String,
        pass_type: String,
        since: Option<i64>,
    ) -> Result<Vec<(String, i64)>, DbError> {
        with(&self.quick, move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT p.serial, p.updated_at FROM pass_registrations r
                     JOIN passes p ON p.serial = r.serial
                     WHERE r.device_id = ?1 AND r.pass_type = ?2 AND p.updated_at > ?3
                     ORDER BY p.serial",
                )?
                .query_map(params![device, pass_type, since.unwrap_or(-1)], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// The members with passes whose entries or records changed after the updater's cursor, up
    /// to `batch` sequence numbers further.
    pub async fn pass_touched(&self, batch: i64) -> Result<(i64, Touched), DbError> {
        with(&self.quick, move |conn| {
            let tx = conn.transaction()?;
            let after: i64 = tx.query_row(
                "SELECT last_seq FROM pass_cursor WHERE singleton = 1",
                [],
                |r| r.get(0),
            )?;
            let last: i64 =
                tx.query_row("SELECT last FROM server_seq WHERE singleton = 1", [], |r| {
                    r.get(0)
                })?;
            let upto = last.min(after.saturating_add(batch));
            let members = tx
                .prepare_cached(
                    "SELECT t.member_id FROM (
                         SELECT member_id FROM entries WHERE server_seq > ?1 AND server_seq <= ?2
                         UNION
                         SELECT member_id FROM member_versions
                         WHERE server_seq > ?1 AND server_seq <= ?2) t
                     WHERE EXISTS (SELECT 1 FROM passes p WHERE p.member_id = t.member_id)",
                )?
                .query_map(params![after, upto], |r| Ok(MemberId(r.get(0)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok((
                after,
                Touched {
                    members,
                    upto,
                    last,
                },
            ))
        })
        .await
    }

    /// Every pass of `member`.
    pub async fn passes_of(&self, member: MemberId) -> Result<Vec<PassRow>, DbError> {
        with(&self.quick, move |conn| passes_of(conn, member)).await
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
        with(&self.writer, move |conn| {
            let tx = conn.transaction()?;
            let moved = tx.execute(
                "UPDATE pass_cursor SET last_seq = ?2 WHERE singleton = 1 AND last_seq = ?1",
                params![after, upto],
            )?;
            if moved == 0 {
                return Ok(false);
            }
            for change in &changes {
                tx.prepare_cached(
                    "UPDATE passes SET updated_at = MAX(?2, updated_at + 1000), shown = ?3,
                                       voided = ?4
                     WHERE serial = ?1",
                )?
                .execute(params![
                    change.serial,
                    now.millis(),
                    change.shown,
                    change.voided
                ])?;
                let tokens = tx
                    .prepare_cached("SELECT push_token FROM pass_registrations WHERE serial = ?1")?
                    .query_map(params![change.serial], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                for token in tokens {
                    enqueue(&tx, Channel::Apns, &change.serial, &token, now)?;
                }
                if google {
                    enqueue(&tx, Channel::Google, &change.serial, "", now)?;
                }
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// Up to `limit` pushes due by `now`, oldest first, and when the next one after them is due.
    pub async fn pass_due(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<(Vec<QueuedPush>, Option<i64>), DbError> {
        with(&self.quick, move |conn| {
            let due = conn
                .prepare_cached(
                    "SELECT id, channel, serial, target, generation, attempts FROM pass_pushes
                     WHERE due_at <= ?1 ORDER BY due_at, id LIMIT ?2",
                )?
                .query_map(
                    params![now.millis(), i64::try_from(limit).unwrap_or(i64::MAX)],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                        ))
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next: Option<i64> = conn.query_row(
                "SELECT MIN(due_at) FROM pass_pushes WHERE due_at > ?1",
                params![now.millis()],
                |r| r.get(0),
            )?;
            let pushes = due
                .into_iter()
                .map(|(id, channel, serial, target, generation, attempts)| {
                    let channel = Channel::parse(&channel).ok_or_else(|| {
                        DbError::Internal(format!("queued push {id} has channel {channel:?}"))
                    })?;
                    Ok(QueuedPush {
                        id,
                        channel,
                        serial,
                        target,
                        generation,
                        attempts,
                    })
                })
                .collect::<Result<_, DbError>>()?;
            Ok((pushes, next))
        })
        .await
    }

    /// Records what came of a batch of sends, in one transaction.
    pub async fn pass_settle(&self, settled: Settled) -> Result<(), DbError> {
        with(&self.writer, move |conn| {
            let tx = conn.transaction()?;
            for (id, generation) in &settled.done {
                tx.prepare_cached("DELETE FROM pass_pushes WHERE id = ?1 AND generation = ?2")?
                    .execute(params![id, generation])?;
            }
            for (id, token) in &settled.gone {
                tx.prepare_cached("DELETE FROM pass_pushes WHERE id = ?1")?
                    .execute(params![id])?;
                tx.prepare_cached("DELETE FROM pass_registrations WHERE push_token = ?1")?
                    .execute(params![token])?;
            }
            for (id, due, error) in &settled.retry {
                tx.prepare_cached(
                    "UPDATE pass_pushes SET due_at = ?2, attempts = attempts + 1, last_error = ?3
                     WHERE id = ?1",
                )?
                .execute(params![id, due.millis(), error])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Queued pushes, and how many of them failed at least once.
    pub async fn pass_queue_len(&self) -> Result<(i64, i64), DbError> {
        with(&self.quick, move |conn| {
            Ok(conn.query_row(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE attempts > 0) FROM pass_pushes",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await
    }
}

/// Queues a push due now, or folds it into the pending one for the same pass and device (which
/// keeps its time, so a push backing off from a failing service is not hurried).
fn enqueue(
    tx: &Connection,
    channel: Channel,
    serial: &str,
    target: &str,
    now: Timestamp,
) -> Result<(), DbError> {
    tx.prepare_cached(
        "INSERT INTO pass_pushes (channel, serial, target, queued_at, due_at)
         VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (channel, serial, target) DO UPDATE SET generation = generation + 1",
    )?
    .execute(params![channel.as_str(), serial, target, now.millis()])?;
    Ok(())
}
