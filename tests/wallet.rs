//! Wallet passes end to end: a throwaway root -> intermediate -> pass certificate chain made
//! here, passes made through the library and the CLI, checked with independent tools (the
//! `openssl` command line for the CMS signature, PyJWT for the Google JWT).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use common::pkpass::{extract, manifest_matches, pass_verifies, unzip};
use common::{TempDb, discovery, enrol};
use rcgen::PublicKeyData as _;
use serde_json::Value;
use tillpass::domain::Timestamp;
use tillpass::pass::demo::{ChainSpec, issue_chain, rsa_key, service_account_json};
use tillpass::pass::{PassError, WalletSetup};
use tillpass::store::Store;
use tillpass::wallet;

const PASS_TYPE: &str = "pass.com.example.beanleaf";
const TEAM: &str = "ABCDE12345";
const ISSUER: &str = "3388000000012345678";

/// Certificates are checked against real time (openssl does the same).
fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

/// Runs a checking tool, or says it is missing: a failure under CI, a skip elsewhere.
fn tool_available(program: &str, probe: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok || std::env::var("CI").is_err(),
        "{program} is required under CI (.ci/run installs it)"
    );
    ok
}

/// A till with one member and a wallet config pointing at a freshly made chain.
struct Fixture {
    db: TempDb,
    config: PathBuf,
    root: PathBuf,
    google_public: PathBuf,
    member: tillpass::domain::MemberId,
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write fixture file");
}

impl Fixture {
    fn new(extra_apple: &str) -> Self {
        Self::with_spec(
            &ChainSpec {
                pass_type_identifier: PASS_TYPE.into(),
                team_identifier: TEAM.into(),
                not_before: now().plus_days(-1),
                not_after: now().plus_days(30),
            },
            extra_apple,
        )
    }

    fn with_spec(spec: &ChainSpec, extra_apple: &str) -> Self {
        let db = TempDb::new();
        let dir = db.dir.path();
        let chain = issue_chain(spec).expect("chain");
        write(&dir.join("root.pem"), &chain.root_pem);
        write(&dir.join("wwdr.pem"), &chain.wwdr_pem);
        write(&dir.join("pass.pem"), &chain.pass_pem);
        write(&dir.join("pass.key"), &chain.pass_key_pem);
        let (google_key, google_public) = rsa_key().expect("google key");
        write(
            &dir.join("google.json"),
            &service_account_json("wallet@example.iam.gserviceaccount.com", &google_key),
        );
        write(&dir.join("google-public.pem"), &google_public);
        let config = dir.join("wallet.toml");
        write(
            &config,
            &format!(
                r#"
[apple]
pass_type_identifier = "{PASS_TYPE}"
team_identifier = "{TEAM}"
certificate = "pass.pem"
key = "pass.key"
wwdr = "wwdr.pem"
{extra_apple}

[google]
issuer_id = "{ISSUER}"
service_account_key = "google.json"
logo_uri = "https://example.com/logo.png"
"#
            ),
        );
        let mut store = db.open();
        let member = enrol(&mut store, "Ada Lovelace").member.id;
        store
            .earn(member, 4_250, "test", now())
            .expect("earn some points");
        Fixture {
            config,
            root: dir.join("root.pem"),
            google_public: dir.join("google-public.pem"),
            db,
            member,
        }
    }

    fn dir(&self) -> &Path {
        self.db.dir.path()
    }

    fn store(&self) -> Store {
        self.db.open()
    }

    fn setup(&self) -> Result<WalletSetup, PassError> {
        let store = self.store();
        wallet::load(Some(&self.config), store.path(), store.program(), now())
    }

    fn content(&self) -> tillpass::pass::PassContent {
        wallet::read_content(&self.store(), self.member, now()).expect("pass content")
    }

    fn pkpass(&self) -> PathBuf {
        let out = self.dir().join("member.pkpass");
        let setup = self.setup().expect("wallet setup");
        wallet::write_apple_pass(&setup, &self.content(), &out).expect("write pass");
        out
    }
}

