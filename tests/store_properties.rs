//! Arbitrary operation sequences against a real SQLite file keep every invariant.

mod common;

use common::{NOW, TempDb, enrol};
use proptest::prelude::*;
use tillpass::domain::{Entry, EntryId, EntryKind, MemberId, TerminalId, Timestamp};

#[derive(Debug, Clone)]
enum Op {
    Enrol,
    Earn { member: usize, amount: i64 },
    Redeem { member: usize, reward: usize },
    Reverse { entry: usize },
    Adjust { member: usize, points: i64 },
    Foreign { member: usize, points: i64 },
    Replay { entry: usize },
    Wait { days: i64 },
    Reopen,
    Retier,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Enrol),
        6 => (0usize..8, -500i64..200_000).prop_map(|(member, amount)| Op::Earn { member, amount }),
        3 => (0usize..8, 0usize..5).prop_map(|(member, reward)| Op::Redeem { member, reward }),
        2 => (0usize..64).prop_map(|entry| Op::Reverse { entry }),
        1 => (0usize..8, -3_000i64..3_000).prop_map(|(member, points)| Op::Adjust { member, points }),
        1 => (0usize..8, 1i64..500).prop_map(|(member, points)| Op::Foreign { member, points }),
        1 => (0usize..64).prop_map(|entry| Op::Replay { entry }),
        1 => (1i64..400).prop_map(|days| Op::Wait { days }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Retier),
    ]
}

fn entry_count(store: &tillpass::store::Store) -> i64 {
    store.stats().expect("stats").entries
}

/// Entries this till wrote after its number `seq`: the offers, badges and referral bonuses a
/// sale brought, or those a cancelled sale took back.
fn facts_after(store: &tillpass::store::Store, seq: i64) -> i64 {
    store
        .connection()
        .query_row(
            "SELECT COUNT(*) FROM ledger WHERE terminal_seq > ?1
             AND terminal_id = (SELECT terminal_id FROM terminal)",
            [seq],
            |r| r.get(0),
        )
        .expect("count")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn operation_sequences_keep_verify_clean(ops in proptest::collection::vec(op(), 1..40)) {
        let db = TempDb::new();
        let mut store = db.open();
        let mut members: Vec<MemberId> = vec![enrol(&mut store, "First Member").member.id];
        let mut written: Vec<Entry> = Vec::new();
        let mut foreign_seq = 0;
        let mut now: Timestamp = NOW;
        let rewards = ["pastry", "coffee", "beans-250g", "mug", "nothing"];
        for op in ops {
            now = now.plus_millis(1_000);
            let before = entry_count(&store);
            let pick = |i: usize| members[i % members.len()];
            let result = match op {
                Op::Enrol => {
                    let view = enrol(&mut store, "Another Member");
                    members.push(view.member.id);
                    Ok(None)
                }
                Op::Earn { member, amount } => store.earn(pick(member), amount, "p", now).map(Some),
                Op::Redeem { member, reward } => store.redeem(pick(member), rewards[reward], "p", now).map(Some),
                Op::Reverse { entry } if !written.is_empty() => {
                    let id = written[entry % written.len()].id;
                    store.reverse(id, "p", now).map(Some)
                }
                Op::Reverse { .. } => Ok(None),
                Op::Adjust { member, points } => store.adjust(pick(member), points, "why", "p", now).map(Some),
                Op::Foreign { member, points } => {
                    foreign_seq += 1;
                    let e = Entry {
                        id: EntryId(uuid::Uuid::now_v7()),
                        terminal_id: TerminalId("till-other".into()),
                        terminal_seq: foreign_seq,
                        member_id: pick(member),
                        kind: EntryKind::BirthdayBonus,
                        points,
                        amount_minor: None,
                        currency: None,
                        reward_id: None,
                        reverses: None,
                        occurred_at: now,
                        note: None,
                        actor: "other".into(),
                        lines: Vec::new(),
                        stamps: Default::default(),
                        returns: None,
                    };
                    store.insert_entries(std::slice::from_ref(&e)).map(|_| Some(e))
                }
                Op::Replay { entry } if !written.is_empty() => {
                    let e = written[entry % written.len()].clone();
                    let out = store.insert_entries(std::slice::from_ref(&e));
                    prop_assert!(out.is_ok(), "replay refused: {out:?}");
                    prop_assert_eq!(entry_count(&store), before, "a replay wrote something");
                    Ok(None)
                }
                Op::Replay { .. } => Ok(None),
                Op::Wait { days } => {
                    now = now.plus_days(days);
                    Ok(None)
                }
                Op::Reopen => {
                    drop(store);
                    store = db.open();
                    Ok(None)
                }
                Op::Retier => store.rebuild_state(Some(now)).map(|_| None),
            };
            match result {
                Ok(Some(e)) => {
                    // A sale writes the facts it unlocks with it, and a sale's reversal takes the
                    // unused ones back with it: this till's entries after the one returned.
                    let own = &e.terminal_id == store.terminal_id();
                    let facts = if own { facts_after(&store, e.terminal_seq) } else { 0 };
                    prop_assert_eq!(entry_count(&store), before + 1 + facts, "one entry per action, and what it brings");
                    written.push(e);
                }
                Ok(None) => {}
                Err(_) => prop_assert_eq!(entry_count(&store), before, "a refusal wrote something"),
            }
            // Every balance is the sum of that member's entries.
            for m in &members {
                let cached = store.member(*m).expect("member").state.balance;
                let sum: i64 = store
                    .connection()
                    .query_row("SELECT COALESCE(SUM(points), 0) FROM ledger WHERE member_id = ?1", [m.0], |r| r.get(0))
                    .expect("sum");
                prop_assert_eq!(cached, sum);
            }
        }
        let report = store.verify(false).expect("verify");
        prop_assert!(report.is_clean(), "{:?}", report.drift);
    }
}
