//! The `tillpass` command line, run as a real process on a real database file.

mod common;

use std::process::{Command, Output};

use common::TempDb;
use serde_json::Value;

/// The manager PIN these tests set and give (as scripts do, in the environment).
const PIN: &str = "2468";

fn tillpass(db: &TempDb, args: &[&str]) -> Output {
    tillpass_with_pin(db, args, PIN)
}

fn tillpass_with_pin(db: &TempDb, args: &[&str], pin: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tillpass"))
        .arg("--db")
        .arg(&db.path)
        .args(args)
        .env_remove("TILLPASS_DB")
        .env("TILLPASS_MANAGER_PIN", pin)
        .output()
        .expect("run tillpass")
}

fn json(db: &TempDb, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = tillpass(db, &all);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

/// Runs a command that must fail, returning its one-line error.
fn refused(db: &TempDb, args: &[&str]) -> String {
    let out = tillpass(db, args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(
        err.lines().count(),
        1,
        "one-line error expected, got {err:?}"
    );
    assert!(err.starts_with("error: "), "{err}");
    err
}

fn entries(db: &TempDb) -> i64 {
    json(db, &["status"])["entries"].as_i64().expect("entries")
}

#[test]
fn a_cashier_session_from_the_command_line() {
    let db = TempDb::new();
    let added = json(
        &db,
        &[
            "member",
            "add",
            "--name",
            "Ada Lovelace",
            "--phone",
            "07400 123456",
            "--email",
            "ada@example.com",
        ],
    );
    let card = added["member"]["card"].as_str().expect("card").to_owned();
    assert_eq!(added["state"]["balance"], 100);

    let earned = json(&db, &["earn", &card, "12.50"]);
    assert_eq!(earned["entry"]["points"], 125);
    assert_eq!(earned["state"]["balance"], 225);
    let by_phone = json(&db, &["earn", "+44 7400 123456", "30"]);
    assert_eq!(by_phone["state"]["balance"], 525);

    // Points from sales are pending through the demo's 14-day return window.
    let waiting = refused(&db, &["redeem", &card, "coffee"]);
    assert!(
        waiting.contains("100 are available now and 425 more once"),
        "{waiting}"
    );
    assert!(tillpass(&db, &["manager-pin", "set"]).status.success());
    let gift = json(
        &db,
        &["adjust", &card, "500", "--note", "opening week gift"],
    );
    assert_eq!(gift["state"]["balance"], 1025);
    let redeemed = json(&db, &["redeem", &card, "coffee"]);
    assert_eq!(redeemed["entry"]["points"], -500);
    let reversed = json(
        &db,
        &["reverse", redeemed["entry"]["id"].as_str().expect("id")],
    );
    assert_eq!(reversed["state"]["balance"], 1025);

    let history = json(&db, &["history", &card]);
    assert_eq!(history.as_array().map(Vec::len), Some(6));
    let found = json(&db, &["member", "find", "love"]);
    assert_eq!(found[0]["member"]["card"], card.as_str());
    assert_eq!(
        json(&db, &["verify"])["drift"].as_array().map(Vec::len),
        Some(0)
    );
}

#[test]
fn every_refusal_is_one_clear_line_and_writes_nothing() {
    let db = TempDb::new();
    let added = json(&db, &["member", "add", "--name", "Bo Peep"]);
    let card = added["member"]["card"].as_str().expect("card").to_owned();
    let before = entries(&db);
    let stranger = tillpass::domain::CardNumber::from_payload(777_777_777).to_string();
    let cases: [(&[&str], &str); 9] = [
        (&["redeem", &card, "coffee"], "not enough points"),
        (&["redeem", &card, "beans-250g"], "for Gold members"),
        (&["redeem", &card, "yacht"], "no reward"),
        (&["earn", &card, "-3"], "not an amount"),
        (&["earn", &card, "1,500"], "could be 1500 or 1.50"),
        (&["earn", &card, "45000"], "largest sale"),
        (&["earn", "1234567890", "3"], "check digit"),
        (&["earn", &stranger, "3"], "no member"),
        (&["reverse", "not-an-id"], "not an entry id"),
    ];
    for (args, expected) in cases {
        let err = refused(&db, args);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    assert_eq!(entries(&db), before, "refusals wrote nothing");
}

#[test]
fn a_bad_program_file_is_named_and_leaves_no_database_behind() {
    let db = TempDb::new();
    let bad = db.dir.path().join("bad.toml");
    let text = tillpass::domain::program::DEMO_PROGRAM_TOML
        .replace("rounding = \"down\"", "rounding = \"sideways\"");
    std::fs::write(&bad, text).expect("write");
    let err = refused(&db, &["init", "--program", bad.to_str().expect("path")]);
    assert!(err.contains("earn.rounding"), "{err}");
    assert!(!db.path.exists(), "no database file was created");
}

#[test]
fn demo_then_tiers_counts_every_member() {
    let db = TempDb::new();
    let report = json(&db, &["demo", "--members", "300", "--seed", "7"]);
    assert_eq!(report["members"], 300);
    // The demo shop also sells to customers without a membership, and some answer the
    // recommend question: the report over all of it counts every one.
    let today = time::OffsetDateTime::now_utc().date();
    let (from, to) = (
        (today - time::Duration::days(800)).to_string(),
        (today + time::Duration::days(1)).to_string(),
    );
    let measures = json(&db, &["report", "--from", &from, "--to", &to])["measures"].clone();
    let measure = |key: &str| {
        measures
            .as_array()
            .expect("measures")
            .iter()
            .find(|m| m["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no measure {key}"))
    };
    let guest_sales = report["guest_sales"].as_f64().expect("guest sales");
    assert!(guest_sales >= 300.0, "one to four a member: {guest_sales}");
    assert_eq!(measure("guest_orders")["value"].as_f64(), Some(guest_sales));
    let answers = report["answers"].as_u64().expect("answers");
    assert!(answers > 0);
    let nps = measure("nps");
    let formula = nps["formula"].as_str().expect("formula");
    assert!(
        formula.contains(&format!("of {answers} answers")),
        "{formula}"
    );
    let tiers = json(&db, &["tiers", "--refresh"]);
    let total: i64 = tiers
        .as_array()
        .expect("rows")
        .iter()
        .map(|t| t["members"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(total, 300);
    assert_eq!(
        json(&db, &["verify"])["drift"].as_array().map(Vec::len),
        Some(0)
    );
    let err = refused(&db, &["demo", "--members", "5"]);
    assert!(err.contains("empty store"), "{err}");
}

#[test]
fn manager_commands_need_the_pin_and_wrong_pins_lock_it() {
    let db = TempDb::new();
    let added = json(&db, &["member", "add", "--name", "Bo Peep"]);
    let card = added["member"]["card"].as_str().expect("card").to_owned();
    let adjust = ["adjust", card.as_str(), "50", "--note", "goodwill"];
    let err = refused(&db, &adjust);
    assert!(err.contains("none is set"), "{err}");
    assert!(tillpass(&db, &["manager-pin", "set"]).status.success());
    let before = entries(&db);
    for _ in 0..3 {
        let out = tillpass_with_pin(&db, &adjust, "1111");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("wrong manager PIN"), "{err}");
    }
    // Three wrong in a row: now even the right PIN waits, and is not checked meanwhile.
    let err = refused(&db, &adjust);
    let wait: i64 = err
        .split("try again in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no wait in {err:?}"));
    assert!((1..=30).contains(&wait), "{err}");
    assert_eq!(entries(&db), before, "nothing was adjusted");

    let fresh = TempDb::new();
    let added = json(&fresh, &["member", "add", "--name", "Bo Peep"]);
    let card = added["member"]["card"].as_str().expect("card").to_owned();
    assert!(tillpass(&fresh, &["manager-pin", "set"]).status.success());
    let adjusted = json(&fresh, &["adjust", &card, "50", "--note", "goodwill"]);
    assert_eq!(adjusted["state"]["balance"], 150);
}

#[test]
fn a_member_gets_everything_held_about_them() {
    let db = TempDb::new();
    let added = json(
        &db,
        &[
            "member",
            "add",
            "--name",
            "Ada Lovelace",
            "--phone",
            "07400 123456",
            "--email",
            "ada@example.com",
            "--birthday",
            "1990-12-10",
            "--marketing",
        ],
    );
    let card = added["member"]["card"].as_str().expect("card").to_owned();
    json(&db, &["earn", &card, "12.50"]);
    let out = tillpass(&db, &["member", "export", &card]);
    assert!(out.status.success());
    let export: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(export["record"]["name"], "Ada Lovelace");
    assert_eq!(export["record"]["phone"], "+447400123456");
    assert_eq!(export["record"]["email"], "ada@example.com");
    assert_eq!(export["record"]["marketing_consent"], true);
    assert_eq!(export["summary"]["balance"], 225);
    assert_eq!(export["entries"].as_array().map(Vec::len), Some(2));
    let file = db.dir.path().join("ada.json");
    assert!(
        tillpass(
            &db,
            &[
                "member",
                "export",
                &card,
                "--out",
                file.to_str().expect("path")
            ]
        )
        .status
        .success()
    );
    let from_file: Value =
        serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("JSON");
    assert_eq!(from_file["record"], export["record"]);
}

#[test]
fn members_and_balances_are_imported_all_or_nothing() {
    let db = TempDb::new();
    assert!(tillpass(&db, &["manager-pin", "set"]).status.success());
    let file = db.dir.path().join("members.csv");
    std::fs::write(
        &file,
        "Customer name,Email,Phone,Points balance,First visit\n\
         Ada Lovelace,ada@example.com,07400 123456,1250,2023-05-04\n\
         Bo Peep,bo@example.com,,0,\n\
         Cy Young,,07400 999888,75.0,2024-01-02 09:30\n",
    )
    .expect("write");
    let path = file.to_str().expect("path");
    let dry = json(&db, &["import", path, "--dry-run"]);
    assert_eq!(dry["members"], 3);
    assert_eq!(dry["points"], 1325);
    assert_eq!(
        json(&db, &["status"])["members"],
        0,
        "a dry run writes nothing"
    );

    let done = json(&db, &["import", path]);
    assert_eq!(
        (done["members"].as_i64(), done["balances"].as_i64()),
        (Some(3), Some(2))
    );
    let ada = json(&db, &["member", "show", "ada@example.com"]);
    assert_eq!(ada["state"]["balance"], 1250);
    let history = json(&db, &["history", "ada@example.com"]);
    assert_eq!(history[0]["kind"], "opening_balance");
    assert_eq!(
        json(&db, &["verify"])["drift"].as_array().map(Vec::len),
        Some(0)
    );

    // A file with bad lines imports nothing and names every one.
    std::fs::write(
        &file,
        "name,email,balance\nDi Prince,di@example.com,10\nEd,ada@example.com,5\nFay,fay@,x\n",
    )
    .expect("write");
    let err = refused(&db, &["import", path]);
    assert!(err.contains("line 3") && err.contains("line 4"), "{err}");
    assert_eq!(
        json(&db, &["status"])["members"],
        3,
        "nothing more was imported"
    );
}

#[test]
fn demo_data_is_refused_on_a_joined_till() {
    let db = TempDb::new();
    assert!(
        tillpass(
            &db,
            &["sync", "--server", "http://127.0.0.1:9", "--token", "tpt_x"]
        )
        .status
        .code()
        .is_some(),
        "the server is saved even though it cannot be reached"
    );
    let err = refused(&db, &["demo", "--members", "5"]);
    assert!(err.contains("joined to a server"), "{err}");
    assert_eq!(json(&db, &["status"])["members"], 0);
}

#[test]
fn a_till_backup_is_a_store_of_its_own() {
    let db = TempDb::new();
    let added = json(&db, &["member", "add", "--name", "Ada Lovelace"]);
    let card = added["member"]["card"].as_str().expect("card").to_owned();
    json(&db, &["earn", &card, "12.50"]);
    let copy = db.dir.path().join("copy.sqlite3");
    assert!(
        tillpass(&db, &["backup", copy.to_str().expect("path")])
            .status
            .success()
    );
    let err = refused(&db, &["backup", copy.to_str().expect("path")]);
    assert!(err.contains("exists already"), "{err}");
    let restored = TempDb {
        path: copy,
        dir: tempfile::tempdir().expect("dir"),
    };
    assert_eq!(
        json(&restored, &["member", "show", &card])["state"]["balance"],
        225
    );
    assert_eq!(
        json(&restored, &["verify"])["drift"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
}

#[test]
fn only_members_who_agreed_are_on_a_marketing_list() {
    let db = TempDb::new();
    json(
        &db,
        &[
            "member",
            "add",
            "--name",
            "Ada Lovelace",
            "--email",
            "ada@example.com",
            "--marketing",
        ],
    );
    json(
        &db,
        &[
            "member",
            "add",
            "--name",
            "Bo Peep",
            "--email",
            "bo@example.com",
        ],
    );
    let gone = json(
        &db,
        &[
            "member",
            "add",
            "--name",
            "Cy Young",
            "--email",
            "cy@example.com",
            "--marketing",
        ],
    );
    assert!(tillpass(&db, &["manager-pin", "set"]).status.success());
    let card = gone["member"]["card"].as_str().expect("card").to_owned();
    assert!(tillpass(&db, &["member", "erase", &card]).status.success());
    let out = tillpass(&db, &["member", "marketing-list"]);
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains("ada@example.com"), "{list}");
    assert!(!list.contains("bo@example.com"), "no consent: {list}");
    assert!(!list.contains("cy@example.com"), "erased: {list}");
    assert_eq!(list.lines().count(), 2, "{list}");
}

/// A command run while another process upgrades the store's schema says why it waits, and
/// runs once the upgrade is done (the lock let go) instead of failing with "database is
/// locked".
#[test]
fn a_command_during_an_upgrade_says_it_waits_then_runs() {
    use std::io::BufRead as _;
    let db = TempDb::new();
    let lock_path = std::fs::canonicalize(db.dir.path())
        .expect("dir")
        .join("till.sqlite3-upgrade.lock");
    let upgrading = std::fs::File::create(&lock_path).expect("lock file");
    upgrading
        .lock()
        .expect("held as an upgrading process holds it");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tillpass"))
        .arg("--db")
        .arg(&db.path)
        .arg("status")
        .env_remove("TILLPASS_DB")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run tillpass");
    // The first line as it comes, then the rest (what a failure says).
    let stderr = child.stderr.take().expect("stderr");
    let (said, first_line) = std::sync::mpsc::channel();
    let rest = std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stderr).lines();
        let _ = said.send(lines.next().and_then(Result::ok).unwrap_or_default());
        lines.map_while(Result::ok).collect::<Vec<_>>().join("\n")
    });
    let line = first_line.recv_timeout(std::time::Duration::from_secs(60));
    drop(upgrading);
    let line = line.expect("a line on stderr while it waits");
    assert!(
        line.starts_with("waiting for another tillpass process to finish upgrading"),
        "{line}"
    );
    let status = child.wait().expect("wait");
    let rest = rest.join().expect("stderr");
    assert!(status.success(), "{rest}");
}
