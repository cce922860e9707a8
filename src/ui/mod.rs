//! The till app (egui/eframe): cashier, enrol, customer display and manager screens.
//!
//! State lives in [`app::TillApp`]; each screen module only draws it and records what the user
//! asked for. All disk work goes to the [`worker`] thread.

pub mod app;
mod cashier;
mod customer;
mod enrol;
mod manager;
mod theme;
mod wallet;
pub mod worker;

pub use app::{Screen, TillApp};

/// Opens the till window on the store at `db`.
/// `launched` is when the process started; the app reports its first usable frame against it.
pub fn run(
    db: std::path::PathBuf,
    exports: std::path::PathBuf,
    actor: String,
    launched: std::time::Instant,
) -> eframe::Result {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Tillpass")
            .with_inner_size([1280.0, 740.0])
            .with_active(true)
            .with_min_inner_size([900.0, 600.0]),
        ..Default::default()
    };
    eframe::run_native(
        "Tillpass",
        options,
        Box::new(move |cc| {
            let app = TillApp::new(&cc.egui_ctx, db, exports, actor).report_startup(launched);
            Ok(Box::new(app))
        }),
    )
}
