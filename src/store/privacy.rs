//! Personal data rights: everything this till holds about a member, as one document.

use rusqlite::{Connection, TransactionBehavior, params};
use serde::Serialize;

use super::rows::member_entries;
use super::sync::member_record;
use super::{Result, Store, StoreError};
use crate::domain::member::ERASED_NAME;
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

/// One member who agreed to hear from the shop, for a marketing list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MarketingContact {
    pub card: String,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// What stays of a member besides their record after erasure: no NFC tag links, no name
/// words for search, no set-aside copies of their earlier records.
pub(super) fn forget_traces(conn: &Connection, member: MemberId) -> Result<()> {
    conn.execute(
        "DELETE FROM member_name_tokens WHERE member_id = ?1",
        params![member.0],
    )?;
    conn.execute(
        "DELETE FROM nfc_tags WHERE member_id = ?1",
        params![member.0],
    )?;
    conn.execute(
        "DELETE FROM quarantine WHERE kind = 'member' AND record LIKE ?1",
        params![format!("member:{member}:%")],
    )?;
    Ok(())
}

impl Store {
    /// Erases the member's personal data at their request: name (a placeholder stays), phone,
    /// email, birthday and consent, tag links and set-aside copies. The member id, card and every
    /// ledger entry stay, so every total stays exact. The erased record is a new version, so
    /// every other till and the server take it on their next sync. Deleted bytes are
    /// overwritten (`secure_delete`) and the write-ahead log is emptied, so no copy stays in
    /// this till's files.
    pub fn erase_member(&mut self, member: MemberId, at: Timestamp) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx
            .query_row(
                "SELECT version FROM members WHERE id = ?1",
                params![member.0],
                |r| r.get(0),
            )
            .map_err(|_| StoreError::UnknownMember(member))?;
        tx.execute(
            "UPDATE members SET name = ?2, phone = NULL, email = NULL, birthday = NULL,
                    marketing_consent = 0, version = ?3, erased_at = ?4
             WHERE id = ?1",
            params![
                member.0,
                ERASED_NAME,
                at.millis().max(version + 1),
                at.millis()
            ],
        )?;
        forget_traces(&tx, member)?;
        tx.execute(
            "INSERT INTO member_outbox (member_id) VALUES (?1) ON CONFLICT DO NOTHING",
            params![member.0],
        )?;
        tx.commit()?;
        self.scrub_log()
    }

    /// The members who agreed to marketing and can be reached, for any list meant for
    /// marketing: nobody without that consent, and nobody erased, is ever in it.
    pub fn marketing_contacts(&self) -> Result<Vec<MarketingContact>> {
        let mut stmt = self.conn.prepare(
            "SELECT card, name, email, phone FROM members
             WHERE marketing_consent = 1 AND erased_at IS NULL
               AND (email IS NOT NULL OR phone IS NOT NULL)
             ORDER BY name, card",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(MarketingContact {
                    card: r.get(0)?,
                    name: r.get(1)?,
                    email: r.get(2)?,
                    phone: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Writes a consistent copy of this store to `path` (which must not exist yet), safe while
    /// the till runs. Put back later, the copy is an older copy: its next sync takes back what
    /// the server holds of this till since and numbers newer entries after it.
    pub fn backup(&self, path: &std::path::Path) -> Result<()> {
        if path.exists() {
            return Err(StoreError::BadRecord(format!(
                "{} exists already; choose a new file for the backup",
                path.display()
            )));
        }
        self.conn.execute(
            "VACUUM INTO ?1",
            params![path.to_string_lossy().into_owned()],
        )?;
        Ok(())
    }

    /// Empties the write-ahead log into the database (whose deleted bytes are zeroed), so
    /// erased data leaves no copy in either file.
    pub fn scrub_log(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}
