//! Enrolment and lookup of members.

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use serde::Serialize;

use super::ledger::{Appender, new_id, refresh_state};
use super::rows::{STATE_COLUMNS, card_at, state_from_row};
use super::{Result, Store, StoreError};
use crate::domain::member::{name_tokens, validate_email};
use crate::domain::phone::{looks_like_phone, normalise_phone};
use crate::domain::rules;
use crate::domain::{CardNumber, Member, MemberId, MemberInput, MemberSummary, Timestamp};

/// A member with their cached balance and tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberView {
    pub member: Member,
    pub state: MemberSummary,
}

/// How a search result matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchKind {
    Card,
    Phone,
    Email,
    Name,
}

/// One ranked search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    pub matched: SearchKind,
    #[serde(flatten)]
    pub view: MemberView,
}

pub(crate) const MEMBER_COLUMNS: &str =
    "m.id, m.card, m.name, m.phone, m.email, m.birthday, m.marketing_consent, m.created_at";

/// A member from the eight columns of [`MEMBER_COLUMNS`], in that order, starting at column 0.
pub(crate) fn member_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Member> {
    let birthday: Option<String> = r.get(5)?;
    Ok(Member {
        id: MemberId(r.get(0)?),
        card: card_at(r, 1)?,
        name: r.get(2)?,
        phone: r.get(3)?,
        email: r.get(4)?,
        birthday: birthday
            .as_deref()
            .and_then(crate::domain::member::parse_date),
        marketing_consent: r.get(6)?,
        created_at: Timestamp::from_millis(r.get(7)?),
    })
}

fn view_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MemberView> {
    let member = member_from_row(r)?;
    let state = state_from_row(r, 8, member.id)?;
    Ok(MemberView { member, state })
}

fn select_view(condition: &str) -> String {
    format!(
        "SELECT {MEMBER_COLUMNS}, {STATE_COLUMNS} FROM members m
         JOIN member_state s ON s.member_id = m.id WHERE {condition}"
    )
}

/// Inserts a member enrolled here: the row, its name tokens, and a place in the sync outbox.
pub(crate) fn insert_member(conn: &Connection, m: &Member) -> rusqlite::Result<()> {
    insert_member_row(conn, m)?;
    conn.prepare_cached("INSERT INTO member_outbox (member_id) VALUES (?1)")?
        .execute(params![m.id.0])?;
    Ok(())
}

/// Inserts a member row (version = enrolment time) and its name tokens.
pub(crate) fn insert_member_row(conn: &Connection, m: &Member) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO members (id, card, name, phone, email, birthday, marketing_consent, created_at,
                              version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
    )?
    .execute(params![
        m.id.0,
        m.card.as_str(),
        m.name,
        m.phone,
        m.email,
        m.birthday.map(|b| b.to_string()),
        m.marketing_consent,
        m.created_at.millis(),
    ])?;
    let mut tokens =
        conn.prepare_cached("INSERT INTO member_name_tokens (token, member_id) VALUES (?1, ?2)")?;
    for token in name_tokens(&m.name) {
        tokens.execute(params![token, m.id.0])?;
    }
    Ok(())
}

/// The card of the member whose unique `column` (phone or email) holds `value`, if any.
fn card_holding(conn: &Connection, column: &str, value: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        &format!("SELECT card FROM members WHERE {column} = ?1"),
        params![value],
        |r| r.get(0),
    )
    .optional()
}

impl Store {
    /// Enrols a member: validates the input, gives them a new card number, and writes the
    /// welcome bonus, all in one transaction.
    pub fn add_member(
        &mut self,
        input: MemberInput,
        actor: &str,
        at: Timestamp,
    ) -> Result<MemberView> {
        let new = input.validate(&self.program, at.date())?;
        let referrer = new
            .referred_by
            .as_deref()
            .map(|given| self.referrer(given))
            .transpose()?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(phone) = &new.phone
            && let Some(card) = card_holding(&tx, "phone", phone)?
        {
            return Err(StoreError::PhoneTaken {
                phone: phone.clone(),
                card,
            });
        }
        if let Some(email) = &new.email
            && let Some(card) = card_holding(&tx, "email", email)?
        {
            return Err(StoreError::EmailTaken {
                email: email.clone(),
                card,
            });
        }
        let member = Member {
            id: MemberId(new_id(at)),
            card: super::identify::fresh_card(&tx)?,
            name: new.name,
            phone: new.phone,
            email: new.email,
            birthday: new.birthday,
            marketing_consent: new.marketing_consent,
            created_at: at,
        };
        insert_member(&tx, &member)?;
        if let Some(referrer) = referrer {
            tx.execute(
                "UPDATE members SET referred_by = ?2 WHERE id = ?1",
                params![member.id.0, referrer.0],
            )?;
        }
        let mut entries = Vec::new();
        let state = match rules::welcome(&self.program) {
            Some(draft) => {
                let appender = Appender {
                    conn: &tx,
                    program: &self.program,
                    terminal: &self.terminal,
                };
                appender
                    .append(member.id, &mut entries, draft, actor, at)?
                    .1
            }
            None => refresh_state(&tx, &self.program, member.id, &entries, at)?,
        };
        tx.commit()?;
        Ok(MemberView { member, state })
    }

