//! One member's record changed apart in two places (two tills replacing the card while offline,
//! a till put back to an older copy of its file) becomes one again: the same merge on every till
//! and on the server, whatever order the copies meet in.
//!
//! - Cards: every card either copy ever gave the member stays theirs. The card in use is the
//!   newest issued (by the time of the replacement that issued it, then the higher number) of
//!   the copies' cards in use that neither copy retired; every other card is retired, replaced
//!   by it.
//! - Contact details come from the copy with the higher version; an erasure always stands.
//! - The version is the higher one when a copy at that version already says everything, else
//!   one above it: a record pushed again after it was merged changes nothing, and what the
//!   merge adds is a new version.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use super::member::{Member, MemberRecord, RetiredCard};
use super::{CardNumber, MemberId, Timestamp};

/// Why two records cannot be copies of one member's (no honest till writes either pair).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MergeError {
    #[error("records of two members ({0} and {1})")]
    TwoMembers(MemberId, MemberId),
    #[error("the enrolment time changed from {0} to {1}; no till changes it")]
    Enrolment(Timestamp, Timestamp),
    #[error(
        "card {0} is not linked to the member's other cards: a till retires the card in use for the new one"
    )]
    Unlinked(CardNumber),
    #[error("the referrer changed from {0} to {1}; no till changes it")]
    Referrer(MemberId, MemberId),
    #[error("each copy's card in use is retired in the other")]
    NoCardInUse,
}

impl MemberRecord {
    /// This record with its retired cards in one order (by when, then by card), so that equal
    /// records compare and serialise equal.
    pub fn canonical(&self) -> MemberRecord {
        let mut rec = self.clone();
        rec.retired_cards
            .sort_by(|a, b| (a.retired_at, &a.card).cmp(&(b.retired_at, &b.card)));
        rec
    }

    /// Every card this record names: in use, retired, or given in replacement.
    pub fn cards(&self) -> BTreeSet<&CardNumber> {
        let mut cards: BTreeSet<&CardNumber> = BTreeSet::from([&self.member.card]);
        for r in &self.retired_cards {
            cards.insert(&r.card);
            cards.insert(&r.replaced_by);
        }
        cards
    }

    /// The member given `card` at `at` in place of the card in use, as a till replaces a lost
    /// card: every retired card now leads to the new one.
    pub fn with_new_card(&self, card: CardNumber, at: Timestamp) -> MemberRecord {
        let mut rec = self.clone();
        for r in &mut rec.retired_cards {
            r.replaced_by = card.clone();
        }
        rec.retired_cards.push(RetiredCard {
            card: std::mem::replace(&mut rec.member.card, card.clone()),
            retired_at: at,
            replaced_by: card,
        });
        rec.version = at.millis().max(self.version + 1);
        rec.canonical()
    }
}

/// When `rec`'s card in use was issued: the latest replacement that gave it, or enrolment.
fn issued(rec: &MemberRecord) -> Timestamp {
    rec.retired_cards
        .iter()
        .filter(|r| r.replaced_by == rec.member.card)
        .map(|r| r.retired_at)
        .max()
        .unwrap_or(rec.member.created_at)
}

/// A card of `a` that no replacement in `a` links to any card `b` names: a till gives a new
/// card only in place of one the member held, so two copies of a member always share a card.
fn unlinked<'a>(a: &'a MemberRecord, b: &MemberRecord) -> Option<&'a CardNumber> {
    let theirs = b.cards();
    let mut reached: BTreeSet<&CardNumber> = a.cards().intersection(&theirs).copied().collect();
    loop {
        let before = reached.len();
        for r in &a.retired_cards {
            if reached.contains(&r.card) || reached.contains(&r.replaced_by) {
                reached.insert(&r.card);
                reached.insert(&r.replaced_by);
            }
        }
        if reached.len() == before {
            break;
        }
    }
    a.cards().into_iter().find(|c| !reached.contains(c))
}

/// Whose contact details the merge keeps: an erased copy's, else the higher version's; at equal
/// versions the fewer details (a phone or email the server gave another member is dropped
/// without a new version), then the lesser.
fn contacts<'r>(a: &'r MemberRecord, b: &'r MemberRecord) -> &'r MemberRecord {
    let key = |r: &'r MemberRecord| {
        let m = &r.member;
        (
            r.erased_at.is_none(),
            std::cmp::Reverse(r.version),
            (
                &m.phone,
                &m.email,
                &m.birthday,
                &m.name,
                m.marketing_consent,
            ),
        )
    };
    if key(a) <= key(b) { a } else { b }
}

