//! A member's derived state: balance, qualifying measure and tier, folded from entries.
//!
//! This fold is the one definition of a balance and a tier. The store's cache holds its output
//! and `verify` recomputes it from the entries to prove the cache right.

use std::collections::HashMap;

use serde::Serialize;

use super::entry::MAX_ENTRY_POINTS;
use super::program::TierMeasure;
use super::{Entry, EntryId, EntryKind, Program, Timestamp};

/// A member's balance and tier as of an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemberSummary {
    /// Sum of every entry's points (may be negative after an offline double spend).
    pub balance: i64,
    /// The tier measure (points or spend) over the window ending at `as_of`, at least 0.
    pub qualifying: i64,
    /// Index into the program's tiers.
    pub tier: usize,
    /// The instant the window ends.
    pub as_of: Timestamp,
    /// Latest purchase, redemption or enrolment; drives inactivity expiry.
    pub last_activity_at: Option<Timestamp>,
    pub entry_count: i64,
}

/// What an entry adds to the tier measure. Reversals take back what the reversed entry added,
/// so `reversed` must be the member's entry that `entry.reverses` names, when there is one.
pub(crate) fn qualifying_contribution(
    measure: TierMeasure,
    entry: &Entry,
    reversed: Option<&Entry>,
) -> i64 {
    match (entry.kind, measure) {
        (EntryKind::Earn, TierMeasure::Points) => entry.points,
        (EntryKind::Earn, TierMeasure::Spend) => entry.amount_minor.unwrap_or(0),
        (EntryKind::Return, TierMeasure::Points) => entry.points,
        (EntryKind::Return, TierMeasure::Spend) => entry.amount_minor.unwrap_or(0),
        (EntryKind::Reverse, _) => {
            reversed.map_or(0, |orig| -qualifying_contribution(measure, orig, None))
        }
        _ => 0,
    }
}

/// True for entries that show the member is active (for inactivity expiry).
pub fn is_activity(kind: EntryKind) -> bool {
    matches!(
        kind,
        EntryKind::Earn | EntryKind::Redeem | EntryKind::WelcomeBonus | EntryKind::OpeningBalance
    )
}

/// Folds one member's entries (any order) into their summary as of `as_of`.
pub fn summarise(program: &Program, entries: &[Entry], as_of: Timestamp) -> MemberSummary {
    let window_start = as_of.plus_days(-program.tier_window_days);
    let by_id: HashMap<EntryId, &Entry> = if entries.iter().any(|e| e.reverses.is_some()) {
        entries.iter().map(|e| (e.id, e)).collect()
    } else {
        HashMap::new()
    };
    let mut balance: i64 = 0;
    let mut qualifying: i64 = 0;
    let mut last_activity_at: Option<Timestamp> = None;
    for e in entries {
        balance = balance.saturating_add(e.points);
        if e.occurred_at > window_start && e.occurred_at <= as_of {
            let reversed = e.reverses.and_then(|id| by_id.get(&id).copied());
            qualifying = qualifying.saturating_add(qualifying_contribution(
                program.tier_measure,
                e,
                reversed,
            ));
        }
        if is_activity(e.kind) && last_activity_at.is_none_or(|t| e.occurred_at > t) {
            last_activity_at = Some(e.occurred_at);
        }
    }
    let qualifying = qualifying.max(0);
    let paid = paid_tier_until(program, entries, as_of)
        .and(program.paid_tier.as_ref())
        .map_or(0, |p| p.tier);
    let summary = MemberSummary {
        balance,
        qualifying,
        tier: program.tier_for(qualifying).max(paid),
        as_of,
        last_activity_at,
        entry_count: i64::try_from(entries.len()).unwrap_or(i64::MAX),
    };
    if cfg!(debug_assertions) {
        assert_fold_identities(program, entries, &summary);
    }
    summary
}

