//! The manager's measures from a real store file, every number worked out by hand, and the
//! same numbers from the `tillpass report` command.

mod common;

use std::process::Command;

use common::TempDb;
use tillpass::domain::{MemberId, MemberInput, Timestamp};
use tillpass::store::Store;

/// 10:00 UTC on a day of 2026.
fn on(month: u8, day: u8) -> Timestamp {
    let date =
        time::Date::from_calendar_date(2026, time::Month::try_from(month).expect("a month"), day)
            .expect("a day");
    Timestamp::from_millis((date.midnight().assume_utc().unix_timestamp() + 36_000) * 1000)
}

/// Midnight UTC starting a day of 2026.
fn midnight(month: u8, day: u8) -> Timestamp {
    on(month, day).plus_millis(-36_000_000)
}

fn enrol(
    store: &mut Store,
    name: &str,
    email: Option<&str>,
    consent: bool,
    at: Timestamp,
) -> MemberId {
    let input = MemberInput {
        name: name.into(),
        email: email.map(Into::into),
        marketing_consent: consent,
        ..Default::default()
    };
    store
        .add_member(input, "test", at)
        .expect("enrol")
        .member
        .id
}

/// Autumn at a café: four members (one never buys, one has a sale reversed), three guests.
fn autumn(store: &mut Store) {
    let ada = enrol(store, "Ada Byron", Some("ada@example.com"), true, on(9, 2));
    let bob = enrol(
        store,
        "Bob Stone",
        Some("bob@example.com"),
        false,
        on(9, 20),
    );
    let cy = enrol(store, "Cy Young", Some("cy@example.com"), true, on(10, 5));
    enrol(store, "Di Lane", None, false, on(11, 2));
    for (member, minor, at) in [
        (ada, 1000, on(9, 2)),
        (ada, 500, on(9, 10)),
        (ada, 800, on(10, 1)),
        (bob, 400, on(9, 25)),
        (cy, 2000, on(10, 5)),
        (cy, 1000, on(11, 10)),
    ] {
        store.earn(member, minor, "ann", at).expect("earn");
    }
    let wrong = store.earn(bob, 600, "ann", on(9, 20)).expect("earn");
    store.reverse(wrong.id, "ann", on(9, 21)).expect("reverse");
    store
        .redeem(ada, "pastry", "ann", on(10, 16))
        .expect("redeem");
    for (minor, at) in [(300, on(9, 15)), (500, on(10, 15)), (400, on(11, 20))] {
        store
            .record_guest_sale(minor, "ann", at)
            .expect("guest sale");
    }
}

#[test]
fn the_report_says_how_far_it_has_read_the_ledger() {
    let db = TempDb::new();
    let mut store = db.open();
    autumn(&mut store);
    let entries: u64 = store
        .connection()
        .query_row("SELECT COUNT(*) FROM ledger", [], |r| r.get::<_, i64>(0))
        .expect("count")
        .try_into()
        .expect("a count");
    let mut told = Vec::new();
    let (from, to) = (midnight(9, 1), midnight(12, 1));
    let report = store
        .insights_with_progress(from, to, &mut |read, total| told.push((read, total)))
        .expect("report");
    assert_eq!(report, store.insights(from, to).expect("report"));
    assert!(entries > 0);
    assert_eq!(told.last(), Some(&(entries, entries)), "{told:?}");
}

