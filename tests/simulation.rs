//! A deterministic simulation of a shop's tills and the real server, in the spirit of
//! TigerBeetle's VOPR: one u64 seed decides every step, and each step is something that happens
//! in a shop or a fault that happens to it.
//!
//! A seed runs on a fresh database: the real `tillpass-server` process, five tills (each with its
//! own store file, its own clock off by up to `MAX_CLOCK_SKEW_MS`, and a TCP proxy in front of
//! it that the simulation switches) and one hostile till with a valid token of its own. Steps:
//! sales, redemptions, reversals of a till's own last entry, enrolments, card replacements (at
//! any till, cut off or not), manager adjustments and syncs; and faults: a till cut off from the
//! server (its proxy drops every connection), an answer lost after the server committed, a
//! request sent twice, the server killed (SIGKILL) and started again on the same database, a
//! till's file put back to an older copy of itself (sometimes just after a refund it pushed),
//! and the hostile till pushing mutations of what honest tills pushed (reordered, other points,
//! amounts, kinds, references, sequence numbers, terminal ids, ids already taken, member
//! records) over raw HTTP. Then every fault heals, every till syncs until a round changes
//! nothing, and a new till joins as an observer. The checks:
//! - every entry the honest tills wrote is on every till and on the server exactly once, with
//!   the same content, except those made after a backup and never pushed before the backup was
//!   put back (lost with the disk, as they would be in a shop), and a till's second reversal of
//!   an entry whose first reversal it pushed before its file was put back (set aside at that
//!   till with a reason naming the first, and nowhere else);
//! - of the hostile till's entries, exactly those the server accepted are there, and nothing it
//!   refused is anywhere;
//! - identical members and balances everywhere, and the server's own balances agree;
//! - every card a member was ever given (and not lost with a disk) still names the member on
//!   every till: in use, or retired for the card in use;
//! - `verify` clean, nothing waiting to be pushed, nothing else set aside, no till stuck.
//!
//! Running it:
//! - `cargo test --test simulation`: [`DEFAULT_SEEDS`] seeds on each backend, from a random
//!   first seed; it says the range, the time and what struck.
//! - `cargo test --test simulation -- --seed S --backend sqlite`: seed S alone on one backend
//!   (without `--backend`, on both). A failing seed prints this command and its steps.
//! - `cargo test --test simulation -- --seeds N`: N seeds on each backend, a long campaign;
//!   `--base B` makes them seeds B to B+N-1.
//!
//! PostgreSQL needs `TILLPASS_TEST_POSTGRES`, as in tests/sync.rs: without it that half is
//! skipped with a note, and under CI it fails.
//!
//! A replay repeats every decision the seed makes: which till does what, to whom, when, which
//! faults strike and which mutations the hostile till makes. What it does not repeat are the
//! ids, card numbers and terminal ids the stores draw themselves, which decide nothing here: the
//! simulation names tills and members by their place in its own lists, never by id.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use common::server::{
    Backend, POSTGRES_ENV, Server, Till, add_terminals, backup_sqlite, database, drop_database,
    empty_database,
};
use common::{NOW, TempDb};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom as _, SliceRandom as _};
use rand::{RngExt as _, SeedableRng as _};
use rusqlite::OptionalExtension as _;
use tillpass::domain::entry::uuid_v7;
use tillpass::domain::possible::MAX_CLOCK_SKEW_MS;
use tillpass::domain::{
    CardNumber, Entry, EntryId, EntryKind, MemberId, MemberInput, MemberRecord, RetiredCard,
    TerminalId, Timestamp,
};
use tillpass::store::{Quarantined, Store, StoreError};
use tillpass::sync::protocol::{
    ErrorBody, MAX_OWN_LIMIT, MAX_PULL_LIMIT, PullResponse, PushRequest, TERMINAL_HEADER,
};
use tillpass::sync::{SyncClient, SyncError, SyncReport, client_for, sync_once};
use uuid::Uuid;

/// Seeds per backend in a plain `cargo test` (CI): both backends together took 96 to 113 s on
/// the project's 2-core machine with other work running on it.
const DEFAULT_SEEDS: u64 = 100;
const TILLS: usize = 5;
/// Steps before healing.
const STEPS: usize = 60;
/// Sync rounds of every till allowed to settle after healing.
const HEAL_ROUNDS: usize = 6;
const REWARDS: [&str; 4] = ["pastry", "coffee", "beans-250g", "mug"];

/// What to run, from the command line after `--`.
struct Options {
    seeds: Vec<u64>,
    backends: Vec<Backend>,
}

impl Options {
    /// `--seed S` (one seed), `--seeds N` and `--base B` (seeds B to B+N-1, B random unless
    /// given), `--backend sqlite|postgres`. What cargo passes to every test binary (a name
    /// filter, `--nocapture`, `--test-threads N`, `--skip NAME`) is honoured or ignored: a filter
    /// or skip naming anything but this simulation leaves it out.
    fn parse() -> Option<Options> {
        let mut args = std::env::args().skip(1);
        let (mut seed, mut count, mut base) = (None, DEFAULT_SEEDS, None);
        let mut backends = vec![Backend::Sqlite, Backend::Postgres];
        let number = |flag: &str, value: Option<String>| -> u64 {
            let value = value.unwrap_or_default();
            value
                .parse()
                .unwrap_or_else(|_| panic!("{flag} {value:?}: expected an unsigned 64-bit integer"))
        };
        let mentions_us = |name: &str| "simulation sqlite postgres".contains(name);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--seed" => seed = Some(number("--seed", args.next())),
                "--seeds" => count = number("--seeds", args.next()),
                "--base" => base = Some(number("--base", args.next())),
                "--backend" => {
                    backends = match args.next().as_deref() {
                        Some("sqlite") => vec![Backend::Sqlite],
                        Some("postgres") => vec![Backend::Postgres],
                        other => panic!("--backend {other:?}: expected sqlite or postgres"),
                    }
                }
                "--test-threads" => {
                    args.next();
                }
                "--skip" => {
                    if args.next().is_some_and(|name| mentions_us(&name)) {
                        return None;
                    }
                }
                flag if flag.starts_with('-') => {}
                filter => {
                    if !mentions_us(filter) {
                        return None;
                    }
                }
            }
        }
        let seeds = match seed {
            Some(seed) => vec![seed],
            None => {
                let base = base.unwrap_or_else(rand::random);
                (0..count).map(|i| base.wrapping_add(i)).collect()
            }
        };
        Some(Options { seeds, backends })
    }
}

fn main() {
    let Some(options) = Options::parse() else {
        return;
    };
    std::thread::scope(|scope| {
        for &backend in &options.backends {
            let seeds = &options.seeds;
            scope.spawn(move || campaign(backend, seeds));
        }
    });
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

/// The command that replays `seed` on `name`'s backend.
fn replay(seed: u64, name: &str) -> String {
    format!("cargo test --test simulation -- --seed {seed} --backend {name}")
}

fn campaign(backend: Backend, seeds: &[u64]) {
    let name = backend_name(backend);
    if backend == Backend::Postgres && std::env::var(POSTGRES_ENV).is_err() {
        // Says why it is skipped (and fails under CI).
        assert!(database(backend, Path::new(".")).is_none());
        return;
    }
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let totals = Mutex::new(Tally::default());
    let failed = Mutex::new(Vec::new());
    // A seed waits on its server and on fsync a good part of the time: one more at once than
    // there are cores.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
    std::thread::scope(|scope| {
        for _ in 0..workers.min(seeds.len()) {
            scope.spawn(|| {
                let databases = Databases::new(backend);
                while lock(&failed).is_empty() {
                    let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    let Some(tally) = run_seed(&databases, seed) else {
                        lock(&failed).push(seed);
                        return;
                    };
                    let done = {
                        let mut totals = lock(&totals);
                        totals.add(&tally);
                        totals.seeds
                    };
                    if done % 1000 == 0 {
                        eprintln!(
                            "simulation on {name}: {done} of {} seeds passed, {:.0} s",
                            seeds.len(),
                            started.elapsed().as_secs_f64()
                        );
                    }
                }
            });
        }
    });
    let failed = failed
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    assert!(
        failed.is_empty(),
        "simulation seed {} failed on {name} (its steps are above); replay: {}",
        failed[0],
        replay(failed[0], name)
    );
    let totals = totals
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "simulation on {name}: seeds {}..={} ({} seeds) passed in {elapsed:.1} s, {:.0} ms a seed; {totals}",
        seeds[0],
        seeds[seeds.len() - 1],
        seeds.len(),
        1000.0 * elapsed / seeds.len() as f64,
    );
    if seeds.len() >= 20 {
        totals.assert_every_fault_struck();
    }
}