/// When the member's paid tier lapses, if it is in force at `at`: memberships bought (and not
/// reversed) up to `at`, each extending the one in force (or starting anew after a lapse) by
/// the program's days.
pub fn paid_tier_until(program: &Program, entries: &[Entry], at: Timestamp) -> Option<Timestamp> {
    let paid = program.paid_tier.as_ref()?;
    let reversed: std::collections::HashSet<EntryId> =
        entries.iter().filter_map(|e| e.reverses).collect();
    let mut bought: Vec<Timestamp> = entries
        .iter()
        .filter(|e| {
            e.kind == EntryKind::Membership && e.occurred_at <= at && !reversed.contains(&e.id)
        })
        .map(|e| e.occurred_at)
        .collect();
    bought.sort_unstable();
    let mut until: Option<Timestamp> = None;
    for t in bought {
        let from = until.filter(|u| *u > t).unwrap_or(t);
        until = Some(from.plus_days(paid.days));
    }
    until.filter(|u| *u > at)
}

/// The tier measure over entries stamped in `(from, to]` (the rolling window, widened by the
/// caller when judging what a till could have seen).
pub fn qualifying_between(
    program: &Program,
    entries: &[Entry],
    from: Timestamp,
    to: Timestamp,
) -> i64 {
    let by_id: HashMap<EntryId, &Entry> = entries.iter().map(|e| (e.id, e)).collect();
    entries
        .iter()
        .filter(|e| e.occurred_at > from && e.occurred_at <= to)
        .map(|e| {
            let reversed = e.reverses.and_then(|id| by_id.get(&id).copied());
            qualifying_contribution(program.tier_measure, e, reversed)
        })
        .sum::<i64>()
        .max(0)
}

/// Points earned on sales within the program's return window before `at`, net of what returns
/// and reversals of those sales took back: held until the window passes, not yet spendable.
pub fn pending(program: &Program, entries: &[Entry], at: Timestamp) -> i64 {
    let Some(days) = program.return_window_days.filter(|d| *d > 0) else {
        return 0;
    };
    let since = at.plus_days(-days);
    let mut held: HashMap<EntryId, i64> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Earn && e.occurred_at > since && e.occurred_at <= at)
        .map(|e| (e.id, e.points))
        .collect();
    for e in entries {
        if let Some(points) = e
            .returns
            .or(e.reverses)
            .and_then(|sale| held.get_mut(&sale))
        {
            *points += e.points;
        }
    }
    held.values().map(|p| (*p).max(0)).sum()
}

/// What a member may spend now: the balance less the points still pending, never below zero.
pub fn available(summary: &MemberSummary, pending: i64) -> i64 {
    (summary.balance - pending.max(0))
        .max(0)
        .min(summary.balance.max(0))
}

/// The identities [`summarise`] keeps for any entries, checked in debug builds by recomputing
/// each number another way.
fn assert_fold_identities(program: &Program, entries: &[Entry], s: &MemberSummary) {
    // With every entry within MAX_ENTRY_POINTS the running sum cannot reach i64's range before
    // ~9e9 entries, so the saturating sum is the exact one. (Only a damaged row breaks the bound;
    // `verify` reports it rather than this panicking.)
    if entries
        .iter()
        .all(|e| e.points.unsigned_abs() <= MAX_ENTRY_POINTS.unsigned_abs())
    {
        let sum: i128 = entries.iter().map(|e| i128::from(e.points)).sum();
        assert_eq!(
            i128::from(s.balance),
            sum,
            "the balance is the sum of the points"
        );
    }
    let paid = paid_tier_until(program, entries, s.as_of)
        .and(program.paid_tier.as_ref())
        .map(|p| p.tier);
    assert_eq!(
        s.tier,
        program.tier_for(s.qualifying).max(paid.unwrap_or(0)),
        "the tier is the highest the qualifying measure {} reaches, or the paid tier in force",
        s.qualifying
    );
    let latest_activity = entries
        .iter()
        .filter(|e| is_activity(e.kind))
        .map(|e| e.occurred_at)
        .max();
    assert_eq!(
        s.last_activity_at, latest_activity,
        "the last activity is the latest activity entry"
    );
    assert_eq!(
        usize::try_from(s.entry_count).ok(),
        Some(entries.len()),
        "every entry is counted"
    );
}

