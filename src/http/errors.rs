//! JSON errors: 400 naming the parameter, 404 for unknown routes and
//! streams, 503 only when the database is unreachable, 500 when a query
//! failed for another reason (the cause is logged). Never a stack trace.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

/// An error answered as `{"error": ...}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query or path parameter is invalid; the text names it.
    #[error("{0}")]
    BadParameter(String),
    /// The route exists but the thing asked for does not.
    #[error("{0}")]
    NotFound(String),
    /// The database could not be reached (no connection, or it was lost).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database was reachable but the query failed; logged where it
    /// happened, answered without the details.
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadParameter(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(ErrorBody {
            error: &self.to_string(),
        })
    }
}

/// 404 for every unknown route.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::NotFound(format!("no route for {} {}", req.method(), req.path())).error_response()
}

/// Turns an undecodable query string into a JSON 400.
pub fn query_error(err: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::BadParameter(format!("query string: {err}")).into()
}
