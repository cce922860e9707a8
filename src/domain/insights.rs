//! Is the program working? The measures loyalty programs are judged by, computed from what a
//! store or the server knows: members, sales (with or without a member) and points. Pure: the
//! same facts give the same report on a till, in the CLI and on the server.
//!
//! A period is `[from, to)` in UTC. A sale is an earn entry not cancelled (reversed, or returned
//! in full; a partial return leaves the visit and takes its money off the sale), or a guest
//! sale (no member). Every measure carries the formula it was computed with, shown beside it.
//!
//! [`Facts`] are counted one member at a time, so a store of any size is read once and never
//! held whole: from each member's entries ([`FactsBuilder::add`]) or from a digest of them kept
//! beside the ledger ([`Digest`], [`FactsBuilder::add_digest`]), which count the same. A store
//! keeps what the digests add up to by day ([`Totals`]), which gives the facts of a period of
//! whole days without counting any member.

use std::collections::BTreeMap;

use serde::Serialize;
use time::{Date, Month};

use super::{Entry, EntryKind, MemberId, Program, Timestamp};

mod digest;
mod record;
mod totals;

pub use digest::{Digest, DigestError};
pub use record::{Record, StoredRecord};
pub use totals::{Key, Sum, TierChange, Totals, day_of, moved, totals_answer};

/// Months a member is expected to stay at most, when measured retention is (almost) total.
pub const MAX_LIFETIME_MONTHS: f64 = 120.0;

/// A sale without a member, as a till recorded it: no personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestSale {
    pub id: uuid::Uuid,
    pub occurred_at: Timestamp,
    pub amount_minor: i64,
}

/// A sale without a member undone by the till that recorded it (typed wrong, or recorded
/// twice): it no longer counts in any report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestSaleVoid {
    /// The sale's id.
    pub sale: uuid::Uuid,
    /// When the sale was undone (not when it was made).
    pub occurred_at: Timestamp,
}

/// A customer's answer (0 to 10) to "how likely are you to recommend us?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendAnswer {
    pub id: uuid::Uuid,
    pub occurred_at: Timestamp,
    pub score: u8,
    /// The member who answered; `None` for a guest.
    pub member_id: Option<MemberId>,
    /// The sale without a member a guest answered after, if it was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_sale: Option<uuid::Uuid>,
}

/// A member as the measures see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberFacts {
    pub id: MemberId,
    pub enrolled_at: Timestamp,
    pub marketing_consent: bool,
}

/// What one of a member's entries that stood counts for: when, its money when it is a
/// purchase (less what returns brought back), and the points it earned and redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub at: Timestamp,
    pub sale: Option<i64>,
    pub earned: i64,
    pub redeemed: i64,
}

/// Everything a report is computed from, counted for one period `[from, to)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub from: Timestamp,
    pub to: Timestamp,
    /// Members enrolled before the period's end, and of those, in the period.
    pub enrolled: usize,
    pub new_members: usize,
    /// Buyers (members known or not) with a purchase in the period, and with two or more.
    pub active: usize,
    pub repeaters: usize,
    /// Sales to members in the period, and their money in minor units, returns netted.
    pub member_orders: usize,
    pub member_revenue: i64,
    /// Sales without a member in the period, and their money.
    pub guest_orders: usize,
    pub guest_revenue: i64,
    /// Points earned in the period (entries of earning kinds, less what returns took back,
    /// reversals netted).
    pub points_earned: i64,
    /// Points redeemed in the period (as a positive number, reversals netted).
    pub points_redeemed: i64,
    /// Sum of every member's positive balance now (every entry of theirs, before the period's
    /// end or not).
    pub outstanding_points: i64,
    /// Answers to "how likely are you to recommend us?" in the period, by score (0 to 10).
    pub scores: [usize; 11],
    /// Each month the period touches, oldest first, counted within the period.
    pub months: Vec<MonthRow>,
    /// Per enrolment month (months since year 0): its members enrolled before the period's
    /// end, and how many of them bought in each month since, up to the period's end.
    pub cohorts: BTreeMap<i64, (usize, Vec<usize>)>,
    /// Each member enrolled before the period's end who bought before it: their last purchase
    /// (from the totals, only those before the churn cutoff, the ones the report lists).
    pub last_purchases: Vec<AtRisk>,
    /// Members enrolled before the period in a higher tier at its end than at its start, and
    /// in a lower one.
    pub moved_up: usize,
    pub moved_down: usize,
    /// How the offers, badges and welcome-back offers did.
    pub mechanics: MechanicFacts,
}

impl Facts {
    /// Nothing counted yet for `[from, to)`, under a program of `tiers` tiers.
    pub fn new(from: Timestamp, to: Timestamp, tiers: usize) -> Self {
        let end = Timestamp::from_millis(to.millis() - 1);
        let months = (month_index(from)..=month_index(end))
            .map(|i| MonthRow::empty(month_label(i), tiers))
            .collect();
        Self {
            from,
            to,
            enrolled: 0,
            new_members: 0,
            active: 0,
            repeaters: 0,
            member_orders: 0,
            member_revenue: 0,
            guest_orders: 0,
            guest_revenue: 0,
            points_earned: 0,
            points_redeemed: 0,
            outstanding_points: 0,
            scores: [0; 11],
            months,
            cohorts: BTreeMap::new(),
            last_purchases: Vec::new(),
            moved_up: 0,
            moved_down: 0,
            mechanics: MechanicFacts::default(),
        }
    }

    fn in_period(&self, at: Timestamp) -> bool {
        at >= self.from && at < self.to
    }

    /// The month row `at` (in the period) falls in.
    fn month_mut(&mut self, at: Timestamp) -> Option<&mut MonthRow> {
        let first = month_index(self.from);
        let slot = usize::try_from(month_index(at) - first).ok()?;
        self.months.get_mut(slot)
    }

