//! The push checks that depend on what is stored, as pure functions over what a backend
//! fetched: both backends fetch, these decide. The till's gapless sequence (replays and new
//! numbers), the possibility check ([`crate::domain::possible`]) and member record changes.

use std::collections::HashMap;

use super::validate::{
    Batch, CheckedEntry, PushRefusal, RULE_ID_CONFLICT, RULE_MEMBER_CHANGE, RULE_REVERSAL_ORDER,
};
use crate::domain::merge::merge;
use crate::domain::possible::{Flag, Known, Needs, ProgramHistory, check_batch};
use crate::domain::{Entry, EntryId, MemberRecord, Timestamp};
use crate::sync::protocol::{RULE_SEQUENCE_GAP, RULE_SEQUENCE_REUSED};

/// A batch's entries split by the till's sequence.
#[derive(Debug)]
pub(super) struct Sequenced<'a> {
    /// Entries numbered after what the server holds, in sequence order (the insert order).
    pub new: Vec<&'a CheckedEntry>,
    /// Entries the server already holds, identical.
    pub replays: usize,
}

/// The numbers of `batch`'s entries at or below `last` (the highest number the server holds
/// for the till): the stored entries the sequence check compares them with.
pub(super) fn replayed_seqs(batch: &Batch, last: i64) -> Vec<i64> {
    batch
        .entries
        .iter()
        .map(|c| c.entry.terminal_seq)
        .filter(|&s| s <= last)
        .collect()
}

/// The till's gapless sequence: entries numbered up to `last` must be exactly what is stored
/// under their number (`stored`: number -> id and body), and the rest must be `last + 1`,
/// `last + 2`, ... with no number twice; a reversal comes after the entry it reverses.
pub(super) fn sequence<'a>(
    batch: &'a Batch,
    last: i64,
    stored: &HashMap<i64, (EntryId, String)>,
) -> Result<Sequenced<'a>, PushRefusal> {
    let mut new: Vec<&CheckedEntry> = Vec::new();
    let mut replays = 0;
    for c in &batch.entries {
        let e = &c.entry;
        if e.terminal_seq > last {
            new.push(c);
            continue;
        }
        match stored.get(&e.terminal_seq) {
            Some((id, body)) if *id == e.id && *body == c.body => replays += 1,
            Some((id, _)) if *id == e.id => {
                return Err(PushRefusal::entry(
                    e.id,
                    RULE_ID_CONFLICT,
                    format!(
                        "entry {} already exists on the server with different content; nothing was stored",
                        e.id
                    ),
                ));
            }
            held => {
                let holder = held.map_or_else(String::new, |(id, _)| format!(" (entry {id})"));
                return Err(PushRefusal::entry(
                    e.id,
                    RULE_SEQUENCE_REUSED,
                    format!(
                        "entry {} reuses number {} of till {}'s sequence{holder}: the server holds up to {last} for this till, so the till was restored from an older copy",
                        e.id, e.terminal_seq, batch.terminal
                    ),
                ));
            }
        }
    }
    new.sort_by_key(|c| c.entry.terminal_seq);
    for (expected, c) in (last + 1..).zip(&new) {
        let e = &c.entry;
        if e.terminal_seq < expected {
            return Err(PushRefusal::entry(
                e.id,
                RULE_SEQUENCE_REUSED,
                format!(
                    "entry {} reuses number {} of till {}'s sequence, already given to another entry of this push",
                    e.id, e.terminal_seq, batch.terminal
                ),
            ));
        }
        if e.terminal_seq > expected {
            return Err(PushRefusal::entry(
                e.id,
                RULE_SEQUENCE_GAP,
                format!(
                    "entry {} has number {} of till {}'s sequence; the server expected {expected} (it holds up to {last}), so numbers are missing",
                    e.id, e.terminal_seq, batch.terminal
                ),
            ));
        }
    }
    let numbers: HashMap<EntryId, i64> = new
        .iter()
        .map(|c| (c.entry.id, c.entry.terminal_seq))
        .collect();
    for c in &new {
        let e = &c.entry;
        if let Some(target) = e.reverses
            && let Some(&at) = numbers.get(&target)
            && at >= e.terminal_seq
        {
            return Err(PushRefusal::entry(
                e.id,
                RULE_REVERSAL_ORDER,
                format!(
                    "entry {} (number {}) reverses entry {target}, which comes later in the till's sequence (number {at})",
                    e.id, e.terminal_seq
                ),
            ));
        }
    }
    Ok(Sequenced { new, replays })
}

/// The possibility check over a push's new entries, given the stored entries fetched for
/// [`crate::domain::possible::needs`]: their flags, or why one is impossible.
pub(super) fn possible(
    programs: &ProgramHistory,
    fetched: Vec<Entry>,
    needs: &Needs,
    new: &[&CheckedEntry],
) -> Result<Vec<(EntryId, Flag)>, PushRefusal> {
    let mut known = Known::new(fetched, &needs.histories);
    let batch: Vec<&Entry> = new.iter().map(|c| &c.entry).collect();
    check_batch(programs, &mut known, &batch)
        .map_err(|i| PushRefusal::entry(i.id, i.rule_name(), i.to_string()))
}

