//! A member's entries reduced to what the measures count, for any period: kept beside the
//! ledger so a report reads one small row per member instead of every entry.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{Counted, MechanicEvents, TierChange};
use crate::domain::summary::{paid_tier_until, qualifying_contribution};
use crate::domain::{Entry, EntryId, EntryKind, Program, Timestamp};

/// What one member's entries before an instant come to, as the measures count them: their
/// sales, points, mechanics and tier over time. Counting it for a period ending at or before
/// that instant ([`super::FactsBuilder::add_digest`]) gives what counting the entries gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digest {
    /// The entries that stood and earned, redeemed or sold, oldest first: a sale counts while
    /// not cancelled, for its money less what returns brought back.
    pub(super) entries: Vec<Counted>,
    pub(super) mechanics: MechanicEvents,
    /// Where the tier changes, oldest first: from when, the tier (0 before the first change,
    /// as a program's lowest tier starts at 0 points and no membership is bought yet).
    pub(super) tiers: Vec<(Timestamp, usize)>,
    /// The member's balance now: the sum of the points of every entry of theirs.
    pub(super) balance: i64,
}

/// A stored digest that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("a stored report digest does not decode: {0}")]
pub struct DigestError(#[from] postcard::Error);

/// The stored form: times as milliseconds, each list's times as steps from the one before, so
/// that most numbers take a byte or two.
#[derive(Serialize, Deserialize)]
struct Stored {
    entries: Vec<(i64, Option<i64>, i64, i64)>,
    offers: Vec<(i64, bool)>,
    badges: Vec<i64>,
    welcome_backs: Vec<(i64, bool)>,
    tiers: Vec<(i64, usize)>,
    balance: i64,
}

impl Digest {
    /// Reduces one member's entries, oldest first, as they stand before `to` (the end of the
    /// periods it will be counted for; `Timestamp::from_millis(i64::MAX)` for any). A points
    /// entry stands while no entry of the member reverses it; a sale while it is not cancelled
    /// (`returns::cancelled`), for its amount less what returns brought back.
    pub fn of(program: &Program, entries: &[Entry], to: Timestamp) -> Self {
        let reversed: HashSet<EntryId> = entries.iter().filter_map(|e| e.reverses).collect();
        let cancelled = crate::domain::returns::cancelled(entries);
        let refunded = crate::domain::returns::brought_back(entries);
        let before_end = &entries[..entries.partition_point(|e| e.occurred_at < to)];
        let mut counted = Vec::new();
        for e in before_end.iter().filter(|e| !reversed.contains(&e.id)) {
            let (earned, redeemed) = match e.kind {
                EntryKind::Earn
                | EntryKind::WelcomeBonus
                | EntryKind::BirthdayBonus
                | EntryKind::Return => (e.points, 0),
                EntryKind::Redeem => (0, -e.points),
                _ => continue,
            };
            let sale = match (e.kind, e.amount_minor) {
                (EntryKind::Earn, Some(amount_minor)) if !cancelled.contains(&e.id) => {
                    Some(amount_minor - refunded.get(&e.id).copied().unwrap_or(0))
                }
                _ => None,
            };
            counted.push(Counted {
                at: e.occurred_at,
                sale,
                earned,
                redeemed,
            });
        }
        Self {
            entries: counted,
            mechanics: MechanicEvents::of(program, before_end, to),
            tiers: tier_changes(program, before_end),
            balance: entries.iter().map(|e| e.points).sum(),
        }
    }

    /// The member's tier at `at` (enrolled by then), as `summary::summarise` folds it.
    pub fn tier_at(&self, at: Timestamp) -> usize {
        let i = self.tiers.partition_point(|(since, _)| *since <= at);
        i.checked_sub(1).map_or(0, |i| self.tiers[i].1)
    }

    /// Each change of the member's tier, oldest first, with the tier before it.
    pub fn tier_changes(&self) -> impl Iterator<Item = TierChange> + '_ {
        let before = std::iter::once(0).chain(self.tiers.iter().map(|(_, tier)| *tier));
        self.tiers
            .iter()
            .zip(before)
            .map(|(&(at, after), before)| TierChange { at, before, after })
    }

    /// The member's last purchase that stood.
    pub fn last_sale(&self) -> Option<Timestamp> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.sale.is_some())
            .map(|e| e.at)
    }

    /// The stored form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let m = &self.mechanics;
        let stored = Stored {
            entries: steps(
                &self.entries,
                |e| e.at,
                |t, e| (t, e.sale, e.earned, e.redeemed),
            ),
            offers: steps(&m.offers, |o| o.0, |t, o| (t, o.1)),
            badges: steps(&m.badges, |b| *b, |t, _| t),
            welcome_backs: steps(&m.welcome_backs, |w| w.0, |t, w| (t, w.1)),
            tiers: steps(&self.tiers, |c| c.0, |t, c| (t, c.1)),
            balance: self.balance,
        };
        postcard::to_allocvec(&stored).unwrap_or_default()
    }

    /// Back from [`Digest::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DigestError> {
        let s: Stored = postcard::from_bytes(bytes)?;
        Ok(Self {
            entries: unsteps(
                s.entries,
                |x| x.0,
                |at, x| Counted {
                    at,
                    sale: x.1,
                    earned: x.2,
                    redeemed: x.3,
                },
            ),
            mechanics: MechanicEvents {
                offers: unsteps(s.offers, |x| x.0, |t, x| (t, x.1)),
                badges: unsteps(s.badges, |x| *x, |t, _| t),
                welcome_backs: unsteps(s.welcome_backs, |x| x.0, |t, x| (t, x.1)),
            },
            tiers: unsteps(s.tiers, |x| x.0, |t, x| (t, x.1)),
            balance: s.balance,
        })
    }
}

