//! The till's look (large type, 44 px targets) and the frame around every screen: the top bar,
//! the F-key legend with the message line, and the dialogs.

use egui::{Color32, FontId, RichText, TextStyle};

use super::app::{PinPurpose, Screen, TillApp, Tone};

pub const GOOD: Color32 = Color32::from_rgb(0x2E, 0x9D, 0x4F);
pub const BAD: Color32 = Color32::from_rgb(0xE0, 0x4F, 0x3C);
pub const INFO: Color32 = Color32::from_rgb(0x6A, 0xA8, 0xE8);
pub const MUTED: Color32 = Color32::from_rgb(0x8A, 0x8A, 0x8A);
/// Smallest height of anything a cashier taps.
pub const TARGET: f32 = 44.0;

/// Large text and touch-sized controls.
pub fn apply(ctx: &egui::Context) {
    ctx.global_style_mut(|style| {
        style.text_styles = [
            (TextStyle::Heading, FontId::proportional(30.0)),
            (TextStyle::Body, FontId::proportional(20.0)),
            (TextStyle::Button, FontId::proportional(20.0)),
            (TextStyle::Monospace, FontId::monospace(20.0)),
            (TextStyle::Small, FontId::proportional(15.0)),
        ]
        .into();
        style.spacing.interact_size.y = TARGET;
        style.spacing.button_padding = egui::vec2(14.0, 8.0);
        style.spacing.item_spacing = egui::vec2(10.0, 8.0);
        // A blinking cursor repaints the whole window twice a second, forever: under software
        // rendering on a till PC that alone costs a fifth of a core. The scan line is always
        // focused, so a steady cursor says the same thing for free.
        style.visuals.text_cursor.blink = false;
    });
}

/// A button at least [`TARGET`] tall.
pub fn big_button(ui: &mut egui::Ui, text: impl Into<egui::WidgetText>) -> egui::Response {
    ui.add(egui::Button::new(text).min_size(egui::vec2(TARGET * 2.0, TARGET)))
}

fn tab(ui: &mut egui::Ui, app: &mut TillApp, screen: Screen, label: &str) {
    if ui
        .add(
            egui::Button::selectable(app.screen == screen, label)
                .min_size(egui::vec2(TARGET * 2.5, TARGET)),
        )
        .clicked()
    {
        app.go(screen);
    }
}

pub fn top_bar(app: &mut TillApp, ui: &mut egui::Ui) {
    egui::Panel::top("top").show(ui, |ui| {
        ui.horizontal(|ui| {
            let title = app
                .program
                .as_ref()
                .map_or("Tillpass".to_owned(), |p| p.name.clone());
            ui.label(RichText::new(title).heading().strong());
            ui.separator();
            tab(ui, app, Screen::Cashier, "Cashier  F1");
            tab(ui, app, Screen::Enrol, "Enrol  F2");
            tab(ui, app, Screen::Manager, "Manager  F10");
            let label = if app.customer_display {
                "Customer display on  F9"
            } else {
                "Customer display  F9"
            };
            if ui
                .add(
                    egui::Button::selectable(app.customer_display, label)
                        .min_size(egui::vec2(TARGET * 2.5, TARGET)),
                )
                .clicked()
            {
                app.customer_display = !app.customer_display;
            }
        });
    });
}

pub fn bottom_bar(app: &mut TillApp, ui: &mut egui::Ui) {
    egui::Panel::bottom("bottom").show(ui, |ui| {
        if let Some(m) = &app.message {
            let colour = match m.tone {
                Tone::Good => GOOD,
                Tone::Bad => BAD,
                Tone::Info => INFO,
            };
            ui.label(RichText::new(&m.text).size(22.0).color(colour).strong());
        }
        let keys = match app.screen {
            Screen::Cashier => "Enter scan/search/amount · F5 Earn · Up/Down pick reward · F6 Redeem · F8 Reverse last (PIN) · Esc Clear",
            Screen::Enrol => "Tab next field · Enter Enrol · F1 Cashier · Esc Clear",
            Screen::Manager => "Click a tier · filter by name or card · click a column to sort · F1 Cashier",
        };
        ui.horizontal(|ui| {
            ui.label(RichText::new(keys).small().color(MUTED));
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if let Some(stats) = &app.stats {
                    let status = format!("{} · {} members", stats.terminal_id, stats.members);
                    ui.label(RichText::new(status).small().color(MUTED));
                }
            });
        });
        // Its own row: an error can be long, and must never be drawn over anything.
        let (text, colour) = sync_line(&app.sync_status());
        ui.add(egui::Label::new(RichText::new(text).color(colour).strong()).wrap());
    });
}

