use migration::{Migrator, MigratorTrait};
use paywarden::startup::connect_database;

use crate::helpers::{on_both_backends, test_settings, Backend};

on_both_backends!(migrations_go_up_down_and_up_again);

async fn migrations_go_up_down_and_up_again(backend: Backend) {
    let settings = test_settings(backend).await;
    let db = connect_database(&settings.database).await.unwrap();

    Migrator::up(&db, None).await.unwrap();
    assert!(Migrator::get_pending_migrations(&db).await.unwrap().is_empty());
    let applied = Migrator::get_applied_migrations(&db).await.unwrap().len();
    assert!(applied > 0);

    Migrator::down(&db, None).await.unwrap();
    assert_eq!(Migrator::get_applied_migrations(&db).await.unwrap().len(), 0);

    Migrator::refresh(&db).await.unwrap();
    assert_eq!(Migrator::get_applied_migrations(&db).await.unwrap().len(), applied);
    Migrator::reset(&db).await.unwrap();
    Migrator::up(&db, None).await.unwrap();
    Migrator::status(&db).await.unwrap();
}

on_both_backends!(scoping_skus_gives_each_row_to_its_one_merchant_and_keeps_the_rest);

/// The tenancy migration on a database with data: a SKU only one merchant ordered becomes
/// that merchant's, an ambiguous or never-ordered one is kept under `(unassigned)`, existing
/// subscribers stay global; down merges the rows back and disables scoped subscribers.
async fn scoping_skus_gives_each_row_to_its_one_merchant_and_keeps_the_rest(backend: Backend) {
    use migration::sea_orm::{ConnectionTrait, Statement};

    // Arrange: the schema before the tenancy migration, with orders of two merchants.
    let settings = test_settings(backend).await;
    let db = connect_database(&settings.database).await.unwrap();
    // The three migrations before m20261201_000004_scope_skus_and_subscribers.
    Migrator::up(&db, Some(3)).await.unwrap();
    let run = |sql: String| {
        let db = &db;
        async move {
            db.execute(Statement::from_string(db.get_database_backend(), sql))
                .await
                .unwrap();
        }
    };
    let order = |id: i64, merchant: &str, sku: &str| {
        [
            format!(
                "INSERT INTO orders (id, order_no, merchant_id, out_business_id, request_fingerprint, user_id, \
                 subject, total_amount, currency, status, expires_at, created_at, version) VALUES \
                 ({id}, '{id}', '{merchant}', 'out-{id}', 'fp', 'u', 's', 100, 'CNY', 'pending', \
                 CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0)"
            ),
            format!(
                "INSERT INTO order_items (order_id, sku_id, name, unit_price, quantity, amount, reserved_quantity) \
                 VALUES ({id}, '{sku}', 'n', 100, 1, 100, 1)"
            ),
        ]
    };
    for (id, merchant, sku) in [
        (1, "merchant_a", "sku-solo"),
        (2, "merchant_a", "sku-solo"),
        (3, "merchant_a", "sku-shared"),
        (4, "merchant_b", "sku-shared"),
    ] {
        for sql in order(id, merchant, sku) {
            run(sql).await;
        }
    }
    for (sku, available) in [("sku-solo", 5), ("sku-shared", 7), ("sku-fresh", 2)] {
        run(format!(
            "INSERT INTO skus (sku_id, available, updated_at) VALUES ('{sku}', {available}, CURRENT_TIMESTAMP)"
        ))
        .await;
    }
    run("INSERT INTO subscribers (id, kind, url, secret, event_types, enabled, created_at) VALUES \
         ('sub_old', 'webhook', 'https://erp.example.com/events', 'whsec_0123456789abcdef', '*', TRUE, CURRENT_TIMESTAMP)"
        .to_owned())
    .await;
    let rows = |sql: &'static str| {
        let db = &db;
        async move {
            db.query_all(Statement::from_string(db.get_database_backend(), sql.to_owned()))
                .await
                .unwrap()
                .into_iter()
                .map(|row| {
                    (
                        row.try_get_by_index::<Option<String>>(0).unwrap(),
                        row.try_get_by_index::<String>(1).unwrap(),
                        row.try_get_by_index::<i64>(2).unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let owned = |merchant: &str, sku: &str, available: i64| (Some(merchant.to_owned()), sku.to_owned(), available);

    // Act
    Migrator::up(&db, Some(1)).await.unwrap();

    // Assert: every row kept, each with the owner the data names.
    let skus_sql = "SELECT merchant_id, sku_id, available FROM skus ORDER BY sku_id, merchant_id";
    assert_eq!(
        rows(skus_sql).await,
        [
            owned("(unassigned)", "sku-fresh", 2),
            owned("(unassigned)", "sku-shared", 7),
            owned("merchant_a", "sku-solo", 5),
        ]
    );
    let subscribers_sql =
        "SELECT merchant_id, id, CAST(CASE WHEN enabled THEN 1 ELSE 0 END AS BIGINT) FROM subscribers ORDER BY id";
    assert_eq!(
        rows(subscribers_sql).await,
        [(None, "sub_old".to_owned(), 1)],
        "still global"
    );
    // Two merchants may now track the same sku_id; one merchant still only once.
    run("INSERT INTO skus (merchant_id, sku_id, available, updated_at) VALUES \
         ('merchant_b', 'sku-solo', 4, CURRENT_TIMESTAMP)"
        .to_owned())
    .await;
    let again = db
        .execute(Statement::from_string(
            db.get_database_backend(),
            "INSERT INTO skus (merchant_id, sku_id, available, updated_at) VALUES \
             ('merchant_a', 'sku-solo', 1, CURRENT_TIMESTAMP)"
                .to_owned(),
        ))
        .await;
    assert!(again.is_err(), "(merchant_id, sku_id) is the primary key");
    let negative = db
        .execute(Statement::from_string(
            db.get_database_backend(),
            "UPDATE skus SET available = -1 WHERE sku_id = 'sku-fresh'".to_owned(),
        ))
        .await;
    assert!(negative.is_err(), "the level still never goes negative");
    run(
        "INSERT INTO subscribers (id, kind, url, secret, event_types, merchant_id, enabled, created_at) VALUES \
         ('sub_a', 'webhook', 'https://a.example.com/events', 'whsec_0123456789abcdef', '*', 'merchant_a', TRUE, \
         CURRENT_TIMESTAMP)"
            .to_owned(),
    )
    .await;

    // Down: one shared row per sku_id holding the sum; a scoped subscriber would become
    // global, so it is disabled.
    Migrator::down(&db, Some(1)).await.unwrap();
    let shared_sql = "SELECT NULL, sku_id, available FROM skus ORDER BY sku_id";
    let shared = |sku: &str, available: i64| (None, sku.to_owned(), available);
    assert_eq!(
        rows(shared_sql).await,
        [shared("sku-fresh", 2), shared("sku-shared", 7), shared("sku-solo", 9)]
    );
    let disabled_sql =
        "SELECT NULL, id, CAST(CASE WHEN enabled THEN 1 ELSE 0 END AS BIGINT) FROM subscribers ORDER BY id";
    assert_eq!(
        rows(disabled_sql).await,
        [(None, "sub_a".to_owned(), 0), (None, "sub_old".to_owned(), 1)]
    );

    // And up again.
    Migrator::up(&db, Some(1)).await.unwrap();
    assert_eq!(
        rows(skus_sql).await,
        [
            owned("(unassigned)", "sku-fresh", 2),
            owned("(unassigned)", "sku-shared", 7),
            owned("merchant_a", "sku-solo", 9),
        ]
    );
}

/// Nodes of a cluster started together on a fresh database: each migrates at start, and none
/// may fail because another one is creating the same tables at the same moment.
#[actix_web::test]
async fn apps_started_at_once_on_a_fresh_postgres_database_all_start() {
    // Arrange: one fresh database, three apps on it.
    let settings = test_settings(Backend::Postgres).await;

    // Act: build them concurrently (each connects and migrates).
    let built =
        futures::future::join_all((0..3).map(|_| paywarden::startup::Application::build(settings.clone()))).await;

    // Assert
    for (n, app) in built.iter().enumerate() {
        assert!(app.is_ok(), "app {n} did not start: {:?}", app.as_ref().err());
    }
    let db = connect_database(&settings.database).await.unwrap();
    assert!(Migrator::get_pending_migrations(&db).await.unwrap().is_empty());
}

on_both_backends!(
    the_merchants_migration_records_every_merchant_of_the_orders_and_keeps_account_trades_from_a_rollback
);

/// The merchants migration on a database with orders: every merchant id they carry gets a row
/// (so none is onboarded again for another business); rolling it back is refused while an
/// attempt was started at a merchant's account (its calls would go to the deployment's own
/// provider), and allowed once none is.
async fn the_merchants_migration_records_every_merchant_of_the_orders_and_keeps_account_trades_from_a_rollback(
    backend: Backend,
) {
    use migration::sea_orm::{ConnectionTrait, Statement};

    let settings = test_settings(backend).await;
    let db = connect_database(&settings.database).await.unwrap();
    let before = Migrator::migrations().len() - 1;
    Migrator::up(&db, Some(u32::try_from(before).unwrap())).await.unwrap();
    let run = |sql: &str| {
        let db = &db;
        let sql = sql.to_owned();
        async move { db.execute(Statement::from_string(db.get_database_backend(), sql)).await }
    };
    run("INSERT INTO orders (id, order_no, merchant_id, out_business_id, request_fingerprint, user_id, \
         subject, total_amount, currency, status, expires_at, created_at, version) VALUES \
         (1, '1', 'legacy_shop', 'out-1', 'fp', 'u', 's', 100, 'CNY', 'pending', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0)")
    .await
    .unwrap();

    Migrator::up(&db, None).await.unwrap();
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT source FROM merchants WHERE merchant_id = 'legacy_shop'".to_owned(),
        ))
        .await
        .unwrap()
        .expect("the merchant of the orders has a row");
    assert_eq!(row.try_get::<String>("", "source").unwrap(), "orders");

    run("INSERT INTO payment_attempts (pay_no, order_id, provider, status, amount, currency, created_at, updated_at, account_id) \
         VALUES (2, 1, 'alipay', 'pending', 100, 'CNY', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'acct_1')")
    .await
    .unwrap();
    let refused = Migrator::down(&db, Some(1)).await.unwrap_err().to_string();
    assert!(refused.contains("merchants' provider accounts"), "{refused}");
    run("DELETE FROM payment_attempts").await.unwrap();
    Migrator::down(&db, Some(1)).await.unwrap();
    Migrator::up(&db, None).await.unwrap();
}
