//! Refunds: created in one locked transaction that checks what is left to refund, committed
//! before the provider is asked; then moved to a final status by guarded updates
//! (`WHERE refund_no = ? AND status = 'pending'`), each with its `order_logs` row and its
//! `refund.*` outbox event, the order's `refunded_amount` (and `refunded` status) in the same
//! transaction.
//!
//! A refund's `next_attempt_at` is its durable timer: the refund worker takes due refunds by
//! moving it forward (a guarded claim), so a restart, or a node dying mid-call, only delays a
//! refund; it is sent again with the same `refund_no`, and the provider refunds once.

use chrono::{DateTime, Utc};
use entities::{orders, payment_attempts, refunds, AttemptStatus, MinorUnit, OrderId, PayNo, RefundNo, RefundStatus};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr, TransactionTrait,
};

use super::journal::{write_log, write_refund_event, EventType, LogEntry, LogEvent, Operator};
use super::transitions::{anomaly_in, insert_receipt, lock_order, Receipt, Transition};
use crate::domain::{MerchantId, NewRefund, ValidationError, AUTO_REFUND_PREFIX};
use crate::error::{OrderError, RefundError};
use crate::ids::Snowflake;

/// What a refund request did.
#[derive(Debug)]
pub enum RefundCreated {
    New(refunds::Model),
    /// The same request again (same key, same content): the refund made the first time.
    Replayed(refunds::Model),
}

/// Creates a refund of `order_id`'s payment (or, for an operator, of `req.pay_no`), checked
/// against what is left of it in the same transaction that inserts it: the order row is locked,
/// so two concurrent refunds of one payment cannot both pass the check.
///
/// # Errors
/// [`OrderError::NotFound`] (another merchant's order too), [`RefundError::NotRefundable`],
/// [`RefundError::ExceedsPaid`], [`RefundError::Conflict`], a
/// [`ValidationError`] `not_a_payment`, or a database / id error. Nothing is written then.
pub async fn create_refund(
    db: &DatabaseConnection,
    ids: &Snowflake,
    order_id: OrderId,
    scope: Option<&MerchantId>,
    req: &NewRefund,
    operator: &Operator,
) -> Result<RefundCreated, OrderError> {
    let refund_no: RefundNo = ids.next_typed().await?;
    let first = try_create(db, refund_no, order_id, scope, req, operator).await;
    match first {
        Err(OrderError::Db(err)) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            // The same key committed for another order of the merchant meanwhile: judge ours
            // against it.
            try_create(db, refund_no, order_id, scope, req, operator).await
        }
        other => other,
    }
}

async fn try_create(
    db: &DatabaseConnection,
    refund_no: RefundNo,
    order_id: OrderId,
    scope: Option<&MerchantId>,
    req: &NewRefund,
    operator: &Operator,
) -> Result<RefundCreated, OrderError> {
    let now = Utc::now();
    let txn = db.begin().await?;
    let order = lock_order(&txn, order_id).await?;
    if scope.is_some_and(|merchant| merchant.as_str() != order.merchant_id) {
        return Err(OrderError::NotFound);
    }
    let fingerprint = req.fingerprint(&order.order_no);
    if let Some(existing) = by_key(&txn, &order.merchant_id, &req.out_refund_id).await? {
        return if existing.request_fingerprint == fingerprint {
            Ok(RefundCreated::Replayed(existing))
        } else {
            Err(RefundError::Conflict.into())
        };
    }
    let attempt = match req.pay_no {
        None => {
            if !order.status.is_refundable() {
                return Err(RefundError::NotRefundable(order.status).into());
            }
            order_payment(&txn, order_id).await?
        }
        Some(pay_no) => payment_of(&txn, order_id, pay_no).await?,
    };
    let refund = NewRow {
        refund_no,
        out_refund_id: req.out_refund_id.clone(),
        fingerprint,
        amount: req.amount,
        reason: req.reason.clone(),
    };
    let model = insert_checked(&txn, &order, &attempt, refund, operator, now, now).await?;
    txn.commit().await?;
    tracing::info!(order_no = %order.order_no, refund_no = %model.refund_no, amount = %model.amount, %operator, "refund created");
    Ok(RefundCreated::New(model))
}

