//! Load: many simulated tills against the real server (axum, in this process, on 127.0.0.1),
//! on SQLite and, when `TILLPASS_BENCH_POSTGRES` names a server (a URL whose role may create
//! databases), on PostgreSQL. Everything shares this machine's cores: the server, the database
//! and the load generator; the bench reports the cores each used, and what the rest of the
//! machine used meanwhile.
//!
//! 1. Steady load: `BENCH_TILLS` tills (1,000), each its own registered terminal and token,
//!    having enrolled `BENCH_MEMBERS_PER_TILL` members (20) and caught up. Each makes a sale
//!    every `BENCH_SALE_SECS` seconds on average (4; uniform between half and one and a half
//!    times that) and pushes it at once (with anything still waiting from a failed push, as the
//!    till's outbox does); at a random moment before its next sale it runs a round, as the
//!    till's sync worker does: `GET /v1/sync/config`, then pull pages until the server has no
//!    more (`BENCH_ROUNDS=0`: no rounds, pushes only). Every sale earns what the demo program
//!    gives at tier 0 (`amount / 10` points), so the server's possibility check accepts it.
//!    Latency is from sending a request to having its whole answer, over `BENCH_LOAD_SECS`
//!    (180) after a warm-up of `BENCH_WARMUP_SECS` (20).
//! 2. Readers under catch-ups: `BENCH_CATCHUP_ENTRIES` (1,000,000) more entries are pushed;
//!    then, while another client times `/health`, an authenticated `GET /v1/sync/config` and a
//!    small authenticated pull (three loops, each a request every 10 ms), `BENCH_CATCHUPS` (3)
//!    new tills one after another pull everything in pages of 20,000, then `BENCH_CROWD` (10)
//!    new tills pull at once for 20 s. The probes' baseline is timed first, with nothing else
//!    running. `BENCH_CATCHUP_ENTRIES=0` skips this part.
//!
//! Run: `cargo bench --bench load`; `BENCH_BACKENDS=postgres` (or `sqlite`) for one backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use serde::de::IgnoredAny;
use tillpass::domain::{
    CardNumber, Entry, EntryId, EntryKind, Member, MemberId, MemberRecord, TerminalId, Timestamp,
};
use tillpass::server::{Db, new_token, serve, token_hash};
use tillpass::sync::protocol::{MAX_PULL_LIMIT, PushRequest, TERMINAL_HEADER};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

/// Records per pull page, as the till asks.
const PAGE: usize = MAX_PULL_LIMIT;
/// Entries per push while loading the catch-up data.
const BATCH: usize = 5_000;
/// How long the crowd of catch-up tills pulls.
const CROWD_SECS: u64 = 20;
/// Between probe rounds.
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// A sale this late (its till still busy with the round before) counts as late.
const LATE: Duration = Duration::from_millis(100);

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

struct Settings {
    tills: usize,
    members_per_till: usize,
    sale_secs: f64,
    load_secs: u64,
    warmup_secs: u64,
    rounds: bool,
    catchup_entries: usize,
    catchups: usize,
    crowd: usize,
}

impl Settings {
    fn from_env() -> Self {
        Settings {
            tills: env("BENCH_TILLS", 1_000),
            members_per_till: env("BENCH_MEMBERS_PER_TILL", 20),
            sale_secs: env("BENCH_SALE_SECS", 4.0),
            load_secs: env("BENCH_LOAD_SECS", 180),
            warmup_secs: env("BENCH_WARMUP_SECS", 20),
            rounds: env("BENCH_ROUNDS", 1) != 0,
            catchup_entries: env("BENCH_CATCHUP_ENTRIES", 1_000_000),
            catchups: env("BENCH_CATCHUPS", 3),
            crowd: env("BENCH_CROWD", 10),
        }
    }
}

/// A registered terminal: its id and token.
#[derive(Clone)]
struct Terminal {
    id: TerminalId,
    token: String,
}

