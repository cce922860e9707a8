//! Turning what a scanner, reader or cashier typed into a member: verified member codes, card
//! replacement, NFC tag links, and the search fallback.

use rusqlite::{OptionalExtension as _, TransactionBehavior, params};
use thiserror::Error;

use super::members::{MemberView, SearchHit, SearchKind};
use super::sync::{member_record, write_member};
use super::{Result, Store, StoreError};
use crate::domain::card::PAYLOAD_LIMIT;
use crate::domain::{CardNumber, MemberId, Timestamp};
use crate::token::ndef::{self, NdefError};
use crate::token::uid::{UidError, normalise_uid};
use crate::token::{CodeError, CodeKey, member_code, parse_member_code};

/// Why a scan did not identify a member, in words for the cashier.
#[derive(Debug, Error)]
pub enum ScanError {
    #[error(transparent)]
    Code(#[from] CodeError),
    #[error("no member has card {0}: the code is genuine but the card is not known here")]
    UnknownMember(String),
    #[error(
        "card {old} was replaced by a newer card: ask for the new card, or find the member by phone"
    )]
    CardReplaced { old: String },
    #[error("the NFC tag could not be read: {0}")]
    Ndef(NdefError),
    #[error("the NFC tag holds no Tillpass member code")]
    NoCodeOnTag,
    #[error(transparent)]
    Uid(#[from] UidError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

// The message already carries the cause, so it is not chained as a source as well.
impl From<NdefError> for ScanError {
    fn from(e: NdefError) -> Self {
        Self::Ndef(e)
    }
}

impl From<rusqlite::Error> for ScanError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.into())
    }
}

/// What the scan field found.
#[derive(Debug, Clone, PartialEq)]
pub enum ScanOutcome {
    /// Exactly one member, by a verified code, a linked tag or an exact identifier.
    Member(MemberView),
    /// A search: zero or more candidates for the cashier to pick from.
    Matches(Vec<SearchHit>),
}

/// True for text shaped like a member code of any version (`TP<n>.`), which must verify or be
/// refused, never fall back to a search.
pub(crate) fn looks_like_code(text: &str) -> bool {
    let t = text.trim().as_bytes();
    t.len() > 3 && t[..2].eq_ignore_ascii_case(b"TP") && t[2].is_ascii_digit() && t.contains(&b'.')
}

/// A random card number used by no member, current or retired.
pub(crate) fn fresh_card(conn: &rusqlite::Connection) -> Result<CardNumber> {
    let mut stmt = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM members WHERE card = ?1)
             OR EXISTS (SELECT 1 FROM retired_cards WHERE card = ?1)",
    )?;
    for _ in 0..64 {
        let card = CardNumber::from_payload(rand::random_range(0..PAYLOAD_LIMIT));
        if !stmt.query_row(params![card.as_str()], |r| r.get::<_, bool>(0))? {
            return Ok(card);
        }
    }
    Err(StoreError::CardsExhausted)
}

impl Store {
    /// The program's member-code key.
    pub fn code_key(&self) -> &CodeKey {
        &self.code_key
    }

    /// The member code (QR / pass / NFC payload) for a card, under the current key.
    pub fn member_code(&self, card: &CardNumber) -> String {
        member_code(&self.keys, card)
    }

    /// The web-service secret of the wallet pass with serial number `serial`.
    pub fn pass_auth_token(&self, serial: &str) -> String {
        crate::token::code::pass_auth_token(&self.code_key, serial)
    }

