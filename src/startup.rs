//! Building and running the application: database, migrations, gateways, HTTP server.
//!
//! [`Application::build`] binds the listener first (port 0 picks a free one), so tests and the
//! start-up message both know the real address before anything is served.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use std::time::Duration;

use actix::Addr;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use std::collections::HashMap;

use actors::cluster::{NodeIdentity, Ownership, Partitioner};
use actors::deadline::{DeadlineIndex, RedisDeadlineIndex, SqlDeadlineIndex};
use actors::engine::{ClusterParts, Engine, EngineParts};
use actors::gateway::sandbox::SandboxGateway;
use actors::gateway::section::GatewayContext;
use actors::gateway::Gateways;
use actors::ids::Snowflake;
use actors::metrics::EngineMetrics;
use actors::outbox::OutboxRelay;
use actors::provider::start_providers;
use actors::redis_conn::RedisConn;
use anyhow::Context;
use entities::Provider;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use secrecy::ExposeSecret;
use sha2::Digest;
use tracing_actix_web::TracingLogger;

use crate::auth::Credentials;
use crate::config::{DatabaseSettings, Settings};
use crate::links::Links;
use crate::metrics::Metrics;
use crate::routes;
use crate::state::AppState;

/// Merchants' provider accounts kept built (gateway and provider actor) at once; beyond, the
/// least recently used is rebuilt on its next call.
const ACCOUNTS_BUILT: usize = 10_000;

/// How long in-flight requests get to finish once a stop signal arrived.
const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub struct Application {
    port: u16,
    base_url: String,
    server: Server,
    /// What runs beside the server, stopped after it.
    background: crate::background::Background,
    db: DatabaseConnection,
}

