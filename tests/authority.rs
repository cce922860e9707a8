//! The till's side of the server's authority, on real SQLite files: pulled records no honest
//! till could have written are set aside (the cursor moves on), and a till restored from an
//! older copy of its file takes its entries back and numbers its new ones after them.

mod common;

use std::collections::BTreeSet;

use common::{NOW, TempDb, enrol};
use tillpass::domain::{
    CardNumber, Entry, EntryId, EntryKind, MemberId, MemberRecord, RetiredCard, TerminalId,
};
use tillpass::store::{Outbox, Store};

fn elsewhere(member: MemberId, seq: i64, kind: EntryKind, points: i64) -> Entry {
    Entry {
        id: EntryId(uuid::Uuid::now_v7()),
        terminal_id: TerminalId("till-elsewhere".into()),
        terminal_seq: seq,
        member_id: member,
        kind,
        points,
        amount_minor: None,
        currency: None,
        reward_id: None,
        reverses: None,
        occurred_at: NOW.plus_millis(seq),
        note: None,
        actor: "elsewhere".into(),
        lines: Vec::new(),
        stamps: Default::default(),
        returns: None,
    }
}

fn sale(member: MemberId, seq: i64, points: i64, amount: i64) -> Entry {
    Entry {
        amount_minor: Some(amount),
        currency: Some("GBP".into()),
        ..elsewhere(member, seq, EntryKind::Earn, points)
    }
}

fn reversal_of(original: &Entry, seq: i64, points: i64) -> Entry {
    Entry {
        reverses: Some(original.id),
        amount_minor: original.amount_minor.map(|a| -a),
        currency: original.currency.clone(),
        ..elsewhere(original.member_id, seq, EntryKind::Reverse, points)
    }
}

#[test]
fn impossible_pulled_entries_are_set_aside_and_the_rest_applies() {
    let db = TempDb::new();
    let mut store = db.open();
    let member = enrol(&mut store, "Grace Hopper").member.id;
    let honest = sale(member, 1, 125, 1250);
    let later = sale(member, 2, 50, 500);
    // The attack: a reversal listed before its entry carrying +999,999, and 900,000,000
    // points on a penny. An honest reversal listed before its entry applies.
    let forged = reversal_of(&honest, 3, 999_999);
    let greedy = sale(member, 4, 900_000_000, 1);
    let undo_later = reversal_of(&later, 5, -50);
    let mine = Entry {
        terminal_id: store.terminal_id().clone(),
        ..sale(member, 6, 125, 1250)
    };
    let page = [forged, undo_later, honest, greedy.clone(), later, mine];
    let applied = store
        .apply_pulled(&[], &page, 40, Some("entry:x"), NOW)
        .expect("apply");
    assert_eq!((applied.inserted, applied.quarantined), (3, 3));
    let counters = store.sync_counters().expect("counters");
    assert_eq!(counters.pull_cursor, 40, "the cursor moves on");
    assert_eq!(counters.quarantined, 3);
    let reasons: Vec<String> = store
        .quarantined(10)
        .expect("list")
        .into_iter()
        .map(|q| format!("{} {}", q.record, q.reason))
        .collect();
    let all = reasons.join("\n");
    assert!(all.contains("does not exactly negate"), "{all}");
    assert!(
        all.contains(&format!("entry:{} earns 900000000", greedy.id)),
        "{all}"
    );
    assert!(all.contains("claims to come from this till"), "{all}");
    store.refresh_stale().expect("refresh");
    assert_eq!(
        store.member(member).expect("member").state.balance,
        100 + 125,
        "welcome bonus and the honest sale; the other sale was reversed"
    );
    assert!(store.verify(false).expect("verify").is_clean());

    // Retried, they are still impossible: nothing changes.
    assert_eq!(store.retry_quarantine(NOW).expect("retry"), 0);
    assert_eq!(store.quarantine_count().expect("count"), 3);
}

