//! The member code: `TP1.<card number>.<tag>`.
//!
//! The card number is the member's ten-digit card (with its Luhn check digit); the tag is the
//! first 80 bits of HMAC-SHA256 over `TP1.<card>` under the program's secret key, in RFC 4648
//! base32. Every character is in the QR alphanumeric set, so the QR code stays small, and the
//! whole code is case-insensitive (keyboard-wedge scanners with Caps Lock on send lower case).

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use thiserror::Error;

use crate::domain::CardNumber;
use crate::domain::card::CardError;

/// Version prefix of the current format.
pub const CODE_PREFIX: &str = "TP1";
/// Tag length in bytes (80 bits).
pub const TAG_BYTES: usize = 10;
/// Longest text worth looking at; anything longer is not a member code.
pub const MAX_CODE_LEN: usize = 64;

/// The program's secret key for member codes.
#[derive(Clone)]
pub struct CodeKey([u8; 32]);

impl CodeKey {
    /// Wraps 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The secret bytes (for storing the key).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self, card: &CardNumber) -> Hmac<Sha256> {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        mac.update(CODE_PREFIX.as_bytes());
        mac.update(b".");
        mac.update(card.as_str().as_bytes());
        mac
    }
}

impl std::fmt::Debug for CodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeKey(..)")
    }
}

/// Why scanned text is not a valid member code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodeError {
    #[error("not a Tillpass member code")]
    NotTillpass,
    #[error("member code version {0:?} is not supported by this till (update the app?)")]
    UnsupportedVersion(String),
    #[error("the card number in the code fails its check digit")]
    BadCheckDigit,
    #[error("the member code's signature is wrong: the code was altered or made up")]
    BadSignature,
}

/// The member code for `card` under `key`.
pub fn member_code(key: &CodeKey, card: &CardNumber) -> String {
    let tag = key.mac(card).finalize().into_bytes();
    format!(
        "{CODE_PREFIX}.{}.{}",
        card.as_str(),
        BASE32_NOPAD.encode(&tag[..TAG_BYTES])
    )
}

/// The wallet-pass web-service secret for a member (Apple's `authenticationToken`): 32 base32
/// characters of HMAC-SHA256 under the program key, so it is stable for the member's lifetime and
/// any holder of the program key (till or server) can check it without storing it.
pub fn pass_auth_token(key: &CodeKey, member: &crate::domain::MemberId) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(&key.0) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(b"TP-PASS-AUTH.");
    mac.update(member.0.as_bytes());
    BASE32_NOPAD.encode(&mac.finalize().into_bytes()[..20])
}

/// Parses and verifies scanned text. Only a code whose tag verifies (in constant time) yields a
/// card number; nothing unverified is ever handed on for lookup.
pub fn parse_member_code(key: &CodeKey, scanned: &str) -> Result<CardNumber, CodeError> {
    let text = scanned.trim();
    if text.len() > MAX_CODE_LEN || !text.is_ascii() {
        return Err(CodeError::NotTillpass);
    }
    let text = text.to_ascii_uppercase();
    let mut parts = text.split('.');
    let (Some(version), Some(card), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(version_error(&text));
    };
    if version != CODE_PREFIX {
        return Err(version_error(version));
    }
    let card: CardNumber = card.parse().map_err(|e| match e {
        CardError::CheckDigit(_) => CodeError::BadCheckDigit,
        CardError::Length { .. } | CardError::NotDigits(_) => CodeError::NotTillpass,
    })?;
    if card.as_str() != text.split('.').nth(1).unwrap_or_default() {
        // Spaces or dashes inside a code are not ours: codes are printed without them.
        return Err(CodeError::NotTillpass);
    }
    let tag = BASE32_NOPAD
        .decode(tag.as_bytes())
        .map_err(|_| CodeError::BadSignature)?;
    if tag.len() != TAG_BYTES {
        return Err(CodeError::BadSignature);
    }
    key.mac(&card)
        .verify_truncated_left(&tag)
        .map_err(|_| CodeError::BadSignature)?;
    Ok(card)
}

