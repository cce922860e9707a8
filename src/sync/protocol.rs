//! The sync wire format (JSON over HTTP), shared by the till's client and the central server.
//!
//! Every request carries `Authorization: Bearer <token>` and `Tillpass-Terminal: <terminal id>`.
//! - `POST /v1/sync/push` [`PushRequest`] -> [`PushResponse`]: members, then entries, stored
//!   insert-if-absent by id, each given the next global `server_seq`.
//! - `GET /v1/sync/pull?after=N&limit=L` -> [`PullResponse`]: members and other terminals'
//!   entries with `server_seq > N`, in order, and the cursor to ask from next.
//! - `GET /v1/sync/config?known=V&cursor=C` [`ConfigQuery`] -> [`ConfigResponse`]: the program
//!   in force and its member-code key, program versions after `V`, the server's epoch and seq,
//!   the highest terminal_seq it holds for the asking till, and which record is at seq `C`.
//! - `GET /v1/sync/own?after=S&limit=L` [`OwnQuery`] -> [`PullResponse`]: the asking till's own
//!   entries with `terminal_seq > S` (and the members they need), for a till restored from a
//!   backup to take back what it had pushed; `next` is a terminal_seq.
//! - `GET /v1/members/{id}/balance` -> [`BalanceResponse`]: the live balance.
//! - `GET /v1/members/by-card/{card}` -> [`CardLookup`]: the member holding a card, with their
//!   live balance, for a till that has not pulled them yet.
//! - `GET /v1/double-spends` -> [`DoubleSpendList`].
//! - `POST /v1/passes/link` [`PassLinkRequest`] -> [`PassLinkResponse`]: a wallet pass link.
//! - `GET /health`: no authentication.

use serde::{Deserialize, Serialize};

pub use crate::domain::insights::{GuestSale, GuestSaleVoid, RecommendAnswer};
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
    /// Sales without a member since the last push (for the chain report).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guest_sales: Vec<GuestSale>,
    /// Answers to the recommend question since the last push.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<RecommendAnswer>,
    /// This till's sales without a member undone since the last push.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voids: Vec<GuestSaleVoid>,
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

/// Most records one own-entries page returns.
pub const MAX_OWN_LIMIT: usize = 5_000;
/// The most bytes of JSON one pull page carries (a page stops early rather than exceed it).
pub const MAX_PAGE_BYTES: usize = 32 * 1024 * 1024;
/// The most bytes of an answer the till's client reads.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Longest reward id on an entry.
pub const MAX_REWARD_ID_LEN: usize = 40;
/// Most retired cards one member record may carry.
pub const MAX_RETIRED_CARDS: usize = 100;

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
    /// Which record is at seq `next` ([`record_name`]); a till keeps it with its cursor and
    /// checks it at the next round, so a server restored from an older copy is noticed even
    /// after new records have taken the old numbers.
    #[serde(default)]
    pub next_record: Option<String>,
}

/// The name of a record at a server_seq: `entry:<id>` or `member:<id>:<version>`.
pub fn record_name(kind: RecordKind, id: uuid::Uuid, version: i64) -> String {
    match kind {
        RecordKind::Entry => format!("entry:{id}"),
        RecordKind::Member => format!("member:{id}:{version}"),
    }
}

/// What a server_seq numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Entry,
    Member,
}

/// The own-entries query.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct OwnQuery {
    pub after: i64,
    pub limit: usize,
}

/// The config query: what the till already has.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ConfigQuery {
    /// The highest program version the till holds (0: none).
    #[serde(default)]
    pub known: i64,
    /// The till's pull cursor, to name the record there.
    #[serde(default)]
    pub cursor: i64,
}

/// One program version and when the server installed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramVersionBody {
    pub version: i64,
    pub installed_at: Timestamp,
    pub toml: String,
}

/// The program in force, and what a till checks before it pushes and pulls.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigResponse {
    pub program_version: i64,
    pub program_toml: String,
    /// The member-code key, base64.
    pub code_key: String,
    /// Program versions after the query's `known`, oldest first: the history entries are
    /// judged by.
    #[serde(default)]
    pub programs: Vec<ProgramVersionBody>,
    /// Names this server database; a database restored from a backup or replaced has another.
    #[serde(default)]
    pub epoch: String,
    /// The highest server_seq.
    #[serde(default)]
    pub server_seq: i64,
    /// The highest terminal_seq the server holds for the asking till (0: none).
    #[serde(default)]
    pub terminal_seq: i64,
    /// The record at the query's `cursor` ([`record_name`]), `None` past the end or at 0.
    #[serde(default)]
    pub record_at_cursor: Option<String>,
    /// Member-code keys added since key 0 and not retired, derived for member codes only.
    #[serde(default)]
    pub code_keys: Vec<CodeKeyBody>,
    /// The key new member codes use (0: key 0).
    #[serde(default)]
    pub code_key_current: u32,
    /// Key 0 is retired: codes printed under it are refused.
    #[serde(default)]
    pub code_key0_retired: bool,
}

/// One member-code key: its id and its 32 bytes, base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeKeyBody {
    pub id: u32,
    pub key: String,
}

/// A member's balance as the server knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceResponse {
    pub member_id: MemberId,
    pub balance: i64,
    pub server_seq: i64,
}

/// The most entries `GET /v1/members/{id}/history` serves; a member with more is left to the
/// pull.
pub const MAX_HISTORY: usize = 5_000;

/// `GET /v1/members/{id}/history`: a member's record and every entry of theirs the server
/// holds from other tills, in arrival order, for a till still catching up: with them it shows
/// the member, and prices their sales, as their whole history has them (tier, offers, stamps)
/// before its pull gets there. `complete` is false, and `entries` empty, for a member with
/// more than [`MAX_HISTORY`] entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberHistory {
    pub member: MemberRecord,
    pub entries: Vec<Entry>,
    pub complete: bool,
}

/// The member whose card in use `card` is, as the server holds them, with their live balance:
/// what a till still catching up (or not yet synced since the member enrolled elsewhere) shows
/// for a scan. `member` is `None` when no member holds the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardLookup {
    pub member: Option<MemberRecord>,
    pub balance: i64,
}

/// `POST /v1/sync/seed`: a till with members of its own, joining a server that holds none yet,
/// offers its member-code key (base64), so the codes and cards it gave out keep working across
/// the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRequest {
    pub code_key: String,
}

/// What the server did with an offered key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeedResponse {
    /// The server now signs member codes with the till's key.
    Taken,
    /// The server already had that key.
    AlreadyHeld,
}

/// `POST /v1/passes/link`: a wallet pass link for a member the server knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassLinkRequest {
    pub member_id: MemberId,
}

/// The member's pass link (the till shows it as a QR code) and the pass's serial number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassLinkResponse {
    pub url: String,
    pub serial: String,
    /// The server signs with its demo chain: phones will not install the pass.
    #[serde(default)]
    pub demo: bool,
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

/// An error body: what went wrong, in words; for a refused entry, which one and the rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    /// The refused entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_id: Option<EntryId>,
    /// The rule it broke (a stable name, e.g. `earn_points`, `sequence_reused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// Rule names of push refusals about the terminal's sequence, which tell a till it was restored
/// from an older copy (reused) or skipped numbers (gap).
pub const RULE_SEQUENCE_REUSED: &str = "sequence_reused";
/// See [`RULE_SEQUENCE_REUSED`].
pub const RULE_SEQUENCE_GAP: &str = "sequence_gap";

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
            lines: Vec::new(),
            stamps: Default::default(),
            returns: None,
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
            erased_at: None,
            referred_by: None,
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
