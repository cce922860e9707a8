//! The store worker: a thread that owns the [`Store`] and does every piece of disk work the
//! till needs. The UI sends [`Request`]s and drains [`Reply`]s once per frame; each reply wakes
//! the UI with one `request_repaint`, so an idle till repaints nothing.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::SystemTime;

use image::GrayImage;

use crate::domain::{CardNumber, Entry, MemberId, MemberInput, Program, Timestamp};
use crate::store::{
    ActivityRow, MemberView, ScanOutcome, SearchHit, Store, StoreStats, TierRow, TierSort,
};
use crate::token::qr;
use crate::wallet;

/// Entries shown under the member.
pub const HISTORY_LEN: usize = 8;
/// Members per tier-list page fetched at once.
pub const PAGE_ROWS: usize = 100;

/// Everything the member panel shows, prepared off the UI thread.
#[derive(Debug, Clone)]
pub struct MemberPanel {
    /// The member with balance and tier recomputed as of now.
    pub view: MemberView,
    pub history: Vec<Entry>,
    /// The member code and its QR image.
    pub code: String,
    pub qr: GrayImage,
}

/// What identifies one page of the manager's tier list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub tier: usize,
    pub filter: String,
    pub sort: TierSort,
    pub descending: bool,
    pub page: usize,
}

/// Work for the store thread.
#[derive(Debug, Clone)]
pub enum Request {
    Scan(String),
    /// Read QR codes from a picture file and identify the member.
    ScanImage(PathBuf),
    Open(MemberId),
    Earn {
        member: MemberId,
        amount_minor: i64,
    },
    Redeem {
        member: MemberId,
        reward: String,
        /// The sync worker last reached the server: check the live balance first.
        online: bool,
    },
    ReverseLast {
        member: MemberId,
        pin: String,
    },
    Enrol(MemberInput),
    LoadDemo(usize),
    SetPin(String),
    CheckPin(String),
    Overview,
    TierPage(PageKey),
    ExportQr(CardNumber),
    PrintQr(CardNumber),
    /// Export the member's Apple Wallet pass and make their Google Wallet save link.
    WalletPass(MemberId),
}

/// Results for the UI. Every request gets exactly one final reply; demo progress comes extra.
#[derive(Debug)]
pub enum Reply {
    Ready {
        program: Box<Program>,
        stats: StoreStats,
        has_pin: bool,
    },
    OpenFailed(String),
    Member(Box<MemberPanel>),
    Matches(Vec<SearchHit>),
    /// An entry was written; the message says what happened.
    Written {
        message: String,
        panel: Box<MemberPanel>,
    },
    Enrolled(Box<MemberPanel>),
    /// The request was refused or failed; the text is for the cashier.
    Refused(String),
    PinRefused(String),
    DemoProgress(usize),
    DemoDone {
        message: String,
        stats: StoreStats,
    },
    PinAccepted,
    Overview {
        counts: Vec<i64>,
        activity: Vec<ActivityRow>,
        /// Members below zero after offline redemptions at several tills.
        overdrawn: Vec<MemberView>,
        stats: StoreStats,
    },
    /// One page of the tier list; `count` (members matching) comes with page 0.
    TierPage {
        key: PageKey,
        count: Option<i64>,
        rows: Vec<TierRow>,
    },
    /// A tier-list page request overtaken by newer ones; ask again if it is still on screen.
    PageSkipped(PageKey),
    Saved(String),
    WalletPass(Box<WalletPassReply>),
}

/// What making a member's wallet passes gave: each half can fail on its own.
#[derive(Debug)]
pub struct WalletPassReply {
    pub name: String,
    /// The exported .pkpass file, or why not.
    pub apple: Result<PathBuf, String>,
    /// The save link and its QR code, or why not.
    pub google: Result<(String, GrayImage), String>,
    /// Signed by the demo chain: will not install on a phone.
    pub demo: bool,
}

impl Reply {
    /// False for progress notes that precede a request's final reply.
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::DemoProgress(_))
    }
}

/// The UI's handle on the worker thread.
pub struct Worker {
    requests: Sender<Request>,
    replies: Receiver<Reply>,
    /// Requests sent whose final reply has not been taken yet (includes the initial open).
    pending: usize,
}

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

