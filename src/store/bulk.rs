//! Loading a block of historic members with their entries (demo data, imports).

use rusqlite::TransactionBehavior;

use super::members::insert_member;
use super::rows::{insert_numbered, next_seq, upsert_state};
use super::{Result, Store, StoreError};
use crate::domain::summary::summarise;
use crate::domain::{Entry, Member, Timestamp};

/// Page cache for bulk loads, in KiB (SQLite takes a negative `cache_size` as KiB).
const BULK_CACHE_KIB: i64 = -256 * 1024;

/// A member and every entry they have, made elsewhere.
#[derive(Debug, Clone)]
pub struct HistoricMember {
    pub member: Member,
    pub entries: Vec<Entry>,
}

impl Store {
    /// True when the store has no members yet.
    pub fn is_empty(&self) -> Result<bool> {
        let any: bool = self
            .conn
            .query_row("SELECT EXISTS (SELECT 1 FROM members)", [], |r| r.get(0))?;
        Ok(!any)
    }

    /// Appends new members with their complete histories in one transaction, deriving each
    /// member's cached state as of `as_of` from those entries. Entries must come from other
    /// terminals (never this till's sequence) and pass the same shape checks as any entry.
    pub fn load_history(&mut self, members: &[HistoricMember], as_of: Timestamp) -> Result<()> {
        for h in members {
            for e in &h.entries {
                e.check_shape()?;
                if e.member_id != h.member.id || e.terminal_id == self.terminal {
                    return Err(StoreError::BadEntry {
                        id: e.id,
                        reason: "historic entries belong to their member and another terminal"
                            .to_owned(),
                    });
                }
            }
        }
        // Histories arrive in member order, so index pages are hit in random order: give this
        // connection a bigger page cache than SQLite's 2 MB default while it loads.
        self.conn
            .pragma_update(None, "cache_size", BULK_CACHE_KIB)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut seq = next_seq(&tx)?;
        for h in members {
            insert_member(&tx, &h.member)?;
            for e in &h.entries {
                if !insert_numbered(&tx, e, seq)? {
                    return Err(StoreError::IdConflict(e.id));
                }
                seq += 1;
            }
            upsert_state(
                &tx,
                h.member.id,
                &summarise(&self.program, &h.entries, as_of),
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// What an import did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    pub members: usize,
    /// Opening balances written, and their points.
    pub balances: usize,
    pub points: i64,
    /// Nothing was written: the file was only checked.
    pub dry_run: bool,
}

impl Store {
    /// Imports members from another loyalty system, all or nothing, in one transaction: each
    /// enrolled with a new card and their join date, and each balance written as an opening
    /// balance entry by this till (so it syncs and the server judges it like any entry).
    /// Every row is checked against the program and the store first; any bad row refuses the
    /// whole file with every line's reason. With `dry_run` nothing is written.
    pub fn import_members(
        &mut self,
        parsed: &crate::domain::import::Parsed,
        actor: &str,
        at: Timestamp,
        dry_run: bool,
        progress: &mut dyn FnMut(usize),
    ) -> Result<ImportReport> {
        use crate::domain::import::{ImportError, LineError};
        let (rows, source) = (&parsed.rows, parsed.source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut errors = parsed.errors.clone();
        let mut valid = Vec::with_capacity(rows.len());
        let mut phones = std::collections::HashMap::new();
        let mut emails = std::collections::HashMap::new();
        let taken = |column: &str, value: &str| -> Result<bool> {
            Ok(tx
                .prepare_cached(&format!(
                    "SELECT EXISTS (SELECT 1 FROM members WHERE {column} = ?1)"
                ))?
                .query_row(rusqlite::params![value], |r| r.get::<_, bool>(0))?)
        };
        for row in rows {
            let line = row.line;
            let new = match row.input.clone().validate(&self.program, at.date()) {
                Ok(new) => new,
                Err(e) => {
                    errors.push(LineError {
                        line,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let mut clash = None;
            if let Some(phone) = &new.phone {
                if let Some(first) = phones.insert(phone.clone(), line) {
                    clash = Some(format!("phone {phone} is also on line {first}"));
                } else if taken("phone", phone)? {
                    clash = Some(format!("phone {phone} already belongs to a member here"));
                }
            }
            if let Some(email) = &new.email {
                if let Some(first) = emails.insert(email.clone(), line) {
                    clash = clash.or(Some(format!("email {email} is also on line {first}")));
                } else if taken("email", email)? {
                    clash = clash.or(Some(format!(
                        "email {email} already belongs to a member here"
                    )));
                }
            }
            match clash {
                Some(reason) => errors.push(LineError { line, reason }),
                None => valid.push((row, new)),
            }
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| e.line);
            return Err(StoreError::Import(ImportError::Lines(errors)));
        }
        let appender = super::ledger::Appender {
            conn: &tx,
            program: &self.program,
            terminal: &self.terminal,
        };
        let mut report = ImportReport {
            members: valid.len(),
            balances: 0,
            points: 0,
            dry_run,
        };
        for (done, (row, new)) in valid.into_iter().enumerate() {
            if done % 1_000 == 0 {
                progress(done);
            }
            let joined = row.joined.map_or(at, |j| j.min(at));
            let member = Member {
                id: crate::domain::MemberId(super::ledger::new_id(joined)),
                card: super::identify::fresh_card(&tx)?,
                name: new.name,
                phone: new.phone,
                email: new.email,
                birthday: new.birthday,
                marketing_consent: new.marketing_consent,
                created_at: joined,
            };
            insert_member(&tx, &member)?;
            let mut entries = Vec::new();
            if row.balance > 0 {
                let draft = crate::domain::rules::Draft {
                    kind: crate::domain::EntryKind::OpeningBalance,
                    points: row.balance,
                    amount_minor: None,
                    currency: None,
                    reward_id: None,
                    reverses: None,
                    note: Some(format!(
                        "opening balance from {} (line {})",
                        source.name(),
                        row.line
                    )),
                    lines: Vec::new(),
                    stamps: Default::default(),
                    returns: None,
                };
                appender.append(member.id, &mut entries, draft, actor, at)?;
                report.balances += 1;
                report.points += row.balance;
            } else {
                super::ledger::refresh_state(&tx, &self.program, member.id, &entries, at)?;
            }
        }
        if !dry_run {
            tx.commit()?;
        }
        Ok(report)
    }
}
