//! Enrolment: a short validated form, then the new member's QR code, large.

use egui::RichText;

use super::action::Action;
use super::member::ShownMember;
use super::theme::{MUTED, big_button};
use crate::domain::MemberInput;

/// The enrolment form as typed so far.
#[derive(Debug, Clone, Default)]
struct EnrolForm {
    name: String,
    phone: String,
    email: String,
    birthday: String,
    referred_by: String,
    marketing: bool,
}

impl EnrolForm {
    fn input(&self) -> MemberInput {
        let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        MemberInput {
            name: self.name.clone(),
            phone: opt(&self.phone),
            email: opt(&self.email),
            birthday: opt(&self.birthday),
            marketing_consent: self.marketing,
            referred_by: opt(&self.referred_by),
        }
    }
}

/// The form's fields, by label, in order.
const FIELDS: [&str; 5] = ["Name", "Phone", "Email", "Birthday", "Referred by"];

/// The marketing consent box's side.
const CONSENT_BOX: f32 = 28.0;

/// The enrolment screen's state.
#[derive(Default)]
pub struct EnrolScreen {
    form: EnrolForm,
    /// Put the cursor in this field (its label) on the next frame.
    focus: Option<&'static str>,
    /// The member just enrolled, shown with their QR code.
    pub(super) enrolled: Option<ShownMember>,
}

impl EnrolScreen {
    /// A fresh form with the cursor in its first field.
    pub(super) fn start(&mut self) {
        self.enrolled = None;
        self.focus = Some(FIELDS[0]);
    }

    /// The enrolment was refused with `reason` ("email: ..."): the cursor goes to the field it
    /// names (else the first), so the cashier types the fix at once.
    pub(super) fn refused(&mut self, reason: &str) {
        let named = FIELDS
            .into_iter()
            .find(|label| reason.to_lowercase().starts_with(&label.to_lowercase()));
        self.focus = Some(named.unwrap_or(FIELDS[0]));
    }

    /// The enrolment went through: clear the form and show the new member.
    pub(super) fn enrolled(&mut self, member: ShownMember) {
        self.form = EnrolForm::default();
        self.enrolled = Some(member);
    }

    /// Empties the name, phone or email field that holds `code` (a member's card scanned into
    /// the form), keeping what else was typed.
    pub(super) fn forget_scanned(&mut self, code: &str) {
        for field in [
            &mut self.form.name,
            &mut self.form.phone,
            &mut self.form.email,
        ] {
            if field.trim() == code.trim() {
                field.clear();
            }
        }
    }

    /// Draws the form, or the member just enrolled.
    pub fn ui(&mut self, ui: &mut egui::Ui) -> Option<Action> {
        if self.enrolled.is_some() {
            return self.welcome_ui(ui);
        }
        ui.heading("Enrol a new member");
        ui.label(
            RichText::new(
                "Name is required; add a phone or email so they can be found without the card.",
            )
            .color(MUTED),
        );
        let mut submit = false;
        let f = &mut self.form;
        let focus = &mut self.focus;
        egui::Grid::new("enrol")
            .num_columns(2)
            .spacing(egui::vec2(16.0, 12.0))
            .show(ui, |ui| {
                let fields = [
                    field_ui(ui, FIELDS[0], &mut f.name, "Ada Lovelace"),
                    field_ui(ui, FIELDS[1], &mut f.phone, "07400 123456"),
                    field_ui(ui, FIELDS[2], &mut f.email, "ada@example.com"),
                    field_ui(ui, FIELDS[3], &mut f.birthday, "YYYY-MM-DD (optional)"),
                    field_ui(
                        ui,
                        FIELDS[4],
                        &mut f.referred_by,
                        "scan or type the friend's card (optional)",
                    ),
                ];
                if let Some(label) = focus.take()
                    && let Some(i) = FIELDS.iter().position(|l| *l == label)
                {
                    fields[i].request_focus();
                }
                // Enter in any field enrols, as the legend says (it used to leave the name or
                // phone field with nothing done and the cursor nowhere).
                submit |= fields.iter().any(egui::Response::lost_focus)
                    && ui.input(|i| i.key_pressed(egui::Key::Enter));
                ui.label("");
                ui.scope(|ui| {
                    // A box a finger finds beside its words (egui's is 14 px).
                    let spacing = ui.spacing_mut();
                    spacing.icon_width = CONSENT_BOX;
                    spacing.icon_width_inner = CONSENT_BOX / 2.0;
                    spacing.icon_spacing = 10.0;
                    ui.checkbox(&mut f.marketing, "Agrees to marketing messages");
                });
                ui.end_row();
            });
        ui.add_space(10.0);
        submit |= big_button(ui, "Enrol member").clicked();
        submit.then(|| Action::Enrol(self.form.input()))
    }

    fn welcome_ui(&mut self, ui: &mut egui::Ui) -> Option<Action> {
        let shown = self.enrolled.as_ref()?;
        let member = &shown.view.member;
        let mut action = None;
        let mut another = false;
        ui.vertical_centered(|ui| {
            ui.label(
                RichText::new(format!("Welcome, {}", member.name))
                    .size(34.0)
                    .strong(),
            );
            ui.label(RichText::new(format!("Card {}", member.card.grouped())).size(26.0));
            ui.label(
                RichText::new(format!("{} points to start with", shown.view.state.balance))
                    .color(MUTED),
            );
            let side = ui
                .available_height()
                .min(ui.available_width())
                .clamp(200.0, 420.0)
                - 80.0;
            ui.add(egui::Image::new(&shown.qr).fit_to_exact_size(egui::vec2(side, side)));
            ui.label(
                RichText::new("Let the customer scan this with their phone, or print it")
                    .color(MUTED),
            );
            ui.horizontal(|ui| {
                let (card, code) = (member.card.clone(), shown.code.clone());
                if big_button(ui, "Export PNG").clicked() {
                    action = Some(Action::ExportQr {
                        card: card.clone(),
                        code: code.clone(),
                    });
                }
                if big_button(ui, "Print").clicked() {
                    action = Some(Action::PrintQr { card, code });
                }
                if big_button(ui, "Serve this member  F1").clicked() {
                    action = Some(Action::Serve(member.id));
                }
                another = big_button(ui, "Enrol another").clicked();
            });
        });
        if another {
            self.start();
        }
        action
    }
}

fn field_ui(ui: &mut egui::Ui, label: &str, value: &mut String, hint: &str) -> egui::Response {
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
