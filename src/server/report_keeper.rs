//! Keeps the chain report's records and totals current in the background, so a report finds
//! them made: after stored pushes (gathered for a moment, as the pass updater does) and every
//! few seconds otherwise. While tills push, it catches up a slice at a time and pauses nine
//! times as long after each, so a busy chain's records stay close behind its pushes and
//! ingest keeps its pace. Making them all again (a new program, a backlog touching about
//! every member) reads every entry, so it waits until tills have not pushed for a second,
//! and stops when they push again. A report still brings the records up to date itself
//! before it reads them; this task leaves it little to do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::AppState;
use super::db::DbError;
use super::report_records::{Pace, Refreshed};

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
        if let Err(e) = keep(&state).await {
            tracing::error!(error = %e, "keeping the chain report's records");
        }
        let _ = tokio::time::timeout(IDLE_LOOK, stored.changed()).await;
        tokio::time::sleep(GATHER).await;
    }
}

/// One turn: slices paced behind pushing tills until the records are current; what only
/// quiet tills allow (a remake, or the rest once they stop) after they stop.
async fn keep(state: &AppState) -> Result<(), DbError> {
    let activity = &state.activity;
    while activity.ingesting() {
        let started = Instant::now();
        match state.db.report_current(Pace::Slice).await? {
            Refreshed::Current => return Ok(()),
            Refreshed::Partly => activity.yield_to_ingest(started.elapsed()).await,
            Refreshed::RemakeLeft => break,
        }
    }
    activity.quiet().await;
    state
        .db
        .report_current(Pace::UntilPushes(activity))
        .await
        .map(drop)
}
