//! Sync against the real server process on 127.0.0.1, on both backends: convergence of three
//! offline tills, duplicate pushes, a server killed mid-push, a lost answer, refused terminals
//! and refused input, offline double spends, and the server as the program's authority
//! (forged batches, reused and skipped sequence numbers, impossible member changes, the audit).

mod common;

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use common::server::{
    Backend, Server, Till, add_terminal, admin, admin_output, backup_sqlite, database,
    drop_database, now, put_back, server_bin,
};
use common::{TempDb, enrol};
use rand::{RngExt as _, SeedableRng as _};
use serde::de::DeserializeOwned;
use tillpass::domain::basket::SaleLine;
use tillpass::domain::quote::Sale;
use tillpass::domain::returns::Returned;
use tillpass::domain::{
    CardNumber, Entry, EntryId, EntryKind, Member, MemberId, MemberInput, MemberRecord,
    RetiredCard, TerminalId,
};
use tillpass::sync::protocol::{
    ConfigResponse, ErrorBody, PullResponse, PushRequest, PushResponse, RULE_SEQUENCE_GAP,
    RULE_SEQUENCE_REUSED, TERMINAL_HEADER,
};
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
    a_token_first_used_by_two_requests_at_once_binds_to_its_till,
    bad_input_is_refused_and_nothing_is_stored,
    offline_double_spends_are_accepted_and_listed,
    a_new_till_catches_up_in_small_pages_after_card_replacements,
    a_catch_up_over_many_pages_keeps_its_place,
    a_forged_batch_is_refused_whole_and_other_tills_keep_syncing,
    pushes_at_once_are_stored_together_and_judged_one_by_one,
    a_new_entry_under_a_stored_id_is_refused_by_that_id,
    every_impossible_entry_is_refused_by_its_rule,
    baskets_sync_everywhere_and_forged_baskets_are_refused,
    an_offer_unlocked_at_two_offline_tills_is_one_offer,
    a_badge_awarded_at_two_offline_tills_is_given_once,
    a_referral_rewarded_at_two_offline_tills_is_given_once,
    a_partner_file_imported_at_two_tills_gives_its_points_once,
    a_reused_or_skipped_sequence_number_is_refused,
    impossible_member_records_are_refused,
    a_card_phone_or_email_is_held_by_one_member,
    refusals_and_flags_show_in_the_audit,
    config_own_entries_and_record_names_tell_a_till_where_it_stands,
    a_database_from_before_the_sequence_column_is_backfilled,
    a_till_restored_from_an_older_copy_loses_nothing_and_reuses_no_number,
    a_restored_till_that_reverses_an_entry_again_keeps_syncing,
    cards_replaced_at_tills_apart_are_merged_everywhere,
    a_till_put_back_to_before_a_card_replacement_replaces_again_and_syncs,
    a_member_erased_at_one_till_is_erased_everywhere,
    rotated_keys_keep_old_cards_working_until_retired,
    a_shop_that_began_with_one_till_starts_its_chain_with_it,
    imported_balances_sync_everywhere_and_are_flagged,
    a_joining_till_finds_a_card_on_the_server_before_its_pull,
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
/// are part of life and write nothing. Returns the entries written (a sale also writes the
/// offers and badges it unlocks).
fn trade(till: &mut Till, members: &[MemberId], count: usize, seed: u64) -> usize {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let before = till.store.stats().expect("stats").entries;
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
        if let Err(e) = result {
            assert!(
                matches!(e, tillpass::store::StoreError::Refused(_)),
                "only refusals fail: {e}"
            );
        }
    }
    usize::try_from(till.store.stats().expect("stats").entries - before).expect("count")
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
                ..PushRequest::default()
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
    // Twice round: a till that finds its badge award was not the first reverses it after its
    // pull and pushes the reversal, which the others pull in the second round.
    let mut voided = 0;
    for _ in 0..2 {
        for till in &mut tills {
            voided += till.sync().expect("final sync").voided_awards;
        }
    }
    tills.push(Till::join(&server.url, &tokens[3]));

    let ids = tills[0].entry_ids();
    let own: usize = 40 + made + voided; // welcome bonuses + trades + awards taken back
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
        ..PushRequest::default()
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
    // The till did not hear back, so nothing is marked; the next sync learns from the server
    // that it holds them all, and neither sends them again nor numbers anything anew.
    let report = till.sync().expect("retry");
    assert_eq!(
        report.pushed_entries, 0,
        "the server already had every entry"
    );
    assert_eq!((report.recovered, report.renumbered), (0, 0));
    assert_eq!(
        till.store
            .sync_counters()
            .expect("counters")
            .waiting_entries,
        0
    );
    let observer = Till::join(&server.url, &tokens[1]);
    assert_eq!(observer.entry_ids(), till.entry_ids());
    assert_eq!(observer.balances(), till.balances());
}

fn unknown_and_revoked_terminals_are_refused(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 2) else {
        return;
    };
    let before = server_seq(&server);
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
    assert_eq!(server_seq(&server), before, "nothing stored");
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

fn a_token_first_used_by_two_requests_at_once_binds_to_its_till(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 1) else {
        return;
    };
    // A till's sync round and its balance check may both be its first request.
    let till = Rogue::new(&server.url, &tokens[0]);
    let start = std::sync::Barrier::new(8);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let requests: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    till.http
                        .get(format!("{}/v1/sync/config", till.url))
                        .bearer_auth(&till.token)
                        .header(TERMINAL_HEADER, &till.terminal.0)
                        .send()
                        .expect("send")
                        .status()
                        .as_u16()
                })
            })
            .collect();
        requests
            .into_iter()
            .map(|r| r.join().expect("request thread"))
            .collect()
    });
    assert_eq!(statuses, vec![200; 8]);
    let thief = Rogue::new(&server.url, &tokens[0]);
    let status = thief
        .http
        .get(format!("{}/v1/sync/config", thief.url))
        .bearer_auth(&thief.token)
        .header(TERMINAL_HEADER, &thief.terminal.0)
        .send()
        .expect("send")
        .status();
    assert_eq!(status.as_u16(), 403, "the token stays with the first till");
}

/// The server's highest seq, read from its database (`/health` tells nothing of volume).
fn server_seq(server: &Server) -> i64 {
    if let Some(path) = server.db.strip_prefix("sqlite:") {
        return rusqlite::Connection::open(path)
            .expect("open")
            .query_row("SELECT last FROM server_seq", [], |r| r.get(0))
            .expect("server_seq");
    }
    postgres(&server.db, |client| {
        Box::pin(async move {
            client
                .query_one("SELECT last FROM server_seq", &[])
                .await
                .expect("server_seq")
                .get(0)
        })
    })
}

fn bad_input_is_refused_and_nothing_is_stored(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 1) else {
        return;
    };
    let mut till = Till::join(&server.url, &tokens[0]);
    let member = enrol(&mut till.store, "Ada").member.id;
    till.sync().expect("member");
    let before = server_seq(&server);
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
    assert_eq!(server_seq(&server), before, "nothing was stored");

    // The same id with different content after a real push: refused.
    till.sync().expect("push the good entry");
    let after = server_seq(&server);
    let (status, error) = send(with(&|e| e["actor"] = "someone else".into()));
    assert_eq!(status, 422, "{error}");
    assert!(error.contains("different content"), "{error}");
    assert_eq!(server_seq(&server), after);
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

/// A new till catching up applies pages fetched together in one transaction; its cursor then
/// names the record the last of them ends at, so the next round pulls nothing and takes the
/// server for the same one, not for one restored from an older copy (which would pull it all
/// again).
fn a_catch_up_over_many_pages_keeps_its_place(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 3) else {
        return;
    };
    let mut a = Till::join(&server.url, &tokens[0]);
    let members: Vec<MemberId> = (0..40)
        .map(|i| enrol(&mut a.store, &format!("Member {i}")).member.id)
        .collect();
    a.sync().expect("sync");
    let rogue = Rogue::new(&server.url, &tokens[1]);
    let sales = 2 * tillpass::sync::engine::PULL_PAGE + 1_000;
    let mut seq = 0;
    while seq < sales {
        let batch: Vec<Entry> = (seq..(seq + 5_000).min(sales))
            .map(|i| rogue.sale(i as i64 + 1, members[i % members.len()], 1_000, 100))
            .collect();
        seq += batch.len();
        rogue.push(vec![], batch).expect("stored");
    }

    // Joining catches up in its first round.
    let mut b = Till::join(&server.url, &tokens[2]);
    let entries = |t: &Till| t.store.stats().expect("stats").entries;
    assert_eq!(entries(&b), sales as i64 + entries(&a));
    let next = b.sync().expect("next round");
    assert!(
        !next.server_restored,
        "the cursor names the record it ends at"
    );
    assert_eq!(next.pulled_entries, 0);
    a.sync().expect("a syncs");
    assert_eq!(b.balances(), a.balances());
}

/// A till that pushes hand-made batches over raw HTTP, as a till with a bug, a restored copy or
/// a compromised one could. Its terminal id is its own, and its token valid.
struct Rogue {
    url: String,
    token: String,
    terminal: TerminalId,
    http: reqwest::blocking::Client,
}

impl Rogue {
    fn new(url: &str, token: &str) -> Self {
        // reqwest is built without a default TLS provider; the sync client installs ring's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Rogue {
            url: url.to_owned(),
            token: token.to_owned(),
            terminal: TerminalId(format!("till-rogue-{:08x}", rand::random::<u32>())),
            http: reqwest::blocking::Client::new(),
        }
    }

    /// The ack, or the refusal (which must be a 422).
    fn push(
        &self,
        members: Vec<MemberRecord>,
        entries: Vec<Entry>,
    ) -> Result<PushResponse, ErrorBody> {
        let response = self
            .http
            .post(format!("{}/v1/sync/push", self.url))
            .bearer_auth(&self.token)
            .header(TERMINAL_HEADER, &self.terminal.0)
            .json(&PushRequest {
                members,
                entries,
                ..PushRequest::default()
            })
            .send()
            .expect("send");
        if response.status().is_success() {
            return Ok(response.json().expect("an ack"));
        }
        assert_eq!(response.status().as_u16(), 422, "a refusal is a 422");
        Err(response.json().expect("an error body"))
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> T {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header(TERMINAL_HEADER, &self.terminal.0)
            .send()
            .expect("send");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().expect("json")
    }

    fn entry(&self, seq: i64, member: MemberId, kind: EntryKind, points: i64) -> Entry {
        Entry {
            id: EntryId(uuid::Uuid::now_v7()),
            terminal_id: self.terminal.clone(),
            terminal_seq: seq,
            member_id: member,
            kind,
            points,
            amount_minor: None,
            currency: None,
            reward_id: None,
            reverses: None,
            occurred_at: now(),
            note: None,
            actor: "rogue".into(),
            lines: Vec::new(),
            stamps: Default::default(),
            returns: None,
        }
    }

    fn sale(&self, seq: i64, member: MemberId, amount: i64, points: i64) -> Entry {
        Entry {
            amount_minor: Some(amount),
            currency: Some("GBP".into()),
            ..self.entry(seq, member, EntryKind::Earn, points)
        }
    }

    fn reversal(&self, seq: i64, of: &Entry) -> Entry {
        Entry {
            amount_minor: of.amount_minor.map(|a| -a),
            currency: of.currency.clone(),
            reverses: Some(of.id),
            ..self.entry(seq, of.member_id, EntryKind::Reverse, -of.points)
        }
    }

    fn redeem(&self, seq: i64, member: MemberId, reward: &str, points: i64) -> Entry {
        Entry {
            reward_id: Some(reward.into()),
            ..self.entry(seq, member, EntryKind::Redeem, points)
        }
    }

    fn adjust(&self, seq: i64, member: MemberId, points: i64) -> Entry {
        Entry {
            note: Some("goodwill".into()),
            ..self.entry(seq, member, EntryKind::Adjust, points)
        }
    }

    fn config(&self, query: &str) -> ConfigResponse {
        self.get(&format!("/v1/sync/config{query}"))
    }
}

