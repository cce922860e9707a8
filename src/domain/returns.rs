//! Returns: a partial refund of a sale takes back its points in proportion, by line when the
//! sale has lines, never more than the sale earned, and the stamps its returned items collected
//! while the member still holds them.
//!
//! Every figure is cumulative over the sale's returns, so returning a sale in parts takes back
//! exactly what returning it whole would: after returns of items worth fraction `f` of the
//! sale's earning weight, `floor(points x f)` has been taken in all.
//!
//! A sale returned in full, like a reversed one, is cancelled: it no longer counts as a purchase
//! towards offers and badges, and the offers, badges and referral bonuses written with it are
//! taken back while unused (the store does that in the return's transaction). A partial return
//! leaves them: the visit happened.

use std::collections::BTreeMap;

use super::basket::{LineKind, SaleLine};
use super::quote::line_weights;
use super::rules::{Draft, Refusal};
use super::{Entry, EntryKind, Program};

/// Sales that no longer count as purchases (for offers and badges): reversed, or returned in
/// full (every unit of money brought back).
pub fn cancelled(entries: &[Entry]) -> std::collections::BTreeSet<super::EntryId> {
    let back = brought_back(entries);
    let mut out: std::collections::BTreeSet<super::EntryId> =
        entries.iter().filter_map(|e| e.reverses).collect();
    out.extend(
        entries
            .iter()
            .filter(|e| {
                e.kind == EntryKind::Earn
                    && back.get(&e.id).is_some_and(|b| Some(*b) >= e.amount_minor)
            })
            .map(|e| e.id),
    );
    out
}

/// The money returns brought back, per sale they name (a positive number).
pub fn brought_back(entries: &[Entry]) -> BTreeMap<super::EntryId, i64> {
    let mut back: BTreeMap<super::EntryId, i64> = BTreeMap::new();
    for e in entries {
        if let Some(sale) = e.returns {
            *back.entry(sale).or_default() -= e.amount_minor.unwrap_or(0);
        }
    }
    back
}

/// Scale of the per-line weight fractions (keeps the arithmetic in integers, exact when a line
/// is returned whole).
const SCALE: i128 = 1_000_000;

/// What comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned<'a> {
    /// Money, for a sale without lines.
    Amount(i64),
    /// (index of the sale's line, quantity), for a sale with lines.
    Lines(&'a [(usize, i64)]),
}

/// What a sale's earlier returns took: money, points, stamps by card, quantity by line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Taken {
    amount: i64,
    points: i64,
    stamps: BTreeMap<String, i64>,
    quantities: Vec<i64>,
}

fn taken(sale: &Entry, earlier: &[&Entry]) -> Taken {
    let mut t = Taken {
        quantities: vec![0; sale.lines.len()],
        ..Taken::default()
    };
    for r in earlier {
        t.amount -= r.amount_minor.unwrap_or(0);
        t.points -= r.points;
        for (card, n) in &r.stamps {
            *t.stamps.entry(card.clone()).or_default() -= n;
        }
        for line in &r.lines {
            if let Some(q) = line.of_line.and_then(|i| t.quantities.get_mut(i as usize)) {
                *q += line.quantity;
            }
        }
    }
    t
}

/// The money a line has brought back after `returned` of its `quantity` came back: its share
/// of what was paid for it (`paid`, its amount less its share of discounts).
fn line_refund(paid: i64, quantity: i64, returned: i64) -> i64 {
    i64::try_from(i128::from(paid) * i128::from(returned) / i128::from(quantity.max(1)))
        .unwrap_or(0)
}

