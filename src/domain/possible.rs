//! Could an honest till have written this entry? The one possibility check, used by the server
//! on every push and by tills on every pull, so that nothing one till's bug, restore or
//! compromise writes can reach another till's screen.
//!
//! An honest till may be offline: it may run an older program version than the server's latest,
//! may not have seen other tills' entries, and its clock may be off by up to
//! [`MAX_CLOCK_SKEW_MS`]. Every rule here allows exactly that much and no more. What an honest
//! offline till could write but a manager should see comes back as a [`Flag`].

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};

use thiserror::Error;

use super::quote::Sale;
use super::rules;
use super::{Entry, EntryId, EntryKind, MemberId, Program, Timestamp};

/// How far a till's clock may be from the server's.
pub const MAX_CLOCK_SKEW_MS: i64 = 15 * 60_000;

/// One program version and when the server put it in force.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramVersion {
    pub version: i64,
    pub installed_at: Timestamp,
    pub program: Program,
}

/// Every program version the server has installed, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgramHistory {
    versions: Vec<ProgramVersion>,
}

impl ProgramHistory {
    /// A history of `versions` (any order).
    pub fn new(mut versions: Vec<ProgramVersion>) -> Self {
        versions.sort_by_key(|v| v.version);
        versions.dedup_by_key(|v| v.version);
        Self { versions }
    }

    /// Adds a version (a newer one, usually).
    pub fn add(&mut self, version: ProgramVersion) {
        self.versions.retain(|v| v.version != version.version);
        self.versions.push(version);
        self.versions.sort_by_key(|v| v.version);
    }

    /// The highest version known, 0 when none.
    pub fn latest_version(&self) -> i64 {
        self.versions.last().map_or(0, |v| v.version)
    }

    /// Every version, oldest first.
    pub fn versions(&self) -> &[ProgramVersion] {
        &self.versions
    }

    /// The programs an honest till could have been running at `at`: every version installed by
    /// then (allowing for clock skew), since a till offline for a while still runs an older
    /// one; the first version for anything older than the history.
    pub fn candidates(&self, at: Timestamp) -> impl Iterator<Item = &Program> {
        let by = at.millis().saturating_add(MAX_CLOCK_SKEW_MS);
        let installed = self
            .versions
            .iter()
            .take_while(|v| v.installed_at.millis() <= by)
            .count()
            .max(1)
            .min(self.versions.len());
        self.versions[..installed].iter().map(|v| &v.program)
    }
}

/// Why no honest till could have written an entry: the rule and the numbers.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("entry {id}: {rule}")]
pub struct Impossible {
    pub id: EntryId,
    pub rule: Rule,
}

impl Impossible {
    /// The rule's short stable name, for audit listings.
    pub fn rule_name(&self) -> &'static str {
        self.rule.name()
    }
}

/// The rule an impossible entry breaks.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rule {
    #[error("the server has no program to judge entries by")]
    NoProgram,
    #[error("currency {got} is not the program's ({want})")]
    Currency { got: String, want: String },
    #[error("a sale of {amount} minor units is over the program's largest sale ({max})")]
    SaleTooLarge { amount: i64, max: i64 },
    #[error(
        "earns {points} points on a sale of {amount} minor units; the program gives one of {allowed:?}"
    )]
    EarnPoints {
        points: i64,
        amount: i64,
        allowed: Vec<i64>,
    },
    #[error("earns stamps {stamps:?}; the program gives the basket {allowed:?}")]
    EarnStamps {
        stamps: BTreeMap<String, i64>,
        allowed: Vec<BTreeMap<String, i64>>,
    },
    #[error("spends {stamps:?} on stamp card {card:?}; the program's card takes {allowed:?}")]
    StampReward {
        card: String,
        stamps: BTreeMap<String, i64>,
        allowed: Vec<i64>,
    },
    #[error("redeems reward {reward:?}, which the program does not have")]
    UnknownReward { reward: String },
    #[error("redeems {reward:?} for {points} points; the program says it costs {costs:?}")]
    RedeemCost {
        reward: String,
        points: i64,
        costs: Vec<i64>,
    },
    #[error("awards badge {badge:?} with {points} points; the program gives {allowed:?}")]
    BadgePoints {
        badge: String,
        points: i64,
        allowed: Vec<i64>,
    },
    #[error("a referral bonus of {points} points; the program gives {allowed:?}")]
    ReferralPoints { points: i64, allowed: Vec<i64> },
    #[error("names offer {offer:?}, which the program does not have")]
    UnknownOffer { offer: String },
    #[error("{points} points from partner {partner:?}; the program allows at most {most:?} a line")]
    PartnerPoints {
        partner: String,
        points: i64,
        most: Option<i64>,
    },
    #[error("a membership for {amount:?} minor units; the program's paid tier costs {fees:?}")]
    MembershipFee { amount: Option<i64>, fees: Vec<i64> },
    #[error("gives points to cause {cause:?}, which the program does not have")]
    UnknownCause { cause: String },
    #[error("returns part of entry {target}: {reason}")]
    ReturnOf { target: EntryId, reason: String },
    #[error("reverses entry {target}, part of which was returned")]
    ReversalAfterReturn { target: EntryId },
    #[error("reverses entry {target}, which is unknown")]
    UnknownTarget { target: EntryId },
    #[error("reverses entry {target} of another member")]
    OtherMember { target: EntryId },
    #[error("reverses entry {target} made at another till; only that till may reverse it")]
    OtherTerminal { target: EntryId },
    #[error("reverses entry {target}, which is itself a reversal")]
    ReversalOfReversal { target: EntryId },
    #[error(
        "does not exactly negate entry {target} ({points} points, amount {amount:?}; the entry has {target_points}, {target_amount:?})"
    )]
    NotExact {
        target: EntryId,
        points: i64,
        amount: Option<i64>,
        target_points: i64,
        target_amount: Option<i64>,
    },
    #[error("entry {target} is already reversed by {by}")]
    AlreadyReversed { target: EntryId, by: EntryId },
    #[error("a second welcome bonus for the member (the first is {first})")]
    WelcomeTwice { first: EntryId },
    #[error("a second opening balance for the member (the first is {first})")]
    OpeningTwice { first: EntryId },
    #[error("a second birthday bonus for the member in {year} (the first is {first})")]
    BirthdayTwice { year: i32, first: EntryId },
    #[error("a {kind} of {points} points; the program gives {allowed:?}")]
    BonusAmount {
        kind: EntryKind,
        points: i64,
        allowed: Vec<i64>,
    },
    #[error("expires {points} points, more than the member could have held then ({most})")]
    ExpiryOverBalance { points: i64, most: i64 },
    #[error("an adjustment of {points} points is over the program's limit of {limit}")]
    AdjustmentOverLimit { points: i64, limit: i64 },
    #[error("an adjustment must say why (a note)")]
    AdjustmentWithoutNote,
}

