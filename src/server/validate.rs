//! Checks on a push that need no database: sizes, entry shapes and field limits, that every
//! entry is the pushing terminal's own, plausible times, and member records' fields. Both
//! backends run these first. Each refusal is one line naming the record and the rule.

use std::collections::HashMap;

use crate::domain::entry::MAX_TEXT_LEN;
use crate::domain::possible::MAX_CLOCK_SKEW_MS;
use crate::domain::{Entry, EntryId, MemberRecord, TerminalId, Timestamp};
use crate::sync::protocol::{
    GuestSale, GuestSaleVoid, MAX_PUSH_ENTRIES, MAX_PUSH_MEMBERS, MAX_RETIRED_CARDS,
    MAX_REWARD_ID_LEN, PushRequest, RecommendAnswer,
};

/// Entries may be stamped at most this far ahead of the server's clock (till clocks drift).
const MAX_CLOCK_AHEAD_MS: i64 = 24 * 3_600_000;
/// 2000-01-01T00:00:00Z: nothing in a loyalty ledger is older.
const EARLIEST_MS: i64 = 946_684_800_000;
/// Longest phone number (E.164 is at most 16 characters with the `+`).
const MAX_PHONE_LEN: usize = 32;

/// Rule: the push body is not a push (bad JSON fields or types).
pub const RULE_BAD_BODY: &str = "bad_body";
/// Rule: an entry's shape is impossible on its own ([`Entry::check_shape`]).
pub const RULE_SHAPE: &str = "shape";
/// Rule: an entry field over its limit (reward id, currency).
pub const RULE_ENTRY_FIELD: &str = "entry_field";
/// Rule: an entry from another terminal than the token's.
pub const RULE_NOT_OWN: &str = "not_own_entry";
/// Rule: an entry stamped at an impossible time.
pub const RULE_TIME: &str = "implausible_time";
/// Rule: an id already used for different content.
pub const RULE_ID_CONFLICT: &str = "id_conflict";
/// Rule: a member field over its limit.
pub const RULE_MEMBER_FIELD: &str = "member_field";
/// Rule: a member record's enrolment time or version is impossible.
pub const RULE_MEMBER_TIME: &str = "member_time";
/// Rule: a member record no till writes (another enrolment time, a card not linked to the
/// member's cards, a card retired yet in use, an erased record holding data).
pub const RULE_MEMBER_CHANGE: &str = "member_change";
/// Rule: a member record takes a card another member holds.
pub const RULE_CARD_TAKEN: &str = "card_taken";
/// Rule: an entry of a member the server does not know.
pub const RULE_UNKNOWN_MEMBER: &str = "unknown_member";
/// Rule: a reversal numbered before the entry it reverses in its till's sequence.
pub const RULE_REVERSAL_ORDER: &str = "reversal_before_target";
/// Rule: the database refused a write as conflicting with stored data.
pub const RULE_CONFLICT: &str = "conflict";
/// Rule: a sale without a member or a recommend answer is out of range.
pub const RULE_EXTRA_FIELD: &str = "extra_field";

/// Why a push was refused: which entry (if one), the rule's stable name, and the reason in
/// one line. Nothing of the push was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PushRefusal {
    pub entry_id: Option<EntryId>,
    pub rule: &'static str,
    pub message: String,
}

impl PushRefusal {
    /// A refusal of one entry.
    pub fn entry(id: EntryId, rule: &'static str, message: String) -> Self {
        PushRefusal {
            entry_id: Some(id),
            rule,
            message,
        }
    }

    /// A refusal of the push as a whole, or of a member record in it.
    pub fn push(rule: &'static str, message: String) -> Self {
        PushRefusal {
            entry_id: None,
            rule,
            message,
        }
    }
}

/// An entry checked and serialised once, canonically (the bytes stored and compared).
#[derive(Debug, Clone)]
pub struct CheckedEntry {
    pub entry: Entry,
    pub body: String,
}

/// A member record checked and serialised canonically.
#[derive(Debug, Clone)]
pub struct CheckedMember {
    pub record: MemberRecord,
    pub body: String,
}

/// A push that passed every check that needs no database.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The pushing till (every entry is its own).
    pub terminal: TerminalId,
    pub members: Vec<CheckedMember>,
    pub entries: Vec<CheckedEntry>,
    /// Sales without a member, and recommend answers, checked; stored if absent.
    pub guest_sales: Vec<GuestSale>,
    pub answers: Vec<RecommendAnswer>,
    /// The till's own sales without a member it undid; a void counts only against a sale
    /// the same till pushed.
    pub voids: Vec<GuestSaleVoid>,
}

