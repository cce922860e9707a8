//! The till's state and the one place where it changes: user intents and worker replies.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use egui::{Key, TextureHandle};

use super::worker::{MemberPanel, PAGE_ROWS, PageKey, Reply, Request, Worker};
use crate::domain::money::parse_amount;
use crate::domain::{MemberInput, Program};
use crate::store::{ActivityRow, SearchHit, StoreStats, TierRow, TierSort};

/// Which screen the main window shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Cashier,
    Enrol,
    Manager,
}

/// How a status message reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Bad,
    Info,
}

/// The line at the bottom that says what just happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub tone: Tone,
}

/// What a PIN prompt is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinPurpose {
    ReverseLast,
    UnlockManager,
    SetManagerPin,
}

/// An open PIN dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinPrompt {
    pub purpose: PinPurpose,
    pub pin: String,
    pub confirm: String,
    pub error: Option<String>,
}

/// The enrolment form.
#[derive(Debug, Clone, Default)]
pub struct EnrolForm {
    pub name: String,
    pub phone: String,
    pub email: String,
    pub birthday: String,
    pub marketing: bool,
}

/// The manager screen's state.
#[derive(Default)]
pub struct ManagerState {
    pub unlocked: bool,
    pub counts: Vec<i64>,
    pub activity: Vec<ActivityRow>,
    /// Members overdrawn by offline redemptions at several tills.
    pub overdrawn: Vec<crate::store::MemberView>,
    pub tier: usize,
    pub filter: String,
    pub sort: Option<TierSort>,
    pub descending: bool,
    /// Members in the selected tier matching the filter, once known.
    pub count: Option<i64>,
    pub pages: HashMap<PageKey, Vec<TierRow>>,
    pub requested: HashSet<PageKey>,
}

impl ManagerState {
    /// The sort in force: by qualifying measure, highest first, unless chosen otherwise.
    pub fn sort(&self) -> TierSort {
        self.sort.unwrap_or(TierSort::Qualifying)
    }

    pub fn key(&self, page: usize) -> PageKey {
        PageKey {
            tier: self.tier,
            filter: self.filter.trim().to_lowercase(),
            sort: self.sort(),
            descending: self.sort.is_none() || self.descending,
            page,
        }
    }

    /// The row at `index` of the current view, if its page has arrived.
    pub fn row(&self, index: usize) -> Option<&TierRow> {
        self.pages
            .get(&self.key(index / PAGE_ROWS))
            .and_then(|rows| rows.get(index % PAGE_ROWS))
    }

    /// Forgets fetched pages (after a change of tier, filter or order).
    pub fn reset_view(&mut self) {
        self.pages.clear();
        self.requested.clear();
        self.count = None;
    }
}

/// The wallet-pass dialog.
pub enum WalletDialog {
    /// Waiting for the worker.
    Making,
    Ready {
        reply: Box<super::worker::WalletPassReply>,
        qr: Option<TextureHandle>,
    },
}

/// The whole till.
pub struct TillApp {
    pub(super) worker: Worker,
    pub(super) ctx: egui::Context,
    pub program: Option<Program>,
    pub stats: Option<StoreStats>,
    pub has_pin: bool,
    pub screen: Screen,
    pub scan_text: String,
    pub message: Option<Message>,
    pub member: Option<MemberPanel>,
    pub(super) member_qr: Option<TextureHandle>,
    pub matches: Vec<SearchHit>,
    pub pending_amount: Option<i64>,
    pub selected_reward: Option<usize>,
    pub pin_prompt: Option<PinPrompt>,
    /// The "scan from image" path prompt, while open.
    pub image_prompt: Option<String>,
    pub enrol: EnrolForm,
    /// Put the cursor in the enrolment form's first field on its next frame.
    pub(super) focus_enrol: bool,
    pub enrolled: Option<MemberPanel>,
    pub(super) enrolled_qr: Option<TextureHandle>,
    pub manager: ManagerState,
    pub customer_display: bool,
    pub offer_demo: bool,
    pub demo_progress: Option<usize>,
    /// The wallet-pass dialog, while open.
    pub wallet: Option<WalletDialog>,
    /// Background sync with the central server (started once the store is open).
    pub(super) sync: Option<crate::sync::worker::SyncWorker>,
    db: PathBuf,
    pub fatal: Option<String>,
    /// When the process started, until the first usable frame has been reported.
    pub(super) launched_at: Option<std::time::Instant>,
}

