//! Reads of the result tables in the window model's own types, so tests and
//! tools compare the database with ground truth field by field.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::pg::PgConnection;
use diesel::prelude::*;

use super::queries::MinuteRecord;
use super::schema::{dead_letters, stream_metrics_minute as smm, stream_state as ss};
use super::Result;
use crate::window::{StreamStateRow, WindowRow};

impl From<MinuteRecord> for WindowRow {
    fn from(r: MinuteRecord) -> Self {
        WindowRow {
            window_start: r.window_start,
            stream_id: r.stream_id,
            active_viewers: r.active_viewers,
            events: r.events,
            viewer_joins: r.viewer_joins,
            viewer_leaves: r.viewer_leaves,
            chat_messages: r.chat_messages,
            chat_chars: r.chat_chars,
            unique_chatters: r.unique_chatters,
            donations: r.donations,
            donation_cents: r.donations_cents,
            is_final: r.is_final,
        }
    }
}

/// Every `stream_metrics_minute` row, ordered by `(window_start, stream_id)`.
pub fn load_rows(conn: &mut PgConnection) -> Result<Vec<WindowRow>> {
    let rows: Vec<MinuteRecord> = smm::table
        .select(MinuteRecord::as_select())
        .order((smm::window_start, smm::stream_id))
        .load(conn)?;
    Ok(rows.into_iter().map(WindowRow::from).collect())
}

/// Every `stream_state` row, ordered by `stream_id`.
pub fn load_stream_state(conn: &mut PgConnection) -> Result<Vec<StreamStateRow>> {
    let rows: Vec<(String, bool, i64, Option<DateTime<Utc>>)> = ss::table
        .select((
            ss::stream_id,
            ss::is_live,
            ss::active_viewers,
            ss::last_event_at,
        ))
        .order(ss::stream_id)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(stream_id, is_live, active_viewers, last_event_at)| StreamStateRow {
                stream_id,
                is_live,
                active_viewers,
                last_event_at,
            },
        )
        .collect())
}

/// Dead letters counted by reason label.
pub fn dead_letter_counts(conn: &mut PgConnection) -> Result<BTreeMap<String, u64>> {
    let counts: Vec<(String, i64)> = dead_letters::table
        .group_by(dead_letters::reason)
        .select((dead_letters::reason, count_star()))
        .load(conn)?;
    Ok(counts
        .into_iter()
        .map(|(reason, n)| (reason, u64::try_from(n).unwrap_or(0)))
        .collect())
}
