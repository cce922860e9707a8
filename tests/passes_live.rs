//! Passes that live (issue 11), driven as an iPhone would over real HTTP against the real server
//! process: the till asks for the member's link, the phone fetches the pass from it, registers
//! with the PassKit web service, the till earns and syncs, an APNs push reaches a stand-in (an
//! HTTP/2 TLS server that requires the pass certificate as client identity), and the phone
//! lists and fetches the updated pass, whose signature `openssl cms -verify` checks.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::Command;

use common::apns::{ApnsIdentity, ApnsStandIn, Push, Script, start_apns};
use common::pkpass::{pass_verifies, unzip_bytes};
use common::server::{
    Backend, Server, Till, add_terminal, admin_output, database, drop_database, eventually, now,
};
use serde_json::Value;
use tillpass::pass::demo::{ChainSpec, issue_chain};
use tokio::sync::mpsc;

const PASS_TYPE: &str = "pass.com.example.tillpass.live";
const TEAM: &str = "TILLPASS01";
const ANDROID: &str = "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 Chrome/131.0";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15";

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

fn pass_json(files: &BTreeMap<String, Vec<u8>>) -> Value {
    serde_json::from_slice(&files["pass.json"]).expect("pass.json")
}

fn balance(pass: &Value) -> i64 {
    pass["storeCard"]["headerFields"][0]["value"]
        .as_i64()
        .expect("a points field")
}

/// The next push the stand-in takes, waited for at most a minute: a push that never comes
/// fails the test instead of hanging it.
fn next_push(pushes: &mut mpsc::UnboundedReceiver<Push>) -> Push {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
        .block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(60), pushes.recv()).await
        })
        .expect("a push within a minute")
        .expect("the stand-in stays up while the test runs")
}

/// A server with real (test) wallet keys and APNs pointed at the stand-in, and a joined till
/// with one member who has earned.
struct Live {
    dir: tempfile::TempDir,
    db: String,
    root: PathBuf,
    wallet: String,
    identity: ApnsIdentity,
    apns: ApnsStandIn,
    google: common::google::StandIn,
    _google_runtime: tokio::runtime::Runtime,
    server: Server,
    till: Till,
    member: tillpass::domain::Member,
}

impl Live {
    fn start(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("dir");
        let db = database(backend, dir.path())?;
        let chain = issue_chain(&ChainSpec {
            pass_type_identifier: PASS_TYPE.into(),
            team_identifier: TEAM.into(),
            not_before: now().plus_days(-1),
            not_after: now().plus_days(30),
        })
        .expect("chain");
        for (name, pem) in [
            ("root.pem", &chain.root_pem),
            ("wwdr.pem", &chain.wwdr_pem),
            ("pass.pem", &chain.pass_pem),
            ("pass.key", &chain.pass_key_pem),
        ] {
            std::fs::write(dir.path().join(name), pem).expect("write");
        }
        let identity = ApnsIdentity::new(dir.path(), &chain.root_pem);
        let apns = start_apns(&identity, 0, Script::default());
        let google_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (google_key, google_public) = common::google::key_pair();
        let google = google_runtime.block_on(common::google::StandIn::start(google_public));
        std::fs::write(
            dir.path().join("google.json"),
            tillpass::pass::demo::service_account_json(common::google::EMAIL, google_key),
        )
        .expect("write the key file");
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
apns_url = "{}"
apns_ca = "{}"

[google]
issuer_id = "{}"
service_account_key = "google.json"
logo_uri = "https://example.com/logo.png"
api_url = "{}"
token_url = "{}"
"#,
                apns.url,
                identity.ca.display(),
                common::google::ISSUER,
                google.endpoints.api_base,
                google.endpoints.token_url,
            ),
        )
        .expect("write wallet.toml");
        let wallet = wallet.display().to_string();
        let server = Server::start_with(&db, &["--wallet", &wallet]);
        let mut till = Till::join(&server.url, &add_terminal(&db, "till 1"));
        let member = common::enrol(&mut till.store, "Ada Lovelace").member;
        till.store
            .earn(member.id, 5_000, "test", now())
            .expect("earn");
        till.sync().expect("sync");
        Some(Live {
            root: dir.path().join("root.pem"),
            dir,
            db,
            wallet,
            identity,
            apns,
            google,
            _google_runtime: google_runtime,
            server,
            till,
            member,
        })
    }

    fn balance(&self) -> i64 {
        self.till
            .store
            .summary_at(self.member.id, now())
            .expect("summary")
            .balance
    }

    /// Earns at the till and syncs: the member's pass changes.
    fn earn(&mut self) {
        self.till
            .store
            .earn(self.member.id, 1_000, "test", now())
            .expect("earn");
        self.till.sync().expect("sync");
    }

    /// What `tillpass-server passes` says of the queue.
    fn queue(&self) -> String {
        admin_output(&self.db, &["passes", "queue"])
    }
}

