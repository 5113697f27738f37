//! Read side: an order with everything attached, scoped by merchant for clients.

use entities::{order_items, order_logs, orders, payment_attempts, OrderId, OrderStatus, PayNo};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};

use sea_orm::sea_query::Query;

use super::LogEvent;
use crate::domain::MerchantId;

/// An order and its rows, as one read.
#[derive(Clone, Debug)]
pub struct OrderDetail {
    pub order: orders::Model,
    pub items: Vec<order_items::Model>,
    pub attempts: Vec<payment_attempts::Model>,
    /// Filled only by [`find_order_with_logs`] (the admin view).
    pub logs: Vec<order_logs::Model>,
}

/// Parses a public `order_no`; `None` for anything that cannot be one (so it is a 404).
pub fn parse_order_no(order_no: &str) -> Option<OrderId> {
    order_no.parse().ok()
}

/// Any merchant's order by id (the caller has checked it may see it).
///
/// # Errors
/// The database error.
pub async fn find_order<C: ConnectionTrait>(conn: &C, id: OrderId) -> Result<Option<orders::Model>, DbErr> {
    orders::Entity::find_by_id(id).one(conn).await
}

/// The order `order_no` if it belongs to `merchant`.
///
/// # Errors
/// The database error.
pub async fn find_merchant_order<C: ConnectionTrait>(
    conn: &C,
    merchant: &MerchantId,
    order_no: &str,
) -> Result<Option<orders::Model>, DbErr> {
    let Some(id) = parse_order_no(order_no) else {
        return Ok(None);
    };
    orders::Entity::find_by_id(id)
        .filter(orders::Column::MerchantId.eq(merchant.as_str()))
        .one(conn)
        .await
}

/// The order with items and attempts, if it belongs to `merchant`.
///
/// # Errors
/// The database error.
pub async fn find_order_detail<C: ConnectionTrait>(
    conn: &C,
    merchant: &MerchantId,
    order_no: &str,
) -> Result<Option<OrderDetail>, DbErr> {
    let Some(order) = find_merchant_order(conn, merchant, order_no).await? else {
        return Ok(None);
    };
    attach(conn, order, false).await.map(Some)
}

/// Any merchant's order with items, attempts and the whole log (admin view).
///
/// # Errors
/// The database error.
pub async fn find_order_with_logs<C: ConnectionTrait>(conn: &C, order_no: &str) -> Result<Option<OrderDetail>, DbErr> {
    let Some(id) = parse_order_no(order_no) else {
        return Ok(None);
    };
    let Some(order) = orders::Entity::find_by_id(id).one(conn).await? else {
        return Ok(None);
    };
    attach(conn, order, true).await.map(Some)
}

/// The items and attempts of an order already read (the checkout page, whose link named it).
///
/// # Errors
/// The database error.
pub async fn detail_of<C: ConnectionTrait>(conn: &C, order: orders::Model) -> Result<OrderDetail, DbErr> {
    attach(conn, order, false).await
}

/// The attempt `pay_no` if it belongs to the order `order_id`.
///
/// # Errors
/// The database error.
pub async fn find_order_attempt<C: ConnectionTrait>(
    conn: &C,
    order_id: OrderId,
    pay_no: &str,
) -> Result<Option<payment_attempts::Model>, DbErr> {
    let Ok(pay_no) = pay_no.parse::<PayNo>() else {
        return Ok(None);
    };
    Ok(payment_attempts::Entity::find_by_id(pay_no)
        .one(conn)
        .await?
        .filter(|attempt| attempt.order_id == order_id))
}

async fn attach<C: ConnectionTrait>(conn: &C, order: orders::Model, with_logs: bool) -> Result<OrderDetail, DbErr> {
    let items = order_items::Entity::find()
        .filter(order_items::Column::OrderId.eq(order.id))
        .order_by_asc(order_items::Column::Id)
        .all(conn)
        .await?;
    let attempts = payment_attempts::Entity::find()
        .filter(payment_attempts::Column::OrderId.eq(order.id))
        .order_by_asc(payment_attempts::Column::CreatedAt)
        .order_by_asc(payment_attempts::Column::PayNo)
        .all(conn)
        .await?;
    let logs = if with_logs {
        order_logs::Entity::find()
            .filter(order_logs::Column::OrderId.eq(order.id))
            .order_by_asc(order_logs::Column::Id)
            .all(conn)
            .await?
    } else {
        Vec::new()
    };
    Ok(OrderDetail {
        order,
        items,
        attempts,
        logs,
    })
}

/// The attempt `pay_no` if its order belongs to `merchant`.
///
/// # Errors
/// The database error.
pub async fn find_merchant_attempt<C: ConnectionTrait>(
    conn: &C,
    merchant: &MerchantId,
    pay_no: &str,
) -> Result<Option<payment_attempts::Model>, DbErr> {
    let Ok(pay_no) = pay_no.parse::<PayNo>() else {
        return Ok(None);
    };
    let found = payment_attempts::Entity::find_by_id(pay_no)
        .find_also_related(orders::Entity)
        .one(conn)
        .await?;
    Ok(match found {
        Some((attempt, Some(order))) if order.merchant_id == merchant.as_str() => Some(attempt),
        _ => None,
    })
}

