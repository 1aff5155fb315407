//! Read queries of the HTTP API, as plain functions over a connection.
//! Every query is bounded by a time range and a row limit.

use chrono::{DateTime, Utc};
use diesel::dsl::{count_star, max};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bytea, Integer, Nullable, Text, Timestamptz};

use super::schema::{stream_metrics_minute as smm, stream_state as ss};
use super::Result;

/// One `stream_metrics_minute` row as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = smm, check_for_backend(diesel::pg::Pg))]
pub struct MinuteRecord {
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub stream_id: String,
    pub active_viewers: i64,
    pub chat_messages: i64,
    pub donations_cents: i64,
    pub events: i64,
    pub chat_chars: i64,
    pub donations: i64,
    pub viewer_joins: i64,
    pub viewer_leaves: i64,
    pub unique_chatters: i64,
    pub is_final: bool,
    pub updated_at: DateTime<Utc>,
}

/// One `stream_state` row.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct StateRecord {
    pub stream_id: String,
    pub is_live: bool,
    pub active_viewers: i64,
    pub last_event_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// A stream's totals over a time range, for rankings.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct StreamTotals {
    #[diesel(sql_type = Text)]
    pub stream_id: String,
    /// Peak `active_viewers` over the range.
    #[diesel(sql_type = BigInt)]
    pub active_viewers: i64,
    /// Sum of chat messages.
    #[diesel(sql_type = BigInt)]
    pub chat_messages: i64,
    /// Sum of donations in cents.
    #[diesel(sql_type = BigInt)]
    pub donations_cents: i64,
}

/// What `/streams/top` ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankBy {
    /// Peak concurrent viewers.
    ActiveViewers,
    /// Total donations.
    DonationsUsd,
    /// Total chat messages.
    ChatMessages,
}

impl RankBy {
    /// The SQL expression ranked on (from a fixed list, never user text).
    fn order_expr(self) -> &'static str {
        match self {
            RankBy::ActiveViewers => "active_viewers",
            RankBy::DonationsUsd => "donations_cents",
            RankBy::ChatMessages => "chat_messages",
        }
    }
}

/// Start of the newest window in the table.
pub fn latest_window_start(conn: &mut PgConnection) -> Result<Option<DateTime<Utc>>> {
    Ok(smm::table.select(max(smm::window_start)).first(conn)?)
}

/// Rows with `window_start >= since`, newest first, optionally one stream.
pub fn rows_since(
    conn: &mut PgConnection,
    since: DateTime<Utc>,
    stream_id: Option<&str>,
    limit: i64,
) -> Result<Vec<MinuteRecord>> {
    let mut query = smm::table
        .select(MinuteRecord::as_select())
        .filter(smm::window_start.ge(since))
        .order((smm::window_start.desc(), smm::stream_id.asc()))
        .limit(limit)
        .into_boxed();
    if let Some(id) = stream_id {
        query = query.filter(smm::stream_id.eq(id));
    }
    Ok(query.load(conn)?)
}

/// The newest row of each stream after `$1` (when given) by stream id, at
/// most `$2`: the streams with a newest window, walked in key order through
/// `stream_state_latest_idx`, each joined to its row by a primary-key probe
/// (the `LATERAL ... LIMIT 1` keeps the planner from hashing the whole
/// window table instead).
const LATEST_PER_STREAM: &str = "
SELECT m.window_start, m.window_end, m.stream_id, m.active_viewers, m.chat_messages,
       m.donations_cents, m.events, m.chat_chars, m.donations, m.viewer_joins,
       m.viewer_leaves, m.unique_chatters, m.is_final, m.updated_at
FROM stream_state ss
CROSS JOIN LATERAL (
    SELECT * FROM stream_metrics_minute r
    WHERE r.window_start = ss.latest_window_start AND r.stream_id = ss.stream_id
    LIMIT 1) m
WHERE ss.has_windows AND ss.stream_id > $1
ORDER BY ss.stream_id
LIMIT $2";

