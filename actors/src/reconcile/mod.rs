//! Reconciliation: each provider's trade bill of a day, compared with paywarden's payments and
//! refunds of that day (China time, the bills' day), every difference recorded as an item for
//! an operator.
//!
//! - A run is unique per provider and day (`reconciliation_runs`); starting the same day again
//!   reuses it, and items are unique per run, kind and reference, so a re-run adds nothing
//!   twice (an item resolved stays resolved).
//! - A bill not published yet leaves the run `waiting` with a durable `next_attempt_at`; the
//!   worker asks again then (claimed by a guarded update, so one node asks at a time).
//! - A bill is a hint, not a payment: it comes unsigned (Alipay's archive from whatever
//!   address the API names), so nothing is recorded on its word. A payment the bill shows that
//!   paywarden has not recorded (a lost callback the expiry rule missed) is first **queried**
//!   at the provider (a signed, verified answer); only what that answer says is recorded, as a
//!   provider notification would be — through the order's actor when it is live, the guarded
//!   transaction otherwise, deduplicated by a receipt named after the run. A row the query
//!   contradicts becomes an item for an operator (`bill_says_paid_provider_says_not`), never a
//!   state change.
//! - A bill that does not check out (another account or day, rows that do not add up to its
//!   own totals, a row that does not read, too large, fetched from where it may not be) fails
//!   the run (`failed`, with `last_error`), and nothing of it is used.
//!
//! [`compare`] is the matching itself: pure, table-tested.

mod worker;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use entities::{payment_attempts, reconciliation_items, reconciliation_runs, refunds, MinorUnit, PayNo, RefundStatus};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde::Serialize;

pub use self::worker::{run_now, ReconcileSettings, ReconcileWorker};
use crate::engine::Engine;
use crate::error::OrderError;
use crate::gateway::bill::{BillFetch, BillRow};
use crate::gateway::wechat::transformers::china_offset;
use crate::gateway::{GatewayError, NotificationSubject, TradeState, VerifiedNotification};
use crate::provider::Route;
use crate::store::Operator;

pub const WAITING: &str = "waiting";
pub const COMPLETED: &str = "completed";
/// The bill does not check out: nothing of it was used; an operator looks, then starts the
/// day again.
pub const FAILED: &str = "failed";

/// What kind of difference an item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ItemKind {
    /// Paid at the provider, not recorded here (compensated at once when the trade is ours).
    MissingHere,
    /// Paid at the provider on a trade number paywarden never issued.
    UnknownTrade,
    /// Recorded paid here, absent from the provider's bill.
    MissingAtProvider,
    /// Both sides have the payment, with different amounts.
    AmountDiffers,
    /// Both sides have the payment, under different provider transaction ids.
    TxnDiffers,
    /// The bill lists the same trade (or refund) more than once.
    DuplicateInBill,
    /// The bill shows a payment the provider's own (signed) answer to a query denies.
    BillSaysPaidProviderSaysNot,
    /// A refund in the bill paywarden did not ask for.
    RefundMissingHere,
    /// A refund paywarden made (pending or succeeded) absent from the bill.
    RefundMissingAtProvider,
    /// Both sides have the refund, with another amount or status.
    RefundDiffers,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::MissingHere => "missing_here",
            ItemKind::UnknownTrade => "unknown_trade",
            ItemKind::MissingAtProvider => "missing_at_provider",
            ItemKind::AmountDiffers => "amount_differs",
            ItemKind::TxnDiffers => "txn_differs",
            ItemKind::DuplicateInBill => "duplicate_in_bill",
            ItemKind::BillSaysPaidProviderSaysNot => "bill_says_paid_provider_says_not",
            ItemKind::RefundMissingHere => "refund_missing_here",
            ItemKind::RefundMissingAtProvider => "refund_missing_at_provider",
            ItemKind::RefundDiffers => "refund_differs",
        }
    }
}

/// A payment as paywarden recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPayment {
    pub pay_no: PayNo,
    pub provider_txn_id: String,
    pub amount: MinorUnit,
}

/// A refund as paywarden recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalRefund {
    pub refund_no: String,
    pub pay_no: PayNo,
    pub amount: MinorUnit,
    pub status: RefundStatus,
}

/// Everything paywarden knows of one provider's trades, to tell "not recorded" from "not ours".
#[derive(Clone, Debug, Default)]
pub struct Known {
    /// Trade numbers paywarden issued at this provider (any status).
    pub trades: BTreeSet<String>,
}