/// Where one worker's seeds keep the server's data: a new SQLite file for each seed, or one
/// PostgreSQL database for the worker, emptied before each seed (a database made and dropped
/// for each seed writes its whole template through the WAL twice: slower, and hard on the disk).
struct Databases {
    backend: Backend,
    postgres: Option<String>,
}

impl Databases {
    fn new(backend: Backend) -> Self {
        let postgres = (backend == Backend::Postgres)
            .then(|| database(backend, Path::new(".")).expect("PostgreSQL is available"));
        Databases { backend, postgres }
    }

    /// An empty database for a seed whose files go in `dir`.
    fn fresh(&self, dir: &Path) -> String {
        match &self.postgres {
            Some(db) => {
                empty_database(db);
                db.clone()
            }
            None => database(self.backend, dir).expect("SQLite is always there"),
        }
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        if let Some(db) = &self.postgres {
            drop_database(db);
        }
    }
}

/// Runs one seed on an empty database; `None` when it failed (its steps and the replay command
/// printed).
fn run_seed(databases: &Databases, seed: u64) -> Option<Tally> {
    let dir = TempDb::new();
    let db = databases.fresh(dir.dir.path());
    let mut trace = Vec::new();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        simulate(&db, dir.dir.path(), seed, &mut trace)
    }));
    if outcome.is_err() {
        let name = backend_name(databases.backend);
        eprintln!(
            "{}\nsimulation seed {seed} failed on {name}; replay: {}",
            trace.join("\n"),
            replay(seed, name)
        );
    }
    outcome.ok()
}

fn simulate(db: &str, dir: &Path, seed: u64, trace: &mut Vec<String>) -> Tally {
    let mut world = World::new(db, dir, seed, trace);
    for step in 0..STEPS {
        world.step(step);
    }
    world.heal();
    world.check();
    world.tally
}

/// What happened over a campaign, to show the faults struck (a simulation whose faults never
/// fire would pass for nothing).
#[derive(Debug, Default)]
struct Tally {
    seeds: usize,
    entries: usize,
    syncs: usize,
    unreachable: usize,
    dropped_answers: usize,
    duplicated: usize,
    partitions: usize,
    kills: usize,
    restores: usize,
    lost: usize,
    replacements: usize,
    replaced_apart: usize,
    merged_away: usize,
    set_aside: usize,
    hostile_accepted: usize,
    hostile_refused: usize,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.seeds += 1;
        self.entries += other.entries;
        self.syncs += other.syncs;
        self.unreachable += other.unreachable;
        self.dropped_answers += other.dropped_answers;
        self.duplicated += other.duplicated;
        self.partitions += other.partitions;
        self.kills += other.kills;
        self.restores += other.restores;
        self.lost += other.lost;
        self.replacements += other.replacements;
        self.replaced_apart += other.replaced_apart;
        self.merged_away += other.merged_away;
        self.set_aside += other.set_aside;
        self.hostile_accepted += other.hostile_accepted;
        self.hostile_refused += other.hostile_refused;
    }

    /// Every fault struck at least once over the campaign; the rarest (a till put back to an
    /// older copy reversing again what it had reversed, cards replaced apart merged, each in
    /// about one seed in five to ten) only over [`DEFAULT_SEEDS`] or more.
    fn assert_every_fault_struck(&self) {
        let mut counts = vec![
            ("entries", self.entries),
            ("failed syncs", self.unreachable),
            ("dropped answers", self.dropped_answers),
            ("duplicated requests", self.duplicated),
            ("partitions", self.partitions),
            ("server kills", self.kills),
            ("restored tills", self.restores),
            (
                "cards replaced offline or at a restored till",
                self.replaced_apart,
            ),
            ("hostile pushes accepted", self.hostile_accepted),
            ("hostile pushes refused", self.hostile_refused),
        ];
        if self.seeds as u64 >= DEFAULT_SEEDS {
            counts.push(("cards retired by a merge", self.merged_away));
            counts.push(("second reversals set aside", self.set_aside));
        }
        for (what, count) in counts {
            assert!(count > 0, "no {what} over the whole campaign: {self}");
        }
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} honest entries, {} syncs ({} failed), {} answers dropped, {} requests doubled, \
             {} partitions, {} server kills, {} tills restored ({} entries lost with them), \
             {} cards replaced ({} offline or at a restored till, {} retired by a merge), \
             {} second reversals set aside, \
             hostile pushes: {} accepted, {} refused",
            self.entries,
            self.syncs,
            self.unreachable,
            self.dropped_answers,
            self.duplicated,
            self.partitions,
            self.kills,
            self.restores,
            self.lost,
            self.replacements,
            self.replaced_apart,
            self.merged_away,
            self.set_aside,
            self.hostile_accepted,
            self.hostile_refused
        )
    }
}

/// A one-shot fault on one request of a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The server gets the request and answers; the answer never reaches the till.
    DropAnswer,
    /// The request reaches the server twice; the till gets the second answer.
    Duplicate,
}

/// The switches of one till's proxy.
#[derive(Debug, Default)]
struct LinkState {
    /// Every connection is dropped unanswered.
    partitioned: bool,
    /// The fault, and the number of the request (from 0, counted since it was armed) it hits.
    armed: Option<(usize, Fault)>,
    requests: usize,
    /// Whether the armed fault struck.
    struck: bool,
    closed: bool,
}

/// One till's network: a proxy on 127.0.0.1 between the till and wherever the server is now.
/// Each connection carries one request (the proxy asks the server to close after answering), so
/// the proxy sees whole requests and decides each one's fate.
struct Link {
    addr: SocketAddr,
    state: Arc<Mutex<LinkState>>,
}

impl Link {
    fn new(upstream: Arc<Mutex<Option<String>>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(LinkState::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if lock(&shared).closed {
                    return;
                }
                let Ok(client) = client else { continue };
                let (state, upstream) = (Arc::clone(&shared), Arc::clone(&upstream));
                std::thread::spawn(move || relay(client, &state, &upstream));
            }
        });
        Link { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn partition(&self, cut: bool) {
        lock(&self.state).partitioned = cut;
    }

    fn partitioned(&self) -> bool {
        lock(&self.state).partitioned
    }

    /// Arms `fault` for the requests from now on; returns whether the previous one struck.
    fn arm(&self, fault: Option<(usize, Fault)>) -> bool {
        let mut state = lock(&self.state);
        let struck = state.struck;
        state.armed = fault;
        state.requests = 0;
        state.struck = false;
        struck
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        lock(&self.state).closed = true;
        // Wakes the accept loop so that it sees it is closed.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Whole days from two days before the run to three after `now`: every entry a till stamps
/// (clocks off by at most `MAX_CLOCK_SKEW_MS`) falls inside, so a report comes from the totals.
fn report_period(now: Timestamp) -> (Timestamp, Timestamp) {
    const DAY: i64 = 86_400_000;
    let day = |t: Timestamp| Timestamp::from_millis(t.millis().div_euclid(DAY) * DAY);
    (day(NOW).plus_days(-2), day(now).plus_days(3))
}

/// The server's chain report over `[from, to)` (whole days).
fn report_url(server: &str, from: Timestamp, to: Timestamp) -> String {
    let day = |t: Timestamp| {
        let date = time::OffsetDateTime::from_unix_timestamp(t.millis() / 1000)
            .expect("a date")
            .date();
        format!(
            "{:04}-{:02}-{:02}",
            date.year(),
            u8::from(date.month()),
            date.day()
        )
    };
    format!("{server}/v1/report?from={}&to={}", day(from), day(to))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads one HTTP/1.1 request and rewrites it to ask the server to close after answering.
fn read_request(client: &TcpStream) -> Option<Vec<u8>> {
    let mut reader = BufReader::new(client);
    let mut request = Vec::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().ok()?;
        }
        if !lower.starts_with("connection:") {
            request.extend_from_slice(line.as_bytes());
        }
    }
    request.extend_from_slice(b"connection: close\r\n\r\n");
    let head = request.len();
    request.resize(head + length, 0);
    reader.read_exact(&mut request[head..]).ok()?;
    Some(request)
}

/// Sends `request` to the server and reads its whole answer.
fn exchange(upstream: &str, request: &[u8]) -> Option<Vec<u8>> {
    let mut server = TcpStream::connect(upstream).ok()?;
    server.write_all(request).ok()?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).ok()?;
    (!answer.is_empty()).then_some(answer)
}