#[test]
fn an_autumn_worked_out_by_hand() {
    let db = TempDb::new();
    let mut store = db.open();
    autumn(&mut store);
    let r = store
        .insights(midnight(9, 1), midnight(12, 1))
        .expect("report");
    let v = |k: &str| r.get(k).unwrap_or_else(|| panic!("{k}")).value;
    assert_eq!(v("active_members"), Some(3.0));
    assert_eq!(v("new_members"), Some(4.0));
    // Ada 3, Bob 1 (the other reversed), Cy 2.
    assert_eq!(v("member_orders"), Some(6.0));
    assert_eq!(v("guest_orders"), Some(3.0));
    assert_eq!(v("repeat_purchase_rate"), Some(2.0 / 3.0));
    assert_eq!(v("purchase_frequency"), Some(2.0));
    // (1000 + 500 + 800 + 400 + 2000 + 1000) / 6; (300 + 500 + 400) / 3.
    assert_eq!(v("aov_members"), Some(950.0));
    assert_eq!(v("aov_guests"), Some(400.0));
    assert_eq!(v("visits_per_member"), Some(1.5));
    // September (Ada, Bob): both in September, Ada in October, nobody in November; October
    // (Cy): October, November; November (Di): nobody.
    let grid: Vec<(&str, usize, Vec<usize>)> = r
        .cohorts
        .iter()
        .map(|c| (c.month.as_str(), c.members, c.active.clone()))
        .collect();
    assert_eq!(
        grid,
        vec![
            ("2026-09", 2, vec![2, 1, 0]),
            ("2026-10", 1, vec![1, 1]),
            ("2026-11", 1, vec![0]),
        ]
    );
    assert_eq!(v("month_one_retention"), Some(2.0 / 3.0));
    // Ada (last bought October 1st) and Bob (September 25th): more than 60 days before
    // December 1st.
    assert_eq!(v("churn_risk"), Some(2.0));
    // Welcome 4 x 100, purchases 100 + 50 + 80 + 40 + 200 + 100 (Bob's 60 reversed).
    assert_eq!(v("redemption_rate"), Some(300.0 / 970.0));
    // Balances: Ada 330 - 300, Bob 140, Cy 400, Di 100 = 670 points at 5.00 a thousand.
    assert_eq!(v("points_liability"), Some(335.0));
    // Only Ada agreed to marketing.
    let contacts = store.at_risk_contacts(&r).expect("contacts");
    let names: Vec<&str> = contacts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["Ada Byron"]);
}

#[test]
fn tiers_move_with_the_rolling_window() {
    let db = TempDb::new();
    let mut store = db.open();
    // Eve reaches Silver (1,000 points in 365 days) in October; Fay's Silver purchase of a year
    // ago leaves her window on September 5th.
    let eve = enrol(&mut store, "Eve Lark", None, false, on(8, 1));
    store.earn(eve, 6000, "ann", on(8, 2)).expect("earn");
    store.earn(eve, 5000, "ann", on(10, 10)).expect("earn");
    let date = time::Date::from_calendar_date(2025, time::Month::September, 5).expect("a day");
    let last_year = Timestamp::from_millis(date.midnight().assume_utc().unix_timestamp() * 1000);
    let fay = enrol(&mut store, "Fay Moss", None, false, last_year);
    store.earn(fay, 11_000, "ann", last_year).expect("earn");
    let r = store
        .insights(midnight(9, 1), midnight(12, 1))
        .expect("report");
    let v = |k: &str| r.get(k).unwrap_or_else(|| panic!("{k}")).value;
    assert_eq!(v("tier_moves_up"), Some(1.0));
    assert_eq!(v("tier_moves_down"), Some(1.0));
    let tiers: Vec<(&str, Vec<usize>)> = r
        .months
        .iter()
        .map(|m| (m.month.as_str(), m.tiers.clone()))
        .collect();
    assert_eq!(
        tiers,
        vec![
            ("2026-09", vec![2, 0, 0]),
            ("2026-10", vec![1, 1, 0]),
            ("2026-11", vec![1, 1, 0]),
        ]
    );
}

#[test]
fn the_command_line_reports_the_same_numbers() {
    let db = TempDb::new();
    let mut store = db.open();
    autumn(&mut store);
    let expected = store
        .insights(midnight(9, 1), midnight(12, 1))
        .expect("report");
    drop(store);
    let tillpass = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tillpass"));
        c.arg("--db").arg(&db.path);
        c
    };
    let out = tillpass()
        .args([
            "report",
            "--from",
            "2026-09-01",
            "--to",
            "2026-12-01",
            "--json",
        ])
        .output()
        .expect("run tillpass report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    for m in &expected.measures {
        let got = json["measures"]
            .as_array()
            .expect("measures")
            .iter()
            .find(|j| j["key"] == m.key)
            .unwrap_or_else(|| panic!("{} missing", m.key));
        assert_eq!(got["value"].as_f64(), m.value, "{}", m.key);
    }
    let csv_path = db.dir.path().join("at-risk.csv");
    let out = tillpass()
        .args([
            "report",
            "--from",
            "2026-09-01",
            "--to",
            "2026-12-01",
            "--at-risk-csv",
        ])
        .arg(&csv_path)
        .output()
        .expect("run tillpass report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.contains("Repeat purchase rate"), "{text}");
    assert!(text.contains("66.7%"), "{text}");
    let csv = std::fs::read_to_string(&csv_path).expect("at-risk file");
    assert!(csv.contains("Ada Byron,ada@example.com"), "{csv}");
    assert!(
        !csv.contains("Bob"),
        "Bob did not agree to marketing: {csv}"
    );

    // A guest sale with a bad amount writes nothing; a good one counts, today.
    let guests_today = || {
        let out = tillpass()
            .args(["report", "--json"])
            .output()
            .expect("run tillpass report");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        json["measures"]
            .as_array()
            .expect("measures")
            .iter()
            .find(|j| j["key"] == "guest_orders")
            .expect("guest orders")["value"]
            .as_f64()
            .expect("a count")
    };
    let before = guests_today();
    let bad = tillpass().args(["sale", "0"]).output().expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("above zero"));
    assert_eq!(guests_today(), before);
    let good = tillpass().args(["sale", "2.40"]).output().expect("run");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert_eq!(guests_today(), before + 1.0);
}