/// `TP<digits>` is a Tillpass code of another version; anything else is not ours.
fn version_error(text: &str) -> CodeError {
    let head = text.split('.').next().unwrap_or_default();
    match head.strip_prefix("TP") {
        Some(v)
            if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && head != CODE_PREFIX =>
        {
            CodeError::UnsupportedVersion(head.to_owned())
        }
        _ => CodeError::NotTillpass,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> CodeKey {
        CodeKey::from_bytes([b; 32])
    }

    fn card(n: u64) -> CardNumber {
        CardNumber::from_payload(n)
    }

    #[test]
    fn round_trip_and_shape() {
        let c = card(123_456_789);
        let code = member_code(&key(1), &c);
        assert!(code.starts_with("TP1.1234567897."), "{code}");
        assert_eq!(code.len(), 3 + 1 + 10 + 1 + 16);
        assert_eq!(parse_member_code(&key(1), &code), Ok(c.clone()));
        assert_eq!(
            parse_member_code(&key(1), &code.to_lowercase()),
            Ok(c.clone())
        );
        assert_eq!(parse_member_code(&key(1), &format!(" {code}\r\n")), Ok(c));
    }

    #[test]
    fn typed_errors() {
        let k = key(1);
        let code = member_code(&k, &card(42));
        assert_eq!(
            parse_member_code(&key(2), &code),
            Err(CodeError::BadSignature)
        );
        assert_eq!(parse_member_code(&k, "hello"), Err(CodeError::NotTillpass));
        assert_eq!(parse_member_code(&k, ""), Err(CodeError::NotTillpass));
        assert_eq!(
            parse_member_code(&k, &code.replacen("TP1", "TP2", 1)),
            Err(CodeError::UnsupportedVersion("TP2".into()))
        );
        assert_eq!(
            parse_member_code(&k, &code.replacen("TP1", "XX1", 1)),
            Err(CodeError::NotTillpass)
        );
        let truncated = &code[..code.len() - 3];
        assert_eq!(
            parse_member_code(&k, truncated),
            Err(CodeError::BadSignature)
        );
        assert_eq!(
            parse_member_code(&k, &code[..14]),
            Err(CodeError::NotTillpass)
        );
        let mut bad_check = code.clone().into_bytes();
        bad_check[13] = if bad_check[13] == b'0' { b'1' } else { b'0' };
        let bad_check = String::from_utf8(bad_check).unwrap_or_default();
        assert_eq!(
            parse_member_code(&k, &bad_check),
            Err(CodeError::BadCheckDigit)
        );
        assert_eq!(
            parse_member_code(&k, &"TP1.".repeat(40)),
            Err(CodeError::NotTillpass)
        );
        assert_eq!(
            parse_member_code(&k, &format!("{code}.X")),
            Err(CodeError::NotTillpass)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn any_single_character_change_is_refused(n in 0u64..1_000_000_000, pos in 0usize..30, repl in proptest::char::range('!', '~')) {
            let k = key(7);
            let code = member_code(&k, &card(n));
            let mut chars: Vec<char> = code.chars().collect();
            prop_assume!(!chars[pos].eq_ignore_ascii_case(&repl));
            chars[pos] = repl;
            let tampered: String = chars.into_iter().collect();
            prop_assert!(parse_member_code(&k, &tampered).is_err(), "{tampered} accepted");
        }

        #[test]
        fn parser_never_panics(text in ".{0,200}") {
            let _ = parse_member_code(&key(3), &text);
        }

        #[test]
        fn parser_never_panics_on_near_codes(text in "[Tt][Pp][0-9]{0,2}\\.[0-9 -]{0,12}\\.[A-Za-z2-7=]{0,20}(\\.[A-Z]{0,3})?") {
            let _ = parse_member_code(&key(3), &text);
        }

        #[test]
        fn random_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let text = String::from_utf8_lossy(&bytes);
            prop_assert!(parse_member_code(&key(3), &text).is_err());
        }
    }
}
