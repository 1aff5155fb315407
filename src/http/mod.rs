//! The HTTP API (SPEC §6), served by the same actix System as the pipeline:
//! one file per route group. Database work runs on the blocking pool, and
//! answers are cached until the next commit (`cache`).

mod answer;
mod cache;
mod dashboard;
mod db;
mod dead_letters;
mod errors;
mod health;
mod json;
mod metrics_routes;
mod params;
mod prometheus_route;
mod streams;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use actix_web_prom::{
    ActixMetricsConfiguration, LabelsConfiguration, PrometheusMetrics, PrometheusMetricsBuilder,
};
use prometheus::Registry;
use streamstats_actors::metrics::Metrics;
use streamstats_actors::pipeline::PipelineStatus;
use streamstats_actors::store::Pool;

/// Most minutes any range may span (one day).
pub const MAX_MINUTES: i64 = 1_440;
/// Most rows any route returns.
pub const MAX_ROWS: i64 = 1_000;
/// Rows of a page of a route paged by stream id when `limit` is absent:
/// like `/metrics`' default, so an answer's size does not grow with the
/// number of streams unless a client asks for more.
pub const PAGE_ROWS: i64 = 100;
/// Most answers kept in memory.
const CACHE_ENTRIES: usize = 1_024;
/// Most bytes of answers kept in memory.
const CACHE_BYTES: usize = 64 << 20;

/// Shared state of every handler.
pub struct AppState {
    /// Postgres pool for queries.
    pub pool: Pool,
    /// Pipeline metrics (refreshed at scrape time).
    pub metrics: Metrics,
    /// Pipeline status for `/ready`.
    pub status: Arc<PipelineStatus>,
    /// The registry `/prometheus` encodes.
    pub registry: Registry,
    /// The seed's API gauges.
    pub api: health::ApiGauges,
    /// Checkpoint interval, to judge checkpoint age in `/ready`.
    pub checkpoint_interval: Duration,
    /// Answers of the data routes, per commit.
    pub answers: cache::Cache<cache::Answer>,
    /// The scrape-time gauges' counts, per commit.
    pub gauges: cache::Cache<streamstats_actors::store::queries::RecentCounts>,
    /// The database probe in flight, shared by concurrent health checks.
    pub probe: health::Probe,
}

impl AppState {
    /// Registers the API gauges and bundles the state.
    pub fn new(
        pool: Pool,
        metrics: Metrics,
        status: Arc<PipelineStatus>,
        registry: Registry,
        checkpoint_interval: Duration,
        cache_ttl: Duration,
    ) -> Result<AppState, prometheus::Error> {
        let api = health::ApiGauges::register(&registry)?;
        Ok(AppState {
            pool,
            metrics,
            status,
            registry,
            api,
            checkpoint_interval,
            answers: cache::Cache::new(cache_ttl, CACHE_ENTRIES, CACHE_BYTES),
            gauges: cache::Cache::new(cache_ttl, 1, 1 << 10),
            probe: health::Probe::default(),
        })
    }
}

/// Request counting and timing with the seed's metric names and route
/// templates as the `path` label.
pub fn request_metrics(registry: Registry) -> Result<PrometheusMetrics, String> {
    PrometheusMetricsBuilder::new("api")
        .registry(registry)
        .mask_unmatched_patterns("UNMATCHED")
        .metrics_configuration(
            ActixMetricsConfiguration::default()
                .labels(LabelsConfiguration::default().endpoint("path"))
                .http_requests_duration_seconds_name("http_request_duration_seconds"),
        )
        .build()
        .map_err(|e| e.to_string())
}

/// Every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(errors::query_error))
        .route("/health", web::get().to(health::health))
        .route("/ready", web::get().to(health::ready))
        .route("/metrics", web::get().to(metrics_routes::metrics))
        .route("/metrics/latest", web::get().to(metrics_routes::latest))
        .route("/streams", web::get().to(streams::list))
        .route("/streams/top", web::get().to(streams::top))
        .route("/streams/{id}/minutes", web::get().to(streams::minutes))
        .route("/dead_letters", web::get().to(dead_letters::recent))
        .route("/prometheus", web::get().to(prometheus_route::prometheus))
        .route("/", web::get().to(dashboard::index))
        .route("/assets/{name}", web::get().to(dashboard::asset))
        .default_service(web::to(errors::not_found));
}
