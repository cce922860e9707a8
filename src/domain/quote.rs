//! The points a sale earns, and why, step by step: "120 base, +60 x1.5 Gold, +180 Double
//! points weekend". The one computation behind the till's preview, the integration API, the
//! entry a till writes and the server's possibility check.

use std::collections::BTreeMap;

use jiff::civil::DateTime;

use super::basket::{LineError, LineKind, SaleLine, check_lines, lines_total};
use super::entry::MAX_ENTRY_POINTS;
use super::program::Rounding;
use super::promotion::{CategoryRate, Promotion, PromotionEffect};
use super::rules::{Refusal, check_sale_amount};
use super::{Program, Timestamp};

/// What was sold: one typed amount, or a basket's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sale<'a> {
    Amount(i64),
    Lines(&'a [SaleLine]),
}

impl Sale<'_> {
    /// The lines, empty for a typed amount.
    pub fn lines(&self) -> &[SaleLine] {
        match self {
            Sale::Amount(_) => &[],
            Sale::Lines(lines) => lines,
        }
    }
}

/// One step of the explanation; the steps' points add up to the quote's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    pub points: i64,
    pub text: String,
}

/// The points a sale earns for a member of a tier at an instant, explained.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Quote {
    /// The sale's total in minor units.
    pub amount_minor: i64,
    pub points: i64,
    /// Stamps earned, by card id.
    pub stamps: BTreeMap<String, i64>,
    pub steps: Vec<Step>,
}

/// The program's local time at `at`.
pub fn local_time(program: &Program, at: Timestamp) -> DateTime {
    program.zone.to_datetime(
        jiff::Timestamp::from_millisecond(at.millis()).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
    )
}

fn round(rounding: Rounding, numerator: i128, denominator: i128) -> i128 {
    match rounding {
        Rounding::Down => numerator / denominator,
        Rounding::Up => (numerator + denominator - 1) / denominator,
        Rounding::Nearest => (2 * numerator + denominator) / (2 * denominator),
    }
}

/// What each line earns on: its amount, less its share of the discounts and rewards. A
/// discount naming a category comes off that category's items, one without (or naming a
/// category with no items) off every item, in proportion to their amounts; the remainder of
/// the division goes to the first lines, so the result is exact and the same everywhere.
fn earning_bases(lines: &[SaleLine]) -> Vec<i64> {
    let mut base: Vec<i64> = lines
        .iter()
        .map(|l| {
            if l.kind == LineKind::Item {
                l.amount_minor
            } else {
                0
            }
        })
        .collect();
    for discount in lines.iter().filter(|l| l.kind != LineKind::Item) {
        let in_category = |l: &SaleLine| {
            l.kind == LineKind::Item
                && !discount.category.is_empty()
                && l.in_category(&discount.category)
        };
        let targets: Vec<usize> = if lines.iter().any(in_category) {
            (0..lines.len())
                .filter(|&i| in_category(&lines[i]))
                .collect()
        } else {
            (0..lines.len())
                .filter(|&i| lines[i].kind == LineKind::Item)
                .collect()
        };
        let total: i128 = targets.iter().map(|&i| i128::from(base[i])).sum();
        let off = i128::from(discount.amount_minor.saturating_neg()).min(total);
        if off <= 0 {
            continue;
        }
        let mut left = off;
        for &i in &targets {
            let share = off * i128::from(base[i]) / total;
            base[i] -= i64::try_from(share).unwrap_or(0);
            left -= share;
        }
        for &i in &targets {
            if left == 0 {
                break;
            }
            if base[i] > 0 {
                base[i] -= 1;
                left -= 1;
            }
        }
    }
    base
}

/// The points `sale` earns for a member in `tier` at `at` under `program`.
///
/// Each earning line's points are `base x points_per_unit / 10^minor_units` times the tier's,
/// its category's and the best running promotion's multipliers; the sum is rounded once by the
/// program's rule, then each running bonus promotion whose minimum spend the covered lines reach
/// adds its points. Excluded categories, discounts and rewards earn nothing. A typed amount is
/// one uncategorised item, so it earns exactly `amount x rate x tier multiplier`, rounded.
///
/// Paid items of a stamp card's category collect its stamps; `held` (the member's stamps) only
/// words the explanation ("7 of 9").
pub fn quote(
    program: &Program,
    tier: usize,
    held: &BTreeMap<String, i64>,
    sale: Sale<'_>,
    at: Timestamp,
) -> Result<Quote, Refusal> {
    let priced = price(program, tier, sale, at)?;
    let steps = priced.explain(program, tier, held, sale.lines());
    Ok(Quote {
        amount_minor: priced.amount_minor,
        points: priced.points,
        stamps: priced.stamps,
        steps,
    })
}

