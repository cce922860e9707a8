//! Connection settings, versioned migrations and the store's singleton rows.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension as _, params};
use rusqlite_migration::{M, Migrations};

use crate::domain::Timestamp;

const STEPS: &[M<'static>] = &[
    M::up(include_str!("migrations/001_initial.sql")),
    M::up(include_str!("migrations/002_identification.sql")),
    M::up(include_str!("migrations/003_manager.sql")),
    M::up(include_str!("migrations/004_sync.sql")),
    M::up(include_str!("migrations/005_pull.sql")),
    M::up(include_str!("migrations/006_authority.sql")),
    M::up(include_str!("migrations/007_pin_attempts.sql")),
    M::up(include_str!("migrations/008_join.sql")),
    M::up(include_str!("migrations/009_erasure.sql")),
    M::up(include_str!("migrations/010_code_keys.sql")),
    M::up(include_str!("migrations/011_ledger_kinds.sql")),
    M::up(include_str!("migrations/012_guest_sales.sql")),
    M::up(include_str!("migrations/013_nps.sql")),
    M::up(include_str!("migrations/014_set_aside.sql")),
    M::up(include_str!("migrations/015_extras_outbox.sql")),
    M::up(include_str!("migrations/016_program_mechanics.sql")),
    M::up(include_str!("migrations/017_referrals.sql")),
    M::up(include_str!("migrations/018_nps_guest_sale.sql")),
    M::up(include_str!("migrations/019_lookup_indexes.sql")),
    M::up(include_str!("migrations/020_report_digests.sql")),
    M::up(include_str!("migrations/021_report_totals.sql")),
    M::up(include_str!("migrations/022_extras_by_day.sql")),
    M::up(include_str!("migrations/023_guest_sale_voids.sql")),
    M::up(include_str!("migrations/024_ledger_keys.sql")).foreign_key_check(),
];

/// Every schema version, in order. Never edit a released migration; add a new one, ending
/// with `.foreign_key_check()`: [`migrate`] runs them with foreign keys off.
pub const MIGRATIONS: Migrations<'static> = Migrations::from_slice(STEPS);

/// Brings the schema up to date with foreign keys off, and on again after. They must be off:
/// 024 copies the ledger into a table whose id index it builds after the rows, and a reference
/// to the id needs that index while foreign keys are on. It is also SQLite's advice for schema
/// changes (under them, dropping the old ledger deleted and checked every row: 28 of 44 s on
/// 1.6 million entries). The last migration checks every reference before its commit, so
/// nothing they would have refused is kept; all pending migrations commit together or not at
/// all.
fn migrate(conn: &mut Connection) -> Result<(), rusqlite_migration::Error> {
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let on: bool = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
    let migrated = if on {
        // Inside an open transaction the pragma does nothing.
        Err(rusqlite_migration::Error::Hook(
            "the store's schema cannot be brought up to date inside a transaction".to_owned(),
        ))
    } else {
        MIGRATIONS
            .to_latest(conn)
            .map_err(|e| name_broken_reference(conn, e))
    };
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrated
}

/// The file whose lock a process holds while it brings the store at `path` up to date.
pub fn upgrade_lock_path(path: &Path) -> PathBuf {
    super::file_lock::beside(path, "-upgrade.lock")
}

/// [`migrate`], one process at a time: with migrations pending, the lock on
/// [`upgrade_lock_path`] is taken first (waiting while another process upgrades) and the
/// version read again under it, so a second process finds the work done. (SQLite's own locks
/// cannot do this: the version is read before the migrations' transaction begins.) A store
/// already up to date, every open but the first after an upgrade, does nothing more.
pub fn migrate_alone(conn: &mut Connection, path: &Path) -> Result<(), super::StoreError> {
    let pending = MIGRATIONS
        .pending_migrations(conn)
        .map_err(super::StoreError::Migration)?;
    if pending == 0 {
        return Ok(());
    }
    let lock_path = upgrade_lock_path(path);
    let _alone = super::file_lock::hold_if(pending > 0, &lock_path).map_err(|cause| {
        super::StoreError::UpgradeLock {
            path: lock_path.clone(),
            cause,
        }
    })?;
    migrate(conn).map_err(super::StoreError::Migration)
}

