//! The chain report on PostgreSQL: each member's record and the totals by day (as a till keeps
//! them), brought up to date from the entries and member versions after
//! `report_state.last_seq`, one transaction a slice (a remake in one) under an advisory lock
//! of its own.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::{PgDb, exec, fetch_all, fetch_one, fetch_opt, get, pg, snapshot};
use crate::domain::insights::{
    AtRisk, Digest, Facts, Key, MemberFacts, Record, Sum, TierChange, Totals, moved, totals_answer,
};
use crate::domain::{MemberId, Program, Timestamp};
use crate::server::db::{DbError, report_member, report_program};
use crate::server::report_records::{
    BATCH_SEQS, MEMBERS_PER_STEP, Pace, Refreshed, entries_oldest_first, members_if_needed,
    remake_is_quicker,
};
use crate::store::records::program_hash;

/// Serialises the servers that bring the report's records up to date (any constant works; it
/// names this lock).
const REPORT_LOCK: i64 = 0x7469_6c6c_7265_706f;

/// How a catch-up step ended.
enum Step {
    Done,
    More,
    /// The stored records cannot be moved by differences (one does not decode, so its sums
    /// cannot be taken off; or they are gone with their state after a crash): all are made
    /// again.
    Unusable,
}

impl PgDb {
    /// Brings the report's records and totals up to date under the program in force, which
    /// it returns with where it left them: all made again for a new program or a large
    /// backlog, else the members of the entries and member versions that arrived since, a
    /// slice of sequence numbers a transaction (`pace` says when to stop between steps).
    pub(crate) async fn report_current(
        &self,
        pace: Pace<'_>,
    ) -> Result<(Arc<Program>, Refreshed), DbError> {
        let toml: String = fetch_one(
            &get(&self.quick).await?,
            "SELECT toml FROM program ORDER BY version DESC LIMIT 1",
            &[],
        )
        .await?
        .get(0);
        let program = Arc::new(report_program(&toml)?);
        let hash = program_hash(&toml);
        let left = |refreshed| Ok((Arc::clone(&program), refreshed));
        loop {
            // Looked at before every slice: tills that pushed faster than a catch-up while it
            // ran can leave a backlog a remake reads less of.
            if let Some(stopped) = self.report_remake(&program, &hash, false, pace).await? {
                return left(stopped);
            }
            match self.report_catch_up(&program).await? {
                Step::Done => return left(Refreshed::Current),
                Step::More => {}
                Step::Unusable => {
                    if let Some(stopped) = self.report_remake(&program, &hash, true, pace).await? {
                        return left(stopped);
                    }
                }
            }
            if pace.stops() {
                return left(Refreshed::Partly);
            }
        }
    }

