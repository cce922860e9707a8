//! The cashier screen: one always-focused scan line, the member, the sale and the rewards.

use egui::{FontId, Key, Modifiers, RichText};

use super::action::Action;
use super::keys::button_text;
use super::member::{ServerBalance, ShownMember};
use super::theme::{BAD, GOOD, INFO, MUTED, TARGET, big_button, note, tier_badge};
use crate::domain::{EntryKind, MemberId, Program};
use std::collections::BTreeMap;

use crate::domain::basket::SaleLine;
use crate::domain::quote::{Sale, quote};
use crate::domain::rules::{self, Refusal};
use crate::domain::summary::{next_tier, tier_progress};
use crate::store::SearchHit;

/// Seconds the recommend question's answers wait after it appears before they take a tap.
const ASK_SETTLES: f64 = 0.4;
/// The height of the customer's question's row under the member's columns.
const ASK_ROW: f32 = TARGET + 8.0;

/// The scan field's id, so tests and focus handling can find it.
pub const SCAN_FIELD: &str = "Scan, search or amount";

/// The cashier screen's state.
#[derive(Default)]
pub struct CashierScreen {
    /// The scan line as typed so far.
    pub(super) scan_text: String,
    /// The member on screen.
    pub(super) member: Option<ShownMember>,
    /// Search results to pick from (no member on screen).
    pub(super) matches: Vec<SearchHit>,
    /// The search result Enter opens (Up/Down move it).
    pub(super) picked: usize,
    /// The sale being previewed: a typed amount, or a basket from the point-of-sale system.
    pub(super) pending: Option<PendingSale>,
    /// Index into the program's rewards.
    pub(super) selected_reward: Option<usize>,
    /// After a sale: the customer may say how likely they are to recommend us (the member who
    /// bought, or a guest after their sale). Never blocks the next sale.
    pub ask: Option<Ask>,
    /// The question on screen and when it came (egui's clock, seconds): its answers take no
    /// tap for [`ASK_SETTLES`], so a double tap on Earn beneath it records no score.
    asked: Option<(Ask, f64)>,
}

/// A sale waiting for the cashier's Enter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingSale {
    /// Typed into the scan line, minor units.
    Amount(i64),
    /// Sent by the point-of-sale system through the integration API.
    Basket(Vec<SaleLine>),
}

impl PendingSale {
    /// The sale the rules price.
    pub fn sale(&self) -> Sale<'_> {
        match self {
            Self::Amount(amount) => Sale::Amount(*amount),
            Self::Basket(lines) => Sale::Lines(lines),
        }
    }
}

/// A recommend question waiting for the customer's answer: who will answer it.
pub type Ask = crate::store::Answerer;

/// The question, as the customer reads it.
pub const RECOMMEND_QUESTION: &str = "How likely are you to recommend us to a friend?";
/// The question on the cashier's screen, short enough to share a row with the scores.
pub const ASK_CUSTOMER: &str = "Ask: would they recommend us?";

/// Eleven buttons, 0 to 10, and a way out; the answer as an action. `size` is the buttons'
/// side (bigger on the customer's touch screen).
pub fn recommend_ui(ui: &mut egui::Ui, size: f32) -> Option<Action> {
    let mut action = None;
    ui.horizontal_wrapped(|ui| {
        for score in 0..=10u8 {
            let button = egui::Button::new(RichText::new(score.to_string()).size(size * 0.45))
                .min_size(egui::vec2(size, size));
            let response = ui.add(button);
            response.widget_info(|| {
                egui::WidgetInfo::labeled(egui::Role::Button, true, format!("Score {score}"))
            });
            if response.clicked() {
                action = Some(Action::Recommend(score));
            }
        }
        let skip = egui::Button::new("Skip").min_size(egui::vec2(size * 1.5, size));
        if ui.add(skip).clicked() {
            action = Some(Action::SkipRecommend);
        }
    });
    action
}

impl CashierScreen {
    /// Shows `member`, dropping any search results.
    pub(super) fn show_member(&mut self, member: ShownMember) {
        self.member = Some(member);
        self.matches.clear();
    }