/// A failed migration's error, naming the broken reference if there is one: rusqlite_migration's
/// own check reads a rowid, which the ledger and the other `WITHOUT ROWID` tables lack, so a
/// reference to a missing row comes back as "invalid column type". The migrations rolled
/// back, so the rows checked are the store's as they were.
fn name_broken_reference(
    conn: &Connection,
    failed: rusqlite_migration::Error,
) -> rusqlite_migration::Error {
    let broken = conn
        .query_row(
            "SELECT \"table\", parent FROM pragma_foreign_key_check LIMIT 1",
            [],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )
        .optional();
    match broken {
        Ok(Some((table, parent))) => rusqlite_migration::Error::Hook(format!(
            "a row of {table} refers to a row of {parent} that is not there, so the store's \
             schema was not brought up to date (nothing changed): {failed}"
        )),
        _ => failed,
    }
}

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 128;

/// Durable, concurrent-reader-friendly settings for every connection.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_handler(Some(super::write_lock::wait_for_lock))?;
    // A pull or a sale runs a few dozen distinct statements per record: with rusqlite's default
    // of 16 cached, each would be prepared again every time.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted and overwritten content is zeroed on disk, so erased personal data leaves no copy.
    conn.pragma_update(None, "secure_delete", "ON")?;
    // 64 MB of page cache (negative = KiB): a write touches a few pages in each of the ledger's
    // indexes, and on a store of a million members those are rarely the same pages twice.
    conn.pragma_update(None, "cache_size", -64 * 1024)?;
    conn.pragma_update(None, "temp_store", "DEFAULT")?;
    Ok(())
}

/// Gives a new store its terminal id: `till-` and 12 random hex digits.
pub fn ensure_terminal(conn: &Connection) -> rusqlite::Result<()> {
    let id = format!("till-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    conn.execute(
        "INSERT INTO terminal (singleton, terminal_id, last_seq) VALUES (1, ?1, 0)
         ON CONFLICT (singleton) DO NOTHING",
        params![id],
    )?;
    Ok(())
}

/// The member-code key, made (32 random bytes) the first time it is needed.
pub fn ensure_code_key(conn: &Connection) -> rusqlite::Result<[u8; 32]> {
    let fresh: [u8; 32] = rand::random();
    conn.execute(
        "INSERT INTO secrets (name, value) VALUES ('member_code_key', ?1)
         ON CONFLICT (name) DO NOTHING",
        params![&fresh[..]],
    )?;
    let stored: Vec<u8> = conn.query_row(
        "SELECT value FROM secrets WHERE name = 'member_code_key'",
        [],
        |r| r.get(0),
    )?;
    stored.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            "the stored member-code key is not 32 bytes".into(),
        )
    })
}

/// The member-code keyring: key 0, the keys added since, the current one, key 0 retired or not.
pub fn keyring(conn: &Connection) -> rusqlite::Result<crate::token::Keyring> {
    use crate::token::{CodeKey, Keyring};
    let mut ring = Keyring::new(CodeKey::from_bytes(ensure_code_key(conn)?));
    let mut stmt = conn.prepare("SELECT id, secret FROM code_keys")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    for row in rows {
        let (id, secret) = row?;
        let secret: [u8; 32] = secret.try_into().map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Blob,
                format!("member-code key {id} is not 32 bytes").into(),
            )
        })?;
        ring.insert(id, CodeKey::from_bytes(secret));
    }
    let (current, key0_retired): (u32, bool) = conn.query_row(
        "SELECT code_key_current, code_key0_retired FROM sync_state WHERE singleton = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    ring.set_current(current);
    if key0_retired && ring.current_id() != 0 {
        ring.retire(0);
    }
    Ok(ring)
}

/// Installs `toml` as the program if there is none yet.
pub fn ensure_program(conn: &Connection, toml: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO program (version, toml, installed_at)
         SELECT 1, ?1, 0 WHERE NOT EXISTS (SELECT 1 FROM program)",
        params![toml],
    )?;
    Ok(())
}

/// Adds `toml` as a new program version unless it is already the current one.
/// Returns the version in force afterwards.
pub fn install_program(conn: &Connection, toml: &str, at: Timestamp) -> rusqlite::Result<i64> {
    let current: Option<(i64, String)> = conn
        .query_row(
            "SELECT version, toml FROM program ORDER BY version DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match current {
        Some((version, text)) if text == toml => Ok(version),
        other => {
            let version = other.map_or(1, |(v, _)| v + 1);
            conn.execute(
                "INSERT INTO program (version, toml, installed_at) VALUES (?1, ?2, ?3)",
                params![version, toml, at.millis()],
            )?;
            Ok(version)
        }
    }
}

