//! Is the program working? The measures loyalty programs are judged by, computed from what a
//! store or the server knows: members, sales (with or without a member) and points. Pure: the
//! same facts give the same report on a till, in the CLI and on the server.
//!
//! A period is `[from, to)` in UTC. A sale is an earn entry not cancelled (reversed, or returned
//! in full; a partial return leaves the visit and takes its money off the sale), or a guest
//! sale (no member). Every measure carries the formula it was computed with, shown beside it.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use time::{Date, Month};

use super::{Entry, EntryId, EntryKind, MemberId, Program, Timestamp};

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

/// One sale: by a member, or by a guest (`member: None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sale {
    pub member: Option<MemberId>,
    pub at: Timestamp,
    pub amount_minor: i64,
}

/// A member as the measures see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberFacts {
    pub id: MemberId,
    pub enrolled_at: Timestamp,
    pub marketing_consent: bool,
}

/// Everything a report is computed from.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Every member enrolled before the period's end.
    pub members: Vec<MemberFacts>,
    /// Every sale before the period's end (retention and churn look back before the period).
    pub sales: Vec<Sale>,
    /// Points earned in the period (entries of earning kinds, less what returns took back,
    /// reversals netted).
    pub points_earned: i64,
    /// Points redeemed in the period (as a positive number, reversals netted).
    pub points_redeemed: i64,
    /// Sum of every member's positive balance now.
    pub outstanding_points: i64,
    /// Points earned and redeemed per month over the period, as the store sums them.
    pub monthly_points: Vec<MonthPoints>,
    /// Answers to "how likely are you to recommend us?" (0 to 10) before the period's end.
    pub nps: Vec<NpsAnswer>,
    /// Tiers at the period's start, at each month's end and at the period's end.
    pub tiers: TierFacts,
    /// How the offers, badges and welcome-back offers did.
    pub mechanics: MechanicFacts,
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
    /// Counts one member's entries (any order) for `[from, to)`.
    pub fn add_member(
        &mut self,
        program: &Program,
        entries: &[Entry],
        from: Timestamp,
        to: Timestamp,
    ) {
        let in_period = |at: Timestamp| at >= from && at < to;
        let welcome_back = program.reengagement.as_ref().map(|r| r.offer.as_str());
        for (offer, at, used) in super::offers::book(program, entries, to).history {
            if in_period(at) && Some(offer.as_str()) != welcome_back {
                self.offers_unlocked += 1;
                self.offers_used += usize::from(used);
            }
        }
        self.badges_awarded += super::badges::standing(entries)
            .into_iter()
            .filter(|e| in_period(e.occurred_at))
            .count();
        for (at, back) in super::offers::came_back(program, entries) {
            if in_period(at) {
                self.welcome_backs += 1;
                self.came_back += usize::from(back);
            }
        }
    }
}

/// Members' tiers over the period, from the fold (`summary::summarise`) at each instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierFacts {
    /// Members enrolled before the period whose tier at its end is above what it was at its
    /// start, and below.
    pub moved_up: usize,
    pub moved_down: usize,
    /// Members per tier at each month's end (the period's end for its last month), oldest first.
    pub by_month: Vec<(String, Vec<usize>)>,
}

/// Gathers [`Facts`] one member at a time, so that a store of any size is read once, member by
/// member, and never held whole: each member's entries are counted and let go.
pub struct FactsBuilder<'p> {
    program: &'p Program,
    from: Timestamp,
    to: Timestamp,
    /// The instants tiers are counted at: each month's end in the period, the last month's at
    /// the period's end.
    month_ends: Vec<Timestamp>,
    /// Points earned and redeemed per month index.
    monthly: BTreeMap<i64, (i64, i64)>,
    facts: Facts,
}

impl<'p> FactsBuilder<'p> {
    /// An empty count for `[from, to)` under `program`.
    pub fn new(program: &'p Program, from: Timestamp, to: Timestamp) -> Self {
        let end = Timestamp::from_millis(to.millis() - 1);
        let months = month_index(from)..=month_index(end);
        let month_ends = months
            .clone()
            .map(|i| Timestamp::from_millis(month_start(i + 1).millis() - 1).min(end))
            .collect();
        let by_month = months
            .map(|i| (month_label(i), vec![0; program.tiers.len()]))
            .collect();
        Self {
            program,
            from,
            to,
            month_ends,
            monthly: BTreeMap::new(),
            facts: Facts {
                tiers: TierFacts {
                    by_month,
                    ..TierFacts::default()
                },
                ..Facts::default()
            },
        }
    }

