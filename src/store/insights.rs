//! Sales without a member, and the facts the manager's measures are computed from
//! (`domain::insights`).

use rusqlite::{OptionalExtension as _, params};
use uuid::Uuid;

use super::ledger::new_id;
use super::records::totals_facts;
use super::rows::{ENTRY_COLUMNS, entry_from_row};
use super::{MarketingContact, Result, Store, StoreError};
use crate::domain::insights::{
    ByMember, Facts, FactsBuilder, GuestDay, MemberFacts, Report, ScoreDay, Settings, report,
};
use crate::domain::{MemberId, TerminalId, Timestamp, rules};

/// Who answered the recommend question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answerer {
    /// The member who just bought.
    Member(MemberId),
    /// A customer without a member, after the sale without a member they made, if known.
    Guest(Option<Uuid>),
}

/// A sale without a member made at another till (demo data), with the guest's answer to the
/// recommend question when they gave one.
#[derive(Debug, Clone)]
pub struct PastGuestSale {
    pub id: Uuid,
    pub at: Timestamp,
    pub amount_minor: i64,
    pub terminal: TerminalId,
    pub answer: Option<i64>,
}

/// A member's answer to the recommend question given at another till (demo data).
#[derive(Debug, Clone)]
pub struct PastAnswer {
    pub member: MemberId,
    pub at: Timestamp,
    pub score: i64,
    pub terminal: TerminalId,
}

/// Entries read between two progress reports.
const PROGRESS_EVERY: u64 = 10_000;