/// One connection through a till's proxy.
fn relay(mut client: TcpStream, state: &Mutex<LinkState>, upstream: &Mutex<Option<String>>) {
    let Some(request) = read_request(&client) else {
        return;
    };
    let fault = {
        let mut s = lock(state);
        if s.partitioned {
            return;
        }
        let number = s.requests;
        s.requests += 1;
        let fault = s.armed.filter(|(at, _)| *at == number).map(|(_, f)| f);
        s.struck |= fault.is_some();
        fault
    };
    let Some(upstream) = lock(upstream).clone() else {
        return;
    };
    let Some(mut answer) = exchange(&upstream, &request) else {
        return;
    };
    match fault {
        Some(Fault::DropAnswer) => return,
        Some(Fault::Duplicate) => match exchange(&upstream, &request) {
            Some(again) => answer = again,
            None => return,
        },
        None => {}
    }
    let _ = client.write_all(&answer);
}

/// A till of the simulation.
struct SimTill {
    till: Till,
    /// Kept for the whole run, as the app's sync worker keeps its own (building one loads the
    /// platform's certificates).
    client: SyncClient,
    link: Link,
    /// How far this till's clock is from the simulation's, in milliseconds.
    skew: i64,
    token: String,
    backup: Option<PathBuf>,
    /// Put back to its backup and not synced since.
    restored: bool,
    /// Entries this till holds whose reversal the server held when its file was put back to an
    /// older copy without it, until it syncs: the reversal's number -> (target, reversal).
    reversed_on_server: BTreeMap<i64, (Uuid, Uuid)>,
}

/// A till with its own file that joins `url` with `token` at `at`, and its client.
fn join(url: &str, token: &str, at: Timestamp) -> (Till, SyncClient) {
    let db = TempDb::new();
    let mut store = db.open();
    store.set_sync_server(url, token).expect("save the server");
    let mut till = Till { db, store };
    // Durability is tested elsewhere (tests/crash.rs); here it would only cost time.
    till.unsafe_fast_writes();
    let client = client_for(&till.store).expect("client");
    sync_once(&mut till.store, &client, at).expect("first sync");
    (till, client)
}

/// A new till that joins without its pull, takes every member's history from the server ahead
/// of it (as it does for a member scanned while it catches up, here in member order instead of
/// the chain's), then syncs: what it holds must be what a plain pull gives.
fn join_taking_histories_first(url: &str, token: &str, at: Timestamp) -> (Till, SyncClient) {
    let db = TempDb::new();
    let store = db.open();
    let mut till = Till { db, store };
    till.unsafe_fast_writes();
    let code = tillpass::sync::join::JoinCode {
        url: url.to_owned(),
        token: token.to_owned(),
        pin: None,
    };
    tillpass::sync::join_then_catch_up(&mut till.store, &code, false, at).expect("join");
    let served = pull_all(url, token, till.store.terminal_id());
    let members: BTreeSet<Uuid> = served.members.iter().map(|m| m.member.id.0).collect();
    let mut taken = 0;
    for member in members {
        taken += tillpass::sync::catch_up_member(
            &mut till.store,
            MemberId(member),
            std::time::Duration::from_secs(30),
            at,
        )
        .expect("a member's history ahead of the pull")
        .expect("joined")
        .0;
    }
    let client = client_for(&till.store).expect("client");
    let pulled = sync_once(&mut till.store, &client, at).expect("first sync");
    assert_eq!(
        taken + pulled.pulled_entries,
        served.entries.len(),
        "each entry taken once, ahead of the pull ({taken}) or by it"
    );
    (till, client)
}

/// One HTTP client for the hostile till and the oracle's questions to the server, for the
/// whole process; it keeps no idle connections, which a killed server would leave dead.
fn http() -> &'static reqwest::blocking::Client {
    static HTTP: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    HTTP.get_or_init(|| {
        // reqwest is built without a default TLS provider; the sync client installs ring's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::blocking::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("an HTTP client")
    })
}

/// A GET as the till with `token` and `terminal`; the answer must be a success.
fn get<T: serde::de::DeserializeOwned>(url: &str, token: &str, terminal: &TerminalId) -> T {
    let response = http()
        .get(url)
        .bearer_auth(token)
        .header(TERMINAL_HEADER, &terminal.0)
        .send()
        .expect("the server is up");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().expect("json")
}

/// The till with a valid token of its own that pushes forgeries built from honest entries.
struct Hostile {
    token: String,
    terminal: TerminalId,
    /// The highest number of its sequence the server holds.
    last_seq: i64,
    /// Its entries the server accepted.
    accepted: Vec<Entry>,
    /// Its last accepted batch, to push again.
    last_batch: Option<PushRequest>,
}

/// What the oracle knows: the entries that must be everywhere (and so nothing else may be).
#[derive(Default)]
struct Oracle {
    /// Every entry an honest till wrote, less those lost with a restored file (made after the
    /// backup and never pushed).
    honest: BTreeSet<Uuid>,
    /// The hostile till's entries the server accepted.
    accepted: BTreeSet<Uuid>,
    /// Second reversals made at a till put back to an older copy, which that till sets aside:
    /// the reversal -> (the till, the reversal the server holds).
    set_aside: BTreeMap<Uuid, (usize, Uuid)>,
    /// Every card a member was given, and where (lost ones dropped).
    cards: Vec<(MemberId, CardNumber, usize)>,
    /// The cards a till replaced (the others are retired, if at all, by a merge).
    replaced: BTreeSet<CardNumber>,
    /// The member whose card was replaced last.
    replaced_last: Option<MemberId>,
}

struct World<'t> {
    db: String,
    server: Option<Server>,
    /// Where the proxies find the server (`None` while it is down).
    upstream: Arc<Mutex<Option<String>>>,
    tills: Vec<SimTill>,
    hostile: Hostile,
    observer_token: String,
    rng: StdRng,
    clock: Timestamp,
    /// Members in the order they were enrolled (the simulation's names for them).
    members: Vec<MemberId>,
    oracle: Oracle,
    tally: Tally,
    trace: &'t mut Vec<String>,
    step: usize,
}

impl<'t> World<'t> {
    fn new(db: &str, dir: &Path, seed: u64, trace: &'t mut Vec<String>) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let tokens = add_terminals(db, TILLS + 2);
        let server = Server::start(db);
        let upstream = Arc::new(Mutex::new(Some(address(&server.url))));
        let clock = NOW;
        let tills = (0..TILLS)
            .map(|i| {
                let link = Link::new(Arc::clone(&upstream));
                let skew = rng.random_range(-MAX_CLOCK_SKEW_MS..=MAX_CLOCK_SKEW_MS);
                let (till, client) = join(&link.url(), &tokens[i], clock.plus_millis(skew));
                SimTill {
                    till,
                    client,
                    link,
                    skew,
                    token: tokens[i].clone(),
                    backup: None,
                    restored: false,
                    reversed_on_server: BTreeMap::new(),
                }
            })
            .collect();
        let hostile = Hostile {
            token: tokens[TILLS].clone(),
            terminal: TerminalId(format!("till-hostile-{:08x}", rng.random::<u32>())),
            last_seq: 0,
            accepted: Vec::new(),
            last_batch: None,
        };
        trace.push(format!("seed {seed}: server database in {}", dir.display()));
        World {
            db: db.to_owned(),
            server: Some(server),
            upstream,
            tills,
            hostile,
            observer_token: tokens[TILLS + 1].clone(),
            rng,
            clock,
            members: Vec::new(),
            oracle: Oracle::default(),
            tally: Tally::default(),
            trace,
            step: 0,
        }
    }

    fn log(&mut self, what: String) {
        let line = format!("{:>3} {}  {what}", self.step, self.clock);
        self.trace.push(line);
    }

