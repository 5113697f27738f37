//! Admin routes: order inspection, tracked stock (per merchant), subscribers and deliveries.
//! Behind the admin token.

use actix_web::{web, HttpResponse};
use actors::domain::MerchantId;
use actors::outbox::subscribers;
use actors::stock;
use actors::store::{query, unmatched};
use entities::{DeliveryStatus, OrderStatus, SubscriberKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::dto::{schema, OrderResponse, OrderSummary};
use crate::error::ApiError;
use crate::operations::{
    accept_mismatched_payment, add_webhook, api_operator, force_close_order, reconcile_deadlines, redeliver_one,
    remove_webhook, resolve_notification, set_stock, NewSubscriber,
};
use crate::state::AppState;

/// Most rows one list answers.
const LIST_LIMIT_MAX: u64 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only orders in this status; absent: every status.
    #[param(value_type = Option<schema::OrderStatus>)]
    status: Option<String>,
    /// At most this many rows (default 100, at most 1000).
    #[param(minimum = 1)]
    limit: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderList {
    orders: Vec<OrderSummary>,
}

/// `GET /admin/orders?status=pending|stuck|...&limit=`: soonest deadline first.
#[utoipa::path(
    get,
    path = "/admin/orders",
    tag = "admin",
    operation_id = "admin_list_orders",
    summary = "List orders, soonest deadline first",
    params(ListQuery),
    responses((status = 200, description = "The orders", body = OrderList)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["invalid_query", "unauthorized", "internal_error"]))),
)]
pub async fn list_orders(state: web::Data<AppState>, params: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let status = params
        .status
        .as_deref()
        .map(str::parse::<OrderStatus>)
        .transpose()
        .map_err(|message| ApiError::bad_request("invalid_query", message))?;
    let limit = params.limit.unwrap_or(100).clamp(1, LIST_LIMIT_MAX);
    let orders = query::list_orders(&state.db, status, limit).await?;
    let orders = orders.into_iter().map(OrderSummary::from).collect();
    Ok(HttpResponse::Ok().json(OrderList { orders }))
}