    /// The member a new member names as their referrer: a scanned member code (verified) or a
    /// card number in use.
    fn referrer(&self, given: &str) -> Result<MemberId> {
        if super::identify::looks_like_code(given) {
            return self
                .identify_code(given)
                .map(|view| view.member.id)
                .map_err(|e| StoreError::Referrer(e.to_string()));
        }
        let card: CardNumber = given
            .parse()
            .map_err(|e| StoreError::Referrer(format!("{given:?} is not a card number: {e}")))?;
        self.member_by_card(&card)?
            .map(|view| view.member.id)
            .ok_or_else(|| StoreError::Referrer(format!("no member has card {card}")))
    }

    /// The member with this card number.
    pub fn member_by_card(&self, card: &CardNumber) -> Result<Option<MemberView>> {
        self.one("m.card = ?1", card.as_str())
    }

    /// The member with this id.
    pub fn member(&self, id: MemberId) -> Result<MemberView> {
        let mut stmt = self.conn.prepare_cached(&select_view("m.id = ?1"))?;
        stmt.query_row(params![id.0], view_from_row)
            .optional()?
            .ok_or(StoreError::UnknownMember(id))
    }

    /// The member with this phone number, typed in any common form.
    pub fn member_by_phone(&self, phone: &str) -> Result<Option<MemberView>> {
        match normalise_phone(phone, self.program.country) {
            Ok(e164) => self.one("m.phone = ?1", &e164),
            Err(_) => Ok(None),
        }
    }

    fn one(&self, condition: &str, value: &str) -> Result<Option<MemberView>> {
        let mut stmt = self.conn.prepare_cached(&select_view(condition))?;
        Ok(stmt.query_row(params![value], view_from_row).optional()?)
    }

    /// Members whose name has words starting with each word of `query`, by name, at most `limit`.
    pub fn members_by_name(&self, query: &str, limit: usize) -> Result<Vec<MemberView>> {
        let words = name_tokens(query);
        let Some(first) = words.iter().max_by_key(|w| w.len()) else {
            return Ok(Vec::new());
        };
        let upper = format!("{first}\u{10FFFF}");
        let mut stmt = self.conn.prepare_cached(&select_view(
            "m.id IN (SELECT member_id FROM member_name_tokens WHERE token >= ?1 AND token < ?2)
             ORDER BY m.name, m.card",
        ))?;
        let rows = stmt.query_map(params![first, upper], view_from_row)?;
        let mut found = Vec::new();
        for row in rows {
            let view = row?;
            let tokens = name_tokens(&view.member.name);
            if words
                .iter()
                .all(|w| tokens.iter().any(|t| t.starts_with(w.as_str())))
            {
                found.push(view);
                if found.len() >= limit {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// Finds members by what a cashier typed: a card number, phone, email or name. Exact
    /// identifiers rank first; names fill up to `limit`.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>> {
        let query = query.trim();
        let mut hits: Vec<SearchHit> = Vec::new();
        let push = |matched, view: MemberView, hits: &mut Vec<SearchHit>| {
            if !hits.iter().any(|h| h.view.member.id == view.member.id) {
                hits.push(SearchHit { matched, view });
            }
        };
        if query.is_empty() || limit == 0 {
            return Ok(hits);
        }
        if let Ok(card) = query.parse::<CardNumber>()
            && let Some(view) = self.member_by_card(&card)?
        {
            push(SearchKind::Card, view, &mut hits);
        }
        if looks_like_phone(query)
            && let Some(view) = self.member_by_phone(query)?
        {
            push(SearchKind::Phone, view, &mut hits);
        }
        if query.contains('@') {
            if let Ok(email) = validate_email(query)
                && let Some(view) = self.one("m.email = ?1", &email)?
            {
                push(SearchKind::Email, view, &mut hits);
            }
        } else if query.chars().any(char::is_alphabetic) {
            for view in self.members_by_name(query, limit)? {
                push(SearchKind::Name, view, &mut hits);
            }
        }
        hits.truncate(limit);
        Ok(hits)
    }

    /// A random existing card number (for demos and benchmarks), or `None` when empty.
    pub fn sample_cards(&self, n: usize) -> Result<Vec<CardNumber>> {
        let max: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(rowid), 0) FROM members", [], |r| {
                    r.get(0)
                })?;
        let mut cards = Vec::with_capacity(n);
        if max == 0 {
            return Ok(cards);
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT card FROM members WHERE rowid >= ?1 ORDER BY rowid LIMIT 1")?;
        while cards.len() < n {
            let at = rand::random_range(1..=max);
            let card: Option<String> = stmt.query_row(params![at], |r| r.get(0)).optional()?;
            if let Some(card) = card.and_then(|c| c.parse().ok()) {
                cards.push(card);
            }
        }
        Ok(cards)
    }
}