/// Orders in `status` (all statuses when `None`), soonest deadline first.
///
/// # Errors
/// The database error.
pub async fn list_orders<C: ConnectionTrait>(
    conn: &C,
    status: Option<OrderStatus>,
    limit: u64,
) -> Result<Vec<orders::Model>, DbErr> {
    let mut query = orders::Entity::find();
    if let Some(status) = status {
        query = query.filter(orders::Column::Status.eq(status));
    }
    query
        .order_by_asc(orders::Column::ExpiresAt)
        .order_by_asc(orders::Column::Id)
        .limit(limit)
        .all(conn)
        .await
}

/// Orders (in `status`, when given) that recorded a payment anomaly: money taken that does
/// not pay them (after close, twice, another amount). Newest first.
///
/// # Errors
/// The database error.
pub async fn list_orders_with_anomalies<C: ConnectionTrait>(
    conn: &C,
    status: Option<OrderStatus>,
    limit: u64,
) -> Result<Vec<orders::Model>, DbErr> {
    let anomalous = Query::select()
        .column(order_logs::Column::OrderId)
        .from(order_logs::Entity)
        .and_where(order_logs::Column::Event.eq(LogEvent::PaymentAnomaly.as_str()))
        .to_owned();
    let mut query = orders::Entity::find().filter(orders::Column::Id.in_subquery(anomalous));
    if let Some(status) = status {
        query = query.filter(orders::Column::Status.eq(status));
    }
    query.order_by_desc(orders::Column::Id).limit(limit).all(conn).await
}

/// Orders in `status`.
///
/// # Errors
/// The database error.
pub async fn count_by_status<C: ConnectionTrait>(conn: &C, status: OrderStatus) -> Result<u64, DbErr> {
    orders::Entity::find()
        .filter(orders::Column::Status.eq(status))
        .count(conn)
        .await
}

/// Which of an order's ids a search term matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchedId {
    OrderNo,
    OutBusinessId,
    PayNo,
    ProviderTransactionId,
    RefundNo,
    OutRefundId,
}

impl MatchedId {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchedId::OrderNo => "order_no",
            MatchedId::OutBusinessId => "out_business_id",
            MatchedId::PayNo => "pay_no",
            MatchedId::ProviderTransactionId => "provider transaction id",
            MatchedId::RefundNo => "refund_no",
            MatchedId::OutRefundId => "out_refund_id",
        }
    }
}

/// The orders that one of whose ids is `term` exactly, across merchants (an operator's
/// search): its `order_no` or `out_business_id`, a payment's `pay_no` or provider
/// transaction id, a refund's `refund_no` or `out_refund_id`. Each order once, with the first
/// id it matched; at most `limit`. Every lookup is by an index.
///
/// # Errors
/// The database error.
pub async fn search_orders<C: ConnectionTrait>(
    conn: &C,
    term: &str,
    limit: u64,
) -> Result<Vec<(orders::Model, MatchedId)>, DbErr> {
    use entities::{refunds, RefundNo};

    let term = term.trim();
    if term.is_empty() {
        return Ok(Vec::new());
    }
    let mut found: Vec<(OrderId, MatchedId)> = Vec::new();
    let mut add = |ids: Vec<OrderId>, matched: MatchedId| {
        for id in ids {
            if !found.iter().any(|(known, _)| *known == id) {
                found.push((id, matched));
            }
        }
    };
    if let Some(id) = parse_order_no(term) {
        add(vec![id], MatchedId::OrderNo);
    }
    let by_business_id = orders::Entity::find()
        .select_only()
        .column(orders::Column::Id)
        .filter(orders::Column::OutBusinessId.eq(term))
        .limit(limit)
        .into_tuple::<OrderId>()
        .all(conn)
        .await?;
    add(by_business_id, MatchedId::OutBusinessId);
    if let Ok(pay_no) = term.parse::<PayNo>() {
        let by_pay_no = payment_attempts::Entity::find_by_id(pay_no)
            .select_only()
            .column(payment_attempts::Column::OrderId)
            .into_tuple::<OrderId>()
            .all(conn)
            .await?;
        add(by_pay_no, MatchedId::PayNo);
    }
    let by_transaction = payment_attempts::Entity::find()
        .select_only()
        .column(payment_attempts::Column::OrderId)
        .filter(payment_attempts::Column::ProviderTxnId.eq(term))
        .limit(limit)
        .into_tuple::<OrderId>()
        .all(conn)
        .await?;
    add(by_transaction, MatchedId::ProviderTransactionId);
    if let Ok(refund_no) = term.parse::<RefundNo>() {
        let by_refund_no = refunds::Entity::find_by_id(refund_no)
            .select_only()
            .column(refunds::Column::OrderId)
            .into_tuple::<OrderId>()
            .all(conn)
            .await?;
        add(by_refund_no, MatchedId::RefundNo);
    }
    let by_out_refund_id = refunds::Entity::find()
        .select_only()
        .column(refunds::Column::OrderId)
        .filter(refunds::Column::OutRefundId.eq(term))
        .limit(limit)
        .into_tuple::<OrderId>()
        .all(conn)
        .await?;
    add(by_out_refund_id, MatchedId::OutRefundId);

    found.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let ids: Vec<OrderId> = found.iter().map(|(id, _)| *id).collect();
    let rows = orders::Entity::find()
        .filter(orders::Column::Id.is_in(ids))
        .all(conn)
        .await?;
    Ok(found
        .into_iter()
        .filter_map(|(id, matched)| {
            rows.iter()
                .find(|order| order.id == id)
                .map(|order| (order.clone(), matched))
        })
        .collect())
}