impl Rule {
    /// A short stable name.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::NoProgram => "no_program",
            Rule::Currency { .. } => "currency",
            Rule::SaleTooLarge { .. } => "sale_too_large",
            Rule::EarnPoints { .. } => "earn_points",
            Rule::EarnStamps { .. } => "earn_stamps",
            Rule::ReturnOf { .. } => "return_of",
            Rule::UnknownCause { .. } => "unknown_cause",
            Rule::MembershipFee { .. } => "membership_fee",
            Rule::PartnerPoints { .. } => "partner_points",
            Rule::UnknownOffer { .. } => "unknown_offer",
            Rule::BadgePoints { .. } => "badge_points",
            Rule::ReferralPoints { .. } => "referral_points",
            Rule::ReversalAfterReturn { .. } => "reversal_after_return",
            Rule::StampReward { .. } => "stamp_reward",
            Rule::UnknownReward { .. } => "unknown_reward",
            Rule::RedeemCost { .. } => "redeem_cost",
            Rule::UnknownTarget { .. } => "unknown_target",
            Rule::OtherMember { .. } => "other_member",
            Rule::OtherTerminal { .. } => "other_terminal",
            Rule::ReversalOfReversal { .. } => "reversal_of_reversal",
            Rule::NotExact { .. } => "not_exact",
            Rule::AlreadyReversed { .. } => "already_reversed",
            Rule::WelcomeTwice { .. } => "welcome_twice",
            Rule::BirthdayTwice { .. } => "birthday_twice",
            Rule::OpeningTwice { .. } => "opening_twice",
            Rule::BonusAmount { .. } => "bonus_amount",
            Rule::ExpiryOverBalance { .. } => "expiry_over_balance",
            Rule::AdjustmentOverLimit { .. } => "adjustment_over_limit",
            Rule::AdjustmentWithoutNote => "adjustment_without_note",
        }
    }
}

/// Something an honest offline till could write that a manager should see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flag {
    /// A manager's correction.
    Adjustment { points: i64 },
    /// Redemptions in the 24 hours up to this one went over the program's offline limit (fine
    /// when the till was online; a manager checks the ones that were not).
    OverOfflineLimit { used: i64, limit: i64 },
    /// A balance brought over from another system at import.
    OpeningBalance { points: i64 },
    /// A badge awarded again while offline (its till reverses it once it sees the first).
    DuplicateBadge { badge: String },
    /// A partner's line recorded again (two tills, or a till and the server, apart); a till
    /// reverses its own copy once it sees an earlier one.
    RepeatedPartnerLine { partner: String, note: String },
    /// A referral bonus naming a new member already rewarded, or over the referrer's yearly
    /// cap, given offline (its till reverses it once it sees the others).
    RepeatedReferral { new_member: String },
    /// A badge or offer whose rule the entries here do not meet (yet): the till may have
    /// counted entries this judge has not received; a manager checks it.
    Unverified { fact: String },
}

impl Flag {
    /// A short stable name.
    pub fn name(&self) -> &'static str {
        match self {
            Flag::Adjustment { .. } => "adjustment",
            Flag::OverOfflineLimit { .. } => "over_offline_limit",
            Flag::OpeningBalance { .. } => "opening_balance",
            Flag::DuplicateBadge { .. } => "duplicate_badge",
            Flag::RepeatedReferral { .. } => "repeated_referral",
            Flag::RepeatedPartnerLine { .. } => "repeated_partner_line",
            Flag::Unverified { .. } => "unverified",
        }
    }

    /// The numbers, in words.
    pub fn detail(&self) -> String {
        match self {
            Flag::Adjustment { points } => format!("adjustment of {points:+} points"),
            Flag::OverOfflineLimit { used, limit } => {
                format!("{used} points redeemed in 24 hours; the offline limit is {limit}")
            }
            Flag::OpeningBalance { points } => {
                format!("opening balance of {points} points brought over at import")
            }
            Flag::DuplicateBadge { badge } => {
                format!("badge {badge:?} awarded again offline; the later award is reversed")
            }
            Flag::RepeatedPartnerLine { partner, note } => {
                format!("{partner} line ({note}) recorded again")
            }
            Flag::RepeatedReferral { new_member } => format!(
                "referral bonus for new member {new_member} given again offline or over the yearly cap; the later one is reversed"
            ),
            Flag::Unverified { fact } => {
                format!("{fact}: its rule is not met by the entries received so far")
            }
        }
    }
}

/// What an entry needs to be judged: the entries it refers to, and members whose whole history
/// counts (bonuses once, expiry bounds, redemption limits).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Entries reversed by the batch, and any reversal of them already stored.
    pub targets: Vec<EntryId>,
    /// Members whose every stored entry is needed.
    pub histories: Vec<MemberId>,
}

/// The members whose history a kind of entry needs.
fn needs_history(kind: EntryKind) -> bool {
    matches!(
        kind,
        EntryKind::WelcomeBonus
            | EntryKind::BirthdayBonus
            | EntryKind::Expire
            | EntryKind::Redeem
            | EntryKind::OpeningBalance
            | EntryKind::Return
            | EntryKind::Reverse
            | EntryKind::OfferUnlocked
            | EntryKind::BadgeAwarded
            | EntryKind::ReferralBonus
            | EntryKind::PartnerEarn
    )
}

/// What must be fetched from storage to judge `entries`.
pub fn needs<'e>(entries: impl IntoIterator<Item = &'e Entry>) -> Needs {
    let mut targets: Vec<EntryId> = Vec::new();
    let mut histories: Vec<MemberId> = Vec::new();
    for e in entries {
        targets.extend(e.reverses);
        if needs_history(e.kind) {
            histories.push(e.member_id);
        }
    }
    targets.sort_unstable();
    targets.dedup();
    histories.sort_unstable();
    histories.dedup();
    Needs { targets, histories }
}

/// Stored entries fetched for [`Needs`]: the reversal targets, stored reversals of them, and
/// every entry of each member in `Needs::histories`.
#[derive(Debug, Clone, Default)]
pub struct Known {
    by_id: HashMap<EntryId, Entry>,
    reversed_by: HashMap<EntryId, EntryId>,
    by_member: HashMap<MemberId, Vec<EntryId>>,
    complete: HashSet<MemberId>,
    /// The batch being judged, member by member, each member's in the order it arrived (a
    /// pulled page: server order), as far as it concerns `complete` members. What other tills
    /// wrote before an entry counts for its expiry bound whatever the order entries are judged
    /// in.
    batch: HashMap<MemberId, Vec<Entry>>,
    /// Where each entry of `batch` stands in its member's list.
    batch_at: HashMap<EntryId, usize>,
}

impl Known {
    /// The fetched `entries`; the histories of `complete` members are all among them.
    pub fn new(entries: impl IntoIterator<Item = Entry>, complete: &[MemberId]) -> Self {
        let mut known = Known {
            complete: complete.iter().copied().collect(),
            ..Known::default()
        };
        for e in entries {
            known.add(e);
        }
        known
    }

    fn add(&mut self, e: Entry) {
        if self.by_id.contains_key(&e.id) {
            return;
        }
        if let Some(target) = e.reverses {
            self.reversed_by.insert(target, e.id);
        }
        self.by_member.entry(e.member_id).or_default().push(e.id);
        self.by_id.insert(e.id, e);
    }

