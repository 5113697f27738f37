//! The two rows every state change writes in its own transaction: an `order_logs` row (the
//! audit trail) and, for changes downstream services care about, an `outbox` row.

use chrono::{DateTime, Utc};
use entities::{order_logs, orders, outbox, refunds, MinorUnit, OrderId, PayNo, Provider, RefundNo};
use sea_orm::{ActiveValue::NotSet, ConnectionTrait, DbErr, EntityTrait, Set};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::MerchantId;

/// Who caused a change, as recorded in `order_logs.operator`. A merchant operator also scopes
/// what it may touch: only its own orders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    Merchant(MerchantId),
    Admin(String),
    Provider(Provider),
    /// The buyer, through the order's checkout link.
    Buyer,
    System,
}

impl std::fmt::Display for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Operator::Merchant(id) => write!(f, "merchant:{id}"),
            Operator::Admin(name) => write!(f, "admin:{name}"),
            Operator::Provider(provider) => write!(f, "provider:{provider}"),
            Operator::Buyer => f.write_str("buyer:checkout"),
            Operator::System => f.write_str("system"),
        }
    }
}

/// What an `order_logs` row records. Where the log row and the outbox event are the same fact
/// (an order created, paid, closed...), the row names the event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogEvent {
    /// The order changed as the published event says.
    Published(EventType),
    /// Tracked stock was reserved at creation.
    StockReserved,
    /// Reserved stock came back when the order closed.
    StockReleased,
    /// A payment attempt (a new provider trade) was started.
    AttemptCreated,
    /// The provider refused or failed the attempt's QR code.
    AttemptFailed,
    /// An attempt's trade can no longer be paid.
    AttemptClosed,
    /// A payment that changes no order status (an amount that differs, a second payment):
    /// recorded with an `order.payment_anomaly` event.
    PaymentAnomaly,
    /// An operator accepted a payment whose amount differed as the order's payment (the
    /// row's reason is the operator's).
    PaymentAccepted,
}

impl LogEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            LogEvent::Published(event) => event.as_str(),
            LogEvent::StockReserved => "stock.reserved",
            LogEvent::StockReleased => "stock.released",
            LogEvent::AttemptCreated => "attempt.created",
            LogEvent::AttemptFailed => "attempt.failed",
            LogEvent::AttemptClosed => "attempt.closed",
            LogEvent::PaymentAnomaly => "payment.anomaly",
            LogEvent::PaymentAccepted => "payment.accepted",
        }
    }
}

/// One `order_logs` row.
pub struct LogEntry<'a> {
    pub order_id: OrderId,
    pub event: LogEvent,
    pub from_status: Option<&'a str>,
    pub to_status: &'a str,
    pub operator: &'a Operator,
    pub reason: Option<String>,
}

/// Writes one `order_logs` row inside the caller's transaction.
///
/// # Errors
/// The database error, which should abort the caller's transaction.
pub async fn write_log<C: ConnectionTrait>(conn: &C, entry: LogEntry<'_>, at: DateTime<Utc>) -> Result<(), DbErr> {
    order_logs::Entity::insert(log_row(entry, at))
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// The `order_logs` row of `entry`, for a caller that writes many at once.
pub(crate) fn log_row(entry: LogEntry<'_>, at: DateTime<Utc>) -> order_logs::ActiveModel {
    order_logs::ActiveModel {
        id: NotSet,
        order_id: Set(entry.order_id),
        event: Set(entry.event.as_str().to_owned()),
        from_status: Set(entry.from_status.map(str::to_owned)),
        to_status: Set(entry.to_status.to_owned()),
        operator: Set(entry.operator.to_string()),
        reason: Set(entry.reason),
        created_at: Set(at),
    }
}

/// Event types written to the outbox, delivered to subscribers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    OrderCreated,
    OrderPaid,
    OrderClosed,
    OrderPaymentAnomaly,
    OrderStuck,
    RefundCreated,
    RefundSucceeded,
    RefundFailed,
}

impl EventType {
    /// Every type, in the order the documentation lists them.
    pub const ALL: [EventType; 8] = [
        EventType::OrderCreated,
        EventType::OrderPaid,
        EventType::OrderClosed,
        EventType::OrderPaymentAnomaly,
        EventType::OrderStuck,
        EventType::RefundCreated,
        EventType::RefundSucceeded,
        EventType::RefundFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OrderCreated => "order.created",
            EventType::OrderPaid => "order.paid",
            EventType::OrderClosed => "order.closed",
            EventType::OrderPaymentAnomaly => "order.payment_anomaly",
            EventType::OrderStuck => "order.stuck",
            EventType::RefundCreated => "refund.created",
            EventType::RefundSucceeded => "refund.succeeded",
            EventType::RefundFailed => "refund.failed",
        }
    }
}

