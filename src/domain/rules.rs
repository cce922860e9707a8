//! The program's rules for writing entries: earning, redeeming, reversing, adjusting, bonuses
//! and expiry. Each rule either returns a [`Draft`] of the entry to write or a [`Refusal`] saying
//! why not, in words a cashier can act on.

use std::collections::BTreeMap;

use thiserror::Error;

use super::basket::{LineError, SaleLine};
use super::money::format_amount;
use super::program::{MAX_REWARD_COST, Reward};
use super::quote::{Sale, earned};
use super::summary::MemberSummary;
use super::{Entry, EntryId, EntryKind, MemberId, Program, TerminalId, Timestamp};

/// An entry's content before the store gives it an id, terminal sequence and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub kind: EntryKind,
    pub points: i64,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub reward_id: Option<String>,
    pub reverses: Option<EntryId>,
    pub note: Option<String>,
    /// The basket of a sale, when it came with lines.
    pub lines: Vec<SaleLine>,
    /// Stamps earned (a sale) or spent (a stamp reward), by card id.
    pub stamps: BTreeMap<String, i64>,
    /// The sale a return brings back part of.
    pub returns: Option<EntryId>,
}

impl Draft {
    /// The entry this draft becomes, written by `actor` at `terminal` as its number
    /// `terminal_seq`, for `member_id`, at `occurred_at`.
    pub fn into_entry(
        self,
        id: EntryId,
        terminal: TerminalId,
        terminal_seq: i64,
        member_id: MemberId,
        occurred_at: Timestamp,
        actor: &str,
    ) -> Entry {
        Entry {
            id,
            terminal_id: terminal,
            terminal_seq,
            member_id,
            kind: self.kind,
            points: self.points,
            amount_minor: self.amount_minor,
            currency: self.currency,
            reward_id: self.reward_id,
            reverses: self.reverses,
            occurred_at,
            note: self.note,
            actor: actor.trim().to_owned(),
            lines: self.lines,
            stamps: self.stamps,
            returns: self.returns,
        }
    }

    fn points(kind: EntryKind, points: i64) -> Self {
        Self {
            kind,
            points,
            amount_minor: None,
            currency: None,
            reward_id: None,
            reverses: None,
            note: None,
            lines: Vec::new(),
            stamps: BTreeMap::new(),
            returns: None,
        }
    }
}

/// Why the till refuses an action.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("basket {0}")]
    BadLine(LineError),
    #[error("enter a sale amount above zero")]
    AmountNotPositive,
    #[error(
        "{amount} is more than the largest sale this program accepts ({max}); check the amount"
    )]
    AmountTooLarge { amount: String, max: String },
    #[error("there is no reward {0:?} in this program")]
    UnknownReward(String),
    #[error("not enough points for {reward}: it costs {cost}, the balance is {balance}")]
    InsufficientPoints {
        reward: String,
        cost: i64,
        balance: i64,
    },
    #[error(
        "not enough points for {reward} yet: it costs {cost}; {available} are available now and {pending} more once their sales' return window has passed"
    )]
    PointsPending {
        reward: String,
        cost: i64,
        available: i64,
        pending: i64,
    },
    #[error("{reward} is for {required} members and above; this member is {current}")]
    TierLocked {
        reward: String,
        required: String,
        current: String,
    },
    #[error(
        "offline redemption limit reached: {used} of {limit} points redeemed in the last 24 hours, {reward} costs {cost}"
    )]
    OfflineLimit {
        reward: String,
        cost: i64,
        used: i64,
        limit: i64,
    },
    #[error("there is no stamp card {0:?} in this program")]
    UnknownStampCard(String),
    #[error("{card} needs {need} stamps for its free item; the member has {held}")]
    NotEnoughStamps { card: String, need: i64, held: i64 },
    #[error("{0} is not open for this member (used, expired, or not unlocked yet)")]
    NoOpenOffer(String),
    #[error("this program has no paid tier to buy")]
    NoPaidTier,
    #[error("there is no cause {0:?} in this program")]
    UnknownCause(String),
    #[error("give at least one point")]
    DonationOutOfRange,
    #[error("only a sale can be returned")]
    NotASale,
    #[error("this sale came with lines: return it by line")]
    ReturnByLine,
    #[error("this sale was one amount: return an amount of it")]
    ReturnByAmount,
    #[error("a return gives back more than nothing and at most what is left of the sale ({left})")]
    ReturnAmount { left: String },
    #[error("line {line}: {reason}")]
    ReturnLine { line: usize, reason: String },
    #[error("part of that sale was returned; return the rest instead of reversing it")]
    HasReturns,
    #[error("that entry was already reversed")]
    AlreadyReversed,
    #[error("a reversal cannot itself be reversed; make an adjustment instead")]
    ReversalOfReversal,
    #[error("that entry moved no points; there is nothing to reverse")]
    NothingToReverse,
    #[error("an adjustment must move at least one point and at most {limit} (the program's limit)")]
    AdjustmentOutOfRange { limit: i64 },
    #[error("an adjustment needs a note saying why")]
    AdjustmentNeedsNote,
}

