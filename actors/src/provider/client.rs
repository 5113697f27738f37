//! The providers client: how order code reaches the payment providers.
//!
//! Order code depends on the [`ProviderClient`] trait, never on the provider actors, so a test
//! can hand an order actor a fake provider. [`Providers`] is the real implementation: it holds
//! each supervised [`ProviderActor`](super::ProviderActor)'s mailboxes as `Recipient`s and puts a
//! timeout on every reply.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use actix::{MailboxError, Recipient};

use crate::trace::Traced;
use async_trait::async_trait;
use entities::{PayNo, Provider};

use super::accounts::AccountProviders;
use super::route::Route;
use super::{
    Admission, BudgetShare, CallLimits, CloseTrade, CreateQr, FetchBill, QueryRefund, QueryTrade, RefundTrade,
};
use crate::gateway::bill::BillFetch;
use crate::gateway::{CloseOutcome, GatewayError, QrCreated, QrRequest, RefundAnswer, RefundRequest, TradeQuery};

/// The provider calls an order needs, each through the account a [`Route`] names (the
/// deployment's configured provider, or a merchant's account). Every error is a
/// [`GatewayError`]; the caller decides whether it is worth a retry.
#[async_trait]
pub trait ProviderClient: Send + Sync {
    /// Whether the deployment's own `provider` (`[providers.<name>]`) is configured on this node.
    fn has(&self, provider: Provider) -> bool;

    /// Asks the provider for a trade's state.
    async fn query(&self, route: &Route, pay_no: PayNo) -> Result<TradeQuery, GatewayError>;

    /// Closes a trade at the provider so it can no longer be paid.
    async fn close(&self, route: &Route, pay_no: PayNo) -> Result<CloseOutcome, GatewayError>;

    /// Admits one payment attempt within the account's call budget now, before anything is
    /// written, or refuses it at once ([`GatewayError::Busy`]).
    ///
    /// # Errors
    /// [`GatewayError::Busy`] (budget spent), [`GatewayError::NotConfigured`].
    async fn admit(&self, route: &Route) -> Result<Admission, GatewayError>;

    /// Creates a QR-code trade, within the budget `admission` holds.
    async fn create_qr(
        &self,
        route: &Route,
        request: QrRequest,
        admission: Admission,
    ) -> Result<QrCreated, GatewayError>;

    /// Refunds (part of) a paid trade.
    async fn refund(&self, route: &Route, request: RefundRequest) -> Result<RefundAnswer, GatewayError>;

    /// Asks how a refund went.
    async fn query_refund(&self, route: &Route, request: RefundRequest) -> Result<RefundAnswer, GatewayError>;

    /// Fetches the account's trade bill of `date` (China time).
    async fn bill(&self, route: &Route, date: chrono::NaiveDate) -> Result<BillFetch, GatewayError>;

    /// Takes this node's share of every provider's call budget (a cluster node, whenever the
    /// live nodes change). A client without a budget of its own has nothing to do.
    fn share_budget(&self, _share: BudgetShare) {}
}

/// One provider actor's mailboxes.
#[derive(Clone)]
pub struct ProviderMailboxes {
    pub query: Recipient<Traced<QueryTrade>>,
    pub close: Recipient<Traced<CloseTrade>>,
    pub create_qr: Recipient<Traced<CreateQr>>,
    pub refund: Recipient<Traced<RefundTrade>>,
    pub query_refund: Recipient<Traced<QueryRefund>>,
    pub bill: Recipient<Traced<FetchBill>>,
    /// The provider's call budget, shared with its actor.
    pub limits: Arc<CallLimits>,
}

impl ProviderMailboxes {
    /// The mailboxes of one actor that handles every provider message, and its call budget.
    pub fn of<A>(addr: &actix::Addr<A>, limits: Arc<CallLimits>) -> Self
    where
        A: actix::Actor<Context = actix::Context<A>>
            + actix::Handler<Traced<QueryTrade>>
            + actix::Handler<Traced<CloseTrade>>
            + actix::Handler<Traced<CreateQr>>
            + actix::Handler<Traced<RefundTrade>>
            + actix::Handler<Traced<QueryRefund>>
            + actix::Handler<Traced<FetchBill>>,
    {
        Self {
            query: addr.clone().recipient(),
            close: addr.clone().recipient(),
            create_qr: addr.clone().recipient(),
            refund: addr.clone().recipient(),
            query_refund: addr.clone().recipient(),
            bill: addr.clone().recipient(),
            limits,
        }
    }
}

/// The provider actors of this node: the deployment's configured providers, and the
/// merchants' accounts (built on first use).
pub struct Providers {
    /// Shared, so a call takes a reference count rather than copies of six mailboxes.
    mailboxes: HashMap<Provider, Arc<ProviderMailboxes>>,
    accounts: Option<Arc<AccountProviders>>,
    /// Limit on one reply, the actor's own retries included.
    reply_timeout: Duration,
}

