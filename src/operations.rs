//! What an operator can do, whichever way they ask: the `/admin` JSON routes
//! ([`crate::routes::admin`]) and the console's forms ([`crate::routes::console`]) call the
//! same functions here, with the operator each records. Each checks its input, changes what it
//! must through the engine or the store, and logs who did it; neither the HTTP shapes nor the
//! pages live here.

use actors::domain::{MerchantId, NewRefund, OperatorReason, ValidationError};
use actors::outbox::subscribers::{self, NewWebhook, SubscriberError};
use actors::stock::{self, SetStockError};
use actors::store::refunds::RefundCreated;
use actors::store::{accounts, merchants, query, unmatched, Operator};
use entities::SignatureScheme;

use crate::error::ApiError;
use crate::state::AppState;

/// The order a path's `{order_no}` names; anything that cannot be an order number is a 404,
/// like an order that does not exist.
///
/// # Errors
/// `404 not_found`.
pub fn order_id(order_no: &str) -> Result<entities::OrderId, ApiError> {
    query::parse_order_no(order_no).ok_or(ApiError::NotFound("order"))
}

/// A webhook subscriber to add: from the JSON route's body or the console's form.
#[derive(Debug)]
pub struct NewSubscriber {
    /// Where deliveries are POSTed.
    pub url: String,
    /// Key of the deliveries' signatures; absent: one is generated.
    pub secret: Option<String>,
    /// `standard-webhooks-v1` or `paywarden-v1`; absent: `standard-webhooks-v1`.
    pub signature_scheme: Option<String>,
    /// Event types it receives; empty: every type.
    pub event_types: Vec<String>,
    /// Whose events it receives; absent: every merchant's.
    pub merchant_id: Option<String>,
    /// Extra headers sent with each delivery.
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Who the JSON routes record: the admin token names no one. (The console records the name
/// its operator signed in with.)
pub fn api_operator() -> Operator {
    Operator::Admin("admin".to_owned())
}

/// Sets a merchant's tracked stock (the JSON route and the console).
pub async fn set_stock(
    state: &AppState,
    merchant_id: &str,
    sku_id: &str,
    available: i64,
    operator: &Operator,
) -> Result<entities::skus::Model, ApiError> {
    let merchant = MerchantId::parse_input(merchant_id)?;
    let sku = stock::set_available(&state.db, &merchant, sku_id, available)
        .await
        .map_err(|err| match err {
            SetStockError::Validation(err) => ApiError::Validation(err),
            SetStockError::Db(err) => ApiError::from(err),
        })?;
    tracing::info!(merchant_id = %sku.merchant_id, sku_id = %sku.sku_id, available = sku.available, %operator, "stock set");
    Ok(sku)
}

/// Onboards a merchant (the JSON route and the console).
pub async fn create_merchant(
    state: &AppState,
    merchant_id: &str,
    name: &str,
    operator: &Operator,
) -> Result<entities::merchants::Model, ApiError> {
    let merchant = merchants::create(&state.db, merchant_id, name).await?;
    tracing::info!(merchant_id = %merchant.merchant_id, %operator, "merchant created");
    Ok(merchant)
}

/// Disables a merchant: its keys are refused on this node at once, on every node within
/// [`crate::auth::KEY_FRESHNESS`]; its live orders still resolve.
pub async fn disable_merchant(
    state: &AppState,
    merchant_id: &str,
    operator: &Operator,
) -> Result<entities::merchants::Model, ApiError> {
    let merchant = MerchantId::parse_input(merchant_id)?;
    let row = merchants::disable(&state.db, &merchant).await?;
    state.credentials.forget();
    tracing::info!(merchant_id = %merchant, %operator, "merchant disabled");
    Ok(row)
}

/// Issues a merchant a new client API key: the row and the key, shown this once.
pub async fn issue_key(
    state: &AppState,
    merchant_id: &str,
    label: &str,
    operator: &Operator,
) -> Result<(entities::merchant_keys::Model, secrecy::SecretString), ApiError> {
    let merchant = MerchantId::parse_input(merchant_id)?;
    let (row, key) = merchants::issue_key(&state.db, &merchant, label).await?;
    tracing::info!(merchant_id = %merchant, key_id = %row.key_id, prefix = %row.prefix, %operator, "key issued");
    Ok((row, key))
}

/// Revokes a merchant's key: refused on this node at once, on every node within
/// [`crate::auth::KEY_FRESHNESS`].
pub async fn revoke_key(
    state: &AppState,
    merchant_id: &str,
    key_id: &str,
    operator: &Operator,
) -> Result<entities::merchant_keys::Model, ApiError> {
    let merchant = MerchantId::parse_input(merchant_id)?;
    let row = merchants::revoke_key(&state.db, &merchant, key_id).await?;
    state.credentials.forget();
    tracing::info!(merchant_id = %merchant, key_id = %row.key_id, %operator, "key revoked");
    Ok(row)
}

fn sealing(state: &AppState) -> accounts::Sealing<'_> {
    accounts::Sealing {
        vault: state.vault.as_deref(),
        policy: state.account_policy,
    }
}

/// Attaches a provider account to a merchant (the JSON route and the console): checked whole,
/// its secrets sealed; nothing stored when anything is refused.
pub async fn add_provider_account(
    state: &AppState,
    merchant_id: &str,
    provider: &str,
    config: serde_json::Value,
    operator: &Operator,
) -> Result<entities::provider_accounts::Model, ApiError> {
    let merchant = MerchantId::parse_input(merchant_id)?;
    let row = accounts::create(&state.db, sealing(state), &merchant, provider, config).await?;
    tracing::info!(merchant_id = %merchant, account_id = %row.account_id, provider = row.provider.as_str(), fingerprint = %row.fingerprint, %operator, "provider account added");
    Ok(row)
}

/// Replaces the fields `patch` names of a merchant's account (a key rotation).
pub async fn update_provider_account(
    state: &AppState,
    merchant_id: &str,
    account_id: &str,
    patch: serde_json::Value,
    operator: &Operator,
) -> Result<entities::provider_accounts::Model, ApiError> {
    let merchant = MerchantId::parse_input(merchant_id)?;
    let row = accounts::patch(&state.db, sealing(state), &merchant, account_id, patch).await?;
    tracing::info!(merchant_id = %merchant, account_id = %row.account_id, fingerprint = %row.fingerprint, %operator, "provider account changed");
    Ok(row)
}

/// Disables a merchant's account.
pub async fn disable_provider_account(
    state: &AppState,
    merchant_id: &str,
    account_id: &str,
    operator: &Operator,
) -> Result<entities::provider_accounts::Model, ApiError> {
    let merchant = MerchantId::parse_input(merchant_id)?;
    let row = accounts::disable(&state.db, &merchant, account_id).await?;
    tracing::info!(merchant_id = %merchant, account_id = %row.account_id, %operator, "provider account disabled");
    Ok(row)
}

/// Proves a merchant's account's keys work by a call the provider answers: a query for a
/// trade number that does not exist, its answer read (and verified) like every query's.
pub async fn verify_provider_account(
    state: &AppState,
    merchant_id: &str,
    account_id: &str,
    operator: &Operator,
) -> Result<actors::gateway::account::Verification, ApiError> {
    let merchant = MerchantId::parse_input(merchant_id)?;
    let row = accounts::get(&state.db, &merchant, account_id).await?;
    let vault = state.vault.as_deref().ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "a provider account is stored but secrets.master_key is not set"
        ))
    })?;
    let config = accounts::open(vault, &row)
        .map_err(|err| ApiError::Internal(anyhow::anyhow!("provider account {account_id} does not open: {err}")))?;
    let context = actors::gateway::section::GatewayContext {
        base_url: state.links.base_url(),
        http: &state.provider_http,
    };
    let gateway = config.gateway(&row.account_id, &context)?;
    // A trade number no attempt has (ids are snowflakes far below this range).
    let noise = i64::try_from(uuid::Uuid::new_v4().as_u64_pair().0 % 1_000_000_000).unwrap_or_default();
    let probe = entities::PayNo::try_from(i64::MAX - noise)
        .map_err(|err| ApiError::Internal(anyhow::anyhow!("probe trade number: {err}")))?;
    let found = actors::gateway::account::verify(gateway.as_ref(), probe).await;
    tracing::info!(merchant_id = %merchant, account_id = %row.account_id, ok = found.ok, outcome = found.outcome, %operator, "provider account verified");
    Ok(found)
}

