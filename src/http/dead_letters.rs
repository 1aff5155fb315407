//! `GET /dead_letters?reason=&limit=`: the newest rejected messages, newest
//! first, bounded, read-only. Payloads are shown as text (lossy UTF-8) and
//! cut to [`PAYLOAD_BYTES`]: enough to see what was wrong, never a 64 KiB
//! answer per row.

use std::collections::HashMap;
use std::str::FromStr;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::json;
use streamstats_actors::event::RejectReason;
use streamstats_actors::store::queries::{self, DeadLetterRecord};

use super::db::query;
use super::errors::ApiError;
use super::json::time;
use super::params::Params;
use super::AppState;

/// Most rows one answer holds.
pub const MAX_LIMIT: i64 = 100;
/// Rows when `limit` is absent.
const DEFAULT_LIMIT: i64 = 20;
/// Bytes of payload (and key, and characters of error) shown per row.
pub const PAYLOAD_BYTES: i32 = 1_024;

/// One dead letter.
#[derive(Serialize)]
struct DeadLetterJson {
    id: i64,
    topic: String,
    partition: i32,
    offset: i64,
    reason: String,
    error: String,
    /// The payload's first [`PAYLOAD_BYTES`] bytes as lossy UTF-8 text.
    payload: String,
    /// Length of the whole payload.
    payload_bytes: i32,
    /// True when `payload` shows only a prefix.
    payload_truncated: bool,
    key: Option<String>,
    received_at: String,
}

impl From<DeadLetterRecord> for DeadLetterJson {
    fn from(r: DeadLetterRecord) -> Self {
        DeadLetterJson {
            id: r.id,
            topic: r.topic,
            partition: r.partition,
            offset: r.kafka_offset,
            reason: r.reason,
            error: r.error,
            payload_truncated: usize::try_from(r.payload_bytes)
                .is_ok_and(|n| n > r.payload_prefix.len()),
            payload: String::from_utf8_lossy(&r.payload_prefix).into_owned(),
            payload_bytes: r.payload_bytes,
            key: r
                .key_prefix
                .map(|k| String::from_utf8_lossy(&k).into_owned()),
            received_at: time(r.received_at),
        }
    }
}

/// `GET /dead_letters?reason=&limit=`.
pub async fn recent(
    state: web::Data<AppState>,
    q: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let params = Params(q.into_inner());
    let limit = params.int(&["limit"], DEFAULT_LIMIT, 1..=MAX_LIMIT)?;
    let known: Vec<&str> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
    let reason = params
        .0
        .get("reason")
        .map(|r| {
            RejectReason::from_str(r).map_err(|_| {
                ApiError::BadParameter(format!(
                    "reason must be one of {}, got {r:?}",
                    known.join(", ")
                ))
            })
        })
        .transpose()?;
    let rows = query(&state, move |conn| {
        queries::recent_dead_letters(conn, reason.map(RejectReason::as_str), limit, PAYLOAD_BYTES)
    })
    .await?;
    let rows: Vec<DeadLetterJson> = rows.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(json!({
        "reason": reason.map(RejectReason::as_str),
        "limit": limit,
        "reasons": known,
        "rows": rows,
    })))
}
