//! Keeps the chain report's records and totals current in the background, so a report finds
//! them made: after stored pushes (gathered for a moment, as the pass updater does) and every
//! few seconds otherwise, once tills have not pushed for a second, and stopping when they push
//! again. Making a record reads all its member's entries, so during a bulk ingest (a new
//! chain, a catch-up) this work would take the cores ingest needs, and a chain with few
//! members would have most of its records made again after every push. A report still brings
//! them up to date itself before it reads them; this task leaves it little to do.

use std::sync::Arc;
use std::time::Duration;

use super::AppState;

/// How long the keeper lets pushes gather after being woken.
const GATHER: Duration = Duration::from_millis(250);
/// How often the keeper looks even when nothing woke it.
const IDLE_LOOK: Duration = Duration::from_secs(5);

/// Starts the keeper on the current runtime.
pub fn spawn(state: Arc<AppState>) {
    tokio::spawn(keeper(state));
}

async fn keeper(state: Arc<AppState>) {
    let mut stored = state.activity.watch();
    loop {
        state.activity.quiet().await;
        if let Err(e) = state.db.report_current(Some(&state.activity)).await {
            tracing::error!(error = %e, "keeping the chain report's records");
        }
        let _ = tokio::time::timeout(IDLE_LOOK, stored.changed()).await;
        tokio::time::sleep(GATHER).await;
    }
}
