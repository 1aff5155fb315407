//! `/health` (database reachable) and `/ready` (database, assignment,
//! checkpoint age), and the seed's database gauges.

use std::sync::Mutex;

use actix_web::{web, HttpResponse};
use chrono::Utc;
use diesel::RunQueryDsl;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use prometheus::{IntGauge, Registry};
use serde_json::json;

use super::db::{query_within, PROBE_PATIENCE};
use super::AppState;

/// The seed's API gauges, computed at scrape time.
pub struct ApiGauges {
    /// 1 when the database answered the last probe.
    pub db_ok: IntGauge,
    /// Rows whose window started in the last five minutes.
    pub rows_recent: IntGauge,
    /// Of those, rows with at least one donation.
    pub donation_rows_recent: IntGauge,
    /// Seconds since the start of the newest window.
    pub latest_window_age: prometheus::Gauge,
}

impl ApiGauges {
    /// Registers the gauges in `registry`.
    pub fn register(registry: &Registry) -> Result<ApiGauges, prometheus::Error> {
        let gauges = ApiGauges {
            db_ok: IntGauge::new("api_db_ok", "1 when the database answered the last probe.")?,
            rows_recent: IntGauge::new(
                "api_stream_metrics_rows_recent",
                "stream_metrics_minute rows whose window started in the last 5 minutes.",
            )?,
            donation_rows_recent: IntGauge::new(
                "api_donation_rows_recent",
                "Recent stream_metrics_minute rows with at least one donation.",
            )?,
            latest_window_age: prometheus::Gauge::new(
                "api_latest_window_age_seconds",
                "Seconds since the start of the newest window.",
            )?,
        };
        registry.register(Box::new(gauges.db_ok.clone()))?;
        registry.register(Box::new(gauges.rows_recent.clone()))?;
        registry.register(Box::new(gauges.donation_rows_recent.clone()))?;
        registry.register(Box::new(gauges.latest_window_age.clone()))?;
        Ok(gauges)
    }
}

/// A database probe that concurrent requests share.
type SharedProbe = Shared<BoxFuture<'static, Result<(), String>>>;

/// The probe in flight, if any: `/health`, `/ready` and the scrape await
/// the same `SELECT 1` when they arrive while it runs, so a load of health
/// checks costs one query at a time instead of one per request (and one
/// pooled connection instead of all of them).
#[derive(Default)]
pub struct Probe(Mutex<Option<SharedProbe>>);

/// Whether the database answers: the probe in flight, or a new one when
/// none is (every answer comes from a probe started after the previous
/// one finished, so it is never older than the request's wait).
pub async fn ping(state: &web::Data<AppState>) -> Result<(), String> {
    let probe = {
        let mut slot = state.probe.0.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(running) if running.peek().is_none() => running.clone(),
            _ => {
                let state = state.clone();
                let fresh = async move { ping_now(&state).await }.boxed().shared();
                *slot = Some(fresh.clone());
                fresh
            }
        }
    };
    probe.await
}

/// Runs `SELECT 1`, waiting at most [`PROBE_PATIENCE`] for a connection.
async fn ping_now(state: &web::Data<AppState>) -> Result<(), String> {
    query_within(state, PROBE_PATIENCE, |conn| {
        diesel::sql_query("SELECT 1")
            .execute(conn)
            .map(|_| ())
            .map_err(Into::into)
    })
    .await
    .map_err(|e| e.to_string())
}

/// `GET /health`.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    match ping(&state).await {
        Ok(()) => {
            state.api.db_ok.set(1);
            HttpResponse::Ok().json(json!({"ok": true}))
        }
        Err(e) => {
            state.api.db_ok.set(0);
            HttpResponse::ServiceUnavailable().json(json!({"ok": false, "error": e}))
        }
    }
}

/// `GET /ready`: 200 when the database answers, partitions are assigned
/// and the last checkpoint is recent; 503 naming every failed check.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let mut problems = Vec::new();
    let db = ping(&state).await;
    if let Err(e) = &db {
        problems.push(format!("database unreachable: {e}"));
    }
    if let Some(e) = state.status.error() {
        problems.push(format!("last checkpoint failed: {e}"));
    }
    if state.status.broker_down() {
        problems.push("broker unreachable".to_owned());
    }
    let assigned = state.status.assigned();
    if assigned == 0 {
        problems.push("no partitions assigned".to_owned());
    }
    let last = state.metrics.last_checkpoint_unix_ms();
    let age_s = (last > 0).then(|| (Utc::now().timestamp_millis() - last).max(0) as f64 / 1000.0);
    let limit = (state.checkpoint_interval.as_secs_f64() * 10.0).max(10.0);
    match age_s {
        None => problems.push("no checkpoint committed yet".to_owned()),
        Some(age) if age > limit => {
            problems.push(format!("last checkpoint {age:.1}s ago (limit {limit:.0}s)"))
        }
        Some(_) => {}
    }
    let body = json!({
        "ready": problems.is_empty(),
        "database": db.is_ok(),
        "broker": !state.status.broker_down(),
        "assigned_partitions": assigned,
        "last_checkpoint_age_seconds": age_s,
        "problems": problems,
    });
    if problems.is_empty() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
