//! Money as integer minor units, and the text forms cashiers type and read.

use thiserror::Error;

/// Why typed amount text was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AmountError {
    #[error("enter an amount, e.g. 12.50")]
    Empty,
    #[error("{0:?} is not an amount: use digits and at most one decimal point, e.g. 12.50")]
    NotANumber(String),
    #[error("{text:?} has more than {exponent} decimal places")]
    TooPrecise { text: String, exponent: u8 },
    /// Three digits after one separator where the currency has fewer decimal places: a
    /// thousands separator, or a slip in the pence. Refused rather than guessed, as either
    /// guess can be a thousand times too much or too little.
    #[error("{text:?} could be {grouped} or {decimal}: type it without a thousands separator")]
    Grouped {
        text: String,
        grouped: String,
        decimal: String,
    },
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// Parses text such as `12`, `12.5`, `12.50` or `12,50` into minor units for a currency with
/// `exponent` decimal places. Signs are refused: amounts at the till are never negative.
pub fn parse_amount(text: &str, exponent: u8) -> Result<i64, AmountError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(AmountError::Empty);
    }
    let not_number = || AmountError::NotANumber(text.to_owned());
    let normalised = text.replace(',', ".");
    let (whole, frac) = match normalised.split_once('.') {
        Some((w, f)) => (w, f),
        None => (normalised.as_str(), ""),
    };
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits_only(whole) || !digits_only(frac) {
        return Err(not_number());
    }
    // A thousands separator follows one to three digits, never a lone 0.
    let grouped = (1..=3).contains(&whole.len()) && !whole.starts_with('0');
    if frac.len() == 3 && exponent < 3 && grouped {
        return Err(AmountError::Grouped {
            text: text.to_owned(),
            grouped: format!("{whole}{frac}"),
            decimal: match exponent {
                0 => whole.to_owned(),
                _ => format!("{whole}.{}", &frac[..usize::from(exponent)]),
            },
        });
    }
    if frac.len() > usize::from(exponent) {
        return Err(AmountError::TooPrecise {
            text: text.to_owned(),
            exponent,
        });
    }
    let too_large = || AmountError::TooLarge(text.to_owned());
    let scale = 10_i64.pow(u32::from(exponent));
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    let mut frac_minor: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| not_number())?
    };
    for _ in frac.len()..usize::from(exponent) {
        frac_minor *= 10;
    }
    whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(frac_minor))
        .ok_or_else(too_large)
}

/// Formats minor units with their currency, e.g. `1250` with exponent 2 as `12.50 GBP`.
pub fn format_money(minor: i64, exponent: u8, currency: &str) -> String {
    format!("{} {currency}", format_amount(minor, exponent))
}

/// Formats minor units as a plain decimal, e.g. `1250` with exponent 2 as `12.50`.
pub fn format_amount(minor: i64, exponent: u8) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if exponent == 0 {
        return format!("{sign}{abs}");
    }
    let scale = 10_u64.pow(u32::from(exponent));
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = usize::from(exponent)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_amount("12", 2), Ok(1200));
        assert_eq!(parse_amount("12.5", 2), Ok(1250));
        assert_eq!(parse_amount(" 12,05 ", 2), Ok(1205));
        assert_eq!(parse_amount(".99", 2), Ok(99));
        assert_eq!(parse_amount("7", 0), Ok(7));
    }

    #[test]
    fn refuses_bad_text() {
        assert_eq!(parse_amount("", 2), Err(AmountError::Empty));
        assert!(matches!(
            parse_amount("-5", 2),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            parse_amount("1.2.3", 2),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            parse_amount("abc", 2),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            parse_amount(".", 2),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            parse_amount("1.2345", 2),
            Err(AmountError::TooPrecise { .. })
        ));
        assert!(matches!(
            parse_amount(".234", 2),
            Err(AmountError::TooPrecise { .. })
        ));
        assert!(matches!(
            parse_amount("99999999999999999999", 2),
            Err(AmountError::TooLarge(_))
        ));
    }

    #[test]
    fn a_thousands_separator_is_named_not_guessed() {
        for (text, exponent, grouped, decimal) in [
            ("1,500", 2, "1500", "1.50"),
            ("1.234", 2, "1234", "1.23"),
            ("12,000", 0, "12000", "12"),
        ] {
            let refused = parse_amount(text, exponent).expect_err(text);
            assert_eq!(
                refused,
                AmountError::Grouped {
                    text: text.into(),
                    grouped: grouped.into(),
                    decimal: decimal.into(),
                }
            );
        }
        assert_eq!(
            parse_amount("1,500", 2).expect_err("grouped").to_string(),
            "\"1,500\" could be 1500 or 1.50: type it without a thousands separator"
        );
        assert_eq!(parse_amount("1,234", 3), Ok(1_234));
        for text in ["0,500", "1234,567", "01,500"] {
            assert!(
                matches!(parse_amount(text, 2), Err(AmountError::TooPrecise { .. })),
                "{text}: no thousands separator there"
            );
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format_amount(1250, 2), "12.50");
        assert_eq!(format_amount(5, 2), "0.05");
        assert_eq!(format_amount(-1205, 2), "-12.05");
        assert_eq!(format_amount(42, 0), "42");
    }
}