/// `POST /admin/deadlines/reconcile`: rebuild the deadline index from the database and re-arm
/// every live order.
/// Force-closes an order through its actor (the JSON route and the console).
pub async fn force_close_order(
    state: &AppState,
    order_no: &str,
    reason: &str,
    operator: Operator,
) -> Result<(), ApiError> {
    // Checked before anything happens: the provider closes the trade first, so a reason that
    // did not fit the column would fail after that side effect.
    let reason = OperatorReason::parse(reason).map_err(ApiError::Validation)?;
    let order_id = order_id(order_no)?;
    state.engine.force_close(order_id, operator, reason).await?;
    Ok(())
}

/// Rebuilds the deadline index (the JSON route and the console).
pub async fn reconcile_deadlines(state: &AppState) -> Result<actors::deadline::ReconcileReport, ApiError> {
    state
        .engine
        .reconcile()
        .await
        .map_err(|err| ApiError::Internal(anyhow::Error::new(err).context("reconcile failed")))
}

/// Adds a webhook subscriber (the JSON route and the console).
pub async fn add_webhook(
    state: &AppState,
    body: NewSubscriber,
    operator: &Operator,
) -> Result<entities::subscribers::Model, ApiError> {
    let merchant_id = body.merchant_id.as_deref().map(MerchantId::parse_input).transpose()?;
    let signature_scheme = signature_scheme(body.signature_scheme.as_deref())?;
    let model = subscribers::add_webhook(
        &state.db,
        NewWebhook {
            url: body.url,
            secret: body.secret,
            signature_scheme,
            event_types: body.event_types,
            merchant_id,
            headers: body.headers,
        },
        state.allow_private_targets,
    )
    .await
    .map_err(subscriber_error)?;
    tracing::info!(subscriber_id = %model.id, url = %model.url, merchant_id = ?model.merchant_id, %operator, "subscriber added");
    Ok(model)
}

