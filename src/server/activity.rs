//! What the server's background tasks (the pass updater, the report keeper) watch: a wake-up
//! after every push that stored something, and whether tills are pushing now, so background
//! work yields to ingest.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// While tills push, background work pauses this many times as long as it worked (a tenth of
/// the time).
pub const YIELD: u32 = 9;
/// How recent a push must be for tills to count as pushing.
const PUSHING: Duration = Duration::from_secs(1);

/// Pushes as background tasks see them.
pub struct Activity {
    /// When the last push that stored something was answered.
    last_push: Mutex<Option<Instant>>,
    /// Counts stored pushes; each task holds its own receiver, so each is woken.
    stored: watch::Sender<u64>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            last_push: Mutex::new(None),
            stored: watch::Sender::new(0),
        }
    }
}

impl Activity {
    /// Notes a push that stored entries or member records, and wakes every watcher.
    pub fn stored(&self) {
        *self
            .last_push
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        self.stored.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver whose `changed()` wakes after the next stored push.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.stored.subscribe()
    }

    /// How long until tills count as no longer pushing (none when they do not now).
    fn pushing_for(&self) -> Option<Duration> {
        self.last_push
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map(|at| PUSHING.saturating_sub(at.elapsed()))
            .filter(|left| !left.is_zero())
    }

    /// Whether tills pushed in the last second.
    pub fn ingesting(&self) -> bool {
        self.pushing_for().is_some()
    }

    /// Waits until tills have not pushed for a second.
    pub async fn quiet(&self) {
        while let Some(left) = self.pushing_for() {
            tokio::time::sleep(left).await;
        }
    }

    /// After `worked` of background work: while tills push, waits nine times as long, so the
    /// work takes at most a tenth of the time and ingest keeps its pace.
    pub async fn yield_to_ingest(&self, worked: Duration) {
        if self.ingesting() {
            tokio::time::sleep(worked * YIELD).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_watcher_wakes_after_a_stored_push() {
        let activity = Activity::default();
        let (mut a, mut b) = (activity.watch(), activity.watch());
        assert!(!activity.ingesting());
        activity.stored();
        assert!(activity.ingesting());
        a.changed().await.expect("the sender lives");
        b.changed().await.expect("the sender lives");
        assert!(!a.has_changed().expect("the sender lives"));
    }
}