/// Each item with its time replaced by the step from the item before (the first from 0).
fn steps<T, S>(items: &[T], at: impl Fn(&T) -> Timestamp, with: impl Fn(i64, &T) -> S) -> Vec<S> {
    let mut last = 0i64;
    items
        .iter()
        .map(|item| {
            let t = at(item).millis();
            let step = t.wrapping_sub(last);
            last = t;
            with(step, item)
        })
        .collect()
}

/// [`steps`] undone, in the stored list's own memory (the items are the same size).
fn unsteps<S, T>(
    stored: Vec<S>,
    step: impl Fn(&S) -> i64,
    with: impl Fn(Timestamp, S) -> T,
) -> Vec<T> {
    let mut last = 0i64;
    stored
        .into_iter()
        .map(|s| {
            last = last.wrapping_add(step(&s));
            with(Timestamp::from_millis(last), s)
        })
        .collect()
}

/// Where the tier of a member with these entries (oldest first) changes: the instants where
/// the rolling window's measure or the paid tier moves, each evaluated once, in one sweep.
fn tier_changes(program: &Program, entries: &[Entry]) -> Vec<(Timestamp, usize)> {
    let by_id: HashMap<EntryId, &Entry> = if entries.iter().any(|e| e.reverses.is_some()) {
        entries.iter().map(|e| (e.id, e)).collect()
    } else {
        HashMap::new()
    };
    // (instant, change to the window's measure, change to the paid tier's count)
    let mut steps: Vec<(Timestamp, i64, i64)> = Vec::new();
    for e in entries {
        let reversed = e.reverses.and_then(|id| by_id.get(&id).copied());
        let v = qualifying_contribution(program.tier_measure, e, reversed);
        // An entry counts while it is in the window; a reversal only once what it reverses
        // is stamped too (the fold as of an instant sees only entries up to it).
        let start = reversed.map_or(e.occurred_at, |o| o.occurred_at.max(e.occurred_at));
        let end = e.occurred_at.plus_days(program.tier_window_days);
        if v != 0 && start < end {
            steps.push((start, v, 0));
            steps.push((end, -v, 0));
        }
    }
    if program.paid_tier.is_some() {
        let membership = |e: &Entry| {
            e.kind == EntryKind::Membership
                || reversed_kind(&by_id, e) == Some(EntryKind::Membership)
        };
        let mut moments: Vec<Timestamp> = entries
            .iter()
            .filter(|e| membership(e))
            .map(|e| e.occurred_at)
            .collect();
        moments.dedup();
        for (i, &at) in moments.iter().enumerate() {
            let upto = &entries[..entries.partition_point(|e| e.occurred_at <= at)];
            let next = moments.get(i + 1).copied();
            if let Some(until) = paid_tier_until(program, upto, at) {
                let end = next.map_or(until, |n| n.min(until));
                steps.push((at, 0, 1));
                steps.push((end, 0, -1));
            }
        }
    }
    steps.sort_unstable_by_key(|s| s.0);
    let paid_tier = program.paid_tier.as_ref().map_or(0, |p| p.tier);
    let (mut measure, mut paid, mut tier) = (0i64, 0i64, 0usize);
    let mut changes = Vec::new();
    let mut i = 0;
    while i < steps.len() {
        let at = steps[i].0;
        while i < steps.len() && steps[i].0 == at {
            measure = measure.saturating_add(steps[i].1);
            paid += steps[i].2;
            i += 1;
        }
        let now = program
            .tier_for(measure.max(0))
            .max(if paid > 0 { paid_tier } else { 0 });
        if now != tier {
            tier = now;
            changes.push((at, tier));
        }
    }
    changes
}