/// The scheme a new subscriber asks for; absent: Standard Webhooks.
///
/// # Errors
/// `422 invalid_signature_scheme`.
fn signature_scheme(asked: Option<&str>) -> Result<SignatureScheme, ApiError> {
    match asked {
        None => Ok(SignatureScheme::StandardWebhooksV1),
        Some(name) => name.parse().map_err(|_: String| {
            ApiError::Validation(actors::domain::ValidationError::new(
                "invalid_signature_scheme",
                "signature_scheme must be standard-webhooks-v1 or paywarden-v1",
            ))
        }),
    }
}

/// Gives a webhook subscriber a new secret, the current one signing beside it for the
/// overlap (the JSON route and the console).
///
/// # Errors
/// `422 invalid_overlap`, `404`, `409 subscriber_configured` or `409 too_many_live_secrets`.
pub async fn rotate_secret(
    state: &AppState,
    id: &str,
    overlap_seconds: Option<u64>,
    operator: &Operator,
) -> Result<subscribers::Rotated, ApiError> {
    let overlap = state.overlap_bounds.check(overlap_seconds)?;
    let rotated = subscribers::rotate_secret(&state.db, id, overlap, |_| true)
        .await
        .map_err(subscriber_error)?;
    tracing::info!(subscriber_id = %id, previous_expires_at = %rotated.previous_expires_at, %operator, "subscriber secret rotated");
    Ok(rotated)
}

/// Changes a subscriber's event types, pause or custom headers (the JSON route and the
/// console); resuming wakes the relay so the held deliveries go out now.
///
/// # Errors
/// `422` (`unknown_event_type`, `invalid_headers`) or `404`.
pub async fn update_webhook(
    state: &AppState,
    id: &str,
    change: subscribers::SubscriberUpdate,
    operator: &Operator,
) -> Result<entities::subscribers::Model, ApiError> {
    let resumed = change.paused == Some(false) || change.enabled == Some(true);
    let model = subscribers::update(&state.db, id, change, |_| true)
        .await
        .map_err(subscriber_error)?;
    tracing::info!(subscriber_id = %id, paused = model.paused, event_types = %model.event_types, %operator, "subscriber updated");
    if resumed {
        state.engine.wake_relay();
    }
    Ok(model)
}

/// A subscriber's delivery log (the JSON route and the console).
///
/// # Errors
/// `404`.
pub async fn subscriber_deliveries(
    state: &AppState,
    id: &str,
    filter: subscribers::DeliveryFilter,
) -> Result<Vec<subscribers::DeliveryLog>, ApiError> {
    subscribers::subscriber_deliveries(&state.db, id, filter, |_| true)
        .await
        .map_err(subscriber_error)
}

