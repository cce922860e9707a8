//! Members: who they are and how the till finds them.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::phone::{PhoneError, normalise_phone};
use super::{CardNumber, MemberId, Program, Timestamp};

/// A member's profile as it travels between tills and the server: a versioned record, where the
/// higher version wins everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    #[serde(flatten)]
    pub member: Member,
    /// Milliseconds of the last change (enrolment or card replacement); never goes down.
    pub version: i64,
    /// Cards this member held before (their codes are refused as replaced).
    #[serde(default)]
    pub retired_cards: Vec<RetiredCard>,
    /// When the member's personal data was erased at their request: the record then holds no
    /// name (a placeholder), phone, email or birthday, and every copy everywhere follows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_at: Option<Timestamp>,
    /// The member who referred this one, named at enrolment and never changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referred_by: Option<MemberId>,
}

/// The name an erased member's record carries.
pub const ERASED_NAME: &str = "Erased member";

/// A card taken out of use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredCard {
    pub card: CardNumber,
    pub retired_at: Timestamp,
    pub replaced_by: CardNumber,
}

/// A member's profile as the till knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: MemberId,
    pub card: CardNumber,
    pub name: String,
    /// E.164.
    pub phone: Option<String>,
    /// Lower-case.
    pub email: Option<String>,
    pub birthday: Option<time::Date>,
    pub marketing_consent: bool,
    pub created_at: Timestamp,
}

/// What a cashier types to enrol someone, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberInput {
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// `YYYY-MM-DD`.
    pub birthday: Option<String>,
    pub marketing_consent: bool,
    /// The card number or scanned code of the member who referred them, if any.
    pub referred_by: Option<String>,
}

/// A validated, normalised enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMember {
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub birthday: Option<time::Date>,
    pub marketing_consent: bool,
    /// The referrer's card or code as given, trimmed; the store finds the member.
    pub referred_by: Option<String>,
}

/// Why an enrolment was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MemberError {
    #[error("name: enter the member's name (1-100 characters)")]
    Name,
    #[error("phone: {0}")]
    Phone(PhoneError),
    #[error("email: {0:?} is not an email address")]
    Email(String),
    #[error("birthday: {0:?} is not a date like 1990-04-25")]
    Birthday(String),
    #[error("birthday: {0} is in the future")]
    BirthdayInFuture(time::Date),
}

impl From<PhoneError> for MemberError {
    fn from(e: PhoneError) -> Self {
        Self::Phone(e)
    }
}

impl MemberRecord {
    /// The card in use is not among the retired ones: a till retires a card only when it gives
    /// the member a new one, so no till writes a record whose own card is retired (every till
    /// would then refuse the member's card as replaced).
    pub fn check_cards(&self) -> Result<(), String> {
        if self
            .retired_cards
            .iter()
            .any(|r| r.card == self.member.card)
        {
            return Err(format!(
                "card {} is retired yet in use; no till retires the card a member holds",
                self.member.card
            ));
        }
        Ok(())
    }
}

impl MemberInput {
    /// Validates and normalises against the program (phone country) and today's date.
    pub fn validate(self, program: &Program, today: time::Date) -> Result<NewMember, MemberError> {
        let name = self.name.split_whitespace().collect::<Vec<_>>().join(" ");
        if name.is_empty() || name.chars().count() > 100 {
            return Err(MemberError::Name);
        }
        let present = |o: Option<String>| o.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let phone = present(self.phone)
            .map(|p| normalise_phone(&p, program.country))
            .transpose()?;
        let email = present(self.email)
            .map(|e| validate_email(&e))
            .transpose()?;
        let birthday = present(self.birthday)
            .map(|b| parse_date(&b).ok_or(MemberError::Birthday(b)))
            .transpose()?;
        if let Some(b) = birthday.filter(|b| *b > today) {
            return Err(MemberError::BirthdayInFuture(b));
        }
        Ok(NewMember {
            name,
            phone,
            email,
            birthday,
            marketing_consent: self.marketing_consent,
            referred_by: present(self.referred_by),
        })
    }
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text.trim(), &format).ok()
}

/// Checks the shape of an email address and lower-cases it.
pub fn validate_email(text: &str) -> Result<String, MemberError> {
    let bad = || MemberError::Email(text.to_owned());
    let email = text.trim().to_lowercase();
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    let ok = !local.is_empty()
        && email.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !email.chars().any(char::is_whitespace);
    if ok { Ok(email) } else { Err(bad()) }
}

/// Lower-case words of a name, for prefix search.
pub fn name_tokens(name: &str) -> Vec<String> {
    let mut tokens: Vec<String> = name
        .split(|c: char| c.is_whitespace() || c == '-' || c == '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    tokens.sort();
    tokens.dedup();
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> time::Date {
        time::macros::date!(2026 - 11 - 23)
    }

    #[test]
    fn normalises_fields() {
        let input = MemberInput {
            name: "  Ada   Lovelace ".into(),
            phone: Some("07400 123456".into()),
            email: Some(" Ada@Example.COM ".into()),
            birthday: Some("1990-12-10".into()),
            marketing_consent: true,
            referred_by: None,
        };
        let m = input.validate(&Program::demo(), today());
        let m = m.expect("valid");
        assert_eq!(m.name, "Ada Lovelace");
        assert_eq!(m.phone.as_deref(), Some("+447400123456"));
        assert_eq!(m.email.as_deref(), Some("ada@example.com"));
        assert_eq!(m.birthday, Some(time::macros::date!(1990 - 12 - 10)));
    }

    #[test]
    fn refuses_bad_fields() {
        let base = || MemberInput {
            name: "Bo".into(),
            ..Default::default()
        };
        let p = Program::demo();
        let name = MemberInput {
            name: " ".into(),
            ..base()
        };
        assert_eq!(name.validate(&p, today()), Err(MemberError::Name));
        let email = MemberInput {
            email: Some("bo@".into()),
            ..base()
        };
        assert!(matches!(
            email.validate(&p, today()),
            Err(MemberError::Email(_))
        ));
        let bday = MemberInput {
            birthday: Some("31/12/1990".into()),
            ..base()
        };
        assert!(matches!(
            bday.validate(&p, today()),
            Err(MemberError::Birthday(_))
        ));
        let future = MemberInput {
            birthday: Some("2030-01-01".into()),
            ..base()
        };
        assert!(matches!(
            future.validate(&p, today()),
            Err(MemberError::BirthdayInFuture(_))
        ));
        let phone = MemberInput {
            phone: Some("12".into()),
            ..base()
        };
        assert!(matches!(
            phone.validate(&p, today()),
            Err(MemberError::Phone(_))
        ));
    }

    #[test]
    fn tokens() {
        assert_eq!(
            name_tokens("Mary-Jane O'Neil"),
            vec!["jane", "mary", "neil", "o"]
        );
    }
}
