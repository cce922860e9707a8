//! One sync round: take the server's program, push everything waiting, pull everything new.
//! Every step is idempotent, so a round cut short anywhere is simply run again.

use serde::Serialize;

use std::time::Duration;

use super::client::{REQUEST_TIMEOUT, SyncClient, SyncError};
use super::protocol::{ConfigQuery, ConfigResponse, MAX_OWN_LIMIT, MAX_PUSH_MEMBERS, PushRequest};
use crate::domain::{CardNumber, MemberId, TerminalId, Timestamp};
use crate::store::{Outbox, Store, StoreError, SyncSettings};

/// Entries per push (under the server's limit, a few hundred KB of JSON).
pub const PUSH_BATCH: usize = 5_000;
/// Records per pull page.
pub const PULL_PAGE: usize = 20_000;
/// A catch-up applies the pages already fetched in transactions of up to about this many
/// entries: each commit rewrites every ledger page it touched, so fewer, larger commits write
/// far less (a 1,000,000-entry catch-up went from 37 s to 12 s).
const APPLY_ENTRIES: usize = 250_000;

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub pushed_entries: usize,
    pub pushed_members: usize,
    /// Entries the server already had (a retry after a lost answer).
    pub duplicates: usize,
    pub pulled_entries: usize,
    pub pulled_members: usize,
    /// The server's program was newer and is now installed.
    pub program_updated: bool,
    pub server_seq: i64,
    /// Pulled records set aside this round (this till could not apply them).
    pub quarantined: usize,
    /// Quarantined records applied this round after a program update.
    pub released: usize,
    /// This till's own entries taken back from the server (the file was an older copy).
    pub recovered: usize,
    /// Unpushed entries numbered again after those.
    pub renumbered: usize,
    /// Unpushed entries those ruled out (a second reversal of an entry), set aside.
    pub set_aside: usize,
    /// The server was restored from an older copy or replaced: everything was pulled again.
    pub server_restored: bool,
    /// The server's seq when the round began: what the pull catches up to.
    pub target_seq: i64,
    /// This till's badge awards reversed because another till's award of the badge came first.
    pub voided_awards: usize,
}

/// A client for the server saved in `store`.
pub fn client_for(store: &Store) -> Result<SyncClient, SyncError> {
    client_within(store, REQUEST_TIMEOUT)
}

/// A client for the server saved in `store` whose requests give up after `timeout`.
pub fn client_within(store: &Store, timeout: Duration) -> Result<SyncClient, SyncError> {
    client_from(&store.sync_settings()?, store.terminal_id(), timeout)
}

fn client_from(
    settings: &SyncSettings,
    terminal: &TerminalId,
    timeout: Duration,
) -> Result<SyncClient, SyncError> {
    match (&settings.server_url, &settings.token) {
        (Some(url), Some(token)) => SyncClient::trusting(
            url,
            token,
            terminal.clone(),
            timeout,
            settings.pin.as_deref(),
            settings.insecure_http,
        ),
        _ => Err(SyncError::NotConfigured),
    }
}

/// The client a long-running worker keeps: rebuilt only when the saved server or token change,
/// so connections are reused between rounds.
pub fn reuse_client(
    store: &Store,
    kept: &mut Option<(SyncSettings, SyncClient)>,
) -> Result<SyncClient, SyncError> {
    let settings = store.sync_settings()?;
    if let Some((_, client)) = kept.as_ref().filter(|(s, _)| *s == settings) {
        return Ok(client.clone());
    }
    let client = client_from(&settings, store.terminal_id(), REQUEST_TIMEOUT)?;
    *kept = Some((settings, client.clone()));
    Ok(client)
}

