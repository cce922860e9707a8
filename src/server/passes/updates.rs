//! Keeping passes live, in two background tasks that never touch the push path:
//!
//! - the **updater** follows `server_seq` from a durable cursor: for each member with passes
//!   whose entries or record changed, it recomputes what each pass shows; a pass whose
//!   fingerprint changed gets a new tag and pushes queued to its devices (and Google), and the
//!   cursor moves, all in one transaction. A crash replays from the cursor; nothing is lost.
//! - the **sender** takes due pushes from the queue (`pass_pushes`), coalesced per device and
//!   pass while pending, and sends them; failures back off, 410 forgets the device.

use std::sync::Arc;
use std::time::Duration;

use super::PassService;
use super::apns::Outcome;
use super::content::content;
use super::records::{Channel, PassChange, QueuedPush, Settled};
use crate::domain::Timestamp;
use crate::server::AppState;
use crate::server::activity::YIELD;
use crate::server::db::{Db, DbError};

/// Sequence numbers the updater looks at per transaction.
const BATCH: i64 = 20_000;
/// Pushes the sender takes at a time (sent concurrently over one HTTP/2 connection).
const SEND_BATCH: usize = 256;
/// The longest wait between two retries of a push.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How long the updater lets changes gather after being woken (part of a pass's update delay).
const GATHER: Duration = Duration::from_millis(250);
/// How often the tasks look even when nothing woke them (a missed wake-up costs this much).
const IDLE_LOOK: Duration = Duration::from_secs(5);

fn now() -> Timestamp {
    Timestamp::from(std::time::SystemTime::now())
}

/// The wait before attempt `attempts + 1`: 1 s doubling to an hour, or longer if asked.
pub fn backoff(attempts: i64, asked: Option<Duration>) -> Duration {
    let shift = u32::try_from(attempts.clamp(0, 12)).unwrap_or(12);
    let doubling = Duration::from_secs(1u64 << shift).min(MAX_BACKOFF);
    asked.map_or(doubling, |a| a.max(doubling))
}

/// Starts the updater and the sender on the current runtime (for a state with passes).
pub fn spawn(state: Arc<AppState>) {
    tokio::spawn(updater(Arc::clone(&state)));
    tokio::spawn(sender(state));
}

async fn updater(state: Arc<AppState>) {
    let Some(service) = state.passes.clone() else {
        return;
    };
    let mut stored = state.activity.watch();
    loop {
        let started = std::time::Instant::now();
        match catch_up(&service, &state.db).await {
            Ok(0) => {}
            Ok(_) => service.queued.notify_one(),
            Err(e) => tracing::error!(error = %e, "pass updater"),
        }
        let worked = started.elapsed();
        let _ = tokio::time::timeout(IDLE_LOOK, stored.changed()).await;
        // Changes that come in a burst are looked at together: a member's pass is recomputed
        // once per round however many of their entries arrived. While tills push, the rounds
        // spread out so the updater takes at most a tenth of the time.
        let gather = if state.activity.ingesting() {
            GATHER.max(worked * YIELD)
        } else {
            GATHER
        };
        tokio::time::sleep(gather).await;
    }
}

/// Looks at everything after the cursor, up to where the ledger was when it started (so a
/// round ends even while tills keep pushing); how many passes changed.
pub async fn catch_up(service: &PassService, db: &Db) -> Result<usize, DbError> {
    let google = service.setup.google.is_some();
    let mut changed = 0;
    let mut target = None;
    loop {
        let (after, touched) = db.pass_touched(BATCH).await?;
        let target = *target.get_or_insert(touched.last);
        if touched.upto <= after || after >= target {
            return Ok(changed);
        }
        let at = now();
        let mut changes = Vec::new();
        for member in &touched.members {
            let Some(source) = db.pass_source(*member).await? else {
                continue;
            };
            let mut newly_voided = false;
            for pass in db.passes_of(*member).await? {
                let content = content(&service.programs, &source, &pass.serial, at)?;
                let shown = super::shown(&content);
                if shown != pass.shown || content.voided != pass.voided {
                    newly_voided |= content.voided && !pass.voided;
                    changes.push(PassChange {
                        serial: pass.serial,
                        shown,
                        voided: content.voided,
                    });
                }
            }
            if newly_voided {
                // A replaced card (a lost phone?) or an erasure: old links stop working; the
                // member asks at the till for a new one.
                let revoked = db.pass_links_revoke(*member, at).await?;
                tracing::info!(member = %member, revoked, "pass voided; links revoked");
            }
        }
        let count = changes.len();
        if db
            .pass_apply(changes, after, touched.upto, google, at)
            .await?
        {
            changed += count;
        }
    }
}

