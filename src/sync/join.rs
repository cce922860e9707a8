//! Join codes: everything a till needs to join a server in one line that a wedge scanner can
//! type from a QR code: `TPJ1.` and the base32 of `{"u": url, "t": token, "p": pin}`.

use serde::{Deserialize, Serialize};

/// The prefix of a join code (case-insensitive, like all of it).
pub const PREFIX: &str = "TPJ1.";

/// What a join code carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinCode {
    /// The server's address.
    #[serde(rename = "u")]
    pub url: String,
    /// The till's token.
    #[serde(rename = "t")]
    pub token: String,
    /// The server key's pin; absent for a CA-issued certificate.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

/// Why a line is not a join code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("not a join code (it starts with {PREFIX})")]
    NotAJoinCode,
    #[error("the join code is damaged ({0}); scan or copy it again")]
    Damaged(String),
}

impl JoinCode {
    /// The one-line form.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{PREFIX}{}", data_encoding::BASE32_NOPAD.encode(&json))
    }

    /// Reads a join code (any case, surrounding spaces ignored).
    pub fn parse(text: &str) -> Result<Self, JoinError> {
        let upper = text.trim().to_ascii_uppercase();
        let body = upper.strip_prefix(PREFIX).ok_or(JoinError::NotAJoinCode)?;
        let json = data_encoding::BASE32_NOPAD
            .decode(body.as_bytes())
            .map_err(|e| JoinError::Damaged(e.to_string()))?;
        let code: JoinCode =
            serde_json::from_slice(&json).map_err(|e| JoinError::Damaged(e.to_string()))?;
        if code.pin.as_deref().is_some_and(|p| !super::tls::is_pin(p)) {
            return Err(JoinError::Damaged("the key pin is malformed".into()));
        }
        Ok(code)
    }

    /// Whether `text` is shaped like a join code (for the scan line).
    pub fn looks_like(text: &str) -> bool {
        text.trim()
            .get(..PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_code_survives_a_scanner_and_refuses_damage() {
        let code = JoinCode {
            url: "https://shop.example:8443".into(),
            token: "tpt_abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst".into(),
            pin: Some(format!(
                "sha256/{}",
                data_encoding::BASE64.encode(&[7u8; 32])
            )),
        };
        let line = code.encode();
        assert!(
            line.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'.')
        );
        assert_eq!(JoinCode::parse(&line), Ok(code.clone()));
        assert_eq!(JoinCode::parse(&line.to_ascii_lowercase()), Ok(code));
        assert!(JoinCode::looks_like(&line));
        assert_eq!(JoinCode::parse("TP1.123"), Err(JoinError::NotAJoinCode));
        let mut damaged = line.clone();
        damaged.truncate(line.len() - 3);
        assert!(matches!(
            JoinCode::parse(&damaged),
            Err(JoinError::Damaged(_))
        ));
    }
}
