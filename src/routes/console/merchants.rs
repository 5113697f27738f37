//! The console's merchants: onboard one, disable it, issue and revoke its keys (a new key shown
//! once, with a copy button), attach its provider accounts (PEM files read into the form, no
//! secret ever shown back) and verify them against the provider. Every action is one of
//! [`crate::operations`], as the JSON routes' are.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use actors::domain::MerchantId;
use actors::store::{accounts, merchants};
use maud::{html, Markup};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::session::{ConsoleRejection, ConsoleSession};
use super::{badge, banner_from, check, csrf_field, outcome, show, when, Banner, NoticeQuery};
use crate::error::ApiError;
use crate::state::AppState;

/// Notices of this page's actions (`?notice=`).
pub(super) fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "merchant-created" => "The merchant is onboarded: issue it a key and attach its provider accounts.",
        "merchant-disabled" => "The merchant is disabled: its keys no longer work; its live orders still resolve.",
        "key-revoked" => "The key is revoked: every node refuses it within a second.",
        "account-added" => "The provider account is stored, its secrets sealed. Verify it against the provider.",
        "account-disabled" => "The provider account is disabled: no new attempt starts at it.",
        _ => return None,
    })
}

async fn list_page(state: &AppState, session: &ConsoleSession, status: StatusCode, banner: Banner) -> HttpResponse {
    let rows = merchants::list(&state.db).await.map_err(ApiError::from);
    let body = rows.map(|rows| {
        html! {
            div class="scroll" { table id="merchants" {
                thead { tr { th { "Merchant" } th { "Name" } th { "Status" } th { "Source" } th { "Since" } } }
                tbody { @for row in &rows { tr {
                    td { a href={ "/admin/ui/merchants/" (row.merchant_id) } { (row.merchant_id) } }
                    td { (row.name) }
                    td { (badge(if row.enabled { "enabled" } else { "disabled" })) }
                    td { (row.source) }
                    td { (when(row.created_at)) }
                } } }
            } }
            h2 { "Onboard a merchant" }
            form method="post" action="/admin/ui/merchants" class="stack card" id="new-merchant" {
                (csrf_field(session))
                input type="text" name="merchant_id" required maxlength="64" pattern="[A-Za-z0-9_-]+"
                    placeholder="Merchant id (letters, digits, _ and -)";
                input type="text" name="name" required maxlength="128" placeholder="Name";
                button type="submit" { "Onboard" }
            }
        }
    });
    show(session, "Merchants", status, banner, body)
}

/// `GET /admin/ui/merchants`.
pub async fn list(
    state: web::Data<AppState>,
    session: ConsoleSession,
    params: web::Query<NoticeQuery>,
) -> HttpResponse {
    list_page(&state, &session, StatusCode::OK, banner_from(params.notice.as_deref())).await
}

#[derive(Debug, Deserialize)]
pub struct NewMerchantForm {
    csrf: String,
    merchant_id: String,
    name: String,
}

/// `POST /admin/ui/merchants`.
pub async fn create(
    state: web::Data<AppState>,
    session: ConsoleSession,
    form: web::Form<NewMerchantForm>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let result =
        crate::operations::create_merchant(&state, form.merchant_id.trim(), &form.name, &session.operator()).await;
    let done = match &result {
        Ok(row) => format!("/admin/ui/merchants/{}?notice=merchant-created", row.merchant_id),
        Err(_) => String::new(),
    };
    Ok(outcome(result, &done, |status, banner| {
        list_page(&state, &session, status, banner)
    })
    .await)
}

/// What the merchant's page shows above its sections, besides a banner.
#[derive(Default)]
struct Extra {
    /// A key just issued: shown this once.
    issued: Option<(String, String)>,
    /// What a verification found.
    verified: Option<(String, actors::gateway::account::Verification)>,
}

