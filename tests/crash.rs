//! Crash safety: a child process writes entries in a loop and reports each one after its commit
//! returns; it is killed with SIGKILL at random moments, many times. After every kill the store
//! must hold every reported entry exactly once, and `verify` must be clean.

mod common;

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use common::TempDb;
use rand::RngExt as _;
use tillpass::domain::{CardNumber, MemberInput, Timestamp};
use tillpass::store::Store;

const CHILD_DB: &str = "TILLPASS_CRASH_CHILD_DB";
const CHILD_CARD: &str = "TILLPASS_CRASH_CHILD_CARD";
const ROUNDS: usize = 40;

/// The child's work: earn (and now and then reverse) until killed, reporting each commit.
fn child(db: &str, card: &str) {
    let mut store = Store::open(std::path::Path::new(db)).expect("child open");
    let card: CardNumber = card.parse().expect("card");
    let member = store
        .member_by_card(&card)
        .expect("lookup")
        .expect("member")
        .member
        .id;
    let mut rng = rand::rng();
    loop {
        let now = Timestamp::from(SystemTime::now());
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
        child(&db, &card);
        return;
    }
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
    let mut rng = rand::rng();
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "sigkill_never_loses_or_doubles_an_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DB, &db.path)
            .env(CHILD_CARD, card.as_str())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // Kill after a random number of commits (0: while it is still opening the store).
        let kill_after = if round % 8 == 0 {
            0
        } else {
            rng.random_range(1..60)
        };
        let mut seen = 0;
        while seen < kill_after {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(id) = line.strip_prefix("COMMITTED ") {
                        reported.push(id.to_owned());
                        seen += 1;
                    }
                }
                _ => break,
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
            "round {round}: an entry id appears twice"
        );
        for id in &reported {
            assert!(
                stored_set.contains(id),
                "round {round}: reported entry {id} was lost"
            );
        }
        let report = store.verify(false).expect("verify");
        assert!(report.is_clean(), "round {round}: {:?}", report.drift);
    }
    let unique: HashSet<&String> = reported.iter().collect();
    assert_eq!(unique.len(), reported.len(), "no id was reported twice");
    assert!(
        reported.len() > ROUNDS,
        "the children committed work ({} entries)",
        reported.len()
    );
}
