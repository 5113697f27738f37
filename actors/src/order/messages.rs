//! Messages of the order actor. Every change to a live order arrives as one of these; the
//! engine sends them with `send().await` under a timeout.

use actix::Message;
use chrono::{DateTime, Utc};
use entities::{payment_attempts, OrderStatus, PayNo, Provider};

use crate::domain::OperatorReason;
use crate::error::OrderError;
use crate::gateway::VerifiedNotification;
use crate::store::Operator;

/// The deadline timer fired (or a retry of the expiry rule is due). Sent by the actor itself.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Expire;

/// A verified provider notification for one of this order's attempts. Replies once the
/// outcome is committed, so the webhook is acknowledged only then.
#[derive(Debug, Message)]
#[rtype(result = "Result<NotifyOutcome, OrderError>")]
pub struct PaymentNotified {
    pub provider: Provider,
    pub notification: VerifiedNotification,
}

/// What a notification did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// The order is now paid.
    Paid,
    /// Money arrived for a closed order: recorded, `paid_after_close`, refund owed.
    PaidAfterClose,
    /// Seen before (same provider event id) or already applied: nothing changed.
    Duplicate,
    /// The paid amount differs from the attempt's: not marked paid, anomaly recorded.
    AmountMismatch,
    /// A second payment for an already-paid order: anomaly recorded.
    Anomaly,
    /// Not a payment (e.g. a closed trade): recorded only.
    Ignored,
    /// Authentic, but for a trade paywarden does not know: stored for an operator (see
    /// [`crate::store::unmatched`]).
    Unmatched,
    /// A refund notification settled the refund: succeeded.
    Refunded,
    /// A refund notification settled the refund: failed (closed, abnormal).
    RefundFailed,
}

/// An operator closes the order now, through the provider.
#[derive(Debug, Message)]
#[rtype(result = "Result<OrderStatus, OrderError>")]
pub struct ForceClose {
    pub operator: Operator,
    pub reason: OperatorReason,
}

/// An operator accepts a payment of another amount (an attempt in `amount_mismatch`) as the
/// order's payment.
#[derive(Debug, Message)]
#[rtype(result = "Result<OrderStatus, OrderError>")]
pub struct AcceptPayment {
    pub operator: Operator,
    pub pay_no: PayNo,
    pub reason: OperatorReason,
}

/// The buyer or merchant cancels the pending order.
#[derive(Debug, Message)]
#[rtype(result = "Result<OrderStatus, OrderError>")]
pub struct Cancel {
    pub operator: Operator,
}

/// Start a new payment attempt through `route` (the deployment's provider or one of the
/// order's merchant's accounts).
#[derive(Debug, Message)]
#[rtype(result = "Result<payment_attempts::Model, OrderError>")]
pub struct StartAttempt {
    pub route: crate::provider::Route,
    pub operator: Operator,
}

/// Query the provider now (the client's "refresh"); compensates if it finds the order paid.
#[derive(Debug, Message)]
#[rtype(result = "Result<OrderStatus, OrderError>")]
pub struct Refresh;

/// The actor's view of its order.
#[derive(Debug, Message)]
#[rtype(result = "Snapshot")]
pub struct GetSnapshot;

#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    pub deadline: DateTime<Utc>,
    pub provider_failures: u32,
    pub userpaying_rechecks: u32,
}

/// The service is stopping: stop without touching the order (it stays pending and indexed,
/// and the next start re-arms it). Handled only after a pass in flight, which is atomic.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;
