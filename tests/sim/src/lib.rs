//! paywarden-sim: a provider simulator that speaks both WeChat Pay API v3 and the Alipay
//! OpenAPI, for integration tests and demos, and the local key material it runs with.
//!
//! Test and demo tooling only: `paywarden` never depends on this crate (its integration tests
//! take it as a dev-dependency), so the production binary links no simulator.
//!
//! It behaves like the real providers where paywarden's correctness depends on it: it
//! verifies the merchant's signatures (and refuses bad ones in the provider's own error
//! shape), signs its answers with its own platform key, keeps a trade book per
//! `out_trade_no` (`time_expire` honoured), refuses WeChat closes within the close window,
//! treats a precreated Alipay trade as non-existent until the buyer scans it, and sends real
//! signed (and, for WeChat, encrypted) notifications, resent on the provider's schedule,
//! compressed by a factor.
//!
//! # Layout
//! - [`book`]: the trade book and injected faults (shared state).
//! - `wechat` / `alipay`: the provider endpoints.
//! - `notify`: notification delivery with retries.
//! - `bills`: each provider's daily trade bill of the trades it holds, with controls.
//! - [`refunds`]: refunds, refund queries and WeChat's refund notifications, for both providers.
//! - `control`: `/sim/...` routes that play the buyer and switch faults.
//! - [`keys`]: local key material (merchant / platform RSA pairs, APIv3 key).
//!
//! Start it in-process with [`SimServer::start`]; `paywarden-sim` is the stand-alone binary
//! (`paywarden-sim keys --dir DIR` writes key material).

mod alipay;
mod bills;
pub mod book;
mod control;
pub mod keys;
mod notify;
pub mod refunds;
#[cfg(test)]
mod tests;
mod wechat;

use std::net::TcpListener;
use std::sync::{Arc, OnceLock};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use actors::gateway::alipay::AlipaySettings;
use actors::gateway::wechat::crypto::{RsaSigningKey, RsaVerifyingKey, WechatApiV3Key};
use actors::gateway::wechat::{WechatPlatformKeySettings, WechatSettings};
use anyhow::Context;
use secrecy::ExposeSecret;
use sha2::Digest;

pub use self::book::{SimFaults, SimPayOptions, SimProvider, SimTrade, SimTradeState};
use crate::keys::KeyMaterial;

/// WeChat's documented rule: no close within 5 minutes of creating the order.
pub const DEFAULT_CLOSE_TOO_EARLY_SECONDS: u64 = 300;

/// How the simulator presents itself and how fast it goes.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub wechat_mchid: String,
    pub wechat_appid: String,
    /// The merchant certificate serial the simulator expects in `Authorization`.
    pub wechat_merchant_serial_no: String,
    pub alipay_app_id: String,
    /// `seller_id` in Alipay notifications.
    pub alipay_seller_id: String,
    /// WeChat refuses a close this soon after the prepay (`403 RULE_LIMIT`); 0 disables.
    pub close_too_early_seconds: u64,
    /// Notification retry schedules are divided by this (1 = the providers' real pace).
    pub notify_speedup: u32,
    pub keys: KeyMaterial,
}

impl SimConfig {
    /// Defaults for everything but the keys.
    pub fn new(keys: KeyMaterial) -> Self {
        Self {
            wechat_mchid: "1900000001".into(),
            wechat_appid: "wxsim0000000000001".into(),
            wechat_merchant_serial_no: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into(),
            alipay_app_id: "2021000000000001".into(),
            alipay_seller_id: "2088000000000001".into(),
            close_too_early_seconds: DEFAULT_CLOSE_TOO_EARLY_SECONDS,
            notify_speedup: 1,
            keys,
        }
    }
}

/// Generated once per process and shared: RSA key generation takes seconds in a debug build,
/// and every test that starts a simulator would otherwise pay for it.
///
/// # Errors
/// When key generation fails.
pub fn shared_test_keys() -> anyhow::Result<KeyMaterial> {
    static KEYS: OnceLock<KeyMaterial> = OnceLock::new();
    if let Some(keys) = KEYS.get() {
        return Ok(keys.clone());
    }
    let keys = KeyMaterial::generate()?;
    Ok(KEYS.get_or_init(|| keys).clone())
}

/// The simulator's parsed keys.
pub(crate) struct SimKeys {
    pub merchant: RsaVerifyingKey,
    /// Shared with blocking signing tasks.
    pub platform: Arc<RsaSigningKey>,
    pub platform_serial: String,
    pub apiv3: WechatApiV3Key,
}

/// A running simulator.
pub struct SimServer {
    base_url: String,
    handle: ServerHandle,
    state: Arc<book::SimState>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl SimServer {
    /// Starts on `127.0.0.1` with a port the OS picks, inside the current tokio runtime.
    ///
    /// # Errors
    /// When the keys do not parse or the port cannot be bound.
    pub async fn start(config: SimConfig) -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1:0", config).await
    }

