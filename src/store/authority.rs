//! The till's side of the server's authority: the program versions entries are judged by, the
//! screening of pulled records with the same possibility check the server runs on pushes, the
//! quarantine for records this till cannot apply, and taking back its own entries after a
//! restore from an older copy of its file.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use super::ledger::refresh_state;
use super::rows::{ENTRY_COLUMNS, entry_by_id, entry_from_row, insert_entry, member_entries};
use super::sync::apply_member;
use super::{Result, Store, StoreError};
use crate::domain::possible::{
    Known, Needs, ProgramHistory, ProgramVersion, Rule, judge_batch, needs,
};
use crate::domain::{
    Entry, EntryId, EntryKind, MemberId, MemberRecord, Program, TerminalId, Timestamp,
};
use crate::sync::protocol::{ProgramVersionBody, RecordKind, record_name};

/// A pulled record set aside.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Quarantined {
    /// `entry:<id>` or `member:<id>:<version>`.
    pub record: String,
    pub reason: String,
    pub at: Timestamp,
}

/// What applying a pulled page did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Entries new here.
    pub inserted: usize,
    /// Records set aside in the quarantine.
    pub quarantined: usize,
}

/// What taking back this till's own entries from the server did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Adopted {
    /// Entries the server had from this till and this file did not (lost with a restore).
    pub recovered: usize,
    /// Unpushed entries numbered again after them.
    pub renumbered: usize,
    /// Unpushed entries those rule out, moved from the ledger to the quarantine.
    pub set_aside: usize,
}

fn quarantine(
    conn: &Connection,
    kind: RecordKind,
    record: &str,
    body: &str,
    reason: &str,
    at: Timestamp,
) -> Result<()> {
    let kind = match kind {
        RecordKind::Entry => "entry",
        RecordKind::Member => "member",
    };
    conn.prepare_cached(
        "INSERT INTO quarantine (record, kind, body, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (record) DO UPDATE SET reason = excluded.reason, at = excluded.at",
    )?
    .execute(params![record, kind, body, reason, at.millis()])?;
    Ok(())
}

/// Sets `e` aside in the quarantine with `reason`.
fn quarantine_entry(conn: &Connection, e: &Entry, reason: &str, at: Timestamp) -> Result<()> {
    let body = serde_json::to_string(e).unwrap_or_default();
    quarantine(
        conn,
        RecordKind::Entry,
        &entry_record_name(e),
        &body,
        reason,
        at,
    )
}

fn member_record_name(rec: &MemberRecord) -> String {
    record_name(RecordKind::Member, rec.member.id.0, rec.version)
}

fn entry_record_name(e: &Entry) -> String {
    record_name(RecordKind::Entry, e.id.0, 0)
}

/// Whether a store error is about the record (quarantine it) rather than the store (stop).
fn about_the_record(e: &StoreError) -> bool {
    match e {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
            f.code == rusqlite::ErrorCode::ConstraintViolation
        }
        StoreError::Member(_)
        | StoreError::Merge(_)
        | StoreError::Shape(_)
        | StoreError::Refused(_) => true,
        _ => false,
    }
}

/// Applies `rec` on `conn`, or says why this till cannot take it: a record no till could have
/// written (its card retired yet in use), or one the store refuses. On a reason, what was
/// written of it must be rolled back by the caller.
fn take_member(conn: &Connection, program: &Program, rec: &MemberRecord) -> Result<Option<String>> {
    if let Err(reason) = rec.check_cards() {
        return Ok(Some(reason));
    }
    match apply_member(conn, program, rec) {
        Ok(()) => Ok(None),
        Err(e) if about_the_record(&e) => Ok(Some(e.to_string())),
        Err(e) => Err(e),
    }
}

/// Applies `rec` in a savepoint; a record this till cannot take ([`take_member`]) goes to the
/// quarantine.
fn apply_or_quarantine_member(
    conn: &mut rusqlite::Transaction<'_>,
    program: &Program,
    rec: &MemberRecord,
    at: Timestamp,
) -> Result<bool> {
    let sp = conn.savepoint()?;
    let Some(reason) = take_member(&sp, program, rec)? else {
        sp.commit()?;
        return Ok(true);
    };
    drop(sp);
    let body = serde_json::to_string(rec).unwrap_or_default();
    let name = member_record_name(rec);
    quarantine(conn, RecordKind::Member, &name, &body, &reason, at)?;
    Ok(false)
}