mod chain {
    use super::common::TempDb;
    use super::common::server::{
        Backend, Server, Till, add_terminals, admin_output, database, eventually, now,
        report_records_current, report_state, server_bin, tamper,
    };
    use tillpass::domain::{MemberId, MemberInput};
    use tillpass::sync::protocol::{GuestSale, GuestSaleVoid, PushRequest, TERMINAL_HEADER};

    #[test]
    fn sqlite() {
        the_server_reports_what_every_till_reports(Backend::Sqlite);
    }

    #[test]
    fn postgres() {
        the_server_reports_what_every_till_reports(Backend::Postgres);
    }

    /// A chain of one till on `backend`, with the report's records of the new chain made
    /// (while it is quiet). The directory and server live as long as the value.
    struct OneTill {
        _dir: TempDb,
        db: String,
        _server: Server,
        till: Till,
    }

    fn one_till(backend: Backend) -> Option<OneTill> {
        let dir = TempDb::new();
        let db = database(backend, dir.dir.path())?;
        let tokens = add_terminals(&db, 1);
        let server = Server::start(&db);
        let till = Till::join(&server.url, &tokens[0]);
        assert!(
            eventually(|| report_records_current(&db)),
            "the records of the new chain, made while it is quiet"
        );
        Some(OneTill {
            _dir: dir,
            db,
            _server: server,
            till,
        })
    }

    /// Enrols a member by name alone.
    fn enrol(till: &mut Till, name: &str) -> MemberId {
        let input = MemberInput {
            name: name.into(),
            ..Default::default()
        };
        till.store
            .add_member(input, "test", now())
            .expect("enrol")
            .member
            .id
    }

    /// `verify` on the server's database: every one of `records` and the totals agree with
    /// the entries.
    fn records_agree(db: &str, records: u64) {
        let verified: serde_json::Value =
            serde_json::from_str(&admin_output(db, &["verify", "--json"])).expect("json");
        assert_eq!(verified["records_checked"], records, "{verified}");
        assert_eq!(verified["records_wrong"], 0, "{verified}");
        assert_eq!(verified["totals_wrong"], 0, "{verified}");
    }

    #[test]
    fn sqlite_records_keep_up_with_busy_tills() {
        records_keep_up_while_tills_push(Backend::Sqlite);
    }

    #[test]
    fn postgres_records_keep_up_with_busy_tills() {
        records_keep_up_while_tills_push(Backend::Postgres);
    }

    /// A till that never pauses a second between pushes still finds the report's records
    /// close behind it: the server's keeper catches up a slice at a time while tills push,
    /// rather than waiting for a quiet that a busy chain never has.
    fn records_keep_up_while_tills_push(backend: Backend) {
        let Some(mut one) = one_till(backend) else {
            return;
        };
        let ada = enrol(&mut one.till, "Ada");
        one.till.store.earn(ada, 500, "ann", now()).expect("earn");
        let first = one.till.sync().expect("sync").server_seq;
        let caught_up = eventually(|| {
            one.till.store.earn(ada, 100, "ann", now()).expect("earn");
            one.till.sync().expect("sync");
            report_state(&one.db).1 >= first
        });
        assert!(
            caught_up,
            "the records counted the first push while the till went on pushing"
        );
    }

    #[test]
    fn sqlite_undecodable_record() {
        a_record_that_does_not_decode_is_made_again(Backend::Sqlite);
    }

    #[test]
    fn postgres_undecodable_record() {
        a_record_that_does_not_decode_is_made_again(Backend::Postgres);
    }

