//! The manager screen (behind the PIN): tiers with member counts, a virtualised table of the
//! members in a tier, recent activity and the program's rewards.

use egui::RichText;
use egui_extras::{Column, TableBuilder};

use super::app::TillApp;
use super::theme::{BAD, GOOD, MUTED, tier_badge};
use super::worker::PAGE_ROWS;
use crate::store::TierSort;

const ROW_HEIGHT: f32 = 30.0;

pub fn ui(app: &mut TillApp, ui: &mut egui::Ui) {
    if !app.manager.unlocked {
        ui.heading("Manager");
        ui.label(
            RichText::new("Enter the manager PIN to continue (F10 to try again).").color(MUTED),
        );
        return;
    }
    let Some(program) = app.program.clone() else {
        return;
    };
    egui::Panel::left("manager-side")
        .resizable(false)
        .exact_size(360.0)
        .show(ui, |ui| {
            ui.heading("Tiers");
            for (i, tier) in program.tiers.iter().enumerate() {
                let count = app.manager.counts.get(i).copied().unwrap_or(0);
                let selected = app.manager.tier == i;
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
                            crate::domain::program::TierMeasure::Points => "points",
                            crate::domain::program::TierMeasure::Spend => "spend",
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
                    app.manager.tier = i;
                    app.manager.reset_view();
                }
            }
            ui.separator();
            ui.heading("Rewards");
            for r in &program.rewards {
                let tier = program.tier(r.min_tier);
                ui.label(format!(
                    "{} · {} pts{}",
                    r.name,
                    r.cost,
                    if r.min_tier > 0 {
                        format!(" · {}+", tier.name)
                    } else {
                        String::new()
                    }
                ));
            }
            if !app.manager.overdrawn.is_empty() {
                ui.separator();
                ui.heading("Overdrawn by offline redemptions");
                ui.label(
                    RichText::new("Tills offline at the same time both spent these points. The goods are gone; follow up with the member.")
                        .small()
                        .color(MUTED),
                );
                for v in &app.manager.overdrawn {
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
            ui.separator();
            ui.heading("Recent activity");
            egui::ScrollArea::vertical()
                .id_salt("activity")
                .show(ui, |ui| {
                    for a in &app.manager.activity {
                        let colour = if a.entry.points >= 0 { GOOD } else { BAD };
                        ui.horizontal(|ui| {
                            ui.label(
                                RichText::new(
                                    a.entry.occurred_at.to_string()[5..16].replace('T', " "),
                                )
                                .small()
                                .color(MUTED),
                            );
                            ui.label(RichText::new(&a.name).small());
                            ui.label(
                                RichText::new(format!(
                                    "{} {:+}",
                                    a.entry.kind.label(),
                                    a.entry.points
                                ))
                                .small()
                                .color(colour),
                            );
                        });
                    }
                });
        });
    members_table(app, ui, &program);
}

fn sort_header(app: &mut TillApp, ui: &mut egui::Ui, label: &str, sort: TierSort) {
    let current = app.manager.sort() == sort;
    let arrow = match (current, app.manager.key(0).descending) {
        (true, true) => " (desc)",
        (true, false) => " (asc)",
        _ => "",
    };
    if ui
        .add(egui::Button::selectable(current, format!("{label}{arrow}")))
        .clicked()
    {
        let descending = if current {
            !app.manager.key(0).descending
        } else {
            sort != TierSort::Name
        };
        app.manager.sort = Some(sort);
        app.manager.descending = descending;
        app.manager.reset_view();
    }
}

fn members_table(app: &mut TillApp, ui: &mut egui::Ui, program: &crate::domain::Program) {
    let tier_index = app.manager.tier;
    let tier = program.tier(tier_index);
    let next = program.tiers.get(tier_index + 1);
    ui.horizontal(|ui| {
        ui.heading(format!("{} members", tier.name));
        let filter = ui.add(
            egui::TextEdit::singleline(&mut app.manager.filter)
                .hint_text("Filter by name or card")
                .desired_width(320.0),
        );
        filter.widget_info(|| {
            egui::WidgetInfo::labeled(egui::Role::TextInput, true, "Filter members")
        });
        if filter.changed() {
            app.manager.reset_view();
        }
        if let Some(count) = app.manager.count {
            ui.label(RichText::new(format!("{count} shown")).color(MUTED));
        }
    });
    let total = usize::try_from(app.manager.count.unwrap_or(0)).unwrap_or(0);
    let mut wanted = vec![0];
    let mut open = None;
    let distance_label = next.map_or("To next tier".to_owned(), |n| format!("To {}", n.name));
    ui.style_mut().wrap_mode = Some(egui::TextWrapMode::Truncate);
    TableBuilder::new(ui)
        .striped(true)
        .column(Column::initial(200.0).clip(true))
        .column(Column::initial(140.0))
        .column(Column::initial(200.0))
        .column(Column::initial(95.0))
        .column(Column::initial(110.0))
        .column(Column::remainder().at_least(130.0))
        .header(36.0, |mut header| {
            header.col(|ui| sort_header(app, ui, "Name", TierSort::Name));
            header.col(|ui| {
                ui.strong("Card");
            });
            header.col(|ui| sort_header(app, ui, "Qualifying", TierSort::Qualifying));
            header.col(|ui| {
                ui.strong(&distance_label);
            });
            header.col(|ui| sort_header(app, ui, "Balance", TierSort::Balance));
            header.col(|ui| sort_header(app, ui, "Last visit", TierSort::LastVisit));
        })
        .body(|body| {
            body.rows(ROW_HEIGHT, total, |mut row| {
                let index = row.index();
                let Some(r) = app.manager.row(index).cloned() else {
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
                row.col(|ui| {
                    ui.label(next.map_or("top tier".to_owned(), |n| {
                        (n.threshold - r.qualifying).max(0).to_string()
                    }));
                });
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
    wanted.sort_unstable();
    wanted.dedup();
    app.request_pages(wanted);
    if let Some(member) = open {
        app.open(member);
        app.go(super::app::Screen::Cashier);
    }
}
