//! The report's sums over every member, kept by day: what each member's [`Digest`] adds to
//! them is added when the digest is made and taken off when it is made again, so a report for
//! whole days reads a few thousand sums instead of a million digests.
//!
//! They answer a period `[from, to)` of whole UTC days that ends after every entry and every
//! enrolment counted ([`Totals::facts`]). Two things are not sums and are read per member
//! beside them: each member's last purchase (for who is at risk) and the instants their tier
//! changes (for who moved up or down, [`moved`]).

use std::collections::{BTreeMap, HashMap};

use super::{Digest, Facts, month_index};
use crate::domain::timestamp::DAY_MS;
use crate::domain::{MemberId, Timestamp};

/// What is summed, each per day (cohort buyers per month).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sum {
    /// Members enrolled that day.
    Enrolled,
    /// Sales that day that stood, and their money less what returns brought back.
    Orders,
    Revenue,
    /// Points earned and redeemed by entries of that day that stood.
    PointsEarned,
    PointsRedeemed,
    /// Members whose last purchase was that day, and whose last but one.
    LastSale,
    SecondLastSale,
    /// Members whose last purchase in that day's month was that day.
    LastSaleOfMonth,
    /// Offers unlocked by repeat purchases that day, and of those the ones used.
    OffersUnlocked,
    OffersUsed,
    /// Badges awarded that day.
    Badges,
    /// Welcome-back offers given that day, and of those the ones that brought the member back.
    WelcomeBacks,
    CameBack,
    /// Members entering (positive) and leaving (negative) tier `of` that day.
    Tier,
    /// Members enrolled in month `of` (months since year 0) buying in month `at`.
    CohortBuyers,
    /// Every member's positive balance now (at day 0).
    Outstanding,
}

impl Sum {
    /// Every sum, in the order of their stored codes.
    pub const ALL: [Sum; 16] = [
        Sum::Enrolled,
        Sum::Orders,
        Sum::Revenue,
        Sum::PointsEarned,
        Sum::PointsRedeemed,
        Sum::LastSale,
        Sum::SecondLastSale,
        Sum::LastSaleOfMonth,
        Sum::OffersUnlocked,
        Sum::OffersUsed,
        Sum::Badges,
        Sum::WelcomeBacks,
        Sum::CameBack,
        Sum::Tier,
        Sum::CohortBuyers,
        Sum::Outstanding,
    ];

    /// The number it is stored as.
    pub fn code(self) -> i64 {
        Self::ALL
            .iter()
            .position(|s| *s == self)
            .map_or(-1, |i| i as i64)
    }

    /// Back from [`Sum::code`].
    pub fn from_code(code: i64) -> Option<Self> {
        usize::try_from(code)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
    }
}

/// One sum's place: the day (days since 1970-01-01 UTC; a month for cohort buyers) and, for
/// tiers and cohorts, which one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub sum: Sum,
    pub at: i64,
    pub of: i64,
}

/// Sums over members, by [`Key`]; zeros are not kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals(HashMap<Key, i64>);

/// A change of a member's tier: when, and from which tier to which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierChange {
    pub at: Timestamp,
    pub before: usize,
    pub after: usize,
}

/// The day an instant falls on, as days since 1970-01-01 UTC.
pub fn day_of(at: Timestamp) -> i64 {
    at.millis().div_euclid(DAY_MS)
}

impl Totals {
    /// Adds `n` at `key`.
    pub fn add(&mut self, key: Key, n: i64) {
        if n == 0 {
            return;
        }
        let slot = self.0.entry(key).or_insert(0);
        *slot += n;
        if *slot == 0 {
            self.0.remove(&key);
        }
    }

