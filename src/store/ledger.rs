//! Writing to the ledger: this till's own entries, and entries made elsewhere.

use std::collections::{BTreeMap, HashSet};

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use uuid::Uuid;

use super::rows::{
    entry_by_id, insert_entry, insert_numbered, member_entries, next_seq, upsert_state,
};
use super::{Result, Store, StoreError};
use crate::domain::Refusal;
use crate::domain::badges;
use crate::domain::offers;
use crate::domain::partners::{self, PartnerImport, PartnerLine, PartnerLineError};
use crate::domain::quote::{Quote, Sale, quote};
use crate::domain::referrals;
use crate::domain::returns::{self, Returned};
use crate::domain::rules::{self, Draft};
use crate::domain::stamps;
use crate::domain::summary::{self, summarise};
use crate::domain::{Entry, EntryId, MemberId, MemberSummary, Program, TerminalId, Timestamp};

/// A member's offers: those open now, and (name, purchases made, purchases needed) towards the
/// others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberOffers {
    pub open: Vec<offers::OpenOffer>,
    pub progress: Vec<(String, i64, i64)>,
}

impl MemberOffers {
    /// `entries`' offers (one member's) at `at`.
    fn of(program: &Program, entries: &[Entry], at: Timestamp) -> Self {
        Self {
            open: offers::book(program, entries, at).open,
            progress: offers::progress(program, entries, at),
        }
    }
}

/// What the member panel shows beside the member's record, as of one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStanding {
    /// Balance, tier and the rest of the fold.
    pub state: MemberSummary,
    /// Points still in their sale's return window, not yet spendable.
    pub pending: i64,
    /// Stamps held on each stamp card.
    pub stamps: BTreeMap<String, i64>,
    pub offers: MemberOffers,
    /// Badges held, in the order they were awarded.
    pub badges: Vec<String>,
    /// When the paid tier lapses, if in force.
    pub paid_until: Option<Timestamp>,
    pub referrals: MemberReferrals,
}

/// A member's referrals, for the member panel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberReferrals {
    /// The name of the member who referred them, if any (and known here).
    pub referred_by: Option<String>,
    /// Friends they referred who were rewarded this calendar year.
    pub rewarded_this_year: i64,
}

/// What happened to one entry offered to [`Store::insert_entries`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// New: it was appended.
    Inserted,
    /// An identical entry was already there; nothing changed.
    AlreadyPresent,
}

/// A fresh UUIDv7 for an entry or member made at `at`.
pub(crate) fn new_id(at: Timestamp) -> Uuid {
    crate::domain::entry::uuid_v7(at, rand::random())
}

/// Everything needed to append this till's own entries inside a transaction.
pub(crate) struct Appender<'a> {
    pub conn: &'a Connection,
    pub program: &'a Program,
    pub terminal: &'a TerminalId,
}