    /// A stored record whose digest a bad disk damaged cannot have its sums taken off the
    /// totals when its member buys again: every record is made again, and `verify` agrees.
    fn a_record_that_does_not_decode_is_made_again(backend: Backend) {
        let Some(mut one) = one_till(backend) else {
            return;
        };
        let (ada, bob) = (enrol(&mut one.till, "Ada"), enrol(&mut one.till, "Bob"));
        one.till.store.earn(ada, 1200, "ann", now()).expect("earn");
        one.till.store.earn(bob, 800, "ann", now()).expect("earn");
        one.till.sync().expect("sync");
        assert!(eventually(|| report_records_current(&one.db)));

        let garbage = match backend {
            Backend::Sqlite => "x'ff'",
            Backend::Postgres => "'\\xff'::bytea",
        };
        tamper(
            &one.db,
            &format!("UPDATE report_digests SET digest = {garbage}"),
        );
        one.till.store.earn(ada, 300, "ann", now()).expect("earn");
        one.till.sync().expect("sync");
        admin_output(&one.db, &["report", "--json"]);
        records_agree(&one.db, 2);
    }

    /// The report's records are unlogged tables on PostgreSQL (derived, and a push's writes
    /// to them would otherwise be logged page by page). After a crash PostgreSQL empties every
    /// unlogged table, the records' state with them: the next report makes them all again and
    /// says what it said before, and `verify` agrees.
    #[test]
    fn postgres_records_lost_in_a_crash_are_made_again() {
        // What crash recovery does to the unlogged tables.
        const CRASH_RECOVERY: &str = "TRUNCATE report_digests, report_members,
                                      report_tier_changes, report_totals, report_state";
        let Some(mut one) = one_till(Backend::Postgres) else {
            return;
        };
        tamper(
            &one.db,
            "DO $$ BEGIN
                 IF (SELECT COUNT(*) FROM pg_class
                     WHERE relkind = 'r' AND relpersistence = 'u' AND relname IN
                       ('report_digests', 'report_members', 'report_tier_changes',
                        'report_totals', 'report_state')) <> 5
                 THEN RAISE EXCEPTION 'the report tables are not all unlogged'; END IF;
             END $$",
        );
        let (ada, bob) = (enrol(&mut one.till, "Ada"), enrol(&mut one.till, "Bob"));
        one.till
            .store
            .earn(ada, 20_000, "ann", now())
            .expect("earn");
        one.till.store.earn(bob, 800, "ann", now()).expect("earn");
        one.till.sync().expect("sync");
        let measures = |db: &str| -> serde_json::Value {
            let report: serde_json::Value =
                serde_json::from_str(&admin_output(db, &["report", "--json"])).expect("json");
            report["measures"].clone()
        };
        let before = measures(&one.db);

        tamper(&one.db, CRASH_RECOVERY);
        assert_eq!(measures(&one.db), before);
        records_agree(&one.db, 2);

        tamper(&one.db, CRASH_RECOVERY);
        one.till
            .store
            .earn(bob, 20_000, "ann", now())
            .expect("earn");
        one.till.sync().expect("sync");
        admin_output(&one.db, &["report", "--json"]);
        records_agree(&one.db, 2);
    }

    #[test]
    fn sqlite_a_later_tier_move() {
        a_later_tier_move_is_stored(Backend::Sqlite);
    }

    #[test]
    fn postgres_a_later_tier_move() {
        a_later_tier_move_is_stored(Backend::Postgres);
    }

    /// A member with a stored record buys again, first without moving tier (the digest and the
    /// last purchase change, the tier changes do not), then enough to reach Silver: each
    /// catch-up stores what changed, and `verify` finds the record, its tier changes and the
    /// totals as the entries say.
    fn a_later_tier_move_is_stored(backend: Backend) {
        let Some(mut one) = one_till(backend) else {
            return;
        };
        let ada = enrol(&mut one.till, "Ada");
        for amount in [500, 700, 20_000] {
            one.till
                .store
                .earn(ada, amount, "ann", now())
                .expect("earn");
            one.till.sync().expect("sync");
            admin_output(&one.db, &["report", "--json"]);
            records_agree(&one.db, 1);
        }
    }

    #[test]
    fn sqlite_catch_up_in_chunks() {
        a_catch_up_in_chunks_agrees(Backend::Sqlite);
    }

    #[test]
    fn postgres_catch_up_in_chunks() {
        a_catch_up_in_chunks_agrees(Backend::Postgres);
    }