/// `GET /admin/orders/{order_no}`: any merchant's order with its whole log.
#[utoipa::path(
    get,
    path = "/admin/orders/{order_no}",
    tag = "admin",
    operation_id = "admin_get_order",
    summary = "Read any merchant's order with its log",
    params(("order_no" = String, Path, description = "The order's number")),
    responses((status = 200, description = "The order with items, payments and logs", body = OrderResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["unauthorized", "not_found", "internal_error"]))),
)]
pub async fn get_order(state: web::Data<AppState>, order_no: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let detail = query::find_order_with_logs(&state.db, &order_no)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    Ok(HttpResponse::Ok().json(OrderResponse::from_detail(detail, &state.links, true)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStockBody {
    /// Units the merchant can sell; not negative.
    #[schema(minimum = 0)]
    available: i64,
}

/// A merchant's tracked stock of one SKU.
#[derive(Debug, Serialize, ToSchema)]
pub struct StockResponse {
    merchant_id: String,
    sku_id: String,
    available: i64,
}

impl From<entities::skus::Model> for StockResponse {
    fn from(sku: entities::skus::Model) -> Self {
        Self {
            merchant_id: sku.merchant_id,
            sku_id: sku.sku_id,
            available: sku.available,
        }
    }
}

/// `PUT /admin/merchants/{merchant_id}/skus/{sku_id}`: set a merchant's tracked stock. Only
/// that merchant's orders reserve from it.
#[utoipa::path(
    put,
    path = "/admin/merchants/{merchant_id}/skus/{sku_id}",
    tag = "admin",
    operation_id = "admin_put_sku",
    summary = "Set a merchant's tracked stock of a SKU",
    description = "Only that merchant's orders reserve from it; a SKU no row tracks is not reserved at all.",
    params(("merchant_id" = String, Path, description = "The merchant"), ("sku_id" = String, Path, description = "The merchant's SKU (1 to 64 characters)")),
    request_body = SetStockBody,
    responses((status = 200, description = "The stock as stored", body = StockResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!([
        "invalid_json", "unauthorized", "payload_too_large", "unsupported_media_type", "invalid_field",
        "invalid_quantity", "invalid_merchant_id", "internal_error"
    ]))),
)]
pub async fn put_sku(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<SetStockBody>,
) -> Result<HttpResponse, ApiError> {
    let (merchant_id, sku_id) = path.into_inner();
    let operator = api_operator();
    let sku = set_stock(&state, &merchant_id, &sku_id, body.available, &operator).await?;
    Ok(HttpResponse::Ok().json(StockResponse::from(sku)))
}

/// `GET /admin/merchants/{merchant_id}/skus/{sku_id}`: 404 when the merchant does not track it.
#[utoipa::path(
    get,
    path = "/admin/merchants/{merchant_id}/skus/{sku_id}",
    tag = "admin",
    operation_id = "admin_get_sku",
    summary = "Read a merchant's tracked stock of a SKU",
    params(("merchant_id" = String, Path, description = "The merchant"), ("sku_id" = String, Path, description = "The merchant's SKU (1 to 64 characters)")),
    responses((status = 200, description = "The stock", body = StockResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["unauthorized", "not_found", "invalid_merchant_id", "internal_error"]))),
)]
pub async fn get_sku(state: web::Data<AppState>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (merchant_id, sku_id) = path.into_inner();
    let merchant = MerchantId::parse_input(&merchant_id)?;
    let sku = stock::get(&state.db, &merchant, &sku_id)
        .await?
        .ok_or(ApiError::NotFound("sku"))?;
    Ok(HttpResponse::Ok().json(StockResponse::from(sku)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForceCloseBody {
    /// Recorded in the order's log and stored as `force-closed: <reason>`.
    #[schema(min_length = 1, max_length = 242)]
    reason: String,
}

/// `POST /admin/orders/{order_no}/force-close`: close now, through the order's actor (the
/// provider trade is closed first; an unreachable provider leaves the order open).
#[utoipa::path(
    post,
    path = "/admin/orders/{order_no}/force-close",
    tag = "admin",
    operation_id = "admin_force_close",
    summary = "Close an order now",
    description = "Through the order's actor: the provider trade is closed first, so an unreachable provider leaves the order open.",
    params(("order_no" = String, Path, description = "The order's number")),
    request_body = ForceCloseBody,
    responses((status = 200, description = "The order with its log", body = OrderResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!([
        "invalid_json", "unauthorized", "not_found", "order_not_pending", "concurrent_update",
        "close_not_possible_yet", "payload_too_large", "unsupported_media_type", "invalid_field", "internal_error",
        "provider_error", "service_unavailable", "provider_unreachable"
    ]))),
)]
pub async fn force_close(
    state: web::Data<AppState>,
    order_no: web::Path<String>,
    body: web::Json<ForceCloseBody>,
) -> Result<HttpResponse, ApiError> {
    let operator = api_operator();
    force_close_order(&state, &order_no, &body.into_inner().reason, operator).await?;
    let order = query::find_order_with_logs(&state.db, &order_no)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    Ok(HttpResponse::Ok().json(OrderResponse::from_detail(order, &state.links, true)))
}

/// `POST /admin/console-sessions/revoke-all`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedSessions {
    /// Console sessions that were still open and are now signed out.
    pub revoked: u64,
}

/// Signs out every operator console session (their cookies are refused from now on, on every
/// node): after a cookie was exposed, or an operator left.
#[utoipa::path(
    post,
    path = "/admin/console-sessions/revoke-all",
    tag = "admin",
    operation_id = "admin_revoke_console_sessions",
    summary = "Sign out every operator console session",
    responses((status = 200, description = "How many sessions were signed out", body = RevokedSessions)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["unauthorized", "internal_error"]))),
)]
pub async fn revoke_console_sessions(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let revoked = crate::operations::sign_out_everyone(&state, &api_operator()).await?;
    Ok(HttpResponse::Ok().json(RevokedSessions { revoked }))
}

#[utoipa::path(
    post,
    path = "/admin/deadlines/reconcile",
    tag = "admin",
    operation_id = "admin_reconcile_deadlines",
    summary = "Rebuild the deadline index and re-arm every live order",
    responses((status = 200, description = "What the rebuild changed", body = ReconcileResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["unauthorized", "internal_error"]))),
)]
pub async fn reconcile(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let report = reconcile_deadlines(&state).await?;
    Ok(HttpResponse::Ok().json(ReconcileResponse::from(report)))
}