impl Appender<'_> {
    /// Appends `draft` for `member` (whose existing entries are `entries`) with the next terminal
    /// sequence number, then refreshes the member's cached state, which it returns.
    pub fn append(
        &self,
        member: MemberId,
        entries: &mut Vec<Entry>,
        draft: Draft,
        actor: &str,
        at: Timestamp,
    ) -> Result<(Entry, MemberSummary)> {
        let previous = if cfg!(debug_assertions) {
            Some(self.last_seq_and_last_stored()?)
        } else {
            None
        };
        let seq: i64 = self.conn.query_row(
            "UPDATE terminal SET last_seq = last_seq + 1 RETURNING last_seq",
            [],
            |r| r.get(0),
        )?;
        if let Some((last_seq, last_stored)) = previous {
            debug_assert_eq!(
                last_seq, last_stored,
                "terminal.last_seq must be this till's highest stored terminal_seq"
            );
            debug_assert_eq!(seq, last_seq + 1, "this till's sequence must be gapless");
        }
        let entry = draft.into_entry(
            EntryId(new_id(at)),
            self.terminal.clone(),
            seq,
            member,
            at,
            actor,
        );
        entry.check_shape()?;
        if let Some(target) = entry.reverses {
            debug_assert!(
                entries
                    .iter()
                    .any(|original| original.id == target && exactly_negates(&entry, original)),
                "reversal {} must exactly negate entry {target} of the same member",
                entry.id
            );
        }
        insert_entry(self.conn, &entry)?;
        entries.push(entry.clone());
        let state = refresh_state(self.conn, self.program, member, entries, at)?;
        Ok((entry, state))
    }

    /// `terminal.last_seq` and the highest `terminal_seq` among this till's stored entries, which
    /// the gapless sequence keeps equal.
    fn last_seq_and_last_stored(&self) -> Result<(i64, i64)> {
        Ok(self.conn.query_row(
            "SELECT last_seq, (SELECT COALESCE(MAX(terminal_seq), 0) FROM ledger
                               WHERE ledger.terminal_id = terminal.terminal_id)
             FROM terminal",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }
}

/// True when `reversal` is the exact negation of `original`: the same member, the points and
/// the sale amount negated.
fn exactly_negates(reversal: &Entry, original: &Entry) -> bool {
    reversal.member_id == original.member_id
        && original.points.checked_neg() == Some(reversal.points)
        && original.amount_minor.map(i64::checked_neg) == reversal.amount_minor.map(Some)
}

/// Recomputes and stores a member's cached state from all of their entries. The state is taken
/// as of the later of `at` and the previously cached instant, so it never moves back in time.
pub(crate) fn refresh_state(
    conn: &Connection,
    program: &Program,
    member: MemberId,
    entries: &[Entry],
    at: Timestamp,
) -> Result<MemberSummary> {
    let previous: Option<i64> = conn
        .prepare_cached("SELECT as_of FROM member_state WHERE member_id = ?1")?
        .query_row(params![member.0], |r| r.get(0))
        .optional()?;
    let as_of = previous.map_or(at, |p| at.max(Timestamp::from_millis(p)));
    let summary = summarise(program, entries, as_of);
    upsert_state(conn, member, &summary)?;
    Ok(summary)
}

/// The referral bonuses `sale` brings (see [`referrals::due`]); none while the referrer's record
/// has not reached this till (a later purchase elsewhere brings them).
fn referral_bonuses(
    conn: &Connection,
    program: &Program,
    entries: &[Entry],
    sale: &Entry,
) -> Result<Vec<(MemberId, Draft)>> {
    if program.referral.is_none() {
        return Ok(Vec::new());
    }
    let referrer: Option<Uuid> = conn
        .prepare_cached("SELECT referred_by FROM members WHERE id = ?1")?
        .query_row(params![sale.member_id.0], |r| r.get(0))?;
    let Some(referrer) = referrer.map(MemberId) else {
        return Ok(Vec::new());
    };
    match member_exists(conn, referrer) {
        Ok(()) => {}
        Err(StoreError::UnknownMember(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    let theirs = member_entries(conn, referrer)?;
    Ok(referrals::due(program, sale, entries, (referrer, &theirs)))
}

/// Reversals of the facts written with `sale` (offers unlocked, badges, referral bonuses) that
/// are still unused now that it is cancelled (reversed, or returned in full): an offer while it
/// is open, points while the member still holds them.
fn take_back_facts(
    conn: &Connection,
    program: &Program,
    sale: &Entry,
    at: Timestamp,
) -> Result<Vec<(MemberId, Draft)>> {
    let most = i64::try_from(program.offers.len() + program.badges.len() + 2).unwrap_or(i64::MAX);
    let facts: Vec<Entry> = conn
        .prepare_cached(&format!(
            "SELECT {} FROM ledger
             WHERE terminal_id = ?1 AND terminal_seq > ?2 AND terminal_seq <= ?2 + ?3
               AND occurred_at = ?4
               AND kind IN ('offer_unlocked', 'badge_awarded', 'referral_bonus')
             ORDER BY terminal_seq",
            super::rows::ENTRY_COLUMNS
        ))?
        .query_map(
            params![
                sale.terminal_id.0,
                sale.terminal_seq,
                most,
                sale.occurred_at.millis()
            ],
            super::rows::entry_from_row,
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut drafts = Vec::new();
    // Each member's entries, and the balance left after what is taken back so far.
    let mut members: BTreeMap<MemberId, (Vec<Entry>, i64)> = BTreeMap::new();
    for fact in facts {
        let of_sale =
            fact.member_id == sale.member_id || referrals::referred(&fact) == Some(sale.member_id);
        if !of_sale {
            continue;
        }
        let (entries, balance) = match members.entry(fact.member_id) {
            std::collections::btree_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => {
                let entries = member_entries(conn, fact.member_id)?;
                let balance = summarise(program, &entries, at).balance;
                slot.insert((entries, balance))
            }
        };
        if entries.iter().any(|e| e.reverses == Some(fact.id)) {
            continue;
        }
        let unused = if fact.kind == crate::domain::EntryKind::OfferUnlocked {
            offers::book(program, entries, at)
                .open
                .iter()
                .any(|o| o.unlocked_by == fact.id)
        } else if *balance >= fact.points {
            *balance -= fact.points;
            true
        } else {
            false
        };
        if unused {
            drafts.push((fact.member_id, rules::reverse(&fact, false)?));
        }
    }
    Ok(drafts)
}

fn member_exists(conn: &Connection, member: MemberId) -> Result<()> {
    let found: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM members WHERE id = ?1")?
        .query_row(params![member.0], |r| r.get(0))
        .optional()?;
    found.map(|_| ()).ok_or(StoreError::UnknownMember(member))
}

impl Store {
    /// Runs `rule` against the member's state as of `at` and appends the entry it drafts, all in
    /// one immediate transaction. Nothing is written when the rule refuses.
    fn write<F>(&mut self, member: MemberId, actor: &str, at: Timestamp, rule: F) -> Result<Entry>
    where
        F: FnOnce(&Program, &[Entry], &MemberSummary) -> Result<Draft>,
    {
        self.write_then(member, actor, at, rule, |_, _, _, _| Ok(Vec::new()))
            .map(|(entry, _)| entry)
    }

    /// [`write`](Self::write), then in the same transaction the entries `then` drafts, for this
    /// member or another, from the member's entries with the first one (given too) appended: the
    /// facts a sale writes with it.
    fn write_then<F, G>(
        &mut self,
        member: MemberId,
        actor: &str,
        at: Timestamp,
        rule: F,
        then: G,
    ) -> Result<(Entry, Vec<Entry>)>
    where
        F: FnOnce(&Program, &[Entry], &MemberSummary) -> Result<Draft>,
        G: FnOnce(&Program, &Connection, &[Entry], &Entry) -> Result<Vec<(MemberId, Draft)>>,
    {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        member_exists(&tx, member)?;
        let mut entries = member_entries(&tx, member)?;
        let now = summarise(&self.program, &entries, at);
        let draft = rule(&self.program, &entries, &now)?;
        let appender = Appender {
            conn: &tx,
            program: &self.program,
            terminal: &self.terminal,
        };
        let (entry, _) = appender.append(member, &mut entries, draft, actor, at)?;
        let mut others: BTreeMap<MemberId, Vec<Entry>> = BTreeMap::new();
        let mut written = Vec::new();
        for (to, follow_up) in then(&self.program, &tx, &entries, &entry)? {
            let theirs = if to == member {
                &mut entries
            } else {
                match others.entry(to) {
                    std::collections::btree_map::Entry::Occupied(known) => known.into_mut(),
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(member_entries(&tx, to)?)
                    }
                }
            };
            written.push(appender.append(to, theirs, follow_up, actor, at)?.0);
        }
        tx.commit()?;
        Ok((entry, written))
    }

    /// Records a sale of a typed amount: points at the member's current tier multiplier.
    pub fn earn(
        &mut self,
        member: MemberId,
        amount_minor: i64,
        actor: &str,
        at: Timestamp,
    ) -> Result<Entry> {
        self.earn_sale(member, Sale::Amount(amount_minor), actor, at)
    }

    /// Records a sale, a typed amount or a basket's lines, with the points the program gives
    /// it for the member's current tier at `at` (categories, promotions), and in the same
    /// transaction the offers and badges its purchase unlocks and the referral bonuses of a
    /// referred member's first qualifying purchase.
    pub fn earn_sale(
        &mut self,
        member: MemberId,
        sale: Sale<'_>,
        actor: &str,
        at: Timestamp,
    ) -> Result<Entry> {
        self.record_sale(member, sale, actor, at)
            .map(|(entry, _)| entry)
    }

    /// [`earn_sale`](Self::earn_sale), with the facts written with it (offers unlocked, badges
    /// awarded, referral bonuses), to tell the cashier.
    pub fn record_sale(
        &mut self,
        member: MemberId,
        sale: Sale<'_>,
        actor: &str,
        at: Timestamp,
    ) -> Result<(Entry, Vec<Entry>)> {
        self.write_then(
            member,
            actor,
            at,
            |program, _, now| Ok(rules::earn(program, now.tier, sale, at)?),
            |program, conn, entries, sale| {
                let unlocks = offers::unlocked_by_purchase(program, entries, at)
                    .into_iter()
                    .map(|offer| rules::unlock_offer(&offer));
                let awards = badges::due(program, entries, at)
                    .into_iter()
                    .map(|(badge, points)| rules::award_badge(&badge, points));
                let mut drafts: Vec<(MemberId, Draft)> =
                    unlocks.chain(awards).map(|draft| (member, draft)).collect();
                drafts.extend(referral_bonuses(conn, program, entries, sale)?);
                Ok(drafts)
            },
        )
    }

    /// What the facts a sale wrote mean, one phrase each, for the cashier: "Regular badge
    /// +100", "A free pastry unlocked", "referral bonus +100", "Ada Lovelace +200 for the
    /// referral".
    pub fn facts_in_words(&self, facts: &[Entry]) -> Result<Vec<String>> {
        let p = &self.program;
        facts
            .iter()
            .map(|f| {
                let id = f.reward_id.clone().unwrap_or_default();
                Ok(match f.kind {
                    crate::domain::EntryKind::OfferUnlocked => {
                        let name = p.offer(&id).map_or(id, |o| o.name.clone());
                        format!("{name} unlocked")
                    }
                    crate::domain::EntryKind::BadgeAwarded => {
                        let name = p.badge(&id).map_or(id, |b| b.name.clone());
                        // A badge that brings no points ("Gold member") is named alone.
                        match f.points {
                            0 => format!("{name} badge"),
                            points => format!("{name} badge {points:+}"),
                        }
                    }
                    crate::domain::EntryKind::ReferralBonus if referrals::is_own(f) => {
                        format!("referral bonus {:+}", f.points)
                    }
                    crate::domain::EntryKind::ReferralBonus => {
                        let name = self.member(f.member_id)?.member.name;
                        format!("{name} {:+} for the referral", f.points)
                    }
                    other => format!("{} {:+}", other.label(), f.points),
                })
            })
            .collect()
    }

    /// Reverses this till's once-only entries that do not stand: another till awarded the same
    /// badge, recorded the same partner line, or gave the same referral bonus (or one over the
    /// referrer's cap) first while they were apart (seen now that its entries are here).
    /// Returns how many.
    pub fn void_duplicate_awards(&mut self, at: Timestamp) -> Result<usize> {
        let cap = self.program.referral.as_ref().map_or(0, |r| r.yearly_cap);
        let members: Vec<uuid::Uuid> = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT member_id FROM ledger WHERE kind = 'badge_awarded'
                 GROUP BY member_id, reward_id HAVING COUNT(*) > 1
                 UNION
                 SELECT DISTINCT member_id FROM ledger WHERE kind = 'partner_earn'
                 GROUP BY member_id, reward_id, note HAVING COUNT(*) > 1
                 UNION
                 SELECT member_id FROM ledger WHERE kind = 'referral_bonus'
                 GROUP BY member_id
                 HAVING COUNT(*) > COUNT(DISTINCT reward_id) OR COUNT(*) > ?1",
            )?
            .query_map(params![cap], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut voided = 0;
        for member in members {
            let entries = member_entries(&self.conn, MemberId(member))?;
            let ours: Vec<EntryId> = badges::duplicates(&entries)
                .into_iter()
                .chain(partners::duplicates(&entries))
                .chain(referrals::duplicates(&self.program, &entries))
                .filter(|e| e.terminal_id == self.terminal && e.points != 0)
                .map(|e| e.id)
                .collect();
            for id in ours {
                self.reverse(id, "tillpass", at)?;
                voided += 1;
            }
        }
        Ok(voided)
    }

    /// Gives `member` the program's re-engagement offer if they stopped buying for its days and
    /// were not given it since their last purchase; the fact written, if any.
    pub fn reengage_member(&mut self, member: MemberId, at: Timestamp) -> Result<Option<Entry>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        member_exists(&tx, member)?;
        let mut entries = member_entries(&tx, member)?;
        let Some(offer) = offers::lapsed(&self.program, &entries, at) else {
            return Ok(None);
        };
        let appender = Appender {
            conn: &tx,
            program: &self.program,
            terminal: &self.terminal,
        };
        let (entry, _) = appender.append(
            member,
            &mut entries,
            rules::unlock_offer(&offer),
            "tillpass",
            at,
        )?;
        tx.commit()?;
        Ok(Some(entry))
    }

    /// Gives every member who stopped buying the re-engagement offer (a daily job); how many.
    pub fn reengage(&mut self, at: Timestamp) -> Result<usize> {
        let Some(r) = self.program.reengagement.clone() else {
            return Ok(0);
        };
        let cutoff = at.plus_days(-r.after_days);
        let members: Vec<uuid::Uuid> = self
            .conn
            .prepare_cached(
                "SELECT member_id FROM ledger WHERE kind = 'earn'
                 GROUP BY member_id HAVING MAX(occurred_at) <= ?1",
            )?
            .query_map(params![cutoff.millis()], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut given = 0;
        for member in members {
            given += usize::from(self.reengage_member(MemberId(member), at)?.is_some());
        }
        Ok(given)
    }

    /// Re-engagement offers given and whether each brought the member back: (given, came back).
    pub fn reengagement_results(&self) -> Result<(usize, usize)> {
        let Some(r) = self.program.reengagement.clone() else {
            return Ok((0, 0));
        };
        let members: Vec<uuid::Uuid> = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT member_id FROM ledger WHERE kind = 'offer_unlocked' AND reward_id = ?1",
            )?
            .query_map(params![r.offer], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let (mut given, mut back) = (0, 0);
        for member in members {
            for (_, came) in offers::came_back(
                &self.program,
                &member_entries(&self.conn, MemberId(member))?,
            ) {
                given += 1;
                back += usize::from(came);
            }
        }
        Ok((given, back))
    }

    /// Records a partner file's points, all or nothing: every line must be good (a known card,
    /// a partner line not recorded before, nor twice in the file), or nothing is written and
    /// each refused line comes back with its reason. With `dry_run`, only checks.
    pub fn import_partner_points(
        &mut self,
        lines: &[Result<PartnerLine, PartnerLineError>],
        actor: &str,
        at: Timestamp,
        dry_run: bool,
    ) -> Result<PartnerImport> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (good, report) = partners::sort_lines(lines, |card| -> Result<_> {
            let member: Option<uuid::Uuid> = tx
                .prepare_cached("SELECT id FROM members WHERE card = ?1")?
                .query_row(params![card.as_str()], |r| r.get(0))
                .optional()?;
            match member.map(MemberId) {
                Some(id) => Ok(Some((id, member_entries(&tx, id)?))),
                None => Ok(None),
            }
        })?;
        if dry_run || !report.refused.is_empty() {
            return Ok(report);
        }
        let appender = Appender {
            conn: &tx,
            program: &self.program,
            terminal: &self.terminal,
        };
        for (member, line) in good {
            let mut entries = member_entries(&tx, member)?;
            let draft = rules::partner_earn(&line.partner, line.points, &line.reference);
            appender.append(member, &mut entries, draft, actor, at)?;
        }
        tx.commit()?;
        Ok(PartnerImport {
            written: true,
            ..report
        })
    }

    /// `member` buys the program's paid tier (the fee, earning no points).
    pub fn buy_membership(
        &mut self,
        member: MemberId,
        actor: &str,
        at: Timestamp,
    ) -> Result<Entry> {
        self.write(member, actor, at, |program, _, _| {
            Ok(rules::buy_membership(program)?)
        })
    }

    /// When `member`'s paid tier lapses, if it is in force at `at`.
    pub fn paid_until(&self, member: MemberId, at: Timestamp) -> Result<Option<Timestamp>> {
        member_exists(&self.conn, member)?;
        Ok(summary::paid_tier_until(
            &self.program,
            &member_entries(&self.conn, member)?,
            at,
        ))
    }

    /// Uses an offer open for `member`.
    pub fn use_offer(
        &mut self,
        member: MemberId,
        offer_id: &str,
        actor: &str,
        at: Timestamp,
    ) -> Result<Entry> {
        self.write(member, actor, at, |program, entries, _| {
            let open = offers::book(program, entries, at).open;
            Ok(rules::use_offer(program, &open, offer_id)?)
        })
    }

    /// The offers open for `member` at `at`, and the purchases towards the others.
    pub fn offers(&self, member: MemberId, at: Timestamp) -> Result<MemberOffers> {
        member_exists(&self.conn, member)?;
        let entries = member_entries(&self.conn, member)?;
        Ok(MemberOffers::of(&self.program, &entries, at))
    }

    /// Everything the till shows of `member` at `at` beside their record, from one read of
    /// their entries (a scan shows it at once, whatever their history's length).
    pub fn standing(&self, member: MemberId, at: Timestamp) -> Result<MemberStanding> {
        member_exists(&self.conn, member)?;
        let entries = member_entries(&self.conn, member)?;
        let program = &self.program;
        Ok(MemberStanding {
            state: summarise(program, &entries, at),
            pending: summary::pending(program, &entries, at),
            stamps: stamps::held(&entries),
            offers: MemberOffers::of(program, &entries, at),
            badges: badges::held(&entries),
            paid_until: summary::paid_tier_until(program, &entries, at),
            referrals: MemberReferrals {
                referred_by: self.referrer_name(member)?,
                rewarded_this_year: referrals::rewarded_this_year(program, &entries, at),
            },
        })
    }

    /// Spends points on a reward under the offline rules (no live balance from the server): the
    /// program's offline limit per rolling 24 hours applies.
    pub fn redeem(
        &mut self,
        member: MemberId,
        reward_id: &str,
        actor: &str,
        at: Timestamp,
    ) -> Result<Entry> {
        self.redeem_checked(member, reward_id, None, actor, at)
    }

    /// Spends points on a reward. With `live_balance` (the server's answer, counting every
    /// till) the balance check uses it and the offline limit does not apply; without it the
    /// till is offline and the program's offline limit per rolling 24 hours applies.
    pub fn redeem_checked(
        &mut self,
        member: MemberId,
        reward_id: &str,
        live_balance: Option<i64>,
        actor: &str,
        at: Timestamp,
    ) -> Result<Entry> {
        self.write(member, actor, at, |program, entries, now| {
            // Points still in their sale's return window are not spendable yet.
            let pending = summary::pending(program, entries, at);
            let (held, used) = match live_balance {
                Some(balance) => (MemberSummary { balance, ..*now }, None),
                None => (*now, Some(rules::redeemed_in_last_day(entries, at))),
            };
            let spendable = MemberSummary {
                balance: summary::available(&held, pending),
                ..*now
            };
            rules::redeem(program, &spendable, reward_id, used)
                .map(|(_, draft)| draft)
                .map_err(|r| rules::with_pending(r, pending).into())
        })
    }

    /// A manager's correction of `points` (either sign) with a reason.
    pub fn adjust(
        &mut self,
        member: MemberId,
        points: i64,
        note: &str,
        actor: &str,
        at: Timestamp,
    ) -> Result<Entry> {
        self.write(member, actor, at, |program, _, _| {
            Ok(rules::adjust(program, points, note)?)
        })
    }

    /// Writes the exact negation of entry `id`; a sale's unused offers, badges and referral
    /// bonuses are taken back with it.
    pub fn reverse(&mut self, id: EntryId, actor: &str, at: Timestamp) -> Result<Entry> {
        self.reverse_taking_back(id, actor, at)
            .map(|(entry, _)| entry)
    }

    /// [`Store::reverse`], with the entries that took back what the sale brought (offers,
    /// badges and referral bonuses, this member's or a referrer's), for saying so.
    pub fn reverse_taking_back(
        &mut self,
        id: EntryId,
        actor: &str,
        at: Timestamp,
    ) -> Result<(Entry, Vec<Entry>)> {
        let original = entry_by_id(&self.conn, id)?.ok_or(StoreError::UnknownEntry(id))?;
        // Only the till that made an entry reverses it, so two tills offline can never both
        // reverse the same entry (the server could not accept the second).
        if original.terminal_id != self.terminal {
            return Err(StoreError::ForeignEntry(id));
        }
        let sale = original.kind == crate::domain::EntryKind::Earn;
        self.write_then(
            original.member_id,
            actor,
            at,
            |_, entries, _| {
                if entries.iter().any(|e| e.returns == Some(id)) {
                    return Err(Refusal::HasReturns.into());
                }
                let already = entries.iter().any(|e| e.reverses == Some(id));
                Ok(rules::reverse(&original, already)?)
            },
            |program, conn, _, _| {
                if sale {
                    take_back_facts(conn, program, &original, at)
                } else {
                    Ok(Vec::new())
                }
            },
        )
    }

    /// Brings back part of sale `id` made at this till: the money, by line when the sale has
    /// lines, with its points (and the stamps the returned items collected, while still held)
    /// taken back in proportion. Only this till returns its sales, as only it reverses them.
    /// A sale returned in full no longer counts as a purchase, and its unused offers, badges
    /// and referral bonuses are taken back with the return.
    pub fn refund(
        &mut self,
        id: EntryId,
        what: Returned<'_>,
        actor: &str,
        at: Timestamp,
    ) -> Result<Entry> {
        let sale = entry_by_id(&self.conn, id)?.ok_or(StoreError::UnknownEntry(id))?;
        if sale.terminal_id != self.terminal {
            return Err(StoreError::ForeignEntry(id));
        }
        self.write_then(
            sale.member_id,
            actor,
            at,
            |program, entries, _| {
                if entries.iter().any(|e| e.reverses == Some(id)) {
                    return Err(Refusal::AlreadyReversed.into());
                }
                let earlier: Vec<&Entry> =
                    entries.iter().filter(|e| e.returns == Some(id)).collect();
                let before: Vec<Entry> = entries
                    .iter()
                    .filter(|e| e.occurred_at < sale.occurred_at)
                    .cloned()
                    .collect();
                let tier = summarise(program, &before, sale.occurred_at).tier;
                let held = stamps::held(entries);
                Ok(returns::refund(
                    program, tier, &sale, &earlier, what, &held,
                )?)
            },
            |program, conn, entries, _| {
                if returns::cancelled(entries).contains(&sale.id) {
                    take_back_facts(conn, program, &sale, at)
                } else {
                    Ok(Vec::new())
                }
            },
        )
        .map(|(entry, _)| entry)
    }

    /// The newest entry this till wrote for `member`, for "reverse last transaction": not a fact
    /// a sale wrote with it (reversing the sale takes those back). Found among the member's
    /// entries (`+terminal_id` keeps the planner off the till's terminal index, which would
    /// walk every entry this till ever wrote).
    pub fn last_local_entry(&self, member: MemberId) -> Result<Option<Entry>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {} FROM ledger WHERE member_id = ?1 AND +terminal_id = ?2
               AND kind NOT IN ('offer_unlocked', 'badge_awarded', 'referral_bonus')
             ORDER BY terminal_seq DESC LIMIT 1",
            super::rows::ENTRY_COLUMNS
        ))?;
        Ok(stmt
            .query_row(
                params![member.0, self.terminal.0],
                super::rows::entry_from_row,
            )
            .optional()?)
    }

    /// A member's entries, newest first, at most `limit`.
    pub fn history(&self, member: MemberId, limit: usize) -> Result<Vec<Entry>> {
        let mut entries = member_entries(&self.conn, member)?;
        if entries.is_empty() {
            member_exists(&self.conn, member)?;
        }
        entries.reverse();
        entries.truncate(limit);
        Ok(entries)
    }

    /// A member's balance and tier recomputed from their entries as of `at`.
    /// The points `sale` would earn `member` at `at`, explained; nothing is written.
    pub fn quote(&self, member: MemberId, sale: Sale<'_>, at: Timestamp) -> Result<Quote> {
        member_exists(&self.conn, member)?;
        let entries = member_entries(&self.conn, member)?;
        let tier = summarise(&self.program, &entries, at).tier;
        Ok(quote(
            &self.program,
            tier,
            &stamps::held(&entries),
            sale,
            at,
        )?)
    }

    /// The points `member` earned within the return window before `at`, not yet spendable.
    pub fn pending_points(&self, member: MemberId, at: Timestamp) -> Result<i64> {
        member_exists(&self.conn, member)?;
        Ok(summary::pending(
            &self.program,
            &member_entries(&self.conn, member)?,
            at,
        ))
    }

    /// Every entry of `member`, oldest first.
    pub fn entries_of(&self, member: MemberId) -> Result<Vec<Entry>> {
        member_exists(&self.conn, member)?;
        Ok(member_entries(&self.conn, member)?)
    }

    /// Who referred `member`, and how many referrals of theirs were rewarded this year.
    pub fn referrals(&self, member: MemberId, at: Timestamp) -> Result<MemberReferrals> {
        member_exists(&self.conn, member)?;
        Ok(MemberReferrals {
            referred_by: self.referrer_name(member)?,
            rewarded_this_year: referrals::rewarded_this_year(
                &self.program,
                &member_entries(&self.conn, member)?,
                at,
            ),
        })
    }

    /// The name of the member who referred `member`, if any (and known here).
    fn referrer_name(&self, member: MemberId) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT r.name FROM members m JOIN members r ON r.id = m.referred_by
                 WHERE m.id = ?1",
            )?
            .query_row(params![member.0], |r| r.get(0))
            .optional()?)
    }

    /// The badges `member` holds (ids, in the order they were awarded).
    pub fn badges(&self, member: MemberId) -> Result<Vec<String>> {
        member_exists(&self.conn, member)?;
        Ok(badges::held(&member_entries(&self.conn, member)?))
    }

    /// The stamps `member` holds on each stamp card.
    pub fn stamps_held(&self, member: MemberId) -> Result<BTreeMap<String, i64>> {
        member_exists(&self.conn, member)?;
        Ok(stamps::held(&member_entries(&self.conn, member)?))
    }

    /// `member` gives `points` of their balance to one of the program's causes.
    pub fn donate(
        &mut self,
        member: MemberId,
        cause: &str,
        points: i64,
        actor: &str,
        at: Timestamp,
    ) -> Result<Entry> {
        self.write(member, actor, at, |program, entries, now| {
            let pending = summary::pending(program, entries, at);
            let spendable = MemberSummary {
                balance: summary::available(now, pending),
                ..*now
            };
            rules::donate(program, &spendable, cause, points)
                .map_err(|r| rules::with_pending(r, pending).into())
        })
    }

    /// Spends a full stamp card of `member` on its free item.
    pub fn redeem_stamps(
        &mut self,
        member: MemberId,
        card_id: &str,
        actor: &str,
        at: Timestamp,
    ) -> Result<Entry> {
        self.write(member, actor, at, |program, entries, _| {
            Ok(rules::redeem_stamps(
                program,
                &stamps::held(entries),
                card_id,
            )?)
        })
    }

    pub fn summary_at(&self, member: MemberId, at: Timestamp) -> Result<MemberSummary> {
        member_exists(&self.conn, member)?;
        let entries = member_entries(&self.conn, member)?;
        Ok(summarise(&self.program, &entries, at))
    }

    /// Stores entries made elsewhere (another till, a replay). Idempotent: an entry whose id is
    /// present and identical is skipped. All-or-nothing: an invalid entry, an id present with
    /// different content, or a bad reversal refuses the whole batch.
    pub fn insert_entries(&mut self, entries: &[Entry]) -> Result<Vec<InsertOutcome>> {
        for e in entries {
            e.check_shape()?;
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let entries: Vec<&Entry> = entries.iter().collect();
        let outcomes = insert_foreign(&tx, &self.program, &self.terminal, &entries, false)?;
        tx.commit()?;
        Ok(outcomes)
    }
}

