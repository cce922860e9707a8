//! The store on a real SQLite file: durability across reopen, immutability, idempotency.

mod common;

use common::{NOW, TempDb, enrol};
use tillpass::domain::{Entry, EntryId, EntryKind, MemberInput, TerminalId};
use tillpass::store::{InsertOutcome, StoreError};

#[test]
fn reopen_after_drop_keeps_everything() {
    let db = TempDb::new();
    let (card, member, terminal, balance) = {
        let mut store = db.open();
        let view = enrol(&mut store, "Grace Hopper");
        store.earn(view.member.id, 1250, "ann", NOW).expect("earn");
        store
            .earn(view.member.id, 899, "ann", NOW.plus_millis(1))
            .expect("earn");
        let state = store.member(view.member.id).expect("member").state;
        (
            view.member.card,
            view.member.id,
            store.terminal_id().clone(),
            state.balance,
        )
    };
    let mut store = db.open();
    assert_eq!(store.terminal_id(), &terminal, "terminal identity survives");
    let view = store.member_by_card(&card).expect("lookup").expect("found");
    assert_eq!(view.member.id, member);
    assert_eq!(view.state.balance, balance);
    assert_eq!(balance, 100 + 125 + 89);
    assert_eq!(store.history(member, 10).expect("history").len(), 3);
    // Sequence continues where it stopped: gapless across restarts.
    let next = store
        .earn(member, 100, "ann", NOW.plus_millis(2))
        .expect("earn");
    assert_eq!(next.terminal_seq, 4);
    assert!(store.verify(false).expect("verify").is_clean());
}

#[test]
fn ledger_refuses_update_and_delete() {
    let db = TempDb::new();
    let mut store = db.open();
    let view = enrol(&mut store, "Alan Turing");
    store.earn(view.member.id, 1000, "ann", NOW).expect("earn");
    let conn = store.connection();
    for sql in [
        "UPDATE ledger SET points = points + 1000",
        "UPDATE ledger SET note = 'edited'",
        "DELETE FROM ledger",
    ] {
        let err = conn.execute(sql, []).expect_err(sql);
        assert!(err.to_string().contains("immutable"), "{sql}: {err}");
    }
    let sum: i64 = conn
        .query_row("SELECT SUM(points) FROM ledger", [], |r| r.get(0))
        .expect("sum");
    assert_eq!(sum, 200);
}

fn foreign_entry(member: tillpass::domain::MemberId, seq: i64, points: i64) -> Entry {
    Entry {
        id: EntryId(uuid::Uuid::now_v7()),
        terminal_id: TerminalId("till-elsewhere".into()),
        terminal_seq: seq,
        member_id: member,
        kind: EntryKind::Adjust,
        points,
        amount_minor: None,
        currency: None,
        reward_id: None,
        reverses: None,
        occurred_at: NOW,
        note: Some("goodwill".into()),
        actor: "manager".into(),
        lines: Vec::new(),
        stamps: Default::default(),
        returns: None,
    }
}

#[test]
fn reinserting_an_entry_id_changes_nothing() {
    let db = TempDb::new();
    let mut store = db.open();
    let view = enrol(&mut store, "Ada Lovelace");
    let e = foreign_entry(view.member.id, 1, 40);
    assert_eq!(
        store
            .insert_entries(std::slice::from_ref(&e))
            .expect("insert"),
        vec![InsertOutcome::Inserted]
    );
    for _ in 0..3 {
        let again = store
            .insert_entries(std::slice::from_ref(&e))
            .expect("replay");
        assert_eq!(again, vec![InsertOutcome::AlreadyPresent]);
    }
    // Our own entries replayed (e.g. echoed back by a server) are no-ops too.
    let own = store.earn(view.member.id, 500, "ann", NOW).expect("earn");
    assert_eq!(
        store
            .insert_entries(std::slice::from_ref(&own))
            .expect("replay own"),
        vec![InsertOutcome::AlreadyPresent]
    );
    let state = store.member(view.member.id).expect("member").state;
    assert_eq!(state.balance, 100 + 40 + 50);
    assert_eq!(state.entry_count, 3);

    // The same id with different content is a conflict, and nothing is written.
    let mut changed = e.clone();
    changed.points = 4000;
    let fresh = foreign_entry(view.member.id, 2, 5);
    let err = store
        .insert_entries(&[fresh, changed])
        .expect_err("conflict");
    assert!(
        matches!(err, StoreError::IdConflict(id) if id == e.id),
        "{err}"
    );
    assert_eq!(
        store.member(view.member.id).expect("member").state.balance,
        190
    );
    assert!(store.verify(false).expect("verify").is_clean());
}

