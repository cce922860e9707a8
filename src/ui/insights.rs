//! The manager's insights: is the program working? The measures with their formulas, members
//! buying per month, points earned against redeemed, and retention by enrolment month as a
//! grid coloured by rate. Computed on the jobs thread (seconds on a big store, and scans must
//! not wait); this only draws the last report.

use egui::{Color32, RichText};
use egui_plot::{Bar, BarChart, Line, Plot, PlotPoints, Points};

use super::action::Action;
use super::theme::{GOOD, INFO, MUTED};
use crate::domain::Program;
use crate::domain::insights::{MonthRow, Report};

/// Periods a manager picks from, in days back from tomorrow.
pub const PERIODS: [(i64, &str); 3] = [(30, "30 days"), (90, "90 days"), (365, "12 months")];

/// The insights view's state.
#[derive(Default)]
pub struct InsightsView {
    /// Days back from tomorrow; `None` until first shown.
    pub days: Option<i64>,
    /// The last report, once computed.
    pub report: Option<Report>,
    /// A report is being computed.
    pub computing: bool,
    /// How far it has read the ledger: entries read, entries in all.
    pub read: Option<(u64, u64)>,
}

/// Red (0%) through amber to green (100% and above 60%: what good retention looks like).
fn rate_colour(rate: f64) -> Color32 {
    let t = (rate / 0.6).clamp(0.0, 1.0) as f32;
    let lerp = |a: u8, b: u8| (f32::from(a) + (f32::from(b) - f32::from(a)) * t) as u8;
    Color32::from_rgb(lerp(0x8E, 0x2E), lerp(0x2F, 0x9D), lerp(0x25, 0x4F))
}

impl InsightsView {
    /// The report could not be computed.
    pub fn failed(&mut self) {
        self.computing = false;
        self.read = None;
    }

    /// A new report arrived.
    pub fn arrived(&mut self, report: Report) {
        self.report = Some(report);
        self.computing = false;
        self.read = None;
    }

    /// The report being computed has read `read` of `total` ledger entries.
    pub fn progress(&mut self, read: u64, total: u64) {
        if self.computing {
            self.read = Some((read, total));
        }
    }

    /// Draws the view; returns the period to compute when the manager picks one (or first
    /// opens the view).
    pub fn ui(&mut self, ui: &mut egui::Ui, program: &Program) -> Option<Action> {
        let mut wanted = None;
        if self.days.is_none() {
            self.days = Some(PERIODS[1].0);
            wanted = self.days;
        }
        ui.horizontal(|ui| {
            ui.heading("Is the program working?");
            for (days, label) in PERIODS {
                if ui
                    .add(egui::Button::selectable(self.days == Some(days), label))
                    .clicked()
                    && self.days != Some(days)
                {
                    self.days = Some(days);
                    wanted = Some(days);
                }
            }
            if self.computing {
                ui.spinner();
                match self.read {
                    Some((read, total)) => {
                        let done = read as f32 / total.max(1) as f32;
                        ui.add(egui::ProgressBar::new(done).desired_width(200.0));
                        ui.label(
                            RichText::new(format!("Reading the ledger: {:.0}%", done * 100.0))
                                .color(MUTED),
                        );
                    }
                    None => {
                        ui.label(RichText::new("Computing…").color(MUTED));
                    }
                }
            }
        });
        if let Some(days) = wanted {
            self.computing = true;
            self.read = None;
            return Some(Action::Insights(days));
        }
        let Some(report) = &self.report else {
            return None;
        };
        ui.label(
            RichText::new(format!(
                "{} to {} (UTC, the last day not included)",
                report.from.date(),
                report.to.date()
            ))
            .color(MUTED),
        );
        egui::ScrollArea::vertical()
            .id_salt("insights")
            .show(ui, |ui| {
                ui.columns(2, |columns| {
                    measures_ui(&mut columns[0], program, report);
                    pictures_ui(&mut columns[1], program, report);
                });
            });
        None
    }
}

fn measures_ui(ui: &mut egui::Ui, program: &Program, report: &Report) {
    let width = ui.available_width();
    for (i, m) in report.measures.iter().enumerate() {
        let fill = if i % 2 == 0 {
            ui.visuals().faint_bg_color
        } else {
            Color32::TRANSPARENT
        };
        egui::Frame::new()
            .fill(fill)
            .inner_margin(egui::Margin::symmetric(6, 4))
            .show(ui, |ui| {
                ui.set_width(width - 12.0);
                ui.horizontal(|ui| {
                    ui.vertical(|ui| {
                        ui.set_width(width - 190.0);
                        ui.label(RichText::new(m.name).strong());
                        ui.label(RichText::new(&m.formula).small().color(MUTED));
                    });
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        ui.label(RichText::new(m.value_text(program)).size(20.0).strong());
                    });
                });
            });
    }
}