    /// 2,500 imported members reach the server in one push: a catch-up over more members
    /// than one chunk (written while the next is made). The records and totals agree with the
    /// ledger, and the chain report with the till's.
    fn a_catch_up_in_chunks_agrees(backend: Backend) {
        let Some(mut one) = one_till(backend) else {
            return;
        };
        let csv: String = std::iter::once("name,balance,joined\n".to_owned())
            .chain(
                (0..2_500)
                    .map(|i| format!("Member {i},{},2026-0{}-1{}\n", i % 700, 1 + i % 9, i % 10)),
            )
            .collect();
        let parsed = tillpass::domain::import::read(csv.as_bytes()).expect("read");
        let imported = one
            .till
            .store
            .import_members(&parsed, "import", now(), false, &mut |_| {})
            .expect("import");
        assert_eq!(imported.members, 2_500);
        one.till.sync().expect("sync");

        let chain: serde_json::Value =
            serde_json::from_str(&admin_output(&one.db, &["report", "--json"])).expect("json");
        let (from, to) = tillpass::domain::insights::last_days(now(), 90);
        let mine = one.till.store.insights(from, to).expect("till report");
        for m in &mine.measures {
            let theirs = chain["measures"]
                .as_array()
                .expect("measures")
                .iter()
                .find(|c| c["key"] == m.key)
                .unwrap_or_else(|| panic!("{} missing", m.key));
            assert_eq!(theirs["value"].as_f64(), m.value, "{}", m.key);
        }
        records_agree(&one.db, 2_500);
    }