/// A member record as a till makes one at enrolment, with a random card.
fn new_member(name: &str) -> MemberRecord {
    let at = now();
    MemberRecord {
        member: Member {
            id: MemberId(uuid::Uuid::now_v7()),
            card: CardNumber::from_payload(u64::from(rand::random::<u32>())),
            name: name.into(),
            phone: None,
            email: None,
            birthday: None,
            marketing_consent: false,
            created_at: at,
        },
        version: at.millis(),
        retired_cards: Vec::new(),
        erased_at: None,
        referred_by: None,
    }
}

fn a_forged_batch_is_refused_whole_and_other_tills_keep_syncing(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, mut a, mut b, rogue)) = two_tills_and_a_rogue(backend, &dir) else {
        return;
    };
    let member = enrol(&mut a.store, "Ada Lovelace").member.id;
    a.sync().expect("sync a");
    b.sync().expect("sync b");
    let before = server_seq(&server);

    // The attack: a reversal listed before the entry it reverses, carrying +999,999 points,
    // that entry, and 900,000,000 points earned on a 0.01 GBP sale.
    let target = rogue.sale(1, member, 1_250, 125);
    let mut forged = rogue.reversal(2, &target);
    forged.points = 999_999;
    let penny = rogue.sale(3, member, 1, 900_000_000);
    // Judged in the order the till wrote them: the forged reversal (2) after its entry (1).
    let err = rogue
        .push(vec![], vec![forged.clone(), target.clone(), penny.clone()])
        .expect_err("refused");
    assert_eq!(err.rule.as_deref(), Some("not_exact"), "{}", err.error);
    assert_eq!(err.entry_id, Some(forged.id));
    assert!(err.error.contains("999999"), "{}", err.error);
    let honest_reversal = rogue.reversal(2, &target);
    let err = rogue
        .push(vec![], vec![honest_reversal, target.clone(), penny.clone()])
        .expect_err("refused");
    assert_eq!(err.rule.as_deref(), Some("earn_points"), "{}", err.error);
    assert_eq!(err.entry_id, Some(penny.id));
    assert!(err.error.contains("900000000"), "{}", err.error);
    assert_eq!(server_seq(&server), before, "nothing stored");
    assert_eq!(rogue.config("").terminal_seq, 0);

    // Every other till keeps syncing.
    a.store.earn(member, 2_000, "test", now()).expect("earn");
    a.sync().expect("sync a");
    b.sync().expect("sync b");
    assert_eq!(b.balances(), a.balances());
    assert!(b.store.verify(false).expect("verify").is_clean());

    // The honest batch in the same order is accepted, and a replay of it changes nothing.
    let honest = rogue.reversal(2, &target);
    let ack = rogue
        .push(vec![], vec![honest.clone(), target.clone()])
        .expect("a reversal listed before its target");
    assert_eq!((ack.inserted, ack.duplicates), (2, 0));
    let again = rogue
        .push(vec![], vec![honest.clone(), target.clone()])
        .expect("a replay");
    assert_eq!(
        (again.inserted, again.duplicates, again.server_seq),
        (0, 2, ack.server_seq)
    );
    b.sync().expect("b applies what the server serves");
    a.sync().expect("a too");
    for till in [&mut a, &mut b] {
        let ids = till.entry_ids();
        assert!(ids.contains(&target.id.0) && ids.contains(&honest.id.0));
        assert!(till.store.verify(false).expect("verify").is_clean());
    }
    assert_eq!(b.balances(), a.balances());
}

fn pushes_at_once_are_stored_together_and_judged_one_by_one(backend: Backend) {
    const TILLS: usize = 6;
    const PUSHES: i64 = 15;
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), TILLS + 1) else {
        return;
    };
    let tills: Vec<Rogue> = tokens[..TILLS]
        .iter()
        .map(|t| Rogue::new(&server.url, t))
        .collect();
    let forger = Rogue::new(&server.url, &tokens[TILLS]);
    let shopper = new_member("Shared Shopper");
    let member = shopper.member.id;
    tills[0]
        .push(vec![shopper], vec![])
        .expect("the shared member");
    let before = server_seq(&server);

    // Every till sends each of its pushes twice at once (a retry racing the original), its first
    // with a member it enrols; a forger pushes impossible sales meanwhile. Pushes that arrive
    // together share a transaction: each must be judged after the ones before it in the group
    // and refused alone.
    std::thread::scope(|scope| {
        for till in &tills {
            scope.spawn(move || {
                let own = new_member("Own Member");
                for seq in 1..=PUSHES {
                    let members = if seq == 1 { vec![own.clone()] } else { vec![] };
                    let sale = till.sale(seq, member, 1_000, 100);
                    let acks: Vec<PushResponse> = std::thread::scope(|twice| {
                        let sends: Vec<_> = (0..2)
                            .map(|_| {
                                let (members, sale) = (members.clone(), sale.clone());
                                twice.spawn(move || till.push(members, vec![sale]))
                            })
                            .collect();
                        sends
                            .into_iter()
                            .map(|s| s.join().expect("push thread").expect("an honest push"))
                            .collect()
                    });
                    let inserted: usize = acks.iter().map(|a| a.inserted).sum();
                    let duplicates: usize = acks.iter().map(|a| a.duplicates).sum();
                    assert_eq!((inserted, duplicates), (1, 1), "{acks:?}");
                }
            });
        }
        scope.spawn(|| {
            for _ in 0..PUSHES {
                let err = forger
                    .push(vec![], vec![forger.sale(1, member, 1_000, 999)])
                    .expect_err("an impossible sale");
                assert_eq!(err.rule.as_deref(), Some("earn_points"), "{}", err.error);
            }
        });
    });

    let stored = TILLS as i64 * (1 + PUSHES);
    assert_eq!(server_seq(&server), before + stored);
    for till in &tills {
        assert_eq!(till.config("").terminal_seq, PUSHES);
    }
    assert_eq!(forger.config("").terminal_seq, 0, "nothing of the forger's");
    let balance: tillpass::sync::protocol::BalanceResponse =
        forger.get(&format!("/v1/members/{member}/balance"));
    assert_eq!(balance.balance, TILLS as i64 * PUSHES * 100);
}

fn a_new_entry_under_a_stored_id_is_refused_by_that_id(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 2) else {
        return;
    };
    let (a, b) = (
        Rogue::new(&server.url, &tokens[0]),
        Rogue::new(&server.url, &tokens[1]),
    );
    let shopper = new_member("Id Clash");
    let member = shopper.member.id;
    let first = a.sale(1, member, 1_000, 100);
    a.push(vec![shopper], vec![first.clone()])
        .expect("the first sale");
    let before = server_seq(&server);

    // Another till's new entry, and this till's next one, under the stored entry's id.
    let mut copied = b.sale(1, member, 2_000, 200);
    copied.id = first.id;
    let mut again = a.sale(2, member, 2_000, 200);
    again.id = first.id;
    for (till, entry) in [(&b, copied), (&a, again)] {
        let honest = till.sale(entry.terminal_seq + 1, member, 500, 50);
        let err = till
            .push(vec![], vec![entry, honest])
            .expect_err("an id already stored");
        assert_eq!(err.rule.as_deref(), Some("id_conflict"), "{}", err.error);
        assert_eq!(err.entry_id, Some(first.id));
    }
    assert_eq!(server_seq(&server), before, "nothing stored");
    let ack = b
        .push(vec![], vec![b.sale(1, member, 500, 50)])
        .expect("the till's own sale");
    assert_eq!((ack.inserted, ack.server_seq), (1, before + 1));
}

fn every_impossible_entry_is_refused_by_its_rule(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 2) else {
        return;
    };
    let mut a = Till::join(&server.url, &tokens[0]);
    let rogue = Rogue::new(&server.url, &tokens[1]);
    let member = enrol(&mut a.store, "Grace Hopper").member.id;
    let sale_at_a = a.store.earn(member, 1_000, "test", now()).expect("earn");
    a.sync().expect("sync");
    let ours = rogue.sale(1, member, 1_250, 125);
    rogue
        .push(vec![], vec![ours.clone()])
        .expect("an honest sale");
    let before = server_seq(&server);

    let mut cases: Vec<(&str, Entry)> = vec![
        ("earn_points", rogue.sale(2, member, 1_250, 188)),
        ("sale_too_large", rogue.sale(2, member, 100_001, 10_000)),
        ("redeem_cost", rogue.redeem(2, member, "coffee", -5)),
        ("unknown_reward", rogue.redeem(2, member, "yacht", -500)),
        ("other_terminal", rogue.reversal(2, &sale_at_a)),
        ("adjustment_over_limit", rogue.adjust(2, member, 10_001)),
        (
            "welcome_twice",
            rogue.entry(2, member, EntryKind::WelcomeBonus, 100),
        ),
        (
            "bonus_amount",
            rogue.entry(2, member, EntryKind::BirthdayBonus, 251),
        ),
    ];
    let mut inexact = rogue.reversal(2, &ours);
    inexact.points = -124;
    cases.push(("not_exact", inexact));
    let mut orphan = rogue.reversal(2, &ours);
    orphan.reverses = Some(EntryId(uuid::Uuid::now_v7()));
    cases.push(("unknown_target", orphan));
    for (rule, entry) in cases {
        let err = rogue.push(vec![], vec![entry.clone()]).expect_err(rule);
        assert_eq!(err.rule.as_deref(), Some(rule), "{}", err.error);
        assert_eq!(err.entry_id, Some(entry.id), "{rule}");
        assert!(err.error.contains(&entry.id.to_string()), "{}", err.error);
    }
    assert_eq!(server_seq(&server), before, "nothing stored");

    // Honest entries of the same kinds pass: the reversal, an adjustment within the limit, a
    // redemption at the program's cost.
    rogue
        .push(
            vec![],
            vec![
                rogue.reversal(2, &ours),
                rogue.adjust(3, member, 600),
                rogue.redeem(4, member, "coffee", -500),
            ],
        )
        .expect("honest entries");
    let mut twice = rogue.reversal(5, &ours);
    twice.id = EntryId(uuid::Uuid::now_v7());
    let err = rogue.push(vec![], vec![twice]).expect_err("reversed twice");
    assert_eq!(
        err.rule.as_deref(),
        Some("already_reversed"),
        "{}",
        err.error
    );
}

