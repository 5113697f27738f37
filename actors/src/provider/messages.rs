//! Messages of the provider actor. Order actors send them with `send().await` under a timeout
//! and treat a `MailboxError` (the actor restarting) like any retryable provider failure.
//!
//! Each message carries the instant its caller stops waiting (`None`: it waits for the answer
//! however long). A call can wait a while for its turn in the call budget; once its caller has
//! given up it is not sent at all: nobody would hear the answer, and by then the order may be
//! another node's.

use tokio::time::Instant;

use actix::Message;
use entities::PayNo;

use crate::gateway::{CloseOutcome, GatewayError, QrCreated, QrRequest, RefundAnswer, RefundRequest, TradeQuery};

/// Create a QR-code trade, within the budget the client admitted it to. Replies with the
/// `code_url`, or the provider's refusal.
#[derive(Debug, Message)]
#[rtype(result = "Result<QrCreated, GatewayError>")]
pub struct CreateQr(pub QrRequest, pub super::Admission, pub Option<Instant>);

/// Ask the provider for a trade's state (the seeds' active query).
#[derive(Debug, Message)]
#[rtype(result = "Result<TradeQuery, GatewayError>")]
pub struct QueryTrade(pub PayNo, pub Option<Instant>);

/// Close a trade at the provider so it can no longer be paid.
#[derive(Debug, Message)]
#[rtype(result = "Result<CloseOutcome, GatewayError>")]
pub struct CloseTrade(pub PayNo, pub Option<Instant>);

/// Refund (part of) a paid trade; sent again with the same refund number after an uncertain
/// outcome.
#[derive(Debug, Message)]
#[rtype(result = "Result<RefundAnswer, GatewayError>")]
pub struct RefundTrade(pub RefundRequest, pub Option<Instant>);

/// Ask how a refund went.
#[derive(Debug, Message)]
#[rtype(result = "Result<RefundAnswer, GatewayError>")]
pub struct QueryRefund(pub RefundRequest, pub Option<Instant>);

/// Fetch the provider's trade bill of one day.
#[derive(Debug, Message)]
#[rtype(result = "Result<crate::gateway::bill::BillFetch, GatewayError>")]
pub struct FetchBill(pub chrono::NaiveDate, pub Option<Instant>);
