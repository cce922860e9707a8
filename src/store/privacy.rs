//! Personal data rights: everything this till holds about a member, as one document.

use rusqlite::params;
use serde::Serialize;

use super::rows::member_entries;
use super::sync::member_record;
use super::{Result, Store};
use crate::domain::{Entry, MemberId, MemberRecord, MemberSummary, Timestamp};

/// Everything this till holds about one member (`tillpass member export`).
#[derive(Debug, Clone, Serialize)]
pub struct MemberExport {
    /// When the export was made, and by which till.
    pub exported_at: Timestamp,
    pub terminal_id: String,
    /// The member record: name, card, phone, email, birthday, marketing consent, enrolment
    /// time, version, and the cards they held before.
    pub record: MemberRecord,
    /// Balance and tier as of the export.
    pub summary: MemberSummary,
    /// NFC tags linked to them (uid, linked at).
    pub nfc_tags: Vec<(String, Timestamp)>,
    /// Every ledger entry about them, oldest first.
    pub entries: Vec<Entry>,
}

impl Store {
    /// Everything this till holds about `member`.
    pub fn export_member(&self, member: MemberId, at: Timestamp) -> Result<MemberExport> {
        let record = member_record(&self.conn, member)?;
        let nfc_tags = self
            .conn
            .prepare_cached(
                "SELECT uid, linked_at FROM nfc_tags WHERE member_id = ?1 ORDER BY linked_at",
            )?
            .query_map(params![member.0], |r| {
                Ok((r.get::<_, String>(0)?, Timestamp::from_millis(r.get(1)?)))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(MemberExport {
            exported_at: at,
            terminal_id: self.terminal.0.clone(),
            summary: self.summary_at(member, at)?,
            entries: member_entries(&self.conn, member)?,
            nfc_tags,
            record,
        })
    }
}