#[test]
fn reversal_rules_hold_in_the_store() {
    let db = TempDb::new();
    let mut store = db.open();
    let view = enrol(&mut store, "Katherine Johnson");
    let earned = store.earn(view.member.id, 2000, "ann", NOW).expect("earn");
    let rev = store
        .reverse(earned.id, "boss", NOW.plus_millis(5))
        .expect("reverse");
    assert_eq!(rev.points, -earned.points);
    assert_eq!(rev.amount_minor, Some(-2000));
    assert!(matches!(
        store.reverse(earned.id, "boss", NOW),
        Err(StoreError::Refused(
            tillpass::domain::Refusal::AlreadyReversed
        ))
    ));
    assert!(matches!(
        store.reverse(rev.id, "boss", NOW),
        Err(StoreError::Refused(
            tillpass::domain::Refusal::ReversalOfReversal
        ))
    ));
    // A forged reversal from elsewhere that does not exactly negate is refused.
    let other = store.earn(view.member.id, 1000, "ann", NOW).expect("earn");
    let mut forged = foreign_entry(view.member.id, 1, -1);
    forged.kind = EntryKind::Reverse;
    forged.note = None;
    forged.reverses = Some(other.id);
    assert!(matches!(
        store.insert_entries(&[forged]),
        Err(StoreError::BadEntry { .. })
    ));
    assert_eq!(
        store.member(view.member.id).expect("m").state.balance,
        100 + 100
    );
    assert!(store.verify(false).expect("verify").is_clean());
}

#[test]
fn refusals_write_nothing() {
    let db = TempDb::new();
    let mut store = db.open();
    let view = enrol(&mut store, "Hedy Lamarr");
    let before = store.stats().expect("stats").entries;
    assert!(store.redeem(view.member.id, "coffee", "ann", NOW).is_err());
    assert!(
        store
            .redeem(view.member.id, "beans-250g", "ann", NOW)
            .is_err()
    );
    assert!(store.redeem(view.member.id, "no-such", "ann", NOW).is_err());
    assert!(store.earn(view.member.id, 0, "ann", NOW).is_err());
    assert!(store.earn(view.member.id, -100, "ann", NOW).is_err());
    assert!(store.earn(view.member.id, 100_000_000, "ann", NOW).is_err());
    assert!(store.adjust(view.member.id, 10, "  ", "ann", NOW).is_err());
    assert_eq!(store.stats().expect("stats").entries, before);
    // The failed attempts did not consume sequence numbers either.
    let e = store.earn(view.member.id, 100, "ann", NOW).expect("earn");
    assert_eq!(e.terminal_seq, 2);
}

#[test]
fn offline_redemption_limit_applies_per_rolling_day() {
    let db = TempDb::new();
    let mut store = db.open();
    let view = enrol(&mut store, "Rosalind Franklin");
    store
        .adjust(view.member.id, 10_000, "test float", "boss", NOW)
        .expect("adjust");
    for i in 0..4 {
        store
            .redeem(view.member.id, "coffee", "ann", NOW.plus_millis(i))
            .expect("within limit");
    }
    let err = store
        .redeem(view.member.id, "coffee", "ann", NOW.plus_millis(10))
        .expect_err("over limit");
    assert!(
        err.to_string().contains("offline redemption limit"),
        "{err}"
    );
    let next_day = NOW.plus_days(1).plus_millis(10);
    store
        .redeem(view.member.id, "coffee", "ann", next_day)
        .expect("a day later");
}

