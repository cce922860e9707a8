//! Ledger entries: immutable, globally unique facts about points.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use super::Timestamp;
use super::basket::{SaleLine, check_lines, lines_total};

/// Largest number of points a single entry may move either way.
pub const MAX_ENTRY_POINTS: i64 = 1_000_000_000;
/// Longest free-text note or actor name.
pub const MAX_TEXT_LEN: usize = 200;

/// Globally unique entry id (UUIDv7, made where the entry is made).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EntryId(pub Uuid);

/// A UUIDv7 for an instant, from caller-supplied random bits (kept pure and seedable).
pub fn uuid_v7(at: Timestamp, random: [u8; 10]) -> Uuid {
    let ms = u64::try_from(at.millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid()
}

/// Random 128-bit member id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemberId(pub Uuid);

/// The id of the till (or other writer) that made an entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TerminalId(pub String);

macro_rules! uuid_display {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
        impl FromStr for $t {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim()).map(Self)
            }
        }
    };
}
uuid_display!(EntryId);
uuid_display!(MemberId);

impl fmt::Display for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Points earned on a sale; carries the sale amount.
    Earn,
    /// Points spent on a reward; carries the reward id.
    Redeem,
    /// Exactly negates one earlier entry (`reverses`).
    Reverse,
    /// A manager's correction, with a note.
    Adjust,
    /// Points removed by the expiry rule.
    Expire,
    /// The program's welcome bonus, written when a member enrols.
    WelcomeBonus,
    /// The program's yearly birthday bonus.
    BirthdayBonus,
    /// A member's balance brought over from another loyalty system when they were imported.
    OpeningBalance,
    /// A full stamp card spent on its free item; carries the card (`reward_id`) and the stamps.
    StampReward,
    /// Points a member gave to one of the program's causes (`reward_id`).
    Donation,
    /// An offer (`reward_id`) unlocked by a run of purchases; moves no points.
    OfferUnlocked,
    /// An open offer (`reward_id`) used; moves no points.
    OfferUsed,
    /// A badge (`reward_id`) awarded, with its points (possibly none).
    BadgeAwarded,
    /// The program's paid tier bought: the fee (`amount_minor`), earning no points.
    Membership,
    /// Points earned with a partner (`reward_id`), its reference in the note.
    PartnerEarn,
    /// Part (or all) of a sale brought back: the money, its lines, and the points and stamps
    /// taken back in proportion; names the sale (`returns`).
    Return,
    /// A referral's bonus, naming the new member (`reward_id`): to the new member on their first
    /// qualifying purchase, and to the member who referred them.
    ReferralBonus,
}

impl EntryKind {
    /// Every kind, for iteration and schema checks.
    pub const ALL: [Self; 17] = [
        Self::Earn,
        Self::Redeem,
        Self::Reverse,
        Self::Adjust,
        Self::Expire,
        Self::WelcomeBonus,
        Self::BirthdayBonus,
        Self::OpeningBalance,
        Self::StampReward,
        Self::Return,
        Self::Donation,
        Self::OfferUnlocked,
        Self::OfferUsed,
        Self::BadgeAwarded,
        Self::Membership,
        Self::PartnerEarn,
        Self::ReferralBonus,
    ];

    /// The stable text used in storage and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Earn => "earn",
            Self::Redeem => "redeem",
            Self::Reverse => "reverse",
            Self::Adjust => "adjust",
            Self::Expire => "expire",
            Self::WelcomeBonus => "welcome_bonus",
            Self::BirthdayBonus => "birthday_bonus",
            Self::OpeningBalance => "opening_balance",
            Self::StampReward => "stamp_reward",
            Self::Return => "return",
            Self::Donation => "donation",
            Self::OfferUnlocked => "offer_unlocked",
            Self::OfferUsed => "offer_used",
            Self::BadgeAwarded => "badge_awarded",
            Self::Membership => "membership",
            Self::PartnerEarn => "partner_earn",
            Self::ReferralBonus => "referral_bonus",
        }
    }

    /// Words for people.
    pub fn label(self) -> &'static str {
        match self {
            Self::Earn => "Purchase",
            Self::Redeem => "Reward",
            Self::Reverse => "Reversal",
            Self::Adjust => "Adjustment",
            Self::Expire => "Expired",
            Self::WelcomeBonus => "Welcome bonus",
            Self::BirthdayBonus => "Birthday bonus",
            Self::OpeningBalance => "Opening balance",
            Self::StampReward => "Stamp card reward",
            Self::Return => "Return",
            Self::Donation => "Donation",
            Self::OfferUnlocked => "Offer unlocked",
            Self::OfferUsed => "Offer used",
            Self::BadgeAwarded => "Badge",
            Self::Membership => "Membership",
            Self::PartnerEarn => "Partner points",
            Self::ReferralBonus => "Referral bonus",
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EntryKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown entry kind {s:?}"))
    }
}

/// One immutable ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: EntryId,
    pub terminal_id: TerminalId,
    /// Gapless per terminal, from 1.
    pub terminal_seq: i64,
    pub member_id: MemberId,
    pub kind: EntryKind,
    /// Signed points: positive adds to the balance.
    pub points: i64,
    /// Sale amount in minor units (earn entries, and reversals of them, negated).
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub reward_id: Option<String>,
    /// The entry this one reverses.
    pub reverses: Option<EntryId>,
    /// When it happened, by the writer's clock, UTC.
    pub occurred_at: Timestamp,
    pub note: Option<String>,
    /// Who did it (cashier name or system job).
    pub actor: String,
    /// A sale's basket lines; empty for a typed amount and every other kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<SaleLine>,
    /// Stamps by card id: earned by a sale (positive), spent by a stamp reward (negative).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stamps: BTreeMap<String, i64>,
    /// The sale a return brings back part of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returns: Option<EntryId>,
}

