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

/// Upserts `rows` into `stream_metrics_minute`, stamped `now`.
pub(super) fn upsert_rows(
    conn: &mut PgConnection,
    rows: &[WindowRow],
    now: DateTime<Utc>,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&WindowRow) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    diesel::sql_query(
        "INSERT INTO stream_metrics_minute (window_start, window_end, stream_id, active_viewers, \
             chat_messages, donations_cents, events, chat_chars, donations, viewer_joins, \
             viewer_leaves, unique_chatters, is_final, updated_at) \
         SELECT w, w + interval '1 minute', s, av, cm, dc, ev, cc, dn, vj, vl, uc, f, $13 \
           FROM unnest($1::timestamptz[], $2::text[], $3::int8[], $4::int8[], $5::int8[], \
                       $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], \
                       $12::bool[]) AS t(w, s, av, cm, dc, ev, cc, dn, vj, vl, uc, f) \
         ON CONFLICT (window_start, stream_id) DO UPDATE SET \
             active_viewers = excluded.active_viewers, chat_messages = excluded.chat_messages, \
             donations_cents = excluded.donations_cents, events = excluded.events, \
             chat_chars = excluded.chat_chars, donations = excluded.donations, \
             viewer_joins = excluded.viewer_joins, viewer_leaves = excluded.viewer_leaves, \
             unique_chatters = excluded.unique_chatters, is_final = excluded.is_final, \
             updated_at = excluded.updated_at",
    )
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

/// Upserts the `stream_state` rows of `streams` (with the restore columns).
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
             topic, partition, watermark, open_windows) \
         SELECT s, l, av, le, $8, $9, p, wm, ow \
           FROM unnest($1::text[], $2::bool[], $3::int8[], $4::timestamptz[], $5::int4[], \
                       $6::timestamptz[], $7::int4[]) AS t(s, l, av, le, p, wm, ow) \
         ON CONFLICT (stream_id) DO UPDATE SET \
             is_live = excluded.is_live, active_viewers = excluded.active_viewers, \
             last_event_at = excluded.last_event_at, updated_at = excluded.updated_at, \
             topic = excluded.topic, partition = excluded.partition, \
             watermark = excluded.watermark, open_windows = excluded.open_windows",
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
    .bind::<Array<Integer>, _>(
        streams
            .iter()
            .map(|s| i32::try_from(s.open_windows).unwrap_or(i32::MAX))
            .collect::<Vec<_>>(),
    )
    .bind::<Timestamptz, _>(now)
    .bind::<Text, _>(topic)
    .execute(conn)?;
    Ok(())
}
