//! `/admin/console-sessions`: signing every operator out of the console.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::operations::api_operator;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedSessions {
    /// Console sessions that were still open and are now signed out.
    pub revoked: u64,
}

/// Signs out every operator console session (their cookies are refused from now on, on every
/// node): after a cookie was exposed, or an operator left.
#[utoipa::path(
    post,
    path = "/admin/console-sessions/revoke-all",
    tag = "admin",
    operation_id = "admin_revoke_console_sessions",
    summary = "Sign out every operator console session",
    responses((status = 200, description = "How many sessions were signed out", body = RevokedSessions)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["internal_error"]))),
)]
pub async fn revoke_console_sessions(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let revoked = crate::operations::sign_out_everyone(&state, &api_operator()).await?;
    Ok(HttpResponse::Ok().json(RevokedSessions { revoked }))
}