impl TillApp {
    /// Starts the worker on `db` and sets the till's look.
    pub fn new(ctx: &egui::Context, db: PathBuf, exports: PathBuf, actor: String) -> Self {
        super::theme::apply(ctx);
        let wake = ctx.clone();
        Self {
            worker: Worker::spawn(db.clone(), exports, actor, move || wake.request_repaint()),
            sync: None,
            db,
            ctx: ctx.clone(),
            program: None,
            stats: None,
            has_pin: false,
            screen: Screen::Cashier,
            scan_text: String::new(),
            message: None,
            member: None,
            member_qr: None,
            matches: Vec::new(),
            pending_amount: None,
            selected_reward: None,
            pin_prompt: None,
            image_prompt: None,
            wallet: None,
            enrol: EnrolForm::default(),
            focus_enrol: false,
            enrolled: None,
            enrolled_qr: None,
            manager: ManagerState::default(),
            customer_display: false,
            offer_demo: false,
            demo_progress: None,
            fatal: None,
            launched_at: None,
        }
    }

    /// Reports (on stderr) how long after `launched` the first usable frame was drawn.
    pub fn report_startup(mut self, launched: std::time::Instant) -> Self {
        self.launched_at = Some(launched);
        self
    }

    /// Blocks until the worker has answered everything sent so far, then applies the answers.
    /// Tests use it to wait for the store without sleeping; the UI never calls it.
    pub fn settle(&mut self) {
        for reply in self.worker.wait_all() {
            self.apply(reply);
        }
    }

    /// True when the newly enrolled member's QR code is loaded for display.
    pub fn enrolled_qr_shown(&self) -> bool {
        self.enrolled.is_some() && self.enrolled_qr.is_some()
    }

    pub(super) fn poll(&mut self) {
        for reply in self.worker.try_replies() {
            self.apply(reply);
        }
    }