#[test]
fn a_pass_verifies_with_openssl_and_any_changed_byte_breaks_it() {
    if !tool_available("openssl", &["version"]) {
        return;
    }
    let fx = Fixture::new("");
    let files = unzip(&fx.pkpass());
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    for required in [
        "pass.json",
        "manifest.json",
        "signature",
        "icon.png",
        "icon@2x.png",
        "icon@3x.png",
        "logo@3x.png",
        "strip@2x.png",
        "en.lproj/pass.strings",
        "fr.lproj/pass.strings",
    ] {
        assert!(
            names.contains(&required),
            "{required} missing from {names:?}"
        );
    }
    assert!(manifest_matches(&files), "manifest hashes");
    assert!(pass_verifies(&files, &fx.root), "openssl cms -verify");

    // Signature details: SHA-256, a signing time, the signer and the intermediate embedded.
    let dir = tempfile::tempdir().expect("temp dir");
    extract(&files, dir.path());
    let printed = Command::new("openssl")
        .args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"])
        .arg(dir.path().join("signature"))
        .output()
        .expect("openssl print");
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains("sha256"), "{printed}");
    assert!(printed.contains("signingTime"), "{printed}");
    assert!(
        printed.contains("eContent: <ABSENT>"),
        "detached: {printed}"
    );
    let certs = Command::new("openssl")
        .args(["pkcs7", "-inform", "DER", "-print_certs", "-noout", "-in"])
        .arg(dir.path().join("signature"))
        .output()
        .expect("openssl pkcs7");
    let certs = String::from_utf8_lossy(&certs.stdout);
    assert_eq!(certs.matches("subject=").count(), 2, "{certs}");
    assert!(certs.contains("Worldwide Developer Relations"), "{certs}");

    // Trusting a different root fails.
    let other = issue_chain(&ChainSpec::demo(now())).expect("other chain");
    let other_root = dir.path().join("other-root.pem");
    write(&other_root, &other.root_pem);
    assert!(
        !pass_verifies(&files, &other_root),
        "verified against the wrong root"
    );

    // Any byte of any file changed: verification fails.
    for name in files.keys() {
        let mut tampered = files.clone();
        let bytes = tampered.get_mut(name).expect("file");
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        assert!(
            !pass_verifies(&tampered, &fx.root),
            "{name} changed, still verifies"
        );
    }
}

/// The documented pass.json keys and their JSON types (wallet-spec A5).
#[test]
fn pass_json_has_the_documented_keys_and_types() {
    let nfc_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ec key");
    let nfc_key = data_encoding::BASE64.encode(&nfc_key.subject_public_key_info());
    let fx = Fixture::new(&format!(
        "web_service_url = \"https://wallet.example.com/passkit\"\nnfc_encryption_public_key = \"{nfc_key}\""
    ));
    let files = unzip(&fx.pkpass());
    assert!(!files["pass.json"].starts_with(b"\xEF\xBB\xBF"), "no BOM");
    let pass: Value = serde_json::from_slice(&files["pass.json"]).expect("pass.json is JSON");
    let store = fx.store();
    let view = store.member(fx.member).expect("member");
    let code = store.member_code(&view.member.card);

    let required = [
        ("formatVersion", "number"),
        ("passTypeIdentifier", "string"),
        ("serialNumber", "string"),
        ("teamIdentifier", "string"),
        ("organizationName", "string"),
        ("description", "string"),
    ];
    let optional = [
        ("logoText", "string"),
        ("foregroundColor", "string"),
        ("backgroundColor", "string"),
        ("labelColor", "string"),
        ("webServiceURL", "string"),
        ("authenticationToken", "string"),
        ("barcodes", "array"),
        ("nfc", "object"),
        ("storeCard", "object"),
    ];
    let kind = |v: &Value| match v {
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
    };
    let object = pass.as_object().expect("an object");
    for (key, ty) in required {
        assert_eq!(object.get(key).map(kind), Some(ty), "{key}");
    }
    for (key, value) in object {
        let documented = required.iter().chain(&optional).find(|(k, _)| k == key);
        assert_eq!(documented.map(|(_, t)| *t), Some(kind(value)), "{key}");
    }
    assert_eq!(pass["formatVersion"], 1);
    assert_eq!(pass["passTypeIdentifier"], PASS_TYPE);
    assert_eq!(pass["teamIdentifier"], TEAM);
    let rgb = |v: &Value| {
        let s = v.as_str().unwrap_or_default();
        s.starts_with("rgb(") && s.ends_with(')') && s[4..s.len() - 1].split(", ").count() == 3
    };
    for key in ["foregroundColor", "backgroundColor", "labelColor"] {
        assert!(rgb(&pass[key]), "{key} = {}", pass[key]);
    }
    assert!(pass["authenticationToken"].as_str().expect("token").len() >= 16);
    let serial = pass["serialNumber"].as_str().expect("a serial number");
    assert_eq!(
        serial,
        store
            .member(fx.member)
            .expect("member")
            .member
            .card
            .as_str()
    );
    assert_eq!(pass["authenticationToken"], store.pass_auth_token(serial));
    let barcode = &pass["barcodes"][0];
    assert_eq!(barcode["format"], "PKBarcodeFormatQR");
    assert_eq!(barcode["message"], code.as_str());
    assert_eq!(barcode["messageEncoding"], "iso-8859-1");
    assert!(barcode["altText"].is_string());
    assert_eq!(pass["nfc"]["message"], code.as_str());
    assert!(code.len() <= 64);
    assert_eq!(pass["nfc"]["encryptionPublicKey"], nfc_key.as_str());
    // The till accepts what the pass carries.
    assert_eq!(
        store.identify_code(&code).expect("scans").member.id,
        fx.member
    );

    // Fields: unique keys, string keys, values, changeMessage with %@.
    let card = pass["storeCard"].as_object().expect("storeCard");
    let mut keys = Vec::new();
    for group in [
        "headerFields",
        "primaryFields",
        "secondaryFields",
        "auxiliaryFields",
        "backFields",
    ] {
        for field in card[group].as_array().expect("field array") {
            let key = field["key"].as_str().expect("key is a string");
            assert!(
                field["value"].is_string() || field["value"].is_number(),
                "{key}"
            );
            keys.push(key.to_owned());
        }
    }
    let unique: std::collections::BTreeSet<_> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "duplicate field keys in {keys:?}");
    let points = &card["headerFields"][0];
    let balance = store.summary_at(fx.member, now()).expect("summary").balance;
    assert_eq!(points["value"], balance);

    // Localised words: every key pass.json uses as a label has a translation in each language.
    for lproj in ["en.lproj/pass.strings", "fr.lproj/pass.strings"] {
        let strings = String::from_utf8(files[lproj].clone()).expect("UTF-8");
        assert!(!strings.contains('\r'));
        for field in card
            .values()
            .flat_map(|g| g.as_array().into_iter().flatten())
        {
            if let Some(label) = field["label"].as_str() {
                assert!(
                    strings.contains(&format!("\"{label}\" = ")),
                    "{lproj}: {label}"
                );
            }
        }
        let change = points["changeMessage"].as_str().expect("changeMessage");
        let line = strings
            .lines()
            .find(|l| l.starts_with(&format!("\"{change}\" = ")))
            .expect("changeMessage translated");
        assert!(line.contains("%@"), "{line}");
    }
}