/// A server with two joined tills and a rogue terminal pushing by hand.
fn two_tills_and_a_rogue(backend: Backend, dir: &TempDb) -> Option<(Server, Till, Till, Rogue)> {
    let (server, tokens) = server(backend, dir.dir.path(), 3)?;
    let a = Till::join(&server.url, &tokens[0]);
    let b = Till::join(&server.url, &tokens[1]);
    let rogue = Rogue::new(&server.url, &tokens[2]);
    Some((server, a, b, rogue))
}

fn baskets_sync_everywhere_and_forged_baskets_are_refused(backend: Backend) {
    let dir = TempDb::new();
    let Some((_server, mut a, mut b, rogue)) = two_tills_and_a_rogue(backend, &dir) else {
        return;
    };
    let member = enrol(&mut a.store, "Grace Hopper").member.id;
    // Two bags of beans, 24.00: 240 base, beans x2 and the 100 for 20.00 on beans.
    let beans = vec![SaleLine::item("House beans 250g", "beans", 2, 2_400)];
    let sale = a
        .store
        .earn_sale(member, Sale::Lines(&beans), "test", now())
        .expect("basket sale");
    assert_eq!((sale.points, sale.amount_minor), (580, Some(2_400)));
    a.sync().expect("sync a");
    b.sync().expect("sync b");
    let at_b = b.store.history(member, 10).expect("history");
    let pulled = at_b
        .iter()
        .find(|e| e.id == sale.id)
        .expect("the sale reached b");
    assert_eq!(pulled, &sale, "lines and all");
    assert_eq!(a.balances(), b.balances());

    let greedy = Entry {
        lines: beans.clone(),
        ..rogue.sale(1, member, 2_400, 900)
    };
    let err = rogue
        .push(vec![], vec![greedy])
        .expect_err("more than the basket earns");
    assert_eq!(err.rule.as_deref(), Some("earn_points"), "{}", err.error);
    let short = Entry {
        lines: beans.clone(),
        ..rogue.sale(1, member, 2_300, 580)
    };
    let err = rogue
        .push(vec![], vec![short])
        .expect_err("lines that do not add up");
    assert!(err.error.contains("do not add up"), "{}", err.error);
    let honest = Entry {
        lines: beans,
        ..rogue.sale(1, member, 2_400, 700)
    };
    rogue
        .push(vec![], vec![honest])
        .expect("what a Silver member's basket earns");

    // Stamps: nine lattes at b fill the coffee card; a spends it; both tills agree.
    let lattes = vec![SaleLine::item("Latte", "coffee", 9, 2_880)];
    let full = b
        .store
        .earn_sale(member, Sale::Lines(&lattes), "test", now())
        .expect("nine lattes");
    assert_eq!(full.stamps.get("coffee"), Some(&9));
    b.sync().expect("sync b");
    a.sync().expect("sync a");
    a.store
        .redeem_stamps(member, "coffee", "test", now())
        .expect("the free coffee");
    a.sync().expect("sync a");
    b.sync().expect("sync b");
    for till in [&a, &b] {
        assert!(till.store.stamps_held(member).expect("stamps").is_empty());
    }
    let forged = Entry {
        lines: lattes,
        stamps: [("coffee".to_owned(), 90)].into(),
        ..rogue.sale(2, member, 2_880, 288)
    };
    let err = rogue
        .push(vec![], vec![forged])
        .expect_err("stamps the basket did not earn");
    assert_eq!(err.rule.as_deref(), Some("earn_stamps"), "{}", err.error);

    // Returns: one bag of the two comes back at a, where it was sold; b may not return a's sale.
    let one_bag = a
        .store
        .refund(sale.id, Returned::Lines(&[(0, 1)]), "test", now())
        .expect("a return");
    assert_eq!((one_bag.points, one_bag.amount_minor), (-290, Some(-1_200)));
    assert!(matches!(
        b.store
            .refund(sale.id, Returned::Lines(&[(0, 1)]), "test", now()),
        Err(tillpass::store::StoreError::ForeignEntry(_))
    ));
    a.sync().expect("sync a");
    b.sync().expect("sync b");
    assert_eq!(a.balances(), b.balances());
    let mut greedy_return = Entry {
        kind: EntryKind::Return,
        returns: Some(full.id),
        ..rogue.sale(2, member, 2_880, 0)
    };
    greedy_return.amount_minor = Some(-320);
    greedy_return.points = -32;
    let err = rogue
        .push(vec![], vec![greedy_return])
        .expect_err("another till's sale");
    assert_eq!(err.rule.as_deref(), Some("return_of"), "{}", err.error);
}

fn an_offer_unlocked_at_two_offline_tills_is_one_offer(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, mut a, mut b, rogue)) = two_tills_and_a_rogue(backend, &dir) else {
        return;
    };
    let member = enrol(&mut a.store, "Grace Hopper").member.id;
    let t0 = now().plus_days(-3);
    for i in 0..4 {
        a.store
            .earn(member, 300, "test", t0.plus_millis(i * 60_000))
            .expect("a purchase");
    }
    a.sync().expect("sync a");
    b.sync().expect("sync b");
    // Both tills, offline from each other, see the fifth purchase of the run at their counter.
    let fifth_a = t0.plus_days(1);
    let fifth_b = t0.plus_days(1).plus_millis(5_000);
    a.store
        .earn(member, 300, "test", fifth_a)
        .expect("fifth at a");
    b.store
        .earn(member, 300, "test", fifth_b)
        .expect("fifth at b");
    for till in [&a, &b] {
        let offers = till.store.offers(member, fifth_b).expect("offers");
        assert_eq!(offers.open.len(), 1, "each till unlocked it");
    }
    a.sync().expect("sync a");
    b.sync().expect("sync b");
    a.sync().expect("sync a again");
    // Both facts are in every ledger; the earlier stands everywhere, so one offer is open.
    let later = fifth_b.plus_millis(1_000);
    let stands: Vec<_> = [&a, &b]
        .iter()
        .map(|t| t.store.offers(member, later).expect("offers").open)
        .collect();
    assert_eq!(stands[0].len(), 1);
    assert_eq!(stands[0], stands[1]);
    assert_eq!(stands[0][0].unlocked_at, fifth_a);
    // Used at b, it is closed at a too after sync.
    b.store
        .use_offer(member, "five-visits", "test", later)
        .expect("use it");
    b.sync().expect("sync b");
    a.sync().expect("sync a");
    assert!(
        a.store
            .offers(member, later)
            .expect("offers")
            .open
            .is_empty()
    );
    assert!(matches!(
        a.store.use_offer(member, "five-visits", "test", later),
        Err(tillpass::store::StoreError::Refused(_))
    ));

    // An unlock without the run here is flagged for the manager (the till may have counted
    // purchases not received yet); one naming an offer the program lacks is refused.
    let mut early = rogue.entry(1, member, EntryKind::OfferUnlocked, 0);
    early.reward_id = Some("five-visits".into());
    early.occurred_at = t0.plus_days(-30);
    rogue
        .push(vec![], vec![early])
        .expect("flagged, not refused");
    let audit = admin_output(&server.db, &["audit"]);
    assert!(audit.contains("unverified"), "{audit}");
    let mut unknown = rogue.entry(2, member, EntryKind::OfferUsed, 0);
    unknown.reward_id = Some("free-car".into());
    let err = rogue
        .push(vec![], vec![unknown])
        .expect_err("no such offer");
    assert_eq!(err.rule.as_deref(), Some("unknown_offer"), "{}", err.error);
}

fn a_badge_awarded_at_two_offline_tills_is_given_once(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, mut a, mut b, rogue)) = two_tills_and_a_rogue(backend, &dir) else {
        return;
    };
    let member = enrol(&mut a.store, "Grace Hopper").member.id;
    let t0 = now().plus_days(-2);
    for i in 0..9 {
        a.store
            .earn(member, 300, "test", t0.plus_millis(i * 60_000))
            .expect("a visit");
    }
    a.sync().expect("sync a");
    b.sync().expect("sync b");
    // The tenth visit at both tills apart: each awards "Regular" and its 100 points.
    a.store
        .earn(member, 300, "test", t0.plus_days(1))
        .expect("tenth at a");
    b.store
        .earn(member, 300, "test", t0.plus_days(1).plus_millis(9_000))
        .expect("tenth at b");
    for till in [&a, &b] {
        assert_eq!(till.store.badges(member).expect("badges"), ["regular"]);
    }
    a.sync().expect("sync a");
    let report = b.sync().expect("sync b");
    assert_eq!(
        report.voided_awards, 1,
        "b's award came second: b takes it back"
    );
    a.sync().expect("sync a again");
    // 100 welcome + 11 visits of 30 + one "Regular" award of 100.
    for till in [&a, &b] {
        let balance = till
            .store
            .summary_at(member, now())
            .expect("summary")
            .balance;
        assert_eq!(balance, 100 + 11 * 30 + 100);
        assert_eq!(till.store.badges(member).expect("badges"), ["regular"]);
    }
    assert_eq!(a.balances(), b.balances());
    let audit = admin_output(&server.db, &["audit"]);
    assert!(audit.contains("duplicate_badge"), "{audit}");

    // No till awards a badge with other points than the program's.
    let mut greedy = rogue.entry(1, member, EntryKind::BadgeAwarded, 1_000);
    greedy.reward_id = Some("regular".into());
    let err = rogue
        .push(vec![], vec![greedy])
        .expect_err("the badge gives 100");
    assert_eq!(err.rule.as_deref(), Some("badge_points"), "{}", err.error);
}