    /// Two tills sell, reverse, redeem, record a sale without a member and recommend answers,
    /// and sync; the server's chain report (over HTTP and from its command line) has every
    /// till's numbers.
    fn the_server_reports_what_every_till_reports(backend: Backend) {
        let dir = TempDb::new();
        let Some(db) = database(backend, dir.dir.path()) else {
            return;
        };
        let tokens = add_terminals(&db, 2);
        let server = Server::start(&db);
        let mut a = Till::join(&server.url, &tokens[0]);
        let mut b = Till::join(&server.url, &tokens[1]);
        let at = now();
        let enrol = |till: &mut Till, name: &str| {
            let input = MemberInput {
                name: name.into(),
                email: Some(format!("{}@example.com", name.to_lowercase())),
                marketing_consent: true,
                ..Default::default()
            };
            till.store
                .add_member(input, "test", at)
                .expect("enrol")
                .member
                .id
        };
        let ada = enrol(&mut a, "Ada");
        let bob = enrol(&mut b, "Bob");
        a.store.earn(ada, 1250, "ann", at).expect("earn");
        let wrong = a.store.earn(ada, 900, "ann", at).expect("earn");
        a.store.reverse(wrong.id, "ann", at).expect("reverse");
        // Three weeks ago: past the 14-day return window, so spendable now.
        b.store
            .earn(bob, 3000, "ben", at.plus_days(-21))
            .expect("earn");
        b.store.redeem(bob, "pastry", "ben", at).expect("redeem");
        let guest = a
            .store
            .record_guest_sale(450, "ann", at)
            .expect("guest sale");
        a.store
            .record_nps(3, tillpass::store::Answerer::Guest(Some(guest)), at)
            .expect("answer");
        b.store
            .record_nps(10, tillpass::store::Answerer::Member(bob), at)
            .expect("answer");
        // Sales without a member undone: one before it was pushed, one after; a till cannot
        // undo another till's sale; a void the server gets before its sale holds it off.
        let typo = a.store.record_guest_sale(7000, "ann", at).expect("sale");
        a.store.void_guest_sale(typo, "ann", at).expect("void");
        let twice = b.store.record_guest_sale(300, "ben", at).expect("sale");
        a.sync().expect("sync");
        b.sync().expect("sync");
        let push = |till: &Till, request: PushRequest| {
            tillpass::sync::client_for(&till.store)
                .expect("client")
                .push(&request)
                .expect("push")
        };
        let void = |sale| GuestSaleVoid {
            sale,
            occurred_at: at,
        };
        push(
            &a,
            PushRequest {
                voids: vec![void(twice)],
                ..PushRequest::default()
            },
        );
        b.store.void_guest_sale(twice, "ben", at).expect("void");
        assert!(matches!(
            b.store.void_guest_sale(twice, "ben", at),
            Err(tillpass::store::StoreError::GuestSaleVoided)
        ));
        let early = uuid::Uuid::now_v7();
        push(
            &b,
            PushRequest {
                voids: vec![void(early)],
                ..PushRequest::default()
            },
        );
        push(
            &b,
            PushRequest {
                guest_sales: vec![GuestSale {
                    id: early,
                    occurred_at: at,
                    amount_minor: 800,
                }],
                ..PushRequest::default()
            },
        );
        a.sync().expect("sync");
        b.sync().expect("sync");
        a.sync().expect("sync");
        assert!(
            eventually(|| report_records_current(&db)),
            "the server made the report's records after the pushes, before any report asked"
        );

        let (from, to) = tillpass::domain::insights::last_days(at, 90);
        let till = a.store.insights(from, to).expect("till report");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let day = |t: tillpass::domain::Timestamp| t.date().to_string();
        let over_http: serde_json::Value = {
            let response = reqwest::blocking::Client::new()
                .get(format!(
                    "{}/v1/report?from={}&to={}",
                    server.url,
                    day(from),
                    day(to)
                ))
                .bearer_auth(&tokens[1])
                .header(TERMINAL_HEADER, &b.store.terminal_id().0)
                .send()
                .expect("report");
            assert_eq!(response.status().as_u16(), 200);
            response.json().expect("json")
        };
        let chain = |key: &str| {
            over_http["measures"]
                .as_array()
                .expect("measures")
                .iter()
                .find(|m| m["key"] == key)
                .unwrap_or_else(|| panic!("{key} missing"))["value"]
                .as_f64()
        };
        // Every measure as the till has it, but the recommend score: each till holds only its
        // own answers, the chain both.
        for m in till.measures.iter().filter(|m| m.key != "nps") {
            assert_eq!(chain(m.key), m.value, "{}", m.key);
        }
        assert_eq!(
            chain("guest_orders"),
            Some(1.0),
            "the guest sale reached the server, and only it of the four"
        );
        assert_eq!(chain("aov_guests"), Some(450.0));
        assert_eq!(till.get("nps").and_then(|m| m.value), Some(-100.0));
        assert_eq!(chain("nps"), Some(0.0), "one promoter and one detractor");
        assert_eq!(chain("member_orders"), Some(2.0));
        assert_eq!(
            over_http["cohorts"],
            serde_json::to_value(&till.cohorts).expect("json")
        );
        let cli: serde_json::Value = serde_json::from_str(&admin_output(
            &db,
            &["report", "--from", &day(from), "--to", &day(to), "--json"],
        ))
        .expect("json");
        assert_eq!(cli, over_http);

        // Without a till's token: refused.
        let anonymous = reqwest::blocking::get(format!("{}/v1/report", server.url)).expect("send");
        assert_eq!(anonymous.status().as_u16(), 401);

        // `verify`, while the server runs: every balance, record and total agrees.
        let verified: serde_json::Value =
            serde_json::from_str(&admin_output(&db, &["verify", "--json"])).expect("json");
        assert_eq!(verified["members"], 2);
        assert_eq!(
            verified["entries"], 7,
            "five above and each member's welcome bonus"
        );
        assert_eq!(verified["records_checked"], 2, "{verified}");
        assert_eq!(verified["balances_wrong"], 0, "{verified}");
        assert_eq!(verified["records_wrong"], 0, "{verified}");
        assert_eq!(verified["totals_wrong"], 0, "{verified}");
        assert_eq!(verified["extras_wrong"], 0, "{verified}");

        // A day's sum, and on SQLite a stored balance, changed behind the server's back: found,
        // and the command fails. PostgreSQL stores no balances: it sums the entries.
        let balances_changed = match backend {
            Backend::Sqlite => {
                tamper(&db, "UPDATE balances SET balance = balance + 7");
                2
            }
            Backend::Postgres => 0,
        };
        tamper(&db, "UPDATE report_totals SET n = n + 1");
        tamper(&db, "UPDATE guest_sales_by_day SET revenue = revenue + 1");
        let out = server_bin()
            .args(["--db", &db, "verify", "--json"])
            .output()
            .expect("run verify");
        assert!(!out.status.success(), "verify fails on drift");
        let verified: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(verified["balances_wrong"], balances_changed, "{verified}");
        assert_eq!(verified["records_wrong"], 0, "{verified}");
        assert!(verified["totals_wrong"].as_u64() > Some(0), "{verified}");
        assert_eq!(
            verified["extras_wrong"], 2,
            "the guest sale's day as kept, and as made from the rows: {verified}"
        );
        let said = |word: &str| {
            verified["problems"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p.as_str().is_some_and(|p| p.contains(word)))
            })
        };
        assert!(said("total") && said("guest_sales_by_day"), "{verified}");
        assert_eq!(said("balance"), balances_changed > 0, "{verified}");
    }
}