    /// Counts one member's entries that stood, oldest first ([`Counted`]), and the member:
    /// `Some` when enrolled before the period's end (with or without entries), `None` for the
    /// entries of a member not (yet) enrolled by then, whose sales count as sales only.
    pub fn add_member(&mut self, member: Option<&MemberFacts>, entries: &[Counted]) {
        let before_end = &entries[..entries.partition_point(|e| e.at < self.to)];
        let first = month_index(self.from);
        let last = month_index(Timestamp::from_millis(self.to.millis() - 1));
        // The member's cohort (enrolment month) and its row of months bought in.
        let mut cohort = member.map(|m| {
            let c = month_index(m.enrolled_at);
            let (members, active) = self
                .cohorts
                .entry(c)
                .or_insert_with(|| (0, vec![0; usize::try_from(last - c + 1).unwrap_or(0)]));
            *members += 1;
            (c, active)
        });
        let (mut orders, mut revenue, mut last_sale) = (0usize, 0i64, None);
        // The month of the sale before, and of the sale in the period before.
        let (mut last_month, mut last_in_period) = (None, None);
        for e in before_end {
            let month = month_index(e.at);
            let in_period = e.at >= self.from;
            let mut row = usize::try_from(month - first)
                .ok()
                .filter(|_| in_period)
                .and_then(|i| self.months.get_mut(i));
            if in_period {
                self.points_earned += e.earned;
                self.points_redeemed += e.redeemed;
                if let Some(row) = row.as_mut() {
                    row.points_earned += e.earned;
                    row.points_redeemed += e.redeemed;
                }
            }
            let Some(amount) = e.sale else {
                continue;
            };
            last_sale = Some(e.at);
            if last_month != Some(month)
                && let Some((c, active)) = cohort.as_mut()
                && let Some(slot) = usize::try_from(month - *c)
                    .ok()
                    .and_then(|k| active.get_mut(k))
            {
                *slot += 1;
            }
            last_month = Some(month);
            if in_period {
                orders += 1;
                revenue += amount;
                if let Some(row) = row {
                    row.member_orders += 1;
                    row.active_members += usize::from(last_in_period != Some(month));
                }
                last_in_period = Some(month);
            }
        }
        self.member_orders += orders;
        self.member_revenue += revenue;
        self.active += usize::from(orders >= 1);
        self.repeaters += usize::from(orders >= 2);
        let Some(member) = member else {
            return;
        };
        self.enrolled += 1;
        if self.in_period(member.enrolled_at) {
            self.new_members += 1;
            if let Some(row) = self.month_mut(member.enrolled_at) {
                row.new_members += 1;
            }
        }
        if let Some(at) = last_sale {
            self.last_purchases.push(AtRisk {
                member: member.id,
                last_purchase: at,
                marketing_consent: member.marketing_consent,
            });
        }
    }

    /// Adds what a till records besides the ledger, summed by UTC day: sales without a member
    /// and recommend answers, those of days in the period (periods run from midnight to
    /// midnight, UTC).
    pub fn add_extras(&mut self, sales: &[GuestDay], answers: &[ScoreDay]) {
        for s in sales {
            let day = Timestamp::from_millis(s.day);
            if self.in_period(day) {
                self.guest_orders += s.orders;
                self.guest_revenue += s.revenue;
                if let Some(row) = self.month_mut(day) {
                    row.guest_orders += s.orders;
                }
            }
        }
        for a in answers {
            let day = Timestamp::from_millis(a.day);
            let Some(score) = usize::try_from(a.score).ok().filter(|s| *s <= 10) else {
                continue;
            };
            if self.in_period(day) {
                self.scores[score] += a.answers;
                if let Some(row) = self.month_mut(day) {
                    row.nps_answers += a.answers;
                    row.nps_promoters += if score >= 9 { a.answers } else { 0 };
                    row.nps_detractors += if score <= 6 { a.answers } else { 0 };
                }
            }
        }
    }
}

/// Sales without a member on one UTC day (`day`, its midnight in milliseconds): how many, and
/// what they came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestDay {
    pub day: i64,
    pub orders: usize,
    pub revenue: i64,
}

impl GuestDay {
    /// A day as stored (a count is never negative).
    pub fn stored(day: i64, orders: i64, revenue: i64) -> Self {
        Self {
            day,
            orders: usize::try_from(orders).unwrap_or(0),
            revenue,
        }
    }
}

/// How many answered the recommend question with `score` on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreDay {
    pub day: i64,
    pub score: i64,
    pub answers: usize,
}

impl ScoreDay {
    /// A day's count of a score as stored (a count is never negative).
    pub fn stored(day: i64, score: i64, answers: i64) -> Self {
        Self {
            day,
            score,
            answers: usize::try_from(answers).unwrap_or(0),
        }
    }
}

/// How the program's mechanics did in a period, counted from members' entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MechanicFacts {
    /// Offers unlocked by repeat purchases in the period (unlocks that stood), and how many
    /// of those were used by the period's end.
    pub offers_unlocked: usize,
    pub offers_used: usize,
    /// Badges awarded in the period (awards that stood).
    pub badges_awarded: usize,
    /// Welcome-back offers given in the period, and how many of those members bought while it
    /// was open.
    pub welcome_backs: usize,
    pub came_back: usize,
}

impl MechanicFacts {
    /// Counts one member's mechanics for `[from, to)`, as their entries before `to` give them.
    pub fn add(&mut self, events: &MechanicEvents, from: Timestamp, to: Timestamp) {
        let in_period = |at: Timestamp| at >= from && at < to;
        for &(_, used) in events.offers.iter().filter(|(at, _)| in_period(*at)) {
            self.offers_unlocked += 1;
            self.offers_used += usize::from(used);
        }
        self.badges_awarded += events.badges.iter().filter(|at| in_period(**at)).count();
        for &(_, back) in events.welcome_backs.iter().filter(|(at, _)| in_period(*at)) {
            self.welcome_backs += 1;
            self.came_back += usize::from(back);
        }
    }
}

/// One member's mechanics as their entries before an instant give them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MechanicEvents {
    /// Offers unlocked by repeat purchases (unlocks that stood), and whether each was used.
    pub offers: Vec<(Timestamp, bool)>,
    /// Badges awarded (awards that stood).
    pub badges: Vec<Timestamp>,
    /// Welcome-back offers given, and whether the member bought while each was open.
    pub welcome_backs: Vec<(Timestamp, bool)>,
}

impl MechanicEvents {
    /// From one member's entries before `to` (any order).
    pub fn of(program: &Program, entries: &[Entry], to: Timestamp) -> Self {
        // Only members with an offer or a badge have any; their purchases and take-backs decide.
        if !entries
            .iter()
            .any(|e| matches!(e.kind, EntryKind::OfferUnlocked | EntryKind::BadgeAwarded))
        {
            return Self::default();
        }
        let welcome_back = program.reengagement.as_ref().map(|r| r.offer.as_str());
        Self {
            offers: super::offers::book(program, entries, to)
                .history
                .into_iter()
                .filter(|(offer, _, _)| Some(offer.as_str()) != welcome_back)
                .map(|(_, at, used)| (at, used))
                .collect(),
            badges: super::badges::standing(entries)
                .into_iter()
                .map(|e| e.occurred_at)
                .collect(),
            welcome_backs: super::offers::came_back(program, entries),
        }
    }
}

/// Gathers [`Facts`] one member at a time, so that a store of any size is read once, member by
/// member, and never held whole: each member's entries (or digest) are counted and let go.
pub struct FactsBuilder<'p> {
    program: &'p Program,
    /// The instants tiers are counted at: each month's end in the period, the last month's at
    /// the period's end.
    month_ends: Vec<Timestamp>,
    facts: Facts,
}

impl<'p> FactsBuilder<'p> {
    /// An empty count for `[from, to)` under `program`.
    pub fn new(program: &'p Program, from: Timestamp, to: Timestamp) -> Self {
        let end = Timestamp::from_millis(to.millis() - 1);
        let month_ends = (month_index(from)..=month_index(end))
            .map(|i| Timestamp::from_millis(month_start(i + 1).millis() - 1).min(end))
            .collect();
        Self {
            program,
            month_ends,
            facts: Facts::new(from, to, program.tiers.len()),
        }
    }

