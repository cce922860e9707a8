//! The manager screen (behind the PIN): tiers with member counts, a virtualised table of the
//! members in a tier, recent activity and the program's rewards.

use std::collections::{HashMap, HashSet};

use egui::RichText;
use egui_extras::{Column, TableBuilder};

use super::action::Action;
use super::insights::InsightsView;
use super::theme::{BAD, GOOD, MUTED, TARGET, tier_badge};
use super::worker::{PAGE_ROWS, PageKey};
use crate::domain::Program;
use crate::domain::program::TierMeasure;
use crate::store::{ActivityRow, CauseTotal, MemberView, Quarantined, TierRow, TierSort};

const ROW_HEIGHT: f32 = 30.0;

/// What the manager screen shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ManagerView {
    /// Tiers, the member table, recent activity.
    #[default]
    Members,
    /// The program's measures and pictures.
    Insights,
}

/// The manager screen's state.
#[derive(Default)]
pub struct ManagerScreen {
    /// The PIN was given since the screen was entered.
    pub unlocked: bool,
    /// Members or insights.
    pub view: ManagerView,
    /// The measures, once computed.
    pub insights: InsightsView,
    /// Members per tier.
    pub counts: Vec<i64>,
    activity: Vec<ActivityRow>,
    /// Members overdrawn by offline redemptions at several tills.
    overdrawn: Vec<MemberView>,
    /// Pulled records set aside because this till cannot apply them.
    quarantined: Vec<Quarantined>,
    /// Points given to each cause.
    causes: Vec<CauseTotal>,
    /// The tier whose members the table lists.
    tier: usize,
    filter: String,
    sort: Option<TierSort>,
    descending: bool,
    /// Members in the selected tier matching the filter, once known.
    pub count: Option<i64>,
    pages: HashMap<PageKey, Vec<TierRow>>,
    requested: HashSet<PageKey>,
}

impl ManagerScreen {
    /// The sort in force: by qualifying measure, highest first, unless chosen otherwise.
    fn sort(&self) -> TierSort {
        self.sort.unwrap_or(TierSort::Qualifying)
    }

    fn key(&self, page: usize) -> PageKey {
        PageKey {
            tier: self.tier,
            filter: self.filter.trim().to_lowercase(),
            sort: self.sort(),
            descending: self.sort.is_none() || self.descending,
            page,
        }
    }

    /// The row at `index` of the current view, if its page has arrived.
    pub fn row(&self, index: usize) -> Option<&TierRow> {
        self.pages
            .get(&self.key(index / PAGE_ROWS))
            .and_then(|rows| rows.get(index % PAGE_ROWS))
    }

    /// Forgets fetched pages (after a change of tier, filter or order).
    fn reset_view(&mut self) {
        self.pages.clear();
        self.requested.clear();
        self.count = None;
    }

    /// The overview arrived.
    pub(super) fn overview(
        &mut self,
        counts: Vec<i64>,
        activity: Vec<ActivityRow>,
        overdrawn: Vec<MemberView>,
        quarantined: Vec<Quarantined>,
        causes: Vec<CauseTotal>,
    ) {
        self.counts = counts;
        self.activity = activity;
        self.overdrawn = overdrawn;
        self.quarantined = quarantined;
        self.causes = causes;
    }

    /// A page arrived; kept only if the view still shows it.
    pub(super) fn page(&mut self, key: PageKey, count: Option<i64>, rows: Vec<TierRow>) {
        if key == self.key(key.page) {
            if count.is_some() {
                self.count = count;
            }
            self.pages.insert(key, rows);
        }
    }

    /// A page request was overtaken; it may be asked for again.
    pub(super) fn page_skipped(&mut self, key: &PageKey) {
        self.requested.remove(key);
    }

