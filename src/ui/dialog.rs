//! The till's dialogs, at most one open at a time: the manager PIN, the image path, the demo
//! offer and its progress, the wallet passes. While one is open the scan line and the F-keys
//! are off (Esc still closes it).

use egui::{RichText, TextureHandle};

use super::action::Action;
use super::theme::{BAD, TARGET, big_button};
use super::worker::WalletPassReply;
use crate::domain::Program;

/// The open dialog.
pub enum Dialog {
    Pin(PinPrompt),
    /// "Scan from image": the picture's path as typed so far.
    ImagePath(String),
    /// "Import members": the CSV file's path as typed so far.
    ImportPath(String),
    /// On an empty store: load demo data, start empty, or join a server (the join code as
    /// scanned or pasted so far).
    DemoOffer {
        join: String,
    },
    /// Demo members loaded so far.
    DemoLoading(usize),
    Wallet(WalletDialog),
    Donate(DonatePrompt),
}

/// The "give points to a cause" prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DonatePrompt {
    pub member: crate::domain::MemberId,
    /// The points the member can spend now.
    pub balance: i64,
    /// Index into the program's causes.
    pub cause: usize,
    pub points: String,
    pub error: Option<String>,
    /// Given, waiting for the store's answer: the prompt stays, with what was typed, until
    /// the gift is written (it closes) or refused (the reason shows here).
    pub sending: bool,
}

/// What a PIN prompt is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinPurpose {
    /// Reversing the member's last transaction at this till: `entry`, described in `what`.
    Reverse {
        entry: Box<crate::domain::Entry>,
        what: String,
    },
    UnlockManager,
    SetManagerPin,
}

/// An open PIN prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinPrompt {
    pub purpose: PinPurpose,
    pub pin: String,
    pub confirm: String,
    pub error: Option<String>,
}

impl PinPrompt {
    /// An empty prompt for `purpose`.
    pub fn new(purpose: PinPurpose) -> Self {
        Self {
            purpose,
            pin: String::new(),
            confirm: String::new(),
            error: None,
        }
    }
}

/// The wallet-pass dialog.
pub enum WalletDialog {
    /// Waiting for the passes.
    Making,
    Ready {
        reply: Box<WalletPassReply>,
        qr: Option<TextureHandle>,
    },
    /// A joined till: the link to the pass on the server, as a QR code.
    Link {
        name: String,
        url: String,
        qr: TextureHandle,
        demo: bool,
    },
}

impl Dialog {
    /// Esc may close it (a running demo load cannot be closed, and the offer wants an answer).
    pub fn closable(&self) -> bool {
        !matches!(self, Dialog::DemoOffer { .. } | Dialog::DemoLoading(_))
    }

    /// Draws the dialog; returns what the user asked for.
    pub fn ui(&mut self, ctx: &egui::Context, program: Option<&Program>) -> Option<Action> {
        match self {
            Dialog::Pin(prompt) => pin_ui(prompt, ctx),
            Dialog::ImagePath(path) => image_path_ui(path, ctx),
            Dialog::ImportPath(path) => import_path_ui(path, ctx),
            Dialog::DemoOffer { join } => demo_offer_ui(join, ctx),
            Dialog::DemoLoading(done) => {
                demo_loading_ui(*done, ctx);
                None
            }
            Dialog::Wallet(wallet) => super::wallet::wallet_ui(wallet, ctx),
            Dialog::Donate(prompt) => donate_ui(prompt, program, ctx),
        }
    }
}

