//! The manager's report on a large store: `Store::insights` (what the Insights screen and
//! `tillpass report` call) for the last 30, 90 and 365 days, counted from the totals by day,
//! beside the full recompute from every ledger entry on the same store in the same run (which
//! must give the same report).
//!
//! Run: `cargo bench --bench insights`. The store is `target/bench/store-1000000.sqlite3`, which
//! `cargo bench --bench store` builds, or `TILLPASS_BENCH_STORE=PATH`. The first report on a
//! store makes every member record and the totals (timed apart); the store keeps them.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use tillpass::domain::Timestamp;
use tillpass::domain::insights::last_days;
use tillpass::store::Store;

const RUNS: usize = 7;

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let path = std::env::var("TILLPASS_BENCH_STORE").unwrap_or_else(|_| {
        format!(
            "{}/target/bench/store-1000000.sqlite3",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    if !Path::new(&path).exists() {
        eprintln!("no store at {path}: run `cargo bench --bench store` first");
        std::process::exit(1);
    }
    let started = Instant::now();
    let mut store = Store::open(Path::new(&path)).expect("open the store");
    println!("open (migrations included): {}", ms(started.elapsed()));
    let stats = store.stats().expect("stats");
    println!("{} members, {} entries", stats.members, stats.entries);
    let now = Timestamp::from(SystemTime::now());
    let started = Instant::now();
    store
        .insights(last_days(now, 1).0, last_days(now, 1).1)
        .expect("first report");
    println!(
        "first report (makes or brings up to date every record and the totals): {}",
        ms(started.elapsed())
    );
    println!("| period | median of {RUNS} | max | active members | at risk |");
    println!("|---|---|---|---|---|");
    for days in [30, 90, 365] {
        let (from, to) = last_days(now, days);
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..RUNS {
            let started = Instant::now();
            last = Some(store.insights(from, to).expect("report"));
            times.push(started.elapsed());
        }
        times.sort_unstable();
        let report = last.expect("a report");
        let active = report
            .get("active_members")
            .and_then(|m| m.value)
            .unwrap_or(0.0);
        println!(
            "| last {days} days | {} | {} | {active:.0} | {} |",
            ms(times[RUNS / 2]),
            ms(times[RUNS - 1]),
            report.at_risk.len()
        );
        if days == 90 {
            let started = Instant::now();
            let recomputed = store.insights_from_ledger(from, to).expect("recompute");
            println!(
                "| last 90 days, full recompute from the ledger | {} | | | |",
                ms(started.elapsed())
            );
            assert_eq!(recomputed, report, "the totals and the ledger disagree");
        }
    }
}
