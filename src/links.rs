//! Absolute links handed to clients: QR images, and checkout links.
//!
//! Checkout links: `{base}/checkout/{order_no}?t=<token>`, where the token is an HMAC-SHA256,
//! under `checkout.link_secret`, over the order number, the order's deadline and the link's own
//! expiry (the deadline plus `checkout.link_grace_seconds`).
//!
//! The buyer's browser holds only this token: it opens one order's page, its status stream,
//! its QR codes and starting an attempt on it, and nothing else. No state is kept: any node
//! with the same secret verifies any link, and a link dies by itself once it expires.
//!
//! Token: `<expiry, unix seconds>.<base64url MAC, unpadded>`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Why a link does not open its order. Both answer 403: a forged link learns nothing, not even
/// whether the order exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this checkout link is not valid")]
    Invalid,
    #[error("this checkout link has expired")]
    Expired,
}

#[derive(Clone)]
pub struct Links {
    secret: SecretString,
    grace: chrono::Duration,
    base_url: String,
}

impl Links {
    pub fn new(secret: SecretString, grace: std::time::Duration, base_url: &str) -> Self {
        Self {
            secret,
            grace: chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX),
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// Where clients reach this service, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The QR image of a payment attempt, for the merchant (`/v1`, API key).
    pub fn qr_png(&self, pay_no: impl std::fmt::Display) -> String {
        format!("{}/v1/payments/{pay_no}/qr.png", self.base_url)
    }

    /// The link to an order's checkout page.
    pub fn checkout(&self, order_no: &str, deadline: DateTime<Utc>) -> String {
        format!(
            "{}/checkout/{order_no}?t={}",
            self.base_url,
            self.token(order_no, deadline)
        )
    }

    /// A token for the order, expiring `grace` after its deadline.
    pub fn token(&self, order_no: &str, deadline: DateTime<Utc>) -> String {
        let expires = deadline.checked_add_signed(self.grace).unwrap_or(deadline).timestamp();
        self.token_expiring_at(order_no, deadline, expires)
    }

    fn token_expiring_at(&self, order_no: &str, deadline: DateTime<Utc>, expires: i64) -> String {
        let mac = self.mac(order_no, deadline, expires).finalize().into_bytes();
        format!("{expires}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    fn mac(&self, order_no: &str, deadline: DateTime<Utc>, expires: i64) -> Hmac<Sha256> {
        let mut mac = keyed(self.secret.expose_secret().as_bytes());
        let message = format!(
            "paywarden checkout v1\n{order_no}\n{}\n{expires}",
            deadline.timestamp_millis()
        );
        mac.update(message.as_bytes());
        mac
    }

    /// Checks `token` for the order with this number and deadline at `now`: the MAC first
    /// (compared in constant time), then the expiry.
    ///
    /// # Errors
    /// [`LinkError::Invalid`] for anything not minted here for this order,
    /// [`LinkError::Expired`] for a genuine link past its expiry.
    pub fn verify(
        &self,
        order_no: &str,
        deadline: DateTime<Utc>,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LinkError> {
        let (expires, mac) = token.split_once('.').ok_or(LinkError::Invalid)?;
        let expires: i64 = expires.parse().map_err(|_| LinkError::Invalid)?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| LinkError::Invalid)?;
        self.mac(order_no, deadline, expires)
            .verify_slice(&mac)
            .map_err(|_| LinkError::Invalid)?;
        if now.timestamp() > expires {
            return Err(LinkError::Expired);
        }
        Ok(())
    }

    /// When the link of `token` expires (read from the token; meaningful once it verified).
    pub fn expiry_of(token: &str) -> Option<DateTime<Utc>> {
        let (expires, _) = token.split_once('.')?;
        DateTime::from_timestamp(expires.parse().ok()?, 0)
    }
}

/// HMAC-SHA256 under `key`. HMAC takes keys of any length, so the fallback (an all-zero key)
/// is never used; it only spares a panic path.
pub(crate) fn keyed(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn links() -> Links {
        Links::new(
            SecretString::from("checkout_test_link_secret_0123456789abcdef"),
            std::time::Duration::from_secs(600),
            "http://127.0.0.1:8080/",
        )
    }

    fn deadline() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn a_link_opens_its_order_until_the_grace_after_the_deadline() {
        let links = links();
        let token = links.token("123", deadline());
        assert!(links
            .checkout("123", deadline())
            .starts_with("http://127.0.0.1:8080/checkout/123?t="));
        assert_eq!(links.verify("123", deadline(), &token, deadline()), Ok(()));
        let last_second = deadline() + chrono::Duration::seconds(600);
        assert_eq!(links.verify("123", deadline(), &token, last_second), Ok(()));
        let after = last_second + chrono::Duration::seconds(1);
        assert_eq!(links.verify("123", deadline(), &token, after), Err(LinkError::Expired));
    }

    #[test]
    fn a_link_opens_no_other_order_and_cannot_be_altered() {
        let links = links();
        let token = links.token("123", deadline());
        let now = deadline();
        assert_eq!(links.verify("124", deadline(), &token, now), Err(LinkError::Invalid));
        let other_deadline = deadline() + chrono::Duration::seconds(1);
        assert_eq!(
            links.verify("123", other_deadline, &token, now),
            Err(LinkError::Invalid)
        );
        // A later expiry with the same MAC.
        let (expires, mac) = token.split_once('.').unwrap();
        let stretched = format!("{}.{mac}", expires.parse::<i64>().unwrap() + 86_400);
        assert_eq!(
            links.verify("123", deadline(), &stretched, now),
            Err(LinkError::Invalid)
        );
        for junk in ["", ".", "abc", "1.!!", &format!("{expires}.")] {
            assert_eq!(
                links.verify("123", deadline(), junk, now),
                Err(LinkError::Invalid),
                "{junk}"
            );
        }
        let other_key = Links::new(
            SecretString::from("another_secret_of_at_least_32_characters"),
            std::time::Duration::from_secs(600),
            "http://x",
        );
        assert_eq!(
            other_key.verify("123", deadline(), &token, now),
            Err(LinkError::Invalid)
        );
    }
}
