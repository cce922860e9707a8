//! The till's background threads. The store thread owns the [`Store`] and answers each
//! [`Request`] with one function; the jobs thread ([`super::jobs`]) does the slow work that must
//! never hold the store (the server, signing, files, the printer). The UI sends work and drains
//! [`Reply`]s once per frame; each reply wakes the UI with one `request_repaint`, so an idle till
//! repaints nothing.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::SystemTime;

use image::GrayImage;

use super::cashier::PendingSale;
use super::jobs::{self, Job};
use crate::domain::insights::Report;
use crate::domain::{Entry, MemberId, MemberInput, Program, Timestamp};
use crate::pass::PassContent;
use crate::store::{
    ActivityRow, MemberView, Quarantined, ScanError, ScanOutcome, SearchHit, Store, StoreError,
    StoreStats, TierRow, TierSort,
};
use crate::token::qr::{self, QrError};

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
    /// Stamps held, by stamp card id.
    pub stamps: std::collections::BTreeMap<String, i64>,
    /// Points earned within the return window, not spendable yet.
    pub pending: i64,
    /// Offers open now, and progress towards the others.
    pub offers: crate::store::MemberOffers,
    /// Badges held (ids).
    pub badges: Vec<String>,
    /// When the paid tier lapses, if it is in force.
    pub paid_until: Option<Timestamp>,
    /// Who referred them, and their referrals rewarded this year.
    pub referrals: crate::store::MemberReferrals,
    /// Their last transaction at this till: what "Reverse last" undoes.
    pub last_here: Option<Entry>,
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
    /// Read the member on screen again (the sync worker brought more of their history).
    Refresh(MemberId),
    Earn {
        member: MemberId,
        sale: PendingSale,
    },
    RedeemStamps {
        member: MemberId,
        card: String,
    },
    Donate {
        member: MemberId,
        cause: String,
        points: i64,
    },
    UseOffer {
        member: MemberId,
        offer: String,
    },
    BuyMembership(MemberId),
    Redeem {
        member: MemberId,
        reward: String,
        /// The server's live balance, when the till is online and the server answered.
        live: Option<i64>,
    },
    /// Reverse `entry` (the one the manager was shown), once the PIN is right.
    Reverse {
        entry: Box<Entry>,
        pin: String,
    },
    Enrol(Box<MemberInput>),
    LoadDemo(usize),
    SetPin(String),
    CheckPin(String),
    Overview,
    TierPage(PageKey),
    /// What the member's wallet passes show (signed on the jobs thread).
    PassContent(MemberId),
    /// The sync worker installed a program or key: take them on.
    Reload,
    /// Import members and balances from a CSV file.
    Import {
        path: PathBuf,
        actor: String,
    },
    /// A sale without a member.
    GuestSale(i64),
    /// Undo this till's sale without a member (F8 right after it).
    VoidGuestSale(uuid::Uuid),
    /// A customer's answer to the recommend question.
    Recommend {
        score: u8,
        by: crate::store::Answerer,
    },
}