/// The kind of the entry `e` reverses, if it reverses one of the member's entries.
fn reversed_kind(by_id: &HashMap<EntryId, &Entry>, e: &Entry) -> Option<EntryKind> {
    e.reverses
        .and_then(|id| by_id.get(&id))
        .map(|original| original.kind)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::domain::insights::{FactsBuilder, MemberFacts};
    use crate::domain::program::TierMeasure;
    use crate::domain::summary::{summarise, tests::entry};
    use crate::domain::timestamp::DAY_MS;
    use crate::domain::{EntryKind, MemberId};
    use proptest::prelude::*;

    pub(in crate::domain::insights) type Raw = (usize, i64, Option<i64>, i64, usize);

    /// One member's entries, oldest first, of any kind: reversals and returns name earlier
    /// entries, offers and badges the demo program's.
    pub(in crate::domain::insights) fn entries(raw: Vec<Raw>) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for (kind, points, amount, at_hour, target) in raw {
            let mut e = entry(EntryKind::ALL[kind], points, amount, at_hour * 3_600_000);
            match e.kind {
                EntryKind::Reverse if !out.is_empty() => {
                    e.reverses = Some(out[target % out.len()].id);
                }
                EntryKind::Return => {
                    let sales: Vec<&Entry> =
                        out.iter().filter(|s| s.kind == EntryKind::Earn).collect();
                    if !sales.is_empty() {
                        e.returns = Some(sales[target % sales.len()].id);
                        e.amount_minor = e.amount_minor.map(|a| -a.abs());
                    }
                }
                EntryKind::OfferUnlocked | EntryKind::OfferUsed => {
                    e.reward_id = Some(["five-visits", "welcome-back"][target % 2].to_owned());
                }
                EntryKind::BadgeAwarded => {
                    e.reward_id = Some(["regular", "explorer"][target % 2].to_owned());
                }
                _ => {}
            }
            out.push(e);
        }
        out.sort_by_key(|e| (e.occurred_at, e.id));
        out
    }

    pub(in crate::domain::insights) fn raw() -> impl Strategy<Value = Vec<Raw>> {
        prop::collection::vec(
            (
                0..EntryKind::ALL.len(),
                -2_000i64..2_000,
                prop::option::of(0i64..50_000),
                0i64..(900 * 24),
                any::<usize>(),
            ),
            0..30,
        )
    }

    pub(in crate::domain::insights) fn program(by_spend: bool) -> Program {
        let mut p = Program::demo();
        if by_spend {
            p.tier_measure = TierMeasure::Spend;
        }
        // A short window, so that entries leave it within the instants tried.
        p.tier_window_days = 30;
        p
    }

    proptest! {
        /// Around every instant the tier could move at, and between, the digest's tier is the
        /// fold's as of that instant.
        #[test]
        fn the_tier_from_the_digest_is_the_folds(raw in raw(), by_spend in any::<bool>(), extra in prop::collection::vec(0i64..(1_000 * 24), 0..10)) {
            let p = program(by_spend);
            let entries = entries(raw);
            let digest = Digest::of(&p, &entries, ANY_PERIOD_FOR_TESTS);
            let mut instants: Vec<i64> = extra.iter().map(|h| h * 3_600_000).collect();
            for e in &entries {
                let t = e.occurred_at.millis();
                for at in [t, t + p.tier_window_days * DAY_MS, t + 365 * DAY_MS] {
                    instants.extend([at - 1, at, at + 1]);
                }
            }
            for at in instants.into_iter().map(Timestamp::from_millis) {
                let upto = &entries[..entries.partition_point(|e| e.occurred_at <= at)];
                prop_assert_eq!(digest.tier_at(at), summarise(&p, upto, at).tier, "at {}", at);
            }
        }

        /// Counting a member from their stored digest gives what counting their entries gives,
        /// for any period ending after their last entry.
        #[test]
        fn a_digest_counts_as_the_entries_do(
            raw in raw(),
            by_spend in any::<bool>(),
            from_day in 0i64..900,
            to_day in 900i64..1_100,
            enrolled_day in -10i64..1_000,
            consent in any::<bool>(),
        ) {
            let p = program(by_spend);
            let entries = entries(raw);
            let (from, to) = (
                Timestamp::from_millis(from_day * DAY_MS),
                Timestamp::from_millis(to_day * DAY_MS),
            );
            let member = MemberFacts {
                id: MemberId(uuid::Uuid::nil()),
                enrolled_at: Timestamp::from_millis(enrolled_day * DAY_MS),
                marketing_consent: consent,
            };
            let member = (member.enrolled_at < to).then_some(member);
            let stored = Digest::of(&p, &entries, ANY_PERIOD_FOR_TESTS).to_bytes();
            let digest = Digest::from_bytes(&stored).expect("decodes");
            prop_assert_eq!(&digest, &Digest::of(&p, &entries, ANY_PERIOD_FOR_TESTS));
            let mut by_entries = FactsBuilder::new(&p, from, to);
            by_entries.add(member.clone(), &entries);
            let mut by_digest = FactsBuilder::new(&p, from, to);
            by_digest.add_digest(member, &digest);
            prop_assert_eq!(by_entries.finish(), by_digest.finish());
        }
    }

    pub(in crate::domain::insights) const ANY_PERIOD_FOR_TESTS: Timestamp =
        Timestamp::from_millis(i64::MAX);

    #[test]
    fn a_stored_digest_is_small_and_garbage_is_refused() {
        let p = Program::demo();
        let entries: Vec<Entry> = (0..10)
            .map(|i| {
                entry(
                    EntryKind::Earn,
                    30,
                    Some(300),
                    1_790_000_000_000 + i * DAY_MS,
                )
            })
            .collect();
        let bytes = Digest::of(&p, &entries, ANY_PERIOD_FOR_TESTS).to_bytes();
        // Ten sales with their points: 10 bytes each, times as steps from the one before (a
        // day's step takes 5 bytes, not the 8 of a whole time).
        assert!(bytes.len() <= 10 * 10 + 6, "{} bytes", bytes.len());
        assert!(Digest::from_bytes(&[0xff; 5]).is_err());
    }
}