/// A sale's amount as every sale must be, with a member or without: positive, and no larger
/// than the program's largest sale (a typo guard).
pub fn check_sale_amount(program: &Program, amount_minor: i64) -> Result<(), Refusal> {
    if amount_minor <= 0 {
        return Err(Refusal::AmountNotPositive);
    }
    if amount_minor > program.max_sale_minor {
        return Err(Refusal::AmountTooLarge {
            amount: format_amount(amount_minor, program.minor_units),
            max: format_amount(program.max_sale_minor, program.minor_units),
        });
    }
    Ok(())
}

/// The entry for a sale by a member in `tier` at `at`: the points [`quote`] gives, the amount
/// and the basket's lines.
pub fn earn(
    program: &Program,
    tier: usize,
    sale: Sale<'_>,
    at: Timestamp,
) -> Result<Draft, Refusal> {
    let q = earned(program, tier, sale, at)?;
    Ok(Draft {
        amount_minor: Some(q.amount_minor),
        currency: Some(program.currency.clone()),
        lines: sale.lines().to_vec(),
        stamps: q.stamps,
        ..Draft::points(EntryKind::Earn, q.points)
    })
}

/// A member uses an offer open for them (`open`: their open offers now).
pub fn use_offer(
    program: &Program,
    open: &[super::offers::OpenOffer],
    offer_id: &str,
) -> Result<Draft, Refusal> {
    let offer = program
        .offer(offer_id)
        .ok_or_else(|| Refusal::NoOpenOffer(offer_id.to_owned()))?;
    if !open.iter().any(|o| o.offer == offer.id) {
        return Err(Refusal::NoOpenOffer(offer.name.clone()));
    }
    Ok(Draft {
        reward_id: Some(offer.id.clone()),
        ..Draft::points(EntryKind::OfferUsed, 0)
    })
}

/// Points a member earned with a partner, for the partner's line `reference`.
pub fn partner_earn(partner: &str, points: i64, reference: &str) -> Draft {
    Draft {
        reward_id: Some(partner.to_owned()),
        note: Some(super::partners::note(reference)),
        ..Draft::points(EntryKind::PartnerEarn, points)
    }
}

/// The program's paid tier bought at the till: its fee, earning no points.
pub fn buy_membership(program: &Program) -> Result<Draft, Refusal> {
    let paid = program.paid_tier.as_ref().ok_or(Refusal::NoPaidTier)?;
    Ok(Draft {
        amount_minor: Some(paid.fee_minor),
        currency: Some(program.currency.clone()),
        ..Draft::points(EntryKind::Membership, 0)
    })
}

/// A referral's bonus of `points`, naming the new member.
pub fn referral_bonus(new_member: &str, points: i64) -> Draft {
    Draft {
        reward_id: Some(new_member.to_owned()),
        ..Draft::points(EntryKind::ReferralBonus, points)
    }
}

/// The award of a badge whose rule the member now meets, with its points.
pub fn award_badge(badge_id: &str, points: i64) -> Draft {
    Draft {
        reward_id: Some(badge_id.to_owned()),
        ..Draft::points(EntryKind::BadgeAwarded, points)
    }
}

/// The fact of an offer unlocked by the purchase just made.
pub fn unlock_offer(offer_id: &str) -> Draft {
    Draft {
        reward_id: Some(offer_id.to_owned()),
        ..Draft::points(EntryKind::OfferUnlocked, 0)
    }
}

/// A member gives `points` to one of the program's causes, from their balance.
pub fn donate(
    program: &Program,
    summary: &MemberSummary,
    cause_id: &str,
    points: i64,
) -> Result<Draft, Refusal> {
    let cause = program
        .cause(cause_id)
        .ok_or_else(|| Refusal::UnknownCause(cause_id.to_owned()))?;
    if points <= 0 || points > MAX_REWARD_COST {
        return Err(Refusal::DonationOutOfRange);
    }
    if summary.balance < points {
        return Err(Refusal::InsufficientPoints {
            reward: format!("a gift to {}", cause.name),
            cost: points,
            balance: summary.balance,
        });
    }
    Ok(Draft {
        reward_id: Some(cause.id.clone()),
        ..Draft::points(EntryKind::Donation, -points)
    })
}