    /// Counts one member with every entry of theirs, oldest first: `member` when enrolled
    /// before the period's end (`None` counts the entries of one enrolled later, or unknown).
    /// A points entry counts while no entry of the member reverses it; a sale while it is not
    /// cancelled (`returns::cancelled`), for its amount less what returns brought back.
    pub fn add(&mut self, member: Option<MemberFacts>, entries: &[Entry]) {
        let reversed: HashSet<EntryId> = entries.iter().filter_map(|e| e.reverses).collect();
        let cancelled = super::returns::cancelled(entries);
        let mut refunded: HashMap<EntryId, i64> = HashMap::new();
        for e in entries {
            if let Some(sale) = e.returns {
                *refunded.entry(sale).or_default() -= e.amount_minor.unwrap_or(0);
            }
        }
        let before_end = &entries[..entries.partition_point(|e| e.occurred_at < self.to)];
        for e in before_end.iter().filter(|e| !reversed.contains(&e.id)) {
            if let (EntryKind::Earn, Some(amount_minor), false) =
                (e.kind, e.amount_minor, cancelled.contains(&e.id))
            {
                self.facts.sales.push(Sale {
                    member: Some(e.member_id),
                    at: e.occurred_at,
                    amount_minor: amount_minor - refunded.get(&e.id).copied().unwrap_or(0),
                });
            }
            if e.occurred_at < self.from {
                continue;
            }
            let (earned, redeemed) = match e.kind {
                EntryKind::Earn
                | EntryKind::WelcomeBonus
                | EntryKind::BirthdayBonus
                | EntryKind::Return => (e.points, 0),
                EntryKind::Redeem => (0, -e.points),
                _ => continue,
            };
            self.facts.points_earned += earned;
            self.facts.points_redeemed += redeemed;
            let month = self.monthly.entry(month_index(e.occurred_at)).or_default();
            month.0 += earned;
            month.1 += redeemed;
        }
        // Only members with an offer or a badge count; their purchases and take-backs decide.
        if before_end
            .iter()
            .any(|e| matches!(e.kind, EntryKind::OfferUnlocked | EntryKind::BadgeAwarded))
        {
            self.facts
                .mechanics
                .add_member(self.program, before_end, self.from, self.to);
        }
        if let Some(member) = member {
            self.add_tiers(&member, before_end);
            self.facts.members.push(member);
        }
    }

    /// The member's tier at the period's start and end, and at each month's end.
    fn add_tiers(&mut self, member: &MemberFacts, entries: &[Entry]) {
        let program = self.program;
        let end = Timestamp::from_millis(self.to.millis() - 1);
        let tiers = &mut self.facts.tiers;
        if let (Some(before), Some(after)) = (
            tier_at(program, member, entries, self.from),
            tier_at(program, member, entries, end),
        ) {
            tiers.moved_up += usize::from(after > before);
            tiers.moved_down += usize::from(after < before);
        }
        for (at, (_, counts)) in self.month_ends.iter().zip(tiers.by_month.iter_mut()) {
            if let Some(c) = tier_at(program, member, entries, *at).and_then(|t| counts.get_mut(t))
            {
                *c += 1;
            }
        }
    }

    /// The facts counted, with the sum of positive balances now ([`Facts::add_extras`] adds
    /// sales without a member and recommend answers).
    pub fn finish(mut self, outstanding_points: i64) -> Facts {
        self.facts.outstanding_points = outstanding_points;
        self.facts.monthly_points = self
            .monthly
            .into_iter()
            .map(|(i, (earned, redeemed))| MonthPoints {
                month: month_label(i),
                earned,
                redeemed,
            })
            .collect();
        self.facts
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
}

/// Entries that came out of member order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entries are not grouped by member: member {0} came after a later one")]
pub struct OutOfOrder(pub MemberId);

impl<'p> ByMember<'p> {
    /// Counts into `builder` the `members` enrolled before its period's end (any order).
    pub fn new(builder: FactsBuilder<'p>, mut members: Vec<MemberFacts>) -> Self {
        members.retain(|m| m.enrolled_at < builder.to);
        members.sort_unstable_by_key(|m| std::cmp::Reverse(m.id));
        Self {
            builder,
            members,
            theirs: Vec::new(),
        }
    }