/// The HTTP side every simulated till and probe shares (a connection per request in flight).
struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    fn new(base: String) -> Result<Self> {
        // reqwest uses rustls with whichever crypto provider the process installed (the till's
        // client installs ring too).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .tcp_nodelay(true)
            .build()?;
        Ok(Http { client, base })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<bytes::Bytes> {
        let response = request.send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{status}: {}", String::from_utf8_lossy(&body)).into())
        }
    }

    async fn get(&self, t: &Terminal, path: &str) -> Result<bytes::Bytes> {
        self.send(
            self.client
                .get(format!("{}{path}", self.base))
                .bearer_auth(&t.token)
                .header(TERMINAL_HEADER, &t.id.0),
        )
        .await
    }

    async fn post(&self, t: &Terminal, path: &str, body: Vec<u8>) -> Result<bytes::Bytes> {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .bearer_auth(&t.token)
                .header(TERMINAL_HEADER, &t.id.0)
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    async fn health(&self) -> Result<()> {
        self.send(self.client.get(format!("{}/health", self.base)))
            .await
            .map(drop)
    }

    /// The server's highest seq, as a till's config round reads it (`/health` tells nothing of
    /// volume).
    async fn server_seq(&self, t: &Terminal) -> Result<i64> {
        #[derive(Deserialize)]
        struct Config {
            server_seq: i64,
        }
        let body = self.get(t, "/v1/sync/config").await?;
        Ok(serde_json::from_slice::<Config>(&body)?.server_seq)
    }

    /// One pull page: how many records it held, its cursor, and whether more wait.
    async fn pull(&self, t: &Terminal, after: i64, limit: usize) -> Result<Page> {
        let body = self
            .get(t, &format!("/v1/sync/pull?after={after}&limit={limit}"))
            .await?;
        Ok(serde_json::from_slice(&body)?)
    }
}

/// A pull page, read through (every record is parsed) but not kept.
#[derive(Deserialize)]
struct Page {
    members: Vec<IgnoredAny>,
    entries: Vec<IgnoredAny>,
    next: i64,
    more: bool,
}

/// Latencies of one kind of request, in microseconds.
#[derive(Default)]
struct Samples(Vec<u32>);

impl Samples {
    fn add(&mut self, d: Duration) {
        self.0
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
    }

    fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// `count  p50  p99  max`, in milliseconds.
    fn summary(&mut self) -> String {
        if self.0.is_empty() {
            return "no samples".to_owned();
        }
        self.0.sort_unstable();
        let at = |p: f64| {
            let i = ((p * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len()) - 1;
            f64::from(self.0[i]) / 1e3
        };
        format!(
            "n {:>7}  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
            self.0.len(),
            at(0.50),
            at(0.99),
            at(1.0)
        )
    }
}

/// What the tills did inside the measured window.
#[derive(Default)]
struct Tally {
    push: Samples,
    pull: Samples,
    config: Samples,
    pushed_entries: u64,
    pulled_entries: u64,
    pulled_members: u64,
    sales: u64,
    late_sales: u64,
    max_lateness: Duration,
    errors: u64,
    first_errors: Vec<String>,
}

impl Tally {
    fn error(&mut self, what: &str, e: &Error) {
        self.errors += 1;
        if self.first_errors.len() < 5 {
            self.first_errors.push(format!("{what}: {e}"));
        }
    }

    fn merge(&mut self, o: Tally) {
        self.push.extend(o.push);
        self.pull.extend(o.pull);
        self.config.extend(o.config);
        self.pushed_entries += o.pushed_entries;
        self.pulled_entries += o.pulled_entries;
        self.pulled_members += o.pulled_members;
        self.sales += o.sales;
        self.late_sales += o.late_sales;
        self.max_lateness = self.max_lateness.max(o.max_lateness);
        self.errors += o.errors;
        for e in o.first_errors {
            if self.first_errors.len() < 5 {
                self.first_errors.push(e);
            }
        }
    }
}

/// The measured window of the steady load.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    sale_secs: f64,
    rounds: bool,
}

impl Window {
    fn measured(&self, at: Instant) -> bool {
        at >= self.measure_from && at < self.end
    }

    /// The next gap between two sales: uniform over half to one and a half of the mean.
    fn gap(&self) -> Duration {
        Duration::from_secs_f64(self.sale_secs * (0.5 + rand::random::<f64>()))
    }
}

/// One simulated till: its terminal, its sequence, what waits to be pushed, its pull cursor.
struct Till {
    terminal: Terminal,
    seq: i64,
    outbox: Vec<Entry>,
    cursor: i64,
}