/// One difference found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub kind: ItemKind,
    pub reference: String,
    pub out_trade_no: String,
    pub provider_amount: Option<MinorUnit>,
    pub local_amount: Option<MinorUnit>,
    pub detail: String,
    /// For [`ItemKind::MissingHere`]: the payment to record, and when the bill says it was paid.
    pub provider_txn_id: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
}

/// Count and total of one side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Side {
    pub count: u64,
    pub total: i64,
}

impl Side {
    fn add(&mut self, amount: MinorUnit) {
        self.count += 1;
        self.total = self.total.saturating_add(amount.get());
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub provider_payments: Side,
    pub local_payments: Side,
    pub provider_refunds: Side,
    pub local_refunds: Side,
}

/// Compares one day's bill with one day's records.
pub fn compare(
    bill: &[BillRow],
    payments: &[LocalPayment],
    refunds: &[LocalRefund],
    known: &Known,
) -> (Vec<Difference>, Summary) {
    let mut summary = Summary::default();
    let mut differences = Vec::new();
    let mut billed_payments: BTreeMap<&str, (&str, MinorUnit, Option<DateTime<Utc>>)> = BTreeMap::new();
    let mut billed_refunds: BTreeMap<&str, (&str, MinorUnit, &str)> = BTreeMap::new();
    for row in bill {
        match row {
            BillRow::Payment {
                out_trade_no,
                provider_txn_id,
                amount,
                paid_at,
            } => {
                summary.provider_payments.add(*amount);
                if let Some((first_txn, first_amount, _)) =
                    billed_payments.insert(out_trade_no, (provider_txn_id, *amount, *paid_at))
                {
                    differences.push(duplicate(
                        out_trade_no,
                        out_trade_no,
                        *amount,
                        format!("the bill lists trade {out_trade_no} again: {first_amount} (txn {first_txn}), then {amount} (txn {provider_txn_id})"),
                    ));
                }
            }
            BillRow::Refund {
                out_trade_no,
                out_refund_no,
                amount,
                status,
                ..
            } => {
                summary.provider_refunds.add(*amount);
                if let Some((_, first_amount, _)) =
                    billed_refunds.insert(out_refund_no, (out_trade_no, *amount, status))
                {
                    differences.push(duplicate(
                        out_refund_no,
                        out_trade_no,
                        *amount,
                        format!("the bill lists refund {out_refund_no} again: {first_amount}, then {amount}"),
                    ));
                }
            }
        }
    }
    let local_payments: BTreeMap<String, &LocalPayment> = payments
        .iter()
        .map(|payment| (payment.pay_no.to_string(), payment))
        .collect();
    for payment in payments {
        summary.local_payments.add(payment.amount);
    }
    for refund in refunds {
        summary.local_refunds.add(refund.amount);
    }
    for (out_trade_no, (txn, amount, paid_at)) in &billed_payments {
        match local_payments.get(*out_trade_no) {
            Some(local) if local.amount != *amount => differences.push(Difference {
                kind: ItemKind::AmountDiffers,
                reference: (*out_trade_no).to_owned(),
                out_trade_no: (*out_trade_no).to_owned(),
                provider_amount: Some(*amount),
                local_amount: Some(local.amount),
                detail: format!("the bill says {amount}, paywarden recorded {}", local.amount),
                provider_txn_id: Some((*txn).to_owned()),
                paid_at: *paid_at,
            }),
            Some(local) if local.provider_txn_id != *txn => differences.push(Difference {
                kind: ItemKind::TxnDiffers,
                reference: (*out_trade_no).to_owned(),
                out_trade_no: (*out_trade_no).to_owned(),
                provider_amount: Some(*amount),
                local_amount: Some(local.amount),
                detail: format!(
                    "the bill says txn {txn}, paywarden recorded txn {}",
                    local.provider_txn_id
                ),
                provider_txn_id: Some((*txn).to_owned()),
                paid_at: *paid_at,
            }),
            Some(_) => {}
            None => {
                let ours = known.trades.contains(*out_trade_no);
                differences.push(Difference {
                    kind: if ours {
                        ItemKind::MissingHere
                    } else {
                        ItemKind::UnknownTrade
                    },
                    reference: (*out_trade_no).to_owned(),
                    out_trade_no: (*out_trade_no).to_owned(),
                    provider_amount: Some(*amount),
                    local_amount: None,
                    detail: if ours {
                        format!("paid {amount} at the provider (txn {txn}), not recorded here")
                    } else {
                        format!("paid {amount} at the provider (txn {txn}) on a trade paywarden never issued")
                    },
                    provider_txn_id: Some((*txn).to_owned()),
                    paid_at: *paid_at,
                });
            }
        }
    }
    for payment in payments {
        let out_trade_no = payment.pay_no.to_string();
        if !billed_payments.contains_key(out_trade_no.as_str()) {
            differences.push(Difference {
                kind: ItemKind::MissingAtProvider,
                reference: out_trade_no.clone(),
                out_trade_no,
                provider_amount: None,
                local_amount: Some(payment.amount),
                detail: format!(
                    "recorded paid {} (txn {}) here, absent from the provider's bill",
                    payment.amount, payment.provider_txn_id
                ),
                provider_txn_id: Some(payment.provider_txn_id.clone()),
                paid_at: None,
            });
        }
    }
    let local_refunds: BTreeMap<&str, &LocalRefund> = refunds
        .iter()
        .map(|refund| (refund.refund_no.as_str(), refund))
        .collect();
    for (out_refund_no, (out_trade_no, amount, status)) in &billed_refunds {
        match local_refunds.get(out_refund_no) {
            None => differences.push(Difference {
                kind: ItemKind::RefundMissingHere,
                reference: (*out_refund_no).to_owned(),
                out_trade_no: (*out_trade_no).to_owned(),
                provider_amount: Some(*amount),
                local_amount: None,
                detail: format!("refund {out_refund_no} of {amount} ({status}) in the bill, unknown here"),
                provider_txn_id: None,
                paid_at: None,
            }),
            Some(local) => {
                let status_differs =
                    local.status == RefundStatus::Succeeded && !status.is_empty() && *status != "SUCCESS";
                if local.amount != *amount || status_differs {
                    differences.push(Difference {
                        kind: ItemKind::RefundDiffers,
                        reference: (*out_refund_no).to_owned(),
                        out_trade_no: (*out_trade_no).to_owned(),
                        provider_amount: Some(*amount),
                        local_amount: Some(local.amount),
                        detail: format!(
                            "the bill says {amount} ({status}), paywarden has {} ({})",
                            local.amount, local.status
                        ),
                        provider_txn_id: None,
                        paid_at: None,
                    });
                }
            }
        }
    }
    for refund in refunds {
        if !billed_refunds.contains_key(refund.refund_no.as_str()) {
            differences.push(Difference {
                kind: ItemKind::RefundMissingAtProvider,
                reference: refund.refund_no.clone(),
                out_trade_no: refund.pay_no.to_string(),
                provider_amount: None,
                local_amount: Some(refund.amount),
                detail: format!(
                    "refund {} of {} ({}) here, absent from the provider's bill",
                    refund.refund_no, refund.amount, refund.status
                ),
                provider_txn_id: None,
                paid_at: None,
            });
        }
    }
    differences.sort_by(|a, b| (a.kind, &a.reference).cmp(&(b.kind, &b.reference)));
    (differences, summary)
}

/// An item for a key the bill lists twice.
fn duplicate(reference: &str, out_trade_no: &str, amount: MinorUnit, detail: String) -> Difference {
    Difference {
        kind: ItemKind::DuplicateInBill,
        reference: reference.to_owned(),
        out_trade_no: out_trade_no.to_owned(),
        provider_amount: Some(amount),
        local_amount: None,
        detail,
        provider_txn_id: None,
        paid_at: None,
    }
}

/// The UTC span of a China-time day.
pub fn day_span(date: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = date
        .and_time(NaiveTime::MIN)
        .and_local_timezone(china_offset())
        .single()
        .map_or_else(|| date.and_time(NaiveTime::MIN).and_utc(), |at| at.with_timezone(&Utc));
    (start, start + chrono::Duration::days(1))
}

/// Today in China time.
pub fn china_today(now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&china_offset()).date_naive()
}