/// Month labels under the x axis (months are at 0, 1, 2, ...).
fn month_axis_for(
    months: &[MonthRow],
) -> impl Fn(egui_plot::GridMark, &std::ops::RangeInclusive<f64>) -> String + Clone + use<> {
    let labels: Vec<String> = months.iter().map(|m| m.month.clone()).collect();
    move |mark, _| {
        let i = mark.value.round();
        if (mark.value - i).abs() > 1e-6 || i < 0.0 {
            return String::new();
        }
        labels.get(i as usize).cloned().unwrap_or_default()
    }
}

/// A chart of the charted `months`, fixed in place: every month on the axis, answered or not
/// (with answers in one month only, a plot had centred on that point and the axis named
/// another month under it), each with half a month of room either side (the last month's
/// label ran off the chart's edge at 900 wide, and the bars' edges with it).
fn month_plot(id: &str, height: f32, months: &[MonthRow]) -> Plot<'static> {
    Plot::new(id)
        .height(height)
        .allow_zoom(false)
        .allow_drag(false)
        .allow_scroll(false)
        .include_x(-0.5)
        .include_x(months.len() as f64 - 0.5)
        .y_axis_min_width(48.0)
        .x_axis_formatter(month_axis_for(months))
}

/// The months the charts draw: the period's months but a first one it covers less than half
/// of (a 90-day period from the 31st drew that month's one day as a month in which nearly
/// nobody bought).
fn charted_months(report: &Report) -> &[MonthRow] {
    let start = report.from.date();
    let days = i32::from(start.month().length(start.year()));
    let covered = days - i32::from(start.day()) + 1;
    match &report.months[..] {
        [_, rest @ ..] if covered * 2 < days && !rest.is_empty() => rest,
        all => all,
    }
}

/// The points of a chart of the charted `months`, one a month with a value: x is the month's
/// place, the same as its label's on the month axis (`month_axis_for` of the same months).
fn series(months: &[MonthRow], value: impl Fn(&MonthRow) -> Option<f64>) -> Vec<[f64; 2]> {
    months
        .iter()
        .enumerate()
        .filter_map(|(i, m)| Some([i as f64, value(m)?]))
        .collect()
}

/// A chart's title with the key to its lines beside it (a legend inside the plot covers the
/// lines' ends, where the latest months are).
fn chart_title_ui(ui: &mut egui::Ui, title: &str, key: &[(&str, Color32)]) {
    ui.scope(|ui| {
        // Rows as tall as the text: a wrapping row is at least the interact height, which the
        // till sets to its big touch targets, and a key that wrapped stood a row's gap away.
        ui.spacing_mut().interact_size.y = ui.text_style_height(&egui::TextStyle::Body);
        ui.horizontal_wrapped(|ui| {
            ui.strong(title);
            for (name, colour) in key {
                key_item_ui(ui, name, *colour);
            }
        });
    });
}

/// The dot before a key's name.
const KEY_DOT: f32 = 12.0;

/// One line's key, its dot and its name placed as one piece: a row that wraps moves both to
/// the next line (placed apart, the dot could end one line and its name begin the next).
fn key_item_ui(ui: &mut egui::Ui, name: &str, colour: Color32) {
    let galley = egui::WidgetText::from(RichText::new(name).color(colour)).into_galley(
        ui,
        Some(egui::TextWrapMode::Extend),
        f32::INFINITY,
        egui::TextStyle::Body,
    );
    let gap = ui.spacing().item_spacing.x;
    let size = egui::vec2(
        KEY_DOT + gap + galley.size().x,
        galley.size().y.max(KEY_DOT),
    );
    let (rect, response) = ui.allocate_exact_size(size, egui::Sense::hover());
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, name));
    let painter = ui.painter();
    painter.circle_filled(
        egui::pos2(rect.left() + KEY_DOT / 2.0, rect.center().y),
        KEY_DOT / 2.0,
        colour,
    );
    let text_at = egui::pos2(
        rect.left() + KEY_DOT + gap,
        rect.center().y - galley.size().y / 2.0,
    );
    painter.galley(text_at, galley, colour);
}

