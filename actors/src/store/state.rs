//! The restorable window state, stored incrementally: each stream's small
//! state in its `stream_state` row, its presence set in `stream_viewers`,
//! the distinct chatters of its open windows in `window_chatter_chunks` (one
//! row per window and checkpoint that added chatters), and its
//! open windows' counters in their non-final `stream_metrics_minute` rows.
//! A checkpoint writes set-based increments (`unnest` arrays: one
//! statement per kind of change, never one per stream); a restore reads
//! the same tables back into the window model for a batch of streams.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, Integer, Text, Timestamptz};

use super::queries::MinuteRecord;
use super::schema::{
    stream_metrics_minute as smm, stream_state as ss, stream_viewers as sv,
    window_chatter_chunks as wc,
};
use super::upsert::WriteMode;
use super::{chunks, Result, STATEMENT_ROWS};
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
    // Each chunk's ids become one row; a statement carries whole chunks.
    let chatters = &inc.chatters_added;
    for r in statements_of_chunks(inc.chatter_chunk_ranges()) {
        diesel::sql_query(format!(
            "INSERT INTO window_chatter_chunks (stream_id, window_start, chunk, user_ids) \
             SELECT s, w, c, array_agg(u) \
             FROM unnest($1::text[], $2::timestamptz[], $3::int4[], $4::text[]) AS t(s, w, c, u) \
             GROUP BY s, w, c{skip_stored}"
        ))
        .bind::<Array<Text>, _>(&chatters.streams[r.clone()])
        .bind::<Array<Timestamptz>, _>(&inc.chatter_windows[r.clone()])
        .bind::<Array<Integer>, _>(&inc.chatter_chunks[r.clone()])
        .bind::<Array<Text>, _>(&chatters.users[r])
        .execute(conn)?;
    }
    for r in chunks(inc.closed_streams.len()) {
        diesel::sql_query(
            "DELETE FROM window_chatter_chunks WHERE (stream_id, window_start) IN \
             (SELECT * FROM unnest($1::text[], $2::timestamptz[]))",
        )
        .bind::<Array<Text>, _>(&inc.closed_streams[r.clone()])
        .bind::<Array<Timestamptz>, _>(&inc.closed_windows[r])
        .execute(conn)?;
    }
    Ok(())
}

/// Consecutive `ranges` joined into statements of at most
/// [`STATEMENT_ROWS`] entries (or one range, if longer: a chunk holds at
/// most `CHUNK_USERS`), never splitting a range.
fn statements_of_chunks(
    ranges: impl Iterator<Item = Range<usize>>,
) -> impl Iterator<Item = Range<usize>> {
    let mut ranges = ranges.peekable();
    std::iter::from_fn(move || {
        let mut statement = ranges.next()?;
        while let Some(r) = ranges
            .next_if(|r| r.start == statement.end && r.end - statement.start <= STATEMENT_ROWS)
        {
            statement.end = r.end;
        }
        Some(statement)
    })
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
        let stored_chunks: Vec<(String, DateTime<Utc>, i32, Vec<String>)> = wc::table
            .filter(wc::stream_id.eq_any(&with_open))
            .select((wc::stream_id, wc::window_start, wc::chunk, wc::user_ids))
            .load(conn)?;
        // Each window's chatters, and the number its next chunk takes.
        let mut by_window: HashMap<(String, DateTime<Utc>), (FastSet<Id>, i32)> = HashMap::new();
        for (stream, start, chunk, users) in stored_chunks {
            let (set, next) = by_window.entry((stream, start)).or_default();
            set.extend(users.into_iter().map(Id::from));
            *next = (*next).max(chunk.saturating_add(1));
        }
        for row in rows.into_iter().map(WindowRow::from) {
            let (chatters, chunks) = by_window
                .remove(&(row.stream_id.clone(), row.window_start))
                .unwrap_or_default();
            open.entry(row.stream_id.clone()).or_default().insert(
                row.window_start,
                MinuteAgg::from_row(&row, chatters, chunks),
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_join_whole_chunks_up_to_the_bound() {
        let ranges = [
            0..4_000,
            4_000..9_000,
            9_000..12_000,
            12_000..25_000,
            25_000..25_001,
        ];
        let statements: Vec<Range<usize>> = statements_of_chunks(ranges.iter().cloned()).collect();
        assert_eq!(
            statements,
            vec![0..9_000, 9_000..12_000, 12_000..25_000, 25_000..25_001]
        );
    }
}
