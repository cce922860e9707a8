//! The till app (egui/eframe): cashier, enrol, customer display and manager screens.
//!
//! Each screen owns its state and draws it with `ui(&mut self, ui) -> Option<Action>`; the
//! [`Action`]s the screens, bars and dialogs return are applied in one place,
//! [`TillApp::act`]. All disk, network and printing work goes to the [`worker`] threads; the
//! frame only reads state.

pub mod action;
pub mod app;
mod bars;
pub mod cashier;
mod customer;
pub mod dialog;
mod enrol;
mod fonts;
pub mod insights;
mod jobs;
mod keys;
pub mod manager;
pub mod member;
mod theme;
mod wallet;
pub mod worker;

pub use action::{Action, Screen};
pub use app::TillApp;
pub use bars::{Message, Tone};
pub use dialog::{Dialog, PinPrompt, PinPurpose, WalletDialog};

/// Opens the till window on the store at `db`.
/// `launched` is when the process started; the app reports its first usable frame against it.
pub fn run(
    db: std::path::PathBuf,
    exports: std::path::PathBuf,
    actor: String,
    launched: std::time::Instant,
    pos_listen: Option<std::net::SocketAddr>,
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
            fonts::load_fallbacks(&cc.egui_ctx);
            let mut app = TillApp::new(&cc.egui_ctx, db, exports, actor).report_startup(launched);
            if let Some(listen) = pos_listen {
                app = app.serve_pos(listen);
            }
            Ok(Box::new(app))
        }),
    )
}
