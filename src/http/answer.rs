//! Routes answer through the per-commit cache: the handler parses and
//! validates its parameters, names the normalized request, and gives the
//! computation that runs only when the cached answer is out of date.

use std::future::Future;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::cache::{Answer, Version};
use super::errors::ApiError;
use super::AppState;

/// `value` as a JSON answer with `status`.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<Answer, ApiError> {
    let body = serde_json::to_vec(value).map_err(|e| {
        log::warn!("An answer could not be serialized: {e}.");
        ApiError::Internal("the answer could not be serialized".to_owned())
    })?;
    Ok(Answer {
        status,
        body: body.into(),
    })
}

/// The answer to `key` (route and normalized parameters) as of the last
/// commit, computed by `compute` only when the cached one is out of date.
pub async fn cached<F, Fut>(
    state: &web::Data<AppState>,
    key: String,
    compute: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Answer, ApiError>>,
{
    let version = Version::current(&state.metrics);
    let answer = state.answers.get(&key, version, compute).await?;
    Ok(HttpResponse::build(answer.status)
        .content_type("application/json")
        .body(answer.body))
}
