//! The alerting rules and the dashboard in `deploy/` name only metrics the service serves and
//! `docs/operations.md` documents, and the metrics they read move as orders settle.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::helpers::*;

fn repository_file(path: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// Every `paywarden_…` metric name in `text`, as written (a histogram's `_bucket` included).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("paywarden_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Whether the exposition has the metric family `family` (its `# TYPE` line comes with its
/// first sample).
fn served(exposition: &str, family: &str) -> bool {
    exposition.contains(&format!("\n# TYPE {family} "))
}

/// The value of the sample written exactly `series` (name and labels as served).
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[actix_web::test]
async fn every_metric_the_alerts_and_the_dashboard_read_is_served_and_documented() {
    let app = spawn_app(Backend::Sqlite).await;
    // One order paid at the sandbox; one closed at its deadline by a full pass (query, close).
    let (paid, pay_no) = app.order_with_attempt("alerts-paid", 900).await;
    app.sandbox_pay(&pay_no, true).await;
    app.wait_for_status(&paid, "paid", Duration::from_secs(10)).await;
    let (closed, _) = app.order_with_attempt("alerts-closed", 1).await;
    app.wait_for_status(&closed, "closed", Duration::from_secs(10)).await;

    let exposition = app.metrics().await;
    for (series, expected) in [
        (
            r#"paywarden_orders_settled_total{outcome="paid",provider="sandbox"}"#,
            1.0,
        ),
        (
            r#"paywarden_orders_settled_total{outcome="closed",provider="sandbox"}"#,
            1.0,
        ),
        (
            r#"paywarden_provider_calls_total{operation="create_qr",outcome="ok",provider="sandbox"}"#,
            2.0,
        ),
        (
            r#"paywarden_provider_calls_total{operation="close",outcome="ok",provider="sandbox"}"#,
            1.0,
        ),
        ("paywarden_close_lateness_seconds_count", 1.0),
        (r#"paywarden_provider_breaker_open{provider="sandbox"}"#, 0.0),
        ("paywarden_reconciliation_open_differences", 0.0),
    ] {
        assert_eq!(sample(&exposition, series), Some(expected), "{series}");
    }

    let operations = repository_file("docs/operations.md");
    let referenced: BTreeSet<String> = metric_names(&repository_file("deploy/prometheus/alerts.yml"))
        .into_iter()
        .chain(metric_names(&repository_file("deploy/grafana/paywarden.json")))
        .collect();
    assert!(referenced.len() >= 10, "{referenced:?}");
    for name in &referenced {
        let family = name.strip_suffix("_bucket").unwrap_or(name);
        assert!(served(&exposition, family), "{family} is not served:\n{exposition}");
        assert!(
            operations.contains(&format!("`{family}`")),
            "{family} is not in docs/operations.md's metrics table"
        );
    }
}
