//! The customer-facing window: the member's QR code, name, tier and balance, large.

use egui::RichText;

use super::action::Action;
use super::cashier::{Ask, RECOMMEND_QUESTION, recommend_ui};
use super::member::ShownMember;
use super::theme::tier_badge;
use crate::domain::Program;

/// The customer window's size where the screen has room.
const CUSTOMER_SIZE: egui::Vec2 = egui::vec2(560.0, 760.0);

/// The customer window's size on a `screen`: as designed where it fits, else shrunk to the
/// screen's height less room for the title bar and a panel, keeping its shape.
fn fitted(screen: egui::Vec2) -> egui::Vec2 {
    let height = CUSTOMER_SIZE.y.min(screen.y - 80.0).max(400.0);
    let width = (CUSTOMER_SIZE.x * height / CUSTOMER_SIZE.y).min(screen.x);
    egui::vec2(width, height)
}

/// Shows the customer's window with `member` (or a welcome), and the recommend question after a
/// sale (`ask`); returns their answer, or [`Action::ToggleCustomerDisplay`] when the window is
/// closed.
pub fn customer_display(
    ctx: &egui::Context,
    program: &Program,
    member: Option<&ShownMember>,
    ask: Option<Ask>,
) -> Option<Action> {
    let mut builder = egui::ViewportBuilder::default()
        .with_title("Tillpass — for the customer")
        .with_inner_size(CUSTOMER_SIZE)
        // The till keeps the keyboard: a scan must never land in the customer's window.
        .with_active(false)
        // Without the focus it would open, and stay, behind the till's window.
        .with_window_level(egui::WindowLevel::AlwaysOnTop);
    // On the till's own screen (a customer-facing second screen is where the shop drags it),
    // it opens whole, in the top right corner, over the rewards column rather than the scan
    // line; a window taller than the screen opened with its bottom, the score buttons, cut off.
    if let Some(screen) = ctx.input(|i| i.viewport().monitor_size) {
        let size = fitted(screen);
        builder = builder
            .with_inner_size(size)
            .with_position([(screen.x - size.x).max(0.0), 0.0]);
    }
    let mut close = false;
    let mut answer = None;
    ctx.show_viewport_immediate(
        egui::ViewportId::from_hash_of("customer"),
        builder,
        |ui, _class| {
            if ui.input(|i| i.viewport().close_requested()) {
                close = true;
            }
            // Nothing here takes typing: if the window manager (or a stray tap) focuses this
            // window, hand the keyboard straight back to the till so the next scan is not lost.
            if ui.input(|i| i.focused) {
                ui.ctx()
                    .send_viewport_cmd_to(egui::ViewportId::ROOT, egui::ViewportCommand::Focus);
            }
            if ask.is_some() {
                egui::Panel::bottom("recommend").show(ui, |ui| {
                    ui.add_space(8.0);
                    ui.label(RichText::new(RECOMMEND_QUESTION).size(24.0).strong());
                    ui.label(RichText::new("0 = not at all, 10 = extremely likely").size(16.0));
                    answer = recommend_ui(ui, 44.0);
                    ui.add_space(8.0);
                });
            }
            egui::CentralPanel::default().show(ui, |ui| {
                ui.vertical_centered(|ui| {
                    let Some(shown) = member else {
                        ui.add_space(120.0);
                        ui.label(
                            RichText::new(format!("Welcome to {}", program.name))
                                .size(34.0)
                                .strong(),
                        );
                        ui.label(
                            RichText::new("Show your card or wallet pass to the cashier")
                                .size(24.0),
                        );
                        return;
                    };
                    let state = &shown.view.state;
                    ui.label(RichText::new(&shown.view.member.name).size(36.0).strong());
                    tier_badge(ui, program.tier(state.tier));
                    // What they can spend now, as the cashier's panel prices rewards: the
                    // whole balance here had customers asking for a coffee they could not have.
                    ui.label(
                        RichText::new(format!("{} points to spend", shown.spendable().balance))
                            .size(48.0)
                            .strong(),
                    );
                    if shown.pending > 0 {
                        ui.label(
                            RichText::new(format!(
                                "and {} on their way (spendable {} days after each purchase)",
                                shown.pending,
                                program.return_window_days.unwrap_or(0)
                            ))
                            .size(22.0),
                        );
                    }
                    super::cashier::stamps_ui(ui, program, &shown.stamps);
                    let badges = shown.badge_names(program);
                    if !badges.is_empty() {
                        ui.label(RichText::new(badges.join(" · ")).size(22.0));
                    }
                    for open in &shown.offers.open {
                        if let Some(offer) = program.offer(&open.offer) {
                            ui.label(
                                RichText::new(format!(
                                    "Yours until {}: {}",
                                    open.expires_at.date(),
                                    offer.name
                                ))
                                .size(24.0)
                                .strong(),
                            );
                        }
                    }
                    let side = ui
                        .available_width()
                        .min(ui.available_height() - 60.0)
                        .clamp(160.0, 480.0);
                    ui.add(egui::Image::new(&shown.qr).fit_to_exact_size(egui::vec2(side, side)));
                    ui.label(
                        RichText::new(format!("Card {}", shown.view.member.card.grouped()))
                            .size(24.0),
                    );
                });
            });
        },
    );
    answer.or(close.then_some(Action::ToggleCustomerDisplay))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_customer_window_fits_the_screen_it_opens_on() {
        assert_eq!(fitted(egui::vec2(1920.0, 1080.0)), CUSTOMER_SIZE);
        let small = fitted(egui::vec2(1280.0, 800.0));
        assert_eq!(small.y, 720.0, "room for a title bar and a panel");
        assert!((small.x / small.y - CUSTOMER_SIZE.x / CUSTOMER_SIZE.y).abs() < 1e-3);
        let tiny = fitted(egui::vec2(320.0, 300.0));
        assert!(tiny.x <= 320.0, "never wider than the screen: {tiny:?}");
    }
}
