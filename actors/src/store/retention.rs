//! Retention: bounded, batched deletes of window rows and dead letters older
//! than a cutoff. Each batch is one short statement of its own (no long
//! transaction, no lock held between batches), so checkpoints keep
//! committing while a large history is trimmed.

use chrono::{DateTime, Utc};
use diesel::dsl::{min, sql};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Timestamptz};

use super::schema::{dead_letters as dl, stream_metrics_minute as smm};
use super::Result;

/// The tables retention trims, as named in metric labels.
pub const TABLES: [&str; 2] = ["stream_metrics_minute", "dead_letters"];

/// One batch of window rows: the oldest `$3` final rows from `$1` on, older
/// than `$2`, found through the primary key and deleted by tuple id (an
/// open window's row is the state a restore continues from, so it stays). `$1` (the
/// newest time the previous batch removed) keeps each index scan from
/// walking the entries earlier batches already deleted. A stream whose
/// newest window was among them has no rows left: its
/// `latest_window_start` is cleared (found by primary key, per row
/// removed), so `/metrics/latest` stops showing and walking it.
const DELETE_WINDOWS: &str = "
WITH gone AS (
    DELETE FROM stream_metrics_minute
    WHERE ctid = ANY(ARRAY(
            SELECT ctid FROM stream_metrics_minute
            WHERE window_start >= $1 AND window_start < $2 AND is_final
            ORDER BY window_start
            LIMIT $3))
      AND window_start < $2 AND is_final
    RETURNING stream_id, window_start),
forgotten AS (
    UPDATE stream_state ss SET latest_window_start = NULL
    FROM gone g
    WHERE ss.stream_id = g.stream_id AND ss.latest_window_start = g.window_start)
SELECT count(*)::bigint AS removed, max(window_start) AS last FROM gone";

/// One batch of dead letters by `received_at`, like [`DELETE_WINDOWS`].
const DELETE_DEAD_LETTERS: &str = "
WITH gone AS (
    DELETE FROM dead_letters
    WHERE ctid = ANY(ARRAY(
            SELECT ctid FROM dead_letters
            WHERE received_at >= $1 AND received_at < $2
            ORDER BY received_at
            LIMIT $3))
      AND received_at < $2
    RETURNING received_at)
SELECT count(*)::bigint AS removed, max(received_at) AS last FROM gone";

/// What one batch removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct Batch {
    /// Rows deleted.
    #[diesel(sql_type = BigInt)]
    pub removed: i64,
    /// The newest time among them; the next batch starts there.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last: Option<DateTime<Utc>>,
}

/// Start of the oldest window row kept.
pub fn oldest_window(conn: &mut PgConnection) -> Result<Option<DateTime<Utc>>> {
    Ok(smm::table.select(min(smm::window_start)).first(conn)?)
}

/// [`window_anchor`]: the newest start is one probe of the primary key's
/// end; `LEAST` ignores it when the table is empty.
const WINDOW_ANCHOR: &str = "LEAST((SELECT max(window_start) FROM stream_metrics_minute), now())";

/// What window rows' ages count back from: the start of the newest
/// window, or the database's clock if that is earlier, so a clock far
/// ahead of the data deletes nothing recent.
pub fn window_anchor(conn: &mut PgConnection) -> Result<DateTime<Utc>> {
    Ok(diesel::select(sql::<Timestamptz>(WINDOW_ANCHOR)).get_result(conn)?)
}

/// What dead letters' ages count back from: the database's clock, which
/// stamps their `received_at`.
pub fn dead_letter_anchor(conn: &mut PgConnection) -> Result<DateTime<Utc>> {
    Ok(diesel::select(sql::<Timestamptz>("now()")).get_result(conn)?)
}

/// Arrival time of the oldest dead letter kept.
pub fn oldest_dead_letter(conn: &mut PgConnection) -> Result<Option<DateTime<Utc>>> {
    Ok(dl::table.select(min(dl::received_at)).first(conn)?)
}

/// Deletes at most `limit` window rows with `from <= window_start < cutoff`.
pub fn delete_windows(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Batch> {
    Ok(diesel::sql_query(DELETE_WINDOWS)
        .bind::<Timestamptz, _>(from)
        .bind::<Timestamptz, _>(cutoff)
        .bind::<BigInt, _>(limit)
        .get_result(conn)?)
}

/// Deletes at most `limit` dead letters with `from <= received_at < cutoff`.
pub fn delete_dead_letters(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Batch> {
    Ok(diesel::sql_query(DELETE_DEAD_LETTERS)
        .bind::<Timestamptz, _>(from)
        .bind::<Timestamptz, _>(cutoff)
        .bind::<BigInt, _>(limit)
        .get_result(conn)?)
}