fn a_referral_rewarded_at_two_offline_tills_is_given_once(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, mut a, mut b, rogue)) = two_tills_and_a_rogue(backend, &dir) else {
        return;
    };
    let ada = enrol(&mut a.store, "Ada Lovelace").member;
    let referred = |name: &str, by: &str| MemberInput {
        name: name.into(),
        referred_by: Some(by.into()),
        ..MemberInput::default()
    };
    let err = a
        .store
        .add_member(referred("Cy Nobody", "12345"), "test", now())
        .expect_err("no such card");
    assert!(err.to_string().starts_with("referred by:"), "{err}");
    // Scanning Ada's code names her as well as typing her card number.
    let code = a.store.member_code(&ada.card);
    let bob = a
        .store
        .add_member(referred("Bob Byron", &code), "test", now())
        .expect("enrol Bob")
        .member;
    a.sync().expect("sync a");
    b.sync().expect("sync b");
    let t0 = now();
    b.store
        .earn(bob.id, 400, "test", t0)
        .expect("a purchase under the 5.00 minimum");
    // Bob's first qualifying purchase at both tills apart: each gives both bonuses.
    a.store
        .earn(bob.id, 600, "test", t0.plus_millis(1_000))
        .expect("first at a");
    b.store
        .earn(bob.id, 700, "test", t0.plus_millis(9_000))
        .expect("first at b");
    a.sync().expect("sync a");
    let report = b.sync().expect("sync b");
    assert_eq!(
        report.voided_awards, 2,
        "b's bonuses came second: b takes both back"
    );
    a.sync().expect("sync a again");
    for till in [&a, &b] {
        let balance = |m| till.store.summary_at(m, now()).expect("summary").balance;
        // Welcome 100, purchases of 40, 60 and 70, and the new member's 100 once.
        assert_eq!(balance(bob.id), 100 + 40 + 60 + 70 + 100);
        // Welcome 100 and the referrer's 200 once.
        assert_eq!(balance(ada.id), 100 + 200);
    }
    assert_eq!(a.balances(), b.balances());
    let audit = admin_output(&server.db, &["audit"]);
    assert!(audit.contains("repeated_referral"), "{audit}");

    // No till gives a referral bonus other than the program's.
    let mut greedy = rogue.entry(1, ada.id, EntryKind::ReferralBonus, 5_000);
    greedy.reward_id = Some(bob.id.to_string());
    let err = rogue
        .push(vec![], vec![greedy])
        .expect_err("the referrer gets 200");
    assert_eq!(
        err.rule.as_deref(),
        Some("referral_points"),
        "{}",
        err.error
    );
}

/// Each till synced, then its balance for `member`.
fn synced_balances(tills: [&mut Till; 2], member: MemberId) -> [i64; 2] {
    tills.map(|till| {
        till.sync().expect("sync");
        till.store
            .summary_at(member, now())
            .expect("summary")
            .balance
    })
}

fn a_partner_file_imported_at_two_tills_gives_its_points_once(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, mut a, mut b, rogue)) = two_tills_and_a_rogue(backend, &dir) else {
        return;
    };
    let ada = enrol(&mut a.store, "Ada Lovelace").member;
    a.sync().expect("sync a");
    b.sync().expect("sync b");
    let file = format!(
        "card,partner,points,reference\n{},cinema,400,T-7\n",
        ada.card.as_str()
    );
    for (till, at) in [(&mut a, now()), (&mut b, now().plus_millis(2_000))] {
        let lines = tillpass::domain::partners::read(till.store.program(), file.as_bytes());
        let report = till
            .store
            .import_partner_points(&lines, "test", at, false)
            .expect("import");
        assert!(report.written);
    }
    a.sync().expect("sync a");
    let report = b.sync().expect("sync b");
    assert_eq!(
        report.voided_awards, 1,
        "b's line came second: b takes it back"
    );
    a.sync().expect("sync a again");
    for till in [&a, &b] {
        let balance = till
            .store
            .summary_at(ada.id, now())
            .expect("summary")
            .balance;
        assert_eq!(balance, 100 + 400, "the welcome bonus and the line, once");
    }

    let audit = admin_output(&server.db, &["audit"]);
    assert!(audit.contains("repeated_partner_line"), "{audit}");

    // For the whole chain, the server records a partner's file: all of it or none.
    let path = dir.dir.path().join("cinema.csv");
    let card = ada.card.as_str();
    std::fs::write(
        &path,
        format!(
            "card,partner,points,reference\n{card},cinema,400,T-7\n{card},cinema,250,T-9\n\
             4242424242,cinema,100,T-10\n"
        ),
    )
    .expect("write");
    let file = path.to_str().expect("utf-8 path");
    let refused = server_bin()
        .args(["--db", &server.db, "partner-points", file])
        .output()
        .expect("run tillpass-server");
    let said = String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success());
    assert!(
        said.contains("line 2: reference T-7 was recorded before")
            && said.contains("line 4: no member holds card"),
        "{said}"
    );
    std::fs::write(
        &path,
        format!("card,partner,points,reference\n{card},cinema,250,T-9\n"),
    )
    .expect("write");
    let said = admin_output(&server.db, &["partner-points", file, "--dry-run"]);
    assert!(
        said.starts_with("Would record 1 partner lines, 250 points"),
        "{said}"
    );
    let said = admin_output(&server.db, &["partner-points", file]);
    assert!(
        said.starts_with("Recorded 1 partner lines, 250 points"),
        "{said}"
    );
    assert_eq!(
        synced_balances([&mut a, &mut b], ada.id),
        [100 + 400 + 250; 2],
        "the server's line reached the tills"
    );
    assert_eq!(a.balances(), b.balances());

    // Till a records T-11 while apart; the server records the same line later. The server's
    // copy does not stand: the next file the server records reverses it.
    let t11 = format!("card,partner,points,reference\n{card},cinema,300,T-11\n");
    let lines = tillpass::domain::partners::read(a.store.program(), t11.as_bytes());
    a.store
        .import_partner_points(&lines, "test", now(), false)
        .expect("import at a");
    std::fs::write(&path, &t11).expect("write");
    admin_output(&server.db, &["partner-points", file]);
    a.sync().expect("sync a");
    std::fs::write(
        &path,
        format!("card,partner,points,reference\n{card},cinema,50,T-12\n"),
    )
    .expect("write");
    let said = admin_output(&server.db, &["partner-points", file]);
    assert!(
        said.contains("Reversed 1 earlier server lines a till had recorded first"),
        "{said}"
    );
    assert_eq!(
        synced_balances([&mut a, &mut b], ada.id),
        [100 + 400 + 250 + 300 + 50; 2],
        "T-11 once"
    );
    assert_eq!(a.balances(), b.balances());

    let mut greedy = rogue.entry(1, ada.id, EntryKind::PartnerEarn, 5_000);
    greedy.reward_id = Some("cinema".into());
    greedy.note = Some("partner reference T-8".into());
    let err = rogue
        .push(vec![], vec![greedy])
        .expect_err("over the line's most");
    assert_eq!(err.rule.as_deref(), Some("partner_points"), "{}", err.error);
}

fn a_reused_or_skipped_sequence_number_is_refused(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 1) else {
        return;
    };
    let rogue = Rogue::new(&server.url, &tokens[0]);
    let record = new_member("Ada");
    let member = record.member.id;
    let first = vec![
        rogue.sale(1, member, 1_000, 100),
        rogue.sale(2, member, 2_000, 200),
    ];
    rogue
        .push(vec![record], first.clone())
        .expect("the first batch");
    assert_eq!(rogue.config("").terminal_seq, 2);
    let before = server_seq(&server);

    // A till restored from a copy taken after its first sale makes a new second entry.
    let restored = rogue.sale(2, member, 3_000, 300);
    let err = rogue
        .push(
            vec![],
            vec![restored.clone(), rogue.sale(3, member, 500, 50)],
        )
        .expect_err("reused");
    assert_eq!(err.rule.as_deref(), Some(RULE_SEQUENCE_REUSED));
    assert_eq!(err.entry_id, Some(restored.id));
    assert!(err.error.contains("holds up to 2"), "{}", err.error);
    assert!(
        err.error.contains("restored from an older copy"),
        "{}",
        err.error
    );

    let skipped = rogue.sale(4, member, 500, 50);
    let err = rogue
        .push(vec![], vec![skipped.clone()])
        .expect_err("a gap");
    assert_eq!(err.rule.as_deref(), Some(RULE_SEQUENCE_GAP));
    assert_eq!(err.entry_id, Some(skipped.id));
    assert!(err.error.contains("expected 3"), "{}", err.error);
    assert_eq!(server_seq(&server), before, "nothing stored");

    // The first batch again, with the next entry: the replay is counted, the new one stored.
    let mut batch = first;
    batch.push(rogue.sale(3, member, 500, 50));
    let ack = rogue.push(vec![], batch).expect("replay and new");
    assert_eq!((ack.inserted, ack.duplicates), (1, 2));
    assert_eq!(rogue.config("").terminal_seq, 3);
}

/// A card another member holds is refused; a phone or email another member has is dropped
/// (the first to arrive keeps it), within one push as across pushes, and one given up earlier
/// in the same push is free to take.
fn a_card_phone_or_email_is_held_by_one_member(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 1) else {
        return;
    };
    let rogue = Rogue::new(&server.url, &tokens[0]);
    let with_contacts = |name: &str, phone: &str, email: &str| {
        let mut record = new_member(name);
        record.member.phone = Some(phone.into());
        record.member.email = Some(email.into());
        record
    };
    let ada = with_contacts("Ada", "+447400000001", "ada@example.com");
    rogue.push(vec![ada.clone()], vec![]).expect("enrolled");
    let before = server_seq(&server);

    let mut card_thief = new_member("Mallory");
    card_thief.member.card = ada.member.card.clone();
    let err = rogue
        .push(vec![card_thief], vec![])
        .expect_err("a card another member holds");
    assert_eq!(err.rule.as_deref(), Some("card_taken"), "{}", err.error);
    assert_eq!(server_seq(&server), before, "nothing stored");

    // Bob asks for Ada's phone (kept by Ada) and a new email; Cy, later in the same push,
    // asks for Bob's new email (kept by Bob).
    let bob = with_contacts("Bob", "+447400000001", "bob@example.com");
    let cy = with_contacts("Cy", "+447400000003", "bob@example.com");
    // Ada gives up her phone, and Di, after her in the same push, takes it.
    let mut ada_moves = ada.clone();
    ada_moves.member.phone = Some("+447400000009".into());
    ada_moves.version += 1;
    let di = with_contacts("Di", "+447400000001", "di@example.com");
    let ack = rogue
        .push(vec![bob.clone(), cy.clone(), ada_moves, di.clone()], vec![])
        .expect("stored");
    assert_eq!(ack.members, 4);

    let served: PullResponse = rogue.get("/v1/sync/pull?after=0&limit=100");
    let latest = |id: MemberId| {
        served
            .members
            .iter()
            .filter(|m| m.member.id == id)
            .max_by_key(|m| m.version)
            .map(|m| (m.member.phone.clone(), m.member.email.clone()))
            .expect("served")
    };
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        latest(bob.member.id),
        (None, some("bob@example.com")),
        "Ada had the phone first"
    );
    assert_eq!(
        latest(cy.member.id),
        (some("+447400000003"), None),
        "Bob had the email first"
    );
    assert_eq!(
        latest(ada.member.id),
        (some("+447400000009"), some("ada@example.com"))
    );
    assert_eq!(
        latest(di.member.id),
        (some("+447400000001"), some("di@example.com")),
        "Ada gave the phone up before Di asked"
    );
}