/// The refund paywarden makes by itself of money taken that no order keeps (paid after
/// close, a second payment, a payment found by the follow-up): the whole payment, keyed
/// `auto:<pay_no>` so it is made once whatever path recorded the payment. Inside the caller's
/// transaction, which holds the order locked.
///
/// # Errors
/// A database error (the caller's transaction then commits nothing).
pub(crate) async fn create_auto_refund(
    txn: &DatabaseTransaction,
    refund_no: RefundNo,
    order: &orders::Model,
    pay_no: PayNo,
    why: &str,
    now: DateTime<Utc>,
) -> Result<Option<refunds::Model>, OrderError> {
    let out_refund_id = format!("{AUTO_REFUND_PREFIX}{pay_no}");
    if by_key(txn, &order.merchant_id, &out_refund_id).await?.is_some() {
        return Ok(None);
    }
    let attempt = payment_of(txn, order.id, pay_no).await?;
    let amount = remaining(txn, &attempt).await?;
    if amount == MinorUnit::ZERO {
        return Ok(None);
    }
    let refund = NewRow {
        refund_no,
        fingerprint: out_refund_id.clone(),
        out_refund_id,
        amount,
        reason: why.chars().take(entities::refunds::REASON_MAX_CHARS).collect(),
    };
    insert_checked(txn, order, &attempt, refund, &Operator::System, now, now)
        .await
        .map(Some)
}

struct NewRow {
    refund_no: RefundNo,
    out_refund_id: String,
    fingerprint: String,
    amount: MinorUnit,
    reason: String,
}

/// Checks `row.amount` against what is left of `attempt`'s payment, inserts the refund (first
/// step at `due`), its log row and its `refund.created` event.
async fn insert_checked(
    txn: &DatabaseTransaction,
    order: &orders::Model,
    attempt: &payment_attempts::Model,
    row: NewRow,
    operator: &Operator,
    now: DateTime<Utc>,
    due: DateTime<Utc>,
) -> Result<refunds::Model, OrderError> {
    let refundable = remaining(txn, attempt).await?;
    if row.amount > refundable {
        return Err(RefundError::ExceedsPaid { refundable }.into());
    }
    let model = refunds::Model {
        refund_no: row.refund_no,
        merchant_id: order.merchant_id.clone(),
        out_refund_id: row.out_refund_id,
        request_fingerprint: row.fingerprint,
        order_id: order.id,
        pay_no: attempt.pay_no,
        provider: attempt.provider,
        amount: row.amount,
        currency: attempt.currency,
        reason: row.reason,
        status: RefundStatus::Pending,
        operator: operator.to_string(),
        submitted: false,
        next_attempt_at: Some(due),
        attempts: 0,
        provider_refund_id: None,
        failure: None,
        raw_payload: None,
        created_at: now,
        updated_at: now,
        succeeded_at: None,
    };
    refunds::Entity::insert(refunds::ActiveModel::from(model.clone()))
        .exec_without_returning(txn)
        .await?;
    write_log(
        txn,
        LogEntry {
            order_id: order.id,
            event: LogEvent::Published(EventType::RefundCreated),
            from_status: Some(order.status.as_str()),
            to_status: order.status.as_str(),
            operator,
            reason: Some(format!(
                "refund {} of {} from pay_no {}: {}",
                model.refund_no, model.amount, model.pay_no, model.reason
            )),
        },
        now,
    )
    .await?;
    write_refund_event(txn, EventType::RefundCreated, order, &model, now).await?;
    Ok(model)
}

async fn by_key<C: ConnectionTrait>(
    conn: &C,
    merchant_id: &str,
    out_refund_id: &str,
) -> Result<Option<refunds::Model>, DbErr> {
    refunds::Entity::find()
        .filter(refunds::Column::MerchantId.eq(merchant_id))
        .filter(refunds::Column::OutRefundId.eq(out_refund_id))
        .one(conn)
        .await
}

