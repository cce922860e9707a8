//! Offers that unlock after repeat purchases: "after 5 purchases within 30 days, a free pastry
//! is yours for 14 days". The unlock is a ledger fact (`offer_unlocked`, written with the
//! purchase that completes the run), using it is another (`offer_used`); both move no points,
//! so a fact two offline tills both wrote costs nothing.
//!
//! Which fact stands is one fold over a member's entries in (time, id) order, the same on every
//! till and the server: an unlock while the same offer is already open is void; a use takes the
//! open unlock, and a use with none open is void (two tills used it offline: a double use).

use serde::{Deserialize, Serialize};

use super::program::{ConfigError, short_name, stable_id};
use super::timestamp::DAY_MS;
use super::{Entry, EntryId, EntryKind, Program, Timestamp};

/// An offer of the program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offer {
    /// Short stable id, recorded on the facts.
    pub id: String,
    /// What the member gets, e.g. "A free pastry".
    pub name: String,
    /// Purchases needed (0: never unlocked by purchases, only by re-engagement)...
    pub after_purchases: i64,
    /// ...within this many days.
    pub within_days: i64,
    /// How long the offer stays open once unlocked.
    pub valid_days: i64,
}

/// `[[offers]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOffer {
    id: String,
    name: String,
    #[serde(default)]
    after_purchases: i64,
    #[serde(default = "one")]
    within_days: i64,
    valid_days: i64,
}

fn one() -> i64 {
    1
}

/// Validates `[[offers]]`.
pub(super) fn offers(raw: Vec<RawOffer>) -> Result<Vec<Offer>, ConfigError> {
    let mut out: Vec<Offer> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("offers[{i}].{f}");
        let id = stable_id(&at("id"), &r.id, out.iter().map(|x| x.id.as_str()))?;
        let name = short_name(&at("name"), &r.name)?;
        let range = |field: &str, value: i64, max: i64| {
            let min = i64::from(field != "after_purchases");
            if (min..=max).contains(&value) {
                Ok(value)
            } else {
                Err(ConfigError::field(
                    at(field),
                    format!("must be between {min} and {max}, got {value}"),
                ))
            }
        };
        out.push(Offer {
            id,
            name,
            after_purchases: range("after_purchases", r.after_purchases, 1_000)?,
            within_days: range("within_days", r.within_days, 3_660)?,
            valid_days: range("valid_days", r.valid_days, 3_660)?,
        });
    }
    Ok(out)
}

/// An offer a member holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenOffer {
    pub offer: String,
    /// The unlock that stands.
    pub unlocked_by: EntryId,
    pub unlocked_at: Timestamp,
    pub expires_at: Timestamp,
}

/// What the fold found for one member: the offers open at the instant asked, and every
/// unlock with whether it was used (for the manager's measures).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferBook {
    pub open: Vec<OpenOffer>,
    /// (offer id, unlocked at, used) for every unlock that stood.
    pub history: Vec<(String, Timestamp, bool)>,
}

impl OfferBook {
    /// When `offer` was last unlocked (an unlock that stood), if ever.
    pub fn last_unlock(&self, offer: &str) -> Option<Timestamp> {
        self.history
            .iter()
            .filter(|(id, _, _)| id == offer)
            .map(|(_, t, _)| *t)
            .max()
    }
}