/// Applies a run of member records in one savepoint; when one of them cannot be taken, the run
/// goes again record by record ([`apply_or_quarantine_member`]), so that only that one goes to
/// the quarantine. Returns how many went there. (A savepoint for every record cost a twentieth
/// of a million-member catch-up.)
fn apply_members(
    tx: &mut rusqlite::Transaction<'_>,
    program: &Program,
    run: &[MemberRecord],
    at: Timestamp,
) -> Result<usize> {
    let sp = tx.savepoint()?;
    let mut whole = true;
    for rec in run {
        if take_member(&sp, program, rec)?.is_some() {
            whole = false;
            break;
        }
    }
    if whole {
        sp.commit()?;
        return Ok(0);
    }
    drop(sp);
    let mut quarantined = 0;
    for rec in run {
        if !apply_or_quarantine_member(tx, program, rec, at)? {
            quarantined += 1;
        }
    }
    Ok(quarantined)
}

/// The stored entries the possibility check needs for `entries`.
fn known_for(conn: &Connection, entries: &[&Entry]) -> Result<Known> {
    let wanted = needs(entries.iter().copied());
    Ok(Known::new(fetch_needed(conn, &wanted)?, &wanted.histories))
}

/// The stored entries `wanted` names: the reversal targets, stored reversals of them, and the
/// whole history of each member listed.
fn fetch_needed(conn: &Connection, wanted: &Needs) -> Result<Vec<Entry>> {
    let mut fetched = Vec::new();
    let mut reversals = conn.prepare_cached(&format!(
        "SELECT {ENTRY_COLUMNS} FROM ledger WHERE reverses = ?1"
    ))?;
    for id in &wanted.targets {
        fetched.extend(entry_by_id(conn, *id)?);
        fetched.extend(
            reversals
                .query_row(params![id.0], entry_from_row)
                .optional()?,
        );
    }
    for member in &wanted.histories {
        fetched.extend(member_entries(conn, *member)?);
    }
    Ok(fetched)
}

/// This till's unpushed entries (in its order) that the entries the server gave back rule out,
/// each with the reason. They are judged as the server will judge them, against this ledger
/// with the server's entries in it; one goes when the check refuses it for an entry the server
/// gave back (a second reversal of an entry, a second once-only bonus) or because it reverses
/// one that goes. Any other refusal is the server's to make.
fn ruled_out<'e>(
    conn: &Connection,
    programs: &ProgramHistory,
    recovered: &[&Entry],
    unpushed: &[&'e Entry],
) -> Result<Vec<(&'e Entry, String)>> {
    if recovered.is_empty() || unpushed.is_empty() {
        return Ok(Vec::new());
    }
    let pending: HashMap<EntryId, &Entry> = unpushed.iter().map(|e| (e.id, *e)).collect();
    let wanted = needs(unpushed.iter().copied());
    let stored = fetch_needed(conn, &wanted)?
        .into_iter()
        .filter(|e| !pending.contains_key(&e.id));
    let back: HashSet<EntryId> = recovered.iter().map(|e| e.id).collect();
    let mut known = Known::new(
        stored.chain(recovered.iter().map(|e| (*e).clone())),
        &wanted.histories,
    );
    let mut gone: HashSet<EntryId> = HashSet::new();
    let mut out = Vec::new();
    for impossible in judge_batch(programs, &mut known, unpushed).impossible {
        let rule = &impossible.rule;
        let reason = match rule {
            Rule::AlreadyReversed { by: held, .. }
            | Rule::WelcomeTwice { first: held }
            | Rule::OpeningTwice { first: held }
            | Rule::BirthdayTwice { first: held, .. }
                if back.contains(held) =>
            {
                format!(
                    "{rule}: the server holds {held} from this till, pushed before this file was put back to an older copy; this entry was never pushed"
                )
            }
            Rule::UnknownTarget { target } if gone.contains(target) => {
                format!("reverses entry {target}, set aside before it; this entry was never pushed")
            }
            _ => continue,
        };
        gone.insert(impossible.id);
        out.push((pending[&impossible.id], reason));
    }
    Ok(out)
}