    /// Esc with no dialog open: back to an empty screen.
    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }

    /// Search results to pick from, the first picked.
    pub(super) fn show_matches(&mut self, matches: Vec<SearchHit>) {
        self.member = None;
        self.matches = matches;
        self.picked = 0;
    }

    /// The search result Enter on an empty scan line opens.
    pub(super) fn picked_match(&self) -> Option<MemberId> {
        self.matches.get(self.picked).map(|hit| hit.view.member.id)
    }

    /// Up/Down: the next or previous search result while results are listed, else the next or
    /// previous of `rewards` rewards; wrapping around.
    pub(super) fn move_reward(&mut self, forward: bool, rewards: usize) {
        if self.member.is_none() && !self.matches.is_empty() {
            let n = self.matches.len();
            self.picked = if forward {
                (self.picked + 1) % n
            } else {
                (self.picked + n - 1) % n
            };
            return;
        }
        if self.member.is_none() || rewards == 0 {
            return;
        }
        self.selected_reward = Some(match (self.selected_reward, forward) {
            (None, true) => 0,
            (None, false) => rewards - 1,
            (Some(i), true) => (i + 1) % rewards,
            (Some(i), false) => (i + rewards - 1) % rewards,
        });
    }

    /// Draws the screen. With `dialog_open`, the scan line neither takes the keyboard nor Enter.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        program: &Program,
        dialog_open: bool,
    ) -> Option<Action> {
        let mut action = self.scan_line_ui(ui, dialog_open);
        ui.add_space(8.0);
        // The customer's question goes in a row at the bottom: it appears as a sale is
        // committed, and above the columns it pushed the keypad and buttons down under the
        // cashier's finger. The columns keep their top and give up their bottom to it. The
        // sale keys are sized by the room the columns have with the question, so they keep
        // their size and place when it comes and goes, and on a short screen Earn and Reverse
        // stay above it (the moment a mistaken sale is reversed is just after it).
        let room = ui.available_height() - ASK_ROW;
        let ask_row = if self.ask.is_some() { ASK_ROW } else { 0.0 };
        let columns = egui::vec2(ui.available_width(), ui.available_height() - ask_row);
        ui.allocate_ui_with_layout(columns, egui::Layout::top_down(egui::Align::Min), |ui| {
            ui.set_min_size(columns);
            action = action.take().or(self.body_ui(ui, program, room));
        });
        if let Some(ask) = &self.ask {
            let now = ui.input(|i| i.time);
            let since = match &self.asked {
                Some((shown, since)) if shown == ask => *since,
                _ => now,
            };
            self.asked = Some((*ask, since));
            let settled = now - since >= ASK_SETTLES;
            if !settled {
                ui.ctx()
                    .request_repaint_after_secs((ASK_SETTLES - (now - since)) as f32);
            }
            ui.horizontal(|ui| {
                ui.add(egui::Label::new(RichText::new(ASK_CUSTOMER).strong()).extend());
                // Eleven scores and Skip (one and a half wide) in the row's width (900 wide,
                // Skip ran off the edge).
                let gaps = 12.0 * ui.spacing().item_spacing.x;
                // The visible width (the row's own can be wider than the window).
                let width = ui
                    .available_width()
                    .min(ui.clip_rect().right() - ui.cursor().min.x);
                let size = ((width - gaps) / 12.5).min(TARGET);
                ui.spacing_mut().button_padding.x = 4.0;
                let answered = ui
                    .add_enabled_ui(settled, |ui| recommend_ui(ui, size))
                    .inner;
                action = action.take().or(answered);
            });
        } else {
            self.asked = None;
        }
        action
    }

    /// Below the scan line: the member's columns, search results to pick from, or the hint.
    fn body_ui(&mut self, ui: &mut egui::Ui, program: &Program, room: f32) -> Option<Action> {
        let mut action = None;
        if let Some(member) = &self.member {
            let mut picked = None;
            // Each column scrolls on its own when it outgrows the window (a small till screen,
            // the question above, a member with offers and badges): nothing is cut off. Each
            // member's columns start at the top (a column scrolled for the last customer hid
            // the next one's name and points).
            let id = member.view.member.id;
            ui.columns(3, |cols| {
                let [left, middle, right] = cols else {
                    return;
                };
                action = action.take().or(scrolled(left, ("member", id), |ui| {
                    member_ui(ui, program, member)
                }));
                action = action.take().or(scrolled(middle, ("sale", id), |ui| {
                    sale_ui(
                        ui,
                        program,
                        member,
                        self.pending.as_ref(),
                        &mut self.scan_text,
                        room,
                    )
                }));
                action = action.take().or(scrolled(right, ("rewards", id), |ui| {
                    picked = rewards_ui(ui, program, member, self.selected_reward);
                    let stamps = stamp_rewards_ui(ui, program, member);
                    let membership = membership_ui(ui, program, member);
                    stamps.or(membership)
                }));
            });
            match picked {
                Some(RewardClick::Pick(i)) => self.selected_reward = Some(i),
                Some(RewardClick::Redeem) => action = action.or(Some(Action::Redeem)),
                None => {}
            }
        } else if !self.matches.is_empty() {
            action = action.or(matches_ui(ui, &self.matches, self.picked));
        } else {
            action = action.or(empty_ui(ui));
        }
        action
    }

    /// The scan line keeps keyboard focus whenever no dialog is open, so a wedge scanner's
    /// burst always lands here. Enter is taken before the text field sees it, so the field
    /// never gives up focus between one scan and the next.
    fn scan_line_ui(&mut self, ui: &mut egui::Ui, dialog_open: bool) -> Option<Action> {
        let enter = !dialog_open && ui.input_mut(|i| i.consume_key(Modifiers::NONE, Key::Enter));
        let field = egui::TextEdit::singleline(&mut self.scan_text)
            .id(scan_field_id())
            // Esc and the arrow keys are the till's own keys: by default egui lets them take
            // the focus off a text field, and the scan typed in that frame was lost (a scan
            // right after Esc came up as "No member found").
            .event_filter(egui::EventFilter {
                tab: false,
                horizontal_arrows: true,
                vertical_arrows: true,
                escape: true,
            })
            .hint_text("Scan a card · type card number, phone or name · or a sale amount")
            .font(FontId::proportional(30.0))
            .desired_width(f32::INFINITY)
            .margin(egui::vec2(12.0, 10.0));
        // No hover text: on a touch screen the pointer stays where the last touch was, and a
        // tip over the scan line covered the member's name below it.
        let response = ui.add(field);
        response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::TextInput, true, SCAN_FIELD));
        // Only while the window has the keyboard: asking for focus in an unfocused window
        // repaints every frame, spinning a core and starving the input it waits for.
        let window_focused = ui.input(|i| i.focused);
        if !dialog_open && window_focused && !response.has_focus() {
            response.request_focus();
        }
        enter.then(|| Action::Submit(std::mem::take(&mut self.scan_text)))
    }
}

