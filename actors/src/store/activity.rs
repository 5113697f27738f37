//! The dashboard's activity counts: orders created, paid and closed (paid and closed by the
//! provider of the attempt that decided them), refunds succeeded, and the expiry rule's close
//! lateness, per five-minute and per one-hour bucket.
//!
//! They are counted from what every transition already writes (`order_logs`, append-only,
//! stamped in the transaction that made the change; a refund's success too, whenever the
//! provider says it happened), never on a request's path: [`roll_up`] moves one cursor
//! (`activity_rollup.counted_until`) forward over the rows stamped before `now − settle`, adds
//! what it read to `activity_counts` and moves the cursor in the same transaction, guarded by
//! the cursor it started from, so each row is counted once whichever node runs it. A row whose
//! transaction commits more than `settle` after its stamp is not counted (the dashboard
//! under-counts it; nothing else reads these counts). A dashboard load ([`read`]) reads at
//! most a few thousand rows of `activity_counts`, whatever the number of orders.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use entities::{
    activity_counts, activity_rollup, order_logs, orders, payment_attempts, AttemptStatus, OrderId, Provider,
};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};

use super::journal::{EventType, Operator};

/// The fine buckets (the last hour's chart).
pub const FINE_SECONDS: i32 = 300;
/// The coarse buckets (the last day's and the last week's charts).
pub const COARSE_SECONDS: i32 = 3600;
/// Counts older than this are deleted.
pub const RETENTION: chrono::Duration = chrono::Duration::days(8);
/// The upper bounds (seconds) of the close-lateness buckets; beyond the last: `+Inf`.
pub const LATENESS_BOUNDS: [f64; 12] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// The label of the close-lateness bucket beyond every bound.
pub const LATENESS_OVERFLOW: &str = "+Inf";
/// The label of an order closed with no attempt.
pub const NO_PROVIDER: &str = "none";
/// Rows written per statement.
const WRITE_CHUNK: usize = 500;
/// Order ids read per statement.
const READ_CHUNK: usize = 1000;

/// What the counts count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Series {
    Created,
    Paid,
    Closed,
    Refunded,
    /// Closes by the expiry rule, by lateness bucket (close logged − deadline).
    CloseLateness,
}

impl Series {
    pub const ALL: [Series; 5] = [
        Series::Created,
        Series::Paid,
        Series::Closed,
        Series::Refunded,
        Series::CloseLateness,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Series::Created => "created",
            Series::Paid => "paid",
            Series::Closed => "closed",
            Series::Refunded => "refunded",
            Series::CloseLateness => "close_lateness",
        }
    }

    fn parse(text: &str) -> Option<Series> {
        Series::ALL.into_iter().find(|series| series.as_str() == text)
    }
}

/// The start of the bucket of `resolution` seconds holding `at`.
pub fn bucket_of(at: DateTime<Utc>, resolution: i32) -> DateTime<Utc> {
    let resolution = i64::from(resolution);
    let start = at.timestamp().div_euclid(resolution) * resolution;
    Utc.timestamp_opt(start, 0).single().unwrap_or(at)
}

/// The label of the lateness bucket holding `late`.
pub fn lateness_label(late: Duration) -> String {
    let seconds = late.as_secs_f64();
    LATENESS_BOUNDS
        .iter()
        .find(|bound| seconds <= **bound)
        .map_or_else(|| LATENESS_OVERFLOW.to_owned(), |bound| bound.to_string())
}

/// What one [`roll_up`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollupStep {
    /// Nothing new was settled.
    UpToDate,
    /// Counted up to `until`; `more`: a full batch, more is settled already.
    Counted {
        until: DateTime<Utc>,
        rows: usize,
        more: bool,
    },
    /// Another node moved the cursor first; nothing was written.
    Raced,
}