/// The next tier up and how much more of the measure it needs, or `None` at the top.
pub fn next_tier(program: &Program, summary: &MemberSummary) -> Option<(usize, i64)> {
    let next = summary.tier + 1;
    program
        .tiers
        .get(next)
        .map(|t| (next, (t.threshold - summary.qualifying).max(0)))
}

/// Progress through the current tier towards the next, 0.0..=1.0 (1.0 at the top tier).
pub fn tier_progress(program: &Program, summary: &MemberSummary) -> f32 {
    let current = program.tier(summary.tier).threshold;
    match program.tiers.get(summary.tier + 1) {
        None => 1.0,
        Some(next) => {
            let span = (next.threshold - current).max(1) as f64;
            ((summary.qualifying - current) as f64 / span).clamp(0.0, 1.0) as f32
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{MemberId, TerminalId};
    use proptest::prelude::*;
    use uuid::Uuid;

    pub(crate) fn entry(kind: EntryKind, points: i64, amount: Option<i64>, at: i64) -> Entry {
        Entry {
            id: EntryId(Uuid::now_v7()),
            terminal_id: TerminalId("t".into()),
            terminal_seq: 1,
            member_id: MemberId(Uuid::nil()),
            kind,
            points,
            amount_minor: amount,
            currency: amount.map(|_| "GBP".into()),
            reward_id: None,
            reverses: None,
            occurred_at: Timestamp::from_millis(at),
            note: None,
            actor: "test".into(),
            lines: Vec::new(),
            stamps: Default::default(),
            returns: None,
        }
    }

    #[test]
    fn window_excludes_old_earnings() {
        let p = Program::demo();
        let day = crate::domain::timestamp::DAY_MS;
        let now = 1000 * day;
        let entries = vec![
            entry(EntryKind::Earn, 900, Some(9000), now - 380 * day),
            entry(EntryKind::Earn, 200, Some(2000), now - 10 * day),
            entry(EntryKind::WelcomeBonus, 100, None, now - 400 * day),
        ];
        let s = summarise(&p, &entries, Timestamp::from_millis(now));
        assert_eq!(s.balance, 1200);
        assert_eq!(s.qualifying, 200);
        assert_eq!(s.tier, 0);
        let earlier = summarise(&p, &entries, Timestamp::from_millis(now - 20 * day));
        assert_eq!(earlier.qualifying, 900);
    }

    #[test]
    fn reversal_takes_back_qualifying() {
        let p = Program::demo();
        let earn = entry(EntryKind::Earn, 1200, Some(12_000), 10);
        let mut rev = entry(EntryKind::Reverse, -1200, Some(-12_000), 20);
        rev.reverses = Some(earn.id);
        let before = summarise(&p, std::slice::from_ref(&earn), Timestamp::from_millis(30));
        assert_eq!(before.tier, 1);
        let after = summarise(&p, &[earn, rev], Timestamp::from_millis(30));
        assert_eq!((after.balance, after.qualifying, after.tier), (0, 0, 0));
    }

    #[test]
    fn sales_are_pending_for_the_return_window_less_what_came_back() {
        let p = Program {
            return_window_days: Some(14),
            ..Program::demo()
        };
        let day = crate::domain::timestamp::DAY_MS;
        let sale = entry(EntryKind::Earn, 300, Some(3000), 0);
        let mut back = entry(EntryKind::Return, -100, Some(-1000), 1);
        back.returns = Some(sale.id);
        let bonus = entry(EntryKind::WelcomeBonus, 100, None, 0);
        let entries = vec![sale, back, bonus];
        assert_eq!(pending(&p, &entries, Timestamp::from_millis(day)), 200);
        assert_eq!(pending(&p, &entries, Timestamp::from_millis(15 * day)), 0);
        let at_once = Program {
            return_window_days: None,
            ..Program::demo()
        };
        assert_eq!(pending(&at_once, &entries, Timestamp::from_millis(day)), 0);
        let s = summarise(&p, &entries, Timestamp::from_millis(day));
        assert_eq!((s.balance, available(&s, 200)), (300, 100));
    }

    #[test]
    fn a_bought_tier_holds_for_its_days_extends_when_renewed_and_lapses() {
        let p = Program::demo();
        let day = crate::domain::timestamp::DAY_MS;
        let at = |d: i64| Timestamp::from_millis(d * day);
        let buy = |d: i64| entry(EntryKind::Membership, 0, Some(2_500), d * day);
        let gold = p.tier_index("Gold").expect("gold");
        let once = vec![buy(0)];
        assert_eq!(summarise(&p, &once, at(1)).tier, gold);
        assert_eq!(paid_tier_until(&p, &once, at(1)), Some(at(365)));
        assert_eq!(summarise(&p, &once, at(365)).tier, 0, "lapsed");
        let renewed = vec![buy(0), buy(300)];
        assert_eq!(paid_tier_until(&p, &renewed, at(400)), Some(at(730)));
        let mut undo = entry(EntryKind::Reverse, 0, Some(-2_500), 301 * day);
        undo.reverses = Some(renewed[1].id);
        let refunded = vec![renewed[0].clone(), renewed[1].clone(), undo];
        assert_eq!(
            paid_tier_until(&p, &refunded, at(400)),
            None,
            "a refunded renewal"
        );
    }

    proptest! {
        #[test]
        fn balance_is_the_sum_of_entries(points in proptest::collection::vec(-10_000i64..10_000, 0..50)) {
            let p = Program::demo();
            let entries: Vec<Entry> = points.iter().enumerate()
                .map(|(i, &pts)| entry(EntryKind::Adjust, pts, None, i as i64))
                .collect();
            let s = summarise(&p, &entries, Timestamp::from_millis(1_000));
            prop_assert_eq!(s.balance, points.iter().sum::<i64>());
        }

        /// Any mix of kinds, sizes, instants and reversals (the fold's debug asserts check its
        /// identities on each) still sums the points into the balance.
        #[test]
        fn any_entries_keep_the_fold_identities(
            raw in proptest::collection::vec(
                (0..EntryKind::ALL.len(), -MAX_ENTRY_POINTS..=MAX_ENTRY_POINTS,
                 proptest::option::of(-100_000i64..100_000), 0..800i64, any::<usize>()),
                0..40,
            ),
            as_of_day in 0..800i64,
            by_spend in any::<bool>(),
        ) {
            let mut p = Program::demo();
            if by_spend {
                p.tier_measure = TierMeasure::Spend;
            }
            let day = crate::domain::timestamp::DAY_MS;
            let mut entries: Vec<Entry> = Vec::new();
            for (kind, points, amount, at_day, target) in raw {
                let mut e = entry(EntryKind::ALL[kind], points, amount, at_day * day);
                if e.kind == EntryKind::Reverse && !entries.is_empty() {
                    e.reverses = Some(entries[target % entries.len()].id);
                }
                entries.push(e);
            }
            let s = summarise(&p, &entries, Timestamp::from_millis(as_of_day * day));
            prop_assert_eq!(s.balance, entries.iter().map(|e| e.points).sum::<i64>());
        }

        #[test]
        fn tier_is_monotone_in_the_measure(a in -1_000_000i64..1_000_000, b in -1_000_000i64..1_000_000) {
            let p = Program::demo();
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(p.tier_for(lo) <= p.tier_for(hi));
        }
    }
}