    /// Counts one member with every entry of theirs, oldest first: `member` when enrolled
    /// before the period's end (`None` counts the entries of one enrolled later, or unknown).
    /// A points entry counts while no entry of the member reverses it; a sale while it is not
    /// cancelled (`returns::cancelled`), for its amount less what returns brought back.
    pub fn add(&mut self, member: Option<MemberFacts>, entries: &[Entry]) {
        let digest = Digest::of(self.program, entries, self.facts.to);
        self.add_digest(member, &digest);
    }

    /// Counts one member from their [`Digest`], which must have been made from every entry of
    /// theirs before the period's end (and none after it): it counts as [`FactsBuilder::add`].
    pub fn add_digest(&mut self, member: Option<MemberFacts>, digest: &Digest) {
        self.facts.add_member(member.as_ref(), &digest.entries);
        self.facts.outstanding_points += digest.balance.max(0);
        let (from, to) = (self.facts.from, self.facts.to);
        self.facts.mechanics.add(&digest.mechanics, from, to);
        if let Some(member) = member {
            self.add_tiers(&member, digest);
        }
    }

    /// The member's tier at the period's start and end, and at each month's end.
    fn add_tiers(&mut self, member: &MemberFacts, digest: &Digest) {
        let tier_at = |at: Timestamp| (member.enrolled_at <= at).then(|| digest.tier_at(at));
        let facts = &mut self.facts;
        let end = Timestamp::from_millis(facts.to.millis() - 1);
        if let (Some(before), Some(after)) = (tier_at(facts.from), tier_at(end)) {
            facts.moved_up += usize::from(after > before);
            facts.moved_down += usize::from(after < before);
        }
        for (at, row) in self.month_ends.iter().zip(facts.months.iter_mut()) {
            if let Some(c) = tier_at(*at).and_then(|t| row.tiers.get_mut(t)) {
                *c += 1;
            }
        }
    }

    /// The facts counted, with the sum of positive balances now ([`Facts::add_extras`] adds
    /// sales without a member and recommend answers).
    pub fn finish(self) -> Facts {
        self.facts
    }

    /// The end of the period counted.
    pub fn to(&self) -> Timestamp {
        self.facts.to
    }
}

/// Feeds a [`FactsBuilder`] from two streams in member id order (byte order, as databases order
/// them): the members, and every entry grouped by member. Each member's entries are held only
/// until the next member's first entry arrives.
pub struct ByMember<'p> {
    builder: FactsBuilder<'p>,
    /// Members not yet counted, the next one last.
    members: Vec<MemberFacts>,
    theirs: Vec<Entry>,
    /// The last member counted.
    last: Option<MemberId>,
}

/// Entries that came out of member order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entries are not grouped by member: member {0} came after a later one")]
pub struct OutOfOrder(pub MemberId);

impl<'p> ByMember<'p> {
    /// Counts into `builder` the `members` enrolled before its period's end (any order).
    pub fn new(builder: FactsBuilder<'p>, mut members: Vec<MemberFacts>) -> Self {
        members.retain(|m| m.enrolled_at < builder.to());
        members.sort_unstable_by_key(|m| std::cmp::Reverse(m.id));
        Self {
            builder,
            members,
            theirs: Vec::new(),
            last: None,
        }
    }

    /// The next entry, in member order (any order within a member).
    pub fn push(&mut self, entry: Entry) -> Result<(), OutOfOrder> {
        match self.theirs.first().map(|e| e.member_id) {
            Some(current) if entry.member_id < current => return Err(OutOfOrder(entry.member_id)),
            Some(current) if entry.member_id > current => self.flush(),
            None if self.last.is_some_and(|last| entry.member_id <= last) => {
                return Err(OutOfOrder(entry.member_id));
            }
            _ => {}
        }
        self.theirs.push(entry);
        Ok(())
    }

    /// Counts the member whose entries are held, and every member before them without any.
    fn flush(&mut self) {
        let Some(id) = self.theirs.first().map(|e| e.member_id) else {
            return;
        };
        self.last = Some(id);
        let member = self.next_member(id);
        self.theirs.sort_by_key(|e| (e.occurred_at, e.id));
        self.builder.add(member, &self.theirs);
        self.theirs.clear();
    }

    /// Counts every member before `id` (who have no entries) and takes `id` if enrolled.
    fn next_member(&mut self, id: MemberId) -> Option<MemberFacts> {
        while let Some(m) = self.members.pop_if(|m| m.id < id) {
            self.builder.add_digest(Some(m), &Digest::default());
        }
        self.members.pop_if(|m| m.id == id)
    }

    /// Every member counted: the builder, for what the ledger does not give.
    pub fn finish(mut self) -> FactsBuilder<'p> {
        self.flush();
        while let Some(m) = self.members.pop() {
            self.builder.add_digest(Some(m), &Digest::default());
        }
        self.builder
    }
}

/// Net promoter score of `answers`: % promoters (9-10) minus % detractors (0-6), -100 to 100;
/// `None` without answers.
pub fn nps(answers: impl IntoIterator<Item = u8>) -> Option<f64> {
    let (mut n, mut promoters, mut detractors) = (0usize, 0usize, 0usize);
    for score in answers {
        n += 1;
        promoters += usize::from(score >= 9);
        detractors += usize::from(score <= 6);
    }
    (n > 0).then(|| (promoters as f64 - detractors as f64) * 100.0 / n as f64)
}

/// `[from, to)` from two optional days (`YYYY-MM-DD`, UTC): `to` defaults to tomorrow (today
/// included), `from` to 90 days before `to`.
pub fn period(
    from: Option<&str>,
    to: Option<&str>,
    now: Timestamp,
) -> Result<(Timestamp, Timestamp), String> {
    let to = match to {
        Some(text) => parse_day(text).map_err(|e| format!("to {e}"))?,
        None => last_days(now, 0).1,
    };
    let from = match from {
        Some(text) => parse_day(text).map_err(|e| format!("from {e}"))?,
        None => to.plus_days(-90),
    };
    if from >= to {
        return Err("from must be before to".into());
    }
    Ok((from, to))
}

/// A day as `YYYY-MM-DD`, to its first instant (UTC).
pub fn parse_day(text: &str) -> Result<Timestamp, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = Date::parse(text.trim(), &format)
        .map_err(|_| format!("{text:?}: expected a day as YYYY-MM-DD"))?;
    Ok(Timestamp::from_millis(
        date.midnight().assume_utc().unix_timestamp() * 1000,
    ))
}

/// One month of the period, for the pictures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonthRow {
    /// `YYYY-MM`.
    pub month: String,
    pub active_members: usize,
    pub new_members: usize,
    pub member_orders: usize,
    pub guest_orders: usize,
    pub points_earned: i64,
    pub points_redeemed: i64,
    /// Answers to the recommend question this month: promoters (9-10), detractors (0-6), all.
    pub nps_promoters: usize,
    pub nps_detractors: usize,
    pub nps_answers: usize,
    /// Members per tier at the month's end (the period's end for the last month).
    pub tiers: Vec<usize>,
}

impl MonthRow {
    /// `month` (`YYYY-MM`) with nothing counted yet, under a program of `tiers` tiers.
    pub fn empty(month: String, tiers: usize) -> Self {
        Self {
            month,
            active_members: 0,
            new_members: 0,
            member_orders: 0,
            guest_orders: 0,
            points_earned: 0,
            points_redeemed: 0,
            nps_promoters: 0,
            nps_detractors: 0,
            nps_answers: 0,
            tiers: vec![0; tiers],
        }
    }