/// Inserts entries made elsewhere inside the caller's transaction (see
/// [`Store::insert_entries`]); shapes must already be checked. With `defer_state`, touched
/// members are listed in `member_state_stale` for [`Store::refresh_stale`] instead of being
/// re-folded now.
pub(crate) fn insert_foreign(
    tx: &Connection,
    program: &Program,
    terminal: &TerminalId,
    entries: &[&Entry],
    defer_state: bool,
) -> Result<Vec<InsertOutcome>> {
    let mut outcomes = Vec::with_capacity(entries.len());
    // Each member given new entries, with the latest instant among them.
    let mut touched: BTreeMap<MemberId, Timestamp> = BTreeMap::new();
    let mut known = HashSet::new();
    let mut seq = next_seq(tx)?;
    for e in entries {
        if e.terminal_id == *terminal {
            if let Some(existing) = entry_by_id(tx, e.id)? {
                if existing == **e {
                    outcomes.push(InsertOutcome::AlreadyPresent);
                    continue;
                }
                return Err(StoreError::IdConflict(e.id));
            }
            return Err(StoreError::BadEntry {
                id: e.id,
                reason: format!(
                    "claims to come from this till ({}) but was never made here",
                    e.terminal_id
                ),
            });
        }
        if !known.contains(&e.member_id) {
            member_exists(tx, e.member_id).map_err(|err| match err {
                StoreError::UnknownMember(member) => StoreError::BadEntry {
                    id: e.id,
                    reason: format!("member {member} is not known here"),
                },
                other => other,
            })?;
            known.insert(e.member_id);
        }
        if let Some(target) = e.reverses {
            check_external_reversal(tx, e, target)?;
        }
        if insert_numbered(tx, e, seq)? {
            seq += 1;
            outcomes.push(InsertOutcome::Inserted);
            let latest = touched.entry(e.member_id).or_insert(e.occurred_at);
            *latest = (*latest).max(e.occurred_at);
        } else if entry_by_id(tx, e.id)?.as_ref() == Some(e) {
            outcomes.push(InsertOutcome::AlreadyPresent);
        } else {
            return Err(StoreError::IdConflict(e.id));
        }
    }
    for (member, at) in touched {
        if defer_state {
            tx.prepare_cached(
                "INSERT INTO member_state_stale (member_id, at) VALUES (?1, ?2)
                 ON CONFLICT (member_id) DO UPDATE SET at = MAX(at, excluded.at)",
            )?
            .execute(params![member.0, at.millis()])?;
        } else {
            let all = member_entries(tx, member)?;
            refresh_state(tx, program, member, &all, at)?;
        }
    }
    Ok(outcomes)
}