    /// Till `t`'s clock.
    fn at(&self, t: usize) -> Timestamp {
        self.clock.plus_millis(self.tills[t].skew)
    }

    fn step(&mut self, step: usize) {
        self.step = step;
        self.clock = self.clock.plus_millis(self.rng.random_range(0..=600_000));
        if self.server.is_none() && self.rng.random_bool(0.2) {
            self.restart();
        }
        // Now and then a till's report, so that its records and totals are made early and kept
        // up to date through whatever follows (no draw from the seed's stream).
        if step % 10 == 5 {
            self.report((step / 10) % TILLS);
        }
        let t = self.rng.random_range(0..TILLS);
        match self.rng.random_range(0..100) {
            0..30 => self.sale(t),
            30..36 => self.redeem(t),
            36..42 => self.reverse(t),
            42..45 => self.enrol(t),
            45..50 => self.replace_card(t),
            50..54 => self.adjust(t),
            54..76 => self.sync_step(t),
            76..82 => self.toggle_partition(t),
            82..85 => self.kill_or_restart(),
            85..88 => self.backup_or_restore(t),
            88..90 => self.refund_then_restore(t),
            _ => self.hostile_push(),
        }
    }

    /// Till `t`'s report, from its totals, which must be what its ledger gives.
    fn report(&mut self, t: usize) {
        let (from, to) = report_period(self.clock);
        let store = &mut self.tills[t].till.store;
        let counted = store.insights(from, to).expect("report");
        let recomputed = store.insights_from_ledger(from, to).expect("recomputed");
        assert_eq!(
            counted, recomputed,
            "till {t}'s report from its totals, and from its ledger"
        );
        self.log(format!("till {t}: report"));
        // The server's too, so that its records are made early and then kept up to date.
        if let Some(server) = &self.server {
            let till = &self.tills[t];
            let _: serde_json::Value = get(
                &report_url(&server.url, from, to),
                &till.token,
                till.till.store.terminal_id(),
            );
        }
    }

    /// The simulation's name for a member: its place in the enrolment order.
    fn name(&self, member: MemberId) -> String {
        match self.members.iter().position(|m| *m == member) {
            Some(i) => format!("m{i}"),
            None => member.to_string(),
        }
    }

    /// A member till `t` knows, chosen by the seed.
    fn pick_member(&mut self, t: usize) -> Option<MemberId> {
        let store = &self.tills[t].till.store;
        let known: Vec<MemberId> = self
            .members
            .iter()
            .copied()
            .filter(|m| store.member(*m).is_ok())
            .collect();
        known.choose(&mut self.rng).copied()
    }

    /// Records the outcome of a write at till `t`: an entry made, or a refusal (part of life).
    fn wrote(&mut self, t: usize, what: String, result: Result<Entry, StoreError>) {
        match result {
            Ok(entry) => {
                self.oracle.honest.insert(entry.id.0);
                self.tally.entries += 1;
                // A sale writes the offers and badges it unlocks in its transaction, right
                // after; a sale's reversal takes back the unused ones the same way.
                let follow_ups = own_entries_after(&self.tills[t].till.store, entry.terminal_seq);
                self.tally.entries += follow_ups.len();
                self.oracle.honest.extend(follow_ups);
                self.log(format!(
                    "till {t}: {what} -> {} {:+} (seq {})",
                    entry.kind, entry.points, entry.terminal_seq
                ));
            }
            Err(StoreError::Refused(refusal)) => {
                self.log(format!("till {t}: {what} -> refused: {refusal}"));
            }
            Err(e) => panic!("till {t}: {what} failed: {e}"),
        }
    }

    fn sale(&mut self, t: usize) {
        let Some(member) = self.pick_member(t) else {
            return self.enrol(t);
        };
        let amount = self.rng.random_range(50..30_000);
        let at = self.at(t);
        let result = self.tills[t].till.store.earn(member, amount, "sim", at);
        let what = format!("sale of {amount} to {}", self.name(member));
        self.wrote(t, what, result);
    }

    fn redeem(&mut self, t: usize) {
        let Some(member) = self.pick_member(t) else {
            return self.enrol(t);
        };
        let reward = *REWARDS.choose(&mut self.rng).expect("rewards");
        let at = self.at(t);
        let result = self.tills[t].till.store.redeem(member, reward, "sim", at);
        let what = format!("{} redeems {reward}", self.name(member));
        self.wrote(t, what, result);
    }

    /// The reversal of a member's last entry at till `t`; at a till put back to an older copy of
    /// its file, mostly one of the entries whose reversal it pushed before (the copy shows them
    /// unreversed, and the cashier refunds again).
    fn reverse(&mut self, t: usize) {
        if !self.tills[t].reversed_on_server.is_empty() && self.rng.random_bool(0.75) {
            return self.reverse_again(t);
        }
        let Some(member) = self.pick_member(t) else {
            return self.enrol(t);
        };
        let store = &self.tills[t].till.store;
        let Some(last) = store.last_local_entry(member).expect("last entry") else {
            return;
        };
        let what = format!("reverse {}'s last {} here", self.name(member), last.kind);
        self.reverse_entry(t, last.id, what);
    }

    /// At till `t`, put back to an older copy of its file, the reversal of an entry whose
    /// reversal it pushed before the copy was put back (when there is one).
    fn reverse_again(&mut self, t: usize) {
        let again: Vec<Uuid> = self.tills[t]
            .reversed_on_server
            .values()
            .map(|(target, _)| *target)
            .collect();
        if let Some(&target) = again.choose(&mut self.rng) {
            let what = "reverse again an entry whose reversal the server holds".to_owned();
            self.reverse_entry(t, EntryId(target), what);
        }
    }

    /// The reversal of `target` at till `t`. A second reversal of an entry whose first the
    /// server holds is not an entry for the oracle: the till sets it aside when it takes its
    /// entries back.
    fn reverse_entry(&mut self, t: usize, target: EntryId, what: String) {
        let at = self.at(t);
        let result = self.tills[t].till.store.reverse(target, "sim", at);
        let first = self.tills[t]
            .reversed_on_server
            .values()
            .find(|(e, _)| *e == target.0)
            .map(|(_, first)| *first);
        if let (Ok(second), Some(first)) = (&result, first) {
            self.oracle.set_aside.insert(second.id.0, (t, first));
            // The sale's facts taken back with it: again a second reversal where the server
            // holds the first.
            let store = &self.tills[t].till.store;
            for id in own_entries_after(store, second.terminal_seq) {
                let target: Option<Uuid> = store
                    .connection()
                    .query_row("SELECT reverses FROM ledger WHERE id = ?1", [id], |r| {
                        r.get(0)
                    })
                    .expect("a follow-up");
                let held = self.tills[t]
                    .reversed_on_server
                    .values()
                    .find(|(e, _)| Some(*e) == target)
                    .map(|(_, first)| *first);
                match held {
                    Some(first) => {
                        self.oracle.set_aside.insert(id, (t, first));
                    }
                    None => {
                        self.oracle.honest.insert(id);
                        self.tally.entries += 1;
                    }
                }
            }
            return self.log(format!(
                "till {t}: {what} -> a second reversal (seq {}), to be set aside for {first}",
                second.terminal_seq
            ));
        }
        self.wrote(t, what, result);
    }

    fn enrol(&mut self, t: usize) {
        // Some are referred by a member this till knows, by card: the referral bonuses come
        // with their first purchase of 5.00 or more, at whichever till.
        let referrer = if self.rng.random_bool(0.3) {
            self.pick_member(t)
        } else {
            None
        };
        let referred_by = referrer.map(|m| {
            let store = &self.tills[t].till.store;
            store.member(m).expect("known").member.card.to_string()
        });
        let input = MemberInput {
            name: format!("Member {}", self.members.len()),
            referred_by,
            ..Default::default()
        };
        let at = self.at(t);
        let store = &mut self.tills[t].till.store;
        let view = store.add_member(input, "sim", at).expect("enrol");
        let welcome = store
            .last_local_entry(view.member.id)
            .expect("last entry")
            .expect("a welcome bonus");
        self.members.push(view.member.id);
        self.oracle
            .cards
            .push((view.member.id, view.member.card.clone(), t));
        let what = format!("enrols {}", self.name(view.member.id));
        self.wrote(t, what, Ok(welcome));
    }

