//! Sync throughput, each beside its bare engine in the same run:
//! - server ingest over HTTP (entries/s) on SQLite, and on PostgreSQL when
//!   `TILLPASS_BENCH_POSTGRES` names a server (a URL whose role may create databases);
//! - the bare engine: batched prepared INSERTs into the same SQLite schema; COPY into the same
//!   PostgreSQL schema;
//! - a new till pulling 1,000,000 entries from the SQLite server;
//! - a new till joining the SQLite server (`join` phase): how soon it scans cards, each looked
//!   up on the server while the pull runs behind, and how long the whole pull takes then;
//! - the chain report (`GET /v1/report`, last 90 days) on each server holding them: the first
//!   right after ingest (finishing what the server's report keeper has not yet made), the
//!   next, and one right after each further push of a batch; then `verify` on its database.
//!
//! Run: `cargo bench --bench sync` (`BENCH_ENTRIES=N` to change the 1,000,000,
//! `BENCH_MEMBERS=N` the 10,000 members, `BENCH_AFTER_PUSHES=N` the one report after a push;
//! `BENCH_KEEP_PG=1` leaves the PostgreSQL server's database behind).

use std::time::{Duration, Instant, SystemTime};

use tillpass::domain::{
    CardNumber, Entry, EntryId, EntryKind, Member, MemberId, MemberRecord, TerminalId, Timestamp,
};
use tillpass::server::{Db, new_token, serve, token_hash};
use tillpass::store::Store;
use tillpass::sync::engine::sync_observed;
use tillpass::sync::protocol::{MAX_PUSH_MEMBERS, PushRequest, TERMINAL_HEADER};
use tillpass::sync::{SyncClient, sync_once};

const MEMBERS: usize = 10_000;
const BATCH: usize = 5_000;
/// Two source tills, each pushing its own batches in its own sequence (the server refuses a
/// till's batches out of order), alternating batch by batch.
const TERMINALS: [&str; 2] = ["till-bench-source-a", "till-bench-source-b"];

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

struct Data {
    members: Vec<MemberRecord>,
    entries: Vec<Entry>,
}

fn data(n: usize, m: usize) -> Data {
    let start = now().plus_days(-30);
    let members: Vec<MemberRecord> = (0..m)
        .map(|i| {
            let created = start.plus_millis(i as i64);
            MemberRecord {
                member: Member {
                    id: MemberId(uuid::Uuid::now_v7()),
                    card: CardNumber::from_payload(200_000_000 + i as u64),
                    name: format!("Bench Member {i}"),
                    phone: None,
                    email: None,
                    birthday: None,
                    marketing_consent: false,
                    created_at: created,
                },
                version: created.millis(),
                retired_cards: Vec::new(),
                erased_at: None,
                referred_by: None,
            }
        })
        .collect();
    let entries = (0..n)
        .map(|i| {
            let amount = 100 + (i as i64 * 7_919) % 5_000;
            let batch = i / BATCH;
            Entry {
                id: EntryId(uuid::Uuid::now_v7()),
                terminal_id: TerminalId(TERMINALS[batch % 2].into()),
                terminal_seq: ((batch / 2) * BATCH + i % BATCH) as i64 + 1,
                member_id: members[(i * 7_907) % m].member.id,
                kind: EntryKind::Earn,
                points: amount / 10,
                amount_minor: Some(amount),
                currency: Some("GBP".into()),
                reward_id: None,
                reverses: None,
                occurred_at: start.plus_millis(60_000 + i as i64 * 2),
                note: None,
                actor: "bench".into(),
                lines: Vec::new(),
                stamps: Default::default(),
                returns: None,
            }
        })
        .collect();
    Data { members, entries }
}

