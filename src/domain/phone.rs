//! Phone numbers normalised to E.164 so one customer is one phone, however it was typed.

use phonenumber::Mode;
use phonenumber::country::Id as CountryId;
use thiserror::Error;

/// Why a phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PhoneError {
    #[error("{0:?} is not a phone number")]
    Unparseable(String),
    #[error("{0:?} is not a valid phone number for its country")]
    Invalid(String),
}

/// Normalises `input` to E.164 (`+447400123456`), reading numbers without a country code as
/// numbers of `default_country`.
pub fn normalise_phone(input: &str, default_country: CountryId) -> Result<String, PhoneError> {
    let trimmed = input.trim();
    let number = phonenumber::parse(Some(default_country), trimmed)
        .map_err(|_| PhoneError::Unparseable(trimmed.to_owned()))?;
    if !number.is_valid() {
        return Err(PhoneError::Invalid(trimmed.to_owned()));
    }
    Ok(number.format().mode(Mode::E164).to_string())
}

/// True when the text looks like someone typed a phone number (digits with optional `+`,
/// spaces, dashes, dots or brackets), as opposed to a name.
pub fn looks_like_phone(text: &str) -> bool {
    let t = text.trim();
    let digits = t.chars().filter(char::is_ascii_digit).count();
    digits >= 6
        && t.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_and_international_forms_agree() {
        let a = normalise_phone("07400 123456", CountryId::GB);
        let b = normalise_phone("+44 7400 123456", CountryId::GB);
        let c = normalise_phone("0044 (0)7400-123-456", CountryId::GB);
        assert_eq!(a.as_deref(), Ok("+447400123456"));
        assert_eq!(a, b);
        assert_eq!(b, c);
    }

    #[test]
    fn foreign_numbers_keep_their_country() {
        assert_eq!(
            normalise_phone("+49 30 901820", CountryId::GB).as_deref(),
            Ok("+4930901820")
        );
    }

    #[test]
    fn refuses_nonsense() {
        assert!(normalise_phone("hello", CountryId::GB).is_err());
        assert!(normalise_phone("0123", CountryId::GB).is_err());
    }

    #[test]
    fn phone_shape() {
        assert!(looks_like_phone("07400 123456"));
        assert!(looks_like_phone("+44 (7400) 123-456"));
        assert!(!looks_like_phone("Alice"));
        assert!(!looks_like_phone("123"));
    }
}
