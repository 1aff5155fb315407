//! `GET /prometheus`: refreshes the scrape-time gauges (indexed range
//! counts over the last minutes, cached per commit like the API answers),
//! then encodes the one registry in the Prometheus text format.

use actix_web::{web, HttpResponse};
use chrono::{TimeDelta, Utc};
use prometheus::{Encoder, TextEncoder};
use streamstats_actors::store::queries;

use super::cache::Version;
use super::db::{query_within, PROBE_PATIENCE};
use super::AppState;

/// Window of the `*_recent` gauges.
const RECENT: TimeDelta = TimeDelta::minutes(5);

/// `GET /prometheus`.
pub async fn prometheus(state: web::Data<AppState>) -> HttpResponse {
    let now = Utc::now();
    state.metrics.refresh(now.timestamp_millis());
    let version = Version::current(&state.metrics);
    let counts = state.gauges.get("recent", version, || {
        query_within(&state, PROBE_PATIENCE, move |conn| {
            queries::recent_counts(conn, now - RECENT)
        })
    });
    match counts.await {
        Ok(counts) => {
            state.api.db_ok.set(1);
            state.api.rows_recent.set(counts.rows);
            state.api.donation_rows_recent.set(counts.donation_rows);
            if let Some(latest) = counts.latest_window_start {
                let age = (now - latest).num_milliseconds().max(0) as f64 / 1000.0;
                state.api.latest_window_age.set(age);
            }
        }
        Err(_) => state.api.db_ok.set(0),
    }
    let mut out = Vec::new();
    match TextEncoder::new().encode(&state.registry.gather(), &mut out) {
        Ok(()) => HttpResponse::Ok()
            .content_type(prometheus::TEXT_FORMAT)
            .body(out),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}
