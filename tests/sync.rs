//! Sync against the real server process on 127.0.0.1, on both backends: convergence of three
//! offline tills, duplicate pushes, a server killed mid-push, a lost answer, refused terminals
//! and refused input, and offline double spends.

mod common;

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use common::server::{Backend, Server, Till, add_terminal, admin, database, now};
use common::{TempDb, enrol};
use rand::{RngExt as _, SeedableRng as _};
use tillpass::domain::{EntryId, MemberId, MemberInput};
use tillpass::sync::protocol::{ErrorBody, PushRequest, TERMINAL_HEADER};
use tillpass::sync::{SyncError, live_balance};

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(super::Backend::Sqlite) })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name(super::Backend::Postgres) })*
        }
    };
}

on_both_backends!(
    three_offline_tills_converge,
    a_server_killed_mid_push_loses_and_doubles_nothing,
    a_lost_answer_is_retried_without_doubling,
    unknown_and_revoked_terminals_are_refused,
    bad_input_is_refused_and_nothing_is_stored,
    offline_double_spends_are_accepted_and_listed,
    a_new_till_catches_up_in_small_pages_after_card_replacements,
);

/// A server on a fresh database with `n` registered terminals' tokens.
fn server(backend: Backend, dir: &std::path::Path, n: usize) -> Option<(Server, Vec<String>)> {
    let db = database(backend, dir)?;
    let tokens = (0..n)
        .map(|i| add_terminal(&db, &format!("till {i}")))
        .collect();
    Some((Server::start(&db), tokens))
}

/// `count` offline actions at a till: mostly sales, some redemptions, manager adjustments and
/// reversals of the till's own last entry. Refused actions (not enough points, offline limit)
/// are part of life and write nothing.
fn trade(till: &mut Till, members: &[MemberId], count: usize, seed: u64) -> usize {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut written = 0;
    let start = now();
    for i in 0..count {
        let member = members[rng.random_range(0..members.len())];
        let at = start.plus_millis(i as i64);
        let result = match rng.random_range(0..10) {
            0 => till.store.redeem(member, "pastry", "test", at),
            1 => till
                .store
                .adjust(member, rng.random_range(1..50), "goodwill", "test", at),
            2 => match till.store.last_local_entry(member).expect("last") {
                Some(e) => till.store.reverse(e.id, "test", at),
                None => continue,
            },
            _ => till
                .store
                .earn(member, rng.random_range(100..6_000), "test", at),
        };
        if result.is_ok() {
            written += 1;
        }
    }
    written
}

fn three_offline_tills_converge(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 4) else {
        return;
    };
    let mut tills: Vec<Till> = tokens[..3]
        .iter()
        .map(|t| Till::join(&server.url, t))
        .collect();
    let members: Vec<MemberId> = (0..40)
        .map(|i| {
            enrol(&mut tills[i % 3].store, &format!("Member {i}"))
                .member
                .id
        })
        .collect();
    for till in &mut tills {
        till.sync().expect("share members");
    }
    for till in &mut tills {
        till.sync().expect("share members");
        till.unsafe_fast_writes();
    }
    // Offline: each till trades on its own.
    let made: usize = tills
        .iter_mut()
        .enumerate()
        .map(|(i, till)| trade(till, &members, 1_200, i as u64))
        .sum();
    assert!(made > 3_000, "{made} entries made");

    // Back online, in interleaved order: small batches round-robin, each followed by a pull,
    // and every third batch pushed twice (an answer lost, the batch sent again).
    let mut round = 0;
    loop {
        let mut pushed_any = false;
        for k in 0..3 {
            let till = &mut tills[(k + round) % 3];
            let outbox = till.store.outbox(100, 97).expect("outbox");
            if outbox.is_empty() {
                continue;
            }
            pushed_any = true;
            let client = till.client();
            let request = PushRequest {
                members: outbox.members.clone(),
                entries: outbox.entries.clone(),
            };
            let first = client.push(&request).expect("push");
            if round % 3 == 0 {
                let again = client.push(&request).expect("push again");
                assert_eq!(again.inserted, 0, "a repeated batch inserts nothing");
                assert_eq!(again.duplicates, request.entries.len());
                assert_eq!(again.server_seq, first.server_seq, "and moves nothing");
            }
            till.store.mark_pushed(&outbox).expect("mark");
            tillpass::sync::engine::pull_all(
                &mut till.store,
                &client,
                &mut Default::default(),
                now(),
            )
            .expect("pull");
        }
        round += 1;
        if !pushed_any {
            break;
        }
    }
    for till in &mut tills {
        till.sync().expect("final sync");
    }
    tills.push(Till::join(&server.url, &tokens[3]));

    let ids = tills[0].entry_ids();
    let own: usize = 40 + made; // welcome bonuses + trades
    assert_eq!(ids.len(), own, "every entry, once");
    let balances = tills[0].balances();
    for till in &mut tills {
        assert_eq!(till.entry_ids(), ids, "identical entry sets");
        assert_eq!(till.balances(), balances, "identical balances");
        assert!(till.store.verify(false).expect("verify").is_clean());
    }
    let client = tills[3].client();
    for (member, balance) in balances {
        let live = client.balance(MemberId(member)).expect("server balance");
        assert_eq!(live.balance, balance, "server balance of {member}");
    }
}