    /// Makes every record again, members in id order, then the totals, in one transaction
    /// holding the report's lock (pushes write none of these tables, so they go on): when
    /// `always`, or when the records were made under another program or lag by a large
    /// backlog (looked at under the lock, so of servers racing to remake, one does). Where it
    /// stopped instead when the pace is one slice (not begun) or it gave way part way (rolled
    /// back).
    async fn report_remake(
        &self,
        program: &Program,
        hash: &str,
        always: bool,
        pace: Pace<'_>,
    ) -> Result<Option<Refreshed>, DbError> {
        let mut client = get(&self.report).await?;
        let tx = locked(&mut client).await?;
        let row = fetch_one(
            &tx,
            &format!(
                "SELECT program, COALESCE((SELECT last FROM server_seq) - last_seq, 0), {}
                 FROM (SELECT) AS one LEFT JOIN report_state ON TRUE",
                members_if_needed()
            ),
            &[],
        )
        .await?;
        let (made, backlog): (Option<String>, i64) = (row.get(0), row.get(1));
        if !always && made.as_deref() == Some(hash) && !remake_is_quicker(backlog, row.get(2)) {
            return Ok(None);
        }
        if matches!(pace, Pace::Slice) {
            return Ok(Some(Refreshed::RemakeLeft));
        }
        for table in [
            "report_digests",
            "report_members",
            "report_tier_changes",
            "report_totals",
        ] {
            exec(&tx, &format!("DELETE FROM {table}"), &[]).await?;
        }
        exec(
            &tx,
            "INSERT INTO report_state (singleton, last_seq) VALUES (TRUE, (SELECT last FROM server_seq))
             ON CONFLICT (singleton) DO UPDATE SET last_seq = excluded.last_seq",
            &[],
        )
        .await?;
        let (mut after, mut totals) = (None::<Uuid>, Totals::default());
        let (mut latest_at, mut latest_enrolled) = (None, None);
        loop {
            let limit = MEMBERS_PER_STEP as i64;
            let rows = fetch_all(
                &tx,
                "SELECT body FROM members WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2",
                &[&after, &limit],
            )
            .await?;
            let members = rows
                .iter()
                .map(|row| report_member(row.get(0)))
                .collect::<Result<Vec<_>, _>>()?;
            after = members.last().map(|m| m.id.0).or(after);
            latest_enrolled =
                latest_enrolled.max(members.iter().map(|m| m.enrolled_at.millis()).max());
            self.recount(
                &tx,
                program,
                members,
                Over::Nothing,
                &mut totals,
                &mut latest_at,
            )
            .await?;
            if rows.len() < MEMBERS_PER_STEP {
                break;
            }
            if pace.stops() {
                // Rolled back: the next caller makes them all again.
                return Ok(Some(Refreshed::Partly));
            }
        }
        add_totals(&tx, &totals).await?;
        exec(
            &tx,
            "UPDATE report_state SET program = $1, latest_at = $2, latest_enrolled = $3",
            &[&hash, &latest_at, &latest_enrolled],
        )
        .await?;
        tx.commit().await.map_err(pg)?;
        // Every row is new: until a vacuum marks their pages all-visible, the report's read of
        // the tier changes in a period cannot be answered from its covering index alone (it
        // scanned the table instead: twice the time at 100,000 members), and until an analyze
        // the planner's figures are those of the emptied tables. Autovacuum would come by
        // minutes later; reports are asked for now.
        client
            .batch_execute(
                "VACUUM (ANALYZE) report_digests, report_members, report_tier_changes,
                 report_totals",
            )
            .await
            .map_err(pg)?;
        Ok(None)
    }