/// What a sale earns, without the explanation: what an entry records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earned {
    /// The sale's total in minor units.
    pub amount_minor: i64,
    pub points: i64,
    /// Stamps earned, by card id.
    pub stamps: BTreeMap<String, i64>,
}

/// [`quote`]'s numbers alone: for writing and judging entries, where no one reads the steps.
pub fn earned(
    program: &Program,
    tier: usize,
    sale: Sale<'_>,
    at: Timestamp,
) -> Result<Earned, Refusal> {
    let priced = price(program, tier, sale, at)?;
    Ok(Earned {
        amount_minor: priced.amount_minor,
        points: priced.points,
        stamps: priced.stamps,
    })
}

/// A sale priced: the points after each multiplier, and what the explanation names.
struct Priced<'p> {
    amount_minor: i64,
    points: i64,
    stamps: BTreeMap<String, i64>,
    /// Points after the base, tier, category and promotion multipliers, each rounded.
    after: [i64; 4],
    earning_spend: Vec<(usize, i64)>,
    excluded_used: Vec<String>,
    categories_used: Vec<&'p CategoryRate>,
    promotions_used: Vec<&'p str>,
    bonuses: Vec<(i64, &'p str)>,
}

fn price<'p>(
    program: &'p Program,
    tier: usize,
    sale: Sale<'_>,
    at: Timestamp,
) -> Result<Priced<'p>, Refusal> {
    let owned;
    let (amount_minor, lines) = match sale {
        Sale::Amount(amount) => {
            check_sale_amount(program, amount)?;
            owned = [SaleLine::item("Sale", "", 1, amount)];
            (amount, &owned[..])
        }
        Sale::Lines(lines) => {
            check_lines(lines).map_err(Refusal::BadLine)?;
            let total = lines_total(lines).ok_or(Refusal::BadLine(LineError {
                line: lines.len(),
                reason: "the lines add up to more than any sale".to_owned(),
            }))?;
            check_sale_amount(program, total)?;
            (total, lines)
        }
    };
    let running = running_promotions(program, tier, at);
    let tier_h = i128::from(program.tier(tier).multiplier_hundredths);
    let ppu = i128::from(program.points_per_unit);
    let bases = earning_bases(lines);
    let (mut s0, mut s1, mut s2, mut s3) = (0_i128, 0_i128, 0_i128, 0_i128);
    let mut categories_used: Vec<&CategoryRate> = Vec::new();
    let mut promotions_used: Vec<&str> = Vec::new();
    let mut excluded_used: Vec<String> = Vec::new();
    let mut earning_spend: Vec<(usize, i64)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.kind != LineKind::Item || bases[i] <= 0 {
            continue;
        }
        if is_excluded(program, line) {
            let name = line.category.to_ascii_lowercase();
            if !excluded_used.contains(&name) {
                excluded_used.push(name);
            }
            continue;
        }
        earning_spend.push((i, bases[i]));
        let cat_h = match program
            .categories
            .iter()
            .find(|c| line.in_category(&c.category))
        {
            Some(rate) => {
                if !categories_used.iter().any(|used| std::ptr::eq(*used, rate)) {
                    categories_used.push(rate);
                }
                i128::from(rate.multiplier_hundredths)
            }
            None => 100,
        };
        let promo_h = match best_multiplier(&running, line) {
            Some((m, name)) => {
                if !promotions_used.contains(&name) {
                    promotions_used.push(name);
                }
                i128::from(m)
            }
            None => 100,
        };
        let base = i128::from(bases[i]) * ppu;
        s0 += base * 1_000_000;
        s1 += base * tier_h * 10_000;
        s2 += base * tier_h * cat_h * 100;
        s3 += base * tier_h * cat_h * promo_h;
    }
    let denominator = 10_i128.pow(u32::from(program.minor_units)) * 1_000_000;
    let after = [s0, s1, s2, s3].map(|s| {
        i64::try_from(round(program.rounding, s, denominator)).unwrap_or(MAX_ENTRY_POINTS)
    });
    let paid: Vec<bool> = (0..lines.len())
        .map(|i| earning_spend.iter().any(|(j, _)| *j == i))
        .collect();
    let stamps = super::stamps::earned(&program.stamp_cards, lines, &paid);
    let mut points = after[3];
    let mut bonuses = Vec::new();
    for promo in &running {
        let PromotionEffect::Bonus {
            points: bonus,
            min_spend_minor,
        } = promo.effect
        else {
            continue;
        };
        let spend: i64 = earning_spend
            .iter()
            .filter(|(i, _)| promo.covers(&lines[*i].category))
            .map(|(_, b)| b)
            .sum();
        if spend > 0 && spend >= min_spend_minor {
            points = points.saturating_add(bonus);
            bonuses.push((bonus, promo.name.as_str()));
        }
    }
    Ok(Priced {
        amount_minor,
        points: points.min(MAX_ENTRY_POINTS),
        stamps,
        after,
        earning_spend,
        excluded_used,
        categories_used,
        promotions_used,
        bonuses,
    })
}