#[test]
fn members_are_found_by_card_phone_email_and_name() {
    let db = TempDb::new();
    let mut store = db.open();
    let input = MemberInput {
        name: "Mary-Jane Watson".into(),
        phone: Some("07400 555123".into()),
        email: Some("MJ@Example.com".into()),
        ..Default::default()
    };
    let mj = store.add_member(input, "test", NOW).expect("enrol");
    enrol(&mut store, "Mary Shelley");
    enrol(&mut store, "Peter Parker");
    let names = |q: &str| -> Vec<String> {
        store
            .search(q, 10)
            .expect("search")
            .into_iter()
            .map(|h| h.view.member.name)
            .collect()
    };
    assert_eq!(names(mj.member.card.as_str()), vec!["Mary-Jane Watson"]);
    assert_eq!(names(&mj.member.card.grouped()), vec!["Mary-Jane Watson"]);
    assert_eq!(names("+44 7400 555 123"), vec!["Mary-Jane Watson"]);
    assert_eq!(names("mj@example.COM"), vec!["Mary-Jane Watson"]);
    assert_eq!(names("mar"), vec!["Mary Shelley", "Mary-Jane Watson"]);
    assert_eq!(names("jane"), vec!["Mary-Jane Watson"]);
    assert_eq!(names("mary wat"), vec!["Mary-Jane Watson"]);
    assert!(names("zed").is_empty());
    // Phone and email are unique per member.
    let dup = MemberInput {
        name: "Someone".into(),
        phone: Some("+447400555123".into()),
        ..Default::default()
    };
    assert!(matches!(
        store.add_member(dup, "t", NOW),
        Err(StoreError::PhoneTaken { .. })
    ));
}

#[test]
fn bad_program_files_are_refused_with_the_field_named() {
    let db = TempDb::new();
    let demo = tillpass::domain::program::DEMO_PROGRAM_TOML;
    let cases = [
        (
            demo.replace("minor_units = 2", "minor_units = 7"),
            "minor_units",
        ),
        (
            demo.replace("window_days = 365", "window_days = 0"),
            "tiers.window_days",
        ),
        (
            demo.replace("threshold = 5000", "threshold = 999"),
            "tiers.levels[2].threshold",
        ),
        (demo.replace("cost = 300", "cost = -1"), "rewards[0].cost"),
        (
            demo.replace("welcome = 100", "welcome = \"lots\""),
            "bonuses.welcome",
        ),
        (
            demo.replace("inactivity_days = 365", "inactivity_days = 0"),
            "expiry.inactivity_days",
        ),
        ("name = \"x\"\n[[[broken".to_owned(), "(file)"),
    ];
    for (text, field) in cases {
        let err = match tillpass::store::Store::open_with_program(&db.path, &text, NOW) {
            Ok(_) => panic!("accepted a bad program for {field}"),
            Err(e) => e,
        };
        let StoreError::Program(config) = &err else {
            panic!("expected a config error for {field}, got {err}");
        };
        assert_eq!(config.field_name(), field, "{err}");
        assert!(
            err.to_string().contains(field),
            "message names the field: {err}"
        );
    }
    // The refused files left the store on the demo program.
    assert_eq!(db.open().program().name, "Bean & Leaf Rewards");
}

#[test]
fn changing_the_program_rederives_tiers() {
    let db = TempDb::new();
    let mut store = db.open();
    let view = enrol(&mut store, "Emmy Noether");
    store
        .earn(view.member.id, 15_000, "ann", NOW)
        .expect("earn");
    assert_eq!(store.member(view.member.id).expect("m").state.tier, 1);
    let easier = tillpass::domain::program::DEMO_PROGRAM_TOML
        .replace("threshold = 5000", "threshold = 1400");
    store.set_program(&easier, NOW).expect("install");
    assert_eq!(store.member(view.member.id).expect("m").state.tier, 2);
    assert!(store.verify(false).expect("verify").is_clean());
    drop(store);
    assert_eq!(
        db.open().program().tiers[2].threshold,
        1400,
        "the new version persists"
    );
}

#[test]
fn verify_finds_and_repairs_cache_drift() {
    let db = TempDb::new();
    let mut store = db.open();
    let view = enrol(&mut store, "Barbara Liskov");
    store.earn(view.member.id, 1000, "ann", NOW).expect("earn");
    store
        .connection()
        .execute("UPDATE member_state SET balance = balance + 7", [])
        .expect("tamper with the cache");
    let report = store.verify(false).expect("verify");
    assert_eq!(report.drift.len(), 1, "{report:?}");
    let repaired = store.verify(true).expect("repair");
    assert_eq!(repaired.repaired, 1);
    assert!(store.verify(false).expect("verify").is_clean());
    assert_eq!(store.member(view.member.id).expect("m").state.balance, 200);
}