/// Members re-folded per transaction by [`Store::refresh_stale`]. Big: each member's state
/// row lands at random in the state table's indexes, and every commit writes each page it
/// changed to the log whole, so small transactions wrote the same pages again and again
/// (2,000 a transaction: half the re-fold's time in commits at a million members).
const STALE_CHUNK: i64 = 100_000;
/// Members re-folded between looks for a sale waiting for the write lock (a few milliseconds).
const STALE_STEP_ASIDE: usize = 200;

impl Store {
    /// Re-folds every member listed stale by bulk pulls; returns how many. Runs in chunks, each
    /// one transaction, so a crash leaves the rest listed for next time; a sale waiting for the
    /// lock gets in between members (each re-fold is whole with its listing's removal).
    pub fn refresh_stale(&mut self) -> Result<usize> {
        // Called at every open: a plain read first, so an idle store takes no write lock.
        let any: bool = self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM member_state_stale)")?
            .query_row([], |r| r.get(0))?;
        if !any {
            return Ok(0);
        }
        let mut done = 0;
        loop {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stale: Vec<(MemberId, Timestamp)> = tx
                .prepare_cached("SELECT member_id, at FROM member_state_stale LIMIT ?1")?
                .query_map(params![STALE_CHUNK], |r| {
                    Ok((MemberId(r.get(0)?), Timestamp::from_millis(r.get(1)?)))
                })?
                .collect::<rusqlite::Result<_>>()?;
            if stale.is_empty() {
                return Ok(done);
            }
            for (i, (member, at)) in stale.iter().enumerate() {
                let all = member_entries(&tx, *member)?;
                refresh_state(&tx, &self.program, *member, &all, *at)?;
                tx.prepare_cached("DELETE FROM member_state_stale WHERE member_id = ?1")?
                    .execute(params![member.0])?;
                if i % STALE_STEP_ASIDE == STALE_STEP_ASIDE - 1 {
                    super::write_lock::let_waiting_writer_in(&tx)?;
                }
            }
            tx.commit()?;
            done += stale.len();
        }
    }
}

