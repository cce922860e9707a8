//! A push's member records on PostgreSQL, in a few statements whatever their number: the
//! stored records and whoever holds their cards, phones and emails are read at once, the rules
//! ([`crate::server::member_push`]) applied in memory, and the records written with one
//! `UNNEST` statement per run of distinct members, then their versions with one more.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::{exec, fetch_all, pg, prepared};
use crate::domain::{MemberId, MemberRecord, TerminalId};
use crate::server::db::DbError;
use crate::server::member_push::{Holders, Named, Written, decide, named, stored_record};
use crate::server::validate::Batch;

const UPSERT_MEMBERS: &str = "INSERT INTO members (id, version, card, phone, email, body)
     SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                          $6::text[])
     ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, card = EXCLUDED.card,
         phone = EXCLUDED.phone, email = EXCLUDED.email, body = EXCLUDED.body";
const ADD_VERSIONS: &str = "INSERT INTO member_versions (server_seq, member_id, body, terminal_id)
     SELECT t.seq, t.member, t.body, $4
     FROM UNNEST($1::bigint[], $2::uuid[], $3::text[]) AS t(seq, member, body)";

/// Stores what each of the push's member records adds to the stored one ([`decide`]),
/// numbering each changed record after `seq`; returns how many changed anything. Only the
/// push's own transaction writes members while it holds the push lock, so what is read first
/// stays true but for what this push writes.
pub(super) async fn store_members(
    tx: &Transaction<'_>,
    batch: &Batch,
    seq: &mut i64,
) -> Result<usize, DbError> {
    if batch.members.is_empty() {
        return Ok(0);
    }
    let (stored, holders) = read_members(tx, batch).await?;
    let written = decide(batch, stored, holders, *seq)?;
    write_members(tx, &written, &batch.terminal).await?;
    *seq = written.last().map_or(*seq, |w| w.seq);
    Ok(written.len())
}

/// The push's members as stored, and who holds any card, phone or email its records or those
/// stored ones name.
async fn read_members(
    tx: &Transaction<'_>,
    batch: &Batch,
) -> Result<(HashMap<MemberId, MemberRecord>, Holders), DbError> {
    let ids: Vec<Uuid> = batch.members.iter().map(|m| m.record.member.id.0).collect();
    let stored: HashMap<MemberId, MemberRecord> = fetch_all(
        tx,
        "SELECT id, body FROM members WHERE id = ANY($1)",
        &[&ids],
    )
    .await?
    .iter()
    .map(|row| {
        let id = MemberId(row.get(0));
        stored_record(id, row.get(1)).map(|r| (id, r))
    })
    .collect::<Result<_, _>>()?;
    let mut holders = Holders::default();
    let Named {
        cards,
        phones,
        emails,
    } = named(batch, &stored);
    for row in fetch_all(
        tx,
        "SELECT id, card, phone, email FROM members
         WHERE card = ANY($1) OR phone = ANY($2) OR email = ANY($3)",
        &[&cards, &phones, &emails],
    )
    .await?
    {
        holders.hold(MemberId(row.get(0)), row.get(1), row.get(2), row.get(3));
    }
    Ok((stored, holders))
}

/// Writes the records in order: one statement per run of distinct members (a member named
/// twice in a push is written twice, in its place), then every version, then the erasure of
/// older versions for members erased.
async fn write_members(
    tx: &Transaction<'_>,
    written: &[Written],
    terminal: &TerminalId,
) -> Result<(), DbError> {
    let upsert = prepared(tx, UPSERT_MEMBERS).await?;
    let mut start = 0;
    while start < written.len() {
        let mut seen = HashSet::new();
        let run: Vec<&Written> = written[start..]
            .iter()
            .take_while(|w| seen.insert(w.id))
            .collect();
        start += run.len();
        let ids: Vec<Uuid> = run.iter().map(|w| w.id.0).collect();
        let versions: Vec<i64> = run.iter().map(|w| w.record.version).collect();
        let cards: Vec<&str> = run.iter().map(|w| w.record.member.card.as_str()).collect();
        let phones: Vec<Option<&str>> = run
            .iter()
            .map(|w| w.record.member.phone.as_deref())
            .collect();
        let emails: Vec<Option<&str>> = run
            .iter()
            .map(|w| w.record.member.email.as_deref())
            .collect();
        let bodies: Vec<&str> = run.iter().map(|w| w.body.as_str()).collect();
        tx.execute(
            &upsert,
            &[&ids, &versions, &cards, &phones, &emails, &bodies],
        )
        .await
        .map_err(pg)?;
    }
    // Every version is appended with its own seq and the till that made it: a member's first
    // version always comes before its entries in a pull, whatever later versions do.
    let seqs: Vec<i64> = written.iter().map(|w| w.seq).collect();
    let ids: Vec<Uuid> = written.iter().map(|w| w.id.0).collect();
    let bodies: Vec<&str> = written.iter().map(|w| w.body.as_str()).collect();
    exec(tx, ADD_VERSIONS, &[&seqs, &ids, &bodies, &terminal.0]).await?;
    for w in written.iter().filter(|w| w.record.erased_at.is_some()) {
        // Erased at the member's request: no older version keeps their data either.
        exec(
            tx,
            "UPDATE member_versions SET body = $2 WHERE member_id = $1",
            &[&w.id.0, &w.body],
        )
        .await?;
    }
    Ok(())
}