/// `add` in a column of its own that scrolls when it is taller than the room left.
fn scrolled<R>(
    ui: &mut egui::Ui,
    column: impl std::hash::Hash + std::fmt::Debug,
    add: impl FnOnce(&mut egui::Ui) -> R,
) -> R {
    egui::ScrollArea::vertical()
        .id_salt(column)
        .auto_shrink([false, true])
        .scroll_bar_visibility(egui::scroll_area::ScrollBarVisibility::VisibleWhenNeeded)
        .show(ui, add)
        .inner
}

fn empty_ui(ui: &mut egui::Ui) -> Option<Action> {
    ui.add_space(40.0);
    ui.label(RichText::new("Scan the member's card or wallet pass").size(28.0));
    ui.label(
        RichText::new("or type their card number, phone number or name and press Enter.")
            .color(MUTED),
    );
    ui.add_space(20.0);
    let ask = big_button(ui, "Scan from image…").clicked();
    ui.label(
        RichText::new("or drop a photo or screenshot of the code on this window").color(MUTED),
    );
    ask.then_some(Action::AskImage)
}

fn matches_ui(ui: &mut egui::Ui, matches: &[SearchHit], picked: usize) -> Option<Action> {
    ui.label(RichText::new("Pick the member: tap them, or Up/Down and Enter").strong());
    let mut open = None;
    egui::ScrollArea::vertical().show(ui, |ui| {
        for (i, hit) in matches.iter().enumerate() {
            let m = &hit.view.member;
            let text = format!(
                "{}   {}   {}   {} pts",
                m.name,
                m.card.grouped(),
                m.phone.as_deref().unwrap_or(""),
                hit.view.state.balance
            );
            let button = egui::Button::new(text)
                .selected(i == picked)
                .min_size(egui::vec2(ui.available_width(), TARGET));
            let response = ui.add(button);
            // Keep the one Down moved to in view (the first is at the top already, and left
            // alone a touch can scroll the list freely).
            if i == picked && picked > 0 {
                response.scroll_to_me(None);
            }
            if response.clicked() {
                open = Some(Action::Open(m.id));
            }
        }
    });
    open
}

/// Under the balance, while this till is still receiving the chain's history: where the
/// number shown comes from.
fn server_note_ui(ui: &mut egui::Ui, shown: &ShownMember) {
    let (text, colour) = match (shown.server, shown.history_behind()) {
        (Some(ServerBalance::Asking), _) => (
            "Checking the balance with the server: this till is still receiving the chain's history…"
                .to_owned(),
            MUTED,
        ),
        (Some(ServerBalance::Unanswered), _) => (
            "The server did not answer and this till is still receiving the chain's history: the balance may be short"
                .to_owned(),
            BAD,
        ),
        (_, Some(here)) => (
            format!(
                "Balance from the server: this till has not received all of this member's history yet ({here} points here so far; tier and progress follow once it has)"
            ),
            INFO,
        ),
        _ => return,
    };
    note(ui, RichText::new(text).color(colour));
}

