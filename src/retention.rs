//! Retention (SPEC §8): a background task of `serve` that deletes window
//! rows older than `RETENTION` and dead letters older than
//! `DEAD_LETTER_RETENTION`, in bounded batches with a pause after each, so
//! checkpoints keep committing while a long history is trimmed. A pass runs
//! every `RETENTION_INTERVAL`, the first one interval after start.
//!
//! Cutoffs are counted by the database's clock, never this process's:
//! window rows back from the newest window (or the database's clock, if
//! that is earlier), so a clock far ahead of the data deletes nothing
//! recent and a backfill of old events into an empty table keeps its
//! newest `RETENTION`; dead letters back from the database's clock, which
//! stamps their arrival. Window rows are walked by start, dead letters by
//! id (their arrival order). (The oldest-row gauge is this process's clock
//! minus the oldest row kept.)

use std::time::{Duration, Instant};

use actix_web::web;
use chrono::{DateTime, Utc};
use streamstats_actors::metrics::Metrics;
use streamstats_actors::store::{self, retention, Pool, StoreError};

/// Rows per delete statement.
const BATCH: i64 = 10_000;
/// Least pause after a batch; the pause is twice as long as the batch took
/// (so retention uses at most about a third of one database connection's
/// time, and checkpoints keep most of the machine).
const MIN_PAUSE: Duration = Duration::from_millis(20);
/// Longest pause after a batch.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// How long rows are kept and how often retention runs.
#[derive(Debug, Clone, Copy)]
pub struct RetentionConfig {
    /// Window rows whose minute started this long before the newest
    /// window (or before now, if earlier) are deleted.
    pub windows: Duration,
    /// Dead letters received longer ago are deleted.
    pub dead_letters: Duration,
    /// Time between passes.
    pub interval: Duration,
}