    /// A new card for a member till `t` knows, whether or not it has the server's latest record
    /// of them: tills cut off may each replace one member's card, and a till put back to an
    /// older copy may replace again a card it replaced before. The records merge, and every card
    /// stays the member's. Half the time it is the member whose card was replaced last, at any
    /// till (who loses a card once loses it again).
    fn replace_card(&mut self, t: usize) {
        let again = self
            .oracle
            .replaced_last
            .filter(|m| self.tills[t].till.store.member(*m).is_ok());
        let chosen = match again {
            Some(member) if self.rng.random_bool(0.5) => Some(member),
            _ => self.pick_member(t),
        };
        let Some(member) = chosen else {
            return self.enrol(t);
        };
        self.oracle.replaced_last = Some(member);
        let apart =
            self.server.is_none() || self.tills[t].link.partitioned() || self.tills[t].restored;
        let at = self.at(t);
        let store = &mut self.tills[t].till.store;
        let old = store.member(member).expect("known").member.card;
        let card = store
            .replace_card(member, at)
            .expect("replace a card")
            .member
            .card;
        self.oracle.replaced.insert(old);
        self.tally.replacements += 1;
        self.tally.replaced_apart += usize::from(apart);
        self.oracle.cards.push((member, card.clone(), t));
        let name = self.name(member);
        self.log(format!(
            "till {t}: new card {card} for {name}{}",
            if apart { " (offline or restored)" } else { "" }
        ));
    }

    fn adjust(&mut self, t: usize) {
        let Some(member) = self.pick_member(t) else {
            return self.enrol(t);
        };
        let points =
            self.rng.random_range(1..=500) * if self.rng.random_bool(0.3) { -1 } else { 1 };
        let at = self.at(t);
        let result = self.tills[t]
            .till
            .store
            .adjust(member, points, "goodwill", "sim", at);
        let what = format!("adjusts {} by {points:+}", self.name(member));
        self.wrote(t, what, result);
    }

    /// One sync round of till `t` through its proxy, with `fault` armed on one request.
    fn sync(&mut self, t: usize, fault: Option<(usize, Fault)>) -> Result<SyncReport, SyncError> {
        let at = self.at(t);
        let till = &mut self.tills[t];
        till.link.arm(fault);
        let result = sync_once(&mut till.till.store, &till.client, at);
        // After its pull a till reverses its own badge awards another till's came before.
        let voids = own_award_voids(&till.till.store);
        let aside = &self.oracle.set_aside;
        self.oracle
            .honest
            .extend(voids.into_iter().filter(|id| !aside.contains_key(id)));
        let till = &mut self.tills[t];
        if result.is_ok() {
            till.restored = false;
            till.reversed_on_server.clear();
        }
        if till.link.arm(None) {
            match fault.map(|(_, f)| f) {
                Some(Fault::DropAnswer) => self.tally.dropped_answers += 1,
                Some(Fault::Duplicate) => self.tally.duplicated += 1,
                None => {}
            }
        }
        self.tally.syncs += 1;
        if let Ok(report) = &result {
            assert!(
                !report.server_restored,
                "till {t} took a restarted server for one restored from an older copy: {report:?}"
            );
        }
        result
    }

    fn sync_step(&mut self, t: usize) {
        let fault = self.rng.random_bool(0.3).then(|| {
            let at = self.rng.random_range(0..5);
            let fault = if self.rng.random_bool(0.5) {
                Fault::DropAnswer
            } else {
                Fault::Duplicate
            };
            (at, fault)
        });
        let armed = fault.map_or(String::new(), |(at, f)| format!(" ({f:?} at request {at})"));
        match self.sync(t, fault) {
            Ok(r) => self.log(format!(
                "till {t}: sync{armed}: pushed {} (+{} again) and {} members, pulled {} and {} members, took back {}, renumbered {}, set aside {}",
                r.pushed_entries, r.duplicates, r.pushed_members, r.pulled_entries, r.pulled_members, r.recovered, r.renumbered, r.set_aside
            )),
            Err(SyncError::Unreachable { reason, .. }) => {
                self.tally.unreachable += 1;
                self.log(format!("till {t}: sync{armed}: unreachable ({reason})"));
            }
            Err(e) => panic!("till {t}: sync{armed} failed: {e}"),
        }
    }

    fn toggle_partition(&mut self, t: usize) {
        let link = &self.tills[t].link;
        let cut = !link.partitioned();
        link.partition(cut);
        if cut {
            self.tally.partitions += 1;
        }
        self.log(format!(
            "till {t}: {}",
            if cut { "cut off" } else { "reconnected" }
        ));
    }

    fn restart(&mut self) {
        let server = Server::start(&self.db);
        *lock(&self.upstream) = Some(address(&server.url));
        self.log(format!("server started again at {}", server.url));
        self.server = Some(server);
    }

    fn kill_or_restart(&mut self) {
        match self.server.take() {
            Some(mut server) => {
                server.kill();
                *lock(&self.upstream) = None;
                self.tally.kills += 1;
                self.log("server killed".into());
            }
            None => self.restart(),
        }
    }

    /// A refund, and then the till's disk fails and its file is put back to a copy from before
    /// (taken now unless it has one): the copy shows the refunded sale unreversed, and half the
    /// time the cashier refunds it again at once.
    fn refund_then_restore(&mut self, t: usize) {
        if self.server.is_none() {
            return self.backup_or_restore(t);
        }
        if self.tills[t].backup.is_none() {
            self.backup_or_restore(t);
        }
        self.reverse(t);
        match self.sync(t, None) {
            Ok(_) => self.log(format!("till {t}: synced after the refund")),
            Err(SyncError::Unreachable { reason, .. }) => {
                self.tally.unreachable += 1;
                self.log(format!(
                    "till {t}: sync after the refund: unreachable ({reason})"
                ));
            }
            Err(e) => panic!("till {t}: sync after the refund failed: {e}"),
        }
        self.restore(t);
        if self.rng.random_bool(0.5) {
            self.reverse_again(t);
        }
    }

    fn backup_or_restore(&mut self, t: usize) {
        if self.tills[t].backup.is_none() {
            let till = &mut self.tills[t];
            let path = till.till.db.dir.path().join("backup.sqlite3");
            let _ = std::fs::remove_file(&path);
            backup_sqlite(till.till.store.connection(), &path);
            till.backup = Some(path);
            self.log(format!("till {t}: file backed up"));
        } else if self.server.is_some() {
            self.restore(t);
        } else {
            self.log(format!(
                "till {t}: its backup waits for the server to be put back"
            ));
        }
    }

    /// Puts till `t`'s backup back. What it made since and the server never got is lost, as it
    /// would be in a shop (entries, cards given, second reversals set aside); the oracle asks the
    /// server which that is.
    fn restore(&mut self, t: usize) {
        let url = self.server.as_ref().expect("server up").url.clone();
        let till = &mut self.tills[t];
        let backup = till.backup.take().expect("a backup");
        let terminal = till.till.store.terminal_id().clone();
        let before = own_entries(&till.till);
        let theirs = own_on_server(&url, &till.token, &terminal);
        let on_server: BTreeSet<Uuid> = theirs.iter().map(|e| e.id.0).collect();
        let pulled = pull_all(&url, &till.token, &terminal);
        let served = latest_members(&pulled);
        till.till.restore(&backup);
        till.till.unsafe_fast_writes();
        till.restored = true;
        let kept = own_entries(&till.till);
        till.reversed_on_server = theirs
            .iter()
            .filter(|e| !kept.contains(&e.id.0))
            .filter_map(|e| Some((e.terminal_seq, (e.reverses?.0, e.id.0))))
            .filter(|(_, (target, _))| kept.contains(target))
            .collect();
        let lost: Vec<Uuid> = before
            .difference(&kept)
            .filter(|id| !on_server.contains(*id))
            .copied()
            .collect();
        let since = before.difference(&kept).count();
        for id in &lost {
            self.oracle.honest.remove(id);
        }
        let aside: BTreeSet<String> = quarantined_entries(&till.till);
        self.oracle.set_aside.retain(|id, (at, _)| {
            *at != t || kept.contains(id) || aside.contains(&format!("entry:{id}"))
        });
        let store = &till.till.store;
        self.oracle.cards.retain(|(member, card, at)| {
            *at != t
                || card_state(store, *member, card).is_some()
                || served
                    .get(member)
                    .is_some_and(|rec| rec.cards().contains(card))
        });
        self.tally.restores += 1;
        self.tally.lost += lost.len();
        self.log(format!(
            "till {t}: file put back to its backup: {since} entries made since, {} of them never pushed and lost",
            lost.len()
        ));
    }