fn member_ui(ui: &mut egui::Ui, program: &Program, shown: &ShownMember) -> Option<Action> {
    let m = &shown.view.member;
    let s = &shown.view.state;
    ui.label(RichText::new(&m.name).size(36.0).strong());
    ui.label(RichText::new(format!("Card {}", m.card.grouped())).color(MUTED));
    ui.horizontal(|ui| {
        tier_badge(ui, program.tier(s.tier));
        ui.label(
            RichText::new(format!("{} points", s.balance))
                .size(40.0)
                .strong(),
        );
    });
    server_note_ui(ui, shown);
    if shown.pending > 0 {
        let days = program.return_window_days.unwrap_or(0);
        note(
            ui,
            RichText::new(format!(
                "{} available now, {} pending (spendable {days} days after each sale)",
                shown.spendable().balance,
                shown.pending
            ))
            .color(MUTED),
        );
    }
    if shown.history_behind().is_none() {
        let caption = match next_tier(program, s) {
            Some((next, gap)) => format!("{gap} points to {}", program.tier(next).name),
            None => "Top tier".to_owned(),
        };
        ui.add(
            egui::ProgressBar::new(tier_progress(program, s))
                .text(caption)
                .desired_height(28.0),
        );
    }
    // The member's buttons high up, where a short screen still shows them; the stamps,
    // badges and offers below may scroll.
    let mut action = None;
    ui.horizontal(|ui| {
        if big_button(ui, "Wallet pass").clicked() {
            action = Some(Action::WalletPass(m.id));
        }
        if !program.causes.is_empty() && big_button(ui, "Give points").clicked() {
            action = Some(Action::AskDonate);
        }
    });
    stamps_ui(ui, program, &shown.stamps);
    if let (Some(until), Some(paid)) = (shown.paid_until, &program.paid_tier) {
        note(
            ui,
            RichText::new(format!(
                "{} membership until {}",
                program.tier(paid.tier).name,
                until.date()
            ))
            .color(GOOD),
        );
    }
    let badges = shown.badge_names(program);
    if !badges.is_empty() {
        note(
            ui,
            RichText::new(format!("Badges: {}", badges.join(" · "))).color(GOOD),
        );
    }
    referrals_ui(ui, program, &shown.referrals);
    action = action.or(offers_ui(ui, program, shown));
    ui.add_space(6.0);
    ui.label(RichText::new("Last visits").strong());
    // Bookkeeping that moved no points (an offer unlocked, a badge without points) is on the
    // member panel already; the list keeps to what the customer did.
    let visits = shown.history.iter().filter(|e| {
        e.points != 0 || !matches!(e.kind, EntryKind::OfferUnlocked | EntryKind::BadgeAwarded)
    });
    for e in visits {
        let amount = e
            .amount_minor
            .map(|a| format!("  {}", program.format_money(a)))
            .unwrap_or_default();
        let colour = if e.points >= 0 { GOOD } else { BAD };
        // Wrapped in the column's width: at 1024 wide the amount ran under the sale column.
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new(e.occurred_at.date().to_string()).color(MUTED));
            ui.label(e.kind.label());
            ui.label(
                RichText::new(format!("{:+}", e.points))
                    .color(colour)
                    .strong(),
            );
            ui.label(RichText::new(amount).color(MUTED));
        });
    }
    action
}