    fn history(&self, member: MemberId) -> impl Iterator<Item = &Entry> {
        debug_assert!(
            self.complete.contains(&member),
            "the history of {member} was not fetched"
        );
        self.by_member
            .get(&member)
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get(id))
    }
}

/// The verdicts on a batch: flags of the possible entries, and every impossible one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdicts {
    pub flags: Vec<(EntryId, Flag)>,
    pub impossible: Vec<Impossible>,
}

/// Judges every entry of `batch` against the program history and what is stored. Entries are
/// taken in dependency order, never array order: each till's entries in the order it wrote them
/// (terminal_seq). A reversal comes from the till that wrote what it reverses, so it is judged
/// after it even when listed before; and every entry is judged knowing all its till wrote
/// before it, on the server and on every till alike, whatever the push and page boundaries.
/// An entry already stored (same id) is not judged again; an impossible one is not known to
/// those after it (a reversal of it is impossible too).
///
/// Only what a later judgement can read is kept: entries of members whose history is complete,
/// and entries named by another of the batch (reversed or returned).
pub fn judge_batch<E: Borrow<Entry>>(
    programs: &ProgramHistory,
    known: &mut Known,
    batch: &[E],
) -> Verdicts {
    let batch: Vec<&Entry> = batch.iter().map(Borrow::borrow).collect();
    // By member, so an expiry reads what arrived before it of its own member alone (a scan of
    // the whole batch for each one made a pulled batch of expiries quadratic).
    let (mut by_member, mut at) = (HashMap::<MemberId, Vec<Entry>>::new(), HashMap::new());
    for e in batch
        .iter()
        .filter(|e| known.complete.contains(&e.member_id))
    {
        let theirs = by_member.entry(e.member_id).or_default();
        at.entry(e.id).or_insert(theirs.len());
        theirs.push((*e).clone());
    }
    known.batch = by_member;
    known.batch_at = at;
    let named: HashSet<EntryId> = batch
        .iter()
        .flat_map(|e| e.reverses.into_iter().chain(e.returns))
        .collect();
    let mut order = batch;
    order.sort_by(|a, b| (&a.terminal_id, a.terminal_seq).cmp(&(&b.terminal_id, b.terminal_seq)));
    let mut verdicts = Verdicts::default();
    for e in order {
        if known.by_id.contains_key(&e.id) {
            continue;
        }
        match check_entry(programs, known, e) {
            Ok(flag) => {
                verdicts.flags.extend(flag.map(|f| (e.id, f)));
                if known.complete.contains(&e.member_id) || named.contains(&e.id) {
                    known.add(e.clone());
                }
            }
            Err(impossible) => verdicts.impossible.push(impossible),
        }
    }
    verdicts
}

/// [`judge_batch`] for a push, which is refused whole: the flags, or the first impossible entry.
pub fn check_batch<E: Borrow<Entry>>(
    programs: &ProgramHistory,
    known: &mut Known,
    batch: &[E],
) -> Result<Vec<(EntryId, Flag)>, Impossible> {
    let verdicts = judge_batch(programs, known, batch);
    match verdicts.impossible.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(verdicts.flags),
    }
}

/// Could an honest till have written `e`, given what is `known`? A flag when it could but a
/// manager should see it.
pub fn check_entry(
    programs: &ProgramHistory,
    known: &Known,
    e: &Entry,
) -> Result<Option<Flag>, Impossible> {
    let fail = |rule| Impossible { id: e.id, rule };
    let candidates: Vec<&Program> = programs.candidates(e.occurred_at).collect();
    if candidates.is_empty() {
        return Err(fail(Rule::NoProgram));
    }
    match e.kind {
        EntryKind::Earn => check_earn(&candidates, e).map_err(fail)?,
        EntryKind::Redeem => return check_redeem(&candidates, known, e).map_err(fail),
        EntryKind::Reverse => check_reverse(known, e).map_err(fail)?,
        EntryKind::WelcomeBonus => check_welcome(&candidates, known, e).map_err(fail)?,
        EntryKind::BirthdayBonus => check_birthday(&candidates, known, e).map_err(fail)?,
        EntryKind::Expire => check_expiry(known, e).map_err(fail)?,
        EntryKind::Adjust => return check_adjust(&candidates, e).map_err(fail),
        EntryKind::OpeningBalance => return check_opening(known, e).map_err(fail),
        EntryKind::StampReward => check_stamp_reward(&candidates, e).map_err(fail)?,
        EntryKind::Return => check_return(&candidates, known, e).map_err(fail)?,
        EntryKind::Donation => check_donation(&candidates, e).map_err(fail)?,
        EntryKind::Membership => check_membership(&candidates, e).map_err(fail)?,
        EntryKind::PartnerEarn => return check_partner(&candidates, known, e).map_err(fail),
        EntryKind::OfferUnlocked => return check_offer_unlock(&candidates, known, e).map_err(fail),
        EntryKind::OfferUsed => check_offer_named(&candidates, e).map_err(fail)?,
        EntryKind::BadgeAwarded => {
            return check_badge(&candidates, known, e).map_err(fail);
        }
        EntryKind::ReferralBonus => return check_referral(&candidates, known, e).map_err(fail),
    }
    Ok(None)
}

/// A sale earns exactly what some program then in force gives its basket (or amount) at its
/// time at some tier: the till may not have known every entry that decides the member's tier.
/// Promotions run by the entry's own time, so every judge sees the same ones.
fn check_earn(candidates: &[&Program], e: &Entry) -> Result<(), Rule> {
    let amount = e.amount_minor.unwrap_or(0);
    let sale = if e.lines.is_empty() {
        Sale::Amount(amount)
    } else {
        Sale::Lines(&e.lines)
    };
    let currency = e.currency.clone().unwrap_or_default();
    let in_currency: Vec<&&Program> = candidates
        .iter()
        .filter(|p| p.currency == currency)
        .collect();
    let Some(last) = in_currency.last() else {
        return Err(Rule::Currency {
            got: currency,
            want: candidates
                .last()
                .map(|p| p.currency.clone())
                .unwrap_or_default(),
        });
    };
    let max = in_currency
        .iter()
        .map(|p| p.max_sale_minor)
        .max()
        .unwrap_or(last.max_sale_minor);
    if amount > max {
        return Err(Rule::SaleTooLarge { amount, max });
    }
    // Most entries are one tier's price under the newest program: found, that settles it
    // without pricing every tier of every program.
    let one_tier_gives_it = in_currency.iter().rev().any(|p| {
        (0..p.tiers.len()).any(|t| {
            rules::earn(p, t, sale, e.occurred_at)
                .is_ok_and(|d| d.points == e.points && d.stamps == e.stamps)
        })
    });
    if one_tier_gives_it {
        return Ok(());
    }
    let drafts: Vec<rules::Draft> = in_currency
        .iter()
        .flat_map(|p| {
            (0..p.tiers.len()).filter_map(move |t| rules::earn(p, t, sale, e.occurred_at).ok())
        })
        .collect();
    let mut allowed: Vec<i64> = drafts.iter().map(|d| d.points).collect();
    allowed.sort_unstable();
    allowed.dedup();
    if !allowed.contains(&e.points) {
        return Err(Rule::EarnPoints {
            points: e.points,
            amount,
            allowed,
        });
    }
    let mut stamps: Vec<BTreeMap<String, i64>> = drafts.into_iter().map(|d| d.stamps).collect();
    stamps.sort_unstable();
    stamps.dedup();
    if stamps.contains(&e.stamps) {
        Ok(())
    } else {
        Err(Rule::EarnStamps {
            stamps: e.stamps.clone(),
            allowed: stamps,
        })
    }
}