/// The run of `route`'s bill of `date`, created `waiting` (due now) if there is none; with
/// `again`, a run already completed is made due again (a re-run).
///
/// # Errors
/// A database error.
pub async fn ensure_run(
    db: &DatabaseConnection,
    route: &Route,
    date: NaiveDate,
    operator: &Operator,
    again: bool,
) -> Result<reconciliation_runs::Model, DbErr> {
    let now = Utc::now();
    let day = date.format("%Y-%m-%d").to_string();
    let provider = route.provider;
    reconciliation_runs::Entity::insert(reconciliation_runs::ActiveModel {
        id: NotSet,
        provider: Set(provider),
        account_key: Set(route.key().to_owned()),
        bill_date: Set(day.clone()),
        status: Set(WAITING.to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(Some(now)),
        last_error: Set(None),
        operator: Set(operator.to_string()),
        summary: Set(None),
        items: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        completed_at: Set(None),
    })
    .on_conflict(
        OnConflict::columns([
            reconciliation_runs::Column::Provider,
            reconciliation_runs::Column::AccountKey,
            reconciliation_runs::Column::BillDate,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    if again {
        reconciliation_runs::Entity::update_many()
            .col_expr(reconciliation_runs::Column::Status, Expr::value(WAITING))
            .col_expr(reconciliation_runs::Column::NextAttemptAt, Expr::value(now))
            .col_expr(reconciliation_runs::Column::Operator, Expr::value(operator.to_string()))
            .col_expr(reconciliation_runs::Column::UpdatedAt, Expr::value(now))
            .filter(reconciliation_runs::Column::Provider.eq(provider))
            .filter(reconciliation_runs::Column::AccountKey.eq(route.key()))
            .filter(reconciliation_runs::Column::BillDate.eq(day.as_str()))
            .filter(reconciliation_runs::Column::Status.is_in([COMPLETED, FAILED]))
            .exec(db)
            .await?;
    }
    reconciliation_runs::Entity::find()
        .filter(reconciliation_runs::Column::Provider.eq(provider))
        .filter(reconciliation_runs::Column::AccountKey.eq(route.key()))
        .filter(reconciliation_runs::Column::BillDate.eq(day))
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("reconciliation run".into()))
}

/// Whose bill `run` compares.
pub fn run_route(run: &reconciliation_runs::Model) -> Route {
    Route::from_key(run.provider, &run.account_key)
}

/// The attempts of trades at `route`'s account.
fn of_route(route: &Route) -> sea_orm::Condition {
    let account = match route.account.as_deref() {
        Some(account) => payment_attempts::Column::AccountId.eq(account),
        None => payment_attempts::Column::AccountId.is_null(),
    };
    sea_orm::Condition::all()
        .add(payment_attempts::Column::Provider.eq(route.provider))
        .add(account)
}

/// Runs due for a step, soonest first.
async fn due<C: ConnectionTrait>(conn: &C, now: DateTime<Utc>) -> Result<Vec<reconciliation_runs::Model>, DbErr> {
    reconciliation_runs::Entity::find()
        .filter(reconciliation_runs::Column::Status.eq(WAITING))
        .filter(reconciliation_runs::Column::NextAttemptAt.lte(now))
        .order_by_asc(reconciliation_runs::Column::NextAttemptAt)
        .limit(16)
        .all(conn)
        .await
}

/// Takes a due run until `until`, unless another node took it first.
async fn claim<C: ConnectionTrait>(
    conn: &C,
    run: &reconciliation_runs::Model,
    until: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let Some(seen) = run.next_attempt_at else {
        return Ok(false);
    };
    Ok(reconciliation_runs::Entity::update_many()
        .col_expr(reconciliation_runs::Column::NextAttemptAt, Expr::value(until))
        .col_expr(
            reconciliation_runs::Column::Attempts,
            Expr::col(reconciliation_runs::Column::Attempts).add(1),
        )
        .filter(reconciliation_runs::Column::Id.eq(run.id))
        .filter(reconciliation_runs::Column::Status.eq(WAITING))
        .filter(reconciliation_runs::Column::NextAttemptAt.eq(seen))
        .exec(conn)
        .await?
        .rows_affected
        == 1)
}

/// One step of a claimed run: fetch the bill; not ready → due again after the retry interval
/// (unless the day is `empty_after_days` old: no bill is published for it any more, which
/// Alipay answers for a day without trades too, so it is compared as an empty bill, which
/// lists every payment paywarden recorded that day as missing at the provider); otherwise
/// compare, record the items (and compensate missing payments), complete the run.
///
/// # Errors
/// A database error (the run is due again once its claim lapses).
pub(crate) async fn step(
    engine: &Engine,
    run: &reconciliation_runs::Model,
    settings: &ReconcileSettings,
) -> Result<(), OrderError> {
    let retry_at =
        Utc::now() + chrono::Duration::from_std(settings.retry_interval).unwrap_or(chrono::Duration::minutes(30));
    let db = engine.db();
    let date = NaiveDate::parse_from_str(&run.bill_date, "%Y-%m-%d")
        .map_err(|err| OrderError::Db(DbErr::Custom(format!("bad bill_date {}: {err}", run.bill_date))))?;
    let route = run_route(run);
    let fetched = engine.fetch_bill(&route, date).await;
    let rows = match fetched {
        Ok(BillFetch::Rows(rows)) => rows,
        Ok(BillFetch::NotReady)
            if china_today(Utc::now()) - date > chrono::Duration::days(i64::from(settings.empty_after_days)) =>
        {
            tracing::warn!(provider = %run.provider, day = %run.bill_date, "no bill published; compared as an empty day");
            Vec::new()
        }
        Ok(BillFetch::NotReady) => {
            return wait(db, run.id, retry_at, "the provider has not published the bill yet").await
        }
        Err(GatewayError::BadBill(why)) => return fail(db, run, &why).await,
        Err(err) => return wait(db, run.id, retry_at, &format!("fetching the bill failed: {err}")).await,
    };
    let (start, end) = day_span(date);
    let payments = local_payments(db, &route, start, end).await?;
    let refunds = local_refunds(db, &route, start, end).await?;
    let known = known_trades(db, &route, &rows).await?;
    let (differences, summary) = compare(&rows, &payments, &refunds, &known);
    for difference in &differences {
        if difference.kind == ItemKind::MissingHere {
            let (difference, action) = compensate(engine, run, difference).await;
            insert_item(db, run.id, &difference, Some(action)).await?;
        } else {
            insert_item(db, run.id, difference, None).await?;
        }
    }
    let items = sea_orm::PaginatorTrait::count(
        reconciliation_items::Entity::find().filter(reconciliation_items::Column::RunId.eq(run.id)),
        db,
    )
    .await?;
    let items = i32::try_from(items).unwrap_or(i32::MAX);
    let now = Utc::now();
    reconciliation_runs::Entity::update_many()
        .col_expr(reconciliation_runs::Column::Status, Expr::value(COMPLETED))
        .col_expr(
            reconciliation_runs::Column::NextAttemptAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            reconciliation_runs::Column::LastError,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            reconciliation_runs::Column::Summary,
            Expr::value(serde_json::to_string(&summary).unwrap_or_default()),
        )
        .col_expr(reconciliation_runs::Column::Items, Expr::value(items))
        .col_expr(reconciliation_runs::Column::UpdatedAt, Expr::value(now))
        .col_expr(reconciliation_runs::Column::CompletedAt, Expr::value(now))
        .filter(reconciliation_runs::Column::Id.eq(run.id))
        .exec(db)
        .await?;
    tracing::info!(provider = %run.provider, day = %run.bill_date, differences = differences.len(), "reconciliation completed");
    Ok(())
}

/// The bill does not check out: the run fails visibly, with nothing of the bill used, until an
/// operator starts the day again.
async fn fail(db: &DatabaseConnection, run: &reconciliation_runs::Model, why: &str) -> Result<(), OrderError> {
    tracing::error!(provider = %run.provider, day = %run.bill_date, reason = why, "reconciliation failed: the bill does not check out");
    let now = Utc::now();
    reconciliation_runs::Entity::update_many()
        .col_expr(reconciliation_runs::Column::Status, Expr::value(FAILED))
        .col_expr(
            reconciliation_runs::Column::NextAttemptAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            reconciliation_runs::Column::LastError,
            Expr::value(
                format!("the bill is unusable: {why}")
                    .chars()
                    .take(512)
                    .collect::<String>(),
            ),
        )
        .col_expr(reconciliation_runs::Column::UpdatedAt, Expr::value(now))
        .filter(reconciliation_runs::Column::Id.eq(run.id))
        .filter(reconciliation_runs::Column::Status.eq(WAITING))
        .exec(db)
        .await?;
    Ok(())
}

async fn wait(db: &DatabaseConnection, run_id: i64, at: DateTime<Utc>, why: &str) -> Result<(), OrderError> {
    tracing::info!(run_id, reason = why, "reconciliation waits");
    reconciliation_runs::Entity::update_many()
        .col_expr(reconciliation_runs::Column::NextAttemptAt, Expr::value(at))
        .col_expr(
            reconciliation_runs::Column::LastError,
            Expr::value(why.chars().take(512).collect::<String>()),
        )
        .col_expr(reconciliation_runs::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(reconciliation_runs::Column::Id.eq(run_id))
        .filter(reconciliation_runs::Column::Status.eq(WAITING))
        .exec(db)
        .await?;
    Ok(())
}

/// A payment the bill shows and paywarden missed: the bill is only a hint, so the trade is
/// queried first, and only what the provider's verified answer says is recorded, as its
/// notification would have been (deduplicated by a receipt named after the run and the trade,
/// so a re-run records nothing twice). A trade the answer says is not paid becomes
/// [`ItemKind::BillSaysPaidProviderSaysNot`] and changes nothing. Returns the item to write
/// and what was done.
async fn compensate(
    engine: &Engine,
    run: &reconciliation_runs::Model,
    difference: &Difference,
) -> (Difference, String) {
    let unchanged = |action: String| (difference.clone(), action);
    let Ok(pay_no) = difference.out_trade_no.parse::<PayNo>() else {
        return unchanged("not compensated: not a trade number paywarden issues".into());
    };
    let route = run_route(run);
    let answer = match engine.query_trade(&route, pay_no).await {
        Ok(answer) => answer,
        Err(err) => return unchanged(format!("not compensated yet: the provider could not be asked ({err})")),
    };
    let trade = match answer.state {
        TradeState::Paid(trade) => trade,
        state => {
            tracing::error!(provider = %run.provider, out_trade_no = %difference.out_trade_no, ?state, "the bill shows a payment the provider denies");
            let contradicted = Difference {
                kind: ItemKind::BillSaysPaidProviderSaysNot,
                detail: format!(
                    "{}; the provider's answer to a query says {}",
                    difference.detail,
                    state_text(&state)
                ),
                ..difference.clone()
            };
            return (
                contradicted,
                "not recorded: the provider's verified answer contradicts the bill".into(),
            );
        }
    };
    let agrees = Some(&trade.provider_txn_id) == difference.provider_txn_id.as_ref()
        && Some(trade.amount) == difference.provider_amount;
    let notification = VerifiedNotification {
        event_id: format!("bill:{}:{}", run.bill_date, difference.out_trade_no),
        out_trade_no: difference.out_trade_no.clone(),
        subject: NotificationSubject::Trade(TradeState::Paid(trade.clone())),
        raw: serde_json::json!({"source": "query after bill", "bill_date": run.bill_date, "query": answer.raw}),
    };
    let noted = if agrees {
        String::new()
    } else {
        format!(
            " (as the query says: txn {}, {}; the bill said otherwise)",
            trade.provider_txn_id, trade.amount
        )
    };
    match engine.notify(&route, notification).await {
        Ok(outcome) => {
            tracing::warn!(provider = %run.provider, out_trade_no = %difference.out_trade_no, ?outcome, "payment found in the bill, confirmed by a query, recorded");
            unchanged(format!("compensated after a query: {outcome:?}{noted}"))
        }
        Err(err) => unchanged(format!("not compensated yet: {err}")),
    }
}

fn state_text(state: &TradeState) -> &'static str {
    match state {
        TradeState::NotPaid => "not paid",
        TradeState::UserPaying => "the buyer is paying",
        TradeState::Paid(_) => "paid",
        TradeState::Closed => "closed",
        TradeState::NotFound => "no such trade",
    }
}

async fn insert_item(
    db: &DatabaseConnection,
    run_id: i64,
    difference: &Difference,
    action: Option<String>,
) -> Result<(), DbErr> {
    let has_action = action.is_some();
    reconciliation_items::Entity::insert(reconciliation_items::ActiveModel {
        id: NotSet,
        run_id: Set(run_id),
        kind: Set(difference.kind.as_str().to_owned()),
        reference: Set(difference.reference.chars().take(128).collect()),
        out_trade_no: Set(difference.out_trade_no.chars().take(128).collect()),
        provider_amount: Set(difference.provider_amount),
        local_amount: Set(difference.local_amount),
        detail: Set(difference.detail.clone()),
        action: Set(action.map(|action| action.chars().take(256).collect())),
        created_at: Set(Utc::now()),
        resolved_at: Set(None),
        resolved_by: Set(None),
        resolution: Set(None),
    })
    .on_conflict({
        let mut conflict = OnConflict::columns([
            reconciliation_items::Column::RunId,
            reconciliation_items::Column::Kind,
            reconciliation_items::Column::Reference,
        ]);
        // A re-run says what it did this time (a compensation that failed before may have
        // gone through now); nothing else of the item changes.
        if has_action {
            conflict.update_column(reconciliation_items::Column::Action);
        } else {
            conflict.do_nothing();
        }
        conflict.to_owned()
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Payments recorded at `provider` whose payment time falls in `[start, end)`.
async fn local_payments(
    db: &DatabaseConnection,
    route: &Route,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<LocalPayment>, DbErr> {
    let rows = payment_attempts::Entity::find()
        .filter(of_route(route))
        .filter(payment_attempts::Column::PaidAt.gte(start))
        .filter(payment_attempts::Column::PaidAt.lt(end))
        .filter(payment_attempts::Column::ProviderTxnId.is_not_null())
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|attempt| {
            Some(LocalPayment {
                pay_no: attempt.pay_no,
                provider_txn_id: attempt.provider_txn_id?,
                amount: attempt.paid_amount.unwrap_or(attempt.amount),
            })
        })
        .collect())
}

/// Refunds of `provider` of `[start, end)` that are not failed.
async fn local_refunds(
    db: &DatabaseConnection,
    route: &Route,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<LocalRefund>, DbErr> {
    // A succeeded refund counts on the day it succeeded (Alipay lists it then; WeChat on the
    // day it accepted it, the same day unless it stayed processing over midnight); a pending
    // one on the day it was asked for.
    let rows = refunds::Entity::find()
        .filter(refunds::Column::Provider.eq(route.provider))
        .filter(
            refunds::Column::PayNo.in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(payment_attempts::Column::PayNo)
                    .from(payment_attempts::Entity)
                    .cond_where(of_route(route))
                    .to_owned(),
            ),
        )
        .filter(
            sea_orm::Condition::any()
                .add(
                    sea_orm::Condition::all()
                        .add(refunds::Column::Status.eq(RefundStatus::Succeeded))
                        .add(refunds::Column::SucceededAt.gte(start))
                        .add(refunds::Column::SucceededAt.lt(end)),
                )
                .add(
                    sea_orm::Condition::all()
                        .add(refunds::Column::Status.eq(RefundStatus::Pending))
                        .add(refunds::Column::CreatedAt.gte(start))
                        .add(refunds::Column::CreatedAt.lt(end)),
                ),
        )
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|refund| LocalRefund {
            refund_no: refund.refund_no.to_string(),
            pay_no: refund.pay_no,
            amount: refund.amount,
            status: refund.status,
        })
        .collect())
}

/// Which of the bill's trade numbers paywarden issued at `provider`.
async fn known_trades(db: &DatabaseConnection, route: &Route, rows: &[BillRow]) -> Result<Known, DbErr> {
    let numbers: Vec<PayNo> = rows
        .iter()
        .filter_map(|row| match row {
            BillRow::Payment { out_trade_no, .. } => out_trade_no.parse().ok(),
            BillRow::Refund { .. } => None,
        })
        .collect();
    let mut known = Known::default();
    for chunk in numbers.chunks(500) {
        let found: Vec<PayNo> = payment_attempts::Entity::find()
            .select_only()
            .column(payment_attempts::Column::PayNo)
            .filter(of_route(route))
            .filter(payment_attempts::Column::PayNo.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        known.trades.extend(found.into_iter().map(|pay_no| pay_no.to_string()));
    }
    Ok(known)
}

/// Why an item could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no such reconciliation item")]
    NotFound,
    #[error("the item was resolved before")]
    AlreadyResolved,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// An operator resolves an item with a note (guarded: once).
///
/// # Errors
/// [`ResolveError`].
pub async fn resolve_item(
    db: &DatabaseConnection,
    id: i64,
    operator: &Operator,
    note: &str,
) -> Result<reconciliation_items::Model, ResolveError> {
    let now = Utc::now();
    let updated = reconciliation_items::Entity::update_many()
        .col_expr(reconciliation_items::Column::ResolvedAt, Expr::value(now))
        .col_expr(
            reconciliation_items::Column::ResolvedBy,
            Expr::value(operator.to_string()),
        )
        .col_expr(reconciliation_items::Column::Resolution, Expr::value(note.to_owned()))
        .filter(reconciliation_items::Column::Id.eq(id))
        .filter(reconciliation_items::Column::ResolvedAt.is_null())
        .exec(db)
        .await?
        .rows_affected;
    let item = reconciliation_items::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(ResolveError::NotFound)?;
    if updated == 0 {
        return Err(ResolveError::AlreadyResolved);
    }
    Ok(item)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn fen(n: i64) -> MinorUnit {
        MinorUnit::new(n).unwrap()
    }

    fn pay(no: i64, amount: i64) -> BillRow {
        BillRow::Payment {
            out_trade_no: no.to_string(),
            provider_txn_id: format!("txn{no}"),
            amount: fen(amount),
            paid_at: None,
        }
    }

    fn local(no: i64, amount: i64) -> LocalPayment {
        LocalPayment {
            pay_no: PayNo::new(no).unwrap(),
            provider_txn_id: format!("txn{no}"),
            amount: fen(amount),
        }
    }

    fn refund_row(no: &str, trade: i64, amount: i64, status: &str) -> BillRow {
        BillRow::Refund {
            out_trade_no: trade.to_string(),
            out_refund_no: no.to_owned(),
            provider_refund_id: None,
            amount: fen(amount),
            status: status.to_owned(),
        }
    }

    fn local_refund(no: &str, trade: i64, amount: i64, status: RefundStatus) -> LocalRefund {
        LocalRefund {
            refund_no: no.to_owned(),
            pay_no: PayNo::new(trade).unwrap(),
            amount: fen(amount),
            status,
        }
    }

    #[test]
    fn a_day_that_matches_has_no_difference_and_equal_sides() {
        let bill = [pay(1, 2999), pay(2, 100), refund_row("9", 1, 500, "SUCCESS")];
        let refunds = [local_refund("9", 1, 500, RefundStatus::Succeeded)];
        let (differences, summary) = compare(&bill, &[local(1, 2999), local(2, 100)], &refunds, &Known::default());
        assert!(differences.is_empty(), "{differences:?}");
        assert_eq!(summary.provider_payments, Side { count: 2, total: 3099 });
        assert_eq!(summary.provider_payments, summary.local_payments);
        assert_eq!(summary.provider_refunds, summary.local_refunds);
    }

    #[test]
    fn every_kind_of_difference_is_found_once() {
        let bill = [
            pay(1, 2999),                          // recorded with another amount
            pay(2, 100),                           // ours, not recorded
            pay(77, 100),                          // not ours
            refund_row("8", 1, 300, "SUCCESS"),    // unknown here
            refund_row("9", 1, 500, "PROCESSING"), // succeeded here
        ];
        let payments = [local(1, 2998), local(3, 50)];
        let refunds = [
            local_refund("9", 1, 500, RefundStatus::Succeeded),
            local_refund("10", 3, 50, RefundStatus::Pending),
        ];
        let known = Known {
            trades: ["1", "2", "3"].into_iter().map(str::to_owned).collect(),
        };
        let (differences, _) = compare(&bill, &payments, &refunds, &known);
        let found: Vec<(ItemKind, &str)> = differences.iter().map(|d| (d.kind, d.reference.as_str())).collect();
        assert_eq!(
            found,
            vec![
                (ItemKind::MissingHere, "2"),
                (ItemKind::UnknownTrade, "77"),
                (ItemKind::MissingAtProvider, "3"),
                (ItemKind::AmountDiffers, "1"),
                (ItemKind::RefundMissingHere, "8"),
                (ItemKind::RefundMissingAtProvider, "10"),
                (ItemKind::RefundDiffers, "9"),
            ]
        );
        let amount = differences.iter().find(|d| d.kind == ItemKind::AmountDiffers).unwrap();
        assert_eq!(
            (amount.provider_amount, amount.local_amount),
            (Some(fen(2999)), Some(fen(2998)))
        );
    }

    #[test]
    fn a_key_listed_twice_and_another_transaction_id_are_items_even_when_amounts_match() {
        let mut other_txn = pay(2, 100);
        if let BillRow::Payment { provider_txn_id, .. } = &mut other_txn {
            *provider_txn_id = "forged".into();
        }
        let bill = [
            pay(1, 2999),
            pay(1, 2999),
            other_txn,
            refund_row("9", 1, 500, "SUCCESS"),
            refund_row("9", 1, 500, "SUCCESS"),
        ];
        let refunds = [local_refund("9", 1, 500, RefundStatus::Succeeded)];
        let (differences, summary) = compare(&bill, &[local(1, 2999), local(2, 100)], &refunds, &Known::default());
        let found: Vec<(ItemKind, &str)> = differences.iter().map(|d| (d.kind, d.reference.as_str())).collect();
        assert_eq!(
            found,
            vec![
                (ItemKind::TxnDiffers, "2"),
                (ItemKind::DuplicateInBill, "1"),
                (ItemKind::DuplicateInBill, "9"),
            ]
        );
        assert!(differences[0].detail.contains("forged"), "{}", differences[0].detail);
        // The bill's own count includes the duplicate: the totals differ visibly too.
        assert_eq!(summary.provider_payments, Side { count: 3, total: 6098 });
    }

    #[test]
    fn a_china_day_starts_at_sixteen_hundred_utc_the_day_before() {
        let (start, end) = day_span(NaiveDate::from_ymd_opt(2026, 11, 30).unwrap());
        assert_eq!(start.to_rfc3339(), "2026-11-29T16:00:00+00:00");
        assert_eq!(end.to_rfc3339(), "2026-11-30T16:00:00+00:00");
    }
}