fn sale_ui(
    ui: &mut egui::Ui,
    program: &Program,
    shown: &ShownMember,
    pending: Option<&PendingSale>,
    scan_text: &mut String,
    room: f32,
) -> Option<Action> {
    let state = &shown.view.state;
    ui.label(RichText::new("Sale").strong());
    let sizes = SaleSizes::fitting(room, ui.spacing().item_spacing.y);
    let now = super::worker::now();
    let quoted = pending.map(|p| quote(program, state.tier, &shown.stamps, p.sale(), now));
    let basket = matches!(pending, Some(PendingSale::Basket(_)));
    // Above the keypad, the same room with a preview or without, so the keypad and Enter never
    // move between two taps (a second tap on Enter landed on the keypad's 3 once the preview
    // had pushed it down). A basket has no keypad below it, and all its steps show.
    let preview = |ui: &mut egui::Ui| match quoted {
        Some(Ok(q)) => {
            // Smaller in a narrow column (900 wide), so amount and points keep to one line.
            let narrow = ui.available_width() < NARROW_COLUMN;
            ui.horizontal_wrapped(|ui| {
                ui.label(
                    RichText::new(program.format_money(q.amount_minor))
                        .size(if narrow { 26.0 } else { 32.0 })
                        .strong(),
                );
                ui.label(
                    RichText::new(format!("earns {} points", q.points))
                        .size(if narrow { 18.0 } else { 22.0 })
                        .color(GOOD),
                );
            });
            // The steps when there is room for one at least (a short screen has only the
            // amount and points).
            if ui.available_height() >= STEP_HEIGHT {
                egui::ScrollArea::vertical()
                    .id_salt("sale-steps")
                    .max_height(ui.available_height())
                    .show(ui, |ui| {
                        for step in &q.steps {
                            ui.label(RichText::new(&step.text).size(17.0));
                        }
                    });
            }
        }
        Some(Err(e)) => {
            ui.label(RichText::new(e.to_string()).color(BAD));
        }
        None => {
            ui.label(RichText::new("Type the amount, then Enter or F5").color(MUTED));
        }
    };
    if basket {
        preview(ui);
    } else {
        // Exactly this much room, whatever the preview holds (its steps scroll inside).
        let (room, _) = ui.allocate_exact_size(
            egui::vec2(ui.available_width(), sizes.preview),
            egui::Sense::hover(),
        );
        let mut inside = ui.new_child(
            egui::UiBuilder::new()
                .max_rect(room)
                .layout(egui::Layout::top_down(egui::Align::Min)),
        );
        inside.set_clip_rect(room.intersect(ui.clip_rect()));
        preview(&mut inside);
    }
    // Short keys (a short screen) pad their text less and may be shorter than the usual
    // target, so they can be as short as sized.
    ui.spacing_mut().button_padding.y = ((sizes.key - 28.0) / 2.0).clamp(2.0, 8.0);
    ui.spacing_mut().interact_size.y = sizes.key;
    // A basket comes priced from the point-of-sale system: its lines instead of the keypad.
    let mut action = match pending {
        Some(PendingSale::Basket(lines)) => {
            basket_lines_ui(ui, program, lines);
            None
        }
        _ => keypad_ui(ui, scan_text, sizes.key),
    };
    // Earn and Reverse side by side, so both stay on screen above the status bar (one above
    // the other on a narrow screen).
    ui.horizontal_wrapped(|ui| {
        let width = ui.available_width();
        // Smaller words and a narrower Earn in a narrow column (1024 or 900 wide), so Reverse
        // still fits beside Earn.
        let (reverse_size, earn_share) = if width < 400.0 {
            (16.0, 0.45)
        } else {
            (20.0, 0.5)
        };
        let earn = egui::Button::new(
            RichText::new(button_text(&Action::Earn))
                .size(key_text_size(sizes.key).min(24.0))
                .strong(),
        )
        .min_size(egui::vec2(width * earn_share, sizes.earn));
        let typed = super::app::is_amount_shaped(scan_text.trim());
        if ui.add_enabled(pending.is_some() || typed, earn).clicked() {
            action = Some(Action::Earn);
        }
        // The rest of the row (a wrapping row's `available_width` is the whole row).
        let reverse =
            egui::Button::new(RichText::new(button_text(&Action::ReverseLast)).size(reverse_size))
                .min_size(egui::vec2(ui.available_size_before_wrap().x, sizes.earn));
        if ui.add(reverse).clicked() {
            action = Some(Action::ReverseLast);
        }
    });
    action
}

/// A basket's lines, compact and scrollable, leaving room for the Earn button.
fn basket_lines_ui(ui: &mut egui::Ui, program: &Program, lines: &[SaleLine]) {
    ui.add_space(4.0);
    egui::ScrollArea::vertical()
        .id_salt("basket-lines")
        .max_height((ui.available_height() - TARGET - 24.0).max(60.0))
        .show(ui, |ui| {
            egui::Grid::new("basket-grid")
                .num_columns(2)
                .spacing(egui::vec2(16.0, 2.0))
                .show(ui, |ui| {
                    for line in lines {
                        ui.label(format!("{} × {}", line.quantity, line.name));
                        ui.label(
                            RichText::new(program.format_money(line.amount_minor)).color(MUTED),
                        );
                        ui.end_row();
                    }
                });
        });
}

/// A click in the rewards column.
enum RewardClick {
    Pick(usize),
    Redeem,
}