/// A TCP proxy for one test: forwards client bytes to `upstream` until `cut_after` bytes have
/// passed, then calls `on_cut` (e.g. kill the server) and drops both sides.
fn cutting_proxy(
    upstream: String,
    cut_after: usize,
    on_cut: impl FnOnce() + Send + 'static,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("proxy");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut passed = 0usize;
        let mut on_cut = Some(on_cut);
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let Ok(mut server) = TcpStream::connect(&upstream) else {
                return;
            };
            let mut back = server.try_clone().expect("clone");
            let mut to_client = client.try_clone().expect("clone");
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut back, &mut to_client);
            });
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = match client.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let take = n.min(cut_after.saturating_sub(passed));
                if server.write_all(&buf[..take]).is_err() {
                    break;
                }
                passed += take;
                if passed >= cut_after {
                    if let Some(cut) = on_cut.take() {
                        cut();
                    }
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    let _ = server.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        }
    });
    format!("http://{addr}")
}

fn a_server_killed_mid_push_loses_and_doubles_nothing(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 2) else {
        return;
    };
    let db = server.db.clone();
    let server = Arc::new(Mutex::new(server));
    let url = server.lock().expect("lock").url.clone();
    let mut till = Till::join(&url, &tokens[0]);
    till.unsafe_fast_writes();
    let members: Vec<MemberId> = (0..20)
        .map(|i| enrol(&mut till.store, &format!("Member {i}")).member.id)
        .collect();
    trade(&mut till, &members, 12_000, 7);
    // Kill the server at different points of the pushes (5,000 entries are about 1.7 MB).
    for cut in [300, 40_000, 900_000, 2_500_000] {
        let upstream = server
            .lock()
            .expect("lock")
            .url
            .trim_start_matches("http://")
            .to_owned();
        let victim = Arc::clone(&server);
        let proxy = cutting_proxy(upstream, cut, move || victim.lock().expect("lock").kill());
        till.repoint(&proxy);
        let result = till.sync();
        assert!(result.is_err(), "the cut at {cut} bytes broke the sync");
        let restarted = Server::start(&db);
        let url = restarted.url.clone();
        *server.lock().expect("lock") = restarted;
        till.repoint(&url);
    }
    till.sync().expect("sync after the last restart");
    assert_eq!(
        till.store
            .sync_counters()
            .expect("counters")
            .waiting_entries,
        0
    );
    let observer = Till::join(&server.lock().expect("lock").url, &tokens[1]);
    assert_eq!(
        observer.entry_ids(),
        till.entry_ids(),
        "nothing lost, nothing doubled"
    );
    assert_eq!(observer.balances(), till.balances());
    let client = observer.client();
    for (member, balance) in till.balances() {
        assert_eq!(
            client.balance(MemberId(member)).expect("balance").balance,
            balance
        );
    }
}

/// A proxy that forwards a request whole, waits for the server's answer to begin (so the
/// server has committed), and then drops the connection instead of delivering it.
fn answer_dropping_proxy(upstream: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("proxy");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(mut server) = TcpStream::connect(&upstream) else {
                return;
            };
            let mut to_server = server.try_clone().expect("clone");
            let mut from_client = client.try_clone().expect("clone");
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_client, &mut to_server);
            });
            let mut first = [0u8; 1];
            let _ = server.read(&mut first);
            let _ = client.shutdown(std::net::Shutdown::Both);
            let _ = server.shutdown(std::net::Shutdown::Both);
        }
    });
    format!("http://{addr}")
}