impl Till {
    /// A sale to a random member: a multiple of 10p between 1.00 and 50.00, earning a tenth of
    /// it in points (the demo program at tier 0).
    fn sale(&mut self, members: &[MemberId]) {
        let member = members[rand::random::<u64>() as usize % members.len()];
        let amount = 10 * (10 + (rand::random::<u64>() % 491) as i64);
        self.seq += 1;
        self.outbox.push(Entry {
            id: EntryId(uuid::Uuid::now_v7()),
            terminal_id: self.terminal.id.clone(),
            terminal_seq: self.seq,
            member_id: member,
            kind: EntryKind::Earn,
            points: amount / 10,
            amount_minor: Some(amount),
            currency: Some("GBP".into()),
            reward_id: None,
            reverses: None,
            occurred_at: now(),
            note: None,
            actor: "load".into(),
            lines: Vec::new(),
            stamps: Default::default(),
            returns: None,
        });
    }
}

/// A till's life under the steady load.
async fn run_till(
    http: Arc<Http>,
    mut till: Till,
    members: Arc<Vec<MemberId>>,
    window: Window,
) -> Tally {
    let mut tally = Tally::default();
    let mut next_sale = window.start + window.gap().mul_f64(rand::random::<f64>());
    while next_sale < window.end {
        let arrived = Instant::now();
        if arrived > next_sale + LATE && window.measured(next_sale) {
            tally.late_sales += 1;
            tally.max_lateness = tally.max_lateness.max(arrived - next_sale);
        }
        tokio::time::sleep_until(next_sale.into()).await;
        till.sale(&members);
        let body = match serde_json::to_vec(&PushRequest {
            members: Vec::new(),
            entries: till.outbox.clone(),
            ..PushRequest::default()
        }) {
            Ok(b) => b,
            Err(e) => {
                tally.error("push body", &e.into());
                return tally;
            }
        };
        let sent = Instant::now();
        let measured = window.measured(sent);
        match http.post(&till.terminal, "/v1/sync/push", body).await {
            Ok(_) => {
                if measured {
                    tally.push.add(sent.elapsed());
                    tally.sales += 1;
                    tally.pushed_entries += till.outbox.len() as u64;
                }
                till.outbox.clear();
            }
            Err(e) => tally.error("push", &e),
        }
        let following = next_sale + window.gap();
        let round_at = Instant::now()
            + following
                .saturating_duration_since(Instant::now())
                .mul_f64(rand::random::<f64>());
        tokio::time::sleep_until(round_at.into()).await;
        if window.rounds && round_at < window.end {
            round(&http, &mut till, window, &mut tally).await;
        }
        next_sale = following;
    }
    tally
}

/// A sync round between sales: the config, then pull pages until the server has no more.
async fn round(http: &Http, till: &mut Till, window: Window, tally: &mut Tally) {
    let sent = Instant::now();
    let config = http
        .get(
            &till.terminal,
            &format!("/v1/sync/config?known=1&cursor={}", till.cursor),
        )
        .await;
    match config {
        Ok(_) if window.measured(sent) => tally.config.add(sent.elapsed()),
        Ok(_) => {}
        Err(e) => {
            tally.error("config", &e);
            return;
        }
    }
    loop {
        let sent = Instant::now();
        match http.pull(&till.terminal, till.cursor, PAGE).await {
            Ok(page) => {
                if window.measured(sent) {
                    tally.pull.add(sent.elapsed());
                    tally.pulled_entries += page.entries.len() as u64;
                    tally.pulled_members += page.members.len() as u64;
                }
                till.cursor = page.next;
                if !page.more {
                    return;
                }
            }
            Err(e) => {
                tally.error("pull", &e);
                return;
            }
        }
    }
}