fn impossible_member_records_are_refused(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 1) else {
        return;
    };
    let rogue = Rogue::new(&server.url, &tokens[0]);
    let before = server_seq(&server);
    let mut ahead = new_member("Ada");
    ahead.version = now().plus_days(365).millis();
    let err = rogue
        .push(vec![ahead], vec![])
        .expect_err("from the future");
    assert_eq!(err.rule.as_deref(), Some("member_time"), "{}", err.error);
    assert!(
        err.error.contains("later than the server's clock"),
        "{}",
        err.error
    );
    assert_eq!(server_seq(&server), before, "nothing stored");

    let record = new_member("Grace");
    rogue.push(vec![record.clone()], vec![]).expect("enrolled");
    let mut swapped = record.clone();
    swapped.member.card = CardNumber::from_payload(u64::from(rand::random::<u32>()));
    swapped.version += 1;
    let err = rogue
        .push(vec![swapped.clone()], vec![])
        .expect_err("a card swapped without retiring the old one");
    assert_eq!(err.rule.as_deref(), Some("member_change"), "{}", err.error);
    assert!(err.error.contains("not linked"), "{}", err.error);
    let mut reenrolled = record.clone();
    reenrolled.member.created_at = record.member.created_at.plus_millis(-1);
    reenrolled.version += 2;
    let err = rogue
        .push(vec![reenrolled], vec![])
        .expect_err("a new enrolment time");
    assert_eq!(err.rule.as_deref(), Some("member_change"), "{}", err.error);
    let mut own_card_retired = record.clone();
    own_card_retired.retired_cards.push(RetiredCard {
        card: record.member.card.clone(),
        retired_at: now(),
        replaced_by: record.member.card.clone(),
    });
    own_card_retired.version += 3;
    let err = rogue
        .push(vec![own_card_retired], vec![])
        .expect_err("the card in use retired");
    assert_eq!(err.rule.as_deref(), Some("member_change"), "{}", err.error);
    assert!(err.error.contains("retired yet in use"), "{}", err.error);

    // A replacement with the retired-card chain; then a copy from before it, renamed (a till
    // put back to an older copy of its file): merged, the replacement stays, the name is taken.
    swapped.retired_cards.push(RetiredCard {
        card: record.member.card.clone(),
        retired_at: now(),
        replaced_by: swapped.member.card.clone(),
    });
    let ack = rogue.push(vec![swapped.clone()], vec![]).expect("replaced");
    assert_eq!(ack.members, 1);
    let mut renamed = record.clone();
    renamed.member.name = "Grace Hopper".into();
    renamed.version = swapped.version + 1;
    let ack = rogue.push(vec![renamed.clone()], vec![]).expect("merged");
    assert_eq!(ack.members, 1);
    let served: PullResponse = rogue.get("/v1/sync/pull?after=0&limit=100");
    let latest = served
        .members
        .iter()
        .filter(|m| m.member.id == record.member.id)
        .max_by_key(|m| m.version)
        .expect("served");
    assert_eq!(
        (&latest.member.card, latest.member.name.as_str()),
        (&swapped.member.card, "Grace Hopper")
    );
    assert_eq!(latest.retired_cards, swapped.retired_cards);
    assert!(latest.version > renamed.version, "newer than either copy");
    let ack = rogue.push(vec![renamed], vec![]).expect("again");
    assert_eq!(ack.members, 0, "a copy merged already changes nothing");
}

fn refusals_and_flags_show_in_the_audit(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 1) else {
        return;
    };
    let rogue = Rogue::new(&server.url, &tokens[0]);
    let record = new_member("Ada");
    let member = record.member.id;
    let adjustment = rogue.adjust(1, member, 2_000);
    let coffees: Vec<Entry> = (2..=6)
        .map(|seq| rogue.redeem(seq, member, "coffee", -500))
        .collect();
    let mut batch = vec![adjustment.clone()];
    batch.extend(coffees.iter().cloned());
    rogue
        .push(vec![record], batch)
        .expect("honest, but to review");
    let penny = rogue.sale(7, member, 1, 900_000_000);
    rogue
        .push(vec![], vec![penny.clone()])
        .expect_err("refused");
    let restored = rogue.sale(3, member, 1_000, 100);
    rogue.push(vec![], vec![restored]).expect_err("refused");

    let text = admin_output(&server.db, &["audit", "--days", "1"]);
    let group = format!("{}  till {}", &now().to_string()[..10], rogue.terminal);
    assert_eq!(text.matches(&group).count(), 1, "one group: {text}");
    for expected in [
        "earn_points".to_owned(),
        penny.id.to_string(),
        RULE_SEQUENCE_REUSED.to_owned(),
        "adjustment of +2000 points".to_owned(),
        adjustment.id.to_string(),
        "over_offline_limit".to_owned(),
        coffees[4].id.to_string(),
        "double_spend".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected} in {text}");
    }
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&admin_output(&server.db, &["audit", "--json"])).expect("json");
    let kinds: BTreeSet<&str> = json.iter().filter_map(|i| i["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["refused", "flagged", "double_spend"])
    );
    assert_eq!(
        json.len(),
        5,
        "two refusals, two flags, one double spend: {json:?}"
    );
}

fn config_own_entries_and_record_names_tell_a_till_where_it_stands(backend: Backend) {
    let dir = TempDb::new();
    let Some((mut server, tokens)) = server(backend, dir.dir.path(), 2) else {
        return;
    };
    let rogue = Rogue::new(&server.url, &tokens[0]);
    let other = Rogue::new(&server.url, &tokens[1]);
    let record = new_member("Ada");
    let member = record.member.id;
    let sales: Vec<Entry> = (1..=3)
        .map(|seq| rogue.sale(seq, member, 1_000, 100))
        .collect();
    let ack = rogue
        .push(vec![record.clone()], sales.clone())
        .expect("pushed");

    let config = rogue.config("?known=0&cursor=1");
    assert_eq!(config.program_version, 1);
    assert_eq!(config.programs.len(), 1);
    assert_eq!(config.programs[0].toml, config.program_toml);
    assert_eq!(config.epoch.len(), 32, "{}", config.epoch);
    assert_eq!(config.server_seq, ack.server_seq);
    assert_eq!(config.terminal_seq, 3);
    assert_eq!(
        config.record_at_cursor,
        Some(format!("member:{member}:{}", record.version))
    );
    let last = rogue.config(&format!("?cursor={}", ack.server_seq));
    assert_eq!(
        last.record_at_cursor,
        Some(format!("entry:{}", sales[2].id))
    );
    assert_eq!(rogue.config("?cursor=0").record_at_cursor, None);
    assert_eq!(rogue.config("?cursor=999").record_at_cursor, None);
    assert_eq!(rogue.config("?known=1").programs, vec![]);
    assert_eq!(other.config("").terminal_seq, 0);

    // A pull names the record at its cursor, as config does.
    let page: PullResponse = other.get("/v1/sync/pull?after=0&limit=2");
    assert_eq!((page.next, page.more), (2, true));
    assert_eq!(page.next_record, Some(format!("entry:{}", sales[0].id)));
    assert_eq!(page.next_record, other.config("?cursor=2").record_at_cursor);

    // The till's own entries back, in its sequence, with their members first.
    let own: PullResponse = rogue.get("/v1/sync/own?after=0&limit=2");
    assert_eq!(own.members, vec![record.clone()]);
    assert_eq!(own.entries, sales[..2].to_vec());
    assert_eq!((own.next, own.more), (2, true));
    assert_eq!(own.next_record, Some(format!("entry:{}", sales[1].id)));
    let rest: PullResponse = rogue.get("/v1/sync/own?after=2&limit=10");
    assert_eq!(rest.entries, sales[2..].to_vec());
    assert_eq!((rest.next, rest.more), (3, false));
    let none: PullResponse = rogue.get("/v1/sync/own?after=3&limit=10");
    assert!(none.entries.is_empty() && none.members.is_empty());
    assert_eq!((none.next, none.more), (3, false));
    assert_eq!(none.next_record, Some(format!("entry:{}", sales[2].id)));
    let theirs: PullResponse = other.get("/v1/sync/own?after=0&limit=10");
    assert!(theirs.entries.is_empty(), "only the asking till's entries");

    // A new program version while the server runs: served to tills, and entries are judged by
    // it from then on (the coffee costs 600 now; 500 stays possible for tills still on v1).
    let dearer = dir.dir.path().join("dearer.toml");
    std::fs::write(
        &dearer,
        tillpass::domain::program::DEMO_PROGRAM_TOML.replace("cost = 500", "cost = 600"),
    )
    .expect("write");
    let coffee = rogue.redeem(4, member, "coffee", -600);
    let err = rogue
        .push(vec![], vec![coffee.clone()])
        .expect_err("not yet");
    assert_eq!(err.rule.as_deref(), Some("redeem_cost"), "{}", err.error);
    assert!(admin(
        &server.db,
        &["program", "set", dearer.to_str().expect("path")]
    ));
    let coffee = rogue.redeem(4, member, "coffee", -600);
    rogue.push(vec![], vec![coffee]).expect("v2 is in force");
    let config = rogue.config("?known=1");
    assert_eq!(config.program_version, 2);
    assert_eq!(config.programs.len(), 1);
    assert!(config.programs[0].toml.contains("cost = 600"));

    // The epoch names the database: a restart keeps it.
    server.kill();
    let restarted = Server::start(&server.db);
    let again = Rogue {
        url: restarted.url.clone(),
        ..rogue
    };
    assert_eq!(again.config("").epoch, config.epoch);
}

/// Rows as the server stored them before the terminal_seq column: a member and two sales of
/// one till, at server_seq 1 to 3.
fn legacy_rows(terminal: &TerminalId) -> (MemberRecord, Vec<(i64, Entry)>) {
    let record = new_member("Ada");
    let entries = (1..=2)
        .map(|seq| {
            let e = Entry {
                id: EntryId(uuid::Uuid::now_v7()),
                terminal_id: terminal.clone(),
                terminal_seq: seq,
                member_id: record.member.id,
                kind: EntryKind::Earn,
                points: 100,
                amount_minor: Some(1_000),
                currency: Some("GBP".into()),
                reward_id: None,
                reverses: None,
                occurred_at: now(),
                note: None,
                actor: "legacy".into(),
                lines: Vec::new(),
                stamps: Default::default(),
                returns: None,
            };
            (seq + 1, e)
        })
        .collect();
    (record, entries)
}