/// A reversal from elsewhere must exactly negate an entry of the same member that is not itself
/// a reversal. (That nothing is reversed twice is the `reverses` column's UNIQUE constraint.)
fn check_external_reversal(conn: &Connection, e: &Entry, target: EntryId) -> Result<()> {
    let bad = |reason: &str| StoreError::BadEntry {
        id: e.id,
        reason: reason.to_owned(),
    };
    let original = entry_by_id(conn, target)?.ok_or_else(|| bad("reverses an unknown entry"))?;
    if original.member_id != e.member_id {
        return Err(bad("reverses another member's entry"));
    }
    let expected = rules::reverse(&original, false).map_err(|r| bad(&r.to_string()))?;
    if e.points != expected.points || e.amount_minor != expected.amount_minor {
        return Err(bad("a reversal must exactly negate the entry it reverses"));
    }
    let already: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM ledger WHERE reverses = ?1 AND id <> ?2",
            params![target.0, e.id.0],
            |r| r.get(0),
        )
        .optional()?;
    if already.is_some() {
        return Err(bad("that entry was already reversed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rows::tests::{
        NOW, look_at_sale, sale_once_locked, seen_at_sale, store_with_member,
    };

    /// The cashier reads what a sale's facts mean; a badge without points is named alone, not
    /// "+0".
    #[test]
    fn facts_are_put_in_words_for_the_cashier() {
        let (_dir, store, member) = store_with_member();
        let badge = |id: &str, points| Entry {
            member_id: member,
            reward_id: Some(id.into()),
            ..crate::domain::summary::tests::entry(
                crate::domain::EntryKind::BadgeAwarded,
                points,
                None,
                NOW.millis(),
            )
        };
        let words = store
            .facts_in_words(&[badge("regular", 100), badge("gold", 0)])
            .expect("words");
        assert_eq!(words, ["Regular badge +100", "Gold member badge"]);
    }

    #[test]
    fn a_members_standing_is_what_each_part_says_alone() {
        let (_dir, mut store, member) = store_with_member();
        for i in 0..6 {
            store
                .earn(member, 450 + i * 100, "test", NOW.plus_millis(i))
                .expect("earn");
        }
        let at = NOW.plus_millis(10);
        let standing = store.standing(member, at).expect("standing");
        assert!(standing.state.balance > 0);
        assert_eq!(
            standing.state,
            store.summary_at(member, at).expect("summary")
        );
        assert_eq!(
            standing.pending,
            store.pending_points(member, at).expect("pending")
        );
        assert_eq!(standing.stamps, store.stamps_held(member).expect("stamps"));
        assert_eq!(standing.offers, store.offers(member, at).expect("offers"));
        assert!(
            !standing.offers.open.is_empty(),
            "five visits unlock the pastry"
        );
        assert_eq!(standing.badges, store.badges(member).expect("badges"));
        assert_eq!(
            standing.paid_until,
            store.paid_until(member, at).expect("paid")
        );
        assert_eq!(
            standing.referrals,
            store.referrals(member, at).expect("referrals")
        );
    }

    #[test]
    fn an_entry_for_an_unknown_member_is_a_bad_entry_naming_the_member() {
        let (_dir, mut store, member) = store_with_member();
        let stranger = MemberId(Uuid::now_v7());
        let mut entry = store.history(member, 1).expect("history")[0].clone();
        entry.id = EntryId(Uuid::now_v7());
        entry.terminal_id = TerminalId("till-elsewhere".into());
        entry.member_id = stranger;
        let err = store.insert_entries(&[entry]).expect_err("unknown member");
        assert!(
            matches!(&err, StoreError::BadEntry { reason, .. } if reason.contains(&stranger.to_string())),
            "{err:?}"
        );
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "terminal.last_seq must be this till's highest stored terminal_seq")]
    fn appending_after_a_gap_in_the_terminal_sequence_panics_in_debug_builds() {
        let (_dir, mut store, member) = store_with_member();
        store
            .connection()
            .execute("UPDATE terminal SET last_seq = last_seq + 2", [])
            .expect("skip two sequence numbers");
        let _ = store.earn(member, 1000, "ann", NOW);
    }

    /// A re-fold of many members lets a sale waiting for the write lock in between members
    /// (what it re-folded so far committed, the rest still listed), and re-folds every one.
    #[test]
    fn a_sale_gets_in_while_many_members_are_refolded() {
        use std::sync::atomic::{AtomicBool, Ordering};
        const OTHERS: u64 = 5_000;
        let (dir, mut store, member) = store_with_member();
        let others: Vec<_> = (0..OTHERS)
            .map(|i| super::super::HistoricMember {
                member: crate::domain::Member {
                    id: MemberId(uuid::Uuid::now_v7()),
                    card: crate::domain::CardNumber::from_payload(300_000 + i),
                    name: format!("Member {i}"),
                    phone: None,
                    email: None,
                    birthday: None,
                    marketing_consent: false,
                    created_at: NOW,
                },
                entries: Vec::new(),
            })
            .collect();
        store.load_history(&others, NOW).expect("load");
        let path = dir.path().join("till.sqlite3");
        // Opened before the members are listed, as opening re-folds whoever is listed.
        let mut till = Store::open(&path).expect("the selling connection");
        // How many were still listed at the moment the sale went in.
        look_at_sale(&till, "SELECT COUNT(*) FROM member_state_stale");
        store
            .connection()
            .execute(
                "INSERT INTO member_state_stale (member_id, at) SELECT id, ?1 FROM members",
                params![NOW.millis()],
            )
            .expect("list every member");
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let seller =
                s.spawn(|| sale_once_locked(&path, &mut till, member, &done, seen_at_sale));
            let refolded = store.refresh_stale().expect("re-fold");
            done.store(true, Ordering::Relaxed);
            let listed = seller.join().expect("seller");
            let listed = listed.expect("the seller found the lock held by the re-fold");
            assert!(
                listed > 0 && listed < 1 + OTHERS as i64,
                "the sale committed between members: {listed} still listed"
            );
            assert_eq!(refolded, 1 + OTHERS as usize);
        });
        assert_eq!(store.refresh_stale().expect("again"), 0);
        assert!(store.member(member).expect("member").state.balance > 0);
        assert!(store.verify(false).expect("verify").is_clean());
    }
}