/// A retention pass that stopped, named after the step.
#[derive(Debug, thiserror::Error)]
enum RetentionError {
    /// A statement of the pass failed.
    #[error("{table}: {source}")]
    Store {
        table: &'static str,
        source: StoreError,
    },
    /// The blocking pool refused the work.
    #[error("{table}: the blocking pool is gone")]
    Blocking { table: &'static str },
}

/// Spawns the retention task in the running actix System.
pub fn start(pool: Pool, metrics: Metrics, cfg: RetentionConfig) {
    log::info!(
        "Retention keeps window rows for {} and dead letters for {}; it runs every {}.",
        humantime::format_duration(cfg.windows),
        humantime::format_duration(cfg.dead_letters),
        humantime::format_duration(cfg.interval)
    );
    actix_rt::spawn(async move {
        // The first pass waits one interval: start-up (state reload and
        // catch-up) never competes with a large trim.
        loop {
            actix_rt::time::sleep(cfg.interval).await;
            let outcome = match pass(&pool, &metrics, cfg).await {
                Ok(()) => "completed",
                Err(e) => {
                    log::warn!("A retention pass stopped early ({e}); the next pass continues.");
                    "failed"
                }
            };
            metrics.retention_passes.with_label_values(&[outcome]).inc();
        }
    });
}

/// One pass over both tables.
async fn pass(pool: &Pool, metrics: &Metrics, cfg: RetentionConfig) -> Result<(), RetentionError> {
    let windows = Table {
        name: "stream_metrics_minute",
        oldest: retention::oldest_window,
        anchor: retention::window_anchor,
        start: |oldest| oldest,
        delete: retention::delete_windows,
    };
    let letters = Table {
        name: "dead_letters",
        oldest: retention::oldest_dead_letter,
        anchor: retention::dead_letter_anchor,
        start: |_| 0,
        delete: retention::delete_dead_letters,
    };
    let removed_windows = windows.trim(pool, metrics, cfg.windows).await?;
    let removed_letters = letters.trim(pool, metrics, cfg.dead_letters).await?;
    if removed_windows + removed_letters > 0 {
        log::info!(
            "Retention removed {removed_windows} window rows and {removed_letters} dead letters."
        );
    }
    Ok(())
}

/// `keep` before `anchor`, or `None` when that is before any time
/// Postgres holds.
fn cutoff(anchor: DateTime<Utc>, keep: Duration) -> Option<DateTime<Utc>> {
    chrono::TimeDelta::from_std(keep)
        .ok()
        .and_then(|keep| anchor.checked_sub_signed(keep))
}

/// A table's oldest row time.
type Oldest = fn(&mut diesel::PgConnection) -> store::Result<Option<DateTime<Utc>>>;
/// What a table's ages count back from.
type Anchor = fn(&mut diesel::PgConnection) -> store::Result<DateTime<Utc>>;
/// Where a pass over a table starts, given its oldest row's time.
type Start<C> = fn(DateTime<Utc>) -> C;
/// One batch from a cursor, with a cutoff and a row limit.
type Delete<C> =
    fn(&mut diesel::PgConnection, C, DateTime<Utc>, i64) -> store::Result<retention::Step<C>>;

/// One table retention trims, with its statements. `C` is the cursor its
/// batches advance: a window start, or a dead letter's id.
struct Table<C> {
    /// The table's name, as metric labels give it.
    name: &'static str,
    /// Its oldest row's time, for the gauge and to skip a pass with
    /// nothing old enough.
    oldest: Oldest,
    /// What its rows' ages count back from.
    anchor: Anchor,
    /// The first batch's cursor.
    start: Start<C>,
    /// One batch.
    delete: Delete<C>,
}

impl<C: Copy + Send + 'static> Table<C> {
    /// Deletes every row older than `keep` (see [`cutoff`]), batch by
    /// batch, then updates the oldest-row gauge. Returns the rows removed.
    async fn trim(
        &self,
        pool: &Pool,
        metrics: &Metrics,
        keep: Duration,
    ) -> Result<u64, RetentionError> {
        let anchor = blocking(pool, self.name, self.anchor).await?;
        let cutoff = cutoff(anchor, keep);
        let mut oldest = blocking(pool, self.name, self.oldest).await?;
        let mut cursor = match (oldest, cutoff) {
            (Some(first), Some(cutoff)) if first < cutoff => Some((self.start)(first)),
            _ => None,
        };
        let mut removed = 0u64;
        while let (Some(at), Some(cutoff)) = (cursor, cutoff) {
            let delete = self.delete;
            let began = Instant::now();
            let step =
                blocking(pool, self.name, move |conn| delete(conn, at, cutoff, BATCH)).await?;
            let n = u64::try_from(step.removed).unwrap_or(0);
            removed += n;
            metrics
                .retention_rows_removed
                .with_label_values(&[self.name])
                .inc_by(n);
            cursor = step.next;
            if cursor.is_some() {
                actix_rt::time::sleep((began.elapsed() * 2).clamp(MIN_PAUSE, MAX_PAUSE)).await;
            }
        }
        if removed > 0 {
            oldest = blocking(pool, self.name, self.oldest).await?;
        }
        let age = oldest.map_or(0.0, |t| {
            (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0
        });
        metrics
            .retention_oldest_row_age
            .with_label_values(&[self.name])
            .set(age);
        Ok(removed)
    }
}

/// Runs `f` with a pooled connection on the blocking pool.
async fn blocking<T, F>(pool: &Pool, table: &'static str, f: F) -> Result<T, RetentionError>
where
    T: Send + 'static,
    F: FnOnce(&mut diesel::PgConnection) -> store::Result<T> + Send + 'static,
{
    let pool = pool.clone();
    web::block(move || {
        let mut conn = pool.get()?;
        f(&mut conn)
    })
    .await
    .map_err(|_| RetentionError::Blocking { table })?
    .map_err(|source| RetentionError::Store { table, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid time")
            .with_timezone(&Utc)
    }

    #[test]
    fn the_cutoff_is_keep_before_the_anchor_or_nothing() {
        let day = Duration::from_secs(86_400);
        assert_eq!(
            cutoff(at("2025-12-01T00:00:00Z"), 30 * day),
            Some(at("2025-11-01T00:00:00Z"))
        );
        assert_eq!(cutoff(at("2025-12-01T00:00:00Z"), Duration::MAX), None);
    }
}