/// Why a push is refused before touching the database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    Refused(PushRefusal),
}

fn plausible(at: Timestamp, now: Timestamp) -> bool {
    (EARLIEST_MS..=now.millis() + MAX_CLOCK_AHEAD_MS).contains(&at.millis())
}

/// Checks `request` from `terminal` at server time `now`.
pub fn check_push(
    request: PushRequest,
    terminal: &TerminalId,
    now: Timestamp,
) -> Result<Batch, BatchError> {
    if request.entries.len() > MAX_PUSH_ENTRIES {
        return Err(BatchError::TooLarge(format!(
            "a push holds at most {MAX_PUSH_ENTRIES} entries; this one has {}",
            request.entries.len()
        )));
    }
    if request.members.len() > MAX_PUSH_MEMBERS {
        return Err(BatchError::TooLarge(format!(
            "a push holds at most {MAX_PUSH_MEMBERS} members; this one has {}",
            request.members.len()
        )));
    }
    check_extras(&request, now).map_err(BatchError::Refused)?;
    let mut members = Vec::with_capacity(request.members.len());
    for record in request.members {
        check_member(&record, now).map_err(BatchError::Refused)?;
        let body = serde_json::to_string(&record)
            .map_err(|e| BatchError::Refused(PushRefusal::push(RULE_BAD_BODY, e.to_string())))?;
        members.push(CheckedMember { record, body });
    }
    let mut seen: HashMap<EntryId, usize> = HashMap::with_capacity(request.entries.len());
    let mut entries: Vec<CheckedEntry> = Vec::with_capacity(request.entries.len());
    for entry in request.entries {
        check_entry(&entry, terminal, now).map_err(BatchError::Refused)?;
        let body = serde_json::to_string(&entry).map_err(|e| {
            BatchError::Refused(PushRefusal::entry(entry.id, RULE_BAD_BODY, e.to_string()))
        })?;
        if let Some(&i) = seen.get(&entry.id) {
            if entries[i].body != body {
                return Err(BatchError::Refused(PushRefusal::entry(
                    entry.id,
                    RULE_ID_CONFLICT,
                    format!("entry {} appears twice with different content", entry.id),
                )));
            }
            continue;
        }
        seen.insert(entry.id, entries.len());
        entries.push(CheckedEntry { entry, body });
    }
    Ok(Batch {
        terminal: terminal.clone(),
        members,
        entries,
        guest_sales: request.guest_sales,
        answers: request.answers,
        voids: request.voids,
    })
}

/// Sales without a member, their voids and recommend answers: as many of each as entries at
/// most, positive amounts no larger than any program's largest sale, scores 0 to 10,
/// plausible times.
fn check_extras(request: &PushRequest, now: Timestamp) -> Result<(), PushRefusal> {
    let (sales, answers, voids) = (&request.guest_sales, &request.answers, &request.voids);
    let refuse = |reason: String| Err(PushRefusal::push(RULE_EXTRA_FIELD, reason));
    if [sales.len(), answers.len(), voids.len()]
        .iter()
        .any(|n| *n > MAX_PUSH_ENTRIES)
    {
        return refuse(format!(
            "a push holds at most {MAX_PUSH_ENTRIES} sales without a member, as many voids \
             and as many answers"
        ));
    }
    if let Some(v) = voids.iter().find(|v| !plausible(v.occurred_at, now)) {
        return Err(PushRefusal::push(
            RULE_TIME,
            format!(
                "void of sale {}: time {} is implausible",
                v.sale, v.occurred_at
            ),
        ));
    }
    for s in sales {
        if !(1..=crate::domain::program::MAX_SALE_LIMIT_MINOR).contains(&s.amount_minor) {
            return refuse(format!(
                "sale {}: amount {} out of range",
                s.id, s.amount_minor
            ));
        }
        if !plausible(s.occurred_at, now) {
            return Err(PushRefusal::push(
                RULE_TIME,
                format!("sale {}: time {} is implausible", s.id, s.occurred_at),
            ));
        }
    }
    for a in answers {
        if a.score > 10 {
            return refuse(format!("answer {}: score {} is not 0 to 10", a.id, a.score));
        }
        if a.member_id.is_some() && a.guest_sale.is_some() {
            return refuse(format!(
                "answer {}: a member's answer follows their own sale, not a guest's",
                a.id
            ));
        }
        if !plausible(a.occurred_at, now) {
            return Err(PushRefusal::push(
                RULE_TIME,
                format!("answer {}: time {} is implausible", a.id, a.occurred_at),
            ));
        }
    }
    Ok(())
}

