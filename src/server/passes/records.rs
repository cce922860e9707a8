//! What the pass service reads from and writes to the database, the same on both backends.

use crate::domain::{MemberId, Timestamp};
use crate::server::db::KeyRow;

/// What one member's passes are made from, as stored: the member record and entry bodies
/// (JSON), the current program (TOML) with its member-code key, and the rotated code keys.
pub struct PassSource {
    pub record: String,
    pub entries: Vec<String>,
    pub program: String,
    pub code_key: Vec<u8>,
    pub keys: Vec<KeyRow>,
}

/// An issued pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassRow {
    /// The card number the pass carries.
    pub serial: String,
    pub member_id: MemberId,
    /// Milliseconds; the update tag and Last-Modified.
    pub updated_at: i64,
    /// The fingerprint of what the pass showed at its last update.
    pub shown: String,
    pub voided: bool,
}

/// A pass whose content changed: it gets a new tag and its devices a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassChange {
    pub serial: String,
    pub shown: String,
    pub voided: bool,
}

/// Where a queued push goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Apple's push service, to one device's push token.
    Apns,
    /// Google's Wallet Objects API: the pass's object is brought up to date.
    Google,
}

impl Channel {
    /// The name stored in `pass_pushes.channel`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Apns => "apns",
            Channel::Google => "google",
        }
    }

    /// The channel a stored name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "apns" => Some(Channel::Apns),
            "google" => Some(Channel::Google),
            _ => None,
        }
    }
}

/// A push waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedPush {
    pub id: i64,
    pub channel: Channel,
    pub serial: String,
    /// The APNs push token; empty for Google.
    pub target: String,
    /// Changes folded into this row so far; the row is done only if none came in while sending.
    pub generation: i64,
    pub attempts: i64,
}

/// What the updater learns of one look at the ledger: the members with passes that entries or
/// member versions in `(after, upto]` touched.
#[derive(Debug, Clone, Default)]
pub struct Touched {
    pub members: Vec<MemberId>,
    pub upto: i64,
    /// The server's last sequence number when this was read.
    pub last: i64,
}

/// What came of a batch of sends, recorded in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Settled {
    /// Delivered or dropped: `(id, generation)`; the row goes unless a change came in since.
    pub done: Vec<(i64, i64)>,
    /// The device is gone: `(id, push token)`; the row and every registration under the token go.
    pub gone: Vec<(i64, String)>,
    /// To try again: `(id, when, why)`.
    pub retry: Vec<(i64, Timestamp, String)>,
}