    fn say(&mut self, tone: Tone, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            tone,
        });
    }

    fn set_member(&mut self, panel: MemberPanel) {
        self.member_qr = Some(texture(&self.ctx, "member-qr", &panel.qr));
        self.member = Some(panel);
        self.matches.clear();
    }

    fn apply(&mut self, reply: Reply) {
        match reply {
            Reply::Ready {
                program,
                stats,
                has_pin,
            } => {
                self.offer_demo = stats.members == 0;
                self.program = Some(*program);
                self.stats = Some(stats);
                self.has_pin = has_pin;
                // The store is open and migrated: now a second connection may sync it.
                let wake = self.ctx.clone();
                match crate::sync::worker::SyncWorker::spawn(self.db.clone(), move || {
                    wake.request_repaint();
                }) {
                    Ok(worker) => self.sync = Some(worker),
                    Err(e) => self.say(Tone::Bad, format!("sync could not start: {e}")),
                }
            }
            Reply::OpenFailed(e) => self.fatal = Some(e),
            Reply::Member(panel) => {
                self.say(Tone::Info, format!("{} found", panel.view.member.name));
                self.pending_amount = None;
                self.selected_reward = None;
                self.set_member(*panel);
            }
            Reply::Matches(hits) => {
                let text = match hits.len() {
                    0 => "No member found: check the spelling, or enrol them (F2)".to_owned(),
                    1 => "1 member found: pick them".to_owned(),
                    n => format!("{n} members found: pick one"),
                };
                self.say(
                    if hits.is_empty() {
                        Tone::Bad
                    } else {
                        Tone::Info
                    },
                    text,
                );
                self.member = None;
                self.matches = hits;
            }
            Reply::Written { message, panel } => {
                self.nudge_sync();
                self.say(Tone::Good, message);
                self.pending_amount = None;
                self.set_member(*panel);
                self.pin_prompt = None;
            }
            Reply::Enrolled(panel) => {
                self.nudge_sync();
                self.say(
                    Tone::Good,
                    format!(
                        "Welcome, {}! Card {}",
                        panel.view.member.name,
                        panel.view.member.card.grouped()
                    ),
                );
                self.enrol = EnrolForm::default();
                self.enrolled_qr = Some(texture(&self.ctx, "enrolled-qr", &panel.qr));
                self.enrolled = Some(*panel);
                if let Some(stats) = &mut self.stats {
                    stats.members += 1;
                }
            }
            Reply::Refused(text) => {
                self.say(Tone::Bad, text);
                self.pin_prompt = None;
            }
            Reply::PinRefused(text) => match &mut self.pin_prompt {
                Some(prompt) => {
                    prompt.error = Some(text);
                    prompt.pin.clear();
                    prompt.confirm.clear();
                }
                None => self.say(Tone::Bad, text),
            },
            Reply::PinAccepted => {
                let purpose = self.pin_prompt.take().map(|p| p.purpose);
                if matches!(
                    purpose,
                    Some(PinPurpose::SetManagerPin | PinPurpose::UnlockManager)
                ) {
                    self.has_pin = true;
                    self.manager.unlocked = true;
                    self.worker.send(Request::Overview);
                }
            }
            Reply::DemoProgress(done) => self.demo_progress = Some(done),
            Reply::DemoDone { message, stats } => {
                self.demo_progress = None;
                self.stats = Some(stats);
                self.say(Tone::Good, message);
            }
            Reply::Overview {
                counts,
                activity,
                overdrawn,
                stats,
            } => {
                self.manager.counts = counts;
                self.manager.activity = activity;
                self.manager.overdrawn = overdrawn;
                self.stats = Some(stats);
            }
            Reply::TierPage { key, count, rows } => {
                if key == self.manager.key(key.page) {
                    if count.is_some() {
                        self.manager.count = count;
                    }
                    self.manager.pages.insert(key, rows);
                }
            }
            Reply::PageSkipped(key) => {
                self.manager.requested.remove(&key);
            }
            Reply::Saved(text) => self.say(Tone::Good, text),
            Reply::WalletPass(reply) => {
                let qr = reply
                    .google
                    .as_ref()
                    .ok()
                    .map(|(_, img)| texture(&self.ctx, "wallet-link-qr", img));
                self.wallet = Some(WalletDialog::Ready { reply, qr });
            }
        }
    }

    /// Handles a line from the scan field (Enter). With a member on screen, an amount sets the
    /// sale to preview and an empty line confirms it; anything else is a scan or search.
    pub fn submit_scan(&mut self) {
        let text = std::mem::take(&mut self.scan_text);
        let text = text.trim();
        if text.is_empty() {
            if self.pending_amount.is_some() {
                self.earn();
            }
            return;
        }
        if let (Some(_), Some(program)) = (&self.member, &self.program)
            && is_amount_shaped(text)
        {
            match parse_amount(text, program.minor_units) {
                Ok(minor) => {
                    self.pending_amount = Some(minor);
                    self.say(
                        Tone::Info,
                        "Check the points, then press Enter or F5 to earn",
                    );
                }
                Err(e) => self.say(Tone::Bad, e.to_string()),
            }
            return;
        }
        self.worker.send(Request::Scan(text.to_owned()));
    }

    /// Reads a member's QR code from a picture file (a photo, a screenshot of a wallet pass).
    pub fn scan_image(&mut self, path: PathBuf) {
        self.image_prompt = None;
        self.say(Tone::Info, format!("Reading {}", path.display()));
        self.worker.send(Request::ScanImage(path));
    }

    /// Confirms the previewed sale.
    pub fn earn(&mut self) {
        match (&self.member, self.pending_amount) {
            (Some(panel), Some(amount_minor)) => {
                let member = panel.view.member.id;
                self.worker.send(Request::Earn {
                    member,
                    amount_minor,
                });
            }
            (None, _) => self.say(Tone::Bad, "Scan a member first"),
            (Some(_), None) => self.say(Tone::Bad, "Type the sale amount first, e.g. 12.50"),
        }
    }

    /// Redeems the selected reward.
    pub fn redeem_selected(&mut self) {
        let reward = self
            .selected_reward
            .and_then(|i| self.program.as_ref()?.rewards.get(i))
            .map(|r| r.id.clone());
        match (&self.member, reward) {
            (Some(panel), Some(reward)) => {
                let member = panel.view.member.id;
                let online = self.sync_status().online;
                self.worker.send(Request::Redeem {
                    member,
                    reward,
                    online,
                });
            }
            (None, _) => self.say(Tone::Bad, "Scan a member first"),
            (Some(_), None) => self.say(Tone::Bad, "Pick a reward first (click it, or Up/Down)"),
        }
    }

    /// Opens the manager PIN prompt for reversing the member's last transaction here.
    pub fn ask_reverse_last(&mut self) {
        if self.member.is_none() {
            return self.say(Tone::Bad, "Scan a member first");
        }
        if !self.has_pin {
            return self.say(
                Tone::Bad,
                "Reversals need a manager PIN: set one in the Manager screen (F10)",
            );
        }
        self.pin_prompt = Some(PinPrompt {
            purpose: PinPurpose::ReverseLast,
            pin: String::new(),
            confirm: String::new(),
            error: None,
        });
    }

    /// Submits the open PIN prompt.
    pub fn submit_pin(&mut self) {
        let Some(prompt) = &mut self.pin_prompt else {
            return;
        };
        let pin = prompt.pin.trim().to_owned();
        match prompt.purpose {
            PinPurpose::ReverseLast => {
                if let Some(panel) = &self.member {
                    let member = panel.view.member.id;
                    self.worker.send(Request::ReverseLast { member, pin });
                }
            }
            PinPurpose::UnlockManager => self.worker.send(Request::CheckPin(pin)),
            PinPurpose::SetManagerPin => {
                if pin != prompt.confirm.trim() {
                    prompt.error = Some("the two PINs differ".to_owned());
                    prompt.confirm.clear();
                } else {
                    self.worker.send(Request::SetPin(pin));
                }
            }
        }
    }

    /// The sync worker's latest status (default until it has started).
    pub fn sync_status(&self) -> crate::sync::worker::SyncStatus {
        self.sync
            .as_ref()
            .map(crate::sync::worker::SyncWorker::status)
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

    /// Makes the member's wallet passes (on the worker) and opens the dialog that shows them.
    pub fn wallet_pass(&mut self, member: crate::domain::MemberId) {
        self.wallet = Some(WalletDialog::Making);
        self.worker.send(Request::WalletPass(member));
    }

    /// Esc: close a dialog, or clear the member, sale and search.
    pub fn clear(&mut self) {
        if self.pin_prompt.take().is_some()
            || self.image_prompt.take().is_some()
            || self.wallet.take().is_some()
        {
            return;
        }
        self.scan_text.clear();
        self.member = None;
        self.member_qr = None;
        self.matches.clear();
        self.pending_amount = None;
        self.selected_reward = None;
        self.message = None;
    }

    /// Submits the enrolment form.
    pub fn submit_enrol(&mut self) {
        let f = &self.enrol;
        let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let input = MemberInput {
            name: f.name.clone(),
            phone: opt(&f.phone),
            email: opt(&f.email),
            birthday: opt(&f.birthday),
            marketing_consent: f.marketing,
        };
        self.worker.send(Request::Enrol(input));
    }

    /// Moves to a screen; leaving the manager screen locks it again.
    pub fn go(&mut self, screen: Screen) {
        if screen != Screen::Manager {
            self.manager.unlocked = false;
        }
        if screen == Screen::Manager && !self.manager.unlocked && self.pin_prompt.is_none() {
            let purpose = if self.has_pin {
                PinPurpose::UnlockManager
            } else {
                PinPurpose::SetManagerPin
            };
            self.pin_prompt = Some(PinPrompt {
                purpose,
                pin: String::new(),
                confirm: String::new(),
                error: None,
            });
        }
        if screen == Screen::Enrol {
            self.enrolled = None;
            self.focus_enrol = true;
        }
        self.screen = screen;
    }

    /// Opens a member picked from search results or the tier list.
    pub fn open(&mut self, member: crate::domain::MemberId) {
        self.worker.send(Request::Open(member));
    }

    /// Loads demo members into the (empty) store.
    pub fn load_demo(&mut self, members: usize) {
        self.offer_demo = false;
        self.demo_progress = Some(0);
        self.worker.send(Request::LoadDemo(members));
    }

    /// Asks for any tier-list pages the table needs and has not requested yet.
    pub fn request_pages(&mut self, pages: impl IntoIterator<Item = usize>) {
        for page in pages {
            let key = self.manager.key(page);
            if !self.manager.pages.contains_key(&key) && self.manager.requested.insert(key.clone())
            {
                self.worker.send(Request::TierPage(key));
            }
        }
    }

    pub(super) fn export_qr(&mut self, card: crate::domain::CardNumber) {
        self.worker.send(Request::ExportQr(card));
    }

    pub(super) fn print_qr(&mut self, card: crate::domain::CardNumber) {
        self.worker.send(Request::PrintQr(card));
    }

    /// The F-keys, Esc and arrows, read once per frame before any widget.
    fn shortcuts(&mut self, ctx: &egui::Context) {
        let pressed = |key| ctx.input_mut(|i| i.consume_key(egui::Modifiers::NONE, key));
        if pressed(Key::Escape) {
            self.clear();
        }
        let dropped = ctx.input(|i| i.raw.dropped_files.first().map(|f| f.path().to_path_buf()));
        if let Some(path) = dropped {
            self.go(Screen::Cashier);
            self.scan_image(path);
        }
        if self.pin_prompt.is_some() || self.image_prompt.is_some() || self.wallet.is_some() {
            return;
        }
        if pressed(Key::F1) {
            self.go(Screen::Cashier);
        }
        if pressed(Key::F2) {
            self.go(Screen::Enrol);
        }
        if pressed(Key::F10) {
            self.go(Screen::Manager);
        }
        if pressed(Key::F9) {
            self.customer_display = !self.customer_display;
        }
        if self.screen != Screen::Cashier {
            return;
        }
        if pressed(Key::F5) {
            self.earn();
        }
        if pressed(Key::F6) {
            self.redeem_selected();
        }
        if pressed(Key::F8) {
            self.ask_reverse_last();
        }
        let rewards = self.program.as_ref().map_or(0, |p| p.rewards.len());
        if self.member.is_some() && rewards > 0 {
            if pressed(Key::ArrowDown) {
                self.selected_reward = Some(self.selected_reward.map_or(0, |i| (i + 1) % rewards));
            }
            if pressed(Key::ArrowUp) {
                self.selected_reward = Some(
                    self.selected_reward
                        .map_or(rewards - 1, |i| (i + rewards - 1) % rewards),
                );
            }
        }
    }
}