fn a_lost_answer_is_retried_without_doubling(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 2) else {
        return;
    };
    let mut till = Till::join(&server.url, &tokens[0]);
    let members: Vec<MemberId> = (0..5)
        .map(|i| enrol(&mut till.store, &format!("Member {i}")).member.id)
        .collect();
    trade(&mut till, &members, 200, 3);
    let outbox = till.store.outbox(100, 10_000).expect("outbox");
    let request = PushRequest {
        members: outbox.members.clone(),
        entries: outbox.entries.clone(),
    };
    let proxy = answer_dropping_proxy(server.url.trim_start_matches("http://").to_owned());
    let token = till
        .store
        .sync_settings()
        .expect("settings")
        .token
        .expect("token");
    let lossy = tillpass::sync::SyncClient::new(&proxy, &token, till.store.terminal_id().clone())
        .expect("client");
    let lost = lossy.push(&request);
    assert!(lost.is_err(), "the answer was dropped: {lost:?}");
    // The till did not hear back, so nothing is marked; the next sync sends it all again.
    let report = till.sync().expect("retry");
    assert_eq!(
        report.pushed_entries, 0,
        "the server already had every entry"
    );
    assert_eq!(report.duplicates, request.entries.len());
    let observer = Till::join(&server.url, &tokens[1]);
    assert_eq!(observer.entry_ids(), till.entry_ids());
    assert_eq!(observer.balances(), till.balances());
}

fn unknown_and_revoked_terminals_are_refused(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 2) else {
        return;
    };
    let before = server_seq(&server.url);
    let stranger = TempDb::new();
    let mut store = stranger.open();
    store
        .set_sync_server(&server.url, "tpt_notarealtoken")
        .expect("save");
    let client = tillpass::sync::client_for(&store).expect("client");
    let err = tillpass::sync::sync_once(&mut store, &client, now()).expect_err("refused");
    assert!(matches!(err, SyncError::Unauthorized(_)), "{err}");
    assert!(err.to_string().contains("unknown terminal token"), "{err}");

    let mut till = Till::join(&server.url, &tokens[0]);
    enrol(&mut till.store, "Ada");
    assert!(admin(&server.db, &["terminal", "revoke", "1"]));
    let err = till.sync().expect_err("revoked");
    assert!(err.to_string().contains("revoked"), "{err}");
    assert_eq!(server_seq(&server.url), before, "nothing stored");
    assert_eq!(
        till.store
            .sync_counters()
            .expect("counters")
            .waiting_members,
        1
    );
    let counters = till.store.sync_counters().expect("counters");
    assert!(counters.last_error.is_some_and(|e| e.contains("revoked")));

    // A token is bound to the first till that uses it.
    let other = TempDb::new();
    let mut store = other.open();
    store
        .set_sync_server(&server.url, &tokens[1])
        .expect("save");
    let client = tillpass::sync::client_for(&store).expect("client");
    tillpass::sync::sync_once(&mut store, &client, now()).expect("first use binds");
    let thief = TempDb::new();
    let mut stolen = thief.open();
    stolen
        .set_sync_server(&server.url, &tokens[1])
        .expect("save");
    let client = tillpass::sync::client_for(&stolen).expect("client");
    let err = tillpass::sync::sync_once(&mut stolen, &client, now()).expect_err("refused");
    assert!(matches!(err, SyncError::Unauthorized(_)), "{err}");
    assert!(
        err.to_string().contains("belongs to another terminal"),
        "{err}"
    );
    let owner = store.terminal_id().0.clone();
    assert!(!err.to_string().contains(&owner), "{err} names {owner}");
}

fn server_seq(url: &str) -> i64 {
    // reqwest is built without a default TLS provider; the sync client installs ring's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let health: serde_json::Value = reqwest::blocking::get(format!("{url}/health"))
        .expect("health")
        .json()
        .expect("json");
    health["server_seq"].as_i64().expect("server_seq")
}