/// A server on `url` in a background runtime; returns its address, the source tills' tokens
/// and tokens for two new tills.
fn start_server(url: &str) -> Result<(String, [String; 2], [String; 2], tokio::runtime::Runtime)> {
    let runtime = tokio::runtime::Runtime::new()?;
    let (addr, sources, tills) = runtime.block_on(async {
        let db = Db::open(url, now()).await?;
        let sources = [new_token(), new_token()];
        let tills = [new_token(), new_token()];
        for (i, token) in sources.iter().enumerate() {
            db.add_terminal(&format!("bench source {i}"), &token_hash(token), now())
                .await?;
        }
        for (i, token) in tills.iter().enumerate() {
            db.add_terminal(&format!("bench till {i}"), &token_hash(token), now())
                .await?;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(serve(listener, db, None));
        Ok::<_, Box<dyn std::error::Error>>((addr, sources, tills))
    })?;
    Ok((format!("http://{addr}"), sources, tills, runtime))
}

/// Pushes members (timed, and said), then every entry but the last batch (pre-serialised
/// batches, a client thread per source till), and returns entries per second over the entry
/// pushes.
fn ingest(backend: &str, url: &str, tokens: &[String; 2], data: &Data) -> Result<f64> {
    let entries = held_back(data).0;
    let client = SyncClient::new(url, &tokens[0], TerminalId(TERMINALS[0].into()))?;
    let started = Instant::now();
    for chunk in data.members.chunks(MAX_PUSH_MEMBERS) {
        client.push(&PushRequest {
            members: chunk.to_vec(),
            entries: Vec::new(),
            ..PushRequest::default()
        })?;
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "{backend} members over HTTP: {:>9.0} members/s   ({} members in {took:.1} s, {MAX_PUSH_MEMBERS} a push, 1 client)",
        data.members.len() as f64 / took,
        data.members.len()
    );
    let bodies: Vec<Vec<u8>> = entries
        .chunks(BATCH)
        .map(|c| {
            serde_json::to_vec(&PushRequest {
                members: Vec::new(),
                entries: c.to_vec(),
                ..PushRequest::default()
            })
        })
        .collect::<std::result::Result<_, _>>()?;
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..2)
            .map(|part| {
                let bodies = &bodies;
                scope.spawn(move || -> std::result::Result<(), String> {
                    let http = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(600))
                        .build()
                        .map_err(|e| e.to_string())?;
                    for body in bodies.iter().skip(part).step_by(2) {
                        let response = http
                            .post(format!("{url}/v1/sync/push"))
                            .bearer_auth(&tokens[part])
                            .header(TERMINAL_HEADER, TERMINALS[part])
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .map_err(|e| format!("{e:?}"))?;
                        if !response.status().is_success() {
                            return Err(response.text().unwrap_or_default());
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "client thread panicked")??;
        }
        Ok(())
    })?;
    Ok(entries.len() as f64 / started.elapsed().as_secs_f64())
}

/// Reports timed right after a push (`BENCH_AFTER_PUSHES`, 1 unless set): each after its own
/// batch, the last ones of the data, held back from ingest.
fn after_pushes() -> usize {
    std::env::var("BENCH_AFTER_PUSHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// The entries ingest pushes, and the last batches, held back for the reports after a push,
/// each with the source till whose turn it is.
fn held_back(data: &Data) -> (&[Entry], Vec<(&[Entry], usize)>) {
    let batches = data.entries.len().div_ceil(BATCH);
    let first = batches.saturating_sub(after_pushes()).max(1);
    let (before, after) = data.entries.split_at(first * BATCH);
    let held = after
        .chunks(BATCH)
        .enumerate()
        .map(|(i, batch)| (batch, (first + i) % 2))
        .collect();
    (before, held)
}

/// Batched prepared INSERTs of the same rows into the server's SQLite schema.
fn bare_sqlite(path: &std::path::Path, data: &Data) -> Result<f64> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(include_str!("../src/server/migrations/sqlite_001.sql"))?;
    conn.execute_batch(include_str!("../src/server/migrations/sqlite_002.sql"))?;
    let tx = conn.transaction()?;
    for m in &data.members {
        tx.execute(
            "INSERT INTO members (id, version, card, body) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                m.member.id.0,
                m.version,
                m.member.card.as_str(),
                serde_json::to_string(m)?
            ],
        )?;
    }
    tx.commit()?;
    let bodies: Vec<String> = data
        .entries
        .iter()
        .map(serde_json::to_string)
        .collect::<std::result::Result<_, _>>()?;
    let started = Instant::now();
    let mut seq = data.members.len() as i64;
    for (chunk, body) in data.entries.chunks(BATCH).zip(bodies.chunks(BATCH)) {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO entries (server_seq, id, member_id, terminal_id, terminal_seq, kind,
                                      points, reverses, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for (e, b) in chunk.iter().zip(body) {
                seq += 1;
                stmt.execute(rusqlite::params![
                    seq,
                    e.id.0,
                    e.member_id.0,
                    e.terminal_id.0,
                    e.terminal_seq,
                    e.kind.as_str(),
                    e.points,
                    e.reverses.map(|r| r.0),
                    b
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok(data.entries.len() as f64 / started.elapsed().as_secs_f64())
}

/// A fresh PostgreSQL database next to `base` (same server, new name): its URL and name.
async fn fresh_pg(base: &str) -> Result<(String, String)> {
    let client = tillpass::server::pg_tls::connect(base).await?;
    let name = format!("tillpass_bench_{:016x}", rand::random::<u64>());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    Ok((tillpass::server::pg_tls::with_database(base, &name)?, name))
}

/// Drops the bench's databases from the server `base` names.
async fn drop_pg(base: &str, names: &[&str]) -> Result<()> {
    let client = tillpass::server::pg_tls::connect(base).await?;
    for name in names {
        client
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await?;
    }
    Ok(())
}

/// Writes out what earlier work left dirty before a timed phase, so that a checkpoint it set
/// off (a 1M-row COPY writes about a GB of log, PostgreSQL's default `max_wal_size`) is not
/// paid by the next phase. Needs a superuser or `pg_checkpoint`; without, says so and goes on.
async fn checkpoint(base: &str) -> Result<()> {
    let client = tillpass::server::pg_tls::connect(base).await?;
    if let Err(e) = client.batch_execute("CHECKPOINT").await {
        eprintln!("(no CHECKPOINT before the phase: {e})");
    }
    Ok(())
}

/// COPY of the same rows into the server's PostgreSQL schema.
async fn bare_pg(url: &str, data: &Data) -> Result<f64> {
    use futures_util::SinkExt as _;
    let client = tillpass::server::pg_tls::connect(url).await?;
    client
        .batch_execute(include_str!("../src/server/migrations/postgres_001.sql"))
        .await?;
    client
        .batch_execute(include_str!("../src/server/migrations/postgres_002.sql"))
        .await?;
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
    };
    let mut members = String::new();
    for m in &data.members {
        members.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            m.member.id.0,
            m.version,
            m.member.card,
            esc(&serde_json::to_string(m)?)
        ));
    }
    let sink = client
        .copy_in("COPY members (id, version, card, body) FROM STDIN")
        .await?;
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from(members)).await?;
    sink.finish().await?;
    let mut rows = Vec::with_capacity(data.entries.len() / BATCH + 1);
    let mut seq = data.members.len();
    for chunk in data.entries.chunks(BATCH) {
        let mut text = String::new();
        for e in chunk {
            seq += 1;
            text.push_str(&format!(
                "{seq}\t{}\t{}\t{}\t{}\t{}\t{}\t\\N\t{}\n",
                e.id.0,
                e.member_id.0,
                e.terminal_id.0,
                e.terminal_seq,
                e.kind.as_str(),
                e.points,
                esc(&serde_json::to_string(e)?)
            ));
        }
        rows.push(bytes::Bytes::from(text));
    }
    let started = Instant::now();
    let sink = client
        .copy_in("COPY entries (server_seq, id, member_id, terminal_id, terminal_seq, kind, points, reverses, body) FROM STDIN")
        .await?;
    futures_util::pin_mut!(sink);
    for chunk in rows {
        sink.send(chunk).await?;
    }
    sink.finish().await?;
    Ok(data.entries.len() as f64 / started.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    // `RUST_LOG=tillpass=debug` shows what the server does meanwhile (each report refresh).
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let n: usize = std::env::var("BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let m: usize = std::env::var("BENCH_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MEMBERS);
    let dir = tempfile::tempdir()?;
    eprintln!("generating {n} entries for {m} members…");
    let data = data(n, m);

    let phases =
        std::env::var("BENCH_PHASES").unwrap_or_else(|_| "bare,ingest,report,pull,postgres".into());
    let bare = if phases.contains("bare") {
        bare_sqlite(&dir.path().join("bare.sqlite3"), &data)?
    } else {
        f64::NAN
    };
    if phases.contains("ingest") {
        sqlite_ingest_and_pull(dir.path(), &data, bare, &phases)?;
    }
    if phases.contains("postgres") {
        postgres_ingest(&data)?;
    }
    Ok(())
}

/// Ingest into a SQLite server, then (as `phases` name them) the chain report and `verify`, a
/// new till pulling everything, and a new till joining and scanning while it pulls.
fn sqlite_ingest_and_pull(
    dir: &std::path::Path,
    data: &Data,
    bare: f64,
    phases: &str,
) -> Result<()> {
    let n = data.entries.len();
    let url = format!("sqlite:{}", dir.join("server.sqlite3").display());
    let (server, tokens, tills, runtime) = start_server(&url)?;
    let http = ingest("SQLite  ", &server, &tokens, data)?;
    println!(
        "SQLite   ingest over HTTP: {http:>9.0} entries/s   bare batched INSERT: {bare:>9.0} rows/s   ({n} entries, batches of {BATCH}, 2 clients)"
    );
    if phases.contains("report") {
        chain_report("SQLite", &server, &tokens, data)?;
        verify("SQLite", &url, &runtime)?;
    }
    if phases.contains("pull") {
        let till_dir = tempfile::tempdir()?;
        let mut till = Store::open(&till_dir.path().join("till.sqlite3"))?;
        till.set_sync_server(&server, &tills[0])?;
        let client = SyncClient::new(&server, &tills[0], till.terminal_id().clone())?;
        let started = Instant::now();
        // The last batch's progress comes once it is applied; the touched members' states are
        // re-folded after it.
        let mut applied = started;
        let report = sync_observed(&mut till, &client, now(), &mut |_| {
            applied = Instant::now();
        })?;
        let took = started.elapsed();
        println!(
            "new till pulled {} entries and {} members in {:.2} s ({:.0} entries/s): records applied in {:.2} s, members' states re-folded in {:.2} s",
            report.pulled_entries,
            report.pulled_members,
            took.as_secs_f64(),
            report.pulled_entries as f64 / took.as_secs_f64(),
            (applied - started).as_secs_f64(),
            applied.elapsed().as_secs_f64()
        );
    }
    if phases.contains("join") {
        join_and_scan(&server, &tills[1], data)?;
    }
    drop(runtime);
    Ok(())
}

/// Cards scanned at a till that has just joined, while its pull runs, one every `SCAN_EVERY`
/// (a cashier's pace).
const SCANS: usize = 20;
const SCAN_EVERY: Duration = Duration::from_millis(500);

/// A new till joins (program, key, its own records; no pull), then, as the app does, pulls on
/// a second connection while cards are scanned on the first: a card not pulled yet is looked
/// up on the server and its member taken on. Says when the first scan showed a member, how
/// long each scan took (the lookup's write waits while the pull commits a batch), and how long
/// the pull took.
fn join_and_scan(server: &str, token: &str, data: &Data) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("till.sqlite3");
    let mut till = Store::open(&path)?;
    let code = tillpass::sync::join::JoinCode {
        url: server.to_owned(),
        token: token.to_owned(),
        pin: None,
    };
    let started = Instant::now();
    tillpass::sync::join_then_catch_up(&mut till, &code, false, now())?;
    let joined = started.elapsed();
    let puller_path = path.clone();
    let puller = std::thread::spawn(move || -> std::result::Result<_, String> {
        let mut store = Store::open(&puller_path).map_err(|e| e.to_string())?;
        let client = tillpass::sync::client_for(&store).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let report = sync_once(&mut store, &client, now()).map_err(|e| e.to_string())?;
        Ok((report, started.elapsed()))
    });
    let mut scans = Vec::with_capacity(SCANS);
    let (mut looked_up, mut first_shown) = (0, None);
    for i in 0..SCANS {
        let card = &data.members[(i * 7_919) % data.members.len()].member.card;
        if i > 0 {
            std::thread::sleep(SCAN_EVERY);
        }
        let scanned = Instant::now();
        let shown = match till.identify_code(&till.member_code(card)) {
            Ok(view) => Some(view.member.id),
            Err(_) => {
                looked_up += 1;
                tillpass::sync::look_up_card(&mut till, card, Duration::from_secs(30), now())?
                    .map(|(member, _)| member)
            }
        };
        let took = scanned.elapsed();
        if shown.is_none() {
            return Err(format!("card {card} was not found, here or on the server").into());
        }
        first_shown.get_or_insert(started.elapsed());
        scans.push(took);
    }
    let (report, pulled) = puller.join().map_err(|_| "the pull thread panicked")??;
    scans.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    println!(
        "new till joined in {:.3} s; first card shown {:.3} s after the join began; {SCANS} scans while it pulled, one every {} ms ({looked_up} looked up on the server): median {:.1} ms, max {:.1} ms; pull of {} entries and {} members behind them: {:.2} s",
        joined.as_secs_f64(),
        first_shown.unwrap_or_default().as_secs_f64(),
        SCAN_EVERY.as_millis(),
        ms(scans[SCANS / 2]),
        ms(scans[SCANS - 1]),
        report.pulled_entries,
        report.pulled_members,
        pulled.as_secs_f64()
    );
    Ok(())
}

/// Times the chain report (90 days): right after ingest, again, and after pushing each held
/// back batch.
fn chain_report(backend: &str, server: &str, tokens: &[String; 2], data: &Data) -> Result<()> {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3_600))
        .build()?;
    let (_, held) = held_back(data);
    let pushes = held.len();
    let runs = ["right after ingest".to_owned(), "next".to_owned()]
        .into_iter()
        .map(|run| (run, None))
        .chain(held.into_iter().enumerate().map(|(i, batch)| {
            let run = if pushes == 1 {
                "after a push".to_owned()
            } else {
                format!("after push {} of {pushes}", i + 1)
            };
            (run, Some(batch))
        }));
    for (run, push) in runs {
        if let Some((batch, part)) = push {
            http.post(format!("{server}/v1/sync/push"))
                .bearer_auth(&tokens[part])
                .header(TERMINAL_HEADER, TERMINALS[part])
                .json(&PushRequest {
                    members: Vec::new(),
                    entries: batch.to_vec(),
                    ..PushRequest::default()
                })
                .send()?
                .error_for_status()?;
        }
        let started = Instant::now();
        let body = http
            .get(format!("{server}/v1/report"))
            .bearer_auth(&tokens[0])
            .header(TERMINAL_HEADER, TERMINALS[0])
            .send()?
            .error_for_status()?
            .bytes()?;
        println!(
            "{backend} chain report ({run}; GET /v1/report, 90 days, {} members, {} entries): {:.3} s ({} bytes)",
            data.members.len(),
            data.entries.len(),
            started.elapsed().as_secs_f64(),
            body.len()
        );
    }
    Ok(())
}