fn rewards_ui(
    ui: &mut egui::Ui,
    program: &Program,
    shown: &ShownMember,
    selected: Option<usize>,
) -> Option<RewardClick> {
    let state = &shown.spendable();
    let mut click = None;
    // Redeem beside the heading, above the list: at the list's foot it went under the
    // customer's question on a short screen, and a long list pushed it out of view.
    ui.horizontal(|ui| {
        ui.label(RichText::new("Rewards").strong());
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            let redeem = egui::Button::new(RichText::new(button_text(&Action::Redeem)).strong())
                .min_size(egui::vec2(140.0, TARGET));
            if ui.add_enabled(selected.is_some(), redeem).clicked() {
                click = Some(RewardClick::Redeem);
            }
        });
    });
    for (i, reward) in program.rewards.iter().enumerate() {
        let (detail, colour) = match rules::redeem(program, state, &reward.id, None) {
            Ok(_) => ("available".to_owned(), GOOD),
            Err(Refusal::TierLocked { required, .. }) => (format!("{required} and above"), MUTED),
            Err(Refusal::InsufficientPoints { cost, balance, .. }) => {
                (format!("needs {} more", cost - balance), MUTED)
            }
            Err(other) => (other.to_string(), MUTED),
        };
        let text = RichText::new(format!("{}  ·  {} pts\n{detail}", reward.name, reward.cost))
            .color(colour);
        let button = egui::Button::selectable(selected == Some(i), text)
            .min_size(egui::vec2(ui.available_width(), TARGET));
        if ui.add(button).clicked() {
            click = Some(RewardClick::Pick(i));
        }
    }
    click
}

/// Each stamp card as a row of stamps, filled for those held, then "7 of 9".
pub fn stamps_ui(ui: &mut egui::Ui, program: &Program, held: &BTreeMap<String, i64>) {
    for card in &program.stamp_cards {
        let have = held.get(&card.id).copied().unwrap_or(0).max(0);
        // Wrapped: a long card on a narrow screen goes on over two lines, not into the column
        // beside it.
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new(&card.name).strong());
            stamp_row(ui, &card.name, have, card.stamps);
            ui.add(
                egui::Label::new(RichText::new(stamp_count(have, card.stamps)).color(MUTED))
                    .wrap_mode(egui::TextWrapMode::Extend),
            );
        });
    }
}

/// Who referred the member, and how many of the year's referral bonuses they have had.
fn referrals_ui(ui: &mut egui::Ui, program: &Program, r: &crate::store::MemberReferrals) {
    if let Some(name) = &r.referred_by {
        ui.label(RichText::new(format!("Referred by {name}")).color(MUTED));
    }
    if let Some(referral) = &program.referral
        && r.rewarded_this_year > 0
    {
        ui.label(
            RichText::new(format!(
                "Friends referred this year: {} of {}",
                r.rewarded_this_year, referral.yearly_cap
            ))
            .color(MUTED),
        );
    }
}

/// "7 of 9"; a card held past full says how many count towards the next ("9 of 9 +3").
fn stamp_count(have: i64, total: i64) -> String {
    if have > total {
        format!("{total} of {total} +{}", have - total)
    } else {
        format!("{have} of {total}")
    }
}

/// `total` circles, the first `have` filled, painted (no font needs the glyphs).
fn stamp_row(ui: &mut egui::Ui, name: &str, have: i64, total: i64) {
    const STEP: f32 = 20.0;
    let count = usize::try_from(total).unwrap_or(0);
    let (rect, response) =
        ui.allocate_exact_size(egui::vec2(STEP * count as f32, STEP), egui::Sense::hover());
    response.widget_info(|| {
        egui::WidgetInfo::labeled(
            egui::Role::Image,
            true,
            format!("{name}: {} stamps", stamp_count(have, total)),
        )
    });
    let painter = ui.painter_at(rect);
    for i in 0..count {
        let centre = rect.left_center() + egui::vec2(STEP * (i as f32 + 0.5), 0.0);
        if (i as i64) < have {
            painter.circle_filled(centre, STEP * 0.38, GOOD);
        } else {
            painter.circle_stroke(centre, STEP * 0.35, egui::Stroke::new(1.5, MUTED));
        }
    }
}

/// The member's open offers, each a button that uses it, and the runs towards the others.
fn offers_ui(ui: &mut egui::Ui, program: &Program, shown: &ShownMember) -> Option<Action> {
    let mut action = None;
    for open in &shown.offers.open {
        let name = program
            .offer(&open.offer)
            .map_or(open.offer.as_str(), |o| o.name.as_str());
        let text =
            RichText::new(format!("Offer: {name}\nuse by {}", open.expires_at.date())).color(GOOD);
        let button = egui::Button::new(text).min_size(egui::vec2(ui.available_width(), TARGET));
        if ui.add(button).clicked() {
            action = Some(Action::UseOffer(open.offer.clone()));
        }
    }
    for (name, made, needed) in &shown.offers.progress {
        // Visits made at tills apart can complete a run no till saw whole: the next sale
        // unlocks it.
        let text = if made >= needed {
            format!("{name}: unlocks with the next purchase")
        } else {
            format!("{name}: {made} of {needed} visits")
        };
        ui.label(RichText::new(text).color(MUTED));
    }
    action
}