fn bad_input_is_refused_and_nothing_is_stored(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 1) else {
        return;
    };
    let mut till = Till::join(&server.url, &tokens[0]);
    let member = enrol(&mut till.store, "Ada").member.id;
    till.sync().expect("member");
    let before = server_seq(&server.url);
    let terminal = till.store.terminal_id().clone();
    let http = reqwest::blocking::Client::new();
    let send = |body: Vec<u8>| {
        let response = http
            .post(format!("{}/v1/sync/push", server.url))
            .bearer_auth(&tokens[0])
            .header(TERMINAL_HEADER, &terminal.0)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .expect("send");
        let status = response.status().as_u16();
        let error = response
            .json::<ErrorBody>()
            .map(|b| b.error)
            .unwrap_or_default();
        (status, error)
    };

    let (status, error) = send(b"{\"entries\": [".to_vec());
    assert_eq!(status, 400, "{error}");
    assert!(!error.is_empty());
    let (status, error) = send(b"{\"entries\": [{\"id\": 5}]}".to_vec());
    assert_eq!(status, 422, "{error}");
    assert!(error.contains("entries"), "{error}");

    // An entry of the right shape to start from.
    let at = now();
    let good = till.store.earn(member, 1_000, "test", at).expect("earn");
    let with = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut e = serde_json::to_value(&good).expect("json");
        change(&mut e);
        serde_json::to_vec(&serde_json::json!({ "entries": [e] })).expect("body")
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "zero points adjustment",
            with(&|e| {
                e["kind"] = "adjust".into();
                e["points"] = 0.into();
                e["amount_minor"] = serde_json::Value::Null;
                e["currency"] = serde_json::Value::Null;
                e["note"] = "x".into();
            }),
        ),
        (
            "absurd points",
            with(&|e| e["points"] = 5_000_000_000_i64.into()),
        ),
        (
            "negative sale",
            with(&|e| e["amount_minor"] = (-100).into()),
        ),
        (
            "far future",
            with(&|e| e["occurred_at"] = "2099-01-01T00:00:00Z".into()),
        ),
        (
            "another terminal",
            with(&|e| e["terminal_id"] = "till-somebody-else".into()),
        ),
        (
            "unknown member",
            with(&|e| e["member_id"] = uuid::Uuid::now_v7().to_string().into()),
        ),
        (
            "reversal of nothing",
            with(&|e| {
                e["kind"] = "reverse".into();
                e["points"] = (-10).into();
                e["amount_minor"] = (-1000).into();
                e["reverses"] = uuid::Uuid::now_v7().to_string().into();
            }),
        ),
    ];
    for (what, body) in cases {
        let (status, error) = send(body);
        assert_eq!(status, 422, "{what}: {error}");
        assert!(!error.is_empty(), "{what} says why");
    }

    // Too many entries in one batch, and a body over the size limit.
    let many: Vec<serde_json::Value> = (0..10_001)
        .map(|_| {
            let mut e = serde_json::to_value(&good).expect("json");
            e["id"] = EntryId(uuid::Uuid::now_v7()).to_string().into();
            e
        })
        .collect();
    let (status, error) =
        send(serde_json::to_vec(&serde_json::json!({ "entries": many })).expect("body"));
    assert_eq!(status, 413, "{error}");
    assert!(error.contains("10000"), "{error}");
    // Over the body limit: refused from the declared length, before the body is read.
    let mut socket = TcpStream::connect(server.url.trim_start_matches("http://")).expect("connect");
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("timeout");
    write!(
        socket,
        "POST /v1/sync/push HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n{TERMINAL_HEADER}: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        tokens[0],
        terminal.0,
        17 * 1024 * 1024
    )
    .expect("send headers");
    let mut answer = String::new();
    let _ = socket.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("over the limit"), "{answer}");

    // A valid entry and a bad one together: all or nothing.
    let mut bad = serde_json::to_value(&good).expect("json");
    bad["id"] = EntryId(uuid::Uuid::now_v7()).to_string().into();
    bad["terminal_seq"] = 0.into();
    let body = serde_json::json!({ "entries": [serde_json::to_value(&good).expect("json"), bad] });
    let (status, _) = send(serde_json::to_vec(&body).expect("body"));
    assert_eq!(status, 422);
    assert_eq!(server_seq(&server.url), before, "nothing was stored");

    // The same id with different content after a real push: refused.
    till.sync().expect("push the good entry");
    let after = server_seq(&server.url);
    let (status, error) = send(with(&|e| e["actor"] = "someone else".into()));
    assert_eq!(status, 422, "{error}");
    assert!(error.contains("different content"), "{error}");
    assert_eq!(server_seq(&server.url), after);
}