/// One member record's fields and times.
fn check_member(record: &MemberRecord, now: Timestamp) -> Result<(), PushRefusal> {
    let m = &record.member;
    let refuse = |rule, reason: String| {
        Err(PushRefusal::push(
            rule,
            format!("member {}: {reason}", m.id),
        ))
    };
    if m.name.trim().is_empty() || m.name.len() > MAX_TEXT_LEN {
        return refuse(
            RULE_MEMBER_FIELD,
            format!("name must be 1-{MAX_TEXT_LEN} characters"),
        );
    }
    if record.referred_by == Some(m.id) {
        return refuse(RULE_MEMBER_FIELD, "names itself as its referrer".to_owned());
    }
    if m.phone.as_ref().is_some_and(|p| p.len() > MAX_PHONE_LEN) {
        return refuse(
            RULE_MEMBER_FIELD,
            format!("phone longer than {MAX_PHONE_LEN} characters"),
        );
    }
    if m.email.as_ref().is_some_and(|e| e.len() > MAX_TEXT_LEN) {
        return refuse(
            RULE_MEMBER_FIELD,
            format!("email longer than {MAX_TEXT_LEN} characters"),
        );
    }
    if record.retired_cards.len() > MAX_RETIRED_CARDS {
        return refuse(
            RULE_MEMBER_FIELD,
            format!(
                "{} retired cards; a record carries at most {MAX_RETIRED_CARDS}",
                record.retired_cards.len()
            ),
        );
    }
    if !plausible(m.created_at, now) {
        return refuse(
            RULE_MEMBER_TIME,
            format!(
                "enrolled at {}, which is not a plausible time (check the till's clock)",
                m.created_at
            ),
        );
    }
    if let Some(r) = record
        .retired_cards
        .iter()
        .find(|r| !plausible(r.retired_at, now))
    {
        return refuse(
            RULE_MEMBER_TIME,
            format!(
                "card {} retired at {}, which is not a plausible time",
                r.card, r.retired_at
            ),
        );
    }
    if let Err(reason) = record.check_cards() {
        return refuse(RULE_MEMBER_CHANGE, reason);
    }
    if record.version < m.created_at.millis() {
        return refuse(
            RULE_MEMBER_TIME,
            format!(
                "version {} is before its enrolment at {}",
                record.version, m.created_at
            ),
        );
    }
    let latest = now.millis().saturating_add(MAX_CLOCK_SKEW_MS);
    if record.version > latest {
        return refuse(
            RULE_MEMBER_TIME,
            format!(
                "version {} is later than the server's clock allows ({latest}); check the till's clock",
                record.version
            ),
        );
    }
    Ok(())
}