/// Takes on the server's program history, program and member-code key, and notices a server
/// restored from an older copy (another epoch, a cursor past its end, or another record at the
/// cursor): then everything is pulled again, and pushed again from what the server holds.
pub fn take_config(
    store: &mut Store,
    client: &SyncClient,
    at: Timestamp,
    report: &mut SyncReport,
) -> Result<ConfigResponse, SyncError> {
    let counters = store.sync_counters()?;
    let config = client.config(ConfigQuery {
        known: store.known_program_version()?,
        cursor: counters.pull_cursor,
    })?;
    report.target_seq = config.server_seq;
    let decode = |text: &str| -> Result<[u8; 32], SyncError> {
        data_encoding::BASE64
            .decode(text.as_bytes())
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| {
                SyncError::Protocol("the server sent a malformed member-code key".into())
            })
    };
    let key: [u8; 32] = decode(&config.code_key)?;
    let keys = config
        .code_keys
        .iter()
        .map(|k| Ok((k.id, decode(&k.key)?)))
        .collect::<Result<Vec<_>, SyncError>>()?;
    let new_versions = store.add_server_programs(&config.programs)?;
    report.program_updated =
        store.install_server_program(config.program_version, &config.program_toml, key, at)?
            || new_versions > 0;
    store.install_code_keys(&keys, config.code_key_current, config.code_key0_retired)?;
    if !config.epoch.is_empty() {
        let restored = counters.epoch.as_ref().is_some_and(|e| *e != config.epoch)
            || counters.pull_cursor > config.server_seq
            || counters
                .cursor_record
                .as_ref()
                .is_some_and(|r| config.record_at_cursor.as_ref() != Some(r));
        if restored {
            store.restart_pull(&config.epoch)?;
            report.server_restored = true;
        } else if counters.epoch.is_none() {
            store.set_epoch(&config.epoch)?;
        }
    }
    Ok(config)
}

/// Lines this till's sequence up with the server's: a server holding fewer of its entries gets
/// them pushed again; a server holding more (an ack lost, or this file restored from an older
/// copy) gives them back, and unpushed entries are numbered after them.
pub fn reconcile_own(
    store: &mut Store,
    client: &SyncClient,
    config: &ConfigResponse,
    at: Timestamp,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let pushed = store.sync_counters()?.pushed_seq;
    if config.terminal_seq < pushed {
        store.push_again_after(config.terminal_seq)?;
        return Ok(());
    }
    if config.terminal_seq == pushed {
        return Ok(());
    }
    let (mut members, mut entries) = (Vec::new(), Vec::new());
    let mut after = pushed;
    loop {
        let page = client.own(after, MAX_OWN_LIMIT)?;
        if page.next <= after && page.more {
            return Err(SyncError::Protocol(format!(
                "the server's own-entries cursor did not move past {after}"
            )));
        }
        members.extend(page.members);
        entries.extend(page.entries);
        after = page.next;
        if !page.more {
            break;
        }
    }
    let adopted = store.adopt_own(&members, &entries, config.terminal_seq, at)?;
    report.recovered += adopted.recovered;
    report.renumbered += adopted.renumbered;
    report.set_aside += adopted.set_aside;
    Ok(())
}

/// Pushes everything waiting, batch by batch; each acknowledged batch is marked at once.
pub fn push_all(
    store: &mut Store,
    client: &SyncClient,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    loop {
        let outbox = store.outbox(MAX_PUSH_MEMBERS, PUSH_BATCH)?;
        if outbox.is_empty() {
            return Ok(());
        }
        // The batch moves into the request and back: no copy of up to 5,000 entries.
        let (last_guest_sale, last_answer, last_void) =
            (outbox.last_guest_sale, outbox.last_answer, outbox.last_void);
        let request = PushRequest {
            members: outbox.members,
            entries: outbox.entries,
            guest_sales: outbox.guest_sales,
            answers: outbox.answers,
            voids: outbox.voids,
        };
        let ack = client.push(&request)?;
        let pushed = Outbox {
            members: request.members,
            entries: request.entries,
            guest_sales: request.guest_sales,
            answers: request.answers,
            voids: request.voids,
            last_guest_sale,
            last_answer,
            last_void,
        };
        store.mark_pushed(&pushed)?;
        report.pushed_entries += ack.inserted;
        report.duplicates += ack.duplicates;
        report.pushed_members += pushed.members.len();
        report.server_seq = ack.server_seq;
    }
}

