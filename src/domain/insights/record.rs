//! What the report counts of one member, kept beside the ledger by a till and by the server.

use super::{Digest, MemberFacts, TierChange, Totals};
use crate::domain::{Entry, Program, Timestamp};

/// The end of every period: a digest made for it counts every entry.
const ANY_PERIOD: Timestamp = Timestamp::from_millis(i64::MAX);

/// What the report counts of one member: their enrolment and consent, and the digest of their
/// entries (none without entries).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub member: MemberFacts,
    pub digest: Option<Digest>,
}

impl Record {
    /// The record of `member` with these entries of theirs (oldest first).
    pub fn of(program: &Program, member: MemberFacts, entries: &[Entry]) -> Self {
        let digest = (!entries.is_empty()).then(|| Digest::of(program, entries, ANY_PERIOD));
        Self { member, digest }
    }

    /// Adds (`sign` 1) or takes off (`sign` -1) what the record counts for in the totals.
    pub fn count(&self, totals: &mut Totals, sign: i64) {
        let none = Digest::default();
        let digest = self.digest.as_ref().unwrap_or(&none);
        totals.count(self.member.enrolled_at, digest, sign);
    }

    /// The member's last purchase that stood, in milliseconds.
    pub fn last_sale(&self) -> Option<i64> {
        self.digest
            .as_ref()
            .and_then(Digest::last_sale)
            .map(|t| t.millis())
    }

    /// Each change of the member's tier, oldest first.
    pub fn tier_changes(&self) -> Vec<TierChange> {
        self.digest
            .as_ref()
            .map(|d| d.tier_changes().collect())
            .unwrap_or_default()
    }
}

/// A record as stored, with the columns kept beside it for the report's reads.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// The record; `None` when its digest does not decode.
    pub record: Option<Record>,
    /// The last purchase column, in milliseconds.
    pub last_sale: Option<i64>,
    /// The tier change rows, each with the enrolment stored beside it.
    pub tier_changes: Vec<(TierChange, Timestamp)>,
}

impl StoredRecord {
    /// Whether this is `derived` as written: the record and every column it gives.
    pub fn is(&self, derived: &Record) -> bool {
        let enrolled_at = derived.member.enrolled_at;
        self.record.as_ref() == Some(derived)
            && self.last_sale == derived.last_sale()
            && self
                .tier_changes
                .iter()
                .copied()
                .eq(derived.tier_changes().into_iter().map(|c| (c, enrolled_at)))
    }
}