/// The attempt whose payment the order holds (`succeeded`).
async fn order_payment<C: ConnectionTrait>(conn: &C, order_id: OrderId) -> Result<payment_attempts::Model, OrderError> {
    payment_attempts::Entity::find()
        .filter(payment_attempts::Column::OrderId.eq(order_id))
        .filter(payment_attempts::Column::Status.eq(AttemptStatus::Succeeded))
        .one(conn)
        .await?
        .ok_or(OrderError::Concurrent)
}

/// `pay_no` of `order_id`, when it took money (the order's payment, a second payment kept on
/// a closed attempt, a payment of another amount).
async fn payment_of<C: ConnectionTrait>(
    conn: &C,
    order_id: OrderId,
    pay_no: PayNo,
) -> Result<payment_attempts::Model, OrderError> {
    payment_attempts::Entity::find_by_id(pay_no)
        .one(conn)
        .await?
        .filter(|attempt| {
            attempt.order_id == order_id
                && attempt.provider_txn_id.is_some()
                && attempt.paid_amount.is_some()
                && attempt.status != AttemptStatus::Pending
        })
        .ok_or_else(|| {
            OrderError::Validation(ValidationError::new(
                "not_a_payment",
                format!("pay_no {pay_no} is not a payment of this order that took money"),
            ))
        })
}

/// What is left to refund of `attempt`'s payment: paid, less every refund of it that is not
/// failed (a pending one may still succeed).
async fn remaining<C: ConnectionTrait>(conn: &C, attempt: &payment_attempts::Model) -> Result<MinorUnit, OrderError> {
    let paid = attempt.paid_amount.unwrap_or(MinorUnit::ZERO).get();
    let taken = refunded(
        conn,
        attempt.pay_no,
        &[RefundStatus::Pending, RefundStatus::Succeeded],
        None,
    )
    .await?;
    Ok(MinorUnit::new(paid.saturating_sub(taken)).unwrap_or(MinorUnit::ZERO))
}

/// The total of `pay_no`'s refunds in `statuses`, `except` one of them.
async fn refunded<C: ConnectionTrait>(
    conn: &C,
    pay_no: PayNo,
    statuses: &[RefundStatus],
    except: Option<RefundNo>,
) -> Result<i64, OrderError> {
    let mut query = refunds::Entity::find()
        .select_only()
        .column(refunds::Column::Amount)
        .filter(refunds::Column::PayNo.eq(pay_no))
        .filter(refunds::Column::Status.is_in(statuses.iter().copied()));
    if let Some(refund_no) = except {
        query = query.filter(refunds::Column::RefundNo.ne(refund_no));
    }
    let amounts: Vec<MinorUnit> = query.into_tuple().all(conn).await?;
    Ok(amounts.iter().map(|amount| amount.get()).sum())
}

/// A final answer about a refund.
#[derive(Clone, Debug)]
pub enum RefundOutcome {
    Succeeded {
        provider_refund_id: Option<String>,
        at: DateTime<Utc>,
    },
    Failed {
        reason: String,
    },
}

/// How an automatic refund that ends failed is made again: money no order keeps is never
/// left with the merchant.
#[derive(Clone, Copy)]
pub struct AutoRetry<'a> {
    pub ids: &'a Snowflake,
    /// Backoff before the new try: `min_delay * 2^(tries - 1)` up to `max_delay`, jittered.
    pub schedule: crate::retry::RetrySchedule,
    /// Automatic refunds of one payment, the first included, before it is parked for an
    /// operator.
    pub max_tries: u32,
}

/// What became of the money a failed automatic refund was to give back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AutoFollowUp {
    /// Not an automatic refund, a success, or nothing left to give back.
    None,
    /// Made again under a new number, due at the given time.
    Retried { refund_no: RefundNo, at: DateTime<Utc> },
    /// Failed `max_tries` times: an anomaly for an operator, who refunds by hand.
    Parked { tries: u64 },
}