    /// Makes again the record of every member with an entry or a member version after the
    /// cursor, a slice of sequence numbers, moving the totals by the difference.
    async fn report_catch_up(&self, program: &Program) -> Result<Step, DbError> {
        let mut client = get(&self.report).await?;
        let tx = locked(&mut client).await?;
        let Some(row) = fetch_opt(
            &tx,
            "SELECT last_seq, (SELECT last FROM server_seq) FROM report_state",
            &[],
        )
        .await?
        else {
            return Ok(Step::Unusable);
        };
        let (after, last): (i64, i64) = (row.get(0), row.get(1));
        if after >= last {
            return Ok(Step::Done);
        }
        let upto = last.min(after.saturating_add(BATCH_SEQS));
        let touched: BTreeSet<Uuid> = fetch_all(
            &tx,
            "SELECT member_id FROM entries WHERE server_seq > $1 AND server_seq <= $2
             UNION
             SELECT member_id FROM member_versions WHERE server_seq > $1 AND server_seq <= $2",
            &[&after, &upto],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        let members = fetch_all(
            &tx,
            "SELECT body FROM members WHERE id = ANY($1)",
            &[&touched.into_iter().collect::<Vec<Uuid>>()],
        )
        .await?
        .iter()
        .map(|row| report_member(row.get(0)))
        .collect::<Result<Vec<_>, _>>()?;
        let latest_enrolled = members.iter().map(|m| m.enrolled_at.millis()).max();
        let (mut moved, mut latest_at) = (Totals::default(), None);
        if !self
            .recount(
                &tx,
                program,
                members,
                Over::Stored,
                &mut moved,
                &mut latest_at,
            )
            .await?
        {
            return Ok(Step::Unusable);
        }
        add_totals(&tx, &moved).await?;
        exec(
            &tx,
            "UPDATE report_state
             SET last_seq = $1,
                 latest_at = GREATEST(latest_at, $2),
                 latest_enrolled = GREATEST(latest_enrolled, $3)",
            &[&upto, &latest_at, &latest_enrolled],
        )
        .await?;
        tx.commit().await.map_err(pg)?;
        Ok(if upto >= last { Step::Done } else { Step::More })
    }

    /// The facts of `[from, to)` from the totals when they answer it (whole days, ending after
    /// every entry and enrolment counted), else `None`.
    pub(super) async fn report_from_totals(
        &self,
        program: &Program,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Option<Facts>, DbError> {
        let mut client = get(&self.pages).await?;
        let tx = snapshot(&mut client).await?;
        // The period's bounds decide the plan. From a prepared statement's sixth run on a
        // connection PostgreSQL may keep one plan for any bounds: on a million members the
        // sixth read of the tier changes in a period on one connection took 1.26 s, the five
        // before 0.13-0.17 s.
        tx.batch_execute("SET LOCAL plan_cache_mode = force_custom_plan")
            .await
            .map_err(pg)?;
        let row = fetch_one(
            &tx,
            "SELECT latest_at, latest_enrolled FROM (SELECT) AS one LEFT JOIN report_state ON TRUE",
            &[],
        )
        .await?;
        if !totals_answer(from, to, row.get(0), row.get(1)) {
            return Ok(None);
        }
        let mut facts = stored_totals(&tx)
            .await?
            .facts(from, to, program.tiers.len());
        let cutoff = to.plus_days(-program.churn_days).millis();
        facts.last_purchases = fetch_all(
            &tx,
            "SELECT member_id, last_sale, consent FROM report_members
             WHERE last_sale < $1 ORDER BY last_sale, member_id",
            &[&cutoff],
        )
        .await?
        .iter()
        .map(|r| AtRisk {
            member: MemberId(r.get(0)),
            last_purchase: Timestamp::from_millis(r.get(1)),
            marketing_consent: r.get(2),
        })
        .collect();
        let changes = fetch_all(
            &tx,
            "SELECT at, tier_before, tier_after, member_id, enrolled_at FROM report_tier_changes
             WHERE at > $1 AND at < $2 AND enrolled_at <= $1",
            &[&from.millis(), &to.millis()],
        )
        .await?
        .iter()
        .map(|r| {
            Ok((
                MemberId(r.get(3)),
                Timestamp::from_millis(r.get(4)),
                tier_change(r.get(0), r.get(1), r.get(2))?,
            ))
        })
        .collect::<Result<Vec<_>, DbError>>()?;
        (facts.moved_up, facts.moved_down) = moved(changes, from);
        tx.commit().await.map_err(pg)?;
        Ok(Some(facts))
    }
}

/// The totals as stored.
pub(super) async fn stored_totals(tx: &Transaction<'_>) -> Result<Totals, DbError> {
    let mut totals = Totals::default();
    for r in fetch_all(tx, "SELECT sum, at, of, n FROM report_totals", &[]).await? {
        let code: i64 = r.get(0);
        let sum = Sum::from_code(code).ok_or_else(|| {
            DbError::Internal(format!("the chain report's records: unknown total {code}"))
        })?;
        totals.add(
            Key {
                sum,
                at: r.get(1),
                of: r.get(2),
            },
            r.get(3),
        );
    }
    Ok(totals)
}

/// A write transaction holding the report's advisory lock.
async fn locked(client: &mut deadpool_postgres::Object) -> Result<Transaction<'_>, DbError> {
    let tx = client.transaction().await.map_err(pg)?;
    exec(&tx, "SELECT pg_advisory_xact_lock($1)", &[&REPORT_LOCK]).await?;
    Ok(tx)
}

pub(super) fn tier_change(at: i64, before: i64, after: i64) -> Result<TierChange, DbError> {
    let tier = |t: i64| {
        usize::try_from(t)
            .map_err(|_| DbError::Internal(format!("the chain report's records: tier {t}")))
    };
    Ok(TierChange {
        at: Timestamp::from_millis(at),
        before: tier(before)?,
        after: tier(after)?,
    })
}

/// Whether the records being made replace stored ones, or go into tables a remake emptied.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Over {
    Stored,
    Nothing,
}

