//! `/health` (database reachable) and `/ready` (database, assignment,
//! checkpoint age), and the seed's database gauges.

use actix_web::{web, HttpResponse};
use chrono::Utc;
use diesel::RunQueryDsl;
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

/// Runs `SELECT 1`, waiting at most [`PROBE_PATIENCE`] for a connection.
pub async fn ping(state: &web::Data<AppState>) -> Result<(), String> {
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