/// Counts what was logged between the cursor and `now − settle` (at most `batch` log rows) and
/// moves the cursor, in one transaction guarded by the cursor it read. On a database that has
/// never been rolled up, counting starts [`RETENTION`] ago.
///
/// # Errors
/// The database error; nothing is written then.
pub async fn roll_up(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    settle: Duration,
    batch: u64,
) -> Result<RollupStep, DbErr> {
    let cursor = activity_rollup::Entity::find_by_id(1)
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("activity_rollup cursor".to_owned()))?
        .counted_until;
    let start = cursor.unwrap_or_else(|| bucket_of(now - RETENTION, COARSE_SECONDS));
    let settle = chrono::Duration::from_std(settle).unwrap_or_else(|_| chrono::Duration::seconds(60));
    let mut until = now - settle;
    if until <= start {
        return Ok(RollupStep::UpToDate);
    }
    let counted = [
        EventType::OrderCreated,
        EventType::OrderPaid,
        EventType::OrderClosed,
        EventType::RefundSucceeded,
    ]
    .map(|event| event.as_str());
    let logs_between = |from: DateTime<Utc>, to: DateTime<Utc>| {
        order_logs::Entity::find()
            .select_only()
            .columns([
                order_logs::Column::OrderId,
                order_logs::Column::Event,
                order_logs::Column::Operator,
                order_logs::Column::CreatedAt,
            ])
            .filter(order_logs::Column::CreatedAt.gte(from))
            .filter(order_logs::Column::CreatedAt.lt(to))
            .filter(order_logs::Column::Event.is_in(counted))
            .order_by_asc(order_logs::Column::CreatedAt)
            .order_by_asc(order_logs::Column::Id)
    };
    let mut logs: Vec<(OrderId, String, String, DateTime<Utc>)> =
        logs_between(start, until).limit(batch + 1).into_tuple().all(db).await?;
    let mut more = false;
    if u64::try_from(logs.len()).unwrap_or(u64::MAX) > batch {
        // Stop before the stamp of the first row left out, so no stamp is split between two
        // cycles; when the whole batch shares the first stamp, take every row of that stamp.
        let cut = logs[logs.len() - 1].3;
        if cut > start {
            logs.retain(|row| row.3 < cut);
            until = cut;
        } else {
            until = start + chrono::Duration::microseconds(1);
            logs = logs_between(start, until).into_tuple().all(db).await?;
        }
        more = true;
    }
    let decided: Vec<OrderId> = logs
        .iter()
        .filter(|row| row.1 != EventType::OrderCreated.as_str())
        .map(|row| row.0)
        .collect();
    let deciders = deciding_providers(db, &decided).await?;
    let system = Operator::System.to_string();
    let expiry_closed: Vec<OrderId> = logs
        .iter()
        .filter(|row| row.1 == EventType::OrderClosed.as_str() && row.2 == system)
        .map(|row| row.0)
        .collect();
    let deadlines = deadlines_of(db, &expiry_closed).await?;

    let mut tally = Tally::default();
    for (order_id, event, operator, at) in &logs {
        let decider = || deciders.get(order_id).map_or(NO_PROVIDER, |provider| provider.as_str());
        if event == EventType::OrderCreated.as_str() {
            tally.add(*at, Series::Created, "");
        } else if event == EventType::OrderPaid.as_str() {
            tally.add(*at, Series::Paid, decider());
        } else if event == EventType::RefundSucceeded.as_str() {
            // A refund is of the payment: the provider of the attempt that paid.
            tally.add(*at, Series::Refunded, decider());
        } else {
            tally.add(*at, Series::Closed, decider());
            if *operator == system {
                if let Some(deadline) = deadlines.get(order_id) {
                    let late = (*at - *deadline).to_std().unwrap_or_default();
                    tally.add(*at, Series::CloseLateness, &lateness_label(late));
                }
            }
        }
    }

    let txn = db.begin().await?;
    let guard = match cursor {
        Some(cursor) => activity_rollup::Column::CountedUntil.eq(cursor),
        None => activity_rollup::Column::CountedUntil.is_null(),
    };
    let moved = activity_rollup::Entity::update_many()
        .col_expr(activity_rollup::Column::CountedUntil, Expr::value(until))
        .filter(activity_rollup::Column::Id.eq(1))
        .filter(guard)
        .exec(&txn)
        .await?;
    if moved.rows_affected == 0 {
        txn.rollback().await?;
        return Ok(RollupStep::Raced);
    }
    let rows: Vec<activity_counts::ActiveModel> = tally.into_rows();
    for chunk in rows.chunks(WRITE_CHUNK) {
        activity_counts::Entity::insert_many(chunk.iter().cloned())
            .on_conflict(
                OnConflict::columns([
                    activity_counts::Column::ResolutionSeconds,
                    activity_counts::Column::BucketStart,
                    activity_counts::Column::Series,
                    activity_counts::Column::Label,
                ])
                .value(
                    activity_counts::Column::Tally,
                    Expr::col((activity_counts::Entity, activity_counts::Column::Tally))
                        .add(Expr::cust("excluded.tally")),
                )
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
    }
    activity_counts::Entity::delete_many()
        .filter(activity_counts::Column::BucketStart.lt(now - RETENTION))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(RollupStep::Counted {
        until,
        rows: logs.len(),
        more,
    })
}