/// A return brings back part of a sale of the same member made at the same till (only that till
/// returns it, as only it reverses it), not reversed, with exactly the money, lines, points and
/// at most the stamps the return rule gives under a program then in force, after the returns
/// that till made of it before.
fn check_return(candidates: &[&Program], known: &Known, e: &Entry) -> Result<(), Rule> {
    let target = e.returns.unwrap_or(EntryId(uuid::Uuid::nil()));
    let fail = |reason: &str| Rule::ReturnOf {
        target,
        reason: reason.to_owned(),
    };
    let sale = known
        .by_id
        .get(&target)
        .ok_or_else(|| fail("the sale is unknown"))?;
    if sale.member_id != e.member_id || sale.kind != EntryKind::Earn {
        return Err(fail("it is not a sale of this member"));
    }
    if sale.terminal_id != e.terminal_id {
        return Err(fail("only the till that made the sale returns it"));
    }
    if known.reversed_by.contains_key(&target) {
        return Err(fail("the sale was reversed"));
    }
    let earlier: Vec<&Entry> = known
        .history(e.member_id)
        .filter(|o| {
            o.kind == EntryKind::Return
                && o.returns == Some(target)
                && o.terminal_seq < e.terminal_seq
        })
        .collect();
    let possible = candidates.iter().any(|p| {
        (0..p.tiers.len()).any(|tier| super::returns::matches(p, tier, sale, &earlier, e))
    });
    if possible {
        Ok(())
    } else {
        Err(fail(
            "the money, lines, points or stamps are not what the return rule gives",
        ))
    }
}

/// Partner points come from a partner of a program then in force, within its most per line.
/// A line recorded again is flagged (the later copy's till reverses it once it sees the first).
fn check_partner(candidates: &[&Program], known: &Known, e: &Entry) -> Result<Option<Flag>, Rule> {
    let partner = e.reward_id.clone().unwrap_or_default();
    let most = candidates
        .iter()
        .filter_map(|p| p.partner(&partner))
        .map(|p| p.max_points)
        .max();
    if most.is_none_or(|m| e.points > m) {
        return Err(Rule::PartnerPoints {
            partner,
            points: e.points,
            most,
        });
    }
    let history: Vec<&Entry> = known.history(e.member_id).collect();
    let repeated = history.iter().any(|o| {
        o.id != e.id
            && o.kind == EntryKind::PartnerEarn
            && (&o.reward_id, &o.note) == (&e.reward_id, &e.note)
            && !history.iter().any(|r| r.reverses == Some(o.id))
    });
    Ok(repeated.then(|| Flag::RepeatedPartnerLine {
        partner,
        note: e.note.clone().unwrap_or_default(),
    }))
}

/// A membership costs exactly the paid tier's fee of a program then in force, in its currency.
fn check_membership(candidates: &[&Program], e: &Entry) -> Result<(), Rule> {
    let fees: Vec<i64> = candidates
        .iter()
        .filter(|p| Some(&p.currency) == e.currency.as_ref())
        .filter_map(|p| p.paid_tier.as_ref().map(|t| t.fee_minor))
        .collect();
    if e.amount_minor.is_some_and(|a| fees.contains(&a)) {
        Ok(())
    } else {
        Err(Rule::MembershipFee {
            amount: e.amount_minor,
            fees,
        })
    }
}

/// A donation goes to a cause of a program then in force (its size is the member's choice; a
/// gift that took a balance below zero offline is a double spend, like a redemption).
fn check_donation(candidates: &[&Program], e: &Entry) -> Result<(), Rule> {
    let cause = e.reward_id.clone().unwrap_or_default();
    if candidates.iter().any(|p| p.cause(&cause).is_some()) {
        Ok(())
    } else {
        Err(Rule::UnknownCause { cause })
    }
}

/// A badge is one of a program then in force, with its points. Its rule is checked against what
/// the awarding till could have known; other tills' entries it counted may not be here yet (a
/// server put back to an older copy hears them again later), so a rule not met here is flagged
/// for the manager, not refused. A second award of a badge is possible offline; it is flagged,
/// and its till reverses it once it sees the first.
fn check_badge(candidates: &[&Program], known: &Known, e: &Entry) -> Result<Option<Flag>, Rule> {
    let badge = e.reward_id.clone().unwrap_or_default();
    let mut allowed: Vec<i64> = candidates
        .iter()
        .filter_map(|p| p.badge(&badge))
        .map(|b| b.points)
        .collect();
    allowed.sort_unstable();
    allowed.dedup();
    if !allowed.contains(&e.points) {
        return Err(Rule::BadgePoints {
            badge,
            points: e.points,
            allowed,
        });
    }
    let view = could_have_known(known, e);
    let met = candidates.iter().any(|p| {
        p.badge(&badge).is_some_and(|b| {
            super::badges::possible(p, b.rule, &view, e.occurred_at, MAX_CLOCK_SKEW_MS)
        })
    });
    let history: Vec<Entry> = known.history(e.member_id).cloned().collect();
    if !met {
        return Ok(Some(Flag::Unverified {
            fact: format!("badge {badge:?}"),
        }));
    }
    let earlier = history.iter().any(|o| {
        o.kind == EntryKind::BadgeAwarded
            && o.reward_id == e.reward_id
            && o.id != e.id
            && !history.iter().any(|r| r.reverses == Some(o.id))
    });
    Ok(earlier.then_some(Flag::DuplicateBadge { badge }))
}

/// A referral bonus gives the new member's or the referrer's points of a program then in force.
/// Whether the member named was referred is in the member records, not the ledger; a bonus
/// that does not stand (given twice offline, or over the referrer's cap) is flagged, and its
/// till reverses it once it sees the others.
fn check_referral(candidates: &[&Program], known: &Known, e: &Entry) -> Result<Option<Flag>, Rule> {
    let mut allowed: Vec<i64> = candidates
        .iter()
        .filter_map(|p| p.referral.as_ref())
        .map(|r| super::referrals::points_for(r, e))
        .collect();
    allowed.sort_unstable();
    allowed.dedup();
    if !allowed.contains(&e.points) {
        return Err(Rule::ReferralPoints {
            points: e.points,
            allowed,
        });
    }
    let mut history: Vec<Entry> = known.history(e.member_id).cloned().collect();
    history.push(e.clone());
    let repeated = candidates.iter().any(|p| {
        super::referrals::duplicates(p, &history)
            .iter()
            .any(|d| d.id == e.id)
    });
    Ok(repeated.then(|| Flag::RepeatedReferral {
        new_member: e.reward_id.clone().unwrap_or_default(),
    }))
}

