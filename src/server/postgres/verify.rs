//! `verify` on PostgreSQL: one read-only repeatable-read snapshot over the members in id
//! order, a page at a time, with their entries and stored report records read for the page in
//! a few statements. PostgreSQL stores no balances (they are summed when asked for), so none
//! are checked.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::report::{stored_totals, tier_change};
use super::{PgDb, fetch_all, fetch_one, get, pg, snapshot};
use crate::domain::insights::{Digest, MemberFacts, Record, StoredRecord};
use crate::domain::{MemberId, Timestamp};
use crate::server::db::{DbError, report_member, report_program, stored_entry};
use crate::server::report_records::MEMBERS_PER_STEP;
use crate::server::verify::{Check, Verified, extras_by_day};
use crate::store::records::extras_drift_sql;
use crate::store::records::program_hash;

impl PgDb {
    /// Checks the report's records and totals against the entries.
    pub(crate) async fn verify(&self) -> Result<Verified, DbError> {
        let mut client = get(&self.pages).await?;
        let tx = snapshot(&mut client).await?;
        let row = fetch_one(
            &tx,
            "SELECT (SELECT toml FROM program ORDER BY version DESC LIMIT 1), program,
                    COALESCE(last_seq, 0)
             FROM (SELECT) AS one LEFT JOIN report_state ON TRUE",
            &[],
        )
        .await?;
        let toml: String = row.get(0);
        let program = report_program(&toml)?;
        let made = row.get::<_, Option<String>>(1).as_deref() == Some(program_hash(&toml).as_str());
        let cursor: i64 = row.get(2);
        let pending: HashSet<Uuid> = fetch_all(
            &tx,
            "SELECT member_id FROM entries WHERE server_seq > $1
             UNION
             SELECT member_id FROM member_versions WHERE server_seq > $1",
            &[&cursor],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        let mut check = Check::new(made.then_some(&program));
        let limit = MEMBERS_PER_STEP as i64;
        let mut after: Option<Uuid> = None;
        loop {
            let members = fetch_all(
                &tx,
                "SELECT body FROM members WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2",
                &[&after, &limit],
            )
            .await?
            .iter()
            .map(|row| report_member(row.get(0)))
            .collect::<Result<Vec<_>, _>>()?;
            let Some(last) = members.last() else { break };
            after = Some(last.id.0);
            let ids: Vec<Uuid> = members.iter().map(|m| m.id.0).collect();
            let mut entries: HashMap<Uuid, Vec<_>> = HashMap::new();
            for row in fetch_all(
                &tx,
                "SELECT member_id, body FROM entries WHERE member_id = ANY($1)",
                &[&ids],
            )
            .await?
            {
                entries
                    .entry(row.get(0))
                    .or_default()
                    .push(stored_entry(row.get(1))?);
            }
            let mut stored = if made {
                stored_records(&tx, &ids).await?
            } else {
                HashMap::new()
            };
            let full = members.len() == MEMBERS_PER_STEP;
            for member in members {
                let id = member.id.0;
                check.member(
                    member,
                    entries.remove(&id).unwrap_or_default(),
                    None,
                    pending.contains(&id),
                    stored.remove(&id),
                );
            }
            if !full {
                break;
            }
        }
        let totals = if made {
            Some(stored_totals(&tx).await?)
        } else {
            None
        };
        for (table, summed) in extras_by_day() {
            let rows: i64 = fetch_one(&tx, &extras_drift_sql(&table, &summed), &[])
                .await?
                .get(0);
            check.extras(&table, rows.unsigned_abs());
        }
        tx.commit().await.map_err(pg)?;
        Ok(check.finish(totals))
    }
}

/// The stored records of the members `ids` that have one, with their columns.
async fn stored_records(
    tx: &deadpool_postgres::Transaction<'_>,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, StoredRecord>, DbError> {
    let mut stored = HashMap::new();
    for row in fetch_all(
        tx,
        "SELECT m.member_id, m.enrolled_at, m.consent, m.last_sale, d.digest
         FROM report_members m LEFT JOIN report_digests d ON d.member_id = m.member_id
         WHERE m.member_id = ANY($1)",
        &[&ids],
    )
    .await?
    {
        let member = MemberFacts {
            id: MemberId(row.get(0)),
            enrolled_at: Timestamp::from_millis(row.get(1)),
            marketing_consent: row.get(2),
        };
        let record = match row.get::<_, Option<&[u8]>>(4).map(Digest::from_bytes) {
            None => Some(Record {
                member,
                digest: None,
            }),
            Some(Ok(digest)) => Some(Record {
                member,
                digest: Some(digest),
            }),
            Some(Err(_)) => None,
        };
        stored.insert(
            row.get(0),
            StoredRecord {
                record,
                last_sale: row.get(3),
                tier_changes: Vec::new(),
            },
        );
    }
    for row in fetch_all(
        tx,
        "SELECT member_id, at, tier_before, tier_after, enrolled_at FROM report_tier_changes
         WHERE member_id = ANY($1) ORDER BY member_id, at",
        &[&ids],
    )
    .await?
    {
        let change = tier_change(row.get(1), row.get(2), row.get(3))?;
        let enrolled_at = Timestamp::from_millis(row.get(4));
        if let Some(record) = stored.get_mut(&row.get::<_, Uuid>(0)) {
            record.tier_changes.push((change, enrolled_at));
        }
    }
    Ok(stored)
}
