//! Console sign-in: the admin token once, then a session cookie backed by a database row.
//!
//! The cookie is `<token>.<mac>`: a 256-bit random token and its HMAC-SHA256 under a key derived
//! from `console.session_secret`, an independent random secret (never the admin token, whose
//! guesses a stolen cookie would otherwise let anyone test offline). The session itself is a
//! `console_sessions` row found by the token's SHA-256 (the table never holds the token), so any
//! node of a deployment accepts it, and signing out revokes it at once: the same cookie is
//! refused afterwards, on every node. A session ends `console.idle_seconds` after its last use
//! and `console.session_seconds` after sign-in, whichever comes first; an operator can sign out
//! every session at once. The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (no
//! other site's page sends it), `Path=/admin/ui`, `Secure` when the service is reached over
//! https.
//!
//! Every form that changes something carries a CSRF token derived from the session's token
//! (also under the key), and a request whose `Origin` names another host is refused: with
//! `SameSite=Strict` either would stop a cross-site form; both are checked.

use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::Utc;
use entities::console_sessions;
use hmac::Mac;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::routes::html::message_page;

pub const COOKIE: &str = "pw_console";
pub const PATH: &str = "/admin/ui";
pub const LOGIN: &str = "/admin/ui/login";

/// The console's keys and session limits.
#[derive(Clone)]
pub struct ConsoleKeys {
    /// HMAC key of cookies and CSRF tokens, derived from `console.session_secret`.
    key: [u8; 32],
    admin_digest: [u8; 32],
    /// Absolute length of a session.
    session: Duration,
    /// A session unused this long ends.
    idle: Duration,
    secure: bool,
}

/// A signed-in operator.
#[derive(Clone, Debug)]
pub struct ConsoleSession {
    /// The session row's public id.
    pub id: String,
    /// The name given at sign-in; actions record `admin:<name> (session <id>)`.
    pub operator: String,
    /// The secret token (the cookie's first part); only the CSRF token is derived from it.
    token: String,
    csrf: String,
    /// What waits for an operator, read with the session: the navigation shows the counts.
    pub attention: actors::store::gauges::Attention,
}

impl ConsoleSession {
    /// The value every state-changing form must send back as `csrf`.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// The operator as the log records it: `admin:<name> (session <id>)`. The name is
    /// self-declared at sign-in; the session's public id ties together what one sign-in did
    /// (`console_sessions.id`, never the secret token).
    pub fn operator(&self) -> actors::store::Operator {
        actors::store::Operator::Admin(format!("{} (session {})", self.operator, self.id))
    }
}

/// `value` of the random token: 32 bytes from the operating system (two v4 UUIDs hold 244
/// random bits).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A session secret for a process that was given none (development and test profiles only:
/// the production profile refuses to start without one).
pub fn generated_secret() -> SecretString {
    SecretString::from(format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    ))
}

impl ConsoleKeys {
    /// `secret` is `console.session_secret` (or a generated one); `session` and `idle` the
    /// absolute and idle limits.
    pub fn new(
        admin_token: &SecretString,
        secret: &SecretString,
        session: Duration,
        idle: Duration,
        secure: bool,
    ) -> Self {
        // The admin token's digest goes into the key too: rotating the token (what an
        // operator does after a leak) ends every session signed in with the old one. The key
        // stays unguessable from a cookie: the session secret is random.
        let admin_digest: [u8; 32] = Sha256::digest(admin_token.expose_secret().as_bytes()).into();
        let mut derive = crate::links::keyed(secret.expose_secret().as_bytes());
        derive.update(b"paywarden console session v2");
        derive.update(&admin_digest);
        Self {
            key: derive.finalize().into_bytes().into(),
            admin_digest,
            session,
            idle,
            secure,
        }
    }

    /// Whether `candidate` is the admin token (compared by digest, as the API does).
    pub fn is_admin_token(&self, candidate: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        digest == self.admin_digest
    }

