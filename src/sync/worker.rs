//! The app's sync worker: its own thread and its own store connection, a round every few
//! seconds (at once when the till writes something), exponential backoff with jitter while the
//! server is unreachable. The UI only reads the shared [`SyncStatus`].

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use rand::RngExt as _;

use super::engine::{PullProgress, reuse_client, sync_observed};
use crate::domain::Timestamp;
use crate::store::Store;

/// Between rounds when all is well.
const IDLE: Duration = Duration::from_secs(5);
/// The longest wait after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(120);

/// What the status bar shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStatus {
    /// A server is configured.
    pub configured: bool,
    /// The last round reached the server.
    pub online: bool,
    /// Entries and members waiting to be pushed.
    pub waiting: i64,
    pub last_success: Option<Timestamp>,
    /// The last failure, in words (cleared by a success).
    pub last_error: Option<String>,
    /// The server's program version installed here (the app reloads when it changes).
    pub program_version: i64,
    /// Pulled records set aside because this till cannot apply them.
    pub quarantined: i64,
    /// A long pull under way: how far it has come.
    pub catching_up: Option<PullProgress>,
    /// Members in the store, counted after a round that pulled member records (`None` before
    /// the first).
    pub members: Option<i64>,
}

/// Pulls of at least this many records show their progress.
const CATCH_UP_SHOWN: i64 = 20_000;

/// Handle to the running worker.
pub struct SyncWorker {
    status: Arc<Mutex<SyncStatus>>,
    nudge: Sender<()>,
    rounds: Arc<(Mutex<u64>, Condvar)>,
}

/// The delay before retry number `failures` (1, 2, ...): 1 s doubling to 2 minutes, each drawn
/// uniformly from its upper half so tills that failed together do not retry together.
pub fn backoff(failures: u32) -> Duration {
    let exp = Duration::from_secs(1u64 << failures.saturating_sub(1).min(7)).min(MAX_BACKOFF);
    let half = exp / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

impl SyncWorker {
    /// Starts syncing the store at `db`; `wake` asks the UI to repaint after each round.
    pub fn spawn(db: PathBuf, wake: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let status = Arc::new(Mutex::new(SyncStatus::default()));
        let rounds = Arc::new((Mutex::new(0), Condvar::new()));
        let (nudge, nudged) = mpsc::channel();
        let (shared, counted) = (Arc::clone(&status), Arc::clone(&rounds));
        let wake_after_round = move || {
            let (count, done) = &*counted;
            if let Ok(mut n) = count.lock() {
                *n += 1;
            }
            done.notify_all();
            wake();
        };
        std::thread::Builder::new()
            .name("tillpass-sync".into())
            .spawn(move || run(&db, &shared, &nudged, &wake_after_round))?;
        Ok(SyncWorker {
            status,
            nudge,
            rounds,
        })
    }

    /// The latest status.
    pub fn status(&self) -> SyncStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Something was written: sync soon rather than at the next tick.
    pub fn nudge(&self) {
        let _ = self.nudge.send(());
    }

    /// Starts a round now and blocks until a round has finished after this call (tests use it
    /// to wait for the worker without sleeping). Not for the UI thread.
    pub fn sync_now_and_wait(&self) {
        let (count, done) = &*self.rounds;
        let Ok(mut n) = count.lock() else { return };
        // The round under way may have started before this call; wait for the one after it.
        let target = *n + 2;
        self.nudge();
        while *n < target {
            n = match done.wait(n) {
                Ok(n) => n,
                Err(_) => return,
            };
            self.nudge();
        }
    }
}

fn run(db: &std::path::Path, shared: &Mutex<SyncStatus>, nudged: &Receiver<()>, wake: &dyn Fn()) {
    let mut store = match Store::open(db) {
        Ok(store) => store,
        Err(e) => {
            publish(shared, wake, |s| s.last_error = Some(e.to_string()));
            return;
        }
    };
    let mut failures = 0u32;
    let mut kept = None;
    loop {
        let now = Timestamp::from(SystemTime::now());
        let wait = match reuse_client(&store, &mut kept) {
            Err(_) => {
                publish(shared, wake, |s| *s = SyncStatus::default());
                IDLE
            }
            Ok(client) => {
                // A long catch-up says how far it has come; small pulls stay quiet.
                let result = sync_observed(&mut store, &client, now, &mut |p| {
                    if p.end - p.start >= CATCH_UP_SHOWN {
                        publish(shared, wake, |s| s.catching_up = Some(p));
                    }
                });
                let counters = store.sync_counters().unwrap_or_default();
                // Counted here, on this thread's connection: a million members take a while.
                let members = match &result {
                    Ok(report) if report.pulled_members > 0 => store.member_count().ok(),
                    _ => None,
                };
                let wait = match &result {
                    Ok(_) => {
                        failures = 0;
                        IDLE
                    }
                    Err(_) => {
                        failures = failures.saturating_add(1);
                        backoff(failures)
                    }
                };
                publish(shared, wake, |s| {
                    s.catching_up = None;
                    s.configured = true;
                    s.online = result.as_ref().map_or_else(|e| !e.is_offline(), |_| true);
                    s.waiting = counters.waiting_entries + counters.waiting_members;
                    s.last_success = counters.last_success;
                    s.last_error = result.err().map(|e| e.to_string());
                    s.program_version = counters.program_version;
                    s.quarantined = counters.quarantined;
                    s.members = members.or(s.members);
                });
                wait
            }
        };
        // While backing off, writes do not cut the wait short (they would defeat the backoff).
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match nudged.recv_timeout(left) {
                Ok(()) if failures == 0 => {
                    while nudged.try_recv().is_ok() {}
                    break;
                }
                Ok(()) => {}
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

fn publish(shared: &Mutex<SyncStatus>, wake: &dyn Fn(), change: impl FnOnce(&mut SyncStatus)) {
    if let Ok(mut s) = shared.lock() {
        change(&mut s);
    }
    wake();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        for failures in 1..20 {
            let exp = Duration::from_secs(1u64 << (failures - 1).min(7)).min(MAX_BACKOFF);
            let d = backoff(failures);
            assert!(d >= exp / 2 && d <= exp, "{failures}: {d:?}");
        }
        assert!(backoff(30) <= MAX_BACKOFF);
    }
}