/// Results for the UI. Every request and job gets exactly one final reply; demo progress comes
/// extra.
#[derive(Debug)]
pub enum Reply {
    Ready {
        program: Box<Program>,
        stats: StoreStats,
        has_pin: bool,
        /// The till is joined to a server (no demo data is offered then).
        joined: bool,
        /// The local integration API's token.
        pos_token: String,
    },
    OpenFailed(String),
    /// The program in force after a reload.
    Reloaded {
        program: Box<Program>,
        stats: StoreStats,
    },
    Member(Box<MemberPanel>),
    /// The member on screen, read again: nothing the cashier typed or picked changes.
    Refreshed(Box<MemberPanel>),
    /// A genuine member code whose card this till does not know (yet): the card.
    UnknownCard(String),
    /// The server knew the card: its member is taken on here, with the live balance, and the
    /// members this till now holds (`None` if they could not be counted).
    LookedUp {
        member: MemberId,
        balance: i64,
        members: Option<i64>,
    },
    /// The server's balance for the member on screen while this till catches up: `None` when
    /// it could not be asked. `taken`: entries of theirs the server gave that were new here
    /// (their history taken ahead of the pull), so the member is read again.
    ServerBalance {
        member: MemberId,
        balance: Option<i64>,
        taken: usize,
    },
    /// A search's results to pick from; `more` when others match beyond them.
    Matches {
        hits: Vec<SearchHit>,
        more: bool,
    },
    /// An entry was written; the message says what happened.
    Written {
        message: String,
        entry: Box<Entry>,
        panel: Box<MemberPanel>,
        /// It was a sale (the customer may be asked how likely they are to recommend us).
        sale: bool,
    },
    /// A sale without a member was recorded (its id, for the recommend answer that may follow).
    GuestSold {
        message: String,
        sale: uuid::Uuid,
    },
    /// That sale without a member was undone.
    GuestVoided {
        message: String,
        sale: uuid::Uuid,
    },
    Enrolled(Box<MemberPanel>),
    /// The request was refused or failed; the text is for the cashier.
    Refused(String),
    /// A sale was refused (the cashier's or the point-of-sale system's), with the reason.
    EarnRefused(String),
    /// What the open dialog asked for (a gift, a reversal) was refused, with the reason: kept
    /// apart from `Refused`, which may answer a request the point-of-sale system made meanwhile.
    DialogRefused(String),
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
        /// Pulled records set aside because this till cannot apply them.
        quarantined: Vec<Quarantined>,
        /// Points given to each cause.
        causes: Vec<crate::store::CauseTotal>,
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
    PassContent(Box<PassContent>),
    WalletPass(Box<WalletPassReply>),
    /// The member's pass link on the server, for a joined till.
    PassLink(Box<PassLinkReply>),
    /// This till joined the server at this address.
    Joined(String),
    /// The manager's measures.
    Insights(Box<Report>),
    /// How far the report has read the ledger: entries read, entries in all.
    InsightsProgress(u64, u64),
    /// The measures could not be computed; the text says why.
    InsightsFailed(String),
    /// The server's answer before a redemption: `live` is `None` when it could not be asked.
    LiveBalance {
        member: MemberId,
        reward: String,
        live: Option<i64>,
    },
}

/// The link to a member's pass on the server, and its QR code.
#[derive(Debug)]
pub struct PassLinkReply {
    pub name: String,
    pub url: String,
    pub qr: GrayImage,
    /// The server signs with its demo chain.
    pub demo: bool,
}

/// What making a member's wallet passes on a standalone till gave: each half can fail on its
/// own.
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
        !matches!(self, Self::DemoProgress(_) | Self::InsightsProgress(..))
    }
}

/// The UI's handle on the store and jobs threads.
pub struct Worker {
    requests: Sender<Request>,
    jobs: Sender<Job>,
    replies: Receiver<Reply>,
    /// Requests and jobs sent whose final reply has not been taken yet (includes the open).
    pending: usize,
}

pub(super) fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

impl Worker {
    /// Starts the threads: the store thread opens the store at `db` and then serves requests;
    /// the jobs thread writes exports under `exports`. `wake` is called after every reply (the
    /// app passes `ctx.request_repaint`).
    pub fn spawn(
        db: PathBuf,
        exports: PathBuf,
        actor: String,
        wake: impl Fn() + Clone + Send + 'static,
    ) -> Self {
        let (requests, inbox) = mpsc::channel::<Request>();
        let (jobs, job_inbox) = mpsc::channel::<Job>();
        let (outbox, replies) = mpsc::channel::<Reply>();
        let jobs_outbox = Replies {
            outbox: outbox.clone(),
            wake: Box::new(wake.clone()),
        };
        let jobs_db = db.clone();
        std::thread::Builder::new()
            .name("tillpass-jobs".into())
            .spawn(move || jobs::serve(&jobs_db, &exports, &job_inbox, &jobs_outbox))
            .ok();
        let store_outbox = Replies {
            outbox,
            wake: Box::new(wake),
        };
        std::thread::Builder::new()
            .name("tillpass-store".into())
            .spawn(move || serve(&db, &actor, &inbox, &store_outbox))
            .ok();
        Self {
            requests,
            jobs,
            replies,
            pending: 1,
        }
    }

    /// Queues a request for the store thread.
    pub fn send(&mut self, request: Request) {
        if self.requests.send(request).is_ok() {
            self.pending += 1;
        }
    }