fn offline_double_spends_are_accepted_and_listed(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 2) else {
        return;
    };
    let mut a = Till::join(&server.url, &tokens[0]);
    let mut b = Till::join(&server.url, &tokens[1]);
    let view = a
        .store
        .add_member(
            MemberInput {
                name: "Grace Hopper".into(),
                ..Default::default()
            },
            "test",
            now(),
        )
        .expect("enrol");
    let member = view.member.id;
    a.store
        .adjust(member, 500, "welcome gift", "test", now())
        .expect("top up");
    a.sync().expect("sync a");
    b.sync().expect("sync b");
    assert_eq!(b.balances()[&member.0], 600);

    // Both offline: each sees 600 points and gives away a coffee (500).
    a.store
        .redeem(member, "coffee", "test", now())
        .expect("a redeems");
    b.store
        .redeem(member, "coffee", "test", now())
        .expect("b redeems");
    a.sync().expect("sync a");
    b.sync().expect("sync b: accepted, it happened");
    a.sync().expect("sync a again");
    assert_eq!(a.balances()[&member.0], -400);
    assert_eq!(b.balances()[&member.0], -400);

    let list = b.client().double_spends().expect("list").double_spends;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].member_id, member);
    assert_eq!(list[0].balance_after, -400);
    assert_eq!(list[0].name, "Grace Hopper");
    let overdrawn = a.store.overdrawn_members(10).expect("overdrawn");
    assert_eq!(
        overdrawn
            .iter()
            .map(|v| v.member.id)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([member])
    );

    // Online, a redemption asks the server first: a till that has not pulled yet still knows.
    a.store
        .adjust(member, 700, "make good", "test", now())
        .expect("a tops up");
    a.sync().expect("sync a");
    let live = live_balance(&mut b.store, member, std::time::Duration::from_secs(30))
        .expect("live")
        .expect("b is connected");
    assert_eq!(
        live, 300,
        "the server counts a's top-up that b has not pulled"
    );
    let local = b.balances()[&member.0];
    assert_eq!(local, -400, "b has not pulled it");
    b.store
        .redeem_checked(member, "pastry", Some(live), "test", now())
        .expect("300 points buy a pastry online");
    let err = b
        .store
        .redeem_checked(member, "pastry", Some(0), "test", now())
        .expect_err("no points left online");
    assert!(err.to_string().contains("points"), "{err}");
}

fn a_new_till_catches_up_in_small_pages_after_card_replacements(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 2) else {
        return;
    };
    let mut a = Till::join(&server.url, &tokens[0]);
    let member = enrol(&mut a.store, "Ada Lovelace").member.id;
    for amount in [1_000, 2_000, 3_000] {
        a.store.earn(member, amount, "test", now()).expect("earn");
    }
    a.sync().expect("sync");
    let old_code = a
        .store
        .member_code(&a.store.member(member).expect("member").member.card);
    // A new card: the member's record gets a new version, served after the entries above.
    let new_card = a
        .store
        .replace_card(member, now())
        .expect("replace")
        .member
        .card;
    a.store.earn(member, 500, "test", now()).expect("earn");
    a.sync().expect("sync");

    // A new till catches up two records at a time, each page applied on its own.
    let b_db = TempDb::new();
    let mut b = b_db.open();
    b.set_sync_server(&server.url, &tokens[1]).expect("save");
    let client = tillpass::sync::client_for(&b).expect("client");
    tillpass::sync::engine::take_config(&mut b, &client, now(), &mut Default::default())
        .expect("config");
    let mut cursor = 0;
    loop {
        let page = client.pull(cursor, 2).expect("pull");
        let applied = b
            .apply_pulled(
                &page.members,
                &page.entries,
                page.next,
                page.next_record.as_deref(),
                now(),
            )
            .expect("apply");
        assert_eq!(
            applied.quarantined, 0,
            "every page applies: its members arrive first"
        );
        cursor = page.next;
        if !page.more {
            break;
        }
    }
    b.refresh_stale().expect("refresh");
    assert_eq!(b.member(member).expect("member").member.card, new_card);
    assert_eq!(b.history(member, 100).expect("history").len(), 5);
    assert!(b.verify(false).expect("verify").is_clean());
    let err = b.identify_code(&old_code).expect_err("old card refused");
    assert!(err.to_string().contains("replaced"), "{err}");
    assert_eq!(
        b.summary_at(member, now()).expect("summary").balance,
        a.balances()[&member.0]
    );
}