async fn sender(state: Arc<AppState>) {
    let Some(service) = state.passes.clone() else {
        return;
    };
    loop {
        let wait = match send_due(&state).await {
            Ok(Some(next)) => Duration::from_millis(
                u64::try_from(next.saturating_sub(now().millis())).unwrap_or(0),
            )
            .min(IDLE_LOOK),
            Ok(None) => IDLE_LOOK,
            Err(e) => {
                tracing::error!(error = %e, "pass push sender");
                IDLE_LOOK
            }
        };
        if !wait.is_zero() {
            let _ = tokio::time::timeout(wait, service.queued.notified()).await;
        }
    }
}

/// Sends the pushes due now; when the next one is due (`None`: nothing queued later).
pub async fn send_due(state: &Arc<AppState>) -> Result<Option<i64>, DbError> {
    let db = &state.db;
    loop {
        let (due, next) = db.pass_due(now(), SEND_BATCH).await?;
        if due.is_empty() {
            return Ok(next);
        }
        let started = std::time::Instant::now();
        let mut sends = tokio::task::JoinSet::new();
        for push in due {
            let state = Arc::clone(state);
            sends.spawn(async move {
                let outcome = send(&state, &push).await;
                (push, outcome)
            });
        }
        let mut settled = Settled::default();
        while let Some(done) = sends.join_next().await {
            let (push, outcome) =
                done.map_err(|e| DbError::Internal(format!("a push task failed: {e}")))?;
            settle(&mut settled, push, outcome);
        }
        db.pass_settle(settled).await?;
        // While tills push, a tenth of the time goes to sending.
        state.activity.yield_to_ingest(started.elapsed()).await;
    }
}

async fn send(state: &AppState, push: &QueuedPush) -> Outcome {
    let Some(service) = &state.passes else {
        return Outcome::Dropped("passes are off".into());
    };
    match push.channel {
        Channel::Apns => match &service.apns {
            Some(apns) => apns.push(&push.target).await,
            None => Outcome::Dropped("APNs is not configured on this server".into()),
        },
        Channel::Google => match pass_now(state, service, &push.serial).await {
            Ok(Some(pass)) => match service.update_google(&pass).await {
                Ok(true) => Outcome::Delivered,
                Ok(false) => Outcome::Dropped("Google's API is not configured here".into()),
                Err(e) if e.is_retryable() => Outcome::Retry {
                    after: e.retry_after(),
                    reason: e.to_string(),
                },
                Err(e) => Outcome::Dropped(e.to_string()),
            },
            Ok(None) => Outcome::Dropped(format!("no pass {}", push.serial)),
            Err(e) => Outcome::Retry {
                after: None,
                reason: e.to_string(),
            },
        },
    }
}

/// What the pass `serial` shows now.
async fn pass_now(
    state: &AppState,
    service: &PassService,
    serial: &str,
) -> Result<Option<crate::pass::PassContent>, DbError> {
    let Some(row) = state.db.pass_row(serial.to_owned()).await? else {
        return Ok(None);
    };
    let Some(source) = state.db.pass_source(row.member_id).await? else {
        return Ok(None);
    };
    content(&service.programs, &source, serial, now()).map(Some)
}

fn settle(settled: &mut Settled, push: QueuedPush, outcome: Outcome) {
    match outcome {
        Outcome::Delivered => {
            tracing::debug!(serial = %push.serial, channel = push.channel.as_str(), "pass push sent");
            settled.done.push((push.id, push.generation));
        }
        Outcome::Gone => {
            tracing::info!(serial = %push.serial, "device gone; registration removed");
            settled.gone.push((push.id, push.target));
        }
        Outcome::Dropped(reason) => {
            tracing::error!(serial = %push.serial, channel = push.channel.as_str(), %reason, "pass update refused; dropped");
            settled.done.push((push.id, push.generation));
        }
        Outcome::Retry { after, reason } => {
            let wait = backoff(push.attempts, after);
            tracing::warn!(serial = %push.serial, channel = push.channel.as_str(), attempts = push.attempts + 1, retry_in_s = wait.as_secs(), %reason, "pass push failed");
            let due = Timestamp::from_millis(
                now()
                    .millis()
                    .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
            );
            settled.retry.push((push.id, due, reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_an_hour_and_honours_a_longer_ask() {
        assert_eq!(backoff(0, None), Duration::from_secs(1));
        assert_eq!(backoff(3, None), Duration::from_secs(8));
        assert_eq!(backoff(40, None), MAX_BACKOFF);
        assert_eq!(
            backoff(0, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(
            backoff(5, Some(Duration::from_secs(2))),
            Duration::from_secs(32)
        );
    }
}
