//! Pass updates (issue 11), on SQLite, against a local APNs stand-in (HTTP/2, TLS, the pass
//! certificate as client identity; tests/common/apns.rs):
//! - ingest with pass updates on vs off: the same pushes into two fresh servers, every member of
//!   the "on" server holding a pass with a registered device;
//! - fan-out: one earn for each of `BENCH_PASSES` (100,000) members with passes, pushed in
//!   batches, until the stand-in has every push;
//! - latency: single sales pushed one at a time, from the push leaving the till to the APNs
//!   request arriving at the stand-in (p50, p99).
//!
//! Run: `cargo bench --bench pass_updates` (`BENCH_PASSES=N` to change the 100,000).

#[path = "../tests/common/apns.rs"]
#[allow(dead_code)]
mod apns;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use tillpass::domain::{
    CardNumber, Entry, EntryId, EntryKind, Member, MemberId, MemberRecord, Program, TerminalId,
    Timestamp,
};
use tillpass::pass::WalletSetup;
use tillpass::pass::demo::{ChainSpec, issue_chain};
use tillpass::server::passes::apns::ApnsSettings;
use tillpass::server::passes::{PassService, PassSettings};
use tillpass::server::{Db, new_token, serve, token_hash};
use tillpass::sync::SyncClient;
use tillpass::sync::protocol::{ConfigQuery, PushRequest};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const PASS_TYPE: &str = "pass.com.example.tillpass.bench";
const TERMINAL: &str = "till-bench-passes";
const BATCH: usize = 5_000;
/// Members and entries of the ingest comparison.
const INGEST_MEMBERS: usize = 10_000;
const INGEST_ENTRIES: usize = 200_000;
/// Sales timed one by one.
const LATENCY_SALES: usize = 300;

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

fn members(n: usize, offset: u64) -> Vec<MemberRecord> {
    let created = now().plus_days(-30);
    (0..n)
        .map(|i| MemberRecord {
            member: Member {
                id: MemberId(uuid::Uuid::now_v7()),
                card: CardNumber::from_payload(300_000_000 + offset + i as u64),
                name: format!("Bench Member {i}"),
                phone: None,
                email: None,
                birthday: None,
                marketing_consent: false,
                created_at: created,
            },
            version: created.millis(),
            retired_cards: Vec::new(),
            erased_at: None,
            referred_by: None,
        })
        .collect()
}

/// One earn for `member`, the till's `seq`th entry.
fn earn(member: MemberId, seq: usize) -> Entry {
    let amount = 100 + (seq as i64 * 7_919) % 5_000;
    Entry {
        id: EntryId(uuid::Uuid::now_v7()),
        terminal_id: TerminalId(TERMINAL.into()),
        terminal_seq: seq as i64,
        member_id: member,
        kind: EntryKind::Earn,
        points: amount / 10,
        amount_minor: Some(amount),
        currency: Some("GBP".into()),
        reward_id: None,
        reverses: None,
        occurred_at: now().plus_millis(-60_000),
        note: None,
        actor: "bench".into(),
        lines: Vec::new(),
        stamps: Default::default(),
        returns: None,
    }
}

/// The wallet keys (a generated chain) and the APNs stand-in trusting its root.
struct Wallet {
    config: std::path::PathBuf,
    ca: std::path::PathBuf,
    identity: apns::ApnsIdentity,
}

