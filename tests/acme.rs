//! `tillpass-server serve --acme localhost` against Pebble, the ACME test server (Debian's
//! `pebble`), all on 127.0.0.1. Pebble really validates the TLS-ALPN-01 challenge: its `tlsPort`
//! is the server's port and `localhost` resolves to 127.0.0.1, so it connects to the server's own
//! listener. The server presents a chain to Pebble's root, keeps it across a restart, and renews
//! a short-lived one without a restart; a till that pinned the key keeps syncing. Without pebble
//! these tests skip with a note; under CI (CI set) they fail.

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};

use common::TempDb;

/// Pebble's binary, or `None` (with a note) when it is not installed outside CI.
fn pebble_bin() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("pebble"))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "pebble must be installed under CI (.ci/run installs Debian's pebble)"
        );
        eprintln!(
            "skipping: pebble, the ACME test server (apt-get install pebble), is not installed"
        );
    }
    found
}

/// A port free on 127.0.0.1 now, for a program that must be told its port before it starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Waits until something accepts on `port` (a readiness poll, for at most 30 s).
fn wait_until_accepting(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing accepts on 127.0.0.1:{port}");
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A Pebble process on free ports; killed when dropped.
struct Pebble {
    child: Child,
    directory: String,
    management: u16,
    /// The root Pebble's own HTTPS certificate chains to (not the root it issues under).
    https_root: PathBuf,
    /// Pebble's log lines as its reader thread takes them, and a signal for each new line.
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Pebble {
    /// Starts Pebble validating TLS-ALPN-01 on `tls_port`, issuing certificates valid for
    /// `validity` seconds (0: Pebble's default, five years), with no random delays, no
    /// rejected nonces and no reused authorizations, so every order is validated for real.
    fn start(bin: &Path, dir: &Path, tls_port: u16, validity: u64) -> Self {
        // Debian ships no test certificates for Pebble's own HTTPS: a root and a certificate
        // for 127.0.0.1 made here.
        let root_key = rcgen::KeyPair::generate().expect("key");
        let mut root = rcgen::CertificateParams::new(Vec::new()).expect("params");
        root.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        root.distinguished_name.push(
            rcgen::DnType::CommonName,
            "tillpass test: Pebble's HTTPS root",
        );
        let root_cert = root.self_signed(&root_key).expect("root");
        let issuer = rcgen::Issuer::new(root, root_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("certificate");
        let https_root = dir.join("pebble-https-root.pem");
        std::fs::write(&https_root, root_cert.pem()).expect("write");
        std::fs::write(dir.join("pebble-cert.pem"), cert.pem()).expect("write");
        std::fs::write(dir.join("pebble-key.pem"), key.serialize_pem()).expect("write");

        let (listen, management) = (free_port(), free_port());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.join("pebble-cert.pem"),
            "privateKey": dir.join("pebble-key.pem"),
            "httpPort": free_port(),
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity,
        }});
        let config_path = dir.join("pebble-config.json");
        std::fs::write(&config_path, config.to_string()).expect("write");
        let mut child = Command::new(bin)
            .arg("-config")
            .arg(&config_path)
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start pebble");
        // Pebble logs on stdout; read until it serves, then keep reading (for a failure's
        // message) so it never blocks on a full pipe.
        let log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let (ready, serving) = mpsc::channel();
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("ACME directory available at") {
                    let _ = ready.send(());
                }
                let (lines, added) = &*kept;
                lines.lock().expect("log").push(line);
                added.notify_all();
            }
        });
        let started = serving.recv_timeout(Duration::from_secs(30));
        assert!(
            started.is_ok(),
            "pebble did not start: {:?}",
            log.0.lock().expect("log")
        );
        wait_until_accepting(listen);
        wait_until_accepting(management);
        Pebble {
            child,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management,
            https_root,
            log,
        }
    }

    /// The root Pebble issues under (made afresh by each Pebble), from its management endpoint.
    fn issuing_root(&self) -> CertificateDer<'static> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&self.https_root).expect("root"))
            .expect("add");
        let config = rustls::ClientConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(config)
            .build()
            .expect("client");
        let pem = http
            .get(format!("https://127.0.0.1:{}/roots/0", self.management))
            .send()
            .and_then(reqwest::blocking::Response::error_for_status)
            .and_then(reqwest::blocking::Response::text)
            .expect("Pebble's root");
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM certificate")
    }

    /// Waits (at most a minute) until Pebble's log shows `at_least` lines containing `text`,
    /// and returns how many it shows. Pebble logs an issue or a validation before the client
    /// can see it, but the line reaches the log through a pipe and a reader thread, which a
    /// busy machine may not have run yet.
    fn logged(&self, text: &str, at_least: usize) -> usize {
        let (lines, added) = &*self.log;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = lines.lock().expect("log");
        loop {
            let count = seen.iter().filter(|line| line.contains(text)).count();
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return count;
            };
            if count >= at_least {
                return count;
            }
            seen = added.wait_timeout(seen, left).expect("log").0;
        }
    }

    /// How many certificates Pebble has issued, `at_least` of them known to be.
    fn issued(&self, at_least: usize) -> usize {
        self.logged("Issued certificate", at_least)
    }

    /// How many TLS-ALPN-01 validations Pebble has completed, `at_least` of them known to be.
    fn validated(&self, at_least: usize) -> usize {
        self.logged("set VALID by completed challenge", at_least)
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tillpass-server"))
}

