//! The sync wire format (JSON over HTTP), shared by the till's client and the central server.
//!
//! Every request carries `Authorization: Bearer <token>` and `Tillpass-Terminal: <terminal id>`.
//! - `POST /v1/sync/push` [`PushRequest`] -> [`PushResponse`]: members, then entries, stored
//!   insert-if-absent by id, each given the next global `server_seq`.
//! - `GET /v1/sync/pull?after=N&limit=L` -> [`PullResponse`]: members and other terminals'
//!   entries with `server_seq > N`, in order, and the cursor to ask from next.
//! - `GET /v1/sync/config` -> [`ConfigResponse`]: the program in force and its member-code key.
//! - `GET /v1/members/{id}/balance` -> [`BalanceResponse`]: the live balance.
//! - `GET /v1/double-spends` -> [`DoubleSpendList`].
//! - `GET /health`: no authentication.

use serde::{Deserialize, Serialize};

use crate::domain::{CardNumber, Entry, EntryId, MemberId, TerminalId, Timestamp};
pub use crate::domain::{MemberRecord, RetiredCard};

/// The header naming the terminal a token belongs to.
pub const TERMINAL_HEADER: &str = "Tillpass-Terminal";
/// Most entries in one push; the client batches below it.
pub const MAX_PUSH_ENTRIES: usize = 10_000;
/// Most members in one push.
pub const MAX_PUSH_MEMBERS: usize = 2_000;
/// Largest request body the server reads, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Most records one pull returns.
pub const MAX_PULL_LIMIT: usize = 20_000;

/// A batch from one till.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    #[serde(default)]
    pub members: Vec<MemberRecord>,
    #[serde(default)]
    pub entries: Vec<Entry>,
}

/// What the server did with a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResponse {
    /// Entries stored now.
    pub inserted: usize,
    /// Entries the server already had, identical (a retry).
    pub duplicates: usize,
    /// Member records stored or updated.
    pub members: usize,
    /// The highest server_seq after this push.
    pub server_seq: i64,
}

/// The pull query.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PullQuery {
    pub after: i64,
    pub limit: usize,
}

/// One page of records after a cursor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PullResponse {
    /// Apply these before the entries.
    pub members: Vec<MemberRecord>,
    pub entries: Vec<Entry>,
    /// Ask from here next time.
    pub next: i64,
    /// More records wait after `next`.
    pub more: bool,
}

/// The program in force.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigResponse {
    pub program_version: i64,
    pub program_toml: String,
    /// The member-code key, base64.
    pub code_key: String,
}

/// A member's balance as the server knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceResponse {
    pub member_id: MemberId,
    pub balance: i64,
    pub server_seq: i64,
}

/// A redemption that took a member's balance below zero (offline tills spent the same points).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoubleSpend {
    pub member_id: MemberId,
    pub card: CardNumber,
    pub name: String,
    /// The redemption that overdrew.
    pub entry_id: EntryId,
    pub terminal_id: TerminalId,
    pub occurred_at: Timestamp,
    pub points: i64,
    /// The member's balance right after that redemption arrived.
    pub balance_after: i64,
}

/// Double spends, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DoubleSpendList {
    pub double_spends: Vec<DoubleSpend>,
}

/// An error body: what went wrong, in words.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EntryKind, Member};

    /// The domain types are the wire and storage format (entry and member bodies are stored as
    /// this JSON on both sides). Renaming a field or a kind in Rust must not change these bytes:
    /// keep the old name with `#[serde(rename = "...")]`.
    #[test]
    fn the_wire_format_is_pinned() {
        let entry = Entry {
            id: EntryId(uuid::Uuid::from_u128(1)),
            terminal_id: TerminalId("till-1".into()),
            terminal_seq: 7,
            member_id: MemberId(uuid::Uuid::from_u128(2)),
            kind: EntryKind::Reverse,
            points: -45,
            amount_minor: Some(-450),
            currency: Some("GBP".into()),
            reward_id: None,
            reverses: Some(EntryId(uuid::Uuid::from_u128(3))),
            occurred_at: Timestamp::from_millis(1_795_435_200_000),
            note: Some("n".into()),
            actor: "a".into(),
        };
        let entry_json = r#"{"id":"00000000-0000-0000-0000-000000000001","terminal_id":"till-1","terminal_seq":7,"member_id":"00000000-0000-0000-0000-000000000002","kind":"reverse","points":-45,"amount_minor":-450,"currency":"GBP","reward_id":null,"reverses":"00000000-0000-0000-0000-000000000003","occurred_at":"2026-11-23T12:00:00.000Z","note":"n","actor":"a"}"#;
        assert_eq!(
            serde_json::to_string(&entry).ok().as_deref(),
            Some(entry_json)
        );
        assert_eq!(serde_json::from_str::<Entry>(entry_json).ok(), Some(entry));

        let record = MemberRecord {
            member: Member {
                id: MemberId(uuid::Uuid::from_u128(2)),
                card: CardNumber::from_payload(123_456_789),
                name: "Ada".into(),
                phone: Some("+447400123456".into()),
                email: None,
                birthday: Some(time::macros::date!(1990 - 12 - 10)),
                marketing_consent: true,
                created_at: Timestamp::from_millis(1_795_435_200_000),
            },
            version: 1_795_435_200_001,
            retired_cards: vec![RetiredCard {
                card: CardNumber::from_payload(1),
                retired_at: Timestamp::from_millis(1_795_435_200_001),
                replaced_by: CardNumber::from_payload(123_456_789),
            }],
        };
        let record_json = serde_json::to_string(&record).unwrap_or_default();
        let expected = format!(
            r#"{{"id":"00000000-0000-0000-0000-000000000002","card":"{card}","name":"Ada","phone":"+447400123456","email":null,"birthday":[1990,344],"marketing_consent":true,"created_at":"2026-11-23T12:00:00.000Z","version":1795435200001,"retired_cards":[{{"card":"{old}","retired_at":"2026-11-23T12:00:00.001Z","replaced_by":"{card}"}}]}}"#,
            card = record.member.card,
            old = record.retired_cards[0].card,
        );
        assert_eq!(record_json, expected);
        assert_eq!(
            serde_json::from_str::<MemberRecord>(&expected).ok(),
            Some(record)
        );
    }
}