/// Pulled entries this till can apply, and those it cannot with the reason.
type Screened<'e> = (Vec<&'e Entry>, Vec<(&'e Entry, String)>);

/// Splits pulled entries into those this till can apply and those it cannot, with the reason:
/// a bad shape, a claim to be this till's, an unknown member, an id held with other content,
/// or an entry no honest till could have written (the server's own check).
fn screen<'e>(
    conn: &Connection,
    programs: &ProgramHistory,
    terminal: &TerminalId,
    entries: &[&'e Entry],
) -> Result<Screened<'e>> {
    let mut bad: Vec<(&Entry, String)> = Vec::new();
    let mut candidates: Vec<&Entry> = Vec::with_capacity(entries.len());
    let mut members_known: HashSet<MemberId> = HashSet::new();
    let mut member_exists =
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM members WHERE id = ?1)")?;
    for &e in entries {
        if let Err(shape) = e.check_shape() {
            bad.push((e, shape.reason));
            continue;
        }
        if let Some(existing) = entry_by_id(conn, e.id)? {
            if existing != *e {
                bad.push((
                    e,
                    "an entry with this id is held here with other content".into(),
                ));
            }
            continue;
        }
        if e.terminal_id == *terminal {
            bad.push((
                e,
                format!("claims to come from this till ({terminal}) but was never made here"),
            ));
            continue;
        }
        if !members_known.contains(&e.member_id) {
            if !member_exists.query_row(params![e.member_id.0], |r| r.get::<_, bool>(0))? {
                bad.push((e, format!("member {} is not known here", e.member_id)));
                continue;
            }
            members_known.insert(e.member_id);
        }
        candidates.push(e);
    }
    let mut known = known_for(conn, &candidates)?;
    let verdicts = judge_batch(programs, &mut known, &candidates);
    let impossible: HashMap<EntryId, String> = verdicts
        .impossible
        .into_iter()
        .map(|i| (i.id, i.rule.to_string()))
        .collect();
    let (ok, refused): (Vec<&Entry>, Vec<&Entry>) = candidates
        .into_iter()
        .partition(|e| !impossible.contains_key(&e.id));
    bad.extend(refused.into_iter().map(|e| (e, impossible[&e.id].clone())));
    Ok((ok, bad))
}

/// Entries judged and applied, and member records applied, between looks for a writer waiting
/// for the lock (a few tens of milliseconds of work each).
const STEP_ASIDE_EVERY: usize = 5_000;
const STEP_ASIDE_MEMBERS: usize = 500;

/// Whether applying records may commit its work so far and let a waiting writer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Steps {
    /// Between runs of members and chunks of entries, when a writer waits: for a pulled page,
    /// whose entries committed before a crash are found again when it comes again.
    LetWritersIn,
    /// All or nothing: the caller's transaction holds other changes that must not commit
    /// without the records (a retry of the quarantine takes its rows out first).
    Whole,
}

/// `sorted` (grouped by member) cut into runs of about `size` entries, never parting a
/// member's entries.
fn whole_members<'s, 'e>(sorted: &'s [&'e Entry], size: usize) -> Vec<&'s [&'e Entry]> {
    let mut runs = Vec::new();
    let mut start = 0;
    while start < sorted.len() {
        let mut end = (start + size).min(sorted.len());
        while end < sorted.len() && sorted[end].member_id == sorted[end - 1].member_id {
            end += 1;
        }
        runs.push(&sorted[start..end]);
        start = end;
    }
    runs
}

/// What judging and applying a page of pulled records needs.
struct Page {
    programs: ProgramHistory,
    program: Program,
    terminal: TerminalId,
}

