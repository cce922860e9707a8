//! The till's SQLite store: the append-only ledger, members, and the derived balance cache.
//!
//! Durability: WAL with `synchronous=FULL`, so a returned write is on disk. Every write runs in
//! one `BEGIN IMMEDIATE` transaction that appends the entry, advances the terminal's gapless
//! sequence and refreshes the member's cached state together, or does none of it. A bulk pull
//! alone commits without waiting for the disk ([`Store::begin_bulk_pull`]): what it wrote is on
//! the server, and a page a power cut undoes is pulled again with its cursor.

mod authority;
mod bulk;
mod bulk_pull;
mod digests;
pub(crate) mod file_lock;
mod identify;
mod insights;
mod ledger;
mod manager;
mod members;
mod privacy;
pub(crate) mod records;
mod rows;
mod schema;
mod sync;
mod verify;
mod write_lock;

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use thiserror::Error;

use crate::domain::entry::ShapeError;
use crate::domain::member::MemberError;
use crate::domain::{ConfigError, EntryId, MemberId, Program, Refusal, TerminalId, Timestamp};
use crate::token::{CodeKey, Keyring};

pub use crate::domain::partners::PartnerImport;
pub use authority::{Adopted, Applied, Quarantined};
pub use bulk::{HistoricMember, ImportReport};
#[cfg(feature = "app")]
pub(crate) use identify::looks_like_code;
pub use identify::{ScanError, ScanOutcome};
pub use insights::{Answerer, PastAnswer, PastGuestSale};
pub use ledger::{InsertOutcome, MemberOffers, MemberReferrals, MemberStanding};
pub use manager::{ActivityRow, CauseTotal, PinError, TierRow, TierSort};
pub use members::{MemberView, SearchHit, SearchKind};
pub use privacy::{MarketingContact, MemberExport};
pub use sync::{KeyMismatch, Outbox, SyncCounters, SyncSettings};
pub use verify::{Drift, VerifyReport};

/// Anything the store refuses or fails at.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database {path}: {cause}")]
    Open {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    #[error("database schema upgrade failed: {0}")]
    Migration(rusqlite_migration::Error),
    #[error("could not take the store's upgrade lock {path}: {cause}")]
    UpgradeLock {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    #[error(
        "the stored program is invalid ({0}); install a valid one with `tillpass program set FILE`"
    )]
    StoredProgram(ConfigError),
    #[error(transparent)]
    Program(#[from] ConfigError),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Member(#[from] MemberError),
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error(transparent)]
    Merge(#[from] crate::domain::merge::MergeError),
    #[error("no member with card {0}")]
    UnknownCard(String),
    #[error("referred by: {0}")]
    Referrer(String),
    #[error("no member {0}")]
    UnknownMember(MemberId),
    #[error("no ledger entry {0}")]
    UnknownEntry(EntryId),
    #[error("phone {phone} already belongs to the member with card {card}")]
    PhoneTaken { phone: String, card: String },
    #[error("email {email} already belongs to the member with card {card}")]
    EmailTaken { email: String, card: String },
    #[error("entry {0} already exists with different content; refusing to overwrite it")]
    IdConflict(EntryId),
    #[error("entry {id}: {reason}")]
    BadEntry { id: EntryId, reason: String },
    #[error(
        "entry {0} was recorded at another till; only that till can reverse or return it (make an adjustment here instead)"
    )]
    ForeignEntry(EntryId),
    #[error(transparent)]
    KeyMismatch(#[from] KeyMismatch),
    #[error("the store already has members; a demo can only be loaded into an empty store")]
    NotEmpty,
    #[error(
        "this till is joined to a server: demo members would exist on this till alone; load demo data on a till of its own"
    )]
    DemoOnJoinedTill,
    #[error(
        "this till holds demo data (history made up for demo tills, which no server can take), so it cannot start a chain; join from a new store, or enrol the shop's members on a till of its own"
    )]
    DemoCannotJoin,
    #[error("could not find an unused card number; the card number space is nearly full")]
    CardsExhausted,
    #[error("corrupt record: {0}")]
    BadRecord(String),
    #[error(transparent)]
    Import(#[from] crate::domain::import::ImportError),
    #[error("a recommend answer is 0 to 10, got {0}")]
    NpsScore(i64),
    #[error("no sale without a member {0} was recorded at this till")]
    UnknownGuestSale(uuid::Uuid),
    #[error("that sale without a member was already undone")]
    GuestSaleVoided,
    #[error("NFC tag {uid} is already linked to the member with card {card}")]
    TagTaken { uid: String, card: String },
    #[error(transparent)]
    Corrupt(Corruption),
}