impl Worker {
    /// Starts the worker: it opens the store at `db` and then serves requests. `wake` is called
    /// after every reply (the app passes `ctx.request_repaint`).
    pub fn spawn(
        db: PathBuf,
        exports: PathBuf,
        actor: String,
        wake: impl Fn() + Send + 'static,
    ) -> Self {
        let (requests, inbox) = mpsc::channel::<Request>();
        let (outbox, replies) = mpsc::channel::<Reply>();
        std::thread::Builder::new()
            .name("tillpass-store".into())
            .spawn(move || serve(&db, &exports, &actor, &inbox, &outbox, &wake))
            .ok();
        Self {
            requests,
            replies,
            pending: 1,
        }
    }

    /// Queues a request.
    pub fn send(&mut self, request: Request) {
        if self.requests.send(request).is_ok() {
            self.pending += 1;
        }
    }

    /// Replies that have arrived, without waiting.
    pub fn try_replies(&mut self) -> Vec<Reply> {
        let mut out = Vec::new();
        while let Ok(reply) = self.replies.try_recv() {
            self.count(&reply);
            out.push(reply);
        }
        out
    }

    /// Waits until every request sent so far has its final reply, and returns all replies.
    /// For tests and shutdown: the UI itself never blocks.
    pub fn wait_all(&mut self) -> Vec<Reply> {
        let mut out = Vec::new();
        while self.pending > 0 {
            match self.replies.recv() {
                Ok(reply) => {
                    self.count(&reply);
                    out.push(reply);
                }
                Err(_) => break,
            }
        }
        out
    }

    /// True while requests are outstanding.
    pub fn busy(&self) -> bool {
        self.pending > 0
    }

    fn count(&mut self, reply: &Reply) {
        if reply.is_final() {
            self.pending = self.pending.saturating_sub(1);
        }
    }
}

fn serve(
    db: &Path,
    exports: &Path,
    actor: &str,
    inbox: &Receiver<Request>,
    outbox: &Sender<Reply>,
    wake: &dyn Fn(),
) {
    let send = |reply: Reply| {
        let delivered = outbox.send(reply).is_ok();
        wake();
        delivered
    };
    let mut store = match Store::open(db) {
        Ok(store) => store,
        Err(e) => {
            send(Reply::OpenFailed(e.to_string()));
            return;
        }
    };
    let ready = store.stats().and_then(|stats| {
        Ok(Reply::Ready {
            program: Box::new(store.program().clone()),
            stats,
            has_pin: store.has_manager_pin()?,
        })
    });
    if !send(ready.unwrap_or_else(|e| Reply::OpenFailed(e.to_string()))) {
        return;
    }
    while let Ok(first) = inbox.recv() {
        for request in newest_pages_first(first, inbox) {
            let reply = match request {
                Ok(request) => handle(&mut store, exports, actor, request, &send),
                Err(key) => Reply::PageSkipped(key),
            };
            if !send(reply) {
                return;
            }
        }
    }
}

/// Tier-list pages still wanted after a burst of scrolling: at most this many of the newest.
const LIVE_PAGES: usize = 3;

/// Takes `first` and everything already queued behind it, in order, except that of the tier-list
/// page requests only the newest few are served; the rest come back as `Err` (skipped). Scrolling
/// through a long table asks for every page it passes; only the last ones are still on screen.
fn newest_pages_first(first: Request, inbox: &Receiver<Request>) -> Vec<Result<Request, PageKey>> {
    let mut queued: Vec<Request> = std::iter::once(first).chain(inbox.try_iter()).collect();
    let pages = queued
        .iter()
        .filter(|r| matches!(r, Request::TierPage(_)))
        .count();
    let mut to_skip = pages.saturating_sub(LIVE_PAGES);
    queued
        .drain(..)
        .map(|request| match request {
            Request::TierPage(key) if to_skip > 0 => {
                to_skip -= 1;
                Err(key)
            }
            other => Ok(other),
        })
        .collect()
}

fn refused(e: impl std::fmt::Display) -> Reply {
    Reply::Refused(e.to_string())
}

fn panel(store: &Store, member: MemberId) -> Result<MemberPanel, String> {
    let at = now();
    let mut view = store.member(member).map_err(|e| e.to_string())?;
    view.state = store.summary_at(member, at).map_err(|e| e.to_string())?;
    let history = store
        .history(member, HISTORY_LEN)
        .map_err(|e| e.to_string())?;
    let code = store.member_code(&view.member.card);
    let qr = qr::render(&code, 6).map_err(|e| e.to_string())?;
    Ok(MemberPanel {
        view,
        history,
        code,
        qr,
    })
}