/// A catch-up steps aside for a sale between chunks of a page, committing the entries so
/// far without the cursor; after a crash there the page comes again, and what is already
/// here is taken as present: nothing doubles, nothing is lost, the same entries are refused.
#[test]
fn a_page_partly_committed_before_a_crash_applies_again_without_doubling() {
    let db = TempDb::new();
    let mut store = db.open();
    let member = enrol(&mut store, "Grace Hopper").member.id;
    let first = sale(member, 1, 125, 1250);
    let second = sale(member, 2, 50, 500);
    let undo_first = reversal_of(&first, 3, -125);
    let greedy = sale(member, 4, 900_000_000, 1);
    let page = [first.clone(), second, undo_first, greedy];
    let committed = store
        .apply_pulled(&[], std::slice::from_ref(&first), 0, None, NOW)
        .expect("the part committed before the crash");
    assert_eq!(committed.inserted, 1);
    assert_eq!(store.sync_counters().expect("counters").pull_cursor, 0);
    let again = store
        .apply_pulled(&[], &page, 40, Some("entry:x"), NOW)
        .expect("the page again");
    assert_eq!((again.inserted, again.quarantined), (2, 1));
    store.refresh_stale().expect("refresh");
    assert_eq!(
        store.member(member).expect("member").state.balance,
        100 + 50
    );
    assert_eq!(store.history(member, 10).expect("history").len(), 4);
    assert!(store.verify(false).expect("verify").is_clean());
}

#[test]
fn a_member_record_this_till_cannot_take_is_set_aside() {
    let db = TempDb::new();
    let mut store = db.open();
    let here = enrol(&mut store, "Ada Lovelace");
    let other = MemberRecord {
        member: tillpass::domain::Member {
            id: MemberId(uuid::Uuid::now_v7()),
            name: "Someone Else".into(),
            ..here.member.clone()
        },
        version: NOW.millis(),
        retired_cards: vec![],
        erased_at: None,
        referred_by: None,
    };
    let applied = store
        .apply_pulled(std::slice::from_ref(&other), &[], 3, None, NOW)
        .expect("apply");
    assert_eq!(applied.quarantined, 1, "the card belongs to a member here");
    let listed = store.quarantined(5).expect("list");
    assert!(
        listed[0]
            .record
            .starts_with(&format!("member:{}", other.member.id)),
        "{listed:?}"
    );
    assert_eq!(store.sync_counters().expect("counters").pull_cursor, 3);

    // A record no till writes: the member's own card retired.
    let card = CardNumber::from_payload(4_242);
    let own_card_retired = MemberRecord {
        member: tillpass::domain::Member {
            id: MemberId(uuid::Uuid::now_v7()),
            card: card.clone(),
            name: "Retired Card".into(),
            ..here.member.clone()
        },
        version: NOW.millis(),
        retired_cards: vec![RetiredCard {
            card: card.clone(),
            retired_at: NOW,
            replaced_by: card,
        }],
        erased_at: None,
        referred_by: None,
    };
    let applied = store
        .apply_pulled(std::slice::from_ref(&own_card_retired), &[], 4, None, NOW)
        .expect("apply");
    assert_eq!(applied.quarantined, 1);
    let listed = store.quarantined(5).expect("list");
    assert!(
        listed.iter().any(
            |q| q.record.contains(&own_card_retired.member.id.to_string())
                && q.reason.contains("retired yet in use")
        ),
        "{listed:?}"
    );
    assert!(
        store.member(own_card_retired.member.id).is_err(),
        "not applied"
    );
}

