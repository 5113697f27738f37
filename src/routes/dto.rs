//! Wire types of the HTTP contract. Rows never go to clients: each response type is built from
//! entity models here, at the boundary. 64-bit ids go out as strings.
//!
//! Each type also describes itself for the OpenAPI document (`ToSchema`); the doc comments on
//! fields are the field descriptions clients read. The `entities` enums are described by
//! [`schema`], from their own variants, so `entities` needs no knowledge of the document.

use actors::domain::{ItemRequest, NewItem, OrderRequest};
use actors::store::OrderDetail;
use chrono::{DateTime, Utc};
use entities::{
    order_items, order_logs, orders, payment_attempts, AttemptStatus, Currency, MinorUnit, OrderStatus, PayNo, Provider,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::links::Links;

/// Text fields are trimmed, then checked in characters: not empty, not too long, no control
/// characters (`pattern`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "out_business_id": "checkout-20240501-0001",
    "user_id": "user-42",
    "subject": "Rust course",
    "currency": "CNY",
    "ttl_seconds": 900,
    "items": [{"sku_id": "sku-course", "name": "Rust course", "unit_price": 1999, "quantity": 1}]
}))]
pub struct CreateOrderBody {
    /// The merchant's own id of the purchase: the idempotency key. The same id with the same
    /// content answers the same order (200); with other content, 409 `idempotency_conflict`.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub out_business_id: String,
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub user_id: String,
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub subject: String,
    /// ISO 4217 code, upper case; absent or null: `CNY`.
    #[schema(value_type = Option<schema::Currency>)]
    pub currency: Option<String>,
    /// Seconds until the order expires; absent or null: the configured default (15 minutes).
    /// Outside the configured range (`minimum`, `maximum`): 422 `invalid_ttl`.
    #[schema(minimum = 1)]
    pub ttl_seconds: Option<i64>,
    /// At least one, at most the configured `orders.max_items`. Items whose `sku_id` the
    /// merchant tracks stock for reserve it (409 `insufficient_stock` when short).
    #[schema(min_items = 1)]
    pub items: Vec<CreateItemBody>,
    /// Where the checkout page sends the buyer once the order is final: an absolute `http(s)`
    /// URL without credentials, at most 2048 characters (else 422 `invalid_return_url`).
    #[schema(max_length = 2048)]
    pub return_url: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateItemBody {
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub sku_id: String,
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub name: String,
    /// Minor units (fen, cents), positive. `unit_price * quantity`, and the order's total,
    /// may not exceed the configured `orders.max_total_minor_units` (422 `amount_too_large`).
    #[schema(minimum = 1)]
    pub unit_price: i64,
    #[schema(minimum = 1)]
    pub quantity: i64,
}

impl From<CreateOrderBody> for OrderRequest {
    fn from(body: CreateOrderBody) -> Self {
        OrderRequest {
            out_business_id: body.out_business_id,
            user_id: body.user_id,
            subject: body.subject,
            currency: body.currency,
            ttl_seconds: body.ttl_seconds,
            return_url: body.return_url,
            items: body
                .items
                .into_iter()
                .map(|item| ItemRequest {
                    sku_id: item.sku_id,
                    name: item.name,
                    unit_price: item.unit_price,
                    quantity: item.quantity,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"provider": "sandbox"}))]
pub struct CreatePaymentBody {
    /// A provider the order's merchant has an enabled account of, or the deployment has
    /// configured; another name: 422 `unknown_provider`, a known one that neither has: 422
    /// `provider_unavailable`.
    #[schema(value_type = schema::Provider)]
    pub provider: String,
    /// Which of the merchant's accounts of `provider` (when it has several); absent: its
    /// oldest enabled one. Not one of them: 422 `invalid_field`.
    #[serde(default)]
    pub account_id: Option<String>,
}

/// An order with its items and payment attempts (and, for operators, its log).
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderResponse {
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    pub order_no: String,
    pub merchant_id: String,
    pub out_business_id: String,
    pub user_id: String,
    pub subject: String,
    /// Minor units: the sum of the items' amounts.
    #[schema(value_type = i64, minimum = 0)]
    pub total_amount: MinorUnit,
    #[schema(value_type = schema::Currency)]
    pub currency: Currency,
    #[schema(value_type = schema::OrderStatus)]
    pub status: OrderStatus,
    pub close_reason: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub items: Vec<ItemResponse>,
    /// Every payment attempt, oldest first.
    pub payments: Vec<PaymentResponse>,
    /// The buyer's checkout page: hand it to the buyer as it is. It opens this order only, and
    /// stops opening `checkout.link_grace_seconds` after the deadline.
    pub checkout_url: String,
    /// Where the checkout page sends the buyer once the order is final.
    pub return_url: Option<String>,
    /// Minor units of the order's payment the provider has confirmed refunded; the order is
    /// `refunded` once this reaches what was paid.
    #[schema(value_type = i64, minimum = 0)]
    pub refunded_amount: MinorUnit,
    /// Admin views only: every status change with its operator and reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub logs: Option<Vec<LogResponse>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ItemResponse {
    pub sku_id: String,
    pub name: String,
    #[schema(value_type = i64, minimum = 0)]
    pub unit_price: MinorUnit,
    pub quantity: i64,
    /// `unit_price * quantity`, minor units.
    #[schema(value_type = i64, minimum = 0)]
    pub amount: MinorUnit,
}

/// One payment attempt: a trade at a provider, with its own `pay_no`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentResponse {
    #[schema(value_type = String, pattern = "^[1-9][0-9]{0,18}$")]
    pub pay_no: PayNo,
    #[schema(value_type = schema::Provider)]
    pub provider: Provider,
    #[schema(value_type = schema::AttemptStatus)]
    pub status: AttemptStatus,
    #[schema(value_type = i64, minimum = 0)]
    pub amount: MinorUnit,
    #[schema(value_type = schema::Currency)]
    pub currency: Currency,
    /// What the buyer's app opens (the QR code's content); null until the provider answered.
    pub code_url: Option<String>,
    /// Absolute link to the QR code image (`GET /v1/payments/{pay_no}/qr.png`).
    pub qr_png_url: Option<String>,
    pub provider_txn_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
}

/// One row of an order's log.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogResponse {
    pub event: String,
    pub from: Option<String>,
    pub to: String,
    pub operator: String,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// An order's status; the timestamps and reason only once they apply.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    pub order_no: String,
    #[schema(value_type = schema::OrderStatus)]
    pub status: OrderStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub paid_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub closed_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub close_reason: Option<String>,
}

