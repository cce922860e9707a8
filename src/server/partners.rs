//! Partner points through the server, for a chain: `tillpass-server partner-points FILE` reads
//! a partner's file (CSV or JSON, as `tillpass partner-points` does at a till), refuses it whole
//! with each bad line's reason, or writes its lines as `partner_earn` entries of the server's
//! own terminal ([`PARTNER_TERMINAL`]). They go through the push path (the possibility check,
//! all or nothing) and reach every till with its next pull.

use std::collections::HashMap;

use super::db::{Db, DbError};
use super::validate::{PushRefusal, check_push};
use crate::domain::entry::uuid_v7;
use crate::domain::partners::{self, PartnerImport};
use crate::domain::{Entry, EntryId, EntryKind, Program, TerminalId, Timestamp};
use crate::sync::protocol::{ConfigQuery, MAX_PUSH_ENTRIES, PushRequest};

/// The terminal id the server writes partner entries under; no till may take it.
pub const PARTNER_TERMINAL: &str = "server-partners";

/// Whether a till's claimed id is one the server keeps for itself.
pub fn reserved(terminal: &TerminalId) -> bool {
    terminal.0 == PARTNER_TERMINAL
}

/// Why a partner file was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum PartnerFileError {
    #[error(
        "the file has {0} lines; the server records at most {MAX_PUSH_ENTRIES} at once: split it"
    )]
    TooLarge(usize),
    #[error("the stored program is invalid: {0}")]
    Program(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Refused(#[from] PushRefusal),
}

/// Records the partner file `bytes` (or, with `dry_run`, only checks it).
pub async fn import(
    db: &Db,
    bytes: &[u8],
    dry_run: bool,
    now: Timestamp,
) -> Result<PartnerImport, PartnerFileError> {
    let config = db.config(None, ConfigQuery::default()).await?;
    let program = Program::from_toml(&config.program_toml)
        .map_err(|e| PartnerFileError::Program(e.to_string()))?;
    let lines = partners::read(&program, bytes);
    if lines.len() > MAX_PUSH_ENTRIES {
        return Err(PartnerFileError::TooLarge(lines.len()));
    }
    let terminal = TerminalId(PARTNER_TERMINAL.to_owned());
    let cards: Vec<String> = lines
        .iter()
        .filter_map(|l| l.as_ref().ok())
        .map(|l| l.card.to_string())
        .collect();
    let (found, next_seq) = db.partner_view(cards, &terminal).await?;
    let (good, report) = partners::sort_lines(&lines, |card| {
        Ok::<_, DbError>(found.get(card.as_str()).cloned())
    })?;
    if dry_run || !report.refused.is_empty() {
        return Ok(report);
    }
    let entries: Vec<Entry> = good
        .iter()
        .zip(next_seq..)
        .map(|((member, line), seq)| {
            let draft =
                crate::domain::rules::partner_earn(&line.partner, line.points, &line.reference);
            Entry {
                id: EntryId(uuid_v7(now, rand::random())),
                terminal_id: terminal.clone(),
                terminal_seq: seq,
                member_id: *member,
                kind: EntryKind::PartnerEarn,
                points: draft.points,
                amount_minor: None,
                currency: None,
                reward_id: draft.reward_id,
                reverses: None,
                occurred_at: now,
                note: draft.note,
                actor: "tillpass-server".to_owned(),
                lines: Vec::new(),
                stamps: Default::default(),
                returns: None,
            }
        })
        .collect();
    let request = PushRequest {
        entries,
        ..PushRequest::default()
    };
    let batch = check_push(request, &terminal, now).map_err(|e| match e {
        super::validate::BatchError::Refused(r) => PartnerFileError::Refused(r),
        other => PartnerFileError::Db(DbError::Internal(other.to_string())),
    })?;
    db.push(batch, now).await?;
    Ok(PartnerImport {
        written: true,
        ..report
    })
}

/// A card's member and their partner lines and reversals, by card.
pub type PartnerView = HashMap<String, (crate::domain::MemberId, Vec<Entry>)>;