async fn merchant_page(
    state: &AppState,
    session: &ConsoleSession,
    merchant_id: &str,
    status: StatusCode,
    banner: Banner,
    extra: Extra,
) -> HttpResponse {
    let body = async {
        let merchant = MerchantId::parse_input(merchant_id)?;
        let row = merchants::get(&state.db, &merchant).await?;
        let keys = merchants::keys(&state.db, &merchant).await?;
        let accounts = accounts::list(&state.db, &merchant).await?;
        Ok::<_, ApiError>(html! {
            p {
                strong { (row.name) } " " (badge(if row.enabled { "enabled" } else { "disabled" }))
                " · " (row.source) " · since " (when(row.created_at))
            }
            @if row.enabled {
                form method="post" action={ "/admin/ui/merchants/" (row.merchant_id) "/disable" } {
                    (csrf_field(session))
                    button type="submit" class="danger" title="Its keys stop working; its live orders still resolve" { "Disable merchant" }
                }
            }
            @if let Some((key_id, key)) = &extra.issued {
                div class="card" id="issued-key" {
                    p { strong { "New key " (key_id) } ": copy it now, it is not shown again." }
                    p { code id="issued-key-value" { (key) } " "
                        button type="button" class="secondary" data-copy="issued-key-value" { "Copy" } }
                }
            }
            h2 { "API keys" }
            div class="scroll" { table id="keys" {
                thead { tr { th { "Key" } th { "Label" } th { "Issued" } th { "Last used" } th { "Revoked" } th {} } }
                tbody { @for key in &keys { tr data-key-id=(key.key_id) {
                    td { code { (key.prefix) "…" } }
                    td { (key.label) }
                    td { (when(key.created_at)) }
                    td { @if let Some(at) = key.last_used_at { (when(at)) } @else { span class="muted" { "never" } } }
                    td { @if let Some(at) = key.revoked_at { (when(at)) } }
                    td { @if key.revoked_at.is_none() {
                        form method="post" action={ "/admin/ui/merchants/" (row.merchant_id) "/keys/" (key.key_id) "/revoke" } {
                            (csrf_field(session))
                            button type="submit" class="danger" { "Revoke" }
                        }
                    } }
                } } }
            } }
            @if row.enabled {
                form method="post" action={ "/admin/ui/merchants/" (row.merchant_id) "/keys" } class="stack card" id="issue-key" {
                    (csrf_field(session))
                    input type="text" name="label" required maxlength="128" placeholder="What the key is for (e.g. web shop)";
                    button type="submit" { "Issue a key" }
                }
            }
            h2 { "Provider accounts" }
            @if let Some((account_id, found)) = &extra.verified {
                div class={ "card " (if found.ok { "verified" } else { "unverified" }) } id="verification" data-account-id=(account_id) {
                    p { strong { (account_id) ": " (if found.ok { "the keys work" } else { "the keys did not work" }) } " (" (found.outcome) ")" }
                    p { (found.detail) }
                }
            }
            div class="scroll" { table id="accounts" {
                thead { tr { th { "Account" } th { "Provider" } th { "Status" } th { "Ids" } th { "Key fingerprint" } th { "Notifications at" } th {} } }
                tbody { @for account in &accounts { tr data-account-id=(account.account_id) {
                    td { code { (account.account_id) } }
                    td { (account.provider.as_str()) }
                    td { (badge(if account.enabled { "enabled" } else { "disabled" })) }
                    td { (public_ids(&account.config)) }
                    td { code title=(account.fingerprint) { (account.fingerprint.get(..16).unwrap_or(&account.fingerprint)) "…" } }
                    td { code { "/webhooks/" (actors::gateway::registry::info(account.provider).webhook_path) "/" (account.account_id) } }
                    td {
                        form method="post" action={ "/admin/ui/merchants/" (row.merchant_id) "/accounts/" (account.account_id) "/verify" } {
                            (csrf_field(session))
                            button type="submit" class="secondary" { "Verify" }
                        }
                        @if account.enabled {
                            form method="post" action={ "/admin/ui/merchants/" (row.merchant_id) "/accounts/" (account.account_id) "/disable" } {
                                (csrf_field(session))
                                button type="submit" class="danger" { "Disable" }
                            }
                        }
                    }
                } } }
            } }
            @if row.enabled { (account_form(session, &row.merchant_id)) }
        })
    }
    .await;
    show(session, &format!("Merchant {merchant_id}"), status, banner, body)
}