/// Pulls pages until caught up; each page and its cursor are applied in one transaction. The
/// next page is fetched (and parsed) on another thread while this one is applied.
pub fn pull_all(
    store: &mut Store,
    client: &SyncClient,
    report: &mut SyncReport,
    at: Timestamp,
) -> Result<(), SyncError> {
    pull_observed(store, client, report, at, &mut |_| {})
}

/// How far a pull has come: records applied up to `at` of the server's `end`, from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PullProgress {
    pub start: i64,
    pub at: i64,
    pub end: i64,
}

impl PullProgress {
    /// The share done, 0.0 to 1.0.
    pub fn fraction(&self) -> f64 {
        let span = (self.end - self.start).max(1) as f64;
        ((self.at - self.start) as f64 / span).clamp(0.0, 1.0)
    }
}

/// [`pull_all`], telling `progress` after each batch applied.
pub fn pull_observed(
    store: &mut Store,
    client: &SyncClient,
    report: &mut SyncReport,
    at: Timestamp,
    progress: &mut dyn FnMut(PullProgress),
) -> Result<(), SyncError> {
    let cursor = store.sync_counters()?.pull_cursor;
    store.begin_bulk_pull()?;
    let result = pull_pages(store, client, report, cursor, at, progress);
    store.end_bulk_pull()?;
    result
}

fn pull_pages(
    store: &mut Store,
    client: &SyncClient,
    report: &mut SyncReport,
    cursor: i64,
    at: Timestamp,
    progress: &mut dyn FnMut(PullProgress),
) -> Result<(), SyncError> {
    let (pages, received) = std::sync::mpsc::sync_channel(12);
    let fetcher = client.clone();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut after = cursor;
            loop {
                let page = fetcher.pull(after, PULL_PAGE);
                let more = match &page {
                    Ok(p) if p.next < after => {
                        let _ = pages.send(Err(SyncError::Protocol(format!(
                            "the server's cursor went back from {after} to {}",
                            p.next
                        ))));
                        return;
                    }
                    Ok(p) => {
                        after = p.next;
                        p.more
                    }
                    Err(_) => false,
                };
                // A closed channel means the applier stopped (an error): stop fetching.
                if pages.send(page).is_err() || !more {
                    return;
                }
            }
        });
        let mut received = received.into_iter().peekable();
        while let Some(page) = received.next() {
            let mut batch = page?;
            while batch.entries.len() < APPLY_ENTRIES
                && let Some(Ok(_)) = received.peek()
            {
                if let Some(Ok(more)) = received.next() {
                    batch.members.extend(more.members);
                    batch.entries.extend(more.entries);
                    // The cursor moves to the last page's end, named as that page names it.
                    batch.next = more.next;
                    batch.next_record = more.next_record;
                }
            }
            let applied = store.apply_pulled(
                &batch.members,
                &batch.entries,
                batch.next,
                batch.next_record.as_deref(),
                at,
            )?;
            report.pulled_entries += applied.inserted;
            report.quarantined += applied.quarantined;
            report.pulled_members += batch.members.len();
            report.server_seq = report.server_seq.max(batch.next);
            progress(PullProgress {
                start: cursor,
                at: batch.next,
                end: report.target_seq.max(batch.next),
            });
        }
        store.refresh_stale()?;
        Ok(())
    })
}

/// A whole round, recorded in the store (last success or last error). Pulling never depends on
/// pushing: a refused push still lets the till take everyone else's records, and the round then
/// reports the refusal.
pub fn sync_once(
    store: &mut Store,
    client: &SyncClient,
    at: Timestamp,
) -> Result<SyncReport, SyncError> {
    sync_observed(store, client, at, &mut |_| {})
}