/// The server's live balance when the till is online and the server answers in time; `None`
/// (offline rules apply) otherwise.
fn live_balance(store: &mut Store, member: MemberId, online: bool) -> Option<i64> {
    if !online {
        return None;
    }
    let client =
        crate::sync::engine::client_within(store, std::time::Duration::from_secs(3)).ok()?;
    crate::sync::live_balance(store, &client, member).ok()
}

fn wallet_pass(store: &Store, exports: &Path, member: MemberId) -> Reply {
    let at = now();
    let view = match store.member(member) {
        Ok(view) => view,
        Err(e) => return refused(e),
    };
    let setup = match wallet::load(None, store, at) {
        Ok(setup) => setup,
        Err(e) => return Reply::Refused(format!("Wallet passes: {e}")),
    };
    let path = exports.join(format!("member-{}.pkpass", view.member.card));
    let apple = std::fs::create_dir_all(exports)
        .map_err(|e| format!("cannot create {}: {e}", exports.display()))
        .and_then(|()| {
            wallet::write_apple_pass(&setup, store, member, at, &path).map_err(|e| e.to_string())
        })
        .map(|()| path);
    let google = wallet::google_save_url(&setup, store, member, at)
        .map_err(|e| e.to_string())
        .and_then(|url| {
            let qr = qr::render_link(&url, 2)
                .map_err(|e| format!("the save link is too long for a QR code ({e})"))?;
            Ok((url, qr))
        });
    Reply::WalletPass(Box::new(WalletPassReply {
        name: view.member.name,
        apple,
        google,
        demo: setup.demo,
    }))
}

fn written(store: &Store, entry: &Entry, message: String) -> Reply {
    match panel(store, entry.member_id) {
        Ok(panel) => Reply::Written {
            message,
            panel: Box::new(panel),
        },
        Err(e) => Reply::Refused(e),
    }
}

