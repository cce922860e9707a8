//! `tillpass-server verify`: what the server derives from its ledger (each member's stored
//! balance on SQLite, the chain report's records and totals) checked against the entries, all
//! read in one snapshot so a running server's pushes cannot show as drift.

use serde::Serialize;

use crate::domain::insights::{MemberFacts, Record, StoredRecord, Totals};
use crate::domain::{Entry, Program};

/// At most this many problems are described; the counts go on.
const DESCRIBED: usize = 50;

/// What `verify` found.
#[derive(Debug, Default, Serialize)]
pub struct Verified {
    pub members: u64,
    pub entries: u64,
    /// Members whose stored balance was checked: all of them on SQLite, none on PostgreSQL,
    /// which stores no balances (it sums the entries when one is asked for).
    pub balances_checked: u64,
    /// Members whose stored balance is not the sum of their entries' points.
    pub balances_wrong: u64,
    /// Whether the report's records were made under the program in force; when not, the
    /// next report makes them all again and they are not checked.
    pub records_made: bool,
    /// Members whose record was checked against their entries.
    pub records_checked: u64,
    /// Members with entries or a new version after the records' cursor: their records are
    /// made again by the next report (or the keeper), so not checked.
    pub records_pending: u64,
    /// Members whose stored record is not what their entries make (or who have none).
    pub records_wrong: u64,
    /// Day sums in the totals that are not the sum of the stored records, when checked.
    pub totals_wrong: Option<u64>,
    /// Rows of the by-day sums of sales without a member and recommend answers that differ
    /// from what their rows add up to, counting a wrong row and the one that should stand in
    /// its place (one wrong day counts twice).
    pub extras_wrong: u64,
    /// The first problems, each in a sentence.
    pub problems: Vec<String>,
}

impl Verified {
    /// Whether nothing disagrees.
    pub fn clean(&self) -> bool {
        self.balances_wrong == 0
            && self.records_wrong == 0
            && self.totals_wrong.unwrap_or(0) == 0
            && self.extras_wrong == 0
    }

    fn problem(&mut self, sentence: impl FnOnce() -> String) {
        if self.problems.len() < DESCRIBED {
            self.problems.push(sentence());
        }
    }
}

/// A verification under way, fed one member at a time.
pub struct Check<'a> {
    /// The program in force, when the records were made under it.
    program: Option<&'a Program>,
    verified: Verified,
    /// The sum of every stored record: what the stored totals must be (`None` once a record
    /// does not decode, as its sums cannot be known).
    sums: Option<Totals>,
}

/// The by-day tables and how each is made from its rows (see `extras_by_day`).
pub fn extras_by_day() -> [(String, String); 2] {
    crate::store::records::extras_by_day("recommend_answers")
}

impl<'a> Check<'a> {
    /// Notes `rows` rows in which `table` disagrees with the rows it sums.
    pub fn extras(&mut self, table: &str, rows: u64) {
        self.verified.extras_wrong += rows;
        if rows > 0 {
            self.verified.problem(|| {
                format!("{table}: {rows} rows differ from the sales or answers they sum")
            });
        }
    }

    /// A check of records made under `program` (`None`: not made under the one in force).
    pub fn new(program: Option<&'a Program>) -> Self {
        Check {
            program,
            verified: Verified {
                records_made: program.is_some(),
                ..Verified::default()
            },
            sums: Some(Totals::default()),
        }
    }

    /// Checks one member: their stored `balance` (`None` where balances are not stored)
    /// against their `entries`; and, when the records are made, their `stored` record against
    /// what the entries make unless it is `pending`, counting it towards the totals either way.
    pub fn member(
        &mut self,
        member: MemberFacts,
        mut entries: Vec<Entry>,
        balance: Option<i64>,
        pending: bool,
        stored: Option<StoredRecord>,
    ) {
        let v = &mut self.verified;
        v.members += 1;
        v.entries += entries.len() as u64;
        let sum: i64 = entries.iter().map(|e| e.points).sum();
        v.balances_checked += u64::from(balance.is_some());
        if let Some(balance) = balance
            && balance != sum
        {
            v.balances_wrong += 1;
            v.problem(|| {
                format!(
                    "member {}: balance {balance} stored, {sum} in their entries",
                    member.id
                )
            });
        }
        let Some(program) = self.program else {
            return;
        };
        match stored.as_ref().map(|s| &s.record) {
            Some(Some(record)) => {
                if let Some(sums) = &mut self.sums {
                    record.count(sums, 1);
                }
            }
            Some(None) => self.sums = None,
            None => {}
        }
        if pending {
            v.records_pending += 1;
            return;
        }
        v.records_checked += 1;
        entries.sort_by_key(|e| (e.occurred_at, e.id));
        let id = member.id;
        let derived = Record::of(program, member, &entries);
        match stored {
            Some(stored) if stored.is(&derived) => {}
            Some(stored) if stored.record.is_none() => {
                v.records_wrong += 1;
                v.problem(|| format!("member {id}: their stored record does not decode"));
            }
            Some(_) => {
                v.records_wrong += 1;
                v.problem(|| format!("member {id}: their record is not what their entries make"));
            }
            None => {
                v.records_wrong += 1;
                v.problem(|| format!("member {id}: no record, though counted up to the cursor"));
            }
        }
    }