/// [`sync_once`], telling `progress` how far the pull has come after each batch.
pub fn sync_observed(
    store: &mut Store,
    client: &SyncClient,
    at: Timestamp,
    progress: &mut dyn FnMut(PullProgress),
) -> Result<SyncReport, SyncError> {
    let mut report = SyncReport::default();
    let result = round(store, client, at, &mut report, progress);
    match &result {
        Ok(()) => store.record_sync(at, None)?,
        Err(e) => store.record_sync(at, Some(&e.to_string()))?,
    }
    result.map(|()| report)
}

fn round(
    store: &mut Store,
    client: &SyncClient,
    at: Timestamp,
    report: &mut SyncReport,
    progress: &mut dyn FnMut(PullProgress),
) -> Result<(), SyncError> {
    let config = take_config(store, client, at, report)?;
    let pushed = reconcile_own(store, client, &config, at, report)
        .and_then(|()| push_all(store, client, report));
    pull_observed(store, client, report, at, progress)?;
    if report.program_updated {
        report.released = store.retry_quarantine(at)?;
    }
    report.voided_awards = store.void_duplicate_awards(at)?;
    if report.voided_awards > 0 && pushed.is_ok() {
        return push_all(store, client, report);
    }
    pushed
}

/// Joins the server a join code names: saves its address, the till's token and the server
/// key's pin, then syncs once. A till that already has members of its own (a shop that began
/// with one till) offers its member-code key, which a server holding no members yet takes, so
/// the cards and codes it gave out keep working. If that first round fails, the till's previous
/// settings are put back, so a wrong code or pin leaves nothing half-joined.
pub fn join(
    store: &mut Store,
    code: &super::join::JoinCode,
    insecure_http: bool,
    at: Timestamp,
) -> Result<SyncReport, SyncError> {
    join_with(store, code, insecure_http, at, sync_once)
}

/// [`join`] without the pull: the program, the member-code key and this till's own records
/// are settled with the server, and the chain's members and history are left to the sync
/// worker, so the till scans (looking unknown cards up on the server) while they arrive.
pub fn join_then_catch_up(
    store: &mut Store,
    code: &super::join::JoinCode,
    insecure_http: bool,
    at: Timestamp,
) -> Result<SyncReport, SyncError> {
    join_with(store, code, insecure_http, at, settle)
}

type FirstRound = fn(&mut Store, &SyncClient, Timestamp) -> Result<SyncReport, SyncError>;

fn join_with(
    store: &mut Store,
    code: &super::join::JoinCode,
    insecure_http: bool,
    at: Timestamp,
    first_round: FirstRound,
) -> Result<SyncReport, SyncError> {
    let previous = store.sync_settings()?;
    store.join_server(&code.url, &code.token, code.pin.as_deref(), insecure_http)?;
    let result = client_for(store).and_then(|client| match first_round(store, &client, at) {
        Err(SyncError::Store(StoreError::KeyMismatch(mismatch))) => {
            if store.holds_demo_history()? {
                return Err(StoreError::DemoCannotJoin.into());
            }
            client
                .seed(store.code_key().as_bytes())
                .map_err(|e| match e {
                    SyncError::Refused { .. } => {
                        SyncError::Store(StoreError::KeyMismatch(mismatch))
                    }
                    other => other,
                })?;
            first_round(store, &client, at)
        }
        done => done,
    });
    if result.is_err() {
        match (&previous.server_url, &previous.token) {
            (Some(url), Some(token)) => {
                store.join_server(url, token, previous.pin.as_deref(), previous.insecure_http)?
            }
            _ => store.forget_server()?,
        }
    }
    result
}

/// A round without the pull: the server's program and key, this till's sequence lined up with
/// the server's, and everything waiting pushed.
fn settle(store: &mut Store, client: &SyncClient, at: Timestamp) -> Result<SyncReport, SyncError> {
    let mut report = SyncReport::default();
    let config = take_config(store, client, at, &mut report)?;
    reconcile_own(store, client, &config, at, &mut report)?;
    push_all(store, client, &mut report)?;
    Ok(report)
}