    /// Adds (`sign` 1) or takes off (`sign` -1) what a member enrolled at `enrolled_at` with
    /// this digest counts for.
    pub fn count(&mut self, enrolled_at: Timestamp, digest: &Digest, sign: i64) {
        let mut add = |sum: Sum, at: i64, of: i64, n: i64| self.add(Key { sum, at, of }, n * sign);
        add(Sum::Enrolled, day_of(enrolled_at), 0, 1);
        add(Sum::Outstanding, 0, 0, digest.balance.max(0));
        let cohort = month_index(enrolled_at);
        let mut sale_days = Vec::new();
        for e in &digest.entries {
            let day = day_of(e.at);
            add(Sum::PointsEarned, day, 0, e.earned);
            add(Sum::PointsRedeemed, day, 0, e.redeemed);
            if let Some(amount) = e.sale {
                add(Sum::Orders, day, 0, 1);
                add(Sum::Revenue, day, 0, amount);
                sale_days.push(day);
            }
        }
        if let Some(&last) = sale_days.last() {
            add(Sum::LastSale, last, 0, 1);
        }
        if let Some(&second) = sale_days
            .len()
            .checked_sub(2)
            .and_then(|i| sale_days.get(i))
        {
            add(Sum::SecondLastSale, second, 0, 1);
        }
        for days in sale_days.chunk_by(|a, b| month_of_day(*a) == month_of_day(*b)) {
            let Some(&last) = days.last() else { continue };
            add(Sum::LastSaleOfMonth, last, 0, 1);
            let month = month_of_day(last);
            if month >= cohort {
                add(Sum::CohortBuyers, month, cohort, 1);
            }
        }
        let m = &digest.mechanics;
        for &(at, used) in &m.offers {
            add(Sum::OffersUnlocked, day_of(at), 0, 1);
            add(Sum::OffersUsed, day_of(at), 0, i64::from(used));
        }
        for &at in &m.badges {
            add(Sum::Badges, day_of(at), 0, 1);
        }
        for &(at, back) in &m.welcome_backs {
            add(Sum::WelcomeBacks, day_of(at), 0, 1);
            add(Sum::CameBack, day_of(at), 0, i64::from(back));
        }
        let tier = |t: usize| i64::try_from(t).unwrap_or(i64::MAX);
        add(
            Sum::Tier,
            day_of(enrolled_at),
            tier(digest.tier_at(enrolled_at)),
            1,
        );
        for change in digest.tier_changes().filter(|c| c.at > enrolled_at) {
            add(Sum::Tier, day_of(change.at), tier(change.before), -1);
            add(Sum::Tier, day_of(change.at), tier(change.after), 1);
        }
    }

    /// Adds every sum of `other`.
    pub fn merge(&mut self, other: &Totals) {
        for (&key, &n) in &other.0 {
            self.add(key, n);
        }
    }

    /// The places where `other` holds a different sum.
    pub fn differences(&self, other: &Totals) -> usize {
        let mine = self.0.iter().filter(|(k, n)| other.0.get(k) != Some(n));
        let theirs = other.0.keys().filter(|k| !self.0.contains_key(k));
        mine.count() + theirs.count()
    }