impl Application {
    /// Connects, migrates, binds and assembles the server (not yet running).
    ///
    /// # Errors
    /// Any start-up failure, with context naming the step.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let (listener, local, base_url) = bind(&settings)?;
        let db = connect_database(&settings.database).await?;
        migrate(&db).await?;
        let vault = open_vault(&settings, &db).await?;
        let credentials = Arc::new(Credentials::from_settings(&settings.auth, db.clone())?);
        actors::store::merchants::import_configured(&db, &credentials.configured_merchants())
            .await
            .context("failed to record the merchants of auth.merchant_keys")?;
        let providers = ProviderParts::build(&settings, &base_url, vault.clone())?;
        let metrics = Arc::new(Metrics::new()?);
        let (engine, accounts) = start_engine(&settings, &db, &providers, &metrics, local, &base_url).await?;
        let background = start_background(&settings, &db, &engine).await?;
        let state = app_state(
            &settings,
            &db,
            &engine,
            (providers.gateways, providers.http),
            &metrics,
            &base_url,
            (credentials, vault, accounts),
        )?;
        let server = serve(listener, &settings, state, metrics, providers.sandbox, &base_url)?;
        Ok(Self {
            port: local.port(),
            base_url,
            server,
            background,
            db,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Serves until the server is stopped (Ctrl-C / SIGTERM stop it gracefully), then stops
    /// the workers in reverse order of dependency ([`crate::background::Background::stop`]),
    /// and closes the database pool last. Every step is bounded; pending orders stay indexed
    /// and the next start re-arms them.
    ///
    /// # Errors
    /// An I/O error of the server.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        tracing::info!("http server stopped; stopping the workers");
        self.background.stop().await;
        if let Err(err) = self.db.close().await {
            tracing::warn!(error.message = %err, "failed to close the database pool");
        }
        served
    }
}

/// The master keys' vault, after checking that every stored provider account opens under
/// them: a wrong key refuses to start, naming the first account it cannot open, rather than
/// serving with accounts silently missing.
///
/// # Errors
/// A bad key setting, an account that does not open, accounts stored but no key set.
async fn open_vault(settings: &Settings, db: &DatabaseConnection) -> anyhow::Result<Option<Arc<actors::vault::Vault>>> {
    use actors::store::accounts;
    let Some(vault) = settings.secrets.vault()? else {
        let stored = accounts::count(db)
            .await
            .context("failed to count the provider accounts")?;
        anyhow::ensure!(
            stored == 0,
            "secrets.master_key is not set, but {stored} provider accounts are stored: set the master key they were sealed under (PAYWARDEN__SECRETS__MASTER_KEY or secrets.master_key_path)"
        );
        return Ok(None);
    };
    let opened = accounts::check_all(db, &vault).await?;
    tracing::info!(
        accounts = opened,
        master_key_id = vault.current_key_id(),
        "provider accounts open under the master keys"
    );
    Ok(Some(Arc::new(vault)))
}

/// `console.session_secret`, or in a profile that allows it, a random one for this process.
fn console_secret(settings: &Settings) -> secrecy::SecretString {
    if settings.console.session_secret.expose_secret().is_empty() {
        tracing::warn!(
            "console.session_secret is not set: generated a random one; console sessions end when this process stops and hold on this node only"
        );
        routes::console::session::generated_secret()
    } else {
        settings.console.session_secret.clone()
    }
}

/// Binds the listener first (port 0 picks a free one), so the real address is known before
/// anything is served; the base URL is `server.public_base_url`, else `http://<bound address>`.
///
/// # Errors
/// The address cannot be bound.
fn bind(settings: &Settings) -> anyhow::Result<(TcpListener, std::net::SocketAddr, String)> {
    let listener =
        TcpListener::bind(&settings.server.addr).with_context(|| format!("failed to bind {}", settings.server.addr))?;
    let local = listener.local_addr().context("failed to read the bound address")?;
    let base_url = if settings.server.public_base_url.is_empty() {
        format!("http://{local}")
    } else {
        settings.server.public_base_url.trim_end_matches('/').to_owned()
    };
    Ok((listener, local, base_url))
}

/// The enabled providers' gateways and call limits.
struct ProviderParts {
    gateways: Gateways,
    /// The client every provider call goes out with.
    http: reqwest::Client,
    /// Opens the merchants' provider accounts.
    vault: Option<Arc<actors::vault::Vault>>,
    /// Every provider's call budget (enabled here or not): each merchant account gets its own.
    all_calls: HashMap<Provider, actors::provider::ProviderCallSettings>,
    calls: HashMap<Provider, actors::provider::ProviderCallSettings>,
    /// The sandbox's own gateway, for its control routes.
    sandbox: Option<Arc<SandboxGateway>>,
}

impl ProviderParts {
    /// # Errors
    /// A provider's settings that do not make a gateway.
    fn build(settings: &Settings, base_url: &str, vault: Option<Arc<actors::vault::Vault>>) -> anyhow::Result<Self> {
        // The providers' client: every call is bounded by its own limit (the provider actor's
        // call timeout; a bill download its own, far longer one), so no client-wide total
        // that would cut a bill short; connecting is bounded here. No redirect is followed:
        // no provider protocol uses one, and an unsigned bill must come from where it was
        // announced.
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("failed to build the HTTP client")?;
        let context = GatewayContext { base_url, http: &http };
        let mut gateways = Gateways::default();
        let mut calls = HashMap::new();
        let mut sandbox = None;
        for (info, key, section) in settings.providers.sections() {
            if !section.enabled() {
                continue;
            }
            let gateway = section.gateway(&key, &context)?;
            if sandbox.is_none() {
                // The sandbox's control routes need its own type.
                let any: Arc<dyn std::any::Any + Send + Sync> = gateway.clone();
                sandbox = any.downcast::<SandboxGateway>().ok();
            }
            gateways.insert(gateway);
            calls.insert(info.provider, section.calls().clone());
        }

        let all_calls = settings
            .providers
            .sections()
            .map(|(info, _, section)| (info.provider, section.calls().clone()))
            .collect();
        Ok(Self {
            gateways,
            http,
            vault,
            all_calls,
            calls,
            sandbox,
        })
    }
}

/// Connects Redis (if configured), picks the deadline index, joins the cluster's partitioning
/// (if on), starts the provider actors and the engine.
///
/// # Errors
/// Redis unreachable, a node identity that must be configured, a bad worker id.
async fn start_engine(
    settings: &Settings,
    db: &DatabaseConnection,
    providers: &ProviderParts,
    metrics: &Metrics,
    local: std::net::SocketAddr,
    base_url: &str,
) -> anyhow::Result<(Engine, Arc<actors::provider::accounts::AccountProviders>)> {
    let redis = match settings.redis.url() {
        Some(url) => Some(
            RedisConn::connect(url, settings.redis.mode)
                .await
                .context("failed to connect to Redis (check redis.url and redis.mode)")?,
        ),
        None => None,
    };
    let partitioner = settings
        .cluster
        .enabled
        .then(|| Partitioner::new(settings.cluster.partitions));
    let index: Arc<dyn DeadlineIndex> = match &redis {
        Some(redis) => Arc::new(RedisDeadlineIndex::new(
            redis.clone(),
            &settings.redis.key_prefix,
            partitioner,
            db.clone(),
        )),
        None => Arc::new(SqlDeadlineIndex::new(db.clone())),
    };
    let cluster = match (partitioner, &redis, settings.redis.url()) {
        (Some(partitioner), Some(redis), Some(url)) => {
            let cluster_settings = &settings.cluster;
            let node = node_identity(settings, local, base_url)?;
            tracing::info!(node = %node.name, address = %node.address, partitions = partitioner.count(), "running as a cluster node");
            Some(ClusterParts {
                ownership: Arc::new(Ownership::new(partitioner, node)),
                settings: cluster_settings.clone(),
                redis: redis.clone(),
                subscribe_url: actors::redis_conn::seeds(url).into_iter().next().unwrap_or_default(),
                key_prefix: settings.redis.key_prefix.clone(),
            })
        }
        _ => None,
    };
    let expiry = settings.expiry.clone();
    let provider_metrics = Arc::new(
        actors::metrics::ProviderMetrics::register(metrics.registry())
            .context("failed to register provider metrics")?,
    );
    let accounts = Arc::new(actors::provider::accounts::AccountProviders::new(
        actors::provider::accounts::AccountSource {
            db: db.clone(),
            vault: providers.vault.clone(),
            base_url: base_url.to_owned(),
            http: providers.http.clone(),
            calls: providers.all_calls.clone(),
            metrics: Some(provider_metrics.clone()),
            capacity: ACCOUNTS_BUILT,
        },
    ));
    let provider_actors = start_providers(
        &providers.gateways,
        &providers.calls,
        expiry.provider_reply_timeout,
        &provider_metrics,
    )
    .with_accounts(accounts.clone());
    let engine = Engine::start(EngineParts {
        db: db.clone(),
        ids: Snowflake::new(settings.ids.worker_id).context("invalid ids.worker_id")?,
        providers: Arc::new(provider_actors),
        index,
        settings: expiry,
        refunds: settings.refunds(),
        metrics: EngineMetrics::register(metrics.registry()).context("failed to register engine metrics")?,
        cluster,
    });
    Ok((engine, accounts))
}

/// Starts the outbox relay, re-arms the pending orders, joins the cluster, and starts the
/// pollers: everything that runs beside the server, owned by one [`Background`].
///
/// # Errors
/// A configured subscriber that is refused, a failed re-arm, a failed join.
async fn start_background(
    settings: &Settings,
    db: &DatabaseConnection,
    engine: &Engine,
) -> anyhow::Result<crate::background::Background> {
    let relay = start_outbox_relay(settings, db, engine).await?;
    let rehydrated = engine.rehydrate().await.context("failed to re-arm pending orders")?;
    engine.start_cluster().await.context("failed to join the cluster")?;
    let mut background = crate::background::Background {
        engine: engine.clone(),
        relay,
        pollers: Vec::new(),
        sweeper: crate::idempotency::Sweeper::start(db.clone()),
    };
    background.start_pollers(&settings.reconciliation, &settings.dashboard);
    tracing::info!(
        index = engine.index_name(),
        armed = rehydrated.armed,
        overdue = rehydrated.overdue,
        index_rebuilt = rehydrated.index_rebuilt,
        "pending orders re-armed"
    );
    Ok(background)
}

/// What every handler shares.
fn app_state(
    settings: &Settings,
    db: &DatabaseConnection,
    engine: &Engine,
    (gateways, provider_http): (Gateways, reqwest::Client),
    metrics: &Arc<Metrics>,
    base_url: &str,
    (credentials, vault, accounts): (
        Arc<Credentials>,
        Option<Arc<actors::vault::Vault>>,
        Arc<actors::provider::accounts::AccountProviders>,
    ),
) -> anyhow::Result<web::Data<AppState>> {
    let providers: Vec<Provider> = gateways.providers().collect();
    let webhook_sender = crate::state::WebhookSender {
        http: actors::outbox::target::webhook_client(settings.outbox.allow_private_targets)
            .context("failed to build the webhook HTTP client")?,
        settings: settings.outbox.clone(),
    };
    Ok(web::Data::new(AppState {
        db: db.clone(),
        engine: engine.clone(),
        gateways,
        limits: settings.orders.clone(),
        links: Links::new(
            settings.checkout.link_secret.clone(),
            settings.checkout.link_grace,
            base_url,
        ),
        providers,
        console: routes::console::ConsoleKeys::new(
            &settings.auth.admin_token,
            &console_secret(settings),
            settings.console.session,
            settings.console.idle,
            base_url.starts_with("https://"),
        ),
        allow_private_targets: settings.outbox.allow_private_targets,
        overlap_bounds: settings.outbox.overlap_bounds(),
        replay_max_events: settings.outbox.replay_max_events,
        webhook_sender,
        reconciliation: settings.reconciliation.clone(),
        metrics: metrics.clone(),
        metrics_access: crate::metrics::MetricsAccess::from_settings(&settings.metrics),
        dashboard_refresh: settings.dashboard.page_refresh,
        streams: crate::streams::StreamHub::start(db.clone(), settings.streams.clone(), engine.subscribe()),
        credentials,
        vault,
        account_policy: if settings.env == crate::config::Profile::Production {
            actors::gateway::account::EndpointPolicy::HttpsOnly
        } else {
            actors::gateway::account::EndpointPolicy::AllowHttp
        },
        provider_http,
        accounts,
    }))
}

/// The HTTP server on `listener`: the middleware stack, the shared data, the routes.
///
/// # Errors
/// A credential or proxy setting that does not parse, a client that cannot be built.
fn serve(
    listener: TcpListener,
    settings: &Settings,
    state: web::Data<AppState>,
    metrics: Arc<Metrics>,
    sandbox: Option<Arc<SandboxGateway>>,
    base_url: &str,
) -> anyhow::Result<Server> {
    let engine = state.engine.clone();
    let credentials = web::Data::from(state.credentials.clone());
    let trusted_proxies = web::Data::new(crate::client_addr::TrustedProxies::parse(
        &settings.server.trusted_proxies,
    )?);
    let throttle = web::Data::new(crate::throttle::Throttle::new(
        settings.throttle.clone(),
        metrics.registry(),
    )?);
    let forwarder = match engine.ownership() {
        Some(ownership) => Some(web::Data::new(
            crate::forward::Forwarder::new(
                ownership.node().name.clone(),
                settings.cluster.secret.clone(),
                settings.expiry.actor_reply_timeout + Duration::from_secs(5),
            )
            .context("failed to build the forwarding HTTP client")?,
        )),
        None => None,
    };
    let metrics_data = web::Data::from(metrics);
    let sandbox_data = sandbox.map(web::Data::new);
    let enabled: Vec<Provider> = state.providers.clone();
    let max_body_bytes = settings.server.max_body_bytes;
    let sandbox_open = settings.env == crate::config::Profile::Development;
    let api_document = web::Data::new(
        routes::openapi::ServedDocument::new(&enabled, sandbox_open, &settings.orders)
            .context("failed to serialize the OpenAPI document")?,
    );

    let edge = web::Data::new(crate::edge::Edge {
        body_read_timeout: settings.server.body_read_timeout,
        max_body_bytes,
        https: base_url.starts_with("https://"),
    });
    let sessions = web::Data::new(routes::console::session::SessionStore {
        keys: state.console.clone(),
        db: state.db.clone(),
    });
    let mut server = HttpServer::new(move || {
        let mut app = App::new()
            .wrap(from_fn(crate::forward::forward))
            .wrap(from_fn(crate::edge::guard))
            .wrap(from_fn(crate::metrics::record))
            .wrap(TracingLogger::<crate::telemetry::RequestSpan>::new())
            .app_data(state.clone())
            .app_data(sessions.clone())
            .app_data(credentials.clone())
            .app_data(trusted_proxies.clone())
            .app_data(throttle.clone())
            .app_data(metrics_data.clone())
            .app_data(api_document.clone())
            .app_data(edge.clone());
        if let Some(sandbox) = &sandbox_data {
            app = app.app_data(sandbox.clone());
        }
        if let Some(forwarder) = &forwarder {
            app = app.app_data(forwarder.clone());
        }
        app.configure(|cfg| routes::configure(cfg, max_body_bytes, &enabled, sandbox_open))
            .default_service(web::to(routes::not_found))
    })
    .listen(listener)
    .context("failed to listen")?;
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    server = server.max_connections(settings.server.max_connections);
    // SIGINT/SIGTERM stop the server gracefully: no new connections, in-flight requests
    // (a webhook waiting for its order actor, say) get `HTTP_SHUTDOWN_GRACE` to finish.
    server = server.shutdown_timeout(HTTP_SHUTDOWN_GRACE.as_secs());
    Ok(server.run())
}

/// Who this node is in its cluster: `cluster.node_name` (else the bound address) and
/// `cluster.advertise_url` (else `http://<bound address>`), refused where the default cannot be
/// right: an address that is not one (listening on every interface) or a base URL that may be
/// a load balancer.
///
/// # Errors
/// A name or an address that must be configured.
fn node_identity(settings: &Settings, local: std::net::SocketAddr, base_url: &str) -> anyhow::Result<NodeIdentity> {
    let cluster = &settings.cluster;
    if cluster.node_name.is_empty() && local.ip().is_unspecified() {
        anyhow::bail!(
            "cluster.node_name must be set when the server listens on every interface ({local}): every node would get the same name"
        );
    }
    if cluster.advertise_url.is_empty() && (!settings.server.public_base_url.is_empty() || local.ip().is_unspecified())
    {
        anyhow::bail!(
            "cluster.advertise_url must be set (the address the other nodes reach this one at): server.public_base_url may be a load balancer, and {local} is not an address"
        );
    }
    Ok(NodeIdentity {
        name: if cluster.node_name.is_empty() {
            local.to_string()
        } else {
            cluster.node_name.clone()
        },
        incarnation: uuid::Uuid::new_v4().simple().to_string(),
        address: if cluster.advertise_url.is_empty() {
            base_url.to_owned()
        } else {
            cluster.advertise_url.trim_end_matches('/').to_owned()
        },
    })
}

/// Registers the configured subscribers and starts the outbox relay.
async fn start_outbox_relay(
    settings: &Settings,
    db: &DatabaseConnection,
    engine: &Engine,
) -> anyhow::Result<Addr<OutboxRelay>> {
    use actors::outbox::subscribers::{ensure, NewWebhook};
    use entities::SubscriberKind;
    for webhook in &settings.outbox.webhooks {
        // A stable id per URL, so a restart updates the row instead of adding one.
        let id = format!(
            "cfg_{}",
            &hex::encode(sha2::Sha256::digest(webhook.url.as_bytes()))[..16]
        );
        // Absent: a global subscriber (every merchant's events).
        let merchant_id = webhook
            .merchant_id
            .as_deref()
            .map(actors::domain::MerchantId::parse)
            .transpose()
            .map_err(|err| anyhow::anyhow!("outbox.webhooks entry {}: {err}", webhook.url))?;
        let new = NewWebhook {
            url: webhook.url.clone(),
            secret: Some(webhook.secret.expose_secret().to_owned()),
            signature_scheme: webhook.signature_scheme,
            event_types: webhook.event_types.clone(),
            merchant_id,
            headers: std::collections::BTreeMap::new(),
        };
        ensure(
            db,
            &id,
            SubscriberKind::Webhook,
            new,
            settings.outbox.allow_private_targets,
        )
        .await
        .map_err(|err| anyhow::anyhow!("outbox.webhooks entry {}: {err}", webhook.url))?;
    }
    let amqp = match settings.amqp.url() {
        Some(url) => {
            // The AMQP sink is the operator's: global, every merchant's events.
            let new = NewWebhook {
                url: settings.amqp.exchange.clone(),
                secret: None,
                // Nothing is signed: the broker is the operator's.
                signature_scheme: entities::SignatureScheme::PaywardenV1,
                event_types: Vec::new(),
                merchant_id: None,
                headers: std::collections::BTreeMap::new(),
            };
            ensure(db, "amqp", SubscriberKind::Amqp, new, true)
                .await
                .map_err(|err| anyhow::anyhow!("amqp subscriber: {err}"))?;
            Some(actors::outbox::amqp::AmqpSink::new(
                url.to_owned(),
                settings.amqp.exchange.clone(),
            ))
        }
        None => None,
    };
    // Its own client: no redirects, public addresses only unless allowed.
    let webhooks = actors::outbox::target::webhook_client(settings.outbox.allow_private_targets)
        .context("failed to build the webhook HTTP client")?;
    let relay = OutboxRelay::new(db.clone(), webhooks, amqp, settings.outbox.clone());
    let pending = relay.wake_pending();
    let relay = relay.start_on_own_arbiter();
    engine.attach_relay(relay.clone().recipient(), pending);
    Ok(relay)
}

/// Connects to the configured database. For SQLite the file's directory is created, and the
/// pool holds one connection (SQLite has one writer; one connection also rules out "database
/// is locked" between concurrent transactions).
///
/// # Errors
/// An unreachable database or an uncreatable directory.
pub async fn connect_database(settings: &DatabaseSettings) -> anyhow::Result<DatabaseConnection> {
    let url = settings.url.expose_secret();
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(settings.connect_timeout())
        .acquire_timeout(settings.connect_timeout())
        .sqlx_logging(false);
    if settings.is_sqlite() {
        if let Some(dir) = sqlite_parent_dir(url) {
            std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
        }
        options.max_connections(1).min_connections(1);
    } else {
        options.max_connections(settings.max_connections);
    }
    Database::connect(options)
        .await
        .context("failed to connect to the database (check database.url)")
}

/// Key of the PostgreSQL advisory lock held while migrations run (any constant: only
/// paywarden takes it). Reads "paywarden" in ASCII, cut to 63 bits.
const MIGRATION_LOCK_KEY: i64 = 0x7061_7977_6172_6465;

/// Runs the pending migrations. On PostgreSQL they run inside one transaction that first takes
/// a transaction-level advisory lock, so nodes started together on a fresh database migrate one
/// after the other (the later ones find nothing left to do) instead of racing each other's
/// `CREATE TABLE` and exiting; the lock goes with the transaction, even if the process dies.
/// SQLite needs none: one process opens the file, with one connection.
///
/// # Errors
/// The lock could not be taken, or a migration failed.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Migrator::up(db, None)
            .await
            .context("failed to run database migrations");
    }
    let txn = db.begin().await.context("failed to begin the migration transaction")?;
    txn.execute(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1)",
        [MIGRATION_LOCK_KEY.into()],
    ))
    .await
    .context("failed to take the migration lock")?;
    Migrator::up(&txn, None)
        .await
        .context("failed to run database migrations")?;
    txn.commit().await.context("failed to commit the database migrations")
}

/// The directory of a `sqlite://path?..` URL's file, if it has one.
fn sqlite_parent_dir(url: &str) -> Option<&Path> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Path::new(path).parent().filter(|dir| !dir.as_os_str().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_directory_is_found_in_the_url() {
        assert_eq!(
            sqlite_parent_dir("sqlite://./data/x.db?mode=rwc"),
            Some(Path::new("./data"))
        );
        assert_eq!(sqlite_parent_dir("sqlite:/tmp/a/b.db"), Some(Path::new("/tmp/a")));
        assert_eq!(sqlite_parent_dir("sqlite::memory:"), None);
        assert_eq!(sqlite_parent_dir("sqlite://x.db"), None);
    }
}