    fn hostile_push(&mut self) {
        let Some(server) = &self.server else {
            return self.log("hostile: the server is down".into());
        };
        let url = server.url.clone();
        let pulled = pull_all(&url, &self.hostile.token, &self.hostile.terminal);
        let source = self.rng.random_range(0..TILLS);
        let terminal = self.tills[source].till.store.terminal_id().clone();
        let Some((request, mutations)) = self.forge(&pulled, &terminal) else {
            return self.log("hostile: nothing to copy yet".into());
        };
        let response = http()
            .post(format!("{url}/v1/sync/push"))
            .bearer_auth(&self.hostile.token)
            .header(TERMINAL_HEADER, &self.hostile.terminal.0)
            .json(&request)
            .send()
            .expect("the server is up");
        let status = response.status().as_u16();
        let described = format!(
            "hostile: {} entries and {} members copied from till {source}, {}",
            request.entries.len(),
            request.members.len(),
            if mutations.is_empty() {
                "unchanged".to_owned()
            } else {
                mutations.join(", ")
            }
        );
        match status {
            200 => {
                self.hostile.last_seq = request
                    .entries
                    .iter()
                    .map(|e| e.terminal_seq)
                    .fold(self.hostile.last_seq, i64::max);
                for e in &request.entries {
                    if self.oracle.accepted.insert(e.id.0) {
                        self.hostile.accepted.push(e.clone());
                    }
                }
                self.hostile.last_batch = Some(request);
                self.tally.hostile_accepted += 1;
                self.log(format!("{described}: accepted"));
            }
            422 => {
                let body: ErrorBody = response.json().expect("an error body");
                self.tally.hostile_refused += 1;
                self.log(format!(
                    "{described}: refused ({})",
                    body.rule.unwrap_or(body.error)
                ));
            }
            _ => panic!(
                "{described}: the server answered {status}: {}",
                response.text().unwrap_or_default()
            ),
        }
    }

    /// A batch built from till `source`'s entries on the server (or the hostile till's last
    /// accepted batch), as the hostile till would have written them, then mutated 0 to 2 times.
    fn forge(
        &mut self,
        pulled: &PullResponse,
        source: &TerminalId,
    ) -> Option<(PushRequest, Vec<String>)> {
        let mut request = match &self.hostile.last_batch {
            Some(last) if self.rng.random_bool(0.15) => last.clone(),
            _ => PushRequest {
                entries: self.copy(pulled, source),
                ..PushRequest::default()
            },
        };
        let mut mutations = Vec::new();
        for _ in 0..self.rng.random_range(0..=2) {
            mutations.push(self.mutate(&mut request, pulled));
        }
        if request.entries.is_empty() && request.members.is_empty() {
            return None;
        }
        Some((request, mutations))
    }

    /// Up to five consecutive entries of `source` (no welcome bonus, no reversal of an entry
    /// outside them) with new ids, renumbered after the hostile till's sequence.
    fn copy(&mut self, pulled: &PullResponse, source: &TerminalId) -> Vec<Entry> {
        let mut theirs: Vec<&Entry> = pulled
            .entries
            .iter()
            .filter(|e| e.terminal_id == *source)
            .collect();
        theirs.sort_by_key(|e| e.terminal_seq);
        if theirs.is_empty() {
            return Vec::new();
        }
        let start = self.rng.random_range(0..theirs.len());
        let end = (start + self.rng.random_range(1..=5)).min(theirs.len());
        let window = &theirs[start..end];
        let mut renamed: BTreeMap<EntryId, EntryId> = BTreeMap::new();
        let mut copies = Vec::new();
        for e in window {
            if e.kind == EntryKind::WelcomeBonus {
                continue;
            }
            let reverses = match e.reverses {
                Some(target) => match renamed.get(&target) {
                    Some(copy) => Some(*copy),
                    None => continue,
                },
                None => None,
            };
            let id = EntryId(uuid_v7(e.occurred_at, self.rng.random()));
            renamed.insert(e.id, id);
            copies.push(Entry {
                id,
                terminal_id: self.hostile.terminal.clone(),
                terminal_seq: self.hostile.last_seq + 1 + copies.len() as i64,
                reverses,
                actor: "hostile".into(),
                ..(*e).clone()
            });
        }
        copies
    }

    /// One mutation of `request`, named.
    fn mutate(&mut self, request: &mut PushRequest, pulled: &PullResponse) -> String {
        let rng = &mut self.rng;
        let n = request.entries.len();
        let choice = if n == 0 { 9 } else { rng.random_range(0..10) };
        let i = if n == 0 { 0 } else { rng.random_range(0..n) };
        match choice {
            0 => {
                request.entries.shuffle(rng);
                "reordered".into()
            }
            1 => {
                let delta = rng.random_range(1..=1_000) * if rng.random_bool(0.5) { -1 } else { 1 };
                request.entries[i].points += delta;
                format!("points of #{i} {delta:+}")
            }
            2 => {
                let e = &mut request.entries[i];
                let delta = rng.random_range(1..=5_000);
                e.amount_minor = Some(e.amount_minor.unwrap_or(0) + delta);
                format!("amount of #{i} +{delta}")
            }
            3 => {
                let kind = *EntryKind::ALL.choose(rng).expect("kinds");
                request.entries[i].kind = kind;
                format!("#{i} made a {kind}")
            }
            4 => {
                let (target, what): (Option<Entry>, &str) = match rng.random_range(0..4) {
                    0 => (pulled.entries.choose(rng).cloned(), "another till's entry"),
                    1 => (
                        self.hostile.accepted.choose(rng).cloned(),
                        "its own earlier entry",
                    ),
                    2 => (
                        request.entries.choose(rng).cloned(),
                        "an entry of the batch",
                    ),
                    _ => (None, "nothing"),
                };
                let e = &mut request.entries[i];
                e.kind = EntryKind::Reverse;
                e.reward_id = None;
                e.note = None;
                match target {
                    Some(target) => {
                        e.reverses = Some(target.id);
                        e.points = -target.points;
                        e.amount_minor = target.amount_minor.map(|a| -a);
                        e.currency = target.currency.clone();
                    }
                    None => e.reverses = Some(EntryId(uuid_v7(e.occurred_at, rng.random()))),
                }
                format!("#{i} reverses {what}")
            }
            5 => {
                let last = self.hostile.last_seq;
                let top = last + n as i64;
                let (seq, what) = match rng.random_range(0..3) {
                    0 if last > 0 => (rng.random_range(1..=last), "a number already used"),
                    1 if n > 1 => (last + 1 + ((i + 1) % n) as i64, "another's number"),
                    _ => (top + rng.random_range(1..=3), "a number past a gap"),
                };
                request.entries[i].terminal_seq = seq;
                format!("#{i} takes {what} ({seq})")
            }
            6 => {
                let other = self.tills[rng.random_range(0..TILLS)]
                    .till
                    .store
                    .terminal_id()
                    .clone();
                request.entries[i].terminal_id = other;
                format!("#{i} claims an honest till")
            }
            7 => match pulled.entries.choose(rng) {
                Some(honest) => {
                    request.entries[i].id = honest.id;
                    format!("#{i} takes an honest entry's id")
                }
                None => "no id to take".into(),
            },
            8 => {
                let shift = rng.random_range(2..=30);
                let e = &mut request.entries[i];
                e.occurred_at = if rng.random_bool(0.5) {
                    common::server::now().plus_days(shift)
                } else {
                    Timestamp::from_millis(0).plus_days(shift)
                };
                format!("#{i} stamped at {}", e.occurred_at)
            }
            _ => self.mutate_member(request, pulled),
        }
    }