/// `tillpass-server serve --acme localhost` on 127.0.0.1:`port` against `pebble`; killed when
/// dropped.
struct AcmeServer {
    child: Child,
    pin: String,
    /// The server's log lines (stderr), as they come.
    log: mpsc::Receiver<String>,
}

impl AcmeServer {
    /// Starts the server and waits for its "listening" line, printed once it has a certificate.
    fn start(db: &str, port: u16, pebble: &Pebble) -> Self {
        let mut child = server_bin()
            .args(["--db", db, "serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--acme", "localhost", "--acme-directory", &pebble.directory])
            .arg("--acme-ca-root")
            .arg(&pebble.https_root)
            .args(["--acme-contact", "mailto:ops@localhost"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tillpass-server");
        let (send, log) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        std::thread::spawn(move || {
            for line in stderr.map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut line = || stdout.next().and_then(Result::ok).unwrap_or_default();
        let listening = line();
        if listening != format!("listening on https://127.0.0.1:{port}") {
            let _ = child.wait();
            let said: Vec<String> = log.try_iter().collect();
            panic!(
                "the server did not start ({listening:?}): {said:#?}\npebble: {:#?}",
                pebble.log.0.lock().expect("log")
            );
        }
        let pin = line()
            .strip_prefix("key pin ")
            .expect("a key pin line")
            .to_owned();
        AcmeServer { child, pin, log }
    }

    /// Waits (at most `limit`) for a log line containing `text`.
    fn wait_for_log(&self, text: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(text) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for AcmeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects to the server as `localhost` trusting only `root`: the handshake succeeds only if
/// the chain presented verifies up to it (webpki, via rustls) for that name. The leaf.
fn presented(port: u16, root: &CertificateDer<'static>) -> CertificateDer<'static> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("connection");
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .expect("the server's chain verifies against Pebble's root for localhost");
    }
    conn.peer_certificates().expect("certificates")[0].clone()
}

fn not_before(cert: &CertificateDer<'_>) -> std::time::SystemTime {
    use der::Decode as _;
    x509_cert::Certificate::from_der(cert.as_ref())
        .expect("X.509")
        .tbs_certificate()
        .validity()
        .not_before
        .to_system_time()
}

/// The leaf of the certificate kept in the TLS directory.
fn kept_leaf(tls_dir: &Path) -> CertificateDer<'static> {
    let mut pem = String::new();
    std::fs::File::open(tls_dir.join("acme-cert.pem"))
        .and_then(|mut f| f.read_to_string(&mut pem))
        .expect("the kept certificate");
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM")
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

/// A till joined to the server with a join code from `terminal add --acme`, which pins the
/// key the certificates are kept with.
fn joined_till(db: &str, port: u16, pin: &str) -> TempDb {
    let out = server_bin()
        .args([
            "--db",
            db,
            "terminal",
            "add",
            "Front till",
            "--acme",
            "localhost",
        ])
        .arg("--url")
        .arg(format!("https://localhost:{port}"))
        .output()
        .expect("terminal add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let code = stdout
        .lines()
        .find(|l| l.starts_with("TPJ1."))
        .expect("a join code");
    let parsed = tillpass::sync::join::JoinCode::parse(code).expect("join code");
    assert_eq!(parsed.pin.as_deref(), Some(pin), "the served key's pin");
    let till_db = TempDb::new();
    let joined = till(&till_db, &["join", code]);
    assert!(
        joined.status.success(),
        "{}",
        String::from_utf8_lossy(&joined.stderr)
    );
    till_db
}

fn syncs(till_db: &TempDb) {
    let synced = till(till_db, &["sync"]);
    assert!(
        synced.status.success(),
        "{}",
        String::from_utf8_lossy(&synced.stderr)
    );
}

#[test]
fn the_server_gets_its_certificate_from_pebble_and_keeps_it_across_a_restart() {
    let Some(bin) = pebble_bin() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let pebble = Pebble::start(&bin, dir.path(), port, 0);
    let db = format!("sqlite:{}", dir.path().join("server.sqlite3").display());
    let tls_dir = dir.path().join("tillpass-server-tls");

    let server = AcmeServer::start(&db, port, &pebble);
    assert!(
        pebble.validated(1) >= 1,
        "Pebble validated the challenge through the server's listener"
    );
    let root = pebble.issuing_root();
    let leaf = presented(port, &root);
    assert_eq!(
        tillpass::sync::tls::spki_pin(&leaf).expect("pin"),
        server.pin,
        "the printed pin is the served key's"
    );
    assert_eq!(kept_leaf(&tls_dir), leaf);
    for kept in ["acme-account.json", "acme-key.pem"] {
        let meta = std::fs::metadata(tls_dir.join(kept)).expect(kept);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(meta.permissions().mode() & 0o077, 0, "{kept} is private");
        }
        assert!(meta.len() > 0);
    }
    let till_db = joined_till(&db, port, &server.pin);
    syncs(&till_db);

    // A restart serves the kept certificate: no new order.
    drop(server);
    let issued = pebble.issued(1);
    let server = AcmeServer::start(&db, port, &pebble);
    assert_eq!(presented(port, &root), leaf);
    assert_eq!(pebble.issued(0), issued, "nothing issued on the restart");
    syncs(&till_db);
    drop(server);
}

#[test]
fn a_short_lived_certificate_is_renewed_without_a_restart() {
    let Some(bin) = pebble_bin() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    // Valid for 30 seconds: due for renewal after 20 (a third of its lifetime left), with
    // seconds to spare on a busy machine before and after.
    let pebble = Pebble::start(&bin, dir.path(), port, 30);
    let db = format!("sqlite:{}", dir.path().join("server.sqlite3").display());
    let tls_dir = dir.path().join("tillpass-server-tls");

    let server = AcmeServer::start(&db, port, &pebble);
    let root = pebble.issuing_root();
    let first = presented(port, &root);
    let till_db = joined_till(&db, port, &server.pin);
    syncs(&till_db);

    assert!(
        server.wait_for_log("certificate renewed", Duration::from_secs(60)),
        "the server renewed its certificate"
    );
    let validated = pebble.validated(2);
    assert!(
        validated >= 2,
        "the renewal was validated through the running listener: {validated} validations \
         in Pebble's log: {:#?}",
        pebble.log.0.lock().expect("log")
    );
    let renewed = presented(port, &root);
    assert_ne!(renewed, first, "a new connection gets the new certificate");
    assert!(not_before(&renewed) >= not_before(&first));
    assert_ne!(
        kept_leaf(&tls_dir),
        first,
        "the renewed certificate is kept"
    );
    assert_eq!(
        tillpass::sync::tls::spki_pin(&renewed).expect("pin"),
        server.pin,
        "renewed with the same key"
    );
    syncs(&till_db);
}