/// The server on `url` in its own runtime, with `count` registered terminals.
fn start_server(
    url: &str,
    count: usize,
) -> Result<(Arc<Http>, Vec<Terminal>, tokio::runtime::Runtime)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name(SERVER_THREADS)
        .enable_all()
        .build()?;
    let (addr, terminals) = runtime.block_on(async {
        let db = Db::open(url, now()).await?;
        let mut terminals = Vec::with_capacity(count);
        for i in 0..count {
            let token = new_token();
            db.add_terminal(&format!("load till {i}"), &token_hash(&token), now())
                .await?;
            terminals.push(Terminal {
                id: TerminalId(format!("till-load-{i:05}")),
                token,
            });
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(serve(listener, db, None));
        Ok::<_, Error>((addr, terminals))
    })?;
    Ok((
        Arc::new(Http::new(format!("http://{addr}"))?),
        terminals,
        runtime,
    ))
}

/// Each till enrols its members (one push each, a few tills at a time); returns every member.
async fn enrol(http: &Arc<Http>, tills: &[Terminal], per_till: usize) -> Result<Vec<MemberId>> {
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::with_capacity(tills.len());
    for (t, till) in tills.iter().enumerate() {
        let at = now();
        let records: Vec<MemberRecord> = (0..per_till)
            .map(|i| MemberRecord {
                member: Member {
                    id: MemberId(uuid::Uuid::now_v7()),
                    card: CardNumber::from_payload(300_000_000 + (t * per_till + i) as u64),
                    name: format!("Load Member {t}-{i}"),
                    phone: None,
                    email: None,
                    birthday: None,
                    marketing_consent: false,
                    created_at: at,
                },
                version: at.millis(),
                retired_cards: Vec::new(),
                erased_at: None,
                referred_by: None,
            })
            .collect();
        let ids: Vec<MemberId> = records.iter().map(|r| r.member.id).collect();
        let body = serde_json::to_vec(&PushRequest {
            members: records,
            entries: Vec::new(),
            ..PushRequest::default()
        })?;
        let (http, till, gate) = (Arc::clone(http), till.clone(), Arc::clone(&gate));
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            http.post(&till, "/v1/sync/push", body).await?;
            Ok::<_, Error>(ids)
        }));
    }
    let mut members = Vec::with_capacity(tills.len() * per_till);
    for task in tasks {
        members.extend(task.await??);
    }
    Ok(members)
}

/// The steady load: every till for the warm-up and the measured window.
async fn steady(
    http: &Arc<Http>,
    tills: &[Terminal],
    members: &Arc<Vec<MemberId>>,
    s: &Settings,
    database: Option<&str>,
) -> Result<(Tally, Duration, Cpu)> {
    let cursor = http.server_seq(&tills[0]).await?;
    let start = Instant::now();
    let window = Window {
        start,
        measure_from: start + Duration::from_secs(s.warmup_secs),
        end: start + Duration::from_secs(s.warmup_secs + s.load_secs),
        sale_secs: s.sale_secs,
        rounds: s.rounds,
    };
    let tasks: Vec<_> = tills
        .iter()
        .map(|t| {
            let till = Till {
                terminal: t.clone(),
                seq: 0,
                outbox: Vec::new(),
                cursor,
            };
            tokio::spawn(run_till(
                Arc::clone(http),
                till,
                Arc::clone(members),
                window,
            ))
        })
        .collect();
    let database = database.map(str::to_owned);
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(window.measure_from.into()).await;
        let before = Cpu::now(database.as_deref());
        tokio::time::sleep_until(window.end.into()).await;
        Cpu::now(database.as_deref()).since(&before)
    });
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await?);
    }
    Ok((tally, window.end - window.measure_from, cpu.await?))
}

/// This process's threads of the server runtime (its workers and blocking threads).
const SERVER_THREADS: &str = "srv";
/// This process's threads of the load generator.
const LOAD_THREADS: &str = "load";

/// CPU seconds used: the server's threads, the load generator's, PostgreSQL's processes (its
/// background processes and the backends of this database), and the whole machine.
#[derive(Debug, Default, Clone, Copy)]
struct Cpu {
    server: f64,
    load: f64,
    postgres: f64,
    /// Interrupts and softirqs, where the kernel's loopback networking mostly runs.
    interrupts: f64,
    machine: f64,
}

/// The command name and CPU seconds of a `/proc/.../stat` line.
fn proc_ticks(stat: &str) -> Option<(&str, f64)> {
    let (head, rest) = stat.rsplit_once(") ")?;
    let (_, comm) = head.split_once(" (")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    // Linux counts in clock ticks of 1/100 s.
    Some((comm, (user + system) / 100.0))
}