/// Queues a range of a subscriber's events again (the JSON route and the console).
///
/// # Errors
/// `422` (`invalid_range`, `unknown_event_type`) or `404`.
pub async fn replay(
    state: &AppState,
    id: &str,
    range: subscribers::ReplayRange,
    operator: &Operator,
) -> Result<u64, ApiError> {
    let count = subscribers::replay(&state.db, id, range, state.replay_max_events, |_| true)
        .await
        .map_err(subscriber_error)?;
    tracing::info!(subscriber_id = %id, count, %operator, "events queued again");
    state.engine.wake_relay();
    Ok(count)
}

/// Removes a subscriber (the JSON route and the console).
pub async fn remove_webhook(state: &AppState, id: &str, operator: &Operator) -> Result<(), ApiError> {
    subscribers::remove(&state.db, id).await.map_err(subscriber_error)?;
    tracing::info!(subscriber_id = %id, %operator, "subscriber removed");
    Ok(())
}

/// Queues a delivery again and wakes the relay (the JSON route and the console).
pub async fn redeliver_one(state: &AppState, id: i64, operator: &Operator) -> Result<(), ApiError> {
    subscribers::redeliver(&state.db, id).await.map_err(subscriber_error)?;
    tracing::info!(delivery_id = id, %operator, "delivery queued again");
    state.engine.wake_relay();
    Ok(())
}

/// Marks an unmatched notification resolved (the JSON route and the console).
pub async fn resolve_notification(
    state: &AppState,
    id: i64,
    reason: &str,
    operator: &Operator,
) -> Result<entities::unmatched_notifications::Model, ApiError> {
    let reason = OperatorReason::parse(reason).map_err(ApiError::Validation)?;
    let row = unmatched::resolve(&state.db, id, operator, &reason)
        .await
        .map_err(|err| match err {
            unmatched::ResolveError::NotFound => ApiError::NotFound("unmatched notification"),
            unmatched::ResolveError::AlreadyResolved => ApiError::BadRequest {
                status: actix_web::http::StatusCode::CONFLICT,
                code: "already_resolved",
                message: "this notification is already resolved".to_owned(),
            },
            unmatched::ResolveError::Db(err) => ApiError::from(err),
        })?;
    tracing::info!(id = row.id, %operator, "unmatched notification resolved");
    Ok(row)
}

/// Settles an order with a payment of another amount (the JSON route and the console).
pub async fn accept_mismatched_payment(
    state: &AppState,
    order_no: &str,
    pay_no: &str,
    reason: &str,
    operator: Operator,
) -> Result<(), ApiError> {
    let reason = OperatorReason::parse(reason).map_err(ApiError::Validation)?;
    let pay_no = pay_no
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|n| entities::PayNo::new(n).ok())
        .ok_or_else(|| {
            ApiError::Validation(actors::domain::ValidationError::new(
                "invalid_field",
                "pay_no must be a payment number of this order",
            ))
        })?;
    let order_id = order_id(order_no)?;
    state.engine.accept_payment(order_id, operator, pay_no, reason).await?;
    Ok(())
}

pub fn subscriber_error(err: SubscriberError) -> ApiError {
    match err {
        SubscriberError::Validation(err) => ApiError::Validation(err),
        SubscriberError::NotFound => ApiError::NotFound("subscriber or delivery"),
        SubscriberError::Configured => ApiError::BadRequest {
            status: actix_web::http::StatusCode::CONFLICT,
            code: "subscriber_configured",
            message: err.to_string(),
        },
        SubscriberError::TooManySecrets => ApiError::BadRequest {
            status: actix_web::http::StatusCode::CONFLICT,
            code: "too_many_live_secrets",
            message: err.to_string(),
        },
        SubscriberError::Db(err) => ApiError::from(err),
    }
}

/// Signs out every console session on every node (the console's button and the JSON route).
///
/// # Errors
/// The database failed.
pub async fn sign_out_everyone(state: &AppState, operator: &Operator) -> Result<u64, ApiError> {
    let revoked = crate::routes::console::session::revoke_all(&state.db).await?;
    tracing::warn!(revoked, %operator, "every console session signed out");
    Ok(revoked)
}

