//! The pages' static files, compiled into the binary and served at `/assets/{name}`: the pages
//! need nothing from any other host.

use actix_web::{web, HttpResponse};

use crate::error::ApiError;

/// The stylesheet of every page.
pub const PAGE_CSS: &str = "/assets/paywarden.css";
/// The checkout page's script.
pub const CHECKOUT_JS: &str = "/assets/checkout.js";
/// The console's script: refreshes the dashboard in place.
pub const CONSOLE_JS: &str = "/assets/console.js";

/// Name, content type, content.
const FILES: &[(&str, &str, &str)] = &[
    (
        "paywarden.css",
        "text/css; charset=utf-8",
        include_str!("assets/paywarden.css"),
    ),
    (
        "checkout.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/checkout.js"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    ),
];

/// `GET /assets/{name}`.
#[utoipa::path(
    get,
    path = "/assets/{name}",
    tag = "pages",
    operation_id = "get_asset",
    summary = "A static file of the checkout page and the console",
    params(("name" = String, Path, description = "`paywarden.css`, `checkout.js` or `console.js`")),
    responses((status = 200, description = "The file", content_type = "text/plain", body = String)),
    extensions(("x-error-codes" = json!(["not_found"]))),
)]
pub async fn serve(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (_, content_type, body) = FILES
        .iter()
        .find(|(file, _, _)| *file == name.as_str())
        .ok_or(ApiError::NotFound("asset"))?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .insert_header(("Cache-Control", "public, max-age=300"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(*body))
}
