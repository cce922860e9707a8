//! Store benchmarks, each beside the bare SQLite engine measured in the same run:
//! - member lookup by card number on a large store (default 1,000,000 members) vs a bare
//!   indexed `SELECT` on the same file;
//! - a durable earn (synchronous=FULL) vs a bare single-row commit with the same settings, and
//!   a durable earn of a 20-line basket under the demo program's mechanics (categories,
//!   exclusions, promotions) interleaved with the typed earns of the same run;
//! - a scan: member code parse + HMAC verify + lookup, on the same store;
//! - `demo --members N` build time (when the store is (re)built).
//!
//! Run: `cargo bench --bench store`. Environment: `TILLPASS_BENCH_MEMBERS` (default 1000000),
//! `TILLPASS_BENCH_REBUILD=1` to rebuild the cached store in `target/bench/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::Connection;
use tillpass::domain::basket::{LineKind, SaleLine};
use tillpass::domain::program::DEMO_PROGRAM_TOML;
use tillpass::domain::quote::Sale;
use tillpass::domain::{CardNumber, Program, Timestamp};
use tillpass::store::Store;

const LOOKUPS: usize = 20_000;
const EARNS: usize = 2_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn summary(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    (percentile(&samples, 0.50), percentile(&samples, 0.99))
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench")
}

/// Opens the cached large store, building it with the demo generator when missing.
fn large_store(members: usize) -> (Store, Option<Duration>) {
    let path = bench_dir().join(format!("store-{members}.sqlite3"));
    let rebuild = std::env::var("TILLPASS_BENCH_REBUILD").is_ok_and(|v| v == "1");
    if rebuild || !path.exists() {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let mut store = Store::open(&path).expect("open bench store");
        let started = Instant::now();
        let report = tillpass::demo::seed(&mut store, members, 42, now(), |done| {
            eprint!("\rbuilding demo store: {done}/{members} members");
        })
        .expect("demo");
        let took = started.elapsed();
        eprintln!(
            "\rbuilt {} members, {} entries in {:.1} s",
            report.members,
            report.entries,
            took.as_secs_f64()
        );
        return (store, Some(took));
    }
    (Store::open(&path).expect("open bench store"), None)
}

fn bench_lookup(store: &Store) -> ((Duration, Duration), (Duration, Duration)) {
    let cards: Vec<CardNumber> = store.sample_cards(LOOKUPS).expect("sample");
    let texts: Vec<String> = cards.iter().map(|c| c.to_string()).collect();
    let bare = Connection::open(store.path()).expect("bare open");
    let mut stmt = bare
        .prepare_cached("SELECT id FROM members WHERE card = ?1")
        .expect("prepare");
    // Warm both paths over the same keys first so neither pays for cold pages alone.
    for text in &texts {
        let _: Vec<u8> = stmt.query_row([text], |r| r.get(0)).expect("bare warm");
        let card: CardNumber = text.parse().expect("card");
        store.member_by_card(&card).expect("warm").expect("found");
    }
    let mut ours = Vec::with_capacity(texts.len());
    let mut raw = Vec::with_capacity(texts.len());
    for text in &texts {
        let t = Instant::now();
        let _: Vec<u8> = stmt.query_row([text], |r| r.get(0)).expect("bare");
        raw.push(t.elapsed());
        let t = Instant::now();
        let card: CardNumber = text.parse().expect("card");
        let view = store.member_by_card(&card).expect("lookup").expect("found");
        ours.push(t.elapsed());
        std::hint::black_box(view);
    }
    (summary(ours), summary(raw))
}

/// A scan: parse the member code, verify its HMAC tag, look the member up.
fn bench_scan(store: &Store) -> (Duration, Duration) {
    let codes: Vec<String> = store
        .sample_cards(LOOKUPS)
        .expect("sample")
        .iter()
        .map(|c| store.member_code(c))
        .collect();
    for code in &codes {
        store.identify_code(code).expect("warm");
    }
    let mut samples = Vec::with_capacity(codes.len());
    for code in &codes {
        let t = Instant::now();
        let view = store.identify_code(code).expect("scan");
        samples.push(t.elapsed());
        std::hint::black_box(view);
    }
    summary(samples)
}

/// A 20-line basket touching every earning rule of the demo program: coffee, pastries, beans
/// (category multiplier and bonus), an excluded gift card and a discount.
fn basket(i: usize) -> Vec<SaleLine> {
    let categories = ["coffee", "pastry", "beans", "tea", "gift-card"];
    let mut lines: Vec<SaleLine> = (0..19)
        .map(|j| {
            let mut line = SaleLine::item(
                &format!("Product {j}"),
                categories[(i + j) % categories.len()],
                1 + (j % 3) as i64,
                150 + ((i * 7 + j * 31) % 900) as i64,
            );
            line.code = format!("SKU-{j:04}");
            line
        })
        .collect();
    lines.push(SaleLine {
        kind: LineKind::Discount,
        ..SaleLine::item("Staff discount", "", 1, -100)
    });
    lines
}