#[test]
fn tier_pages_are_sorted_filtered_and_counted() {
    use tillpass::store::TierSort;
    let db = TempDb::new();
    let mut store = db.open();
    tillpass::demo::seed(&mut store, 600, 11, NOW, |_| {}).expect("demo");
    let total = store.tier_counts().expect("counts")[0];
    assert_eq!(store.tier_member_count(0, "").expect("count"), total);
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let page = store
            .tier_members(0, "", TierSort::Qualifying, true, offset, 50)
            .expect("page");
        if page.is_empty() {
            break;
        }
        offset += page.len();
        seen.extend(page);
    }
    assert_eq!(
        i64::try_from(seen.len()).ok(),
        Some(total),
        "pages cover the tier exactly once"
    );
    assert!(
        seen.windows(2).all(|w| w[0].qualifying >= w[1].qualifying),
        "highest first"
    );
    let by_name = store
        .tier_members(0, "", TierSort::Name, false, 0, 1000)
        .expect("names");
    assert!(by_name.windows(2).all(|w| w[0].name <= w[1].name));
    let smiths = store
        .tier_members(0, "smi", TierSort::Balance, true, 0, 1000)
        .expect("filter");
    assert!(!smiths.is_empty());
    assert!(smiths.iter().all(|r| {
        r.name
            .to_lowercase()
            .split(' ')
            .any(|w| w.starts_with("smi"))
    }));
    assert!(smiths.windows(2).all(|w| w[0].balance >= w[1].balance));
    assert_eq!(
        store.tier_member_count(0, "smi").expect("count"),
        i64::try_from(smiths.len()).unwrap_or(-1)
    );
    // Every word counts: "i smi" is the Smiths with a name starting with i, not every Smith.
    let two_words = store
        .tier_members(0, "i smi", TierSort::Balance, true, 0, 1000)
        .expect("two words");
    let expected: Vec<_> = smiths
        .iter()
        .filter(|r| r.name.to_lowercase().split(' ').any(|w| w.starts_with('i')))
        .map(|r| r.member_id)
        .collect();
    assert!(!expected.is_empty() && expected.len() < smiths.len());
    assert_eq!(
        two_words.iter().map(|r| r.member_id).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(
        store.tier_member_count(0, "i smi").expect("count"),
        i64::try_from(expected.len()).unwrap_or(-1)
    );
    // Separators alone filter nothing (they made a statement with unbound parameters).
    assert_eq!(store.tier_member_count(0, " - ' ").expect("count"), total);
    let card_prefix = &seen[0].card.as_str()[..4];
    let by_card = store
        .tier_members(0, card_prefix, TierSort::Qualifying, true, 0, 1000)
        .expect("card");
    assert!(by_card.iter().any(|r| r.member_id == seen[0].member_id));
    assert!(
        by_card
            .iter()
            .all(|r| r.card.as_str().starts_with(card_prefix))
    );
}

#[test]
fn points_are_pending_through_the_return_window() {
    let db = TempDb::new();
    // The demo program keeps a sale's points pending for 14 days.
    let mut store = db.open();
    let member = enrol(&mut store, "Grace Hopper").member.id;
    let sale = store.earn(member, 5_000, "ann", NOW).expect("earn");
    assert_eq!(sale.points, 500);
    assert_eq!(store.pending_points(member, NOW).expect("pending"), 500);
    // 600 on the balance, but only the welcome bonus's 100 may be spent for 14 days.
    let err = store
        .redeem(member, "coffee", "ann", NOW)
        .expect_err("pending points are not spendable");
    assert!(
        err.to_string()
            .contains("100 are available now and 500 more once their sales' return window"),
        "{err}"
    );
    let err = store
        .donate(member, "food-bank", 200, "ann", NOW)
        .expect_err("nor given away");
    assert!(err.to_string().contains("100 are available now"), "{err}");
    // A return inside the window takes back pending points first.
    store
        .refund(
            sale.id,
            tillpass::domain::returns::Returned::Amount(1_000),
            "ann",
            NOW,
        )
        .expect("return");
    assert_eq!(store.pending_points(member, NOW).expect("pending"), 400);
    let later = NOW.plus_days(14).plus_millis(1);
    assert_eq!(store.pending_points(member, later).expect("pending"), 0);
    store
        .redeem(member, "coffee", "ann", later)
        .expect("spendable once the window has passed");
}