    /// Every sum that is not zero.
    pub fn iter(&self) -> impl Iterator<Item = (Key, i64)> + '_ {
        self.0.iter().map(|(k, n)| (*k, *n))
    }

    /// The facts of `[from, to)` (whole days, ending after every entry and enrolment counted)
    /// under a program of `tiers` tiers, but for each member's last purchase and the tier
    /// moves, which are not sums, and what the ledger does not give.
    pub fn facts(&self, from: Timestamp, to: Timestamp, tiers: usize) -> Facts {
        let mut facts = Facts::new(from, to, tiers);
        let (first_day, last_day) = (day_of(from), day_of(to) - 1);
        let (first_month, last_month) = (month_of_day(first_day), month_of_day(last_day));
        let mut enrolled_by_month: BTreeMap<i64, i64> = BTreeMap::new();
        let mut cohort_cells = Vec::new();
        let mut tier_days = Vec::new();
        for (key, n) in self.iter() {
            let in_period = key.at >= first_day && key.at <= last_day;
            let row = usize::try_from(month_of_day(key.at) - first_month)
                .ok()
                .filter(|_| in_period && key.sum != Sum::CohortBuyers)
                .and_then(|i| facts.months.get_mut(i));
            match key.sum {
                Sum::Enrolled => {
                    add_to(&mut facts.enrolled, n);
                    *enrolled_by_month.entry(month_of_day(key.at)).or_insert(0) += n;
                    if in_period {
                        add_to(&mut facts.new_members, n);
                        if let Some(r) = row {
                            add_to(&mut r.new_members, n);
                        }
                    }
                }
                Sum::Orders if in_period => {
                    add_to(&mut facts.member_orders, n);
                    if let Some(r) = row {
                        add_to(&mut r.member_orders, n);
                    }
                }
                Sum::Revenue if in_period => facts.member_revenue += n,
                Sum::PointsEarned if in_period => {
                    facts.points_earned += n;
                    if let Some(r) = row {
                        r.points_earned += n;
                    }
                }
                Sum::PointsRedeemed if in_period => {
                    facts.points_redeemed += n;
                    if let Some(r) = row {
                        r.points_redeemed += n;
                    }
                }
                Sum::LastSale if in_period => add_to(&mut facts.active, n),
                Sum::SecondLastSale if in_period => add_to(&mut facts.repeaters, n),
                Sum::LastSaleOfMonth => {
                    if let Some(r) = row {
                        add_to(&mut r.active_members, n);
                    }
                }
                Sum::OffersUnlocked if in_period => {
                    add_to(&mut facts.mechanics.offers_unlocked, n);
                }
                Sum::OffersUsed if in_period => add_to(&mut facts.mechanics.offers_used, n),
                Sum::Badges if in_period => add_to(&mut facts.mechanics.badges_awarded, n),
                Sum::WelcomeBacks if in_period => add_to(&mut facts.mechanics.welcome_backs, n),
                Sum::CameBack if in_period => add_to(&mut facts.mechanics.came_back, n),
                Sum::Tier => tier_days.push((key.at, key.of, n)),
                Sum::CohortBuyers => cohort_cells.push((key.of, key.at, n)),
                Sum::Outstanding => facts.outstanding_points += n,
                _ => {}
            }
        }
        for (cohort, members) in enrolled_by_month {
            let months = usize::try_from(last_month - cohort + 1).unwrap_or(0);
            let (m, _) = facts
                .cohorts
                .entry(cohort)
                .or_insert_with(|| (0, vec![0; months]));
            add_to(m, members);
        }
        for (cohort, month, n) in cohort_cells {
            if let Some((_, active)) = facts.cohorts.get_mut(&cohort)
                && let Some(slot) = usize::try_from(month - cohort)
                    .ok()
                    .and_then(|k| active.get_mut(k))
            {
                add_to(slot, n);
            }
        }
        // Members per tier at each month's end: every change up to the last day of the month
        // (of the period, for its last month).
        tier_days.sort_unstable();
        let mut in_tier = vec![0i64; tiers];
        let mut changes = tier_days.iter().peekable();
        for (i, row) in facts.months.iter_mut().enumerate() {
            let month = first_month + i as i64;
            let end = day_of(super::month_start(month + 1)).min(last_day + 1) - 1;
            while let Some((_, tier, n)) = changes.next_if(|(day, _, _)| *day <= end) {
                if let Some(c) = usize::try_from(*tier).ok().and_then(|t| in_tier.get_mut(t)) {
                    *c += n;
                }
            }
            for (count, n) in row.tiers.iter_mut().zip(&in_tier) {
                *count = usize::try_from(*n).unwrap_or(0);
            }
        }
        facts
    }
}

/// Members moving up and down a tier over `[from, to)`: of members enrolled by `from`, those
/// whose tier at the period's end is higher, and lower, than at its start. `changes` are every
/// change in the period (after `from`, up to the end), with the member and their enrolment, in
/// any order.
pub fn moved(
    changes: impl IntoIterator<Item = (MemberId, Timestamp, TierChange)>,
    from: Timestamp,
) -> (usize, usize) {
    // Per member: their first change in the period (the tier before it is the start's) and
    // their last (the tier after it is the end's).
    let mut ends: HashMap<MemberId, (TierChange, TierChange)> = HashMap::new();
    for (member, enrolled_at, change) in changes {
        if enrolled_at > from {
            continue;
        }
        let (first, last) = ends.entry(member).or_insert((change, change));
        if change.at < first.at {
            *first = change;
        }
        if change.at > last.at {
            *last = change;
        }
    }
    let (mut up, mut down) = (0, 0);
    for (first, last) in ends.values() {
        up += usize::from(last.after > first.before);
        down += usize::from(last.after < first.before);
    }
    (up, down)
}

/// Whether totals answer `[from, to)`: whole days, ending after every entry (`latest_at`) and
/// every enrolment (`latest_enrolled`) counted, in milliseconds.
pub fn totals_answer(
    from: Timestamp,
    to: Timestamp,
    latest_at: Option<i64>,
    latest_enrolled: Option<i64>,
) -> bool {
    let whole_days = [from, to]
        .iter()
        .all(|t| t.millis().rem_euclid(DAY_MS) == 0);
    let before_end = |at: Option<i64>| at.is_none_or(|at| at < to.millis());
    whole_days && before_end(latest_at) && before_end(latest_enrolled)
}

