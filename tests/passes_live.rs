//! Passes that live (issue 11), driven as an iPhone would over real HTTP against the real server
//! process: the till asks for the member's link, the phone fetches the pass from it, registers
//! with the PassKit web service, the till earns and syncs, an APNs push reaches a stand-in (an
//! HTTP/2 TLS server that requires the pass certificate as client identity), and the phone
//! lists and fetches the updated pass, whose signature `openssl cms -verify` checks.

mod common;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Version};
use axum::response::IntoResponse;
use common::server::{Backend, Server, Till, add_terminal, database, drop_database, now};
use serde_json::Value;
use tillpass::pass::demo::{ChainSpec, issue_chain};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const PASS_TYPE: &str = "pass.com.example.tillpass.live";
const TEAM: &str = "TILLPASS01";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15";

/// One push the stand-in received.
#[derive(Debug, Clone)]
struct Push {
    token: String,
    topic: String,
    http2: bool,
    body: String,
}

#[derive(Clone)]
struct Apns {
    pushes: mpsc::UnboundedSender<Push>,
    /// Push tokens answered 410 (the device is gone).
    gone: Arc<Mutex<Vec<String>>>,
}

async fn apns_push(
    State(apns): State<Apns>,
    UrlPath(token): UrlPath<String>,
    version: Version,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let topic = headers
        .get("apns-topic")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let gone = apns.gone.lock().expect("lock").contains(&token);
    let _ = apns.pushes.send(Push {
        token,
        topic,
        http2: version == Version::HTTP_2,
        body,
    });
    if gone {
        (StatusCode::GONE, r#"{"reason":"Unregistered"}"#).into_response()
    } else {
        StatusCode::OK.into_response()
    }
}

/// TLS connections whose client presented a certificate chaining to the test's Apple root.
struct ClientAuthTls {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for ClientAuthTls {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// The APNs stand-in, running on its own runtime.
struct ApnsStandIn {
    url: String,
    /// The CA file that trusts its certificate.
    ca: PathBuf,
    pushes: mpsc::UnboundedReceiver<Push>,
    /// Push tokens it answers 410.
    gone: Arc<Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

fn start_apns(dir: &Path, apple_root_pem: &str) -> ApnsStandIn {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let root_key = rcgen::KeyPair::generate().expect("key");
    let mut root = rcgen::CertificateParams::new(Vec::new()).expect("params");
    root.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    root.distinguished_name
        .push(rcgen::DnType::CommonName, "tillpass test: APNs root");
    let root_cert = root.self_signed(&root_key).expect("root");
    let issuer = rcgen::Issuer::new(root, root_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("certificate");
    let ca = dir.join("apns-ca.pem");
    std::fs::write(&ca, root_cert.pem()).expect("write");

    let mut apple_roots = rustls::RootCertStore::empty();
    apple_roots
        .add(CertificateDer::from_pem_slice(apple_root_pem.as_bytes()).expect("apple root"))
        .expect("add root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(apple_roots),
        Arc::clone(&provider),
    )
    .build()
    .expect("client verifier");
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key"),
        )
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec()];

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (pushes, received) = mpsc::unbounded_channel();
    let gone = Arc::new(Mutex::new(Vec::new()));
    let state = Apns {
        pushes,
        gone: Arc::clone(&gone),
    };
    let tcp = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let url = format!("https://{}", tcp.local_addr().expect("addr"));
    let listener = ClientAuthTls {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    let app = axum::Router::new()
        .route("/3/device/{token}", axum::routing::post(apns_push))
        .with_state(state);
    runtime.spawn(async move { axum::serve(listener, app).await });
    ApnsStandIn {
        url,
        ca,
        pushes: received,
        gone,
        _runtime: runtime,
    }
}

fn phone() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The server listens on plain HTTP behind its "reverse proxy"; links say https.
fn reachable(url: &str) -> String {
    url.replacen("https://", "http://", 1)
}

fn unzip(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
    (0..zip.len())
        .map(|i| {
            let mut file = zip.by_index(i).expect("entry");
            let name = file.name().expect("entry name").into_owned();
            let mut data = Vec::new();
            file.read_to_end(&mut data).expect("read");
            (name, data)
        })
        .collect()
}

/// The pass's manifest and `openssl cms -verify` of its signature against `root`.
fn verifies(files: &BTreeMap<String, Vec<u8>>, root: &Path) -> bool {
    use sha1::Digest as _;
    let manifest: BTreeMap<String, String> =
        serde_json::from_slice(&files["manifest.json"]).expect("manifest");
    let hashes_ok = files
        .iter()
        .filter(|(name, _)| *name != "manifest.json" && *name != "signature")
        .all(|(name, data)| {
            let hash: String = sha1::Sha1::digest(data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            manifest.get(name) == Some(&hash)
        });
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("signature"), &files["signature"]).expect("write");
    std::fs::write(dir.path().join("manifest.json"), &files["manifest.json"]).expect("write");
    let out = Command::new("openssl")
        .args([
            "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any",
        ])
        .arg("-in")
        .arg(dir.path().join("signature"))
        .arg("-content")
        .arg(dir.path().join("manifest.json"))
        .arg("-CAfile")
        .arg(root)
        .args(["-out", "/dev/null"])
        .output()
        .expect("run openssl");
    hashes_ok && out.status.success()
}

fn pass_json(files: &BTreeMap<String, Vec<u8>>) -> Value {
    serde_json::from_slice(&files["pass.json"]).expect("pass.json")
}

fn balance(pass: &Value) -> i64 {
    pass["storeCard"]["headerFields"][0]["value"]
        .as_i64()
        .expect("a points field")
}

/// Waits (up to 20 s) for something the server does after answering, such as acting on an
/// APNs answer it read in the background.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    done()
}

fn next_push(pushes: &mut mpsc::UnboundedReceiver<Push>) -> Push {
    pushes
        .blocking_recv()
        .expect("the stand-in stays up while the test runs")
}

fn pass_lives(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let Some(db) = database(backend, dir.path()) else {
        return;
    };
    let chain = issue_chain(&ChainSpec {
        pass_type_identifier: PASS_TYPE.into(),
        team_identifier: TEAM.into(),
        not_before: now().plus_days(-1),
        not_after: now().plus_days(30),
    })
    .expect("chain");
    let root = dir.path().join("root.pem");
    for (name, pem) in [
        ("root.pem", &chain.root_pem),
        ("wwdr.pem", &chain.wwdr_pem),
        ("pass.pem", &chain.pass_pem),
        ("pass.key", &chain.pass_key_pem),
    ] {
        std::fs::write(dir.path().join(name), pem).expect("write");
    }
    let mut apns = start_apns(dir.path(), &chain.root_pem);
    let (apns_url, apns_ca) = (apns.url.clone(), apns.ca.clone());
    let wallet = dir.path().join("wallet.toml");
    std::fs::write(
        &wallet,
        format!(
            r#"[apple]
pass_type_identifier = "{PASS_TYPE}"
team_identifier = "{TEAM}"
certificate = "pass.pem"
key = "pass.key"
wwdr = "wwdr.pem"
apns_url = "{apns_url}"
apns_ca = "{}"
"#,
            apns_ca.display()
        ),
    )
    .expect("write wallet.toml");
    let wallet_arg = wallet.display().to_string();
    let server = Server::start_with(&db, &["--wallet", &wallet_arg]);
    let mut till = Till::join(&server.url, &add_terminal(&db, "till 1"));
    let member = common::enrol(&mut till.store, "Ada Lovelace").member;
    till.store
        .earn(member.id, 5_000, "test", now())
        .expect("earn");
    till.sync().expect("sync");
    let earned = till
        .store
        .summary_at(member.id, now())
        .expect("summary")
        .balance;

    // The till asks for the link; the phone opens it.
    let link = till.client().pass_link(member.id).expect("a pass link");
    assert_eq!(link.serial, member.card.as_str());
    let phone = phone();
    let first = phone
        .get(reachable(&link.url))
        .header("User-Agent", IPHONE)
        .send()
        .expect("open the link");
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.headers()["content-type"],
        "application/vnd.apple.pkpass"
    );
    let modified = first.headers()["last-modified"]
        .to_str()
        .expect("text")
        .to_owned();
    let files = unzip(&first.bytes().expect("body"));
    assert!(verifies(&files, &root), "the served pass verifies");
    let pass = pass_json(&files);
    assert_eq!(balance(&pass), earned);
    let serial = pass["serialNumber"].as_str().expect("serial").to_owned();
    let token = pass["authenticationToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let service = pass["webServiceURL"]
        .as_str()
        .expect("web service")
        .to_owned();
    assert_eq!(
        service,
        format!("{}/passkit", link.url.split("/p/").next().expect("base"))
    );
    let service = reachable(&service);

    // A computer gets the page with the button; a made-up link nothing.
    let page = phone.get(reachable(&link.url)).send().expect("page");
    assert_eq!(page.status(), 200);
    assert!(page.text().expect("html").contains("Add to Apple Wallet"));
    let made_up = format!("{}/p/{}", reachable(&server.url), "a".repeat(52));
    assert_eq!(phone.get(made_up).send().expect("get").status(), 404);

    // Registration: 201, then 200; a wrong token 401; an unknown pass 404.
    let registration = |device: &str, serial: &str, secret: &str, push_token: &str| {
        phone
            .post(format!(
                "{service}/v1/devices/{device}/registrations/{PASS_TYPE}/{serial}"
            ))
            .header("Authorization", format!("ApplePass {secret}"))
            .json(&serde_json::json!({ "pushToken": push_token }))
            .send()
            .expect("register")
            .status()
    };
    assert_eq!(registration("device-1", &serial, &token, "aa11"), 201);
    assert_eq!(registration("device-1", &serial, &token, "aa11"), 200);
    assert_eq!(
        registration("device-1", &serial, &"A".repeat(32), "aa11"),
        401
    );
    assert_eq!(registration("device-1", "1234567897", &token, "aa11"), 404);
    assert_eq!(registration("device-2", &serial, &token, "dead22"), 201);
    apns.gone.lock().expect("lock").push("dead22".into());

    let list = |device: &str, since: Option<&str>| {
        let mut request = phone.get(format!(
            "{service}/v1/devices/{device}/registrations/{PASS_TYPE}"
        ));
        if let Some(tag) = since {
            request = request.query(&[("passesUpdatedSince", tag)]);
        }
        request.send().expect("list")
    };
    let listed = list("device-1", None);
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().expect("json");
    assert_eq!(listed["serialNumbers"], serde_json::json!([serial]));
    let tag = listed["lastUpdated"]
        .as_str()
        .expect("a string tag")
        .to_owned();
    assert_eq!(list("device-1", Some(&tag)).status(), 204);

    // Earn at the till and sync: both devices get a push, the gone one is forgotten.
    till.store
        .earn(member.id, 2_500, "test", now())
        .expect("earn");
    till.sync().expect("sync");
    let later = till
        .store
        .summary_at(member.id, now())
        .expect("summary")
        .balance;
    assert!(later > earned);
    let mut tokens = vec![next_push(&mut apns.pushes), next_push(&mut apns.pushes)];
    tokens.sort_by(|a, b| a.token.cmp(&b.token));
    for push in &tokens {
        assert!(push.http2, "APNs is HTTP/2");
        assert_eq!(push.topic, PASS_TYPE);
        assert_eq!(push.body, "{}");
    }
    assert_eq!(
        tokens.iter().map(|p| p.token.as_str()).collect::<Vec<_>>(),
        ["aa11", "dead22"]
    );

    let listed = list("device-1", Some(&tag));
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().expect("json");
    assert_eq!(listed["serialNumbers"], serde_json::json!([serial]));
    let new_tag = listed["lastUpdated"].as_str().expect("tag").to_owned();
    assert!(new_tag.parse::<i64>().expect("millis") > tag.parse::<i64>().expect("millis"));

    let latest = |since: &str, secret: &str| {
        phone
            .get(format!("{service}/v1/passes/{PASS_TYPE}/{serial}"))
            .header("Authorization", format!("ApplePass {secret}"))
            .header("If-Modified-Since", since)
            .send()
            .expect("get the pass")
    };
    assert_eq!(latest(&modified, &"B".repeat(32)).status(), 401);
    let updated = latest(&modified, &token);
    assert_eq!(updated.status(), 200);
    let new_modified = updated.headers()["last-modified"]
        .to_str()
        .expect("text")
        .to_owned();
    let files = unzip(&updated.bytes().expect("body"));
    assert!(verifies(&files, &root), "the updated pass verifies");
    let pass = pass_json(&files);
    assert_eq!(balance(&pass), later);
    assert_eq!(pass["serialNumber"], serial.as_str());
    assert_eq!(pass["authenticationToken"], token.as_str());
    assert_eq!(latest(&new_modified, &token).status(), 304);

    // The gone device is unregistered once the server has read the 410.
    assert!(
        eventually(|| list("device-2", None).status() == 204),
        "the device APNs called gone is forgotten"
    );
    let unregister = phone
        .delete(format!(
            "{service}/v1/devices/device-1/registrations/{PASS_TYPE}/{serial}"
        ))
        .header("Authorization", format!("ApplePass {token}"))
        .send()
        .expect("unregister");
    assert_eq!(unregister.status(), 200);
    assert_eq!(list("device-1", None).status(), 204);
    let log = phone
        .post(format!("{service}/v1/log"))
        .json(&serde_json::json!({ "logs": ["a device said something"] }))
        .send()
        .expect("log");
    assert_eq!(log.status(), 200);

    // A replaced card voids the old pass and its link.
    assert_eq!(registration("device-3", &serial, &token, "cc33"), 201);
    till.store
        .replace_card(member.id, now())
        .expect("replace the card");
    till.sync().expect("sync");
    assert_eq!(next_push(&mut apns.pushes).token, "cc33");
    let voided = latest(&new_modified, &token);
    assert_eq!(voided.status(), 200);
    let pass = pass_json(&unzip(&voided.bytes().expect("body")));
    assert_eq!(pass["voided"], true);
    assert_eq!(
        phone
            .get(reachable(&link.url))
            .header("User-Agent", IPHONE)
            .send()
            .expect("get")
            .status(),
        404
    );
    let relinked = till.client().pass_link(member.id).expect("a new link");
    assert_ne!(relinked.serial, serial);

    drop(server);
    drop_database(&db);
}

#[test]
fn a_pass_reaches_the_phone_and_stays_live_on_sqlite() {
    pass_lives(Backend::Sqlite);
}

#[test]
fn a_pass_reaches_the_phone_and_stays_live_on_postgres() {
    pass_lives(Backend::Postgres);
}
