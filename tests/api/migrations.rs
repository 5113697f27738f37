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