/// The newest row of each stream after `after` (by stream id), at most
/// `limit`, from `stream_state.latest_window_start`: one row per stream
/// read, whatever the length of the history. A stream whose rows
/// retention removed has no newest window and is neither shown nor walked.
pub fn latest_per_stream(
    conn: &mut PgConnection,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<MinuteRecord>> {
    // Every stream id is longer than the empty string.
    Ok(diesel::sql_query(LATEST_PER_STREAM)
        .bind::<Text, _>(after.unwrap_or(""))
        .bind::<BigInt, _>(limit)
        .load(conn)?)
}

/// Streams ranked by `by` over windows starting at or after `since`.
pub fn top_streams(
    conn: &mut PgConnection,
    since: DateTime<Utc>,
    by: RankBy,
    n: i64,
) -> Result<Vec<StreamTotals>> {
    let sql = format!(
        "SELECT stream_id, max(active_viewers)::bigint AS active_viewers, \
                sum(chat_messages)::bigint AS chat_messages, \
                sum(donations_cents)::bigint AS donations_cents \
         FROM stream_metrics_minute WHERE window_start >= $1 \
         GROUP BY stream_id ORDER BY {} DESC, stream_id ASC LIMIT $2",
        by.order_expr()
    );
    Ok(diesel::sql_query(sql)
        .bind::<Timestamptz, _>(since)
        .bind::<BigInt, _>(n)
        .load(conn)?)
}

/// `stream_state` rows after `after` (by stream id), at most `limit`.
pub fn stream_states(
    conn: &mut PgConnection,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<StateRecord>> {
    let mut query = ss::table
        .select((
            ss::stream_id,
            ss::is_live,
            ss::active_viewers,
            ss::last_event_at,
            ss::updated_at,
        ))
        .order(ss::stream_id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(ss::stream_id.gt(after));
    }
    Ok(query.load(conn)?)
}

/// True when the stream has a `stream_state` row.
pub fn stream_exists(conn: &mut PgConnection, stream_id: &str) -> Result<bool> {
    let n: i64 = ss::table
        .filter(ss::stream_id.eq(stream_id))
        .select(count_star())
        .first(conn)?;
    Ok(n > 0)
}

/// One stream's rows with `from <= window_start < to`, oldest first.
pub fn stream_minutes(
    conn: &mut PgConnection,
    stream_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<MinuteRecord>> {
    Ok(smm::table
        .select(MinuteRecord::as_select())
        .filter(smm::stream_id.eq(stream_id))
        .filter(smm::window_start.ge(from))
        .filter(smm::window_start.lt(to))
        .order(smm::window_start.asc())
        .limit(limit)
        .load(conn)?)
}

/// The seed's scrape-time gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentCounts {
    /// Rows with `window_start >= since`.
    pub rows: i64,
    /// Of those, rows with at least one donation.
    pub donation_rows: i64,
    /// Start of the newest window.
    pub latest_window_start: Option<DateTime<Utc>>,
}

/// Counts for `api_stream_metrics_rows_recent` and friends.
pub fn recent_counts(conn: &mut PgConnection, since: DateTime<Utc>) -> Result<RecentCounts> {
    let rows: i64 = smm::table
        .filter(smm::window_start.ge(since))
        .select(count_star())
        .first(conn)?;
    let donation_rows: i64 = smm::table
        .filter(smm::window_start.ge(since))
        .filter(smm::donations.gt(0))
        .select(count_star())
        .first(conn)?;
    Ok(RecentCounts {
        rows,
        donation_rows,
        latest_window_start: latest_window_start(conn)?,
    })
}

/// One `dead_letters` row as the API shows it, its payload cut to a prefix.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct DeadLetterRecord {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub topic: String,
    #[diesel(sql_type = Integer)]
    pub partition: i32,
    #[diesel(sql_type = BigInt)]
    pub kafka_offset: i64,
    #[diesel(sql_type = Text)]
    pub reason: String,
    /// The error sentence, cut to the same number of characters.
    #[diesel(sql_type = Text)]
    pub error: String,
    /// The first bytes of the raw payload (at most the `max_bytes` asked for).
    #[diesel(sql_type = Bytea)]
    pub payload_prefix: Vec<u8>,
    /// Length of the whole payload in bytes.
    #[diesel(sql_type = Integer)]
    pub payload_bytes: i32,
    /// The first bytes of the message key, if it had one.
    #[diesel(sql_type = Nullable<Bytea>)]
    pub key_prefix: Option<Vec<u8>>,
    #[diesel(sql_type = Timestamptz)]
    pub received_at: DateTime<Utc>,
}

/// The newest dead letters (highest id first), optionally of one reason,
/// at most `limit`, payloads and keys cut to `max_bytes` in the database so
/// a 64 KiB payload never leaves it whole.
pub fn recent_dead_letters(
    conn: &mut PgConnection,
    reason: Option<&str>,
    limit: i64,
    max_bytes: i32,
) -> Result<Vec<DeadLetterRecord>> {
    Ok(diesel::sql_query(
        "SELECT id, topic, partition, kafka_offset, reason, left(error, $3) AS error, \
                substring(payload FROM 1 FOR $3) AS payload_prefix, \
                length(payload) AS payload_bytes, \
                substring(kafka_key FROM 1 FOR $3) AS key_prefix, received_at \
         FROM dead_letters WHERE ($1::text IS NULL OR reason = $1) \
         ORDER BY id DESC LIMIT $2",
    )
    .bind::<Nullable<Text>, _>(reason)
    .bind::<BigInt, _>(limit)
    .bind::<Integer, _>(max_bytes)
    .load(conn)?)
}