/// Member records go in runs, each in one savepoint: a record this till cannot take in the
/// middle of a run sets aside that record alone; those before and after it are applied.
#[test]
fn a_bad_member_record_amid_good_ones_sets_aside_that_one_alone() {
    let db = TempDb::new();
    let mut store = db.open();
    let here = enrol(&mut store, "Ada Lovelace");
    let record = |name: &str, card: CardNumber| MemberRecord {
        member: tillpass::domain::Member {
            id: MemberId(uuid::Uuid::now_v7()),
            card,
            name: name.into(),
            phone: None,
            email: None,
            ..here.member.clone()
        },
        version: NOW.millis(),
        retired_cards: vec![],
        erased_at: None,
        referred_by: None,
    };
    let before = record("Before", CardNumber::from_payload(5_001));
    let clash = record("Clash", here.member.card.clone());
    let after = record("After", CardNumber::from_payload(5_002));
    let applied = store
        .apply_pulled(
            &[before.clone(), clash.clone(), after.clone()],
            &[],
            3,
            None,
            NOW,
        )
        .expect("apply");
    assert_eq!(applied.quarantined, 1, "the card belongs to a member here");
    for good in [&before, &after] {
        assert_eq!(
            store.member(good.member.id).expect("applied").member.name,
            good.member.name
        );
    }
    assert!(store.member(clash.member.id).is_err(), "not applied");
    let listed = store.quarantined(5).expect("list");
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0]
            .record
            .starts_with(&format!("member:{}", clash.member.id)),
        "{listed:?}"
    );
    assert!(store.verify(false).expect("verify").is_clean());
}

/// Pretends the server acknowledged everything this till has written so far.
fn mark_all_pushed(store: &mut Store) -> Vec<Entry> {
    let outbox = store.outbox(1000, 10_000).expect("outbox");
    store.mark_pushed(&outbox).expect("mark");
    outbox.entries
}