#[test]
fn the_digests_count_what_the_ledger_does_and_verify_checks_them() {
    let db = TempDb::new();
    let mut store = db.open();
    autumn(&mut store);
    let autumn_ = (midnight(9, 1), midnight(12, 1));
    let same = |store: &mut Store, (from, to): (Timestamp, Timestamp)| {
        let counted = store.insights(from, to).expect("report");
        assert_eq!(
            counted,
            store.insights_from_ledger(from, to).expect("recomputed")
        );
        counted
    };
    let first = same(&mut store, autumn_);
    // More sales, a partial return and a new member: only their digests are made again.
    let eve = enrol(&mut store, "Eve Lark", None, true, on(11, 21));
    let sale = store.earn(eve, 3000, "ann", on(11, 21)).expect("earn");
    store
        .refund(
            sale.id,
            tillpass::domain::returns::Returned::Amount(1000),
            "ann",
            on(11, 22),
        )
        .expect("return");
    let later = same(&mut store, autumn_);
    assert_ne!(first, later);
    assert_eq!(later.get("member_orders").and_then(|m| m.value), Some(7.0));
    // A period ending before entries the store holds is counted from the ledger.
    same(&mut store, (midnight(9, 1), midnight(10, 3)));
    // A new program (a shorter tier window) makes them all again.
    let toml = store
        .program_toml()
        .expect("program")
        .replace("window_days = 365", "window_days = 30");
    store.set_program(&toml, on(11, 23)).expect("program");
    same(&mut store, autumn_);
    assert!(store.verify(false).expect("verify").is_clean());

    // A digest that is not its member's, and one that does not decode: drift, repaired.
    let ids: Vec<uuid::Uuid> = store
        .connection()
        .prepare("SELECT member_id FROM report_digests ORDER BY member_id")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("ids");
    assert!(ids.len() >= 3, "{ids:?}");
    let c = store.connection();
    c.execute(
        "UPDATE report_digests SET digest = (SELECT digest FROM report_digests WHERE member_id = ?2)
         WHERE member_id = ?1",
        rusqlite::params![ids[0], ids[1]],
    )
    .expect("tamper");
    c.execute(
        "UPDATE report_digests SET digest = X'FFFFFFFF' WHERE member_id = ?1",
        rusqlite::params![ids[2]],
    )
    .expect("tamper");
    let found = store.verify(false).expect("verify");
    let drifted: Vec<uuid::Uuid> = found
        .drift
        .iter()
        .filter_map(|d| match d {
            tillpass::store::Drift::Digest { member, .. } => Some(member.0),
            _ => None,
        })
        .collect();
    assert_eq!(drifted, vec![ids[0], ids[2]]);
    assert_eq!(store.verify(true).expect("repair").repaired, 2);
    assert!(store.verify(false).expect("verify").is_clean());
    same(&mut store, autumn_);

    // A member who bought once in September, at risk by December: erased, their consent goes
    // with them, and the report counts them again without it.
    let fay = enrol(&mut store, "Fay Moss", None, true, on(9, 2));
    store.earn(fay, 900, "ann", on(9, 3)).expect("earn");
    let consent = |r: &tillpass::domain::insights::Report| {
        r.at_risk
            .iter()
            .find(|a| a.member == fay)
            .map(|a| a.marketing_consent)
    };
    assert_eq!(consent(&same(&mut store, autumn_)), Some(true));
    store.erase_member(fay, on(11, 24)).expect("erase");
    assert_eq!(consent(&same(&mut store, autumn_)), Some(false));

    // Totals that are not what the members add up to, and a member's record with the wrong
    // consent: drift, repaired.
    let c = store.connection();
    c.execute("UPDATE report_totals SET n = n + 1 WHERE sum = 1", [])
        .expect("tamper");
    c.execute(
        "UPDATE report_members SET consent = 1 - consent WHERE member_id = ?1",
        rusqlite::params![ids[1]],
    )
    .expect("tamper");
    let found = store.verify(false).expect("verify");
    assert!(
        found
            .drift
            .iter()
            .any(|d| matches!(d, tillpass::store::Drift::Totals { sums } if *sums > 0)),
        "{found:?}"
    );
    assert!(
        found.drift.iter().any(
            |d| matches!(d, tillpass::store::Drift::Digest { member, .. } if member.0 == ids[1])
        ),
        "{found:?}"
    );
    assert_eq!(store.verify(true).expect("repair").repaired, 2);
    assert!(store.verify(false).expect("verify").is_clean());
    same(&mut store, autumn_);

    // A member enrolled without an entry (a program without a welcome bonus): counted as
    // enrolled, no entry having brought them.
    let toml = store
        .program_toml()
        .expect("program")
        .replace("welcome = 100", "welcome = 0");
    store.set_program(&toml, on(11, 25)).expect("program");
    let before = same(&mut store, autumn_);
    let hal = enrol(&mut store, "Hal Yew", None, false, on(11, 25));
    assert!(store.history(hal, 10).expect("history").is_empty());
    let after = same(&mut store, autumn_);
    let new_members = |r: &tillpass::domain::insights::Report| {
        r.get("new_members").and_then(|m| m.value).unwrap_or(0.0)
    };
    assert_eq!(new_members(&after), new_members(&before) + 1.0);

    // A member enrolled after the period: it is counted from the ledger, and agrees.
    enrol(&mut store, "Gus Reed", None, true, on(12, 5));
    same(&mut store, autumn_);
}