/// An operator's refund of an order's payment (`pay_no`: another payment of the order that
/// took money; absent: the order's payment), with the merchant's refund rules.
///
/// # Errors
/// The refund refused (see [`actors::error::RefundError`]), a bad `pay_no` or field, a missing
/// order.
pub async fn refund_order(
    state: &AppState,
    order_no: &str,
    out_refund_id: &str,
    amount: i64,
    reason: &str,
    pay_no: Option<&str>,
    operator: Operator,
) -> Result<RefundCreated, ApiError> {
    let pay_no = match pay_no.map(str::trim).filter(|no| !no.is_empty()) {
        None => None,
        Some(no) => Some(no.parse::<entities::PayNo>().map_err(|_| {
            ApiError::Validation(ValidationError::new(
                "not_a_payment",
                "pay_no must be a payment number of this order",
            ))
        })?),
    };
    let request = NewRefund::parse(out_refund_id, amount, reason, pay_no)?;
    let created = state
        .engine
        .create_refund(order_id(order_no)?, None, &request, &operator)
        .await?;
    tracing::info!(%operator, order_no, amount, "refund requested by an operator");
    Ok(created)
}

/// Days back a provider keeps its bills (WeChat: three months).
pub const BILL_DAYS_KEPT: i64 = 90;

/// Whose bill a reconciliation compares: the deployment's configured `provider`, or a
/// merchant's account (`account_id`, any merchant's; its provider comes from the account, and
/// a `provider` given beside it must be that one).
///
/// # Errors
/// Neither given, an unknown account, or an account of another provider: `invalid_field`.
pub async fn reconciliation_target(
    state: &AppState,
    provider: Option<entities::Provider>,
    account_id: Option<&str>,
) -> Result<actors::provider::Route, ApiError> {
    use sea_orm::EntityTrait;
    let invalid = |message: String| ApiError::Validation(ValidationError::new("invalid_field", message));
    match (provider, account_id.map(str::trim).filter(|id| !id.is_empty())) {
        (Some(provider), None) => Ok(actors::provider::Route::configured(provider)),
        (None, None) => Err(invalid(
            "give provider (the deployment's own) or account_id (a merchant's)".to_owned(),
        )),
        (wanted, Some(account_id)) => {
            let account = entities::provider_accounts::Entity::find_by_id(account_id)
                .one(&state.db)
                .await?
                .ok_or_else(|| invalid(format!("account_id: no provider account {account_id}")))?;
            if wanted.is_some_and(|provider| provider != account.provider) {
                return Err(invalid(format!(
                    "account_id: {account_id} is a {} account",
                    account.provider.as_str()
                )));
            }
            Ok(actors::provider::Route::account(account.provider, &account.account_id))
        }
    }
}

/// Reconciles the bill of `date` (`YYYY-MM-DD`, China time) of `target` (the deployment's
/// provider or a merchant's account) now, or again: the run once it is done (completed,
/// waiting for its bill, or failed).
///
/// # Errors
/// A date that is not one of the last [`BILL_DAYS_KEPT`] days, a provider not enabled here.
pub async fn reconcile_day(
    state: &AppState,
    target: &actors::provider::Route,
    date: &str,
    operator: &Operator,
) -> Result<entities::reconciliation_runs::Model, ApiError> {
    let provider = target.provider;
    use actors::reconcile;

    let date = chrono::NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
        .ok()
        .filter(|date| {
            let today = reconcile::china_today(chrono::Utc::now());
            *date <= today && today - *date <= chrono::Duration::days(BILL_DAYS_KEPT)
        })
        .ok_or_else(|| {
            ApiError::Validation(ValidationError::new(
                "invalid_field",
                format!(
                    "date must be one of the last {BILL_DAYS_KEPT} days up to today (China time), written YYYY-MM-DD"
                ),
            ))
        })?;
    if target.account.is_none() && !state.engine.has_provider(provider) {
        return Err(actors::OrderError::ProviderUnavailable(provider).into());
    }
    let run = reconcile::run_now(&state.engine, target, date, operator, &state.reconciliation).await?;
    tracing::info!(%operator, route = %target, %date, status = %run.status, "reconciliation run by an operator");
    Ok(run)
}

/// Marks a reconciliation difference resolved, with what was done about it.
///
/// # Errors
/// `404` for an unknown item, `409 already_resolved`, `422` for an empty or bad note.
pub async fn resolve_difference(
    state: &AppState,
    id: i64,
    note: &str,
    operator: &Operator,
) -> Result<entities::reconciliation_items::Model, ApiError> {
    use actors::reconcile::{self, ResolveError};

    let note = OperatorReason::parse_field("note", note)?;
    let item = reconcile::resolve_item(&state.db, id, operator, note.as_str())
        .await
        .map_err(|err| match err {
            ResolveError::NotFound => ApiError::NotFound("reconciliation item"),
            ResolveError::AlreadyResolved => ApiError::BadRequest {
                status: actix_web::http::StatusCode::CONFLICT,
                code: "already_resolved",
                message: "this item is already resolved".to_owned(),
            },
            ResolveError::Db(err) => ApiError::from(err),
        })?;
    tracing::info!(%operator, item = id, "reconciliation difference resolved");
    Ok(item)
}