    /// The next entry, in member order (any order within a member).
    pub fn push(&mut self, entry: Entry) -> Result<(), OutOfOrder> {
        match self.theirs.first().map(|e| e.member_id) {
            Some(current) if entry.member_id < current => return Err(OutOfOrder(entry.member_id)),
            Some(current) if entry.member_id > current => self.flush(),
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
        while let Some(m) = self.members.pop_if(|m| m.id < id) {
            self.builder.add(Some(m), &[]);
        }
        let member = self.members.pop_if(|m| m.id == id);
        self.theirs.sort_by_key(|e| (e.occurred_at, e.id));
        self.builder.add(member, &self.theirs);
        self.theirs.clear();
    }

    /// Every member counted: the builder, for what the ledger does not give.
    pub fn finish(mut self) -> FactsBuilder<'p> {
        self.flush();
        while let Some(m) = self.members.pop() {
            self.builder.add(Some(m), &[]);
        }
        self.builder
    }
}

/// A member's tier at `at` by the one fold that defines a tier (`None` before enrolment);
/// `entries` are theirs, oldest first.
fn tier_at(
    program: &Program,
    member: &MemberFacts,
    entries: &[Entry],
    at: Timestamp,
) -> Option<usize> {
    if member.enrolled_at > at {
        return None;
    }
    let upto = &entries[..entries.partition_point(|e| e.occurred_at <= at)];
    Some(super::summary::summarise(program, upto, at).tier)
}

/// One customer's answer to "how likely are you to recommend us?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NpsAnswer {
    pub at: Timestamp,
    /// 0 to 10.
    pub score: u8,
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

impl Facts {
    /// Adds what a till records besides the ledger: sales without a member `(time, amount)`
    /// and recommend answers `(time, score)`, those before `to`.
    pub fn add_extras(&mut self, sales: &[(i64, i64)], answers: &[(i64, i64)], to: Timestamp) {
        self.sales
            .extend(
                sales
                    .iter()
                    .filter(|(at, _)| *at < to.millis())
                    .map(|&(at, amount_minor)| Sale {
                        member: None,
                        at: Timestamp::from_millis(at),
                        amount_minor,
                    }),
            );
        self.nps.extend(
            answers
                .iter()
                .filter(|(at, _)| *at < to.millis())
                .filter_map(|&(at, score)| {
                    Some(NpsAnswer {
                        at: Timestamp::from_millis(at),
                        score: u8::try_from(score).ok().filter(|s| *s <= 10)?,
                    })
                }),
        );
    }
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

/// Points earned and redeemed in one month (`YYYY-MM`), reversed entries left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonthPoints {
    pub month: String,
    pub earned: i64,
    pub redeemed: i64,
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
    /// This month's net promoter score, `None` without answers.
    pub fn nps(&self) -> Option<f64> {
        (self.nps_answers > 0).then(|| {
            (self.nps_promoters as f64 - self.nps_detractors as f64) * 100.0
                / self.nps_answers as f64
        })
    }
}

/// The program's settings the measures need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// A member with no purchase for this many days is at risk of leaving.
    pub churn_days: i64,
    /// What 1,000 outstanding points would cost the business, in minor units.
    pub cost_per_1000_points_minor: i64,
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

/// Computes every measure for `[from, to)`.
pub fn report(facts: &Facts, from: Timestamp, to: Timestamp, settings: Settings) -> Report {
    let in_period = |at: Timestamp| at >= from && at < to;
    let period: Vec<&Sale> = facts.sales.iter().filter(|s| in_period(s.at)).collect();
    let mut orders_by_member: HashMap<MemberId, usize> = HashMap::new();
    let (mut member_revenue, mut guest_orders, mut guest_revenue) = (0i64, 0usize, 0i64);
    for s in &period {
        match s.member {
            Some(m) => {
                *orders_by_member.entry(m).or_default() += 1;
                member_revenue += s.amount_minor;
            }
            None => {
                guest_orders += 1;
                guest_revenue += s.amount_minor;
            }
        }
    }
    let member_orders: usize = orders_by_member.values().sum();
    let active = orders_by_member.len();
    let repeaters = orders_by_member.values().filter(|&&n| n >= 2).count();
    let enrolled = facts.members.iter().filter(|m| m.enrolled_at < to).count();
    let new = facts
        .members
        .iter()
        .filter(|m| in_period(m.enrolled_at))
        .count();
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    let months = months_between(from, to);
    let cohorts = cohorts(facts, to);
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
    let at_risk = at_risk(facts, to, settings.churn_days);
    let answers: Vec<&NpsAnswer> = facts.nps.iter().filter(|a| in_period(a.at)).collect();
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
                "member revenue in minor units / member purchases = {member_revenue} / {member_orders}"
            ),
        },
        Measure {
            key: "aov_guests",
            name: "Average order value, non-members",
            value: ratio(guest_revenue as f64, guest_orders as f64),
            unit: Unit::MinorUnits,
            formula: format!(
                "non-member revenue in minor units / non-member purchases = {guest_revenue} / {guest_orders}"
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
                "AOV in minor units x purchases per active member per month x expected months = \
                 {} x {} x {}, \
                 expected months = 1 / (1 - month-one retention), at most {MAX_LIFETIME_MONTHS}",
                f2(aov_members),
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
                "outstanding points x cost per 1000 points in minor units / 1000 = {} x {} / 1000",
                facts.outstanding_points, settings.cost_per_1000_points_minor
            ),
        },
        Measure {
            key: "tier_moves_up",
            name: "Tier moves up",
            value: Some(facts.tiers.moved_up as f64),
            unit: Unit::Count,
            formula: "members enrolled before the period in a higher tier at its end than at \
                      its start"
                .into(),
        },
        Measure {
            key: "tier_moves_down",
            name: "Tier moves down",
            value: Some(facts.tiers.moved_down as f64),
            unit: Unit::Count,
            formula: "members enrolled before the period in a lower tier at its end than at \
                      its start (the rolling window let them slip)"
                .into(),
        },
        Measure {
            key: "nps",
            name: "Net promoter score",
            value: nps(answers.iter().map(|a| a.score)),
            unit: Unit::Number,
            formula: format!(
                "% promoters (9-10) - % detractors (0-6) of {} answers to \"how likely are you \
                 to recommend us?\", -100 to 100",
                answers.len()
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
        months: month_rows(facts, from, to),
        cohorts,
        at_risk,
    }
}