fn pictures_ui(ui: &mut egui::Ui, program: &Program, report: &Report) {
    let months = charted_months(report);
    let tier_colours: Vec<(&str, Color32)> = program
        .tiers
        .iter()
        .map(|tier| {
            let [r, g, b] = tier.rgb();
            (tier.name.as_str(), Color32::from_rgb(r, g, b))
        })
        .collect();
    chart_title_ui(ui, "Members per tier, at each month's end", &tier_colours);
    month_plot("tiers-per-month", 170.0, months)
        .include_y(0.0)
        .show(ui, |plot| {
            for (t, (name, colour)) in tier_colours.iter().enumerate() {
                let points = series(
                    months,
                    |m| Some(m.tiers.get(t).copied().unwrap_or(0) as f64),
                );
                plot.line(Line::new(*name, PlotPoints::from(points)).color(*colour));
            }
        });
    ui.strong("Members buying, per month");
    let bars: Vec<Bar> = series(months, |m| Some(m.active_members as f64))
        .into_iter()
        .map(|[x, y]| Bar::new(x, y).width(0.6))
        .collect();
    month_plot("active-per-month", 170.0, months)
        .include_y(0.0)
        .show(ui, |plot| {
            plot.bar_chart(BarChart::new("Members buying", bars).color(GOOD));
        });
    chart_title_ui(
        ui,
        "Points earned and redeemed, per month",
        &[("Earned", GOOD), ("Redeemed", INFO)],
    );
    month_plot("points-per-month", 170.0, months)
        .include_y(0.0)
        .y_axis_formatter(|mark, _| {
            if mark.value.abs() >= 1000.0 {
                format!("{:.0}k", mark.value / 1000.0)
            } else {
                format!("{:.0}", mark.value)
            }
        })
        .show(ui, |plot| {
            let earned = series(months, |m| Some(m.points_earned as f64));
            let redeemed = series(months, |m| Some(m.points_redeemed as f64));
            plot.line(Line::new("Earned", PlotPoints::from(earned)).color(GOOD));
            plot.line(Line::new("Redeemed", PlotPoints::from(redeemed)).color(INFO));
        });
    ui.strong("Net promoter score, per month");
    let trend = series(months, MonthRow::nps);
    month_plot("nps-per-month", 140.0, months)
        .include_y(-100.0)
        .include_y(100.0)
        .show(ui, |plot| {
            // Dots as well as the line: a month alone has no line to draw.
            plot.points(Points::new("NPS", trend.clone()).radius(3.0).color(GOOD));
            plot.line(Line::new("NPS", trend).color(GOOD));
        });
    ui.strong("Retention by enrolment month");
    ui.label(
        RichText::new("Share of each month's new members buying in each month since")
            .small()
            .color(MUTED),
    );
    cohort_grid_ui(ui, report);
}

/// One row per enrolment month, one cell per month since, each coloured by its rate; the cells
/// share the width there is, so a year of months fits beside the measures.
fn cohort_grid_ui(ui: &mut egui::Ui, report: &Report) {
    const LABEL: f32 = 96.0;
    const GAP: f32 = 2.0;
    const HEIGHT: f32 = 26.0;
    let longest = report
        .cohorts
        .iter()
        .map(|c| c.active.len())
        .max()
        .unwrap_or(0);
    if longest == 0 {
        return;
    }
    let width = ui.available_width();
    let cell = ((width - LABEL) / longest as f32 - GAP).clamp(20.0, 48.0);
    let font = egui::TextStyle::Small.resolve(ui.style());
    let text_colour = ui.visuals().text_color();
    ui.scope(|ui| {
        ui.spacing_mut().item_spacing.y = GAP;
        // Column heads: months since enrolment (0 is the month they joined).
        let (head, _) = ui.allocate_exact_size(egui::vec2(width, 18.0), egui::Sense::hover());
        let painter = ui.painter_at(head);
        painter.text(
            head.left_center(),
            egui::Align2::LEFT_CENTER,
            "months since",
            font.clone(),
            MUTED,
        );
        for k in 0..longest {
            let x = head.left() + LABEL + k as f32 * (cell + GAP) + cell / 2.0;
            painter.text(
                egui::pos2(x, head.center().y),
                egui::Align2::CENTER_CENTER,
                k.to_string(),
                font.clone(),
                MUTED,
            );
        }
        for c in &report.cohorts {
            let (row, response) =
                ui.allocate_exact_size(egui::vec2(width, HEIGHT), egui::Sense::hover());
            let painter = ui.painter_at(row);
            painter.text(
                row.left_center(),
                egui::Align2::LEFT_CENTER,
                format!("{} ({})", c.month, c.members),
                font.clone(),
                text_colour,
            );
            let mut said = Vec::with_capacity(c.active.len());
            for k in 0..c.active.len() {
                let rate = c.rate(k).unwrap_or(0.0);
                let x = row.left() + LABEL + k as f32 * (cell + GAP);
                let rect =
                    egui::Rect::from_min_size(egui::pos2(x, row.top()), egui::vec2(cell, HEIGHT));
                painter.rect_filled(rect, 2.0, rate_colour(rate));
                let percent = (rate * 100.0).round();
                // A narrow cell drops the sign rather than spilling into the next.
                let text = if cell >= 38.0 {
                    format!("{percent:.0}%")
                } else {
                    format!("{percent:.0}")
                };
                painter.text(
                    rect.center(),
                    egui::Align2::CENTER_CENTER,
                    text,
                    font.clone(),
                    Color32::WHITE,
                );
                said.push(format!("{percent:.0}%"));
            }
            let label = format!("{} ({} members): {}", c.month, c.members, said.join(", "));
            response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, &label));
        }
    });
}

