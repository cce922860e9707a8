//! A push's member records on PostgreSQL, in a few statements whatever their number: the
//! stored records and whoever holds their cards, phones and emails are read at once; each
//! record is then merged and checked in the push's order against that picture, kept current
//! as records are taken (as if each had been written before the next was checked); and the
//! records are written with one `UNNEST` statement per run of distinct members, then their
//! versions with one more.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::{exec, fetch_all, pg, prepared};
use crate::domain::{CardNumber, MemberId, TerminalId};
use crate::server::db::DbError;
use crate::server::judge;
use crate::server::validate::Batch;
use crate::sync::protocol::MemberRecord;

const UPSERT_MEMBERS: &str = "INSERT INTO members (id, version, card, phone, email, body)
     SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                          $6::text[])
     ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, card = EXCLUDED.card,
         phone = EXCLUDED.phone, email = EXCLUDED.email, body = EXCLUDED.body";
const ADD_VERSIONS: &str = "INSERT INTO member_versions (server_seq, member_id, body, terminal_id)
     SELECT t.seq, t.member, t.body, $4
     FROM UNNEST($1::bigint[], $2::uuid[], $3::text[]) AS t(seq, member, body)";

/// Who holds each card (the `card` column: a member's card in use), phone and email among the
/// stored members a push's records could touch, as the push's earlier records leave them.
#[derive(Default)]
struct Holders {
    cards: HashMap<String, MemberId>,
    phones: HashMap<String, MemberId>,
    emails: HashMap<String, MemberId>,
}

impl Holders {
    fn held_by_other(map: &HashMap<String, MemberId>, key: Option<&str>, id: MemberId) -> bool {
        key.and_then(|k| map.get(k))
            .is_some_and(|holder| *holder != id)
    }

    /// `id` gives up what `old` held and takes what `new` holds.
    fn replace(&mut self, id: MemberId, old: Option<&MemberRecord>, new: &MemberRecord) {
        if let Some(old) = old {
            let m = &old.member;
            for (map, key) in [
                (&mut self.cards, Some(m.card.as_str())),
                (&mut self.phones, m.phone.as_deref()),
                (&mut self.emails, m.email.as_deref()),
            ] {
                if let Some(key) = key
                    && map.get(key) == Some(&id)
                {
                    map.remove(key);
                }
            }
        }
        let m = &new.member;
        self.cards.insert(m.card.as_str().to_owned(), id);
        if let Some(phone) = &m.phone {
            self.phones.insert(phone.clone(), id);
        }
        if let Some(email) = &m.email {
            self.emails.insert(email.clone(), id);
        }
    }
}

/// One record to write, numbered.
struct Written {
    id: MemberId,
    record: MemberRecord,
    body: String,
    seq: i64,
}

/// Stores what each of the push's member records adds to the stored one (the two merged),
/// numbering each changed record after `seq`, refusing records no till writes and cards
/// another member holds, and dropping a phone or email another member has; returns how many
/// changed anything. Only the push's own transaction writes members while it holds the push
/// lock, so what is read first stays true but for what this push writes.
pub(super) async fn store_members(
    tx: &Transaction<'_>,
    batch: &Batch,
    seq: &mut i64,
) -> Result<usize, DbError> {
    if batch.members.is_empty() {
        return Ok(0);
    }
    let (mut stored, mut holders) = read_members(tx, batch).await?;
    let mut written: Vec<Written> = Vec::new();
    let mut next = *seq;
    for m in &batch.members {
        let incoming = &m.record;
        let id = incoming.member.id;
        let old = stored.get(&id);
        let mut record = match old {
            Some(old) => {
                let merged = judge::member_change(old, incoming).map_err(DbError::Refused)?;
                if merged == *old {
                    continue;
                }
                merged
            }
            None => incoming.canonical(),
        };
        let held = old.map(MemberRecord::cards).unwrap_or_default();
        let taken: Option<&CardNumber> = record
            .cards()
            .difference(&held)
            .copied()
            .find(|c| Holders::held_by_other(&holders.cards, Some(c.as_str()), id));
        if let Some(card) = taken {
            return Err(crate::server::card_taken(id, card));
        }
        let phone_taken =
            Holders::held_by_other(&holders.phones, record.member.phone.as_deref(), id);
        let email_taken =
            Holders::held_by_other(&holders.emails, record.member.email.as_deref(), id);
        crate::server::strip_taken_contacts(&mut record, phone_taken, email_taken);
        holders.replace(id, old, &record);
        next += 1;
        let body = serde_json::to_string(&record)
            .map_err(|e| DbError::Internal(format!("member {id}: {e}")))?;
        stored.insert(id, record.clone());
        written.push(Written {
            id,
            record,
            body,
            seq: next,
        });
    }
    write_members(tx, &written, &batch.terminal).await?;
    *seq = next;
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
        serde_json::from_str::<MemberRecord>(row.get(1))
            .map(|r| (id, r.canonical()))
            .map_err(|e| DbError::Internal(format!("corrupt stored member record {id}: {e}")))
    })
    .collect::<Result<_, _>>()?;
    let records = || {
        batch
            .members
            .iter()
            .map(|m| &m.record)
            .chain(stored.values())
    };
    let cards: Vec<&str> = records()
        .flat_map(MemberRecord::cards)
        .map(CardNumber::as_str)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let phones: Vec<&str> = records()
        .filter_map(|r| r.member.phone.as_deref())
        .collect();
    let emails: Vec<&str> = records()
        .filter_map(|r| r.member.email.as_deref())
        .collect();
    let mut holders = Holders::default();
    for row in fetch_all(
        tx,
        "SELECT id, card, phone, email FROM members
         WHERE card = ANY($1) OR phone = ANY($2) OR email = ANY($3)",
        &[&cards, &phones, &emails],
    )
    .await?
    {
        let id = MemberId(row.get(0));
        holders.cards.insert(row.get(1), id);
        if let Some(phone) = row.get::<_, Option<String>>(2) {
            holders.phones.insert(phone, id);
        }
        if let Some(email) = row.get::<_, Option<String>>(3) {
            holders.emails.insert(email, id);
        }
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