/// Times `tillpass-server verify` (every balance, record and total against the entries) on the
/// server's database, while the server runs.
fn verify(backend: &str, url: &str, runtime: &tokio::runtime::Runtime) -> Result<()> {
    let started = Instant::now();
    let verified = runtime.block_on(async { Db::open(url, now()).await?.verify().await })?;
    println!(
        "{backend} verify: {:.1} s over {} members and {} entries, {}",
        started.elapsed().as_secs_f64(),
        verified.members,
        verified.entries,
        if verified.clean() {
            "all agree".to_owned()
        } else {
            format!("DRIFT: {:?}", verified.problems)
        }
    );
    Ok(())
}

/// Ingest into a PostgreSQL server beside a bare COPY of the same rows.
fn postgres_ingest(data: &Data) -> Result<()> {
    let n = data.entries.len();
    if let Ok(base) = std::env::var("TILLPASS_BENCH_POSTGRES") {
        let setup = tokio::runtime::Runtime::new()?;
        let ((bare_url, bare_name), (server_url, server_name)) = setup.block_on(async {
            Ok::<_, Box<dyn std::error::Error>>((fresh_pg(&base).await?, fresh_pg(&base).await?))
        })?;
        setup.block_on(checkpoint(&base))?;
        let bare = setup.block_on(bare_pg(&bare_url, data))?;
        let (server, tokens, _, runtime) = start_server(&server_url)?;
        setup.block_on(checkpoint(&base))?;
        let http = ingest("Postgres", &server, &tokens, data)?;
        chain_report("Postgres", &server, &tokens, data)?;
        verify("Postgres", &server_url, &runtime)?;
        println!(
            "Postgres ingest over HTTP: {http:>9.0} entries/s   bare COPY:           {bare:>9.0} rows/s   ({n} entries, batches of {BATCH}, 2 clients)"
        );
        drop(runtime);
        if std::env::var_os("BENCH_KEEP_PG").is_some() {
            println!("(kept the server's database {server_name} for a look; drop it by hand)");
            setup.block_on(drop_pg(&base, &[&bare_name]))?;
        } else {
            setup.block_on(drop_pg(&base, &[&bare_name, &server_name]))?;
        }
    } else {
        println!("(PostgreSQL skipped: set TILLPASS_BENCH_POSTGRES=postgres://USER:PASS@HOST/DB)");
    }
    Ok(())
}