/// Writes `legacy_rows` into a database at the first schema version, as the old server left
/// it.
fn write_legacy_database(db: &str, terminal: &TerminalId) {
    let (record, entries) = legacy_rows(terminal);
    let body = serde_json::to_string(&record).expect("json");
    if let Some(path) = db.strip_prefix("sqlite:") {
        let conn = rusqlite::Connection::open(path).expect("open");
        conn.execute_batch(include_str!("../src/server/migrations/sqlite_001.sql"))
            .expect("schema 001");
        conn.pragma_update(None, "user_version", 1)
            .expect("version");
        conn.execute(
            "INSERT INTO members (id, version, card, body) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                record.member.id.0,
                record.version,
                record.member.card.as_str(),
                body
            ],
        )
        .expect("member");
        conn.execute(
            "INSERT INTO member_versions (server_seq, member_id, body) VALUES (1, ?1, ?2)",
            rusqlite::params![record.member.id.0, body],
        )
        .expect("member version");
        for (seq, e) in &entries {
            conn.execute(
                "INSERT INTO entries (server_seq, id, member_id, terminal_id, kind, points, body)
                 VALUES (?1, ?2, ?3, ?4, 'earn', ?5, ?6)",
                rusqlite::params![
                    seq,
                    e.id.0,
                    e.member_id.0,
                    e.terminal_id.0,
                    e.points,
                    serde_json::to_string(e).expect("json")
                ],
            )
            .expect("entry");
        }
        conn.execute("UPDATE server_seq SET last = 3", [])
            .expect("seq");
        return;
    }
    postgres(db, |client| {
        Box::pin(async move {
            client
                .batch_execute(include_str!("../src/server/migrations/postgres_001.sql"))
                .await
                .expect("schema 001");
            client
                .execute(
                    "INSERT INTO members (id, version, card, body) VALUES ($1, $2, $3, $4)",
                    &[
                        &record.member.id.0,
                        &record.version,
                        &record.member.card.as_str(),
                        &body,
                    ],
                )
                .await
                .expect("member");
            client
                .execute(
                    "INSERT INTO member_versions (server_seq, member_id, body) VALUES (1, $1, $2)",
                    &[&record.member.id.0, &body],
                )
                .await
                .expect("member version");
            for (seq, e) in &entries {
                client
                    .execute(
                        "INSERT INTO entries (server_seq, id, member_id, terminal_id, kind, points, body)
                         VALUES ($1, $2, $3, $4, 'earn', $5, $6)",
                        &[
                            seq,
                            &e.id.0,
                            &e.member_id.0,
                            &e.terminal_id.0,
                            &e.points,
                            &serde_json::to_string(e).expect("json"),
                        ],
                    )
                    .await
                    .expect("entry");
            }
            client
                .execute("UPDATE server_seq SET last = 3", &[])
                .await
                .expect("seq");
        })
    });
}

/// Runs `f` with a client of the PostgreSQL database `url`.
fn postgres<T>(
    url: &str,
    f: impl FnOnce(tokio_postgres::Client) -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>>,
) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = tillpass::server::pg_tls::connect(url)
            .await
            .expect("connect");
        f(client).await
    })
}

/// Whether the ledger refuses an `UPDATE` (the immutability trigger is in place).
fn ledger_refuses_updates(db: &str) -> bool {
    if let Some(path) = db.strip_prefix("sqlite:") {
        let conn = rusqlite::Connection::open(path).expect("open");
        return conn.execute("UPDATE entries SET points = 0", []).is_err();
    }
    postgres(db, |client| {
        Box::pin(async move {
            client
                .execute("UPDATE entries SET points = 0", &[])
                .await
                .is_err()
        })
    })
}

fn a_database_from_before_the_sequence_column_is_backfilled(backend: Backend) {
    let dir = TempDb::new();
    let Some(db) = database(backend, dir.dir.path()) else {
        return;
    };
    let terminal = TerminalId("till-legacy".into());
    write_legacy_database(&db, &terminal);
    let token = add_terminal(&db, "legacy till");
    let server = Server::start(&db);
    let legacy = Rogue {
        terminal: terminal.clone(),
        ..Rogue::new(&server.url, &token)
    };
    let config = legacy.config("?cursor=3");
    assert_eq!(config.terminal_seq, 2, "backfilled from the stored bodies");
    assert_eq!(config.server_seq, 3);
    assert_eq!(config.epoch.len(), 32);
    assert!(
        config
            .record_at_cursor
            .is_some_and(|r| r.starts_with("entry:"))
    );
    let own: PullResponse = legacy.get("/v1/sync/own?after=0&limit=10");
    assert_eq!(own.entries.len(), 2);
    let member = own.members[0].member.id;
    let err = legacy
        .push(vec![], vec![legacy.sale(2, member, 1_000, 100)])
        .expect_err("number 2 is held");
    assert_eq!(err.rule.as_deref(), Some(RULE_SEQUENCE_REUSED));
    let ack = legacy
        .push(vec![], vec![legacy.sale(3, member, 1_000, 100)])
        .expect("number 3 is next");
    assert_eq!((ack.inserted, ack.server_seq), (1, 4));
    assert!(ledger_refuses_updates(&db), "the trigger is back");
}

fn a_till_restored_from_an_older_copy_loses_nothing_and_reuses_no_number(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 2) else {
        return;
    };
    let mut a = Till::join(&server.url, &tokens[0]);
    let member = enrol(&mut a.store, "Grace Hopper").member.id;
    for amount in [1000, 2000] {
        a.store.earn(member, amount, "test", now()).expect("earn");
    }
    a.sync().expect("sync");
    let backup = dir.dir.path().join("till-backup.sqlite3");
    backup_sqlite(a.store.connection(), &backup);
    for amount in [3000, 4000] {
        a.store.earn(member, amount, "test", now()).expect("earn");
    }
    a.sync().expect("the server has them");

    a.restore(&backup);
    for amount in [500, 600, 700] {
        a.store
            .earn(member, amount, "test", now())
            .expect("earn after the restore");
    }
    let report = a.sync().expect("sync after the restore");
    // The fifth purchase also unlocked the five-visit offer: four entries numbered after the two
    // taken back.
    assert_eq!(
        (report.recovered, report.renumbered, report.pushed_entries),
        (2, 4, 4),
        "took back the two lost sales, numbered the three new ones after them, pushed them"
    );
    let mut seqs: Vec<i64> = a
        .store
        .connection()
        .prepare("SELECT terminal_seq FROM ledger ORDER BY terminal_seq")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    seqs.dedup();
    assert_eq!(
        seqs,
        (1..=9).collect::<Vec<_>>(),
        "gapless, no number used twice"
    );
    assert!(a.store.verify(false).expect("verify").is_clean());

    let observer = Till::join(&server.url, &tokens[1]);
    assert_eq!(
        observer.entry_ids(),
        a.entry_ids(),
        "every entry, exactly once"
    );
    assert_eq!(observer.balances(), a.balances());
    assert_eq!(
        a.balances()[&member.0],
        100 + 100 + 200 + 300 + 400 + 50 + 60 + 70
    );
}

/// A till put back to a copy from before it pushed a reversal reverses the same entry again:
/// the server's reversal stands, the second is set aside, and the till syncs on.
fn a_restored_till_that_reverses_an_entry_again_keeps_syncing(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 2) else {
        return;
    };
    let mut a = Till::join(&server.url, &tokens[0]);
    let member = enrol(&mut a.store, "Dorothy Vaughan").member.id;
    let sale = a.store.earn(member, 2000, "test", now()).expect("earn");
    a.sync().expect("sync");
    let backup = dir.dir.path().join("till-backup.sqlite3");
    backup_sqlite(a.store.connection(), &backup);
    let first = a.store.reverse(sale.id, "test", now()).expect("reverse");
    a.sync().expect("the server has the reversal");

    a.restore(&backup);
    let second = a
        .store
        .reverse(sale.id, "test", now())
        .expect("the copy does not know it was reversed");
    a.store.earn(member, 500, "test", now()).expect("earn");
    let report = a.sync().expect("sync after the restore");
    assert_eq!(
        (report.recovered, report.set_aside, report.pushed_entries),
        (1, 1, 1),
        "took back the first reversal, set the second aside, pushed the sale"
    );
    let aside = a.store.quarantined(10).expect("quarantine");
    assert_eq!(aside.len(), 1);
    assert_eq!(aside[0].record, format!("entry:{}", second.id));
    assert!(
        aside[0].reason.contains(&first.id.to_string()),
        "{}",
        aside[0].reason
    );
    a.store
        .reverse(sale.id, "test", now())
        .expect_err("reversed already");
    assert!(a.store.verify(false).expect("verify").is_clean());
    let again = a.sync().expect("and syncs on");
    assert_eq!((again.set_aside, again.pushed_entries), (0, 0));

    let observer = Till::join(&server.url, &tokens[1]);
    assert_eq!(observer.entry_ids(), a.entry_ids(), "every entry, once");
    assert!(!a.entry_ids().contains(&second.id.0));
    assert_eq!(observer.balances(), a.balances());
    assert_eq!(a.balances()[&member.0], 100 + 200 - 200 + 50);
}

/// Every card `member` was given, as `till` knows it: in use, or retired and replaced by the
/// card in use.
fn card_state(till: &Till, member: MemberId, card: &CardNumber) -> String {
    let conn = till.store.connection();
    let in_use: String = conn
        .query_row("SELECT card FROM members WHERE id = ?1", [member.0], |r| {
            r.get(0)
        })
        .expect("member");
    if in_use == card.as_str() {
        return "in use".into();
    }
    conn.query_row(
        "SELECT member_id, replaced_by FROM retired_cards WHERE card = ?1",
        [card.as_str()],
        |r| Ok((r.get::<_, uuid::Uuid>(0)?, r.get::<_, String>(1)?)),
    )
    .map(|(of, by)| {
        if of == member.0 && by == in_use {
            "retired for the card in use".to_owned()
        } else {
            format!("retired for {of}, replaced by {by}")
        }
    })
    .unwrap_or_else(|e| format!("unknown: {e}"))
}

/// Three tills give one member a new card each while offline; the latest given is pushed
/// second, the earliest last. Every push is taken, the newest card is the one in use
/// everywhere, and the others are retired for it.
fn cards_replaced_at_tills_apart_are_merged_everywhere(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 4) else {
        return;
    };
    let mut tills: Vec<Till> = tokens[..3]
        .iter()
        .map(|t| Till::join(&server.url, t))
        .collect();
    let view = enrol(&mut tills[0].store, "Annie Easley");
    let member = view.member.id;
    tills[0].sync().expect("push the member");
    for till in &mut tills[1..] {
        till.sync().expect("pull the member");
    }
    let mut given = vec![view.member.card];
    for (till, minutes) in [(0, 2), (1, 3), (2, 1)] {
        let at = now().plus_millis(minutes * 60_000);
        let card = tills[till]
            .store
            .replace_card(member, at)
            .expect("replace")
            .member
            .card;
        tills[till]
            .store
            .earn(member, 1000, "test", at)
            .expect("earn");
        given.push(card);
    }
    for till in &mut tills {
        let report = till.sync().expect("nothing refused");
        assert_eq!(report.pushed_entries, 1);
    }
    for till in &mut tills {
        till.sync().expect("settle");
    }
    let observer = Till::join(&server.url, &tokens[3]);
    for till in tills.iter().chain([&observer]) {
        let record = till.store.member(member).expect("member");
        assert_eq!(
            record.member.card, given[2],
            "the card given last is in use"
        );
        let states: Vec<String> = given[..2]
            .iter()
            .chain(&given[3..])
            .map(|c| card_state(till, member, c))
            .collect();
        assert_eq!(states, vec!["retired for the card in use"; 3]);
        assert_eq!(record.state.balance, 100 + 3 * 100);
        assert!(till.store.quarantined(10).expect("quarantine").is_empty());
        let counters = till.store.sync_counters().expect("counters");
        assert_eq!(counters.waiting_members, 0, "nothing waits");
    }
    let versions: BTreeSet<i64> = tills
        .iter()
        .chain([&observer])
        .map(|t| {
            t.store
                .connection()
                .query_row("SELECT version FROM members", [], |r| r.get(0))
                .expect("version")
        })
        .collect();
    assert_eq!(versions.len(), 1, "one record everywhere: {versions:?}");
}