/// Why an entry has an impossible shape.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("entry {id}: {reason}")]
pub struct ShapeError {
    pub id: EntryId,
    pub reason: String,
}

impl Entry {
    /// Checks the entry is well-formed on its own: the right fields for its kind, values in
    /// range. Entries from outside (sync, import) pass through this before they are stored.
    pub fn check_shape(&self) -> Result<(), ShapeError> {
        let fail = |reason: &str| {
            Err(ShapeError {
                id: self.id,
                reason: reason.to_owned(),
            })
        };
        if self.terminal_id.0.trim().is_empty() || self.terminal_id.0.len() > 64 {
            return fail("terminal id must be 1-64 characters");
        }
        if self.terminal_seq < 1 {
            return fail("terminal sequence must start at 1");
        }
        if self.points.abs() > MAX_ENTRY_POINTS {
            return fail("points out of range");
        }
        if self.actor.trim().is_empty() || self.actor.len() > MAX_TEXT_LEN {
            return fail("actor must be 1-200 characters");
        }
        if self.note.as_ref().is_some_and(|n| n.len() > MAX_TEXT_LEN) {
            return fail("note longer than 200 characters");
        }
        if self.amount_minor.is_some() != self.currency.is_some() {
            return fail("amount and currency go together");
        }
        if self.reverses.is_some() != (self.kind == EntryKind::Reverse) {
            return fail("only a reversal names an entry it reverses, and it must");
        }
        if self.returns.is_some() != (self.kind == EntryKind::Return) {
            return fail("only a return names the sale it returns, and it must");
        }
        if self.kind == EntryKind::Return {
            let total = lines_total(&self.lines).map(i64::checked_neg);
            let shaped = self.points <= 0
                && self.amount_minor.is_some_and(|a| a < 0)
                && self
                    .lines
                    .iter()
                    .all(|l| l.of_line.is_some() && l.amount_minor >= 0)
                && (self.lines.is_empty() || total == Some(self.amount_minor));
            if !shaped {
                return fail(
                    "a return gives money back (its lines add up to it) and takes points back",
                );
            }
        } else if !self.lines.is_empty() {
            if self.kind != EntryKind::Earn {
                return fail("only a sale carries basket lines");
            }
            if let Err(e) = check_lines(&self.lines) {
                return fail(&format!("basket {e}"));
            }
            if lines_total(&self.lines) != self.amount_minor {
                return fail("the basket's lines do not add up to the sale amount");
            }
        }
        if !super::stamps::shape_ok(self.kind, self.reward_id.as_deref(), &self.stamps) {
            return fail(
                "stamps are earned by sales and spent by stamp rewards, one card at a time",
            );
        }
        let amount = self.amount_minor;
        match self.kind {
            EntryKind::Return => Ok(()),
            EntryKind::Earn if amount.is_none_or(|a| a <= 0) => {
                fail("an earn entry needs a positive sale amount")
            }
            EntryKind::Earn if self.points < 0 => fail("earning cannot take points away"),
            EntryKind::Redeem if self.points >= 0 || self.reward_id.is_none() => {
                fail("a redemption spends points on a named reward")
            }
            EntryKind::Expire if self.points >= 0 => fail("expiry only removes points"),
            EntryKind::WelcomeBonus | EntryKind::BirthdayBonus if self.points <= 0 => {
                fail("a bonus adds points")
            }
            EntryKind::Adjust if self.points == 0 || self.note.is_none() => {
                fail("an adjustment moves points and says why")
            }
            EntryKind::OpeningBalance if self.points <= 0 || self.note.is_none() => {
                fail("an opening balance adds points and says where they came from")
            }
            EntryKind::Donation if self.points >= 0 || self.reward_id.is_none() => {
                fail("a donation gives points to a named cause")
            }
            EntryKind::OfferUnlocked | EntryKind::OfferUsed
                if self.points != 0 || self.reward_id.is_none() =>
            {
                fail("an offer's facts name the offer and move no points")
            }
            EntryKind::PartnerEarn
                if self.points <= 0 || self.reward_id.is_none() || self.note.is_none() =>
            {
                fail("partner points name the partner and its reference, and add points")
            }
            EntryKind::ReferralBonus
                if self.points <= 0
                    || self
                        .reward_id
                        .as_deref()
                        .is_none_or(|r| r.parse::<Uuid>().is_err()) =>
            {
                fail("a referral bonus names the new member and adds points")
            }
            EntryKind::Membership if self.points != 0 || amount.is_none_or(|a| a <= 0) => {
                fail("a membership is a fee paid, earning no points")
            }
            EntryKind::BadgeAwarded if self.points < 0 || self.reward_id.is_none() => {
                fail("a badge names the badge and gives its points, if any")
            }
            EntryKind::StampReward if self.points != 0 || self.reward_id.is_none() => {
                fail("a stamp reward spends stamps of a named card, not points")
            }
            EntryKind::Redeem
            | EntryKind::StampReward
            | EntryKind::Donation
            | EntryKind::OfferUnlocked
            | EntryKind::OfferUsed
            | EntryKind::BadgeAwarded
            | EntryKind::PartnerEarn
            | EntryKind::ReferralBonus
            | EntryKind::Expire
            | EntryKind::WelcomeBonus
            | EntryKind::BirthdayBonus
            | EntryKind::Adjust
            | EntryKind::OpeningBalance
                if amount.is_some() =>
            {
                fail("only sales carry an amount")
            }
            _ => Ok(()),
        }
    }
}