/// Amounts are short (at most six whole digits); card numbers and phones are longer.
fn is_amount_shaped(text: &str) -> bool {
    let (whole, frac) = text.split_once(['.', ',']).unwrap_or((text, ""));
    (!whole.is_empty() || !frac.is_empty())
        && whole.len() <= 6
        && frac.len() <= 3
        && whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
}

fn texture(ctx: &egui::Context, name: &str, img: &image::GrayImage) -> TextureHandle {
    let size = [img.width() as usize, img.height() as usize];
    let colour = egui::ColorImage::from_gray(size, img.as_raw());
    ctx.load_texture(name, colour, egui::TextureOptions::NEAREST)
}

impl eframe::App for TillApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.poll();
        let ctx = ui.ctx().clone();
        self.shortcuts(&ctx);
        super::theme::top_bar(self, ui);
        super::theme::bottom_bar(self, ui);
        egui::CentralPanel::default().show(ui, |ui| {
            if let Some(e) = &self.fatal {
                ui.heading("The till's database could not be opened");
                ui.label(egui::RichText::new(e).color(super::theme::BAD));
                return;
            }
            if self.program.is_none() {
                ui.heading("Opening the till…");
                return;
            }
            match self.screen {
                Screen::Cashier => super::cashier::ui(self, ui),
                Screen::Enrol => super::enrol::ui(self, ui),
                Screen::Manager => super::manager::ui(self, ui),
            }
            if let Some(launched) = self.launched_at.take() {
                eprintln!(
                    "tillpass: usable {} ms after launch",
                    launched.elapsed().as_millis()
                );
            }
        });
        super::theme::pin_dialog(self, &ctx);
        super::theme::image_dialog(self, &ctx);
        super::theme::demo_offer(self, &ctx);
        super::wallet::dialog(self, &ctx);
        if self.customer_display {
            super::customer::show(self, &ctx);
        }
    }
}
