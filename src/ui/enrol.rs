//! Enrolment: a short validated form, then the new member's QR code, large.

use egui::RichText;

use super::app::{Screen, TillApp};
use super::theme::{MUTED, big_button};

fn field(ui: &mut egui::Ui, label: &str, value: &mut String, hint: &str) -> egui::Response {
    ui.label(label);
    let response = ui.add(
        egui::TextEdit::singleline(value)
            .hint_text(hint)
            .desired_width(420.0),
    );
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::TextInput, true, label));
    ui.end_row();
    response
}

pub fn ui(app: &mut TillApp, ui: &mut egui::Ui) {
    if let Some(panel) = app.enrolled.clone() {
        ui.vertical_centered(|ui| {
            ui.label(
                RichText::new(format!("Welcome, {}", panel.view.member.name))
                    .size(34.0)
                    .strong(),
            );
            ui.label(
                RichText::new(format!("Card {}", panel.view.member.card.grouped())).size(26.0),
            );
            ui.label(
                RichText::new(format!("{} points to start with", panel.view.state.balance))
                    .color(MUTED),
            );
            if let Some(texture) = &app.enrolled_qr {
                let side = ui
                    .available_height()
                    .min(ui.available_width())
                    .clamp(200.0, 420.0)
                    - 80.0;
                ui.add(egui::Image::new(texture).fit_to_exact_size(egui::vec2(side, side)));
            }
            ui.label(
                RichText::new("Let the customer scan this with their phone, or print it")
                    .color(MUTED),
            );
            ui.horizontal(|ui| {
                let card = panel.view.member.card.clone();
                if big_button(ui, "Export PNG").clicked() {
                    app.export_qr(card.clone());
                }
                if big_button(ui, "Print").clicked() {
                    app.print_qr(card);
                }
                if big_button(ui, "Serve this member  F1").clicked() {
                    app.open(panel.view.member.id);
                    app.go(Screen::Cashier);
                }
                if big_button(ui, "Enrol another").clicked() {
                    app.enrolled = None;
                    app.focus_enrol = true;
                }
            });
        });
        return;
    }
    ui.heading("Enrol a new member");
    ui.label(
        RichText::new(
            "Name is required; add a phone or email so they can be found without the card.",
        )
        .color(MUTED),
    );
    let mut submit = false;
    let f = &mut app.enrol;
    egui::Grid::new("enrol")
        .num_columns(2)
        .spacing(egui::vec2(16.0, 12.0))
        .show(ui, |ui| {
            let name = field(ui, "Name", &mut f.name, "Ada Lovelace");
            if std::mem::take(&mut app.focus_enrol) {
                name.request_focus();
            }
            field(ui, "Phone", &mut f.phone, "07400 123456");
            field(ui, "Email", &mut f.email, "ada@example.com");
            let last = field(ui, "Birthday", &mut f.birthday, "YYYY-MM-DD (optional)");
            submit |= last.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            ui.label("");
            ui.checkbox(&mut f.marketing, "Agrees to marketing messages");
            ui.end_row();
        });
    ui.add_space(10.0);
    submit |= big_button(ui, "Enrol member").clicked();
    if submit {
        app.submit_enrol();
    }
}