/// The one record two copies of a member's record become; the same whichever is `a`.
pub fn merge(a: &MemberRecord, b: &MemberRecord) -> Result<MemberRecord, MergeError> {
    if a.member.id != b.member.id {
        return Err(MergeError::TwoMembers(a.member.id, b.member.id));
    }
    if a.member.created_at != b.member.created_at {
        return Err(MergeError::Enrolment(
            a.member.created_at,
            b.member.created_at,
        ));
    }
    if let (Some(x), Some(y)) = (a.referred_by, b.referred_by)
        && x != y
    {
        return Err(MergeError::Referrer(x, y));
    }
    if let Some(card) = unlinked(b, a).or_else(|| unlinked(a, b)) {
        return Err(MergeError::Unlinked(card.clone()));
    }
    let (a, b) = (a.canonical(), b.canonical());
    if a == b {
        return Ok(a);
    }
    let mut retired: BTreeMap<&CardNumber, Timestamp> = BTreeMap::new();
    for r in a.retired_cards.iter().chain(&b.retired_cards) {
        let at = retired.entry(&r.card).or_insert(r.retired_at);
        *at = (*at).max(r.retired_at);
    }
    let (at, card) = [&a, &b]
        .into_iter()
        .filter(|r| !retired.contains_key(&r.member.card))
        .map(|r| (issued(r), r.member.card.clone()))
        .max()
        .ok_or(MergeError::NoCardInUse)?;
    let retired_cards = a
        .cards()
        .into_iter()
        .chain(b.cards())
        .filter(|c| **c != card)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|c| RetiredCard {
            card: c.clone(),
            retired_at: retired.get(c).copied().unwrap_or(at),
            replaced_by: card.clone(),
        })
        .collect();
    let source = contacts(&a, &b);
    let top = a.version.max(b.version);
    let mut merged = MemberRecord {
        member: Member {
            card,
            ..source.member.clone()
        },
        version: top,
        retired_cards,
        erased_at: [a.erased_at, b.erased_at].into_iter().flatten().min(),
        referred_by: a.referred_by.or(b.referred_by),
    }
    .canonical();
    if ![&a, &b]
        .into_iter()
        .any(|r| r.version == top && *r == merged)
    {
        merged.version = top + 1;
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::member::ERASED_NAME;

    const T0: i64 = 1_795_435_200_000;

    fn card(n: u64) -> CardNumber {
        CardNumber::from_payload(n)
    }

    fn enrolled() -> MemberRecord {
        MemberRecord {
            member: Member {
                id: MemberId(uuid::Uuid::from_u128(7)),
                card: card(1),
                name: "Ada".into(),
                phone: Some("+447400123456".into()),
                email: None,
                birthday: None,
                marketing_consent: false,
                created_at: Timestamp::from_millis(T0),
            },
            version: T0,
            retired_cards: vec![],
            erased_at: None,
            referred_by: None,
        }
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(T0 + ms)
    }

    /// Every card `rec` names other than the one in use is retired, replaced by it.
    fn every_card_leads_to_the_one_in_use(rec: &MemberRecord) -> bool {
        let retired: BTreeSet<&CardNumber> = rec.retired_cards.iter().map(|r| &r.card).collect();
        rec.cards()
            .into_iter()
            .all(|c| *c == rec.member.card || retired.contains(c))
            && rec
                .retired_cards
                .iter()
                .all(|r| r.replaced_by == rec.member.card)
            && rec.check_cards().is_ok()
    }

    #[test]
    fn a_copy_merged_with_itself_or_an_older_copy_is_unchanged() {
        let old = enrolled();
        let new = old.with_new_card(card(2), at(10));
        assert_eq!(merge(&new, &new), Ok(new.clone()));
        assert_eq!(merge(&new, &old), Ok(new.clone()));
        assert_eq!(merge(&old, &new), Ok(new.clone()));
        let newer = new.with_new_card(card(3), at(20));
        assert_eq!(merge(&old, &newer), Ok(newer.clone()));
        assert!(every_card_leads_to_the_one_in_use(&newer));
    }

    #[test]
    fn two_replacements_made_apart_keep_the_newest_card_and_retire_the_other() {
        let base = enrolled();
        let here = base.with_new_card(card(2), at(10));
        let there = base.with_new_card(card(3), at(20));
        let merged = merge(&here, &there).expect("merge");
        assert_eq!(merge(&there, &here), Ok(merged.clone()), "either way round");
        assert_eq!(merged.member.card, card(3), "the newer replacement");
        assert_eq!(
            merged.retired_cards,
            vec![
                RetiredCard {
                    card: card(1),
                    retired_at: at(20),
                    replaced_by: card(3)
                },
                RetiredCard {
                    card: card(2),
                    retired_at: at(20),
                    replaced_by: card(3)
                },
            ],
            "the first card retired by the later replacement, the losing card when it lost"
        );
        assert_eq!(merged.version, there.version + 1, "newer than both copies");
        assert_eq!(merge(&merged, &here), Ok(merged.clone()), "absorbs a copy");
        assert_eq!(merge(&there, &merged), Ok(merged.clone()));
    }

    #[test]
    fn replacements_at_the_same_instant_keep_the_higher_card() {
        let base = enrolled();
        let merged = merge(
            &base.with_new_card(card(9), at(10)),
            &base.with_new_card(card(4), at(10)),
        )
        .expect("merge");
        assert_eq!(merged.member.card, card(9));
        assert!(every_card_leads_to_the_one_in_use(&merged));
    }

    #[test]
    fn contact_details_come_from_the_higher_version_and_an_erasure_stands() {
        let base = enrolled();
        let replaced = base.with_new_card(card(2), at(10));
        let mut renamed = base.clone();
        renamed.member.name = "Ada King".into();
        renamed.version = T0 + 20;
        let merged = merge(&replaced, &renamed).expect("merge");
        assert_eq!(
            (&merged.member.name, &merged.member.card),
            (&"Ada King".to_owned(), &card(2))
        );
        assert_eq!(merged.version, T0 + 21);

        let mut erased = base.clone();
        erased.member.name = ERASED_NAME.into();
        erased.member.phone = None;
        erased.erased_at = Some(at(5));
        erased.version = T0 + 5;
        let merged = merge(&renamed, &erased).expect("merge");
        assert_eq!(merged.member.name, ERASED_NAME, "lower version, but erased");
        assert_eq!(merged.member.phone, None);
        assert_eq!(merged.erased_at, Some(at(5)));

        let mut stripped = renamed.clone();
        stripped.member.phone = None;
        assert_eq!(
            merge(&renamed, &stripped),
            Ok(stripped.clone()),
            "a phone the server dropped stays dropped"
        );
    }

    #[test]
    fn records_no_honest_till_writes_do_not_merge() {
        let base = enrolled();
        let mut other = base.clone();
        other.member.id = MemberId(uuid::Uuid::from_u128(8));
        assert!(matches!(
            merge(&base, &other),
            Err(MergeError::TwoMembers(..))
        ));
        let mut earlier = base.clone();
        earlier.member.created_at = at(-1);
        assert!(matches!(
            merge(&base, &earlier),
            Err(MergeError::Enrolment(..))
        ));
        let mut swapped = base.clone();
        swapped.member.card = card(5);
        swapped.version += 1;
        assert_eq!(
            merge(&base, &swapped),
            Err(MergeError::Unlinked(card(5))),
            "a card not given in place of one the member held"
        );
        let mut stray = base.with_new_card(card(2), at(10));
        stray.retired_cards.push(RetiredCard {
            card: card(6),
            retired_at: at(10),
            replaced_by: card(7),
        });
        assert!(matches!(merge(&base, &stray), Err(MergeError::Unlinked(_))));
    }

    /// What a till does in the model: replace the card, change a contact detail, or sync (push
    /// its copy to the server's, then take the server's back).
    #[derive(Debug, Clone)]
    enum Step {
        Replace { till: usize, after: i64 },
        Rename { till: usize, after: i64 },
        Sync { till: usize },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..3usize, 0..50i64).prop_map(|(till, after)| Step::Replace { till, after }),
            (0..3usize, 0..50i64).prop_map(|(till, after)| Step::Rename { till, after }),
            (0..3usize).prop_map(|till| Step::Sync { till }),
        ]
    }

    proptest! {
        /// Three tills change one member apart and sync in any order: the copies merge either
        /// way round, absorb what they were merged from, and once everyone has synced twice
        /// every till holds the server's record, where every card ever given leads to the one
        /// in use.
        #[test]
        fn tills_changing_a_member_apart_converge(steps in proptest::collection::vec(step(), 1..40)) {
            let mut server = enrolled();
            let mut tills = vec![server.clone(); 3];
            let mut given = vec![server.member.card.clone()];
            let mut clock = 0;
            for (i, s) in steps.iter().enumerate() {
                match *s {
                    Step::Replace { till, after } => {
                        clock += after;
                        let new = card(100 + i as u64);
                        given.push(new.clone());
                        tills[till] = tills[till].with_new_card(new, at(clock));
                    }
                    Step::Rename { till, after } => {
                        clock += after;
                        let t = &mut tills[till];
                        t.member.name = format!("Ada {i}");
                        t.version = at(clock).millis().max(t.version + 1);
                    }
                    Step::Sync { till } => {
                        let copy = &tills[till];
                        let merged = merge(&server, copy).expect("push");
                        prop_assert_eq!(merge(copy, &server), Ok(merged.clone()));
                        prop_assert_eq!(merge(&merged, copy), Ok(merged.clone()));
                        prop_assert_eq!(merge(&merged, &server), Ok(merged.clone()));
                        prop_assert!(merged.version >= server.version.max(copy.version));
                        server = merged;
                        tills[till] = merge(&tills[till], &server).expect("pull");
                    }
                }
            }
            for _ in 0..2 {
                for till in &mut tills {
                    server = merge(&server, till).expect("push");
                    *till = merge(till, &server).expect("pull");
                }
            }
            for till in &tills {
                prop_assert_eq!(till, &server);
            }
            prop_assert!(every_card_leads_to_the_one_in_use(&server));
            let held = server.cards();
            prop_assert!(given.iter().all(|c| held.contains(c)), "no card lost");
        }
    }
}