#[test]
fn a_partner_file_is_recorded_whole_or_not_at_all() {
    let db = TempDb::new();
    let mut store = db.open();
    let ada = enrol(&mut store, "Ada Lovelace").member;
    let bad = format!(
        "card,partner,points,reference\n{card},cinema,300,T-100\n{card},cinema,300,T-100\n{card},moon,5,T-2\n",
        card = ada.card.as_str()
    );
    let lines = tillpass::domain::partners::read(store.program(), bad.as_bytes());
    let report = store
        .import_partner_points(&lines, "ann", NOW, false)
        .expect("import");
    let reasons: Vec<String> = report.refused.iter().map(ToString::to_string).collect();
    assert_eq!(
        reasons,
        [
            "line 3: reference T-100 is in the file twice",
            "line 4: \"moon\" is not one of the program's partners",
        ]
    );
    assert!(!report.written);
    assert_eq!(
        store.member(ada.id).expect("member").state.balance,
        100,
        "nothing written"
    );

    let good = format!(
        "card,partner,points,reference\n{card},cinema,300,T-100\n{card},cinema,150,T-101\n",
        card = ada.card.as_str()
    );
    let lines = tillpass::domain::partners::read(store.program(), good.as_bytes());
    let report = store
        .import_partner_points(&lines, "ann", NOW, false)
        .expect("import");
    assert_eq!(
        (report.lines, report.points, report.written),
        (2, 450, true)
    );
    assert_eq!(store.member(ada.id).expect("member").state.balance, 550);
    let again = store
        .import_partner_points(&lines, "ann", NOW, false)
        .expect("import");
    assert_eq!(again.refused.len(), 2, "each line is recorded once");
    assert_eq!(store.member(ada.id).expect("member").state.balance, 550);
}

#[test]
fn a_cancelled_sale_takes_back_the_unused_offer_and_badge_it_unlocked() {
    use tillpass::domain::returns::Returned;
    let db = TempDb::new();
    let mut store = db.open();
    let id = enrol(&mut store, "Grace Hopper").member.id;
    let t0 = NOW.plus_days(-3);
    let visit = |store: &mut tillpass::store::Store, i: i64| {
        store
            .earn(id, 300, "test", t0.plus_millis(i * 60_000))
            .expect("a visit")
    };
    for i in 0..4 {
        visit(&mut store, i);
    }
    let fifth = visit(&mut store, 4);
    let open = |store: &tillpass::store::Store| {
        let offers = store.offers(id, NOW).expect("offers");
        (offers.open.len(), offers.progress)
    };
    assert_eq!(open(&store).0, 1, "the fifth visit unlocks the free pastry");

    // Returned in full: the visit no longer counts, and the unused offer is taken back.
    store
        .refund(
            fifth.id,
            Returned::Amount(300),
            "test",
            t0.plus_millis(5 * 60_000),
        )
        .expect("return");
    assert_eq!(
        open(&store),
        (0, vec![("A free pastry".to_owned(), 4, 5)]),
        "four visits count"
    );
    visit(&mut store, 6);
    assert_eq!(open(&store).0, 1, "the next visit is the fifth");

    // Visits 6 to 10 (the fourth to ninth still counting); the tenth awards "Regular" (+100).
    for i in 7..11 {
        visit(&mut store, i);
    }
    let before = store.summary_at(id, NOW).expect("summary").balance;
    let tenth = visit(&mut store, 11);
    assert_eq!(store.badges(id).expect("badges"), ["regular"]);
    assert_eq!(
        store.summary_at(id, NOW).expect("summary").balance,
        before + 30 + 100
    );
    // Reversing the sale takes back its 30 points and the badge's 100.
    store
        .reverse(tenth.id, "test", t0.plus_millis(12 * 60_000))
        .expect("reverse");
    assert!(store.badges(id).expect("badges").is_empty());
    assert_eq!(store.summary_at(id, NOW).expect("summary").balance, before);

    // A badge whose points were spent stays: the tenth visit again, points spent, then returned.
    let again = visit(&mut store, 13);
    assert_eq!(store.badges(id).expect("badges"), ["regular"]);
    let balance = store.summary_at(id, NOW).expect("summary").balance;
    store
        .adjust(id, -(balance - 50), "spent elsewhere", "test", NOW)
        .expect("spend");
    store
        .refund(again.id, Returned::Amount(300), "test", NOW)
        .expect("return");
    assert_eq!(
        store.badges(id).expect("badges"),
        ["regular"],
        "its points were spent"
    );
    assert_eq!(store.summary_at(id, NOW).expect("summary").balance, 50 - 30);
}
