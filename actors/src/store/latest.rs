//! `stream_latest`: the newest window of every stream, maintained inside the
//! checkpoint transaction so `/metrics/latest` reads one row per stream
//! whatever the length of the history.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;

use super::upsert::upsert_latest_rows;
use super::Result;
use crate::window::WindowRow;

/// Recomputes the table from the window rows: for tools and tests that
/// write `stream_metrics_minute` directly (the migration does the same once).
const REBUILD: &str = "
INSERT INTO stream_latest
SELECT DISTINCT ON (stream_id)
       stream_id, window_start, window_end, active_viewers, chat_messages,
       donations_cents, events, chat_chars, donations, viewer_joins,
       viewer_leaves, unique_chatters, is_final, updated_at
FROM stream_metrics_minute
ORDER BY stream_id, window_start DESC";

/// Upserts the newest of `rows` per stream into `stream_latest`, as one
/// statement, in the caller's transaction (a row replaces the stored one
/// only if its window is at least as new). `now` is the rows' `updated_at`.
pub fn upsert_latest(
    conn: &mut PgConnection,
    rows: &[WindowRow],
    now: DateTime<Utc>,
) -> Result<()> {
    let mut newest: BTreeMap<&str, &WindowRow> = BTreeMap::new();
    for row in rows {
        let slot = newest.entry(&row.stream_id).or_insert(row);
        if row.window_start > slot.window_start {
            *slot = row;
        }
    }
    let rows: Vec<&WindowRow> = newest.into_values().collect();
    upsert_latest_rows(conn, &rows, now)
}

/// Recomputes `stream_latest` from `stream_metrics_minute` in one
/// transaction; returns the number of streams.
pub fn rebuild_latest(conn: &mut PgConnection) -> Result<usize> {
    conn.transaction(|conn| {
        diesel::delete(super::schema::stream_latest::table).execute(conn)?;
        Ok(diesel::sql_query(REBUILD).execute(conn)?)
    })
}