impl Priced<'_> {
    /// The steps that add up to the points, in words; `lines` names the discounts (none for a
    /// typed amount).
    fn explain(
        &self,
        program: &Program,
        tier: usize,
        held: &BTreeMap<String, i64>,
        lines: &[SaleLine],
    ) -> Vec<Step> {
        let [p0, p1, p2, p3] = self.after;
        let mut steps = vec![Step {
            points: p0,
            text: format!(
                "{p0} base on {}",
                program.format_money(self.earning_spend.iter().map(|(_, b)| b).sum())
            ),
        }];
        if !self.excluded_used.is_empty() {
            steps.push(Step {
                points: 0,
                text: format!("{} earn nothing", self.excluded_used.join(", ")),
            });
        }
        let off: i64 = lines
            .iter()
            .filter(|l| l.kind != LineKind::Item)
            .map(|l| l.amount_minor)
            .sum();
        if off < 0 {
            steps.push(Step {
                points: 0,
                text: format!(
                    "discounts and rewards ({}) earn nothing",
                    program.format_money(off)
                ),
            });
        }
        if program.tier(tier).multiplier_hundredths != 100 {
            steps.push(Step {
                points: p1 - p0,
                text: format!(
                    "{:+} ×{} {}",
                    p1 - p0,
                    hundredths_text(program.tier(tier).multiplier_hundredths),
                    program.tier(tier).name
                ),
            });
        }
        if !self.categories_used.is_empty() {
            let labels: Vec<String> = self
                .categories_used
                .iter()
                .map(|rate| {
                    format!(
                        "{} ×{}",
                        rate.category,
                        hundredths_text(rate.multiplier_hundredths)
                    )
                })
                .collect();
            steps.push(Step {
                points: p2 - p1,
                text: format!("{:+} {}", p2 - p1, labels.join(", ")),
            });
        }
        if !self.promotions_used.is_empty() {
            steps.push(Step {
                points: p3 - p2,
                text: format!("{:+} {}", p3 - p2, self.promotions_used.join(", ")),
            });
        }
        for (card_id, count) in &self.stamps {
            if let Some(card) = program.stamp_card(card_id) {
                let now = held.get(card_id).copied().unwrap_or(0) + count;
                let (full, rest) = (now / card.stamps, now % card.stamps);
                let standing = match (full, rest) {
                    (0, _) => format!("{now} of {}", card.stamps),
                    (_, 0) => format!("card full, {full} free ready"),
                    _ => format!(
                        "card full, {full} free ready, {rest} of {} on the next",
                        card.stamps
                    ),
                };
                steps.push(Step {
                    points: 0,
                    text: format!(
                        "+{count} {} stamp{}: {standing}",
                        card.name,
                        if *count == 1 { "" } else { "s" },
                    ),
                });
            }
        }
        for (bonus, name) in &self.bonuses {
            steps.push(Step {
                points: *bonus,
                text: format!("{bonus:+} {name}"),
            });
        }
        steps
    }
}

