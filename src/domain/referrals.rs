//! Referrals: a new member enrolled with an existing member's card names them as referrer
//! (`MemberRecord::referred_by`). When the new member's first qualifying purchase lands, on
//! whichever till, both get the program's bonus: a `referral_bonus` entry each, naming the new
//! member (`reward_id`). A referrer is rewarded for at most `yearly_cap` referrals per calendar
//! year (UTC); the new member gets theirs whatever the cap.
//!
//! Two tills offline may both see the new member's first purchase. What stands is, per member
//! and new member named, the earliest bonus by (time, id), and for a referrer the earliest
//! `yearly_cap` of those in each year; the till that wrote any other reverses it once it has
//! seen the rest (`Store::void_duplicate_awards`, after each pull), so each bonus is given once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::program::{ConfigError, MAX_REWARD_COST};
use super::rules::Draft;
use super::{Entry, EntryKind, MemberId, Program, Timestamp};

/// The program's referral bonus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Referral {
    /// Points for the member who referred.
    pub referrer_points: i64,
    /// Points for the new member.
    pub referred_points: i64,
    /// The smallest sale that counts as the first qualifying purchase, in minor units.
    pub min_purchase_minor: i64,
    /// Most referrals a referrer is rewarded for in a calendar year.
    pub yearly_cap: i64,
}

/// `[referral]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReferral {
    referrer_points: i64,
    referred_points: i64,
    #[serde(default)]
    min_purchase: f64,
    yearly_cap: i64,
}

/// Validates `[referral]`; `scale` turns an amount into minor units, `max_sale_minor` bounds it.
pub(super) fn referral(
    raw: Option<RawReferral>,
    scale: f64,
    max_sale_minor: i64,
) -> Result<Option<Referral>, ConfigError> {
    let Some(r) = raw else { return Ok(None) };
    let points = |field: &str, value: i64| {
        if (1..=MAX_REWARD_COST).contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::field(
                format!("referral.{field}"),
                format!("must be between 1 and {MAX_REWARD_COST}, got {value}"),
            ))
        }
    };
    let min = (r.min_purchase * scale).round();
    if !min.is_finite() || min < 0.0 || min > max_sale_minor as f64 {
        return Err(ConfigError::field(
            "referral.min_purchase",
            format!(
                "must be an amount from 0 to the largest sale, got {}",
                r.min_purchase
            ),
        ));
    }
    if !(1..=1_000).contains(&r.yearly_cap) {
        return Err(ConfigError::field(
            "referral.yearly_cap",
            format!("must be between 1 and 1000, got {}", r.yearly_cap),
        ));
    }
    Ok(Some(Referral {
        referrer_points: points("referrer_points", r.referrer_points)?,
        referred_points: points("referred_points", r.referred_points)?,
        // Range-checked just above, so the conversion is exact.
        min_purchase_minor: min as i64,
        yearly_cap: r.yearly_cap,
    }))
}

/// The new member a bonus names, if it names one.
pub fn referred(bonus: &Entry) -> Option<MemberId> {
    bonus.reward_id.as_deref()?.parse().ok()
}

/// Whether `bonus` is the new member's own (not a referrer's).
pub fn is_own(bonus: &Entry) -> bool {
    referred(bonus) == Some(bonus.member_id)
}

/// The points a program gives for `bonus`: the new member's or the referrer's.
pub fn points_for(referral: &Referral, bonus: &Entry) -> i64 {
    if is_own(bonus) {
        referral.referred_points
    } else {
        referral.referrer_points
    }
}

fn year(at: Timestamp) -> i32 {
    at.date().year()
}

/// The bonuses of one member's entries that stand: per new member named, the earliest by
/// (time, id) not reversed; a referrer's then limited to the earliest `yearly_cap` per year.
pub fn standing<'e>(program: &Program, entries: &'e [Entry]) -> Vec<&'e Entry> {
    let mut bonuses = super::badges::earliest_per_name(entries, EntryKind::ReferralBonus);
    let cap = program.referral.as_ref().map_or(i64::MAX, |r| r.yearly_cap);
    let mut per_year: BTreeMap<i32, i64> = BTreeMap::new();
    bonuses.retain(|e| {
        if is_own(e) {
            return true;
        }
        let count = per_year.entry(year(e.occurred_at)).or_default();
        *count += 1;
        *count <= cap
    });
    bonuses
}

/// Bonuses that do not stand and are not reversed yet: the same new member named earlier, or
/// over the referrer's cap for the year. The till that wrote each reverses it.
pub fn duplicates<'e>(program: &Program, entries: &'e [Entry]) -> Vec<&'e Entry> {
    let stands = standing(program, entries);
    super::badges::not_standing(entries, EntryKind::ReferralBonus, &stands)
}

/// Whether the new member already has their bonus (their first qualifying purchase landed).
pub fn rewarded(program: &Program, entries: &[Entry]) -> bool {
    standing(program, entries).into_iter().any(is_own)
}

