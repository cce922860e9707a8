//! NFC tag UIDs as typed by keyboard-mode readers.

use thiserror::Error;

/// Why text is not a tag UID.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not an NFC tag UID (4, 7 or 10 bytes in hex, e.g. 04:A2:24:B2:C3:5E:80)")]
pub struct UidError(pub String);

/// Normalises a UID to upper-case hex without separators: `04a2:24b2` -> `04A224B2`.
/// Readers differ in separators and case; the bytes are what identify the tag.
pub fn normalise_uid(text: &str) -> Result<String, UidError> {
    let hex: String = text
        .trim()
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | ' '))
        .collect::<String>()
        .to_ascii_uppercase();
    let valid = matches!(hex.len(), 8 | 14 | 20) && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if valid {
        Ok(hex)
    } else {
        Err(UidError(text.trim().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_reader_styles() {
        assert_eq!(
            normalise_uid("04:a2:24:b2:c3:5e:80").as_deref(),
            Ok("04A224B2C35E80")
        );
        assert_eq!(
            normalise_uid("04A224B2C35E80\n").as_deref(),
            Ok("04A224B2C35E80")
        );
        assert_eq!(normalise_uid("de-ad-be-ef").as_deref(), Ok("DEADBEEF"));
        assert!(normalise_uid("04A224").is_err());
        assert!(normalise_uid("Smith").is_err());
        assert!(normalise_uid("04A224B2C35E8Z").is_err());
    }
}