/// The payment a change concerns, when there is one.
#[derive(Clone, Debug, Default)]
pub struct PaymentRef {
    pub pay_no: Option<PayNo>,
    pub provider: Option<Provider>,
    pub provider_txn_id: Option<String>,
    pub paid_amount: Option<MinorUnit>,
}

/// The event as delivered downstream.
#[derive(Serialize)]
struct EventPayload<'a> {
    event_id: Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    occurred_at: DateTime<Utc>,
    order_no: &'a str,
    merchant_id: &'a str,
    out_business_id: &'a str,
    status: &'a str,
    total_amount: MinorUnit,
    currency: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    close_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pay_no: Option<PayNo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<Provider>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_txn_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paid_amount: Option<MinorUnit>,
    /// What the provider has confirmed refunded of the order's payment (when not zero).
    #[serde(skip_serializing_if = "is_zero")]
    refunded_amount: MinorUnit,
    #[serde(skip_serializing_if = "Option::is_none")]
    refund: Option<RefundPayload<'a>>,
}

fn is_zero(amount: &MinorUnit) -> bool {
    *amount == MinorUnit::ZERO
}

/// The refund a `refund.*` event is about.
#[derive(Serialize)]
struct RefundPayload<'a> {
    refund_no: RefundNo,
    out_refund_id: &'a str,
    amount: MinorUnit,
    status: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_refund_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<&'a str>,
}

/// Writes one `outbox` row for `order` (as it is after the change) inside the caller's
/// transaction.
///
/// # Errors
/// The database error, which should abort the caller's transaction.
pub async fn write_event<C: ConnectionTrait>(
    conn: &C,
    event_type: EventType,
    order: &orders::Model,
    payment: &PaymentRef,
    at: DateTime<Utc>,
) -> Result<Uuid, DbErr> {
    insert_event(conn, event_type, order, payment, None, at).await
}

/// Writes the `refund.*` event of `refund` (as it is after the change) of `order` inside the
/// caller's transaction.
///
/// # Errors
/// The database error, which should abort the caller's transaction.
pub async fn write_refund_event<C: ConnectionTrait>(
    conn: &C,
    event_type: EventType,
    order: &orders::Model,
    refund: &refunds::Model,
    at: DateTime<Utc>,
) -> Result<Uuid, DbErr> {
    let payment = PaymentRef {
        pay_no: Some(refund.pay_no),
        provider: Some(refund.provider),
        provider_txn_id: None,
        paid_amount: None,
    };
    insert_event(conn, event_type, order, &payment, Some(refund), at).await
}

async fn insert_event<C: ConnectionTrait>(
    conn: &C,
    event_type: EventType,
    order: &orders::Model,
    payment: &PaymentRef,
    refund: Option<&refunds::Model>,
    at: DateTime<Utc>,
) -> Result<Uuid, DbErr> {
    let (event_id, row) = event_row(event_type, order, payment, refund, at)?;
    outbox::Entity::insert(row).exec_without_returning(conn).await?;
    Ok(event_id)
}

/// The `outbox` row of an event about `order` (as it is after the change), for a caller that
/// writes many at once.
pub(crate) fn event_row(
    event_type: EventType,
    order: &orders::Model,
    payment: &PaymentRef,
    refund: Option<&refunds::Model>,
    at: DateTime<Utc>,
) -> Result<(Uuid, outbox::ActiveModel), DbErr> {
    let event_id = Uuid::now_v7();
    let payload = EventPayload {
        event_id,
        event_type: event_type.as_str(),
        occurred_at: at,
        order_no: &order.order_no,
        merchant_id: &order.merchant_id,
        out_business_id: &order.out_business_id,
        status: order.status.as_str(),
        total_amount: order.total_amount,
        currency: order.currency.code(),
        close_reason: order.close_reason.as_deref(),
        pay_no: payment.pay_no,
        provider: payment.provider,
        provider_txn_id: payment.provider_txn_id.as_deref(),
        paid_amount: payment.paid_amount,
        refunded_amount: order.refunded_amount,
        refund: refund.map(|refund| RefundPayload {
            refund_no: refund.refund_no,
            out_refund_id: &refund.out_refund_id,
            amount: refund.amount,
            status: refund.status.as_str(),
            reason: &refund.reason,
            provider_refund_id: refund.provider_refund_id.as_deref(),
            failure: refund.failure.as_deref(),
        }),
    };
    let payload = serde_json::to_string(&payload).map_err(|err| DbErr::Custom(format!("encode event: {err}")))?;
    Ok((
        event_id,
        outbox::ActiveModel {
            id: NotSet,
            event_id: Set(event_id),
            event_type: Set(event_type.as_str().to_owned()),
            order_id: Set(order.id),
            merchant_id: Set(order.merchant_id.clone()),
            payload: Set(payload),
            created_at: Set(at),
            published_at: Set(None),
            fanned_out_at: Set(None),
        },
    ))
}
