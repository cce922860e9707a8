//! The till: its screens, its one dialog, and the one place where anything changes
//! ([`TillApp::act`] for what the user asked, [`TillApp::apply`] for what the workers answered).

use std::collections::HashSet;
use std::path::PathBuf;

use super::action::{Action, Screen};
use super::bars::{Message, Tone, status_bar_ui, top_bar_ui};
use super::cashier::{Ask, CashierScreen, PendingSale};
use super::customer::customer_display;
use super::dialog::{Dialog, DonatePrompt, PinPrompt, PinPurpose, WalletDialog};
use super::enrol::EnrolScreen;
use super::jobs::Job;
use super::manager::ManagerScreen;
use super::member::{ServerBalance, ShownMember, texture};
use super::theme::BAD;
use super::worker::{MemberPanel, Reply, Request, Worker};
use crate::domain::money::{AmountError, parse_amount};
use crate::domain::quote::quote;
use crate::domain::{Entry, EntryKind, MemberId, Program};
use crate::pos::{Committed, OnScreen, PosAnswer, PosApi, PosCall, PosRequest};
use crate::store::{ScanError, StoreStats};
use crate::sync::worker::{SyncStatus, SyncWorker};
use std::sync::mpsc::Receiver;
use tokio::sync::oneshot;

/// The whole till.
pub struct TillApp {
    worker: Worker,
    ctx: egui::Context,
    /// Who is at the till (recorded on entries made from the app).
    actor: String,
    db: PathBuf,
    /// The program in force, once the store is open.
    program: Option<Program>,
    stats: Option<StoreStats>,
    has_pin: bool,
    screen: Screen,
    cashier: CashierScreen,
    enrol: EnrolScreen,
    manager: ManagerScreen,
    dialog: Option<Dialog>,
    message: Option<Message>,
    customer_display: bool,
    /// Background sync with the central server (started once the store is open).
    sync: Option<SyncWorker>,
    /// The server program version the screens show; a newer one installed by sync is reloaded.
    program_version: i64,
    /// Why the store could not be opened.
    fatal: Option<String>,
    /// When the process started, until the first usable frame has been reported.
    launched_at: Option<std::time::Instant>,
    /// Where the local integration API is to listen, once the store gives its token.
    pos_listen: Option<std::net::SocketAddr>,
    /// The local integration API, when it runs, and the calls it hands over.
    pos: Option<(PosApi, Receiver<PosCall>)>,
    /// The point-of-sale system's commit waiting for the store to write the sale.
    pos_commit: Option<oneshot::Sender<PosAnswer>>,
    /// The server's balance for the member a card lookup just took on, shown with them.
    looked_up: Option<(MemberId, i64)>,
    /// Members whose history this till took from the server ahead of the pull: while it
    /// catches up, showing them again asks for their live balance alone.
    histories_taken: HashSet<MemberId>,
    /// The sale without a member just recorded and when, which F8 undoes until the next scan,
    /// for [`UNDO_GUEST_SALE_WITHIN`].
    last_guest_sale: Option<(uuid::Uuid, std::time::Instant)>,
    /// The sync worker's last successful round seen by the screens.
    last_round: Option<crate::domain::Timestamp>,
    /// The sync worker's last count of the store's members, once taken into `stats`.
    members_counted: Option<i64>,
}

/// How long after a sale without a member F8 may undo it.
const UNDO_GUEST_SALE_WITHIN: std::time::Duration = std::time::Duration::from_secs(120);

impl TillApp {
    /// Starts the workers on `db` and sets the till's look.
    pub fn new(ctx: &egui::Context, db: PathBuf, exports: PathBuf, actor: String) -> Self {
        super::theme::apply(ctx);
        let wake = ctx.clone();
        Self {
            worker: Worker::spawn(db.clone(), exports, actor.clone(), move || {
                wake.request_repaint();
            }),
            ctx: ctx.clone(),
            actor,
            db,
            program: None,
            stats: None,
            has_pin: false,
            screen: Screen::Cashier,
            cashier: CashierScreen::default(),
            enrol: EnrolScreen::default(),
            manager: ManagerScreen::default(),
            dialog: None,
            message: None,
            customer_display: false,
            sync: None,
            program_version: 0,
            fatal: None,
            launched_at: None,
            pos_listen: None,
            pos: None,
            pos_commit: None,
            looked_up: None,
            histories_taken: HashSet::new(),
            last_guest_sale: None,
            last_round: None,
            members_counted: None,
        }
    }

    /// Serves the local integration API on `listen` (loopback only) once the store is open.
    pub fn serve_pos(mut self, listen: std::net::SocketAddr) -> Self {
        self.pos_listen = Some(listen);
        self
    }

    /// Starts the integration API with the store's token. When it cannot start, the cashier
    /// is told why and the till works without it.
    fn start_pos(&mut self, token: &str) {
        let Some(listen) = self.pos_listen.take() else {
            return;
        };
        let (calls, inbox) = std::sync::mpsc::channel();
        let wake = self.ctx.clone();
        match crate::pos::start(listen, token, calls, move || wake.request_repaint()) {
            Ok(api) => self.pos = Some((api, inbox)),
            Err(e) => self.say(Tone::Bad, e.to_string()),
        }
    }

    /// Where the integration API listens, when it runs.
    pub fn pos_addr(&self) -> Option<std::net::SocketAddr> {
        self.pos.as_ref().map(|(api, _)| api.addr())
    }

    /// Answers what the point-of-sale system asked since the last frame.
    fn answer_pos(&mut self) {
        let calls: Vec<PosCall> = match &self.pos {
            Some((_, inbox)) => inbox.try_iter().collect(),
            None => return,
        };
        for call in calls {
            match self.pos_answer(call.request) {
                Ok(answer) => {
                    let _ = call.answer.send(answer);
                }
                Err(sale) => {
                    // A commit: answered once the store has written the sale (or refused it).
                    self.worker.send(sale);
                    self.pos_commit = Some(call.answer);
                }
            }
        }
    }

