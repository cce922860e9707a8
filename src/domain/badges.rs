//! Badges: declarative rules over a member's ledger (first visit, tenth visit, visits in three
//! months in a row, a tier reached, five categories tried), each awarded once as a ledger fact
//! (`badge_awarded`, with the badge's points, possibly none).
//!
//! Two tills offline may both award a badge. The award that stands is the earliest by
//! (time, id), the same on every till and the server; the till that wrote a later one reverses
//! it once it has seen the earlier (`Store::void_duplicate_awards`, after each pull), so the
//! points are given once.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::program::{ConfigError, MAX_REWARD_COST, Tier, short_name, stable_id};
use super::summary::summarise;
use super::{Entry, EntryId, EntryKind, Program, Timestamp};

/// What a badge asks of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BadgeRule {
    /// At least this many purchases.
    Visits(i64),
    /// Purchases in this many calendar months (UTC) in a row.
    MonthsInARow(i64),
    /// This tier (index) or higher reached.
    Tier(usize),
    /// Items of at least this many different categories bought.
    Categories(i64),
}

/// A badge of the program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Badge {
    pub id: String,
    pub name: String,
    pub rule: BadgeRule,
    /// Points given with it (0 for none).
    pub points: i64,
}

/// `[[badges]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBadge {
    id: String,
    name: String,
    rule: String,
    count: Option<i64>,
    tier: Option<String>,
    #[serde(default)]
    points: i64,
}

/// Validates `[[badges]]` against the tiers.
pub(super) fn badges(raw: Vec<RawBadge>, tiers: &[Tier]) -> Result<Vec<Badge>, ConfigError> {
    let mut out: Vec<Badge> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("badges[{i}].{f}");
        let id = stable_id(&at("id"), &r.id, out.iter().map(|x| x.id.as_str()))?;
        let name = short_name(&at("name"), &r.name)?;
        let count = |max: i64| match r.count {
            Some(n) if (1..=max).contains(&n) => Ok(n),
            other => Err(ConfigError::field(
                at("count"),
                format!("this rule needs a count from 1 to {max}, got {other:?}"),
            )),
        };
        let rule = match r.rule.trim() {
            "visits" => BadgeRule::Visits(count(100_000)?),
            "months_in_a_row" => BadgeRule::MonthsInARow(count(120)?),
            "categories" => BadgeRule::Categories(count(1_000)?),
            "tier" => {
                let name = r.tier.as_deref().unwrap_or_default().trim();
                BadgeRule::Tier(
                    tiers
                        .iter()
                        .position(|t| t.name.eq_ignore_ascii_case(name))
                        .ok_or_else(|| {
                            ConfigError::field(
                                at("tier"),
                                format!("{name:?} is not one of the tiers"),
                            )
                        })?,
                )
            }
            other => {
                return Err(ConfigError::field(
                    at("rule"),
                    format!("must be visits, months_in_a_row, tier or categories, got {other:?}"),
                ));
            }
        };
        if !(0..=MAX_REWARD_COST).contains(&r.points) {
            return Err(ConfigError::field(
                at("points"),
                format!("must be between 0 and {MAX_REWARD_COST}, got {}", r.points),
            ));
        }
        out.push(Badge {
            id,
            name,
            rule,
            points: r.points,
        });
    }
    Ok(out)
}

/// Sales up to `at` that were not reversed or returned in full.
fn purchases(entries: &[Entry], at: Timestamp) -> impl Iterator<Item = &Entry> {
    let cancelled = super::returns::cancelled(entries);
    entries.iter().filter(move |e| {
        e.kind == EntryKind::Earn && e.occurred_at <= at && !cancelled.contains(&e.id)
    })
}

/// Whether the member's entries up to `at` meet `rule`.
pub fn meets(program: &Program, rule: BadgeRule, entries: &[Entry], at: Timestamp) -> bool {
    match rule {
        BadgeRule::Visits(n) => purchases(entries, at).count() as i64 >= n,
        BadgeRule::MonthsInARow(n) => {
            let months: BTreeSet<i64> = purchases(entries, at)
                .map(|e| {
                    let d = e.occurred_at.date();
                    i64::from(d.year()) * 12 + i64::from(u8::from(d.month())) - 1
                })
                .collect();
            let mut run = 0;
            let mut previous = None;
            for m in months {
                run = if previous == Some(m - 1) { run + 1 } else { 1 };
                previous = Some(m);
                if run >= n {
                    return true;
                }
            }
            false
        }
        BadgeRule::Tier(tier) => {
            let upto: Vec<Entry> = entries
                .iter()
                .filter(|e| e.occurred_at <= at)
                .cloned()
                .collect();
            summarise(program, &upto, at).tier >= tier
        }
        BadgeRule::Categories(n) => {
            let categories: BTreeSet<String> = purchases(entries, at)
                .flat_map(|e| &e.lines)
                .filter(|l| l.kind == super::basket::LineKind::Item && !l.category.is_empty())
                .map(|l| l.category.to_ascii_lowercase())
                .collect();
            categories.len() as i64 >= n
        }
    }
}

