//! The operators' lists of orders, refunds and deliveries: filtered, newest first, one page at
//! a time by keyset (the page after a row starts strictly after it, so a page costs the same
//! however deep it is and rows committed meanwhile neither repeat nor vanish between pages).

use chrono::{DateTime, TimeZone, Utc};
use entities::{
    orders, outbox_deliveries, payment_attempts, refunds, DeliveryStatus, MinorUnit, OrderId, OrderStatus, Provider,
    RefundStatus,
};
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

/// Where a page starts: strictly after the row created at `at` with `key` (newest first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub key: String,
}

impl Cursor {
    /// `<nanoseconds since the epoch>.<key>`: the stamps' whole precision (SQLite keeps
    /// nanoseconds), so a row stamped within the same microsecond as the cursor's is neither
    /// skipped nor repeated.
    pub fn encode(&self) -> String {
        let nanos = self
            .at
            .timestamp_nanos_opt()
            .unwrap_or_else(|| self.at.timestamp_micros().saturating_mul(1000));
        format!("{nanos}.{}", self.key)
    }

    /// # Errors
    /// Not what [`Cursor::encode`] writes.
    pub fn parse(text: &str) -> Result<Cursor, String> {
        let invalid = || "not a page cursor (use the list's own links)".to_owned();
        let (nanos, key) = text.split_once('.').ok_or_else(invalid)?;
        let nanos: i64 = nanos.parse().map_err(|_| invalid())?;
        let at = Utc.timestamp_nanos(nanos);
        if key.is_empty() || key.len() > 64 {
            return Err(invalid());
        }
        Ok(Cursor {
            at,
            key: key.to_owned(),
        })
    }
}

/// One page and, when more follow, the cursor of the next.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub next: Option<Cursor>,
}

/// Reads `limit + 1` rows to know whether another page follows.
fn paged<T>(mut rows: Vec<T>, limit: u64, cursor_of: impl Fn(&T) -> Cursor) -> Page<T> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(cursor_of)
    } else {
        None
    };
    Page { rows, next }
}

/// "Created before the cursor's row": earlier, or as early with a smaller key.
fn before<C: ColumnTrait, K: ColumnTrait>(created: C, key: K, at: DateTime<Utc>, value: sea_orm::Value) -> Condition {
    Condition::any()
        .add(created.lt(at))
        .add(Condition::all().add(created.eq(at)).add(key.lt(value)))
}

/// What an operator narrows the order list by; every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    /// Orders with an attempt at this provider.
    pub provider: Option<Provider>,
    pub merchant: Option<String>,
    /// Created at or after.
    pub created_from: Option<DateTime<Utc>>,
    /// Created before.
    pub created_to: Option<DateTime<Utc>>,
    /// Total amount at least, at most (minor units).
    pub amount_min: Option<MinorUnit>,
    pub amount_max: Option<MinorUnit>,
}

impl OrderFilter {
    /// Whether anything but the status narrows the list.
    pub fn narrows_beyond_status(&self) -> bool {
        self.provider.is_some()
            || self.merchant.is_some()
            || self.created_from.is_some()
            || self.created_to.is_some()
            || self.amount_min.is_some()
            || self.amount_max.is_some()
    }

    fn condition(&self) -> Condition {
        let mut condition = Condition::all();
        if let Some(status) = self.status {
            condition = condition.add(orders::Column::Status.eq(status));
        }
        if let Some(provider) = self.provider {
            condition = condition.add(
                orders::Column::Id.in_subquery(
                    Query::select()
                        .column(payment_attempts::Column::OrderId)
                        .from(payment_attempts::Entity)
                        .and_where(payment_attempts::Column::Provider.eq(provider))
                        .to_owned(),
                ),
            );
        }
        if let Some(merchant) = &self.merchant {
            condition = condition.add(orders::Column::MerchantId.eq(merchant.clone()));
        }
        if let Some(from) = self.created_from {
            condition = condition.add(orders::Column::CreatedAt.gte(from));
        }
        if let Some(to) = self.created_to {
            condition = condition.add(orders::Column::CreatedAt.lt(to));
        }
        if let Some(min) = self.amount_min {
            condition = condition.add(orders::Column::TotalAmount.gte(min));
        }
        if let Some(max) = self.amount_max {
            condition = condition.add(orders::Column::TotalAmount.lte(max));
        }
        condition
    }
}

