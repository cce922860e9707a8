//! The customer-facing window: the member's QR code, name, tier and balance, large.

use egui::RichText;

use super::action::Action;
use super::cashier::{Ask, RECOMMEND_QUESTION, recommend_ui};
use super::member::ShownMember;
use super::theme::tier_badge;
use crate::domain::Program;

/// Shows the customer's window with `member` (or a welcome), and the recommend question after a
/// sale (`ask`); returns their answer, or [`Action::ToggleCustomerDisplay`] when the window is
/// closed.
pub fn customer_display(
    ctx: &egui::Context,
    program: &Program,
    member: Option<&ShownMember>,
    ask: Option<Ask>,
) -> Option<Action> {
    let builder = egui::ViewportBuilder::default()
        .with_title("Tillpass — for the customer")
        .with_inner_size([560.0, 760.0])
        // The till keeps the keyboard: a scan must never land in the customer's window.
        .with_active(false);
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
                    ui.label(
                        RichText::new(format!("{} points", state.balance))
                            .size(48.0)
                            .strong(),
                    );
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