/// Typed earns, basket earns (interleaved, so both see the same file and cache), and bare
/// single-row commits.
#[allow(clippy::type_complexity)]
fn bench_earn(
    store: &mut Store,
) -> (
    (Duration, Duration),
    (Duration, Duration),
    (Duration, Duration),
) {
    let cards = store.sample_cards(EARNS).expect("sample");
    let members: Vec<_> = cards
        .iter()
        .map(|c| {
            store
                .member_by_card(c)
                .expect("lookup")
                .expect("found")
                .member
                .id
        })
        .collect();
    // The demo history was made without the ledger's facts: a member's first sale here would
    // award the badges and offers that history earned. One untimed sale each first, so the
    // timed ones below are steady-state sales.
    for member in &members {
        store
            .earn(*member, 100, "bench", now())
            .expect("warm-up earn");
    }
    let mut ours = Vec::with_capacity(EARNS);
    let mut baskets = Vec::with_capacity(EARNS);
    for (i, member) in members.iter().enumerate() {
        let amount = 250 + (i as i64 * 37) % 5000;
        let t = Instant::now();
        store.earn(*member, amount, "bench", now()).expect("earn");
        ours.push(t.elapsed());
        let lines = basket(i);
        let t = Instant::now();
        store
            .earn_sale(
                members[(i + 1) % members.len()],
                Sale::Lines(&lines),
                "bench",
                now(),
            )
            .expect("basket earn");
        baskets.push(t.elapsed());
    }
    let bare_path = bench_dir().join("bare-commit.sqlite3");
    let _ = std::fs::remove_file(&bare_path);
    let bare = Connection::open(&bare_path).expect("bare open");
    bare.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    bare.pragma_update(None, "synchronous", "FULL")
        .expect("full");
    bare.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)",
        [],
    )
    .expect("create");
    let mut insert = bare
        .prepare_cached("INSERT INTO t (v) VALUES (?1)")
        .expect("prepare");
    let mut raw = Vec::with_capacity(EARNS);
    for i in 0..EARNS {
        let payload = [i as u8; 64];
        let t = Instant::now();
        insert.execute([&payload[..]]).expect("insert");
        raw.push(t.elapsed());
    }
    (summary(ours), summary(baskets), summary(raw))
}

fn main() {
    let members: usize = std::env::var("TILLPASS_BENCH_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    std::fs::create_dir_all(bench_dir()).expect("bench dir");
    let (mut store, built) = large_store(members);
    let stats = store.stats().expect("stats");
    println!(
        "Store: {} members, {} entries ({})",
        stats.members,
        stats.entries,
        store.path().display()
    );
    if let Some(took) = built {
        println!(
            "| demo --members {members} build | {:.1} s | | |",
            took.as_secs_f64()
        );
    }
    let ((o50, o99), (b50, b99)) = bench_lookup(&store);
    println!(
        "| what | tillpass p50 | tillpass p99 | bare SQLite p50 | bare SQLite p99 | p99 ratio |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| lookup by card ({LOOKUPS} random) | {} | {} | {} | {} | {:.1}x |",
        us(o50),
        us(o99),
        us(b50),
        us(b99),
        o99.as_secs_f64() / b99.as_secs_f64()
    );
    let (s50, s99) = bench_scan(&store);
    println!(
        "| scan: parse + verify HMAC + lookup ({LOOKUPS} random codes) | {} | {} | {} | {} | {:.1}x |",
        us(s50),
        us(s99),
        us(b50),
        us(b99),
        s99.as_secs_f64() / b99.as_secs_f64()
    );
    if store.program() != &Program::demo() {
        store
            .set_program(DEMO_PROGRAM_TOML, now())
            .expect("the demo program's mechanics");
    }
    let ((o50, o99), (k50, k99), (b50, b99)) = bench_earn(&mut store);
    println!(
        "| durable earn vs single-row commit ({EARNS}) | {} | {} | {} | {} | p50 {:.1}x |",
        us(o50),
        us(o99),
        us(b50),
        us(b99),
        o50.as_secs_f64() / b50.as_secs_f64()
    );
    println!(
        "| durable earn of a 20-line basket vs the typed earns above ({EARNS}) | {} | {} | {} | {} | p50 {:.2}x |",
        us(k50),
        us(k99),
        us(o50),
        us(o99),
        k50.as_secs_f64() / o50.as_secs_f64()
    );
}