impl Page {
    /// Applies members, then the entries this till can take; the rest go to the quarantine.
    fn apply(
        &self,
        tx: &mut rusqlite::Transaction<'_>,
        members: &[MemberRecord],
        entries: &[Entry],
        at: Timestamp,
        steps: Steps,
    ) -> Result<Applied> {
        let step = |tx: &rusqlite::Transaction<'_>| match steps {
            Steps::LetWritersIn => super::write_lock::let_waiting_writer_in(tx),
            Steps::Whole => Ok(()),
        };
        let mut applied = Applied::default();
        for run in members.chunks(STEP_ASIDE_MEMBERS) {
            applied.quarantined += apply_members(tx, &self.program, run, at)?;
            step(tx)?;
        }
        // Grouped by member, each member's entries in the order they arrived (what arrived
        // before an entry bounds its expiry), and judged and applied a few thousand at a time:
        // a sale waiting for the lock gets in between chunks, not only after the whole page is
        // judged. Every check reads one member's entries, so no chunk needs another's. What
        // is committed at a step is taken as already present if the page comes again.
        let mut by_member: Vec<&Entry> = entries.iter().collect();
        by_member.sort_by_key(|e| e.member_id);
        for chunk in whole_members(&by_member, STEP_ASIDE_EVERY) {
            let (ok, bad) = screen(tx, &self.programs, &self.terminal, chunk)?;
            for (e, reason) in &bad {
                quarantine_entry(tx, e, reason, at)?;
            }
            applied.quarantined += bad.len();
            // Each member's reversals after what they reverse: the member-clustered ledger then
            // takes the chunk in key order.
            let mut ordered = ok;
            ordered.sort_by_key(|e| (e.member_id, e.kind == EntryKind::Reverse));
            let outcomes =
                super::ledger::insert_foreign(tx, &self.program, &self.terminal, &ordered, true)?;
            applied.inserted += outcomes
                .iter()
                .filter(|o| **o == super::InsertOutcome::Inserted)
                .count();
            step(tx)?;
        }
        Ok(applied)
    }
}

impl Store {
    /// What judging and applying pulled records needs, read now.
    fn page(&self) -> Result<Page> {
        Ok(Page {
            programs: self.program_history()?,
            program: self.program.clone(),
            terminal: self.terminal.clone(),
        })
    }

    /// The program versions pulled entries are judged by: the server's, or this till's own
    /// program while it has none (never synced).
    pub fn program_history(&self) -> Result<ProgramHistory> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT version, installed_at, toml FROM server_programs")?;
        let versions = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .map(|(version, installed_at, toml)| {
                Ok(ProgramVersion {
                    version,
                    installed_at: Timestamp::from_millis(installed_at),
                    program: Program::from_toml(&toml).map_err(StoreError::StoredProgram)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if versions.is_empty() {
            return Ok(ProgramHistory::new(vec![ProgramVersion {
                version: 0,
                installed_at: Timestamp::from_millis(0),
                program: self.program.clone(),
            }]));
        }
        Ok(ProgramHistory::new(versions))
    }

    /// The highest server program version held here (0: none).
    pub fn known_program_version(&self) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM server_programs",
            [],
            |r| r.get(0),
        )?)
    }

