//! Order creation: idempotency check, order + items, stock reservation, log and outbox rows,
//! all in one transaction.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use entities::{order_items, orders, skus, OrderId, OrderStatus};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    QueryFilter, QuerySelect, Set, SqlErr, TransactionTrait,
};

use super::idempotency::{next_action, NextAction};
use super::journal::{write_event, write_log, EventType, LogEntry, LogEvent, Operator, PaymentRef};
use crate::domain::NewOrder;
use crate::error::OrderError;
use crate::ids::Snowflake;

#[derive(Debug)]
pub enum Created {
    /// A new order was stored.
    New(orders::Model),
    /// The same request was seen before; this is the order it created.
    Replayed(orders::Model),
}

/// Stores `order` (or finds the one an identical earlier request stored).
///
/// # Errors
/// [`OrderError::IdempotencyConflict`] when the key holds an order with other content,
/// [`OrderError::InsufficientStock`] when a SKU the merchant tracks is short (nothing is
/// written then),
/// or a database / id error.
#[tracing::instrument(
    target = "paywarden::trace",
    name = "db transaction",
    skip_all,
    fields(change = "create")
)]
pub async fn create_order(db: &DatabaseConnection, ids: &Snowflake, order: &NewOrder) -> Result<Created, OrderError> {
    // Optimistic: most requests are new, so the order is inserted straight away and the
    // idempotency key is judged only when its unique index refuses the row (a replay, or a
    // concurrent request with the same key). The row is the first statement of the
    // transaction, so a refused one has touched nothing else.
    let id: OrderId = ids.next_typed().await?;
    let now = Utc::now();
    let txn = db.begin().await?;
    match insert_order(&txn, id, order, now).await {
        Ok(model) => {
            txn.commit().await?;
            tracing::info!(order_no = %model.order_no, merchant_id = %model.merchant_id, total = %model.total_amount, "order created");
            Ok(Created::New(model))
        }
        Err(OrderError::Db(err)) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            // The key holds an order already (an earlier or concurrent request): judge ours
            // against it.
            txn.rollback().await?;
            match next_action(db, order).await? {
                NextAction::Replay(id) => replayed(db, id).await,
                NextAction::Conflict => Err(OrderError::IdempotencyConflict),
                NextAction::Create => Err(OrderError::Db(err)),
            }
        }
        Err(err) => Err(err),
    }
}

async fn replayed(db: &DatabaseConnection, id: OrderId) -> Result<Created, OrderError> {
    let model = orders::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(OrderError::NotFound)?;
    Ok(Created::Replayed(model))
}

async fn insert_order(
    txn: &DatabaseTransaction,
    id: OrderId,
    order: &NewOrder,
    now: DateTime<Utc>,
) -> Result<orders::Model, OrderError> {
    let ttl = chrono::Duration::from_std(order.ttl).map_err(|_| OrderError::Concurrent)?;
    let model = orders::Model {
        id,
        order_no: id.to_string(),
        merchant_id: order.merchant_id.as_str().to_owned(),
        out_business_id: order.out_business_id.clone(),
        request_fingerprint: order.fingerprint(),
        user_id: order.user_id.clone(),
        subject: order.subject.clone(),
        total_amount: order.total,
        currency: order.currency,
        status: OrderStatus::Pending,
        close_reason: None,
        expires_at: now + ttl,
        created_at: now,
        paid_at: None,
        closed_at: None,
        version: 0,
        return_url: order.return_url.clone(),
        refunded_amount: entities::MinorUnit::ZERO,
    };
    orders::Entity::insert(orders::ActiveModel::from(model.clone()))
        .exec_without_returning(txn)
        .await?;
    let operator = Operator::Merchant(order.merchant_id.clone());
    write_log(
        txn,
        LogEntry {
            order_id: id,
            event: LogEvent::Published(EventType::OrderCreated),
            from_status: None,
            to_status: OrderStatus::Pending.as_str(),
            operator: &operator,
            reason: Some(format!("total {} {}", model.total_amount, model.currency)),
        },
        now,
    )
    .await?;

    let reserved = reserve_stock(txn, order, now).await?;
    order_items::Entity::insert_many(order.items.iter().map(|item| order_items::ActiveModel {
        id: NotSet,
        order_id: Set(id),
        sku_id: Set(item.sku_id.clone()),
        name: Set(item.name.clone()),
        unit_price: Set(item.unit_price),
        quantity: Set(item.quantity),
        amount: Set(item.amount),
        reserved_quantity: Set(if reserved.iter().any(|(sku, _)| *sku == item.sku_id) {
            item.quantity
        } else {
            0
        }),
    }))
    .exec_without_returning(txn)
    .await?;

    if !reserved.is_empty() {
        let summary: Vec<String> = reserved.iter().map(|(sku, qty)| format!("{sku} x{qty}")).collect();
        write_log(
            txn,
            LogEntry {
                order_id: id,
                event: LogEvent::StockReserved,
                from_status: Some(OrderStatus::Pending.as_str()),
                to_status: OrderStatus::Pending.as_str(),
                operator: &operator,
                reason: Some(summary.join(", ")),
            },
            now,
        )
        .await?;
    }
    write_event(txn, EventType::OrderCreated, &model, &PaymentRef::default(), now).await?;
    Ok(model)
}