/// What settling did.
#[derive(Debug)]
pub enum Settled {
    /// The refund is final now; the order as it is after the change.
    Done {
        refund: Box<refunds::Model>,
        order: Box<orders::Model>,
        /// For an automatic refund that failed: what happens to its money now.
        next: AutoFollowUp,
        /// A refund recorded failed that succeeded after all left the payment refunded beyond
        /// what it took (an anomaly for an operator).
        beyond_paid: bool,
    },
    /// It was final already (another node, an earlier notification): nothing changed.
    AlreadyFinal(RefundStatus),
    /// The notification's receipt existed: nothing changed.
    Duplicate,
}

/// Moves a pending refund to its final status: the refund row (guarded on `pending`), the
/// order's `refunded_amount` (and `refunded` status once its payment is refunded in full) for
/// a success of the order's own payment, a log row and a `refund.*` event — one transaction,
/// with the notification's receipt when one reported it.
///
/// Two more cases, in the same transaction:
/// - an **automatic** refund that fails is made again under a new number after a backoff
///   (`retry`), for what is still left of the payment, until `max_tries`; then it is parked: a
///   payment anomaly for an operator ([`AutoFollowUp`]);
/// - a refund recorded **failed that succeeded after all** (the provider says so later) takes
///   its amount back: it is marked succeeded and counted, automatic retries of it not sent yet
///   are withdrawn, and if the payment is now refunded beyond what it took, an anomaly is
///   recorded. Since a failed refund's amount was free again, this is what keeps the same
///   money from being refunded twice unnoticed.
///
/// # Errors
/// [`RefundError::NotFound`] or a database error (nothing is committed).
pub async fn settle(
    db: &DatabaseConnection,
    refund_no: RefundNo,
    outcome: &RefundOutcome,
    raw: String,
    operator: &Operator,
    receipt: Option<&Receipt>,
    retry: Option<&AutoRetry<'_>>,
) -> Result<Settled, OrderError> {
    let now = Utc::now();
    let txn = db.begin().await?;
    let order_id = refunds::Entity::find_by_id(refund_no)
        .select_only()
        .column(refunds::Column::OrderId)
        .into_tuple::<OrderId>()
        .one(&txn)
        .await?
        .ok_or(OrderError::Refund(RefundError::NotFound))?;
    if let Some(receipt) = receipt {
        if !insert_receipt(&txn, receipt, order_id, now).await? {
            return Ok(Settled::Duplicate);
        }
    }
    let mut order = lock_order(&txn, order_id).await?;
    let mut refund = refunds::Entity::find_by_id(refund_no)
        .one(&txn)
        .await?
        .ok_or(OrderError::Refund(RefundError::NotFound))?;
    let late_success = refund.status == RefundStatus::Failed && matches!(outcome, RefundOutcome::Succeeded { .. });
    if refund.status != RefundStatus::Pending && !late_success {
        // The receipt (if any) is kept: the notification was applied in effect.
        txn.commit().await?;
        return Ok(Settled::AlreadyFinal(refund.status));
    }
    let mut update = refunds::Entity::update_many()
        .col_expr(
            refunds::Column::NextAttemptAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(refunds::Column::UpdatedAt, Expr::value(now))
        .col_expr(refunds::Column::RawPayload, Expr::value(raw.clone()))
        .filter(refunds::Column::RefundNo.eq(refund_no))
        .filter(refunds::Column::Status.eq(refund.status));
    let from = order.status;
    let (event, text) = match outcome {
        RefundOutcome::Succeeded { provider_refund_id, at } => {
            update = update
                .col_expr(refunds::Column::Status, Expr::value(RefundStatus::Succeeded))
                .col_expr(refunds::Column::SucceededAt, Expr::value(*at))
                .col_expr(refunds::Column::Failure, Expr::value(Option::<String>::None));
            refund.status = RefundStatus::Succeeded;
            refund.succeeded_at = Some(*at);
            refund.failure = None;
            if let Some(id) = provider_refund_id {
                update = update.col_expr(refunds::Column::ProviderRefundId, Expr::value(id.clone()));
                refund.provider_refund_id = Some(id.clone());
            }
            let text = if late_success {
                format!(
                    "refund {refund_no} of {}, recorded failed, succeeded after all: its amount is counted as refunded again",
                    refund.amount
                )
            } else {
                format!("refund {refund_no} of {} succeeded", refund.amount)
            };
            (EventType::RefundSucceeded, text)
        }
        RefundOutcome::Failed { reason } => {
            let reason: String = reason.chars().take(entities::refunds::FAILURE_MAX_CHARS).collect();
            update = update
                .col_expr(refunds::Column::Status, Expr::value(RefundStatus::Failed))
                .col_expr(refunds::Column::Failure, Expr::value(reason.clone()));
            refund.status = RefundStatus::Failed;
            refund.failure = Some(reason.clone());
            (
                EventType::RefundFailed,
                format!("refund {refund_no} of {} failed: {reason}", refund.amount),
            )
        }
    };
    if update.exec(&txn).await?.rows_affected != 1 {
        return Err(OrderError::Concurrent);
    }
    refund.next_attempt_at = None;
    refund.updated_at = now;
    refund.raw_payload = Some(raw);
    if refund.status == RefundStatus::Succeeded {
        order = count_refunded(&txn, order, &refund).await?;
    }
    write_log(
        &txn,
        LogEntry {
            order_id,
            event: LogEvent::Published(event),
            from_status: Some(from.as_str()),
            to_status: order.status.as_str(),
            operator,
            reason: Some(text.clone()),
        },
        now,
    )
    .await?;
    write_refund_event(&txn, event, &order, &refund, now).await?;
    let mut next = AutoFollowUp::None;
    let mut beyond_paid = false;
    if late_success {
        if is_automatic(&refund) {
            withdraw_unsent_retries(&txn, &order, &refund, now).await?;
        }
        beyond_paid = check_beyond_paid(&txn, &order, &refund, now).await?;
    } else if refund.status == RefundStatus::Failed && is_automatic(&refund) {
        if let Some(retry) = retry {
            next = retry_automatic(&txn, &order, &refund, retry, now).await?;
        }
    }
    txn.commit().await?;
    tracing::info!(order_no = %order.order_no, %refund_no, status = %refund.status, %operator, "refund settled");
    Ok(Settled::Done {
        refund: Box::new(refund),
        order: Box::new(order),
        next,
        beyond_paid,
    })
}

/// The automatic refunds of a payment (made by `system`, so a merchant's own `AUTO:` key,
/// which a case-blind `LIKE` would match, is never one of them).
fn automatic_of(pay_no: PayNo) -> sea_orm::Select<refunds::Entity> {
    refunds::Entity::find()
        .filter(refunds::Column::PayNo.eq(pay_no))
        .filter(refunds::Column::Operator.eq(Operator::System.to_string()))
        .filter(refunds::Column::OutRefundId.starts_with(AUTO_REFUND_PREFIX))
}

/// Whether the money an automatic refund was made for has gone back through another one
/// meanwhile (one recorded failed succeeded after all): its succeeded refunds and this one
/// would exceed the payment. Such a refund is not sent again: the provider refuses it, for ever.
///
/// # Errors
/// A database error.
pub async fn covered_elsewhere<C: ConnectionTrait>(conn: &C, refund: &refunds::Model) -> Result<bool, OrderError> {
    let Some(attempt) = payment_attempts::Entity::find_by_id(refund.pay_no).one(conn).await? else {
        return Ok(false);
    };
    let paid = attempt.paid_amount.unwrap_or(attempt.amount).get();
    let succeeded = refunded(conn, refund.pay_no, &[RefundStatus::Succeeded], Some(refund.refund_no)).await?;
    Ok(succeeded.saturating_add(refund.amount.get()) > paid)
}

/// An automatic refund: money no order keeps, given back by paywarden itself.
fn is_automatic(refund: &refunds::Model) -> bool {
    refund.operator == Operator::System.to_string() && refund.out_refund_id.starts_with(AUTO_REFUND_PREFIX)
}

/// A failed automatic refund: made again under a new number for what is left of the payment,
/// due after the backoff, or parked for an operator after `max_tries`.
async fn retry_automatic(
    txn: &DatabaseTransaction,
    order: &orders::Model,
    failed: &refunds::Model,
    retry: &AutoRetry<'_>,
    now: DateTime<Utc>,
) -> Result<AutoFollowUp, OrderError> {
    let attempt = payment_of(txn, order.id, failed.pay_no).await?;
    let left = remaining(txn, &attempt).await?;
    if left == MinorUnit::ZERO {
        return Ok(AutoFollowUp::None);
    }
    let tries = sea_orm::PaginatorTrait::count(automatic_of(failed.pay_no), txn).await?;
    if tries >= u64::from(retry.max_tries) {
        let detail = format!(
            "automatic refund of pay_no {} failed {tries} times (last: {}): parked, {left} must be refunded by an operator",
            failed.pay_no,
            failed.failure.as_deref().unwrap_or("no reason given")
        );
        anomaly_in(txn, order.clone(), failed.pay_no, detail, None, &Operator::System, now).await?;
        tracing::error!(order_no = %order.order_no, pay_no = %failed.pay_no, tries, "an automatic refund is parked for an operator");
        return Ok(AutoFollowUp::Parked { tries });
    }
    let delay = retry
        .schedule
        .delay(u32::try_from(tries.saturating_sub(1)).unwrap_or(u32::MAX));
    let at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1));
    let refund_no: RefundNo = retry.ids.next_typed().await?;
    let key = format!("{AUTO_REFUND_PREFIX}{}:{}", failed.pay_no, tries + 1);
    let row = NewRow {
        refund_no,
        fingerprint: key.clone(),
        out_refund_id: key,
        amount: left,
        reason: failed.reason.clone(),
    };
    insert_checked(txn, order, &attempt, row, &Operator::System, now, at).await?;
    tracing::warn!(order_no = %order.order_no, pay_no = %failed.pay_no, %refund_no, %at, "an automatic refund failed; made again under a new number");
    Ok(AutoFollowUp::Retried { refund_no, at })
}

