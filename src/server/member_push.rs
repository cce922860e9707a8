//! The rules a push's member records meet, the same on every backend: each record is merged
//! with the stored one and checked in the push's order against who holds each card, phone and
//! email, a picture kept current as records are taken (as if each had been written before the
//! next was checked). A backend reads the stored records and the holders first, and writes
//! what [`decide`] returns.

use std::collections::{HashMap, HashSet};

use super::db::DbError;
use super::judge;
use super::validate::{Batch, PushRefusal, RULE_CARD_TAKEN};
use crate::domain::{CardNumber, MemberId, MemberRecord};

/// Who holds each card (a member's card in use), phone and email among the stored members a
/// push's records could touch, as the push's earlier records leave them.
#[derive(Default)]
pub(crate) struct Holders {
    cards: HashMap<String, MemberId>,
    phones: HashMap<String, MemberId>,
    emails: HashMap<String, MemberId>,
}

impl Holders {
    /// Notes a stored member's card, phone and email.
    pub(crate) fn hold(
        &mut self,
        id: MemberId,
        card: String,
        phone: Option<String>,
        email: Option<String>,
    ) {
        self.cards.insert(card, id);
        if let Some(phone) = phone {
            self.phones.insert(phone, id);
        }
        if let Some(email) = email {
            self.emails.insert(email, id);
        }
    }

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
        self.hold(
            id,
            m.card.as_str().to_owned(),
            m.phone.clone(),
            m.email.clone(),
        );
    }
}

/// The cards, phones and emails a push's records and their stored ones name: whose holders a
/// backend reads before [`decide`].
pub(crate) struct Named<'a> {
    pub cards: Vec<&'a str>,
    pub phones: Vec<&'a str>,
    pub emails: Vec<&'a str>,
}

/// What `batch`'s records and `stored` name.
pub(crate) fn named<'a>(
    batch: &'a Batch,
    stored: &'a HashMap<MemberId, MemberRecord>,
) -> Named<'a> {
    let records = || {
        batch
            .members
            .iter()
            .map(|m| &m.record)
            .chain(stored.values())
    };
    let distinct = |keys: Vec<&'a str>| -> Vec<&'a str> {
        let mut seen = HashSet::new();
        keys.into_iter().filter(|k| seen.insert(*k)).collect()
    };
    Named {
        cards: distinct(
            records()
                .flat_map(MemberRecord::cards)
                .map(CardNumber::as_str)
                .collect(),
        ),
        phones: distinct(
            records()
                .filter_map(|r| r.member.phone.as_deref())
                .collect(),
        ),
        emails: distinct(
            records()
                .filter_map(|r| r.member.email.as_deref())
                .collect(),
        ),
    }
}

/// A stored member record, as the rules compare it.
pub(crate) fn stored_record(id: MemberId, body: &str) -> Result<MemberRecord, DbError> {
    serde_json::from_str::<MemberRecord>(body)
        .map(|r| r.canonical())
        .map_err(|e| DbError::Internal(format!("corrupt stored member record {id}: {e}")))
}

/// One record to write, numbered.
pub(crate) struct Written {
    pub id: MemberId,
    pub record: MemberRecord,
    pub body: String,
    pub seq: i64,
}

/// What each of the push's member records adds to the stored one (the two merged), in the
/// push's order, each changed record numbered after `seq`: refuses records no till writes and
/// cards another member holds, and drops a phone or email another member has (the first to
/// arrive keeps it; tills apply the same rule when they pull). Records that change nothing are
/// left out. `stored` holds the push's members as stored, `holders` who holds what
/// [`named`] lists.
pub(crate) fn decide(
    batch: &Batch,
    mut stored: HashMap<MemberId, MemberRecord>,
    mut holders: Holders,
    seq: i64,
) -> Result<Vec<Written>, DbError> {
    let mut written = Vec::new();
    let mut next = seq;
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
        let taken = record
            .cards()
            .difference(&held)
            .copied()
            .find(|c| Holders::held_by_other(&holders.cards, Some(c.as_str()), id));
        if let Some(card) = taken {
            return Err(card_taken(id, card));
        }
        let m = &record.member;
        let phone_taken = Holders::held_by_other(&holders.phones, m.phone.as_deref(), id);
        let email_taken = Holders::held_by_other(&holders.emails, m.email.as_deref(), id);
        strip_taken_contacts(&mut record, phone_taken, email_taken);
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
    Ok(written)
}

fn card_taken(member: MemberId, card: &CardNumber) -> DbError {
    DbError::Refused(PushRefusal::push(
        RULE_CARD_TAKEN,
        format!(
            "member {member}: card {card} already belongs to another member; replace this member's card at the till"
        ),
    ))
}

/// A member record keeps a phone or email only if no other member has it on the server.
fn strip_taken_contacts(record: &mut MemberRecord, phone_taken: bool, email_taken: bool) {
    if phone_taken {
        tracing::warn!(member = %record.member.id, "phone already held by another member; dropped");
        record.member.phone = None;
    }
    if email_taken {
        tracing::warn!(member = %record.member.id, "email already held by another member; dropped");
        record.member.email = None;
    }
}