/// A stored value the store never writes: damage, a hand edit, or a cache left behind by a
/// program change cut short. Every case is in the derived member state, which
/// `tillpass verify --repair` rebuilds from the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Corruption {
    #[error(
        "member_state row for member {member} has tier {tier}, which is not a tier index; \
         `tillpass verify --repair` rebuilds it"
    )]
    NegativeTier { member: MemberId, tier: i64 },
    #[error(
        "member_state has {members} member(s) in tier {tier}, but the program's tiers are 0 to \
         {top}; `tillpass verify --repair` rebuilds cached member states"
    )]
    TierOutsideProgram { tier: i64, members: i64, top: usize },
}

// These messages already carry their cause, so it is not chained as a source as well (an error
// report would print it twice). Row readers report corrupt values as a conversion failure
// carrying a [`Corruption`] (the only error a row mapping can return); it is unwrapped here.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::FromSqlConversionFailure(column, ty, cause) => {
                match cause.downcast::<Corruption>() {
                    Ok(corruption) => Self::Corrupt(*corruption),
                    Err(cause) => {
                        Self::Sqlite(rusqlite::Error::FromSqlConversionFailure(column, ty, cause))
                    }
                }
            }
            other => Self::Sqlite(other),
        }
    }
}

impl From<rusqlite_migration::Error> for StoreError {
    fn from(e: rusqlite_migration::Error) -> Self {
        Self::Migration(e)
    }
}

/// Result alias for store calls.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Counts for a status line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreStats {
    pub path: PathBuf,
    pub terminal_id: TerminalId,
    pub program: String,
    pub program_version: i64,
    pub members: i64,
    pub entries: i64,
}

