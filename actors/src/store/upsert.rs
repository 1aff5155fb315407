//! The checkpoint's bulk upserts of result rows and stream states: one
//! statement per table whatever the number of rows, the values passed as
//! column arrays and expanded by `unnest` (one plan, a handful of
//! parameters, no per-row statement text to build or parse).

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz};

use super::Result;
use crate::checkpoint::StreamRecord;
use crate::window::WindowRow;

/// The columns a result row is written to.
const ROW_COLUMNS: &str = "window_start, window_end, stream_id, active_viewers, chat_messages, \
    donations_cents, events, chat_chars, donations, viewer_joins, viewer_leaves, \
    unique_chatters, is_final, updated_at";

/// The rows bound by [`upsert_window_rows`] ($1–$12, `now` as $13), in
/// [`ROW_COLUMNS`] order.
const ROW_VALUES: &str =
    "SELECT w, w + interval '1 minute', s, av, cm, dc, ev, cc, dn, vj, vl, uc, f, $13 \
    FROM unnest($1::timestamptz[], $2::text[], $3::int8[], $4::int8[], $5::int8[], \
                $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], \
                $12::bool[]) AS t(w, s, av, cm, dc, ev, cc, dn, vj, vl, uc, f)";

/// The counters an upsert of a result row overwrites.
const ROW_UPDATES: &str = "active_viewers = excluded.active_viewers, \
    chat_messages = excluded.chat_messages, donations_cents = excluded.donations_cents, \
    events = excluded.events, chat_chars = excluded.chat_chars, \
    donations = excluded.donations, viewer_joins = excluded.viewer_joins, \
    viewer_leaves = excluded.viewer_leaves, unique_chatters = excluded.unique_chatters, \
    is_final = excluded.is_final, updated_at = excluded.updated_at";

/// Upserts `rows` into `stream_metrics_minute`, stamped `now`.
pub(super) fn upsert_rows(
    conn: &mut PgConnection,
    rows: &[WindowRow],
    now: DateTime<Utc>,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO stream_metrics_minute ({ROW_COLUMNS}) {ROW_VALUES} \
         ON CONFLICT (window_start, stream_id) DO UPDATE SET {ROW_UPDATES}"
    );
    upsert_window_rows(conn, &sql, &rows.iter().collect::<Vec<_>>(), now)
}

/// Runs `sql`, an upsert built from [`ROW_VALUES`], with `rows` bound as
/// column arrays and `now` as their `updated_at`.
fn upsert_window_rows(
    conn: &mut PgConnection,
    sql: &str,
    rows: &[&WindowRow],
    now: DateTime<Utc>,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&WindowRow) -> i64| rows.iter().map(|r| f(r)).collect::<Vec<i64>>();
    diesel::sql_query(sql)
        .bind::<Array<Timestamptz>, _>(rows.iter().map(|r| r.window_start).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            rows.iter()
                .map(|r| r.stream_id.as_str())
                .collect::<Vec<_>>(),
        )
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

/// Upserts the `stream_state` rows of `streams` (with the restore columns
/// and the newest window, which never moves back).
pub(super) fn upsert_states(
    conn: &mut PgConnection,
    topic: &str,
    streams: &[StreamRecord],
    now: DateTime<Utc>,
) -> Result<()> {
    if streams.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "INSERT INTO stream_state (stream_id, is_live, active_viewers, last_event_at, updated_at, \
             topic, partition, watermark, has_open_windows, latest_window_start) \
         SELECT s, l, av, le, $9, $10, p, wm, ow, lw \
           FROM unnest($1::text[], $2::bool[], $3::int8[], $4::timestamptz[], $5::int4[], \
                       $6::timestamptz[], $7::bool[], $8::timestamptz[]) \
                AS t(s, l, av, le, p, wm, ow, lw) \
         ON CONFLICT (stream_id) DO UPDATE SET \
             is_live = excluded.is_live, active_viewers = excluded.active_viewers, \
             last_event_at = excluded.last_event_at, updated_at = excluded.updated_at, \
             topic = excluded.topic, partition = excluded.partition, \
             watermark = excluded.watermark, has_open_windows = excluded.has_open_windows, \
             latest_window_start = GREATEST(stream_state.latest_window_start, \
                                            excluded.latest_window_start)",
    )
    .bind::<Array<Text>, _>(
        streams
            .iter()
            .map(|s| s.state.stream_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Bool>, _>(streams.iter().map(|s| s.state.is_live).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(
        streams
            .iter()
            .map(|s| s.state.active_viewers)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Timestamptz>>, _>(
        streams
            .iter()
            .map(|s| s.state.last_event_at)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Integer>, _>(streams.iter().map(|s| s.partition).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(
        streams.iter().map(|s| s.watermark).collect::<Vec<_>>(),
    )
    .bind::<Array<Bool>, _>(
        streams
            .iter()
            .map(|s| s.open_windows > 0)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Timestamptz>>, _>(
        streams.iter().map(|s| s.latest_window).collect::<Vec<_>>(),
    )
    .bind::<Timestamptz, _>(now)
    .bind::<Text, _>(topic)
    .execute(conn)?;
    Ok(())
}
