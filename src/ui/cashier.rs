//! The cashier screen: one always-focused scan line, the member, the sale and the rewards.

use egui::{FontId, Key, Modifiers, RichText};

use super::app::TillApp;
use super::theme::{BAD, GOOD, MUTED, TARGET, big_button, tier_badge};
use crate::domain::rules::{self, Refusal};
use crate::domain::summary::{next_tier, tier_progress};

/// The scan field's id, so tests and focus handling can find it.
pub const SCAN_FIELD: &str = "Scan, search or amount";

pub fn ui(app: &mut TillApp, ui: &mut egui::Ui) {
    scan_line(app, ui);
    ui.add_space(8.0);
    if app.member.is_none() && app.matches.is_empty() {
        ui.add_space(40.0);
        ui.label(RichText::new("Scan the member's card or wallet pass").size(28.0));
        ui.label(
            RichText::new("or type their card number, phone number or name and press Enter.")
                .color(MUTED),
        );
        ui.add_space(20.0);
        if big_button(ui, "Scan from image…").clicked() {
            app.image_prompt = Some(String::new());
        }
        ui.label(
            RichText::new("or drop a photo or screenshot of the code on this window").color(MUTED),
        );
        return;
    }
    ui.columns(3, |cols| {
        member_column(app, &mut cols[0]);
        sale_column(app, &mut cols[1]);
        rewards_column(app, &mut cols[2]);
    });
}

/// The scan line keeps keyboard focus whenever no dialog is open, so a wedge scanner's burst
/// always lands here. Enter is taken before the text field sees it, so the field never gives up
/// focus between one scan and the next.
fn scan_line(app: &mut TillApp, ui: &mut egui::Ui) {
    let dialog_open = app.pin_prompt.is_some()
        || app.image_prompt.is_some()
        || app.offer_demo
        || app.demo_progress.is_some();
    let enter = !dialog_open && ui.input_mut(|i| i.consume_key(Modifiers::NONE, Key::Enter));
    let field = egui::TextEdit::singleline(&mut app.scan_text)
        .id(egui::Id::unique(SCAN_FIELD))
        .hint_text("Scan a card · type card number, phone or name · or a sale amount")
        .font(FontId::proportional(30.0))
        .desired_width(f32::INFINITY)
        .margin(egui::vec2(12.0, 10.0));
    let response = ui.add(field).on_hover_text(SCAN_FIELD);
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::TextInput, true, SCAN_FIELD));
    if !dialog_open && !response.has_focus() {
        response.request_focus();
    }
    if enter {
        app.submit_scan();
    }
}

