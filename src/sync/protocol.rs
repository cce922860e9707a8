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
