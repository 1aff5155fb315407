//! `/metrics` and `/metrics/latest`: minute rows (seed-compatible).

use actix_web::{web, HttpResponse};
use chrono::TimeDelta;
use serde_json::json;
use streamstats_actors::event::MAX_STREAM_ID_CHARS;
use streamstats_actors::store::queries;

use super::db::query;
use super::errors::ApiError;
use super::json::{time, MinuteJson};
use super::params::Params;
use super::{AppState, MAX_MINUTES, MAX_ROWS};

/// `GET /metrics?minutes=&limit=&stream_id=`: rows of the last `minutes`
/// minutes up to the newest window in the table, newest first.
pub async fn metrics(
    state: web::Data<AppState>,
    q: web::Query<std::collections::HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let params = Params(q.into_inner());
    let minutes = params.int(&["minutes"], 15, 1..=MAX_MINUTES)?;
    let limit = params.int(&["limit"], 100, 1..=MAX_ROWS)?;
    let stream_id = params.text("stream_id", MAX_STREAM_ID_CHARS)?;
    let (latest, rows) = query(&state, move |conn| {
        let Some(latest) = queries::latest_window_start(conn)? else {
            return Ok((None, Vec::new()));
        };
        let since = latest - TimeDelta::minutes(minutes - 1);
        let rows = queries::rows_since(conn, since, stream_id.as_deref(), limit)?;
        Ok((Some(latest), rows))
    })
    .await?;
    let rows: Vec<MinuteJson> = rows.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(json!({
        "latest_window_start": latest.map(time),
        "minutes": minutes,
        "rows": rows,
    })))
}

/// `GET /metrics/latest`: the newest row of every stream.
pub async fn latest(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let rows = query(&state, |conn| queries::latest_per_stream(conn, MAX_ROWS)).await?;
    let latest = rows.iter().map(|r| r.window_start).max();
    let rows: Vec<MinuteJson> = rows.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(json!({
        "latest_window_start": latest.map(time),
        "rows": rows,
    })))
}
