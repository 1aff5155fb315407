//! The newest window of every stream: `stream_state.latest_window_start`,
//! moved forward by each checkpoint's state write (`upsert::write_states`),
//! cleared by retention with the stream's last rows (`retention`),
//! and read through the window rows' primary key by `/metrics/latest`
//! (`queries::latest_per_stream`).

use diesel::pg::PgConnection;
use diesel::prelude::*;

use super::Result;

/// Recomputes every stream's newest window from the window rows, adding a
/// state row (live, its newest row's viewers) for a stream that has none:
/// for tools and tests that write `stream_metrics_minute` directly.
const REBUILD: &str = "
INSERT INTO stream_state (stream_id, is_live, active_viewers, updated_at, latest_window_start)
SELECT DISTINCT ON (stream_id) stream_id, true, active_viewers, updated_at, window_start
FROM stream_metrics_minute
ORDER BY stream_id, window_start DESC
ON CONFLICT (stream_id) DO UPDATE SET latest_window_start = excluded.latest_window_start";

/// Recomputes the streams' newest windows from `stream_metrics_minute`;
/// returns the number of streams with rows.
pub fn rebuild_latest(conn: &mut PgConnection) -> Result<usize> {
    Ok(diesel::sql_query(REBUILD).execute(conn)?)
}
