//! A sale's basket: the lines a point-of-sale system sends (product, category, quantity,
//! amount), or one typed amount. Lines are recorded on the sale's ledger entry, so every till
//! and the server compute the same points from them.

use serde::{Deserialize, Serialize};

use super::entry::MAX_TEXT_LEN;

/// Most lines one sale may carry.
pub const MAX_LINES: usize = 200;
/// Longest product code or category.
pub const MAX_CODE_LEN: usize = 40;
/// Largest quantity on one line.
pub const MAX_QUANTITY: i64 = 9_999;

/// What a basket line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// Something bought: earns points unless its category is excluded.
    #[default]
    Item,
    /// Money off (a negative amount): earns nothing and lowers what the items earn on.
    Discount,
    /// Something paid for with a reward (zero or a negative amount): earns nothing and lowers
    /// what the items earn on.
    Reward,
}

impl LineKind {
    fn is_item(&self) -> bool {
        *self == Self::Item
    }
}

/// One line of a basket. `amount_minor` is the line's total (quantity included), signed:
/// items zero or more, discounts and rewards zero or less.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleLine {
    /// The POS's product code, if it has one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,
    pub name: String,
    /// The product's category (`coffee`, `gift-card`), compared without regard to case.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub category: String,
    #[serde(default = "one")]
    pub quantity: i64,
    pub amount_minor: i64,
    #[serde(default, skip_serializing_if = "LineKind::is_item")]
    pub kind: LineKind,
    /// On a return's line: the index of the sale's line it brings back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of_line: Option<u32>,
}

/// A basket as a point-of-sale system sends it (a file for `tillpass earn --basket`, the body
/// of the integration API's `POST /v1/basket`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Basket {
    pub lines: Vec<SaleLine>,
}

fn one() -> i64 {
    1
}

impl SaleLine {
    /// An item line.
    pub fn item(name: &str, category: &str, quantity: i64, amount_minor: i64) -> Self {
        Self {
            code: String::new(),
            name: name.to_owned(),
            category: category.to_owned(),
            quantity,
            amount_minor,
            kind: LineKind::Item,
            of_line: None,
        }
    }

    /// Whether this line is in `category` (case-insensitive).
    pub fn in_category(&self, category: &str) -> bool {
        self.category.eq_ignore_ascii_case(category)
    }
}

/// Why a basket line is refused: the line (from 1) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

/// Checks each line on its own (text lengths, quantity, the amount's sign for its kind) and the
/// number of lines. The total is checked by the sale rules.
pub fn check_lines(lines: &[SaleLine]) -> Result<(), LineError> {
    if lines.len() > MAX_LINES {
        return Err(LineError {
            line: MAX_LINES + 1,
            reason: format!("a sale carries at most {MAX_LINES} lines"),
        });
    }
    for (i, l) in lines.iter().enumerate() {
        if l.of_line.is_some() {
            return Err(LineError {
                line: i + 1,
                reason: "a sale's line cannot name a line it returns".to_owned(),
            });
        }
        let fail = |reason: &str| {
            Err(LineError {
                line: i + 1,
                reason: reason.to_owned(),
            })
        };
        if l.name.trim().is_empty() || l.name.len() > MAX_TEXT_LEN {
            return fail("the name must be 1-200 characters");
        }
        if l.code.len() > MAX_CODE_LEN || l.category.len() > MAX_CODE_LEN {
            return fail("the code and category are at most 40 characters");
        }
        if !(1..=MAX_QUANTITY).contains(&l.quantity) {
            return fail("the quantity must be 1 to 9999");
        }
        match l.kind {
            LineKind::Item if l.amount_minor < 0 => {
                return fail("an item's amount cannot be negative (send a discount line)");
            }
            LineKind::Discount | LineKind::Reward if l.amount_minor > 0 => {
                return fail("a discount or reward line takes money off: its amount is 0 or less");
            }
            _ => {}
        }
    }
    Ok(())
}

/// The basket's total in minor units (items less discounts), or `None` on overflow.
pub fn lines_total(lines: &[SaleLine]) -> Option<i64> {
    lines
        .iter()
        .try_fold(0_i64, |sum, l| sum.checked_add(l.amount_minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_checked_one_by_one() {
        let good = SaleLine::item("Latte", "coffee", 2, 640);
        assert_eq!(check_lines(std::slice::from_ref(&good)), Ok(()));
        let negative = SaleLine::item("Latte", "coffee", 1, -1);
        let err = check_lines(&[good.clone(), negative]).expect_err("negative item");
        assert_eq!(err.line, 2);
        let discount = SaleLine {
            kind: LineKind::Discount,
            ..SaleLine::item("Staff", "", 1, 100)
        };
        assert!(check_lines(&[discount]).is_err());
        let zero_qty = SaleLine::item("Latte", "coffee", 0, 320);
        assert!(check_lines(&[zero_qty]).is_err());
        let too_many = vec![good; MAX_LINES + 1];
        assert!(check_lines(&too_many).is_err());
    }

    #[test]
    fn the_json_form_is_short_and_strict() {
        let line: SaleLine =
            serde_json::from_str(r#"{"name":"Latte","category":"coffee","amount_minor":320}"#)
                .expect("parses");
        assert_eq!(line.quantity, 1);
        assert_eq!(line.kind, LineKind::Item);
        assert_eq!(
            serde_json::to_string(&line).expect("json"),
            r#"{"name":"Latte","category":"coffee","quantity":1,"amount_minor":320}"#
        );
        assert!(
            serde_json::from_str::<SaleLine>(r#"{"name":"x","amount_minor":1,"price":2}"#).is_err()
        );
    }
}