/// The ids an operator recognises an account by (no secret is in `config`).
fn public_ids(config: &str) -> String {
    let config: Map<String, Value> = serde_json::from_str(config).unwrap_or_default();
    ["mchid", "appid", "app_id", "seller_id"]
        .iter()
        .filter_map(|field| {
            config
                .get(*field)
                .and_then(Value::as_str)
                .map(|value| format!("{field} {value}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A PEM field: a file chosen is read into the text area (by the console's script); without
/// the script, the PEM is pasted.
fn pem_field(name: &str, label: &str) -> Markup {
    html! {
        label for=(name) { (label) }
        input type="file" accept=".pem,.crt,.key,.txt" data-fill=(name) aria-label={ (label) " file" };
        textarea id=(name) name=(name) rows="3" placeholder="-----BEGIN …-----" {}
    }
}

fn account_form(session: &ConsoleSession, merchant_id: &str) -> Markup {
    html! {
        form method="post" action={ "/admin/ui/merchants/" (merchant_id) "/accounts" } class="stack card" id="add-account" autocomplete="off" {
            (csrf_field(session))
            label for="provider" { "Provider" }
            select id="provider" name="provider" {
                option value="wechat" { "WeChat Pay" }
                option value="alipay" { "Alipay" }
                option value="sandbox" { "Sandbox" }
            }
            fieldset { legend { "WeChat Pay (public-key mode)" }
                input type="text" name="mchid" placeholder="mchid";
                input type="text" name="appid" placeholder="appid";
                input type="text" name="merchant_serial_no" placeholder="merchant_serial_no (API certificate serial)";
                (pem_field("merchant_private_key_pem", "Merchant API private key (apiclient_key.pem)"))
                (pem_field("merchant_certificate_pem", "Merchant API certificate, optional (apiclient_cert.pem)"))
                (pem_field("platform_public_key_pem", "WeChat Pay public key (pub_key.pem)"))
                input type="text" name="platform_serial" placeholder="platform_serial (PUB_KEY_ID_…)";
                input type="password" name="apiv3_key" placeholder="APIv3 key (32 characters)";
                input type="url" name="api_base_url" placeholder="api_base_url, optional";
            }
            fieldset { legend { "Alipay" }
                input type="text" name="app_id" placeholder="app_id";
                (pem_field("app_private_key_pem", "App private key"))
                (pem_field("alipay_public_key_pem", "Alipay public key"))
                input type="url" name="gateway_url" placeholder="gateway_url, optional";
                input type="text" name="seller_id" placeholder="seller_id, optional";
            }
            fieldset { legend { "Sandbox" }
                input type="password" name="webhook_secret" placeholder="webhook_secret";
            }
            button type="submit" { "Add account" }
        }
    }
}

/// `GET /admin/ui/merchants/{merchant_id}`.
pub async fn merchant(
    state: web::Data<AppState>,
    session: ConsoleSession,
    path: web::Path<String>,
    params: web::Query<NoticeQuery>,
) -> HttpResponse {
    let banner = banner_from(params.notice.as_deref());
    merchant_page(&state, &session, &path, StatusCode::OK, banner, Extra::default()).await
}

#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

/// `POST /admin/ui/merchants/{merchant_id}/disable`.
pub async fn disable(
    state: web::Data<AppState>,
    session: ConsoleSession,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let result = crate::operations::disable_merchant(&state, &path, &session.operator()).await;
    let done = format!("/admin/ui/merchants/{path}?notice=merchant-disabled");
    Ok(outcome(result, &done, |status, banner| {
        merchant_page(&state, &session, &path, status, banner, Extra::default())
    })
    .await)
}

#[derive(Debug, Deserialize)]
pub struct KeyForm {
    csrf: String,
    label: String,
}

/// `POST /admin/ui/merchants/{merchant_id}/keys`: the page again, with the new key shown once
/// (not a redirect: the key must not travel in an address or be shown again).
pub async fn issue_key(
    state: web::Data<AppState>,
    session: ConsoleSession,
    path: web::Path<String>,
    form: web::Form<KeyForm>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let shown = crate::operations::issue_key(&state, &path, &form.label, &session.operator())
        .await
        .map(|(row, key)| {
            let banner = Banner::Notice("The key is issued: copy it now.".to_owned());
            let extra = Extra {
                issued: Some((row.key_id, key.expose_secret().to_owned())),
                ..Extra::default()
            };
            (banner, extra)
        });
    Ok(shown_on_page(&state, &session, &path, shown).await)
}

/// The merchant's page after an action whose result it shows (not a redirect: a key issued
/// must not be shown again, a verification is not stored), or with the reason it was refused.
async fn shown_on_page(
    state: &AppState,
    session: &ConsoleSession,
    merchant_id: &str,
    shown: Result<(Banner, Extra), ApiError>,
) -> HttpResponse {
    match shown {
        Ok((banner, extra)) => merchant_page(state, session, merchant_id, StatusCode::OK, banner, extra).await,
        Err(err) => {
            let (status, banner) = super::refusal(&err);
            merchant_page(state, session, merchant_id, status, banner, Extra::default()).await
        }
    }
}

/// `POST /admin/ui/merchants/{merchant_id}/keys/{key_id}/revoke`.
pub async fn revoke_key(
    state: web::Data<AppState>,
    session: ConsoleSession,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let (merchant_id, key_id) = path.into_inner();
    let result = crate::operations::revoke_key(&state, &merchant_id, &key_id, &session.operator()).await;
    let done = format!("/admin/ui/merchants/{merchant_id}?notice=key-revoked");
    Ok(outcome(result, &done, |status, banner| {
        merchant_page(&state, &session, &merchant_id, status, banner, Extra::default())
    })
    .await)
}

/// The account form: every provider's fields; the chosen provider's non-empty ones are sent.
#[derive(Deserialize)]
pub struct AccountForm {
    csrf: String,
    provider: String,
    #[serde(flatten)]
    fields: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for AccountForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Field names only: some values are private keys.
        f.debug_struct("AccountForm")
            .field("provider", &self.provider)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The fields of each provider the form has.
fn form_fields(provider: &str) -> &'static [&'static str] {
    match provider {
        "wechat" => &[
            "mchid",
            "appid",
            "merchant_serial_no",
            "merchant_private_key_pem",
            "merchant_certificate_pem",
            "platform_public_key_pem",
            "platform_serial",
            "apiv3_key",
            "api_base_url",
        ],
        "alipay" => &[
            "app_id",
            "app_private_key_pem",
            "alipay_public_key_pem",
            "gateway_url",
            "seller_id",
        ],
        "sandbox" => &["webhook_secret"],
        _ => &[],
    }
}

/// `POST /admin/ui/merchants/{merchant_id}/accounts`.
pub async fn add_account(
    state: web::Data<AppState>,
    session: ConsoleSession,
    path: web::Path<String>,
    form: web::Form<AccountForm>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let config: Map<String, Value> = form_fields(&form.provider)
        .iter()
        .filter_map(|field| {
            let value = form.fields.get(*field)?.trim();
            (!value.is_empty()).then(|| ((*field).to_owned(), Value::String(value.to_owned())))
        })
        .collect();
    let result = crate::operations::add_provider_account(
        &state,
        &path,
        &form.provider,
        Value::Object(config),
        &session.operator(),
    )
    .await;
    let done = format!("/admin/ui/merchants/{path}?notice=account-added");
    Ok(outcome(result, &done, |status, banner| {
        merchant_page(&state, &session, &path, status, banner, Extra::default())
    })
    .await)
}

/// `POST /admin/ui/merchants/{merchant_id}/accounts/{account_id}/verify`: the page again, with
/// what the provider answered.
pub async fn verify_account(
    state: web::Data<AppState>,
    session: ConsoleSession,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let (merchant_id, account_id) = path.into_inner();
    let shown = crate::operations::verify_provider_account(&state, &merchant_id, &account_id, &session.operator())
        .await
        .map(|found| {
            let banner = if found.ok {
                Banner::Notice(format!("{account_id}: the provider answered and the keys work."))
            } else {
                Banner::Error(format!("{account_id}: the keys did not work ({}).", found.outcome))
            };
            let extra = Extra {
                verified: Some((account_id, found)),
                ..Extra::default()
            };
            (banner, extra)
        });
    Ok(shown_on_page(&state, &session, &merchant_id, shown).await)
}

/// `POST /admin/ui/merchants/{merchant_id}/accounts/{account_id}/disable`.
pub async fn disable_account(
    state: web::Data<AppState>,
    session: ConsoleSession,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, ConsoleRejection> {
    check(&state, &session, &form.csrf)?;
    let (merchant_id, account_id) = path.into_inner();
    let result =
        crate::operations::disable_provider_account(&state, &merchant_id, &account_id, &session.operator()).await;
    let done = format!("/admin/ui/merchants/{merchant_id}?notice=account-disabled");
    Ok(outcome(result, &done, |status, banner| {
        merchant_page(&state, &session, &merchant_id, status, banner, Extra::default())
    })
    .await)
}