    /// The findings, with the `stored` totals (read with the records) checked against the
    /// sum of the stored records.
    pub fn finish(mut self, stored: Option<Totals>) -> Verified {
        if self.program.is_some()
            && let (Some(sums), Some(stored)) = (&self.sums, &stored)
        {
            let wrong = sums.differences(stored) as u64;
            self.verified.totals_wrong = Some(wrong);
            if wrong > 0 {
                self.verified.problem(|| {
                    format!("the report's totals: {wrong} day sums differ from the records'")
                });
            }
        }
        self.verified
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::insights::Totals;
    use crate::domain::{
        EntryId, EntryKind, MemberId, TerminalId, Timestamp, program::DEMO_PROGRAM_TOML,
    };

    fn member() -> MemberFacts {
        MemberFacts {
            id: MemberId(uuid::Uuid::now_v7()),
            enrolled_at: Timestamp::from_millis(1_700_000_000_000),
            marketing_consent: true,
        }
    }

    fn earn(points: i64, at: i64) -> Entry {
        Entry {
            id: EntryId(uuid::Uuid::now_v7()),
            terminal_id: TerminalId("till-a".into()),
            terminal_seq: 1,
            member_id: MemberId(uuid::Uuid::nil()),
            kind: EntryKind::Earn,
            points,
            amount_minor: Some(points * 10),
            currency: Some("GBP".into()),
            reward_id: None,
            reverses: None,
            occurred_at: Timestamp::from_millis(at),
            note: None,
            actor: "ann".into(),
            lines: Vec::new(),
            stamps: Default::default(),
            returns: None,
        }
    }

    fn stored(program: &Program, member: &MemberFacts, entries: &[Entry]) -> StoredRecord {
        let record = Record::of(program, member.clone(), entries);
        StoredRecord {
            last_sale: record.last_sale(),
            tier_changes: record
                .tier_changes()
                .into_iter()
                .map(|c| (c, member.enrolled_at))
                .collect(),
            record: Some(record),
        }
    }

    #[test]
    fn records_balances_and_totals_that_agree_are_clean_and_each_kind_of_drift_is_found() {
        let program = Program::from_toml(DEMO_PROGRAM_TOML).expect("the demo program");
        let (ada, bob) = (member(), member());
        let ada_entries = vec![earn(30, 1_700_000_100_000), earn(12, 1_700_000_200_000)];
        let bob_entries = vec![earn(5, 1_700_000_300_000)];
        let mut totals = Totals::default();
        let (ada_stored, bob_stored) = (
            stored(&program, &ada, &ada_entries),
            stored(&program, &bob, &bob_entries),
        );
        for s in [&ada_stored, &bob_stored] {
            s.record.as_ref().expect("made").count(&mut totals, 1);
        }

        let mut check = Check::new(Some(&program));
        check.member(
            ada.clone(),
            ada_entries.clone(),
            Some(42),
            false,
            Some(ada_stored.clone()),
        );
        check.member(
            bob.clone(),
            bob_entries.clone(),
            Some(5),
            false,
            Some(bob_stored.clone()),
        );
        let clean = check.finish(Some(totals.clone()));
        assert!(clean.clean(), "{:?}", clean.problems);
        assert_eq!(
            (clean.members, clean.entries, clean.records_checked),
            (2, 3, 2)
        );
        assert_eq!(clean.balances_checked, 2);
        assert_eq!(clean.totals_wrong, Some(0));

        // A wrong balance, a record missing an entry (pending: not judged; else wrong), and
        // totals off by one member.
        let mut check = Check::new(Some(&program));
        check.member(
            ada.clone(),
            ada_entries.clone(),
            Some(41),
            false,
            Some(ada_stored),
        );
        let stale = stored(&program, &bob, &[]);
        check.member(
            bob.clone(),
            bob_entries.clone(),
            Some(5),
            true,
            Some(stale.clone()),
        );
        let pending = check.finish(Some(totals.clone()));
        assert_eq!((pending.balances_wrong, pending.records_wrong), (1, 0));
        assert_eq!(pending.records_pending, 1);
        assert!(
            pending.totals_wrong.is_some_and(|n| n > 0),
            "bob's stale record was summed"
        );

        let mut check = Check::new(Some(&program));
        check.member(bob, bob_entries, Some(5), false, Some(stale));
        let wrong = check.finish(None);
        assert_eq!((wrong.records_wrong, wrong.totals_wrong), (1, None));
        assert!(!wrong.clean());

        // Records made under another program are not judged, nor balances not stored.
        let mut check = Check::new(None);
        check.member(ada, ada_entries, None, false, None);
        let unmade = check.finish(Some(Totals::default()));
        assert!(unmade.clean() && !unmade.records_made && unmade.records_checked == 0);
        assert_eq!(unmade.balances_checked, 0);
    }
}