    /// A member record in the batch: the latest version of a member on the server, changed as
    /// no till changes it, or renamed (as a till may: the server merges it with what honest
    /// tills change meanwhile).
    fn mutate_member(&mut self, request: &mut PushRequest, pulled: &PullResponse) -> String {
        let latest = latest_members(pulled);
        // In enrolment order, so the seed picks the same member on a replay.
        let known: Vec<&MemberRecord> = self
            .members
            .iter()
            .filter_map(|m| latest.get(m).copied())
            .collect();
        let rng = &mut self.rng;
        let Some(&original) = known.choose(rng) else {
            return "no member to change".into();
        };
        let mut rec = original.clone();
        rec.version = rec.version.max(self.clock.millis()) + 1;
        let what = match rng.random_range(0..6) {
            0 => {
                rec.retired_cards.push(RetiredCard {
                    card: rec.member.card.clone(),
                    retired_at: self.clock,
                    replaced_by: rec.member.card.clone(),
                });
                "its own card retired"
            }
            1 => {
                rec.member.card = CardNumber::from_payload(rng.random_range(1..999_999_999));
                "card swapped without retiring the old one"
            }
            2 => {
                let others: Vec<&&MemberRecord> = known
                    .iter()
                    .filter(|m| m.member.id != rec.member.id)
                    .collect();
                let Some(other) = others.choose(rng) else {
                    return "no other member's card to take".into();
                };
                rec.retired_cards.push(RetiredCard {
                    card: rec.member.card.clone(),
                    retired_at: self.clock,
                    replaced_by: other.member.card.clone(),
                });
                rec.member.card = other.member.card.clone();
                "card taken from a member"
            }
            3 => {
                rec.member.created_at = rec.member.created_at.plus_millis(-1);
                "enrolled earlier"
            }
            4 => {
                rec.member.name = format!("Renamed at step {}", self.step);
                "renamed"
            }
            _ => {
                rec.version = common::server::now().plus_days(1).millis();
                "version from the future"
            }
        };
        let name = self.name(rec.member.id);
        request.members.push(rec);
        format!("member {name} {what}")
    }

    /// Every fault off, the server up, every till syncing until a round changes nothing.
    fn heal(&mut self) {
        self.step = STEPS;
        if self.server.is_none() {
            self.restart();
        }
        for till in &self.tills {
            till.link.partition(false);
        }
        self.log("healed: every till reconnected, the server up".into());
        for round in 0..HEAL_ROUNDS {
            let mut changed = false;
            for t in 0..TILLS {
                let report = self
                    .sync(t, None)
                    .unwrap_or_else(|e| panic!("till {t} is stuck after healing: {e}"));
                changed |= report
                    != SyncReport {
                        server_seq: report.server_seq,
                        target_seq: report.target_seq,
                        ..SyncReport::default()
                    };
                self.log(format!("till {t}: settling sync: {report:?}"));
            }
            if !changed {
                self.log(format!("settled after {round} rounds"));
                return;
            }
        }
        panic!("the tills did not settle in {HEAL_ROUNDS} rounds");
    }

    fn check(&mut self) {
        let url = self.server.as_ref().expect("up after healing").url.clone();
        let (mut observer, client) =
            join_taking_histories_first(&url, &self.observer_token, self.clock);
        let expected: BTreeSet<Uuid> = self
            .oracle
            .honest
            .union(&self.oracle.accepted)
            .copied()
            .collect();
        // What the server serves, before any till judges it.
        let served: BTreeMap<Uuid, String> =
            pull_all(&url, &self.observer_token, observer.store.terminal_id())
                .entries
                .iter()
                .map(|e| (e.id.0, describe(e)))
                .collect();
        assert_same("the server", &served, &expected, &self.oracle, &[]);
        let reference = ledger(&observer);
        let roster = members(&observer);
        let balances = observer.balances();
        let settled_at = self.at(0);
        let derived = facts(&observer, settled_at);
        let given: Vec<(MemberId, &CardNumber, String)> = self
            .oracle
            .cards
            .iter()
            .map(|(member, card, t)| {
                let what = format!("card {card} of {} given at till {t}", self.name(*member));
                (*member, card, what)
            })
            .collect();
        // What each till sets aside: its second reversals, each for the one the server holds.
        let mut aside: Vec<BTreeMap<String, Uuid>> = vec![BTreeMap::new(); TILLS + 1];
        for (id, (t, first)) in &self.oracle.set_aside {
            aside[*t].insert(format!("entry:{id}"), *first);
        }
        self.tally.set_aside = self.oracle.set_aside.len();
        self.tally.merged_away = self
            .oracle
            .cards
            .iter()
            .filter(|(member, card, _)| {
                !self.oracle.replaced.contains(card)
                    && card_state(&observer.store, *member, card) == Some(false)
            })
            .count();
        let mut tills: Vec<(String, &mut Till)> = self
            .tills
            .iter_mut()
            .enumerate()
            .map(|(t, s)| (format!("till {t}"), &mut s.till))
            .collect();
        tills.push(("a new till".into(), &mut observer));
        for ((name, till), aside) in tills.into_iter().zip(&aside) {
            let held = ledger(till);
            let quarantined = till.store.quarantined(1_000).expect("quarantine");
            assert_same(&name, &held, &expected, &self.oracle, &quarantined);
            let unlike: Vec<String> = held
                .iter()
                .filter(|(id, e)| reference.get(id) != Some(e))
                .map(|(id, e)| {
                    format!("{id}: {e} at {name}, {:?} at a new till", reference.get(id))
                })
                .collect();
            assert!(
                unlike.is_empty(),
                "{name} holds entries unlike a new till's:\n{}",
                unlike.join("\n")
            );
            assert_eq!(members(till), roster, "{name}'s members, and a new till's");
            assert_eq!(
                retired_yet_held(till),
                Vec::<String>::new(),
                "{name}: cards retired yet in use"
            );
            let unlinked: Vec<&str> = given
                .iter()
                .filter(|(member, card, _)| card_state(&till.store, *member, card).is_none())
                .map(|(_, _, what)| what.as_str())
                .collect();
            assert!(
                unlinked.is_empty(),
                "{name}: cards given that neither are in use nor lead to the card in use:\n{}",
                unlinked.join("\n")
            );
            assert_eq!(
                till.balances(),
                balances,
                "{name}'s balances, and a new till's"
            );
            assert_eq!(
                facts(till, settled_at),
                derived,
                "{name}'s badges, open offers and stamps, and a new till's"
            );
            let report = till.store.verify(false).expect("verify");
            assert!(report.is_clean(), "{name}: {:?}", report.drift);
            let (from, to) = report_period(settled_at);
            assert_eq!(
                till.store.insights(from, to).expect("report"),
                till.store
                    .insights_from_ledger(from, to)
                    .expect("recomputed"),
                "{name}'s report from its totals, and from its ledger"
            );
            let counters = till.store.sync_counters().expect("counters");
            assert_eq!(
                (counters.waiting_entries, counters.waiting_members),
                (0, 0),
                "{name}: nothing waits to be pushed"
            );
            let unexpected: Vec<&Quarantined> = quarantined
                .iter()
                .filter(|q| {
                    aside
                        .get(&q.record)
                        .is_none_or(|first| !q.reason.contains(&first.to_string()))
                })
                .collect();
            assert!(
                unexpected.is_empty() && quarantined.len() == aside.len(),
                "{name} set aside {quarantined:?}; expected its second reversals {aside:?}"
            );
        }
        let (from, to) = report_period(settled_at);
        let chain: serde_json::Value = get(
            &report_url(&url, from, to),
            &self.observer_token,
            observer.store.terminal_id(),
        );
        let till = observer.store.insights(from, to).expect("report");
        // Both through JSON text and back, as serde_json reads floats to the nearest but one.
        let till: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&till).expect("json")).expect("json");
        assert_eq!(
            chain, till,
            "the server's chain report, from its totals, and a new till's"
        );
        for (member, balance) in &balances {
            let live = client.balance(MemberId(*member)).expect("balance");
            assert_eq!(live.balance, *balance, "the server's balance of {member}");
        }
        self.log(format!(
            "checked: {} entries ({} honest, {} of the hostile till's)",
            expected.len(),
            self.oracle.honest.len(),
            self.oracle.accepted.len(),
        ));
    }
}

