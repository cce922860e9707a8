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
use crate::domain::{Entry, EntryId, Program, TerminalId, Timestamp};
use crate::sync::protocol::{ConfigQuery, MAX_PUSH_ENTRIES, PushRequest};

/// The terminal id the server writes partner entries under; no till may take it.
pub const PARTNER_TERMINAL: &str = "server-partners";

/// Most lines one file may hold: with the reversals of earlier lines, one push.
pub const MOST_LINES: usize = MAX_PUSH_ENTRIES / 2;

/// Whether a till's claimed id is one the server keeps for itself.
pub fn reserved(terminal: &TerminalId) -> bool {
    terminal.0 == PARTNER_TERMINAL
}

/// Why a partner file was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum PartnerFileError {
    #[error("the file has {0} lines; the server records at most {MOST_LINES} at once: split it")]
    TooLarge(usize),
    #[error("the stored program is invalid: {0}")]
    Program(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Refused(#[from] PushRefusal),
}

/// What a partner file did at the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerImport {
    pub report: PartnerImport,
    /// The server's own earlier lines that did not stand (a till had recorded the same line
    /// first, while apart), reversed with this file.
    pub taken_back: usize,
}

/// Records the partner file `bytes` (or, with `dry_run`, only checks it). With the file, the
/// server reverses its own earlier lines that did not stand: a till recorded the same
/// (partner, reference) first while it was apart.
pub async fn import(
    db: &Db,
    bytes: &[u8],
    dry_run: bool,
    now: Timestamp,
) -> Result<ServerImport, PartnerFileError> {
    let config = db.config(None, ConfigQuery::default()).await?;
    let program = Program::from_toml(&config.program_toml)
        .map_err(|e| PartnerFileError::Program(e.to_string()))?;
    let lines = partners::read(&program, bytes);
    if lines.len() > MOST_LINES {
        return Err(PartnerFileError::TooLarge(lines.len()));
    }
    let terminal = TerminalId(PARTNER_TERMINAL.to_owned());
    let cards: Vec<String> = lines
        .iter()
        .filter_map(|l| l.as_ref().ok())
        .map(|l| l.card.to_string())
        .collect();
    let view = db.partner_view(cards, &terminal).await?;
    let (good, report) = partners::sort_lines(&lines, |card| {
        Ok::<_, DbError>(view.by_card.get(card.as_str()).cloned())
    })?;
    let not_standing: Vec<&Entry> = view
        .own
        .iter()
        .flat_map(|entries| partners::duplicates(entries))
        .filter(|e| e.terminal_id == terminal)
        .collect();
    if dry_run || !report.refused.is_empty() {
        return Ok(ServerImport {
            report,
            taken_back: 0,
        });
    }
    let drafts = not_standing
        .iter()
        .map(|line| crate::domain::rules::reverse(line, false).map(|d| (line.member_id, d)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PartnerFileError::Db(DbError::Internal(e.to_string())))?;
    let taken_back = drafts.len();
    let drafts = drafts.into_iter().chain(good.iter().map(|(member, line)| {
        (
            *member,
            crate::domain::rules::partner_earn(&line.partner, line.points, &line.reference),
        )
    }));
    let entries: Vec<Entry> = drafts
        .zip(view.next_seq..)
        .map(|((member, draft), seq)| {
            draft.into_entry(
                EntryId(uuid_v7(now, rand::random())),
                terminal.clone(),
                seq,
                member,
                now,
                "tillpass-server",
            )
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
    Ok(ServerImport {
        report: PartnerImport {
            written: true,
            ..report
        },
        taken_back,
    })
}

/// For a partner file: by card in use, the member with their partner lines and reversals; the
/// same for each member with partner lines of the server's own; the server's next sequence.
#[derive(Debug, Clone, Default)]
pub struct PartnerView {
    pub by_card: HashMap<String, (crate::domain::MemberId, Vec<Entry>)>,
    pub own: Vec<Vec<Entry>>,
    pub next_seq: i64,
}