impl Cpu {
    fn now(database: Option<&str>) -> Self {
        let mut cpu = Cpu::default();
        for task in std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            match proc_ticks(&stat) {
                Some((name, secs)) if name.starts_with(SERVER_THREADS) => cpu.server += secs,
                Some((name, secs)) if name.starts_with(LOAD_THREADS) => cpu.load += secs,
                _ => {}
            }
        }
        if let Some(database) = database {
            for process in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let stat = std::fs::read_to_string(process.path().join("stat")).unwrap_or_default();
                let Some(("postgres", secs)) = proc_ticks(&stat) else {
                    continue;
                };
                let title =
                    std::fs::read_to_string(process.path().join("cmdline")).unwrap_or_default();
                let backend = title.contains("127.0.0.1") || title.contains("[local]");
                if !backend || title.contains(database) {
                    cpu.postgres += secs;
                }
            }
        }
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<f64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|t| t.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal: all but idle and iowait.
        let busy: f64 = ticks
            .iter()
            .take(8)
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4)
            .map(|(_, t)| t)
            .sum();
        cpu.interrupts = (ticks.get(5).unwrap_or(&0.0) + ticks.get(6).unwrap_or(&0.0)) / 100.0;
        cpu.machine = busy / 100.0;
        cpu
    }

    fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            server: self.server - before.server,
            load: self.load - before.load,
            postgres: self.postgres - before.postgres,
            interrupts: self.interrupts - before.interrupts,
            machine: self.machine - before.machine,
        }
    }

    /// Cores used over `secs`, by whom.
    fn cores(&self, secs: f64) -> String {
        let rest = self.machine - self.server - self.load - self.postgres - self.interrupts;
        format!(
            "server {:.2}, PostgreSQL {:.2}, load generator {:.2}, interrupts {:.2}, everything else on the machine {:.2}; machine busy {:.2} of {} cores",
            self.server / secs,
            self.postgres / secs,
            self.load / secs,
            self.interrupts / secs,
            rest / secs,
            self.machine / secs,
            std::thread::available_parallelism().map_or(0, usize::from)
        )
    }
}

