//! A pass's content from what the database holds: the member's record, the fold of their
//! entries (the same `summarise` every till runs), the member code under the current key, and
//! the pass secret of its serial number.

use sha2::{Digest as _, Sha256};

use super::records::PassSource;
use crate::domain::summary::summarise;
use crate::domain::{CardNumber, Entry, MemberRecord, Program, Timestamp};
use crate::pass::PassContent;
use crate::server::db::{DbError, live_keys};
use crate::token::code::{CodeKey, Keyring, member_code, pass_auth_token};

fn corrupt(what: &str, e: &dyn std::fmt::Display) -> DbError {
    DbError::Internal(format!("a stored {what} does not parse: {e}"))
}

/// The program in force, parsed once per version rather than once per pass.
#[derive(Default)]
pub struct Programs(std::sync::Mutex<Option<(String, Program)>>);

impl Programs {
    fn get(&self, toml: &str) -> Result<Program, DbError> {
        let mut cached = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((text, program)) = cached.as_ref()
            && text == toml
        {
            return Ok(program.clone());
        }
        let program = Program::from_toml(toml).map_err(|e| corrupt("program", &e))?;
        *cached = Some((toml.to_owned(), program.clone()));
        Ok(program)
    }
}

/// The member-code keys as tills hold them after a sync.
fn keyring(source: &PassSource) -> Result<(Keyring, CodeKey), DbError> {
    let key0: [u8; 32] =
        source.code_key.clone().try_into().map_err(|_| {
            DbError::Internal("the program's member-code key is not 32 bytes".into())
        })?;
    let key0 = CodeKey::from_bytes(key0);
    let mut ring = Keyring::new(key0.clone());
    let live = live_keys(&source.keys)?;
    for (id, key) in live.keys {
        ring.insert(id, key);
    }
    ring.set_current(live.current);
    if live.key0_retired && ring.current_id() != 0 {
        ring.retire(0);
    }
    Ok((ring, key0))
}

/// The pass with serial number `serial` of the member in `source`, as of `now`. A serial that is
/// not the member's card in use (replaced), or an erased member, gives the voided pass.
pub(super) fn content(
    programs: &Programs,
    source: &PassSource,
    serial: &str,
    now: Timestamp,
) -> Result<PassContent, DbError> {
    let record: MemberRecord =
        serde_json::from_str(&source.record).map_err(|e| corrupt("member record", &e))?;
    let entries = source
        .entries
        .iter()
        .map(|b| serde_json::from_str(b).map_err(|e| corrupt("entry", &e)))
        .collect::<Result<Vec<Entry>, _>>()?;
    let program = programs.get(&source.program)?;
    let (ring, key0) = keyring(source)?;
    let voided = record.erased_at.is_some() || record.member.card.as_str() != serial;
    let mut member = record.member;
    if member.card.as_str() != serial {
        member.card = serial
            .parse::<CardNumber>()
            .map_err(|e| DbError::Internal(format!("pass serial {serial:?}: {e}")))?;
    }
    let (offers, badges) = PassContent::facts(&program, &entries, now);
    Ok(PassContent {
        summary: summarise(&program, &entries, now),
        stamps: crate::domain::stamps::held(&entries),
        offers,
        badges,
        code: member_code(&ring, &member.card),
        auth_token: pass_auth_token(&key0, serial),
        program,
        member,
        voided,
        now,
    })
}

/// The member's card in use, from the stored record.
pub(super) fn current_card(source: &PassSource) -> Result<String, DbError> {
    let record: MemberRecord =
        serde_json::from_str(&source.record).map_err(|e| corrupt("member record", &e))?;
    Ok(record.member.card.as_str().to_owned())
}

/// Whether `token` is the pass secret of `serial` (constant time).
pub(super) fn token_ok(source: &PassSource, serial: &str, token: &str) -> bool {
    let Ok(key0): Result<[u8; 32], _> = source.code_key.clone().try_into() else {
        return false;
    };
    crate::token::code::check_pass_auth_token(&CodeKey::from_bytes(key0), serial, token)
}

/// A fingerprint of everything a pass shows that can change: a new one is an update.
pub fn shown(content: &PassContent) -> String {
    let tier = content.program.tier(content.summary.tier);
    let mut shown = serde_json::json!({
        "program": [&content.program.name, &content.program.organisation],
        "balance": content.summary.balance,
        "tier": [&tier.name, &tier.benefits, tier.rgb()],
        "name": &content.member.name,
        "card": content.member.card.as_str(),
        "code": &content.code,
        "voided": content.voided,
    });
    // Stamps join the fingerprint only when held, so passes from before stamp cards keep theirs.
    if !content.stamps.is_empty() {
        shown["stamps"] = serde_json::json!(&content.stamps);
    }
    if !content.offers.is_empty() {
        shown["offers"] = serde_json::json!(&content.offers);
    }
    if !content.badges.is_empty() {
        shown["badges"] = serde_json::json!(&content.badges);
    }
    data_encoding::HEXLOWER.encode(&Sha256::digest(shown.to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Member, MemberId};

    fn source(card: u64, erased: bool, entries: Vec<String>) -> PassSource {
        let record = MemberRecord {
            member: Member {
                id: MemberId(uuid::Uuid::from_u128(7)),
                card: CardNumber::from_payload(card),
                name: "Ada".into(),
                phone: None,
                email: None,
                birthday: None,
                marketing_consent: false,
                created_at: Timestamp::from_millis(0),
            },
            version: 1,
            retired_cards: Vec::new(),
            erased_at: erased.then(|| Timestamp::from_millis(5)),
            referred_by: None,
        };
        PassSource {
            record: serde_json::to_string(&record).expect("json"),
            entries,
            program: include_str!("../../../assets/program.toml").to_owned(),
            code_key: vec![3; 32],
            keys: Vec::new(),
        }
    }

    #[test]
    fn the_card_in_use_gives_a_live_pass_and_any_other_serial_a_voided_one() {
        let s = source(42, false, Vec::new());
        let card = current_card(&s).expect("card");
        let live =
            content(&Programs::default(), &s, &card, Timestamp::from_millis(10)).expect("content");
        assert!(!live.voided);
        assert!(token_ok(&s, &card, &live.auth_token));
        let old = CardNumber::from_payload(41);
        let void = content(
            &Programs::default(),
            &s,
            old.as_str(),
            Timestamp::from_millis(10),
        )
        .expect("content");
        assert!(void.voided);
        assert_eq!(void.member.card, old);
        assert!(!token_ok(&s, &card, &void.auth_token));
        assert_ne!(shown(&live), shown(&void));
        let erased = source(42, true, Vec::new());
        assert!(
            content(
                &Programs::default(),
                &erased,
                &card,
                Timestamp::from_millis(10)
            )
            .expect("content")
            .voided
        );
    }
}
