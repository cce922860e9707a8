//! The till's look: large type, 44 px targets, colours, and the widgets every screen uses.

use egui::{Color32, FontId, RichText, TextStyle};

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

/// A line of text that may wrap, left-aligned: in a column's justified layout a label's
/// wrapped lines are stretched to the column's width, with wide gaps between the words.
pub fn note(ui: &mut egui::Ui, text: impl Into<egui::WidgetText>) -> egui::Response {
    ui.with_layout(egui::Layout::top_down(egui::Align::Min), |ui| {
        ui.label(text)
    })
    .inner
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