/// The return entry for `what` of `sale` under `program` (the member was in `tier` when they
/// bought), given the sale's `earlier` returns and the stamps the member `held`. Refused when the sale cannot be returned that way, or
/// nothing of it is left.
pub fn refund(
    program: &Program,
    tier: usize,
    sale: &Entry,
    earlier: &[&Entry],
    what: Returned<'_>,
    held: &BTreeMap<String, i64>,
) -> Result<Draft, Refusal> {
    if sale.kind != EntryKind::Earn {
        return Err(Refusal::NotASale);
    }
    let before = taken(sale, earlier);
    let sale_amount = sale.amount_minor.unwrap_or(0);
    let weights = line_weights(program, tier, &sale.lines, sale.occurred_at);
    let (amount, lines, points_after, stamp_bound) = match what {
        Returned::Amount(_) if !sale.lines.is_empty() => return Err(Refusal::ReturnByLine),
        Returned::Lines(_) if sale.lines.is_empty() => return Err(Refusal::ReturnByAmount),
        Returned::Amount(amount) => {
            let left = sale_amount - before.amount;
            if amount <= 0 || amount > left {
                return Err(Refusal::ReturnAmount {
                    left: program.format_money(left),
                });
            }
            let after = i128::from(sale.points) * i128::from(before.amount + amount)
                / i128::from(sale_amount.max(1));
            (amount, Vec::new(), after, BTreeMap::new())
        }
        Returned::Lines(picks) => {
            let mut quantities = before.quantities.clone();
            let mut lines = Vec::new();
            let mut amount = 0;
            let mut stamp_bound: BTreeMap<String, i64> = BTreeMap::new();
            for &(index, quantity) in picks {
                let Some(line) = sale.lines.get(index).filter(|l| l.kind == LineKind::Item) else {
                    return Err(Refusal::ReturnLine {
                        line: index + 1,
                        reason: "the sale has no such item line".into(),
                    });
                };
                let already = quantities[index];
                if quantity <= 0 || already + quantity > line.quantity {
                    return Err(Refusal::ReturnLine {
                        line: index + 1,
                        reason: format!(
                            "{} of {} already returned; {quantity} more is too many",
                            already, line.quantity
                        ),
                    });
                }
                let paid = weights.paid[index];
                let back = line_refund(paid, line.quantity, already + quantity)
                    - line_refund(paid, line.quantity, already);
                quantities[index] += quantity;
                amount += back;
                if weights.weight[index] > 0
                    && let Some(card) = program
                        .stamp_cards
                        .iter()
                        .find(|c| line.in_category(&c.category))
                {
                    *stamp_bound.entry(card.id.clone()).or_default() += quantity;
                }
                lines.push(SaleLine {
                    quantity,
                    amount_minor: back,
                    of_line: u32::try_from(index).ok(),
                    ..line.clone()
                });
            }
            if amount <= 0 {
                return Err(Refusal::ReturnAmount {
                    left: program.format_money(sale_amount - before.amount),
                });
            }
            let total: i128 = weights.weight.iter().sum();
            let returned: i128 = weights
                .weight
                .iter()
                .zip(&sale.lines)
                .zip(&quantities)
                .map(|((w, l), q)| w * SCALE * i128::from(*q) / i128::from(l.quantity.max(1)))
                .sum();
            let after = if total == 0 {
                0
            } else {
                i128::from(sale.points) * returned / (total * SCALE)
            };
            (amount, lines, after, stamp_bound)
        }
    };
    let after = i64::try_from(after_clamped(points_after, sale.points)).unwrap_or(sale.points);
    let points = (after - before.points).clamp(0, sale.points - before.points);
    let mut stamps = BTreeMap::new();
    for (card, bound) in stamp_bound {
        let earned = sale.stamps.get(&card).copied().unwrap_or(0);
        let left = earned - before.stamps.get(&card).copied().unwrap_or(0);
        let take = bound
            .min(left)
            .min(held.get(&card).copied().unwrap_or(0))
            .max(0);
        if take > 0 {
            stamps.insert(card, -take);
        }
    }
    Ok(Draft {
        kind: EntryKind::Return,
        points: -points,
        amount_minor: Some(-amount),
        currency: sale.currency.clone(),
        reward_id: None,
        reverses: None,
        note: None,
        lines,
        stamps,
        returns: Some(sale.id),
    })
}

fn after_clamped(after: i128, points: i64) -> i128 {
    after.clamp(0, i128::from(points))
}

