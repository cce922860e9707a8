//! What a manager reviews: refused pushes, flagged entries and double spends, grouped by till
//! and day, newest first (`tillpass-server audit`).

use std::fmt::Write as _;

use serde::Serialize;

use super::judge::day;
use crate::domain::{EntryId, Timestamp};
use crate::sync::protocol::DoubleSpend;

/// What an audit line reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// A push the server refused (nothing of it was stored).
    Refused,
    /// A stored entry an honest offline till could write but a manager should see.
    Flagged,
    /// A stored redemption that took a balance below zero.
    DoubleSpend,
}

impl AuditKind {
    fn label(self) -> &'static str {
        match self {
            AuditKind::Refused => "refused",
            AuditKind::Flagged => "flagged",
            AuditKind::DoubleSpend => "double spend",
        }
    }
}

/// One audit line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditItem {
    pub terminal_id: String,
    /// The UTC day it happened (`YYYY-MM-DD`): when the till made the entry, or when the push
    /// was refused.
    pub day: String,
    pub at: Timestamp,
    pub kind: AuditKind,
    pub entry_id: Option<EntryId>,
    /// The rule or flag's stable name.
    pub rule: String,
    pub detail: String,
}

impl AuditItem {
    /// A refused push, recorded at server time `at`.
    pub(super) fn refusal(
        at: i64,
        terminal_id: String,
        entry_id: Option<uuid::Uuid>,
        rule: String,
        detail: String,
    ) -> Self {
        let at = Timestamp::from_millis(at);
        AuditItem {
            terminal_id,
            day: day(at),
            at,
            kind: AuditKind::Refused,
            entry_id: entry_id.map(EntryId),
            rule,
            detail,
        }
    }

    /// A flagged entry, on the day the till made it.
    pub(super) fn flag(
        terminal_id: String,
        day: String,
        occurred_at: i64,
        entry_id: uuid::Uuid,
        flag: String,
        detail: String,
    ) -> Self {
        AuditItem {
            terminal_id,
            day,
            at: Timestamp::from_millis(occurred_at),
            kind: AuditKind::Flagged,
            entry_id: Some(EntryId(entry_id)),
            rule: flag,
            detail,
        }
    }

    /// A double spend, on the day the till made the redemption.
    pub(super) fn double_spend(d: DoubleSpend) -> Self {
        AuditItem {
            terminal_id: d.terminal_id.0,
            day: day(d.occurred_at),
            at: d.occurred_at,
            kind: AuditKind::DoubleSpend,
            entry_id: Some(d.entry_id),
            rule: "double_spend".to_owned(),
            detail: format!(
                "redeemed {} points for {} (card {}); balance after {}",
                -d.points, d.name, d.card, d.balance_after
            ),
        }
    }
}

/// Orders `items` for reading: newest day first, then by till, newest first within a group.
pub fn sort(items: &mut [AuditItem]) {
    items.sort_by(|a, b| {
        b.day
            .cmp(&a.day)
            .then_with(|| a.terminal_id.cmp(&b.terminal_id))
            .then_with(|| b.at.cmp(&a.at))
    });
}

/// The items (already [`sort`]ed) as text: a heading per till and day, a line per item.
pub fn render(items: &[AuditItem]) -> String {
    if items.is_empty() {
        return "nothing to review\n".to_owned();
    }
    let mut out = String::new();
    let mut group: Option<(&str, &str)> = None;
    for item in items {
        let key = (item.day.as_str(), item.terminal_id.as_str());
        if group != Some(key) {
            if group.is_some() {
                out.push('\n');
            }
            let _ = writeln!(out, "{}  till {}", item.day, item.terminal_id);
            group = Some(key);
        }
        let time = item.at.to_string();
        let clock = time.get(11..19).unwrap_or(&time);
        let entry = item
            .entry_id
            .map(|id| format!(" entry {id}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {clock}  {:<12} {:<24}{entry}: {}",
            item.kind.label(),
            item.rule,
            item.detail
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(terminal: &str, day: &str, at: i64, kind: AuditKind) -> AuditItem {
        AuditItem {
            terminal_id: terminal.into(),
            day: day.into(),
            at: Timestamp::from_millis(at),
            kind,
            entry_id: None,
            rule: "rule".into(),
            detail: "detail".into(),
        }
    }

    #[test]
    fn items_are_grouped_by_day_and_till_newest_first() {
        const DAY: i64 = 86_400_000;
        let mut items = vec![
            item("till-b", "1970-01-02", DAY + 5, AuditKind::Flagged),
            item("till-a", "1970-01-01", 10, AuditKind::Refused),
            item("till-a", "1970-01-02", DAY + 1, AuditKind::Refused),
            item("till-a", "1970-01-02", DAY + 9, AuditKind::DoubleSpend),
        ];
        sort(&mut items);
        let order: Vec<(&str, &str, i64)> = items
            .iter()
            .map(|i| (i.day.as_str(), i.terminal_id.as_str(), i.at.millis()))
            .collect();
        assert_eq!(
            order,
            vec![
                ("1970-01-02", "till-a", DAY + 9),
                ("1970-01-02", "till-a", DAY + 1),
                ("1970-01-02", "till-b", DAY + 5),
                ("1970-01-01", "till-a", 10),
            ]
        );
        let text = render(&items);
        assert_eq!(text.matches("till till-a").count(), 2, "{text}");
        assert_eq!(text.matches("till till-b").count(), 1, "{text}");
        assert!(
            text.starts_with("1970-01-02  till till-a\n  00:00:00  double spend"),
            "{text}"
        );
        assert_eq!(render(&[]), "nothing to review\n");
    }
}