/// The CLI writes a verifiable pass; with no wallet.toml it uses the labelled demo chain.
#[test]
fn cli_writes_passes_and_save_links_in_demo_mode() {
    let db = TempDb::new();
    let mut store = db.open();
    let card = enrol(&mut store, "Grace Hopper").member.card.to_string();
    drop(store);
    let out = db.dir.path().join("grace.pkpass");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tillpass"))
            .arg("--db")
            .arg(&db.path)
            .args(args)
            .env_remove("TILLPASS_WALLET_CONFIG")
            .output()
            .expect("run tillpass")
    };
    let apple = run(&[
        "pass",
        "apple",
        "--card",
        &card,
        "--out",
        out.to_str().expect("path"),
    ]);
    assert!(
        apple.status.success(),
        "{}",
        String::from_utf8_lossy(&apple.stderr)
    );
    assert!(String::from_utf8_lossy(&apple.stderr).contains("DEMO"));
    let files = unzip(&out);
    assert!(String::from_utf8_lossy(&files["en.lproj/pass.strings"]).contains("DEMO PASS"));
    if tool_available("openssl", &["version"]) {
        let root = db.dir.path().join("wallet-demo/demo-root.pem");
        assert!(pass_verifies(&files, &root));
    }
    let google = run(&["pass", "google", "--card", &card]);
    assert!(
        google.status.success(),
        "{}",
        String::from_utf8_lossy(&google.stderr)
    );
    let url = String::from_utf8_lossy(&google.stdout);
    assert!(
        url.trim()
            .starts_with("https://pay.google.com/gp/v/save/ey"),
        "{url}"
    );

    let unknown = run(&["pass", "apple", "--card", "0000000000", "--out", "x.pkpass"]);
    assert!(!unknown.status.success());
}

fn google_jwt(fx: &Fixture) -> String {
    let setup = fx.setup().expect("setup");
    let url = wallet::google_save_url(&setup, &fx.content()).expect("save url");
    url.strip_prefix("https://pay.google.com/gp/v/save/")
        .expect("save URL prefix")
        .to_owned()
}