/// The promotions running at `at` for a member of `tier`.
fn running_promotions(program: &Program, tier: usize, at: Timestamp) -> Vec<&Promotion> {
    let local = local_time(program, at);
    program
        .promotions
        .iter()
        .filter(|p| p.runs(local, tier))
        .collect()
}

fn is_excluded(program: &Program, line: &SaleLine) -> bool {
    program
        .excluded_categories
        .iter()
        .any(|c| line.in_category(c))
}

/// The largest running multiplier promotion covering `line`, with its name.
fn best_multiplier<'p>(running: &[&'p Promotion], line: &SaleLine) -> Option<(u32, &'p str)> {
    running
        .iter()
        .filter(|p| p.covers(&line.category))
        .filter_map(|p| match p.effect {
            PromotionEffect::Multiplier(m) => Some((m, p.name.as_str())),
            PromotionEffect::Bonus { .. } => None,
        })
        .max_by_key(|(m, _)| *m)
}

/// What each line of a sale was paid and weighs in its points, for returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineWeights {
    /// Each item line's amount less its share of discounts and rewards; 0 for other lines.
    pub paid: Vec<i64>,
    /// Each line's share of the points before tier and rounding: paid x category x best
    /// promotion multiplier; 0 for excluded categories and non-items.
    pub weight: Vec<i128>,
}

/// The lines' weights for a member of `tier` at `at` (the sale's time) under `program`.
pub fn line_weights(
    program: &Program,
    tier: usize,
    lines: &[SaleLine],
    at: Timestamp,
) -> LineWeights {
    let running = running_promotions(program, tier, at);
    let paid = earning_bases(lines);
    let weight = lines
        .iter()
        .zip(&paid)
        .map(|(line, &base)| {
            if line.kind != LineKind::Item || base <= 0 || is_excluded(program, line) {
                return 0;
            }
            let cat = program
                .categories
                .iter()
                .find(|c| line.in_category(&c.category))
                .map_or(100, |c| c.multiplier_hundredths);
            let promo = best_multiplier(&running, line).map_or(100, |(m, _)| m);
            i128::from(base) * i128::from(cat) * i128::from(promo)
        })
        .collect();
    LineWeights { paid, weight }
}