/// Spends a full stamp card on its free item, when the member holds enough stamps (`held`).
pub fn redeem_stamps(
    program: &Program,
    held: &BTreeMap<String, i64>,
    card_id: &str,
) -> Result<Draft, Refusal> {
    let card = program
        .stamp_card(card_id)
        .ok_or_else(|| Refusal::UnknownStampCard(card_id.to_owned()))?;
    let have = held.get(&card.id).copied().unwrap_or(0);
    if have < card.stamps {
        return Err(Refusal::NotEnoughStamps {
            card: card.name.clone(),
            need: card.stamps,
            held: have,
        });
    }
    Ok(Draft {
        reward_id: Some(card.id.clone()),
        stamps: BTreeMap::from([(card.id.clone(), -card.stamps)]),
        ..Draft::points(EntryKind::StampReward, 0)
    })
}

/// Checks a redemption. `offline_used` is the points this member redeemed in the last 24 hours
/// when the till cannot reach the server, and `None` when the server confirmed the balance.
pub fn redeem<'p>(
    program: &'p Program,
    summary: &MemberSummary,
    reward_id: &str,
    offline_used: Option<i64>,
) -> Result<(&'p Reward, Draft), Refusal> {
    let reward = program
        .reward(reward_id)
        .ok_or_else(|| Refusal::UnknownReward(reward_id.to_owned()))?;
    if summary.tier < reward.min_tier {
        return Err(Refusal::TierLocked {
            reward: reward.name.clone(),
            required: program.tier(reward.min_tier).name.clone(),
            current: program.tier(summary.tier).name.clone(),
        });
    }
    if summary.balance < reward.cost {
        return Err(Refusal::InsufficientPoints {
            reward: reward.name.clone(),
            cost: reward.cost,
            balance: summary.balance,
        });
    }
    if let Some(used) = offline_used
        && used + reward.cost > program.offline_redeem_limit
    {
        return Err(Refusal::OfflineLimit {
            reward: reward.name.clone(),
            cost: reward.cost,
            used,
            limit: program.offline_redeem_limit,
        });
    }
    let draft = Draft {
        reward_id: Some(reward.id.clone()),
        ..Draft::points(EntryKind::Redeem, -reward.cost)
    };
    Ok((reward, draft))
}

/// Points redeemed in the 24 hours up to `now`, from a member's entries.
pub fn redeemed_in_last_day(entries: &[Entry], now: Timestamp) -> i64 {
    let since = now.plus_days(-1);
    entries
        .iter()
        .filter(|e| e.kind == EntryKind::Redeem && e.occurred_at > since && e.occurred_at <= now)
        .map(|e| -e.points)
        .sum()
}

/// The exact negation of `original`. `already_reversed` says whether a reversal of it exists.
pub fn reverse(original: &Entry, already_reversed: bool) -> Result<Draft, Refusal> {
    if original.kind == EntryKind::Reverse {
        return Err(Refusal::ReversalOfReversal);
    }
    if already_reversed {
        return Err(Refusal::AlreadyReversed);
    }
    // An offer's unlock moves nothing, yet taking it back (its sale cancelled) closes the offer.
    if original.points == 0
        && original.amount_minor.is_none()
        && original.stamps.is_empty()
        && original.kind != EntryKind::OfferUnlocked
    {
        return Err(Refusal::NothingToReverse);
    }
    Ok(Draft {
        kind: EntryKind::Reverse,
        points: -original.points,
        amount_minor: original.amount_minor.map(|a| -a),
        currency: original.currency.clone(),
        reward_id: original.reward_id.clone(),
        reverses: Some(original.id),
        note: None,
        lines: Vec::new(),
        stamps: original
            .stamps
            .iter()
            .map(|(card, n)| (card.clone(), -n))
            .collect(),
        returns: None,
    })
}

/// A refusal for too few points, saying how many are pending when some are (they become
/// spendable once their sales' return window has passed).
pub fn with_pending(refusal: Refusal, pending: i64) -> Refusal {
    match refusal {
        Refusal::InsufficientPoints {
            reward,
            cost,
            balance,
        } if pending > 0 => Refusal::PointsPending {
            reward,
            cost,
            available: balance,
            pending,
        },
        other => other,
    }
}

