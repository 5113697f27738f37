//! Wire types of the HTTP contract. Rows never go to clients: each response type is built from
//! entity models here, at the boundary. 64-bit ids go out as strings.

use actors::domain::{ItemRequest, OrderRequest};
use actors::store::OrderDetail;
use chrono::{DateTime, Utc};
use entities::{
    order_items, order_logs, orders, payment_attempts, AttemptStatus, Currency, MinorUnit, OrderStatus, PayNo, Provider,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderBody {
    pub out_business_id: String,
    pub user_id: String,
    pub subject: String,
    pub currency: Option<String>,
    pub ttl_seconds: Option<i64>,
    pub items: Vec<CreateItemBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateItemBody {
    pub sku_id: String,
    pub name: String,
    pub unit_price: i64,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePaymentBody {
    pub provider: String,
}

#[derive(Debug, Serialize)]
pub struct OrderResponse {
    pub order_no: String,
    pub merchant_id: String,
    pub out_business_id: String,
    pub user_id: String,
    pub subject: String,
    pub total_amount: MinorUnit,
    pub currency: Currency,
    pub status: OrderStatus,
    pub close_reason: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub items: Vec<ItemResponse>,
    pub payments: Vec<PaymentResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<Vec<LogResponse>>,
}

#[derive(Debug, Serialize)]
pub struct ItemResponse {
    pub sku_id: String,
    pub name: String,
    pub unit_price: MinorUnit,
    pub quantity: i64,
    pub amount: MinorUnit,
}

#[derive(Debug, Serialize)]
pub struct PaymentResponse {
    pub pay_no: PayNo,
    pub provider: Provider,
    pub status: AttemptStatus,
    pub amount: MinorUnit,
    pub currency: Currency,
    pub code_url: Option<String>,
    pub qr_png_url: Option<String>,
    pub provider_txn_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
pub struct LogResponse {
    pub event: String,
    pub from: Option<String>,
    pub to: String,
    pub operator: String,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct StatusResponse {
    pub order_no: String,
    pub status: OrderStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paid_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<String>,
}

/// A row of the admin order list.
#[derive(Debug, Serialize)]
pub struct OrderSummary {
    pub order_no: String,
    pub merchant_id: String,
    pub status: OrderStatus,
    pub total_amount: MinorUnit,
    pub currency: Currency,
    pub expires_at: DateTime<Utc>,
    pub close_reason: Option<String>,
}

impl OrderResponse {
    pub fn from_detail(detail: OrderDetail, public_base_url: &str, with_logs: bool) -> Self {
        let OrderDetail {
            order,
            items,
            attempts,
            logs,
        } = detail;
        Self {
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
                .map(|attempt| PaymentResponse::new(attempt, public_base_url))
                .collect(),
            logs: with_logs.then(|| logs.into_iter().map(LogResponse::from).collect()),
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
    pub fn new(attempt: payment_attempts::Model, public_base_url: &str) -> Self {
        let qr_png_url = attempt.code_url.as_ref().map(|_| {
            format!(
                "{}/v1/payments/{}/qr.png",
                public_base_url.trim_end_matches('/'),
                attempt.pay_no
            )
        });
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