/// Folds a member's offer facts as of `at` (entries in any order). An unlock taken back by
/// then (its sale cancelled while the offer was unused) counts as never made.
pub fn book(program: &Program, entries: &[Entry], at: Timestamp) -> OfferBook {
    let taken_back: Vec<EntryId> = entries
        .iter()
        .filter(|e| e.occurred_at <= at)
        .filter_map(|e| e.reverses)
        .collect();
    let mut facts: Vec<&Entry> = entries
        .iter()
        .filter(|e| {
            matches!(e.kind, EntryKind::OfferUnlocked | EntryKind::OfferUsed)
                && e.occurred_at <= at
                && !taken_back.contains(&e.id)
        })
        .collect();
    facts.sort_by_key(|e| (e.occurred_at, e.id));
    let mut book = OfferBook::default();
    let mut open: Vec<(OpenOffer, usize)> = Vec::new();
    for e in facts {
        let offer_id = e.reward_id.clone().unwrap_or_default();
        open.retain(|(o, _)| o.expires_at > e.occurred_at);
        let current = open.iter().position(|(o, _)| o.offer == offer_id);
        match (e.kind, current) {
            (EntryKind::OfferUnlocked, None) => {
                let days = program.offer(&offer_id).map_or(0, |o| o.valid_days);
                book.history.push((offer_id.clone(), e.occurred_at, false));
                open.push((
                    OpenOffer {
                        offer: offer_id,
                        unlocked_by: e.id,
                        unlocked_at: e.occurred_at,
                        expires_at: e.occurred_at.plus_millis(days * DAY_MS),
                    },
                    book.history.len() - 1,
                ));
            }
            (EntryKind::OfferUsed, Some(i)) => {
                let (_, index) = open.remove(i);
                book.history[index].2 = true;
            }
            _ => {}
        }
    }
    book.open = open
        .into_iter()
        .map(|(o, _)| o)
        .filter(|o| o.expires_at > at)
        .collect();
    book
}

/// Purchases (sales not reversed) stamped in `(from, to]`, after `since` when given.
fn purchases(entries: &[Entry], from: Timestamp, to: Timestamp, since: Option<Timestamp>) -> i64 {
    let cancelled = super::returns::cancelled(entries);
    let count = entries
        .iter()
        .filter(|e| {
            e.kind == EntryKind::Earn
                && e.occurred_at > from
                && e.occurred_at <= to
                && since.is_none_or(|s| e.occurred_at > s)
                && !cancelled.contains(&e.id)
        })
        .count();
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// Each offer unlocked by purchases and not open at `at`, with the purchases made towards it:
/// those within its window since its last unlock.
fn runs<'p>(program: &'p Program, entries: &[Entry], at: Timestamp) -> Vec<(&'p Offer, i64)> {
    let book = book(program, entries, at);
    program
        .offers
        .iter()
        .filter(|offer| offer.after_purchases > 0)
        .filter(|offer| !book.open.iter().any(|o| o.offer == offer.id))
        .map(|offer| {
            let from = at.plus_days(-offer.within_days);
            (
                offer,
                purchases(entries, from, at, book.last_unlock(&offer.id)),
            )
        })
        .collect()
}

/// The offers a purchase at `at` unlocks (its entry among `entries`): each offer not open now
/// whose run is complete, counting the purchases within its window since its last unlock.
pub fn unlocked_by_purchase(program: &Program, entries: &[Entry], at: Timestamp) -> Vec<String> {
    runs(program, entries, at)
        .into_iter()
        .filter(|(offer, made)| *made >= offer.after_purchases)
        .map(|(offer, _)| offer.id.clone())
        .collect()
}

/// Could an honest till have unlocked `offer_id` at `at`, knowing some of `view` (the member's
/// entries less what the till could not have known)? It needs the run within the window,
/// counting purchases other tills stamped up to `skew` after `at`; a till may not have seen an
/// earlier unlock, so a run since one is not insisted on (the fold voids a second open unlock).
pub fn unlock_possible(
    program: &Program,
    offer_id: &str,
    view: &[Entry],
    at: Timestamp,
    skew: i64,
) -> bool {
    if program
        .reengagement
        .as_ref()
        .is_some_and(|r| r.offer == offer_id)
    {
        // A re-engagement offer: written when no purchase came for the program's days, which
        // purchases the till had not received could contradict; judged as possible.
        return true;
    }
    program.offer(offer_id).is_some_and(|o| {
        let from = at.plus_days(-o.within_days);
        purchases(view, from, at.plus_millis(skew), None) >= o.after_purchases
    })
}

/// Purchases towards each offer not open now, for the till's preview: (offer, made, needed).
pub fn progress(program: &Program, entries: &[Entry], at: Timestamp) -> Vec<(String, i64, i64)> {
    runs(program, entries, at)
        .into_iter()
        .map(|(offer, made)| (offer.name.clone(), made, offer.after_purchases))
        .collect()
}