#[cfg(test)]
mod tests {
    use egui_kittest::Harness;
    use egui_kittest::kittest::Queryable as _;

    use super::*;

    #[test]
    fn each_charted_month_has_its_own_numbers_under_its_own_label() {
        let month = |name: &str, active| MonthRow {
            active_members: active,
            ..MonthRow::empty(name.to_owned(), 0)
        };
        // 90 days from the 31st of August: its one day of August is not charted.
        let from = crate::domain::Timestamp::from_millis(1_788_134_400_000);
        assert_eq!(from.date().to_string(), "2026-08-31");
        let report = Report {
            from,
            to: from.plus_days(90),
            measures: Vec::new(),
            months: vec![
                month("2026-08", 9),
                month("2026-09", 148),
                month("2026-10", 182),
                month("2026-11", 191),
            ],
            cohorts: Vec::new(),
            at_risk: Vec::new(),
        };
        let months = charted_months(&report);
        let active = series(months, |m| Some(m.active_members as f64));
        assert_eq!(active, vec![[0.0, 148.0], [1.0, 182.0], [2.0, 191.0]]);
        let axis = month_axis_for(months);
        let label = |x: f64| {
            axis(
                egui_plot::GridMark {
                    value: x,
                    step_size: 1.0,
                },
                &(0.0..=2.0),
            )
        };
        assert_eq!(
            (label(0.0), label(2.0)),
            ("2026-09".into(), "2026-11".into())
        );
    }

    /// In a narrow column the chart's key wraps under its title, a line of text below it,
    /// not a touch target's height (the till's interact height) away.
    #[test]
    fn a_wrapped_key_sits_right_under_its_title() {
        let key = [("Green", Color32::GREEN), ("Silver", Color32::GRAY)];
        let mut harness = Harness::builder()
            .with_size(egui::vec2(300.0, 200.0))
            .build_ui(|ui| {
                ui.spacing_mut().interact_size.y = 48.0;
                chart_title_ui(ui, "Members per tier, at each month's end", &key);
            });
        harness.run();
        let title = harness
            .get_by_label("Members per tier, at each month's end")
            .rect();
        let silver = harness.get_by_label("Silver").rect();
        assert!(silver.top() >= title.bottom(), "the key wrapped below");
        let gap = silver.top() - title.bottom();
        assert!(gap < 12.0, "{gap} px between the title and its key");
    }

    #[test]
    fn a_report_being_computed_shows_how_far_it_has_read() {
        let program = Program::demo();
        let mut view = InsightsView {
            days: Some(90),
            computing: true,
            ..InsightsView::default()
        };
        view.progress(450_000, 1_000_000);
        {
            let mut harness = Harness::new_ui(|ui| {
                view.ui(ui, &program);
            });
            // The spinner keeps asking for frames: draw a few, then look.
            harness.run_steps(3);
            harness.get_by_label_contains("Reading the ledger: 45%");
        }
        view.failed();
        view.progress(10, 20);
        assert_eq!(
            view.read, None,
            "a late progress reply after the end is dropped"
        );
    }
}