#[utoipa::path(
    get,
    path = "/admin/cluster",
    tag = "admin",
    operation_id = "admin_cluster",
    summary = "The cluster: nodes, their addresses, the partitions each owns, lease expiry, live actors",
    responses((status = 200, description = "The cluster as Redis holds it now", body = ClusterResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["unauthorized", "internal_error"]))),
)]
pub async fn cluster(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let view =
        state.engine.cluster_view().await.map_err(|err| {
            ApiError::Internal(anyhow::Error::new(err).context("reading the cluster from Redis failed"))
        })?;
    Ok(HttpResponse::Ok().json(ClusterResponse::from(view)))
}

#[utoipa::path(
    get,
    path = "/admin/cluster/orders/{order_no}",
    tag = "admin",
    operation_id = "admin_cluster_order",
    summary = "Where an order is run: its partition, the partition's owner, and whether this node runs its actor",
    params(("order_no" = String, Path, description = "The order number")),
    responses((status = 200, description = "The order's placement as the answering node sees it", body = PlacementResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["unauthorized", "not_found"]))),
)]
pub async fn cluster_order(state: web::Data<AppState>, order_no: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let order_id = super::order_id(&order_no)?;
    let placement = state.engine.placement(order_id).ok_or(ApiError::NotFound("cluster"))?;
    Ok(HttpResponse::Ok().json(PlacementResponse {
        partition: placement.partition,
        owner: placement.owner,
        owned_here: placement.owned_here,
        armed_here: placement.armed_here,
        node: placement.node,
    }))
}

/// `GET /admin/cluster`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterResponse {
    /// Whether this node runs as one of a cluster (`cluster.enabled`).
    pub enabled: bool,
    /// The node that answered.
    pub node: Option<String>,
    pub partitions: u32,
    pub lease_ttl_ms: u64,
    pub nodes: Vec<ClusterNode>,
    /// Partitions nobody holds right now (between a node's death and the takeover).
    pub unowned: Vec<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterNode {
    pub name: String,
    /// Where the other nodes forward its orders' requests.
    pub address: String,
    /// Its heartbeat is current.
    pub alive: bool,
    /// Heartbeat validity, ms since the Unix epoch.
    pub alive_until_ms: i64,
    /// Order actors it ran at its last heartbeat.
    pub live_actors: u64,
    pub partitions_owned: usize,
    pub partitions: Vec<u32>,
    /// When the first of its leases lapses unless renewed (ms since the Unix epoch).
    pub lease_expires_at_ms: Option<i64>,
}

impl From<Option<actors::engine::ClusterView>> for ClusterResponse {
    fn from(view: Option<actors::engine::ClusterView>) -> Self {
        let Some(view) = view else {
            return Self {
                enabled: false,
                node: None,
                partitions: 0,
                lease_ttl_ms: 0,
                nodes: Vec::new(),
                unowned: Vec::new(),
            };
        };
        Self {
            enabled: true,
            node: Some(view.node),
            partitions: view.partitions,
            lease_ttl_ms: view.lease_ttl_ms,
            nodes: view
                .nodes
                .into_iter()
                .map(|n| ClusterNode {
                    name: n.name,
                    address: n.address,
                    alive: n.alive,
                    alive_until_ms: n.alive_until_ms,
                    live_actors: n.live_actors,
                    partitions_owned: n.partitions_owned,
                    partitions: n.partitions,
                    lease_expires_at_ms: n.lease_expires_at_ms,
                })
                .collect(),
            unowned: view.unowned,
        }
    }
}

/// `GET /admin/cluster/orders/{order_no}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlacementResponse {
    pub partition: u32,
    /// The node holding the partition's lease, as this node last read it.
    pub owner: Option<String>,
    pub owned_here: bool,
    /// This node runs the order's actor now.
    pub armed_here: bool,
    /// The node that answered.
    pub node: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReconcileResponse {
    /// Live orders in the database.
    live_orders: u64,
    /// Entries the index was missing and got back.
    added: u64,
    /// Entries of orders no longer live, removed.
    removed: u64,
}