/// A record made again, and which of its stored parts it changes beside the digest (always
/// written): the member's row (enrolment, consent, last purchase), and their tier changes.
struct Remade {
    record: Record,
    row: bool,
    tiers: bool,
}

impl Remade {
    /// `record`, over `old` when one is stored.
    fn over(record: Record, old: Option<&Record>) -> Self {
        let (row, tiers) = old.map_or((true, true), |old| {
            let enrolment = old.member != record.member;
            (
                enrolment || old.last_sale() != record.last_sale(),
                enrolment || old.tier_changes() != record.tier_changes(),
            )
        });
        Self { record, row, tiers }
    }
}

/// Records made again for some members, with what they move in the totals.
#[derive(Default)]
struct Made {
    records: Vec<Remade>,
    moved: Totals,
    latest_at: Option<i64>,
}

impl Made {
    /// Adds what another reader made.
    fn merge(&mut self, other: Made) {
        self.records.extend(other.records);
        self.moved.merge(&other.moved);
        self.latest_at = self.latest_at.max(other.latest_at);
    }
}

impl PgDb {
    /// Makes again the records of `members` and writes them in `tx`, adding what they move in
    /// the totals (what stored records added taken off, `over` stored ones) to `moved` and
    /// noting the latest entry's time; false, with nothing written, when a stored record does
    /// not decode. The records are made on two readers at once, each half of the members on
    /// its own connection: entries never change, and the stored records only under the
    /// report's lock, which `tx` holds. A remake reads and deletes no old records: its own
    /// transaction emptied the tables, and a lookup by member there could be planned as a
    /// scan of what it has written so far (a remake of a million members then slows with
    /// every step).
    async fn recount(
        &self,
        tx: &Transaction<'_>,
        program: &Program,
        mut members: Vec<MemberFacts>,
        over: Over,
        moved: &mut Totals,
        latest_at: &mut Option<i64>,
    ) -> Result<bool, DbError> {
        let second = members.split_off(members.len() / 2);
        let (first, second) = tokio::try_join!(
            self.make_records(program, members, over),
            self.make_records(program, second, over),
        )?;
        let Some((mut made, second)) = first.zip(second) else {
            return Ok(false);
        };
        made.merge(second);
        write_records(tx, &made.records, over).await?;
        moved.merge(&made.moved);
        *latest_at = (*latest_at).max(made.latest_at);
        Ok(true)
    }

    /// The records of `members` made again on a reader, in two statements: what their stored
    /// records added (`over` stored ones) is taken off, and their entries are read; none
    /// when a stored record does not decode.
    async fn make_records(
        &self,
        program: &Program,
        members: Vec<MemberFacts>,
        over: Over,
    ) -> Result<Option<Made>, DbError> {
        let mut made = Made::default();
        if members.is_empty() {
            return Ok(Some(made));
        }
        let client = get(&self.pages).await?;
        let ids: Vec<Uuid> = members.iter().map(|m| m.id.0).collect();
        let old =
            match over {
                Over::Stored => fetch_all(
                    &client,
                    "SELECT m.member_id, m.enrolled_at, m.consent, d.digest FROM report_members m
                     LEFT JOIN report_digests d ON d.member_id = m.member_id
                     WHERE m.member_id = ANY($1)",
                    &[&ids],
                )
                .await?,
                Over::Nothing => Vec::new(),
            };
        let mut stored = HashMap::new();
        for row in old {
            let digest = match row.get::<_, Option<&[u8]>>(3).map(Digest::from_bytes) {
                None => None,
                Some(Ok(digest)) => Some(digest),
                Some(Err(_)) => return Ok(None),
            };
            let old = Record {
                member: MemberFacts {
                    id: MemberId(row.get(0)),
                    enrolled_at: Timestamp::from_millis(row.get(1)),
                    marketing_consent: row.get(2),
                },
                digest,
            };
            old.count(&mut made.moved, -1);
            stored.insert(old.member.id, old);
        }
        let rows = fetch_all(
            &client,
            "SELECT member_id, body FROM entries WHERE member_id = ANY($1)",
            &[&ids],
        )
        .await?;
        drop(client);
        let mut bodies: HashMap<Uuid, Vec<&str>> = HashMap::new();
        for row in &rows {
            bodies.entry(row.get(0)).or_default().push(row.get(1));
        }
        for member in members {
            let entries = entries_oldest_first(bodies.remove(&member.id.0).unwrap_or_default())?;
            made.latest_at = made
                .latest_at
                .max(entries.iter().map(|e| e.occurred_at.millis()).max());
            let record = Record::of(program, member, &entries);
            record.count(&mut made.moved, 1);
            let old = stored.get(&record.member.id);
            made.records.push(Remade::over(record, old));
        }
        Ok(Some(made))
    }
}