    /// Verifies a scanned member code and finds its member. Unverified text is never looked up.
    pub fn identify_code(&self, scanned: &str) -> Result<MemberView, ScanError> {
        let card = parse_member_code(&self.keys, scanned)?;
        if let Some(view) = self.member_by_card(&card)? {
            return Ok(view);
        }
        let retired: Option<String> = self
            .conn
            .query_row(
                "SELECT card FROM retired_cards WHERE card = ?1",
                params![card.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        Err(match retired {
            Some(old) => ScanError::CardReplaced { old },
            None => ScanError::UnknownMember(card.to_string()),
        })
    }

    /// Reads an NFC tag's bytes (a Type 2 tag data area, or a bare NDEF message) and identifies
    /// the member from the first Text or URI record that carries a valid member code.
    pub fn identify_ndef(&self, bytes: &[u8]) -> Result<MemberView, ScanError> {
        let records = ndef::parse_tag_memory(bytes).or_else(|_| ndef::parse_message(bytes))?;
        let candidates = ndef::code_candidates(&records);
        let codes = candidates
            .iter()
            .map(String::as_str)
            .filter(|c| looks_like_code(c));
        self.identify_first(codes)
            .unwrap_or(Err(ScanError::NoCodeOnTag))
    }

    /// The member of the first text that verifies as a member code (several codes can be in one
    /// picture or on one tag); otherwise the first text's refusal, or `None` when there were none.
    pub fn identify_first<'a>(
        &self,
        texts: impl IntoIterator<Item = &'a str>,
    ) -> Option<Result<MemberView, ScanError>> {
        let mut first_error = None;
        for text in texts {
            match self.identify_code(text) {
                Ok(view) => return Some(Ok(view)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map(Err)
    }

    /// What the till's scan field does with a line of input: a member code must verify; a known
    /// NFC tag UID finds its member; anything else is a search, and an exact card number, phone
    /// or email with a single match is taken as that member.
    pub fn scan(&self, input: &str, limit: usize) -> Result<ScanOutcome, ScanError> {
        let text = input.trim();
        if looks_like_code(text) {
            return Ok(ScanOutcome::Member(self.identify_code(text)?));
        }
        if let Ok(uid) = normalise_uid(text)
            && let Some(view) = self.member_by_tag(&uid)?
        {
            return Ok(ScanOutcome::Member(view));
        }
        let hits = self.search(text, limit)?;
        let exact: Vec<&SearchHit> = hits
            .iter()
            .filter(|h| h.matched != SearchKind::Name)
            .collect();
        if let [only] = exact.as_slice() {
            return Ok(ScanOutcome::Member(only.view.clone()));
        }
        Ok(ScanOutcome::Matches(hits))
    }

    /// Gives a member a new card number (lost or damaged card). The old number's codes, and
    /// those of every card the member held before, are then refused as "card replaced"; the
    /// member keeps their id, history, phone and email.
    pub fn replace_card(&mut self, member: MemberId, at: Timestamp) -> Result<MemberView> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let record = member_record(&tx, member)?.with_new_card(fresh_card(&tx)?, at);
        write_member(&tx, &self.program, &record, true)?;
        tx.execute(
            "INSERT INTO member_outbox (member_id) VALUES (?1) ON CONFLICT DO NOTHING",
            params![member.0],
        )?;
        tx.commit()?;
        self.member(member)
    }

    /// Links an NFC tag UID (as a keyboard-mode reader types it) to a member.
    pub fn link_tag(
        &mut self,
        uid: &str,
        member: MemberId,
        at: Timestamp,
    ) -> Result<(), ScanError> {
        let uid = normalise_uid(uid)?;
        self.member(member)?;
        match self.tag_owner(&uid)? {
            Some(m) if m == member => Ok(()),
            Some(m) => {
                let card = self.member(m)?.member.card;
                Err(StoreError::TagTaken {
                    uid,
                    card: card.to_string(),
                }
                .into())
            }
            None => {
                self.conn.execute(
                    "INSERT INTO nfc_tags (uid, member_id, linked_at) VALUES (?1, ?2, ?3)",
                    params![uid, member.0, at.millis()],
                )?;
                Ok(())
            }
        }
    }

    /// The member linked to an NFC tag UID (already normalised).
    pub fn member_by_tag(&self, uid: &str) -> Result<Option<MemberView>> {
        self.tag_owner(uid)?.map(|m| self.member(m)).transpose()
    }

    fn tag_owner(&self, uid: &str) -> Result<Option<MemberId>> {
        Ok(self
            .conn
            .query_row(
                "SELECT member_id FROM nfc_tags WHERE uid = ?1",
                params![uid],
                |r| r.get(0).map(MemberId),
            )
            .optional()?)
    }
}