impl Providers {
    pub fn new(mailboxes: HashMap<Provider, ProviderMailboxes>, reply_timeout: Duration) -> Self {
        Self {
            mailboxes: mailboxes
                .into_iter()
                .map(|(provider, mailboxes)| (provider, Arc::new(mailboxes)))
                .collect(),
            accounts: None,
            reply_timeout,
        }
    }

    /// These providers, and the merchants' accounts of `accounts`.
    #[must_use]
    pub fn with_accounts(mut self, accounts: Arc<AccountProviders>) -> Self {
        self.accounts = Some(accounts);
        self
    }

    /// When a caller sending now with a reply limit of `limit` gives up.
    fn caller_deadline(&self, limit: Duration) -> Option<Instant> {
        Instant::now().checked_add(limit)
    }

    async fn mailboxes(&self, route: &Route) -> Result<Arc<ProviderMailboxes>, GatewayError> {
        match (&route.account, &self.accounts) {
            (None, _) => self
                .mailboxes
                .get(&route.provider)
                .cloned()
                .ok_or(GatewayError::NotConfigured(route.provider)),
            (Some(account), Some(accounts)) => accounts.mailboxes(route.provider, account).await,
            (Some(_), None) => Err(GatewayError::NotConfigured(route.provider)),
        }
    }
}

#[async_trait]
impl ProviderClient for Providers {
    fn has(&self, provider: Provider) -> bool {
        self.mailboxes.contains_key(&provider)
    }

    async fn query(&self, route: &Route, pay_no: PayNo) -> Result<TradeQuery, GatewayError> {
        let mailbox = self.mailboxes(route).await?.query.clone();
        flatten(
            mailbox
                .send(Traced::new(QueryTrade(
                    pay_no,
                    self.caller_deadline(self.reply_timeout),
                )))
                .timeout(self.reply_timeout)
                .await,
        )
    }

    async fn close(&self, route: &Route, pay_no: PayNo) -> Result<CloseOutcome, GatewayError> {
        let mailbox = self.mailboxes(route).await?.close.clone();
        flatten(
            mailbox
                .send(Traced::new(CloseTrade(
                    pay_no,
                    self.caller_deadline(self.reply_timeout),
                )))
                .timeout(self.reply_timeout)
                .await,
        )
    }

    async fn admit(&self, route: &Route) -> Result<Admission, GatewayError> {
        self.mailboxes(route).await?.limits.admit()
    }

    async fn create_qr(
        &self,
        route: &Route,
        request: QrRequest,
        admission: Admission,
    ) -> Result<QrCreated, GatewayError> {
        let mailbox = self.mailboxes(route).await?.create_qr.clone();
        flatten(
            mailbox
                .send(Traced::new(CreateQr(
                    request,
                    admission,
                    self.caller_deadline(self.reply_timeout),
                )))
                .timeout(self.reply_timeout)
                .await,
        )
    }

    async fn refund(&self, route: &Route, request: RefundRequest) -> Result<RefundAnswer, GatewayError> {
        let mailbox = self.mailboxes(route).await?.refund.clone();
        flatten(
            mailbox
                .send(Traced::new(RefundTrade(
                    request,
                    self.caller_deadline(self.reply_timeout),
                )))
                .timeout(self.reply_timeout)
                .await,
        )
    }

    async fn query_refund(&self, route: &Route, request: RefundRequest) -> Result<RefundAnswer, GatewayError> {
        let mailbox = self.mailboxes(route).await?.query_refund.clone();
        flatten(
            mailbox
                .send(Traced::new(QueryRefund(
                    request,
                    self.caller_deadline(self.reply_timeout),
                )))
                .timeout(self.reply_timeout)
                .await,
        )
    }

    fn share_budget(&self, share: BudgetShare) {
        for mailboxes in self.mailboxes.values() {
            mailboxes.limits.set_share(share);
        }
        if let Some(accounts) = &self.accounts {
            accounts.share_budget(share);
        }
    }

    async fn bill(&self, route: &Route, date: chrono::NaiveDate) -> Result<BillFetch, GatewayError> {
        let mailbox = self.mailboxes(route).await?.bill.clone();
        let limit = self.reply_timeout.max(super::BILL_TIMEOUT + Duration::from_secs(10));
        flatten(
            mailbox
                .send(Traced::new(FetchBill(date, self.caller_deadline(limit))))
                .timeout(limit)
                .await,
        )
    }
}

/// A provider actor that is restarting or too slow counts as a retryable provider failure.
fn flatten<T>(reply: Result<Result<T, GatewayError>, MailboxError>) -> Result<T, GatewayError> {
    match reply {
        Ok(result) => result,
        Err(MailboxError::Timeout) => Err(GatewayError::Timeout),
        Err(MailboxError::Closed) => Err(GatewayError::Crashed),
    }
}
