//! Reads of the result tables in the window model's own types, so tests and
//! tools compare the database with ground truth field by field.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::pg::PgConnection;
use diesel::prelude::*;

use super::schema::{dead_letters, stream_metrics_minute as smm, stream_state as ss};
use super::Result;
use crate::window::{StreamStateRow, WindowRow};

/// One `stream_metrics_minute` row as selected by [`WINDOW_ROW_COLUMNS`].
pub(super) type WindowRowColumns = (
    DateTime<Utc>,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    bool,
);

/// The columns of a [`WindowRow`], in [`WindowRowColumns`] order.
pub(super) const WINDOW_ROW_COLUMNS: (
    smm::window_start,
    smm::stream_id,
    smm::active_viewers,
    smm::events,
    smm::viewer_joins,
    smm::viewer_leaves,
    smm::chat_messages,
    smm::chat_chars,
    smm::unique_chatters,
    smm::donations,
    smm::donations_cents,
    smm::is_final,
) = (
    smm::window_start,
    smm::stream_id,
    smm::active_viewers,
    smm::events,
    smm::viewer_joins,
    smm::viewer_leaves,
    smm::chat_messages,
    smm::chat_chars,
    smm::unique_chatters,
    smm::donations,
    smm::donations_cents,
    smm::is_final,
);

/// The window-model row of selected columns.
pub(super) fn window_row(r: WindowRowColumns) -> WindowRow {
    WindowRow {
        window_start: r.0,
        stream_id: r.1,
        active_viewers: r.2,
        events: r.3,
        viewer_joins: r.4,
        viewer_leaves: r.5,
        chat_messages: r.6,
        chat_chars: r.7,
        unique_chatters: r.8,
        donations: r.9,
        donation_cents: r.10,
        is_final: r.11,
    }
}

/// Every `stream_metrics_minute` row, ordered by `(window_start, stream_id)`.
pub fn load_rows(conn: &mut PgConnection) -> Result<Vec<WindowRow>> {
    let rows: Vec<WindowRowColumns> = smm::table
        .select(WINDOW_ROW_COLUMNS)
        .order((smm::window_start, smm::stream_id))
        .load(conn)?;
    Ok(rows.into_iter().map(window_row).collect())
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