fn handle(
    store: &mut Store,
    exports: &Path,
    actor: &str,
    request: Request,
    send: &dyn Fn(Reply) -> bool,
) -> Reply {
    match request {
        Request::Scan(text) => match store.scan(&text, 20) {
            Ok(ScanOutcome::Member(view)) => match panel(store, view.member.id) {
                Ok(p) => Reply::Member(Box::new(p)),
                Err(e) => Reply::Refused(e),
            },
            Ok(ScanOutcome::Matches(hits)) => Reply::Matches(hits),
            Err(e) => refused(e),
        },
        Request::ScanImage(path) => {
            let texts = match qr::decode_file(&path) {
                Ok(texts) => texts,
                Err(e) => return refused(e),
            };
            match store.identify_first(texts.iter().map(String::as_str)) {
                Some(Ok(view)) => match panel(store, view.member.id) {
                    Ok(p) => Reply::Member(Box::new(p)),
                    Err(e) => Reply::Refused(e),
                },
                Some(Err(e)) => refused(e),
                None => refused("no QR code found in the image"),
            }
        }
        Request::Open(member) => match panel(store, member) {
            Ok(p) => Reply::Member(Box::new(p)),
            Err(e) => Reply::Refused(e),
        },
        Request::Earn {
            member,
            amount_minor,
        } => match store.earn(member, amount_minor, actor, now()) {
            Ok(entry) => {
                let text = format!(
                    "Earned {} points on {}",
                    entry.points,
                    store.program().format_money(amount_minor)
                );
                written(store, &entry, text)
            }
            Err(e) => refused(e),
        },
        Request::Redeem {
            member,
            reward,
            online,
        } => {
            let live = live_balance(store, member, online);
            match store.redeem_checked(member, &reward, live, actor, now()) {
                Ok(entry) => {
                    let name = store
                        .program()
                        .reward(&reward)
                        .map_or(reward.clone(), |r| r.name.clone());
                    written(
                        store,
                        &entry,
                        format!("Redeemed {name} for {} points", -entry.points),
                    )
                }
                Err(e) => refused(e),
            }
        }
        Request::ReverseLast { member, pin } => {
            if let Err(e) = store.check_manager_pin(&pin) {
                return Reply::PinRefused(e.to_string());
            }
            let last = match store.last_local_entry(member) {
                Ok(Some(last)) => last,
                Ok(None) => {
                    return refused("this till has no transaction for this member to reverse");
                }
                Err(e) => return refused(e),
            };
            match store.reverse(last.id, actor, now()) {
                Ok(entry) => written(
                    store,
                    &entry,
                    format!(
                        "Reversed the last {} ({:+} points)",
                        last.kind.label().to_lowercase(),
                        entry.points
                    ),
                ),
                Err(e) => refused(e),
            }
        }
        Request::Enrol(input) => match store.add_member(input, actor, now()) {
            Ok(view) => match panel(store, view.member.id) {
                Ok(p) => Reply::Enrolled(Box::new(p)),
                Err(e) => Reply::Refused(e),
            },
            Err(e) => refused(e),
        },
        Request::LoadDemo(members) => {
            let result = crate::demo::seed(store, members, rand::random(), now(), |done| {
                send(Reply::DemoProgress(done));
            });
            match result.and_then(|report| Ok((report, store.stats()?))) {
                Ok((report, stats)) => Reply::DemoDone {
                    message: format!(
                        "Loaded {} demo members with {} entries",
                        report.members, report.entries
                    ),
                    stats,
                },
                Err(e) => refused(e),
            }
        }
        Request::SetPin(pin) => match store.set_manager_pin(&pin) {
            Ok(()) => Reply::PinAccepted,
            Err(e) => Reply::PinRefused(e.to_string()),
        },
        Request::CheckPin(pin) => match store.check_manager_pin(&pin) {
            Ok(()) => Reply::PinAccepted,
            Err(e) => Reply::PinRefused(e.to_string()),
        },
        Request::Overview => {
            let result = (|| {
                Ok::<_, crate::store::StoreError>((
                    store.tier_counts()?,
                    store.recent_activity(50)?,
                    store.overdrawn_members(50)?,
                    store.stats()?,
                ))
            })();
            match result {
                Ok((counts, activity, overdrawn, stats)) => Reply::Overview {
                    counts,
                    activity,
                    overdrawn,
                    stats,
                },
                Err(e) => refused(e),
            }
        }
        Request::TierPage(key) => {
            let count = if key.page == 0 {
                store.tier_member_count(key.tier, &key.filter).map(Some)
            } else {
                Ok(None)
            };
            let result = count.and_then(|count| {
                let rows = store.tier_members(
                    key.tier,
                    &key.filter,
                    key.sort,
                    key.descending,
                    key.page * PAGE_ROWS,
                    PAGE_ROWS,
                )?;
                Ok((count, rows))
            });
            match result {
                Ok((count, rows)) => Reply::TierPage { key, count, rows },
                Err(e) => refused(e),
            }
        }
        Request::ExportQr(card) => {
            let path = exports.join(format!("member-{card}.png"));
            let result = std::fs::create_dir_all(exports)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    qr::write_png(&store.member_code(&card), &path).map_err(|e| e.to_string())
                });
            match result {
                Ok(()) => Reply::Saved(format!("Saved {}", path.display())),
                Err(e) => Reply::Refused(e),
            }
        }
        Request::WalletPass(member) => wallet_pass(store, exports, member),
        Request::PrintQr(card) => {
            let path = std::env::temp_dir().join(format!("tillpass-member-{card}.png"));
            let printed = qr::write_png(&store.member_code(&card), &path)
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(n: usize) -> Request {
        Request::TierPage(PageKey {
            tier: 0,
            filter: String::new(),
            sort: TierSort::Qualifying,
            descending: true,
            page: n,
        })
    }

    #[test]
    fn only_the_newest_pages_are_served_and_nothing_else_is_dropped() {
        let (tx, rx) = mpsc::channel();
        for n in 1..=6 {
            tx.send(page(n)).ok();
        }
        tx.send(Request::Overview).ok();
        let out = newest_pages_first(page(0), &rx);
        assert_eq!(out.len(), 8, "every request gets an answer");
        let skipped: Vec<usize> = out
            .iter()
            .filter_map(|r| r.as_ref().err().map(|k| k.page))
            .collect();
        assert_eq!(skipped, vec![0, 1, 2, 3]);
        let served: Vec<usize> = out
            .iter()
            .filter_map(|r| match r {
                Ok(Request::TierPage(k)) => Some(k.page),
                _ => None,
            })
            .collect();
        assert_eq!(served, vec![4, 5, 6]);
        assert!(matches!(out.last(), Some(Ok(Request::Overview))));
    }
}