fn member_column(app: &mut TillApp, ui: &mut egui::Ui) {
    let Some(program) = app.program.clone() else {
        return;
    };
    if let Some(panel) = &app.member {
        let m = &panel.view.member;
        let s = &panel.view.state;
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
        let caption = match next_tier(&program, s) {
            Some((next, gap)) => format!("{gap} points to {}", program.tier(next).name),
            None => "Top tier".to_owned(),
        };
        ui.add(
            egui::ProgressBar::new(tier_progress(&program, s))
                .text(caption)
                .desired_height(28.0),
        );
        let member_id = m.id;
        if big_button(ui, "Wallet pass").clicked() {
            app.wallet_pass(member_id);
            return;
        }
        ui.add_space(6.0);
        ui.label(RichText::new("Last visits").strong());
        for e in &panel.history {
            let amount = e
                .amount_minor
                .map(|a| format!("  {}", program.format_money(a)))
                .unwrap_or_default();
            let colour = if e.points >= 0 { GOOD } else { BAD };
            ui.horizontal(|ui| {
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
        return;
    }
    if !app.matches.is_empty() {
        ui.label(RichText::new("Pick the member").strong());
        let mut open = None;
        egui::ScrollArea::vertical().show(ui, |ui| {
            for hit in &app.matches {
                let m = &hit.view.member;
                let text = format!(
                    "{}   {}   {}   {} pts",
                    m.name,
                    m.card.grouped(),
                    m.phone.as_deref().unwrap_or(""),
                    hit.view.state.balance
                );
                if ui
                    .add(egui::Button::new(text).min_size(egui::vec2(ui.available_width(), TARGET)))
                    .clicked()
                {
                    open = Some(m.id);
                }
            }
        });
        if let Some(id) = open {
            app.open(id);
        }
        return;
    }
    ui.add_space(40.0);
    ui.label(RichText::new("Scan the member's card or wallet pass").size(28.0));
    ui.label(
        RichText::new("or type their card number, phone number or name and press Enter.")
            .color(MUTED),
    );
}

fn sale_column(app: &mut TillApp, ui: &mut egui::Ui) {
    let Some(program) = app.program.clone() else {
        return;
    };
    let Some(panel) = app.member.clone() else {
        return;
    };
    let state = panel.view.state;
    ui.label(RichText::new("Sale").strong());
    let preview = app.pending_amount.map(|amount| {
        let points = rules::earn(&program, state.tier, amount).map(|d| d.points);
        (amount, points)
    });
    match preview {
        Some((amount, Ok(points))) => {
            let tier = program.tier(state.tier);
            let mult = f64::from(tier.multiplier_hundredths) / 100.0;
            ui.label(
                RichText::new(program.format_money(amount))
                    .size(32.0)
                    .strong(),
            );
            ui.label(
                RichText::new(format!("Earns {points} points ({} ×{mult})", tier.name))
                    .size(22.0)
                    .color(GOOD),
            );
        }
        Some((_, Err(e))) => {
            ui.label(RichText::new(e.to_string()).color(BAD));
        }
        None => {
            ui.label(RichText::new("Type the amount and press Enter").color(MUTED));
        }
    }
    keypad(app, ui);
    let can_earn = app.pending_amount.is_some();
    let earn = egui::Button::new(RichText::new("Earn  F5").size(24.0).strong())
        .min_size(egui::vec2(ui.available_width(), TARGET + 8.0));
    if ui.add_enabled(can_earn, earn).clicked() {
        app.earn();
    }
    ui.add_space(12.0);
    if big_button(ui, "Reverse last  F8").clicked() {
        app.ask_reverse_last();
    }
}

fn rewards_column(app: &mut TillApp, ui: &mut egui::Ui) {
    let Some(program) = app.program.clone() else {
        return;
    };
    let Some(panel) = app.member.clone() else {
        return;
    };
    let state = panel.view.state;
    ui.label(RichText::new("Rewards").strong());
    let mut pick = None;
    for (i, reward) in program.rewards.iter().enumerate() {
        let verdict = rules::redeem(&program, &state, &reward.id, None).map(|_| ());
        let (detail, colour) = match verdict {
            Ok(()) => ("available".to_owned(), GOOD),
            Err(Refusal::TierLocked { required, .. }) => (format!("{required} and above"), MUTED),
            Err(Refusal::InsufficientPoints { cost, balance, .. }) => {
                (format!("needs {} more", cost - balance), MUTED)
            }
            Err(other) => (other.to_string(), MUTED),
        };
        let text = RichText::new(format!("{}  ·  {} pts\n{detail}", reward.name, reward.cost))
            .color(colour);
        let selected = app.selected_reward == Some(i);
        if ui
            .add(
                egui::Button::selectable(selected, text)
                    .min_size(egui::vec2(ui.available_width(), TARGET)),
            )
            .clicked()
        {
            pick = Some(i);
        }
    }
    if pick.is_some() {
        app.selected_reward = pick;
    }
    let can_redeem = app.selected_reward.is_some();
    if ui
        .add_enabled(
            can_redeem,
            egui::Button::new(RichText::new("Redeem  F6").strong())
                .min_size(egui::vec2(160.0, TARGET)),
        )
        .clicked()
    {
        app.redeem_selected();
    }
}

/// An on-screen keypad that types into the scan line, for touch screens.
fn keypad(app: &mut TillApp, ui: &mut egui::Ui) {
    const KEYS: [[&str; 3]; 4] = [
        ["7", "8", "9"],
        ["4", "5", "6"],
        ["1", "2", "3"],
        [".", "0", "Del"],
    ];
    egui::Grid::new("keypad")
        .spacing(egui::vec2(6.0, 6.0))
        .show(ui, |ui| {
            for row in KEYS {
                for key in row {
                    let button = egui::Button::new(RichText::new(key).size(26.0))
                        .min_size(egui::vec2(72.0, 52.0));
                    if ui.add(button).clicked() {
                        if key == "Del" {
                            app.scan_text.pop();
                        } else {
                            app.scan_text.push_str(key);
                        }
                    }
                }
                ui.end_row();
            }
        });
    if ui
        .add(egui::Button::new("Enter").min_size(egui::vec2(72.0 * 3.0 + 12.0, TARGET)))
        .clicked()
    {
        app.submit_scan();
    }
}