impl From<actors::deadline::ReconcileReport> for ReconcileResponse {
    fn from(report: actors::deadline::ReconcileReport) -> Self {
        Self {
            live_orders: report.live_orders,
            added: report.added,
            removed: report.removed,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddSubscriberBody {
    /// Where deliveries are POSTed: http(s), a public address unless
    /// `outbox.allow_private_targets`.
    url: String,
    /// Key of the deliveries' signatures, at least 16 bytes; absent: one is generated.
    secret: Option<String>,
    /// Event types it receives; empty or absent: every type.
    #[serde(default)]
    event_types: Vec<String>,
    /// Whose events it receives. Absent (or null): a global subscriber that receives every
    /// merchant's events, for the operator's own consumers.
    merchant_id: Option<String>,
}

impl From<AddSubscriberBody> for NewSubscriber {
    fn from(body: AddSubscriberBody) -> Self {
        Self {
            url: body.url,
            secret: body.secret,
            event_types: body.event_types,
            merchant_id: body.merchant_id,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriberResponse {
    id: String,
    #[schema(value_type = schema::SubscriberKind)]
    kind: SubscriberKind,
    url: String,
    event_types: String,
    /// `null`: global (every merchant's events).
    merchant_id: Option<String>,
    enabled: bool,
    created_at: chrono::DateTime<chrono::Utc>,
    /// Shown once, when the subscriber is created.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriberList {
    subscribers: Vec<SubscriberResponse>,
}

impl SubscriberResponse {
    fn new(model: entities::subscribers::Model, show_secret: bool) -> Self {
        Self {
            id: model.id,
            kind: model.kind,
            url: model.url,
            event_types: model.event_types,
            merchant_id: model.merchant_id,
            enabled: model.enabled,
            created_at: model.created_at,
            secret: if show_secret { model.secret } else { None },
        }
    }
}

/// `POST /admin/subscribers`: a new webhook subscriber; its secret is in this answer only.
/// With `merchant_id` it receives that merchant's events only; without, every merchant's.
#[utoipa::path(
    post,
    path = "/admin/subscribers",
    tag = "admin",
    operation_id = "admin_add_subscriber",
    summary = "Add a webhook subscriber",
    description = "With `merchant_id` it receives that merchant's events only; without, every merchant's. Its secret is in this answer only.",
    request_body = AddSubscriberBody,
    responses((status = 201, description = "The new subscriber, with its secret", body = SubscriberResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!([
        "invalid_json", "unauthorized", "payload_too_large", "unsupported_media_type", "invalid_merchant_id",
        "invalid_url", "invalid_secret", "unknown_event_type", "internal_error"
    ]))),
)]
pub async fn add_subscriber(
    state: web::Data<AppState>,
    body: web::Json<AddSubscriberBody>,
) -> Result<HttpResponse, ApiError> {
    let model = add_webhook(&state, body.into_inner().into(), &api_operator()).await?;
    Ok(HttpResponse::Created().json(SubscriberResponse::new(model, true)))
}

/// `GET /admin/subscribers`.
#[utoipa::path(
    get,
    path = "/admin/subscribers",
    tag = "admin",
    operation_id = "admin_list_subscribers",
    summary = "List the subscribers (without their secrets)",
    responses((status = 200, description = "The subscribers", body = SubscriberList)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["unauthorized", "internal_error"]))),
)]
pub async fn list_subscribers(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let subscribers = subscribers::list(&state.db)
        .await?
        .into_iter()
        .map(|model| SubscriberResponse::new(model, false))
        .collect();
    Ok(HttpResponse::Ok().json(SubscriberList { subscribers }))
}