/// The member's entries a till writing `e` could have known, as far as they can only help a
/// rule over purchases: its own entries before `e`, and other tills' entries stamped no later
/// than `e` allows for clock skew, less other tills' reversals and returns (taking back is what
/// the till may not have seen).
fn could_have_known(known: &Known, e: &Entry) -> Vec<Entry> {
    let by = e.occurred_at.plus_millis(MAX_CLOCK_SKEW_MS);
    known
        .history(e.member_id)
        .filter(|o| {
            if o.terminal_id == e.terminal_id {
                o.terminal_seq < e.terminal_seq
            } else {
                o.occurred_at <= by && !matches!(o.kind, EntryKind::Reverse | EntryKind::Return)
            }
        })
        .cloned()
        .collect()
}

/// An offer's fact names an offer of a program then in force.
fn check_offer_named(candidates: &[&Program], e: &Entry) -> Result<(), Rule> {
    let offer = e.reward_id.clone().unwrap_or_default();
    if candidates.iter().any(|p| p.offer(&offer).is_some()) {
        Ok(())
    } else {
        Err(Rule::UnknownOffer { offer })
    }
}

/// An unlock names an offer of a program then in force. Whether the run of purchases it needs
/// is here is flagged, not refused: other tills' purchases the till counted may not be here yet.
/// An earlier unlock the till might not have known is not insisted on either (the fold voids
/// a second open unlock).
fn check_offer_unlock(
    candidates: &[&Program],
    known: &Known,
    e: &Entry,
) -> Result<Option<Flag>, Rule> {
    check_offer_named(candidates, e)?;
    let offer = e.reward_id.clone().unwrap_or_default();
    let view = could_have_known(known, e);
    let met = candidates.iter().any(|p| {
        super::offers::unlock_possible(p, &offer, &view, e.occurred_at, MAX_CLOCK_SKEW_MS)
    });
    Ok((!met).then(|| Flag::Unverified {
        fact: format!("offer {offer:?}"),
    }))
}

/// A stamp reward spends exactly a full card of a program then in force.
fn check_stamp_reward(candidates: &[&Program], e: &Entry) -> Result<(), Rule> {
    let card = e.reward_id.clone().unwrap_or_default();
    let mut allowed: Vec<i64> = candidates
        .iter()
        .filter_map(|p| p.stamp_card(&card))
        .map(|c| c.stamps)
        .collect();
    allowed.sort_unstable();
    allowed.dedup();
    let spent = e.stamps.get(&card).map(|n| -n);
    if spent.is_some_and(|n| allowed.contains(&n)) {
        Ok(())
    } else {
        Err(Rule::StampReward {
            card,
            stamps: e.stamps.clone(),
            allowed,
        })
    }
}

/// A redemption costs exactly what a program then in force charges for the reward.
fn check_redeem(candidates: &[&Program], known: &Known, e: &Entry) -> Result<Option<Flag>, Rule> {
    let reward = e.reward_id.clone().unwrap_or_default();
    let mut costs: Vec<i64> = candidates
        .iter()
        .filter_map(|p| p.reward(&reward))
        .map(|r| r.cost)
        .collect();
    if costs.is_empty() {
        return Err(Rule::UnknownReward { reward });
    }
    costs.sort_unstable();
    costs.dedup();
    if !costs.contains(&-e.points) {
        return Err(Rule::RedeemCost {
            reward,
            points: e.points,
            costs,
        });
    }
    let since = e.occurred_at.plus_days(-1);
    let used: i64 = -e.points
        - known
            .history(e.member_id)
            .filter(|o| {
                o.kind == EntryKind::Redeem
                    && o.occurred_at > since
                    && o.occurred_at <= e.occurred_at
            })
            .map(|o| o.points)
            .sum::<i64>();
    let limit = candidates
        .iter()
        .map(|p| p.offline_redeem_limit)
        .max()
        .unwrap_or(0);
    Ok((used > limit).then_some(Flag::OverOfflineLimit { used, limit }))
}

/// A reversal exactly negates an existing entry of the same member, made at the same till, that
/// is not itself a reversal and has not been reversed already.
fn check_reverse(known: &Known, e: &Entry) -> Result<(), Rule> {
    let Some(target) = e.reverses else {
        return Err(Rule::UnknownTarget {
            target: EntryId(uuid::Uuid::nil()),
        });
    };
    let original = known
        .by_id
        .get(&target)
        .ok_or(Rule::UnknownTarget { target })?;
    if original.member_id != e.member_id {
        return Err(Rule::OtherMember { target });
    }
    if original.terminal_id != e.terminal_id {
        return Err(Rule::OtherTerminal { target });
    }
    if original.kind == EntryKind::Reverse {
        return Err(Rule::ReversalOfReversal { target });
    }
    if let Some(&by) = known.reversed_by.get(&target)
        && by != e.id
    {
        return Err(Rule::AlreadyReversed { target, by });
    }
    if known
        .history(e.member_id)
        .any(|o| o.kind == EntryKind::Return && o.returns == Some(target))
    {
        return Err(Rule::ReversalAfterReturn { target });
    }
    let exact = rules::reverse(original, false).is_ok_and(|d| {
        d.points == e.points
            && d.amount_minor == e.amount_minor
            && d.currency == e.currency
            && d.stamps == e.stamps
    });
    if !exact {
        return Err(Rule::NotExact {
            target,
            points: e.points,
            amount: e.amount_minor,
            target_points: original.points,
            target_amount: original.amount_minor,
        });
    }
    Ok(())
}

fn bonus_amount(candidates: &[&Program], e: &Entry, of: fn(&Program) -> i64) -> Result<(), Rule> {
    let mut allowed: Vec<i64> = candidates
        .iter()
        .map(|p| of(p))
        .filter(|&b| b > 0)
        .collect();
    allowed.sort_unstable();
    allowed.dedup();
    if allowed.contains(&e.points) {
        Ok(())
    } else {
        Err(Rule::BonusAmount {
            kind: e.kind,
            points: e.points,
            allowed,
        })
    }
}

/// The welcome bonus: the program's amount, once per member.
fn check_welcome(candidates: &[&Program], known: &Known, e: &Entry) -> Result<(), Rule> {
    bonus_amount(candidates, e, |p| p.welcome_bonus)?;
    if let Some(first) = known
        .history(e.member_id)
        .find(|o| o.kind == EntryKind::WelcomeBonus && o.id != e.id)
    {
        return Err(Rule::WelcomeTwice { first: first.id });
    }
    Ok(())
}

/// The birthday bonus: the program's amount, at most once per member per calendar year.
fn check_birthday(candidates: &[&Program], known: &Known, e: &Entry) -> Result<(), Rule> {
    bonus_amount(candidates, e, |p| p.birthday_bonus)?;
    let year = e.occurred_at.date().year();
    if let Some(first) = known.history(e.member_id).find(|o| {
        o.kind == EntryKind::BirthdayBonus && o.id != e.id && o.occurred_at.date().year() == year
    }) {
        return Err(Rule::BirthdayTwice {
            year,
            first: first.id,
        });
    }
    Ok(())
}

