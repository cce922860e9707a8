//! What the manager's screens read: members per tier (paged, sorted, filtered), recent activity,
//! and the manager PIN, which is stored only as an Argon2 hash.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use rusqlite::{OptionalExtension as _, params};
use serde::Serialize;
use thiserror::Error;

use super::rows::{ENTRY_COLUMNS, card_at, entry_from_row};
use super::{Result, Store, StoreError};
use crate::domain::member::name_tokens;
use crate::domain::{CardNumber, Entry, MemberId, Timestamp};

/// Shortest manager PIN accepted.
pub const MIN_PIN_DIGITS: usize = 4;

/// Why a manager PIN was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PinError {
    #[error("a manager PIN is {MIN_PIN_DIGITS} to 12 digits")]
    Shape,
    #[error("wrong manager PIN")]
    Wrong,
    #[error("no manager PIN is set yet")]
    NotSet,
    #[error("a manager PIN is already set")]
    AlreadySet,
    #[error("too many wrong manager PINs: try again in {seconds} seconds")]
    Locked { seconds: i64 },
}

/// Wrong PINs allowed in a row before each further try must wait.
pub const FREE_PIN_ATTEMPTS: i64 = 3;
/// The wait after the first wrong PIN past the free ones; it doubles with each further one.
const FIRST_PIN_DELAY_MS: i64 = 30_000;
/// The longest wait.
const MAX_PIN_DELAY_MS: i64 = 3_600_000;

/// How long to wait after `failures` wrong PINs in a row (0 while within the free attempts).
pub fn pin_delay_ms(failures: i64) -> i64 {
    if failures < FREE_PIN_ATTEMPTS {
        return 0;
    }
    let doublings = u32::try_from((failures - FREE_PIN_ATTEMPTS).min(20)).unwrap_or(20);
    FIRST_PIN_DELAY_MS
        .saturating_mul(1 << doublings)
        .min(MAX_PIN_DELAY_MS)
}

/// The PIN hash: Argon2id, 64 MiB, 3 passes, 1 lane. A 4-12 digit PIN has at most 40 bits, so
/// no stretching makes a copied hash safe from an offline search; this makes each guess cost
/// about a third of a second of a core and 64 MiB, and the attempt limit guards the till itself.
fn pin_hasher() -> Argon2<'static> {
    let params = argon2::Params::new(64 * 1024, 3, 1, None).unwrap_or_default();
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// How the tier list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum TierSort {
    /// By qualifying measure (the reverse of "distance to the next tier").
    Qualifying,
    Balance,
    LastVisit,
    Name,
}

/// One member in the tier list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierRow {
    pub member_id: MemberId,
    pub card: CardNumber,
    pub name: String,
    pub qualifying: i64,
    pub balance: i64,
    pub last_activity_at: Option<Timestamp>,
}

/// One line of recent activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivityRow {
    pub entry: Entry,
    pub name: String,
    pub card: CardNumber,
}

fn pin_shape(pin: &str) -> std::result::Result<(), PinError> {
    let ok = (MIN_PIN_DIGITS..=12).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit());
    if ok { Ok(()) } else { Err(PinError::Shape) }
}

/// The member ids a filter selects, as a subquery over an index, with its two bound values
/// (`?3`, `?4`): a card number prefix when the filter is digits, else a name-word prefix.
fn filter_source(filter: &str) -> Option<(String, Vec<String>)> {
    let filter = filter.trim();
    if filter.is_empty() {
        return None;
    }
    if filter.bytes().all(|b| b.is_ascii_digit() || b == b' ') {
        let digits: String = filter.chars().filter(char::is_ascii_digit).collect();
        let upper = format!("{digits}\u{7f}");
        return Some((
            "SELECT id FROM members WHERE card >= ?3 AND card < ?4".to_owned(),
            vec![digits, upper],
        ));
    }
    // The longest word finds the candidates through the token index; each other word must
    // start a word of the same member's name too ("isla h" is Isla Hall, not every Isla).
    let mut words = name_tokens(filter);
    if words.is_empty() {
        // Only separators ("-", "'"): no word to look for, so no filter.
        return None;
    }
    words.sort_by_key(|w| std::cmp::Reverse(w.len()));
    let mut sql = "SELECT DISTINCT t.member_id AS id FROM member_name_tokens t
                   WHERE t.token >= ?3 AND t.token < ?4"
        .to_owned();
    let mut bounds = Vec::with_capacity(words.len() * 2);
    for (i, word) in words.into_iter().enumerate() {
        if i > 0 {
            let (low, high) = (2 * i + 3, 2 * i + 4);
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM member_name_tokens o WHERE o.member_id = t.member_id
                   AND o.token >= ?{low} AND o.token < ?{high})"
            ));
        }
        let upper = format!("{word}\u{10FFFF}");
        bounds.push(word);
        bounds.push(upper);
    }
    Some((sql, bounds))
}