/// A till put back to a copy from before a card replacement it pushed gives the member another
/// new card: it syncs on, and both cards it gave stay the member's.
fn a_till_put_back_to_before_a_card_replacement_replaces_again_and_syncs(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 2) else {
        return;
    };
    let mut a = Till::join(&server.url, &tokens[0]);
    let view = enrol(&mut a.store, "Evelyn Boyd Granville");
    let member = view.member.id;
    a.sync().expect("sync");
    let backup = dir.dir.path().join("till-backup.sqlite3");
    backup_sqlite(a.store.connection(), &backup);
    let first = a
        .store
        .replace_card(member, now())
        .expect("replace")
        .member
        .card;
    a.sync().expect("the server has the new card");

    a.restore(&backup);
    let later = now().plus_millis(60_000);
    let second = a
        .store
        .replace_card(member, later)
        .expect("replace")
        .member
        .card;
    a.store.earn(member, 1000, "test", later).expect("earn");
    let report = a.sync().expect("sync after the restore");
    assert_eq!(report.pushed_entries, 1, "the sale went too");
    a.sync().expect("settle");
    let observer = Till::join(&server.url, &tokens[1]);
    for till in [&a, &observer] {
        assert_eq!(
            till.store.member(member).expect("member").member.card,
            second
        );
        for card in [&view.member.card, &first] {
            assert_eq!(
                card_state(till, member, card),
                "retired for the card in use"
            );
        }
        let err = till
            .store
            .identify_code(&till.store.member_code(&first))
            .expect_err("replaced");
        assert!(err.to_string().contains("replaced"), "{err}");
    }
    assert_eq!(
        a.store.sync_counters().expect("counters").waiting_members,
        0
    );
}

#[test]
fn a_server_restored_from_an_older_copy_is_noticed_and_healed() {
    let dir = TempDb::new();
    let Some((mut server, tokens)) = server(Backend::Sqlite, dir.dir.path(), 3) else {
        return;
    };
    let path = server
        .db
        .strip_prefix("sqlite:")
        .expect("sqlite url")
        .to_owned();
    let mut a = Till::join(&server.url, &tokens[0]);
    let mut b = Till::join(&server.url, &tokens[1]);
    let member = enrol(&mut a.store, "Ada Lovelace").member.id;
    a.store.earn(member, 1000, "test", now()).expect("earn");
    a.sync().expect("sync a");
    b.sync().expect("sync b");
    let backup = dir.dir.path().join("server-backup.sqlite3");
    backup_sqlite(
        &rusqlite::Connection::open(&path).expect("open server db"),
        &backup,
    );
    // After the backup: more at a, which b pulls, and a member enrolled at a whom the older copy
    // will not know.
    for amount in [2000, 3000] {
        a.store.earn(member, amount, "test", now()).expect("earn");
    }
    let grace = enrol(&mut a.store, "Grace Hopper").member.id;
    a.store.earn(grace, 1500, "test", now()).expect("earn");
    a.sync().expect("sync a");
    b.sync().expect("sync b");
    let before = a.balances();
    assert_eq!(b.balances(), before);

    // The server's disk is replaced by the older copy; b writes first, so its new entries take
    // the numbers a's lost entries had: a's cursor is not past the end, only wrong.
    server.kill();
    put_back(&backup, std::path::Path::new(&path));
    let server = Server::start(&server.db);
    a.repoint(&server.url);
    b.repoint(&server.url);
    let other = enrol(&mut b.store, "Alan Turing").member.id;
    for amount in [700, 800, 900] {
        b.store
            .earn(other, amount, "test", now())
            .expect("earn at b");
    }
    let report = b.sync().expect("b after the restore");
    assert!(report.server_restored, "b's cursor was past the end");
    let report = a.sync().expect("a after the restore");
    assert!(report.server_restored, "another record at a's cursor");
    assert!(
        report.pushed_entries >= 2,
        "a pushed its lost entries again"
    );
    b.sync().expect("b again");
    a.sync().expect("a again");

    let mut c = Till::join(&server.url, &tokens[2]);
    assert_eq!(a.entry_ids(), b.entry_ids());
    assert_eq!(
        c.entry_ids(),
        a.entry_ids(),
        "the server has every entry again"
    );
    assert_eq!(c.balances(), a.balances());
    assert_eq!(a.balances()[&member.0], before[&member.0]);
    assert_eq!(
        c.balances()[&grace.0],
        before[&grace.0],
        "the member the older copy lacked was pushed again, and her entries with her"
    );
    for till in [&mut a, &mut b, &mut c] {
        assert!(till.store.verify(false).expect("verify").is_clean());
    }
}

/// Whether any of `needles` appears in the bytes of the SQLite file at `path` or its log.
fn file_holds(path: &std::path::Path, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in [
        path.to_path_buf(),
        std::path::PathBuf::from(format!("{}-wal", path.display())),
    ] {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        for needle in needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(format!("{needle:?} in {}", file.display()));
            }
        }
    }
    found
}

fn a_member_erased_at_one_till_is_erased_everywhere(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 4) else {
        return;
    };
    let mut tills: Vec<Till> = tokens[..3]
        .iter()
        .map(|t| Till::join(&server.url, t))
        .collect();
    let ada = tills[0]
        .store
        .add_member(
            MemberInput {
                name: "Ada Lovelace".into(),
                phone: Some("07400 123456".into()),
                email: Some("ada.lovelace@example.com".into()),
                birthday: Some("1990-12-10".into()),
                marketing_consent: true,
                referred_by: None,
            },
            "test",
            now(),
        )
        .expect("enrol")
        .member
        .id;
    tills[0].store.earn(ada, 1250, "test", now()).expect("earn");
    for till in &mut tills {
        till.sync().expect("sync");
    }
    assert!(
        tills[1]
            .store
            .member_by_phone("+447400123456")
            .expect("lookup")
            .is_some()
    );

    tills[0].store.erase_member(ada, now()).expect("erase");
    for _ in 0..2 {
        for till in &mut tills {
            till.sync().expect("sync");
        }
    }
    let needles = ["Lovelace", "lovelace", "7400123456", "ada.lovelace@example"];
    for till in &mut tills {
        let view = till.store.member(ada).expect("the member stays");
        assert_eq!(view.member.name, tillpass::domain::member::ERASED_NAME);
        assert_eq!(
            (&view.member.phone, &view.member.email, view.member.birthday),
            (&None, &None, None)
        );
        assert_eq!(view.state.balance, 100 + 125, "the points stay");
        assert!(till.store.search("lovelace", 5).expect("search").is_empty());
        assert!(till.store.verify(false).expect("verify").is_clean());
        let held = file_holds(&till.db.path, &needles);
        assert!(held.is_empty(), "{held:?}");
    }
    match backend {
        Backend::Sqlite => {
            let path = server.db.strip_prefix("sqlite:").expect("path");
            let held = file_holds(std::path::Path::new(path), &needles);
            assert!(held.is_empty(), "{held:?}");
        }
        Backend::Postgres => {
            let rows: i64 = postgres(&server.db, |client| {
                Box::pin(async move {
                    client
                        .query_one(
                            "SELECT (SELECT COUNT(*) FROM members WHERE body LIKE '%Lovelace%')
                                  + (SELECT COUNT(*) FROM member_versions WHERE body LIKE '%Lovelace%'
                                     OR body LIKE '%7400123456%')",
                            &[],
                        )
                        .await
                        .expect("count")
                        .get(0)
                })
            });
            assert_eq!(rows, 0, "no version on the server keeps the person's data");
        }
    }
    // An erased member cannot be brought back by an older record.
    let observer = Till::join(&server.url, &tokens[3]);
    assert_eq!(
        observer.store.member(ada).expect("member").member.name,
        tillpass::domain::member::ERASED_NAME
    );
}

fn rotated_keys_keep_old_cards_working_until_retired(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 2) else {
        return;
    };
    let mut a = Till::join(&server.url, &tokens[0]);
    let member = enrol(&mut a.store, "Ada Lovelace").member;
    let printed = a.store.member_code(&member.card);
    assert!(printed.starts_with("TP1."), "{printed}");
    a.sync().expect("sync");

    assert!(admin(&server.db, &["key", "rotate"]));
    a.sync().expect("sync takes the new key");
    let new = a.store.member_code(&member.card);
    assert!(new.starts_with("TP2.1."), "new codes use key 1: {new}");
    let mut b = Till::join(&server.url, &tokens[1]);
    for till in [&a, &b] {
        for code in [&printed, &new] {
            let found = till.store.identify_code(code).expect("verifies");
            assert_eq!(found.member.id, member.id);
        }
    }

    assert!(admin(&server.db, &["key", "retire", "0"]));
    assert!(
        !admin(&server.db, &["key", "retire", "1"]),
        "the last live key cannot be retired"
    );
    a.sync().expect("sync");
    b.sync().expect("sync");
    for till in [&a, &b] {
        let err = till.store.identify_code(&printed).expect_err("retired");
        assert!(err.to_string().contains("key 0"), "{err}");
        assert_eq!(
            till.store.identify_code(&new).expect("new code").member.id,
            member.id
        );
    }
}

fn imported_balances_sync_everywhere_and_are_flagged(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 2) else {
        return;
    };
    let mut a = Till::join(&server.url, &tokens[0]);
    let parsed = tillpass::domain::import::read(
        b"name,email,balance,joined\nAda Lovelace,ada@example.com,1250,2023-05-04\nBo Peep,bo@example.com,0,\n",
    )
    .expect("read");
    let report = a
        .store
        .import_members(&parsed, "import", now(), false, &mut |_| {})
        .expect("import");
    assert_eq!((report.members, report.points), (2, 1250));
    a.sync()
        .expect("the opening balance is an entry like any other");
    let b = Till::join(&server.url, &tokens[1]);
    assert_eq!(b.balances(), a.balances());
    let audit = admin_output(&server.db, &["audit", "--json"]);
    assert!(audit.contains("opening_balance"), "{audit}");
}