/// The merchant's own webhook endpoint `id` (a subscriber scoped to it); anything else, another
/// merchant's included, is not found.
///
/// # Errors
/// `404`, or the database error.
pub async fn merchant_endpoint(
    state: &AppState,
    merchant: &MerchantId,
    id: &str,
) -> Result<entities::subscribers::Model, ApiError> {
    use sea_orm::EntityTrait;

    entities::subscribers::Entity::find_by_id(id.to_owned())
        .one(&state.db)
        .await?
        .filter(|model| owned_by(model, merchant))
        .ok_or(ApiError::NotFound("webhook endpoint"))
}

fn owned_by(model: &entities::subscribers::Model, merchant: &MerchantId) -> bool {
    model.kind == entities::SubscriberKind::Webhook && model.merchant_id.as_deref() == Some(merchant.as_str())
}

/// A merchant's webhook endpoints, oldest first.
///
/// # Errors
/// The database error.
pub async fn merchant_endpoints(
    state: &AppState,
    merchant: &MerchantId,
) -> Result<Vec<entities::subscribers::Model>, ApiError> {
    Ok(subscribers::list(&state.db)
        .await?
        .into_iter()
        .filter(|model| owned_by(model, merchant))
        .collect())
}

/// Removes one of the merchant's webhook endpoints.
///
/// # Errors
/// `404` (not the merchant's), or the database error.
pub async fn remove_merchant_endpoint(state: &AppState, merchant: &MerchantId, id: &str) -> Result<(), ApiError> {
    merchant_endpoint(state, merchant, id).await?;
    remove_webhook(state, id, &Operator::Merchant(merchant.clone())).await
}

/// Rotates the secret of one of the merchant's webhook endpoints.
///
/// # Errors
/// As [`rotate_secret`]; another merchant's endpoint is not found.
pub async fn rotate_merchant_endpoint_secret(
    state: &AppState,
    merchant: &MerchantId,
    id: &str,
    overlap_seconds: Option<u64>,
) -> Result<subscribers::Rotated, ApiError> {
    let overlap = state.overlap_bounds.check(overlap_seconds)?;
    let rotated = subscribers::rotate_secret(&state.db, id, overlap, |model| owned_by(model, merchant))
        .await
        .map_err(subscriber_error)?;
    tracing::info!(subscriber_id = %id, merchant_id = %merchant.as_str(), "webhook endpoint secret rotated by its merchant");
    Ok(rotated)
}

/// Sends a signed `ping` to one of the merchant's webhook endpoints now and answers what the
/// receiver did.
///
/// # Errors
/// `404` (not the merchant's), or the database error.
pub async fn ping_merchant_endpoint(
    state: &AppState,
    merchant: &MerchantId,
    id: &str,
) -> Result<actors::outbox::relay::PingAnswer, ApiError> {
    let endpoint = merchant_endpoint(state, merchant, id).await?;
    ping(state, &endpoint).await
}

/// Sends a signed `ping` to any webhook subscriber now (an operator's test).
///
/// # Errors
/// `404` (no such webhook subscriber), or the database error.
pub async fn ping_subscriber(
    state: &AppState,
    id: &str,
    operator: &Operator,
) -> Result<actors::outbox::relay::PingAnswer, ApiError> {
    use sea_orm::EntityTrait;

    let subscriber = entities::subscribers::Entity::find_by_id(id.to_owned())
        .one(&state.db)
        .await?
        .filter(|model| model.kind == entities::SubscriberKind::Webhook)
        .ok_or(ApiError::NotFound("webhook subscriber"))?;
    tracing::info!(subscriber_id = %id, %operator, "test ping sent");
    ping(state, &subscriber).await
}

async fn ping(
    state: &AppState,
    subscriber: &entities::subscribers::Model,
) -> Result<actors::outbox::relay::PingAnswer, ApiError> {
    let previous = subscribers::previous_secrets(&state.db, chrono::Utc::now())
        .await?
        .remove(&subscriber.id)
        .unwrap_or_default();
    let sender = &state.webhook_sender;
    Ok(actors::outbox::relay::ping(&sender.http, &sender.settings, subscriber, &previous).await)
}
