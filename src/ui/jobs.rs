//! The jobs thread: work that must never hold the store thread, so a scan never waits behind
//! it. Asking the server for a live balance and computing the manager's report (with its own
//! store connection, opened on first use), signing wallet passes, writing QR codes and sending
//! them to the printer.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use super::worker::{PassLinkReply, Replies, Reply, WalletPassReply, now};
use crate::domain::{CardNumber, MemberId};
use crate::pass::PassContent;
use crate::store::Store;
use crate::sync::join::JoinCode;
use crate::token::qr;
use crate::wallet;

/// How long a redemption waits for the server before offline rules apply.
pub const LIVE_BALANCE_TIMEOUT: Duration = Duration::from_secs(3);

/// Slow work for the jobs thread.
#[derive(Debug)]
pub enum Job {
    /// Ask the server for the member's live balance before redeeming `reward`.
    LiveBalance { member: MemberId, reward: String },
    /// Ask for the member's live balance to show while this till catches up, first taking
    /// their history from the server ahead of the pull unless it was taken already.
    ServerBalance { member: MemberId, history: bool },
    /// Ask the server who holds a card this till does not know, and take them on.
    LookUpCard(String),
    /// Sign the member's Apple pass into the exports folder and make the Google save link.
    WalletPass(Box<PassContent>),
    /// Write the member's QR code as a PNG into the exports folder.
    ExportQr { card: CardNumber, code: String },
    /// Print the member's QR code with `lp`.
    PrintQr { card: CardNumber, code: String },
    /// Join the server a scanned join code names, and sync once.
    Join(JoinCode),
    /// The program's measures over `[from, to)`: seconds on a big store, so never on the store
    /// thread, where it would hold up scans.
    Insights {
        from: crate::domain::Timestamp,
        to: crate::domain::Timestamp,
    },
}

pub(super) fn serve(db: &Path, exports: &Path, inbox: &Receiver<Job>, replies: &Replies) {
    let mut store = None;
    while let Ok(job) = inbox.recv() {
        let reply = match job {
            Job::LiveBalance { member, reward } => Reply::LiveBalance {
                live: live_balance(&mut store, db, member),
                member,
                reward,
            },
            Job::ServerBalance { member, history } => {
                let caught_up = if history {
                    catch_up_member(&mut store, db, member)
                } else {
                    live_balance(&mut store, db, member).map(|balance| (0, balance))
                };
                Reply::ServerBalance {
                    balance: caught_up.map(|(_, balance)| balance),
                    taken: caught_up.map_or(0, |(taken, _)| taken),
                    member,
                }
            }
            Job::LookUpCard(card) => look_up_card(&mut store, db, &card),
            Job::WalletPass(content) => match pass_link(&mut store, db, &content) {
                Some(reply) => reply,
                None => wallet_pass(db, exports, &content),
            },
            Job::ExportQr { card, code } => export_qr(exports, &card, &code),
            Job::PrintQr { card, code } => print_qr(&card, &code),
            Job::Join(code) => join(&mut store, db, &code),
            Job::Insights { from, to } => insights(&mut store, db, from, to, replies),
        };
        if !replies.send(reply) {
            return;
        }
    }
}

/// Joins the server `code` names (on this thread's own store connection) and settles with it;
/// the sync worker then pulls the chain's members and history behind.
fn join(store: &mut Option<Store>, db: &Path, code: &JoinCode) -> Reply {
    let store = match opened(store, db) {
        Ok(store) => store,
        Err(e) => return Reply::Refused(e),
    };
    match crate::sync::join_then_catch_up(store, code, false, now()) {
        Ok(_) => Reply::Joined(code.url.clone()),
        Err(e) => Reply::Refused(format!("Could not join {}: {e}", code.url)),
    }
}

/// This thread's own store connection, opened on first use.
fn opened<'s>(store: &'s mut Option<Store>, db: &Path) -> Result<&'s mut Store, String> {
    if store.is_none() {
        *store = Some(Store::open(db).map_err(|e| e.to_string())?);
    }
    store
        .as_mut()
        .ok_or_else(|| "the store is not open".to_owned())
}

/// The manager's report, on this thread's own store connection.
fn insights(
    store: &mut Option<Store>,
    db: &Path,
    from: crate::domain::Timestamp,
    to: crate::domain::Timestamp,
    replies: &Replies,
) -> Reply {
    let store = match opened(store, db) {
        Ok(store) => store,
        Err(e) => return Reply::InsightsFailed(e),
    };
    // A reply per percent read, not per page: each one wakes the UI.
    let mut shown = None;
    let mut progress = |read: u64, total: u64| {
        let percent = read * 100 / total.max(1);
        if shown != Some(percent) {
            shown = Some(percent);
            replies.send(Reply::InsightsProgress(read, total));
        }
    };
    match store.insights_with_progress(from, to, &mut progress) {
        Ok(report) => Reply::Insights(Box::new(report)),
        Err(e) => Reply::InsightsFailed(format!("Could not compute the report: {e}")),
    }
}