/// A row of the admin order list.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderSummary {
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    pub order_no: String,
    pub merchant_id: String,
    #[schema(value_type = schema::OrderStatus)]
    pub status: OrderStatus,
    #[schema(value_type = i64, minimum = 0)]
    pub total_amount: MinorUnit,
    #[schema(value_type = schema::Currency)]
    pub currency: Currency,
    pub expires_at: DateTime<Utc>,
    pub close_reason: Option<String>,
}

impl OrderResponse {
    pub fn from_detail(detail: OrderDetail, links: &Links, with_logs: bool) -> Self {
        let OrderDetail {
            order,
            items,
            attempts,
            logs,
        } = detail;
        Self {
            checkout_url: links.checkout(&order.order_no, order.expires_at),
            return_url: order.return_url,
            refunded_amount: order.refunded_amount,
            order_no: order.order_no,
            merchant_id: order.merchant_id,
            out_business_id: order.out_business_id,
            user_id: order.user_id,
            subject: order.subject,
            total_amount: order.total_amount,
            currency: order.currency,
            status: order.status,
            close_reason: order.close_reason,
            expires_at: order.expires_at,
            created_at: order.created_at,
            paid_at: order.paid_at,
            closed_at: order.closed_at,
            items: items.into_iter().map(ItemResponse::from).collect(),
            payments: attempts
                .into_iter()
                .map(|attempt| PaymentResponse::new(attempt, links))
                .collect(),
            logs: with_logs.then(|| logs.into_iter().map(LogResponse::from).collect()),
        }
    }
}

impl OrderResponse {
    /// A just-created order as it was written (its items are the request's, in order; it has
    /// no attempt yet), without reading it back.
    pub fn created(order: orders::Model, items: &[NewItem], links: &Links) -> Self {
        let detail = OrderDetail {
            order,
            items: Vec::new(),
            attempts: Vec::new(),
            logs: Vec::new(),
        };
        let mut response = Self::from_detail(detail, links, false);
        response.items = items.iter().map(ItemResponse::from).collect();
        response
    }
}

impl From<&NewItem> for ItemResponse {
    fn from(item: &NewItem) -> Self {
        Self {
            sku_id: item.sku_id.clone(),
            name: item.name.clone(),
            unit_price: item.unit_price,
            quantity: item.quantity,
            amount: item.amount,
        }
    }
}

