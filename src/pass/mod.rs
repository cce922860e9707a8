//! Wallet passes: signed Apple Wallet storeCards (.pkpass) and Google Wallet "save" links.
//!
//! Depends on [`crate::domain`] only; the caller gathers the member, their summary and their
//! member code from the store and hands them in as a [`PassMember`].

pub mod apple;
pub mod config;
pub mod demo;
pub mod google;
mod images;
mod locale;
pub mod signer;

use std::collections::BTreeMap;

use thiserror::Error;

use crate::domain::{Member, MemberSummary, Program, Timestamp};

pub use config::{WalletConfig, WalletSetup};
pub use signer::{KeySource, PassSigner};

/// Everything a pass shows about one member, read from the store at one instant.
#[derive(Debug, Clone, Copy)]
pub struct PassMember<'a> {
    pub program: &'a Program,
    pub member: &'a Member,
    pub summary: &'a MemberSummary,
    /// The signed member code the till scans (QR payload, NFC message, Smart Tap value).
    pub code: &'a str,
    /// The pass's web-service secret ([`crate::token::code::pass_auth_token`] of its serial).
    pub auth_token: &'a str,
    /// The card was replaced or the member erased: the pass shows it no longer stands.
    pub voided: bool,
    pub now: Timestamp,
    /// Stamps held, by stamp card id.
    pub stamps: &'a BTreeMap<String, i64>,
    /// Open offers: (name, when it closes).
    pub offers: &'a [(String, Timestamp)],
    /// Badges held, by name.
    pub badges: &'a [String],
}

/// What a member's passes show, read from the store at one instant and owned, so that
/// signing (slow: RSA, zip, disk) happens away from the store or database.
#[derive(Debug, Clone)]
pub struct PassContent {
    pub program: Program,
    pub member: Member,
    pub summary: MemberSummary,
    pub code: String,
    pub auth_token: String,
    pub voided: bool,
    pub now: Timestamp,
    pub stamps: BTreeMap<String, i64>,
    /// Open offers: (name, when it closes).
    pub offers: Vec<(String, Timestamp)>,
    /// Badges held, by name.
    pub badges: Vec<String>,
}

impl PassContent {
    /// The borrowed form the pass makers take.
    pub fn pass(&self) -> PassMember<'_> {
        PassMember {
            program: &self.program,
            member: &self.member,
            summary: &self.summary,
            code: &self.code,
            auth_token: &self.auth_token,
            voided: self.voided,
            now: self.now,
            stamps: &self.stamps,
            offers: &self.offers,
            badges: &self.badges,
        }
    }
}

impl PassContent {
    /// The offers open and badges held, by name, from the member's `entries` at `now`.
    pub fn facts(
        program: &Program,
        entries: &[crate::domain::Entry],
        now: Timestamp,
    ) -> (Vec<(String, Timestamp)>, Vec<String>) {
        let offers = crate::domain::offers::book(program, entries, now)
            .open
            .into_iter()
            .filter_map(|o| Some((program.offer(&o.offer)?.name.clone(), o.expires_at)))
            .collect();
        let badges = crate::domain::badges::held(entries)
            .iter()
            .filter_map(|id| Some(program.badge(id)?.name.clone()))
            .collect();
        (offers, badges)
    }
}

impl PassMember<'_> {
    /// The pass's serial number: the card number, so a replaced card voids its pass and the new
    /// card gets a pass of its own.
    pub fn serial(&self) -> &str {
        self.member.card.as_str()
    }

    /// Each of the program's stamp cards with the stamps held, as the pass shows it:
    /// (card name, "●●●●●○○○○ 5/9").
    pub fn stamp_rows(&self) -> Vec<(String, String)> {
        self.program
            .stamp_cards
            .iter()
            .map(|card| {
                let have = self.stamps.get(&card.id).copied().unwrap_or(0).max(0);
                let filled = usize::try_from(have.min(card.stamps)).unwrap_or(0);
                let empty = usize::try_from(card.stamps)
                    .unwrap_or(0)
                    .saturating_sub(filled);
                (
                    card.name.clone(),
                    format!(
                        "{}{} {have}/{}",
                        "●".repeat(filled),
                        "○".repeat(empty),
                        card.stamps
                    ),
                )
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod fixture {
    use crate::domain::{CardNumber, Member, MemberId, MemberSummary, Timestamp};

    /// A member with a known card, for format tests.
    pub fn member() -> Member {
        Member {
            id: MemberId(uuid::Uuid::from_u128(
                0x0190_0000_0000_7000_8000_0000_0000_0001,
            )),
            card: CardNumber::from_payload(123_456_789),
            name: "Ada Lovelace".into(),
            phone: None,
            email: None,
            birthday: None,
            marketing_consent: false,
            created_at: Timestamp::from_millis(0),
        }
    }

    /// A Green-tier summary with `balance` points.
    pub fn summary(balance: i64) -> MemberSummary {
        MemberSummary {
            balance,
            qualifying: balance,
            tier: 0,
            as_of: Timestamp::from_millis(0),
            last_activity_at: None,
            entry_count: 1,
        }
    }
}

/// Why a pass could not be made. Each names the file or setting at fault.
#[derive(Debug, Error)]
pub enum PassError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("certificate {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("the private key in {key} does not match the certificate in {certificate}")]
    KeyMismatch { certificate: String, key: String },
    #[error("certificate {path} expired on {not_after}")]
    Expired { path: String, not_after: String },
    #[error("certificate {path} is not valid until {not_before}")]
    NotYetValid { path: String, not_before: String },
    #[error(
        "{wwdr} did not issue the pass certificate (issued by \"{issuer}\", the WWDR file is \"{wwdr_subject}\"); use the WWDR intermediate that issued it (G4 for certificates made since 2022)"
    )]
    WrongIntermediate {
        wwdr: String,
        issuer: String,
        wwdr_subject: String,
    },
    #[error(
        "{field} is \"{configured}\" but the certificate {path} is for \"{certificate}\"; they must match"
    )]
    IdentifierMismatch {
        field: &'static str,
        configured: String,
        certificate: String,
        path: String,
    },
    #[error("missing pass image {path}")]
    MissingImage { path: String },
    #[error("wallet config {path}: {field}: {reason}")]
    Config {
        path: String,
        field: String,
        reason: String,
    },
    #[error("Google Wallet {field}: {reason}")]
    Google { field: String, reason: String },
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("{0} is not configured in the wallet config")]
    NotConfigured(&'static str),
}

/// Writes `bytes` to `path` through a temporary file and a rename: a failure never leaves a
/// partial file behind.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), PassError> {
    use std::io::Write as _;
    let write_err = |e: std::io::Error| PassError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(write_err)?;
    tmp.write_all(bytes).map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    tmp.persist(path).map_err(|e| write_err(e.error))?;
    Ok(())
}