/// PyJWT decodes and verifies `jwt` with the PEM public key at `key`.
fn pyjwt_verifies(jwt: &str, key: &Path) -> bool {
    let script = "import jwt, sys; jwt.decode(sys.argv[1], open(sys.argv[2]).read(), algorithms=['RS256'], audience='google')";
    Command::new("python3")
        .args(["-c", script, jwt])
        .arg(key)
        .output()
        .expect("run python3")
        .status
        .success()
}

#[test]
fn google_jwt_verifies_with_pyjwt_and_fails_with_a_wrong_key() {
    if !tool_available("python3", &["-c", "import jwt, cryptography"]) {
        return;
    }
    let fx = Fixture::new("");
    let jwt = google_jwt(&fx);
    assert!(
        pyjwt_verifies(&jwt, &fx.google_public),
        "PyJWT rejected the JWT"
    );
    let (_, other_public) = rsa_key().expect("other key");
    let other = fx.dir().join("other.pem");
    write(&other, &other_public);
    assert!(!pyjwt_verifies(&jwt, &other), "verified with the wrong key");
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].replacen('e', "f", 1);
    assert!(
        !pyjwt_verifies(&parts.join("."), &fx.google_public),
        "tampered claims verified"
    );
}

#[test]
fn google_payload_matches_the_documented_fields() {
    let fx = Fixture::new("");
    let jwt = google_jwt(&fx);
    let claims = jwt.split('.').nth(1).expect("claims");
    let claims: Value = serde_json::from_slice(
        &data_encoding::BASE64URL_NOPAD
            .decode(claims.as_bytes())
            .expect("base64url"),
    )
    .expect("claims JSON");
    let header = jwt.split('.').next().expect("header");
    let header: Value = serde_json::from_slice(
        &data_encoding::BASE64URL_NOPAD
            .decode(header.as_bytes())
            .expect("base64url"),
    )
    .expect("header JSON");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(claims["aud"], "google");
    assert_eq!(claims["typ"], "savetowallet");
    assert_eq!(claims["iss"], "wallet@example.iam.gserviceaccount.com");
    assert!(claims["iat"].is_i64());

    let class = &claims["payload"]["loyaltyClasses"][0];
    let object = &claims["payload"]["loyaltyObjects"][0];
    discovery::check_schema("LoyaltyClass", class).expect("a documented LoyaltyClass");
    discovery::check_schema("LoyaltyObject", object).expect("a documented LoyaltyObject");
    discovery::check_required("LoyaltyClass", &discovery::LOYALTY_CLASS_REQUIRED, class)
        .expect("a whole LoyaltyClass");
    discovery::check_required("LoyaltyObject", &discovery::LOYALTY_OBJECT_REQUIRED, object)
        .expect("a whole LoyaltyObject");
    assert!(
        class["id"]
            .as_str()
            .expect("id")
            .starts_with(&format!("{ISSUER}."))
    );
    assert!(
        object["id"]
            .as_str()
            .expect("id")
            .starts_with(&format!("{ISSUER}."))
    );
    assert_eq!(object["classId"], class["id"]);

    let store = fx.store();
    let view = store.member(fx.member).expect("member");
    let summary = store.summary_at(fx.member, now()).expect("summary");
    assert_eq!(object["barcode"]["type"], "QR_CODE");
    assert_eq!(
        object["barcode"]["value"],
        store.member_code(&view.member.card)
    );
    assert_eq!(object["loyaltyPoints"]["balance"]["int"], summary.balance);
    let tier = store.program().tier(summary.tier);
    assert_eq!(class["hexBackgroundColor"], tier.colour.to_lowercase());
    assert_eq!(class["rewardsTier"], tier.name.as_str());
}

/// The files in `dir` other than the SQLite store (whose -wal/-shm come and go).
fn non_store_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.to_string_lossy().contains("till.sqlite3"))
        .collect();
    files.sort();
    files
}

/// Runs `pass apple` against `fx` and returns the error text; checks nothing was left behind.
fn apple_error(fx: &Fixture) -> String {
    let out = fx.dir().join("refused.pkpass");
    let before = non_store_files(fx.dir());
    let err = match fx.setup() {
        Err(e) => e.to_string(),
        Ok(setup) => wallet::write_apple_pass(&setup, &fx.content(), &out)
            .expect_err("refused")
            .to_string(),
    };
    assert!(!out.exists(), "a pass was written despite: {err}");
    assert_eq!(before, non_store_files(fx.dir()), "files left behind");
    err
}