/// A till that has joined but not pulled yet (a big chain's history still on its way) finds
/// a card it does not know on the server: the member is taken on with their history ahead of
/// the pull, so the till shows the server's balance and tier and sells at that tier at once;
/// the pull that follows brings the same member and entries again and changes nothing of
/// theirs. A member whose history here fell behind is caught up the same way. A card no member
/// holds is unknown on the server too.
fn a_joining_till_finds_a_card_on_the_server_before_its_pull(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 2) else {
        return;
    };
    let mut a = Till::join(&server.url, &tokens[0]);
    let member = enrol(&mut a.store, "Grace Hopper").member.id;
    // 1,000 points and then some: Silver, which earns a quarter more.
    for amount in [10_000, 2_500] {
        a.store.earn(member, amount, "test", now()).expect("earn");
    }
    a.sync().expect("sync");
    let record = a.store.member(member).expect("member").member;
    let code = a.store.member_code(&record.card);
    let on_server = a.balances()[&member.0];
    let silver = a.store.member(member).expect("member").state.tier;
    assert_eq!(silver, 1, "the history makes them Silver");

    let b_db = TempDb::new();
    let store = b_db.open();
    let mut b = Till { db: b_db, store };
    let join = tillpass::sync::join::JoinCode {
        url: server.url.clone(),
        token: tokens[1].clone(),
        pin: None,
    };
    let report =
        tillpass::sync::join_then_catch_up(&mut b.store, &join, false, now()).expect("join");
    assert_eq!(
        report.pulled_members + report.pulled_entries,
        0,
        "{report:?}"
    );
    let unknown = b.store.identify_code(&code).expect_err("not pulled yet");
    assert!(unknown.to_string().contains("not known here"), "{unknown}");

    let wait = tillpass::sync::client::REQUEST_TIMEOUT;
    let found = tillpass::sync::look_up_card(&mut b.store, &record.card, wait, now())
        .expect("look up")
        .expect("the server knows the card");
    assert_eq!(found, (member, on_server));
    let view = b.store.identify_code(&code).expect("now known here");
    assert_eq!(view.member, record);
    assert_eq!(
        (view.state.balance, view.state.tier),
        (on_server, silver),
        "their history came with them"
    );
    assert_eq!(b.store.sync_counters().expect("counters").pull_cursor, 0);
    let sold = b
        .store
        .earn(member, 700, "test", now())
        .expect("a sale at once")
        .points;
    assert_eq!(sold, 70 * 5 / 4, "priced at Silver");
    let nobody = CardNumber::from_payload(1);
    assert_ne!(nobody, record.card);
    assert_eq!(
        tillpass::sync::look_up_card(&mut b.store, &nobody, wait, now()).expect("look up"),
        None
    );
    let malformed = reqwest::blocking::Client::new()
        .get(format!("{}/v1/members/by-card/12345", server.url))
        .bearer_auth(&tokens[1])
        .header(TERMINAL_HEADER, &b.store.terminal_id().0)
        .send()
        .expect("send");
    assert_eq!(malformed.status().as_u16(), 400);
    let error = malformed.json::<ErrorBody>().expect("an error body").error;
    assert!(error.contains("is not a card number"), "{error}");
    for (id, status, says) in [
        ("12345".to_owned(), 400, "is not a member id"),
        (uuid::Uuid::now_v7().to_string(), 404, "is not known"),
    ] {
        let asked = reqwest::blocking::Client::new()
            .get(format!("{}/v1/members/{id}/history", server.url))
            .bearer_auth(&tokens[1])
            .header(TERMINAL_HEADER, &b.store.terminal_id().0)
            .send()
            .expect("send");
        assert_eq!(asked.status().as_u16(), status, "{id}");
        let error = asked.json::<ErrorBody>().expect("an error body").error;
        assert!(error.contains(says), "{error}");
    }

    let report = b.sync().expect("the pull behind");
    assert_eq!(report.pulled_entries, 0, "all here already: {report:?}");
    a.sync().expect("sync");
    assert_eq!(b.balances(), a.balances());
    assert_eq!(b.balances()[&member.0], on_server + sold);
    assert_eq!(b.store.member(member).expect("member").member, record);
    assert_eq!(
        b.store.sync_counters().expect("counters").waiting_members,
        0
    );

    // Till a sells on; till b, not synced since, is behind on the member until it asks.
    a.store.earn(member, 40_000, "test", now()).expect("earn");
    a.sync().expect("sync");
    let behind = b.store.member(member).expect("member").state;
    let (taken, live) = tillpass::sync::catch_up_member(&mut b.store, member, wait, now())
        .expect("catch up")
        .expect("joined");
    let caught_up = b.store.member(member).expect("member").state;
    assert!(taken >= 1, "the sale, and what it unlocked");
    assert_eq!(live, a.balances()[&member.0]);
    assert_eq!((caught_up.balance, caught_up.tier), (live, 2), "Gold now");
    assert!(behind.balance < live && behind.tier == silver);
    assert_eq!(
        tillpass::sync::catch_up_member(&mut b.store, member, wait, now()).expect("again"),
        Some((0, live)),
        "nothing new the second time"
    );
    b.sync().expect("sync");
    assert_eq!(b.balances(), a.balances());
    assert_eq!(b.store.quarantined(10).expect("quarantine"), Vec::new());
    assert!(b.store.verify(false).expect("verify").is_clean());
}

#[test]
fn a_server_backup_put_back_is_noticed_by_its_epoch() {
    let dir = TempDb::new();
    let Some((mut server, tokens)) = server(Backend::Sqlite, dir.dir.path(), 1) else {
        return;
    };
    let path = server
        .db
        .strip_prefix("sqlite:")
        .expect("sqlite")
        .to_owned();
    let mut a = Till::join(&server.url, &tokens[0]);
    let member = enrol(&mut a.store, "Ada Lovelace").member.id;
    a.sync().expect("sync");
    let copy = dir.dir.path().join("server-backup.sqlite3");
    assert!(admin(&server.db, &["backup", copy.to_str().expect("path")]));
    assert!(
        !admin(&server.db, &["backup", copy.to_str().expect("path")]),
        "a backup never overwrites a file"
    );
    a.store.earn(member, 1000, "test", now()).expect("earn");
    a.sync().expect("sync");

    server.kill();
    put_back(&copy, std::path::Path::new(&path));
    let server = Server::start(&server.db);
    a.repoint(&server.url);
    let report = a.sync().expect("sync after the restore");
    assert!(report.server_restored, "the copy's own epoch is noticed");
    let observer_token = add_terminal(&server.db, "observer");
    let observer = Till::join(&server.url, &observer_token);
    assert_eq!(
        observer.balances(),
        a.balances(),
        "the sale lost with the copy came back"
    );
}

#[test]
fn health_tells_nothing_of_volume_or_the_database() {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(Backend::Sqlite, dir.dir.path(), 1) else {
        return;
    };
    let mut a = Till::join(&server.url, &tokens[0]);
    enrol(&mut a.store, "Ada Lovelace");
    a.sync().expect("sync");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let body = reqwest::blocking::get(format!("{}/health", server.url))
        .expect("health")
        .text()
        .expect("body");
    assert_eq!(body, r#"{"status":"ok"}"#);
}

/// A shop that began with one till, on its own, and gave out cards: that till joins a new
/// server, which takes its member-code key, so the cards work on every till it adds. A second
/// till with members of its own cannot join the chain then, nor can a till holding demo data
/// start one: refused with the reason, nothing kept.
fn a_shop_that_began_with_one_till_starts_its_chain_with_it(backend: Backend) {
    let dir = TempDb::new();
    let Some((server, tokens)) = server(backend, dir.dir.path(), 4) else {
        return;
    };
    let code_for = |token: &str| tillpass::sync::join::JoinCode {
        url: server.url.clone(),
        token: token.to_owned(),
        pin: None,
    };
    let first_db = TempDb::new();
    let mut first = first_db.open();
    let ada = enrol(&mut first, "Ada Lovelace").member;
    first.earn(ada.id, 1250, "till", now()).expect("earn");
    let card = first.member_code(&ada.card);
    // A till holding demo data cannot start the chain: its made-up history would stay on it
    // alone. Refused, nothing kept, and the server stays empty for the shop's real till.
    let demo_db = TempDb::new();
    let mut demo = demo_db.open();
    tillpass::demo::seed(&mut demo, 5, 7, now(), |_| {}).expect("demo data");
    let refused = tillpass::sync::join(&mut demo, &code_for(&tokens[3]), false, now())
        .expect_err("demo data cannot start a chain");
    assert!(refused.to_string().contains("demo data"), "{refused}");
    assert_eq!(demo.sync_settings().expect("settings").server_url, None);

    let joined = tillpass::sync::join(&mut first, &code_for(&tokens[0]), false, now())
        .expect("the shop's first till starts the chain");
    assert_eq!((joined.pushed_members, joined.pushed_entries), (1, 2));
    assert_eq!(
        first.member_code(&ada.card),
        card,
        "its cards keep their codes"
    );

    let second = Till::join(&server.url, &tokens[1]);
    let found = second
        .store
        .identify_code(&card)
        .expect("the card works at the new till");
    assert_eq!(found.member.id, ada.id);
    let held = first.summary_at(ada.id, now()).expect("summary").balance;
    assert_eq!(
        found.state.balance, held,
        "the welcome bonus and the sale's 125 points"
    );
    assert_eq!(held, 225);

    let other_db = TempDb::new();
    let mut other = other_db.open();
    enrol(&mut other, "Grace Hopper");
    let refused = tillpass::sync::join(&mut other, &code_for(&tokens[2]), false, now())
        .expect_err("a chain already under way keeps its key");
    let reason = refused.to_string();
    assert!(reason.contains("new chain"), "{reason}");
    assert_eq!(other.sync_settings().expect("settings").server_url, None);
    let again = tillpass::sync::join(&mut first, &code_for(&tokens[0]), false, now());
    assert!(again.is_ok(), "the first till joins again: {again:?}");
}

/// An admin command beside a serving PostgreSQL server takes none of the schema's locks again:
/// with a long read holding the entries table, `audit` answers at once. Before, it queued an
/// `ALTER TABLE` behind the read and the server's next reads queued behind that, which hung a
/// test run for good when the read was the server's own. The command gives up on any lock after
/// 10 s, so a regression fails instead of hanging.
#[test]
fn an_admin_command_does_not_wait_for_a_long_read_on_postgres() {
    let dir = TempDb::new();
    let Some((server, _tokens)) = server(Backend::Postgres, dir.dir.path(), 1) else {
        return;
    };
    let impatient = format!("{}&options=-c%20lock_timeout%3D10000", server.db);
    let audit = postgres(&server.db, |mut client| {
        Box::pin(async move {
            let read = client.transaction().await.expect("begin");
            read.query("SELECT count(*) FROM entries", &[])
                .await
                .expect("a long read");
            let out = server_bin()
                .args(["--db", &impatient, "audit", "--days", "1"])
                .output()
                .expect("run tillpass-server audit");
            read.rollback().await.expect("end the read");
            out
        })
    });
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stderr)
    );
    drop_database(&server.db);
}