/// The server's live balance, or `None` (offline rules apply) when it cannot be had in time.
fn live_balance(store: &mut Option<Store>, db: &Path, member: MemberId) -> Option<i64> {
    crate::sync::live_balance(opened(store, db).ok()?, member, LIVE_BALANCE_TIMEOUT)
        .ok()
        .flatten()
}

/// The member's history taken from the server ahead of the pull (how many entries were new
/// here) and their live balance, or `None` when the server cannot be asked in time.
fn catch_up_member(store: &mut Option<Store>, db: &Path, member: MemberId) -> Option<(usize, i64)> {
    crate::sync::catch_up_member(opened(store, db).ok()?, member, LIVE_BALANCE_TIMEOUT, now())
        .ok()
        .flatten()
}

/// The member holding `card`, asked of the server and taken on here.
fn look_up_card(store: &mut Option<Store>, db: &Path, card: &str) -> Reply {
    let unknown = || format!("No member has card {card}, here or on the server");
    let Ok(number) = card.parse::<CardNumber>() else {
        return Reply::Refused(unknown());
    };
    let store = match opened(store, db) {
        Ok(store) => store,
        Err(e) => return Reply::Refused(e),
    };
    match crate::sync::look_up_card(store, &number, LIVE_BALANCE_TIMEOUT, now()) {
        Ok(Some((member, balance))) => Reply::LookedUp {
            member,
            balance,
            // Counted here, off the frame: a million members take a while.
            members: store.member_count().ok(),
        },
        Ok(None) => Reply::Refused(unknown()),
        Err(e) => Reply::Refused(format!(
            "Card {card} is not on this till yet, and the server could not be asked: {e}"
        )),
    }
}

/// On a till joined to a server, the link to the member's pass on the server (which holds the
/// wallet keys and keeps the pass live), pushing this till's waiting records first if the
/// server does not know the member yet; `None` on a standalone till.
fn pass_link(store: &mut Option<Store>, db: &Path, content: &PassContent) -> Option<Reply> {
    let store = opened(store, db).ok()?;
    let client = match crate::sync::client_for(store) {
        Err(crate::sync::SyncError::NotConfigured) => return None,
        Err(e) => return Some(Reply::Refused(format!("Wallet pass: {e}"))),
        Ok(client) => client,
    };
    let member = content.member.id;
    let link = client.pass_link(member).or_else(|first| {
        let pushed = crate::sync::engine::push_all(store, &client, &mut Default::default());
        match (first, pushed) {
            (crate::sync::SyncError::Refused { .. }, Ok(())) => client.pass_link(member),
            (first, _) => Err(first),
        }
    });
    Some(match link {
        Ok(link) => match qr::render_link(&link.url, 2) {
            Ok(qr) => Reply::PassLink(Box::new(PassLinkReply {
                name: content.member.name.clone(),
                url: link.url,
                qr,
                demo: link.demo,
            })),
            Err(e) => Reply::Refused(format!(
                "Wallet pass: the link does not fit a QR code ({e})"
            )),
        },
        Err(e) => Reply::Refused(format!("Wallet pass: {e}")),
    })
}

fn wallet_pass(db: &Path, exports: &Path, content: &PassContent) -> Reply {
    let setup = match wallet::load(None, db, &content.program, now()) {
        Ok(setup) => setup,
        Err(e) => return Reply::Refused(format!("Wallet passes: {e}")),
    };
    let path = exports.join(format!("member-{}.pkpass", content.member.card));
    let apple = std::fs::create_dir_all(exports)
        .map_err(|e| format!("cannot create {}: {e}", exports.display()))
        .and_then(|()| wallet::write_apple_pass(&setup, content, &path).map_err(|e| e.to_string()))
        .map(|()| path);
    let google = wallet::google_save_url(&setup, content)
        .map_err(|e| e.to_string())
        .and_then(|url| {
            let qr = qr::render_link(&url, 2)
                .map_err(|e| format!("the save link is too long for a QR code ({e})"))?;
            Ok((url, qr))
        });
    Reply::WalletPass(Box::new(WalletPassReply {
        name: content.member.name.clone(),
        apple,
        google,
        demo: setup.demo,
    }))
}

fn export_qr(exports: &Path, card: &CardNumber, code: &str) -> Reply {
    let path = exports.join(format!("member-{card}.png"));
    let written = std::fs::create_dir_all(exports)
        .map_err(|e| format!("cannot create {}: {e}", exports.display()))
        .and_then(|()| qr::write_png(code, &path).map_err(|e| e.to_string()));
    match written {
        Ok(()) => Reply::Saved(format!("Saved {}", path.display())),
        Err(e) => Reply::Refused(e),
    }
}

fn print_qr(card: &CardNumber, code: &str) -> Reply {
    let path: PathBuf = std::env::temp_dir().join(format!("tillpass-member-{card}.png"));
    let printed = qr::write_png(code, &path)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            let out = std::process::Command::new("lp")
                .arg(&path)
                .output()
                .map_err(|e| format!("printing needs the `lp` command (CUPS): {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "the printer refused: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        });
    match printed {
        Ok(()) => Reply::Saved(format!("Sent card {} to the printer", card.grouped())),
        Err(e) => Reply::Refused(e),
    }
}