    fn hmac(&self, parts: &[&str]) -> hmac::Hmac<Sha256> {
        let mut mac = crate::links::keyed(&self.key);
        for part in parts {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        mac
    }

    fn mac(&self, parts: &[&str]) -> String {
        URL_SAFE_NO_PAD.encode(self.hmac(parts).finalize().into_bytes())
    }

    /// Whether `sent` is the MAC of `parts` (compared in constant time by `hmac`).
    fn verify(&self, parts: &[&str], sent: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(sent)
            .is_ok_and(|sent| self.hmac(parts).verify_slice(&sent).is_ok())
    }

    fn csrf_for(&self, token: &str) -> String {
        self.mac(&["csrf", token])
    }

    /// Opens a session for `operator` (a new row) and returns its cookie. Sessions past their
    /// absolute expiry are deleted on the way.
    ///
    /// # Errors
    /// The database failed.
    pub async fn sign_in(&self, db: &DatabaseConnection, operator: &str) -> Result<(String, Cookie<'static>), DbErr> {
        let now = Utc::now();
        console_sessions::Entity::delete_many()
            .filter(console_sessions::Column::ExpiresAt.lt(now))
            .exec(db)
            .await?;
        let token = random_token();
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let absolute = chrono::Duration::from_std(self.session).unwrap_or(chrono::Duration::MAX);
        console_sessions::Entity::insert(console_sessions::ActiveModel {
            id: ActiveValue::Set(id.clone()),
            token_digest: ActiveValue::Set(token_digest(&token)),
            operator: ActiveValue::Set(operator.to_owned()),
            created_at: ActiveValue::Set(now),
            last_seen_at: ActiveValue::Set(now),
            expires_at: ActiveValue::Set(now.checked_add_signed(absolute).unwrap_or(now)),
            revoked_at: ActiveValue::Set(None),
        })
        .exec_without_returning(db)
        .await?;
        let mac = self.mac(&["session", &token]);
        Ok((id, self.cookie(format!("{token}.{mac}"), self.session)))
    }

    /// The cookie that ends the session in the browser.
    pub fn sign_out_cookie(&self) -> Cookie<'static> {
        self.cookie(String::new(), Duration::ZERO)
    }

    fn cookie(&self, value: String, max_age: Duration) -> Cookie<'static> {
        Cookie::build(COOKIE, value)
            .path(PATH)
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure)
            .max_age(actix_web::cookie::time::Duration::seconds(
                i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
            ))
            .finish()
    }

    /// The session a cookie value carries, if it is genuine, not revoked, not idle for too long
    /// and not past its expiry. Its last use is recorded (at most a few times per idle period)
    /// when `used`: a page's own refresh (the dashboard's) is not a use, so an open tab nobody
    /// looks at still ends after the idle timeout.
    ///
    /// # Errors
    /// The database failed.
    pub async fn session(
        &self,
        db: &DatabaseConnection,
        value: &str,
        used: bool,
    ) -> Result<Option<ConsoleSession>, DbErr> {
        let Some((token, mac)) = value.split_once('.') else {
            return Ok(None);
        };
        if !self.verify(&["session", token], mac) {
            return Ok(None);
        }
        let Some(row) = console_sessions::Entity::find()
            .filter(console_sessions::Column::TokenDigest.eq(token_digest(token)))
            .one(db)
            .await?
        else {
            return Ok(None);
        };
        let now = Utc::now();
        let idle = chrono::Duration::from_std(self.idle).unwrap_or(chrono::Duration::MAX);
        let idle_until = row.last_seen_at.checked_add_signed(idle).unwrap_or(row.last_seen_at);
        if row.revoked_at.is_some() || row.expires_at <= now || idle_until <= now {
            return Ok(None);
        }
        // Refreshing on every request would write on every page view; a quarter of the idle
        // period (a minute at most) is precise enough for the timeout.
        let refresh = chrono::Duration::from_std((self.idle / 4).min(Duration::from_secs(60))).unwrap_or_default();
        if used && now - row.last_seen_at >= refresh {
            console_sessions::Entity::update_many()
                .col_expr(console_sessions::Column::LastSeenAt, Expr::value(now))
                .filter(console_sessions::Column::Id.eq(row.id.as_str()))
                .filter(console_sessions::Column::RevokedAt.is_null())
                .exec(db)
                .await?;
        }
        Ok(Some(ConsoleSession {
            id: row.id,
            operator: row.operator,
            csrf: self.csrf_for(token),
            token: token.to_owned(),
            attention: actors::store::gauges::Attention::default(),
        }))
    }

    /// Checks a form's CSRF token against the session's.
    ///
    /// # Errors
    /// [`ConsoleRejection::Forged`] when it does not match.
    pub fn check_csrf(&self, session: &ConsoleSession, sent: &str) -> Result<(), ConsoleRejection> {
        if self.verify(&["csrf", &session.token], sent) {
            Ok(())
        } else {
            Err(ConsoleRejection::Forged)
        }
    }
}

