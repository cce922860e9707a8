//! `verify` on SQLite: one read transaction (a WAL snapshot) over the members in id order,
//! each member's entries, balance and stored report record.

use std::collections::HashSet;

use rusqlite::{OptionalExtension as _, params};

use super::{SqliteDb, with};
use crate::domain::MemberId;
use crate::server::db::{DbError, report_member, report_program, stored_entry};
use crate::server::report_records::records_error;
use crate::server::verify::{Check, Verified, extras_by_day};
use crate::store::records::extras_drift_sql;
use crate::store::records::{program_hash, read_stored, stored_totals};

impl SqliteDb {
    /// Checks every member's balance and the report's records and totals against the entries.
    pub(crate) async fn verify(&self) -> Result<Verified, DbError> {
        with(&self.pages, |conn| {
            let tx = conn.transaction()?;
            let (toml, made, cursor): (String, Option<String>, i64) = tx.query_row(
                "SELECT (SELECT toml FROM program ORDER BY version DESC LIMIT 1), program, last_seq
                 FROM report_state",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let program = report_program(&toml)?;
            let made = made.as_deref() == Some(program_hash(&toml).as_str());
            let pending: HashSet<MemberId> = tx
                .prepare(
                    "SELECT member_id FROM entries WHERE server_seq > ?1
                     UNION
                     SELECT member_id FROM member_versions WHERE server_seq > ?1",
                )?
                .query_map(params![cursor], |r| Ok(MemberId(r.get(0)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut check = Check::new(made.then_some(&program));
            let mut members = tx.prepare("SELECT body FROM members ORDER BY id")?;
            let mut rows = members.query([])?;
            while let Some(row) = rows.next()? {
                let member = report_member(&row.get::<_, String>(0)?)?;
                let id = member.id;
                let entries = tx
                    .prepare_cached("SELECT body FROM entries WHERE member_id = ?1")?
                    .query_map(params![id.0], |r| r.get::<_, String>(0))?
                    .map(|body| stored_entry(&body?))
                    .collect::<Result<Vec<_>, DbError>>()?;
                let balance = tx
                    .prepare_cached("SELECT balance FROM balances WHERE member_id = ?1")?
                    .query_row(params![id.0], |r| r.get(0))
                    .optional()?
                    .unwrap_or(0);
                let stored = if made {
                    read_stored(&tx, id).map_err(records_error)?
                } else {
                    None
                };
                check.member(
                    member,
                    entries,
                    Some(balance),
                    pending.contains(&id),
                    stored,
                );
            }
            let totals = if made {
                Some(stored_totals(&tx).map_err(records_error)?)
            } else {
                None
            };
            for (table, summed) in extras_by_day() {
                let rows: i64 =
                    tx.query_row(&extras_drift_sql(&table, &summed), [], |r| r.get(0))?;
                check.extras(&table, rows.unsigned_abs());
            }
            Ok(check.finish(totals))
        })
        .await
    }
}
