//! Sales without a member, and the facts the manager's measures are computed from
//! (`domain::insights`).

use rusqlite::params;
use uuid::Uuid;

use super::ledger::new_id;
use super::rows::{ENTRY_COLUMNS, entry_from_row};
use super::{MarketingContact, Result, Store, StoreError};
use crate::domain::insights::{
    Facts, MechanicFacts, MemberFacts, MonthPoints, NpsAnswer, Report, Sale, Settings, report,
    tier_facts,
};
use crate::domain::{MemberId, Timestamp, rules};

/// Who answered the recommend question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answerer {
    /// The member who just bought.
    Member(MemberId),
    /// A customer without a member, after the sale without a member they made, if known.
    Guest(Option<Uuid>),
}

/// Entry kinds that give points (reversals of them are left out with what they reverse).
const EARNING_KINDS: &str = "'earn', 'welcome_bonus', 'birthday_bonus'";

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

    /// Records a customer's answer (0 to 10) to "how likely are you to recommend us?", with
    /// who answered: the member, or a guest after their sale without a member.
    pub fn record_nps(&mut self, score: i64, by: Answerer, at: Timestamp) -> Result<()> {
        if !(0..=10).contains(&score) {
            return Err(StoreError::NpsScore(score));
        }
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

    /// The program's measures for `[from, to)` from this store: its members, every sale (a
    /// purchase not reversed, or a guest sale) before `to`, points in the period and the
    /// outstanding balances.
    pub fn insights(&self, from: Timestamp, to: Timestamp) -> Result<Report> {
        let facts = self.insight_facts(from, to)?;
        let program = self.program();
        let settings = Settings {
            churn_days: program.churn_days,
            cost_per_1000_points_minor: program.cost_per_1000_points_minor,
        };
        Ok(report(&facts, from, to, settings))
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

    fn insight_facts(&self, from: Timestamp, to: Timestamp) -> Result<Facts> {
        let members = self
            .conn
            .prepare("SELECT id, created_at, marketing_consent FROM members WHERE created_at < ?1")?
            .query_map(params![to.millis()], |r| {
                Ok(MemberFacts {
                    id: MemberId(r.get(0)?),
                    enrolled_at: Timestamp::from_millis(r.get(1)?),
                    marketing_consent: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut sales = self
            .conn
            .prepare(
                "SELECT l.member_id, l.occurred_at, l.amount_minor FROM ledger l
                 WHERE l.kind = 'earn' AND l.amount_minor IS NOT NULL AND l.occurred_at < ?1
                   AND NOT EXISTS (SELECT 1 FROM ledger r WHERE r.reverses = l.id)",
            )?
            .query_map(params![to.millis()], |r| {
                Ok(Sale {
                    member: Some(MemberId(r.get(0)?)),
                    at: Timestamp::from_millis(r.get(1)?),
                    amount_minor: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let guests = self
            .conn
            .prepare("SELECT occurred_at, amount_minor FROM guest_sales WHERE occurred_at < ?1")?
            .query_map(params![to.millis()], |r| {
                Ok(Sale {
                    member: None,
                    at: Timestamp::from_millis(r.get(0)?),
                    amount_minor: r.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        sales.extend(guests);
        let in_period = |kinds: &str, sign: i64| -> rusqlite::Result<i64> {
            self.conn.query_row(
                &format!(
                    "SELECT COALESCE(SUM(l.points), 0) * ?3 FROM ledger l
                     WHERE l.kind IN ({kinds}) AND l.occurred_at >= ?1 AND l.occurred_at < ?2
                       AND NOT EXISTS (SELECT 1 FROM ledger r WHERE r.reverses = l.id)"
                ),
                params![from.millis(), to.millis(), sign],
                |r| r.get(0),
            )
        };
        let points_earned = in_period(EARNING_KINDS, 1)?;
        let points_redeemed = in_period("'redeem'", -1)?;
        let outstanding_points = self.conn.query_row(
            "SELECT COALESCE(SUM(MAX(balance, 0)), 0) FROM member_state",
            [],
            |r| r.get(0),
        )?;
        let monthly_points = self
            .conn
            .prepare(&format!(
                "SELECT strftime('%Y-%m', l.occurred_at / 1000, 'unixepoch') AS month,
                        SUM(CASE WHEN l.kind IN ({EARNING_KINDS}) THEN l.points ELSE 0 END),
                        -SUM(CASE WHEN l.kind = 'redeem' THEN l.points ELSE 0 END)
                 FROM ledger l
                 WHERE l.occurred_at >= ?1 AND l.occurred_at < ?2
                   AND NOT EXISTS (SELECT 1 FROM ledger r WHERE r.reverses = l.id)
                 GROUP BY month ORDER BY month"
            ))?
            .query_map(params![from.millis(), to.millis()], |r| {
                Ok(MonthPoints {
                    month: r.get(0)?,
                    earned: r.get(1)?,
                    redeemed: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let nps = self
            .conn
            .prepare("SELECT occurred_at, score FROM nps_answers WHERE occurred_at < ?1")?
            .query_map(params![to.millis()], |r| {
                Ok(NpsAnswer {
                    at: Timestamp::from_millis(r.get(0)?),
                    score: r.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        // The tier fold needs each member's entries up to the period's end.
        let entries = self
            .conn
            .prepare(&format!(
                "SELECT {ENTRY_COLUMNS} FROM ledger WHERE occurred_at < ?1"
            ))?
            .query_map(params![to.millis()], entry_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mechanics = MechanicFacts::count(self.program(), &entries, from, to);
        let tiers = tier_facts(self.program(), &members, entries, from, to);
        Ok(Facts {
            mechanics,
            tiers,
            members,
            sales,
            points_earned,
            points_redeemed,
            outstanding_points,
            monthly_points,
            nps,
        })
    }
}