/// A manager's correction, within the program's limit.
pub fn adjust(program: &Program, points: i64, note: &str) -> Result<Draft, Refusal> {
    if points == 0 || points.abs() > program.adjust_limit {
        return Err(Refusal::AdjustmentOutOfRange {
            limit: program.adjust_limit,
        });
    }
    let note = note.trim();
    if note.is_empty() {
        return Err(Refusal::AdjustmentNeedsNote);
    }
    Ok(Draft {
        note: Some(note.to_owned()),
        ..Draft::points(EntryKind::Adjust, points)
    })
}

/// The welcome bonus for a new member, if the program has one.
pub fn welcome(program: &Program) -> Option<Draft> {
    (program.welcome_bonus > 0)
        .then(|| Draft::points(EntryKind::WelcomeBonus, program.welcome_bonus))
}

/// The expiry entry due at `now`: all remaining points after the inactivity period.
pub fn expiry(program: &Program, summary: &MemberSummary, now: Timestamp) -> Option<Draft> {
    let days = program.expiry_inactivity_days?;
    let last = summary.last_activity_at?;
    (summary.balance > 0 && last.plus_days(days) <= now).then(|| Draft {
        note: Some(format!("no purchase or redemption for {days} days")),
        ..Draft::points(EntryKind::Expire, -summary.balance)
    })
}

/// The date a member born on `birthday` celebrates in `year` (29 February becomes 28 February
/// outside leap years).
pub fn birthday_in(birthday: time::Date, year: i32) -> Option<time::Date> {
    time::Date::from_calendar_date(year, birthday.month(), birthday.day())
        .or_else(|_| time::Date::from_calendar_date(year, birthday.month(), 28))
        .ok()
}