/// One entry's shape, fields, terminal and time.
fn check_entry(entry: &Entry, terminal: &TerminalId, now: Timestamp) -> Result<(), PushRefusal> {
    let refuse = |rule, message: String| Err(PushRefusal::entry(entry.id, rule, message));
    if let Err(e) = entry.check_shape() {
        return refuse(RULE_SHAPE, e.to_string());
    }
    if entry.terminal_id != *terminal {
        return refuse(
            RULE_NOT_OWN,
            format!(
                "entry {} names another till than the one pushing it; a till pushes only its own entries",
                entry.id
            ),
        );
    }
    if entry
        .reward_id
        .as_ref()
        .is_some_and(|r| r.len() > MAX_REWARD_ID_LEN)
    {
        return refuse(
            RULE_ENTRY_FIELD,
            format!(
                "entry {}: reward id longer than {MAX_REWARD_ID_LEN} characters",
                entry.id
            ),
        );
    }
    if let Some(currency) = &entry.currency
        && !(currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return refuse(
            RULE_ENTRY_FIELD,
            format!(
                "entry {}: currency {currency:?} is not three capital letters",
                entry.id
            ),
        );
    }
    if !plausible(entry.occurred_at, now) {
        return refuse(
            RULE_TIME,
            format!(
                "entry {}: occurred_at {} is not a plausible time (check the till's clock)",
                entry.id, entry.occurred_at
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CardNumber, EntryKind, Member, MemberId, RetiredCard};

    fn entry(terminal: &str, points: i64) -> Entry {
        Entry {
            id: EntryId(uuid::Uuid::now_v7()),
            terminal_id: TerminalId(terminal.into()),
            terminal_seq: 1,
            member_id: MemberId(uuid::Uuid::from_u128(1)),
            kind: EntryKind::Adjust,
            points,
            amount_minor: None,
            currency: None,
            reward_id: None,
            reverses: None,
            occurred_at: Timestamp::from_millis(1_795_435_200_000),
            note: Some("test".into()),
            actor: "test".into(),
            lines: Vec::new(),
            stamps: Default::default(),
            returns: None,
        }
    }

    fn member() -> MemberRecord {
        MemberRecord {
            member: Member {
                id: MemberId(uuid::Uuid::from_u128(1)),
                card: CardNumber::from_payload(1),
                name: "Ada".into(),
                phone: None,
                email: None,
                birthday: None,
                marketing_consent: false,
                created_at: NOW,
            },
            version: NOW.millis(),
            retired_cards: Vec::new(),
            erased_at: None,
            referred_by: None,
        }
    }

    const NOW: Timestamp = Timestamp::from_millis(1_795_435_200_000);

    fn refusal(request: PushRequest) -> PushRefusal {
        match check_push(request, &TerminalId("till-a".into()), NOW) {
            Err(BatchError::Refused(r)) => r,
            other => panic!("not refused: {other:?}"),
        }
    }

    fn entries(entries: Vec<Entry>) -> PushRequest {
        PushRequest {
            entries,
            ..PushRequest::default()
        }
    }

    #[test]
    fn entries_of_another_terminal_are_refused() {
        let e = entry("till-b", 5);
        let r = refusal(entries(vec![e.clone()]));
        assert_eq!((r.entry_id, r.rule), (Some(e.id), RULE_NOT_OWN));
        assert!(r.message.contains("pushes only its own"), "{r}");
    }

    #[test]
    fn impossible_values_and_times_are_refused() {
        let mut zero = entry("till-a", 0);
        zero.note = Some("nothing".into());
        let mut future = entry("till-a", 5);
        future.occurred_at = NOW.plus_days(30);
        for (bad, rule) in [
            (zero, RULE_SHAPE),
            (future, RULE_TIME),
            (entry("till-a", 2_000_000_000), RULE_SHAPE),
        ] {
            assert_eq!(refusal(entries(vec![bad])).rule, rule);
        }
    }

    #[test]
    fn entry_fields_over_their_limits_are_refused() {
        let mut reward = entry("till-a", -500);
        reward.kind = EntryKind::Redeem;
        reward.note = None;
        reward.reward_id = Some("r".repeat(MAX_REWARD_ID_LEN));
        assert!(
            check_push(
                entries(vec![reward.clone()]),
                &TerminalId("till-a".into()),
                NOW
            )
            .is_ok()
        );
        reward.reward_id = Some("r".repeat(MAX_REWARD_ID_LEN + 1));
        let r = refusal(entries(vec![reward]));
        assert_eq!(r.rule, RULE_ENTRY_FIELD);
        assert!(r.message.contains("reward id"), "{r}");
        for currency in ["gbp", "GBPX", "GB", "G€P"] {
            let mut sale = entry("till-a", 125);
            sale.kind = EntryKind::Earn;
            sale.note = None;
            sale.amount_minor = Some(1250);
            sale.currency = Some(currency.into());
            let r = refusal(entries(vec![sale]));
            assert_eq!(r.rule, RULE_ENTRY_FIELD, "{currency}");
            assert!(r.message.contains("currency"), "{r}");
        }
    }

    #[test]
    fn member_records_from_the_future_or_with_too_many_cards_are_refused() {
        let mut ahead = member();
        ahead.version = NOW.millis() + MAX_CLOCK_SKEW_MS;
        let ok = PushRequest {
            members: vec![ahead.clone()],
            entries: vec![],
            ..PushRequest::default()
        };
        assert!(check_push(ok, &TerminalId("till-a".into()), NOW).is_ok());
        ahead.version += 1;
        let r = refusal(PushRequest {
            members: vec![ahead],
            entries: vec![],
            ..PushRequest::default()
        });
        assert_eq!((r.entry_id, r.rule), (None, RULE_MEMBER_TIME));
        assert!(r.message.contains("later than the server's clock"), "{r}");

        let mut cards = member();
        cards.retired_cards = (0..=MAX_RETIRED_CARDS as u64)
            .map(|i| RetiredCard {
                card: CardNumber::from_payload(100 + i),
                retired_at: NOW,
                replaced_by: CardNumber::from_payload(1),
            })
            .collect();
        let r = refusal(PushRequest {
            members: vec![cards],
            entries: vec![],
            ..PushRequest::default()
        });
        assert_eq!(r.rule, RULE_MEMBER_FIELD);
        assert!(r.message.contains("retired cards"), "{r}");

        let mut retired_later = member();
        retired_later.retired_cards = vec![RetiredCard {
            card: CardNumber::from_payload(2),
            retired_at: NOW.plus_days(2),
            replaced_by: CardNumber::from_payload(1),
        }];
        let r = refusal(PushRequest {
            members: vec![retired_later],
            entries: vec![],
            ..PushRequest::default()
        });
        assert_eq!(r.rule, RULE_MEMBER_TIME);
        assert!(r.message.contains("retired at"), "{r}");
    }

    #[test]
    fn sales_without_a_member_and_answers_out_of_range_are_refused() {
        let id = uuid::Uuid::from_u128(7);
        let r = refusal(PushRequest {
            answers: vec![RecommendAnswer {
                id,
                occurred_at: NOW,
                score: 11,
                member_id: None,
                guest_sale: None,
            }],
            ..PushRequest::default()
        });
        assert_eq!(r.rule, RULE_EXTRA_FIELD);
        assert!(r.message.contains("not 0 to 10"), "{r}");
        let r = refusal(PushRequest {
            answers: vec![RecommendAnswer {
                id,
                occurred_at: NOW,
                score: 8,
                member_id: Some(MemberId(uuid::Uuid::from_u128(8))),
                guest_sale: Some(uuid::Uuid::from_u128(9)),
            }],
            ..PushRequest::default()
        });
        assert!(r.message.contains("not a guest's"), "{r}");
        let r = refusal(PushRequest {
            guest_sales: vec![GuestSale {
                id,
                occurred_at: NOW,
                amount_minor: 0,
            }],
            ..PushRequest::default()
        });
        assert_eq!(r.rule, RULE_EXTRA_FIELD);
        let r = refusal(PushRequest {
            guest_sales: vec![GuestSale {
                id,
                occurred_at: NOW.plus_days(3),
                amount_minor: 450,
            }],
            ..PushRequest::default()
        });
        assert_eq!(r.rule, RULE_TIME);
        let r = refusal(PushRequest {
            voids: vec![GuestSaleVoid {
                sale: id,
                occurred_at: NOW.plus_days(3),
            }],
            ..PushRequest::default()
        });
        assert_eq!(r.rule, RULE_TIME);
        assert!(r.message.contains("void of sale"), "{r}");
    }

    #[test]
    fn a_member_record_retiring_its_own_card_is_refused() {
        let mut record = member();
        record.retired_cards = vec![RetiredCard {
            card: record.member.card.clone(),
            retired_at: NOW,
            replaced_by: record.member.card.clone(),
        }];
        let r = refusal(PushRequest {
            members: vec![record],
            entries: vec![],
            ..PushRequest::default()
        });
        assert_eq!((r.entry_id, r.rule), (None, RULE_MEMBER_CHANGE));
        assert!(r.message.contains("retired yet in use"), "{r}");
    }

    #[test]
    fn a_repeated_identical_entry_counts_once() {
        let e = entry("till-a", 5);
        let batch = check_push(
            entries(vec![e.clone(), e]),
            &TerminalId("till-a".into()),
            NOW,
        )
        .expect("accepted");
        assert_eq!(batch.entries.len(), 1);
    }

    #[test]
    fn one_id_with_two_contents_is_refused() {
        let e = entry("till-a", 5);
        let mut other = e.clone();
        other.points = 6;
        let r = refusal(entries(vec![e.clone(), other]));
        assert_eq!((r.entry_id, r.rule), (Some(e.id), RULE_ID_CONFLICT));
    }
}