    /// This month's net promoter score, `None` without answers.
    pub fn nps(&self) -> Option<f64> {
        (self.nps_answers > 0).then(|| {
            (self.nps_promoters as f64 - self.nps_detractors as f64) * 100.0
                / self.nps_answers as f64
        })
    }
}

/// The program's settings the measures need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// A member with no purchase for this many days is at risk of leaving.
    pub churn_days: i64,
    /// What 1,000 outstanding points would cost the business, in minor units.
    pub cost_per_1000_points_minor: i64,
    /// The program's currency and its decimal places, for money in the formulas.
    pub currency: String,
    pub minor_units: u8,
}

impl Settings {
    /// What the measures need of `program`.
    pub fn of(program: &Program) -> Self {
        Self {
            churn_days: program.churn_days,
            cost_per_1000_points_minor: program.cost_per_1000_points_minor,
            currency: program.currency.clone(),
            minor_units: program.minor_units,
        }
    }

    /// Money in minor units as a manager reads it, e.g. `13.53 GBP`.
    fn money(&self, minor: i64) -> String {
        super::money::format_money(minor, self.minor_units, &self.currency)
    }
}

/// A number with how it was computed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measure {
    /// Stable key for JSON and CSV, e.g. `repeat_purchase_rate`.
    pub key: &'static str,
    /// What a manager reads, e.g. "Repeat purchase rate".
    pub name: &'static str,
    /// `None` when there is nothing to measure (no sales in the period, say).
    pub value: Option<f64>,
    /// How the value reads: a count, a rate (0..1), money in minor units, or a plain number.
    pub unit: Unit,
    /// The formula, with the numbers that went into it.
    pub formula: String,
}

impl Measure {
    /// The value as a manager reads it: `73.6%`, `12.68 GBP`, `4.33`, `193`, or `-` when
    /// there is nothing to measure.
    pub fn value_text(&self, program: &super::Program) -> String {
        let Some(v) = self.value else {
            return "-".to_owned();
        };
        match self.unit {
            Unit::Count => format!("{v:.0}"),
            Unit::Rate => format!("{:.1}%", v * 100.0),
            Unit::MinorUnits => program.format_money(v.round() as i64),
            Unit::Number => format!("{v:.2}"),
        }
    }
}

/// How a measure's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Count,
    Rate,
    MinorUnits,
    Number,
}

/// One monthly cohort: members enrolled in a month, and the share of them buying in each month
/// since (offset 0 = the enrolment month), up to the period's end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cohort {
    /// `YYYY-MM`.
    pub month: String,
    pub members: usize,
    /// Members with a purchase in each month since enrolment.
    pub active: Vec<usize>,
}

impl Cohort {
    /// Retention in month `k` since enrolment: active / members.
    pub fn rate(&self, k: usize) -> Option<f64> {
        let active = *self.active.get(k)?;
        (self.members > 0).then(|| active as f64 / self.members as f64)
    }
}

/// The report for one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub from: Timestamp,
    pub to: Timestamp,
    pub measures: Vec<Measure>,
    /// Each month the period touches, oldest first.
    pub months: Vec<MonthRow>,
    pub cohorts: Vec<Cohort>,
    /// Members with a purchase, none in the last `churn_days` before the period's end, oldest
    /// last purchase first.
    pub at_risk: Vec<AtRisk>,
}

/// A member slipping away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AtRisk {
    pub member: MemberId,
    pub last_purchase: Timestamp,
    pub marketing_consent: bool,
}

impl Report {
    /// The measure under `key`.
    pub fn get(&self, key: &str) -> Option<&Measure> {
        self.measures.iter().find(|m| m.key == key)
    }
}