/// The birthday bonus due `today` for a member born on `birthday`, unless one was already given
/// this calendar year. People born on 29 February celebrate on 28 February in other years.
pub fn birthday(
    program: &Program,
    birthday: Option<time::Date>,
    today: time::Date,
    entries: &[Entry],
) -> Option<Draft> {
    let birthday = birthday?;
    if program.birthday_bonus <= 0 {
        return None;
    }
    let celebrated = birthday_in(birthday, today.year())?;
    let given_this_year = entries
        .iter()
        .any(|e| e.kind == EntryKind::BirthdayBonus && e.occurred_at.date().year() == today.year());
    (celebrated == today && !given_this_year)
        .then(|| Draft::points(EntryKind::BirthdayBonus, program.birthday_bonus))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::program::Rounding;
    use crate::domain::summary::summarise;
    use crate::domain::summary::tests::entry;
    use proptest::prelude::*;

    fn summary(balance: i64, tier: usize) -> MemberSummary {
        MemberSummary {
            balance,
            qualifying: 0,
            tier,
            as_of: Timestamp::from_millis(0),
            last_activity_at: None,
            entry_count: 0,
        }
    }

    #[test]
    fn earn_applies_rate_multiplier_and_rounding() {
        let p = Program::demo();
        // 10 points per pound; Silver x1.25; rounding down.
        assert_eq!(
            earn(&p, 0, Sale::Amount(450), Timestamp::from_millis(0)).map(|d| d.points),
            Ok(45)
        );
        assert_eq!(
            earn(&p, 1, Sale::Amount(450), Timestamp::from_millis(0)).map(|d| d.points),
            Ok(56)
        );
        assert_eq!(
            earn(&p, 2, Sale::Amount(399), Timestamp::from_millis(0)).map(|d| d.points),
            Ok(59)
        );
        assert_eq!(
            earn(&p, 0, Sale::Amount(9), Timestamp::from_millis(0)).map(|d| d.points),
            Ok(0)
        );
        let up = Program {
            rounding: Rounding::Up,
            ..p.clone()
        };
        assert_eq!(
            earn(&up, 1, Sale::Amount(450), Timestamp::from_millis(0)).map(|d| d.points),
            Ok(57)
        );
        let nearest = Program {
            rounding: Rounding::Nearest,
            ..p.clone()
        };
        assert_eq!(
            earn(&nearest, 1, Sale::Amount(452), Timestamp::from_millis(0)).map(|d| d.points),
            Ok(57)
        );
        assert_eq!(
            earn(&nearest, 1, Sale::Amount(450), Timestamp::from_millis(0)).map(|d| d.points),
            Ok(56)
        );
    }

    #[test]
    fn earn_refuses_bad_amounts() {
        let p = Program::demo();
        assert_eq!(
            earn(&p, 0, Sale::Amount(0), Timestamp::from_millis(0)),
            Err(Refusal::AmountNotPositive)
        );
        assert_eq!(
            earn(&p, 0, Sale::Amount(-5), Timestamp::from_millis(0)),
            Err(Refusal::AmountNotPositive)
        );
        assert!(matches!(
            earn(
                &p,
                0,
                Sale::Amount(p.max_sale_minor + 1),
                Timestamp::from_millis(0)
            ),
            Err(Refusal::AmountTooLarge { .. })
        ));
    }

    #[test]
    fn redeem_checks_in_order() {
        let p = Program::demo();
        assert!(matches!(
            redeem(&p, &summary(0, 0), "nope", None),
            Err(Refusal::UnknownReward(_))
        ));
        assert!(matches!(
            redeem(&p, &summary(100_000, 0), "beans-250g", None),
            Err(Refusal::TierLocked { .. })
        ));
        assert!(matches!(
            redeem(&p, &summary(499, 0), "coffee", None),
            Err(Refusal::InsufficientPoints {
                cost: 500,
                balance: 499,
                ..
            })
        ));
        assert!(matches!(
            redeem(&p, &summary(5000, 0), "coffee", Some(1600)),
            Err(Refusal::OfflineLimit {
                used: 1600,
                limit: 2000,
                ..
            })
        ));
        let (reward, draft) = redeem(&p, &summary(500, 0), "coffee", Some(1500)).expect("allowed");
        assert_eq!(
            (reward.cost, draft.points, draft.kind),
            (500, -500, EntryKind::Redeem)
        );
    }

    #[test]
    fn reversal_rules() {
        let earned = entry(EntryKind::Earn, 45, Some(450), 1);
        let draft = reverse(&earned, false).expect("reversible");
        assert_eq!((draft.points, draft.amount_minor), (-45, Some(-450)));
        assert_eq!(reverse(&earned, true), Err(Refusal::AlreadyReversed));
        let rev = entry(EntryKind::Reverse, -45, Some(-450), 2);
        assert_eq!(reverse(&rev, false), Err(Refusal::ReversalOfReversal));
    }

    #[test]
    fn expiry_after_inactivity_only() {
        let p = Program::demo();
        let day = crate::domain::timestamp::DAY_MS;
        let entries = vec![entry(EntryKind::Earn, 300, Some(3000), 0)];
        let s = summarise(&p, &entries, Timestamp::from_millis(0));
        assert_eq!(expiry(&p, &s, Timestamp::from_millis(364 * day)), None);
        let due = expiry(&p, &s, Timestamp::from_millis(365 * day)).map(|d| d.points);
        assert_eq!(due, Some(-300));
    }

    #[test]
    fn birthday_once_a_year_and_leap_day() {
        let p = Program::demo();
        let born = time::macros::date!(2000 - 02 - 29);
        let feb28 = time::macros::date!(2027 - 02 - 28);
        assert!(birthday(&p, Some(born), feb28, &[]).is_some());
        assert!(birthday(&p, Some(born), time::macros::date!(2027 - 03 - 01), &[]).is_none());
        let midnight = time::macros::datetime!(2027-02-28 0:00 UTC).unix_timestamp() * 1000;
        let given = entry(EntryKind::BirthdayBonus, 250, None, midnight);
        assert!(birthday(&p, Some(born), feb28, &[given]).is_none());
    }

    proptest! {
        #[test]
        fn earning_never_yields_negative_points(amount in 1i64..=100_000, tier in 0usize..3) {
            let p = Program::demo();
            let d = earn(&p, tier, Sale::Amount(amount), Timestamp::from_millis(0));
            prop_assert!(d.is_ok_and(|d| d.points >= 0));
        }

        #[test]
        fn an_entry_and_its_reversal_net_to_zero(points in -100_000i64..100_000, amount in proptest::option::of(1i64..100_000)) {
            prop_assume!(points != 0 || amount.is_some());
            let original = entry(if amount.is_some() { EntryKind::Earn } else { EntryKind::Adjust }, points, amount, 1);
            let d = reverse(&original, false);
            prop_assert!(d.is_ok());
            let d = d.unwrap_or_else(|_| unreachable!());
            prop_assert_eq!(original.points + d.points, 0);
            prop_assert_eq!(original.amount_minor.unwrap_or(0) + d.amount_minor.unwrap_or(0), 0);
        }
    }
}
