//! Checks on a push that need no database: sizes, entry shapes, that every entry is the pushing
//! terminal's own, plausible times, and member records' fields. Both backends run these first.

use std::collections::HashMap;

use crate::domain::entry::MAX_TEXT_LEN;
use crate::domain::rules;
use crate::domain::{Entry, EntryId, MemberRecord, TerminalId, Timestamp};
use crate::sync::protocol::{MAX_PUSH_ENTRIES, MAX_PUSH_MEMBERS, PushRequest};

/// Entries may be stamped at most this far ahead of the server's clock (till clocks drift).
const MAX_CLOCK_AHEAD_MS: i64 = 24 * 3_600_000;
/// 2000-01-01T00:00:00Z: nothing in a loyalty ledger is older.
const EARLIEST_MS: i64 = 946_684_800_000;

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
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub members: Vec<CheckedMember>,
    pub entries: Vec<CheckedEntry>,
}

/// Why a push is refused before touching the database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Invalid(String),
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
    let invalid = |s: String| BatchError::Invalid(s);
    let mut members = Vec::with_capacity(request.members.len());
    for record in request.members {
        let m = &record.member;
        if m.name.trim().is_empty() || m.name.len() > MAX_TEXT_LEN {
            return Err(invalid(format!(
                "member {}: name must be 1-200 characters",
                m.id
            )));
        }
        if record.version < m.created_at.millis() || !plausible(m.created_at, now) {
            return Err(invalid(format!(
                "member {}: impossible enrolment time or version",
                m.id
            )));
        }
        if m.phone.as_ref().is_some_and(|p| p.len() > 32)
            || m.email.as_ref().is_some_and(|e| e.len() > MAX_TEXT_LEN)
        {
            return Err(invalid(format!("member {}: phone or email too long", m.id)));
        }
        let body = serde_json::to_string(&record).map_err(|e| invalid(e.to_string()))?;
        members.push(CheckedMember { record, body });
    }
    let mut seen: HashMap<EntryId, usize> = HashMap::with_capacity(request.entries.len());
    let mut entries: Vec<CheckedEntry> = Vec::with_capacity(request.entries.len());
    for entry in request.entries {
        entry.check_shape().map_err(|e| invalid(e.to_string()))?;
        if entry.terminal_id != *terminal {
            return Err(invalid(format!(
                "entry {} is from terminal {}, but this token belongs to {terminal}; a till pushes only its own entries",
                entry.id, entry.terminal_id
            )));
        }
        if !plausible(entry.occurred_at, now) {
            return Err(invalid(format!(
                "entry {}: occurred_at {} is not a plausible time (check the till's clock)",
                entry.id, entry.occurred_at
            )));
        }
        let body = serde_json::to_string(&entry).map_err(|e| invalid(e.to_string()))?;
        if let Some(&i) = seen.get(&entry.id) {
            if entries[i].body != body {
                return Err(invalid(format!(
                    "entry {} appears twice with different content",
                    entry.id
                )));
            }
            continue;
        }
        if let Some(target) = entry.reverses
            && let Some(&i) = seen.get(&target)
        {
            check_reversal(&entry, &entries[i].entry).map_err(invalid)?;
        }
        seen.insert(entry.id, entries.len());
        entries.push(CheckedEntry { entry, body });
    }
    Ok(Batch { members, entries })
}

/// A reversal must exactly negate an entry of the same member that is not itself a reversal.
pub fn check_reversal(reversal: &Entry, original: &Entry) -> Result<(), String> {
    let bad = |reason: &str| format!("entry {}: {reason}", reversal.id);
    if original.member_id != reversal.member_id {
        return Err(bad("reverses another member's entry"));
    }
    let expected = rules::reverse(original, false).map_err(|r| bad(&r.to_string()))?;
    if reversal.points != expected.points || reversal.amount_minor != expected.amount_minor {
        return Err(bad("a reversal must exactly negate the entry it reverses"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EntryKind, MemberId};

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
        }
    }

    const NOW: Timestamp = Timestamp::from_millis(1_795_435_200_000);

    #[test]
    fn entries_of_another_terminal_are_refused() {
        let request = PushRequest {
            members: vec![],
            entries: vec![entry("till-b", 5)],
        };
        let err = check_push(request, &TerminalId("till-a".into()), NOW).expect_err("refused");
        assert!(err.to_string().contains("pushes only its own"), "{err}");
    }

    #[test]
    fn impossible_values_and_times_are_refused() {
        let mut zero = entry("till-a", 0);
        zero.note = Some("nothing".into());
        let mut future = entry("till-a", 5);
        future.occurred_at = NOW.plus_days(30);
        for bad in [zero, future, entry("till-a", 2_000_000_000)] {
            let request = PushRequest {
                members: vec![],
                entries: vec![bad],
            };
            assert!(check_push(request, &TerminalId("till-a".into()), NOW).is_err());
        }
    }

    #[test]
    fn a_repeated_identical_entry_counts_once() {
        let e = entry("till-a", 5);
        let request = PushRequest {
            members: vec![],
            entries: vec![e.clone(), e],
        };
        let batch = check_push(request, &TerminalId("till-a".into()), NOW).expect("accepted");
        assert_eq!(batch.entries.len(), 1);
    }
}
