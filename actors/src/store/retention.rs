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

/// One batch of dead letters: the `$3` first by id after id `$1`, and of
/// those the ones received before `$2` deleted (by tuple id). Letters are
/// stamped by the database's clock (`now()`, their transaction's start)
/// as they are inserted, so id order is arrival order to within one
/// checkpoint transaction's length, and the old letters are a prefix of
/// the ids: a pass walks the primary key from the start and stops at the
/// first letter too young to go. A letter that transactions running side
/// by side left behind a younger one waits for the next pass. (A database
/// clock set back would leave letters stamped before the change ahead of
/// older ones; those then wait until the younger ones age out, by as long
/// as the clock was set back.) No index on `received_at` is needed, which
/// saves every dead letter an index entry at insert.
const DELETE_DEAD_LETTERS: &str = "
WITH batch AS MATERIALIZED (
    SELECT ctid, id, received_at < $2 AS old FROM dead_letters
    WHERE id > $1
    ORDER BY id
    LIMIT $3),
gone AS (
    DELETE FROM dead_letters
    WHERE ctid = ANY(ARRAY(SELECT ctid FROM batch WHERE old))
      AND received_at < $2
    RETURNING id)
SELECT (SELECT count(*) FROM gone)::bigint AS removed,
       (SELECT count(*) FROM batch WHERE NOT old)::bigint AS kept,
       (SELECT max(id) FROM batch) AS last";

/// What one batch of window rows removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
struct WindowBatch {
    /// Rows deleted.
    #[diesel(sql_type = BigInt)]
    removed: i64,
    /// The newest window start among them; the next batch starts there.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last: Option<DateTime<Utc>>,
}

/// What one batch of dead letters found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
struct LetterBatch {
    /// Letters deleted.
    #[diesel(sql_type = BigInt)]
    removed: i64,
    /// Letters of the batch too young to go.
    #[diesel(sql_type = BigInt)]
    kept: i64,
    /// The highest id the batch looked at.
    #[diesel(sql_type = Nullable<BigInt>)]
    last: Option<i64>,
}

/// What one batch did: rows removed, and where the next batch of the
/// same pass starts (`None`: the pass is done with the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step<C> {
    /// Rows deleted.
    pub removed: i64,
    /// The next batch's cursor.
    pub next: Option<C>,
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

/// Arrival time of the oldest dead letter kept, as retention sees it: that
/// of the first by id (see [`DELETE_DEAD_LETTERS`]).
pub fn oldest_dead_letter(conn: &mut PgConnection) -> Result<Option<DateTime<Utc>>> {
    Ok(dl::table
        .select(dl::received_at)
        .order(dl::id)
        .first(conn)
        .optional()?)
}

/// Deletes at most `limit` window rows with `from <= window_start <
/// cutoff`; the next batch starts at the newest of them, unless fewer than
/// `limit` were left.
pub fn delete_windows(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Step<DateTime<Utc>>> {
    let batch: WindowBatch = diesel::sql_query(DELETE_WINDOWS)
        .bind::<Timestamptz, _>(from)
        .bind::<Timestamptz, _>(cutoff)
        .bind::<BigInt, _>(limit)
        .get_result(conn)?;
    Ok(Step {
        removed: batch.removed,
        next: batch.last.filter(|_| batch.removed >= limit),
    })
}

/// Looks at the `limit` dead letters after id `after` and deletes those
/// received before `cutoff`; the next batch follows them, unless one of
/// them was too young to go or the table ended.
pub fn delete_dead_letters(
    conn: &mut PgConnection,
    after: i64,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Step<i64>> {
    let batch: LetterBatch = diesel::sql_query(DELETE_DEAD_LETTERS)
        .bind::<BigInt, _>(after)
        .bind::<Timestamptz, _>(cutoff)
        .bind::<BigInt, _>(limit)
        .get_result(conn)?;
    let whole_batch_old = batch.kept == 0 && batch.removed >= limit;
    Ok(Step {
        removed: batch.removed,
        next: batch.last.filter(|_| whole_batch_old),
    })
}