/// Computes every measure for the period the facts were counted for.
pub fn report(facts: &Facts, settings: &Settings) -> Report {
    let (from, to) = (facts.from, facts.to);
    let (member_orders, member_revenue) = (facts.member_orders, facts.member_revenue);
    let (guest_orders, guest_revenue) = (facts.guest_orders, facts.guest_revenue);
    let (active, repeaters) = (facts.active, facts.repeaters);
    let (enrolled, new) = (facts.enrolled, facts.new_members);
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    let months = months_between(from, to);
    let cohorts = cohorts(facts);
    let retention = month_one_retention(&cohorts, to);
    let aov_members = ratio(member_revenue as f64, member_orders as f64);
    let monthly_frequency = ratio(member_orders as f64, active as f64 * months);
    let lifetime = retention.map(|r| {
        if r >= 1.0 - 1.0 / MAX_LIFETIME_MONTHS {
            MAX_LIFETIME_MONTHS
        } else {
            1.0 / (1.0 - r)
        }
    });
    let clv = match (aov_members, monthly_frequency, lifetime) {
        (Some(a), Some(f), Some(l)) => Some(a * f * l),
        _ => None,
    };
    let liability =
        facts.outstanding_points as f64 * settings.cost_per_1000_points_minor as f64 / 1000.0;
    let at_risk = at_risk(facts, settings.churn_days);
    let answers: usize = facts.scores.iter().sum();
    let m = &facts.mechanics;
    let f2 = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    let measures = vec![
        Measure {
            key: "active_members",
            name: "Active members",
            value: Some(active as f64),
            unit: Unit::Count,
            formula: "members with at least one purchase in the period".into(),
        },
        Measure {
            key: "new_members",
            name: "New members",
            value: Some(new as f64),
            unit: Unit::Count,
            formula: "members enrolled in the period".into(),
        },
        Measure {
            key: "member_orders",
            name: "Member purchases",
            value: Some(member_orders as f64),
            unit: Unit::Count,
            formula: "sales to members in the period, sales reversed or returned in full left out"
                .into(),
        },
        Measure {
            key: "guest_orders",
            name: "Non-member purchases",
            value: Some(guest_orders as f64),
            unit: Unit::Count,
            formula: "sales recorded without a member in the period".into(),
        },
        Measure {
            key: "repeat_purchase_rate",
            name: "Repeat purchase rate",
            value: ratio(repeaters as f64, active as f64),
            unit: Unit::Rate,
            formula: format!(
                "members with 2+ purchases / members with a purchase = {repeaters} / {active}"
            ),
        },
        Measure {
            key: "purchase_frequency",
            name: "Purchase frequency",
            value: ratio(member_orders as f64, active as f64),
            unit: Unit::Number,
            formula: format!(
                "member purchases / unique member customers = {member_orders} / {active}"
            ),
        },
        Measure {
            key: "aov_members",
            name: "Average order value, members",
            value: aov_members,
            unit: Unit::MinorUnits,
            formula: format!(
                "member revenue / member purchases = {} / {member_orders}",
                settings.money(member_revenue)
            ),
        },
        Measure {
            key: "aov_guests",
            name: "Average order value, non-members",
            value: ratio(guest_revenue as f64, guest_orders as f64),
            unit: Unit::MinorUnits,
            formula: format!(
                "non-member revenue / non-member purchases = {} / {guest_orders}",
                settings.money(guest_revenue)
            ),
        },
        Measure {
            key: "visits_per_member",
            name: "Visits per member",
            value: ratio(member_orders as f64, enrolled as f64),
            unit: Unit::Number,
            formula: format!(
                "member purchases / members enrolled by the period's end = {member_orders} / {enrolled}"
            ),
        },
        Measure {
            key: "month_one_retention",
            name: "Retention, month after enrolment",
            value: retention,
            unit: Unit::Rate,
            formula: "members buying in the month after their enrolment month / members, over \
                      every cohort with that month complete"
                .into(),
        },
        Measure {
            key: "churn_risk",
            name: "Members at risk",
            value: Some(at_risk.len() as f64),
            unit: Unit::Count,
            formula: format!(
                "members with a purchase but none in the {} days before the period's end",
                settings.churn_days
            ),
        },
        Measure {
            key: "clv",
            name: "Customer lifetime value",
            value: clv,
            unit: Unit::MinorUnits,
            formula: format!(
                "AOV x purchases per active member per month x expected months = \
                 {} x {} x {}, \
                 expected months = 1 / (1 - month-one retention), at most {MAX_LIFETIME_MONTHS}",
                aov_members.map_or("-".to_owned(), |a| settings.money(a.round() as i64)),
                f2(monthly_frequency),
                f2(lifetime)
            ),
        },
        Measure {
            key: "points_liability",
            name: "Points liability",
            value: Some(liability),
            unit: Unit::MinorUnits,
            formula: format!(
                "outstanding points x cost per 1000 points / 1000 = {} x {} / 1000",
                facts.outstanding_points,
                settings.money(settings.cost_per_1000_points_minor)
            ),
        },
        Measure {
            key: "tier_moves_up",
            name: "Tier moves up",
            value: Some(facts.moved_up as f64),
            unit: Unit::Count,
            formula: "members enrolled before the period in a higher tier at its end than at \
                      its start"
                .into(),
        },
        Measure {
            key: "tier_moves_down",
            name: "Tier moves down",
            value: Some(facts.moved_down as f64),
            unit: Unit::Count,
            formula: "members enrolled before the period in a lower tier at its end than at \
                      its start (the rolling window let them slip)"
                .into(),
        },
        Measure {
            key: "nps",
            name: "Net promoter score",
            value: nps(facts
                .scores
                .iter()
                .zip(0u8..)
                .flat_map(|(&n, score)| std::iter::repeat_n(score, n))),
            unit: Unit::Number,
            formula: format!(
                "% promoters (9-10) - % detractors (0-6) of {} answers to \"how likely are you \
                 to recommend us?\", -100 to 100",
                answers
            ),
        },
        Measure {
            key: "redemption_rate",
            name: "Redemption rate",
            value: ratio(facts.points_redeemed as f64, facts.points_earned as f64),
            unit: Unit::Rate,
            formula: format!(
                "points redeemed / points earned in the period = {} / {}",
                facts.points_redeemed, facts.points_earned
            ),
        },
        Measure {
            key: "offer_use_rate",
            name: "Offers used",
            value: ratio(m.offers_used as f64, m.offers_unlocked as f64),
            unit: Unit::Rate,
            formula: format!(
                "offers unlocked by repeat purchases in the period and used / unlocked = {} / {}",
                m.offers_used, m.offers_unlocked
            ),
        },
        Measure {
            key: "badges_awarded",
            name: "Badges awarded",
            value: Some(m.badges_awarded as f64),
            unit: Unit::Count,
            formula: "badges awarded in the period (each once per member)".into(),
        },
        Measure {
            key: "welcome_back_rate",
            name: "Welcome-back offers that worked",
            value: ratio(m.came_back as f64, m.welcome_backs as f64),
            unit: Unit::Rate,
            formula: format!(
                "members given the welcome-back offer in the period who bought while it was open / given = {} / {}",
                m.came_back, m.welcome_backs
            ),
        },
    ];
    Report {
        from,
        to,
        measures,
        months: facts.months.clone(),
        cohorts,
        at_risk,
    }
}

/// The `days` days ending with `now`'s day, UTC: from midnight `days` days before the next
/// midnight, up to that midnight.
pub fn last_days(now: Timestamp, days: i64) -> (Timestamp, Timestamp) {
    let today = date_of(now);
    let tomorrow = today.next_day().unwrap_or(today);
    let to = Timestamp::from_millis(tomorrow.midnight().assume_utc().unix_timestamp() * 1000);
    (to.plus_days(-days), to)
}

/// Months in `[from, to)`, at least one day's worth (30.44 days a month).
fn months_between(from: Timestamp, to: Timestamp) -> f64 {
    let days = (to.millis() - from.millis()).max(86_400_000) as f64 / 86_400_000.0;
    days / 30.436_875
}

/// Months since year 0 of the UTC date of `at`: the proleptic Gregorian calendar in integer
/// arithmetic (Howard Hinnant's `civil_from_days`), as the report asks it for every sale.
fn month_index(at: Timestamp) -> i64 {
    let z = at.millis().div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March: 0 is March, 11 February.
    let m = (5 * day_of_year + 2) / 153;
    let year = year_of_era + era * 400 + i64::from(m >= 10);
    year * 12 + (m + 2) % 12
}

fn date_of(at: Timestamp) -> Date {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.millis()) * 1_000_000)
        .map_or(Date::MIN, |t| t.date())
}

fn month_label(index: i64) -> String {
    let year = index.div_euclid(12);
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).unwrap_or(1))
        .unwrap_or(Month::January);
    format!("{year:04}-{:02}", u8::from(month))
}

/// Monthly cohorts by enrolment month, with activity per month up to the period's end.
fn cohorts(facts: &Facts) -> Vec<Cohort> {
    facts
        .cohorts
        .iter()
        .map(|(&c, (members, active))| Cohort {
            month: month_label(c),
            members: *members,
            active: active.clone(),
        })
        .collect()
}

/// Of every member in a cohort whose month after enrolment ended by `to`, the share who bought
/// in that month.
fn month_one_retention(cohorts: &[Cohort], to: Timestamp) -> Option<f64> {
    let (mut kept, mut members) = (0usize, 0usize);
    for (c, index) in cohorts
        .iter()
        .filter_map(|c| Some((c, parse_month(&c.month)?)))
    {
        if month_start(index + 2) <= to
            && let Some(&active) = c.active.get(1)
        {
            kept += active;
            members += c.members;
        }
    }
    (members > 0).then(|| kept as f64 / members as f64)
}

/// The first instant of month `index` (months since year 0), UTC.
fn month_start(index: i64) -> Timestamp {
    let year = i32::try_from(index.div_euclid(12)).unwrap_or(i32::MAX);
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).unwrap_or(1))
        .unwrap_or(Month::January);
    Date::from_calendar_date(year, month, 1).map_or(Timestamp::from_millis(i64::MAX), |d| {
        Timestamp::from_millis(d.midnight().assume_utc().unix_timestamp() * 1000)
    })
}

