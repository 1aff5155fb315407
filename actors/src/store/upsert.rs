//! The checkpoint's bulk writes of result rows and stream states: a few
//! statements per table whatever the number of rows, the values passed as
//! column arrays and expanded by `unnest` (one plan, a handful of
//! parameters, no per-row statement text to build or parse).
//!
//! The window model knows which rows a checkpoint already stored, so a
//! checkpoint inserts new rows and updates stored ones ([`WriteMode::AsTracked`]):
//! no conflict check, no tuple lock, no speculative-insertion record,
//! which were a fifth of the WAL with 100k streams. An update that finds
//! fewer rows than it expected, or an insert that finds one, is reported
//! as [`StoreError::Diverged`]; the writer then writes the same checkpoint
//! again with idempotent upserts ([`WriteMode::Upsert`]), which is also
//! what a checkpoint retried after an unknown outcome needs.

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz};

use super::{per_statement, Result, StoreError};
use crate::checkpoint::StreamRecord;
use crate::window::WindowRow;

/// How a checkpoint writes its rows and states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Inserts what the model says is new and updates what it says is
    /// stored; a difference is an error.
    AsTracked,
    /// Upserts everything (`ON CONFLICT DO UPDATE`): idempotent.
    Upsert,
}

/// The window rows bound by [`bind_rows`] ($1–$12, `now` as $13).
const ROWS: &str = "unnest($1::timestamptz[], $2::text[], $3::int8[], $4::int8[], $5::int8[], \
    $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::bool[]) \
    AS t(w, s, av, cm, dc, ev, cc, dn, vj, vl, uc, f)";

/// Inserts rows from [`ROWS`].
const INSERT_ROWS: &str = "INSERT INTO stream_metrics_minute (window_start, window_end, \
    stream_id, active_viewers, chat_messages, donations_cents, events, chat_chars, donations, \
    viewer_joins, viewer_leaves, unique_chatters, is_final, updated_at) \
    SELECT w, w + interval '1 minute', s, av, cm, dc, ev, cc, dn, vj, vl, uc, f, $13 FROM ";

/// The counters a rewrite of a result row sets.
const ROW_UPDATES: &str = "active_viewers = excluded.active_viewers, \
    chat_messages = excluded.chat_messages, donations_cents = excluded.donations_cents, \
    events = excluded.events, chat_chars = excluded.chat_chars, \
    donations = excluded.donations, viewer_joins = excluded.viewer_joins, \
    viewer_leaves = excluded.viewer_leaves, unique_chatters = excluded.unique_chatters, \
    is_final = excluded.is_final, updated_at = excluded.updated_at";

/// Updates stored rows from [`ROWS`], found through the primary key.
const UPDATE_ROWS: &str = "UPDATE stream_metrics_minute AS m SET active_viewers = t.av, \
    chat_messages = t.cm, donations_cents = t.dc, events = t.ev, chat_chars = t.cc, \
    donations = t.dn, viewer_joins = t.vj, viewer_leaves = t.vl, unique_chatters = t.uc, \
    is_final = t.f, updated_at = $13 FROM ";

/// The state rows bound by [`bind_states`] ($1–$8, `now` as $9, the topic as $10).
const STATES: &str = "unnest($1::text[], $2::bool[], $3::int8[], $4::timestamptz[], \
    $5::int4[], $6::timestamptz[], $7::bool[], $8::timestamptz[]) \
    AS t(s, l, av, le, p, wm, ow, lw)";

/// Inserts state rows from [`STATES`].
const INSERT_STATES: &str = "INSERT INTO stream_state (stream_id, is_live, active_viewers, \
    last_event_at, updated_at, topic, partition, watermark, has_open_windows, \
    latest_window_start) SELECT s, l, av, le, $9, $10, p, wm, ow, lw FROM ";

/// Updates stored state rows from [`STATES`]; the newest window never
/// moves back.
const UPDATE_STATES: &str = "UPDATE stream_state AS ss SET is_live = t.l, active_viewers = t.av, \
    last_event_at = t.le, updated_at = $9, topic = $10, partition = t.p, watermark = t.wm, \
    has_open_windows = t.ow, latest_window_start = GREATEST(ss.latest_window_start, t.lw) FROM ";

/// Writes `rows` into `stream_metrics_minute`, stamped `now`; `stored`
/// tells, row by row, whether it is already there.
pub(super) fn write_rows(
    conn: &mut PgConnection,
    rows: &[WindowRow],
    stored: &[bool],
    now: DateTime<Utc>,
    mode: WriteMode,
) -> Result<()> {
    match mode {
        WriteMode::Upsert => {
            let mut all: Vec<&WindowRow> = rows.iter().collect();
            in_key_order(&mut all);
            let sql = format!(
                "{INSERT_ROWS}{ROWS} ON CONFLICT (window_start, stream_id) DO UPDATE SET {ROW_UPDATES}"
            );
            bind_rows(conn, &sql, &all, now)?;
        }
        WriteMode::AsTracked => {
            let (mut old, mut new) = split(rows, stored);
            in_key_order(&mut old);
            in_key_order(&mut new);
            bind_rows(conn, &format!("{INSERT_ROWS}{ROWS}"), &new, now)?;
            let sql =
                format!("{UPDATE_ROWS}{ROWS} WHERE m.window_start = t.w AND m.stream_id = t.s");
            let updated = bind_rows(conn, &sql, &old, now)?;
            expect_updated("stream_metrics_minute", old.len(), updated)?;
        }
    }
    Ok(())
}

