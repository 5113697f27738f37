//! Domain values built by parsing, so a value that exists is valid.
//!
//! The HTTP facade deserialises a request into plain fields and hands them to
//! [`NewOrder::parse`]; everything after that works with checked types: positive amounts,
//! a known currency, a total computed without overflow, a TTL inside the configured range.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Moved to `entities` (it is a column of `orders` and `payment_attempts`); kept here for callers.
pub use entities::Currency;
use entities::MinorUnit;
use serde::Serialize;

use crate::settings::{check, Invalid};
use sha2::{Digest, Sha256};

/// The merchant a client API key is bound to. Every client query is scoped by it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MerchantId(String);

impl MerchantId {
    /// # Errors
    /// When the id is empty, longer than 64 bytes, or has characters other than
    /// ASCII letters, digits, `_` and `-`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > 64 {
            return Err(format!("merchant id must be 1 to 64 characters, got {}", raw.len()));
        }
        if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(format!(
                "merchant id '{raw}' may hold only letters, digits, '_' and '-'"
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// [`MerchantId::parse`] for a merchant id a request names (an admin route's path or body).
    ///
    /// # Errors
    /// A [`ValidationError`] `invalid_merchant_id` saying what a merchant id may hold.
    pub fn parse_input(raw: &str) -> Result<Self, ValidationError> {
        Self::parse(raw).map_err(|message| ValidationError::new("invalid_merchant_id", message))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MerchantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request that cannot become an order. `code` is the stable snake_case code clients see.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub code: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Bounds on what a merchant may ask for: the `orders` section of the configuration, read
/// straight into this type.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLimits {
    #[serde(rename = "default_ttl_seconds", with = "crate::settings::seconds")]
    pub default_ttl: Duration,
    #[serde(rename = "min_ttl_seconds", with = "crate::settings::seconds")]
    pub min_ttl: Duration,
    #[serde(rename = "max_ttl_seconds", with = "crate::settings::seconds")]
    pub max_ttl: Duration,
    pub max_items: usize,
    /// Upper bound of one order's total, in minor units: a sanity limit well below overflow. A
    /// [`MinorUnit`], so a negative value is refused as the file is read.
    #[serde(rename = "max_total_minor_units")]
    pub max_total: MinorUnit,
}

impl OrderLimits {
    /// # Errors
    /// The first unusable value, named by its key under `section`.
    pub fn validate(&self, section: &str) -> Result<(), Invalid> {
        check(
            !self.min_ttl.is_zero() && self.min_ttl <= self.max_ttl,
            section,
            "min_ttl_seconds",
            "must be at least 1 and not above max_ttl_seconds",
        )?;
        check(
            self.min_ttl <= self.default_ttl && self.default_ttl <= self.max_ttl,
            section,
            "default_ttl_seconds",
            "must lie between min_ttl_seconds and max_ttl_seconds",
        )?;
        check(self.max_items > 0, section, "max_items", "must be positive")?;
        check(
            self.max_total != MinorUnit::ZERO,
            section,
            "max_total_minor_units",
            "must be positive",
        )
    }
}

/// The fields of an order creation request, as the client sent them.
#[derive(Clone, Debug)]
pub struct OrderRequest {
    pub out_business_id: String,
    pub user_id: String,
    pub subject: String,
    pub currency: Option<String>,
    pub ttl_seconds: Option<i64>,
    pub items: Vec<ItemRequest>,
    pub return_url: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ItemRequest {
    pub sku_id: String,
    pub name: String,
    pub unit_price: i64,
    pub quantity: i64,
}

/// A valid order, not yet stored.
#[derive(Clone, Debug)]
pub struct NewOrder {
    pub merchant_id: MerchantId,
    pub out_business_id: String,
    pub user_id: String,
    pub subject: String,
    pub currency: Currency,
    pub ttl: Duration,
    pub items: Vec<NewItem>,
    pub total: MinorUnit,
    /// Where the checkout page sends the buyer once the order is final.
    pub return_url: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NewItem {
    pub sku_id: String,
    pub name: String,
    pub unit_price: MinorUnit,
    pub quantity: i64,
    pub amount: MinorUnit,
}

impl NewOrder {
    /// Checks every field and computes the total with checked arithmetic.
    ///
    /// # Errors
    /// The first problem found, as a [`ValidationError`] naming the field.
    pub fn parse(merchant_id: MerchantId, req: OrderRequest, limits: &OrderLimits) -> Result<Self, ValidationError> {
        let out_business_id = text_field("out_business_id", &req.out_business_id, 128)?;
        let user_id = text_field("user_id", &req.user_id, 128)?;
        let subject = text_field("subject", &req.subject, 256)?;
        let currency = match req.currency.as_deref() {
            None => Currency::Cny,
            Some(code) => code
                .parse()
                .map_err(|message: String| ValidationError::new("unsupported_currency", message))?,
        };
        let ttl = match req.ttl_seconds {
            None => limits.default_ttl,
            Some(secs) => {
                let in_range = u64::try_from(secs)
                    .ok()
                    .map(Duration::from_secs)
                    .filter(|ttl| *ttl >= limits.min_ttl && *ttl <= limits.max_ttl);
                in_range.ok_or_else(|| {
                    ValidationError::new(
                        "invalid_ttl",
                        format!(
                            "ttl_seconds must be between {} and {}, got {secs}",
                            limits.min_ttl.as_secs(),
                            limits.max_ttl.as_secs()
                        ),
                    )
                })?
            }
        };
        if req.items.is_empty() {
            return Err(ValidationError::new(
                "missing_items",
                "an order needs at least one item",
            ));
        }
        if req.items.len() > limits.max_items {
            return Err(ValidationError::new(
                "too_many_items",
                format!(
                    "an order may have at most {} items, got {}",
                    limits.max_items,
                    req.items.len()
                ),
            ));
        }
        let mut items = Vec::with_capacity(req.items.len());
        let mut total = MinorUnit::ZERO;
        for (index, item) in req.items.into_iter().enumerate() {
            let sku_id = text_field(&format!("items[{index}].sku_id"), &item.sku_id, 64)?;
            let name = text_field(&format!("items[{index}].name"), &item.name, 256)?;
            let invalid_price = || {
                ValidationError::new(
                    "invalid_amount",
                    format!(
                        "items[{index}].unit_price must be a positive number of minor units, got {}",
                        item.unit_price
                    ),
                )
            };
            let unit_price = MinorUnit::new(item.unit_price)
                .ok()
                .filter(|price| *price > MinorUnit::ZERO)
                .ok_or_else(invalid_price)?;
            if item.quantity <= 0 {
                return Err(ValidationError::new(
                    "invalid_quantity",
                    format!("items[{index}].quantity must be positive, got {}", item.quantity),
                ));
            }
            let amount = unit_price
                .checked_mul(item.quantity)
                .filter(|amount| *amount <= limits.max_total)
                .ok_or_else(|| too_large(limits))?;
            total = total
                .checked_add(amount)
                .filter(|total| *total <= limits.max_total)
                .ok_or_else(|| too_large(limits))?;
            items.push(NewItem {
                sku_id,
                name,
                unit_price,
                quantity: item.quantity,
                amount,
            });
        }
        let return_url = req.return_url.as_deref().map(return_url).transpose()?;
        Ok(Self {
            merchant_id,
            out_business_id,
            user_id,
            subject,
            currency,
            ttl,
            items,
            total,
            return_url,
        })
    }

    /// SHA-256 over the order's content (everything but the idempotency key), hex encoded.
    /// Equal fingerprints mean a replay of the same request.
    pub fn fingerprint(&self) -> String {
        #[derive(Serialize)]
        struct Content<'a> {
            user_id: &'a str,
            subject: &'a str,
            currency: Currency,
            ttl_seconds: u64,
            items: &'a [NewItem],
            // Left out when absent, so orders created before it existed keep their fingerprint.
            #[serde(skip_serializing_if = "Option::is_none")]
            return_url: Option<&'a str>,
        }
        let content = Content {
            user_id: &self.user_id,
            subject: &self.subject,
            currency: self.currency,
            ttl_seconds: self.ttl.as_secs(),
            items: &self.items,
            return_url: self.return_url.as_deref(),
        };
        // Serialising plain strings and integers cannot fail; an empty input would still give a
        // stable (if useless) fingerprint rather than a panic.
        let bytes = serde_json::to_vec(&content).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }

    /// Quantity wanted per SKU, in SKU order (a stable lock order for stock rows).
    pub fn quantities_by_sku(&self) -> BTreeMap<&str, i64> {
        let mut wanted: BTreeMap<&str, i64> = BTreeMap::new();
        for item in &self.items {
            let entry = wanted.entry(item.sku_id.as_str()).or_insert(0);
            *entry = entry.saturating_add(item.quantity);
        }
        wanted
    }
}

fn too_large(limits: &OrderLimits) -> ValidationError {
    ValidationError::new(
        "amount_too_large",
        format!("the order total exceeds the limit of {} minor units", limits.max_total),
    )
}

/// An operator's free-text reason (force-close, resolving an anomaly): 1 to
/// [`OperatorReason::MAX_CHARS`] characters, trimmed, no control or format characters
/// ([`is_hidden_char`]). The bound is what
/// fits where it is stored: `orders.close_reason` holds `force-closed: <reason>` in
/// [`entities::orders::CLOSE_REASON_MAX_CHARS`] characters, so a reason that passes never
/// fails the write after the provider has already closed the trade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorReason(String);

impl OperatorReason {
    /// What a force-close stores before the reason.
    pub const FORCE_CLOSED_PREFIX: &'static str = "force-closed: ";
    pub const MAX_CHARS: usize = entities::orders::CLOSE_REASON_MAX_CHARS - Self::FORCE_CLOSED_PREFIX.len();

    /// # Errors
    /// Empty, too long or with control or format characters; the message names the limit.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        Self::parse_field("reason", raw)
    }

    /// As [`Self::parse`], for a body that names the text `field` (a resolution's `note`).
    ///
    /// # Errors
    /// As [`Self::parse`], naming `field`.
    pub fn parse_field(field: &str, raw: &str) -> Result<Self, ValidationError> {
        text_field(field, raw, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for OperatorReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A refund as asked for, every field checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRefund {
    /// The requester's key: one refund per merchant and key.
    pub out_refund_id: String,
    /// Positive, in the order's minor unit.
    pub amount: MinorUnit,
    pub reason: String,
    /// The payment to refund (operators only: a second payment, a mismatched one); `None`
    /// refunds the order's own payment.
    pub pay_no: Option<entities::PayNo>,
}

/// What `out_refund_id`s of automatic refunds start with; refused in requests.
pub const AUTO_REFUND_PREFIX: &str = "auto:";

impl NewRefund {
    /// # Errors
    /// The first problem found, as a [`ValidationError`] naming the field.
    pub fn parse(
        out_refund_id: &str,
        amount: i64,
        reason: &str,
        pay_no: Option<entities::PayNo>,
    ) -> Result<Self, ValidationError> {
        let out_refund_id = text_field(
            "out_refund_id",
            out_refund_id,
            entities::refunds::OUT_REFUND_ID_MAX_CHARS,
        )?;
        if out_refund_id.starts_with(AUTO_REFUND_PREFIX) {
            return Err(ValidationError::new(
                "invalid_field",
                format!("out_refund_id must not start with '{AUTO_REFUND_PREFIX}' (automatic refunds use it)"),
            ));
        }
        let amount = MinorUnit::new(amount)
            .ok()
            .filter(|amount| *amount > MinorUnit::ZERO)
            .ok_or_else(|| {
                ValidationError::new(
                    "invalid_amount",
                    format!("amount must be a positive number of minor units, got {amount}"),
                )
            })?;
        let reason = text_field("reason", reason, entities::refunds::REASON_MAX_CHARS)?;
        Ok(Self {
            out_refund_id,
            amount,
            reason,
            pay_no,
        })
    }

    /// SHA-256 over the refund's content for `order_no` (everything but the key), hex
    /// encoded: equal fingerprints mean a replay of the same request.
    pub fn fingerprint(&self, order_no: &str) -> String {
        let content = serde_json::json!({
            "order_no": order_no,
            "pay_no": self.pay_no,
            "amount": self.amount,
            "reason": self.reason,
        });
        hex::encode(Sha256::digest(content.to_string().as_bytes()))
    }
}

/// An absolute `http` or `https` URL without credentials, at most
/// [`entities::orders::RETURN_URL_MAX_CHARS`] characters, as the URL parser normalises it.
fn return_url(raw: &str) -> Result<String, ValidationError> {
    let invalid = |why: &str| ValidationError::new("invalid_return_url", format!("return_url {why}"));
    let url = url::Url::parse(raw.trim()).map_err(|err| invalid(&format!("is not an absolute URL: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must be an http or https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not carry credentials"));
    }
    let url = String::from(url);
    if url.chars().count() > entities::orders::RETURN_URL_MAX_CHARS {
        return Err(invalid(&format!(
            "must be at most {} characters",
            entities::orders::RETURN_URL_MAX_CHARS
        )));
    }
    Ok(url)
}

pub fn text_field(field: &str, value: &str, max_len: usize) -> Result<String, ValidationError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ValidationError::new(
            "invalid_field",
            format!("{field} must not be empty"),
        ));
    }
    if trimmed.chars().count() > max_len {
        return Err(ValidationError::new(
            "invalid_field",
            format!("{field} must be at most {max_len} characters"),
        ));
    }
    if trimmed.chars().any(is_hidden_char) {
        return Err(ValidationError::new(
            "invalid_field",
            format!("{field} must not contain control or invisible format characters (bidi overrides, zero-width characters)"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// Whether `c` may not appear in a text someone else reads (an order's subject, an item's
/// name, a reason, an operator's name): a control character (Unicode category Cc), or a format
/// character (Cf), which is invisible yet changes what is shown: bidi embeddings, overrides and
/// isolates (U+202A–U+202E, U+2066–U+2069, U+061C, U+200E/U+200F) can make a log line read
/// otherwise than it is written, zero-width characters (U+200B–U+200D, U+FEFF) make two names
/// that look the same differ. The category comes from the Unicode tables of
/// `unicode-properties`, not a hand list.
pub fn is_hidden_char(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    c.is_control() || c.general_category() == GeneralCategory::Format
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_and_zero_width_characters_are_refused_in_text_fields_and_letters_are_not() {
        for hidden in [
            '\u{200B}', '\u{200C}', '\u{200D}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}',
            '\u{FEFF}', '\u{061C}', '\u{0007}',
        ] {
            assert!(is_hidden_char(hidden), "U+{:04X}", u32::from(hidden));
            let err = OperatorReason::parse(&format!("refund{hidden}ed")).unwrap_err();
            assert_eq!(err.code, "invalid_field", "U+{:04X}", u32::from(hidden));
        }
        for visible in ['a', 'é', '退', 'ü', '€', ' ', '😀'] {
            assert!(!is_hidden_char(visible), "{visible}");
        }
        assert!(OperatorReason::parse("退款 refund €5 😀").is_ok());
    }

    fn limits() -> OrderLimits {
        OrderLimits {
            default_ttl: Duration::from_secs(900),
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(86_400),
            max_items: 100,
            max_total: MinorUnit::new(1_000_000_000_000).unwrap(),
        }
    }

    fn request(items: Vec<ItemRequest>) -> OrderRequest {
        OrderRequest {
            out_business_id: "biz-1".into(),
            user_id: "u1".into(),
            subject: "Course".into(),
            currency: None,
            ttl_seconds: None,
            return_url: None,
            items,
        }
    }

    #[test]
    fn a_return_url_is_an_absolute_web_address_without_credentials() {
        let with = |url: &str| {
            let mut req = request(vec![item(100, 1)]);
            req.return_url = Some(url.to_owned());
            NewOrder::parse(merchant(), req, &limits())
        };
        let ok = with(" https://shop.example/orders/42?x=1 ").unwrap();
        assert_eq!(ok.return_url.as_deref(), Some("https://shop.example/orders/42?x=1"));
        for bad in [
            "javascript:alert(1)",
            "/orders/42",
            "https://user:pw@shop.example/",
            "data:text/html,hi",
            "",
        ] {
            assert_eq!(with(bad).unwrap_err().code, "invalid_return_url", "{bad}");
        }
        let long = format!("https://shop.example/{}", "a".repeat(2048));
        assert_eq!(with(&long).unwrap_err().code, "invalid_return_url");
    }

    #[test]
    fn the_return_url_is_part_of_the_fingerprint_only_when_given() {
        let plain = NewOrder::parse(merchant(), request(vec![item(100, 1)]), &limits()).unwrap();
        let mut req = request(vec![item(100, 1)]);
        req.return_url = Some("https://shop.example/done".into());
        let with_url = NewOrder::parse(merchant(), req, &limits()).unwrap();
        assert_ne!(plain.fingerprint(), with_url.fingerprint());
        // What the fingerprint of an order without one was before return_url existed.
        #[derive(Serialize)]
        struct Before<'a> {
            user_id: &'a str,
            subject: &'a str,
            currency: Currency,
            ttl_seconds: u64,
            items: &'a [NewItem],
        }
        let before = Before {
            user_id: &plain.user_id,
            subject: &plain.subject,
            currency: plain.currency,
            ttl_seconds: plain.ttl.as_secs(),
            items: &plain.items,
        };
        let digest = hex::encode(Sha256::digest(serde_json::to_vec(&before).unwrap()));
        assert_eq!(plain.fingerprint(), digest);
    }

    fn item(unit_price: i64, quantity: i64) -> ItemRequest {
        ItemRequest {
            sku_id: "sku-1".into(),
            name: "Rust course".into(),
            unit_price,
            quantity,
        }
    }

    fn merchant() -> MerchantId {
        MerchantId::parse("demo").unwrap()
    }

    #[test]
    fn total_is_the_sum_of_line_amounts() {
        let order = NewOrder::parse(merchant(), request(vec![item(1999, 2), item(1, 1)]), &limits()).unwrap();
        assert_eq!(order.total, MinorUnit::new(3999).unwrap());
        assert_eq!(order.currency, Currency::Cny);
        assert_eq!(order.ttl, Duration::from_secs(900));
    }

    #[test]
    fn bad_items_are_rejected_with_their_code() {
        let cases = [
            (vec![], "missing_items"),
            (vec![item(0, 1)], "invalid_amount"),
            (vec![item(-5, 1)], "invalid_amount"),
            (vec![item(5, 0)], "invalid_quantity"),
            (vec![item(5, -1)], "invalid_quantity"),
            (vec![item(i64::MAX, 2)], "amount_too_large"),
            (
                vec![item(999_999_999_999, 1), item(999_999_999_999, 1)],
                "amount_too_large",
            ),
        ];
        for (items, code) in cases {
            let err = NewOrder::parse(merchant(), request(items.clone()), &limits()).unwrap_err();
            assert_eq!(err.code, code, "items {items:?}");
        }
    }

    #[test]
    fn ttl_outside_the_range_and_unknown_currency_are_rejected() {
        for ttl in [0, -1, 86_401] {
            let mut req = request(vec![item(1, 1)]);
            req.ttl_seconds = Some(ttl);
            assert_eq!(
                NewOrder::parse(merchant(), req, &limits()).unwrap_err().code,
                "invalid_ttl"
            );
        }
        let mut req = request(vec![item(1, 1)]);
        req.currency = Some("XYZ".into());
        assert_eq!(
            NewOrder::parse(merchant(), req, &limits()).unwrap_err().code,
            "unsupported_currency"
        );
    }

    #[test]
    fn fingerprint_depends_on_content_not_on_whitespace_around_it() {
        let a = NewOrder::parse(merchant(), request(vec![item(100, 1)]), &limits()).unwrap();
        let mut padded = request(vec![item(100, 1)]);
        padded.subject = "  Course ".into();
        let b = NewOrder::parse(merchant(), padded, &limits()).unwrap();
        let c = NewOrder::parse(merchant(), request(vec![item(101, 1)]), &limits()).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn quantities_are_summed_per_sku() {
        let order = NewOrder::parse(merchant(), request(vec![item(1, 2), item(3, 5)]), &limits()).unwrap();
        assert_eq!(order.quantities_by_sku().get("sku-1"), Some(&7));
    }
}
