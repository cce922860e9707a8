//! The till's keys: one table says which key does what on which screen, and the buttons and
//! the legend take their labels from it.

use egui::Key;

use super::action::{Action, Screen};
use super::manager::ManagerView;

/// One key and what it does.
#[derive(Debug)]
pub struct Shortcut {
    pub key: Key,
    /// The key as printed on the keyboard.
    pub name: &'static str,
    /// What it does, as the legend and buttons say it.
    pub label: &'static str,
    pub action: Action,
    /// The screen it works on; `None` for every screen.
    pub screen: Option<Screen>,
}

const fn key(
    key: Key,
    name: &'static str,
    label: &'static str,
    action: Action,
    screen: Option<Screen>,
) -> Shortcut {
    Shortcut {
        key,
        name,
        label,
        action,
        screen,
    }
}

/// Every shortcut. While a dialog is open only Esc works (it closes the dialog).
pub const SHORTCUTS: &[Shortcut] = &[
    key(Key::F1, "F1", "Cashier", Action::Go(Screen::Cashier), None),
    key(Key::F2, "F2", "Enrol", Action::Go(Screen::Enrol), None),
    key(
        Key::F10,
        "F10",
        "Manager",
        Action::Go(Screen::Manager),
        None,
    ),
    key(
        Key::F9,
        "F9",
        "Customer display",
        Action::ToggleCustomerDisplay,
        None,
    ),
    key(Key::F5, "F5", "Earn", Action::Earn, Some(Screen::Cashier)),
    key(
        Key::ArrowDown,
        "Down",
        "Next reward",
        Action::NextReward,
        Some(Screen::Cashier),
    ),
    key(
        Key::ArrowUp,
        "Up",
        "Previous reward",
        Action::PreviousReward,
        Some(Screen::Cashier),
    ),
    key(
        Key::F6,
        "F6",
        "Redeem",
        Action::Redeem,
        Some(Screen::Cashier),
    ),
    key(
        Key::F7,
        "F7",
        "Sale, no member",
        Action::GuestSale,
        Some(Screen::Cashier),
    ),
    key(
        Key::F8,
        "F8",
        "Reverse last",
        Action::ReverseLast,
        Some(Screen::Cashier),
    ),
    key(Key::Escape, "Esc", "Clear", Action::Clear, None),
];

/// The shortcut for `action`.
fn shortcut(action: &Action) -> Option<&'static Shortcut> {
    SHORTCUTS.iter().find(|s| s.action == *action)
}

/// A button's text: what the action does and its key, e.g. "Earn  F5".
pub fn button_text(action: &Action) -> String {
    shortcut(action).map_or_else(String::new, |s| format!("{}  {}", s.label, s.name))
}

/// The legend under a screen (on the manager's, under its view): its own hints, then the keys
/// that work on it but are not on a button in the top bar.
pub fn legend(screen: Screen, manager: ManagerView) -> String {
    let hints = match (screen, manager) {
        (Screen::Cashier, _) => "Enter scan/search/amount",
        (Screen::Enrol, _) => "Tab next field · Enter Enrol",
        (Screen::Manager, ManagerView::Members) => {
            "Click a tier · filter by name or card · click a column to sort"
        }
        (Screen::Manager, ManagerView::Insights) => {
            "Pick a period · each measure shows its formula and numbers · scroll for the charts"
        }
    };
    let keys = SHORTCUTS
        .iter()
        .filter(|s| s.screen == Some(screen) || s.key == Key::Escape)
        .map(|s| format!("{} {}", s.name, s.label));
    std::iter::once(hints.to_owned())
        .chain(keys)
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The shortcuts pressed this frame, consumed so no widget sees them. With a dialog open only
/// Esc counts.
pub fn pressed(ctx: &egui::Context, screen: Screen, dialog_open: bool) -> Vec<Action> {
    SHORTCUTS
        .iter()
        .filter(|s| !dialog_open || s.key == Key::Escape)
        .filter(|s| s.screen.is_none_or(|only| only == screen))
        .filter(|s| ctx.input_mut(|i| i.consume_key(egui::Modifiers::NONE, s.key)))
        .map(|s| s.action.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_bound_once_per_screen() {
        for screen in [Screen::Cashier, Screen::Enrol, Screen::Manager] {
            let keys: Vec<Key> = SHORTCUTS
                .iter()
                .filter(|s| s.screen.is_none_or(|only| only == screen))
                .map(|s| s.key)
                .collect();
            let mut unique = keys.clone();
            unique.sort_by_key(|k| k.name());
            unique.dedup();
            assert_eq!(keys.len(), unique.len(), "{screen:?}");
        }
    }

    #[test]
    fn buttons_and_legend_read_from_the_table() {
        assert_eq!(button_text(&Action::Earn), "Earn  F5");
        assert_eq!(button_text(&Action::Go(Screen::Manager)), "Manager  F10");
        let legend = legend(Screen::Cashier, ManagerView::Members);
        assert!(legend.contains("F6 Redeem"), "{legend}");
        assert!(legend.ends_with("Esc Clear"), "{legend}");
        assert!(!legend.contains("F1 "), "top-bar keys are on their buttons");
        let insights = super::legend(Screen::Manager, ManagerView::Insights);
        assert!(insights.starts_with("Pick a period"), "{insights}");
        assert!(
            !insights.contains("tier"),
            "the member table's hints: {insights}"
        );
    }
}