/// A page of orders matching `filter`, newest first, after `after`.
///
/// # Errors
/// The database error.
pub async fn orders_page<C: ConnectionTrait>(
    conn: &C,
    filter: &OrderFilter,
    after: Option<&Cursor>,
    limit: u64,
) -> Result<Page<orders::Model>, DbErr> {
    let mut query = orders::Entity::find().filter(filter.condition());
    if let Some(after) = after {
        let id: i64 = after
            .key
            .parse()
            .map_err(|_| DbErr::Custom("order cursor".to_owned()))?;
        query = query.filter(before(
            orders::Column::CreatedAt,
            orders::Column::Id,
            after.at,
            id.into(),
        ));
    }
    let rows = query
        .order_by_desc(orders::Column::CreatedAt)
        .order_by_desc(orders::Column::Id)
        .limit(limit + 1)
        .all(conn)
        .await?;
    Ok(paged(rows, limit, |order| Cursor {
        at: order.created_at,
        key: OrderId::get(order.id).to_string(),
    }))
}

/// What an operator narrows the refund list by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefundFilter {
    pub status: Option<RefundStatus>,
    pub provider: Option<Provider>,
    pub merchant: Option<String>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
}

/// A page of refunds matching `filter`, newest first, after `after`.
///
/// # Errors
/// The database error.
pub async fn refunds_page<C: ConnectionTrait>(
    conn: &C,
    filter: &RefundFilter,
    after: Option<&Cursor>,
    limit: u64,
) -> Result<Page<refunds::Model>, DbErr> {
    let mut query = refunds::Entity::find();
    if let Some(status) = filter.status {
        query = query.filter(refunds::Column::Status.eq(status));
    }
    if let Some(provider) = filter.provider {
        query = query.filter(refunds::Column::Provider.eq(provider));
    }
    if let Some(merchant) = &filter.merchant {
        query = query.filter(refunds::Column::MerchantId.eq(merchant.clone()));
    }
    if let Some(from) = filter.created_from {
        query = query.filter(refunds::Column::CreatedAt.gte(from));
    }
    if let Some(to) = filter.created_to {
        query = query.filter(refunds::Column::CreatedAt.lt(to));
    }
    if let Some(after) = after {
        query = query.filter(before(
            refunds::Column::CreatedAt,
            refunds::Column::RefundNo,
            after.at,
            after.key.clone().into(),
        ));
    }
    let rows = query
        .order_by_desc(refunds::Column::CreatedAt)
        .order_by_desc(refunds::Column::RefundNo)
        .limit(limit + 1)
        .all(conn)
        .await?;
    Ok(paged(rows, limit, |refund| Cursor {
        at: refund.created_at,
        key: refund.refund_no.to_string(),
    }))
}

/// What an operator narrows the delivery list by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub subscriber: Option<String>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
}

/// A page of deliveries matching `filter`, newest first, after `after`.
///
/// # Errors
/// The database error.
pub async fn deliveries_page<C: ConnectionTrait>(
    conn: &C,
    filter: &DeliveryFilter,
    after: Option<&Cursor>,
    limit: u64,
) -> Result<Page<outbox_deliveries::Model>, DbErr> {
    let mut query = outbox_deliveries::Entity::find();
    if let Some(status) = filter.status {
        query = query.filter(outbox_deliveries::Column::Status.eq(status));
    }
    if let Some(subscriber) = &filter.subscriber {
        query = query.filter(outbox_deliveries::Column::SubscriberId.eq(subscriber.clone()));
    }
    if let Some(from) = filter.created_from {
        query = query.filter(outbox_deliveries::Column::CreatedAt.gte(from));
    }
    if let Some(to) = filter.created_to {
        query = query.filter(outbox_deliveries::Column::CreatedAt.lt(to));
    }
    if let Some(after) = after {
        let id: i64 = after
            .key
            .parse()
            .map_err(|_| DbErr::Custom("delivery cursor".to_owned()))?;
        query = query.filter(before(
            outbox_deliveries::Column::CreatedAt,
            outbox_deliveries::Column::Id,
            after.at,
            id.into(),
        ));
    }
    let rows = query
        .order_by_desc(outbox_deliveries::Column::CreatedAt)
        .order_by_desc(outbox_deliveries::Column::Id)
        .limit(limit + 1)
        .all(conn)
        .await?;
    Ok(paged(rows, limit, |delivery| Cursor {
        at: delivery.created_at,
        key: delivery.id.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_what_it_wrote() {
        let cursor = Cursor {
            at: Utc.timestamp_nanos(1_765_100_000_123_456_789),
            key: "RF.1".to_owned(),
        };
        assert_eq!(Cursor::parse(&cursor.encode()), Ok(cursor));
        for bad in ["", "123", "x.1", "1.", "99999999999999999999.1"] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_page_knows_whether_another_follows() {
        let at = Utc.timestamp_micros(0).unwrap();
        let cursor = |n: &i32| Cursor { at, key: n.to_string() };
        let full = paged(vec![1, 2, 3], 2, cursor);
        assert_eq!(full.rows, vec![1, 2]);
        assert_eq!(full.next.map(|c| c.key), Some("2".to_owned()));
        assert!(paged(vec![1, 2], 2, cursor).next.is_none());
    }
}
