//! Console sign-in: the admin token once, then a session cookie.
//!
//! The cookie is stateless and signed: `<expiry>.<nonce>.<operator>.<mac>`, an HMAC-SHA256
//! under a key derived from the admin token, so rotating the token ends every session, and any
//! node of a deployment accepts it. `HttpOnly` (no script reads it), `SameSite=Strict` (no
//! other site's page sends it), `Path=/admin/ui`, `Secure` when the service is reached over
//! https.
//!
//! Every form that changes something carries a CSRF token derived from the session's nonce
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
use hmac::Mac;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::routes::html::message_page;
use crate::startup::AppState;

pub const COOKIE: &str = "pw_console";
pub const PATH: &str = "/admin/ui";
pub const LOGIN: &str = "/admin/ui/login";

/// The console's keys, from the admin token.
#[derive(Clone)]
pub struct ConsoleKeys {
    key: [u8; 32],
    admin_digest: [u8; 32],
    session: Duration,
    secure: bool,
}

/// A signed-in operator.
#[derive(Clone, Debug)]
pub struct ConsoleSession {
    /// The name given at sign-in; actions record `admin:<name>`.
    pub operator: String,
    nonce: String,
    csrf: String,
}

impl ConsoleSession {
    /// The value every state-changing form must send back as `csrf`.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// The operator as the log records it.
    pub fn operator(&self) -> actors::store::Operator {
        actors::store::Operator::Admin(self.operator.clone())
    }
}

impl ConsoleKeys {
    pub fn new(admin_token: &SecretString, session: Duration, secure: bool) -> Self {
        let token = admin_token.expose_secret().as_bytes();
        let mut derive = Sha256::new();
        derive.update(b"paywarden console session v1\n");
        derive.update(token);
        Self {
            key: derive.finalize().into(),
            admin_digest: Sha256::digest(token).into(),
            session,
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

    fn csrf_for(&self, nonce: &str) -> String {
        self.mac(&["csrf", nonce])
    }

    /// The cookie of a new session for `operator`.
    pub fn sign_in(&self, operator: &str) -> Cookie<'static> {
        // 122 random bits from the operating system.
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let expires = Utc::now()
            .timestamp()
            .saturating_add(i64::try_from(self.session.as_secs()).unwrap_or(i64::MAX));
        let expires = expires.to_string();
        let name = URL_SAFE_NO_PAD.encode(operator.as_bytes());
        let mac = self.mac(&["session", &expires, &nonce, &name]);
        self.cookie(format!("{expires}.{nonce}.{name}.{mac}"), self.session)
    }

    /// The cookie that ends the session in the browser.
    pub fn sign_out(&self) -> Cookie<'static> {
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

    /// The session a cookie value carries, if it is genuine and not expired.
    pub fn session(&self, value: &str) -> Option<ConsoleSession> {
        let mut parts = value.split('.');
        let (expires, nonce, name, mac) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        if !self.verify(&["session", expires, nonce, name], mac) {
            return None;
        }
        if expires.parse::<i64>().ok()? < Utc::now().timestamp() {
            return None;
        }
        let operator = String::from_utf8(URL_SAFE_NO_PAD.decode(name).ok()?).ok()?;
        Some(ConsoleSession {
            operator,
            csrf: self.csrf_for(nonce),
            nonce: nonce.to_owned(),
        })
    }

    /// Checks a form's CSRF token against the session's.
    ///
    /// # Errors
    /// [`ConsoleRejection::Forged`] when it does not match.
    pub fn check_csrf(&self, session: &ConsoleSession, sent: &str) -> Result<(), ConsoleRejection> {
        if self.verify(&["csrf", &session.nonce], sent) {
            Ok(())
        } else {
            Err(ConsoleRejection::Forged)
        }
    }
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
}

impl ResponseError for ConsoleRejection {
    fn status_code(&self) -> StatusCode {
        match self {
            ConsoleRejection::SignIn => StatusCode::SEE_OTHER,
            ConsoleRejection::Forged => StatusCode::FORBIDDEN,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ConsoleRejection::SignIn => HttpResponse::SeeOther()
                .insert_header((header::LOCATION, LOGIN))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish(),
            ConsoleRejection::Forged => message_page(StatusCode::FORBIDDEN, "Refused", &self.to_string()),
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

impl FromRequest for ConsoleSession {
    type Error = ConsoleRejection;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let session = req
            .app_data::<actix_web::web::Data<AppState>>()
            .zip(req.cookie(COOKIE))
            .and_then(|(state, cookie)| state.console.session(cookie.value()));
        let result = match session {
            None => Err(ConsoleRejection::SignIn),
            Some(_) if !same_origin(req) => Err(ConsoleRejection::Forged),
            Some(session) => Ok(session),
        };
        std::future::ready(result)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn console_keys(token: &str) -> ConsoleKeys {
        ConsoleKeys::new(&SecretString::from(token.to_owned()), Duration::from_secs(3600), false)
    }

    #[test]
    fn a_session_cookie_carries_its_operator_and_cannot_be_altered() {
        let keys = console_keys("admin_test_token");
        let cookie = keys.sign_in("alice");
        assert!(cookie.http_only().unwrap());
        assert_eq!(cookie.same_site(), Some(SameSite::Strict));
        assert_eq!(cookie.path(), Some(PATH));
        let session = keys.session(cookie.value()).unwrap();
        assert_eq!(session.operator, "alice");
        keys.check_csrf(&session, session.csrf()).unwrap();
        assert!(keys.check_csrf(&session, "forged").is_err());

        let mut parts: Vec<String> = cookie.value().split('.').map(str::to_owned).collect();
        parts[2] = URL_SAFE_NO_PAD.encode("mallory");
        assert!(keys.session(&parts.join(".")).is_none(), "another operator");
        let mut parts: Vec<String> = cookie.value().split('.').map(str::to_owned).collect();
        parts[0] = (Utc::now().timestamp() + 999_999).to_string();
        assert!(keys.session(&parts.join(".")).is_none(), "a longer session");
        assert!(keys.session("").is_none());
        assert!(
            console_keys("another_admin_token").session(cookie.value()).is_none(),
            "a new admin token ends every session"
        );
    }

    #[test]
    fn each_session_has_its_own_csrf_token() {
        let keys = console_keys("admin_test_token");
        let one = keys.session(keys.sign_in("alice").value()).unwrap();
        let two = keys.session(keys.sign_in("alice").value()).unwrap();
        assert_ne!(one.csrf(), two.csrf());
        assert!(keys.check_csrf(&one, two.csrf()).is_err());
    }
}
