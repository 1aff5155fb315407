//! `/streams`, `/streams/top` and `/streams/{id}/minutes`, cached per commit.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::TimeDelta;
use serde_json::json;
use streamstats_actors::event::MAX_STREAM_ID_CHARS;
use streamstats_actors::store::queries::{self, RankBy};

use super::answer::{cached, json};
use super::db::query;
use super::errors::ApiError;
use super::json::{time, MinuteJson, StateJson, TotalsJson};
use super::metrics_routes::Page;
use super::params::{self, Params};
use super::{AppState, MAX_MINUTES, MAX_ROWS};

/// Most streams `/streams/top` ranks.
const MAX_TOP: i64 = 100;

/// `GET /streams/top?minutes=&by=&n=` (`limit` is an alias of `n`): streams
/// ranked over the last `minutes` minutes up to the newest window, by peak
/// `active_viewers` or total `donations_usd` / `chat_messages`.
pub async fn top(
    state: web::Data<AppState>,
    q: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let params = Params(q.into_inner());
    let minutes = params.int(&["minutes"], 15, 1..=MAX_MINUTES)?;
    let n = params.int(&["n", "limit"], 10, 1..=MAX_TOP)?;
    let by_name = params.choice(
        "by",
        &["active_viewers", "donations_usd", "chat_messages"],
        "active_viewers",
    )?;
    let by = match by_name {
        "donations_usd" => RankBy::DonationsUsd,
        "chat_messages" => RankBy::ChatMessages,
        _ => RankBy::ActiveViewers,
    };
    let key = format!("/streams/top?minutes={minutes}&by={by_name}&n={n}");
    let db = state.clone();
    cached(&state, key, move || async move {
        let (latest, rows) = query(&db, move |conn| {
            let Some(latest) = queries::latest_window_start(conn)? else {
                return Ok((None, Vec::new()));
            };
            let since = latest - TimeDelta::minutes(minutes - 1);
            Ok((Some(latest), queries::top_streams(conn, since, by, n)?))
        })
        .await?;
        let rows: Vec<TotalsJson> = rows.into_iter().map(Into::into).collect();
        json(
            StatusCode::OK,
            &json!({
                "by": by_name,
                "minutes": minutes,
                "n": n,
                "latest_window_start": latest.map(time),
                "rows": rows,
            }),
        )
    })
    .await
}

/// `GET /streams?limit=&after=`: streams' current state by stream id, at
/// most `limit` (default [`super::PAGE_ROWS`], most [`MAX_ROWS`]) from the one after `after`;
/// `truncated` and `next_after` tell the rest.
pub async fn list(
    state: web::Data<AppState>,
    q: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let params = Params(q.into_inner());
    let (limit, after) = params.page()?;
    let key = format!("/streams?limit={limit}&after={after:?}");
    let db = state.clone();
    cached(&state, key, move || async move {
        let mut rows = query(&db, move |conn| {
            queries::stream_states(conn, after.as_deref(), limit + 1)
        })
        .await?;
        let page = Page::cut(&mut rows, limit, |r| r.stream_id.clone());
        let streams: Vec<StateJson> = rows.into_iter().map(Into::into).collect();
        json(
            StatusCode::OK,
            &json!({
                "streams": streams,
                "truncated": page.truncated,
                "next_after": page.next_after,
            }),
        )
    })
    .await
}

/// `GET /streams/{id}/minutes?from=&to=`: one stream's rows with
/// `from <= window_start < to`, oldest first. `to` defaults to just after
/// the stream's newest window, `from` to 60 minutes before `to`; the range
/// is at most [`MAX_MINUTES`].
pub async fn minutes(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let stream_id = path.into_inner();
    params::text("id", &stream_id, MAX_STREAM_ID_CHARS)?;
    let params = Params(q.into_inner());
    let from = params.time("from")?;
    let to = params.time("to")?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(ApiError::BadParameter(format!(
                "from ({}) must be before to ({})",
                time(f),
                time(t)
            )));
        }
        if t - f > TimeDelta::minutes(MAX_MINUTES) {
            return Err(ApiError::BadParameter(format!(
                "from and to may span at most {MAX_MINUTES} minutes"
            )));
        }
    }
    let key = format!(
        "/streams/{stream_id:?}/minutes?from={:?}&to={:?}",
        from.map(time),
        to.map(time)
    );
    let db = state.clone();
    cached(&state, key, move || async move {
        minutes_answer(&db, stream_id, from, to).await
    })
    .await
}

/// The computation behind [`minutes`]; a 404 is an answer too (cached
/// until the next commit, like any other).
async fn minutes_answer(
    state: &web::Data<AppState>,
    stream_id: String,
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<super::cache::Answer, ApiError> {
    let id = stream_id.clone();
    let result = query(state, move |conn| {
        if !queries::stream_exists(conn, &id)? {
            return Ok(None);
        }
        let newest = queries::rows_since(conn, chrono::DateTime::UNIX_EPOCH, Some(&id), 1)?
            .first()
            .map(|r| r.window_end);
        let to = to
            .or_else(|| from.map(|f| f + TimeDelta::minutes(60)))
            .or(newest)
            .unwrap_or_else(chrono::Utc::now);
        let from = from.unwrap_or(to - TimeDelta::minutes(60));
        let rows = queries::stream_minutes(conn, &id, from, to, MAX_ROWS)?;
        Ok(Some((from, to, rows)))
    })
    .await?;
    let Some((from, to, rows)) = result else {
        return json(
            StatusCode::NOT_FOUND,
            &json!({ "error": format!("no stream {stream_id:?}") }),
        );
    };
    let rows: Vec<MinuteJson> = rows.into_iter().map(Into::into).collect();
    json(
        StatusCode::OK,
        &json!({
            "stream_id": stream_id,
            "from": time(from),
            "to": time(to),
            "rows": rows,
        }),
    )
}