/// Pushes `n` earn entries from two source tills, pre-serialised batches in each till's order.
async fn load_catchup_data(
    http: &Arc<Http>,
    sources: [Terminal; 2],
    members: &Arc<Vec<MemberId>>,
    n: usize,
) -> Result<f64> {
    let started = Instant::now();
    let start = now().plus_days(-30);
    let tasks: Vec<_> = sources
        .into_iter()
        .enumerate()
        .map(|(part, source)| {
            let (http, members) = (Arc::clone(http), Arc::clone(members));
            tokio::spawn(async move {
                let mine = n / 2 + (n % 2) * (1 - part);
                let mut seq = 0;
                while seq < mine {
                    let entries: Vec<Entry> = (seq..(seq + BATCH).min(mine))
                        .map(|i| {
                            let amount = 10 * (10 + (i as i64 * 7_919) % 491);
                            Entry {
                                id: EntryId(uuid::Uuid::now_v7()),
                                terminal_id: source.id.clone(),
                                terminal_seq: i as i64 + 1,
                                member_id: members[(i * 7_907 + part) % members.len()],
                                kind: EntryKind::Earn,
                                points: amount / 10,
                                amount_minor: Some(amount),
                                currency: Some("GBP".into()),
                                reward_id: None,
                                reverses: None,
                                occurred_at: start.plus_millis(i as i64 * 2),
                                note: None,
                                actor: "bench".into(),
                                lines: Vec::new(),
                                stamps: Default::default(),
                                returns: None,
                            }
                        })
                        .collect();
                    seq += entries.len();
                    let body = serde_json::to_vec(&PushRequest {
                        members: Vec::new(),
                        entries,
                        ..PushRequest::default()
                    })?;
                    http.post(&source, "/v1/sync/push", body).await?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// What the probes time: `/health`, an authenticated config, a small authenticated pull.
const PROBES: [&str; 3] = ["health", "config", "small pull"];

/// Times one kind of probe request, again and again until `stop`; returns the latencies and
/// the failures.
async fn probe(
    http: Arc<Http>,
    kind: &'static str,
    who: Terminal,
    near_end: i64,
    stop: Arc<AtomicBool>,
) -> (Samples, u64) {
    let (mut samples, mut errors) = (Samples::default(), 0);
    let small = format!("/v1/sync/pull?after={near_end}&limit=10");
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let answer = match kind {
            "health" => http.health().await,
            "config" => http
                .get(&who, "/v1/sync/config?known=1&cursor=0")
                .await
                .map(drop),
            _ => http.get(&who, &small).await.map(drop),
        };
        match answer {
            Ok(()) => samples.add(sent.elapsed()),
            Err(_) => errors += 1,
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    (samples, errors)
}

/// The probes, running until the returned flag is set.
struct Probes {
    stop: Arc<AtomicBool>,
    tasks: Vec<(&'static str, tokio::task::JoinHandle<(Samples, u64)>)>,
}

impl Probes {
    fn start(http: &Arc<Http>, who: &Terminal, near_end: i64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = PROBES
            .iter()
            .map(|&kind| {
                let task = tokio::spawn(probe(
                    Arc::clone(http),
                    kind,
                    who.clone(),
                    near_end,
                    Arc::clone(&stop),
                ));
                (kind, task)
            })
            .collect();
        Probes { stop, tasks }
    }

    async fn print(self, label: &str) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for (kind, task) in self.tasks {
            let (mut samples, errors) = task.await?;
            println!("  {label:<28} {kind:<11} {}", samples.summary());
            if errors > 0 {
                println!("  {label:<28} {kind:<11} {errors} failed");
            }
        }
        Ok(())
    }
}

/// A new till pulls everything after 0 (pages of 20,000) until the end or `until`; returns its
/// page latencies and the records it read.
async fn catch_up(
    http: Arc<Http>,
    till: Terminal,
    until: Option<Instant>,
) -> Result<(Samples, u64)> {
    let mut pages = Samples::default();
    let (mut after, mut records) = (0, 0);
    loop {
        let sent = Instant::now();
        let page = http.pull(&till, after, PAGE).await?;
        pages.add(sent.elapsed());
        records += (page.entries.len() + page.members.len()) as u64;
        after = page.next;
        if !page.more || until.is_some_and(|u| Instant::now() >= u) {
            return Ok((pages, records));
        }
    }
}

/// The readers under catch-ups: a baseline, new tills pulling everything one after another,
/// then a crowd of them at once.
async fn readers(
    http: &Arc<Http>,
    prober: &Terminal,
    catchers: &[Terminal],
    crowd: usize,
) -> Result<()> {
    let near_end = http.server_seq(prober).await? - 10;

    let probes = Probes::start(http, prober, near_end);
    tokio::time::sleep(Duration::from_secs(5)).await;
    probes.print("idle (baseline)").await?;

    let (lone, crowded) = catchers.split_at(catchers.len() - crowd);
    let probes = Probes::start(http, prober, near_end);
    let mut pages = Samples::default();
    for till in lone {
        let started = Instant::now();
        let (p, records) = catch_up(Arc::clone(http), till.clone(), None).await?;
        let took = started.elapsed();
        println!(
            "  a new till pulled {records} records in {:.1} s ({:.0} records/s)",
            took.as_secs_f64(),
            records as f64 / took.as_secs_f64(),
        );
        pages.extend(p);
    }
    println!("  catch-up pages of {PAGE}: {}", pages.summary());
    probes
        .print(&format!("during {} catch-ups", lone.len()))
        .await?;

    let probes = Probes::start(http, prober, near_end);
    let started = Instant::now();
    let until = started + Duration::from_secs(CROWD_SECS);
    let tasks: Vec<_> = crowded
        .iter()
        .map(|t| tokio::spawn(catch_up(Arc::clone(http), t.clone(), Some(until))))
        .collect();
    let (mut pages, mut records) = (Samples::default(), 0);
    for task in tasks {
        let (p, r) = task.await??;
        pages.extend(p);
        records += r;
    }
    let took = started.elapsed();
    println!(
        "  {crowd} new tills at once (each stopping after {CROWD_SECS} s) read {records} records in {:.1} s; pages: {}",
        took.as_secs_f64(),
        pages.summary()
    );
    probes.print(&format!("during {crowd} at once")).await
}

/// Both measurements on one backend; `database` names the PostgreSQL database, if that is it.
fn run(backend: &str, url: &str, database: Option<&str>, s: &Settings) -> Result<()> {
    // The load tills, then two sources of catch-up data, the prober, the catch-up tills.
    let (http, mut terminals, server) = start_server(url, s.tills + 3 + s.catchups + s.crowd)?;
    let catchers = terminals.split_off(s.tills + 3);
    let prober = terminals.pop().ok_or("a prober")?;
    let sources = [
        terminals.pop().ok_or("a source")?,
        terminals.pop().ok_or("a source")?,
    ];
    let client = tokio::runtime::Builder::new_multi_thread()
        .thread_name(LOAD_THREADS)
        .enable_all()
        .build()?;
    client.block_on(async {
        let members = Arc::new(enrol(&http, &terminals, s.members_per_till).await?);
        println!(
            "{backend}: {} tills registered, {} members enrolled; a sale every {:.1} s per till on average ({:.0} sales/s in all){}; {} s measured after {} s warm-up",
            terminals.len(),
            members.len(),
            s.sale_secs,
            terminals.len() as f64 / s.sale_secs,
            if s.rounds {
                ", a sync round (config, pull) between sales"
            } else {
                ", no pulls"
            },
            s.load_secs,
            s.warmup_secs
        );
        let (mut tally, window, cpu) = steady(&http, &terminals, &members, s, database).await?;
        let secs = window.as_secs_f64();
        println!("  push   {}", tally.push.summary());
        println!("  pull   {}", tally.pull.summary());
        println!("  config {}", tally.config.summary());
        let requests = tally.push.len() + tally.pull.len() + tally.config.len();
        println!(
            "  {:.0} requests/s ({:.0} pushes/s, {:.0} pulls/s, {:.0} configs/s); pushed {:.0} entries/s; pulls served {:.0} entries/s and {:.0} members/s",
            requests as f64 / secs,
            tally.push.len() as f64 / secs,
            tally.pull.len() as f64 / secs,
            tally.config.len() as f64 / secs,
            tally.pushed_entries as f64 / secs,
            tally.pulled_entries as f64 / secs,
            tally.pulled_members as f64 / secs,
        );
        println!(
            "  {} sales measured, {} started over {} ms late (latest {:.0} ms); {} failed requests",
            tally.sales,
            tally.late_sales,
            LATE.as_millis(),
            tally.max_lateness.as_secs_f64() * 1e3,
            tally.errors
        );
        for e in &tally.first_errors {
            println!("    {e}");
        }
        println!("  CPU, cores: {}", cpu.cores(secs));
        if s.catchup_entries == 0 {
            return Ok(());
        }
        let rate = load_catchup_data(&http, sources, &members, s.catchup_entries).await?;
        println!(
            "  {} catch-up entries pushed at {rate:.0} entries/s",
            s.catchup_entries
        );
        readers(&http, &prober, &catchers, s.crowd).await
    })?;
    drop(client);
    drop(server);
    Ok(())
}

/// A fresh PostgreSQL database next to `base` (same server, new name).
/// Its URL and name.
fn fresh_pg(base: &str) -> Result<(String, String)> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let client = tillpass::server::pg_tls::connect(base).await?;
        let name = format!("tillpass_bench_{:016x}", rand::random::<u64>());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        Ok((tillpass::server::pg_tls::with_database(base, &name)?, name))
    })
}

fn main() -> Result<()> {
    // The server's errors (and more with RUST_LOG) on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let s = Settings::from_env();
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    if backends.contains("sqlite") {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite:{}", dir.path().join("server.sqlite3").display());
        run("SQLite", &url, None, &s)?;
    }
    if backends.contains("postgres") {
        match std::env::var("TILLPASS_BENCH_POSTGRES") {
            Ok(base) => {
                let (url, name) = fresh_pg(&base)?;
                run("PostgreSQL", &url, Some(&name), &s)?;
            }
            Err(_) => println!(
                "(PostgreSQL skipped: set TILLPASS_BENCH_POSTGRES=postgres://USER:PASS@HOST/DB)"
            ),
        }
    }
    Ok(())
}