/// Adds a sum to a count (sums of counts never go below zero).
fn add_to(count: &mut usize, n: i64) {
    *count = count.saturating_add_signed(isize::try_from(n).unwrap_or(0));
}

/// The month (months since year 0) of a day.
fn month_of_day(day: i64) -> i64 {
    month_index(Timestamp::from_millis(day.saturating_mul(DAY_MS)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::insights::digest::tests::{ANY_PERIOD_FOR_TESTS, entries, program, raw};
    use crate::domain::insights::{AtRisk, FactsBuilder, MemberFacts};
    use proptest::prelude::*;

    proptest! {
        /// For any period of whole days ending after every entry and enrolment, the totals
        /// (with the last purchases and tier changes read beside them) give the facts that
        /// counting every member's digest gives; a digest taken off leaves nothing behind.
        #[test]
        fn the_totals_count_as_the_digests_do(
            members in prop::collection::vec((raw(), -10i64..900, any::<bool>()), 1..6),
            by_spend in any::<bool>(),
            from_day in 0i64..900,
            near in prop::option::of((any::<prop::sample::Index>(), 0i64..2)),
            to_day in 901i64..1_100,
        ) {
            let p = program(by_spend);
            let members: Vec<_> = members
                .into_iter()
                .map(|(raw, enrolled_day, consent)| (entries(raw), enrolled_day, consent))
                .collect();
            // Periods starting on a sale's day or the day after, where an off-by-one day shows.
            let days: Vec<i64> = members
                .iter()
                .flat_map(|(entries, _, _)| entries.iter())
                .filter(|e| e.kind == crate::domain::EntryKind::Earn && e.amount_minor.is_some())
                .map(|e| day_of(e.occurred_at))
                .collect();
            let from_day = match near {
                Some((pick, shift)) if !days.is_empty() => days[pick.index(days.len())] + shift,
                _ => from_day,
            };
            let (from, to) = (
                Timestamp::from_millis(from_day * DAY_MS),
                Timestamp::from_millis(to_day * DAY_MS),
            );
            let mut builder = FactsBuilder::new(&p, from, to);
            let mut totals = Totals::default();
            let (mut changes, mut last_purchases) = (Vec::new(), Vec::new());
            for (i, (entries, enrolled_day, consent)) in members.into_iter().enumerate() {
                let member = MemberFacts {
                    id: MemberId(uuid::Uuid::from_u128(i as u128)),
                    enrolled_at: Timestamp::from_millis(enrolled_day * DAY_MS + 1),
                    marketing_consent: consent,
                };
                let digest = Digest::of(&p, &entries, ANY_PERIOD_FOR_TESTS);
                let mut alone = Totals::default();
                alone.count(member.enrolled_at, &digest, 1);
                alone.count(member.enrolled_at, &digest, -1);
                prop_assert_eq!(&alone, &Totals::default());
                totals.count(member.enrolled_at, &Digest::default(), 1);
                totals.count(member.enrolled_at, &Digest::default(), -1);
                totals.count(member.enrolled_at, &digest, 1);
                changes.extend(
                    digest
                        .tier_changes()
                        .filter(|c| c.at > from && c.at < to)
                        .map(|c| (member.id, member.enrolled_at, c)),
                );
                if let Some(last_purchase) = digest.last_sale() {
                    last_purchases.push(AtRisk {
                        member: member.id,
                        last_purchase,
                        marketing_consent: member.marketing_consent,
                    });
                }
                builder.add_digest(Some(member), &digest);
            }
            let mut facts = totals.facts(from, to, p.tiers.len());
            changes.reverse();
            facts.last_purchases = last_purchases;
            (facts.moved_up, facts.moved_down) = moved(changes, from);
            prop_assert_eq!(facts, builder.finish());
        }
    }

    #[test]
    fn every_sum_has_its_own_code() {
        for sum in Sum::ALL {
            assert_eq!(Sum::from_code(sum.code()), Some(sum));
        }
        assert_eq!(Sum::from_code(Sum::ALL.len() as i64), None);
        assert_eq!(Sum::from_code(-1), None);
    }
}