    /// The answer to one call, or the sale to write for a commit.
    fn pos_answer(&mut self, request: PosRequest) -> Result<PosAnswer, Request> {
        if request == PosRequest::Clear {
            if matches!(self.cashier.pending, Some(PendingSale::Basket(_))) {
                self.cashier.pending = None;
            }
            return Ok(PosAnswer::Cleared);
        }
        let (Some(shown), Some(program)) = (&self.cashier.member, &self.program) else {
            return Ok(PosAnswer::NoMember);
        };
        let view = &shown.view;
        match request {
            PosRequest::Member => Ok(PosAnswer::Member(OnScreen {
                member_id: view.member.id.to_string(),
                card: view.member.card.to_string(),
                name: view.member.name.clone(),
                tier: program.tier(view.state.tier).name.clone(),
                balance: view.state.balance,
                offers: shown
                    .offers
                    .open
                    .iter()
                    .map(|o| crate::pos::OfferOnScreen {
                        id: o.offer.clone(),
                        name: program
                            .offer(&o.offer)
                            .map_or_else(|| o.offer.clone(), |x| x.name.clone()),
                        expires_at: o.expires_at.to_string(),
                    })
                    .collect(),
                stamps: shown.stamps.clone(),
                badges: shown.badges.clone(),
            })),
            PosRequest::Attach(lines) => {
                let sale = PendingSale::Basket(lines);
                let now = super::worker::now();
                match quote(program, view.state.tier, &shown.stamps, sale.sale(), now) {
                    Ok(q) => {
                        self.cashier.pending = Some(sale);
                        self.say(
                            Tone::Info,
                            "Basket from the till system: check the points, then Enter or F5",
                        );
                        Ok(PosAnswer::Quote(q))
                    }
                    Err(refusal) => Ok(PosAnswer::Refused(refusal.to_string())),
                }
            }
            PosRequest::Commit if self.pos_commit.is_some() => Ok(PosAnswer::Refused(
                "the last sale is still being written".into(),
            )),
            PosRequest::Commit => match self.cashier.pending.take() {
                Some(PendingSale::Basket(lines)) => Err(Request::Earn {
                    member: view.member.id,
                    sale: PendingSale::Basket(lines),
                }),
                other => {
                    self.cashier.pending = other;
                    Ok(PosAnswer::NoBasket)
                }
            },
            PosRequest::Clear => Ok(PosAnswer::Cleared),
        }
    }

    /// Reports (on stderr) how long after `launched` the first usable frame was drawn.
    pub fn report_startup(mut self, launched: std::time::Instant) -> Self {
        self.launched_at = Some(launched);
        self
    }

    /// Blocks until the workers have answered everything sent so far, including what applying
    /// their answers sends next, and applies the answers. Tests use it to wait for the store
    /// without sleeping; the UI never calls it.
    pub fn settle(&mut self) {
        loop {
            let replies = self.worker.wait_all();
            if replies.is_empty() {
                return;
            }
            for reply in replies {
                self.apply(reply);
            }
        }
    }

    /// The program in force, once the store is open.
    pub fn program(&self) -> Option<&Program> {
        self.program.as_ref()
    }

    /// The screen on show.
    pub fn screen(&self) -> Screen {
        self.screen
    }

    /// The status line.
    pub fn message(&self) -> Option<&Message> {
        self.message.as_ref()
    }

    /// The member on the cashier screen.
    pub fn member(&self) -> Option<&ShownMember> {
        self.cashier.member.as_ref()
    }

    /// The scan line as typed so far.
    pub fn scan_text(&self) -> &str {
        &self.cashier.scan_text
    }

    /// The reward picked on the cashier screen (index into the program's rewards).
    pub fn selected_reward(&self) -> Option<usize> {
        self.cashier.selected_reward
    }

    /// The member just enrolled, with their QR code.
    pub fn enrolled(&self) -> Option<&ShownMember> {
        self.enrol.enrolled.as_ref()
    }

    /// The cashier screen's state.
    pub fn cashier(&self) -> &CashierScreen {
        &self.cashier
    }

    /// The manager screen's state.
    pub fn manager(&self) -> &ManagerScreen {
        &self.manager
    }

    /// The open dialog.
    pub fn dialog(&self) -> Option<&Dialog> {
        self.dialog.as_ref()
    }

    /// The one answer to "is a dialog open?": while one is, the scan line and F-keys are off.
    fn dialog_open(&self) -> bool {
        self.dialog.is_some()
    }

    /// The sync worker's latest status (default until it has started).
    pub fn sync_status(&self) -> SyncStatus {
        self.sync
            .as_ref()
            .map(SyncWorker::status)
            .unwrap_or_default()
    }

    /// Blocks until the sync worker has finished a round started after this call. Tests use it
    /// to wait without sleeping; the UI never calls it.
    pub fn settle_sync(&self) {
        if let Some(sync) = &self.sync {
            sync.sync_now_and_wait();
        }
    }

    fn nudge_sync(&self) {
        if let Some(sync) = &self.sync {
            sync.nudge();
        }
    }