/// A card this till does not know, asked of the server: the member holding it is taken on
/// here (as the pull would take them on, ahead of it) and returned with their live balance;
/// `Ok(None)` when no member holds the card on the server either. Every request gives up
/// after `timeout`.
pub fn look_up_card(
    store: &mut Store,
    card: &CardNumber,
    timeout: Duration,
    at: Timestamp,
) -> Result<Option<(MemberId, i64)>, SyncError> {
    let client = client_within(store, timeout)?;
    let found = client.member_by_card(card)?;
    let Some(record) = found.member else {
        return Ok(None);
    };
    if record.member.card != *card {
        return Err(SyncError::Protocol(format!(
            "asked for card {card}, the server answered with card {}",
            record.member.card
        )));
    }
    if store.take_looked_up(&record, at)?.quarantined > 0 {
        return Err(SyncError::Protocol(format!(
            "the server's record of the member with card {card} cannot be taken on here (see the quarantine)"
        )));
    }
    take_history_if_served(store, &client, record.member.id, at)?;
    Ok(Some((record.member.id, found.balance)))
}

/// The member's entries from other tills, asked of the server and taken on here ahead of the
/// pull ([`Store::take_history`]): the member is then shown, and their sales priced, with
/// their whole history while the pull is still on its way. Returns how many entries were new
/// here: none when the server holds more of them than it sends at once (the pull brings them).
fn take_history(
    store: &mut Store,
    client: &SyncClient,
    member: MemberId,
    at: Timestamp,
) -> Result<usize, SyncError> {
    let history = client.member_history(member)?;
    if history.member.member.id != member {
        return Err(SyncError::Protocol(format!(
            "asked for the history of member {member}, the server answered with member {}",
            history.member.member.id
        )));
    }
    if !history.complete {
        return Ok(0);
    }
    let applied = store.take_history(&history.member, &history.entries, at)?;
    if applied.quarantined > 0 {
        return Err(SyncError::Protocol(format!(
            "the server's record of member {member} cannot be taken on here (see the quarantine)"
        )));
    }
    Ok(applied.inserted)
}

/// [`take_history`] where the server can give it: without it (a server from before it served
/// histories, or one that could not answer in time) the member is shown with the server's
/// balance and the note that this till's count of them is behind, as before. A failure of
/// this till's store still stops the caller.
fn take_history_if_served(
    store: &mut Store,
    client: &SyncClient,
    member: MemberId,
    at: Timestamp,
) -> Result<usize, SyncError> {
    match take_history(store, client, member, at) {
        Err(SyncError::Store(e)) => Err(e.into()),
        Err(_) => Ok(0),
        Ok(taken) => Ok(taken),
    }
}

/// The member's live balance when this till is connected to a server (`Ok(None)` when it is
/// not): this till's waiting entries are pushed first, so the server's answer counts them along
/// with every other till's. Every request gives up after `timeout`.
pub fn live_balance(
    store: &mut Store,
    member: MemberId,
    timeout: Duration,
) -> Result<Option<i64>, SyncError> {
    let client = match client_within(store, timeout) {
        Err(SyncError::NotConfigured) => return Ok(None),
        client => client?,
    };
    push_all(store, &client, &mut SyncReport::default())?;
    Ok(Some(client.balance(member)?.balance))
}

/// For a member shown while this till catches up: their history taken ahead of the pull where
/// the server gives it ([`take_history`]; how many entries were new here), then their live
/// balance ([`live_balance`]); `Ok(None)` when this till is not connected to a server.
pub fn catch_up_member(
    store: &mut Store,
    member: MemberId,
    timeout: Duration,
    at: Timestamp,
) -> Result<Option<(usize, i64)>, SyncError> {
    let client = match client_within(store, timeout) {
        Err(SyncError::NotConfigured) => return Ok(None),
        client => client?,
    };
    let taken = take_history_if_served(store, &client, member, at)?;
    push_all(store, &client, &mut SyncReport::default())?;
    Ok(Some((taken, client.balance(member)?.balance)))
}