/// The manager PIN dialog (reversal, manager screen, first PIN).
fn pin_ui(prompt: &mut PinPrompt, ctx: &egui::Context) -> Option<Action> {
    let (title, setting) = match prompt.purpose {
        PinPurpose::Reverse { .. } => ("Manager PIN to reverse", false),
        PinPurpose::UnlockManager => ("Manager PIN", false),
        PinPurpose::SetManagerPin => ("Set the manager PIN (4 to 12 digits)", true),
    };
    let mut action = None;
    egui::Modal::new(egui::Id::unique("pin")).show(ctx, |ui| {
        ui.set_min_width(420.0);
        ui.heading(title);
        // What the PIN will undo, so the manager never reverses the wrong thing.
        if let PinPurpose::Reverse { what, .. } = &prompt.purpose {
            ui.label(RichText::new(what).size(20.0));
        }
        let pin = ui.add(
            egui::TextEdit::singleline(&mut prompt.pin)
                .password(true)
                .hint_text("PIN")
                .desired_width(300.0),
        );
        if !pin.has_focus() && (!setting || !ui.memory(|m| m.focused().is_some())) {
            pin.request_focus();
        }
        let enter = ui.input(|i| i.key_pressed(egui::Key::Enter));
        if setting {
            ui.add(
                egui::TextEdit::singleline(&mut prompt.confirm)
                    .password(true)
                    .hint_text("PIN again")
                    .desired_width(300.0),
            );
        }
        if let Some(e) = &prompt.error {
            ui.label(RichText::new(e).color(BAD));
        }
        ui.horizontal(|ui| {
            if big_button(ui, "OK").clicked() || enter {
                action = Some(Action::SubmitPin);
            }
            if big_button(ui, "Cancel").clicked() {
                action = Some(Action::Clear);
            }
        });
    });
    action
}

/// The "scan from image" prompt: a picture's path (or drop the file on the window).
fn image_path_ui(path: &mut String, ctx: &egui::Context) -> Option<Action> {
    let mut action = None;
    egui::Modal::new(egui::Id::unique("scan-image")).show(ctx, |ui| {
        ui.set_min_width(560.0);
        ui.heading("Scan from image");
        ui.label("Type the path of a photo or screenshot with the member's QR code, or drop the file on the window.");
        let field = ui.add(
            egui::TextEdit::singleline(path)
                .hint_text("/home/till/Pictures/pass.png")
                .desired_width(520.0),
        );
        field.widget_info(|| egui::WidgetInfo::labeled(egui::Role::TextInput, true, "Image path"));
        if !field.has_focus() {
            field.request_focus();
        }
        let enter = ui.input(|i| i.key_pressed(egui::Key::Enter));
        ui.horizontal(|ui| {
            if big_button(ui, "Read code").clicked() || enter {
                action = Some(Action::ScanImage(path.trim().into()));
            }
            if big_button(ui, "Cancel").clicked() {
                action = Some(Action::Clear);
            }
        });
    });
    action
}

/// The "give points to a cause" prompt: a cause, the points, Give.
fn donate_ui(
    prompt: &mut DonatePrompt,
    program: Option<&Program>,
    ctx: &egui::Context,
) -> Option<Action> {
    let causes = program.map_or(&[][..], |p| &p.causes[..]);
    let mut action = None;
    egui::Modal::new(egui::Id::unique("donate")).show(ctx, |ui| {
        ui.set_min_width(520.0);
        ui.heading("Give points to a cause");
        ui.label(format!(
            "The member has {} points to spend.",
            prompt.balance
        ));
        for (i, cause) in causes.iter().enumerate() {
            let button =
                egui::Button::selectable(prompt.cause == i, RichText::new(&cause.name).size(20.0))
                    .min_size(egui::vec2(480.0, TARGET));
            if ui.add(button).clicked() {
                prompt.cause = i;
            }
        }
        let field = ui.add(
            egui::TextEdit::singleline(&mut prompt.points)
                .hint_text("points, e.g. 500")
                .desired_width(300.0),
        );
        field.widget_info(|| {
            egui::WidgetInfo::labeled(egui::Role::TextInput, true, "Points to give")
        });
        if !field.has_focus() {
            field.request_focus();
        }
        if let Some(error) = &prompt.error {
            ui.label(RichText::new(error).color(BAD));
        }
        let enter = ui.input(|i| i.key_pressed(egui::Key::Enter));
        ui.horizontal(|ui| {
            let give = ui.add_enabled_ui(!prompt.sending, |ui| big_button(ui, "Give"));
            if (give.inner.clicked() || enter) && !prompt.sending {
                match (
                    prompt.points.trim().parse::<i64>(),
                    causes.get(prompt.cause),
                ) {
                    (Ok(points), Some(cause)) if points > 0 => {
                        action = Some(Action::Donate {
                            member: prompt.member,
                            cause: cause.id.clone(),
                            points,
                        });
                    }
                    _ => {
                        let typed = prompt.points.trim();
                        prompt.error = Some(
                            if !typed.is_empty() && typed.bytes().all(|b| b.is_ascii_digit()) {
                                format!("{typed} is more points than the member has")
                            } else {
                                "Type a whole number of points above zero".into()
                            },
                        );
                    }
                }
            }
            if big_button(ui, "Cancel").clicked() {
                action = Some(Action::Clear);
            }
        });
    });
    action
}