    /// Queues a job for the jobs thread.
    pub fn run(&mut self, job: Job) {
        if self.jobs.send(job).is_ok() {
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

    /// Waits until everything sent so far has its final reply, and returns all replies.
    /// For tests: the UI itself never blocks.
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

    fn count(&mut self, reply: &Reply) {
        if reply.is_final() {
            self.pending = self.pending.saturating_sub(1);
        }
    }
}

/// Where a thread's replies go: the channel, then a wake-up for the UI.
pub(super) struct Replies {
    outbox: Sender<Reply>,
    wake: Box<dyn Fn() + Send>,
}

impl Replies {
    /// Sends `reply` and wakes the UI; false once the UI has gone.
    pub(super) fn send(&self, reply: Reply) -> bool {
        let delivered = self.outbox.send(reply).is_ok();
        (self.wake)();
        delivered
    }
}

fn serve(db: &Path, actor: &str, inbox: &Receiver<Request>, replies: &Replies) {
    let mut store = match Store::open(db) {
        Ok(store) => store,
        Err(e) => {
            replies.send(Reply::OpenFailed(e.to_string()));
            return;
        }
    };
    let ready = store.stats().and_then(|stats| {
        Ok(Reply::Ready {
            program: Box::new(store.program().clone()),
            stats,
            has_pin: store.has_manager_pin()?,
            joined: store.sync_settings()?.server_url.is_some(),
            pos_token: store.pos_token()?,
        })
    });
    if !replies.send(ready.unwrap_or_else(|e| Reply::OpenFailed(e.to_string()))) {
        return;
    }
    while let Ok(first) = inbox.recv() {
        for request in skip_overtaken_pages(first, inbox) {
            let reply = match request {
                Ok(request) => handle(&mut store, actor, request, replies),
                Err(key) => Reply::PageSkipped(key),
            };
            if !replies.send(reply) {
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
fn skip_overtaken_pages(
    first: Request,
    inbox: &Receiver<Request>,
) -> Vec<Result<Request, PageKey>> {
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

/// Why a request failed; the reply says it to the cashier.
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Qr(#[from] QrError),
}

fn handle(store: &mut Store, actor: &str, request: Request, replies: &Replies) -> Reply {
    let reply = match request {
        Request::Scan(text) => scan(store, &text),
        Request::ScanImage(path) => scan_image(store, &path),
        Request::Open(member) => panel(store, member).map(|p| Reply::Member(Box::new(p))),
        Request::Refresh(member) => panel(store, member).map(|p| Reply::Refreshed(Box::new(p))),
        Request::Earn { member, sale } => {
            return earn(store, actor, member, &sale)
                .unwrap_or_else(|e| Reply::EarnRefused(e.to_string()));
        }
        Request::Redeem {
            member,
            reward,
            live,
        } => redeem(store, actor, member, &reward, live),
        Request::RedeemStamps { member, card } => store
            .redeem_stamps(member, &card, actor, now())
            .map_err(Failed::from)
            .and_then(|entry| {
                let name = store
                    .program()
                    .stamp_card(&card)
                    .map_or(card.clone(), |c| c.reward.clone());
                written(store, &entry, format!("{name}: a full stamp card spent"))
            }),
        Request::BuyMembership(member) => store
            .buy_membership(member, actor, now())
            .map_err(Failed::from)
            .and_then(|entry| {
                let until = store.paid_until(member, now())?;
                let program = store.program();
                let tier = program
                    .paid_tier
                    .as_ref()
                    .map_or(String::new(), |p| program.tier(p.tier).name.clone());
                let text = format!(
                    "{tier} membership sold for {}, until {}",
                    program.format_money(entry.amount_minor.unwrap_or(0)),
                    until.map_or_else(String::new, |u| u.date().to_string())
                );
                written(store, &entry, text)
            }),
        Request::UseOffer { member, offer } => store
            .use_offer(member, &offer, actor, now())
            .map_err(Failed::from)
            .and_then(|entry| {
                let name = store
                    .program()
                    .offer(&offer)
                    .map_or(offer.clone(), |o| o.name.clone());
                written(store, &entry, format!("{name}: used"))
            }),
        Request::Donate {
            member,
            cause,
            points,
        } => match store.donate(member, &cause, points, actor, now()) {
            // Refused: said in the prompt, to be put right there.
            Err(e) => return Reply::DialogRefused(e.to_string()),
            // Given: whatever follows is not the gift's refusal (the prompt must not invite a
            // second gift).
            Ok(entry) => {
                let name = store
                    .program()
                    .cause(&cause)
                    .map_or(cause.clone(), |c| c.name.clone());
                written(
                    store,
                    &entry,
                    format!("Gave {points} points to {name}. Thank you!"),
                )
            }
        },
        Request::Reverse { entry, pin } => {
            return reverse(store, actor, &entry, &pin)
                .unwrap_or_else(|e| Reply::DialogRefused(e.to_string()));
        }
        Request::Enrol(input) => enrol(store, actor, *input),
        Request::LoadDemo(members) => load_demo(store, members, replies),
        Request::SetPin(pin) => Ok(pin_reply(store.set_manager_pin(&pin))),
        Request::CheckPin(pin) => Ok(pin_reply(store.check_manager_pin(&pin, now()))),
        Request::Overview => overview(store),
        Request::GuestSale(amount_minor) => store
            .record_guest_sale(amount_minor, actor, now())
            .map(|sale| Reply::GuestSold {
                message: format!(
                    "Sale of {} recorded without a member (F8 undoes it)",
                    store.program().format_money(amount_minor)
                ),
                sale,
            })
            .map_err(Failed::from),
        Request::VoidGuestSale(sale) => store
            .void_guest_sale(sale, actor, now())
            .map(|amount| Reply::GuestVoided {
                message: format!(
                    "Sale of {} without a member undone",
                    store.program().format_money(amount)
                ),
                sale,
            })
            .map_err(Failed::from),
        Request::Recommend { score, by } => store
            .record_nps(i64::from(score), by, now())
            .map(|()| {
                Reply::Saved(format!(
                    "Thank you! Their answer, {score} out of 10, is recorded"
                ))
            })
            .map_err(Failed::from),
        Request::TierPage(key) => tier_page(store, key),
        Request::Reload => reload(store),
        Request::Import { path, actor } => import(store, &path, &actor),
        Request::PassContent(member) => crate::wallet::read_content(store, member, now())
            .map(|content| Reply::PassContent(Box::new(content)))
            .map_err(Failed::from),
    };
    reply.unwrap_or_else(|e| Reply::Refused(e.to_string()))
}

/// The member panel: the member with balance and tier as of now, recent history, QR code.
fn panel(store: &Store, member: MemberId) -> Result<MemberPanel, Failed> {
    let mut view = store.member(member)?;
    let standing = store.standing(member, now())?;
    view.state = standing.state;
    let history = store.history(member, HISTORY_LEN)?;
    let code = store.member_code(&view.member.card);
    let qr = qr::render(&code, 6)?;
    Ok(MemberPanel {
        view,
        history,
        code,
        qr,
        stamps: standing.stamps,
        pending: standing.pending,
        offers: standing.offers,
        badges: standing.badges,
        paid_until: standing.paid_until,
        referrals: standing.referrals,
        last_here: store.last_local_entry(member)?,
    })
}

fn written(store: &Store, entry: &Entry, message: String) -> Result<Reply, Failed> {
    Ok(Reply::Written {
        message,
        entry: Box::new(entry.clone()),
        panel: Box::new(panel(store, entry.member_id)?),
        sale: false,
    })
}

/// Search results listed for the cashier to pick from.
const SEARCH_LISTED: usize = 20;

fn scan(store: &mut Store, text: &str) -> Result<Reply, Failed> {
    // One more than is listed, to know whether others match too.
    let outcome = match store.scan(text, SEARCH_LISTED + 1) {
        Err(ScanError::UnknownMember(card)) => return Ok(Reply::UnknownCard(card)),
        found => found?,
    };
    match outcome {
        ScanOutcome::Member(view) => {
            // A member back after the program's days away is given the welcome-back offer now,
            // so the cashier sees it on this scan.
            store.reengage_member(view.member.id, now())?;
            Ok(Reply::Member(Box::new(panel(store, view.member.id)?)))
        }
        ScanOutcome::Matches(mut hits) => {
            let more = hits.len() > SEARCH_LISTED;
            hits.truncate(SEARCH_LISTED);
            Ok(Reply::Matches { hits, more })
        }
    }
}

fn scan_image(store: &Store, path: &Path) -> Result<Reply, Failed> {
    let texts = qr::decode_file(path)?;
    match store.identify_first(texts.iter().map(String::as_str)) {
        Some(found) => Ok(Reply::Member(Box::new(panel(store, found?.member.id)?))),
        None => Err(QrError::NotFound.into()),
    }
}

fn earn(
    store: &mut Store,
    actor: &str,
    member: MemberId,
    sale: &PendingSale,
) -> Result<Reply, Failed> {
    let (entry, facts) = store.record_sale(member, sale.sale(), actor, now())?;
    let mut text = format!(
        "Earned {} points on {}",
        entry.points,
        store
            .program()
            .format_money(entry.amount_minor.unwrap_or(0))
    );
    for words in store.facts_in_words(&facts)? {
        text.push_str(" · ");
        text.push_str(&words);
    }
    let mut reply = written(store, &entry, text)?;
    if let Reply::Written { sale, .. } = &mut reply {
        *sale = true;
    }
    Ok(reply)
}

fn redeem(
    store: &mut Store,
    actor: &str,
    member: MemberId,
    reward: &str,
    live: Option<i64>,
) -> Result<Reply, Failed> {
    let entry = store.redeem_checked(member, reward, live, actor, now())?;
    let name = store
        .program()
        .reward(reward)
        .map_or_else(|| reward.to_owned(), |r| r.name.clone());
    written(
        store,
        &entry,
        format!("Redeemed {name} for {} points", -entry.points),
    )
}

fn reverse(store: &mut Store, actor: &str, target: &Entry, pin: &str) -> Result<Reply, Failed> {
    if let Err(e) = store.check_manager_pin(pin, now()) {
        return Ok(Reply::PinRefused(e.to_string()));
    }
    let (entry, taken_back) = store.reverse_taking_back(target.id, actor, now())?;
    let mut text = format!(
        "Reversed the last {} ({:+} points)",
        target.kind.label().to_lowercase(),
        entry.points
    );
    // What the sale had brought goes with it: said, so the balance that follows adds up.
    if !taken_back.is_empty() {
        let points = |here: bool| -> i64 {
            taken_back
                .iter()
                .filter(|e| (e.member_id == target.member_id) == here)
                .map(|e| e.points)
                .sum()
        };
        text.push_str("; the offers, badges and bonuses it brought are taken back too");
        match (points(true), points(false)) {
            (0, 0) => {}
            (here, 0) => text.push_str(&format!(" ({here:+} points)")),
            (here, referrer) => text.push_str(&format!(
                " ({here:+} points, and {referrer:+} from the member who referred them)"
            )),
        }
    }
    written(store, &entry, text)
}

fn enrol(store: &mut Store, actor: &str, input: MemberInput) -> Result<Reply, Failed> {
    let view = store.add_member(input, actor, now())?;
    Ok(Reply::Enrolled(Box::new(panel(store, view.member.id)?)))
}

fn load_demo(store: &mut Store, members: usize, replies: &Replies) -> Result<Reply, Failed> {
    let report = crate::demo::seed(store, members, rand::random(), now(), |done| {
        replies.send(Reply::DemoProgress(done));
    })?;
    Ok(Reply::DemoDone {
        message: format!(
            "Loaded {} demo members with {} entries and {} sales without a member",
            report.members, report.entries, report.guest_sales
        ),
        stats: store.stats()?,
    })
}

fn pin_reply<E: std::fmt::Display>(result: Result<(), E>) -> Reply {
    match result {
        Ok(()) => Reply::PinAccepted,
        Err(e) => Reply::PinRefused(e.to_string()),
    }
}

fn import(store: &mut Store, path: &Path, actor: &str) -> Result<Reply, Failed> {
    let bytes = std::fs::read(path)
        .map_err(|e| StoreError::BadRecord(format!("cannot read {}: {e}", path.display())))?;
    let parsed = crate::domain::import::read(&bytes).map_err(StoreError::Import)?;
    let report = store.import_members(&parsed, actor, now(), false, &mut |_| {})?;
    Ok(Reply::Saved(format!(
        "Imported {} members from {}, {} with opening balances ({} points)",
        report.members,
        parsed.source.name(),
        report.balances,
        report.points
    )))
}

fn reload(store: &mut Store) -> Result<Reply, Failed> {
    store.reload()?;
    Ok(Reply::Reloaded {
        program: Box::new(store.program().clone()),
        stats: store.stats()?,
    })
}

fn overview(store: &Store) -> Result<Reply, Failed> {
    Ok(Reply::Overview {
        counts: store.tier_counts()?,
        activity: store.recent_activity(50)?,
        overdrawn: store.overdrawn_members(50)?,
        quarantined: store.quarantined(50)?,
        causes: store.cause_totals()?,
        stats: store.stats()?,
    })
}

fn tier_page(store: &Store, key: PageKey) -> Result<Reply, Failed> {
    let count = if key.page == 0 {
        Some(store.tier_member_count(key.tier, &key.filter)?)
    } else {
        None
    };
    let rows = store.tier_members(
        key.tier,
        &key.filter,
        key.sort,
        key.descending,
        key.page * PAGE_ROWS,
        PAGE_ROWS,
    )?;
    Ok(Reply::TierPage { key, count, rows })
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
        let out = skip_overtaken_pages(page(0), &rx);
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