    fn say(&mut self, tone: Tone, text: impl Into<String>) {
        // Messages from the store and the rules are worded for the command line too, in lower
        // case: on screen they begin as a sentence does.
        let text: String = text.into();
        let mut chars = text.chars();
        let text = match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => text,
        };
        self.message = Some(Message { text, tone });
    }

    /// Applies what the user asked for. Screens, bars and dialogs only return actions; this is
    /// where they take effect.
    pub fn act(&mut self, action: Action) {
        // Whatever changed is drawn on the next frame, even if no worker answers.
        self.ctx.request_repaint();
        match action {
            Action::Go(screen) => self.go(screen),
            Action::ToggleCustomerDisplay => self.customer_display = !self.customer_display,
            Action::Clear => self.clear(),
            Action::Submit(text) => self.submit(text.trim()),
            Action::Earn => self.earn(),
            Action::Redeem => self.redeem(),
            Action::BuyMembership => match &self.cashier.member {
                Some(shown) => {
                    let member = shown.view.member.id;
                    self.worker.send(Request::BuyMembership(member));
                }
                None => self.say(Tone::Bad, "Scan a member first"),
            },
            Action::UseOffer(offer) => match &self.cashier.member {
                Some(shown) => {
                    let member = shown.view.member.id;
                    self.worker.send(Request::UseOffer { member, offer });
                }
                None => self.say(Tone::Bad, "Scan a member first"),
            },
            Action::AskDonate => match &self.cashier.member {
                Some(shown) => {
                    self.dialog = Some(Dialog::Donate(DonatePrompt {
                        member: shown.view.member.id,
                        balance: shown.spendable().balance,
                        cause: 0,
                        points: String::new(),
                        error: None,
                        sending: false,
                    }));
                }
                None => self.say(Tone::Bad, "Scan a member first"),
            },
            Action::Donate {
                member,
                cause,
                points,
            } => {
                if let Some(Dialog::Donate(prompt)) = &mut self.dialog {
                    prompt.sending = true;
                    prompt.error = None;
                }
                self.worker.send(Request::Donate {
                    member,
                    cause,
                    points,
                });
            }
            Action::RedeemStamps(card) => match &self.cashier.member {
                Some(shown) => {
                    let member = shown.view.member.id;
                    self.worker.send(Request::RedeemStamps { member, card });
                }
                None => self.say(Tone::Bad, "Scan a member first"),
            },
            Action::NextReward | Action::PreviousReward => {
                let rewards = self.program.as_ref().map_or(0, |p| p.rewards.len());
                let forward = action == Action::NextReward;
                self.cashier.move_reward(forward, rewards);
            }
            Action::ReverseLast => self.ask_reverse_last(),
            Action::Open(member) => self.worker.send(Request::Open(member)),
            Action::Serve(member) => {
                self.worker.send(Request::Open(member));
                self.go(Screen::Cashier);
            }
            Action::WalletPass(member) => {
                self.dialog = Some(Dialog::Wallet(WalletDialog::Making));
                self.worker.send(Request::PassContent(member));
            }
            Action::ExportQr { card, code } => self.worker.run(Job::ExportQr { card, code }),
            Action::PrintQr { card, code } => self.worker.run(Job::PrintQr { card, code }),
            Action::Enrol(input) => {
                let scanned = [
                    Some(&input.name),
                    input.phone.as_ref(),
                    input.email.as_ref(),
                ]
                .into_iter()
                .flatten()
                .find(|text| crate::store::looks_like_code(text))
                .cloned();
                match scanned {
                    // A member's card scanned into the form: serve that member, never enrol
                    // someone named after their code.
                    Some(code) => {
                        self.enrol.forget_scanned(&code);
                        self.go(Screen::Cashier);
                        self.submit(code.trim());
                    }
                    None => self.worker.send(Request::Enrol(Box::new(input))),
                }
            }
            Action::AskImage => self.dialog = Some(Dialog::ImagePath(String::new())),
            Action::ScanImage(path) => {
                if matches!(self.dialog, Some(Dialog::ImagePath(_))) {
                    self.dialog = None;
                }
                self.go(Screen::Cashier);
                self.say(Tone::Info, format!("Reading {}", path.display()));
                self.worker.send(Request::ScanImage(path));
            }
            Action::LoadDemo(members) => {
                self.dialog = Some(Dialog::DemoLoading(0));
                self.worker.send(Request::LoadDemo(members));
            }
            Action::DeclineDemo => self.dialog = None,
            Action::Join(text) => self.join(text.trim()),
            Action::SubmitPin => self.submit_pin(),
            Action::AskImport => self.dialog = Some(Dialog::ImportPath(String::new())),
            Action::Import(path) => {
                self.dialog = None;
                self.say(Tone::Info, format!("Importing {}…", path.display()));
                self.worker.send(Request::Import {
                    path,
                    actor: self.actor.clone(),
                });
                self.worker.send(Request::Overview);
            }
            Action::GuestSale => self.guest_sale(),
            Action::Recommend(score) => {
                if let Some(by) = self.cashier.ask.take() {
                    self.worker.send(Request::Recommend { score, by });
                }
            }
            Action::SkipRecommend => self.cashier.ask = None,
            Action::Insights(days) => {
                let (from, to) = crate::domain::insights::last_days(super::worker::now(), days);
                self.worker.run(Job::Insights { from, to });
            }
            Action::FetchPages(keys) => {
                for key in keys {
                    self.worker.send(Request::TierPage(key));
                }
            }
        }
    }

    fn act_on(&mut self, action: Option<Action>) {
        if let Some(action) = action {
            self.act(action);
        }
    }

    /// Esc: close the dialog, or clear the member, sale and search.
    fn clear(&mut self) {
        match &self.dialog {
            Some(dialog) if dialog.closable() => self.dialog = None,
            Some(_) => {}
            None => {
                self.cashier.clear();
                self.message = None;
                if self.screen == Screen::Manager {
                    self.manager.clear_filter();
                }
            }
        }
    }

    /// A line from the scan field. With a member on screen, an amount sets the sale to preview
    /// and an empty line confirms it; anything else is a scan or search.
    fn submit(&mut self, text: &str) {
        if crate::sync::join::JoinCode::looks_like(text) {
            return self.join(text);
        }
        if text.is_empty() {
            if self.cashier.pending.is_some() {
                self.earn();
            } else if let Some(member) = self.cashier.picked_match() {
                self.worker.send(Request::Open(member));
            }
            return;
        }
        // A scan or search: the next customer, whose F8 is not the last guest's undo.
        self.last_guest_sale = None;
        if let Some(amount) = self.sale_amount(text) {
            // An amount the program refuses (nothing, or above its largest sale) is said at
            // once, not previewed beside "press Enter to earn".
            let allowed = amount.map_err(|e| e.to_string()).and_then(|minor| {
                let program = self.program.as_ref().ok_or("the program is not loaded")?;
                crate::domain::rules::check_sale_amount(program, minor)
                    .map(|()| minor)
                    .map_err(|e| e.to_string())
            });
            match allowed {
                Ok(minor) => {
                    self.cashier.pending = Some(PendingSale::Amount(minor));
                    self.say(
                        Tone::Info,
                        "Check the points, then press Enter or F5 to earn",
                    );
                }
                Err(e) => {
                    // A preview from before goes too: Enter must not earn on an amount the
                    // cashier just typed over.
                    self.cashier.pending = None;
                    self.say(Tone::Bad, e);
                }
            }
            return;
        }
        if self.cashier.member.is_some() && looks_like_a_mistyped_amount(text) {
            self.say(
                Tone::Bad,
                format!("\"{text}\" is not a sale amount: type it like 12.50"),
            );
            return;
        }
        // The next customer: a question the last one left unanswered goes, and so does the
        // member on screen, whatever the scan finds (a refused or unknown code must not leave
        // the last customer there for the next sale).
        self.cashier.clear();
        self.worker.send(Request::Scan(text.to_owned()));
    }

    /// `text` read as the sale amount for the member on screen; `None` when no member is shown
    /// or it is not shaped like an amount (a scan or search, then).
    fn sale_amount(&self, text: &str) -> Option<Result<i64, AmountError>> {
        let program = self.program.as_ref()?;
        (self.cashier.member.is_some() && is_amount_shaped(text))
            .then(|| parse_amount(text, program.minor_units))
    }

    /// A join code scanned or pasted into the scan line: join that server (on the jobs thread).
    fn join(&mut self, text: &str) {
        match crate::sync::join::JoinCode::parse(text) {
            Ok(code) => {
                if matches!(self.dialog, Some(Dialog::DemoOffer { .. })) {
                    self.dialog = None;
                }
                self.say(Tone::Info, format!("Joining {}…", code.url));
                self.worker.run(Job::Join(code));
            }
            Err(e) => self.say(Tone::Bad, e.to_string()),
        }
    }

    /// Earns the sale: an amount typed in the scan line (and not yet previewed with Enter), which
    /// replaces a preview (the cashier corrected the amount), or else the previewed sale.
    fn earn(&mut self) {
        if let Some(amount) = self.sale_amount(self.cashier.scan_text.trim()) {
            match amount {
                Ok(minor) => {
                    self.cashier.scan_text.clear();
                    self.cashier.pending = Some(PendingSale::Amount(minor));
                }
                Err(e) => return self.say(Tone::Bad, e.to_string()),
            }
        }
        match (&self.cashier.member, &self.cashier.pending) {
            (Some(shown), Some(sale)) => {
                let member = shown.view.member.id;
                self.worker.send(Request::Earn {
                    member,
                    sale: sale.clone(),
                });
            }
            (None, _) => self.say(Tone::Bad, "Scan a member first"),
            (Some(_), None) => self.say(Tone::Bad, "Type the sale amount first, e.g. 12.50"),
        }
    }

    /// F7: the amount in the scan line as a sale without a member (no member on screen).
    fn guest_sale(&mut self) {
        if self.cashier.member.is_some() {
            return self.say(
                Tone::Bad,
                "A member is on screen: F5 earns for them. Esc first for a sale without a member",
            );
        }
        let Some(program) = &self.program else {
            return;
        };
        let text = self.cashier.scan_text.trim().to_owned();
        if text.is_empty() {
            return self.say(Tone::Bad, "Type the sale amount first, e.g. 4.50, then F7");
        }
        match parse_amount(&text, program.minor_units) {
            Ok(minor) => {
                self.cashier.scan_text.clear();
                // F8 now undoes this sale once it is written, never the one before.
                self.last_guest_sale = None;
                self.worker.send(Request::GuestSale(minor));
            }
            Err(e) => self.say(Tone::Bad, e.to_string()),
        }
    }

    /// Redeems the selected reward; online, the server's live balance is asked for first (on
    /// the jobs thread, so scans never wait behind the network).
    fn redeem(&mut self) {
        let reward = self
            .cashier
            .selected_reward
            .and_then(|i| self.program.as_ref()?.rewards.get(i))
            .map(|r| r.id.clone());
        match (&self.cashier.member, reward) {
            (Some(shown), Some(reward)) => {
                let member = shown.view.member.id;
                if self.sync_status().online {
                    self.say(Tone::Info, "Checking the balance with the server…");
                    self.worker.run(Job::LiveBalance { member, reward });
                } else {
                    self.worker.send(Request::Redeem {
                        member,
                        reward,
                        live: None,
                    });
                }
            }
            (None, _) => self.say(Tone::Bad, "Scan a member first"),
            (Some(_), None) => self.say(Tone::Bad, "Pick a reward first (click it, or Up/Down)"),
        }
    }

    /// Opens the manager PIN prompt for reversing the member's last transaction here, saying
    /// what it is.
    fn ask_reverse_last(&mut self) {
        let Some(shown) = &self.cashier.member else {
            // Right after a sale without a member, F8 undoes it (once).
            return match self.last_guest_sale.take() {
                Some((sale, at)) if at.elapsed() <= UNDO_GUEST_SALE_WITHIN => {
                    self.worker.send(Request::VoidGuestSale(sale));
                }
                _ => self.say(Tone::Bad, "Scan a member first"),
            };
        };
        let name = shown.view.member.name.clone();
        let last = match &shown.last_here {
            None => {
                return self.say(
                    Tone::Bad,
                    format!("This till has no transaction for {name} to reverse"),
                );
            }
            Some(e) if e.kind == EntryKind::Reverse => {
                return self.say(
                    Tone::Bad,
                    format!("{name}'s last transaction at this till is already a reversal"),
                );
            }
            Some(e) => e.clone(),
        };
        if !self.has_pin {
            return self.say(
                Tone::Bad,
                "Reversals need a manager PIN: set one in the Manager screen (F10)",
            );
        }
        let what = describe_for_reversal(&last, &name, self.program.as_ref());
        self.dialog = Some(Dialog::Pin(PinPrompt::new(PinPurpose::Reverse {
            entry: Box::new(last),
            what,
        })));
    }

    /// Submits the open PIN prompt.
    fn submit_pin(&mut self) {
        let Some(Dialog::Pin(prompt)) = &mut self.dialog else {
            return;
        };
        let pin = prompt.pin.trim().to_owned();
        match &prompt.purpose {
            PinPurpose::Reverse { entry, .. } => {
                let entry = entry.clone();
                self.worker.send(Request::Reverse { entry, pin });
            }
            PinPurpose::UnlockManager => self.worker.send(Request::CheckPin(pin)),
            PinPurpose::SetManagerPin => {
                if pin == prompt.confirm.trim() {
                    self.worker.send(Request::SetPin(pin));
                } else {
                    prompt.error = Some("the two PINs differ".to_owned());
                    prompt.confirm.clear();
                }
            }
        }
    }

    /// Moves to a screen; leaving the manager screen locks it again.
    fn go(&mut self, screen: Screen) {
        if screen != Screen::Manager {
            self.manager.unlocked = false;
        }
        if screen == Screen::Manager && !self.manager.unlocked && !self.dialog_open() {
            let purpose = if self.has_pin {
                PinPurpose::UnlockManager
            } else {
                PinPurpose::SetManagerPin
            };
            self.dialog = Some(Dialog::Pin(PinPrompt::new(purpose)));
        }
        if screen == Screen::Enrol {
            self.enrol.start();
        }
        self.screen = screen;
    }

    /// Closes the dialog `entry` answers: the reversal its PIN prompt asked for, or the gift
    /// its prompt sent. An entry written meanwhile for another request (the point-of-sale
    /// system's sale) leaves the dialog open.
    fn close_dialog_written(&mut self, entry: &Entry) {
        let answered = match &self.dialog {
            Some(Dialog::Pin(PinPrompt {
                purpose: PinPurpose::Reverse { entry: target, .. },
                ..
            })) => entry.reverses == Some(target.id),
            Some(Dialog::Donate(prompt)) => {
                prompt.sending
                    && entry.kind == EntryKind::Donation
                    && entry.member_id == prompt.member
            }
            _ => false,
        };
        if answered {
            self.dialog = None;
        }
    }

    /// Applies a worker's answer.
    fn apply(&mut self, reply: Reply) {
        match reply {
            Reply::Ready {
                program,
                stats,
                has_pin,
                joined,
                pos_token,
            } => {
                self.start_pos(&pos_token);
                self.ready(*program, stats, has_pin, joined);
            }
            Reply::OpenFailed(e) => self.fatal = Some(e),
            Reply::Reloaded { program, stats } => {
                // A new version with the same rules (a till joining a server that runs the
                // program it already had) changes nothing the cashier sees.
                if self.program.as_ref() != Some(&*program) {
                    self.say(
                        Tone::Info,
                        format!("The server's program is now in force: {}", program.name),
                    );
                }
                self.program = Some(*program);
                self.stats = Some(stats);
            }
            Reply::Member(panel) => {
                self.say(Tone::Info, format!("{} found", panel.view.member.name));
                self.cashier.pending = None;
                self.cashier.selected_reward = None;
                self.show_panel(*panel);
            }
            Reply::Refreshed(panel) => {
                if self
                    .cashier
                    .member
                    .as_ref()
                    .is_some_and(|m| m.view.member.id == panel.view.member.id)
                {
                    self.show_panel(*panel);
                }
            }
            Reply::UnknownCard(card) => {
                if self.sync_status().configured {
                    self.say(
                        Tone::Info,
                        format!("Card {card} is not on this till yet: asking the server…"),
                    );
                    self.worker.run(Job::LookUpCard(card));
                } else {
                    self.say(Tone::Bad, ScanError::UnknownMember(card).to_string());
                }
            }
            Reply::LookedUp {
                member,
                balance,
                members,
            } => {
                // The status bar counts the member taken on now, not after the next round.
                self.take_member_count(members);
                self.looked_up = Some((member, balance));
                self.histories_taken.insert(member);
                self.worker.send(Request::Open(member));
            }
            Reply::ServerBalance {
                member,
                balance,
                taken,
            } => {
                if let Some(shown) = &mut self.cashier.member
                    && shown.view.member.id == member
                {
                    match balance {
                        Some(balance) => {
                            shown.take_server_balance(balance);
                            self.histories_taken.insert(member);
                        }
                        None => shown.server = Some(ServerBalance::Unanswered),
                    }
                    // Their history came ahead of the pull: read them again with it.
                    if taken > 0 {
                        self.worker.send(Request::Refresh(member));
                    }
                }
            }
            Reply::Matches { hits, more } => {
                let text = match hits.len() {
                    0 => "No member found: check the spelling, or enrol them (F2)".to_owned(),
                    1 => "1 member found: Enter to open them".to_owned(),
                    n if more => format!(
                        "More than {n} members found, the first {n} listed: type more of the \
                         name, or a phone number"
                    ),
                    n => format!("{n} members found: Up/Down to pick one, Enter to open"),
                };
                let tone = if hits.is_empty() {
                    Tone::Bad
                } else {
                    Tone::Info
                };
                self.say(tone, text);
                self.cashier.show_matches(hits);
            }
            Reply::Written {
                message,
                entry,
                panel,
                sale,
            } => {
                if sale && let Some(waiting) = self.pos_commit.take() {
                    let _ = waiting.send(PosAnswer::Committed(Committed {
                        entry_id: entry.id.to_string(),
                        points: entry.points,
                        amount_minor: entry.amount_minor.unwrap_or(0),
                        balance: panel.view.state.balance,
                    }));
                }
                self.nudge_sync();
                self.say(Tone::Good, message);
                self.cashier.pending = None;
                // A second F6 must not redeem the same reward again unasked.
                self.cashier.selected_reward = None;
                self.cashier.ask = sale.then_some(Ask::Member(panel.view.member.id));
                self.show_panel(*panel);
                self.close_dialog_written(&entry);
            }
            Reply::Enrolled(panel) => {
                self.nudge_sync();
                let member = &panel.view.member;
                let text = format!("Welcome, {}! Card {}", member.name, member.card.grouped());
                self.say(Tone::Good, text);
                // The new member is the customer at the till: F1 serves them, not whoever was
                // on the cashier screen before.
                self.cashier.clear();
                self.last_guest_sale = None;
                self.cashier.show_member(ShownMember::new(
                    &self.ctx,
                    "member-qr",
                    (*panel).clone(),
                ));
                self.enrol
                    .enrolled(ShownMember::new(&self.ctx, "enrolled-qr", *panel));
                if let Some(stats) = &mut self.stats {
                    stats.members += 1;
                }
            }
            Reply::Refused(text) => {
                if self.screen == Screen::Enrol {
                    self.enrol.refused(&text);
                }
                self.say(Tone::Bad, text);
                // Wallet passes that could not be made: the dialog waiting for them closes.
                if matches!(self.dialog, Some(Dialog::Wallet(WalletDialog::Making))) {
                    self.dialog = None;
                }
            }
            Reply::DialogRefused(text) => match &mut self.dialog {
                // A refused gift: the reason in its prompt, which keeps what was typed.
                Some(Dialog::Donate(prompt)) if prompt.sending => {
                    prompt.sending = false;
                    prompt.error = Some(text);
                }
                Some(Dialog::Pin(PinPrompt {
                    purpose: PinPurpose::Reverse { .. },
                    ..
                })) => {
                    self.say(Tone::Bad, text);
                    self.dialog = None;
                }
                _ => self.say(Tone::Bad, text),
            },
            Reply::EarnRefused(text) => {
                if let Some(waiting) = self.pos_commit.take() {
                    let _ = waiting.send(PosAnswer::Refused(text.clone()));
                }
                self.say(Tone::Bad, text);
            }
            Reply::PinRefused(text) => match &mut self.dialog {
                Some(Dialog::Pin(prompt)) => {
                    prompt.error = Some(text);
                    prompt.pin.clear();
                    prompt.confirm.clear();
                }
                _ => self.say(Tone::Bad, text),
            },
            Reply::PinAccepted => {
                if let Some(Dialog::Pin(prompt)) = self.dialog.take()
                    && !matches!(prompt.purpose, PinPurpose::Reverse { .. })
                {
                    // A PIN set for the first time answers "Reversals need a manager PIN",
                    // which would otherwise stay on the status line.
                    if prompt.purpose == PinPurpose::SetManagerPin {
                        self.say(
                            Tone::Good,
                            "Manager PIN set: reversals and the manager screen ask for it",
                        );
                    }
                    self.has_pin = true;
                    self.manager.unlocked = true;
                    self.worker.send(Request::Overview);
                }
            }
            Reply::DemoProgress(done) => {
                if let Some(Dialog::DemoLoading(n)) = &mut self.dialog {
                    *n = done;
                }
            }
            Reply::DemoDone { message, stats } => {
                if matches!(self.dialog, Some(Dialog::DemoLoading(_))) {
                    self.dialog = None;
                }
                self.stats = Some(stats);
                self.say(Tone::Good, message);
            }
            Reply::Overview {
                counts,
                activity,
                overdrawn,
                quarantined,
                causes,
                stats,
            } => {
                self.manager
                    .overview(counts, activity, overdrawn, quarantined, causes);
                self.stats = Some(stats);
            }
            Reply::TierPage { key, count, rows } => self.manager.page(key, count, rows),
            Reply::PageSkipped(key) => self.manager.page_skipped(&key),
            Reply::Saved(text) => self.say(Tone::Good, text),
            Reply::Insights(report) => self.manager.insights.arrived(*report),
            Reply::InsightsProgress(read, total) => self.manager.insights.progress(read, total),
            Reply::InsightsFailed(why) => {
                self.manager.insights.failed();
                self.say(Tone::Bad, why);
            }
            Reply::GuestSold { message, sale } => {
                self.say(Tone::Good, message);
                self.cashier.ask = Some(Ask::Guest(Some(sale)));
                self.last_guest_sale = Some((sale, std::time::Instant::now()));
            }
            Reply::GuestVoided { message, sale } => {
                self.say(Tone::Good, message);
                if self.cashier.ask == Some(Ask::Guest(Some(sale))) {
                    self.cashier.ask = None;
                }
            }
            Reply::Joined(url) => {
                self.nudge_sync();
                self.say(
                    Tone::Good,
                    format!(
                        "Joined {url}: the chain's members and history follow in the background; scans ask the server meanwhile"
                    ),
                );
            }
            Reply::PassContent(content) => self.worker.run(Job::WalletPass(content)),
            Reply::WalletPass(reply) => {
                if let Some(Dialog::Wallet(wallet)) = &mut self.dialog {
                    let qr = reply
                        .google
                        .as_ref()
                        .ok()
                        .map(|(_, img)| texture(&self.ctx, "wallet-link-qr", img));
                    *wallet = WalletDialog::Ready { reply, qr };
                }
            }
            Reply::PassLink(reply) => {
                if let Some(Dialog::Wallet(wallet)) = &mut self.dialog {
                    let qr = texture(&self.ctx, "wallet-link-qr", &reply.qr);
                    *wallet = WalletDialog::Link {
                        name: reply.name,
                        url: reply.url,
                        qr,
                        demo: reply.demo,
                    };
                }
            }
            Reply::LiveBalance {
                member,
                reward,
                live,
            } => {
                if live.is_none() {
                    self.say(
                        Tone::Info,
                        "The server did not answer: the offline redemption limit applies",
                    );
                }
                self.worker.send(Request::Redeem {
                    member,
                    reward,
                    live,
                });
            }
        }
    }

    /// A count of the store's members made off the frame, for the status bar. Counts made on
    /// two threads (the sync worker's, a card lookup's) can arrive out of order; the store
    /// never loses a member, so the larger is the later.
    fn take_member_count(&mut self, members: Option<i64>) {
        if let (Some(members), Some(stats)) = (members, &mut self.stats) {
            stats.members = stats.members.max(members);
        }
    }

    /// Puts `panel` on screen. While this till is still receiving the chain's history its own
    /// balance may lack the member's entries, so the server's is asked for and shown with it;
    /// so it is again for a member whose count here was still behind the server's.
    fn show_panel(&mut self, panel: MemberPanel) {
        self.last_guest_sale = None;
        let mut shown = ShownMember::new(&self.ctx, "member-qr", panel);
        let id = shown.view.member.id;
        let from_server = self.cashier.member.as_ref().is_some_and(|m| {
            m.view.member.id == id
                && (m.history_behind().is_some()
                    || matches!(
                        m.server,
                        Some(ServerBalance::Asking | ServerBalance::Unanswered)
                    ))
        });
        match self.looked_up.take() {
            Some((member, balance)) if member == id => shown.take_server_balance(balance),
            _ if from_server || self.sync_status().catching_up.is_some() => {
                self.worker.run(Job::ServerBalance {
                    member: id,
                    history: !self.histories_taken.contains(&id),
                });
                shown.server = Some(ServerBalance::Asking);
            }
            _ => {}
        }
        self.cashier.show_member(shown);
    }

    /// The store is open: remember the program and start syncing.
    fn ready(&mut self, program: Program, stats: StoreStats, has_pin: bool, joined: bool) {
        if stats.members == 0 && !joined && !self.dialog_open() {
            self.dialog = Some(Dialog::DemoOffer {
                join: String::new(),
            });
        }
        self.program = Some(program);
        self.stats = Some(stats);
        self.has_pin = has_pin;
        // The store is open and migrated: now a second connection may sync it.
        let wake = self.ctx.clone();
        match SyncWorker::spawn(self.db.clone(), move || wake.request_repaint()) {
            Ok(worker) => self.sync = Some(worker),
            Err(e) => self.say(Tone::Bad, format!("sync could not start: {e}")),
        }
    }

    /// A program or key the sync worker installed reaches the screens without a restart; a
    /// member shown with the server's balance is read again after each round, so the note goes
    /// once this till has their history.
    fn follow_sync(&mut self) {
        let status = self.sync_status();
        if status.program_version != self.program_version && self.program.is_some() {
            self.program_version = status.program_version;
            self.worker.send(Request::Reload);
        }
        // The sync worker counts the members after a round that pulled some.
        if status.members != self.members_counted {
            self.members_counted = status.members;
            self.take_member_count(status.members);
        }
        if status.last_success != self.last_round {
            self.last_round = status.last_success;
            if let Some(shown) = &self.cashier.member
                && shown.server.is_some()
            {
                self.worker.send(Request::Refresh(shown.view.member.id));
            }
        }
    }

    /// Keys and dropped files, read once per frame before any widget. Returns the keys' actions
    /// that read the scan line (F5, F7): they wait until the line has taken this frame's
    /// typing, so a key pressed right after the last digit still sees it.
    fn input(&mut self, ctx: &egui::Context) -> Vec<Action> {
        let (after_typing, now): (Vec<Action>, Vec<Action>) =
            super::keys::pressed(ctx, self.screen, self.dialog_open())
                .into_iter()
                .partition(|a| matches!(a, Action::Earn | Action::GuestSale));
        for action in now {
            self.act(action);
        }
        let dropped = ctx.input(|i| i.raw.dropped_files.first().map(|f| f.path().to_path_buf()));
        if let Some(path) = dropped {
            self.act(Action::ScanImage(path));
        }
        after_typing
    }

    /// The central panel: the screen on show, once the store is open.
    fn screen_ui(&mut self, ui: &mut egui::Ui) -> Option<Action> {
        if let Some(e) = &self.fatal {
            ui.heading("The till's database could not be opened");
            ui.label(egui::RichText::new(e).color(BAD));
            return None;
        }
        let Some(program) = &self.program else {
            ui.heading("Opening the till…");
            return None;
        };
        let dialog_open = self.dialog.is_some();
        let action = match self.screen {
            Screen::Cashier => self.cashier.ui(ui, program, dialog_open),
            Screen::Enrol => self.enrol.ui(ui),
            Screen::Manager => self.manager.ui(ui, program),
        };
        if let Some(launched) = self.launched_at.take() {
            eprintln!(
                "tillpass: usable {} ms after launch",
                launched.elapsed().as_millis()
            );
        }
        action
    }
}

