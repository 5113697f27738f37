//! The fault-injection suite at CI size: real paywarden processes on one PostgreSQL and Redis,
//! against the provider simulator, under load and faults; every invariant must hold.
//!
//! It needs PostgreSQL on 127.0.0.1:5432 and `redis-server` on the PATH (it starts its own).
//! `.config/nextest.toml` runs it alone and gives it more time than the other tests. Run it
//! on its own with `cargo nextest run -p paywarden-fault --no-capture`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paywarden_fault::{run, Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paywardens_invariants_hold_under_node_kills_a_redis_restart_and_provider_failures() {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn,paywarden_fault=info")
            .with_writer(std::io::stderr)
            .try_init();
    }
    let report = run(&Scenario::ci()).await.expect("the fault suite runs");
    println!("{report}");
    assert!(report.passed(), "invariants failed: {:#?}", report.failures());
}