impl Store {
    /// Records a sale without a member: its amount only, no personal data. The same amount
    /// checks as a member's sale.
    pub fn record_guest_sale(
        &mut self,
        amount_minor: i64,
        actor: &str,
        at: Timestamp,
    ) -> Result<Uuid> {
        rules::check_sale_amount(self.program(), amount_minor)?;
        let id = new_id(at);
        self.conn.execute(
            "INSERT INTO guest_sales (id, occurred_at, amount_minor, currency, terminal_id, actor)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id,
                at.millis(),
                amount_minor,
                self.program().currency,
                self.terminal_id().0,
                actor
            ],
        )?;
        Ok(id)
    }

    /// Undoes a sale without a member this till recorded (typed wrong, or recorded twice):
    /// a void of its own names it, and the sale no longer counts. Returns its amount.
    pub fn void_guest_sale(&mut self, sale: Uuid, actor: &str, at: Timestamp) -> Result<i64> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (amount, voided): (i64, bool) = tx
            .query_row(
                "SELECT amount_minor,
                        EXISTS (SELECT 1 FROM guest_sale_voids WHERE sale_id = ?1)
                 FROM guest_sales WHERE id = ?1 AND terminal_id = ?2",
                params![sale, self.terminal.0],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or(StoreError::UnknownGuestSale(sale))?;
        if voided {
            return Err(StoreError::GuestSaleVoided);
        }
        tx.execute(
            "INSERT INTO guest_sale_voids (sale_id, occurred_at, terminal_id, actor)
             VALUES (?1, ?2, ?3, ?4)",
            params![sale, at.millis(), self.terminal.0, actor],
        )?;
        tx.commit()?;
        Ok(amount)
    }

    /// Records a customer's answer (0 to 10) to "how likely are you to recommend us?", with
    /// who answered: the member, or a guest after their sale without a member.
    pub fn record_nps(&mut self, score: i64, by: Answerer, at: Timestamp) -> Result<()> {
        check_score(score)?;
        let (member, guest_sale) = match by {
            Answerer::Member(m) => (Some(m.0), None),
            Answerer::Guest(sale) => (None, sale),
        };
        self.conn.execute(
            "INSERT INTO nps_answers (id, occurred_at, score, member_id, terminal_id, guest_sale)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                new_id(at),
                at.millis(),
                score,
                member,
                self.terminal_id().0,
                guest_sale
            ],
        )?;
        Ok(())
    }

    /// Loads sales without a member and recommend answers made at other tills, all in one
    /// transaction: each checked as the till checks its own (a positive amount, a score from 0
    /// to 10, a known member), none written when one is refused.
    pub fn load_feedback(&mut self, sales: &[PastGuestSale], answers: &[PastAnswer]) -> Result<()> {
        let own = self.terminal_id().0.clone();
        let currency = self.program().currency.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut sale = tx.prepare(
                "INSERT INTO guest_sales (id, occurred_at, amount_minor, currency, terminal_id,
                                          actor)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'demo')",
            )?;
            let mut answer = tx.prepare(
                "INSERT INTO nps_answers (id, occurred_at, score, member_id, terminal_id,
                                          guest_sale)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let known = |member: &MemberId| -> Result<bool> {
                Ok(tx
                    .prepare_cached("SELECT 1 FROM members WHERE id = ?1")?
                    .exists([member.0])?)
            };
            for s in sales {
                if s.amount_minor <= 0 || s.terminal.0 == own {
                    return Err(StoreError::BadRecord(format!(
                        "sale without a member {}: a positive amount made at another till",
                        s.id
                    )));
                }
                sale.execute(params![
                    s.id,
                    s.at.millis(),
                    s.amount_minor,
                    currency,
                    s.terminal.0
                ])?;
                if let Some(score) = s.answer {
                    check_score(score)?;
                    answer.execute(params![
                        new_id(s.at),
                        s.at.millis(),
                        score,
                        None::<Uuid>,
                        s.terminal.0,
                        Some(s.id)
                    ])?;
                }
            }
            for a in answers {
                check_score(a.score)?;
                if a.terminal.0 == own {
                    return Err(StoreError::BadRecord(format!(
                        "an answer of member {} made at this till",
                        a.member
                    )));
                }
                if !known(&a.member)? {
                    return Err(StoreError::UnknownMember(a.member));
                }
                answer.execute(params![
                    new_id(a.at),
                    a.at.millis(),
                    a.score,
                    Some(a.member.0),
                    a.terminal.0,
                    None::<Uuid>
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The program's measures for `[from, to)` from this store: its members, every sale (a
    /// purchase not cancelled, or a guest sale) before `to`, points in the period and the
    /// outstanding balances. Counted from the totals by day once they are brought up to date,
    /// or from every entry when the period is not whole days or the store holds entries
    /// stamped (or members enrolled) at or after `to`. Sales without a member and recommend
    /// answers are always counted by whole UTC day (every caller asks for whole days).
    pub fn insights(&mut self, from: Timestamp, to: Timestamp) -> Result<Report> {
        self.insights_with_progress(from, to, &mut |_, _| {})
    }

    /// [`Store::insights`], telling `progress` (entries read, entries in all) when it has to
    /// read the ledger.
    pub fn insights_with_progress(
        &mut self,
        from: Timestamp,
        to: Timestamp,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Report> {
        self.refresh_digests(progress)?;
        let facts = if self.totals_answer(from, to)? {
            totals_facts(&self.conn, self.program(), from, to)?
        } else {
            self.count_entries(from, to, progress)?.finish()
        };
        self.report_of(facts)
    }

    /// The measures for `[from, to)` counted from every entry of the ledger, the digests left
    /// aside: what the digests must agree with.
    pub fn insights_from_ledger(&self, from: Timestamp, to: Timestamp) -> Result<Report> {
        let facts = self.count_entries(from, to, &mut |_, _| {})?.finish();
        self.report_of(facts)
    }

    /// The members `report` finds at risk who agreed to marketing and can be reached, for a
    /// re-engagement campaign; nobody erased, nobody without consent.
    pub fn at_risk_contacts(&self, report: &Report) -> Result<Vec<MarketingContact>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT card, name, email, phone FROM members
             WHERE id = ?1 AND marketing_consent = 1 AND erased_at IS NULL
               AND (email IS NOT NULL OR phone IS NOT NULL)",
        )?;
        let mut contacts = Vec::new();
        for risk in report.at_risk.iter().filter(|r| r.marketing_consent) {
            let mut rows = stmt.query_map(params![risk.member.0], |r| {
                Ok(MarketingContact {
                    card: r.get(0)?,
                    name: r.get(1)?,
                    email: r.get(2)?,
                    phone: r.get(3)?,
                })
            })?;
            if let Some(c) = rows.next() {
                contacts.push(c?);
            }
        }
        Ok(contacts)
    }

    /// Every member, in id order, as the measures see them.
    fn report_members(&self) -> Result<Vec<MemberFacts>> {
        Ok(self
            .conn
            .prepare("SELECT id, created_at, marketing_consent FROM members ORDER BY id")?
            .query_map([], |r| {
                Ok(MemberFacts {
                    id: MemberId(r.get(0)?),
                    enrolled_at: Timestamp::from_millis(r.get(1)?),
                    marketing_consent: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Reads the ledger once, member by member in its key order: only one member's entries are
    /// held at a time, whatever the store's size.
    fn count_entries(
        &self,
        from: Timestamp,
        to: Timestamp,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<FactsBuilder<'_>> {
        let mut by_member = ByMember::new(
            FactsBuilder::new(self.program(), from, to),
            self.report_members()?,
        );
        // Arrival numbers run from 1 with no gaps but the rare entry set aside: the highest is
        // the count, read from its index at once.
        let total: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM ledger", [], |r| r.get(0))?;
        let total = u64::try_from(total).unwrap_or(0);
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {ENTRY_COLUMNS} FROM ledger ORDER BY member_id, occurred_at, id"
        ))?;
        let mut read: u64 = 0;
        for e in stmt.query_map([], entry_from_row)? {
            by_member
                .push(e?)
                .map_err(|e| StoreError::BadRecord(e.to_string()))?;
            read += 1;
            if read.is_multiple_of(PROGRESS_EVERY) {
                progress(read, total.max(read));
            }
        }
        progress(read, read);
        Ok(by_member.finish())
    }

    /// The report of the counted members with what the ledger does not give: the sales
    /// without a member and recommend answers in the period.
    fn report_of(&self, mut facts: Facts) -> Result<Report> {
        let (from, to) = (facts.from, facts.to);
        let (guests, scores) = self.extras(from, to)?;
        facts.add_extras(&guests, &scores);
        Ok(report(&facts, &Settings::of(self.program())))
    }

    /// Sales without a member and recommend answers by day, for the days in `[from, to)`.
    pub(crate) fn extras(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<(Vec<GuestDay>, Vec<ScoreDay>)> {
        super::records::extras_in(&self.conn, "nps_answers", from, to)
    }
}

/// A recommend score is 0 to 10.
fn check_score(score: i64) -> Result<()> {
    if (0..=10).contains(&score) {
        Ok(())
    } else {
        Err(StoreError::NpsScore(score))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rows::tests::{NOW, store_with_member};

    fn guests(store: &Store) -> (i64, i64) {
        store
            .conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM guest_sales), (SELECT COUNT(*) FROM nps_answers)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("counts")
    }

    #[test]
    fn past_feedback_is_loaded_whole_or_not_at_all() {
        let (_dir, mut store, member) = store_with_member();
        let elsewhere = TerminalId("demo-till-1".to_owned());
        let sale = PastGuestSale {
            id: new_id(NOW),
            at: NOW,
            amount_minor: 450,
            terminal: elsewhere.clone(),
            answer: Some(9),
        };
        let answer = |member, score| PastAnswer {
            member,
            at: NOW,
            score,
            terminal: elsewhere.clone(),
        };
        for (bad, why) in [
            (answer(member, 11), "a score above 10"),
            (answer(MemberId(Uuid::nil()), 8), "an unknown member"),
        ] {
            let err = store
                .load_feedback(std::slice::from_ref(&sale), &[answer(member, 7), bad])
                .expect_err(why);
            assert!(
                matches!(
                    err,
                    StoreError::NpsScore(11) | StoreError::UnknownMember(MemberId(_))
                ),
                "{why}: {err:?}"
            );
            assert_eq!(guests(&store), (0, 0), "nothing kept after {why}");
        }
        store
            .load_feedback(&[sale], &[answer(member, 7)])
            .expect("load");
        assert_eq!(guests(&store), (1, 2));
        let own = store.record_guest_sale(300, "t", NOW).expect("sale");
        store
            .record_nps(10, Answerer::Guest(Some(own)), NOW)
            .expect("answer");
        let outbox = store.outbox(100, 100).expect("outbox");
        assert_eq!(
            outbox.guest_sales.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![own],
            "another till's sales are not this till's to push"
        );
        assert_eq!(
            outbox.answers.iter().map(|a| a.score).collect::<Vec<_>>(),
            vec![10]
        );
    }

    #[test]
    fn a_sale_without_a_member_is_undone_once_and_only_by_its_own_till() {
        let (_dir, mut store, _) = store_with_member();
        let day = NOW.millis() - NOW.millis() % 86_400_000;
        let (from, to) = (Timestamp::from_millis(day), NOW.plus_days(1));
        let kept = store.record_guest_sale(450, "t", NOW).expect("sale");
        let typo = store.record_guest_sale(7000, "t", NOW).expect("sale");
        assert_eq!(store.void_guest_sale(typo, "t", NOW).expect("void"), 7000);
        assert_eq!(
            store.extras(from, to).expect("days").0,
            vec![GuestDay::stored(day, 1, 450)]
        );
        assert!(store.verify(false).expect("verify").is_clean());
        assert!(matches!(
            store.void_guest_sale(typo, "t", NOW),
            Err(StoreError::GuestSaleVoided)
        ));
        let elsewhere = PastGuestSale {
            id: new_id(NOW),
            at: NOW,
            amount_minor: 300,
            terminal: TerminalId("demo-till-1".to_owned()),
            answer: None,
        };
        store
            .load_feedback(std::slice::from_ref(&elsewhere), &[])
            .expect("load");
        for unknown in [elsewhere.id, Uuid::nil()] {
            assert!(matches!(
                store.void_guest_sale(unknown, "t", NOW),
                Err(StoreError::UnknownGuestSale(id)) if id == unknown
            ));
        }
        assert_eq!(store.void_guest_sale(kept, "t", NOW).expect("void"), 450);
        assert_eq!(
            store.extras(from, to).expect("days").0,
            vec![GuestDay::stored(day, 1, 300)],
            "only the other till's sale is left on the day"
        );
        assert!(store.verify(false).expect("verify").is_clean());
        let voids = store.outbox(100, 100).expect("outbox").voids;
        assert_eq!(
            voids.iter().map(|v| v.sale).collect::<Vec<_>>(),
            vec![typo, kept]
        );
    }

    #[test]
    fn sums_by_day_follow_the_rows_and_verify_remakes_them() {
        let (_dir, mut store, member) = store_with_member();
        let day = NOW.millis() - NOW.millis() % 86_400_000;
        for (minutes, amount) in [(0, 450), (5, 300)] {
            let at = NOW.plus_millis(minutes * 60_000);
            let sale = store.record_guest_sale(amount, "t", at).expect("sale");
            store
                .record_nps(minutes, Answerer::Guest(Some(sale)), at)
                .expect("answer");
        }
        store
            .record_nps(9, Answerer::Member(member), NOW)
            .expect("answer");
        let (from, to) = (Timestamp::from_millis(day), NOW.plus_days(1));
        let (guests, scores) = store.extras(from, to).expect("days");
        assert_eq!(guests, vec![GuestDay::stored(day, 2, 750)]);
        assert_eq!(
            scores,
            [0, 5, 9].map(|score| ScoreDay::stored(day, score, 1))
        );
        assert!(store.verify(false).expect("verify").is_clean());
        store
            .conn
            .execute(
                "UPDATE nps_answers_by_day SET answers = 4 WHERE score = 9",
                [],
            )
            .expect("tamper");
        let drift = store.verify(true).expect("verify").drift;
        assert_eq!(
            drift,
            vec![crate::store::Drift::ExtrasByDay {
                table: "nps_answers_by_day".to_owned(),
                rows: 2
            }]
        );
        assert!(store.verify(false).expect("verify").is_clean(), "repaired");
        assert_eq!(store.extras(from, to).expect("days").1[2].answers, 1);
    }
}
