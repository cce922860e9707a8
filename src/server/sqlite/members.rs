//! A push's member records on SQLite: the stored records and whoever holds their cards,
//! phones and emails are read first, the rules ([`crate::server::member_push`]) applied in
//! memory, and the changed records written with their versions.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension as _, params};

use super::{RULE_CONFLICT, refused};
use crate::domain::MemberId;
use crate::server::db::DbError;
use crate::server::member_push::{Holders, Named, decide, named, stored_record};
use crate::server::validate::Batch;

/// Stores what each of the push's member records adds to the stored one, numbering each
/// changed record after `seq`; returns how many changed anything.
pub(super) fn store_members(
    conn: &Connection,
    batch: &Batch,
    seq: &mut i64,
) -> Result<usize, DbError> {
    if batch.members.is_empty() {
        return Ok(0);
    }
    let mut stored = HashMap::new();
    let mut body = conn.prepare_cached("SELECT body FROM members WHERE id = ?1")?;
    for m in &batch.members {
        let id = m.record.member.id;
        if let Some(found) = body
            .query_row(params![id.0], |r| r.get::<_, String>(0))
            .optional()?
        {
            stored.insert(id, stored_record(id, &found)?);
        }
    }
    let holders = holders(conn, &named(batch, &stored))?;
    let written = decide(batch, stored, holders, *seq)?;
    let mut upsert = conn.prepare_cached(
        "INSERT INTO members (id, version, card, phone, email, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version, card = excluded.card,
             phone = excluded.phone, email = excluded.email, body = excluded.body",
    )?;
    // Every version is appended with its own seq and the till that made it: a member's first
    // version always comes before its entries in a pull, whatever later versions do.
    let mut version = conn.prepare_cached(
        "INSERT INTO member_versions (server_seq, member_id, body, terminal_id)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for w in &written {
        let m = &w.record.member;
        upsert
            .execute(params![
                w.id.0,
                w.record.version,
                m.card.as_str(),
                m.phone,
                m.email,
                w.body
            ])
            .map_err(|e| {
                refused(
                    e,
                    None,
                    RULE_CONFLICT,
                    format!("member {}: conflicts with another member", w.id),
                )
            })?;
        version.execute(params![w.seq, w.id.0, w.body, batch.terminal.0])?;
        if w.record.erased_at.is_some() {
            // Erased at the member's request: no older version keeps their data either.
            conn.prepare_cached("UPDATE member_versions SET body = ?2 WHERE member_id = ?1")?
                .execute(params![w.id.0, w.body])?;
        }
    }
    *seq = written.last().map_or(*seq, |w| w.seq);
    Ok(written.len())
}

/// Who holds each card, phone and email `named` lists.
fn holders(conn: &Connection, named: &Named<'_>) -> Result<Holders, DbError> {
    let mut holders = Holders::default();
    for (column, keys) in [
        ("card", &named.cards),
        ("phone", &named.phones),
        ("email", &named.emails),
    ] {
        let mut holder = conn.prepare_cached(&format!(
            "SELECT id, card, phone, email FROM members WHERE {column} = ?1"
        ))?;
        for key in keys.iter() {
            let rows = holder
                .query_map(params![key], |r| {
                    Ok((MemberId(r.get(0)?), r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for (id, card, phone, email) in rows {
                holders.hold(id, card, phone, email);
            }
        }
    }
    Ok(holders)
}
