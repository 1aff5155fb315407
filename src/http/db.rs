//! Runs a query on the blocking thread pool and maps its failure: 503 when
//! the database cannot be reached, 500 (cause logged) when it was reached
//! and the query failed anyway.

use std::time::Duration;

use actix_web::web;
use diesel::PgConnection;
use streamstats_actors::store::{self, StoreError};

use super::errors::ApiError;
use super::AppState;

/// How long a query route waits for a connection before answering 503.
const CONNECT_PATIENCE: Duration = Duration::from_secs(2);
/// How long probes (`/health`, `/ready`, the scrape) wait: a scrape must
/// finish well inside Prometheus' scrape timeout even with the database down.
pub const PROBE_PATIENCE: Duration = Duration::from_millis(500);
/// A query's whole answer (connection and statement) may take this many
/// times its connection patience before it is given up as unavailable.
const ANSWER_PATIENCE_FACTOR: u32 = 5;

/// Runs `f` with a pooled connection off the async threads.
pub async fn query<T, F>(state: &web::Data<AppState>, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut PgConnection) -> store::Result<T> + Send + 'static,
{
    query_within(state, CONNECT_PATIENCE, f).await
}

/// Like [`query`], waiting at most `patience` for a connection.
pub async fn query_within<T, F>(
    state: &web::Data<AppState>,
    patience: Duration,
    f: F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut PgConnection) -> store::Result<T> + Send + 'static,
{
    let pool = state.pool.clone();
    let run = web::block(move || {
        let mut conn = pool
            .get_timeout(patience)
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        f(&mut conn).map_err(|e| classify(&mut conn, e))
    });
    // A database that hangs (a frozen host: connections open, nothing
    // answers) must not hang the request; its blocking thread is left to
    // finish when the database answers.
    let answer_within = patience.saturating_mul(ANSWER_PATIENCE_FACTOR);
    match tokio::time::timeout(answer_within, run).await {
        Ok(answered) => answered.map_err(|e| {
            log::warn!("A query could not run on the blocking pool: {e}.");
            ApiError::Internal("the query could not run".to_owned())
        })?,
        Err(_) => Err(ApiError::Unavailable(format!(
            "the database did not answer within {answer_within:?}"
        ))),
    }
}

/// 503 when the connection is gone (lost mid-query, or it no longer
/// answers a trivial statement), 500 otherwise, with the cause logged.
fn classify(conn: &mut PgConnection, err: StoreError) -> ApiError {
    if err.is_unreachable(conn) {
        ApiError::Unavailable(err.to_string())
    } else {
        log::warn!("A query of the API failed with the database reachable: {err}.");
        ApiError::Internal("the query failed; the cause is in the service log".to_owned())
    }
}
