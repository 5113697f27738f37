//! The run's own PostgreSQL database: created for the run, read by the checks, dropped when
//! every invariant held (kept for inspection otherwise).

use anyhow::Context;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, QueryResult, Statement};

/// Where PostgreSQL is, as the other test suites find it.
fn postgres_base() -> String {
    std::env::var("PAYWARDEN_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

pub struct RunDatabase {
    pub name: String,
    pub url: String,
    conn: DatabaseConnection,
}

impl RunDatabase {
    /// `CREATE DATABASE pw_fault_<id>`; the nodes migrate it at start.
    pub async fn create(run_id: &str) -> anyhow::Result<Self> {
        let name = format!("pw_fault_{run_id}");
        let admin = Database::connect(format!("{}/postgres", postgres_base()))
            .await
            .context("PostgreSQL does not answer (is it running on 127.0.0.1:5432?)")?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("failed to create database {name}"))?;
        admin.close().await.context("failed to close the admin connection")?;
        let url = format!("{}/{name}", postgres_base());
        let conn = Database::connect(&url)
            .await
            .with_context(|| format!("failed to connect to {name}"))?;
        Ok(Self { name, url, conn })
    }

    pub async fn rows(&self, sql: &str) -> anyhow::Result<Vec<QueryResult>> {
        self.conn
            .query_all(Statement::from_string(self.conn.get_database_backend(), sql.to_owned()))
            .await
            .with_context(|| format!("query failed: {sql}"))
    }

    /// The first column of the first row, as an integer (a `COUNT(*)`, a `CAST(... AS BIGINT)`).
    pub async fn scalar(&self, sql: &str) -> anyhow::Result<i64> {
        let row = self
            .conn
            .query_one(Statement::from_string(self.conn.get_database_backend(), sql.to_owned()))
            .await
            .with_context(|| format!("query failed: {sql}"))?
            .with_context(|| format!("no row: {sql}"))?;
        row.try_get_by_index::<i64>(0)
            .with_context(|| format!("not an integer: {sql}"))
    }

    /// Drops the database (the nodes must be stopped: `WITH (FORCE)` ends what is left).
    pub async fn drop_database(self) -> anyhow::Result<()> {
        self.conn.close().await.context("failed to close the run connection")?;
        let admin = Database::connect(format!("{}/postgres", postgres_base()))
            .await
            .context("PostgreSQL does not answer")?;
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name))
            .await
            .with_context(|| format!("failed to drop database {}", self.name))?;
        admin.close().await.context("failed to close the admin connection")?;
        Ok(())
    }
}