#[test]
fn an_entry_leaving_the_ledger_leaves_its_members_digest_and_its_number_is_counted_again() {
    let db = TempDb::new();
    let mut store = db.open();
    let ada = enrol(&mut store, "Ada Byron", None, true, on(9, 2));
    let bob = enrol(&mut store, "Bob Stone", None, true, on(9, 3));
    store.earn(ada, 1000, "ann", on(9, 4)).expect("earn");
    let last = store.earn(ada, 2500, "ann", on(9, 5)).expect("earn");
    let autumn_ = (midnight(9, 1), midnight(12, 1));
    store
        .insights(autumn_.0, autumn_.1)
        .expect("the digests are made");
    // The one delete the ledger allows (the set-aside): this till's unpushed entry, kept in
    // the quarantine first. It had the highest arrival number, which the next entry takes.
    let c = store.connection();
    let record = format!("entry:{}", last.id);
    c.execute(
        "INSERT INTO quarantine (record, kind, body, reason, at) VALUES (?1, 'entry', '{}', 'test', 0)",
        rusqlite::params![record],
    )
    .expect("quarantine");
    let seq: i64 = c
        .query_row(
            "SELECT seq FROM ledger WHERE id = ?1",
            rusqlite::params![last.id.0],
            |r| r.get(0),
        )
        .expect("seq");
    c.execute(
        "DELETE FROM ledger WHERE id = ?1",
        rusqlite::params![last.id.0],
    )
    .expect("the set-aside");
    // As the set-aside leaves it: this till's numbers gapless (the next sale takes the same).
    c.execute("UPDATE terminal SET last_seq = last_seq - 1", [])
        .expect("renumber");
    let next = store.earn(bob, 700, "ann", on(9, 6)).expect("earn");
    let taken: i64 = store
        .connection()
        .query_row(
            "SELECT seq FROM ledger WHERE id = ?1",
            rusqlite::params![next.id.0],
            |r| r.get(0),
        )
        .expect("seq");
    assert_eq!(taken, seq, "the number given again");
    let counted = store.insights(autumn_.0, autumn_.1).expect("report");
    assert_eq!(
        counted,
        store
            .insights_from_ledger(autumn_.0, autumn_.1)
            .expect("recomputed")
    );
    assert_eq!(
        counted.get("member_orders").and_then(|m| m.value),
        Some(2.0)
    );
    let digests_drift = store
        .verify(false)
        .expect("verify")
        .drift
        .into_iter()
        .filter(|d| matches!(d, tillpass::store::Drift::Digest { .. }))
        .count();
    assert_eq!(digests_drift, 0);
}

#[test]
fn a_record_that_does_not_decode_is_made_again_with_every_other_when_its_member_buys() {
    let db = TempDb::new();
    let mut store = db.open();
    autumn(&mut store);
    let autumn_ = (midnight(9, 1), midnight(12, 1));
    store
        .insights(autumn_.0, autumn_.1)
        .expect("the records are made");
    let id: uuid::Uuid = store
        .connection()
        .query_row(
            "SELECT member_id FROM report_digests ORDER BY member_id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("a digest");
    store
        .connection()
        .execute(
            "UPDATE report_digests SET digest = X'FFFFFFFF' WHERE member_id = ?1",
            rusqlite::params![id],
        )
        .expect("tamper");
    // Its old sums cannot be taken off the totals: every record is made again instead.
    store
        .earn(MemberId(id), 500, "ann", on(11, 26))
        .expect("earn");
    let counted = store.insights(autumn_.0, autumn_.1).expect("report");
    assert_eq!(
        counted,
        store
            .insights_from_ledger(autumn_.0, autumn_.1)
            .expect("recomputed")
    );
    assert!(store.verify(false).expect("verify").is_clean());
}
