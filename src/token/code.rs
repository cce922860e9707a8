//! The member code: `TP1.<card number>.<tag>` under the program's first key (key 0), and
//! `TP2.<key id>.<card number>.<tag>` under a key added since (`tillpass-server key rotate`).
//!
//! The card number is the member's ten-digit card (with its Luhn check digit); the tag is the
//! first 80 bits of HMAC-SHA256 over the code before it (`TP1.<card>` or `TP2.<id>.<card>`)
//! under that key, in RFC 4648 base32. Every character is in the QR alphanumeric set, so the QR
//! code stays small, and the whole code is case-insensitive (keyboard-wedge scanners with Caps
//! Lock on send lower case). A till holds a [`Keyring`]: new codes use its current key, and a
//! code verifies under any key it holds; a retired key's codes are refused.

use std::collections::BTreeMap;

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use thiserror::Error;

use crate::domain::CardNumber;
use crate::domain::card::CardError;

/// Prefix of codes under key 0 (every code printed before keys rotated).
pub const CODE_PREFIX: &str = "TP1";
/// Prefix of codes under a later key: `TP2.<key id>.<card>.<tag>`.
pub const ROTATED_PREFIX: &str = "TP2";
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

    fn hmac(&self) -> Hmac<Sha256> {
        match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        }
    }

    /// The MAC over the code's text before its tag.
    fn mac(&self, key_id: u32, card: &CardNumber) -> Hmac<Sha256> {
        let mut mac = self.hmac();
        mac.update(code_head(key_id, card).as_bytes());
        mac
    }

    /// A key for one purpose derived from this master key: knowing one purpose's key gives
    /// nothing of the master or of another purpose's key (HMAC-SHA256 as a PRF).
    pub fn derive(&self, purpose: &str) -> CodeKey {
        let mut mac = self.hmac();
        mac.update(b"tillpass/");
        mac.update(purpose.as_bytes());
        CodeKey(mac.finalize().into_bytes().into())
    }
}

/// The purpose label of the member-code key derived from a rotated master key.
pub const MEMBER_CODE_PURPOSE: &str = "member-code/v1";
/// The purpose label of the pass web-service key derived from a rotated master key.
pub const PASS_TOKEN_PURPOSE: &str = "pass-web-service/v1";

/// The code's text before its tag: `TP1.<card>` or `TP2.<id>.<card>`.
fn code_head(key_id: u32, card: &CardNumber) -> String {
    if key_id == 0 {
        format!("{CODE_PREFIX}.{}", card.as_str())
    } else {
        format!("{ROTATED_PREFIX}.{key_id}.{}", card.as_str())
    }
}

/// The member-code keys a till holds, by id, and the one new codes use.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: u32,
    keys: BTreeMap<u32, CodeKey>,
}

impl Keyring {
    /// A keyring of key 0 alone (as before any rotation).
    pub fn new(key0: CodeKey) -> Self {
        Self {
            current: 0,
            keys: BTreeMap::from([(0, key0)]),
        }
    }

    /// Adds (or replaces) key `id`.
    pub fn insert(&mut self, id: u32, key: CodeKey) {
        self.keys.insert(id, key);
    }

    /// Drops key `id`: codes under it are refused from now on.
    pub fn retire(&mut self, id: u32) {
        self.keys.remove(&id);
    }

    /// Makes `id` the key new codes use; false (and nothing changes) if it is not held.
    pub fn set_current(&mut self, id: u32) -> bool {
        let held = self.keys.contains_key(&id);
        if held {
            self.current = id;
        }
        held
    }

    /// The id of the key new codes use.
    pub fn current_id(&self) -> u32 {
        self.current
    }

    /// Key `id`, if held.
    pub fn key(&self, id: u32) -> Option<&CodeKey> {
        self.keys.get(&id)
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
    #[error(
        "this code was signed with key {0}, which this till does not hold: it was retired (give the member a new card), or it is new here (sync, then scan again)"
    )]
    UnknownKey(u32),
}

/// The member code for `card` under the keyring's current key.
pub fn member_code(ring: &Keyring, card: &CardNumber) -> String {
    let id = ring.current_id();
    let key = ring
        .key(id)
        .unwrap_or_else(|| unreachable!("the current key is always held"));
    let tag = key.mac(id, card).finalize().into_bytes();
    format!(
        "{}.{}",
        code_head(id, card),
        BASE32_NOPAD.encode(&tag[..TAG_BYTES])
    )
}

/// The wallet-pass web-service secret for the pass with serial number `serial` (Apple's
/// `authenticationToken`): 32 base32 characters of HMAC-SHA256 under the program key, so it is
/// stable for the pass's lifetime and any holder of the program key (till or server) can check it
/// without storing it.
pub fn pass_auth_token(key: &CodeKey, serial: &str) -> String {
    let mut mac = key.hmac();
    mac.update(b"TP-PASS-AUTH.");
    mac.update(serial.as_bytes());
    BASE32_NOPAD.encode(&mac.finalize().into_bytes()[..20])
}

/// Whether `token` is the web-service secret of the pass `serial`, compared in constant time.
pub fn check_pass_auth_token(key: &CodeKey, serial: &str, token: &str) -> bool {
    let Ok(tag) = BASE32_NOPAD.decode(token.as_bytes()) else {
        return false;
    };
    if tag.len() != 20 {
        return false;
    }
    let mut mac = key.hmac();
    mac.update(b"TP-PASS-AUTH.");
    mac.update(serial.as_bytes());
    mac.verify_truncated_left(&tag).is_ok()
}

