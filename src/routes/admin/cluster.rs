//! `/admin/cluster` and `/admin/deadlines/reconcile`: where orders run, and the deadline index
//! made to match the database.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::operations::reconcile_deadlines;
use crate::state::AppState;

#[utoipa::path(
    post,
    path = "/admin/deadlines/reconcile",
    tag = "admin",
    operation_id = "admin_reconcile_deadlines",
    summary = "Rebuild the deadline index and re-arm every live order",
    responses((status = 200, description = "What the rebuild changed", body = ReconcileResponse)),
    security(("admin_token" = [])),
    extensions(("x-error-codes" = json!(["internal_error"]))),
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
    extensions(("x-error-codes" = json!(["internal_error"]))),
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
    extensions(("x-error-codes" = json!(["not_found"]))),
)]
pub async fn cluster_order(state: web::Data<AppState>, order_no: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let order_id = crate::operations::order_id(&order_no)?;
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
