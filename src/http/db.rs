//! Runs a query on the blocking thread pool and maps failures to 503.

use actix_web::web;
use diesel::PgConnection;
use streamstats_actors::store;

use super::errors::ApiError;
use super::AppState;

/// Runs `f` with a pooled connection off the async threads.
pub async fn query<T, F>(state: &web::Data<AppState>, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut PgConnection) -> store::Result<T> + Send + 'static,
{
    let pool = state.pool.clone();
    web::block(move || {
        let mut conn = pool
            .get()
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        f(&mut conn).map_err(|e| ApiError::Unavailable(e.to_string()))
    })
    .await
    .map_err(|e| ApiError::Unavailable(e.to_string()))?
}