/// The status bar's sync words: online or offline, what waits, the last sync, the last error.
pub fn sync_line(s: &crate::sync::worker::SyncStatus) -> (String, Color32) {
    if !s.configured {
        return (
            "Not connected to a server (works offline)".to_owned(),
            MUTED,
        );
    }
    let last = s.last_success.map_or_else(
        || "never synced".to_owned(),
        |t| format!("synced {} UTC", &t.to_string()[11..19]),
    );
    let waiting = match s.waiting {
        0 => "nothing waiting".to_owned(),
        1 => "1 change waiting".to_owned(),
        n => format!("{n} changes waiting"),
    };
    match (&s.last_error, s.online) {
        (None, _) => (format!("Online · {waiting} · {last}"), GOOD),
        (Some(e), true) => (format!("Sync refused: {e} · {waiting}"), BAD),
        (Some(e), false) => (format!("Offline · {waiting} · {last} · {e}"), BAD),
    }
}

/// The manager PIN dialog (reversal, manager screen, first PIN).
pub fn pin_dialog(app: &mut TillApp, ctx: &egui::Context) {
    let Some(prompt) = &mut app.pin_prompt else {
        return;
    };
    let (title, setting) = match prompt.purpose {
        PinPurpose::ReverseLast => ("Manager PIN to reverse the last transaction", false),
        PinPurpose::UnlockManager => ("Manager PIN", false),
        PinPurpose::SetManagerPin => ("Set the manager PIN (4 to 12 digits)", true),
    };
    let mut submit = false;
    let mut cancel = false;
    egui::Modal::new(egui::Id::unique("pin")).show(ctx, |ui| {
        ui.set_min_width(420.0);
        ui.heading(title);
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
            submit = big_button(ui, "OK").clicked() || enter;
            cancel = big_button(ui, "Cancel").clicked();
        });
    });
    if cancel {
        app.pin_prompt = None;
    } else if submit {
        app.submit_pin();
    }
}

/// The "scan from image" prompt: a picture's path (or drop the file on the window).
pub fn image_dialog(app: &mut TillApp, ctx: &egui::Context) {
    let Some(path) = &mut app.image_prompt else {
        return;
    };
    let mut submit = false;
    let mut cancel = false;
    egui::Modal::new(egui::Id::unique("scan-image")).show(ctx, |ui| {
        ui.set_min_width(560.0);
        ui.heading("Scan from image");
        ui.label("Type the path of a photo or screenshot with the member's QR code, or drop the file on the window.");
        let field = ui.add(egui::TextEdit::singleline(path).hint_text("/home/till/Pictures/pass.png").desired_width(520.0));
        field.widget_info(|| egui::WidgetInfo::labeled(egui::Role::TextInput, true, "Image path"));
        if !field.has_focus() {
            field.request_focus();
        }
        let enter = ui.input(|i| i.key_pressed(egui::Key::Enter));
        ui.horizontal(|ui| {
            submit = big_button(ui, "Read code").clicked() || enter;
            cancel = big_button(ui, "Cancel").clicked();
        });
    });
    if cancel {
        app.image_prompt = None;
    } else if submit {
        let path = app.image_prompt.take().unwrap_or_default();
        app.scan_image(std::path::PathBuf::from(path.trim()));
    }
}

/// On an empty store: offer demo data.
pub fn demo_offer(app: &mut TillApp, ctx: &egui::Context) {
    if let Some(done) = app.demo_progress {
        egui::Modal::new(egui::Id::unique("demo-progress")).show(ctx, |ui| {
            ui.heading("Loading demo members…");
            ui.label(format!("{done} members so far"));
        });
        return;
    }
    if !app.offer_demo {
        return;
    }
    let mut choice = None;
    egui::Modal::new(egui::Id::unique("demo")).show(ctx, |ui| {
        ui.heading("This till has no members yet");
        ui.label("Load demo data to try it out: 1,000 members with a year of purchases.");
        ui.horizontal(|ui| {
            if big_button(ui, "Load demo data").clicked() {
                choice = Some(true);
            }
            if big_button(ui, "Start empty").clicked() {
                choice = Some(false);
            }
        });
    });
    match choice {
        Some(true) => app.load_demo(1000),
        Some(false) => app.offer_demo = false,
        None => {}
    }
}

/// The tier badge: the tier's name on its colour.
pub fn tier_badge(ui: &mut egui::Ui, tier: &crate::domain::program::Tier) {
    let [r, g, b] = tier.rgb();
    let fill = Color32::from_rgb(r, g, b);
    let text = if u32::from(r) * 299 + u32::from(g) * 587 + u32::from(b) * 114 > 150_000 {
        Color32::BLACK
    } else {
        Color32::WHITE
    };
    egui::Frame::new()
        .fill(fill)
        .corner_radius(8.0)
        .inner_margin(egui::Margin::symmetric(12, 6))
        .show(ui, |ui| {
            ui.label(RichText::new(&tier.name).size(22.0).strong().color(text));
        });
}