#[test]
fn bad_certificates_keys_and_images_are_refused_by_name() {
    let fx = Fixture::new("");
    let other = issue_chain(&ChainSpec {
        pass_type_identifier: PASS_TYPE.into(),
        team_identifier: TEAM.into(),
        not_before: now().plus_days(-1),
        not_after: now().plus_days(30),
    })
    .expect("second chain");

    std::fs::remove_file(fx.dir().join("pass.pem")).expect("rm");
    let err = apple_error(&fx);
    assert!(err.contains("pass.pem"), "{err}");

    write(&fx.dir().join("pass.pem"), "not a certificate");
    let err = apple_error(&fx);
    assert!(
        err.contains("pass.pem") && err.contains("certificate"),
        "{err}"
    );

    write(&fx.dir().join("pass.pem"), &other.pass_pem);
    let err = apple_error(&fx);
    assert!(
        err.contains("does not match") && err.contains("pass.key"),
        "{err}"
    );

    write(&fx.dir().join("pass.key"), &other.pass_key_pem);
    let err = apple_error(&fx);
    assert!(
        err.contains("wwdr.pem") && err.contains("did not issue"),
        "{err}"
    );

    write(
        &fx.dir().join("pass.key"),
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let err = apple_error(&fx);
    assert!(err.contains("pass.key"), "{err}");

    let fx2 = Fixture::new("images = \"images\"");
    std::fs::create_dir(fx2.dir().join("images")).expect("mkdir");
    let err = apple_error(&fx2);
    assert!(err.contains("icon.png") && err.contains("missing"), "{err}");

    let fx3 = Fixture::new("web_service_url = \"http://wallet.example.com\"");
    let err = apple_error(&fx3);
    assert!(err.contains("web_service_url"), "{err}");
}

#[test]
fn expired_and_mismatched_certificates_are_refused() {
    let expired = Fixture::with_spec(
        &ChainSpec {
            pass_type_identifier: PASS_TYPE.into(),
            team_identifier: TEAM.into(),
            not_before: now().plus_days(-400),
            not_after: now().plus_days(-35),
        },
        "",
    );
    let err = apple_error(&expired);
    assert!(err.contains("expired") && err.contains("pass.pem"), "{err}");

    let wrong_team = Fixture::with_spec(
        &ChainSpec {
            pass_type_identifier: PASS_TYPE.into(),
            team_identifier: "ZZZZZ99999".into(),
            not_before: now().plus_days(-1),
            not_after: now().plus_days(30),
        },
        "",
    );
    let err = apple_error(&wrong_team);
    assert!(
        err.contains("team_identifier") && err.contains("ZZZZZ99999"),
        "{err}"
    );
}

#[test]
fn a_p12_bundle_signs_like_pem_files() {
    if !tool_available("openssl", &["version"]) {
        return;
    }
    let fx = Fixture::new("");
    let dir = fx.dir();
    let status = Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:s3cret", "-out"])
        .arg(dir.join("pass.p12"))
        .arg("-in")
        .arg(dir.join("pass.pem"))
        .arg("-inkey")
        .arg(dir.join("pass.key"))
        .status()
        .expect("openssl pkcs12");
    assert!(status.success());
    let config = std::fs::read_to_string(&fx.config)
        .expect("config")
        .replace(
            "certificate = \"pass.pem\"\nkey = \"pass.key\"",
            "certificate = \"pass.p12\"\np12_password = \"s3cret\"",
        );
    write(&fx.config, &config);
    let files = unzip(&fx.pkpass());
    assert!(pass_verifies(&files, &fx.root));

    write(&fx.config, &config.replace("s3cret", "wrong"));
    let err = apple_error(&fx);
    assert!(
        err.contains("pass.p12") && err.contains("password"),
        "{err}"
    );
}

#[test]
fn bad_google_settings_are_refused_by_field() {
    let fx = Fixture::new("");
    let config = std::fs::read_to_string(&fx.config).expect("config");
    write(&fx.config, &config.replace(ISSUER, "my-shop"));
    let err = fx.setup().expect_err("refused").to_string();
    assert!(err.contains("issuer_id"), "{err}");

    write(&fx.config, &config);
    write(
        &fx.dir().join("google.json"),
        "{\"type\": \"authorized_user\"}",
    );
    let err = fx.setup().expect_err("refused").to_string();
    assert!(err.contains("google.json"), "{err}");

    write(&fx.config, &config.replace("issuer_id", "issuer"));
    let err = fx.setup().expect_err("refused").to_string();
    assert!(
        err.contains("wallet.toml") && err.contains("google"),
        "{err}"
    );
}
