//! Secure by default, driven through the real binaries over real TLS on 127.0.0.1: the server
//! makes and keeps a self-signed certificate, a till joins with a join code and pins the
//! server's key, a wrong pin and plain HTTP to another machine are refused with their reasons.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Output, Stdio};

use common::TempDb;

fn server_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tillpass-server"))
}

fn till(db: &TempDb, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tillpass"))
        .arg("--db")
        .arg(&db.path)
        .args(args)
        .env_remove("TILLPASS_DB")
        .output()
        .expect("run tillpass")
}

/// A TLS server on a free port: its URL and key pin, killed when dropped.
struct TlsServer {
    child: Child,
    url: String,
    pin: String,
}

impl TlsServer {
    fn start(db: &str) -> Self {
        let mut child = server_bin()
            .args(["--db", db, "serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut line = || lines.next().expect("a line").expect("read");
        let url = line()
            .strip_prefix("listening on ")
            .expect("listening line")
            .to_owned();
        let pin = line()
            .strip_prefix("key pin ")
            .expect("pin line")
            .to_owned();
        TlsServer { child, url, pin }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `terminal add NAME --url URL` and the join code it prints.
fn join_code(db: &str, url: &str, extra: &[&str]) -> String {
    let out = server_bin()
        .args(["--db", db, "terminal", "add", "Front till", "--url", url])
        .args(extra)
        .output()
        .expect("terminal add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("TPJ1."))
        .expect("a join code line")
        .to_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

#[test]
fn a_till_joins_over_tls_with_the_pinned_key_and_a_wrong_pin_is_refused() {
    let dir = TempDb::new();
    let db = format!("sqlite:{}", dir.dir.path().join("server.sqlite3").display());
    let server = TlsServer::start(&db);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    assert!(tillpass::sync::tls::is_pin(&server.pin), "{}", server.pin);
    let qr = dir.dir.path().join("join.png");
    let code = join_code(&db, &server.url, &["--qr", qr.to_str().expect("path")]);
    let decoded = tillpass::token::qr::decode_file(&qr).expect("the QR code reads back");
    assert_eq!(decoded, vec![code.clone()]);
    let parsed = tillpass::sync::join::JoinCode::parse(&code).expect("join code");
    assert_eq!(parsed.pin.as_deref(), Some(server.pin.as_str()));

    let a = TempDb::new();
    let joined = till(&a, &["join", &code]);
    assert!(joined.status.success(), "{}", stderr(&joined));
    let again = till(&a, &["sync"]);
    assert!(
        again.status.success(),
        "the pin is kept: {}",
        stderr(&again)
    );

    // A join code whose pin names another key: refused with the reason, nothing kept.
    let mut wrong = parsed.clone();
    wrong.pin = Some(format!(
        "sha256/{}",
        data_encoding::BASE64.encode(&[9u8; 32])
    ));
    let b = TempDb::new();
    let refused = till(&b, &["join", &wrong.encode()]);
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(err.contains("not the pinned"), "{err}");
    let status = till(&b, &["sync", "--status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("Server:   (none)"),
        "a refused join keeps nothing"
    );

    // The certificate is kept: a restarted server presents the same key.
    drop(server);
    let restarted = TlsServer::start(&db);
    assert_eq!(restarted.pin, parsed.pin.expect("pin"));
}

#[test]
fn plain_http_is_refused_unless_it_stays_on_this_machine() {
    let a = TempDb::new();
    let out = till(
        &a,
        &[
            "sync",
            "--server",
            "http://192.0.2.7:8443",
            "--token",
            "tpt_x",
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("refusing plain HTTP"), "{err}");

    let dir = TempDb::new();
    let db = format!("sqlite:{}", dir.dir.path().join("server.sqlite3").display());
    let out = server_bin()
        .args([
            "--db",
            &db,
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--insecure-http",
        ])
        .output()
        .expect("serve");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("only on a loopback address"), "{err}");
}

/// The PostgreSQL tests' URL; `None` (the test skips) only outside CI.
fn postgres_url() -> Option<String> {
    let url = std::env::var("TILLPASS_TEST_POSTGRES").ok();
    if url.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "CI sets TILLPASS_TEST_POSTGRES"
        );
        eprintln!("skipping: set TILLPASS_TEST_POSTGRES to run it");
    }
    url
}

/// The PostgreSQL tests' URL asks for TLS (CI: verify-full against the CA it made): the
/// server's connections are encrypted, and a root that did not sign the database's certificate
/// is refused.
#[test]
fn postgresql_connections_are_encrypted_and_checked() {
    let Some(url) = postgres_url() else {
        return;
    };
    if !url.contains("sslmode=verify") {
        assert!(
            std::env::var("CI").is_err(),
            "CI connects with sslmode=verify-full"
        );
        eprintln!("skipping: TILLPASS_TEST_POSTGRES does not ask for a verified TLS connection");
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = tillpass::server::pg_tls::connect(&url)
            .await
            .expect("connect");
        let row = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .expect("pg_stat_ssl");
        assert!(row.get::<_, bool>(0), "the connection is encrypted");

        let dir = tempfile::tempdir().expect("dir");
        let other_root = dir.path().join("other-root.pem");
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(&other_root, params.self_signed(&key).expect("root").pem()).expect("write");
        let (base, _) = url.split_once('?').expect("query");
        let wrong = format!(
            "{base}?sslmode=verify-full&sslrootcert={}",
            other_root.display()
        );
        let err = tillpass::server::pg_tls::connect(&wrong)
            .await
            .expect_err("a root that did not sign the certificate");
        assert!(err.to_string().contains("certificate"), "{err}");
    });
}

#[test]
fn a_rotated_token_keeps_the_till_and_what_it_has_not_pushed() {
    let dir = TempDb::new();
    let db = format!("sqlite:{}", dir.dir.path().join("server.sqlite3").display());
    let server = TlsServer::start(&db);
    let first = join_code(&db, &server.url, &[]);
    let a = TempDb::new();
    assert!(till(&a, &["join", &first]).status.success());
    let added = till(&a, &["--json", "member", "add", "--name", "Ada Lovelace"]);
    let card = serde_json::from_slice::<serde_json::Value>(&added.stdout).expect("JSON")["member"]
        ["card"]
        .as_str()
        .expect("card")
        .to_owned();
    assert!(till(&a, &["earn", &card, "12.50"]).status.success());

    let out = server_bin()
        .args(["--db", &db, "terminal", "rotate", "1", "--url", &server.url])
        .output()
        .expect("rotate");
    assert!(out.status.success(), "{}", stderr(&out));
    let second = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("TPJ1."))
        .expect("a new join code")
        .to_owned();
    let old = till(&a, &["sync"]);
    assert!(!old.status.success(), "the old token stopped working");
    assert!(stderr(&old).contains("token"), "{}", stderr(&old));

    let rejoined = till(&a, &["--json", "join", &second]);
    assert!(rejoined.status.success(), "{}", stderr(&rejoined));
    let status = till(&a, &["--json", "sync", "--status"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(
        status["waiting_entries"], 0,
        "the sale made before the rotation is pushed"
    );
}

/// Wrong PostgreSQL credentials: the admin command says what the database said, and never
/// shows the password it was given.
#[test]
fn a_wrong_database_password_is_named_and_never_shown() {
    let Some(url) = postgres_url() else {
        return;
    };
    let wrong = "not-the-password-1f3a";
    let Some((scheme, rest)) = url.split_once("://") else {
        panic!("TILLPASS_TEST_POSTGRES is a URL: {url}");
    };
    let Some((user_info, host)) = rest.split_once('@') else {
        eprintln!("skipping: TILLPASS_TEST_POSTGRES names no user");
        return;
    };
    let user = user_info
        .split_once(':')
        .map_or(user_info, |(user, _)| user);
    let out = server_bin()
        .args([
            "--db",
            &format!("{scheme}://{user}:{wrong}@{host}"),
            "audit",
        ])
        .output()
        .expect("run tillpass-server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(!stderr.contains(wrong), "{stderr}");
    assert!(stderr.contains(":***@"), "{stderr}");
}