/// The program version in force and its TOML.
pub fn current_program(conn: &Connection) -> rusqlite::Result<(i64, String)> {
    conn.query_row(
        "SELECT version, toml FROM program ORDER BY version DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store's connection brought to schema `version` as `migrate` runs migrations, with
    /// `before_on` done while foreign keys are still off; they are on again after.
    fn store_at(version: usize, before_on: impl FnOnce(&Connection)) -> Connection {
        let mut conn = Connection::open_in_memory().expect("open");
        bring_to(&mut conn, version);
        before_on(&conn);
        conn.pragma_update(None, "foreign_keys", "ON").expect("on");
        conn
    }

    /// `conn` configured and brought to schema `version` as `migrate` runs migrations, with
    /// foreign keys left off.
    fn bring_to(conn: &mut Connection, version: usize) {
        configure(conn).expect("configure");
        conn.pragma_update(None, "foreign_keys", "OFF")
            .expect("off");
        MIGRATIONS.to_version(conn, version).expect("to version");
    }

    fn pragma(conn: &Connection, name: &str) -> i64 {
        conn.pragma_query_value(None, name, |r| r.get(0))
            .expect(name)
    }

    #[test]
    fn migrations_are_valid() {
        // `Migrations::validate` runs them with foreign keys as the connection has them (on in
        // this build); they run as `migrate` runs them.
        let mut conn = Connection::open_in_memory().expect("open");
        configure(&conn).expect("configure");
        migrate(&mut conn).expect("every migration applies");
        assert_eq!(pragma(&conn, "user_version"), STEPS.len() as i64);
    }

    /// Two processes opening a store that needs upgrading, at the same moment (each open is a
    /// connection and a lock file handle of its own, as another process's would be): both open
    /// it, one upgrades it, and the other finds it upgraded.
    #[test]
    fn two_opens_of_a_store_that_needs_upgrading_both_succeed() {
        for version in [0, 23] {
            let dir = tempfile::tempdir().expect("dir");
            let path = dir.path().join("till.db");
            if version > 0 {
                bring_to(&mut Connection::open(&path).expect("open"), version);
            }
            let start = std::sync::Arc::new(std::sync::Barrier::new(2));
            let opens: Vec<_> = (0..2)
                .map(|_| {
                    let (path, start) = (path.clone(), std::sync::Arc::clone(&start));
                    std::thread::spawn(move || {
                        start.wait();
                        super::super::Store::open(&path).map(|store| store.terminal.0)
                    })
                })
                .collect();
            let terminals: Vec<String> = opens
                .into_iter()
                .map(|open| open.join().expect("thread").expect("both open the store"))
                .collect();
            assert_eq!(terminals[0], terminals[1], "one store, one till");
            let conn = Connection::open(&path).expect("open");
            assert_eq!(pragma(&conn, "user_version"), STEPS.len() as i64);
            assert!(upgrade_lock_path(&path).exists());
        }
    }

    /// A store a newer program has upgraded is refused for what it is, lock or no lock.
    #[test]
    fn a_store_from_a_newer_program_is_refused_as_such() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("till.db");
        drop(super::super::Store::open(&path).expect("a store"));
        Connection::open(&path)
            .expect("open")
            .pragma_update(None, "user_version", STEPS.len() as i64 + 1)
            .expect("as a newer program leaves it");
        let refused = super::super::Store::open(&path).err().expect("refused");
        assert!(
            matches!(
                refused,
                super::super::StoreError::Migration(
                    rusqlite_migration::Error::MigrationDefinition(
                        rusqlite_migration::MigrationDefinitionError::DatabaseTooFarAhead
                    )
                )
            ),
            "{refused}"
        );
    }

    /// A store whose ledger names a member it does not hold (written with foreign keys off by
    /// some other program) is not upgraded, and the error names the broken reference.
    #[test]
    fn a_broken_reference_stops_the_upgrade_and_is_named() {
        let mut conn = store_at(23, |conn| {
            conn.execute(
                "INSERT INTO ledger (member_id, occurred_at, id, seq, terminal_id, terminal_seq,
                                     kind, points, actor)
                 VALUES (X'07', 1, X'01', 1, 'till-a', 1, 'earn', 10, 'test')",
                [],
            )
            .expect("an entry of nobody");
        });
        let refused = migrate(&mut conn).expect_err("refused");
        assert!(
            refused
                .to_string()
                .contains("a row of ledger refers to a row of members that is not there"),
            "{refused}"
        );
        assert_eq!(pragma(&conn, "user_version"), 23, "nothing changed");
        assert_eq!(
            pragma(&conn, "foreign_keys"),
            1,
            "foreign keys are on again"
        );
        conn.execute_batch("BEGIN").expect("a transaction");
        let inside = migrate(&mut conn).expect_err("not inside a transaction");
        assert!(
            inside.to_string().contains("inside a transaction"),
            "{inside}"
        );
    }

    /// An entry as the rebuild test writes it: (occurred_at, id, seq, terminal, terminal_seq,
    /// kind, reverses).
    type Written<'a> = (i64, [u8; 16], i64, &'a str, i64, &'a str, Option<&'a [u8]>);

    /// Writes `entry` of `member`, worth 10 points, straight into the ledger.
    fn write(conn: &Connection, member: [u8; 16], entry: Written<'_>) -> rusqlite::Result<usize> {
        let (at, id, seq, terminal, tseq, kind, reverses) = entry;
        conn.execute(
            "INSERT INTO ledger (member_id, occurred_at, id, seq, terminal_id, terminal_seq,
                                 kind, points, reverses, actor)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 10, ?8, 'test')",
            params![
                &member[..],
                at,
                &id[..],
                seq,
                terminal,
                tseq,
                kind,
                reverses
            ],
        )
    }

    /// Entry rows as (id, member, occurred_at, seq, terminal, terminal_seq, reverses).
    type Row = (Vec<u8>, Vec<u8>, i64, i64, String, i64, Option<Vec<u8>>);

    fn ledger_rows(conn: &Connection) -> Vec<Row> {
        conn.prepare(
            "SELECT id, member_id, occurred_at, seq, terminal_id, terminal_seq, reverses
             FROM ledger ORDER BY seq",
        )
        .expect("prepare")
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
    }

    /// Migration 024 rebuilds the ledger with its keys as indexes of their own: every row moves
    /// unchanged (a reversal sorting before what it reverses among them), and each key still
    /// refuses a second use while entries that reverse nothing are many.
    #[test]
    fn the_ledger_keeps_its_rows_and_keys_when_rebuilt() {
        let mut conn = store_at(23, |_| {});
        ensure_terminal(&conn).expect("terminal");
        let member = [7_u8; 16];
        conn.execute(
            "INSERT INTO members (id, card, name, marketing_consent, created_at)
             VALUES (?1, 'card-1', 'Ada', 0, 0)",
            params![&member[..]],
        )
        .expect("member");
        let sale = [1_u8; 16];
        let other = [2_u8; 16];
        let reversal = [3_u8; 16];
        for entry in [
            (2_000, sale, 1, "till-a", 1, "earn", None),
            (3_000, other, 2, "till-a", 2, "earn", None),
            // Another till's clock: the reversal sorts before the sale it reverses.
            (1_000, reversal, 3, "till-b", 1, "reverse", Some(&sale[..])),
        ] {
            write(&conn, member, entry).expect("entry");
        }
        let before = ledger_rows(&conn);
        migrate(&mut conn).expect("to latest");
        assert_eq!(
            pragma(&conn, "foreign_keys"),
            1,
            "foreign keys are on again"
        );
        assert_eq!(ledger_rows(&conn), before);
        // (name, unique, partial) of each unique index but the table's own key.
        let unique: Vec<(String, bool, bool)> = conn
            .prepare("SELECT name, \"unique\", partial FROM pragma_index_list('ledger') WHERE origin <> 'pk' AND \"unique\" ORDER BY name")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("indexes");
        assert_eq!(
            unique,
            [
                ("ledger_id", false),
                ("ledger_reverses", true),
                ("ledger_seq", false),
                ("ledger_terminal_seq", false)
            ]
            .map(|(name, partial)| (name.to_owned(), true, partial)),
            "the keys are indexes of their own, and only set reversals are indexed"
        );

        let again = |at, id, seq, terminal, tseq, reverses| {
            write(
                &conn,
                member,
                (at, id, seq, terminal, tseq, "earn", reverses),
            )
        };
        assert!(
            again(4_000, sale, 4, "till-c", 1, None).is_err(),
            "id twice"
        );
        assert!(
            again(4_000, [4; 16], 3, "till-c", 1, None).is_err(),
            "seq twice"
        );
        assert!(
            again(4_000, [4; 16], 4, "till-a", 2, None).is_err(),
            "till seq twice"
        );
        assert!(
            again(4_000, [4; 16], 4, "till-c", 1, Some(&sale[..])).is_err(),
            "reversed twice"
        );
        assert!(
            again(4_000, [4; 16], 4, "till-c", 1, Some(&[9_u8; 16][..])).is_err(),
            "reverses an entry that is not here"
        );
        again(4_000, [4; 16], 4, "till-c", 1, Some(&other[..])).expect("a first reversal");
        again(5_000, [5; 16], 5, "till-c", 2, None).expect("another entry reversing nothing");
        assert!(
            conn.execute("UPDATE ledger SET points = 11 WHERE seq = 1", [])
                .is_err(),
            "immutable"
        );
        assert!(
            conn.execute("DELETE FROM ledger WHERE seq = 1", [])
                .is_err(),
            "never deleted"
        );
    }
}