/// The program's re-engagement: members with no purchase for `after_days` are given `offer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reengagement {
    pub after_days: i64,
    pub offer: String,
}

/// `[reengagement]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReengagement {
    after_days: i64,
    offer: String,
}

/// Validates `[reengagement]` against the offers already read.
pub(super) fn reengagement(
    raw: Option<RawReengagement>,
    offers: &[Offer],
) -> Result<Option<Reengagement>, ConfigError> {
    let Some(r) = raw else { return Ok(None) };
    if !(1..=3_660).contains(&r.after_days) {
        return Err(ConfigError::field(
            "reengagement.after_days",
            format!("must be between 1 and 3660, got {}", r.after_days),
        ));
    }
    let offer = r.offer.trim().to_owned();
    match offers.iter().find(|o| o.id == offer) {
        None => Err(ConfigError::field(
            "reengagement.offer",
            format!("{offer:?} is not one of the offers"),
        )),
        Some(o) if o.after_purchases > 0 => Err(ConfigError::field(
            "reengagement.offer",
            format!(
                "{offer:?} unlocks after purchases; give re-engagement an offer of its own (after_purchases = 0)"
            ),
        )),
        Some(_) => Ok(Some(Reengagement {
            after_days: r.after_days,
            offer,
        })),
    }
}

/// The re-engagement offer due for a member at `at`: they bought before, not within the
/// program's days, and were not given the offer since their last purchase. A sale cancelled
/// (reversed or returned in full) is no purchase, and an offer taken back was not given.
pub fn lapsed(program: &Program, entries: &[Entry], at: Timestamp) -> Option<String> {
    let r = program.reengagement.as_ref()?;
    let cancelled = super::returns::cancelled(entries);
    let last = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Earn && e.occurred_at <= at)
        .filter(|e| !cancelled.contains(&e.id))
        .map(|e| e.occurred_at)
        .max()?;
    let given_since = welcome_backs(r, entries, &cancelled).any(|e| e.occurred_at >= last);
    (last.plus_days(r.after_days) <= at && !given_since).then(|| r.offer.clone())
}

/// Whether each re-engagement offer given (and not taken back) brought the member back: a
/// purchase, not cancelled since, while it was open. (unlocked at, came back) per offer given,
/// from one member's entries.
pub fn came_back(program: &Program, entries: &[Entry]) -> Vec<(Timestamp, bool)> {
    let Some(r) = program.reengagement.as_ref() else {
        return Vec::new();
    };
    let valid = program.offer(&r.offer).map_or(0, |o| o.valid_days);
    let cancelled = super::returns::cancelled(entries);
    welcome_backs(r, entries, &cancelled)
        .map(|given| {
            let until = given.occurred_at.plus_days(valid);
            let back = entries.iter().any(|e| {
                e.kind == EntryKind::Earn
                    && e.occurred_at >= given.occurred_at
                    && e.occurred_at < until
                    && !cancelled.contains(&e.id)
            });
            (given.occurred_at, back)
        })
        .collect()
}