/// Expiry takes no more than the expiring till could have seen as the balance: all of its own
/// earlier entries, and at most the points other tills added by then (known, or arrived before
/// it in the batch).
fn check_expiry(known: &Known, e: &Entry) -> Result<(), Rule> {
    let by = e.occurred_at.millis().saturating_add(MAX_CLOCK_SKEW_MS);
    let own: i64 = known
        .history(e.member_id)
        .filter(|o| o.terminal_id == e.terminal_id && o.terminal_seq < e.terminal_seq)
        .map(|o| o.points)
        .sum();
    let theirs = known.batch.get(&e.member_id).map_or(&[][..], Vec::as_slice);
    let arrived_before = known
        .batch_at
        .get(&e.id)
        .map_or(&[][..], |&i| &theirs[..i.min(theirs.len())]);
    let stored = known
        .history(e.member_id)
        .filter(|o| !known.batch_at.contains_key(&o.id));
    let mut others: HashMap<EntryId, i64> = HashMap::new();
    for o in stored.chain(arrived_before) {
        if o.member_id == e.member_id
            && o.terminal_id != e.terminal_id
            && o.occurred_at.millis() <= by
        {
            others.insert(o.id, o.points.max(0));
        }
    }
    let most = own + others.values().sum::<i64>();
    if -e.points > most {
        return Err(Rule::ExpiryOverBalance {
            points: -e.points,
            most,
        });
    }
    Ok(())
}

/// An opening balance (an import) comes once per member; every one is flagged.
fn check_opening(known: &Known, e: &Entry) -> Result<Option<Flag>, Rule> {
    if let Some(first) = known
        .history(e.member_id)
        .find(|o| o.kind == EntryKind::OpeningBalance && o.id != e.id)
    {
        return Err(Rule::OpeningTwice { first: first.id });
    }
    Ok(Some(Flag::OpeningBalance { points: e.points }))
}