/// "Grace Hopper's purchase of 30.00 GBP, +300 points, 2026-11-28 14:02 UTC": the entry a
/// reversal would undo, as the manager confirms it.
fn describe_for_reversal(e: &Entry, name: &str, program: Option<&Program>) -> String {
    let amount = match (e.amount_minor, program) {
        (Some(minor), Some(program)) => format!(" of {}", program.format_money(minor)),
        _ => String::new(),
    };
    let at = e.occurred_at.to_string();
    format!(
        "{name}'s {}{amount}, {:+} points, {} {} UTC",
        e.kind.label().to_lowercase(),
        e.points,
        &at[..10],
        &at[11..16]
    )
}

/// Text a cashier meant as a sale amount but mistyped ("-5", "12.5.0", "1,000.00", "1e3"):
/// up to nine digits with signs, points, commas or an exponent. Digits alone are a search,
/// and so are ten digits or more however punctuated (a phone or card number such as
/// 07400-123456 or 3995-7380-30), and a leading `+` (an international phone number).
fn looks_like_a_mistyped_amount(text: &str) -> bool {
    let amountish = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b',' | b'-' | b'+' | b'e' | b'E'));
    let punctuated = text.bytes().any(|b| !b.is_ascii_digit());
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    amountish && punctuated && (1..=9).contains(&digits) && !text.starts_with('+')
}

