//! Crash safety: a child process writes entries in a loop and reports each one after its commit
//! returns; it is killed with SIGKILL many times. After every kill the store must hold every
//! reported entry exactly once, and `verify` must be clean.
//!
//! One u64 seed decides everything it can: each child's choices (sale or reversal, the amounts,
//! the instants it writes at) and after how many reported commits the parent kills it. The seed
//! is random unless `TILLPASS_CRASH_SEED` is set; the test prints it, and every assertion repeats
//! it, with the command that replays it. A replay is close, not exact: how much more the child
//! commits between the parent's decision and the moment SIGKILL lands is up to the scheduler, and
//! entry ids and the till's terminal id come from the store's own randomness.

mod common;

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};

use common::TempDb;
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use tillpass::domain::{CardNumber, MemberInput};
use tillpass::store::Store;

const SEED: &str = "TILLPASS_CRASH_SEED";
const CHILD_DB: &str = "TILLPASS_CRASH_CHILD_DB";
const CHILD_CARD: &str = "TILLPASS_CRASH_CHILD_CARD";
const CHILD_SEED: &str = "TILLPASS_CRASH_CHILD_SEED";
const CHILD_ROUND: &str = "TILLPASS_CRASH_CHILD_ROUND";
const ROUNDS: usize = 40;

/// The seed from `TILLPASS_CRASH_SEED`, or a random one.
fn seed() -> u64 {
    match std::env::var(SEED) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED}={text:?} is not an unsigned 64-bit integer")),
        Err(_) => rand::random(),
    }
}

/// Reads a variable the parent set for the child.
fn child_var<T: std::str::FromStr>(name: &str) -> T {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("the parent sets {name}"))
}

/// The child's work: earn (and now and then reverse) until killed, reporting each commit. Round
/// `round` writes one second apart from day `round + 1` after enrolment, so time moves on from
/// child to child as it would at a till.
fn child(db: &str, card: &str, seed: u64, round: i64) {
    let mut store = Store::open(std::path::Path::new(db)).expect("child open");
    let card: CardNumber = card.parse().expect("card");
    let member = store
        .member_by_card(&card)
        .expect("lookup")
        .expect("member")
        .member
        .id;
    let mut rng = StdRng::seed_from_u64(seed);
    let start = common::NOW.plus_days(round + 1);
    for i in 0.. {
        let now = start.plus_millis(i * 1_000);
        let entry = if rng.random_bool(0.1) {
            match store.last_local_entry(member).expect("last") {
                Some(last) => store
                    .reverse(last.id, "crash", now)
                    .or_else(|_| store.earn(member, 100, "crash", now)),
                None => store.earn(member, 100, "crash", now),
            }
        } else {
            store.earn(member, rng.random_range(1..50_000), "crash", now)
        };
        let entry = entry.expect("write");
        println!("COMMITTED {}", entry.id);
    }
}

#[test]
fn sigkill_never_loses_or_doubles_an_entry() {
    if let (Ok(db), Ok(card)) = (std::env::var(CHILD_DB), std::env::var(CHILD_CARD)) {
        child(&db, &card, child_var(CHILD_SEED), child_var(CHILD_ROUND));
        return;
    }
    let seed = seed();
    let replay = format!("crash seed {seed}; replay with {SEED}={seed} cargo test --test crash");
    eprintln!("{replay}");
    let mut rng = StdRng::seed_from_u64(seed);
    let db = TempDb::new();
    let card = {
        let mut store = db.open();
        let input = MemberInput {
            name: "Crash Test".into(),
            ..Default::default()
        };
        store
            .add_member(input, "test", common::NOW)
            .expect("enrol")
            .member
            .card
    };
    let exe = std::env::current_exe().expect("test binary");
    let mut reported: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        let child_seed: u64 = rng.random();
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "sigkill_never_loses_or_doubles_an_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DB, &db.path)
            .env(CHILD_CARD, card.as_str())
            .env(CHILD_SEED, child_seed.to_string())
            .env(CHILD_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // Kill after a seeded number of commits (0: while it is still opening the store).
        let kill_after = if round % 8 == 0 {
            0
        } else {
            rng.random_range(1..60)
        };
        let mut seen = 0;
        // The child only stops when killed: its output ending first means it failed.
        let mut stopped_by_itself = false;
        while seen < kill_after {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(id) = line.strip_prefix("COMMITTED ") {
                        reported.push(id.to_owned());
                        seen += 1;
                    }
                }
                _ => {
                    stopped_by_itself = true;
                    break;
                }
            }
        }
        child.kill().expect("SIGKILL");
        // Commits reported before the kill are still in the pipe.
        for line in lines.map_while(Result::ok) {
            if let Some(id) = line.strip_prefix("COMMITTED ") {
                reported.push(id.to_owned());
            }
        }
        child.wait().expect("reap");
        let mut child_stderr = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut child_stderr)
            .expect("read the child's stderr");
        assert!(
            !stopped_by_itself,
            "round {round}: the child stopped before it was killed ({replay}):\n{child_stderr}"
        );

        let mut store = db.open();
        let stored: Vec<String> = {
            let mut stmt = store
                .connection()
                .prepare("SELECT id FROM ledger")
                .expect("prepare");
            stmt.query_map([], |r| r.get::<_, uuid::Uuid>(0))
                .expect("query")
                .map(|id| id.expect("row").to_string())
                .collect()
        };
        let stored_set: HashSet<&String> = stored.iter().collect();
        assert_eq!(
            stored_set.len(),
            stored.len(),
            "round {round}: an entry id appears twice ({replay})"
        );
        for id in &reported {
            assert!(
                stored_set.contains(id),
                "round {round}: reported entry {id} was lost ({replay})"
            );
        }
        let report = store.verify(false).expect("verify");
        assert!(
            report.is_clean(),
            "round {round}: {:?} ({replay})",
            report.drift
        );
    }
    let unique: HashSet<&String> = reported.iter().collect();
    assert_eq!(
        unique.len(),
        reported.len(),
        "no id was reported twice ({replay})"
    );
    assert!(
        reported.len() > ROUNDS,
        "the children committed work ({} entries; {replay})",
        reported.len()
    );
}