/// The retries of an automatic refund not sent yet are withdrawn when the refund they replace
/// succeeded after all (each `failed`, with its log row and event). One already sent stays:
/// the provider refuses it beyond what the trade took, and [`check_beyond_paid`] reports it.
async fn withdraw_unsent_retries(
    txn: &DatabaseTransaction,
    order: &orders::Model,
    succeeded: &refunds::Model,
    now: DateTime<Utc>,
) -> Result<(), OrderError> {
    let unsent = automatic_of(succeeded.pay_no)
        .filter(refunds::Column::Status.eq(RefundStatus::Pending))
        .filter(refunds::Column::Submitted.eq(false))
        .filter(refunds::Column::Attempts.eq(0))
        .all(txn)
        .await?;
    for mut retry in unsent {
        let reason = format!("withdrawn: refund {} succeeded after all", succeeded.refund_no);
        let withdrawn = refunds::Entity::update_many()
            .col_expr(refunds::Column::Status, Expr::value(RefundStatus::Failed))
            .col_expr(refunds::Column::Failure, Expr::value(reason.clone()))
            .col_expr(
                refunds::Column::NextAttemptAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(refunds::Column::UpdatedAt, Expr::value(now))
            .filter(refunds::Column::RefundNo.eq(retry.refund_no))
            .filter(refunds::Column::Status.eq(RefundStatus::Pending))
            .filter(refunds::Column::Attempts.eq(0))
            .exec(txn)
            .await?;
        if withdrawn.rows_affected != 1 {
            // Claimed by the worker meanwhile: it may be at the provider; left to run.
            continue;
        }
        retry.status = RefundStatus::Failed;
        retry.failure = Some(reason.clone());
        retry.next_attempt_at = None;
        write_log(
            txn,
            LogEntry {
                order_id: order.id,
                event: LogEvent::Published(EventType::RefundFailed),
                from_status: Some(order.status.as_str()),
                to_status: order.status.as_str(),
                operator: &Operator::System,
                reason: Some(format!("refund {}: {reason}", retry.refund_no)),
            },
            now,
        )
        .await?;
        write_refund_event(txn, EventType::RefundFailed, order, &retry, now).await?;
    }
    Ok(())
}

/// After a late success: refunds of the payment that are not failed (succeeded, or pending and
/// so possibly succeeding) beyond what it took are an anomaly for an operator. Returns whether
/// one was recorded.
async fn check_beyond_paid(
    txn: &DatabaseTransaction,
    order: &orders::Model,
    refund: &refunds::Model,
    now: DateTime<Utc>,
) -> Result<bool, OrderError> {
    let attempt = payment_attempts::Entity::find_by_id(refund.pay_no)
        .one(txn)
        .await?
        .ok_or(OrderError::AttemptNotFound)?;
    let paid = attempt.paid_amount.unwrap_or(attempt.amount);
    let taken = refunded(
        txn,
        refund.pay_no,
        &[RefundStatus::Pending, RefundStatus::Succeeded],
        None,
    )
    .await?;
    if taken <= paid.get() {
        return Ok(false);
    }
    let detail = format!(
        "refund {} recorded failed succeeded after all: pay_no {} took {paid}, refunds of it now total {}; an operator must recover the difference",
        refund.refund_no,
        refund.pay_no,
        MinorUnit::new(taken).unwrap_or(MinorUnit::ZERO)
    );
    anomaly_in(txn, order.clone(), refund.pay_no, detail, None, &Operator::System, now).await?;
    tracing::error!(order_no = %order.order_no, pay_no = %refund.pay_no, "a payment is refunded beyond what it took");
    Ok(true)
}

/// Adds a succeeded refund of the order's own payment to `refunded_amount`, and moves the
/// order to `refunded` when nothing of that payment is left (a guarded update on its status).
async fn count_refunded(
    txn: &DatabaseTransaction,
    mut order: orders::Model,
    refund: &refunds::Model,
) -> Result<orders::Model, OrderError> {
    let attempt = payment_attempts::Entity::find_by_id(refund.pay_no)
        .one(txn)
        .await?
        .ok_or(OrderError::AttemptNotFound)?;
    if attempt.status != AttemptStatus::Succeeded {
        // A second payment or a mismatched one: the order's own payment is untouched.
        return Ok(order);
    }
    let refunded = order
        .refunded_amount
        .checked_add(refund.amount)
        .ok_or(OrderError::Concurrent)?;
    let paid = attempt.paid_amount.unwrap_or(attempt.amount);
    let update = if refunded >= paid && Transition::Refunded.from().contains(&order.status) {
        // Nothing of the payment is left: the order's transition to `refunded`.
        order.status = Transition::Refunded.to();
        Transition::Refunded.guarded([order.id])
    } else {
        orders::Entity::update_many()
            .col_expr(orders::Column::Version, Expr::col(orders::Column::Version).add(1))
            .filter(orders::Column::Id.eq(order.id))
            .filter(orders::Column::Status.eq(order.status))
    };
    let update = update.col_expr(orders::Column::RefundedAmount, Expr::value(refunded));
    if update.exec(txn).await?.rows_affected != 1 {
        return Err(OrderError::Concurrent);
    }
    order.refunded_amount = refunded;
    order.version = order.version.saturating_add(1);
    Ok(order)
}

/// Refunds due for a step, soonest first.
///
/// # Errors
/// A database error.
pub async fn due<C: ConnectionTrait>(conn: &C, now: DateTime<Utc>, limit: u64) -> Result<Vec<refunds::Model>, DbErr> {
    refunds::Entity::find()
        .filter(refunds::Column::Status.eq(RefundStatus::Pending))
        .filter(refunds::Column::NextAttemptAt.lte(now))
        .order_by_asc(refunds::Column::NextAttemptAt)
        .limit(limit)
        .all(conn)
        .await
}

/// Takes one due refund for this node until `until` (its next step if this one dies), unless
/// another node took it first (its `next_attempt_at` moved); counts the step.
///
/// # Errors
/// A database error.
pub async fn claim<C: ConnectionTrait>(conn: &C, refund: &refunds::Model, until: DateTime<Utc>) -> Result<bool, DbErr> {
    let Some(seen) = refund.next_attempt_at else {
        return Ok(false);
    };
    Ok(refunds::Entity::update_many()
        .col_expr(refunds::Column::NextAttemptAt, Expr::value(until))
        .col_expr(refunds::Column::Attempts, Expr::col(refunds::Column::Attempts).add(1))
        .filter(refunds::Column::RefundNo.eq(refund.refund_no))
        .filter(refunds::Column::Status.eq(RefundStatus::Pending))
        .filter(refunds::Column::NextAttemptAt.eq(seen))
        .exec(conn)
        .await?
        .rows_affected
        == 1)
}

/// Leaves a pending refund for a later step at `at`: `submitted` says whether that step asks
/// the provider how it went (true) or sends it (again, with the same number).
///
/// # Errors
/// A database error.
pub async fn reschedule<C: ConnectionTrait>(
    conn: &C,
    refund_no: RefundNo,
    submitted: bool,
    at: DateTime<Utc>,
    provider_refund_id: Option<&str>,
    raw: Option<String>,
) -> Result<(), DbErr> {
    let mut update = refunds::Entity::update_many()
        .col_expr(refunds::Column::NextAttemptAt, Expr::value(at))
        .col_expr(refunds::Column::Submitted, Expr::value(submitted))
        .col_expr(refunds::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(refunds::Column::RefundNo.eq(refund_no))
        .filter(refunds::Column::Status.eq(RefundStatus::Pending));
    if let Some(id) = provider_refund_id {
        update = update.col_expr(refunds::Column::ProviderRefundId, Expr::value(id.to_owned()));
    }
    if let Some(raw) = raw {
        update = update.col_expr(refunds::Column::RawPayload, Expr::value(raw));
    }
    update.exec(conn).await?;
    Ok(())
}

/// Notes a provider's refusal of a send while the refund stays pending: the next step (at `at`)
/// asks the provider whether it holds the refund after all; only then is the refusal believed.
///
/// # Errors
/// A database error.
pub async fn note_refusal<C: ConnectionTrait>(
    conn: &C,
    refund_no: RefundNo,
    at: DateTime<Utc>,
    reason: &str,
    raw: String,
) -> Result<(), DbErr> {
    refunds::Entity::update_many()
        .col_expr(refunds::Column::NextAttemptAt, Expr::value(at))
        .col_expr(refunds::Column::Submitted, Expr::value(true))
        .col_expr(
            refunds::Column::Failure,
            Expr::value(
                reason
                    .chars()
                    .take(entities::refunds::FAILURE_MAX_CHARS)
                    .collect::<String>(),
            ),
        )
        .col_expr(refunds::Column::RawPayload, Expr::value(raw))
        .col_expr(refunds::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(refunds::Column::RefundNo.eq(refund_no))
        .filter(refunds::Column::Status.eq(RefundStatus::Pending))
        .exec(conn)
        .await?;
    Ok(())
}

/// One refund; a merchant sees only its own.
///
/// # Errors
/// [`RefundError::NotFound`] or a database error.
pub async fn find<C: ConnectionTrait>(
    conn: &C,
    refund_no: RefundNo,
    scope: Option<&MerchantId>,
) -> Result<refunds::Model, OrderError> {
    refunds::Entity::find_by_id(refund_no)
        .one(conn)
        .await?
        .filter(|refund| scope.is_none_or(|merchant| merchant.as_str() == refund.merchant_id))
        .ok_or(OrderError::Refund(RefundError::NotFound))
}

/// The refunds of an order, oldest first.
///
/// # Errors
/// A database error.
pub async fn of_order<C: ConnectionTrait>(conn: &C, order_id: OrderId) -> Result<Vec<refunds::Model>, DbErr> {
    refunds::Entity::find()
        .filter(refunds::Column::OrderId.eq(order_id))
        .order_by_asc(refunds::Column::CreatedAt)
        .order_by_asc(refunds::Column::RefundNo)
        .all(conn)
        .await
}