    /// Starts on `address` (`host:port`).
    ///
    /// # Errors
    /// When the keys do not parse or the address cannot be bound.
    pub async fn start_on(address: &str, config: SimConfig) -> anyhow::Result<Self> {
        let keys = SimKeys {
            merchant: RsaVerifyingKey::from_pem(&config.keys.merchant_public_key_pem)
                .context("merchant public key is invalid")?,
            platform: Arc::new(
                RsaSigningKey::from_pem(config.keys.platform_private_key_pem.expose_secret())
                    .context("platform private key is invalid")?,
            ),
            platform_serial: platform_serial(&config.keys.platform_public_key_pem),
            apiv3: WechatApiV3Key::parse(config.keys.apiv3_key.clone()).context("apiv3 key is invalid")?,
        };
        let listener = TcpListener::bind(address).with_context(|| format!("failed to bind {address}"))?;
        let local = listener.local_addr().context("bound socket has no address")?;
        let state = Arc::new(book::SimState::new(config, keys));
        let data = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .configure(wechat::routes)
                .configure(refunds::wechat_routes)
                .configure(bills::wechat_routes)
                .configure(alipay::routes)
                .configure(control::routes)
        })
        .workers(2)
        .listen(listener)
        .context("failed to listen")?
        .run();
        let handle = server.handle();
        let server = tokio::spawn(server);
        let base_url = format!("http://{local}");
        tracing::info!(%base_url, "provider simulator listening");
        Ok(Self {
            base_url,
            handle,
            state,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`: WeChat's API base URL; Alipay's gateway is
    /// [`SimServer::alipay_gateway_url`].
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn alipay_gateway_url(&self) -> String {
        format!("{}/gateway.do", self.base_url)
    }

    pub fn config(&self) -> &SimConfig {
        &self.state.config
    }

    /// The serial the simulator puts in `Wechatpay-Serial`.
    pub fn wechat_platform_serial(&self) -> &str {
        &self.state.keys.platform_serial
    }

    /// Settings for a [`actors::gateway::wechat::WechatGateway`] that talks to this simulator.
    pub fn wechat_settings(&self, notify_url: &str) -> WechatSettings {
        let config = &self.state.config;
        WechatSettings {
            mchid: config.wechat_mchid.clone(),
            appid: config.wechat_appid.clone(),
            merchant_serial_no: config.wechat_merchant_serial_no.clone(),
            merchant_private_key_pem: config.keys.merchant_private_key_pem.clone(),
            platform_keys: vec![WechatPlatformKeySettings {
                serial: Some(self.state.keys.platform_serial.clone()),
                pem: config.keys.platform_public_key_pem.clone(),
            }],
            apiv3_key: config.keys.apiv3_key.clone(),
            api_base_url: self.base_url.clone(),
            notify_url: notify_url.to_owned(),
            close_retry_after_seconds: actors::gateway::wechat::DEFAULT_CLOSE_RETRY_AFTER_SECONDS,
        }
    }

    /// Settings for an [`actors::gateway::alipay::AlipayGateway`] that talks to this simulator.
    pub fn alipay_settings(&self, notify_url: &str) -> AlipaySettings {
        let config = &self.state.config;
        AlipaySettings {
            app_id: config.alipay_app_id.clone(),
            app_private_key_pem: config.keys.merchant_private_key_pem.clone(),
            alipay_public_key_pem: config.keys.platform_public_key_pem.clone(),
            gateway_url: self.alipay_gateway_url(),
            notify_url: notify_url.to_owned(),
            seller_id: Some(config.alipay_seller_id.clone()),
        }
    }

    /// A trade as the control route shows it.
    pub fn trade(&self, provider: SimProvider, out_trade_no: &str) -> Option<SimTrade> {
        self.state.trade(provider, out_trade_no)
    }

    /// The whole trade book (both providers), each trade as [`SimServer::trade`] shows it.
    pub fn trades(&self) -> Vec<SimTrade> {
        self.state.trades()
    }

    /// API calls the simulator received (every provider call, whatever its answer).
    pub fn api_calls(&self) -> u64 {
        self.state.api_calls()
    }

    pub fn set_faults(&self, faults: SimFaults) {
        self.state.set_faults(faults);
    }

    /// A refund by provider and refund number.
    pub fn refund(&self, provider: SimProvider, out_refund_no: &str) -> Option<refunds::SimRefund> {
        self.state.refund(provider, out_refund_no)
    }

    /// Every refund the simulator made (both providers).
    pub fn refunds(&self) -> Vec<refunds::SimRefund> {
        self.state.all_refunds()
    }

    pub fn set_refund_behaviour(&self, behaviour: refunds::SimRefundBehaviour) {
        self.state.set_refund_behaviour(behaviour);
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the server task.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        if let Err(err) = self.server.await {
            tracing::warn!(error.message = %err, "simulator task ended abnormally");
        }
    }

    /// Runs until the server is stopped (by a signal: actix-web handles SIGINT / SIGTERM).
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server
            .await
            .context("simulator task panicked")?
            .context("simulator server failed")
    }
}

/// A stable serial for the platform key: upper-case hex of the first 20 bytes of the SHA-256
/// of its PEM, the length of a real certificate serial.
fn platform_serial(public_pem: &str) -> String {
    let digest = sha2::Sha256::digest(public_pem.trim().as_bytes());
    hex::encode_upper(digest.get(..20).unwrap_or_default())
}
