//! Bearer-token authentication for the client (`/v1`) and admin (`/admin`) scopes.
//!
//! Keys are compared by their SHA-256 digests: the lookup never touches the raw configured
//! secrets, and a map lookup on a digest leaks nothing useful about the key through timing.
//! Client keys come from the configuration (`auth.merchant_keys`) and from the database (keys
//! issued at runtime, `merchant_keys`); [`Credentials`] caches each answer briefly.
//!
//! Both go through the credential throttle ([`crate::throttle`]): a blocked client address is
//! answered `429` before its credential is looked at, and every refused credential counts
//! against its address.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use actors::domain::MerchantId;
use actors::store::merchants;
use lru::LruCache;
use sea_orm::DatabaseConnection;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::client_addr::client_addr;
use crate::config::AuthSettings;
use crate::error::ApiError;
use crate::throttle::{Surface, Throttle};

/// The authenticated admin, put in request extensions by [`require_admin`].
#[derive(Clone, Debug)]
pub struct Admin;

/// How long a key's answer (its merchant, or that it opens nothing) is reused before the
/// database is read again: a key revoked or a merchant disabled on any node is refused on
/// every node within this long (the node that made the change forgets at once).
pub const KEY_FRESHNESS: Duration = Duration::from_millis(500);
/// Keys whose answers are kept; beyond, the least recently used is forgotten.
const CACHED_KEYS: usize = 100_000;
/// An issued key's `last_used_at` is written at most this often.
const LAST_USED_RESOLUTION: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The credentials: the admin token and the keys of `auth.merchant_keys` (digests, from the
/// configuration), and the keys issued at runtime (`merchant_keys`, digests in the database),
/// each answer cached for [`KEY_FRESHNESS`]. A configured key works while its merchant is
/// enabled (disabling a merchant stops its configured key too).
pub struct Credentials {
    configured: HashMap<[u8; 32], MerchantId>,
    admin: [u8; 32],
    db: DatabaseConnection,
    answers: Mutex<LruCache<[u8; 32], Answer>>,
    /// Moved by [`Credentials::forget`]: an answer read before it is not kept.
    generation: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
struct Answer {
    merchant: Option<MerchantId>,
    at: Instant,
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl Credentials {
    /// # Errors
    /// A merchant id that is not valid.
    pub fn from_settings(settings: &AuthSettings, db: DatabaseConnection) -> anyhow::Result<Self> {
        let mut configured = HashMap::new();
        for (merchant, key) in &settings.merchant_keys {
            let merchant = MerchantId::parse(merchant).map_err(anyhow::Error::msg)?;
            configured.insert(digest(key.expose_secret()), merchant);
        }
        Ok(Self {
            configured,
            admin: digest(settings.admin_token.expose_secret()),
            db,
            answers: Mutex::new(LruCache::new(
                NonZeroUsize::new(CACHED_KEYS).unwrap_or(NonZeroUsize::MIN),
            )),
            generation: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The merchants of `auth.merchant_keys`.
    pub fn configured_merchants(&self) -> Vec<MerchantId> {
        let mut merchants: Vec<MerchantId> = self.configured.values().cloned().collect();
        merchants.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        merchants
    }

    /// Forgets every cached answer: called by the node that revokes a key or disables a
    /// merchant, so it refuses at once (the others within [`KEY_FRESHNESS`]).
    pub fn forget(&self) {
        let mut answers = self.lock();
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        answers.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<[u8; 32], Answer>> {
        self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The merchant `token` authenticates, if any.
    async fn merchant_for(&self, token: &SecretString) -> Result<Option<MerchantId>, sea_orm::DbErr> {
        let key = digest(token.expose_secret());
        if let Some(answer) = self
            .lock()
            .get(&key)
            .filter(|answer| answer.at.elapsed() < KEY_FRESHNESS)
        {
            return Ok(answer.merchant.clone());
        }
        // Stamped before the read: an answer is never fresher than what the database said
        // when it was asked, however long the read took.
        let asked = Instant::now();
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let merchant = match self.configured.get(&key) {
            Some(merchant) => merchants::is_enabled(&self.db, merchant)
                .await?
                .then(|| merchant.clone()),
            None => match merchants::lookup(&self.db, &hex::encode(key)).await? {
                Some(owner) => {
                    let now = chrono::Utc::now();
                    if owner.last_used_at.is_none_or(|last| now - last >= LAST_USED_RESOLUTION) {
                        let db = self.db.clone();
                        actix_web::rt::spawn(async move {
                            if let Err(err) = merchants::touch_key(&db, &owner.key_id, now).await {
                                tracing::warn!(error = %err, "could not record a key's last use");
                            }
                        });
                    }
                    Some(owner.merchant)
                }
                None => None,
            },
        };
        let mut answers = self.lock();
        // A revocation here while the read ran: the answer may predate it; not kept.
        if self.generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
            answers.put(
                key,
                Answer {
                    merchant: merchant.clone(),
                    at: asked,
                },
            );
        }
        Ok(merchant)
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
async fn checked<T>(
    req: &ServiceRequest,
    surface: Surface,
    check: impl AsyncFnOnce(&Credentials, &SecretString) -> Result<Option<T>, sea_orm::DbErr>,
) -> Result<T, actix_web::Error> {
    let creds = credentials(req)?;
    let throttle = throttle(req)?;
    let client = client_addr(req.request());
    throttle.check(surface, client).map_err(ApiError::Throttled)?;
    // A request with no credential guesses nothing (a probe, a misconfigured client): only a
    // presented credential that is wrong counts against the address.
    let Some(presented) = bearer(req) else {
        return Err(ApiError::Unauthorized.into());
    };
    match check(&creds, &presented).await.map_err(ApiError::from)? {
        Some(principal) => Ok(principal),
        None => {
            throttle.fail(surface, client);
            Err(ApiError::Unauthorized.into())
        }
    }
}

/// Scope middleware of `/v1`: a client API key (configured or issued), bound to an enabled
/// merchant.
pub async fn require_merchant(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let merchant = checked(&req, Surface::Client, async |creds, token| {
        creds.merchant_for(token).await
    })
    .await?;
    tracing::Span::current().record("merchant_id", merchant.as_str());
    req.extensions_mut().insert(merchant);
    next.call(req).await
}

/// Scope middleware of `/admin`: the admin token (a client key is not enough).
pub async fn require_admin(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let admin = checked(&req, Surface::Admin, async |creds, token| {
        Ok(creds.is_admin(token).then_some(Admin))
    })
    .await?;
    req.extensions_mut().insert(admin);
    next.call(req).await
}