/// `tier` and `limit` (?1 and ?2), then a filter's own values (?3 on).
fn filter_params(tier: i64, limit: Option<i64>, filter: &[String]) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value;
    [
        Value::Integer(tier),
        limit.map_or(Value::Null, Value::Integer),
    ]
    .into_iter()
    .chain(filter.iter().cloned().map(Value::Text))
    .collect()
}

impl Store {
    /// True once a manager PIN has been set.
    pub fn has_manager_pin(&self) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM secrets WHERE name = 'manager_pin')",
            [],
            |r| r.get(0),
        )?)
    }

    /// Sets the first manager PIN (Argon2id hash with a random salt; the PIN is not stored).
    pub fn set_manager_pin(&mut self, pin: &str) -> Result<(), PinErrorOr> {
        pin_shape(pin)?;
        if self.has_manager_pin()? {
            return Err(PinError::AlreadySet.into());
        }
        let salt_bytes: [u8; 16] = rand::random();
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|_| PinError::Shape)?;
        let hash = pin_hasher()
            .hash_password(pin.as_bytes(), &salt)
            .map_err(|_| PinError::Shape)?
            .to_string();
        self.conn.execute(
            "INSERT INTO secrets (name, value) VALUES ('manager_pin', ?1)",
            params![hash.as_bytes()],
        )?;
        Ok(())
    }

    /// Checks a manager PIN against the stored hash (constant-time comparison inside Argon2).
    /// After [`FREE_PIN_ATTEMPTS`] wrong PINs in a row each further try waits, longer each time
    /// ([`pin_delay_ms`]); while it waits the PIN is not even checked. The count is kept in the
    /// store, so it holds for the app and every command-line process alike.
    pub fn check_manager_pin(&mut self, pin: &str, now: Timestamp) -> Result<(), PinErrorOr> {
        let (failures, locked_until): (i64, i64) = self.conn.query_row(
            "SELECT failures, locked_until FROM pin_attempts WHERE singleton = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if now.millis() < locked_until {
            let seconds = (locked_until - now.millis() + 999) / 1000;
            return Err(PinError::Locked { seconds }.into());
        }
        let stored: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT value FROM secrets WHERE name = 'manager_pin'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let stored = stored.ok_or(PinError::NotSet)?;
        let text = String::from_utf8(stored).map_err(|_| PinError::NotSet)?;
        let hash = PasswordHash::new(&text).map_err(|_| PinError::NotSet)?;
        // The hash names its own parameters, so PINs set with older ones still verify.
        if pin_hasher().verify_password(pin.as_bytes(), &hash).is_ok() {
            self.conn.execute(
                "UPDATE pin_attempts SET failures = 0, locked_until = 0 WHERE singleton = 1",
                [],
            )?;
            return Ok(());
        }
        let failures = failures + 1;
        self.conn.execute(
            "UPDATE pin_attempts SET failures = ?1, locked_until = ?2 WHERE singleton = 1",
            params![failures, now.millis() + pin_delay_ms(failures)],
        )?;
        Err(PinError::Wrong.into())
    }

    /// Members in `tier` matching `filter`, ordered, one page.
    pub fn tier_members(
        &self,
        tier: usize,
        filter: &str,
        sort: TierSort,
        descending: bool,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<TierRow>> {
        let dir = if descending { "DESC" } else { "ASC" };
        let order = match sort {
            TierSort::Qualifying => format!("s.qualifying {dir}, s.member_id {dir}"),
            TierSort::Balance => format!("s.balance {dir}, s.member_id {dir}"),
            TierSort::LastVisit => format!("s.last_activity_at {dir}, s.member_id {dir}"),
            TierSort::Name => format!("m.name {dir}, m.card {dir}"),
        };
        let columns = "m.id, m.card, m.name, s.qualifying, s.balance, s.last_activity_at";
        let source = filter_source(filter);
        // CROSS JOIN fixes the join order: start from the filter's index (a few thousand ids)
        // or, unfiltered, from a page of ids cut from the (tier, measure, member_id) index, so
        // a deep page skips index entries rather than joined rows.
        let sql = match (&source, sort) {
            (Some((ids, _)), _) => format!(
                "SELECT {columns} FROM ({ids}) f CROSS JOIN member_state s ON s.member_id = f.id
                 CROSS JOIN members m ON m.id = s.member_id
                 WHERE s.tier = ?1 ORDER BY {order} LIMIT ?2 OFFSET {offset}"
            ),
            (None, TierSort::Name) => format!(
                "SELECT {columns} FROM members m CROSS JOIN member_state s ON s.member_id = m.id
                 WHERE s.tier = ?1 ORDER BY {order} LIMIT ?2 OFFSET {offset}"
            ),
            (None, _) => format!(
                "SELECT {columns} FROM (SELECT s.member_id AS id FROM member_state s
                     WHERE s.tier = ?1 ORDER BY {order} LIMIT ?2 OFFSET {offset}) p
                 CROSS JOIN member_state s ON s.member_id = p.id
                 CROSS JOIN members m ON m.id = s.member_id ORDER BY {order}"
            ),
        };
        let mut stmt = self.conn.prepare_cached(&sql)?;
        // No tier has an index past i64::MAX: such a request matches nobody.
        let tier = i64::try_from(tier).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let map = |r: &rusqlite::Row<'_>| {
            Ok(TierRow {
                member_id: MemberId(r.get(0)?),
                card: card_at(r, 1)?,
                name: r.get(2)?,
                qualifying: r.get(3)?,
                balance: r.get(4)?,
                last_activity_at: r.get::<_, Option<i64>>(5)?.map(Timestamp::from_millis),
            })
        };
        let rows: rusqlite::Result<Vec<TierRow>> = match &source {
            Some((_, values)) => stmt
                .query_map(
                    rusqlite::params_from_iter(filter_params(tier, Some(limit), values)),
                    map,
                )?
                .collect(),
            None => stmt.query_map(params![tier, limit], map)?.collect(),
        };
        Ok(rows?)
    }

    /// How many members of `tier` match `filter`.
    pub fn tier_member_count(&self, tier: usize, filter: &str) -> Result<i64> {
        // No tier has an index past i64::MAX: such a request matches nobody.
        let tier = i64::try_from(tier).unwrap_or(i64::MAX);
        Ok(match filter_source(filter) {
            Some((ids, values)) => {
                // The same numbering as `tier_members`: ?1 tier, ?3 on the filter (?2 unused).
                let sql = format!(
                    "SELECT COUNT(*) FROM ({ids}) f CROSS JOIN member_state s
                     ON s.member_id = f.id WHERE s.tier = ?1 AND ?2 IS NULL"
                );
                self.conn.prepare_cached(&sql)?.query_row(
                    rusqlite::params_from_iter(filter_params(tier, None, &values)),
                    |r| r.get(0),
                )?
            }
            None => self
                .conn
                .prepare_cached("SELECT COUNT(*) FROM member_state WHERE tier = ?1")?
                .query_row(params![tier], |r| r.get(0))?,
        })
    }

    /// The newest `limit` entries in this store, with their members.
    pub fn recent_activity(&self, limit: usize) -> Result<Vec<ActivityRow>> {
        let columns = ENTRY_COLUMNS
            .split(", ")
            .map(|c| format!("l.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {columns}, m.name, m.card FROM ledger l JOIN members m ON m.id = l.member_id
             ORDER BY l.seq DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok(ActivityRow {
                entry: entry_from_row(r)?,
                name: r.get(16)?,
                card: card_at(r, 17)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// Points given to one cause, net of reversed gifts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CauseTotal {
    pub cause: String,
    pub points: i64,
    pub gifts: i64,
}

impl Store {
    /// What members gave each cause (in this store: this till's and what it pulled), most first.
    pub fn cause_totals(&self) -> Result<Vec<CauseTotal>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT g.reward_id,
                    SUM(CASE WHEN r.id IS NULL THEN -g.points ELSE 0 END),
                    SUM(CASE WHEN r.id IS NULL THEN 1 ELSE 0 END)
             FROM ledger g LEFT JOIN ledger r ON r.reverses = g.id
             WHERE g.kind = 'donation'
             GROUP BY g.reward_id
             ORDER BY 2 DESC, 1",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(CauseTotal {
                cause: r.get(0)?,
                points: r.get(1)?,
                gifts: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// A PIN refusal or a store failure.
#[derive(Debug, Error)]
pub enum PinErrorOr {
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for PinErrorOr {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.into())
    }
}

#[cfg(test)]
mod pin_tests {
    use super::*;

    #[test]
    fn the_wait_doubles_after_the_free_attempts_up_to_an_hour() {
        let waits: Vec<i64> = (0..=12).map(pin_delay_ms).collect();
        assert_eq!(&waits[..3], &[0, 0, 0]);
        assert_eq!(&waits[3..7], &[30_000, 60_000, 120_000, 240_000]);
        assert_eq!(waits[12], MAX_PIN_DELAY_MS);
        assert_eq!(pin_delay_ms(i64::MAX), MAX_PIN_DELAY_MS);
    }

    #[test]
    fn a_locked_pin_opens_after_the_wait_and_a_right_one_resets_the_count() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = Store::open(&dir.path().join("t.sqlite3")).expect("open");
        store.set_manager_pin("2468").expect("set");
        let t0 = Timestamp::from_millis(1_795_435_200_000);
        for _ in 0..3 {
            assert!(store.check_manager_pin("1111", t0).is_err());
        }
        let locked = store.check_manager_pin("2468", t0.plus_millis(29_000));
        assert!(
            matches!(
                locked,
                Err(PinErrorOr::Pin(PinError::Locked { seconds: 1 }))
            ),
            "{locked:?}"
        );
        store
            .check_manager_pin("2468", t0.plus_millis(30_000))
            .expect("the wait is over");
        for _ in 0..2 {
            assert!(store.check_manager_pin("1111", t0).is_err());
        }
        assert!(
            matches!(
                store.check_manager_pin("1111", t0),
                Err(PinErrorOr::Pin(PinError::Wrong))
            ),
            "the count started again after the right PIN"
        );
    }
}