    /// Keeps the server's program versions (validated first: a version this till cannot read
    /// is refused whole). Returns how many were new.
    pub fn add_server_programs(&mut self, versions: &[ProgramVersionBody]) -> Result<usize> {
        for v in versions {
            Program::from_toml(&v.toml)?;
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut added = 0;
        for v in versions {
            added += tx.execute(
                "INSERT INTO server_programs (version, installed_at, toml) VALUES (?1, ?2, ?3)
                 ON CONFLICT (version) DO NOTHING",
                params![v.version, v.installed_at.millis(), v.toml],
            )?;
        }
        tx.commit()?;
        Ok(added)
    }

    /// Applies one pulled page and moves the cursor to `next` (naming `next_record`), in one
    /// transaction but where a sale waiting for the lock is let in between chunks of entries: a
    /// crash leaves the page's cursor only with the whole page, and the page's entries
    /// committed before it are taken as already present when it comes again. Records
    /// this till cannot apply go to the quarantine with the reason, and the cursor moves on.
    /// Touched members' cached states are refreshed by [`Store::refresh_stale`] once the pull
    /// has caught up.
    pub fn apply_pulled(
        &mut self,
        members: &[MemberRecord],
        entries: &[Entry],
        next: i64,
        next_record: Option<&str>,
        at: Timestamp,
    ) -> Result<Applied> {
        self.apply_records(members, entries, Some((next, next_record)), at)
    }

    /// Takes on one member record the server gave for a scan, ahead of the pull, which takes
    /// it on again later and changes nothing then: the cursor stays where it is. A record this
    /// till cannot apply goes to the quarantine, as when pulled.
    pub fn take_looked_up(&mut self, member: &MemberRecord, at: Timestamp) -> Result<Applied> {
        self.apply_records(std::slice::from_ref(member), &[], None, at)
    }

    /// Takes on a member's record and their entries from the server ahead of the pull, for a
    /// till still catching up: the entries this till can apply go in, and the member's state is
    /// folded again at once, so they are shown and their sales priced with their whole
    /// history. An entry of another member, or one this till cannot apply yet (its check
    /// needing more of the chain than is here, say), is left for the pull, which judges it
    /// again and finds the others already here. The cursor stays where it is; a record this
    /// till cannot take goes to the quarantine, and none of the entries are taken then.
    pub fn take_history(
        &mut self,
        member: &MemberRecord,
        entries: &[Entry],
        at: Timestamp,
    ) -> Result<Applied> {
        let page = self.page()?;
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let quarantined = apply_members(&mut tx, &page.program, std::slice::from_ref(member), at)?;
        if quarantined > 0 {
            tx.commit()?;
            return Ok(Applied {
                inserted: 0,
                quarantined,
            });
        }
        let theirs: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.member_id == member.member.id)
            .collect();
        let (mut ok, _left_for_the_pull) = screen(&tx, &page.programs, &page.terminal, &theirs)?;
        ok.sort_by_key(|e| e.kind == EntryKind::Reverse);
        let outcomes =
            super::ledger::insert_foreign(&tx, &page.program, &page.terminal, &ok, false)?;
        tx.commit()?;
        if member.erased_at.is_some() {
            self.scrub_log()?;
        }
        Ok(Applied {
            inserted: outcomes
                .iter()
                .filter(|o| **o == super::InsertOutcome::Inserted)
                .count(),
            quarantined: 0,
        })
    }

    /// Judges and applies records from the server and, with `cursor`, moves the pull cursor
    /// to it (a seq and the name of the record there), in one transaction.
    fn apply_records(
        &mut self,
        members: &[MemberRecord],
        entries: &[Entry],
        cursor: Option<(i64, Option<&str>)>,
        at: Timestamp,
    ) -> Result<Applied> {
        let page = self.page()?;
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let applied = page.apply(&mut tx, members, entries, at, Steps::LetWritersIn)?;
        if let Some((next, next_record)) = cursor {
            tx.execute(
                "UPDATE sync_state SET pull_cursor = MAX(pull_cursor, ?1),
                        cursor_record = CASE WHEN ?1 >= pull_cursor THEN ?2 ELSE cursor_record END
                 WHERE singleton = 1",
                params![next, next_record],
            )?;
        }
        tx.commit()?;
        if members.iter().any(|m| m.erased_at.is_some()) {
            self.scrub_log()?;
        }
        Ok(applied)
    }

