//! The adversarial bills, once the run is quiet: for each real provider, today's bill is
//! reconciled as a hostile network or a broken provider would serve it — rows added for trades
//! that were never paid, a row listed twice, a payment under another transaction id — then as a
//! file of another account, of another day, and one whose rows do not add up, and at last as
//! it is. A bill is a hint, never a payment: the added rows must become items for an operator
//! (the provider's signed answer to a query denies them) and change no order; the
//! self-contradicting files must fail their run and change nothing; the honest one completes.

use std::collections::HashMap;

use chrono::Utc;
use paywarden_sim::{SimProvider, SimServer, SimTradeState};
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{Api, Caller};
use crate::database::RunDatabase;

/// Trades of each provider named in added rows.
const FORGED_PER_PROVIDER: usize = 3;

/// What the phase saw: counts for the report, and what it must not have seen.
#[derive(Default)]
pub(crate) struct BillsOutcome {
    pub(crate) counts: Vec<(String, i64)>,
    pub(crate) failures: Vec<String>,
}

pub(crate) async fn run(api: &Api, sim: &SimServer, db: &RunDatabase) -> anyhow::Result<BillsOutcome> {
    let mut outcome = BillsOutcome::default();
    let day = Utc::now()
        .with_timezone(&actors::gateway::wechat::transformers::china_offset())
        .date_naive()
        .format("%Y-%m-%d")
        .to_string();
    let control = reqwest::Client::new();
    for (provider, sim_provider) in [("wechat", SimProvider::Wechat), ("alipay", SimProvider::Alipay)] {
        let book: HashMap<String, paywarden_sim::SimTrade> = sim
            .trades()
            .into_iter()
            .filter(|trade| trade.provider == sim_provider)
            .map(|trade| (trade.out_trade_no.clone(), trade))
            .collect();
        let paid_today: Vec<String> = book
            .values()
            .filter(|trade| trade.state == SimTradeState::Success)
            .filter(|trade| {
                trade.paid_at.is_some_and(|at| {
                    at.with_timezone(&actors::gateway::wechat::transformers::china_offset())
                        .format("%Y-%m-%d")
                        .to_string()
                        == day
                })
            })
            .map(|trade| trade.out_trade_no.clone())
            .collect();
        let unpaid: Vec<String> = db
            .rows(&format!(
                "SELECT CAST(pay_no AS TEXT) FROM payment_attempts \
                 WHERE provider = '{provider}' AND provider_txn_id IS NULL ORDER BY pay_no LIMIT 50"
            ))
            .await?
            .iter()
            .filter_map(|row| row.try_get_by_index::<String>(0).ok())
            .filter(|pay_no| {
                book.get(pay_no)
                    .is_none_or(|trade| trade.state != SimTradeState::Success)
            })
            .take(FORGED_PER_PROVIDER)
            .collect();
        let (Some(twice), Some(other_txn)) = (paid_today.first(), paid_today.get(1)) else {
            outcome
                .counts
                .push((format!("{provider}: too few payments today for the bill phase"), 0));
            continue;
        };
        let involved: Vec<String> = unpaid.iter().chain([twice, other_txn]).cloned().collect();
        let before = snapshot(db, &involved).await?;

        let added: Vec<Value> = unpaid
            .iter()
            .map(|pay_no| json!({"out_trade_no": pay_no, "amount_fen": 2999, "trade_id": format!("forged-{pay_no}")}))
            .collect();
        tamper(
            &control,
            sim,
            provider,
            json!({"add_payments": added, "duplicate": [twice], "trade_ids": {other_txn.clone(): "forged-txn"}}),
        )
        .await?;
        let run = reconcile(api, provider, &day).await;
        let kinds = kinds(&run);
        let denied = kinds
            .iter()
            .filter(|(kind, reference)| kind == "bill_says_paid_provider_says_not" && unpaid.contains(reference))
            .count();
        outcome.counts.push((
            format!("{provider}: rows added for trades never paid / refused by the query"),
            i64::try_from(unpaid.len()).unwrap_or(0),
        ));
        outcome.counts.push((
            format!("{provider}:   items bill_says_paid_provider_says_not"),
            i64::try_from(denied).unwrap_or(0),
        ));
        if run["status"] != "completed" || denied != unpaid.len() {
            outcome
                .failures
                .push(format!("{provider}: rows added for unpaid trades: {run}"));
        }
        for (kind, reference) in [("duplicate_in_bill", twice), ("txn_differs", other_txn)] {
            if !kinds.iter().any(|(k, r)| k == kind && r == reference) {
                outcome
                    .failures
                    .push(format!("{provider}: no {kind} item for {reference}: {run}"));
            }
        }
        outcome.counts.push((
            format!("{provider}:   missing_here found (then checked by a query)"),
            i64::try_from(kinds.iter().filter(|(kind, _)| kind == "missing_here").count()).unwrap_or(0),
        ));

        for (label, tampering) in [
            ("another account", json!({"account": "1900000999"})),
            ("another day", json!({"day_offset_days": -1})),
            ("rows that do not add up", json!({"summary_extra_fen": 1})),
        ] {
            let tampering = if label == "another account" && provider == "alipay" {
                json!({"account": "20889999999999990156"})
            } else {
                tampering
            };
            tamper(&control, sim, provider, tampering).await?;
            let run = reconcile(api, provider, &day).await;
            outcome.counts.push((
                format!(
                    "{provider}: a bill of {label}: run {}",
                    run["status"].as_str().unwrap_or("?")
                ),
                1,
            ));
            if run["status"] != "failed" {
                outcome
                    .failures
                    .push(format!("{provider}: a bill of {label} was not refused: {run}"));
            }
        }
        tamper(&control, sim, provider, json!({})).await?;
        let run = reconcile(api, provider, &day).await;
        if run["status"] != "completed" {
            outcome
                .failures
                .push(format!("{provider}: the honest bill did not complete: {run}"));
        }
        let after = snapshot(db, &involved).await?;
        for (pay_no, was) in &before {
            let now = after.get(pay_no);
            if now != Some(was) {
                outcome.failures.push(format!(
                    "{provider} pay_no {pay_no}: a tampered bill changed its order from {was} to {now:?}"
                ));
            }
        }
    }
    Ok(outcome)
}