fn own_sequence(store: &Store) -> Vec<i64> {
    let mut stmt = store
        .connection()
        .prepare("SELECT terminal_seq FROM ledger WHERE terminal_id = ?1 ORDER BY terminal_seq")
        .expect("prepare");
    stmt.query_map([&store.terminal_id().0], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn a_till_restored_from_an_older_copy_takes_back_its_entries_and_renumbers_new_ones() {
    let db = TempDb::new();
    let backup = db.dir.path().join("backup.sqlite3");
    let member;
    {
        let mut store = db.open();
        member = enrol(&mut store, "Katherine Johnson").member.id;
        store.earn(member, 1000, "ann", NOW).expect("earn");
        mark_all_pushed(&mut store);
    }
    std::fs::copy(&db.path, &backup).expect("back up the file");
    let lost: Vec<Entry> = {
        let mut store = db.open();
        store.earn(member, 2000, "ann", NOW).expect("earn");
        store.earn(member, 3000, "ann", NOW).expect("earn");
        let outbox = store.outbox(1000, 10_000).expect("outbox");
        store.mark_pushed(&outbox).expect("the server has them");
        outbox.entries
    };
    assert_eq!(
        lost.iter().map(|e| e.terminal_seq).collect::<Vec<_>>(),
        vec![3, 4]
    );
    std::fs::copy(&backup, &db.path).expect("restore the older copy");
    let mut store = db.open();
    // Sales after the restore reuse numbers 3 and 4 with new ids.
    for amount in [400, 500, 600] {
        store.earn(member, amount, "ann", NOW).expect("earn");
    }
    assert_eq!(own_sequence(&store), vec![1, 2, 3, 4, 5]);

    let adopted = store.adopt_own(&[], &lost, 4, NOW).expect("adopt");
    assert_eq!((adopted.recovered, adopted.renumbered), (2, 3));
    assert_eq!(own_sequence(&store), (1..=7).collect::<Vec<_>>(), "gapless");
    let counters = store.sync_counters().expect("counters");
    assert_eq!(counters.pushed_seq, 4);
    assert_eq!(
        counters.waiting_entries, 3,
        "the new sales wait to be pushed"
    );
    let outbox: Outbox = store.outbox(1000, 10_000).expect("outbox");
    assert_eq!(
        outbox.entries.iter().map(|e| e.points).collect::<Vec<_>>(),
        vec![40, 50, 60],
        "in the order they were made"
    );
    assert_eq!(
        store.member(member).expect("member").state.balance,
        100 + 100 + 200 + 300 + 40 + 50 + 60,
        "nothing lost, nothing doubled"
    );
    assert!(store.verify(false).expect("verify").is_clean());
    // The next sale continues after them.
    let next = store.earn(member, 100, "ann", NOW).expect("earn");
    assert_eq!(next.terminal_seq, 8);

    // A pushed entry may never be renumbered, nor anything else of a row changed.
    let conn = store.connection();
    for sql in [
        "UPDATE ledger SET terminal_seq = terminal_seq + 100 WHERE terminal_seq <= 4",
        "UPDATE ledger SET points = points + 1 WHERE terminal_seq = 8",
    ] {
        let err = conn.execute(sql, []).expect_err(sql);
        assert!(err.to_string().contains("immutable"), "{sql}: {err}");
    }
}

#[test]
fn a_second_reversal_made_after_a_restore_is_set_aside_when_the_first_comes_back() {
    let db = TempDb::new();
    let backup = db.dir.path().join("backup.sqlite3");
    let (member, sale) = {
        let mut store = db.open();
        let member = enrol(&mut store, "Mary Jackson").member.id;
        let sale = store.earn(member, 1000, "ann", NOW).expect("earn");
        mark_all_pushed(&mut store);
        (member, sale)
    };
    std::fs::copy(&db.path, &backup).expect("back up the file");
    let first = {
        let mut store = db.open();
        let first = store.reverse(sale.id, "ann", NOW).expect("reverse");
        mark_all_pushed(&mut store);
        first
    };
    std::fs::copy(&backup, &db.path).expect("restore the older copy");
    let mut store = db.open();
    // The copy does not know the sale was reversed: the cashier reverses it again, then sells.
    let second = store.reverse(sale.id, "ann", NOW).expect("reverse again");
    store.earn(member, 700, "ann", NOW).expect("earn");
    assert_eq!(own_sequence(&store), vec![1, 2, 3, 4]);

    let adopted = store
        .adopt_own(&[], std::slice::from_ref(&first), 3, NOW)
        .expect("adopt");
    assert_eq!(
        (adopted.recovered, adopted.renumbered, adopted.set_aside),
        (1, 0, 1),
        "the server's reversal takes number 3 from the second, and the sale keeps 4"
    );
    let held: Vec<EntryId> = store
        .history(member, 100)
        .expect("history")
        .iter()
        .map(|e| e.id)
        .collect();
    assert!(
        held.contains(&first.id) && !held.contains(&second.id),
        "the server's reversal stands; the second left the ledger"
    );
    let aside = store.quarantined(10).expect("quarantine");
    assert_eq!(aside.len(), 1);
    assert_eq!(aside[0].record, format!("entry:{}", second.id));
    assert!(
        aside[0].reason.contains(&first.id.to_string()) && aside[0].reason.contains("never pushed"),
        "{}",
        aside[0].reason
    );
    assert_eq!(own_sequence(&store), vec![1, 2, 3, 4], "gapless");
    let outbox = store.outbox(1000, 10_000).expect("outbox");
    assert_eq!(
        outbox.entries.iter().map(|e| e.points).collect::<Vec<_>>(),
        vec![70],
        "only the sale waits to be pushed"
    );
    assert_eq!(
        store.member(member).expect("member").state.balance,
        100 + 100 - 100 + 70
    );
    assert!(store.verify(false).expect("verify").is_clean());
    let err = store
        .reverse(sale.id, "ann", NOW)
        .expect_err("reversed already");
    assert!(err.to_string().contains("reversed"), "{err}");

    // A program update retries pulled records; this till's own entry stays, reason and all.
    store.retry_quarantine(NOW).expect("retry");
    assert_eq!(store.quarantined(10).expect("quarantine"), aside);

    // Nothing else may leave the ledger: not an unpushed entry outside the quarantine, not a
    // pushed one.
    let conn = store.connection();
    for sql in [
        "DELETE FROM ledger WHERE terminal_seq = 4",
        "DELETE FROM ledger WHERE terminal_seq = 2",
    ] {
        let err = conn.execute(sql, []).expect_err(sql);
        assert!(err.to_string().contains("immutable"), "{sql}: {err}");
    }
}

#[test]
fn a_pulled_member_record_merges_with_a_card_replaced_here_and_not_yet_pushed() {
    let db = TempDb::new();
    let mut store = db.open();
    let enrolled = enrol(&mut store, "Hedy Lamarr").member;
    let member = enrolled.id;
    let pushed = store.export_member(member, NOW).expect("record").record;
    mark_all_pushed(&mut store);
    let here = store
        .replace_card(member, NOW.plus_millis(20))
        .expect("replace")
        .member
        .card;
    // Another till replaced the card earlier, without having seen this replacement.
    let there = pushed.with_new_card(CardNumber::from_payload(4_242), NOW.plus_millis(10));
    let applied = store
        .apply_pulled(std::slice::from_ref(&there), &[], 5, None, NOW)
        .expect("apply");
    assert_eq!(applied.quarantined, 0);
    let merged = store.export_member(member, NOW).expect("record").record;
    assert_eq!(merged.member.card, here, "the card given last stays in use");
    let retired: BTreeSet<(&CardNumber, &CardNumber)> = merged
        .retired_cards
        .iter()
        .map(|r| (&r.card, &r.replaced_by))
        .collect();
    assert_eq!(
        retired,
        BTreeSet::from([(&enrolled.card, &here), (&there.member.card, &here)]),
        "every other card leads to it"
    );
    let outbox = store.outbox(10, 10).expect("outbox");
    assert_eq!(outbox.members, vec![merged.clone()], "the server lacks it");

    // The server's merge of the two comes back: nothing more to push once that is marked.
    store.mark_pushed(&outbox).expect("pushed");
    let applied = store
        .apply_pulled(std::slice::from_ref(&merged), &[], 6, None, NOW)
        .expect("apply");
    assert_eq!(applied.quarantined, 0);
    assert!(store.outbox(10, 10).expect("outbox").members.is_empty());
    let err = store
        .identify_code(&store.member_code(&there.member.card))
        .expect_err("the other till's card was replaced");
    assert!(err.to_string().contains("replaced"), "{err}");
}

#[test]
fn a_copy_from_before_its_entries_were_renumbered_and_pushed_takes_the_servers_numbers() {
    let db = TempDb::new();
    let first_copy = db.dir.path().join("first.sqlite3");
    let second_copy = db.dir.path().join("second.sqlite3");
    let member;
    {
        let mut store = db.open();
        member = enrol(&mut store, "Margaret Hamilton").member.id;
        mark_all_pushed(&mut store);
    }
    std::fs::copy(&db.path, &first_copy).expect("back up");
    let lost = {
        let mut store = db.open();
        store.earn(member, 1000, "ann", NOW).expect("earn");
        mark_all_pushed(&mut store)
    };
    std::fs::copy(&first_copy, &db.path).expect("put the first copy back");
    {
        let mut store = db.open();
        store.earn(member, 2000, "ann", NOW).expect("earn");
    }
    // A copy holding that sale unpushed, as number 2.
    std::fs::copy(&db.path, &second_copy).expect("back up again");
    let renumbered = {
        let mut store = db.open();
        store.adopt_own(&[], &lost, 2, NOW).expect("adopt");
        mark_all_pushed(&mut store)
    };
    assert_eq!(
        renumbered
            .iter()
            .map(|e| e.terminal_seq)
            .collect::<Vec<_>>(),
        vec![3],
        "pushed as number 3"
    );

    std::fs::copy(&second_copy, &db.path).expect("put the second copy back");
    let mut store = db.open();
    let mut server = lost.clone();
    server.extend(renumbered);
    let adopted = store.adopt_own(&[], &server, 3, NOW).expect("adopt");
    assert_eq!((adopted.recovered, adopted.renumbered), (1, 1));
    assert_eq!(own_sequence(&store), vec![1, 2, 3], "gapless");
    let counters = store.sync_counters().expect("counters");
    assert_eq!((counters.pushed_seq, counters.waiting_entries), (3, 0));
    assert_eq!(
        store.member(member).expect("member").state.balance,
        100 + 100 + 200
    );
    assert!(store.verify(false).expect("verify").is_clean());
}
