//! `/metrics` and `/metrics/latest`: minute rows (seed-compatible), cached
//! per commit.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::TimeDelta;
use serde::Serialize;
use serde_json::json;
use streamstats_actors::event::MAX_STREAM_ID_CHARS;
use streamstats_actors::store::queries;

use super::answer::{cached, json};
use super::db::query;
use super::errors::ApiError;
use super::json::{time, MinuteJson};
use super::params::Params;
use super::{AppState, MAX_MINUTES, MAX_ROWS};

/// `GET /metrics?minutes=&limit=&stream_id=`: rows of the last `minutes`
/// minutes up to the newest window in the table, newest first.
pub async fn metrics(
    state: web::Data<AppState>,
    q: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let params = Params(q.into_inner());
    let minutes = params.int(&["minutes"], 15, 1..=MAX_MINUTES)?;
    let limit = params.int(&["limit"], 100, 1..=MAX_ROWS)?;
    let stream_id = params.text("stream_id", MAX_STREAM_ID_CHARS)?;
    let key = format!("/metrics?minutes={minutes}&limit={limit}&stream_id={stream_id:?}");
    let db = state.clone();
    cached(&state, key, move || async move {
        let (latest, rows) = query(&db, move |conn| {
            let Some(latest) = queries::latest_window_start(conn)? else {
                return Ok((None, Vec::new()));
            };
            let since = latest - TimeDelta::minutes(minutes - 1);
            let rows = queries::rows_since(conn, since, stream_id.as_deref(), limit)?;
            Ok((Some(latest), rows))
        })
        .await?;
        let rows: Vec<MinuteJson> = rows.into_iter().map(Into::into).collect();
        json(
            StatusCode::OK,
            &json!({
                "latest_window_start": latest.map(time),
                "minutes": minutes,
                "rows": rows,
            }),
        )
    })
    .await
}

/// One page of `/metrics/latest`.
#[derive(Serialize)]
struct LatestPage {
    /// Start of the newest window of any stream.
    latest_window_start: Option<String>,
    rows: Vec<MinuteJson>,
    /// True when more streams follow this page.
    truncated: bool,
    /// The `after` of the next page, when truncated.
    next_after: Option<String>,
}

/// `GET /metrics/latest?limit=&after=`: the newest row of every stream, by
/// stream id, at most `limit` (default [`super::PAGE_ROWS`], most
/// [`MAX_ROWS`]) streams from
/// the one after `after`; `truncated` and `next_after` tell the rest.
pub async fn latest(
    state: web::Data<AppState>,
    q: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let params = Params(q.into_inner());
    let (limit, after) = params.page()?;
    let key = format!("/metrics/latest?limit={limit}&after={after:?}");
    let db = state.clone();
    cached(&state, key, move || async move {
        let (latest, mut rows) = query(&db, move |conn| {
            let latest = queries::latest_window_start(conn)?;
            let rows = queries::latest_per_stream(conn, after.as_deref(), limit + 1)?;
            Ok((latest, rows))
        })
        .await?;
        let page = Page::cut(&mut rows, limit, |r| r.stream_id.clone());
        json(
            StatusCode::OK,
            &LatestPage {
                latest_window_start: latest.map(time),
                rows: rows.into_iter().map(Into::into).collect(),
                truncated: page.truncated,
                next_after: page.next_after,
            },
        )
    })
    .await
}

/// Where a keyset page was cut.
pub struct Page {
    /// More rows follow.
    pub truncated: bool,
    /// The key of the last row shown, when truncated.
    pub next_after: Option<String>,
}

impl Page {
    /// Cuts `rows` (fetched with `limit + 1`) to `limit` rows.
    pub fn cut<T>(rows: &mut Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Page {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let truncated = rows.len() > limit;
        rows.truncate(limit);
        Page {
            truncated,
            next_after: if truncated {
                rows.last().map(key)
            } else {
                None
            },
        }
    }
}
