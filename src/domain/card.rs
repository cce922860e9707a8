//! Card numbers: ten digits a cashier can type, the last a Luhn check digit.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Digits before the check digit.
pub const PAYLOAD_DIGITS: usize = 9;
/// The exclusive upper bound of a card payload.
pub const PAYLOAD_LIMIT: u64 = 1_000_000_000;

/// Why text is not a card number.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CardError {
    #[error("a card number has {expected} digits; {got:?} has {count}")]
    Length {
        got: String,
        count: usize,
        expected: usize,
    },
    #[error("{0:?} is not a card number: only digits, spaces and dashes are allowed")]
    NotDigits(String),
    #[error("{0:?} is not a valid card number: the check digit does not match (typing error?)")]
    CheckDigit(String),
}

/// A validated card number (payload plus Luhn check digit), stored as its ten digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CardNumber(String);

impl CardNumber {
    /// The card number for a payload below [`PAYLOAD_LIMIT`], with its check digit appended.
    pub fn from_payload(payload: u64) -> Self {
        let payload = payload % PAYLOAD_LIMIT;
        let body = format!("{payload:0PAYLOAD_DIGITS$}");
        let check = luhn_check_digit(&body);
        Self(format!("{body}{check}"))
    }

    /// The ten digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits grouped for reading aloud: `123 456 789 0`.
    pub fn grouped(&self) -> String {
        let d = &self.0;
        format!("{} {} {} {}", &d[0..3], &d[3..6], &d[6..9], &d[9..])
    }
}

/// The Luhn check digit for a string of ASCII digits.
pub fn luhn_check_digit(digits: &str) -> u8 {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum();
    // The result is a single decimal digit.
    ((10 - sum % 10) % 10) as u8
}

impl FromStr for CardNumber {
    type Err = CardError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if !trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
        {
            return Err(CardError::NotDigits(trimmed.to_owned()));
        }
        let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
        if digits.len() != PAYLOAD_DIGITS + 1 {
            return Err(CardError::Length {
                got: trimmed.to_owned(),
                count: digits.len(),
                expected: PAYLOAD_DIGITS + 1,
            });
        }
        let (body, check) = digits.split_at(PAYLOAD_DIGITS);
        if check.as_bytes().first().map(|b| b - b'0') != Some(luhn_check_digit(body)) {
            return Err(CardError::CheckDigit(trimmed.to_owned()));
        }
        Ok(Self(digits))
    }
}

impl fmt::Display for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for CardNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CardNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_luhn_values() {
        // The classic example from the Luhn algorithm's description.
        assert_eq!(luhn_check_digit("7992739871"), 3);
        assert_eq!(CardNumber::from_payload(0).as_str(), "0000000000");
        assert_eq!(CardNumber::from_payload(1).as_str(), "0000000018");
    }

    #[test]
    fn accepts_spaces_and_dashes() {
        let card = CardNumber::from_payload(123_456_789);
        let spaced = card.grouped();
        assert_eq!(spaced.parse::<CardNumber>(), Ok(card.clone()));
        assert_eq!(spaced.replace(' ', "-").parse::<CardNumber>(), Ok(card));
    }

    #[test]
    fn refuses_wrong_length_and_letters() {
        assert!(matches!(
            "12345".parse::<CardNumber>(),
            Err(CardError::Length { .. })
        ));
        assert!(matches!(
            "12345678a0".parse::<CardNumber>(),
            Err(CardError::NotDigits(_))
        ));
    }

    proptest! {
        #[test]
        fn generated_cards_parse(payload in 0u64..PAYLOAD_LIMIT) {
            let card = CardNumber::from_payload(payload);
            prop_assert_eq!(card.as_str().parse::<CardNumber>(), Ok(card));
        }

        #[test]
        fn any_single_digit_typo_is_caught(payload in 0u64..PAYLOAD_LIMIT, pos in 0usize..10, delta in 1u8..10) {
            let card = CardNumber::from_payload(payload);
            let mut bytes = card.as_str().as_bytes().to_vec();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
            let typo = String::from_utf8(bytes).unwrap_or_default();
            prop_assert!(matches!(typo.parse::<CardNumber>(), Err(CardError::CheckDigit(_))));
        }
    }
}
