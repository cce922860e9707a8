//! The real server as a process on 127.0.0.1 (random port), on SQLite or PostgreSQL, and tills
//! that sync with it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use tillpass::domain::Timestamp;
use tillpass::store::Store;
use tillpass::sync::{SyncClient, SyncReport, client_for, sync_once};

use super::TempDb;

/// The environment variable naming a PostgreSQL server for tests (a URL to any database the
/// role can create databases from), e.g. `postgres://tillpass:tillpass@127.0.0.1/postgres`.
pub const POSTGRES_ENV: &str = "TILLPASS_TEST_POSTGRES";

/// Which storage the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Real time: the server refuses entries stamped far from its clock.
pub fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

/// A fresh database URL for `backend`, or `None` when PostgreSQL is not available outside CI.
/// Under CI a missing PostgreSQL fails the test.
pub fn database(backend: Backend, dir: &Path) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!("sqlite:{}", dir.join("server.sqlite3").display())),
        Backend::Postgres => {
            let Ok(base) = std::env::var(POSTGRES_ENV) else {
                assert!(
                    std::env::var("CI").is_err(),
                    "{POSTGRES_ENV} must name a PostgreSQL server under CI (.ci/run starts one)"
                );
                eprintln!("skipping the PostgreSQL half: set {POSTGRES_ENV} to run it");
                return None;
            };
            let name = format!(
                "{TEST_DB_PREFIX}{}_{:016x}",
                std::process::id(),
                rand::random::<u64>()
            );
            runtime().block_on(async {
                let client = tillpass::server::pg_tls::connect(&base)
                    .await
                    .expect("connect to the test PostgreSQL");
                static SWEPT: AtomicBool = AtomicBool::new(false);
                if !SWEPT.swap(true, Ordering::Relaxed) {
                    drop_left_behind(&client).await;
                }
                client
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create a test database");
            });
            Some(tillpass::server::pg_tls::with_database(&base, &name).expect("a database URL"))
        }
    }
}

/// Test databases are named `tillpass_test_<pid>_<random>`.
const TEST_DB_PREFIX: &str = "tillpass_test_";

