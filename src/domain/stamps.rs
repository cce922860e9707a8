//! Stamp cards: paid items of a category collect stamps (their own unit in the ledger, not
//! points), and a full card buys the free one ("nine paid coffees, the tenth is free").
//!
//! A sale's entry records the stamps it earned (`Entry::stamps`, card id -> count), priced by
//! the program in force like its points; a `stamp_reward` entry spends a full card. What a
//! member holds is the sum over their entries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::basket::{LineKind, SaleLine};
use super::program::{ConfigError, short_name, stable_id};
use super::{Entry, EntryKind};

/// Most stamps one card may need.
pub const MAX_CARD_STAMPS: i64 = 100;

/// A stamp card of the program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StampCard {
    /// Short stable id, recorded on entries.
    pub id: String,
    pub name: String,
    /// The category whose paid items collect stamps, lower case.
    pub category: String,
    /// Stamps a full card holds; a full card buys one free item.
    pub stamps: i64,
    /// What the full card buys, e.g. "Free coffee".
    pub reward: String,
}

/// `[[stamp_cards]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStampCard {
    id: String,
    name: String,
    category: String,
    stamps: i64,
    reward: String,
}

/// Validates `[[stamp_cards]]`.
pub(super) fn cards(raw: Vec<RawStampCard>) -> Result<Vec<StampCard>, ConfigError> {
    let mut cards: Vec<StampCard> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("stamp_cards[{i}].{f}");
        let id = stable_id(&at("id"), &r.id, cards.iter().map(|x| x.id.as_str()))?;
        let name = short_name(&at("name"), &r.name)?;
        let reward = short_name(&at("reward"), &r.reward)?;
        let category = short_name(&at("category"), &r.category)?.to_ascii_lowercase();
        if cards.iter().any(|c| c.category == category) {
            return Err(ConfigError::field(
                at("category"),
                format!("{category:?} already has a stamp card"),
            ));
        }
        if !(1..=MAX_CARD_STAMPS).contains(&r.stamps) {
            return Err(ConfigError::field(
                at("stamps"),
                format!("must be between 1 and {MAX_CARD_STAMPS}, got {}", r.stamps),
            ));
        }
        cards.push(StampCard {
            id,
            name,
            category,
            stamps: r.stamps,
            reward,
        });
    }
    Ok(cards)
}

/// The stamps a basket earns: per card, the quantity of its category's items that were paid
/// for (`paid[i]`: not free, not wholly discounted, not excluded from earning), less the
/// quantity of its reward lines (items given free collect no stamp).
pub fn earned(cards: &[StampCard], lines: &[SaleLine], paid: &[bool]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for card in cards {
        let count: i64 = lines
            .iter()
            .zip(paid)
            .filter(|(line, _)| line.in_category(&card.category))
            .map(|(line, paid)| match line.kind {
                LineKind::Item if *paid => line.quantity,
                LineKind::Reward => -line.quantity,
                _ => 0,
            })
            .sum();
        if count > 0 {
            out.insert(card.id.clone(), count);
        }
    }
    out
}

/// The stamps a member holds on each card: the sum over their entries.
pub fn held(entries: &[Entry]) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    for e in entries {
        for (card, count) in &e.stamps {
            *out.entry(card.clone()).or_default() += count;
        }
    }
    out.retain(|_, n| *n != 0);
    out
}

/// Whether an entry of `kind` may carry `stamps`: a sale earns (all positive), a stamp reward
/// spends one card (one negative count, on the card it names), a reversal negates its target's
/// (checked with the target); no other kind carries any.
pub fn shape_ok(kind: EntryKind, reward_id: Option<&str>, stamps: &BTreeMap<String, i64>) -> bool {
    match kind {
        EntryKind::Earn => stamps
            .values()
            .all(|n| (1..=i64::from(u32::MAX)).contains(n)),
        EntryKind::StampReward => {
            stamps.len() == 1
                && stamps.iter().all(|(card, n)| {
                    Some(card.as_str()) == reward_id && (-MAX_CARD_STAMPS..0).contains(n)
                })
        }
        EntryKind::Reverse => true,
        EntryKind::Return => stamps.values().all(|n| *n < 0),
        _ => stamps.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coffee() -> Vec<StampCard> {
        vec![StampCard {
            id: "coffee".into(),
            name: "Coffee card".into(),
            category: "coffee".into(),
            stamps: 9,
            reward: "Free coffee".into(),
        }]
    }

    #[test]
    fn only_paid_items_of_the_category_collect_stamps() {
        let lines = vec![
            SaleLine::item("Latte", "Coffee", 2, 640),
            SaleLine::item("Flat white", "coffee", 1, 0),
            SaleLine::item("Croissant", "pastry", 1, 250),
        ];
        let got = earned(&coffee(), &lines, &[true, false, true]);
        assert_eq!(got, BTreeMap::from([("coffee".to_owned(), 2)]));
        let free = SaleLine {
            kind: LineKind::Reward,
            ..SaleLine::item("Free latte", "coffee", 1, -320)
        };
        let with_free = [lines[0].clone(), free];
        let got = earned(&coffee(), &with_free, &[true, false]);
        assert_eq!(got, BTreeMap::from([("coffee".to_owned(), 1)]));
        assert!(earned(&coffee(), &lines[2..], &[true]).is_empty());
    }

    #[test]
    fn only_sales_and_stamp_rewards_carry_stamps() {
        let spend = BTreeMap::from([("coffee".to_owned(), -9)]);
        let earn = BTreeMap::from([("coffee".to_owned(), 2)]);
        assert!(shape_ok(EntryKind::Earn, None, &earn));
        assert!(!shape_ok(EntryKind::Earn, None, &spend));
        assert!(shape_ok(EntryKind::StampReward, Some("coffee"), &spend));
        assert!(!shape_ok(EntryKind::StampReward, Some("tea"), &spend));
        assert!(!shape_ok(EntryKind::StampReward, Some("coffee"), &earn));
        assert!(!shape_ok(EntryKind::Adjust, None, &earn));
    }
}
