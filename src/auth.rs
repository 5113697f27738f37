//! Bearer-token authentication for the client (`/v1`) and admin (`/admin`) scopes.
//!
//! Keys are compared by their SHA-256 digests: the lookup never touches the raw configured
//! secrets, and a map lookup on a digest leaks nothing useful about the key through timing.
//!
//! Both go through the credential throttle ([`crate::throttle`]): a blocked client address is
//! answered `429` before its credential is looked at, and every refused credential counts
//! against its address.

use std::collections::HashMap;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use actors::domain::MerchantId;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::client_addr::client_addr;
use crate::config::AuthSettings;
use crate::error::ApiError;
use crate::throttle::{Surface, Throttle};

/// The authenticated admin, put in request extensions by [`require_admin`].
#[derive(Clone, Debug)]
pub struct Admin;

/// Digests of the configured credentials.
pub struct Credentials {
    merchants: HashMap<[u8; 32], MerchantId>,
    admin: [u8; 32],
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl Credentials {
    /// # Errors
    /// A merchant id that is not valid.
    pub fn from_settings(settings: &AuthSettings) -> anyhow::Result<Self> {
        let mut merchants = HashMap::new();
        for (merchant, key) in &settings.merchant_keys {
            let merchant = MerchantId::parse(merchant).map_err(anyhow::Error::msg)?;
            merchants.insert(digest(key.expose_secret()), merchant);
        }
        Ok(Self {
            merchants,
            admin: digest(settings.admin_token.expose_secret()),
        })
    }

    fn merchant_for(&self, token: &SecretString) -> Option<&MerchantId> {
        self.merchants.get(&digest(token.expose_secret()))
    }

    fn is_admin(&self, token: &SecretString) -> bool {
        digest(token.expose_secret()) == self.admin
    }
}

fn bearer(req: &ServiceRequest) -> Option<SecretString> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| SecretString::from(token.trim().to_owned()))
}

fn credentials(req: &ServiceRequest) -> Result<web::Data<Credentials>, actix_web::Error> {
    req.app_data::<web::Data<Credentials>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("credentials are not configured")).into())
}

fn throttle(req: &ServiceRequest) -> Result<web::Data<Throttle>, actix_web::Error> {
    req.app_data::<web::Data<Throttle>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the credential throttle is not configured")).into())
}

/// Runs `check` on the request's credential unless its address is blocked; a refusal counts
/// against the address.
fn checked<T>(
    req: &ServiceRequest,
    surface: Surface,
    check: impl FnOnce(&Credentials, Option<SecretString>) -> Option<T>,
) -> Result<T, actix_web::Error> {
    let creds = credentials(req)?;
    let throttle = throttle(req)?;
    let client = client_addr(req.request());
    throttle.check(surface, client).map_err(ApiError::Throttled)?;
    let presented = bearer(req);
    let tried = presented.is_some();
    match check(&creds, presented) {
        Some(principal) => Ok(principal),
        None => {
            // A request with no credential guesses nothing (a probe, a misconfigured client):
            // only a presented credential that is wrong counts against the address.
            if tried {
                throttle.fail(surface, client);
            }
            Err(ApiError::Unauthorized.into())
        }
    }
}

/// Scope middleware of `/v1`: a configured client API key, bound to a merchant.
pub async fn require_merchant(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let merchant = checked(&req, Surface::Client, |creds, token| {
        token.and_then(|token| creds.merchant_for(&token).cloned())
    })?;
    tracing::Span::current().record("merchant_id", merchant.as_str());
    req.extensions_mut().insert(merchant);
    next.call(req).await
}

/// Scope middleware of `/admin`: the admin token (a client key is not enough).
pub async fn require_admin(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let admin = checked(&req, Surface::Admin, |creds, token| {
        token.is_some_and(|token| creds.is_admin(&token)).then_some(Admin)
    })?;
    req.extensions_mut().insert(admin);
    next.call(req).await
}
