//! `stream_latest`: the newest window of every stream, maintained inside the
//! checkpoint transaction so `/metrics/latest` reads one row per stream
//! whatever the length of the history.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Text, Timestamptz};

use super::Result;
use crate::window::WindowRow;

/// One statement for the whole checkpoint: the newest changed window of
/// each stream, as parallel arrays. A row replaces the stored one only if
/// its window is at least as new, so replays and late rewrites of older
/// windows never move a stream's latest window backwards.
const UPSERT: &str = "
INSERT INTO stream_latest AS sl (stream_id, window_start, window_end, active_viewers,
    chat_messages, donations_cents, events, chat_chars, donations, viewer_joins,
    viewer_leaves, unique_chatters, is_final, updated_at)
SELECT u.stream_id, u.window_start, u.window_end, u.active_viewers,
       u.chat_messages, u.donations_cents, u.events, u.chat_chars, u.donations,
       u.viewer_joins, u.viewer_leaves, u.unique_chatters, u.is_final, $14
FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::bigint[], $5::bigint[],
            $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],
            $11::bigint[], $12::bigint[], $13::boolean[])
  AS u(stream_id, window_start, window_end, active_viewers, chat_messages, donations_cents,
       events, chat_chars, donations, viewer_joins, viewer_leaves, unique_chatters, is_final)
ON CONFLICT (stream_id) DO UPDATE SET
    window_start = excluded.window_start,
    window_end = excluded.window_end,
    active_viewers = excluded.active_viewers,
    chat_messages = excluded.chat_messages,
    donations_cents = excluded.donations_cents,
    events = excluded.events,
    chat_chars = excluded.chat_chars,
    donations = excluded.donations,
    viewer_joins = excluded.viewer_joins,
    viewer_leaves = excluded.viewer_leaves,
    unique_chatters = excluded.unique_chatters,
    is_final = excluded.is_final,
    updated_at = excluded.updated_at
WHERE excluded.window_start >= sl.window_start";

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
/// statement, in the caller's transaction. `now` is the rows' `updated_at`.
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
    if newest.is_empty() {
        return Ok(());
    }
    let rows: Vec<&WindowRow> = newest.into_values().collect();
    let col = |f: fn(&WindowRow) -> i64| rows.iter().map(|r| f(r)).collect::<Vec<i64>>();
    diesel::sql_query(UPSERT)
        .bind::<Array<Text>, _>(
            rows.iter()
                .map(|r| r.stream_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Timestamptz>, _>(rows.iter().map(|r| r.window_start).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(rows.iter().map(|r| r.window_end()).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(col(|r| r.active_viewers))
        .bind::<Array<BigInt>, _>(col(|r| r.chat_messages))
        .bind::<Array<BigInt>, _>(col(|r| r.donation_cents))
        .bind::<Array<BigInt>, _>(col(|r| r.events))
        .bind::<Array<BigInt>, _>(col(|r| r.chat_chars))
        .bind::<Array<BigInt>, _>(col(|r| r.donations))
        .bind::<Array<BigInt>, _>(col(|r| r.viewer_joins))
        .bind::<Array<BigInt>, _>(col(|r| r.viewer_leaves))
        .bind::<Array<BigInt>, _>(col(|r| r.unique_chatters))
        .bind::<Array<Bool>, _>(rows.iter().map(|r| r.is_final).collect::<Vec<_>>())
        .bind::<Timestamptz, _>(now)
        .execute(conn)?;
    Ok(())
}

/// Recomputes `stream_latest` from `stream_metrics_minute` in one
/// transaction; returns the number of streams.
pub fn rebuild_latest(conn: &mut PgConnection) -> Result<usize> {
    conn.transaction(|conn| {
        diesel::delete(super::schema::stream_latest::table).execute(conn)?;
        Ok(diesel::sql_query(REBUILD).execute(conn)?)
    })
}