/// `DELETE /admin/subscribers/{id}`: its undelivered events become dead.
#[utoipa::path(
    delete,
    path = "/admin/subscribers/{id}",
    tag = "admin",
    operation_id = "admin_remove_subscriber",
    summary = "Remove a subscriber",
    description = "Its undelivered events become dead deliveries.",
    params(("id" = String, Path, description = "The subscriber's id")),
    responses((status = 204, description = "Removed")),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["unauthorized", "not_found", "internal_error"]))),
)]
pub async fn remove_subscriber(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    remove_webhook(&state, &id, &api_operator()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Absent: `dead`.
    #[param(value_type = Option<schema::DeliveryStatus>)]
    status: Option<String>,
    /// At most this many rows (default 100, at most 1000).
    #[param(minimum = 1)]
    limit: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryResponse {
    id: i64,
    subscriber_id: String,
    #[schema(value_type = schema::DeliveryStatus)]
    status: DeliveryStatus,
    attempts: i32,
    last_error: Option<String>,
    next_attempt_at: chrono::DateTime<chrono::Utc>,
    delivered_at: Option<chrono::DateTime<chrono::Utc>>,
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    order_no: String,
    event_id: Option<String>,
    event_type: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    deliveries: Vec<DeliveryResponse>,
}

/// `GET /admin/deliveries?status=dead|pending|delivered&limit=`: newest first.
#[utoipa::path(
    get,
    path = "/admin/deliveries",
    tag = "admin",
    operation_id = "admin_list_deliveries",
    summary = "List webhook deliveries, newest first",
    params(DeliveriesQuery),
    responses((status = 200, description = "The deliveries", body = DeliveryList)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["invalid_query", "unauthorized", "internal_error"]))),
)]
pub async fn list_deliveries(
    state: web::Data<AppState>,
    params: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let status = match params.status.as_deref() {
        None => DeliveryStatus::Dead,
        Some(status) => status
            .parse()
            .map_err(|_: String| ApiError::bad_request("invalid_query", "status must be dead, pending or delivered"))?,
    };
    let limit = params.limit.unwrap_or(100).clamp(1, LIST_LIMIT_MAX);
    let deliveries = subscribers::list_deliveries(&state.db, status, limit)
        .await?
        .into_iter()
        .map(|view| DeliveryResponse {
            id: view.delivery.id,
            subscriber_id: view.delivery.subscriber_id,
            status: view.delivery.status,
            attempts: view.delivery.attempts,
            last_error: view.delivery.last_error,
            next_attempt_at: view.delivery.next_attempt_at,
            delivered_at: view.delivery.delivered_at,
            order_no: view.delivery.order_id.to_string(),
            event_id: view.event.as_ref().map(|e| e.event_id.to_string()),
            event_type: view.event.map(|e| e.event_type),
        })
        .collect();
    Ok(HttpResponse::Ok().json(DeliveryList { deliveries }))
}

/// What `redeliver` answers: the delivery is queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct RedeliverResponse {
    #[schema(value_type = schema::DeliveryStatus)]
    status: DeliveryStatus,
}