/// Takes the wanted quantity of every SKU the order's merchant tracks, in SKU order so two
/// orders never wait on each other's rows. Returns what was reserved; SKUs the merchant does
/// not track are skipped (another merchant's row under the same `sku_id` is never touched).
async fn reserve_stock<C: ConnectionTrait>(
    conn: &C,
    order: &NewOrder,
    now: DateTime<Utc>,
) -> Result<Vec<(String, i64)>, OrderError> {
    let merchant_id = order.merchant_id.as_str();
    let wanted_by_sku = order.quantities_by_sku();
    // Which of the SKUs the merchant tracks, in one read (most orders name untracked ones).
    let tracked: Vec<String> = skus::Entity::find()
        .select_only()
        .column(skus::Column::SkuId)
        .filter(skus::Column::MerchantId.eq(merchant_id))
        .filter(skus::Column::SkuId.is_in(wanted_by_sku.keys().map(|sku_id| (*sku_id).to_owned())))
        .into_tuple()
        .all(conn)
        .await?;
    let mut reserved = Vec::new();
    for (sku_id, wanted) in wanted_by_sku {
        if !tracked.iter().any(|t| t == sku_id) {
            continue;
        }
        let taken = skus::Entity::update_many()
            .col_expr(skus::Column::Available, Expr::col(skus::Column::Available).sub(wanted))
            .col_expr(skus::Column::UpdatedAt, Expr::value(now))
            .filter(skus::Column::MerchantId.eq(merchant_id))
            .filter(skus::Column::SkuId.eq(sku_id))
            .filter(skus::Column::Available.gte(wanted))
            .exec(conn)
            .await?;
        if taken.rows_affected == 0 {
            return Err(OrderError::InsufficientStock {
                sku_id: sku_id.to_owned(),
                requested: wanted,
            });
        }
        reserved.push((sku_id.to_owned(), wanted));
    }
    Ok(reserved)
}

/// Gives back the stock each of `closing` (order id, its merchant) reserved at creation, on
/// its close: exactly that and to the order's own merchant (a SKU that was untracked then gets
/// nothing back, even if it is tracked now). Called once per order, by its one guarded close
/// (alone, or in a batch of expiries). One update per (merchant, SKU), in that order, so two
/// closes never wait on each other's rows. Returns, per order, the `sku xN` lines released.
///
/// # Errors
/// The database error, which should abort the caller's transaction.
pub async fn release_stock<C: ConnectionTrait>(
    conn: &C,
    closing: &[(OrderId, &str)],
    now: DateTime<Utc>,
) -> Result<HashMap<OrderId, Vec<String>>, OrderError> {
    let items = order_items::Entity::find()
        .filter(order_items::Column::OrderId.is_in(closing.iter().map(|(id, _)| *id)))
        .filter(order_items::Column::ReservedQuantity.gt(0))
        .all(conn)
        .await?;
    if items.is_empty() {
        return Ok(HashMap::new());
    }
    let merchant_of: HashMap<OrderId, &str> = closing.iter().copied().collect();
    // (merchant, sku) -> total, and per order: sku -> quantity; both sorted.
    let mut totals: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    let mut per_order: BTreeMap<OrderId, BTreeMap<&str, i64>> = BTreeMap::new();
    for item in &items {
        let Some(merchant) = merchant_of.get(&item.order_id) else {
            continue;
        };
        let total = totals.entry((merchant, item.sku_id.as_str())).or_insert(0);
        *total = total.saturating_add(item.reserved_quantity);
        let quantity = per_order
            .entry(item.order_id)
            .or_default()
            .entry(item.sku_id.as_str())
            .or_insert(0);
        *quantity = quantity.saturating_add(item.reserved_quantity);
    }
    let mut tracked: HashSet<(&str, &str)> = HashSet::new();
    for ((merchant, sku_id), quantity) in &totals {
        let result = skus::Entity::update_many()
            .col_expr(
                skus::Column::Available,
                Expr::col(skus::Column::Available).add(*quantity),
            )
            .col_expr(skus::Column::UpdatedAt, Expr::value(now))
            .filter(skus::Column::MerchantId.eq(*merchant))
            .filter(skus::Column::SkuId.eq(*sku_id))
            .exec(conn)
            .await?;
        if result.rows_affected > 0 {
            tracked.insert((merchant, sku_id));
        }
    }
    let mut released = HashMap::new();
    for (order_id, quantities) in per_order {
        let Some(merchant) = merchant_of.get(&order_id) else {
            continue;
        };
        let lines: Vec<String> = quantities
            .into_iter()
            .filter(|(sku_id, _)| tracked.contains(&(*merchant, *sku_id)))
            .map(|(sku_id, quantity)| format!("{sku_id} x{quantity}"))
            .collect();
        if !lines.is_empty() {
            released.insert(order_id, lines);
        }
    }
    Ok(released)
}
