//! JSON errors: 404 for unknown routes. Never a stack trace.

use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// 404 for every unknown route.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound().json(ErrorBody {
        error: &format!("no route for {} {}", req.method(), req.path()),
    })
}