/// The paid tier for sale: its tier, fee and period; bought again, it extends.
fn membership_ui(ui: &mut egui::Ui, program: &Program, shown: &ShownMember) -> Option<Action> {
    let paid = program.paid_tier.as_ref()?;
    // Renewal opens in the membership's last month: one tap too many right after a sale would
    // otherwise sell a second year (the panel says until when it runs).
    let renew_from = super::worker::now().plus_days(RENEW_WITHIN_DAYS);
    let verb = match shown.paid_until {
        Some(until) if until > renew_from => return None,
        Some(_) => "Renew",
        None => "Sell",
    };
    let text = format!(
        "{verb} {} membership  ·  {}\n{} days of {} benefits",
        program.tier(paid.tier).name,
        program.format_money(paid.fee_minor),
        paid.days,
        program.tier(paid.tier).name
    );
    let button = egui::Button::new(text).min_size(egui::vec2(ui.available_width(), TARGET));
    ui.add(button).clicked().then_some(Action::BuyMembership)
}

/// How close to its end a paid membership can be renewed, in days.
const RENEW_WITHIN_DAYS: i64 = 30;

/// A button per stamp card: its free item, enabled when the card is full.
fn stamp_rewards_ui(ui: &mut egui::Ui, program: &Program, shown: &ShownMember) -> Option<Action> {
    let mut action = None;
    for card in &program.stamp_cards {
        let have = shown.stamps.get(&card.id).copied().unwrap_or(0);
        let full = have >= card.stamps;
        let detail = if full {
            "card full: free".to_owned()
        } else {
            format!("{} more stamps", card.stamps - have)
        };
        let text = RichText::new(format!("{}  ·  {}\n{detail}", card.reward, card.name))
            .color(if full { GOOD } else { MUTED });
        let button = egui::Button::new(text).min_size(egui::vec2(ui.available_width(), TARGET));
        if ui.add_enabled(full, button).clicked() {
            action = Some(Action::RedeemStamps(card.id.clone()));
        }
    }
    action
}

/// Puts the scan line's cursor after `text`, where the keypad just typed: keys typed next on
/// the keyboard follow the keypad's, not go in front of them.
fn cursor_to_end(ctx: &egui::Context, text: &str) {
    let id = scan_field_id();
    let mut state = egui::text_edit::TextEditState::load(ctx, id).unwrap_or_default();
    let end = egui::text::CCursor::new(text.chars().count());
    state
        .cursor
        .set_char_range(Some(egui::text::CCursorRange::one(end)));
    state.store(ctx, id);
}

fn scan_field_id() -> egui::Id {
    egui::Id::unique(SCAN_FIELD)
}

/// Height of the sale's preview (amount, points and the first of the quote's steps).
const PREVIEW_HEIGHT: f32 = 96.0;
/// The least room for the preview: the amount and its points.
const PREVIEW_LEAST: f32 = 64.0;
/// The preview's room on the shortest screens, the keys at their least: the amount's line.
const PREVIEW_SHORTEST: f32 = 40.0;
/// A sale column narrower than this (a 900-wide window) gets a smaller preview text.
const NARROW_COLUMN: f32 = 300.0;
/// The height of one of the preview's steps.
const STEP_HEIGHT: f32 = 22.0;
/// The least height of a sale key on a short screen.
const KEY_LEAST: f32 = 32.0;
/// How much taller Earn and Reverse are than the keys, where there is room.
const EARN_EXTRA: f32 = 8.0;
/// The gaps between the keypad's rows.
const KEYPAD_GAP: f32 = 6.0;

/// How tall the sale column's preview and keys are.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SaleSizes {
    preview: f32,
    key: f32,
    /// Earn and Reverse: a little taller than the keys where there is room.
    earn: f32,
}

impl SaleSizes {
    /// The column's height that is not preview or keys, with item gaps of `gap`: the "Sale"
    /// title, the keypad's gaps, and the gaps between title, preview, keypad, Enter and the
    /// Earn row.
    fn fixed(gap: f32) -> f32 {
        22.0 + 3.0 * KEYPAD_GAP + 4.0 * gap
    }