/// An open till store.
pub struct Store {
    conn: Connection,
    program: Program,
    program_version: i64,
    terminal: TerminalId,
    /// Key 0: the program's first member-code key (also the pass web-service key of tills).
    code_key: CodeKey,
    /// Every member-code key held, and the current one.
    keys: Keyring,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `path`. A new store gets a fresh terminal id and
    /// the demo program; use [`Store::open_with_program`] to start with another.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_inner(path, None)
    }

    /// Opens the store at `path`, installing `program_toml` as a new program version if it
    /// differs from the current one. The TOML is validated before anything is written.
    pub fn open_with_program(path: &Path, program_toml: &str, at: Timestamp) -> Result<Self> {
        Program::from_toml(program_toml)?;
        let mut store = Self::open_inner(path, Some((program_toml, at)))?;
        store.reload_program()?;
        Ok(store)
    }

    /// Whether another process is bringing the store at `path` up to date now: an open waits
    /// until it is done (a minute on a big store), so a command can say why it waits.
    pub fn upgrade_underway(path: &Path) -> bool {
        file_lock::is_held(&schema::upgrade_lock_path(path))
    }

    fn open_inner(path: &Path, program: Option<(&str, Timestamp)>) -> Result<Self> {
        let open_err = |cause| StoreError::Open {
            path: path.to_owned(),
            cause,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        schema::configure(&conn).map_err(open_err)?;
        schema::migrate_alone(&mut conn, path)?;
        schema::ensure_terminal(&conn)?;
        let installed = match program {
            Some((toml, at)) => Some(schema::install_program(&conn, toml, at)?),
            None => None,
        };
        if installed.is_none() {
            schema::ensure_program(&conn, crate::domain::program::DEMO_PROGRAM_TOML)?;
        }
        let (program_version, toml) = schema::current_program(&conn)?;
        let program = Program::from_toml(&toml).map_err(StoreError::StoredProgram)?;
        let terminal = conn.query_row("SELECT terminal_id FROM terminal", [], |r| {
            r.get::<_, String>(0)
        })?;
        let code_key = CodeKey::from_bytes(schema::ensure_code_key(&conn)?);
        let keys = schema::keyring(&conn)?;
        let mut store = Self {
            conn,
            program,
            program_version,
            terminal: TerminalId(terminal),
            code_key,
            keys,
            path: path.to_owned(),
        };
        // A pull cut short leaves members to re-fold; finish that before anyone reads them.
        store.refresh_stale()?;
        Ok(store)
    }

    fn reload_program(&mut self) -> Result<()> {
        let (version, toml) = schema::current_program(&self.conn)?;
        self.program = Program::from_toml(&toml).map_err(StoreError::StoredProgram)?;
        self.program_version = version;
        Ok(())
    }

    /// Re-reads the program in force and the member-code key, which another connection (the
    /// sync worker) may have changed; true when the program did.
    pub fn reload(&mut self) -> Result<bool> {
        let before = self.program_version;
        self.reload_program()?;
        self.code_key = CodeKey::from_bytes(schema::ensure_code_key(&self.conn)?);
        self.keys = schema::keyring(&self.conn)?;
        Ok(self.program_version != before)
    }

    /// Installs a new program version and re-derives every member's cached tier under it.
    pub fn set_program(&mut self, program_toml: &str, at: Timestamp) -> Result<()> {
        Program::from_toml(program_toml)?;
        schema::install_program(&self.conn, program_toml, at)?;
        self.reload_program()?;
        self.rebuild_state(None)?;
        Ok(())
    }

    /// The program in force.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The TOML text of the program in force.
    pub fn program_toml(&self) -> Result<String> {
        Ok(schema::current_program(&self.conn)?.1)
    }

    /// The local integration API's bearer token, made (256 random bits) on first use.
    pub fn pos_token(&mut self) -> Result<String> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let stored: Option<String> =
            tx.query_row("SELECT pos_token FROM terminal", [], |r| r.get(0))?;
        let token = match stored {
            Some(token) => token,
            None => {
                let token = data_encoding::BASE32_NOPAD.encode(&rand::random::<[u8; 32]>());
                tx.execute("UPDATE terminal SET pos_token = ?1", [&token])?;
                token
            }
        };
        tx.commit()?;
        Ok(token)
    }

    /// This till's terminal id.
    pub fn terminal_id(&self) -> &TerminalId {
        &self.terminal
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Member and entry counts.
    pub fn stats(&self) -> Result<StoreStats> {
        Ok(StoreStats {
            path: self.path.clone(),
            terminal_id: self.terminal.clone(),
            program: self.program.name.clone(),
            program_version: self.program_version,
            members: self.member_count()?,
            entries: self
                .conn
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM ledger", [], |r| r.get(0))?,
        })
    }

    /// How many members the store holds.
    pub fn member_count(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM members", [], |r| r.get(0))?)
    }

    /// Members per tier index, from the cached state. A cached tier outside the program's tiers
    /// is an error: counting it in another tier would misreport both.
    pub fn tier_counts(&self) -> Result<Vec<i64>> {
        let mut counts = vec![0_i64; self.program.tiers.len()];
        let top = counts.len().saturating_sub(1);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT tier, COUNT(*) FROM member_state GROUP BY tier")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (tier, members) = row?;
            let count = usize::try_from(tier)
                .ok()
                .and_then(|index| counts.get_mut(index))
                .ok_or(StoreError::Corrupt(Corruption::TierOutsideProgram {
                    tier,
                    members,
                    top,
                }))?;
            *count += members;
        }
        Ok(counts)
    }

    /// The underlying connection, for tests that probe the schema's guarantees directly.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

#[cfg(test)]
mod tests {
    use super::rows::tests::{set_cached_tier, store_with_member};
    use super::*;

    #[test]
    fn tier_counts_refuse_a_cached_tier_outside_the_program() {
        let (_dir, mut store, member) = store_with_member();
        let top = store.program().tiers.len() - 1;
        let beyond = i64::try_from(top).expect("tier index") + 1;
        for tier in [-1, beyond] {
            set_cached_tier(&store, member, tier);
            let err = store.tier_counts().expect_err("no such tier");
            assert!(
                matches!(
                    err,
                    StoreError::Corrupt(Corruption::TierOutsideProgram { tier: t, members: 1, top: p })
                        if t == tier && p == top
                ),
                "{err:?}"
            );
        }
        store.verify(true).expect("repair");
        let mut expected = vec![0; top + 1];
        expected[0] = 1;
        assert_eq!(store.tier_counts().expect("counts"), expected);
    }
}