/// Writes the `stream_state` rows of `streams` (with the restore columns
/// and the newest window, which never moves back).
pub(super) fn write_states(
    conn: &mut PgConnection,
    topic: &str,
    streams: &[StreamRecord],
    now: DateTime<Utc>,
    mode: WriteMode,
) -> Result<()> {
    match mode {
        WriteMode::Upsert => {
            let mut all: Vec<&StreamRecord> = streams.iter().collect();
            states_in_key_order(&mut all);
            let sql = format!(
                "{INSERT_STATES}{STATES} ON CONFLICT (stream_id) DO UPDATE SET \
                 is_live = excluded.is_live, active_viewers = excluded.active_viewers, \
                 last_event_at = excluded.last_event_at, updated_at = excluded.updated_at, \
                 topic = excluded.topic, partition = excluded.partition, \
                 watermark = excluded.watermark, has_open_windows = excluded.has_open_windows, \
                 latest_window_start = GREATEST(stream_state.latest_window_start, \
                                                excluded.latest_window_start)"
            );
            bind_states(conn, &sql, topic, &all, now)?;
        }
        WriteMode::AsTracked => {
            let (mut old, mut new): (Vec<&StreamRecord>, Vec<&StreamRecord>) =
                streams.iter().partition(|s| s.stored);
            states_in_key_order(&mut old);
            states_in_key_order(&mut new);
            bind_states(conn, &format!("{INSERT_STATES}{STATES}"), topic, &new, now)?;
            let sql = format!("{UPDATE_STATES}{STATES} WHERE ss.stream_id = t.s");
            let updated = bind_states(conn, &sql, topic, &old, now)?;
            expect_updated("stream_state", old.len(), updated)?;
        }
    }
    Ok(())
}

/// Sorts `rows` by the primary key, `(window_start, stream_id)`: new
/// rows then go to the right end of that index and to neighbouring heap
/// pages, and rewrites visit the index and the heap in the order in which
/// they were written, instead of a random page per row.
fn in_key_order(rows: &mut [&WindowRow]) {
    rows.sort_unstable_by(|a, b| {
        (a.window_start, &a.stream_id).cmp(&(b.window_start, &b.stream_id))
    });
}

/// Sorts `streams` by the primary key of `stream_state`, for the same
/// reason as [`in_key_order`].
fn states_in_key_order(streams: &mut [&StreamRecord]) {
    streams.sort_unstable_by(|a, b| a.state.stream_id.cmp(&b.state.stream_id));
}

/// `rows` as (stored, new) by their `stored` flags; a row without a flag
/// counts as new (an insert, which a stored row refuses).
fn split<'a>(rows: &'a [WindowRow], stored: &[bool]) -> (Vec<&'a WindowRow>, Vec<&'a WindowRow>) {
    let mut old = Vec::new();
    let mut new = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if stored.get(i).copied().unwrap_or(false) {
            old.push(row);
        } else {
            new.push(row);
        }
    }
    (old, new)
}

/// An error unless an update of `expected` stored rows found them all.
fn expect_updated(table: &str, expected: usize, updated: usize) -> Result<()> {
    if updated == expected {
        Ok(())
    } else {
        Err(StoreError::Diverged(format!(
            "{table}: {updated} of {expected} rows the model had stored were found"
        )))
    }
}

/// Runs `sql`, built on [`ROWS`], with `rows` bound as column arrays and
/// `now` as their `updated_at`, a statement per [`per_statement`] slice;
/// returns the rows it wrote.
fn bind_rows(
    conn: &mut PgConnection,
    sql: &str,
    rows: &[&WindowRow],
    now: DateTime<Utc>,
) -> Result<usize> {
    per_statement(rows, |rows| {
        let col = |f: fn(&WindowRow) -> i64| rows.iter().map(|r| f(r)).collect::<Vec<i64>>();
        Ok(diesel::sql_query(sql)
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
            .execute(conn)?)
    })
}

/// Runs `sql`, built on [`STATES`], with `streams` bound as column arrays,
/// `now` and `topic`, a statement per [`per_statement`] slice; returns the
/// rows it wrote.
fn bind_states(
    conn: &mut PgConnection,
    sql: &str,
    topic: &str,
    streams: &[&StreamRecord],
    now: DateTime<Utc>,
) -> Result<usize> {
    per_statement(streams, |streams| {
        Ok(diesel::sql_query(sql)
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
            .execute(conn)?)
    })
}