/// Could `program` have written `e`, a return of `sale` after its `earlier` returns? The money
/// and lines must be exactly what the rule gives; the points what it gives under this program;
/// the stamps no more than the returned items collected (the till takes only those still held).
pub fn matches(
    program: &Program,
    tier: usize,
    sale: &Entry,
    earlier: &[&Entry],
    e: &Entry,
) -> bool {
    let what: Vec<(usize, i64)> = e
        .lines
        .iter()
        .filter_map(|l| Some((l.of_line? as usize, l.quantity)))
        .collect();
    let returned = if sale.lines.is_empty() {
        Returned::Amount(-e.amount_minor.unwrap_or(0))
    } else {
        Returned::Lines(&what)
    };
    let everything: BTreeMap<String, i64> = sale.stamps.clone();
    let Ok(most) = refund(program, tier, sale, earlier, returned, &everything) else {
        return false;
    };
    let stamps_ok = e.stamps.iter().all(|(card, n)| {
        most.stamps
            .get(card)
            .is_some_and(|bound| (*bound..=0).contains(n))
    });
    most.points == e.points
        && most.amount_minor == e.amount_minor
        && most.currency == e.currency
        && most.lines == e.lines
        && stamps_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::quote::Sale;
    use crate::domain::rules::earn;
    use crate::domain::summary::tests::entry;
    use crate::domain::{EntryId, Timestamp};
    use proptest::prelude::*;

    /// A Monday in November: no demo promotion runs on these categories.
    const AT: i64 = 1_795_435_200_000;

    fn sale(program: &Program, lines: &[SaleLine]) -> Entry {
        let draft = earn(program, 0, Sale::Lines(lines), Timestamp::from_millis(AT)).expect("sale");
        Entry {
            lines: draft.lines,
            stamps: draft.stamps,
            ..entry(EntryKind::Earn, draft.points, draft.amount_minor, AT)
        }
    }

    fn as_entry(d: Draft, seq: i64) -> Entry {
        Entry {
            id: EntryId(uuid::Uuid::from_u128(seq as u128 + 100)),
            terminal_seq: seq,
            lines: d.lines,
            stamps: d.stamps,
            returns: d.returns,
            ..entry(d.kind, d.points, d.amount_minor, AT + seq)
        }
    }

    #[test]
    fn an_amount_returned_in_parts_takes_back_what_the_whole_would() {
        let p = Program::demo();
        let sold = Entry {
            currency: Some("GBP".into()),
            ..entry(EntryKind::Earn, 100, Some(1_000), AT)
        };
        let none = BTreeMap::new();
        let first = refund(&p, 0, &sold, &[], Returned::Amount(333), &none).expect("first");
        assert_eq!((first.points, first.amount_minor), (-33, Some(-333)));
        let first = as_entry(first, 2);
        let second = refund(&p, 0, &sold, &[&first], Returned::Amount(333), &none).expect("second");
        assert_eq!(second.points, -33);
        let second = as_entry(second, 3);
        let too_much = refund(
            &p,
            0,
            &sold,
            &[&first, &second],
            Returned::Amount(335),
            &none,
        );
        assert_eq!(
            too_much,
            Err(Refusal::ReturnAmount {
                left: "3.34 GBP".into()
            })
        );
        let last = refund(
            &p,
            0,
            &sold,
            &[&first, &second],
            Returned::Amount(334),
            &none,
        )
        .expect("rest");
        assert_eq!(last.points, -34, "100 taken back in all, no more");
        assert_eq!(
            refund(&p, 0, &sold, &[], Returned::Lines(&[(0, 1)]), &none),
            Err(Refusal::ReturnByAmount)
        );
    }

    #[test]
    fn lines_come_back_by_their_weight_with_their_stamps() {
        let p = Program::demo();
        // Beans earn x2: 10.00 of beans weighs twice 10.00 of lattes (4); a gift card nothing.
        let lines = vec![
            SaleLine::item("House beans", "beans", 1, 1_000),
            SaleLine::item("Latte", "coffee", 4, 1_000),
            SaleLine::item("Gift card", "gift-card", 1, 2_000),
        ];
        let sold = sale(&p, &lines);
        // Beans 100 base x2 = 200, lattes 100: 300 points; 4 coffee stamps.
        assert_eq!((sold.points, sold.stamps.get("coffee")), (300, Some(&4)));
        let held = BTreeMap::from([("coffee".to_owned(), 3)]);
        let gift = refund(&p, 0, &sold, &[], Returned::Lines(&[(2, 1)]), &held).expect("gift");
        assert_eq!(
            (gift.points, gift.amount_minor),
            (0, Some(-2_000)),
            "a gift card earned nothing"
        );
        let two = refund(&p, 0, &sold, &[], Returned::Lines(&[(1, 2)]), &held).expect("lattes");
        // Two of four lattes: half of the lattes' third of the weight: 300 x 1/6 = 50.
        assert_eq!((two.points, two.amount_minor), (-50, Some(-500)));
        assert_eq!(two.stamps, BTreeMap::from([("coffee".to_owned(), -2)]));
        assert_eq!(two.lines[0].of_line, Some(1));
        let spent = BTreeMap::from([("coffee".to_owned(), 1)]);
        let few = refund(&p, 0, &sold, &[], Returned::Lines(&[(1, 2)]), &spent).expect("lattes");
        assert_eq!(
            few.stamps,
            BTreeMap::from([("coffee".to_owned(), -1)]),
            "only stamps still held"
        );
        let over = refund(&p, 0, &sold, &[], Returned::Lines(&[(1, 5)]), &held);
        assert!(
            matches!(over, Err(Refusal::ReturnLine { line: 2, .. })),
            "{over:?}"
        );
    }

    proptest! {
        /// Whatever is returned, in whatever parts, never takes back more than the sale earned
        /// (nor more money than it took), and returning everything takes back all of it.
        #[test]
        fn a_return_never_takes_more_than_the_sale_earned(
            amounts in proptest::collection::vec((1i64..4, 1i64..3_000, 0usize..4), 1..6),
            picks in proptest::collection::vec((0usize..6, 1i64..4), 0..10),
        ) {
            let p = Program::demo();
            let categories = ["coffee", "beans", "gift-card", "pastry"];
            let lines: Vec<SaleLine> = amounts
                .iter()
                .map(|&(q, a, c)| SaleLine::item("Thing", categories[c], q, a))
                .collect();
            let sold = sale(&p, &lines);
            let everything = sold.stamps.clone();
            let mut made: Vec<Entry> = Vec::new();
            for (i, &(line, quantity)) in picks.iter().enumerate() {
                let earlier: Vec<&Entry> = made.iter().collect();
                if let Ok(d) = refund(&p, 0, &sold, &earlier, Returned::Lines(&[(line, quantity)]), &everything) {
                    let e = as_entry(d, i as i64 + 2);
                    prop_assert!(matches(&p, 0, &sold, &earlier, &e), "the check accepts what the rule makes");
                    made.push(e);
                }
            }
            let taken: i64 = made.iter().map(|e| -e.points).sum();
            let back: i64 = made.iter().map(|e| -e.amount_minor.unwrap_or(0)).sum();
            prop_assert!(taken >= 0 && taken <= sold.points);
            prop_assert!(back <= sold.amount_minor.unwrap_or(0));
            // Return whatever is left of every line: all the points come back.
            let mut left: Vec<(usize, i64)> = Vec::new();
            for (i, l) in lines.iter().enumerate() {
                let returned: i64 = made.iter().flat_map(|e| &e.lines).filter(|r| r.of_line == Some(i as u32)).map(|r| r.quantity).sum();
                if returned < l.quantity {
                    left.push((i, l.quantity - returned));
                }
            }
            let earlier: Vec<&Entry> = made.iter().collect();
            if let Ok(d) = refund(&p, 0, &sold, &earlier, Returned::Lines(&left), &everything) {
                prop_assert_eq!(taken - d.points, sold.points);
            } else {
                prop_assert_eq!(taken, sold.points);
            }
        }
    }
}
