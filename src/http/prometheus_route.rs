//! `GET /prometheus`: refreshes the scrape-time gauges, then encodes the
//! one registry in the Prometheus text format.

use actix_web::{web, HttpResponse};
use chrono::Utc;
use prometheus::{Encoder, TextEncoder};

use super::health::ping;
use super::AppState;

/// `GET /prometheus`.
pub async fn prometheus(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.refresh(Utc::now().timestamp_millis());
    state.api.db_ok.set(i64::from(ping(&state).await.is_ok()));
    let mut out = Vec::new();
    match TextEncoder::new().encode(&state.registry.gather(), &mut out) {
        Ok(()) => HttpResponse::Ok()
            .content_type(prometheus::TEXT_FORMAT)
            .body(out),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}
