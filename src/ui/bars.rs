//! The frame around every screen: the top bar (program, screens, customer display) and the
//! status bar (what just happened, the keys, the till, sync).

use egui::{Color32, RichText};

use super::action::{Action, Screen};
use super::keys::button_text;
use super::theme::{BAD, GOOD, INFO, MUTED, TARGET};
use crate::store::StoreStats;
use crate::sync::worker::SyncStatus;

/// How a status message reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Bad,
    Info,
}

/// The line at the bottom that says what just happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub tone: Tone,
}

/// The program's name, a tab per screen and the customer-display switch.
pub fn top_bar_ui(
    ui: &mut egui::Ui,
    title: &str,
    screen: Screen,
    customer_display: bool,
) -> Option<Action> {
    let mut action = None;
    egui::Panel::top("top").show(ui, |ui| {
        // One row at any width down to the window's smallest (900): the tabs at the right
        // keep their size, and the program's name takes what is left, shortened with "…" if
        // need be (a second row of tabs took the height a short screen's keypad needs).
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            let toggle = Action::ToggleCustomerDisplay;
            let label = if customer_display {
                button_text(&toggle).replacen("display", "display on", 1)
            } else {
                button_text(&toggle)
            };
            if toggle_ui(ui, customer_display, label) {
                action = Some(toggle);
            }
            for tab in [Screen::Manager, Screen::Enrol, Screen::Cashier] {
                let go = Action::Go(tab);
                if toggle_ui(ui, screen == tab, button_text(&go)) {
                    action = Some(go);
                }
            }
            ui.separator();
            ui.with_layout(egui::Layout::left_to_right(egui::Align::Center), |ui| {
                ui.add(egui::Label::new(RichText::new(title).heading().strong()).truncate());
            });
        });
    });
    action
}

fn toggle_ui(ui: &mut egui::Ui, selected: bool, label: String) -> bool {
    ui.add(egui::Button::selectable(selected, label).min_size(egui::vec2(TARGET * 2.5, TARGET)))
        .clicked()
}

/// The message line, the keys of this screen, the till and its sync status.
pub fn status_bar_ui(
    ui: &mut egui::Ui,
    message: Option<&Message>,
    legend: &str,
    stats: Option<&StoreStats>,
    sync: &SyncStatus,
) {
    egui::Panel::bottom("bottom").show(ui, |ui| {
        if let Some(m) = message {
            let colour = match m.tone {
                Tone::Good => GOOD,
                Tone::Bad => BAD,
                Tone::Info => INFO,
            };
            ui.label(RichText::new(&m.text).size(22.0).color(colour).strong());
        }
        // The till and its count at the right first; the legend wraps in the room left of it,
        // never under it.
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Min), |ui| {
            if let Some(stats) = stats {
                let members = match stats.members {
                    1 => "1 member".to_owned(),
                    n => format!("{n} members"),
                };
                let status = format!("{} · {members}", stats.terminal_id);
                ui.label(RichText::new(status).small().color(MUTED));
            }
            ui.with_layout(egui::Layout::left_to_right(egui::Align::Min), |ui| {
                ui.add(egui::Label::new(RichText::new(legend).small().color(MUTED)).wrap());
            });
        });
        // Its own row: an error can be long, and must never be drawn over anything.
        let (text, colour) = sync_line(sync);
        ui.add(egui::Label::new(RichText::new(text).color(colour).strong()).wrap());
    });
}

/// The status bar's sync words: online or offline, what waits, the last sync, the last error.
pub fn sync_line(s: &SyncStatus) -> (String, Color32) {
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
    if let Some(p) = s.catching_up {
        return (
            format!(
                "Catching up with the server: {:.0}% ({} of {} records)",
                p.fraction() * 100.0,
                p.at - p.start,
                p.end - p.start
            ),
            INFO,
        );
    }
    let aside = match s.quarantined {
        0 => String::new(),
        1 => " · 1 record set aside by sync (Manager, F10)".to_owned(),
        n => format!(" · {n} records set aside by sync (Manager, F10)"),
    };
    match (&s.last_error, s.online) {
        (None, _) if s.quarantined > 0 => (format!("Online · {waiting} · {last}{aside}"), BAD),
        (None, _) => (format!("Online · {waiting} · {last}"), GOOD),
        (Some(e), true) => (format!("Sync refused: {e} · {waiting}"), BAD),
        (Some(e), false) => (format!("Offline · {waiting} · {last} · {e}"), BAD),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::engine::PullProgress;

    #[test]
    fn a_catch_up_shows_how_far_it_has_come() {
        let status = SyncStatus {
            configured: true,
            online: true,
            catching_up: Some(PullProgress {
                start: 100,
                at: 450_100,
                end: 1_000_100,
            }),
            ..SyncStatus::default()
        };
        let (text, _) = sync_line(&status);
        assert_eq!(
            text,
            "Catching up with the server: 45% (450000 of 1000000 records)"
        );
        let (text, colour) = sync_line(&SyncStatus {
            quarantined: 2,
            ..status.clone()
        });
        assert!(text.contains("Catching up"), "progress first: {text}");
        let (text, colour_after) = sync_line(&SyncStatus {
            catching_up: None,
            quarantined: 2,
            ..status
        });
        assert!(text.contains("2 records set aside by sync"), "{text}");
        assert_ne!(colour, colour_after);
    }
}