/// Could a till have found `rule` met at `at`, knowing some of `view` (the member's entries
/// as a judge sees them, less what the till could not have known)? Entries other tills stamped
/// up to `skew` after `at` count, and the tier window starts where the till's did.
pub fn possible(
    program: &Program,
    rule: BadgeRule,
    view: &[Entry],
    at: Timestamp,
    skew: i64,
) -> bool {
    let by = at.plus_millis(skew);
    match rule {
        BadgeRule::Tier(tier) => {
            let from = at.plus_days(-program.tier_window_days);
            program.tier_for(super::summary::qualifying_between(program, view, from, by)) >= tier
        }
        other => meets(program, other, view, by),
    }
}

/// The awards that stand: per badge, the earliest by (time, id) not reversed.
pub fn standing(entries: &[Entry]) -> Vec<&Entry> {
    earliest_per_name(entries, EntryKind::BadgeAwarded)
}

/// Of the once-only facts of `kind` not reversed, the earliest by (time, id) per `reward_id`,
/// in that order: the ones that stand when two tills wrote the same fact apart.
pub(super) fn earliest_per_name(entries: &[Entry], kind: EntryKind) -> Vec<&Entry> {
    let reversed: BTreeSet<EntryId> = entries.iter().filter_map(|e| e.reverses).collect();
    let mut facts: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.kind == kind && !reversed.contains(&e.id))
        .collect();
    facts.sort_by_key(|e| (e.occurred_at, e.id));
    let mut seen = BTreeSet::new();
    facts.retain(|e| seen.insert(e.reward_id.clone()));
    facts
}

/// Awards that do not stand and are not reversed yet: another award of the same badge came
/// first. The till that wrote each reverses it.
pub fn duplicates(entries: &[Entry]) -> Vec<&Entry> {
    not_standing(entries, EntryKind::BadgeAwarded, &standing(entries))
}

/// The facts of `kind` neither reversed nor among `stands`: those their tills reverse.
pub(super) fn not_standing<'e>(
    entries: &'e [Entry],
    kind: EntryKind,
    stands: &[&Entry],
) -> Vec<&'e Entry> {
    let reversed: BTreeSet<EntryId> = entries.iter().filter_map(|e| e.reverses).collect();
    let stands: BTreeSet<EntryId> = stands.iter().map(|e| e.id).collect();
    entries
        .iter()
        .filter(|e| e.kind == kind && !reversed.contains(&e.id) && !stands.contains(&e.id))
        .collect()
}

/// The badges the member has (the standing awards' badge ids).
pub fn held(entries: &[Entry]) -> Vec<String> {
    standing(entries)
        .into_iter()
        .filter_map(|e| e.reward_id.clone())
        .collect()
}

/// The badges due at `at` and not held: each one's id and points.
pub fn due(program: &Program, entries: &[Entry], at: Timestamp) -> Vec<(String, i64)> {
    let have = held(entries);
    program
        .badges
        .iter()
        .filter(|b| !have.contains(&b.id) && meets(program, b.rule, entries, at))
        .map(|b| (b.id.clone(), b.points))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::basket::SaleLine;
    use crate::domain::summary::tests::entry;
    use crate::domain::timestamp::DAY_MS;

    fn sale(at: i64, category: &str) -> Entry {
        Entry {
            lines: vec![SaleLine::item("Thing", category, 1, 300)],
            ..entry(EntryKind::Earn, 30, Some(300), at)
        }
    }

    fn award(badge: &str, points: i64, at: i64) -> Entry {
        Entry {
            reward_id: Some(badge.into()),
            ..entry(EntryKind::BadgeAwarded, points, None, at)
        }
    }

    #[test]
    fn each_rule_reads_the_ledger() {
        let p = Program::demo();
        let month = 31 * DAY_MS;
        let at = Timestamp::from_millis(10 * month);
        let three_months: Vec<Entry> = (0..3).map(|m| sale(m * month, "coffee")).collect();
        assert!(meets(&p, BadgeRule::MonthsInARow(3), &three_months, at));
        let gap = vec![
            sale(0, "coffee"),
            sale(2 * month, "coffee"),
            sale(3 * month, "coffee"),
        ];
        assert!(!meets(&p, BadgeRule::MonthsInARow(3), &gap, at));
        assert!(meets(&p, BadgeRule::Visits(3), &gap, at));
        assert!(!meets(&p, BadgeRule::Visits(4), &gap, at));
        let five: Vec<Entry> = ["coffee", "tea", "beans", "pastry", "Coffee", "cake"]
            .iter()
            .enumerate()
            .map(|(i, c)| sale(i as i64, c))
            .collect();
        assert!(meets(&p, BadgeRule::Categories(5), &five, at));
        assert!(!meets(&p, BadgeRule::Categories(5), &five[..5], at));
    }

    #[test]
    fn the_earliest_award_stands_and_later_ones_are_duplicates() {
        let first = award("regular", 100, 5);
        let second = award("regular", 100, 7);
        let entries = vec![second.clone(), first.clone()];
        assert_eq!(held(&entries), ["regular"]);
        assert_eq!(duplicates(&entries), [&second]);
        let mut undo = entry(EntryKind::Reverse, -100, None, 8);
        undo.reverses = Some(second.id);
        let settled = vec![second, first, undo];
        assert!(duplicates(&settled).is_empty());
        assert_eq!(held(&settled), ["regular"]);
    }
}