impl From<order_items::Model> for ItemResponse {
    fn from(item: order_items::Model) -> Self {
        Self {
            sku_id: item.sku_id,
            name: item.name,
            unit_price: item.unit_price,
            quantity: item.quantity,
            amount: item.amount,
        }
    }
}

impl PaymentResponse {
    pub fn new(attempt: payment_attempts::Model, links: &Links) -> Self {
        let qr_png_url = attempt.code_url.as_ref().map(|_| links.qr_png(attempt.pay_no));
        Self {
            pay_no: attempt.pay_no,
            provider: attempt.provider,
            status: attempt.status,
            amount: attempt.amount,
            currency: attempt.currency,
            code_url: attempt.code_url,
            qr_png_url,
            provider_txn_id: attempt.provider_txn_id,
            created_at: attempt.created_at,
            paid_at: attempt.paid_at,
        }
    }
}

impl From<order_logs::Model> for LogResponse {
    fn from(log: order_logs::Model) -> Self {
        Self {
            event: log.event,
            from: log.from_status,
            to: log.to_status,
            operator: log.operator,
            reason: log.reason,
            at: log.created_at,
        }
    }
}

impl From<&orders::Model> for StatusResponse {
    fn from(order: &orders::Model) -> Self {
        Self {
            order_no: order.order_no.clone(),
            status: order.status,
            paid_at: order.paid_at,
            closed_at: order.closed_at,
            close_reason: order.close_reason.clone(),
        }
    }
}

impl From<orders::Model> for OrderSummary {
    fn from(order: orders::Model) -> Self {
        Self {
            order_no: order.order_no,
            merchant_id: order.merchant_id,
            status: order.status,
            total_amount: order.total_amount,
            currency: order.currency,
            expires_at: order.expires_at,
            close_reason: order.close_reason,
        }
    }
}

/// Schemas of the `entities` enums, each listing the values serde writes for every variant.
/// Read from the enums at run time, so a new variant appears in the document by itself.
pub mod schema {
    use std::borrow::Cow;

    use sea_orm::Iterable;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;

    /// The wire values of every variant of `E`.
    fn wire_values<E: Iterable + serde::Serialize>() -> Vec<serde_json::Value> {
        E::iter().filter_map(|value| serde_json::to_value(value).ok()).collect()
    }

    macro_rules! enum_schema {
        ($(#[$doc:meta])* $marker:ident, $enum:ty, $description:literal) => {
            $(#[$doc])*
            pub struct $marker;

            impl utoipa::PartialSchema for $marker {
                fn schema() -> RefOr<Schema> {
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(wire_values::<$enum>()))
                        .description(Some($description))
                        .into()
                }
            }

            impl utoipa::ToSchema for $marker {
                fn name() -> Cow<'static, str> {
                    Cow::Borrowed(stringify!($marker))
                }
            }
        };
    }

    enum_schema!(
        OrderStatus,
        entities::OrderStatus,
        "`pending` and `stuck` are live (`stuck` waits for an operator or a later retry); `paid`, `closed`, `paid_after_close` and `refunded` are final (a `paid` or `paid_after_close` order still takes refunds; `refunded` once its payment went back in full)."
    );
    enum_schema!(
        RefundStatus,
        entities::RefundStatus,
        "`pending` until the provider gives a final answer; `succeeded` (the money went back) or `failed` (it did not; its amount can be refunded again)."
    );
    enum_schema!(AttemptStatus, entities::AttemptStatus, "Status of one payment attempt.");
    enum_schema!(Provider, entities::Provider, "A payment provider.");
    enum_schema!(
        Currency,
        entities::Currency,
        "ISO 4217 code; amounts are integers in its minor unit."
    );
    /// A PNG image: bytes, not JSON.
    pub struct PngImage;

    impl utoipa::PartialSchema for PngImage {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("image/png")
                .into()
        }
    }

    impl utoipa::ToSchema for PngImage {}

    enum_schema!(
        DeliveryStatus,
        entities::DeliveryStatus,
        "Status of one webhook delivery."
    );
    enum_schema!(
        SignatureScheme,
        entities::SignatureScheme,
        "How a webhook's deliveries are signed: `standard-webhooks-v1` (`webhook-id`, `webhook-timestamp`, `webhook-signature`) or `paywarden-v1` (`Paywarden-Event-Id`, `Paywarden-Timestamp`, `Paywarden-Signature`)."
    );
    enum_schema!(
        SubscriberKind,
        entities::SubscriberKind,
        "How events reach the subscriber."
    );
}