/// Stores `records`, `over` their members' stored ones: digests, then the rows and tier
/// changes that changed (most sales move no tier), each table in one statement.
async fn write_records(
    tx: &Transaction<'_>,
    records: &[Remade],
    over: Over,
) -> Result<(), DbError> {
    let ids = |part: fn(&Remade) -> bool| -> Vec<Uuid> {
        records
            .iter()
            .filter(|r| part(r))
            .map(|r| r.record.member.id.0)
            .collect()
    };
    if over == Over::Stored {
        exec(
            tx,
            "DELETE FROM report_digests WHERE member_id = ANY($1)",
            &[&ids(|_| true)],
        )
        .await?;
        exec(
            tx,
            "DELETE FROM report_tier_changes WHERE member_id = ANY($1)",
            &[&ids(|r| r.tiers)],
        )
        .await?;
    }
    let (mut with_digest, mut digests) = (Vec::new(), Vec::new());
    let (mut rows, mut enrolled, mut consent, mut last_sale) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut changed, mut at, mut before, mut after, mut changed_enrolled) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for remade in records {
        let record = &remade.record;
        let id = record.member.id.0;
        if let Some(digest) = &record.digest {
            with_digest.push(id);
            digests.push(digest.to_bytes());
        }
        if remade.row {
            rows.push(id);
            enrolled.push(record.member.enrolled_at.millis());
            consent.push(record.member.marketing_consent);
            last_sale.push(record.last_sale());
        }
        if !remade.tiers {
            continue;
        }
        for change in record.tier_changes() {
            changed.push(id);
            at.push(change.at.millis());
            before.push(i64::try_from(change.before).unwrap_or(i64::MAX));
            after.push(i64::try_from(change.after).unwrap_or(i64::MAX));
            changed_enrolled.push(record.member.enrolled_at.millis());
        }
    }
    exec(
        tx,
        "INSERT INTO report_digests (member_id, digest)
         SELECT * FROM UNNEST($1::uuid[], $2::bytea[])",
        &[&with_digest, &digests],
    )
    .await?;
    exec(
        tx,
        "INSERT INTO report_members (member_id, enrolled_at, consent, last_sale)
         SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::boolean[], $4::bigint[])
         ON CONFLICT (member_id) DO UPDATE SET enrolled_at = excluded.enrolled_at,
             consent = excluded.consent, last_sale = excluded.last_sale",
        &[&rows, &enrolled, &consent, &last_sale],
    )
    .await?;
    exec(
        tx,
        "INSERT INTO report_tier_changes (member_id, at, tier_before, tier_after, enrolled_at)
         SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])",
        &[&changed, &at, &before, &after, &changed_enrolled],
    )
    .await?;
    Ok(())
}

/// Adds `totals` to the stored ones, leaving out sums that come to zero.
async fn add_totals(tx: &Transaction<'_>, totals: &Totals) -> Result<(), DbError> {
    let (mut sums, mut ats, mut ofs, mut ns) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (key, n) in totals.iter() {
        sums.push(key.sum.code());
        ats.push(key.at);
        ofs.push(key.of);
        ns.push(n);
    }
    exec(
        tx,
        "INSERT INTO report_totals (sum, at, of, n)
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[])
         ON CONFLICT (sum, at, of) DO UPDATE SET n = report_totals.n + excluded.n",
        &[&sums, &ats, &ofs, &ns],
    )
    .await?;
    exec(tx, "DELETE FROM report_totals WHERE n = 0", &[]).await?;
    Ok(())
}
