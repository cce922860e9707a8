//! The wallet-pass dialog: where the Apple pass was saved, and the Google Wallet save link as a
//! QR code the customer scans with their phone.

use egui::RichText;

use super::action::Action;
use super::dialog::WalletDialog;
use super::theme::{BAD, GOOD, MUTED, big_button};

/// Draws the dialog; returns [`Action::Clear`] when the user closes it.
pub fn wallet_ui(state: &WalletDialog, ctx: &egui::Context) -> Option<Action> {
    let mut action = None;
    egui::Modal::new(egui::Id::unique("wallet-pass")).show(ctx, |ui| {
        ui.set_width(900.0);
        match state {
            WalletDialog::Making => {
                ui.heading("Making wallet passes…");
                ui.label(RichText::new("Signing the pass; this takes a moment the first time.").color(MUTED));
            }
            WalletDialog::Link {
                name,
                url,
                qr,
                demo,
            } => {
                ui.heading(format!("Wallet pass for {name}"));
                if *demo {
                    ui.label(
                        RichText::new("DEMO: the server signs with a test certificate. Phones will not install this pass until the server is started with --wallet and your Apple and Google credentials.")
                            .color(BAD),
                    );
                }
                ui.add_space(8.0);
                ui.horizontal_top(|ui| {
                    ui.vertical(|ui| {
                        ui.set_width(440.0);
                        ui.label(
                            RichText::new("The customer scans this code with the phone's camera.")
                                .size(22.0)
                                .strong(),
                        );
                        ui.add_space(8.0);
                        ui.label("An iPhone adds the card to Apple Wallet, an Android phone to Google Wallet. Its balance and tier stay up to date.");
                        ui.add_space(8.0);
                        ui.label(RichText::new(url.as_str()).color(MUTED));
                        if ui.button("Copy link").clicked() {
                            ui.ctx().copy_text(url.clone());
                        }
                    });
                    ui.add(egui::Image::new(qr).fit_to_exact_size(egui::vec2(440.0, 440.0)));
                });
            }
            WalletDialog::Ready { reply, qr } => {
                ui.heading(format!("Wallet pass for {}", reply.name));
                if reply.demo {
                    ui.label(
                        RichText::new("DEMO: signed with a self-signed test certificate. Phones will not install these passes until wallet.toml names your Apple and Google credentials.")
                            .color(BAD),
                    );
                }
                ui.add_space(8.0);
                ui.horizontal_top(|ui| {
                    ui.vertical(|ui| {
                        ui.set_width(440.0);
                        ui.label(RichText::new("Apple Wallet").strong());
                        match &reply.apple {
                            Ok(path) => ui.label(
                                RichText::new(format!("Saved {}: send it to the customer or open it on their iPhone.", path.display()))
                                    .color(GOOD),
                            ),
                            Err(e) => ui.label(RichText::new(e).color(BAD)),
                        };
                        ui.add_space(12.0);
                        ui.label(RichText::new("Google Wallet").strong());
                        match &reply.google {
                            Ok((url, _)) => {
                                ui.label("The customer scans the code with their Android phone to add the card.");
                                ui.label(RichText::new(format!("Link of {} characters", url.len())).color(MUTED));
                                if ui.button("Copy link").clicked() {
                                    ui.ctx().copy_text(url.clone());
                                }
                            }
                            Err(e) => {
                                ui.label(RichText::new(e).color(BAD));
                            }
                        }
                    });
                    if let Some(texture) = qr {
                        let side = 440.0;
                        ui.add(egui::Image::new(texture).fit_to_exact_size(egui::vec2(side, side)));
                    }
                });
            }
        }
        ui.add_space(8.0);
        if big_button(ui, "Close  Esc").clicked() {
            action = Some(Action::Clear);
        }
    });
    action
}