/// The provider of the attempt that decided each order: a succeeded attempt's when it has
/// one, else its latest attempt's. Orders without an attempt are absent.
async fn deciding_providers<C: ConnectionTrait>(
    conn: &C,
    orders: &[OrderId],
) -> Result<HashMap<OrderId, Provider>, DbErr> {
    let mut found: HashMap<OrderId, (bool, DateTime<Utc>, Provider)> = HashMap::new();
    for chunk in orders.chunks(READ_CHUNK) {
        let attempts: Vec<(OrderId, Provider, AttemptStatus, DateTime<Utc>)> = payment_attempts::Entity::find()
            .select_only()
            .columns([
                payment_attempts::Column::OrderId,
                payment_attempts::Column::Provider,
                payment_attempts::Column::Status,
                payment_attempts::Column::CreatedAt,
            ])
            .filter(payment_attempts::Column::OrderId.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(conn)
            .await?;
        for (order_id, provider, status, created_at) in attempts {
            let candidate = (status == AttemptStatus::Succeeded, created_at, provider);
            found
                .entry(order_id)
                .and_modify(|best| {
                    if (candidate.0, candidate.1) > (best.0, best.1) {
                        *best = candidate;
                    }
                })
                .or_insert(candidate);
        }
    }
    Ok(found
        .into_iter()
        .map(|(order, (_, _, provider))| (order, provider))
        .collect())
}

/// Each order's deadline.
async fn deadlines_of<C: ConnectionTrait>(conn: &C, ids: &[OrderId]) -> Result<HashMap<OrderId, DateTime<Utc>>, DbErr> {
    let mut deadlines = HashMap::new();
    for chunk in ids.chunks(READ_CHUNK) {
        let rows: Vec<(OrderId, DateTime<Utc>)> = orders::Entity::find()
            .select_only()
            .columns([orders::Column::Id, orders::Column::ExpiresAt])
            .filter(orders::Column::Id.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(conn)
            .await?;
        deadlines.extend(rows);
    }
    Ok(deadlines)
}

/// Counts being added up, at both resolutions.
#[derive(Default)]
struct Tally(BTreeMap<(i32, DateTime<Utc>, Series, String), i64>);

impl Tally {
    fn add(&mut self, at: DateTime<Utc>, series: Series, label: &str) {
        for resolution in [FINE_SECONDS, COARSE_SECONDS] {
            *self
                .0
                .entry((resolution, bucket_of(at, resolution), series, label.to_owned()))
                .or_default() += 1;
        }
    }

    fn into_rows(self) -> Vec<activity_counts::ActiveModel> {
        self.0
            .into_iter()
            .map(
                |((resolution, bucket, series, label), tally)| activity_counts::ActiveModel {
                    resolution_seconds: Set(resolution),
                    bucket_start: Set(bucket),
                    series: Set(series.as_str().to_owned()),
                    label: Set(label),
                    tally: Set(tally),
                },
            )
            .collect()
    }
}

/// The counts of a run of equal intervals, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activity {
    /// The start of the first interval.
    pub from: DateTime<Utc>,
    pub step: chrono::Duration,
    pub points: usize,
    /// Everything logged before this is counted (`None`: nothing yet).
    pub counted_until: Option<DateTime<Utc>>,
    counts: BTreeMap<(Series, String), Vec<i64>>,
}

impl Activity {
    /// The series' count per interval, every label added up.
    pub fn per_interval(&self, series: Series) -> Vec<i64> {
        let mut sums = vec![0; self.points];
        for ((_, _), values) in self.counts.iter().filter(|((s, _), _)| *s == series) {
            for (sum, value) in sums.iter_mut().zip(values) {
                *sum += value;
            }
        }
        sums
    }

    /// The series' count over the whole range, every label added up.
    pub fn total(&self, series: Series) -> i64 {
        self.per_interval(series).iter().sum()
    }

    /// The series' count over the whole range, by label.
    pub fn by_label(&self, series: Series) -> BTreeMap<String, i64> {
        self.counts
            .iter()
            .filter(|((s, _), _)| *s == series)
            .map(|((_, label), values)| (label.clone(), values.iter().sum()))
            .collect()
    }

    /// The upper bound of the close-lateness bucket holding the quantile `per_mille` / 1000
    /// of the range's expiry closes (`None`: no close; `f64::INFINITY`: beyond the last
    /// bound).
    pub fn lateness_quantile(&self, per_mille: i64) -> Option<f64> {
        let mut buckets: Vec<(f64, i64)> = self
            .by_label(Series::CloseLateness)
            .iter()
            .map(|(label, count)| (label.parse::<f64>().unwrap_or(f64::INFINITY), *count))
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: i64 = buckets.iter().map(|(_, count)| count).sum();
        if total == 0 {
            return None;
        }
        // The rank of the quantile, rounded up: ⌈total × per_mille / 1000⌉, at least 1.
        let rank = ((total * per_mille + 999) / 1000).max(1);
        let mut seen = 0;
        for (bound, count) in buckets {
            seen += count;
            if seen >= rank {
                return Some(bound);
            }
        }
        Some(f64::INFINITY)
    }
}

/// The counts of `points` intervals of `step` starting at `from`, read from the buckets of
/// `resolution` seconds (`step` a multiple of it).
///
/// # Errors
/// The database error.
pub async fn read<C: ConnectionTrait>(
    conn: &C,
    resolution: i32,
    from: DateTime<Utc>,
    step: chrono::Duration,
    points: usize,
) -> Result<Activity, DbErr> {
    let to = from + step * i32::try_from(points).unwrap_or(i32::MAX);
    let rows: Vec<(DateTime<Utc>, String, String, i64)> = activity_counts::Entity::find()
        .select_only()
        .columns([
            activity_counts::Column::BucketStart,
            activity_counts::Column::Series,
            activity_counts::Column::Label,
            activity_counts::Column::Tally,
        ])
        .filter(activity_counts::Column::ResolutionSeconds.eq(resolution))
        .filter(activity_counts::Column::BucketStart.gte(from))
        .filter(activity_counts::Column::BucketStart.lt(to))
        .into_tuple()
        .all(conn)
        .await?;
    let counted_until = activity_rollup::Entity::find_by_id(1)
        .one(conn)
        .await?
        .and_then(|row| row.counted_until);
    let mut counts: BTreeMap<(Series, String), Vec<i64>> = BTreeMap::new();
    let step_seconds = step.num_seconds().max(1);
    for (bucket, series, label, tally) in rows {
        let Some(series) = Series::parse(&series) else { continue };
        let Ok(index) = usize::try_from((bucket - from).num_seconds() / step_seconds) else {
            continue;
        };
        if index >= points {
            continue;
        }
        counts.entry((series, label)).or_insert_with(|| vec![0; points])[index] += tally;
    }
    Ok(Activity {
        from,
        step,
        points,
        counted_until,
        counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_start_on_their_boundary() {
        let at = Utc.with_ymd_and_hms(2026, 12, 7, 10, 7, 59).unwrap();
        assert_eq!(
            bucket_of(at, FINE_SECONDS),
            Utc.with_ymd_and_hms(2026, 12, 7, 10, 5, 0).unwrap()
        );
        assert_eq!(
            bucket_of(at, COARSE_SECONDS),
            Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap()
        );
    }

    #[test]
    fn lateness_falls_in_the_first_bound_that_holds_it() {
        assert_eq!(lateness_label(Duration::from_millis(3)), "0.01");
        assert_eq!(lateness_label(Duration::from_millis(50)), "0.05");
        assert_eq!(lateness_label(Duration::from_millis(51)), "0.1");
        assert_eq!(lateness_label(Duration::from_secs(61)), LATENESS_OVERFLOW);
    }

    #[test]
    fn a_quantile_is_the_bound_of_the_bucket_that_reaches_it() {
        let from = Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap();
        let mut counts = BTreeMap::new();
        counts.insert((Series::CloseLateness, "0.01".to_owned()), vec![98, 0]);
        counts.insert((Series::CloseLateness, "0.25".to_owned()), vec![1, 0]);
        counts.insert((Series::CloseLateness, LATENESS_OVERFLOW.to_owned()), vec![0, 1]);
        let activity = Activity {
            from,
            step: chrono::Duration::hours(1),
            points: 2,
            counted_until: None,
            counts,
        };
        assert_eq!(activity.lateness_quantile(500), Some(0.01));
        assert_eq!(activity.lateness_quantile(990), Some(0.25));
        assert_eq!(activity.lateness_quantile(1000), Some(f64::INFINITY));
        assert_eq!(activity.per_interval(Series::CloseLateness), vec![99, 1]);
        assert_eq!(activity.total(Series::Paid), 0);
    }
}
