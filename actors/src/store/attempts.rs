//! Payment attempts: a new provider trade (new `pay_no`) for a pending order.
//!
//! The attempt row is committed *before* the provider is asked for a QR code. That way there is
//! never a trade at the provider that paywarden does not know about: if the provider call fails
//! the attempt is marked failed, and if the service dies in between, the expiry rule still
//! queries (and closes) the attempt at the deadline.

use chrono::Utc;
use entities::{orders, payment_attempts, AttemptStatus, Currency, OrderStatus, PayNo, Provider};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Set, TransactionTrait,
};

use super::journal::{write_log, LogEntry, LogEvent, Operator};
use super::transitions::{apply_attempt, AttemptUpdate};
use crate::error::OrderError;
use crate::gateway::{GatewayError, QrCreated, QrRequest};
use crate::ids::Snowflake;
use crate::provider::Admission;
use crate::provider::Route;

/// Whether `provider` takes `currency` (its registry entry says).
fn accepts_currency(provider: Provider, currency: Currency) -> bool {
    crate::gateway::registry::info(provider).accepts(currency)
}

/// Starts a new attempt for `order` at `provider`; `create_qr` asks the provider for the trade
/// (through the provider actor, in the engine).
///
/// # Errors
/// [`OrderError::NotPending`] / [`OrderError::Expired`] when the order cannot be paid any more,
/// [`OrderError::CurrencyNotAccepted`], [`OrderError::Gateway`] when the provider refused or
/// failed (the attempt is then stored as failed), or a database / id error.
pub async fn start_attempt<A, AFut, F, Fut>(
    db: &DatabaseConnection,
    ids: &Snowflake,
    route: &Route,
    order: &orders::Model,
    operator: &Operator,
    admit: A,
    create_qr: F,
) -> Result<payment_attempts::Model, OrderError>
where
    A: FnOnce() -> AFut,
    AFut: std::future::Future<Output = Result<Admission, GatewayError>>,
    F: FnOnce(QrRequest, Admission) -> Fut,
    Fut: std::future::Future<Output = Result<QrCreated, GatewayError>>,
{
    if order.status != OrderStatus::Pending {
        return Err(OrderError::NotPending(order.status));
    }
    let now = Utc::now();
    if now >= order.expires_at {
        return Err(OrderError::Expired);
    }
    let provider = route.provider;
    if !accepts_currency(provider, order.currency) {
        return Err(OrderError::CurrencyNotAccepted {
            provider,
            currency: order.currency,
        });
    }
    // The provider's budget is checked before anything is written: a refused attempt leaves
    // no row behind.
    let admission = admit().await.map_err(OrderError::Gateway)?;
    let pay_no: PayNo = ids.next_typed().await?;
    let attempt = payment_attempts::Model {
        pay_no,
        order_id: order.id,
        provider,
        status: AttemptStatus::Pending,
        amount: order.total_amount,
        currency: order.currency,
        code_url: None,
        provider_txn_id: None,
        raw_payload: None,
        created_at: now,
        updated_at: now,
        paid_at: None,
        follow_up_at: None,
        paid_amount: None,
        account_id: route.account_id(),
    };

    let txn = db.begin().await?;
    // Guarded on the order still being pending: a close that committed a moment ago wins.
    let guard = orders::Entity::update_many()
        .col_expr(orders::Column::Version, Expr::col(orders::Column::Version).add(1))
        .filter(orders::Column::Id.eq(order.id))
        .filter(orders::Column::Status.eq(OrderStatus::Pending))
        .exec(&txn)
        .await?;
    if guard.rows_affected != 1 {
        return Err(current_status_error(&txn, order).await);
    }
    payment_attempts::Entity::insert(payment_attempts::ActiveModel::from(attempt.clone()))
        .exec_without_returning(&txn)
        .await?;
    write_log(
        &txn,
        LogEntry {
            order_id: order.id,
            event: LogEvent::AttemptCreated,
            from_status: Some(OrderStatus::Pending.as_str()),
            to_status: OrderStatus::Pending.as_str(),
            operator,
            reason: Some(format!("pay_no {pay_no} at {provider}")),
        },
        now,
    )
    .await?;
    txn.commit().await?;

    let request = QrRequest {
        pay_no,
        amount: order.total_amount,
        currency: order.currency,
        subject: order.subject.clone(),
        expires_at: order.expires_at,
    };
    match create_qr(request, admission).await {
        Ok(created) => {
            let mut active: payment_attempts::ActiveModel = attempt.into();
            active.code_url = Set(Some(created.code_url));
            active.updated_at = Set(Utc::now());
            let updated = active.update(db).await?;
            tracing::info!(order_no = %order.order_no, %pay_no, %provider, "payment attempt started");
            Ok(updated)
        }
        Err(err) => {
            tracing::warn!(order_no = %order.order_no, %pay_no, %provider, error.message = %err, "provider refused the payment attempt");
            let failed = AttemptUpdate::Failed { cause: err.to_string() };
            apply_attempt(db, order.id, pay_no, failed, operator).await?;
            Err(OrderError::Gateway(err))
        }
    }
}

async fn current_status_error<C: ConnectionTrait>(conn: &C, order: &orders::Model) -> OrderError {
    match orders::Entity::find_by_id(order.id).one(conn).await {
        Ok(Some(current)) if current.status != OrderStatus::Pending => OrderError::NotPending(current.status),
        Ok(_) => OrderError::Concurrent,
        Err(err) => OrderError::Db(err),
    }
}