/// An adjustment says why and stays within the program's limit; every one is flagged.
fn check_adjust(candidates: &[&Program], e: &Entry) -> Result<Option<Flag>, Rule> {
    if e.note.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(Rule::AdjustmentWithoutNote);
    }
    let limit = candidates.iter().map(|p| p.adjust_limit).max().unwrap_or(0);
    if e.points.abs() > limit {
        return Err(Rule::AdjustmentOverLimit {
            points: e.points,
            limit,
        });
    }
    Ok(Some(Flag::Adjustment { points: e.points }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TerminalId;
    use crate::domain::summary::tests::entry;
    use crate::domain::timestamp::DAY_MS;

    const T0: i64 = 1_795_435_200_000;

    fn history() -> ProgramHistory {
        ProgramHistory::new(vec![ProgramVersion {
            version: 1,
            installed_at: Timestamp::from_millis(0),
            program: Program::demo(),
        }])
    }

    fn at(kind: EntryKind, points: i64, amount: Option<i64>, seq: i64) -> Entry {
        Entry {
            terminal_seq: seq,
            ..entry(kind, points, amount, T0 + seq)
        }
    }

    fn judge(batch: &[Entry]) -> Result<Vec<(EntryId, Flag)>, Rule> {
        let member = batch[0].member_id;
        check_batch(&history(), &mut Known::new([], &[member]), batch).map_err(|e| e.rule)
    }

    #[test]
    fn earn_must_be_what_some_tier_gives_the_amount() {
        // £12.50 earns 125 (Green), 156 (Silver x1.25) or 187 (Gold x1.5), rounded down.
        for points in [125, 156, 187] {
            assert_eq!(
                judge(&[at(EntryKind::Earn, points, Some(1250), 1)]),
                Ok(vec![])
            );
        }
        let greedy = judge(&[at(EntryKind::Earn, 188, Some(1250), 1)]);
        assert!(
            matches!(&greedy, Err(Rule::EarnPoints { allowed, .. }) if *allowed == vec![125, 156, 187]),
            "{greedy:?}"
        );
        let penny = judge(&[at(EntryKind::Earn, 900_000_000, Some(1), 1)]);
        assert!(matches!(penny, Err(Rule::EarnPoints { .. })), "{penny:?}");
        let huge = judge(&[at(EntryKind::Earn, 10, Some(100_001), 1)]);
        assert!(
            matches!(huge, Err(Rule::SaleTooLarge { max: 100_000, .. })),
            "{huge:?}"
        );
        let mut euro = at(EntryKind::Earn, 125, Some(1250), 1);
        euro.currency = Some("EUR".into());
        assert!(matches!(judge(&[euro]), Err(Rule::Currency { .. })));
    }

    #[test]
    fn a_basket_earns_what_its_lines_earn_at_its_time() {
        // Two 250 g bags of beans, 24.00: 240 base, beans x2, and 100 for 20.00 on beans.
        let beans = vec![crate::domain::basket::SaleLine::item(
            "House beans 250g",
            "beans",
            2,
            2400,
        )];
        let basket = |points| Entry {
            lines: beans.clone(),
            ..at(EntryKind::Earn, points, Some(2400), 1)
        };
        for points in [580, 700, 820] {
            assert_eq!(judge(&[basket(points)]), Ok(vec![]));
        }
        let forged = judge(&[basket(1000)]);
        assert!(
            matches!(&forged, Err(Rule::EarnPoints { allowed, .. }) if *allowed == vec![580, 700, 820]),
            "{forged:?}"
        );
        // Without its lines the same sale is a typed amount: the category's points are not due.
        let typed = judge(&[at(EntryKind::Earn, 580, Some(2400), 1)]);
        assert!(matches!(typed, Err(Rule::EarnPoints { .. })), "{typed:?}");
        let mut short = basket(580);
        short.amount_minor = Some(2300);
        assert!(short.check_shape().is_err());
    }

    #[test]
    fn stamps_are_what_the_basket_earns_and_a_reward_spends_a_full_card() {
        // Three paid lattes earn three coffee stamps; 9.60 earns 96 points at Green.
        let lattes = vec![crate::domain::basket::SaleLine::item(
            "Latte", "coffee", 3, 960,
        )];
        let sale = |stamps: i64| Entry {
            lines: lattes.clone(),
            stamps: BTreeMap::from([("coffee".to_owned(), stamps)]),
            ..at(EntryKind::Earn, 96, Some(960), 1)
        };
        assert_eq!(judge(&[sale(3)]), Ok(vec![]));
        let greedy = judge(&[sale(9)]);
        assert!(matches!(greedy, Err(Rule::EarnStamps { .. })), "{greedy:?}");
        let free = |spent: i64| Entry {
            reward_id: Some("coffee".into()),
            stamps: BTreeMap::from([("coffee".to_owned(), spent)]),
            ..at(EntryKind::StampReward, 0, None, 1)
        };
        assert_eq!(judge(&[free(-9)]), Ok(vec![]));
        let cheap = judge(&[free(-3)]);
        assert!(matches!(cheap, Err(Rule::StampReward { .. })), "{cheap:?}");
        assert!(free(4).check_shape().is_err(), "a reward cannot add stamps");
    }

    #[test]
    fn a_membership_costs_the_paid_tiers_fee() {
        let member = |amount: i64| at(EntryKind::Membership, 0, Some(amount), 1);
        assert_eq!(judge(&[member(2_500)]), Ok(vec![]));
        assert!(matches!(
            judge(&[member(100)]),
            Err(Rule::MembershipFee { .. })
        ));
        let earning = Entry {
            points: 250,
            ..member(2_500)
        };
        assert!(earning.check_shape().is_err(), "a membership earns nothing");
    }

    #[test]
    fn donations_go_to_the_programs_causes() {
        let gift = |cause: &str| Entry {
            reward_id: Some(cause.into()),
            ..at(EntryKind::Donation, -500, None, 1)
        };
        assert_eq!(judge(&[gift("food-bank")]), Ok(vec![]));
        assert_eq!(
            judge(&[gift("my-yacht")]),
            Err(Rule::UnknownCause {
                cause: "my-yacht".into()
            })
        );
        let free_points = Entry {
            points: 500,
            ..gift("food-bank")
        };
        assert!(
            free_points.check_shape().is_err(),
            "a donation cannot add points"
        );
    }

    #[test]
    fn redemptions_cost_what_the_program_says() {
        let mut coffee = at(EntryKind::Redeem, -500, None, 1);
        coffee.reward_id = Some("coffee".into());
        assert_eq!(judge(&[coffee.clone()]), Ok(vec![]));
        coffee.points = -5;
        assert!(matches!(
            judge(std::slice::from_ref(&coffee)),
            Err(Rule::RedeemCost { costs, .. }) if costs == vec![500]
        ));
        coffee.reward_id = Some("yacht".into());
        assert!(matches!(judge(&[coffee]), Err(Rule::UnknownReward { .. })));
    }

    #[test]
    fn redemptions_over_the_offline_limit_are_flagged() {
        let batch: Vec<Entry> = (1..=5)
            .map(|seq| Entry {
                reward_id: Some("coffee".into()),
                ..at(EntryKind::Redeem, -500, None, seq)
            })
            .collect();
        let flags = judge(&batch).expect("possible");
        assert_eq!(
            flags,
            vec![(
                batch[4].id,
                Flag::OverOfflineLimit {
                    used: 2500,
                    limit: 2000
                }
            )]
        );
    }

    #[test]
    fn a_reversal_listed_before_its_entry_is_judged_after_it() {
        let earned = at(EntryKind::Earn, 125, Some(1250), 1);
        let mut reversal = at(EntryKind::Reverse, -125, Some(-1250), 2);
        reversal.reverses = Some(earned.id);
        assert_eq!(judge(&[reversal.clone(), earned.clone()]), Ok(vec![]));
        // The attack of the issue: a reversal carrying +999,999 listed before its target.
        let mut forged = reversal.clone();
        forged.points = 999_999;
        assert!(matches!(
            judge(&[forged, earned.clone()]),
            Err(Rule::NotExact { .. })
        ));
        let mut elsewhere = reversal.clone();
        elsewhere.terminal_id = TerminalId("other".into());
        let member = earned.member_id;
        let stored = Known::new([earned.clone()], &[member]);
        assert!(matches!(
            check_batch(&history(), &mut stored.clone(), &[elsewhere]).map_err(|e| e.rule),
            Err(Rule::OtherTerminal { .. })
        ));
        let mut twice = reversal.clone();
        twice.id = EntryId(uuid::Uuid::now_v7());
        assert!(matches!(
            judge(&[earned.clone(), reversal.clone(), twice]),
            Err(Rule::AlreadyReversed { .. })
        ));
        let mut orphan = reversal;
        orphan.reverses = Some(EntryId(uuid::Uuid::now_v7()));
        assert!(matches!(judge(&[orphan]), Err(Rule::UnknownTarget { .. })));
    }

    #[test]
    fn bonuses_are_the_programs_amount_and_not_repeated() {
        let welcome = at(EntryKind::WelcomeBonus, 100, None, 1);
        assert_eq!(judge(std::slice::from_ref(&welcome)), Ok(vec![]));
        let again = at(EntryKind::WelcomeBonus, 100, None, 2);
        assert!(matches!(
            judge(&[welcome.clone(), again]),
            Err(Rule::WelcomeTwice { .. })
        ));
        assert!(matches!(
            judge(&[at(EntryKind::WelcomeBonus, 101, None, 1)]),
            Err(Rule::BonusAmount { .. })
        ));
        let birthday = at(EntryKind::BirthdayBonus, 250, None, 1);
        let same_year = at(EntryKind::BirthdayBonus, 250, None, 2);
        assert!(matches!(
            judge(&[birthday.clone(), same_year]),
            Err(Rule::BirthdayTwice { .. })
        ));
        let next_year = Entry {
            occurred_at: Timestamp::from_millis(T0 + 366 * DAY_MS),
            ..at(EntryKind::BirthdayBonus, 250, None, 2)
        };
        assert_eq!(judge(&[birthday, next_year]), Ok(vec![]));
    }

    #[test]
    fn expiry_takes_no_more_than_the_till_could_have_seen() {
        let earned = at(EntryKind::Earn, 125, Some(1250), 1);
        let expire = |points| Entry {
            occurred_at: Timestamp::from_millis(T0 + 400 * DAY_MS),
            ..at(EntryKind::Expire, points, None, 2)
        };
        assert_eq!(judge(&[earned.clone(), expire(-125)]), Ok(vec![]));
        assert!(matches!(
            judge(&[earned, expire(-126)]),
            Err(Rule::ExpiryOverBalance { most: 125, .. })
        ));
    }

    /// Another till's points count towards an expiry's bound when they arrived before it in
    /// the batch, and only the same member's.
    #[test]
    fn expiry_counts_what_other_tills_gave_the_member_before_it_arrived() {
        let member = MemberId(uuid::Uuid::from_u128(1));
        let other = MemberId(uuid::Uuid::from_u128(2));
        let elsewhere = |member, seq| Entry {
            member_id: member,
            terminal_id: TerminalId("elsewhere".into()),
            ..at(EntryKind::Earn, 125, Some(1250), seq)
        };
        let expire = Entry {
            member_id: member,
            occurred_at: Timestamp::from_millis(T0 + 400 * DAY_MS),
            ..at(EntryKind::Expire, -125, None, 1)
        };
        let judge = |batch: &[Entry]| {
            check_batch(&history(), &mut Known::new([], &[member, other]), batch)
                .map_err(|e| e.rule)
        };
        assert!(judge(&[elsewhere(member, 1), expire.clone()]).is_ok());
        for late_or_not_theirs in [
            vec![expire.clone(), elsewhere(member, 1)],
            vec![elsewhere(other, 1), expire.clone()],
        ] {
            assert!(
                matches!(
                    judge(&late_or_not_theirs),
                    Err(Rule::ExpiryOverBalance { most: 0, .. })
                ),
                "{late_or_not_theirs:?}"
            );
        }
    }

    #[test]
    fn adjustments_need_a_note_and_stay_within_the_limit() {
        let adjust = |points, note: Option<&str>| Entry {
            note: note.map(str::to_owned),
            ..at(EntryKind::Adjust, points, None, 1)
        };
        let ok = adjust(-50, Some("double scan"));
        assert_eq!(
            judge(std::slice::from_ref(&ok)),
            Ok(vec![(ok.id, Flag::Adjustment { points: -50 })])
        );
        assert!(matches!(
            judge(&[adjust(10_001, Some("x"))]),
            Err(Rule::AdjustmentOverLimit { limit: 10_000, .. })
        ));
        assert!(matches!(
            judge(&[adjust(5, Some("  "))]),
            Err(Rule::AdjustmentWithoutNote)
        ));
    }

    #[test]
    fn an_offline_till_may_run_an_older_program_but_not_a_newer_one() {
        let dear = Program::from_toml(
            &crate::domain::program::DEMO_PROGRAM_TOML.replace("cost = 500", "cost = 600"),
        )
        .expect("program");
        let programs = ProgramHistory::new(vec![
            ProgramVersion {
                version: 1,
                installed_at: Timestamp::from_millis(0),
                program: Program::demo(),
            },
            ProgramVersion {
                version: 2,
                installed_at: Timestamp::from_millis(T0 + DAY_MS),
                program: dear,
            },
        ]);
        let redeem = |points, day| Entry {
            reward_id: Some("coffee".into()),
            occurred_at: Timestamp::from_millis(T0 + day * DAY_MS),
            ..at(EntryKind::Redeem, points, None, 1)
        };
        let judge = |e: Entry| {
            let member = e.member_id;
            check_batch(&programs, &mut Known::new([], &[member]), &[e]).map_err(|e| e.rule)
        };
        assert!(judge(redeem(-500, 0)).is_ok());
        assert!(judge(redeem(-600, 2)).is_ok());
        assert!(
            judge(redeem(-500, 2)).is_ok(),
            "an offline till still on v1"
        );
        assert!(
            matches!(judge(redeem(-600, 0)), Err(Rule::RedeemCost { .. })),
            "v2 was not yet in force"
        );
    }
}

#[cfg(test)]
mod contract {
    //! Whatever the server accepts, every till applies: the same check, judged again by a till
    //! that takes the accepted entries in pages of any size, never finds one impossible.

    use proptest::prelude::*;

    use super::*;
    use crate::domain::TerminalId;
    use crate::domain::timestamp::DAY_MS;

    const T0: i64 = 1_795_435_200_000;

    /// How one generated entry is made: its kind, terminal, day, a points choice and a target.
    type Recipe = (u8, bool, i64, i64, usize, bool);

    fn make(recipes: &[Recipe]) -> Vec<Entry> {
        let member = MemberId(uuid::Uuid::from_u128(7));
        let mut seqs = [0_i64; 2];
        let mut made: Vec<Entry> = Vec::new();
        for (i, &(kind, till_b, day, points, target, honest)) in recipes.iter().enumerate() {
            let t = usize::from(till_b);
            seqs[t] += 1;
            let mut e = Entry {
                id: EntryId(uuid::Uuid::from_u128(1000 + i as u128)),
                terminal_id: TerminalId(if till_b { "b" } else { "a" }.into()),
                terminal_seq: seqs[t],
                member_id: member,
                kind: EntryKind::Earn,
                points: 0,
                amount_minor: None,
                currency: None,
                reward_id: None,
                reverses: None,
                occurred_at: Timestamp::from_millis(T0 + day * DAY_MS + i as i64),
                note: None,
                actor: "p".into(),
                lines: Vec::new(),
                stamps: Default::default(),
                returns: None,
            };
            match kind % 7 {
                0 => {
                    let amount = points.rem_euclid(5000) + 1;
                    e.amount_minor = Some(amount);
                    e.currency = Some("GBP".into());
                    e.points = if honest { amount / 10 } else { points };
                }
                1 => {
                    e.kind = EntryKind::Redeem;
                    e.reward_id = Some("coffee".into());
                    e.points = if honest { -500 } else { -points.abs().max(1) };
                }
                2 if !made.is_empty() => {
                    let original = made[target % made.len()].clone();
                    e.kind = EntryKind::Reverse;
                    e.reverses = Some(original.id);
                    e.points = if honest { -original.points } else { points };
                    e.amount_minor = original.amount_minor.map(|a| -a);
                    e.currency = original.currency;
                }
                3 => {
                    e.kind = EntryKind::Adjust;
                    e.points = if honest {
                        points.rem_euclid(9000) + 1
                    } else {
                        points
                    };
                    e.note = Some("p".into());
                }
                4 => {
                    e.kind = EntryKind::WelcomeBonus;
                    e.points = if honest { 100 } else { points.abs().max(1) };
                }
                5 => {
                    e.kind = EntryKind::BirthdayBonus;
                    e.points = if honest { 250 } else { points.abs().max(1) };
                }
                _ => {
                    e.kind = EntryKind::Expire;
                    e.points = -(points.rem_euclid(400) + 1);
                }
            }
            if e.check_shape().is_ok() {
                made.push(e);
            }
        }
        made
    }

    proptest! {
        #[test]
        fn whatever_the_server_accepts_every_till_applies(
            recipes in proptest::collection::vec(
                (any::<u8>(), any::<bool>(), 0i64..800, -2_000i64..2_000_000, any::<usize>(), any::<bool>()),
                1..60,
            ),
            pushes in proptest::collection::vec(1usize..8, 1..60),
            pages in proptest::collection::vec(1usize..10, 1..60),
        ) {
            let programs = ProgramHistory::new(vec![ProgramVersion {
                version: 1,
                installed_at: Timestamp::from_millis(0),
                program: Program::demo(),
            }]);
            let entries = make(&recipes);
            let member = MemberId(uuid::Uuid::from_u128(7));
            // The server takes pushes of any size, refusing a batch whole.
            let mut accepted: Vec<Entry> = Vec::new();
            let mut rest = entries.as_slice();
            for size in pushes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (batch, tail) = rest.split_at((*size).min(rest.len()));
                rest = tail;
                let mut known = Known::new(accepted.clone(), &[member]);
                if check_batch(&programs, &mut known, batch).is_ok() {
                    accepted.extend(batch.iter().cloned());
                }
            }
            // A till pulls what was accepted, in server order, in pages of any size.
            let mut applied: Vec<Entry> = Vec::new();
            let mut rest = accepted.as_slice();
            for size in pages.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (page, tail) = rest.split_at((*size).min(rest.len()));
                rest = tail;
                let mut known = Known::new(applied.clone(), &[member]);
                let verdicts = judge_batch(&programs, &mut known, page);
                prop_assert!(verdicts.impossible.is_empty(), "{:?}", verdicts.impossible);
                applied.extend(page.iter().cloned());
            }
        }
    }
}