/// Month by month over `[from, to)`: members buying, enrolling, purchases and points.
fn month_rows(facts: &Facts, from: Timestamp, to: Timestamp) -> Vec<MonthRow> {
    let (first, last) = (
        month_index(from),
        month_index(Timestamp::from_millis(to.millis() - 1)),
    );
    let in_period = |at: Timestamp| at >= from && at < to;
    let mut rows: BTreeMap<i64, (HashSet<MemberId>, MonthRow)> = (first..=last)
        .map(|i| {
            let label = month_label(i);
            let points = facts.monthly_points.iter().find(|p| p.month == label);
            let row = MonthRow {
                month: label.clone(),
                active_members: 0,
                new_members: 0,
                member_orders: 0,
                guest_orders: 0,
                points_earned: points.map_or(0, |p| p.earned),
                points_redeemed: points.map_or(0, |p| p.redeemed),
                nps_promoters: 0,
                nps_detractors: 0,
                nps_answers: 0,
                tiers: facts
                    .tiers
                    .by_month
                    .iter()
                    .find(|(month, _)| *month == label)
                    .map(|(_, counts)| counts.clone())
                    .unwrap_or_default(),
            };
            (i, (HashSet::new(), row))
        })
        .collect();
    for s in facts.sales.iter().filter(|s| in_period(s.at)) {
        if let Some((buyers, row)) = rows.get_mut(&month_index(s.at)) {
            match s.member {
                Some(m) => {
                    buyers.insert(m);
                    row.member_orders += 1;
                }
                None => row.guest_orders += 1,
            }
        }
    }
    for m in facts.members.iter().filter(|m| in_period(m.enrolled_at)) {
        if let Some((_, row)) = rows.get_mut(&month_index(m.enrolled_at)) {
            row.new_members += 1;
        }
    }
    for a in facts.nps.iter().filter(|a| in_period(a.at)) {
        if let Some((_, row)) = rows.get_mut(&month_index(a.at)) {
            row.nps_answers += 1;
            row.nps_promoters += usize::from(a.score >= 9);
            row.nps_detractors += usize::from(a.score <= 6);
        }
    }
    rows.into_values()
        .map(|(buyers, mut row)| {
            row.active_members = buyers.len();
            row
        })
        .collect()
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

/// Months since year 0 of the UTC date of `at`.
fn month_index(at: Timestamp) -> i64 {
    let date = date_of(at);
    i64::from(date.year()) * 12 + i64::from(u8::from(date.month())) - 1
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

/// Monthly cohorts by enrolment month, with activity per month up to the month of `to`
/// (that month counted only as far as `to`).
fn cohorts(facts: &Facts, to: Timestamp) -> Vec<Cohort> {
    let last = month_index(Timestamp::from_millis(to.millis() - 1));
    let mut cohort_of: HashMap<MemberId, i64> = HashMap::new();
    let mut sizes: BTreeMap<i64, usize> = BTreeMap::new();
    for m in facts.members.iter().filter(|m| m.enrolled_at < to) {
        let month = month_index(m.enrolled_at);
        cohort_of.insert(m.id, month);
        *sizes.entry(month).or_default() += 1;
    }
    let mut buyers: HashSet<(i64, MemberId)> = HashSet::new();
    for s in facts.sales.iter().filter(|s| s.at < to) {
        if let Some(m) = s.member
            && cohort_of.contains_key(&m)
        {
            buyers.insert((month_index(s.at), m));
        }
    }
    let mut active: BTreeMap<i64, Vec<usize>> = sizes
        .keys()
        .map(|&c| (c, vec![0; usize::try_from(last - c + 1).unwrap_or(0)]))
        .collect();
    for (month, m) in buyers {
        let c = cohort_of[&m];
        if month >= c
            && let Some(slot) = active
                .get_mut(&c)
                .and_then(|v| v.get_mut(usize::try_from(month - c).unwrap_or(usize::MAX)))
        {
            *slot += 1;
        }
    }
    sizes
        .into_iter()
        .map(|(c, members)| Cohort {
            month: month_label(c),
            members,
            active: active.remove(&c).unwrap_or_default(),
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

/// Members whose last purchase before `to` is more than `churn_days` before it.
fn at_risk(facts: &Facts, to: Timestamp, churn_days: i64) -> Vec<AtRisk> {
    let mut last: HashMap<MemberId, Timestamp> = HashMap::new();
    for s in facts.sales.iter().filter(|s| s.at < to) {
        if let Some(m) = s.member {
            let e = last.entry(m).or_insert(s.at);
            *e = (*e).max(s.at);
        }
    }
    let cutoff = to.plus_days(-churn_days);
    let mut risk: Vec<AtRisk> = facts
        .members
        .iter()
        .filter_map(|m| {
            let at = *last.get(&m.id)?;
            (at < cutoff).then_some(AtRisk {
                member: m.id,
                last_purchase: at,
                marketing_consent: m.marketing_consent,
            })
        })
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

    fn sale(n: Option<u128>, at: Timestamp, amount: i64) -> Sale {
        Sale {
            member: n.map(|n| MemberId(uuid::Uuid::from_u128(n))),
            at,
            amount_minor: amount,
        }
    }

    const SETTINGS: Settings = Settings {
        churn_days: 60,
        cost_per_1000_points_minor: 500,
    };

    /// A café's first quarter, every number worked out by hand below.
    fn fixture() -> Facts {
        Facts {
            members: vec![
                member(1, at(2026, 1, 5), true),
                member(2, at(2026, 1, 20), false),
                member(3, at(2026, 2, 3), true),
                member(4, at(2026, 3, 10), true),
            ],
            sales: vec![
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
            ],
            points_earned: 2700,
            points_redeemed: 800,
            outstanding_points: 1900,
            monthly_points: vec![MonthPoints {
                month: "2026-02".into(),
                earned: 900,
                redeemed: 500,
            }],
            // Two promoters, one passive, one detractor in the quarter; one before it.
            nps: [(1, 10), (1, 9), (2, 7), (3, 3), (0, 0)]
                .into_iter()
                .map(|(month, score)| NpsAnswer {
                    at: if month == 0 {
                        at(2025, 12, 1)
                    } else {
                        at(2026, month, 15)
                    },
                    score,
                })
                .collect(),
            tiers: TierFacts::default(),
            mechanics: MechanicFacts::default(),
        }
    }

    #[test]
    fn a_quarter_worked_out_by_hand() {
        let r = report(&fixture(), day(2026, 1, 1), day(2026, 4, 1), SETTINGS);
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
        let m = counted.finish(0).mechanics;
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
        let facts = Facts {
            mechanics: m,
            ..Facts::default()
        };
        let r = report(&facts, from, to, SETTINGS);
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
        let facts = by_member.finish().finish(0);
        let ids: Vec<u128> = facts.members.iter().map(|m| m.id.0.as_u128()).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        // The reversed sale is left out; members 4 and 5 bought all the same.
        let mut buyers: Vec<u128> = facts
            .sales
            .iter()
            .filter_map(|s| s.member.map(|m| m.0.as_u128()))
            .collect();
        buyers.sort_unstable();
        assert_eq!(buyers, vec![1, 3, 4, 5]);
        assert_eq!(facts.points_earned, 4 * 30);
        // Each month end counts the tier of every member enrolled by then: all three.
        let counted: Vec<usize> = facts
            .tiers
            .by_month
            .iter()
            .map(|(_, counts)| counts.iter().sum())
            .collect();
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
        let facts = builder.finish(0);
        let sales: Vec<i64> = facts.sales.iter().map(|s| s.amount_minor).collect();
        assert_eq!(sales, vec![600, 300]);
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
        let r = report(&fixture(), day(2025, 1, 1), day(2025, 2, 1), SETTINGS);
        assert_eq!(
            r.get("repeat_purchase_rate").expect("a measure").value,
            None
        );
        assert_eq!(r.get("aov_members").expect("a measure").value, None);
        assert_eq!(r.get("clv").expect("a measure").value, None);
        assert!(r.cohorts.is_empty());
    }

    fn facts() -> impl Strategy<Value = Facts> {
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
                        // Nobody buys before enrolling.
                        let day =
                            who.map_or(*d, |w| (*d).max((w.enrolled_at.millis() - start) / DAY));
                        Some(Sale {
                            member: who.map(|w| w.id),
                            at: Timestamp::from_millis(start + day * DAY),
                            amount_minor: *amount,
                        })
                    })
                    .collect();
                Facts {
                    members,
                    sales,
                    points_earned: earned,
                    points_redeemed: redeemed.min(earned),
                    outstanding_points: outstanding,
                    monthly_points: Vec::new(),
                    nps: Vec::new(),
                    tiers: TierFacts::default(),
                    mechanics: MechanicFacts::default(),
                }
            })
    }

    proptest! {
        #[test]
        fn nps_stays_within_its_bounds(scores in prop::collection::vec(0u8..=10, 0..50)) {
            match nps(scores.iter().copied()) {
                None => prop_assert!(scores.is_empty()),
                Some(v) => prop_assert!((-100.0..=100.0).contains(&v)),
            }
        }

        #[test]
        fn rates_stay_within_zero_and_one_and_cohorts_add_up(f in facts(), from in 0i64..300, len in 1i64..200) {
            let start = at(2025, 1, 1);
            let (from, to) = (start.plus_days(from), start.plus_days(from + len));
            let r = report(&f, from, to, SETTINGS);
            for m in r.measures.iter().filter(|m| m.unit == Unit::Rate) {
                if let Some(v) = m.value {
                    prop_assert!((0.0..=1.0).contains(&v), "{} = {v}", m.key);
                }
            }
            let enrolled = f.members.iter().filter(|m| m.enrolled_at < to).count();
            prop_assert_eq!(r.cohorts.iter().map(|c| c.members).sum::<usize>(), enrolled);
            for c in &r.cohorts {
                prop_assert!(c.active.iter().all(|&a| a <= c.members));
            }
            let liability = r.get("points_liability").expect("a measure").value.expect("a value");
            prop_assert_eq!(liability, f.outstanding_points as f64 * 0.5);
            prop_assert!(r.at_risk.len() <= enrolled);
            let orders: usize = r.months.iter().map(|m| m.member_orders).sum();
            prop_assert_eq!(Some(orders as f64), r.get("member_orders").and_then(|m| m.value));
        }
    }
}