fn wallet(dir: &Path) -> Result<Wallet> {
    let chain = issue_chain(&ChainSpec {
        pass_type_identifier: PASS_TYPE.into(),
        team_identifier: "TILLPASS01".into(),
        not_before: now().plus_days(-1),
        not_after: now().plus_days(30),
    })?;
    for (name, pem) in [
        ("wwdr.pem", &chain.wwdr_pem),
        ("pass.pem", &chain.pass_pem),
        ("pass.key", &chain.pass_key_pem),
    ] {
        std::fs::write(dir.join(name), pem)?;
    }
    let config = dir.join("wallet.toml");
    std::fs::write(
        &config,
        format!(
            "[apple]\npass_type_identifier = \"{PASS_TYPE}\"\nteam_identifier = \"TILLPASS01\"\n\
             certificate = \"pass.pem\"\nkey = \"pass.key\"\nwwdr = \"wwdr.pem\"\n"
        ),
    )?;
    let identity = apns::ApnsIdentity::new(dir, &chain.root_pem);
    Ok(Wallet {
        config,
        ca: identity.ca.clone(),
        identity,
    })
}

/// A server on a fresh SQLite file in a background runtime, with pass updates sent to `apns`
/// when given; its URL, a till's token, and the database path.
fn start_server(
    dir: &Path,
    name: &str,
    passes: Option<(&Wallet, &str)>,
) -> Result<(String, String, std::path::PathBuf, tokio::runtime::Runtime)> {
    let runtime = tokio::runtime::Runtime::new()?;
    let path = dir.join(format!("{name}.sqlite3"));
    let url = format!("sqlite:{}", path.display());
    let (addr, token) = runtime.block_on(async {
        let db = Db::open(&url, now()).await?;
        let token = new_token();
        db.add_terminal("bench till", &token_hash(&token), now())
            .await?;
        let service = match passes {
            Some((wallet, apns_url)) => {
                let program = Program::from_toml(
                    &db.config(None, ConfigQuery::default()).await?.program_toml,
                )?;
                let setup =
                    WalletSetup::load(Some(&wallet.config), &dir.join("demo"), &program, now())?;
                Some(PassService::new(
                    setup,
                    PassSettings {
                        public_url: "https://127.0.0.1".into(),
                        apns: Some(ApnsSettings {
                            endpoint: apns_url.to_owned(),
                            extra_roots: Some(wallet.ca.clone()),
                        }),
                        google: None,
                    },
                )?)
            }
            None => None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(serve(listener, db, service));
        Ok::<_, Box<dyn std::error::Error>>((addr, token))
    })?;
    Ok((format!("http://{addr}"), token, path, runtime))
}

/// Gives every member a pass with one registered device (push token = the member's index in
/// hex), straight into the server's tables in one transaction.
fn give_passes(path: &Path, members: &[MemberRecord]) -> Result<()> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    let tx = conn.transaction()?;
    for (i, m) in members.iter().enumerate() {
        let serial = m.member.card.as_str();
        tx.execute(
            "INSERT INTO passes (serial, member_id, updated_at, shown) VALUES (?1, ?2, 0, '')",
            rusqlite::params![serial, m.member.id.0],
        )?;
        tx.execute(
            "INSERT INTO pass_registrations (device_id, pass_type, serial, push_token, created_at)
             VALUES (?1, ?2, ?3, ?4, 0)",
            rusqlite::params![format!("device-{i}"), PASS_TYPE, serial, token_for(i)],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn token_for(i: usize) -> String {
    format!("{i:064x}")
}

fn push_members(client: &SyncClient, members: &[MemberRecord]) -> Result<()> {
    for chunk in members.chunks(2_000) {
        client.push(&PushRequest {
            members: chunk.to_vec(),
            ..PushRequest::default()
        })?;
    }
    Ok(())
}

/// Pushes `entries` in batches; entries per second.
fn push_entries(client: &SyncClient, entries: &[Entry]) -> Result<f64> {
    let started = Instant::now();
    for chunk in entries.chunks(BATCH) {
        client.push(&PushRequest {
            entries: chunk.to_vec(),
            ..PushRequest::default()
        })?;
    }
    Ok(entries.len() as f64 / started.elapsed().as_secs_f64())
}

fn client(url: &str, token: &str) -> Result<SyncClient> {
    Ok(SyncClient::with_timeout(
        url,
        token,
        TerminalId(TERMINAL.into()),
        Duration::from_secs(600),
    )?)
}

/// Entries per second into a fresh server, with or without pass updates.
fn ingest(dir: &Path, name: &str, passes: Option<(&Wallet, &str)>) -> Result<f64> {
    let (url, token, path, _runtime) = start_server(dir, name, passes)?;
    let client = client(&url, &token)?;
    let members = members(INGEST_MEMBERS, 0);
    push_members(&client, &members)?;
    if passes.is_some() {
        give_passes(&path, &members)?;
    }
    let entries: Vec<Entry> = (0..INGEST_ENTRIES)
        .map(|i| earn(members[(i * 7_907) % INGEST_MEMBERS].member.id, i + 1))
        .collect();
    push_entries(&client, &entries)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let passes: usize = std::env::var("BENCH_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    let wallet = wallet(dir.path())?;
    let mut stand_in = apns::start_apns(&wallet.identity, 0, apns::Script::default());
    let apns_url = stand_in.url.clone();

    // Ingest, off and on, five times, the order alternating so neither gains from going first.
    let mut ratios = Vec::new();
    for round in 0..5 {
        let run = |on: bool| {
            let name = format!("{}-{round}", if on { "on" } else { "off" });
            ingest(
                dir.path(),
                &name,
                on.then_some((&wallet, apns_url.as_str())),
            )
        };
        let (off, on) = if round % 2 == 0 {
            let off = run(false)?;
            (off, run(true)?)
        } else {
            let on = run(true)?;
            (run(false)?, on)
        };
        println!(
            "ingest round {round}: passes off {off:.0} entries/s, on {on:.0} entries/s, ratio {:.2}",
            on / off
        );
        ratios.push(on / off);
    }
    ratios.sort_by(f64::total_cmp);
    println!("ingest ratio on/off, median of 5: {:.2}", ratios[2]);
    while stand_in.pushes.try_recv().is_ok() {}

    // Fan-out: one earn per member with a pass.
    let (url, token, path, _runtime) =
        start_server(dir.path(), "fanout", Some((&wallet, &apns_url)))?;
    let till = client(&url, &token)?;
    let members = members(passes, 1_000_000);
    push_members(&till, &members)?;
    give_passes(&path, &members)?;
    let entries: Vec<Entry> = members
        .iter()
        .enumerate()
        .map(|(i, m)| earn(m.member.id, i + 1))
        .collect();
    let started = Instant::now();
    push_entries(&till, &entries)?;
    let pushed = started.elapsed();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < passes {
        let push = stand_in
            .pushes
            .blocking_recv()
            .ok_or("the APNs stand-in stopped")?;
        seen.insert(push.token);
    }
    let fan_out = started.elapsed();
    println!(
        "fan-out: {passes} passes changed by {} entries pushed in {:.1} s; every APNs request in by {:.1} s ({:.0} pushes/s)",
        entries.len(),
        pushed.as_secs_f64(),
        fan_out.as_secs_f64(),
        passes as f64 / fan_out.as_secs_f64()
    );

    // Latency: one sale at a time, to members spread over the store.
    let mut latencies = Vec::with_capacity(LATENCY_SALES);
    for k in 0..LATENCY_SALES {
        let i = (k * 7_919) % passes;
        let entry = earn(members[i].member.id, passes + k + 1);
        let sent = Instant::now();
        till.push(&PushRequest {
            entries: vec![entry],
            ..PushRequest::default()
        })?;
        let wanted = token_for(i);
        loop {
            let push = stand_in
                .pushes
                .blocking_recv()
                .ok_or("the APNs stand-in stopped")?;
            if push.token == wanted {
                latencies.push(push.at.duration_since(sent));
                break;
            }
        }
    }
    latencies.sort();
    println!(
        "latency, sale pushed -> APNs request at the stand-in, {LATENCY_SALES} sales on a store of {passes} passes: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
    Ok(())
}