/// Each involved trade's order: status, refunded amount, version.
async fn snapshot(db: &RunDatabase, pay_nos: &[String]) -> anyhow::Result<HashMap<String, String>> {
    if pay_nos.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = db
        .rows(&format!(
            "SELECT CAST(a.pay_no AS TEXT), o.status || ' refunded ' || CAST(o.refunded_amount AS TEXT) || ' v' || CAST(o.version AS TEXT) \
             FROM payment_attempts a JOIN orders o ON o.id = a.order_id WHERE a.pay_no IN ({})",
            pay_nos.join(",")
        ))
        .await?;
    let mut out = HashMap::new();
    for row in rows {
        out.insert(row.try_get_by_index::<String>(0)?, row.try_get_by_index::<String>(1)?);
    }
    Ok(out)
}

async fn tamper(control: &reqwest::Client, sim: &SimServer, provider: &str, tampering: Value) -> anyhow::Result<()> {
    let response = control
        .put(format!("{}/sim/{provider}/bill-tampering", sim.base_url()))
        .json(&tampering)
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "the simulator refused the tampering: {}",
        response.status()
    );
    Ok(())
}

async fn reconcile(api: &Api, provider: &str, day: &str) -> Value {
    api.call(
        "reconcile",
        Method::POST,
        "/admin/reconciliations",
        Caller::Admin,
        Some(&json!({"provider": provider, "date": day})),
    )
    .await
    .map_or(Value::Null, |answer| answer.body)
}

fn kinds(run: &Value) -> Vec<(String, String)> {
    run["differences"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    (
                        item["kind"].as_str().unwrap_or_default().to_owned(),
                        item["reference"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