/// Amounts are short (at most six whole digits); card numbers and phones are longer.
pub(super) fn is_amount_shaped(text: &str) -> bool {
    let (whole, frac) = text.split_once(['.', ',']).unwrap_or((text, ""));
    (!whole.is_empty() || !frac.is_empty())
        && whole.len() <= 6
        && frac.len() <= 3
        && whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
}

impl eframe::App for TillApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        for reply in self.worker.try_replies() {
            self.apply(reply);
        }
        self.answer_pos();
        self.follow_sync();
        let ctx = ui.ctx().clone();
        let after_typing = self.input(&ctx);
        // Each action is applied as soon as what returned it is drawn, so a dialog a click
        // opens is drawn in the same frame.
        let title = self
            .program
            .as_ref()
            .map_or("Tillpass", |p| p.name.as_str());
        let top = top_bar_ui(ui, title, self.screen, self.customer_display);
        self.act_on(top);
        status_bar_ui(
            ui,
            self.message.as_ref(),
            &super::keys::legend(self.screen, self.manager.view),
            self.stats.as_ref(),
            &self.sync_status(),
        );
        let screen = egui::CentralPanel::default()
            .show(ui, |ui| self.screen_ui(ui))
            .inner;
        self.act_on(screen);
        for action in after_typing {
            self.act(action);
        }
        let program = self.program.as_ref();
        let dialog = self
            .dialog
            .as_mut()
            .and_then(|dialog| dialog.ui(&ctx, program));
        self.act_on(dialog);
        if let (true, Some(program)) = (self.customer_display, &self.program) {
            let customer = customer_display(
                &ctx,
                program,
                self.cashier.member.as_ref(),
                self.cashier.ask,
            );
            self.act_on(customer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        Dialog, DonatePrompt, EntryKind, MemberId, PinPrompt, PinPurpose, Reply, TillApp,
        is_amount_shaped, looks_like_a_mistyped_amount,
    };
    use crate::domain::summary::tests::entry;

    fn app_with(dir: &tempfile::TempDir, dialog: Dialog) -> TillApp {
        let db = dir.path().join("till.sqlite3");
        let mut app = TillApp::new(&egui::Context::default(), db, dir.path().into(), "t".into());
        app.dialog = Some(dialog);
        app
    }

    #[test]
    fn a_dialog_closes_on_its_own_answer_only() {
        let dir = tempfile::tempdir().expect("dir");
        let member = MemberId(uuid::Uuid::nil());
        let gift = DonatePrompt {
            member,
            balance: 800,
            cause: 0,
            points: "300".into(),
            error: None,
            sending: true,
        };
        let mut app = app_with(&dir, Dialog::Donate(gift));
        // Meanwhile: the point-of-sale system's sale, and a refusal of something else.
        app.close_dialog_written(&entry(EntryKind::Earn, 30, Some(300), 0));
        app.apply(Reply::Refused("No member found".into()));
        assert!(
            matches!(&app.dialog, Some(Dialog::Donate(p)) if p.sending && p.error.is_none()),
            "the gift is still waiting for its own answer"
        );
        app.apply(Reply::DialogRefused("not enough points".into()));
        assert!(
            matches!(&app.dialog, Some(Dialog::Donate(p)) if !p.sending && p.error.as_deref() == Some("not enough points"))
        );
        if let Some(Dialog::Donate(p)) = &mut app.dialog {
            p.sending = true;
        }
        app.close_dialog_written(&entry(EntryKind::Donation, -300, None, 0));
        assert!(app.dialog.is_none(), "the gift was written");

        let target = entry(EntryKind::Earn, 30, Some(300), 0);
        let mut app = app_with(
            &dir,
            Dialog::Pin(PinPrompt::new(PinPurpose::Reverse {
                entry: Box::new(target.clone()),
                what: "the last purchase".into(),
            })),
        );
        app.close_dialog_written(&entry(EntryKind::Earn, 30, Some(300), 0));
        assert!(
            matches!(app.dialog, Some(Dialog::Pin(_))),
            "a PIN half typed stays"
        );
        let mut reversal = entry(EntryKind::Reverse, -30, None, 0);
        reversal.reverses = Some(target.id);
        app.close_dialog_written(&reversal);
        assert!(app.dialog.is_none(), "the reversal was written");
    }

    #[test]
    fn mistyped_amounts_are_told_from_searches() {
        for typo in ["-5", "12.5.0", "1,000.00", "1e3", "1.2345"] {
            assert!(looks_like_a_mistyped_amount(typo), "{typo}");
        }
        for search in [
            "99999999",
            "3995738030",
            "3995-7380-30",
            "07400-123456",
            "0740.012.3456",
            "+447400000001",
            "Ada",
            "ada@x.com",
            "0740 0",
        ] {
            assert!(!looks_like_a_mistyped_amount(search), "{search}");
        }
    }

    #[test]
    fn amounts_are_short_and_numeric() {
        for amount in ["12.50", "7", "0,99", ".5", "123456"] {
            assert!(is_amount_shaped(amount), "{amount}");
        }
        for other in ["1234567", "3995738030", "12.5.0", "ada", "", "1.2345"] {
            assert!(!is_amount_shaped(other), "{other}");
        }
    }
}