/// `YYYY-MM` back to its month index.
fn parse_month(label: &str) -> Option<i64> {
    let (y, m) = label.split_once('-')?;
    Some(y.parse::<i64>().ok()? * 12 + m.parse::<i64>().ok()? - 1)
}

/// Members whose last purchase before the period's end is more than `churn_days` before it.
fn at_risk(facts: &Facts, churn_days: i64) -> Vec<AtRisk> {
    let cutoff = facts.to.plus_days(-churn_days);
    let mut risk: Vec<AtRisk> = facts
        .last_purchases
        .iter()
        .filter(|r| r.last_purchase < cutoff)
        .cloned()
        .collect();
    risk.sort_by_key(|r| (r.last_purchase, r.member.0));
    risk
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: i64 = 86_400_000;

    fn at(y: i32, m: u8, d: u8) -> Timestamp {
        let date =
            Date::from_calendar_date(y, Month::try_from(m).expect("a month"), d).expect("a day");
        let t = date.midnight().assume_utc().unix_timestamp() * 1000;
        Timestamp::from_millis(t + 10 * 3_600_000)
    }

    /// Midnight UTC: where periods start and end.
    fn day(y: i32, m: u8, d: u8) -> Timestamp {
        at(y, m, d).plus_millis(-10 * 3_600_000)
    }

    fn member(n: u128, enrolled: Timestamp, consent: bool) -> MemberFacts {
        MemberFacts {
            id: MemberId(uuid::Uuid::from_u128(n)),
            enrolled_at: enrolled,
            marketing_consent: consent,
        }
    }

    /// A sale by member `n`, or by a guest.
    type Sale = (Option<u128>, Timestamp, i64);

    fn sale(n: Option<u128>, at: Timestamp, amount: i64) -> Sale {
        (n, at, amount)
    }

    fn settings() -> Settings {
        Settings {
            churn_days: 60,
            cost_per_1000_points_minor: 500,
            currency: "GBP".into(),
            minor_units: 2,
        }
    }

    /// `members` and `sales` counted for `[from, to)` as a store counts them: member by member,
    /// each member's sales oldest first; sales of members not enrolled by `to` as sales only.
    fn counted(members: &[MemberFacts], sales: &[Sale], from: Timestamp, to: Timestamp) -> Facts {
        let mut facts = Facts::new(from, to, 0);
        let theirs = |who: Option<MemberId>| {
            let mut v: Vec<(Timestamp, i64)> = sales
                .iter()
                .filter(|(n, _, _)| n.map(|n| MemberId(uuid::Uuid::from_u128(n))) == who)
                .map(|&(_, at, amount)| (at, amount))
                .collect();
            v.sort_unstable();
            v
        };
        let bought = |sales: Vec<(Timestamp, i64)>| -> Vec<Counted> {
            sales
                .into_iter()
                .map(|(at, amount)| Counted {
                    at,
                    sale: Some(amount),
                    earned: 0,
                    redeemed: 0,
                })
                .collect()
        };
        let enrolled: Vec<&MemberFacts> = members.iter().filter(|m| m.enrolled_at < to).collect();
        for m in &enrolled {
            facts.add_member(Some(m), &bought(theirs(Some(m.id))));
        }
        let mut others: Vec<u128> = sales
            .iter()
            .filter_map(|(n, _, _)| *n)
            .filter(|n| !enrolled.iter().any(|m| m.id.0.as_u128() == *n))
            .collect();
        others.sort_unstable();
        others.dedup();
        for n in others {
            facts.add_member(
                None,
                &bought(theirs(Some(MemberId(uuid::Uuid::from_u128(n))))),
            );
        }
        let guests: Vec<GuestDay> = theirs(None)
            .into_iter()
            .map(|(at, amount)| GuestDay {
                day: at.millis(),
                orders: 1,
                revenue: amount,
            })
            .collect();
        facts.add_extras(&guests, &[]);
        facts
    }

    /// A café's first quarter, every number worked out by hand below, counted for
    /// `[from, to)`.
    fn fixture(from: Timestamp, to: Timestamp) -> Facts {
        let members = [
            member(1, at(2026, 1, 5), true),
            member(2, at(2026, 1, 20), false),
            member(3, at(2026, 2, 3), true),
            member(4, at(2026, 3, 10), true),
        ];
        let sales = [
            // Member 1: January twice, February once, then nothing (last purchase
            // 59.6 days before April 1st: not yet at risk).
            sale(Some(1), at(2026, 1, 5), 450),
            sale(Some(1), at(2026, 1, 12), 350),
            sale(Some(1), at(2026, 2, 1), 400),
            // Member 2: once in January, never again: at risk (71 days).
            sale(Some(2), at(2026, 1, 20), 300),
            // Member 3: February and March.
            sale(Some(3), at(2026, 2, 3), 500),
            sale(Some(3), at(2026, 3, 3), 700),
            // Member 4 enrolled, never bought. Two guests.
            sale(None, at(2026, 2, 10), 200),
            sale(None, at(2026, 3, 15), 400),
        ];
        let mut facts = counted(&members, &sales, from, to);
        facts.points_earned = 2700;
        facts.points_redeemed = 800;
        facts.outstanding_points = 1900;
        if let Some(feb) = facts.months.iter_mut().find(|m| m.month == "2026-02") {
            feb.points_earned = 900;
            feb.points_redeemed = 500;
        }
        // Two promoters, one passive, one detractor in the quarter; one before it.
        let answers: Vec<ScoreDay> = [(1, 10), (1, 9), (2, 7), (3, 3), (0, 0)]
            .into_iter()
            .map(|(month, score)| {
                let when = if month == 0 {
                    at(2025, 12, 1)
                } else {
                    at(2026, month, 15)
                };
                ScoreDay {
                    day: when.millis(),
                    score,
                    answers: 1,
                }
            })
            .collect();
        facts.add_extras(&[], &answers);
        facts
    }

    #[test]
    fn a_quarter_worked_out_by_hand() {
        let r = report(&fixture(day(2026, 1, 1), day(2026, 4, 1)), &settings());
        let v = |k: &str| r.get(k).expect("a measure").value;
        assert_eq!(v("active_members"), Some(3.0));
        assert_eq!(v("new_members"), Some(4.0));
        assert_eq!(v("member_orders"), Some(6.0));
        assert_eq!(v("guest_orders"), Some(2.0));
        // Members 1 (3 purchases) and 3 (2) of 3 buyers.
        assert_eq!(v("repeat_purchase_rate"), Some(2.0 / 3.0));
        assert_eq!(v("purchase_frequency"), Some(2.0));
        // 450 + 350 + 400 + 300 + 500 + 700 = 2700 over 6.
        assert_eq!(v("aov_members"), Some(450.0));
        assert_eq!(v("aov_guests"), Some(300.0));
        assert_eq!(v("visits_per_member"), Some(6.0 / 4.0));
        // Cohorts: Jan (members 1, 2): Jan both, Feb member 1, Mar nobody.
        // Feb (member 3): Feb, Mar. Mar (member 4): nobody.
        assert_eq!(
            r.cohorts,
            vec![
                Cohort {
                    month: "2026-01".into(),
                    members: 2,
                    active: vec![2, 1, 0]
                },
                Cohort {
                    month: "2026-02".into(),
                    members: 1,
                    active: vec![1, 1]
                },
                Cohort {
                    month: "2026-03".into(),
                    members: 1,
                    active: vec![0]
                },
            ]
        );
        // January's and February's months after enrolment are over: 1 of 2 and 1 of 1.
        assert_eq!(v("month_one_retention"), Some(2.0 / 3.0));
        // Member 2's last purchase (Jan 20) is 71 days before April 1st; member 1's (Feb 1)
        // under 60.
        assert_eq!(v("churn_risk"), Some(1.0));
        assert_eq!(r.at_risk[0].member, MemberId(uuid::Uuid::from_u128(2)));
        assert!(!r.at_risk[0].marketing_consent);
        // 450 x (6 purchases / 3 members / (90 days / 30.436875)) x 1 / (1 - 2/3).
        let months = 90.0 / 30.436_875;
        let clv = v("clv").expect("a value");
        assert!((clv - 450.0 * (2.0 / months) * 3.0).abs() < 1e-6, "{clv}");
        // Money in the formulas reads as the program's currency, as the values do.
        let formula = |k: &str| r.get(k).expect("a measure").formula.clone();
        assert!(
            formula("aov_members").ends_with("= 27.00 GBP / 6"),
            "{}",
            formula("aov_members")
        );
        assert!(
            formula("clv").contains("= 4.50 GBP x 0.68 x 3.00"),
            "{}",
            formula("clv")
        );
        assert!(formula("points_liability").ends_with("= 1900 x 5.00 GBP / 1000"));
        // 1,900 points at 5.00 a thousand.
        assert_eq!(v("points_liability"), Some(950.0));
        assert_eq!(v("redemption_rate"), Some(800.0 / 2700.0));
        // (2 promoters - 1 detractor) / 4 answers.
        assert_eq!(v("nps"), Some(25.0));
        let trend: Vec<Option<f64>> = r.months.iter().map(MonthRow::nps).collect();
        assert_eq!(trend, vec![Some(100.0), Some(0.0), Some(-100.0)]);
        let by_month: Vec<(&str, usize, usize, usize, usize, i64)> = r
            .months
            .iter()
            .map(|m| {
                let (a, n, o, g) = (
                    m.active_members,
                    m.new_members,
                    m.member_orders,
                    m.guest_orders,
                );
                (m.month.as_str(), a, n, o, g, m.points_earned)
            })
            .collect();
        assert_eq!(
            by_month,
            vec![
                ("2026-01", 2, 2, 3, 0, 0),
                ("2026-02", 2, 1, 2, 1, 900),
                ("2026-03", 1, 1, 1, 1, 0),
            ]
        );
    }

    #[test]
    fn offers_badges_and_welcome_backs_counted_by_hand() {
        use crate::domain::summary::tests::entry;
        let p = Program::demo();
        let fact = |who: u128, kind: EntryKind, id: &str, points: i64, when: Timestamp| Entry {
            member_id: MemberId(uuid::Uuid::from_u128(who)),
            reward_id: Some(id.into()),
            ..entry(kind, points, None, when.millis())
        };
        let buy = |who: u128, when: Timestamp| Entry {
            member_id: MemberId(uuid::Uuid::from_u128(who)),
            ..entry(EntryKind::Earn, 30, Some(300), when.millis())
        };
        let entries = [
            // Member 1: a pastry unlocked on 3 October and used on the 5th.
            fact(
                1,
                EntryKind::OfferUnlocked,
                "five-visits",
                0,
                at(2026, 10, 3),
            ),
            fact(1, EntryKind::OfferUsed, "five-visits", 0, at(2026, 10, 5)),
            // Member 2: a pastry unlocked in the period, not used; the Regular badge.
            fact(
                2,
                EntryKind::OfferUnlocked,
                "five-visits",
                0,
                at(2026, 11, 1),
            ),
            fact(2, EntryKind::BadgeAwarded, "regular", 100, at(2026, 11, 1)),
            // Member 3: welcomed back on 1 October, bought on the 20th (within 30 days).
            fact(
                3,
                EntryKind::OfferUnlocked,
                "welcome-back",
                0,
                at(2026, 10, 1),
            ),
            buy(3, at(2026, 10, 20)),
            // Member 4: welcomed back, never came; member 5: a badge before the period.
            fact(
                4,
                EntryKind::OfferUnlocked,
                "welcome-back",
                0,
                at(2026, 10, 2),
            ),
            fact(5, EntryKind::BadgeAwarded, "regular", 100, at(2026, 9, 1)),
        ];
        let (from, to) = (day(2026, 10, 1), day(2026, 12, 1));
        let mut counted = FactsBuilder::new(&p, from, to);
        for who in 1..=5 {
            let mut theirs: Vec<Entry> = entries
                .iter()
                .filter(|e| e.member_id == MemberId(uuid::Uuid::from_u128(who)))
                .cloned()
                .collect();
            theirs.sort_by_key(|e| e.occurred_at);
            counted.add(None, &theirs);
        }
        let m = counted.finish().mechanics;
        assert_eq!(
            m,
            MechanicFacts {
                offers_unlocked: 2,
                offers_used: 1,
                badges_awarded: 1,
                welcome_backs: 2,
                came_back: 1,
            }
        );
        let mut facts = Facts::new(from, to, 0);
        facts.mechanics = m;
        let r = report(&facts, &settings());
        let v = |k: &str| r.get(k).and_then(|x| x.value);
        assert_eq!(v("offer_use_rate"), Some(0.5));
        assert_eq!(v("badges_awarded"), Some(1.0));
        assert_eq!(v("welcome_back_rate"), Some(0.5));
    }

    #[test]
    fn members_are_counted_once_whether_or_not_they_bought_and_out_of_order_is_refused() {
        use crate::domain::summary::tests::entry;
        let p = Program::demo();
        let buy = |who: u128, when: Timestamp| Entry {
            member_id: MemberId(uuid::Uuid::from_u128(who)),
            ..entry(EntryKind::Earn, 30, Some(300), when.millis())
        };
        let (from, to) = (day(2026, 10, 1), day(2026, 12, 1));
        let members = vec![
            member(3, at(2026, 9, 1), true),
            member(1, at(2026, 9, 1), true),
            member(2, at(2026, 10, 5), false),
            // Enrolled after the period: not a member of it, but the sale before it counts.
            member(5, at(2026, 12, 5), true),
        ];
        let mut by_member = ByMember::new(FactsBuilder::new(&p, from, to), members);
        // Member 1's entries in any order; member 4 is not known at all.
        let taken_back = buy(1, at(2026, 10, 3));
        let reversal = Entry {
            reverses: Some(taken_back.id),
            member_id: taken_back.member_id,
            ..entry(
                EntryKind::Reverse,
                -30,
                Some(-300),
                at(2026, 10, 4).millis(),
            )
        };
        for e in [
            buy(1, at(2026, 10, 20)),
            reversal,
            taken_back,
            buy(3, at(2026, 11, 2)),
            buy(4, at(2026, 11, 3)),
            buy(5, at(2026, 11, 4)),
        ] {
            by_member.push(e).expect("in member order");
        }
        assert_eq!(
            by_member.push(buy(2, at(2026, 11, 5))),
            Err(OutOfOrder(MemberId(uuid::Uuid::from_u128(2))))
        );
        let facts = by_member.finish().finish();
        assert_eq!(facts.enrolled, 3);
        let bought: Vec<u128> = facts
            .last_purchases
            .iter()
            .map(|r| r.member.0.as_u128())
            .collect();
        assert_eq!(bought, vec![1, 3]);
        // The reversed sale is left out; members 4 and 5 bought all the same.
        assert_eq!((facts.active, facts.member_orders), (4, 4));
        assert_eq!(facts.points_earned, 4 * 30);
        // Each month end counts the tier of every member enrolled by then: all three.
        let counted: Vec<usize> = facts.months.iter().map(|m| m.tiers.iter().sum()).collect();
        assert_eq!(counted, vec![3, 3]);
    }

    #[test]
    fn a_sale_returned_in_full_is_no_purchase_and_a_partial_return_takes_its_money_off() {
        use crate::domain::summary::tests::entry;
        let p = Program::demo();
        let (from, to) = (day(2026, 10, 1), day(2026, 11, 1));
        let sale = |points, amount, d| {
            entry(
                EntryKind::Earn,
                points,
                Some(amount),
                at(2026, 10, d).millis(),
            )
        };
        let back = |of: &Entry, points, amount, d| Entry {
            returns: Some(of.id),
            ..entry(
                EntryKind::Return,
                points,
                Some(amount),
                at(2026, 10, d).millis(),
            )
        };
        let (part, whole, kept) = (sale(100, 1000, 3), sale(50, 500, 6), sale(30, 300, 8));
        let entries = vec![
            part.clone(),
            back(&part, -40, -400, 5),
            whole.clone(),
            back(&whole, -50, -500, 7),
            kept.clone(),
        ];
        let mut builder = FactsBuilder::new(&p, from, to);
        builder.add(Some(member(0, at(2026, 9, 1), true)), &entries);
        let facts = builder.finish();
        assert_eq!((facts.member_orders, facts.member_revenue), (2, 600 + 300));
        // 100 - 40 for the first sale, 50 - 50 for the second, 30 for the third.
        assert_eq!(facts.points_earned, 90);
    }

    #[test]
    fn the_last_days_end_with_today() {
        assert_eq!(
            last_days(at(2026, 3, 10), 90),
            (day(2026, 3, 11).plus_days(-90), day(2026, 3, 11))
        );
    }

    #[test]
    fn a_period_without_sales_has_no_rates() {
        let r = report(&fixture(day(2025, 1, 1), day(2025, 2, 1)), &settings());
        assert_eq!(
            r.get("repeat_purchase_rate").expect("a measure").value,
            None
        );
        assert_eq!(r.get("aov_members").expect("a measure").value, None);
        assert_eq!(r.get("clv").expect("a measure").value, None);
        assert!(r.cohorts.is_empty());
    }

    /// Members, their sales (and guests'), and points: any, as long as nobody buys before
    /// enrolling.
    fn ledger() -> impl Strategy<Value = (Vec<MemberFacts>, Vec<Sale>, i64, i64, i64)> {
        let members = prop::collection::vec((0i64..400, any::<bool>()), 0..30);
        let sales = prop::collection::vec(
            (prop::option::of(0usize..30), 0i64..400, 1i64..10_000),
            0..120,
        );
        (
            members,
            sales,
            0i64..100_000,
            0i64..100_000,
            0i64..1_000_000,
        )
            .prop_map(|(members, sales, earned, redeemed, outstanding)| {
                let start = at(2025, 1, 1).millis();
                let members: Vec<MemberFacts> = members
                    .iter()
                    .enumerate()
                    .map(|(i, (d, c))| {
                        member(i as u128 + 1, Timestamp::from_millis(start + d * DAY), *c)
                    })
                    .collect();
                let sales = sales
                    .iter()
                    .filter_map(|(m, d, amount)| {
                        let who = match m {
                            Some(i) => Some(members.get(*i)?),
                            None => None,
                        };
                        let day =
                            who.map_or(*d, |w| (*d).max((w.enrolled_at.millis() - start) / DAY));
                        Some(sale(
                            who.map(|w| w.id.0.as_u128()),
                            Timestamp::from_millis(start + day * DAY),
                            *amount,
                        ))
                    })
                    .collect();
                (members, sales, earned, redeemed.min(earned), outstanding)
            })
    }

    proptest! {
        #[test]
        fn the_month_of_an_instant_is_its_calendar_month(ms in -100_000_000_000_000i64..100_000_000_000_000) {
            let date = date_of(Timestamp::from_millis(ms));
            let by_calendar = i64::from(date.year()) * 12 + i64::from(u8::from(date.month())) - 1;
            prop_assert_eq!(month_index(Timestamp::from_millis(ms)), by_calendar);
        }


        #[test]
        fn nps_stays_within_its_bounds(scores in prop::collection::vec(0u8..=10, 0..50)) {
            match nps(scores.iter().copied()) {
                None => prop_assert!(scores.is_empty()),
                Some(v) => prop_assert!((-100.0..=100.0).contains(&v)),
            }
        }

        #[test]
        fn rates_stay_within_zero_and_one_and_cohorts_add_up(l in ledger(), from in 0i64..300, len in 1i64..200) {
            let (members, sales, earned, redeemed, outstanding) = l;
            let start = at(2025, 1, 1);
            let (from, to) = (start.plus_days(from), start.plus_days(from + len));
            let mut f = counted(&members, &sales, from, to);
            (f.points_earned, f.points_redeemed, f.outstanding_points) = (earned, redeemed, outstanding);
            let r = report(&f, &settings());
            for m in r.measures.iter().filter(|m| m.unit == Unit::Rate) {
                if let Some(v) = m.value {
                    prop_assert!((0.0..=1.0).contains(&v), "{} = {v}", m.key);
                }
            }
            let enrolled = members.iter().filter(|m| m.enrolled_at < to).count();
            prop_assert_eq!(r.cohorts.iter().map(|c| c.members).sum::<usize>(), enrolled);
            for c in &r.cohorts {
                prop_assert!(c.active.iter().all(|&a| a <= c.members));
            }
            let liability = r.get("points_liability").expect("a measure").value.expect("a value");
            prop_assert_eq!(liability, f.outstanding_points as f64 * 0.5);
            prop_assert!(r.at_risk.len() <= enrolled);
            // Buyers per month, counted the plain way: distinct members buying in it.
            for row in &r.months {
                let mut buyers: Vec<u128> = sales
                    .iter()
                    .filter(|(_, at, _)| *at >= from && *at < to)
                    .filter(|(_, at, _)| month_label(month_index(*at)) == row.month)
                    .filter_map(|(who, _, _)| *who)
                    .collect();
                buyers.sort_unstable();
                buyers.dedup();
                prop_assert_eq!(row.active_members, buyers.len(), "{}", row.month);
            }
            let orders: usize = r.months.iter().map(|m| m.member_orders).sum();
            prop_assert_eq!(Some(orders as f64), r.get("member_orders").and_then(|m| m.value));
        }
    }
}