    /// Draws the screen.
    pub fn ui(&mut self, ui: &mut egui::Ui, program: &Program) -> Option<Action> {
        if !self.unlocked {
            ui.heading("Manager");
            ui.label(
                RichText::new("Enter the manager PIN to continue (F10 to try again).").color(MUTED),
            );
            return None;
        }
        ui.horizontal(|ui| {
            for (view, label) in [
                (ManagerView::Members, "Members"),
                (ManagerView::Insights, "Insights"),
            ] {
                let button = egui::Button::selectable(self.view == view, label)
                    .min_size(egui::vec2(140.0, super::theme::TARGET));
                if ui.add(button).clicked() {
                    self.view = view;
                }
            }
        });
        if self.view == ManagerView::Insights {
            return self.insights.ui(ui, program);
        }
        let import = egui::Panel::left("manager-side")
            .resizable(false)
            .exact_size(360.0)
            // Tiers, rewards, causes and recent activity outgrow a till's screen: it scrolls.
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("manager-side")
                    .show(ui, |ui| self.side_ui(ui, program))
                    .inner
            })
            .inner;
        self.members_table_ui(ui, program).or(import)
    }

    /// Esc: the member table unfiltered again.
    pub(super) fn clear_filter(&mut self) {
        if !self.filter.is_empty() {
            self.filter.clear();
            self.reset_view();
        }
    }

    fn side_ui(&mut self, ui: &mut egui::Ui, program: &Program) -> Option<Action> {
        let import = super::theme::big_button(ui, "Import members from a file…")
            .clicked()
            .then_some(Action::AskImport);
        ui.heading("Tiers");
        for (i, tier) in program.tiers.iter().enumerate() {
            let count = self.counts.get(i).copied().unwrap_or(0);
            let selected = self.tier == i;
            let frame = egui::Frame::group(ui.style()).fill(if selected {
                ui.visuals().selection.bg_fill
            } else {
                ui.visuals().faint_bg_color
            });
            let response = frame
                .show(ui, |ui| {
                    ui.set_min_width(ui.available_width());
                    ui.horizontal(|ui| {
                        tier_badge(ui, tier);
                        ui.label(RichText::new(format!("{count} members")).strong());
                    });
                    let unit = match program.tier_measure {
                        TierMeasure::Points => "points",
                        TierMeasure::Spend => "spend",
                    };
                    ui.label(format!(
                        "from {} {unit} in {} days · ×{:.2}",
                        tier.threshold,
                        program.tier_window_days,
                        f64::from(tier.multiplier_hundredths) / 100.0
                    ));
                })
                .response
                .interact(egui::Sense::click());
            if response.clicked() && !selected {
                self.tier = i;
                self.reset_view();
            }
        }
        ui.separator();
        ui.heading("Rewards");
        for r in &program.rewards {
            let tier = program.tier(r.min_tier);
            let locked = if r.min_tier > 0 {
                format!(" · {}+", tier.name)
            } else {
                String::new()
            };
            ui.label(format!("{} · {} pts{locked}", r.name, r.cost));
        }
        if !program.causes.is_empty() {
            ui.separator();
            ui.heading("Causes");
            for cause in &program.causes {
                let given = self.causes.iter().find(|t| t.cause == cause.id);
                ui.label(format!(
                    "{} · {} pts from {} gifts",
                    cause.name,
                    given.map_or(0, |t| t.points),
                    given.map_or(0, |t| t.gifts)
                ));
            }
        }
        if !self.overdrawn.is_empty() {
            ui.separator();
            ui.heading("Overdrawn by offline redemptions");
            ui.label(
                RichText::new("Tills offline at the same time both spent these points. The goods are gone; follow up with the member.")
                    .small()
                    .color(MUTED),
            );
            for v in &self.overdrawn {
                ui.horizontal(|ui| {
                    ui.label(RichText::new(&v.member.name).strong());
                    ui.label(RichText::new(v.member.card.grouped()).color(MUTED));
                    ui.label(
                        RichText::new(format!("{} points", v.state.balance))
                            .color(BAD)
                            .strong(),
                    );
                });
            }
        }
        if !self.quarantined.is_empty() {
            ui.separator();
            ui.heading("Set aside by sync");
            ui.label(
                RichText::new("Records from the server this till cannot apply, retried after each program update; and entries made here after an older copy of this till's file was put back that the server's copy rules out.")
                    .small()
                    .color(MUTED),
            );
            for q in &self.quarantined {
                ui.label(RichText::new(&q.record).small().strong());
                ui.label(RichText::new(&q.reason).small().color(BAD));
            }
        }
        ui.separator();
        ui.heading("Recent activity");
        egui::ScrollArea::vertical()
            .id_salt("activity")
            .show(ui, |ui| {
                for a in &self.activity {
                    let colour = if a.entry.points >= 0 { GOOD } else { BAD };
                    ui.horizontal(|ui| {
                        ui.label(
                            RichText::new(a.entry.occurred_at.to_string()[5..16].replace('T', " "))
                                .small()
                                .color(MUTED),
                        );
                        ui.label(RichText::new(&a.name).small());
                        ui.label(
                            RichText::new(format!("{} {:+}", a.entry.kind.label(), a.entry.points))
                                .small()
                                .color(colour),
                        );
                    });
                }
            });
        import
    }

    fn sort_header_ui(&mut self, ui: &mut egui::Ui, label: &str, sort: TierSort) {
        let current = self.sort() == sort;
        let descending = self.key(0).descending;
        let arrow = match (current, descending) {
            (true, true) => " (desc)",
            (true, false) => " (asc)",
            _ => "",
        };
        if ui
            .add(egui::Button::selectable(current, format!("{label}{arrow}")))
            .clicked()
        {
            self.descending = if current {
                !descending
            } else {
                sort != TierSort::Name
            };
            self.sort = Some(sort);
            self.reset_view();
        }
    }

    fn members_table_ui(&mut self, ui: &mut egui::Ui, program: &Program) -> Option<Action> {
        let tier = program.tier(self.tier);
        let next = program.tiers.get(self.tier + 1);
        ui.horizontal(|ui| {
            ui.heading(format!("{} members", tier.name));
            let filter = ui.add(
                egui::TextEdit::singleline(&mut self.filter)
                    .hint_text("Filter by name or card")
                    .desired_width(320.0),
            );
            filter.widget_info(|| {
                egui::WidgetInfo::labeled(egui::Role::TextInput, true, "Filter members")
            });
            if filter.changed() {
                self.reset_view();
            }
            if let Some(count) = self.count {
                ui.label(RichText::new(format!("{count} shown")).color(MUTED));
            }
        });
        let total = usize::try_from(self.count.unwrap_or(0)).unwrap_or(0);
        let mut wanted = vec![0];
        let mut open = None;
        ui.style_mut().wrap_mode = Some(egui::TextWrapMode::Truncate);
        // Narrower than the table (a 1024-wide till), it scrolls sideways rather than cutting
        // off the balance and last visit.
        egui::ScrollArea::horizontal()
            .id_salt("members-table")
            .show(ui, |ui| {
                let table = TableBuilder::new(ui)
                    .striped(true)
                    // Sort buttons and plain labels on one line in the header.
                    .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
                    .column(Column::initial(200.0).clip(true))
                    .column(Column::initial(140.0))
                    .column(Column::initial(180.0));
                // The distance to the next tier; the top tier has none (a column of "top
                // tier" said nothing).
                let table = match next {
                    Some(_) => table.column(Column::initial(120.0)),
                    None => table,
                };
                table
                    .column(Column::initial(110.0))
                    .column(Column::initial(140.0).at_least(130.0))
                    .header(TARGET, |mut header| {
                        header.col(|ui| self.sort_header_ui(ui, "Name", TierSort::Name));
                        header.col(|ui| plain_header_ui(ui, "Card"));
                        header
                            .col(|ui| self.sort_header_ui(ui, "Qualifying", TierSort::Qualifying));
                        if let Some(n) = next {
                            header.col(|ui| plain_header_ui(ui, &format!("To {}", n.name)));
                        }
                        header.col(|ui| self.sort_header_ui(ui, "Balance", TierSort::Balance));
                        header.col(|ui| self.sort_header_ui(ui, "Last visit", TierSort::LastVisit));
                    })
                    .body(|body| {
                        body.rows(ROW_HEIGHT, total, |mut row| {
                            let index = row.index();
                            let Some(r) = self.row(index) else {
                                wanted.push(index / PAGE_ROWS);
                                row.col(|ui| {
                                    ui.label(RichText::new("…").color(MUTED));
                                });
                                return;
                            };
                            row.col(|ui| {
                                if ui.link(&r.name).clicked() {
                                    open = Some(r.member_id);
                                }
                            });
                            row.col(|ui| {
                                ui.label(r.card.grouped());
                            });
                            row.col(|ui| {
                                ui.label(r.qualifying.to_string());
                            });
                            if let Some(n) = next {
                                row.col(|ui| {
                                    ui.label((n.threshold - r.qualifying).max(0).to_string());
                                });
                            }
                            row.col(|ui| {
                                ui.label(r.balance.to_string());
                            });
                            row.col(|ui| {
                                ui.label(
                                    r.last_activity_at
                                        .map_or("never".to_owned(), |t| t.date().to_string()),
                                );
                            });
                        });
                    });
            });
        if let Some(member) = open {
            return Some(Action::Serve(member));
        }
        wanted.sort_unstable();
        wanted.dedup();
        let fetch: Vec<PageKey> = wanted
            .into_iter()
            .map(|page| self.key(page))
            .filter(|key| !self.pages.contains_key(key) && !self.requested.contains(key))
            .collect();
        self.requested.extend(fetch.iter().cloned());
        (!fetch.is_empty()).then_some(Action::FetchPages(fetch))
    }
}

/// A column title that does not sort, set like the sort buttons beside it (same inset, same
/// colour) so the header reads as one line.
fn plain_header_ui(ui: &mut egui::Ui, label: &str) {
    let inset = ui.spacing().button_padding.x;
    let colour = ui.visuals().widgets.inactive.text_color();
    egui::Frame::NONE
        .inner_margin(egui::Margin {
            left: inset as i8,
            ..egui::Margin::ZERO
        })
        .show(ui, |ui| ui.label(RichText::new(label).color(colour)));
}