/// Everything on the server but the asking till's own entries, as a till pulls it.
fn pull_all(url: &str, token: &str, terminal: &TerminalId) -> PullResponse {
    let page = |after: i64| -> PullResponse {
        get(
            &format!("{url}/v1/sync/pull?after={after}&limit={MAX_PULL_LIMIT}"),
            token,
            terminal,
        )
    };
    let mut all = page(0);
    while all.more {
        let next = page(all.next);
        all.members.extend(next.members);
        all.entries.extend(next.entries);
        all.next = next.next;
        all.more = next.more;
    }
    all
}

/// `http://HOST:PORT` without the scheme.
fn address(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// The ids of a till's own entries.
fn own_entries(till: &Till) -> BTreeSet<Uuid> {
    let conn = till.store.connection();
    let mut stmt = conn
        .prepare("SELECT id FROM ledger WHERE terminal_id = (SELECT terminal_id FROM terminal)")
        .expect("prepare");
    stmt.query_map([], |r| r.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("ids")
}

/// The entries the server holds from `terminal`.
fn own_on_server(url: &str, token: &str, terminal: &TerminalId) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let page: PullResponse = get(
            &format!("{url}/v1/sync/own?after={after}&limit={MAX_OWN_LIMIT}"),
            token,
            terminal,
        );
        entries.extend(page.entries);
        after = page.next;
        if !page.more {
            return entries;
        }
    }
}

/// The latest record of each member among `pulled`.
fn latest_members(pulled: &PullResponse) -> BTreeMap<MemberId, &MemberRecord> {
    let mut latest: BTreeMap<MemberId, &MemberRecord> = BTreeMap::new();
    for rec in &pulled.members {
        latest.insert(rec.member.id, rec);
    }
    latest
}

/// The names of the records a till set aside that are entries (`entry:<id>`).
fn quarantined_entries(till: &Till) -> BTreeSet<String> {
    till.store
        .quarantined(10_000)
        .expect("quarantine")
        .into_iter()
        .map(|q| q.record)
        .filter(|r| r.starts_with("entry:"))
        .collect()
}

/// What `store` knows of `card` as `member`'s: `Some(true)` when it is the card in use,
/// `Some(false)` when it is retired for the card in use, `None` otherwise.
fn card_state(store: &Store, member: MemberId, card: &CardNumber) -> Option<bool> {
    let conn = store.connection();
    let in_use: String = conn
        .query_row("SELECT card FROM members WHERE id = ?1", [member.0], |r| {
            r.get(0)
        })
        .optional()
        .expect("member")?;
    if in_use == card.as_str() {
        return Some(true);
    }
    let retired: Option<(Uuid, String)> = conn
        .query_row(
            "SELECT member_id, replaced_by FROM retired_cards WHERE card = ?1",
            [card.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .expect("retired card");
    retired
        .is_some_and(|(of, by)| of == member.0 && by == in_use)
        .then_some(false)
}

/// Every entry of a till's ledger, by id, with what identifies its content.
fn ledger(till: &Till) -> BTreeMap<Uuid, String> {
    let conn = till.store.connection();
    let mut stmt = conn
        .prepare(
            "SELECT id, terminal_id, terminal_seq, member_id, kind, points, amount_minor,
                    reverses, occurred_at FROM ledger",
        )
        .expect("prepare");
    stmt.query_map([], |r| {
        let member: Uuid = r.get(3)?;
        let reverses: Option<Uuid> = r.get(7)?;
        Ok((
            r.get::<_, Uuid>(0)?,
            format!(
                "{} #{} member {member} {} {:+} amount {:?} reverses {reverses:?} at {}",
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, i64>(8)?,
            ),
        ))
    })
    .expect("query")
    .collect::<rusqlite::Result<_>>()
    .expect("entries")
}

/// Cards that are a member's card and retired at once (no till can scan them).
fn retired_yet_held(till: &Till) -> Vec<String> {
    till.store
        .connection()
        .prepare("SELECT m.card FROM members m JOIN retired_cards r ON r.card = m.card")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("cards")
}

/// Every member (card, version, name) and retired card, as text to compare.
fn members(till: &Till) -> Vec<String> {
    let conn = till.store.connection();
    let mut rows: Vec<String> = conn
        .prepare("SELECT id, card, version, name FROM members ORDER BY id")
        .expect("prepare")
        .query_map([], |r| {
            Ok(format!(
                "member {} card {} version {} {}",
                r.get::<_, Uuid>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?
            ))
        })
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("members");
    let retired: Vec<String> = conn
        .prepare("SELECT card, member_id, replaced_by FROM retired_cards ORDER BY card")
        .expect("prepare")
        .query_map([], |r| {
            Ok(format!(
                "card {} of {} replaced by {}",
                r.get::<_, String>(0)?,
                r.get::<_, Uuid>(1)?,
                r.get::<_, String>(2)?
            ))
        })
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("retired cards");
    rows.extend(retired);
    rows
}

/// An entry's content as the checks compare it.
fn describe(e: &Entry) -> String {
    format!(
        "{} #{} member {} {} {:+} amount {:?} reverses {:?} at {}",
        e.terminal_id,
        e.terminal_seq,
        e.member_id,
        e.kind,
        e.points,
        e.amount_minor,
        e.reverses.map(|r| r.0),
        e.occurred_at.millis()
    )
}

/// Fails naming the entries missing from `held` (whose they are, and why `quarantined` set
/// them aside) and those it should not have.
fn assert_same(
    what: &str,
    held: &BTreeMap<Uuid, String>,
    want: &BTreeSet<Uuid>,
    oracle: &Oracle,
    quarantined: &[Quarantined],
) {
    let missing: Vec<String> = want
        .iter()
        .filter(|id| !held.contains_key(id))
        .map(|id| {
            let whose = if oracle.accepted.contains(id) {
                "the hostile till's, accepted by the server"
            } else {
                "an honest till's"
            };
            let why: Vec<&str> = quarantined
                .iter()
                .filter(|q| q.record.contains(&id.to_string()))
                .map(|q| q.reason.as_str())
                .collect();
            format!("{id} ({whose}) set aside for {why:?}")
        })
        .collect();
    let extra: Vec<String> = held
        .iter()
        .filter(|(id, _)| !want.contains(id))
        .map(|(id, e)| format!("{id}: {e}"))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} entries missing, {} that should not be there\nmissing:\n{}\nextra:\n{}",
        missing.len(),
        extra.len(),
        missing.join("\n"),
        extra.join("\n")
    );
}

/// Ids of the till's own entries after its number `seq`.
fn own_entries_after(store: &tillpass::store::Store, seq: i64) -> Vec<uuid::Uuid> {
    let conn = store.connection();
    let mut stmt = conn
        .prepare(
            "SELECT id FROM ledger WHERE terminal_id = (SELECT terminal_id FROM terminal)
             AND terminal_seq > ?1",
        )
        .expect("prepare");
    stmt.query_map([seq], |r| r.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("ids")
}

/// Ids of the till's reversals of its own badge awards and referral bonuses (that did not
/// stand, or were taken back with their sale).
fn own_award_voids(store: &tillpass::store::Store) -> Vec<uuid::Uuid> {
    let conn = store.connection();
    let mut stmt = conn
        .prepare(
            "SELECT r.id FROM ledger r JOIN ledger a ON a.id = r.reverses
             WHERE a.kind IN ('badge_awarded', 'referral_bonus')
               AND r.terminal_id = (SELECT terminal_id FROM terminal)",
        )
        .expect("prepare");
    stmt.query_map([], |r| r.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("ids")
}

/// What the ledger's facts come to for every member at `at`: badges held, offers open, stamps.
type Facts = BTreeMap<Uuid, (Vec<String>, Vec<(String, Timestamp)>, BTreeMap<String, i64>)>;

fn facts(till: &Till, at: Timestamp) -> Facts {
    let ids: Vec<Uuid> = till
        .store
        .connection()
        .prepare("SELECT id FROM members")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("ids");
    ids.into_iter()
        .map(|id| {
            let member = MemberId(id);
            let offers = till
                .store
                .offers(member, at)
                .expect("offers")
                .open
                .into_iter()
                .map(|o| (o.offer, o.unlocked_at))
                .collect();
            let held = (
                till.store.badges(member).expect("badges"),
                offers,
                till.store.stamps_held(member).expect("stamps"),
            );
            (id, held)
        })
        .collect()
}