/// 150 -> "1.5", 200 -> "2", 125 -> "1.25".
fn hundredths_text(h: u32) -> String {
    let text = format!("{}.{:02}", h / 100, h % 100);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::basket::LineKind;

    const SHOP: &str = r#"
[[promotions]]
id = "double-weekend"
name = "Double points weekend"
days = ["sat", "sun"]
multiplier = 2.0

[[promotions]]
id = "beans-treble"
name = "Beans treble"
categories = ["beans"]
multiplier = 3.0

[[promotions]]
id = "spend-20"
name = "Spend 20, get 100"
bonus = 100
min_spend = 20.00

[[promotions]]
id = "gold-mornings"
name = "Gold mornings"
tiers = ["Gold"]
hours = "07:00-11:00"
from = "2026-12-01"
until = "2026-12-31"
bonus = 25
"#;

    /// The demo program (London time, gift cards and tobacco excluded, beans x2) with the
    /// promotions above instead of its own.
    fn shop() -> Program {
        let demo = crate::domain::program::DEMO_PROGRAM_TOML;
        let own = demo.find("\n[[promotions]]").expect("demo promotions");
        Program::from_toml(&format!("{}\n{SHOP}", &demo[..own])).expect("shop program")
    }

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).expect("time")
    }

    #[test]
    fn a_typed_amount_earns_what_it_always_did() {
        let p = Program::demo();
        let monday = at("2026-11-23T10:00:00Z");
        for (tier, amount, points) in [(0, 450, 45), (1, 450, 56), (2, 399, 59), (0, 9, 0)] {
            let q = quote(&p, tier, &BTreeMap::new(), Sale::Amount(amount), monday).expect("quote");
            assert_eq!(q.points, points);
            assert_eq!(q.steps.iter().map(|s| s.points).sum::<i64>(), points);
        }
    }

    #[test]
    fn a_weekend_basket_explains_itself() {
        let p = shop();
        // Saturday 5 December 2026, 09:30 in London (GMT): the weekend doubles, Gold mornings run.
        let saturday = at("2026-12-05T09:30:00Z");
        let lines = vec![
            SaleLine::item("Latte", "coffee", 2, 800),
            SaleLine::item("House beans 250g", "beans", 1, 1200),
            SaleLine::item("Gift card", "gift-card", 1, 2000),
            SaleLine {
                kind: LineKind::Discount,
                ..SaleLine::item("Loyalty latte", "coffee", 1, -400)
            },
        ];
        let q = quote(&p, 2, &BTreeMap::new(), Sale::Lines(&lines), saturday).expect("quote");
        // Earning: coffee 4.00 (8.00 less 4.00 off), beans 12.00: 16.00 x 10 = 160 base.
        // Gold x1.5: 240 (+80). Beans x2: coffee 60 + beans 360 = 420 (+180).
        // Promotions: coffee x2 (weekend) = 120, beans x3 (treble beats double) = 1080: 1200 (+780).
        // Spend 20 needs 20.00 of earning lines: 16.00 is short. Gold mornings: +25.
        assert_eq!(q.amount_minor, 3600);
        let texts: Vec<&str> = q.steps.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "160 base on 16.00 GBP",
                "gift-card earn nothing",
                "discounts and rewards (-4.00 GBP) earn nothing",
                "+80 ×1.5 Gold",
                "+180 beans ×2",
                "+780 Double points weekend, Beans treble",
                "+2 Coffee card stamps: 2 of 9",
                "+25 Gold mornings",
            ]
        );
        assert_eq!(q.points, 1225);
        assert_eq!(q.steps.iter().map(|s| s.points).sum::<i64>(), q.points);
    }

    #[test]
    fn promotions_keep_to_their_window_in_local_time() {
        let p = shop();
        // Friday 23:30 UTC in July is Saturday 00:30 in London (BST): the weekend has begun.
        let lines = [SaleLine::item("Latte", "coffee", 1, 2000)];
        let q = quote(
            &p,
            0,
            &BTreeMap::new(),
            Sale::Lines(&lines),
            at("2026-07-03T23:30:00Z"),
        )
        .expect("quote");
        assert_eq!(q.points, 200 * 2 + 100);
        // The same instant in December is Friday 23:30 in London: no weekend, but spend 20.
        let q = quote(
            &p,
            0,
            &BTreeMap::new(),
            Sale::Lines(&lines),
            at("2026-12-04T23:30:00Z"),
        )
        .expect("quote");
        assert_eq!(q.points, 200 + 100);
    }

    #[test]
    fn bad_baskets_are_refused_with_the_line() {
        let p = shop();
        let now = at("2026-12-04T12:00:00Z");
        let lines = [SaleLine::item("Latte", "coffee", 0, 300)];
        let err = quote(&p, 0, &BTreeMap::new(), Sale::Lines(&lines), now).expect_err("quantity 0");
        assert_eq!(
            err.to_string(),
            "basket line 1: the quantity must be 1 to 9999"
        );
        let lines = [
            SaleLine::item("Latte", "coffee", 1, 300),
            SaleLine {
                kind: LineKind::Discount,
                ..SaleLine::item("All off", "", 1, -300)
            },
        ];
        assert_eq!(
            quote(&p, 0, &BTreeMap::new(), Sale::Lines(&lines), now),
            Err(Refusal::AmountNotPositive)
        );
    }

    #[test]
    fn discounts_are_shared_exactly() {
        let lines = vec![
            SaleLine::item("A", "x", 1, 333),
            SaleLine::item("B", "y", 1, 333),
            SaleLine::item("C", "y", 1, 334),
            SaleLine {
                kind: LineKind::Discount,
                ..SaleLine::item("Off", "", 1, -100)
            },
            SaleLine {
                kind: LineKind::Reward,
                ..SaleLine::item("Free", "y", 1, -1000)
            },
        ];
        let bases = earning_bases(&lines);
        // 100 off 1000 shared: 33, 33, 33 and the leftover 1 to the first line.
        // Then 1000 off the y lines (300 + 301) takes them to 0, never below.
        assert_eq!(bases, vec![299, 0, 0, 0, 0]);
    }
}