    /// The full sizes when they fit in `room` (the column's height, with item gaps of `gap`),
    /// else the preview gives up room first, then the keys, then the preview again, so Enter,
    /// Earn and Reverse stay in view on a short screen (1024 x 600) with the customer's question
    /// up.
    fn fitting(room: f32, gap: f32) -> Self {
        // Six key heights (four keypad rows, Enter and the Earn row) and the Earn row's extra.
        let spare = room - Self::fixed(gap);
        let preview = (spare - 6.0 * TARGET - EARN_EXTRA).clamp(PREVIEW_LEAST, PREVIEW_HEIGHT);
        let key = ((spare - EARN_EXTRA - preview) / 6.0).clamp(KEY_LEAST, TARGET);
        // Keys at their least: the Earn row gives up its extra, then the preview the rest,
        // down to the amount alone.
        let earn_extra = (spare - 6.0 * key - preview).clamp(0.0, EARN_EXTRA);
        let preview = (spare - 6.0 * key - earn_extra).clamp(PREVIEW_SHORTEST, preview);
        Self {
            preview,
            key,
            earn: key + earn_extra,
        }
    }
}

/// The digits' text size on keys `key_height` high: 26 on full-height keys.
fn key_text_size(key_height: f32) -> f32 {
    (key_height * 0.6).clamp(18.0, 26.0)
}

/// An on-screen keypad that types into the scan line, for touch screens, its keys `key` high.
fn keypad_ui(ui: &mut egui::Ui, scan_text: &mut String, key_height: f32) -> Option<Action> {
    const KEYS: [[&str; 3]; 4] = [
        ["7", "8", "9"],
        ["4", "5", "6"],
        ["1", "2", "3"],
        [".", "0", "Del"],
    ];
    egui::Grid::new("keypad")
        .spacing(egui::vec2(KEYPAD_GAP, KEYPAD_GAP))
        .show(ui, |ui| {
            for row in KEYS {
                for key in row {
                    let button =
                        egui::Button::new(RichText::new(key).size(key_text_size(key_height)))
                            .min_size(egui::vec2(72.0, key_height));
                    if ui.add(button).clicked() {
                        if key == "Del" {
                            scan_text.pop();
                        } else {
                            scan_text.push_str(key);
                        }
                        cursor_to_end(ui.ctx(), scan_text);
                    }
                }
                ui.end_row();
            }
        });
    let enter =
        egui::Button::new("Enter").min_size(egui::vec2(72.0 * 3.0 + 2.0 * KEYPAD_GAP, key_height));
    ui.add(enter)
        .clicked()
        .then(|| Action::Submit(std::mem::take(scan_text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the room shrinks the preview gives up room first, then the keys down to their least,
    /// then Earn's extra, then the preview down to the amount's line; nothing ever grows, and
    /// the sizes fill the room exactly between the full sizes and the least ones.
    #[test]
    fn the_sale_column_gives_up_room_in_order() {
        let gap = 4.0;
        let used = |s: SaleSizes| SaleSizes::fixed(gap) + s.preview + 5.0 * s.key + s.earn;
        let full = SaleSizes {
            preview: PREVIEW_HEIGHT,
            key: TARGET,
            earn: TARGET + EARN_EXTRA,
        };
        let least = SaleSizes {
            preview: PREVIEW_SHORTEST,
            key: KEY_LEAST,
            earn: KEY_LEAST,
        };
        assert_eq!(SaleSizes::fitting(1000.0, gap), full);
        assert_eq!(SaleSizes::fitting(100.0, gap), least);
        // Within float rounding.
        let eps = 0.01;
        let mut last = full;
        for room in (100..=1000).rev().map(|r| r as f32) {
            let s = SaleSizes::fitting(room, gap);
            assert!(
                s.preview <= last.preview + eps
                    && s.key <= last.key + eps
                    && s.earn <= last.earn + eps,
                "{room}: {s:?} after {last:?}"
            );
            if (used(least)..=used(full)).contains(&room) {
                assert!((used(s) - room).abs() < eps, "{room}: {s:?} fills the room");
            }
            if s.key < TARGET - eps {
                assert!(
                    s.preview <= PREVIEW_LEAST + eps,
                    "{room}: keys before the preview"
                );
            }
            if s.earn < s.key + EARN_EXTRA - eps {
                assert_eq!(s.key, KEY_LEAST, "{room}: Earn's extra after the keys");
            }
            if s.preview < PREVIEW_LEAST - eps {
                assert!(
                    (s.earn - s.key).abs() < eps,
                    "{room}: the preview's last room after Earn's extra"
                );
            }
            last = s;
        }
    }
}
