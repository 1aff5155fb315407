//! The restorable window state, stored incrementally: each stream's small
//! state in its `stream_state` row, its presence set in `stream_viewers`,
//! the distinct chatters of its open windows in `window_chatters`, and its
//! open windows' counters in their non-final `stream_metrics_minute` rows.
//! A checkpoint writes set-based increments (`unnest` arrays: one
//! statement per kind of change, never one per stream); a restore reads
//! the same tables back into the window model for a batch of streams.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, Text, Timestamptz};

use super::queries::MinuteRecord;
use super::schema::{
    stream_metrics_minute as smm, stream_state as ss, stream_viewers as sv, window_chatters as wc,
};
use super::upsert::WriteMode;
use super::{chunks, Result};
use crate::checkpoint::Increments;
use crate::event::Id;
use crate::hash::FastSet;
use crate::window::{MinuteAgg, StreamStateRow, StreamWindows, WindowRow, WINDOW};

/// Writes one checkpoint's presence-set and chatter increments. Added
/// viewers and chatters are new by construction (the model sends only
/// users absent from the stored sets), so they are plain inserts unless
/// `mode` is [`WriteMode::Upsert`], which skips rows already there.
pub(super) fn write_increments(
    conn: &mut PgConnection,
    inc: &Increments,
    mode: WriteMode,
) -> Result<()> {
    let skip_stored = match mode {
        WriteMode::AsTracked => "",
        WriteMode::Upsert => " ON CONFLICT DO NOTHING",
    };
    for r in chunks(inc.viewers_cleared.len()) {
        diesel::delete(sv::table.filter(sv::stream_id.eq_any(&inc.viewers_cleared[r])))
            .execute(conn)?;
    }
    let removed = &inc.viewers_removed;
    for r in chunks(removed.streams.len()) {
        diesel::sql_query(
            "DELETE FROM stream_viewers WHERE (stream_id, user_id) IN \
             (SELECT * FROM unnest($1::text[], $2::text[]))",
        )
        .bind::<Array<Text>, _>(&removed.streams[r.clone()])
        .bind::<Array<Text>, _>(&removed.users[r])
        .execute(conn)?;
    }
    let added = &inc.viewers_added;
    for r in chunks(added.streams.len()) {
        diesel::sql_query(format!(
            "INSERT INTO stream_viewers (stream_id, user_id) \
             SELECT * FROM unnest($1::text[], $2::text[]){skip_stored}"
        ))
        .bind::<Array<Text>, _>(&added.streams[r.clone()])
        .bind::<Array<Text>, _>(&added.users[r])
        .execute(conn)?;
    }
    let chatters = &inc.chatters_added;
    for r in chunks(chatters.streams.len()) {
        diesel::sql_query(format!(
            "INSERT INTO window_chatters (stream_id, window_start, user_id) \
             SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[]){skip_stored}"
        ))
        .bind::<Array<Text>, _>(&chatters.streams[r.clone()])
        .bind::<Array<Timestamptz>, _>(&inc.chatter_windows[r.clone()])
        .bind::<Array<Text>, _>(&chatters.users[r])
        .execute(conn)?;
    }
    for r in chunks(inc.closed_streams.len()) {
        diesel::sql_query(
            "DELETE FROM window_chatters WHERE (stream_id, window_start) IN \
             (SELECT * FROM unnest($1::text[], $2::timestamptz[]))",
        )
        .bind::<Array<Text>, _>(&inc.closed_streams[r.clone()])
        .bind::<Array<Timestamptz>, _>(&inc.closed_windows[r])
        .execute(conn)?;
    }
    Ok(())
}

/// The streams of `partitions` of `topic` that hold open windows: they are
/// restored on assignment so that idle finalization can close them.
pub(super) fn open_streams(
    conn: &mut PgConnection,
    topic: &str,
    partitions: &[i32],
) -> Result<Vec<String>> {
    Ok(ss::table
        .filter(ss::topic.eq(topic))
        .filter(ss::partition.eq_any(partitions))
        .filter(ss::has_open_windows)
        .select(ss::stream_id)
        .load(conn)?)
}

/// The stored state of `stream_ids`, as window models with their
/// partitions; streams never stored are absent.
pub fn load_streams(
    conn: &mut PgConnection,
    stream_ids: &[String],
) -> Result<Vec<(Option<i32>, StreamWindows)>> {
    if stream_ids.is_empty() {
        return Ok(Vec::new());
    }
    type StateTuple = (
        String,
        bool,
        i64,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Option<i32>,
        bool,
    );
    let states: Vec<StateTuple> = ss::table
        .filter(ss::stream_id.eq_any(stream_ids))
        .select((
            ss::stream_id,
            ss::is_live,
            ss::active_viewers,
            ss::last_event_at,
            ss::watermark,
            ss::partition,
            ss::has_open_windows,
        ))
        .load(conn)?;
    if states.is_empty() {
        return Ok(Vec::new());
    }
    let with_open: Vec<&String> = states.iter().filter(|s| s.6).map(|s| &s.0).collect();
    // Open windows end after the watermark: bound the scan of each
    // stream's rows by the earliest watermark, not by its whole history.
    let earliest = states
        .iter()
        .filter(|s| s.6)
        .filter_map(|s| s.4)
        .min()
        .map(|wm| wm - WINDOW);
    let mut open: HashMap<String, BTreeMap<DateTime<Utc>, MinuteAgg>> = HashMap::new();
    if !with_open.is_empty() {
        let mut query = smm::table
            .filter(smm::stream_id.eq_any(&with_open))
            .filter(smm::is_final.eq(false))
            .select(MinuteRecord::as_select())
            .into_boxed();
        if let Some(after) = earliest {
            query = query.filter(smm::window_start.gt(after));
        }
        let rows: Vec<MinuteRecord> = query.load(conn)?;
        let chatters: Vec<(String, DateTime<Utc>, String)> = wc::table
            .filter(wc::stream_id.eq_any(&with_open))
            .select((wc::stream_id, wc::window_start, wc::user_id))
            .load(conn)?;
        let mut by_window: HashMap<(String, DateTime<Utc>), FastSet<Id>> = HashMap::new();
        for (stream, start, user) in chatters {
            by_window
                .entry((stream, start))
                .or_default()
                .insert(Id::from(user));
        }
        for row in rows.into_iter().map(WindowRow::from) {
            let chatters = by_window
                .remove(&(row.stream_id.clone(), row.window_start))
                .unwrap_or_default();
            open.entry(row.stream_id.clone())
                .or_default()
                .insert(row.window_start, MinuteAgg::from_row(&row, chatters));
        }
    }
    let viewers: Vec<(String, String)> = sv::table
        .filter(sv::stream_id.eq_any(stream_ids))
        .select((sv::stream_id, sv::user_id))
        .load(conn)?;
    let mut sets: HashMap<String, FastSet<Id>> = HashMap::new();
    for (stream, user) in viewers {
        sets.entry(stream).or_default().insert(Id::from(user));
    }
    Ok(states
        .into_iter()
        .map(
            |(stream_id, is_live, active_viewers, last_event_at, watermark, partition, _)| {
                let state = StreamStateRow {
                    stream_id,
                    is_live,
                    active_viewers,
                    last_event_at,
                };
                let viewers = sets.remove(&state.stream_id).unwrap_or_default();
                let windows = open.remove(&state.stream_id).unwrap_or_default();
                let model = StreamWindows::restore(&state, watermark, viewers, windows);
                (partition, model)
            },
        )
        .collect())
}