/// The "import members" prompt: a CSV file's path.
fn import_path_ui(path: &mut String, ctx: &egui::Context) -> Option<Action> {
    let mut action = None;
    egui::Modal::new(egui::Id::unique("import")).show(ctx, |ui| {
        ui.set_min_width(600.0);
        ui.heading("Import members");
        ui.label("The path of a CSV file: our columns (name, phone, email, birthday, balance, joined, marketing), or a Square or Loyverse customer export. Every line is checked; if one is bad, nothing is imported and each bad line is named.");
        let field = ui.add(
            egui::TextEdit::singleline(path)
                .hint_text("/home/till/members.csv")
                .desired_width(560.0),
        );
        field.widget_info(|| egui::WidgetInfo::labeled(egui::Role::TextInput, true, "CSV file"));
        if !field.has_focus() {
            field.request_focus();
        }
        let enter = ui.input(|i| i.key_pressed(egui::Key::Enter));
        ui.horizontal(|ui| {
            if big_button(ui, "Import").clicked() || enter {
                action = Some(Action::Import(path.trim().into()));
            }
            if big_button(ui, "Cancel").clicked() {
                action = Some(Action::Clear);
            }
        });
    });
    action
}

/// Members a new till offers to load as demo data.
pub const DEMO_MEMBERS: usize = 1000;

/// The join-code field's label.
pub const JOIN_FIELD: &str = "Join code";

/// On an empty store: join a server by scanning its join code, or offer demo data.
fn demo_offer_ui(join: &mut String, ctx: &egui::Context) -> Option<Action> {
    let mut action = None;
    egui::Modal::new(egui::Id::unique("demo")).show(ctx, |ui| {
        ui.set_min_width(620.0);
        ui.heading("This till has no members yet");
        ui.label("To join your shop's server, scan the join code from tillpass-server terminal add (or paste it) and press Enter.");
        let field = ui.add(
            egui::TextEdit::singleline(join)
                .hint_text("TPJ1.…")
                .desired_width(600.0),
        );
        field.widget_info(|| egui::WidgetInfo::labeled(egui::Role::TextInput, true, JOIN_FIELD));
        if !field.has_focus() && ui.input(|i| i.focused) {
            field.request_focus();
        }
        if ui.input(|i| i.key_pressed(egui::Key::Enter)) && !join.trim().is_empty() {
            action = Some(Action::Join(std::mem::take(join)));
        }
        ui.add_space(8.0);
        ui.label("Or load demo data to try it out: 1,000 members with a year of purchases.");
        ui.horizontal(|ui| {
            if big_button(ui, "Load demo data").clicked() {
                action = Some(Action::LoadDemo(DEMO_MEMBERS));
            }
            if big_button(ui, "Start empty").clicked() {
                action = Some(Action::DeclineDemo);
            }
        });
    });
    action
}

fn demo_loading_ui(done: usize, ctx: &egui::Context) {
    egui::Modal::new(egui::Id::unique("demo-progress")).show(ctx, |ui| {
        ui.heading("Loading demo members…");
        ui.label(format!("{done} members so far"));
    });
}