    /// Records set aside, newest first.
    pub fn quarantined(&self, limit: usize) -> Result<Vec<Quarantined>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT record, reason, at FROM quarantine ORDER BY at DESC, record LIMIT ?1",
        )?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok(Quarantined {
                    record: r.get(0)?,
                    reason: r.get(1)?,
                    at: Timestamp::from_millis(r.get(2)?),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// How many records are set aside.
    pub fn quarantine_count(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM quarantine", [], |r| r.get(0))?)
    }

    /// Tries every quarantined pulled record again (after a program update, say), in one
    /// transaction that never commits in steps (its rows leave the quarantine first, so a crash
    /// between steps would lose them): members first, then entries; what applies now leaves
    /// the quarantine. This
    /// till's own entries set aside by [`Store::adopt_own`] stay as they are. Returns how many
    /// records applied.
    pub fn retry_quarantine(&mut self, at: Timestamp) -> Result<usize> {
        if self.quarantine_count()? == 0 {
            return Ok(0);
        }
        let page = self.page()?;
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rows: Vec<(String, String, String)> = tx
            .prepare("SELECT record, kind, body FROM quarantine")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut members = Vec::new();
        let mut entries = Vec::new();
        let mut retried = Vec::new();
        for (record, kind, body) in &rows {
            match kind.as_str() {
                "member" => {
                    members.push(serde_json::from_str::<MemberRecord>(body).map_err(|e| {
                        StoreError::BadRecord(format!("quarantined member record: {e}"))
                    })?)
                }
                _ => {
                    let e = serde_json::from_str::<Entry>(body)
                        .map_err(|e| StoreError::BadRecord(format!("quarantined entry: {e}")))?;
                    if e.terminal_id == page.terminal {
                        continue;
                    }
                    entries.push(e);
                }
            }
            retried.push(record);
        }
        let mut forget = tx.prepare("DELETE FROM quarantine WHERE record = ?1")?;
        for record in &retried {
            forget.execute(params![record])?;
        }
        drop(forget);
        let applied = page.apply(&mut tx, &members, &entries, at, Steps::Whole)?;
        tx.commit()?;
        Ok(retried.len().saturating_sub(applied.quarantined))
    }

    /// Takes back this till's own entries from the server: `server` holds every entry the
    /// server has from this till after the last one this file knows was pushed, with the
    /// `members` they need, and `server_last` is the highest terminal_seq the server holds.
    /// Entries lost with a restore are inserted with their numbers; this till's unpushed
    /// entries that the server does not have are numbered after `server_last`, in their order,
    /// except those the server's entries rule out (a second reversal of an entry whose reversal
    /// was pushed before the restore), which move to the quarantine with the reason. One
    /// transaction: nothing is lost and no number is used twice.
    pub fn adopt_own(
        &mut self,
        members: &[MemberRecord],
        server: &[Entry],
        server_last: i64,
        at: Timestamp,
    ) -> Result<Adopted> {
        let Page {
            programs,
            program,
            terminal,
        } = self.page()?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for rec in members {
            apply_member(&tx, &program, rec)?;
        }
        let pushed: i64 = tx.query_row(
            "SELECT pushed_seq FROM sync_state WHERE singleton = 1",
            [],
            |r| r.get(0),
        )?;
        let on_server: HashSet<EntryId> = server.iter().map(|e| e.id).collect();
        let mut missing = Vec::new();
        // Unpushed here, yet on the server under another number: this copy predates an earlier
        // restore's renumbering, which was pushed. The server's number stands.
        let mut moves: Vec<(EntryId, i64)> = Vec::new();
        for e in server {
            if e.terminal_id != terminal {
                return Err(StoreError::BadEntry {
                    id: e.id,
                    reason: format!("is not this till's ({terminal}) but {}", e.terminal_id),
                });
            }
            match entry_by_id(&tx, e.id)? {
                Some(local) if local == *e => {}
                Some(local)
                    if local.terminal_seq > pushed
                        && Entry {
                            terminal_seq: e.terminal_seq,
                            ..local.clone()
                        } == *e =>
                {
                    moves.push((e.id, e.terminal_seq));
                }
                Some(_) => return Err(StoreError::IdConflict(e.id)),
                None => missing.push(e),
            }
        }
        let unpushed: Vec<Entry> = tx
            .prepare(&format!(
                "SELECT {ENTRY_COLUMNS} FROM ledger WHERE terminal_id = ?1 AND terminal_seq > ?2
                 ORDER BY terminal_seq"
            ))?
            .query_map(params![terminal.0, pushed], entry_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let not_on_server: Vec<&Entry> = unpushed
            .iter()
            .filter(|e| !on_server.contains(&e.id))
            .collect();
        let mut touched: HashMap<MemberId, Timestamp> = HashMap::new();
        // Kept in the quarantine first (the ledger lets only such an entry go), the latest
        // first: a reversal leaves before what it reverses.
        let set_aside = ruled_out(&tx, &programs, &missing, &not_on_server)?;
        for (e, reason) in set_aside.iter().rev() {
            quarantine_entry(&tx, e, reason, at)?;
            tx.execute("DELETE FROM ledger WHERE id = ?1", params![e.id.0])?;
            touched.entry(e.member_id).or_insert(e.occurred_at);
        }
        let gone: HashSet<EntryId> = set_aside.iter().map(|(e, _)| e.id).collect();
        let to_renumber: Vec<&Entry> = not_on_server
            .into_iter()
            .filter(|e| !gone.contains(&e.id))
            .collect();
        // Each unpushed entry's number after the server's; only those that change move.
        moves.extend(
            to_renumber
                .iter()
                .enumerate()
                .map(|(i, e)| (*e, server_last + 1 + i as i64))
                .filter(|(e, seq)| e.terminal_seq != *seq)
                .map(|(e, seq)| (e.id, seq)),
        );
        let mut renumber = tx.prepare("UPDATE ledger SET terminal_seq = ?2 WHERE id = ?1")?;
        // Out of the way first (above any number in use), then in place after the server's.
        let aside = server_last.max(unpushed.last().map_or(0, |e| e.terminal_seq));
        for (i, (id, _)) in moves.iter().enumerate() {
            renumber.execute(params![id.0, aside + 1 + i as i64])?;
        }
        for e in &missing {
            insert_entry(&tx, e)?;
            let t = touched.entry(e.member_id).or_insert(e.occurred_at);
            *t = (*t).max(e.occurred_at);
        }
        for (id, seq) in &moves {
            renumber.execute(params![id.0, seq])?;
        }
        drop(renumber);
        let renumbered = moves.len();
        let last = server_last + to_renumber.len() as i64;
        tx.execute(
            "UPDATE terminal SET last_seq = ?1 WHERE singleton = 1",
            params![last],
        )?;
        tx.execute(
            "UPDATE sync_state SET pushed_seq = ?1 WHERE singleton = 1",
            params![server_last],
        )?;
        for (member, t) in touched {
            let all = member_entries(&tx, member)?;
            refresh_state(&tx, &program, member, &all, t.max(at))?;
        }
        debug_assert_eq!(
            tx.query_row(
                "SELECT COUNT(*), COALESCE(MAX(terminal_seq), 0) FROM ledger WHERE terminal_id = ?1",
                params![terminal.0],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .ok(),
            Some((last, last)),
            "this till's sequence is gapless after taking its entries back"
        );
        tx.commit()?;
        Ok(Adopted {
            recovered: missing.len(),
            renumbered,
            set_aside: set_aside.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::rows::tests::{
        NOW, look_at_sale, sale_once_locked, seen_at_sale, store_with_member,
    };
    use super::*;

    /// A sale waiting for the lock while a large pulled page is applied gets in after the
    /// first chunk is judged and applied, before the rest of the page is judged (the check of
    /// a quarter of a million entries at one go held sales for over a second), and the page
    /// still ends applied whole, its cursor moved.
    #[test]
    fn a_sale_gets_in_before_the_rest_of_a_pulled_page_is_judged() {
        use std::sync::atomic::{AtomicBool, Ordering};
        const MEMBERS: usize = 40;
        const EACH: usize = 500;
        let (dir, mut store, member) = store_with_member();
        let members: Vec<MemberId> = (0..MEMBERS)
            .map(|i| {
                let input = crate::domain::MemberInput {
                    name: format!("Member {i}"),
                    ..Default::default()
                };
                store
                    .add_member(input, "test", NOW)
                    .expect("enrol")
                    .member
                    .id
            })
            .collect();
        // Each member: one entry that claims to be this till's (set aside), then adjustments
        // from another till.
        let mine = store.terminal_id().clone();
        let mut entries = Vec::new();
        for (m, member_id) in members.iter().enumerate() {
            for i in 0..EACH {
                entries.push(Entry {
                    terminal_id: if i == 0 {
                        mine.clone()
                    } else {
                        TerminalId("till-elsewhere".into())
                    },
                    terminal_seq: (m * EACH + i + 1) as i64,
                    member_id: *member_id,
                    note: Some("goodwill".into()),
                    actor: "manager".into(),
                    ..crate::domain::summary::tests::entry(
                        EntryKind::Adjust,
                        20,
                        None,
                        NOW.millis(),
                    )
                });
            }
        }
        let path = dir.path().join("till.sqlite3");
        let mut till = Store::open(&path).expect("the selling connection");
        // What the quarantine held at the moment the sale went in.
        look_at_sale(&till, "SELECT COUNT(*) FROM quarantine");
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let seller =
                s.spawn(|| sale_once_locked(&path, &mut till, member, &done, seen_at_sale));
            let applied = store
                .apply_pulled(&[], &entries, 7, None, NOW)
                .expect("the page applies");
            done.store(true, Ordering::Relaxed);
            let seen = seller.join().expect("seller");
            let seen = seen.expect("the seller found the lock held by the pull");
            assert!(
                seen < MEMBERS as i64,
                "the sale waited for the whole page to be judged: {seen} of {MEMBERS} set aside when it went in"
            );
            assert_eq!(applied.quarantined, MEMBERS);
            assert_eq!(applied.inserted, MEMBERS * (EACH - 1));
        });
        assert_eq!(store.quarantine_count().expect("count"), MEMBERS as i64);
        assert_eq!(store.sync_counters().expect("counters").pull_cursor, 7);
        for m in &members {
            let theirs = store.entries_of(*m).expect("entries");
            let pulled = theirs
                .iter()
                .filter(|e| e.terminal_id.0 == "till-elsewhere");
            assert_eq!(pulled.count(), EACH - 1);
        }
    }

    /// A writer waiting while the quarantine is retried (what every sale during a sync round
    /// may be) must not make the retry commit in steps: its rows leave the quarantine first,
    /// so a failure or a crash after such a step would lose the records not applied yet.
    #[test]
    fn a_retry_of_the_quarantine_is_whole_even_when_a_writer_waits() {
        let (_dir, mut store, member) = store_with_member();
        let record = super::super::sync::member_record(&store.conn, member).expect("record");
        let entry = Entry {
            terminal_id: TerminalId("till-elsewhere".into()),
            member_id: member,
            note: Some("goodwill".into()),
            actor: "manager".into(),
            ..crate::domain::summary::tests::entry(EntryKind::Adjust, 20, None, NOW.millis())
        };
        quarantine(
            &store.conn,
            RecordKind::Member,
            &member_record_name(&record),
            &serde_json::to_string(&record).expect("json"),
            "set aside for the test",
            NOW,
        )
        .expect("member aside");
        quarantine(
            &store.conn,
            RecordKind::Entry,
            &entry_record_name(&entry),
            &serde_json::to_string(&entry).expect("json"),
            "set aside for the test",
            NOW,
        )
        .expect("entry aside");
        store
            .conn
            .execute_batch(
                "CREATE TEMP TRIGGER failing_disk BEFORE INSERT ON ledger
                 BEGIN SELECT RAISE(ABORT, 'the disk failed'); END",
            )
            .expect("a failing insert");
        // A writer waited for the lock: the next look for one finds it.
        super::super::write_lock::wait_for_lock(1);
        let failed = store
            .retry_quarantine(NOW)
            .expect_err("the entry cannot go in");
        assert!(failed.to_string().contains("the disk failed"), "{failed}");
        assert_eq!(
            store.quarantine_count().expect("count"),
            2,
            "nothing left the quarantine"
        );
        store
            .conn
            .execute_batch("DROP TRIGGER failing_disk")
            .expect("the disk mended");
        assert_eq!(store.retry_quarantine(NOW).expect("retry"), 2);
        assert_eq!(store.quarantine_count().expect("count"), 0);
        assert!(store.entries_of(member).expect("entries").contains(&entry));
    }
}