/// The re-engagement offers given to a member and not taken back.
fn welcome_backs<'e>(
    r: &'e Reengagement,
    entries: &'e [Entry],
    cancelled: &'e std::collections::BTreeSet<EntryId>,
) -> impl Iterator<Item = &'e Entry> {
    entries.iter().filter(move |e| {
        e.kind == EntryKind::OfferUnlocked
            && e.reward_id.as_deref() == Some(r.offer.as_str())
            && !cancelled.contains(&e.id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::summary::tests::entry;

    fn fact(kind: EntryKind, offer: &str, at: i64) -> Entry {
        Entry {
            reward_id: Some(offer.into()),
            ..entry(kind, 0, None, at)
        }
    }

    fn sale(at: i64) -> Entry {
        entry(EntryKind::Earn, 30, Some(300), at)
    }

    #[test]
    fn a_member_away_for_sixty_days_is_given_the_welcome_back_offer_once() {
        let p = Program::demo();
        let d = DAY_MS;
        let mut entries = vec![sale(0)];
        assert_eq!(lapsed(&p, &entries, Timestamp::from_millis(59 * d)), None);
        let at = Timestamp::from_millis(60 * d);
        assert_eq!(lapsed(&p, &entries, at), Some("welcome-back".into()));
        entries.push(fact(EntryKind::OfferUnlocked, "welcome-back", 60 * d));
        assert_eq!(lapsed(&p, &entries, Timestamp::from_millis(90 * d)), None);
        assert_eq!(came_back(&p, &entries), [(at, false)]);
        entries.push(sale(70 * d));
        assert_eq!(came_back(&p, &entries), [(at, true)]);
        assert_eq!(
            lapsed(&p, &entries, Timestamp::from_millis(130 * d)),
            Some("welcome-back".into())
        );
        // Never unlocked by purchases, and not counted as a run.
        assert!(unlocked_by_purchase(&p, &entries, Timestamp::from_millis(70 * d)).is_empty());
    }

    #[test]
    fn a_welcome_back_taken_back_was_not_given_and_a_cancelled_sale_is_no_return() {
        let p = Program::demo();
        let d = DAY_MS;
        let first = sale(0);
        let given = fact(EntryKind::OfferUnlocked, "welcome-back", 60 * d);
        let came = sale(65 * d);
        let undo = |e: &Entry, days: i64| Entry {
            reverses: Some(e.id),
            ..entry(
                EntryKind::Reverse,
                -e.points,
                e.amount_minor.map(|a| -a),
                days * d,
            )
        };
        let mut entries = vec![first.clone(), given.clone(), came.clone()];
        let given_at = Timestamp::from_millis(60 * d);
        assert_eq!(came_back(&p, &entries), [(given_at, true)]);
        // The sale that brought them back is reversed: they did not come back.
        entries.push(undo(&came, 66 * d));
        assert_eq!(came_back(&p, &entries), [(given_at, false)]);
        // Still away 60 days after their last purchase that stands, but the offer stands too.
        let later = Timestamp::from_millis(130 * d);
        assert_eq!(lapsed(&p, &entries, later), None);
        // The offer taken back: never given, so it is due again and counts nowhere.
        entries.push(undo(&given, 67 * d));
        assert!(came_back(&p, &entries).is_empty());
        assert_eq!(lapsed(&p, &entries, later), Some("welcome-back".into()));
        // Their only purchase cancelled too: never a customer, nothing to win back.
        entries.push(undo(&first, 68 * d));
        assert_eq!(lapsed(&p, &entries, later), None);
    }

    #[test]
    fn five_purchases_in_thirty_days_unlock_a_pastry_for_fourteen() {
        let p = Program::demo();
        let d = DAY_MS;
        let mut entries: Vec<Entry> = (0..4).map(|i| sale(i * d)).collect();
        assert!(unlocked_by_purchase(&p, &entries, Timestamp::from_millis(3 * d)).is_empty());
        entries.push(sale(10 * d));
        let at = Timestamp::from_millis(10 * d);
        assert_eq!(unlocked_by_purchase(&p, &entries, at), ["five-visits"]);
        entries.push(fact(EntryKind::OfferUnlocked, "five-visits", 10 * d));
        // Open for 14 days; a second unlock (another till, offline) is void.
        entries.push(fact(EntryKind::OfferUnlocked, "five-visits", 11 * d));
        let open = book(&p, &entries, Timestamp::from_millis(12 * d)).open;
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].expires_at, Timestamp::from_millis(24 * d));
        assert!(
            book(&p, &entries, Timestamp::from_millis(24 * d))
                .open
                .is_empty()
        );
        // Used once: closed, recorded as used; a second use is void.
        entries.push(fact(EntryKind::OfferUsed, "five-visits", 13 * d));
        entries.push(fact(EntryKind::OfferUsed, "five-visits", 13 * d + 1));
        let b = book(&p, &entries, Timestamp::from_millis(14 * d));
        assert!(b.open.is_empty());
        assert_eq!(
            b.history,
            [("five-visits".into(), Timestamp::from_millis(10 * d), true)]
        );
        // The next run counts purchases after the last unlock.
        assert_eq!(
            progress(&p, &entries, Timestamp::from_millis(14 * d)),
            [("A free pastry".to_owned(), 0, 5)]
        );
    }
}