/// Drops the test databases of test processes no longer running, at a process's first test
/// database: most tests restart servers on theirs and leave it behind, and a test that fails
/// (or a run that is killed) never reaches its own [`drop_database`].
async fn drop_left_behind(client: &tokio_postgres::Client) {
    let names = client
        .query(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            &[&TEST_DB_PREFIX],
        )
        .await
        .expect("list the test databases");
    for row in names {
        let name: String = row.get(0);
        let pid = name
            .strip_prefix(TEST_DB_PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            // Another process may be sweeping too: a database already gone is fine.
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// The server binary built with the tests.
pub fn server_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tillpass-server"))
}

/// Registers a terminal with the admin command and returns its token.
pub fn add_terminal(db: &str, name: &str) -> String {
    let out = server_bin()
        .args(["--db", db, "terminal", "add", name])
        .output()
        .expect("run tillpass-server terminal add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .nth(1)
        .expect("the token line")
        .trim()
        .to_owned()
}

/// Registers `count` terminals in one go (the admin command's work, without a process and a
/// schema check per terminal) and returns their tokens.
pub fn add_terminals(db: &str, count: usize) -> Vec<String> {
    runtime().block_on(async {
        let db = tillpass::server::Db::open(db, now())
            .await
            .expect("open the server database");
        let mut tokens = Vec::with_capacity(count);
        for i in 0..count {
            let token = tillpass::server::new_token();
            db.add_terminal(
                &format!("till {i}"),
                &tillpass::server::token_hash(&token),
                now(),
            )
            .await
            .expect("add a terminal");
            tokens.push(token);
        }
        tokens
    })
}

/// Drops a PostgreSQL database that [`database`] made (its server stopped first); nothing to do
/// for SQLite, whose file goes with its temporary directory.
pub fn drop_database(db: &str) {
    if !db.starts_with("postgres") {
        return;
    }
    let base = std::env::var(POSTGRES_ENV).expect("a PostgreSQL database came from it");
    let url = db.split_once('?').map_or(db, |(url, _)| url);
    let (_, name) = url.rsplit_once('/').expect("a URL with a database name");
    runtime().block_on(async {
        let client = tillpass::server::pg_tls::connect(&base)
            .await
            .expect("connect to the test PostgreSQL");
        client
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await
            .expect("drop a test database");
    });
}

/// Empties a PostgreSQL database that [`database`] made (its server stopped first), as if it
/// were new: everything any server made is in its public schema.
pub fn empty_database(db: &str) {
    runtime().block_on(async {
        let client = tillpass::server::pg_tls::connect(db)
            .await
            .expect("connect to the test database");
        client
            .batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            .await
            .expect("empty the test database");
    });
}

/// The server's chain report state, read straight from its database: whether its records
/// were made under some program, the last arrival number they count, and the last stored.
pub fn report_state(db: &str) -> (bool, i64, i64) {
    const STATE: &str = "SELECT program IS NOT NULL, last_seq, (SELECT last FROM server_seq)
                         FROM report_state";
    match db.strip_prefix("sqlite:") {
        Some(path) => rusqlite::Connection::open(path)
            .and_then(|conn| conn.query_row(STATE, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
            .expect("read the server's report state"),
        None => runtime().block_on(async {
            let row = tillpass::server::pg_tls::connect(db)
                .await
                .expect("connect to the test database")
                .query_one(STATE, &[])
                .await
                .expect("read the server's report state");
            (row.get(0), row.get(1), row.get(2))
        }),
    }
}

/// Whether the server's chain report records count every entry and member record it holds
/// (made under some program).
pub fn report_records_current(db: &str) -> bool {
    let (made, counted, last) = report_state(db);
    made && counted == last
}

/// Runs `sql` (statements both backends take) straight on the server's database, as an
/// operator's mistake or a bad disk would change it.
pub fn tamper(db: &str, sql: &str) {
    match db.strip_prefix("sqlite:") {
        Some(path) => rusqlite::Connection::open(path)
            .and_then(|conn| conn.execute_batch(sql))
            .expect("change the server's database"),
        None => runtime().block_on(async {
            tillpass::server::pg_tls::connect(db)
                .await
                .expect("connect to the test database")
                .batch_execute(sql)
                .await
                .expect("change the server's database")
        }),
    }
}

/// Waits (up to 20 s) for something the server does after answering, such as acting on an
/// APNs answer it read in the background.
pub fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    done()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs an admin command and returns whether it succeeded.
pub fn admin(db: &str, args: &[&str]) -> bool {
    server_bin()
        .args(["--db", db])
        .args(args)
        .output()
        .expect("run tillpass-server")
        .status
        .success()
}

/// Runs an admin command that must succeed and returns what it printed.
pub fn admin_output(db: &str, args: &[&str]) -> String {
    let out = server_bin()
        .args(["--db", db])
        .args(args)
        .output()
        .expect("run tillpass-server");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where test servers run: a server on PostgreSQL keeps its demo wallet keys (and TLS
/// certificate) in its working directory, which must not be the source tree. Shared by every
/// run, as the keys may be.
fn server_cwd() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join("tillpass-test-servers");
    std::fs::create_dir_all(&dir).expect("the test servers' directory");
    dir
}

/// A running server process; killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    pub db: String,
}

impl Server {
    /// Starts `tillpass-server serve` on a free loopback port, plain HTTP (the sync tests are
    /// about sync; TLS, pins and join codes are tested in tests/security.rs), and waits for its
    /// "listening" line.
    pub fn start(db: &str) -> Self {
        Self::start_with(db, &[])
    }

    /// [`Server::start`] with more `serve` arguments.
    pub fn start_with(db: &str, serve_args: &[&str]) -> Self {
        let mut child = server_bin()
            .args([
                "--db",
                db,
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--insecure-http",
            ])
            .args(serve_args)
            .env("RUST_LOG", "error")
            .current_dir(server_cwd())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tillpass-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server {
            child,
            url,
            db: db.to_owned(),
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A till with its own store file.
pub struct Till {
    pub db: TempDb,
    pub store: Store,
}

impl Till {
    /// A new till that joins `url` with `token` (takes the server's program and key).
    pub fn join(url: &str, token: &str) -> Self {
        let db = TempDb::new();
        let mut store = db.open();
        store.set_sync_server(url, token).expect("save server");
        let mut till = Till { db, store };
        till.sync().expect("first sync");
        till
    }

    pub fn client(&self) -> SyncClient {
        client_for(&self.store).expect("client")
    }

    pub fn sync(&mut self) -> Result<SyncReport, tillpass::sync::SyncError> {
        let client = client_for(&self.store)?;
        sync_once(&mut self.store, &client, now())
    }

    /// Points to a restarted server (new port), keeping the token.
    pub fn repoint(&mut self, url: &str) {
        let token = self
            .store
            .sync_settings()
            .expect("settings")
            .token
            .expect("token");
        self.store
            .set_sync_server(url, &token)
            .expect("save server");
    }

    /// Every entry id in the ledger.
    pub fn entry_ids(&self) -> BTreeSet<uuid::Uuid> {
        let conn = self.store.connection();
        let mut stmt = conn.prepare("SELECT id FROM ledger").expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("ids")
    }

    /// Each member's balance summed from the ledger itself.
    pub fn balances(&self) -> BTreeMap<uuid::Uuid, i64> {
        let conn = self.store.connection();
        let mut stmt = conn
            .prepare("SELECT m.id, COALESCE(SUM(l.points), 0) FROM members m LEFT JOIN ledger l ON l.member_id = m.id GROUP BY m.id")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("balances")
    }

    /// Closes the store, puts the older copy `backup` (from [`backup_sqlite`]) back in place of
    /// its file, and opens it again.
    pub fn restore(&mut self, backup: &Path) {
        let scratch = self.db.dir.path().join("scratch.sqlite3");
        drop(std::mem::replace(
            &mut self.store,
            Store::open(&scratch).expect("scratch"),
        ));
        put_back(backup, &self.db.path);
        self.store = self.db.open();
    }

    /// Faster local writes for building big test ledgers (durability is not under test here).
    pub fn unsafe_fast_writes(&self) {
        self.store
            .connection()
            .pragma_update(None, "synchronous", "OFF")
            .expect("pragma");
    }
}

/// A consistent copy of a live SQLite database (WAL included), as a backup tool makes one.
pub fn backup_sqlite(from: &rusqlite::Connection, to: &Path) {
    from.execute("VACUUM INTO ?1", [to.to_str().expect("utf-8 path")])
        .expect("back up");
}

/// Puts `backup` back in place of `path`, as an operator restoring a file does.
pub fn put_back(backup: &Path, path: &Path) {
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    std::fs::copy(backup, path).expect("restore the copy");
}
