//! The pass service's calls on either backend.

use super::records::{PassChange, PassRow, PassSource, QueuedPush, Settled, Touched};
use crate::domain::{MemberId, Timestamp};
use crate::server::db::{Db, DbError};

/// Calls the same method on whichever backend is open.
macro_rules! both {
    ($db:expr, $method:ident ( $($arg:expr),* )) => {
        match $db {
            Db::Sqlite(db) => db.$method($($arg),*).await,
            Db::Postgres(db) => db.$method($($arg),*).await,
        }
    };
}

impl Db {
    /// What `member`'s passes are made from; `None` for an unknown member.
    pub async fn pass_source(&self, member: MemberId) -> Result<Option<PassSource>, DbError> {
        both!(self, pass_source(member))
    }

    /// The member whose card in use is `card`.
    pub async fn member_by_card(&self, card: String) -> Result<Option<MemberId>, DbError> {
        both!(self, member_by_card(card))
    }

    /// Stores a new pass link for `member` under the hash of its token.
    pub async fn pass_link_add(
        &self,
        token_hash: String,
        member: MemberId,
        now: Timestamp,
    ) -> Result<(), DbError> {
        both!(self, pass_link_add(token_hash, member, now))
    }

    /// The member a live link token hash leads to.
    pub async fn pass_link_member(&self, token_hash: String) -> Result<Option<MemberId>, DbError> {
        both!(self, pass_link_member(token_hash))
    }

    /// Revokes every live link of `member`; how many there were.
    pub async fn pass_links_revoke(
        &self,
        member: MemberId,
        now: Timestamp,
    ) -> Result<usize, DbError> {
        both!(self, pass_links_revoke(member, now))
    }

    /// Records pass `serial` if new; the stored pass either way.
    pub async fn pass_issue(
        &self,
        serial: String,
        member: MemberId,
        shown: String,
        google: bool,
        now: Timestamp,
    ) -> Result<PassRow, DbError> {
        both!(self, pass_issue(serial, member, shown, google, now))
    }

    /// The pass with serial number `serial`.
    pub async fn pass_row(&self, serial: String) -> Result<Option<PassRow>, DbError> {
        both!(self, pass_row(serial))
    }

    /// Registers a device for a pass's updates; true if new.
    pub async fn pass_register(
        &self,
        device: String,
        pass_type: String,
        serial: String,
        push_token: String,
        now: Timestamp,
    ) -> Result<bool, DbError> {
        both!(
            self,
            pass_register(device, pass_type, serial, push_token, now)
        )
    }

    /// Forgets a device's registration for a pass; false if there was none.
    pub async fn pass_unregister(
        &self,
        device: String,
        pass_type: String,
        serial: String,
    ) -> Result<bool, DbError> {
        both!(self, pass_unregister(device, pass_type, serial))
    }

    /// The device's passes updated after `since`, with their tags.
    pub async fn pass_updated(
        &self,
        device: String,
        pass_type: String,
        since: Option<i64>,
    ) -> Result<Vec<(String, i64)>, DbError> {
        both!(self, pass_updated(device, pass_type, since))
    }

    /// The cursor, and the members with passes touched after it (up to `batch` further).
    pub async fn pass_touched(&self, batch: i64) -> Result<(i64, Touched), DbError> {
        both!(self, pass_touched(batch))
    }

    /// Every pass of `member`.
    pub async fn passes_of(&self, member: MemberId) -> Result<Vec<PassRow>, DbError> {
        both!(self, passes_of(member))
    }

    /// Applies changed passes and moves the cursor, in one transaction.
    pub async fn pass_apply(
        &self,
        changes: Vec<PassChange>,
        after: i64,
        upto: i64,
        google: bool,
        now: Timestamp,
    ) -> Result<bool, DbError> {
        both!(self, pass_apply(changes, after, upto, google, now))
    }

    /// Pushes due by `now`, and when the next is due.
    pub async fn pass_due(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<(Vec<QueuedPush>, Option<i64>), DbError> {
        both!(self, pass_due(now, limit))
    }

    /// Records what came of a batch of sends.
    pub async fn pass_settle(&self, settled: Settled) -> Result<(), DbError> {
        both!(self, pass_settle(settled))
    }

    /// Queued pushes, and how many failed at least once.
    pub async fn pass_queue_len(&self) -> Result<(i64, i64), DbError> {
        both!(self, pass_queue_len())
    }
}