/// Referrals a referrer has been rewarded for in the year of `at`.
pub fn rewarded_this_year(program: &Program, entries: &[Entry], at: Timestamp) -> i64 {
    let count = standing(program, entries)
        .into_iter()
        .filter(|e| !is_own(e) && year(e.occurred_at) == year(at))
        .count();
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The bonuses `sale` (just made by `new_member`, referred by `referrer`) brings, as (member,
/// draft): none unless the program has referrals, the sale qualifies and the new member has no
/// bonus yet; the referrer's only while under the year's cap.
pub fn due(
    program: &Program,
    sale: &Entry,
    new_member: &[Entry],
    referrer: (MemberId, &[Entry]),
) -> Vec<(MemberId, Draft)> {
    let Some(r) = &program.referral else {
        return Vec::new();
    };
    let qualifies = sale.kind == EntryKind::Earn
        && sale.amount_minor.is_some_and(|a| a >= r.min_purchase_minor);
    if !qualifies || rewarded(program, new_member) {
        return Vec::new();
    }
    let named = sale.member_id.to_string();
    let mut out = vec![(
        sale.member_id,
        super::rules::referral_bonus(&named, r.referred_points),
    )];
    let (referrer_id, referrer_entries) = referrer;
    let already = standing(program, referrer_entries)
        .into_iter()
        .any(|e| e.reward_id.as_deref() == Some(named.as_str()));
    if !already && rewarded_this_year(program, referrer_entries, sale.occurred_at) < r.yearly_cap {
        out.push((
            referrer_id,
            super::rules::referral_bonus(&named, r.referrer_points),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::summary::tests::entry;
    use crate::domain::timestamp::DAY_MS;

    fn program(cap: i64) -> Program {
        let mut p = Program::demo();
        p.referral = Some(Referral {
            referrer_points: 200,
            referred_points: 100,
            min_purchase_minor: 500,
            yearly_cap: cap,
        });
        p
    }

    fn member(n: u128) -> MemberId {
        MemberId(uuid::Uuid::from_u128(n))
    }

    fn bonus(to: MemberId, named: MemberId, at: i64) -> Entry {
        Entry {
            member_id: to,
            reward_id: Some(named.to_string()),
            ..entry(EntryKind::ReferralBonus, 100, None, at)
        }
    }

    fn sale_by(who: MemberId, amount: i64, at: i64) -> Entry {
        Entry {
            member_id: who,
            ..entry(EntryKind::Earn, 10, Some(amount), at)
        }
    }

    #[test]
    fn the_first_qualifying_purchase_rewards_both_once() {
        let p = program(5);
        let (new, referrer) = (member(1), member(2));
        let small = sale_by(new, 499, 1);
        assert!(due(&p, &small, std::slice::from_ref(&small), (referrer, &[])).is_empty());
        let first = sale_by(new, 500, 2);
        let given = due(&p, &first, std::slice::from_ref(&first), (referrer, &[]));
        let to: Vec<(MemberId, i64)> = given.iter().map(|(m, d)| (*m, d.points)).collect();
        assert_eq!(to, [(new, 100), (referrer, 200)]);
        let mine = bonus(new, new, 2);
        let second = sale_by(new, 900, 3);
        assert!(due(&p, &second, &[first, mine, second.clone()], (referrer, &[])).is_empty());
    }

    #[test]
    fn a_referrer_is_rewarded_up_to_the_cap_each_year_and_the_new_member_always() {
        let p = program(2);
        let referrer = member(9);
        let held = vec![
            bonus(referrer, member(1), 10),
            bonus(referrer, member(2), 20),
        ];
        let sale = sale_by(member(3), 800, 30);
        let given = due(&p, &sale, std::slice::from_ref(&sale), (referrer, &held));
        assert_eq!(
            given.len(),
            1,
            "only the new member: the referrer is at the cap"
        );
        assert_eq!(given[0].0, member(3));
        let next_year = sale_by(member(4), 800, 366 * DAY_MS);
        assert_eq!(
            due(
                &p,
                &next_year,
                std::slice::from_ref(&next_year),
                (referrer, &held)
            )
            .len(),
            2
        );
    }

    #[test]
    fn a_bonus_given_twice_offline_or_over_the_cap_does_not_stand() {
        let p = program(1);
        let referrer = member(9);
        let first = bonus(referrer, member(1), 10);
        let again = bonus(referrer, member(1), 12);
        let over = bonus(referrer, member(2), 11);
        let entries = vec![over.clone(), again.clone(), first.clone()];
        assert_eq!(standing(&p, &entries), [&first]);
        let mut dups = duplicates(&p, &entries);
        dups.sort_by_key(|e| e.occurred_at);
        assert_eq!(dups, [&over, &again]);
        let mut undo = entry(EntryKind::Reverse, -100, None, 20);
        undo.member_id = referrer;
        undo.reverses = Some(over.id);
        let mut settled = entries.clone();
        settled.push(undo);
        assert_eq!(duplicates(&p, &settled), [&again]);
    }
}