/// `POST /admin/deliveries/{id}/redeliver`: queue a dead delivery again, due now.
#[utoipa::path(
    post,
    path = "/admin/deliveries/{id}/redeliver",
    tag = "admin",
    operation_id = "admin_redeliver",
    summary = "Queue a dead delivery again, due now",
    params(("id" = i64, Path, description = "The delivery's id")),
    responses((status = 202, description = "Queued", body = RedeliverResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["invalid_path", "unauthorized", "not_found", "internal_error"]))),
)]
pub async fn redeliver(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    redeliver_one(&state, id.into_inner(), &api_operator()).await?;
    Ok(HttpResponse::Accepted().json(RedeliverResponse {
        status: DeliveryStatus::Pending,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UnmatchedQuery {
    /// `true`: resolved ones too.
    all: Option<bool>,
    /// At most this many rows (default 100, at most 1000).
    #[param(minimum = 1)]
    limit: Option<u64>,
}

/// An authentic notification for a trade paywarden does not know.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnmatchedResponse {
    id: i64,
    #[schema(value_type = schema::Provider)]
    provider: entities::Provider,
    event_id: String,
    pay_no: String,
    trade_state: String,
    /// Minor units, when the notification tells.
    #[schema(value_type = Option<i64>, minimum = 0)]
    amount: Option<entities::MinorUnit>,
    provider_txn_id: Option<String>,
    /// The verified notification as the provider sent it (JSON, or its text).
    payload: serde_json::Value,
    received_at: chrono::DateTime<chrono::Utc>,
    resolved_at: Option<chrono::DateTime<chrono::Utc>>,
    resolved_by: Option<String>,
    resolution: Option<String>,
}

impl From<entities::unmatched_notifications::Model> for UnmatchedResponse {
    fn from(model: entities::unmatched_notifications::Model) -> Self {
        Self {
            id: model.id,
            provider: model.provider,
            event_id: model.event_id,
            pay_no: model.pay_no,
            trade_state: model.trade_state,
            amount: model.amount,
            provider_txn_id: model.provider_txn_id,
            payload: serde_json::from_str(&model.payload).unwrap_or(serde_json::Value::String(model.payload)),
            received_at: model.received_at,
            resolved_at: model.resolved_at,
            resolved_by: model.resolved_by,
            resolution: model.resolution,
        }
    }
}

/// `GET /admin/unmatched-notifications[?all=true&limit=]`: authentic notifications for trades
/// paywarden does not know, unresolved first-class (newest first).
#[utoipa::path(
    get,
    path = "/admin/unmatched-notifications",
    tag = "admin",
    operation_id = "admin_list_unmatched",
    summary = "List notifications for unknown trades, newest first",
    description = "Authentic notifications for trades paywarden does not know (a restored database, another deployment's trade), stored once per provider event. Unresolved ones only, unless `all=true`.",
    params(UnmatchedQuery),
    responses((status = 200, description = "The notifications", body = UnmatchedList)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["invalid_query", "unauthorized", "internal_error"]))),
)]
pub async fn list_unmatched(
    state: web::Data<AppState>,
    params: web::Query<UnmatchedQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = params.limit.unwrap_or(100).clamp(1, LIST_LIMIT_MAX);
    let notifications = unmatched::list(&state.db, !params.all.unwrap_or(false), limit)
        .await?
        .into_iter()
        .map(UnmatchedResponse::from)
        .collect();
    Ok(HttpResponse::Ok().json(UnmatchedList { notifications }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnmatchedList {
    notifications: Vec<UnmatchedResponse>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// How it was settled (refunded by hand, matched to a restored order, ...).
    #[schema(min_length = 1, max_length = 242)]
    reason: String,
}

/// `POST /admin/unmatched-notifications/{id}/resolve {reason}`: the operator settled it
/// (refunded by hand, matched to a restored order, ...); recorded with who and why.
#[utoipa::path(
    post,
    path = "/admin/unmatched-notifications/{id}/resolve",
    tag = "admin",
    operation_id = "admin_resolve_unmatched",
    summary = "Mark a notification for an unknown trade as settled",
    params(("id" = i64, Path, description = "The notification's id")),
    request_body = ResolveBody,
    responses((status = 200, description = "The notification, resolved", body = UnmatchedResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!([
        "invalid_json", "invalid_path", "unauthorized", "not_found", "already_resolved", "payload_too_large",
        "unsupported_media_type", "invalid_field", "internal_error"
    ]))),
)]
pub async fn resolve_unmatched(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<ResolveBody>,
) -> Result<HttpResponse, ApiError> {
    let operator = api_operator();
    let row = resolve_notification(&state, id.into_inner(), &body.into_inner().reason, &operator).await?;
    Ok(HttpResponse::Ok().json(UnmatchedResponse::from(row)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptPaymentBody {
    /// The order's attempt paid with another amount (status `amount_mismatch`).
    pay_no: String,
    #[schema(min_length = 1, max_length = 242)]
    reason: String,
}

/// `POST /admin/orders/{order_no}/accept-payment {pay_no, reason}`: an operator accepts a
/// payment of another amount (the order is `stuck` on it) as the order's payment, through the
/// order's actor; logged with the operator and the reason.
#[utoipa::path(
    post,
    path = "/admin/orders/{order_no}/accept-payment",
    tag = "admin",
    operation_id = "admin_accept_payment",
    summary = "Accept a payment of another amount as the order's payment",
    description = "For an order `stuck` on an attempt the provider reports paid with another amount; through the order's actor, logged with the operator and the reason.",
    params(("order_no" = String, Path, description = "The order's number")),
    request_body = AcceptPaymentBody,
    responses((status = 200, description = "The order with its log", body = OrderResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!([
        "invalid_json", "unauthorized", "not_found", "order_not_pending", "concurrent_update", "payload_too_large",
        "unsupported_media_type", "invalid_field", "not_a_mismatched_payment", "internal_error",
        "service_unavailable"
    ]))),
)]
pub async fn accept_payment(
    state: web::Data<AppState>,
    order_no: web::Path<String>,
    body: web::Json<AcceptPaymentBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let operator = api_operator();
    accept_mismatched_payment(&state, &order_no, &body.pay_no, &body.reason, operator).await?;
    let order = query::find_order_with_logs(&state.db, &order_no)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    Ok(HttpResponse::Ok().json(OrderResponse::from_detail(order, &state.links, true)))
}