fn pass_lives(backend: Backend) {
    let Some(live) = Live::start(backend) else {
        return;
    };
    let Live {
        dir: _dir,
        db,
        root,
        identity: _identity,
        mut apns,
        google,
        server,
        mut till,
        member,
        ..
    } = live;
    let google_object = |id: &str| google.google().objects.get(id).cloned();
    let earned = till
        .store
        .summary_at(member.id, now())
        .expect("summary")
        .balance;

    // The till asks for the link; the phone opens it.
    let link = till.client().pass_link(member.id).expect("a pass link");
    assert_eq!(link.serial, member.card.as_str());
    assert!(!link.demo, "real (test) keys");
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
    let files = unzip_bytes(&first.bytes().expect("body"));
    assert!(pass_verifies(&files, &root), "the served pass verifies");
    let pass = pass_json(&files);
    assert_eq!(balance(&pass), earned);
    // The lock-screen message when the balance changes, in English and French.
    let key = pass["storeCard"]["headerFields"][0]["changeMessage"]
        .as_str()
        .expect("a change message");
    for (lproj, text) in [
        ("en", "Your balance is now %@ points"),
        ("fr", "Votre solde est maintenant de %@ points"),
    ] {
        let strings = String::from_utf8(files[&format!("{lproj}.lproj/pass.strings")].clone())
            .expect("UTF-8");
        assert!(
            strings.contains(&format!("\"{key}\" = \"{text}\";")),
            "{lproj}: {strings}"
        );
    }
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

    // An Android phone goes to Google with a short link naming the object the server inserted.
    let android = phone
        .get(reachable(&link.url))
        .header("User-Agent", ANDROID)
        .send()
        .expect("open the link");
    assert!(android.status().is_redirection(), "{}", android.status());
    let location = android.headers()["location"]
        .to_str()
        .expect("text")
        .to_owned();
    let jwt = location
        .strip_prefix("https://pay.google.com/gp/v/save/")
        .expect("a Google save link");
    let claims: Value = serde_json::from_slice(
        &data_encoding::BASE64URL_NOPAD
            .decode(jwt.split('.').nth(1).expect("a JWT").as_bytes())
            .expect("base64url"),
    )
    .expect("claims");
    let object_id = format!("{}.card-{serial}", common::google::ISSUER);
    assert_eq!(
        claims["payload"]["loyaltyObjects"][0]["id"],
        object_id.as_str()
    );
    assert!(
        claims["payload"]["loyaltyObjects"][0]
            .as_object()
            .is_some_and(|o| o.len() == 2),
        "the link only references the object: {claims}"
    );
    let points_at_google =
        |id: &str| google_object(id).and_then(|o| o["loyaltyPoints"]["balance"]["int"].as_i64());
    assert_eq!(points_at_google(&object_id), Some(earned));

    // The command line prints a link of its own to the same pass.
    let out = Command::new(env!("CARGO_BIN_EXE_tillpass"))
        .arg("--db")
        .arg(&till.db.path)
        .args(["pass", "link", "--card", member.card.as_str()])
        .env_remove("TILLPASS_DB")
        .output()
        .expect("run tillpass");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned();
    assert!(printed.contains("/p/") && printed != link.url, "{printed}");
    let again = phone
        .get(reachable(&printed))
        .header("User-Agent", IPHONE)
        .send()
        .expect("open");
    assert_eq!(again.status(), 200);
    let files = unzip_bytes(&again.bytes().expect("body"));
    assert_eq!(pass_json(&files)["serialNumber"], serial.as_str());

    // A link revoked at the server stops working; the others stay.
    let revoked = admin_output(&db, &["passes", "revoke", "--card", member.card.as_str()]);
    assert!(revoked.starts_with("2 pass links"), "{revoked}");
    for url in [&link.url, &printed] {
        let status = phone
            .get(reachable(url))
            .header("User-Agent", IPHONE)
            .send()
            .expect("open")
            .status();
        assert_eq!(status, 404, "revoked");
    }
    let link = till.client().pass_link(member.id).expect("a new link");

    // A computer gets the page with both buttons; a made-up link nothing.
    let page = phone.get(reachable(&link.url)).send().expect("page");
    assert_eq!(page.status(), 200);
    let html = page.text().expect("html");
    assert!(html.contains("Add to Apple Wallet") && html.contains("Add to Google Wallet"));
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
    apns.script
        .lock()
        .expect("lock")
        .insert("dead22".into(), VecDeque::from([(410, None)]));

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

    assert!(
        eventually(|| points_at_google(&object_id) == Some(later)),
        "Google's object follows the balance"
    );
    let calls = google.google().calls.clone();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("PATCH") && c.ends_with(&format!("loyaltyObject/{object_id}"))),
        "a change is one PATCH of the object: {calls:?}"
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
    let files = unzip_bytes(&updated.bytes().expect("body"));
    assert!(pass_verifies(&files, &root), "the updated pass verifies");
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
    let pass = pass_json(&unzip_bytes(&voided.bytes().expect("body")));
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
    assert!(
        eventually(|| google_object(&object_id).is_some_and(|o| o["state"] == "INACTIVE")),
        "Google's object of the replaced card is voided"
    );
    let relinked = till.client().pass_link(member.id).expect("a new link");
    assert_ne!(relinked.serial, serial);

    // The new card's pass on a phone; then the member asks to be erased: it is voided too.
    let files = unzip_bytes(
        &phone
            .get(reachable(&relinked.url))
            .header("User-Agent", IPHONE)
            .send()
            .expect("open the new link")
            .bytes()
            .expect("body"),
    );
    let new_token = pass_json(&files)["authenticationToken"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(
        registration("device-4", &relinked.serial, &new_token, "dd44"),
        201
    );
    till.store
        .erase_member(member.id, now())
        .expect("erase the member");
    till.sync().expect("sync");
    let erased_push = loop {
        let push = next_push(&mut apns.pushes);
        if push.token == "dd44" {
            break push;
        }
    };
    assert_eq!(erased_push.status, 200);
    let voided = phone
        .get(format!(
            "{service}/v1/passes/{PASS_TYPE}/{}",
            relinked.serial
        ))
        .header("Authorization", format!("ApplePass {new_token}"))
        .send()
        .expect("get the pass");
    assert_eq!(voided.status(), 200);
    let pass = pass_json(&unzip_bytes(&voided.bytes().expect("body")));
    assert_eq!(pass["voided"], true);
    assert!(
        !pass.to_string().contains("Ada Lovelace"),
        "an erased member's name is not on the pass"
    );
    assert!(
        till.client().pass_link(member.id).is_err(),
        "no pass for an erased member"
    );

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

/// Waits until the server's queue is empty; then nothing more can reach the stand-in.
fn drained(live: &Live) {
    assert!(
        eventually(|| live.queue().starts_with("0 pass updates queued")),
        "the queue drains: {}",
        live.queue()
    );
}

/// Registers device `device` with `push_token` for the member's pass, fetched through a link.
fn register_device(live: &Live, device: &str, push_token: &str) {
    let link = live.till.client().pass_link(live.member.id).expect("link");
    let phone = phone();
    let files = unzip_bytes(
        &phone
            .get(reachable(&link.url))
            .header("User-Agent", IPHONE)
            .send()
            .expect("pass")
            .bytes()
            .expect("body"),
    );
    let pass = pass_json(&files);
    let service = reachable(pass["webServiceURL"].as_str().expect("web service"));
    let status = phone
        .post(format!(
            "{service}/v1/devices/{device}/registrations/{PASS_TYPE}/{}",
            link.serial
        ))
        .header(
            "Authorization",
            format!(
                "ApplePass {}",
                pass["authenticationToken"].as_str().expect("token")
            ),
        )
        .json(&serde_json::json!({ "pushToken": push_token }))
        .send()
        .expect("register")
        .status();
    assert_eq!(status, 201);
}

/// APNs answering 429 and 503, APNs down for a while, and the server killed with a push queued:
/// every change reaches the device, once.
fn pushes_survive_failures(backend: Backend) {
    let Some(mut live) = Live::start(backend) else {
        return;
    };
    register_device(&live, "device-1", "aa11");

    // Busy, then failing, then well: three attempts, one delivery, nothing left.
    live.apns
        .script
        .lock()
        .expect("lock")
        .insert("aa11".into(), VecDeque::from([(429, Some(1)), (503, None)]));
    live.earn();
    let attempts: Vec<u16> = (0..3)
        .map(|_| next_push(&mut live.apns.pushes).status)
        .collect();
    assert_eq!(attempts, [429, 503, 200]);
    drained(&live);
    assert!(live.apns.pushes.try_recv().is_err(), "delivered once");

    // APNs down: the push waits in the queue, failing.
    let port = live.apns.port;
    live.apns.stop();
    live.earn();
    assert!(
        eventually(|| live
            .queue()
            .starts_with("1 pass updates queued, 1 of them failed")),
        "{}",
        live.queue()
    );

    // The server is killed with the push queued; APNs comes back; a new server process sends
    // it, once.
    live.server.kill();
    live.apns = start_apns(&live.identity, port, Script::default());
    live.server = Server::start_with(&live.db, &["--wallet", &live.wallet]);
    live.till.repoint(&live.server.url);
    let push = next_push(&mut live.apns.pushes);
    assert_eq!((push.token.as_str(), push.status), ("aa11", 200));
    drained(&live);
    assert!(live.apns.pushes.try_recv().is_err(), "not sent twice");

    // And the pass the device then fetches has every point.
    let balance = live.balance();
    assert_eq!(
        tillpass_balance_on_server(&live),
        balance,
        "the server holds every entry"
    );
    drop_database(&live.db);
}

fn tillpass_balance_on_server(live: &Live) -> i64 {
    live.till
        .client()
        .balance(live.member.id)
        .expect("balance")
        .balance
}

#[test]
fn pushes_survive_failures_and_a_restart_on_sqlite() {
    pushes_survive_failures(Backend::Sqlite);
}

#[test]
fn pushes_survive_failures_and_a_restart_on_postgres() {
    pushes_survive_failures(Backend::Postgres);
}