/// Ends one session: its cookie is refused from now on, on every node.
///
/// # Errors
/// The database failed.
pub async fn revoke(db: &DatabaseConnection, id: &str) -> Result<(), DbErr> {
    console_sessions::Entity::update_many()
        .col_expr(console_sessions::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(console_sessions::Column::Id.eq(id))
        .filter(console_sessions::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Ends every session that has not ended yet; how many.
///
/// # Errors
/// The database failed.
pub async fn revoke_all(db: &DatabaseConnection) -> Result<u64, DbErr> {
    let now = Utc::now();
    let result = console_sessions::Entity::update_many()
        .col_expr(console_sessions::Column::RevokedAt, Expr::value(now))
        .filter(console_sessions::Column::RevokedAt.is_null())
        .filter(console_sessions::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Why a console request was not served.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleRejection {
    /// No session, or an expired or altered one: to the sign-in page.
    #[error("sign in first")]
    SignIn,
    /// A state-changing request without the session's CSRF token, or from another origin.
    #[error("this form was not sent from the console, or the page was too old; reload it and try again")]
    Forged,
    /// The session could not be looked up (the database failed; logged).
    #[error("the console is unavailable right now; try again shortly")]
    Unavailable,
}

impl ResponseError for ConsoleRejection {
    fn status_code(&self) -> StatusCode {
        match self {
            ConsoleRejection::SignIn => StatusCode::SEE_OTHER,
            ConsoleRejection::Forged => StatusCode::FORBIDDEN,
            ConsoleRejection::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ConsoleRejection::SignIn => HttpResponse::SeeOther()
                .insert_header((header::LOCATION, LOGIN))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish(),
            ConsoleRejection::Forged => message_page(StatusCode::FORBIDDEN, "Refused", &self.to_string()),
            ConsoleRejection::Unavailable => {
                message_page(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", &self.to_string())
            }
        }
    }
}

/// Whether the request's `Origin`, when it has one, is this very host. Browsers send it on
/// every POST; a form posted from another site names that site.
pub fn same_origin(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Some(host) = req.headers().get(header::HOST).and_then(|host| host.to_str().ok()) else {
        return false;
    };
    origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .is_some_and(|(_, origin_host)| origin_host.eq_ignore_ascii_case(host))
}

/// What the session extractor reads: the keys and the database holding the sessions, handed to
/// the server as its own app data (so this module needs nothing of the handlers' state).
#[derive(Clone)]
pub struct SessionStore {
    pub keys: ConsoleKeys,
    pub db: DatabaseConnection,
}

/// The header of a page's own refresh, which is not a use of the session.
pub const REFRESH_HEADER: &str = "x-console-refresh";

impl FromRequest for ConsoleSession {
    type Error = ConsoleRejection;
    type Future = futures::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let store = req.app_data::<actix_web::web::Data<SessionStore>>().cloned();
        let cookie = req.cookie(COOKIE);
        let same_origin = same_origin(req);
        // Sent by the console's script when it refreshes a page by itself.
        let used = !req.headers().contains_key(REFRESH_HEADER);
        Box::pin(async move {
            let (Some(store), Some(cookie)) = (store, cookie) else {
                return Err(ConsoleRejection::SignIn);
            };
            match store.keys.session(&store.db, cookie.value(), used).await {
                Ok(None) => Err(ConsoleRejection::SignIn),
                Ok(Some(_)) if !same_origin => Err(ConsoleRejection::Forged),
                Ok(Some(mut session)) => {
                    match actors::store::gauges::attention(&store.db).await {
                        Ok(attention) => session.attention = attention,
                        // The page still serves; the counts read as none.
                        Err(err) => tracing::warn!(error.message = %err, "failed to count what needs attention"),
                    }
                    Ok(session)
                }
                Err(err) => {
                    tracing::error!(error.message = %err, "console session lookup failed");
                    Err(ConsoleRejection::Unavailable)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn console_keys(secret: &str) -> ConsoleKeys {
        ConsoleKeys::new(
            &SecretString::from("admin_test_token".to_owned()),
            &SecretString::from(secret.to_owned()),
            Duration::from_secs(3600),
            Duration::from_secs(600),
            false,
        )
    }

    #[test]
    fn csrf_tokens_are_per_session_and_per_secret() {
        let keys = console_keys("a_session_secret_of_at_least_32_chars");
        let session = |token: &str| ConsoleSession {
            id: "id".to_owned(),
            operator: "alice".to_owned(),
            token: token.to_owned(),
            csrf: keys.csrf_for(token),
            attention: Default::default(),
        };
        let one = session(&random_token());
        let two = session(&random_token());
        keys.check_csrf(&one, one.csrf()).unwrap();
        assert!(keys.check_csrf(&one, two.csrf()).is_err());
        assert!(keys.check_csrf(&one, "forged").is_err());
        let other = console_keys("another_session_secret_of_32_chars!!");
        assert!(other.check_csrf(&one, one.csrf()).is_err());
    }

    #[test]
    fn the_longest_operator_with_its_session_fits_the_log_s_operator_column() {
        let session = ConsoleSession {
            id: "0123456789ab".to_owned(),
            operator: "é".repeat(64),
            token: random_token(),
            csrf: String::new(),
            attention: Default::default(),
        };
        // `order_logs.operator` and `unmatched_notifications.resolved_by` hold 96 characters.
        assert!(session.operator().to_string().chars().count() <= 96);
    }

    #[test]
    fn tokens_are_random_and_only_their_digest_is_kept() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_eq!(token_digest(&a).len(), 64);
        assert!(!token_digest(&a).contains(&a));
    }
}