/// A flag as stored: the entry's facts, its UTC day, the flag's name and numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FlagRow {
    pub entry_id: uuid::Uuid,
    pub member_id: uuid::Uuid,
    pub terminal_id: String,
    pub occurred_at: i64,
    pub day: String,
    pub flag: &'static str,
    pub detail: String,
}

/// The rows for `flags` raised on `new` entries.
pub(super) fn flag_rows(new: &[&CheckedEntry], flags: Vec<(EntryId, Flag)>) -> Vec<FlagRow> {
    let by_id: HashMap<EntryId, &Entry> = new.iter().map(|c| (c.entry.id, &c.entry)).collect();
    flags
        .into_iter()
        .filter_map(|(id, flag)| {
            let e = by_id.get(&id)?;
            Some(FlagRow {
                entry_id: id.0,
                member_id: e.member_id.0,
                terminal_id: e.terminal_id.0.clone(),
                occurred_at: e.occurred_at.millis(),
                day: day(e.occurred_at),
                flag: flag.name(),
                detail: flag.detail(),
            })
        })
        .collect()
}

/// The UTC calendar day of `at`, `YYYY-MM-DD`.
pub(super) fn day(at: Timestamp) -> String {
    let d = at.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// What a stored member becomes with a till's record of it: the two merged
/// ([`crate::domain::merge`]: cards replaced at tills that had not seen each other's
/// replacement, or at a till put back to an older copy, all stay the member's), unless the
/// record is one no honest till writes: another enrolment time, a card not linked to the
/// member's cards, an erased record that holds data.
pub(super) fn member_change(
    stored: &MemberRecord,
    new: &MemberRecord,
) -> Result<MemberRecord, PushRefusal> {
    let id = new.member.id;
    let refuse =
        |reason: String| PushRefusal::push(RULE_MEMBER_CHANGE, format!("member {id}: {reason}"));
    if new.erased_at.is_some()
        && (new.member.name != crate::domain::member::ERASED_NAME
            || new.member.phone.is_some()
            || new.member.email.is_some()
            || new.member.birthday.is_some())
    {
        return Err(refuse(
            "an erased record holds no name, phone, email or birthday".into(),
        ));
    }
    merge(stored, new).map_err(|e| refuse(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CardNumber, EntryKind, Member, MemberId, RetiredCard, TerminalId};

    const T0: i64 = 1_795_435_200_000;

    fn checked(seq: i64) -> CheckedEntry {
        let entry = Entry {
            id: EntryId(uuid::Uuid::now_v7()),
            terminal_id: TerminalId("till-a".into()),
            terminal_seq: seq,
            member_id: MemberId(uuid::Uuid::from_u128(1)),
            kind: EntryKind::Earn,
            points: 125,
            amount_minor: Some(1250),
            currency: Some("GBP".into()),
            reward_id: None,
            reverses: None,
            occurred_at: Timestamp::from_millis(T0 + seq),
            note: None,
            actor: "test".into(),
            lines: Vec::new(),
            stamps: Default::default(),
            returns: None,
        };
        let body = serde_json::to_string(&entry).expect("json");
        CheckedEntry { entry, body }
    }

    fn batch(entries: Vec<CheckedEntry>) -> Batch {
        Batch {
            terminal: TerminalId("till-a".into()),
            members: vec![],
            entries,
            guest_sales: vec![],
            answers: vec![],
            voids: vec![],
        }
    }

    fn stored(entries: &[CheckedEntry]) -> HashMap<i64, (EntryId, String)> {
        entries
            .iter()
            .map(|c| (c.entry.terminal_seq, (c.entry.id, c.body.clone())))
            .collect()
    }

    #[test]
    fn replays_are_counted_and_new_entries_follow_in_order() {
        let held: Vec<CheckedEntry> = (1..=3).map(checked).collect();
        let mut entries = held.clone();
        entries.push(checked(5));
        entries.push(checked(4));
        let b = batch(entries);
        assert_eq!(replayed_seqs(&b, 3), vec![1, 2, 3]);
        let split = sequence(&b, 3, &stored(&held)).expect("accepted");
        assert_eq!(split.replays, 3);
        let numbers: Vec<i64> = split.new.iter().map(|c| c.entry.terminal_seq).collect();
        assert_eq!(numbers, vec![4, 5]);
    }

    #[test]
    fn a_reused_number_a_gap_and_a_changed_replay_are_refused() {
        let held: Vec<CheckedEntry> = (1..=3).map(checked).collect();
        let restored = checked(2);
        let r = sequence(&batch(vec![restored.clone()]), 3, &stored(&held)).expect_err("reused");
        assert_eq!(
            (r.entry_id, r.rule),
            (Some(restored.entry.id), RULE_SEQUENCE_REUSED)
        );
        assert!(r.message.contains("holds up to 3"), "{r}");
        assert!(r.message.contains("restored from an older copy"), "{r}");

        let twice = vec![checked(4), checked(4)];
        let r = sequence(&batch(twice), 3, &stored(&held)).expect_err("twice");
        assert_eq!(r.rule, RULE_SEQUENCE_REUSED);

        let skipped = checked(5);
        let r = sequence(&batch(vec![skipped.clone()]), 3, &stored(&held)).expect_err("gap");
        assert_eq!(
            (r.entry_id, r.rule),
            (Some(skipped.entry.id), RULE_SEQUENCE_GAP)
        );
        assert!(r.message.contains("expected 4"), "{r}");

        let mut changed = held[0].clone();
        changed.entry.actor = "someone else".into();
        changed.body = serde_json::to_string(&changed.entry).expect("json");
        let r = sequence(&batch(vec![changed]), 3, &stored(&held)).expect_err("changed");
        assert_eq!(r.rule, RULE_ID_CONFLICT);
        assert!(r.message.contains("different content"), "{r}");
    }

    #[test]
    fn a_reversal_numbered_before_its_target_is_refused() {
        let target = checked(2);
        let mut reversal = checked(1);
        reversal.entry.kind = EntryKind::Reverse;
        reversal.entry.points = -125;
        reversal.entry.amount_minor = Some(-1250);
        reversal.entry.reverses = Some(target.entry.id);
        let r = sequence(
            &batch(vec![reversal.clone(), target.clone()]),
            0,
            &HashMap::new(),
        )
        .expect_err("refused");
        assert_eq!(
            (r.entry_id, r.rule),
            (Some(reversal.entry.id), RULE_REVERSAL_ORDER)
        );
        reversal.entry.terminal_seq = 3;
        let listed_first = batch(vec![reversal, target, checked(1)]);
        let split = sequence(&listed_first, 0, &HashMap::new())
            .expect("a reversal listed first but numbered after");
        assert_eq!(split.new.len(), 3);
    }

    fn record(card: u64, retired: &[(u64, u64)]) -> MemberRecord {
        MemberRecord {
            member: Member {
                id: MemberId(uuid::Uuid::from_u128(7)),
                card: CardNumber::from_payload(card),
                name: "Ada".into(),
                phone: None,
                email: None,
                birthday: None,
                marketing_consent: false,
                created_at: Timestamp::from_millis(T0),
            },
            version: T0,
            retired_cards: retired
                .iter()
                .map(|&(card, by)| RetiredCard {
                    card: CardNumber::from_payload(card),
                    retired_at: Timestamp::from_millis(T0),
                    replaced_by: CardNumber::from_payload(by),
                })
                .collect(),
            erased_at: None,
            referred_by: None,
        }
    }

    #[test]
    fn member_records_merge_unless_no_till_could_have_written_them() {
        let stored = record(1, &[]);
        let mut renamed = record(1, &[]);
        renamed.member.name = "Ada King".into();
        renamed.member.email = Some("ada@example.com".into());
        renamed.version += 1;
        assert_eq!(member_change(&stored, &renamed), Ok(renamed.clone()));
        let replaced = record(2, &[(1, 2)]);
        assert_eq!(member_change(&stored, &replaced), Ok(replaced.clone()));
        assert_eq!(
            member_change(&stored, &record(3, &[(1, 2), (2, 3)])).map(|m| m.member.card),
            Ok(CardNumber::from_payload(3)),
            "two replacements offline"
        );
        let mut stale = record(1, &[]);
        stale.member.name = "Ada King".into();
        stale.version += 1;
        let merged = member_change(&replaced, &stale).expect("a copy from before the replacement");
        assert_eq!(
            (
                &merged.member.card,
                &merged.member.name,
                &merged.retired_cards
            ),
            (
                &CardNumber::from_payload(2),
                &"Ada King".to_owned(),
                &replaced.retired_cards
            ),
            "the replacement stays, the new name is taken"
        );
        for bad in [record(2, &[]), record(3, &[(1, 2)]), record(2, &[(5, 2)])] {
            let r = member_change(&stored, &bad).expect_err("refused");
            assert_eq!((r.entry_id, r.rule), (None, RULE_MEMBER_CHANGE));
            assert!(r.message.contains("not linked"), "{r}");
        }
        let mut reenrolled = record(1, &[]);
        reenrolled.member.created_at = Timestamp::from_millis(T0 + 1);
        let r = member_change(&stored, &reenrolled).expect_err("created_at");
        assert!(r.message.contains("enrolment time"), "{r}");
        let mut erased = record(1, &[]);
        erased.erased_at = Some(Timestamp::from_millis(T0));
        let r = member_change(&stored, &erased).expect_err("erased, with a name");
        assert!(r.message.contains("holds no name"), "{r}");
    }
}