/// Parses and verifies scanned text. Only a code whose tag verifies (in constant time) under a
/// key the till holds yields a card number; nothing unverified is ever handed on for lookup.
pub fn parse_member_code(ring: &Keyring, scanned: &str) -> Result<CardNumber, CodeError> {
    let text = scanned.trim();
    if text.len() > MAX_CODE_LEN || !text.is_ascii() {
        return Err(CodeError::NotTillpass);
    }
    let text = text.to_ascii_uppercase();
    let parts: Vec<&str> = text.split('.').collect();
    let (key_id, card_text, tag) = match parts.as_slice() {
        [version, card, tag] if *version == CODE_PREFIX => (0, *card, *tag),
        [version, id_text, card, tag] if *version == ROTATED_PREFIX => {
            // One spelling per key id: no sign, no leading zero, never key 0.
            let id: u32 = id_text
                .parse()
                .ok()
                .filter(|id: &u32| *id > 0 && id.to_string() == *id_text)
                .ok_or(CodeError::NotTillpass)?;
            (id, *card, *tag)
        }
        _ => return Err(version_error(&text)),
    };
    let card: CardNumber = card_text.parse().map_err(|e| match e {
        CardError::CheckDigit(_) => CodeError::BadCheckDigit,
        CardError::Length { .. } | CardError::NotDigits(_) => CodeError::NotTillpass,
    })?;
    if card.as_str() != card_text {
        // Spaces or dashes inside a code are not ours: codes are printed without them.
        return Err(CodeError::NotTillpass);
    }
    let tag = BASE32_NOPAD
        .decode(tag.as_bytes())
        .map_err(|_| CodeError::BadSignature)?;
    if tag.len() != TAG_BYTES {
        return Err(CodeError::BadSignature);
    }
    let key = ring.key(key_id).ok_or(CodeError::UnknownKey(key_id))?;
    key.mac(key_id, &card)
        .verify_truncated_left(&tag)
        .map_err(|_| CodeError::BadSignature)?;
    Ok(card)
}

/// `TP<digits>` is a Tillpass code of another version; anything else is not ours.
fn version_error(text: &str) -> CodeError {
    let head = text.split('.').next().unwrap_or_default();
    match head.strip_prefix("TP") {
        Some(v)
            if !v.is_empty()
                && v.bytes().all(|b| b.is_ascii_digit())
                && head != CODE_PREFIX
                && head != ROTATED_PREFIX =>
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

    fn key(b: u8) -> Keyring {
        Keyring::new(CodeKey::from_bytes([b; 32]))
    }

    fn card(n: u64) -> CardNumber {
        CardNumber::from_payload(n)
    }

    #[test]
    fn a_pass_token_checks_only_for_its_own_serial_and_key() {
        let k = CodeKey::from_bytes([7; 32]);
        let token = pass_auth_token(&k, "1234567897");
        assert_eq!(token.len(), 32);
        assert!(check_pass_auth_token(&k, "1234567897", &token));
        assert!(!check_pass_auth_token(&k, "1234567898", &token));
        assert!(!check_pass_auth_token(
            &CodeKey::from_bytes([8; 32]),
            "1234567897",
            &token
        ));
        assert!(!check_pass_auth_token(&k, "1234567897", &token[..31]));
        assert!(!check_pass_auth_token(&k, "1234567897", "not base32!"));
        let mut flipped = token.into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        assert!(!check_pass_auth_token(&k, "1234567897", &flipped));
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
            parse_member_code(&k, &code.replacen("TP1", "TP3", 1)),
            Err(CodeError::UnsupportedVersion("TP3".into()))
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

    #[test]
    fn rotated_keys_sign_new_codes_and_old_ones_verify_until_retired() {
        let master = CodeKey::from_bytes([9; 32]);
        let mut ring = key(1);
        let c = card(123_456_789);
        let old = member_code(&ring, &c);
        ring.insert(1, master.derive(MEMBER_CODE_PURPOSE));
        assert!(ring.set_current(1));
        let new = member_code(&ring, &c);
        assert!(new.starts_with("TP2.1.1234567897."), "{new}");
        assert_eq!(parse_member_code(&ring, &old), Ok(c.clone()));
        assert_eq!(parse_member_code(&ring, &new), Ok(c.clone()));
        // A till that has not synced the new key yet says so, rather than "forged".
        assert_eq!(
            parse_member_code(&key(1), &new),
            Err(CodeError::UnknownKey(1))
        );
        // The same tag under another key id is not the same code.
        let moved = new.replacen("TP2.1.", "TP2.2.", 1);
        ring.insert(2, master.derive("other"));
        assert_eq!(
            parse_member_code(&ring, &moved),
            Err(CodeError::BadSignature)
        );
        for bad in ["TP2.01.", "TP2.0.", "TP2.+1."] {
            let spelt = new.replacen("TP2.1.", bad, 1);
            assert_eq!(
                parse_member_code(&ring, &spelt),
                Err(CodeError::NotTillpass),
                "{spelt}"
            );
        }
        ring.retire(0);
        assert_eq!(
            parse_member_code(&ring, &old),
            Err(CodeError::UnknownKey(0))
        );
        assert_eq!(parse_member_code(&ring, &new), Ok(c));
        assert!(!ring.set_current(0), "a retired key signs nothing");
    }

    #[test]
    fn purposes_derive_unrelated_keys() {
        let master = CodeKey::from_bytes([4; 32]);
        let code = master.derive(MEMBER_CODE_PURPOSE);
        let pass = master.derive(PASS_TOKEN_PURPOSE);
        assert_ne!(code.as_bytes(), pass.as_bytes());
        assert_ne!(code.as_bytes(), master.as_bytes());
        assert_eq!(
            code.as_bytes(),
            master.derive(MEMBER_CODE_PURPOSE).as_bytes()
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
